"""`make train` / `python -m train`: fine-tune a BERT question-answering model on SQuAD, or pre-train one
(`make pretrain`: masked-language-model and next-sentence heads), measured step by step.

    python -m train --model DIR | --shape S  [--parallel none|ddp|pipeline|deepspeed-pipeline] [--workers N]
        [--stages N] [--microbatches M] [--schedule 1f1b|gpipe] [--zero 0|1] [--precision fp32|bf16|fp16]
        [--steps N | --epochs N] [--batch-size B] [--accumulate K] [--lr X] [--dataset dev-split|squad|squad_v2]
        [--resume] [--run NAME]
    python -m train --task pretrain --shape S [--seq-len 128|384] [--micro-batch B] [--accumulate K]
        [--parallel ddp --workers N] [--max-predictions P] [--dataset synthetic|FILE|HUB] [--steps-per-log N]

The run folder build/train/<run>/ holds run.json, steps.jsonl, evals.jsonl, checkpoints/, summary.json and
model/ (a Hugging Face directory: `make accuracy MODEL=build/train/<run>/model`); a pre-training run holds
run.json, steps.jsonl (MLM and NSP losses apart), summary.json and, with matplotlib, steps.png.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import sys
from pathlib import Path

from common.cli import REPO, ArgumentParser, run_main
from common.errors import HarnessError, reason
from common.variables import add_variables

EPILOG = """examples:
  make train MODEL=../shared/models/minilm-squad-devhalf STEPS=30
  make train MODEL=bert-base-uncased PARALLEL=ddp WORKERS=4 PRECISION=bf16 EPOCHS=2
  make train SHAPE=bert-base PARALLEL=pipeline STAGES=4 MICROBATCHES=8 SCHEDULE=gpipe
  make train ... RESUME=1        continue an interrupted run from its last checkpoint
  make pretrain SHAPE=bert-large SEQ_LEN=128 MICRO_BATCH=32 ACCUMULATE=4 PRECISION=bf16 STEPS=100
  make pretrain SHAPE=tiny DATASET=corpus.txt PARALLEL=ddp WORKERS=2 STEPS_PER_LOG=10
  make train-compare             the same data and seed on 1 worker, DDP, 2 and 4 pipeline stages"""


def parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="python -m train", description=__doc__.split("\n\n")[0], epilog=EPILOG,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    add_variables(parser, "train", build_dir={"default": REPO / "build"})
    parser.add_argument("--local_rank", "--local-rank", type=int, metavar="N",
                        help="given by DeepSpeed's launcher (deepspeed --num_gpus N --module train ...), which also "
                             "sets LOCAL_RANK, the one read")
    return parser


def check_run_folder(folder: Path, config, resume: bool) -> None:
    """A new run refuses a folder that holds one; RESUME=1 needs one, started with the same settings."""
    saved = folder / "run.json"
    if not resume:
        if saved.is_file():
            raise HarnessError(f"{folder} already holds a run: RESUME=1 continues it, RUN=<name> starts another, or "
                               f"delete the folder to start it over")
        return
    if not saved.is_file():
        raise HarnessError(f"RESUME=1 but {folder} holds no run to continue; drop RESUME to start it")
    before = json.loads(saved.read_text())["config"]
    changed = [f"{key.upper()}={before.get(key)!r} then, {value!r} now" for key, value in config.as_dict().items()
               if before.get(key) != value]
    if changed:
        raise HarnessError(f"RESUME=1 continues {folder} with the settings it started with; these differ: "
                           f"{'; '.join(changed)}")


def main() -> int:
    args = parser().parse_args()
    from harness.distributed import launched_rank, start_local_ranks
    from train.config import resolve_and_check, run_dir

    config, model_name = resolve_and_check(args)
    folder = run_dir(args.build_dir, args.run or config.default_run_name(model_name))
    rank = launched_rank()
    if rank is None or rank.is_leader:
        check_run_folder(folder, config, args.resume)
    children = []
    if rank is None and config.workers > 1:
        children = start_local_ranks(config.workers, ["train", *sys.argv[1:]])
        rank = launched_rank()
    if rank is not None and rank.world != config.workers:
        raise HarnessError(f"started as {rank.world} ranks, but the settings ask for {config.workers} "
                           f"({'STAGES' if config.parallel == 'pipeline' else 'WORKERS'}); give the same number")
    return train(config, args, folder, rank, model_name, children)


def lost_rank(error: RuntimeError, step: int, folder: Path, children: list) -> HarnessError:
    """A collective that failed because another rank went away: which one, and how to go on."""
    import time

    from train.checkpoint import latest_step

    time.sleep(0.5)  # let a dying rank's exit be seen
    dead = [str(index + 1) for index, child in enumerate(children) if child.poll() is not None]
    who = f"rank {', '.join(dead)} exited" if dead else "another rank failed or exited (its error, if any, is above)"
    saved = latest_step(folder)
    resume = (f"RESUME=1 continues from the checkpoint of step {saved}" if saved is not None else
              "no checkpoint was written yet (CHECKPOINT_EVERY=), so start it again")
    return HarnessError(f"{who} during step {step + 1} ({reason(error)}); every rank has "
                        f"stopped: {resume}")


def train(config, args, folder: Path, rank, model_name: str, children: list) -> int:
    import torch

    from harness.distributed import join, leave, rank_device
    from qsl.dataset import SHIPPED_VOCAB, VOCAB_SHA256
    from qsl.features import Featurisation
    from qsl.tokenizer import load_tokenizer
    from train.data import load_split
    from train.loop import (
        Interrupted,
        Place,
        Recorder,
        Trainer,
        finetuning_task,
        install_interrupt_flag,
        pretraining_task,
        summarise,
    )
    from train.model import load_for_training, set_dropout
    from train.pretrain import load_samples, plot_steps, pretraining_model

    if rank is not None:
        device = rank_device(config.device, rank)
        if device.startswith("cuda"):
            torch.cuda.set_device(device)
        join(rank, (device,), "nccl" if device.startswith("cuda") else "gloo")
        place = Place(rank.rank, rank.world, device)
    else:
        place = Place(device=config.device)
    log = print if place.leader else (lambda *_: None)
    torch.manual_seed(config.seed)  # a new head's weights: the same on every rank
    tokenizer = load_tokenizer()
    if config.task == "pretrain":
        model = pretraining_model(config.bert_shape(), config.seed)
        samples = load_samples(config.dataset, tokenizer, config.seq_length, config.max_predictions,
                               config.batch_size * min(config.steps, 256), config.seed, log)
        task, what = pretraining_task(samples, torch.device(place.device)), f"{len(samples)} pre-training samples"
    else:
        model = load_for_training(config.model, config.bert_shape(), args.build_dir, config.seed, log)
        featurisation = Featurisation(config.seq_length, config.doc_stride)
        cache = args.build_dir / "train" / "data"
        train_split = load_split(config.dataset, "train", tokenizer, VOCAB_SHA256, featurisation, cache, log)
        validation = load_split(config.dataset, "validation", tokenizer, VOCAB_SHA256, featurisation, cache, log)
        task = finetuning_task(train_split, validation, torch.device(place.device), config.parallel)
        what = f"{len(train_split.features)} training features"
    if config.dropout is not None:
        set_dropout(model, config.dropout)
    trainer = Trainer(config, model, model_name, task, tokenizer, folder, place, SHIPPED_VOCAB, log)
    step = trainer.resume() if args.resume else 0
    if args.resume and step == trainer.total_steps and (folder / "summary.json").is_file():
        log(f"{folder} finished all {step} steps before: nothing to resume (its model: {folder / 'model'})")
        leave()
        return 0
    if args.resume:
        log(f"resuming {folder.name} at step {step} of {trainer.total_steps}" if step else
            f"{folder.name} has no checkpoint yet: starting it from step 0")
    if place.leader and not args.resume:  # only now: a run that failed to start leaves no folder to get in the way
        folder.mkdir(parents=True, exist_ok=True)
        started = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
        (folder / "run.json").write_text(json.dumps({
            "config": config.as_dict(), "started": started,
            "command": shlex.join([sys.executable, "-m", "train", *sys.argv[1:]])}, indent=2) + "\n")
    recorder = Recorder(folder, step) if place.leader else None
    doing = "pre-training" if config.task == "pretrain" else "training"
    log(f"{doing} {model_name}: {config.parallel} over {place.world} rank{'s' * (place.world > 1)} on "
        f"{config.device}, {config.precision}, {trainer.total_steps} steps of {config.batch_size} features "
        f"({what}, {trainer.order.steps_per_epoch} steps per epoch); "
        f"run folder {folder}")
    interrupted, restore = install_interrupt_flag()
    try:
        session = trainer.run(recorder, interrupted)
    except Interrupted as stopped:
        log(f"stopped at step {stopped} of {trainer.total_steps}, checkpoint written: the same command with "
            f"RESUME=1 continues from it")
        leave()
        return 130
    except RuntimeError as error:
        if place.world == 1:
            raise
        raise lost_rank(error, trainer.step, folder, children) from error
    finally:
        restore()
    model_dir = trainer.save()
    if recorder is not None:
        summary = summarise(recorder, config, session, folder, model_dir)
        (folder / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        keys = (("first_loss", "final_loss", "final_mlm_loss", "final_nsp_loss") if config.task == "pretrain" else
                ("final_loss", "time_to_target_loss_s", "validation_loss", "exact_match", "f1"))
        for key in ("runtime_s", "mean_samples_per_s", "mean_tokens_per_s", *keys, "peak_memory_mb", "gpu_util_mean",
                    "energy_j"):
            log(f"  {key:<22} {summary[key]}")
        log(f"summary: {folder / 'summary.json'}")
        if config.task == "pretrain":
            plotted = plot_steps(recorder.steps, folder / "steps.png")
            log(f"plot: {plotted}" if plotted else "no plot: pip install '.[plot]' for steps.png")
        else:
            log(f"model: {model_dir}\nscore it: make accuracy MODEL={model_dir}")
    leave()
    return 0


if __name__ == "__main__":
    run_main(main)
