"""How one optimiser step's forward and backward run: in one process, DDP over ranks, or a pipeline of stages.

Each engine takes the rows of one accumulation slice (the whole global batch when ACCUMULATE=1), leaves
every parameter's gradient of `factor x mean loss over the slice` summed into .grad, and returns the
slice's mean losses: the task's loss function gives [the loss minimised, then its parts] (pre-training's MLM
and NSP). The loop (train/loop.py) owns everything else, the same for all three.
"""

from __future__ import annotations

import inspect
import json
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from common.errors import HarnessError
from train.model import QaStage, layer_split, pipe_layers, pipe_stage_layers, qa_loss, qa_losses, qa_stage_names

SCHEDULES = ("1f1b", "gpipe")


class Batches:
    """Rows of the training features as tensors on a device, cut to the longest row or padded to all positions."""

    def __init__(self, features, device: torch.device, trim: bool):
        self.features, self.device, self.trim = features, device, trim

    def tensors(self, rows: np.ndarray) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        features = self.features
        length = int(features.lengths[rows].max()) if self.trim else features.seq_length
        inputs = tuple(torch.from_numpy(array[rows, :length].astype(np.int64)).to(self.device)
                       for array in (features.input_ids, features.segment_ids, features.input_mask))
        positions = np.stack([features.start_position[rows], features.end_position[rows]], axis=1)
        return inputs, torch.from_numpy(positions).to(self.device)


class SingleEngine:
    """PARALLEL=none: one process, one stage over every layer."""

    world = 1
    runs_optimizer = False  # the loop steps the optimiser and schedule, and checkpoints their state

    def __init__(self, stage: torch.nn.Module, batches, loss=qa_losses):
        self.stage, self.module, self.batches, self.loss = stage, stage, batches, loss

    def forward_backward(self, rows: np.ndarray, factor: float, last_slice: bool) -> np.ndarray:
        inputs, targets = self.batches.tensors(rows)
        losses = self.loss(self.module(*inputs), targets)
        (losses[0] * factor).backward()
        return losses.detach().double().cpu().numpy()

    def state_dict(self) -> dict:
        """The whole model's weights (rank 0 of a pipeline gathers every stage's)."""
        return self.stage.state_dict()

    def reduce_sum(self, values: list[float]) -> list[float]:
        """Summed over ranks (the step's loss, whether anyone was interrupted): one message per step."""
        return values

    def gradient_norm(self) -> float:
        return gradient_norm(self.stage.parameters())


class DdpEngine(SingleEngine):
    """PARALLEL=ddp: every rank a full replica on its share of each slice; DDP averages the gradients."""

    def __init__(self, stage: torch.nn.Module, batches, rank: int, world: int, device: torch.device, loss=qa_losses):
        from torch.nn.parallel import DistributedDataParallel

        self.stage, self.batches, self.rank, self.world, self.loss = stage, batches, rank, world, loss
        self.module = DistributedDataParallel(stage, device_ids=[device] if device.type == "cuda" else None)

    def forward_backward(self, rows: np.ndarray, factor: float, last_slice: bool) -> np.ndarray:
        share = np.array_split(rows, self.world)[self.rank]
        with nullcontext() if last_slice else self.module.no_sync():  # gradients averaged once per step
            return super().forward_backward(share, factor, last_slice) / self.world  # the loop sums ranks

    def reduce_sum(self, values: list[float]) -> list[float]:
        return all_reduce_sum(values, self.batches.device)


class PipelineEngine:
    """PARALLEL=pipeline: this rank is one stage; torch.distributed.pipelining runs the microbatches."""

    runs_optimizer = False

    def __init__(self, model, batches: Batches, rank: int, stages: int, microbatches: int, schedule: str,
                 autocast_dtype: torch.dtype | None, device: torch.device):
        from torch.distributed.pipelining import PipelineStage, Schedule1F1B, ScheduleGPipe

        self.batches, self.rank, self.world, self.microbatches = batches, rank, stages, microbatches
        layers = layer_split(model.config.num_hidden_layers, stages)[rank]
        self.stage = QaStage(model, layers, autocast_dtype).to(device)
        self.module = self.stage
        self.factor = 1.0
        pipeline_stage = PipelineStage(self.stage, rank, stages, device)
        scheduler = {"1f1b": Schedule1F1B, "gpipe": ScheduleGPipe}[schedule]
        options = {"scale_grads": False} if "scale_grads" in inspect.signature(scheduler).parameters else {}
        self.schedule = scheduler(pipeline_stage, microbatches, loss_fn=self._loss, **options)

    def _loss(self, logits: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Per microbatch: each is 1/M of the slice, so the summed gradients are those of the slice's mean."""
        return qa_loss(logits, positions) * (self.factor / self.microbatches)

    def forward_backward(self, rows: np.ndarray, factor: float, last_slice: bool) -> np.ndarray:
        inputs, positions = self.batches.tensors(rows)
        self.factor = factor
        losses: list[torch.Tensor] = []
        if self.stage.first:
            self.schedule.step(*inputs, target=positions if self.stage.last else None, losses=losses)
        elif self.stage.last:
            self.schedule.step(target=positions, losses=losses)
        else:
            self.schedule.step()
        return np.array([sum(loss.item() for loss in losses) / factor])  # the last stage's; 0 elsewhere (summed)

    def state_dict(self) -> dict:
        """Rank 0: every stage's weights merged into one state dict; other ranks send theirs and get {}."""
        return gathered_state(self.stage, self.rank, self.world)

    def reduce_sum(self, values: list[float]) -> list[float]:
        return all_reduce_sum(values, self.batches.device)

    def gradient_norm(self) -> float:
        """Of the whole model: the squares summed over the stages."""
        return self.reduce_sum([gradient_norm(self.stage.parameters()) ** 2])[0] ** 0.5


class DeepSpeedPipelineEngine:
    """PARALLEL=deepspeed-pipeline: the same layers as a DeepSpeed PipelineModule, one stage per rank (the encoder
    layers split as PARALLEL=pipeline splits them, the first stage embedding, the last scoring), WORKERS / STAGES
    copies of the whole pipeline (DeepSpeed's data parallelism; ZERO=1 splits the optimiser's state over them).
    DeepSpeed's engine runs each step's micro-batches, sums their gradients, clips them and steps our optimiser
    and schedule, and writes the checkpoints: `train_batch` is the whole step, with ds_config.json (written from
    our settings into the run folder) saying how."""

    runs_optimizer = True  # the loop leaves the step, the schedule and the checkpoints' weights to it

    def __init__(self, model, batches: Batches, rank: int, world: int, stages: int,
                 autocast_dtype: torch.dtype | None):
        import deepspeed
        from deepspeed.pipe import PipelineModule

        deepspeed.init_distributed(dist_backend=dist.get_backend())  # on the group the ranks already joined
        self.batches, self.rank, self.world, self.layers = batches, rank, world, model.config.num_hidden_layers
        self.stage = PipelineModule(pipe_layers(model, autocast_dtype), num_stages=stages, loss_fn=qa_loss,
                                    partition_method="type:^EncoderPipeLayer$")
        split, ours = pipe_stage_layers(self.stage.partitions(), self.layers), layer_split(self.layers, stages)
        if split != ours:  # comparing it with PARALLEL=pipeline needs the same stages
            raise HarnessError(f"DeepSpeed split the {self.layers} encoder layers as {[list(part) for part in split]}, "
                               f"not as PARALLEL=pipeline does ({[list(part) for part in ours]})")
        self.module = self.stage
        self.replicas, self.replica = world // stages, self.stage.topology().get_coord(rank).data
        self.engine = None

    def start(self, optimizer, scheduler, config, run_dir) -> None:
        import deepspeed

        micro_batches = config.accumulate * config.microbatches
        settings = {"train_batch_size": config.batch_size, "gradient_accumulation_steps": micro_batches,
                    "train_micro_batch_size_per_gpu": config.batch_size // (micro_batches * self.replicas),
                    "gradient_clipping": config.max_grad_norm, "zero_optimization": {"stage": config.zero},
                    "steps_per_print": 2 ** 31, "wall_clock_breakdown": False}
        if run_dir is not None:
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / "ds_config.json").write_text(json.dumps(settings, indent=2) + "\n")
        self.engine, *_ = deepspeed.initialize(model=self.stage, optimizer=optimizer, lr_scheduler=scheduler,
                                               config=settings)
        self.micro_batches = micro_batches

    def train_batch(self, rows: np.ndarray) -> np.ndarray:
        """One optimiser step over `rows` (this replica's share of them); the mean loss over every replica on the
        last stages, shared among them, 0 on the others (the loop sums ranks)."""
        share = np.array_split(rows, self.replicas)[self.replica]
        pieces = [self.batches.tensors(piece) for piece in np.split(share, self.micro_batches)]
        loss = float(self.engine.train_batch(data_iter=iter(pieces)))  # averaged over the replicas by DeepSpeed
        return np.array([loss / self.replicas if self.engine.is_last_stage() else 0.0])

    def save(self, directory: Path) -> None:
        """Every rank: DeepSpeed's own checkpoint of its weights, optimiser state (ZeRO's partitions) and schedule."""
        self.engine.save_checkpoint(str(directory), tag="deepspeed", save_latest=False)

    def load(self, directory: Path) -> None:
        path, _ = self.engine.load_checkpoint(str(directory), tag="deepspeed")
        if path is None:
            raise HarnessError(f"{directory} holds no DeepSpeed checkpoint; delete {directory.parent} to start the run "
                               "over")

    def state_dict(self) -> dict:
        """Rank 0: every stage's weights under the full model's names; other ranks send theirs and get {}."""
        merged = gathered_state(self.stage, self.rank, self.world)
        return qa_stage_names(merged, self.layers) if self.rank == 0 else {}

    def reduce_sum(self, values: list[float]) -> list[float]:
        return all_reduce_sum(values, self.batches.device)


def gathered_state(stage: torch.nn.Module, rank: int, world: int) -> dict:
    """Rank 0: every rank's weights (a stage's each; replicas' are equal) merged into one state dict; {} elsewhere."""
    parts: list = [None] * world
    local = {key: value.cpu() for key, value in stage.state_dict().items()}
    dist.gather_object(local, parts if rank == 0 else None, dst=0)
    return {key: value for part in parts for key, value in part.items()} if rank == 0 else {}


def all_reduce_sum(values: list[float], device: torch.device) -> list[float]:
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def gradient_norm(parameters) -> float:
    """The L2 norm of these parameters' gradients (infinite or NaN where fp16 overflowed)."""
    return sum(float(p.grad.detach().float().pow(2).sum()) for p in parameters if p.grad is not None) ** 0.5
