"""`make train-bench`: our training loop against Hugging Face's `Trainer` on the same features and batch.

    python -m benchmarks.train_trainer --model DIR | --shape S [--steps 30] [--batch-size 32]
        [--precision fp32|bf16|fp16] [--device cpu|cuda] [--seq-len 384]

Both train the same model on the same training features (the shipped dev split's even articles) for the
same steps with AdamW at the same peak rate. The Trainer gets what its SQuAD example feeds it, every
feature padded to SEQ_LEN; ours cuts each batch to its longest feature, which the loss allows (padding is
masked out of it). Throughput: samples per second over the steps after 5 warm-up steps, each side timed
step by step the same way (a callback around the Trainer's steps). Needs `pip install accelerate`.
Writes build/bench/train_vs_trainer.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from common.cli import REPO, ArgumentParser, run_main
from common.errors import HarnessError
from common.variables import add_variables

WARMUP_STEPS = 5


def trainer_throughput(args: argparse.Namespace) -> dict:
    """Hugging Face's Trainer over our training features: samples/s after the warm-up steps."""
    import numpy as np
    import torch
    from transformers import Trainer, TrainerCallback, TrainingArguments

    from qsl.dataset import VOCAB_SHA256
    from qsl.features import Featurisation
    from qsl.tokenizer import load_tokenizer
    from sut.models import parse_shape
    from train.data import load_split
    from train.model import load_for_training

    try:
        import accelerate  # noqa: F401 - the Trainer needs it
    except ImportError as error:
        raise HarnessError("Hugging Face's Trainer needs accelerate: pip install accelerate") from error
    split = load_split("dev-split", "train", load_tokenizer(), VOCAB_SHA256,
                       Featurisation(args.seq_len, args.seq_len // 3), args.build_dir / "train" / "data")
    features = split.features
    rows = np.flatnonzero(features.trainable)

    class Features(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return len(rows)

        def __getitem__(self, index: int) -> dict:
            row = rows[index]
            return {"input_ids": torch.tensor(features.input_ids[row], dtype=torch.long),
                    "attention_mask": torch.tensor(features.input_mask[row], dtype=torch.long),
                    "token_type_ids": torch.tensor(features.segment_ids[row], dtype=torch.long),
                    "start_positions": torch.tensor(features.start_position[row]),
                    "end_positions": torch.tensor(features.end_position[row])}

    class StepTimes(TrainerCallback):
        def __init__(self):
            self.times: list[float] = []

        def on_step_begin(self, *_, **__):
            self._synchronise()
            self.began = time.perf_counter()

        def on_step_end(self, *_, **__):
            self._synchronise()
            self.times.append(time.perf_counter() - self.began)

        @staticmethod
        def _synchronise():
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()

    torch.manual_seed(0)
    model = load_for_training(args.model, parse_shape(args.shape) if args.shape else None, args.build_dir, 0)
    times = StepTimes()
    options = TrainingArguments(
        output_dir=str(args.build_dir / "bench" / "hf-trainer"), max_steps=args.steps,
        per_device_train_batch_size=args.batch_size, learning_rate=5e-5, weight_decay=0.01,
        warmup_steps=int(0.1 * args.steps),
        bf16=args.precision == "bf16", fp16=args.precision == "fp16", use_cpu=args.device == "cpu",
        logging_steps=10 ** 6, save_strategy="no", report_to=[], dataloader_num_workers=0, seed=0)
    Trainer(model=model, args=options, train_dataset=Features(), callbacks=[times]).train()
    measured = times.times[WARMUP_STEPS:] or times.times
    return {"samples_per_s": len(measured) * args.batch_size / sum(measured), "steps": len(times.times)}


def ours_throughput(args: argparse.Namespace) -> dict:
    run = f"bench/vs-trainer-{int(time.time())}"
    command = [sys.executable, "-m", "train", "--steps", str(args.steps), "--batch-size", str(args.batch_size),
               "--precision", args.precision, "--device", args.device, "--seq-len", str(args.seq_len),
               "--val-questions", "1", "--build-dir", str(args.build_dir), "--run", run]
    command += ["--model", args.model] if args.model else ["--shape", args.shape]
    result = subprocess.run(command, cwd=REPO)
    if result.returncode != 0:
        raise HarnessError(f"our training run failed (exit {result.returncode}); its error is above")
    summary = json.loads((args.build_dir / "train" / run / "summary.json").read_text())
    return {"samples_per_s": summary["mean_samples_per_s"], "steps": summary["steps"]}


def parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="python -m benchmarks.train_trainer", description=__doc__.split("\n\n")[0])
    add_variables(parser, "train-bench", steps={"type": int, "default": 30}, batch_size={"type": int, "default": 32},
                  precision={"choices": ("fp32", "bf16", "fp16"), "default": "fp32"}, device={"default": "cpu"},
                  seq_len={"type": int, "default": 384}, build_dir={"default": REPO / "build"})
    return parser


def main() -> int:
    args = parser().parse_args()
    if not args.model and not args.shape:
        raise HarnessError("give MODEL= (a BERT directory, e.g. bert-base-uncased) or SHAPE=bert-base")
    theirs = trainer_throughput(args)
    ours = ours_throughput(args)
    import torch

    device = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else f"CPU ({torch.get_num_threads()} "\
                                                                                  "threads)"
    model = args.model or f"SHAPE={args.shape}"
    table = (f"# Training throughput: ours against Hugging Face's Trainer\n\n{model}, {args.precision}, {device}, "
             f"global batch {args.batch_size}, {args.steps} steps, SEQ_LEN {args.seq_len}; samples/s after "
             f"{WARMUP_STEPS} warm-up steps.\n\n| loop | samples/s |\n|---|---|\n"
             f"| transformers Trainer (padded to {args.seq_len}) | {theirs['samples_per_s']:.2f} |\n"
             f"| python -m train (batches cut to their longest) | {ours['samples_per_s']:.2f} |\n"
             f"\nours / Trainer: {ours['samples_per_s'] / theirs['samples_per_s']:.2f}x\n")
    path = args.build_dir / "bench" / "train_vs_trainer.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(table)
    print(table)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    run_main(main)
