"""`make train-compare`: the same fine-tuning (data, seed, global batch) on one worker, DDP and pipelines.

    python -m benchmarks.train_compare [--workers N] [--stages 2 4] [--name NAME] [make train's options ...]

Configurations: the baseline (PARALLEL=none), DDP over --workers ranks (default 2), a pipeline of each
--stages count (default 2 and 4), and DeepSpeed's pipeline engine over the first count. One the machine cannot
hold (more ranks than GPUs or cores, more stages than layers, no DeepSpeed) is listed as skipped with the
reason. Each is an ordinary `python -m train` run with its folder under build/train/compare/<name>/; a
finished one is reused, an interrupted one resumed, so a rerun only does what is missing. Written beside
them: results.json, compare.md (a table) and two plots, throughput.png (samples/s per configuration) and
validation_loss.png (validation loss against training time).
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

from common.cli import REPO, ArgumentParser, given_options, run_main
from common.errors import HarnessError
from common.variables import add_variables

PASSED_THROUGH = ("model", "shape", "dataset", "precision", "device", "steps", "epochs", "batch_size", "accumulate",
                  "lr", "warmup", "dropout", "seed", "seq_len", "doc_stride", "eval_every", "val_questions",
                  "microbatches", "schedule", "target_loss", "max_predictions", "steps_per_log",
                  "optimizer", "loss_scale")
QUICK_STEPS = 30  # without STEPS or EPOCHS: a quick comparison, not two epochs per configuration


def configurations(workers: int, stages: list[int]) -> list[tuple[str, list[str]]]:
    rows = [("baseline", ["--parallel", "none"]), (f"ddp{workers}", ["--parallel", "ddp", "--workers", str(workers)])]
    rows += [(f"pipeline{count}", ["--parallel", "pipeline", "--stages", str(count)]) for count in stages]
    # DeepSpeed's pipeline engine on the same stages as the first pipeline (skipped, saying why, without DeepSpeed)
    return [*rows, (f"deepspeed-pipeline{stages[0]}", ["--parallel", "deepspeed-pipeline", "--stages", str(stages[0])])]


def why_not(args: argparse.Namespace, layout: list[str]) -> str | None:
    """The error `python -m train` would stop this configuration with, found without starting it."""
    from train.__main__ import parser
    from train.config import resolve_and_check

    try:
        resolve_and_check(parser().parse_args(train_arguments(args, layout)))
    except HarnessError as error:
        return str(error)
    return None


def train_arguments(args: argparse.Namespace, layout: list[str]) -> list[str]:
    """`python -m train`'s words for this layout: the driver's options that were given (those it takes), and
    STEPS=QUICK_STEPS unless STEPS or EPOCHS was."""
    words = [*layout, "--build-dir", str(args.build_dir), *given_options(args, PASSED_THROUGH)]
    if args.steps is None and getattr(args, "epochs", None) is None:
        words += ["--steps", str(QUICK_STEPS)]
    takes = {"microbatches": {"pipeline", "deepspeed-pipeline"}, "schedule": {"pipeline"}}  # PARALLEL= values
    for option, modes in takes.items():
        if getattr(args, option, None) is not None and not modes & set(layout):
            words = _without(words, f"--{option}")
    return words


def _without(words: list[str], option: str) -> list[str]:
    index = words.index(option)
    return words[:index] + words[index + 2:]


def measure(args: argparse.Namespace, label: str, layout: list[str], group: str = "compare") -> dict:
    """One configuration's summary, run (or resumed, or read back when finished) in
    build/train/<group>/<name>/<label>."""
    run = f"{group}/{args.name}/{label}"
    folder = args.build_dir / "train" / run
    reason = why_not(args, layout)
    if reason:
        print(f"=== {label}: skipped: {reason}", flush=True)
        return {"configuration": label, "status": "skipped", "reason": reason}
    if (folder / "summary.json").is_file():
        print(f"=== {label}: finished before, reusing {folder}", flush=True)
        return {"configuration": label, "status": "ok", **json.loads((folder / "summary.json").read_text())}
    command = [sys.executable, "-m", "train", *train_arguments(args, layout), "--run", run]
    if (folder / "run.json").is_file():
        command.append("--resume")
    print(f"=== {label}: {shlex.join(command)}", flush=True)
    result = subprocess.run(command, cwd=REPO)
    if result.returncode == 130:
        raise KeyboardInterrupt
    if result.returncode != 0 or not (folder / "summary.json").is_file():
        return {"configuration": label, "status": "failed", "exit_code": result.returncode}
    return {"configuration": label, "status": "ok", **json.loads((folder / "summary.json").read_text())}


def _cell(value, digits: int = 1) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def table(rows: list[dict]) -> str:
    baseline = next((row["mean_samples_per_s"] for row in rows if row["configuration"] == "baseline"
                     and row["status"] == "ok"), None)
    lines = ["| configuration | ranks | samples/s | speedup | tokens/s | final loss | validation loss | F1 | "
             "time to target loss (s) | peak memory (MB) | GPU util (%) | runtime (s) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        if row["status"] != "ok":
            why = row.get("reason") or f"exit code {row.get('exit_code')}"
            lines.append(f"| {row['configuration']} | {row['status']}: {why} " + "| " * 10 + "|")
            continue
        speedup = row["mean_samples_per_s"] / baseline if baseline and row["mean_samples_per_s"] else None
        lines.append(f"| {row['configuration']} | {row['workers']} | {_cell(row['mean_samples_per_s'])} | "
                     f"{_cell(speedup, 2)} | {_cell(row['mean_tokens_per_s'], 0)} | {_cell(row['final_loss'], 4)} | "
                     f"{_cell(row['validation_loss'], 4)} | {_cell(row['f1'], 2)} | "
                     f"{_cell(row['time_to_target_loss_s'])} | {_cell(row['peak_memory_mb'], 0)} | "
                     f"{_cell(row['gpu_util_mean'])} | {_cell(row['runtime_s'])} |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], folder: Path, runs: Path) -> list[Path]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("the plots need matplotlib: pip install '.[plot]'")
        return []
    done = [row for row in rows if row["status"] == "ok"]
    figure, axis = plt.subplots(figsize=(6, 4))
    axis.bar([row["configuration"] for row in done], [row["mean_samples_per_s"] or 0 for row in done])
    axis.set_ylabel("samples/s (mean after warm-up)")
    axis.set_title("Fine-tuning throughput")
    figure.tight_layout()
    figure.savefig(folder / "throughput.png", dpi=120)
    plt.close(figure)
    figure, axis = plt.subplots(figsize=(6, 4))
    for row in done:
        path = runs / row["configuration"] / "evals.jsonl"
        points = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        axis.plot([point["train_s"] for point in points], [point["loss"] for point in points], marker="o",
                  label=row["configuration"])
    axis.set_xlabel("training time (s, evaluations left out)")
    axis.set_ylabel("validation loss")
    axis.legend()
    figure.tight_layout()
    figure.savefig(folder / "validation_loss.png", dpi=120)
    plt.close(figure)
    return [folder / "throughput.png", folder / "validation_loss.png"]


def parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="python -m benchmarks.train_compare", description=__doc__.split("\n\n")[0])
    add_variables(parser, "train-compare", workers={"default": "2"}, stages={"default": ["2", "4"]},
                  name={"default": "default"}, build_dir={"default": REPO / "build"})
    return parser


def main() -> int:
    from common.values import whole_number

    args = parser().parse_args()
    workers = whole_number("WORKERS", args.workers, 2)
    stages = sorted({whole_number("STAGES", count, 1) for count in args.stages})
    runs = args.build_dir / "train" / "compare" / args.name
    rows = [measure(args, label, layout) for label, layout in configurations(workers, stages)]
    runs.mkdir(parents=True, exist_ok=True)
    (runs / "results.json").write_text(json.dumps(rows, indent=2) + "\n")
    markdown = (f"# Fine-tuning: one worker, DDP and pipelines\n\nSame data, seed and global batch in every "
                f"configuration; samples/s is the mean after {rows[0].get('throughput_warmup_steps', 5)} warm-up steps."
                f"\n\n{table(rows)}")
    (runs / "compare.md").write_text(markdown)
    print(markdown)
    for path in plot(rows, runs, runs):
        print(f"wrote {path}")
    print(f"wrote {runs / 'compare.md'} and {runs / 'results.json'}")
    return 0 if all(row["status"] != "failed" for row in rows) else 1


if __name__ == "__main__":
    run_main(main)
