"""A sweep's PNGs: samples/s, latency percentiles and joules per sample against batch size, and the stages."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def plot(rows: list[dict], folder: Path) -> list[Path]:
    """samples/s, latency percentiles and joules per sample against batch size, and the stages; PNGs in `folder`."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("plots need matplotlib: pip install '.[plot]' (then python -m benchmarks.sweep plot "
              f"{folder / 'results.jsonl'})")
        return []
    measured = [row for row in rows if row.get("status") == "ok"]
    if not measured:
        print("no measured points to plot")
        return []
    series: dict[tuple, list[dict]] = {}
    for row in measured:
        series.setdefault((row["scenario"], row["backend"], row["precision"], row["max_tokens"]), []).append(row)
    written = []

    def line_plot(filename: str, ylabel: str, value, title: str, missing: str = "not measured") -> None:
        figure, axes = plt.subplots(figsize=(7, 4.5))
        for (scenario, backend, precision, budget), points in sorted(series.items(), key=str):
            points = sorted(points, key=lambda row: row["batch_size"])
            values = [value(row) for row in points]
            if any(v is not None for v in values):
                axes.plot([row["batch_size"] for row in points], [np.nan if v is None else v for v in values],
                          marker="o", label=f"{backend} {precision}, budget {budget or 'none'}, {scenario}")
        axes.set_xscale("log", base=2)
        axes.set_xlabel("batch size")
        axes.set_ylabel(ylabel)
        axes.set_title(title)
        if axes.lines:
            axes.legend(fontsize=7)
        else:
            axes.text(0.5, 0.5, missing, ha="center", wrap=True, transform=axes.transAxes)
        figure.tight_layout()
        figure.savefig(folder / filename, dpi=110)
        plt.close(figure)
        written.append(folder / filename)

    line_plot("samples_per_second.png", "samples/s", lambda row: row["samples_per_second"], "Throughput")
    for percentile in ("p50", "p90", "p99"):
        line_plot(f"latency_{percentile}.png", f"{percentile} latency, ms",
                  lambda row, p=percentile: next(iter(row["latency_ms"].values()), {}).get(p),
                  f"{percentile} latency (per batch in direct mode, per sample in SingleStream)")
    line_plot("joules_per_sample.png", "joules per sample", lambda row: row.get("joules_per_sample"),
              "Energy per sample", f"not measured: {measured[0].get('energy_source', '')}")
    figure, axes = plt.subplots(figsize=(max(7, len(measured) * 0.6), 4.5))
    names = sorted({name for row in measured for name in row["stages_ms"]})
    labels = [f"{row['backend']} {row['precision']}\nb{row['batch_size']} {row['scenario']}" for row in measured]
    bottom = np.zeros(len(measured))
    for name in names:
        heights = np.array([row["stages_ms"].get(name, 0.0) for row in measured])
        axes.bar(range(len(measured)), heights, bottom=bottom, label=name)
        bottom += heights
    axes.set_xticks(range(len(measured)), labels, fontsize=6, rotation=45, ha="right")
    axes.set_ylabel("ms per batch")
    axes.set_title("Where a batch's time goes, by stage")
    axes.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(folder / "stages.png", dpi=110)
    plt.close(figure)
    written.append(folder / "stages.png")
    for path in written:
        print(f"wrote {path}")
    return written
