"""The training loop, the same for every PARALLEL and task (SQuAD fine-tuning, pre-training): steps, optimiser,
loss scaling, evaluation, checkpoints, metrics.

Step s trains on rows fixed by (SEED, s) alone and reseeds dropout from them too, so a resumed run retraces
the curve an uninterrupted one draws. Rank 0 writes the run folder (build/train/<run>/): run.json,
steps.jsonl (a row per step), evals.jsonl (a row per evaluation), checkpoints/, model/, summary.json.
"""

from __future__ import annotations

import json
import math
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from common.errors import HarnessError
from harness.energy import energy_meter, peak_memory
from train import checkpoint
from train.config import PIPELINES, TrainConfig
from train.data import Split
from train.evaluate import evaluate
from train.lamb import Lamb
from train.model import QaStage, qa_losses, save_model
from train.parallel import Batches, DdpEngine, DeepSpeedPipelineEngine, PipelineEngine, SingleEngine
from train.pretrain import LOSS_PARTS, PretrainingBatches, PretrainingSamples, PretrainStage, pretraining_loss

AUTOCAST = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
THROUGHPUT_WARMUP_STEPS = 5  # left out of the mean throughput (first steps allocate, tune kernels, fill caches)
SMOOTHING_STEPS = 10  # training loss averaged over this many steps for the target-loss time and the final loss


class Interrupted(Exception):
    """Ctrl-C, honoured at the end of a step with a checkpoint of it."""


class LossScale:
    """fp16's loss scale: dynamic (halved on overflow, doubled after 2000 clean steps) or, given a value, static;
    1 and fixed in other precisions. A step whose gradients overflow is skipped either way."""

    def __init__(self, enabled: bool, static: float | None = None):
        self.enabled = enabled and static is None
        self.value, self.clean_steps = (static or 2.0 ** 16) if enabled else 1.0, 0

    def update(self, finite: bool) -> None:
        if not self.enabled:
            return
        self.clean_steps = self.clean_steps + 1 if finite else 0
        if not finite:
            self.value /= 2
        elif self.clean_steps == 2000:
            self.value, self.clean_steps = self.value * 2, 0


class Order:
    """Which training rows each step takes: a fresh permutation (from SEED and the epoch) per epoch."""

    def __init__(self, rows: np.ndarray, batch_size: int, seed: int):
        self.rows, self.batch_size, self.seed = rows, batch_size, seed
        self.steps_per_epoch = len(rows) // batch_size
        if self.steps_per_epoch == 0:
            raise HarnessError(f"BATCH_SIZE={batch_size} is larger than the {len(rows)} training features")
        self._epoch, self._permutation = -1, rows

    def batch(self, step: int) -> np.ndarray:
        epoch, index = divmod(step, self.steps_per_epoch)
        if epoch != self._epoch:
            self._epoch, self._permutation = epoch, np.random.default_rng([self.seed, epoch]).permutation(self.rows)
        return self._permutation[index * self.batch_size:(index + 1) * self.batch_size]


def linear_schedule(total_steps: int, warmup_steps: int):
    """The learning-rate factor at a step: up from 0 over the warm-up, then down to 0 at the last step."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return step / warmup_steps
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return factor


def parameter_groups(module: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on the matrices only, not on biases or LayerNorm (BERT's recipe)."""
    decay, plain = [], []
    for name, parameter in module.named_parameters():
        (plain if name.endswith("bias") or "LayerNorm" in name else decay).append(parameter)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": plain, "weight_decay": 0.0}]


@dataclass
class Task:
    """What a task gives the loop: the rows steps draw from, their tensors, the stage trained and its loss.

    Fine-tuning also validates (held-out questions) and saves the model; pre-training measures only: no
    evaluation, no model, and checkpoints only where CHECKPOINT_EVERY or a Ctrl-C asks for one.
    """

    rows: np.ndarray
    lengths: np.ndarray  # tokens of every row
    batches: object  # .tensors(rows) -> (the stage's inputs, the loss's targets)
    stage: Callable[[object, torch.dtype | None], torch.nn.Module]  # (model, autocast dtype) -> the whole model
    loss: Callable
    loss_parts: tuple[str, ...] = ()
    validation: Split | None = None

    @property
    def measures_only(self) -> bool:
        return self.validation is None


def finetuning_task(train: Split, validation: Split, device: torch.device, parallel: str) -> Task:
    features = train.features
    batches = Batches(features, device, trim=parallel not in PIPELINES)
    return Task(np.flatnonzero(features.trainable), features.lengths, batches,
                lambda model, dtype: QaStage(model, range(model.config.num_hidden_layers), dtype), qa_losses,
                validation=validation)


def pretraining_task(samples: PretrainingSamples, device: torch.device) -> Task:
    return Task(np.arange(len(samples)), samples.lengths, PretrainingBatches(samples, device), PretrainStage,
                pretraining_loss, LOSS_PARTS)


@dataclass
class Place:
    rank: int = 0
    world: int = 1
    device: str = "cpu"

    @property
    def leader(self) -> bool:
        return self.rank == 0


class Recorder:
    """Rank 0's files: rows appended and flushed as they happen; a resumed run first drops rows past its checkpoint."""

    def __init__(self, run_dir: Path, resume_step: int):
        self.steps_path, self.evals_path = run_dir / "steps.jsonl", run_dir / "evals.jsonl"
        self.steps = self._kept(self.steps_path, resume_step)
        self.evals = self._kept(self.evals_path, resume_step)

    @staticmethod
    def _kept(path: Path, step: int) -> list[dict]:
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []
        rows = [row for row in rows if row["step"] <= step]
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
        return rows

    def add(self, path: Path, rows: list[dict], row: dict) -> None:
        rows.append(row)
        with path.open("a") as file:
            file.write(json.dumps(row) + "\n")


class Trainer:
    def __init__(self, config: TrainConfig, model, model_name: str, task: Task, tokenizer, run_dir: Path,
                 place: Place, vocabulary: Path, log=print):
        self.config, self.task, self.tokenizer = config, task, tokenizer
        self.run_dir, self.place, self.vocabulary, self.log = run_dir, place, vocabulary, log
        self.model_name, self.model_config = model_name, model.config
        self.device = torch.device(place.device)
        self.autocast = AUTOCAST[config.precision]
        if config.parallel == "pipeline":
            self.engine = PipelineEngine(model, task.batches, place.rank, config.stages, config.microbatches,
                                         config.schedule, self.autocast, self.device)
        elif config.parallel == "deepspeed-pipeline":
            self.engine = DeepSpeedPipelineEngine(model, task.batches, place.rank, place.world, config.stages,
                                                  self.autocast)
        else:
            stage = task.stage(model, self.autocast).to(self.device)
            self.engine = (DdpEngine(stage, task.batches, place.rank, place.world, self.device, task.loss)
                           if config.parallel == "ddp" else SingleEngine(stage, task.batches, task.loss))
        self.order = Order(task.rows, config.batch_size, config.seed)
        self.total_steps = config.steps or config.epochs * self.order.steps_per_epoch
        optimiser = Lamb if config.optimizer == "lamb" else torch.optim.AdamW
        self.optimizer = optimiser(parameter_groups(self.engine.stage, config.weight_decay), lr=config.lr)
        warmup_steps = int(config.warmup * self.total_steps)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, linear_schedule(self.total_steps,
                                                                                           warmup_steps))
        self.loss_scale = LossScale(config.precision == "fp16", config.loss_scale)
        if self.engine.runs_optimizer:  # DeepSpeed: it steps our optimiser and schedule itself
            self.engine.start(self.optimizer, self.scheduler, config, run_dir if place.leader else None)
        self.step, self.elapsed = 0, 0.0  # steps done; wall seconds before this session (a resumed run)
        self.train_seconds = 0.0  # in steps alone, evaluation and checkpoints left out: the x axis of comparisons
        self.eval_model: QaStage | None = None

    # -- checkpoints --------------------------------------------------------------------------------------
    def _writes_checkpoint(self) -> bool:
        return self.place.leader or self.config.pipelined

    def save_checkpoint(self) -> None:
        if self._writes_checkpoint():
            state = {"loss_scale": vars(self.loss_scale), "step": self.step,
                     "elapsed": self.elapsed + self.session_seconds(), "train_seconds": self.train_seconds}
            if self.engine.runs_optimizer:
                self.engine.save(checkpoint.step_dir(self.run_dir, self.step))
            else:
                state.update(model=self.engine.stage.state_dict(), optimizer=self.optimizer.state_dict(),
                             scheduler=self.scheduler.state_dict())
            checkpoint.write_part(self.run_dir, self.step, self.place.rank, state)
        self.barrier()
        if self.place.leader:
            checkpoint.publish(self.run_dir, self.step, self.place.world if self.config.pipelined else 1)

    def resume(self) -> int:
        """Load the latest checkpoint, if any; the step it reached (0 when none)."""
        step = checkpoint.latest_step(self.run_dir)
        if step is None:
            return 0
        part = checkpoint.read_part(self.run_dir, step, self.place.rank if self.config.pipelined else 0)
        if self.engine.runs_optimizer:
            self.engine.load(checkpoint.step_dir(self.run_dir, step))
        else:
            self.engine.stage.load_state_dict(part["model"])
            self.optimizer.load_state_dict(part["optimizer"])
            self.scheduler.load_state_dict(part["scheduler"])
        vars(self.loss_scale).update(part["loss_scale"])
        self.step, self.elapsed, self.train_seconds = part["step"], part["elapsed"], part["train_seconds"]
        return step

    # -- helpers ----------------------------------------------------------------------------------------
    def barrier(self) -> None:
        if self.place.world > 1:
            torch.distributed.barrier()

    def session_seconds(self) -> float:
        return time.perf_counter() - self.started

    def synchronise(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def full_model(self) -> QaStage | None:
        """Rank 0: the whole model with the current weights (a pipeline's stages gathered); None elsewhere."""
        if not self.config.pipelined:
            return self.engine.stage if self.place.leader else None
        state = self.engine.state_dict()
        if not self.place.leader:
            return None
        if self.eval_model is None:
            from transformers import BertForQuestionAnswering

            template = BertForQuestionAnswering(self.model_config)
            self.eval_model = QaStage(template, range(self.model_config.num_hidden_layers), self.autocast)
            self.eval_model.to(self.device)
        self.eval_model.load_state_dict(state)
        return self.eval_model

    # -- the loop ---------------------------------------------------------------------------------------
    def train_step(self, rows: np.ndarray) -> tuple[np.ndarray, float, bool]:
        """One optimiser step over the global batch: its mean losses (the loss, then its parts), the learning rate
        it used, whether it was kept."""
        config = self.config
        torch.manual_seed(config.seed * 1_000_003 + self.step * 1_000 + self.place.rank)  # dropout, step by step
        if self.engine.runs_optimizer:
            learning_rate = self.scheduler.get_last_lr()[0]
            return self.engine.train_batch(rows), learning_rate, True
        factor = self.loss_scale.value / config.accumulate
        loss = np.zeros(1 + len(self.task.loss_parts))
        slices = np.split(rows, config.accumulate)
        for index, rows_of_slice in enumerate(slices):
            loss += self.engine.forward_backward(rows_of_slice, factor, last_slice=index == len(slices) - 1)
        norm = self.engine.gradient_norm() / self.loss_scale.value
        finite = math.isfinite(norm)
        learning_rate = self.scheduler.get_last_lr()[0]
        if finite:  # unscale and clip in one multiply
            multiplier = min(1.0, config.max_grad_norm / (norm + 1e-6)) / self.loss_scale.value
            for parameter in self.engine.stage.parameters():
                if parameter.grad is not None:
                    parameter.grad.mul_(multiplier)
            self.optimizer.step()
        self.loss_scale.update(finite)
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss / config.accumulate, learning_rate, finite

    def run(self, recorder: Recorder | None, interrupted) -> dict:
        from tqdm import tqdm

        place = self.place
        meter = energy_meter(place.device)
        self.started = time.perf_counter()
        meter.start()
        with tqdm(total=self.total_steps, initial=self.step, desc="train", unit="step", disable=not place.leader,
                  dynamic_ncols=True) as bar:  # closed on any way out, so an error prints on a line of its own
            if self.step == 0 and self.config.eval_every and not self.task.measures_only:  # the curve's start
                self.validate(recorder)
            self.engine.stage.train()
            while self.step < self.total_steps:
                stop = self.run_step(recorder, interrupted, meter, bar)
                if stop:
                    raise Interrupted(self.step)
        return {"energy": meter.stop(), "runtime_s": self.elapsed + self.session_seconds()}

    def run_step(self, recorder: Recorder | None, interrupted, meter, bar) -> bool:
        """One step, its row, and the evaluation and checkpoint due after it; whether any rank asked to stop."""
        config, task = self.config, self.task
        rows = self.order.batch(self.step)
        began = time.perf_counter()
        losses, learning_rate, kept = self.train_step(rows)
        *losses, stop = self.engine.reduce_sum([*losses, float(interrupted())])
        self.synchronise()
        seconds = time.perf_counter() - began
        self.step += 1
        self.train_seconds += seconds
        loss, parts = losses[0], dict(zip(task.loss_parts, losses[1:], strict=True))
        if recorder is not None:
            samples_per_s = len(rows) / seconds
            tokens_per_s = float(task.lengths[rows].sum()) / seconds
            recorder.add(recorder.steps_path, recorder.steps, {
                "step": self.step, "epoch": (self.step - 1) // self.order.steps_per_epoch + 1,
                "wall_s": round(self.elapsed + self.session_seconds(), 4), "train_s": round(self.train_seconds, 4),
                "step_s": round(seconds, 5), "samples_per_s": round(samples_per_s, 3),
                "tokens_per_s": round(tokens_per_s, 1), "loss": loss, **parts, "lr": learning_rate, "kept": kept,
                "loss_scale": self.loss_scale.value,
                "peak_memory_mb": round(peak_memory(self.place.device) / 2 ** 20, 1), "gpu_util": meter.utilisation()})
            bar.set_postfix(loss=f"{loss:.3f}", samples_s=f"{samples_per_s:.1f}", refresh=False)
            if config.steps_per_log and self.step % config.steps_per_log == 0:
                described = "".join(f", {name.removesuffix('_loss')} {value:.4f}" for name, value in parts.items())
                bar.write(f"step {self.step}: loss {loss:.4f}{described}, {samples_per_s:.1f} samples/s, "
                          f"{tokens_per_s:.0f} tokens/s")
        bar.update(1)
        last = self.step == self.total_steps
        end_of_epoch = self.step % self.order.steps_per_epoch == 0
        ends = (last or end_of_epoch) and not task.measures_only
        if ends or (config.eval_every and self.step % config.eval_every == 0 and not task.measures_only):
            self.validate(recorder)
        if stop or ends or (config.checkpoint_every and self.step % config.checkpoint_every == 0):
            self.save_checkpoint()
        return bool(stop)

    def validate(self, recorder: Recorder | None) -> None:
        model = self.full_model()
        if model is not None:
            model.eval()
            evaluation = evaluate(model, self.task.validation, self.tokenizer, self.vocabulary, self.device,
                                  self.config.val_questions, show_progress=True)
            if recorder is not None:
                recorder.add(recorder.evals_path, recorder.evals, {
                    "step": self.step, "epoch": round(self.step / self.order.steps_per_epoch, 3),
                    "wall_s": round(self.elapsed + self.session_seconds(), 3), "train_s": round(self.train_seconds, 4),
                    **evaluation.as_dict()})
            self.log(f"step {self.step}: {evaluation.describe()}")
        self.barrier()
        self.engine.stage.train()

    def save(self) -> Path | None:
        """The fine-tuned model as a Hugging Face directory (rank 0), for `make accuracy MODEL=...`; pre-training
        saves none."""
        model = None if self.task.measures_only else self.full_model()
        if model is None:
            return None
        from transformers import BertForQuestionAnswering

        notes = {"trained_by": "python -m train", "steps": self.step, **self.config.as_dict()}
        return save_model(BertForQuestionAnswering(self.model_config), {key: value.cpu() for key, value in
                                                                        model.state_dict().items()},
                          self.run_dir / "model", self.vocabulary, notes)


def install_interrupt_flag():
    """The first Ctrl-C asks for a stop after the current step (checkpointed); a second one stops at once."""
    flag = {"set": False}

    def handler(signum, frame):
        if flag["set"]:
            raise KeyboardInterrupt
        flag["set"] = True
        print("\nCtrl-C: stopping after this step with a checkpoint (Ctrl-C again to stop at once, losing the "
              "step)", flush=True)

    previous = signal.signal(signal.SIGINT, handler)
    return (lambda: flag["set"]), (lambda: signal.signal(signal.SIGINT, previous))


def smoothed_mean(steps: list[dict], key: str) -> float:
    """Of the last SMOOTHING_STEPS rows: a final loss that one noisy step does not decide."""
    return float(np.mean([row[key] for row in steps[-SMOOTHING_STEPS:]]))


def summarise(recorder: Recorder, config: TrainConfig, session: dict, run_dir: Path, model_dir: Path | None) -> dict:
    steps, evals = recorder.steps, recorder.evals
    measured = steps[THROUGHPUT_WARMUP_STEPS:] or steps
    seconds = sum(row["step_s"] for row in measured)
    losses = [row["loss"] for row in steps]
    smoothed = [float(np.mean(losses[max(0, index - SMOOTHING_STEPS + 1):index + 1])) for index in range(len(losses))]
    reached = next((steps[index]["train_s"] for index, value in enumerate(smoothed) if value <= config.target_loss),
                   None)
    energy = session["energy"]
    last_eval = evals[-1] if evals else {}
    utilisation = [row["gpu_util"] for row in steps if row["gpu_util"] is not None]
    return {
        "run": run_dir.name, "task": config.task, "parallel": config.parallel, "workers": config.workers,
        "stages": config.stages,
        "schedule": config.schedule if config.parallel == "pipeline" else None, "precision": config.precision,
        "device": config.device, "batch_size": config.batch_size, "steps": len(steps),
        "samples": len(steps) * config.batch_size, "runtime_s": round(session["runtime_s"], 3),
        "train_s": round(steps[-1]["train_s"], 3) if steps else 0.0,
        "mean_samples_per_s": round(len(measured) * config.batch_size / seconds, 3) if seconds else None,
        "mean_tokens_per_s": round(sum(row["tokens_per_s"] * row["step_s"] for row in measured) / seconds, 1)
        if seconds else None,
        "throughput_warmup_steps": len(steps) - len(measured),
        "first_loss": losses[0] if losses else None, "final_loss": smoothed[-1] if smoothed else None,
        **{f"final_{part}": smoothed_mean(steps, part) for part in LOSS_PARTS if steps and part in steps[-1]},
        "target_loss": config.target_loss,
        "time_to_target_loss_s": reached,
        "validation_loss": last_eval.get("loss"), "exact_match": last_eval.get("exact_match"),
        "f1": last_eval.get("f1"), "validation_questions": last_eval.get("questions"),
        "peak_memory_mb": max((row["peak_memory_mb"] for row in steps), default=None),
        "gpu_util_mean": round(float(np.mean(utilisation)), 1) if utilisation else None,
        "energy_j": energy.joules, "energy_source": energy.source,
        "energy_scope": "this session: steps, evaluations, checkpoints",
        "model_dir": str(model_dir) if model_dir else None,
    }
