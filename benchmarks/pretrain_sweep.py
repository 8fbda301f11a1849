"""`make pretrain-sweep`: pre-training throughput over micro-batch sizes, as the IPU recipes sweep 1, 2, 4 ... 64.

    python -m benchmarks.pretrain_sweep --shape S [--micro-batches 1 2 4 8] [--name NAME] [make pretrain's options]

Each size is an ordinary `make pretrain MICRO_BATCH=M` run (same shape, data, seed, ACCUMULATE and STEPS,
30 unless given) under build/train/pretrain-sweep/<name>/m<M>/; a finished one is reused, so a rerun does only
what is missing, and one that fails (out of memory) is listed as failed while the others go on. Written beside
them: results.json, sweep.md (a table) and samples_per_second.png.
"""

from __future__ import annotations

import json

from benchmarks.train_compare import _cell, measure
from common.cli import REPO, ArgumentParser, run_main
from common.variables import add_variables


def table(rows: list[dict]) -> str:
    lines = ["| micro-batch | global batch | samples/s | tokens/s | first loss | final loss | MLM | NSP | "
             "peak memory (MB) | energy (J) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        if row["status"] != "ok":
            lines.append(f"| {row['configuration']} | {row['status']}: exit code {row.get('exit_code')} "
                         + "| " * 8 + "|")
            continue
        lines.append(f"| {row['configuration'][1:]} | {row['batch_size']} | {_cell(row['mean_samples_per_s'])} | "
                     f"{_cell(row['mean_tokens_per_s'], 0)} | {_cell(row['first_loss'], 4)} | "
                     f"{_cell(row['final_loss'], 4)} | {_cell(row.get('final_mlm_loss'), 4)} | "
                     f"{_cell(row.get('final_nsp_loss'), 4)} | {_cell(row['peak_memory_mb'], 0)} | "
                     f"{_cell(row['energy_j'])} |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    done = [row for row in rows if row["status"] == "ok"]
    figure, axis = plt.subplots(figsize=(6, 4))
    axis.plot([int(row["configuration"][1:]) for row in done], [row["mean_samples_per_s"] for row in done],
              marker="o")
    axis.set_xscale("log", base=2)
    axis.set(xlabel="micro-batch (samples per replica per slice)", ylabel="samples/s (mean after warm-up)",
             title="Pre-training throughput by micro-batch")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def parser() -> ArgumentParser:
    parser = ArgumentParser(prog="python -m benchmarks.pretrain_sweep", description=__doc__.split("\n\n")[0])
    add_variables(parser, "pretrain-sweep", micro_batches={"default": ["1", "2", "4", "8"]},
                  name={"default": "default"}, build_dir={"default": REPO / "build"})
    return parser


def main() -> int:
    from common.values import whole_number

    args = parser().parse_args()
    sizes = sorted({whole_number("MICRO_BATCHES", size, 1) for size in args.micro_batches})
    rows = [measure(args, f"m{size}", ["--task", "pretrain", "--micro-batch", str(size)], group="pretrain-sweep")
            for size in sizes]
    folder = args.build_dir / "train" / "pretrain-sweep" / args.name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(json.dumps(rows, indent=2) + "\n")
    markdown = f"# Pre-training throughput by micro-batch\n\n{table(rows)}"
    (folder / "sweep.md").write_text(markdown)
    print(markdown)
    plotted = plot(rows, folder / "samples_per_second.png")
    print(f"wrote {folder / 'sweep.md'}, {folder / 'results.json'}"
          + (f" and {plotted}" if plotted else " (no plot: pip install '.[plot]')"))
    return 0 if all(row["status"] == "ok" for row in rows) else 1


if __name__ == "__main__":
    run_main(main)
