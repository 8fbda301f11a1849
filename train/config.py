"""A training run's settings, checked before anything is loaded, and the run's name and folder."""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from common.errors import HarnessError
from common.values import whole_number
from qsl.samples import resolve_samples
from sut.models import parse_shape
from train.data import DATASETS
from train.parallel import SCHEDULES
from train.pretrain import MASK_RATE

TASKS = ("finetune", "pretrain")
PARALLEL_MODES = ("none", "ddp", "pipeline", "deepspeed-pipeline")
PIPELINES = ("pipeline", "deepspeed-pipeline")  # a stage per rank: torch.distributed.pipelining's or DeepSpeed's
PRECISIONS = ("fp32", "bf16", "fp16")
OPTIMIZERS = ("adamw", "lamb")


@dataclass(frozen=True)
class TrainConfig:
    task: str
    model: str | None
    shape: str | None
    dataset: str
    parallel: str
    workers: int
    stages: int
    microbatches: int
    zero: int  # PARALLEL=deepspeed-pipeline: DeepSpeed's ZeRO stage, 0 or 1
    schedule: str
    precision: str
    device: str
    epochs: int
    steps: int | None
    batch_size: int
    accumulate: int
    lr: float
    warmup: float
    weight_decay: float
    max_grad_norm: float
    dropout: float | None
    seed: int
    seq_length: int
    doc_stride: int
    eval_every: int
    val_questions: int | None
    checkpoint_every: int
    target_loss: float
    max_predictions: int  # pre-training: masked word pieces per sequence, at most
    steps_per_log: int  # a console line every N steps (0: none)
    optimizer: str
    loss_scale: float | None  # fp16: a static loss scale; None: dynamic

    def as_dict(self) -> dict:
        return asdict(self)

    def bert_shape(self):
        """SHAPE= parsed (random weights of that shape), or None when MODEL= gives the weights."""
        return parse_shape(self.shape) if self.shape else None

    @property
    def pipelined(self) -> bool:
        return self.parallel in PIPELINES

    @property
    def replicas(self) -> int:
        """Copies of the whole model, each on its share of a step: DDP's ranks, DeepSpeed's pipelines."""
        return self.workers // self.stages if self.pipelined else self.workers

    def default_run_name(self, model_name: str) -> str:
        layout = {"none": "", "ddp": f"-ddp{self.workers}", "pipeline": f"-pipeline{self.stages}-{self.schedule}",
                  "deepspeed-pipeline": f"-deepspeed-pipeline{self.stages}"
                                        f"{f'x{self.replicas}' if self.replicas > 1 else ''}"
                                        f"{f'-zero{self.zero}' if self.zero else ''}"}
        task = f"-pretrain-seq{self.seq_length}" if self.task == "pretrain" else ""
        return re.sub(r"[^A-Za-z0-9._-]+", "-", f"{model_name}{task}{layout[self.parallel]}-{self.precision}-"
                                                 f"{self.device.split(':')[0]}-b{self.batch_size}")


def _number(name: str, value: str | None, default: float, low: float, high: float | None = None) -> float:
    if value in (None, ""):
        return default
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if not low <= number <= (high if high is not None else float("inf")):
        bounds = f"from {low:g} to {high:g}" if high is not None else f"of at least {low:g}"
        raise HarnessError(f"{name}={value} must be a number {bounds}")
    return number


def _choice(name: str, value: str | None, choices: tuple[str, ...]) -> str:
    value = value or choices[0]
    if value not in choices:
        raise HarnessError(f"unknown {name}={value}; choose {', '.join(choices)} (default {choices[0]})")
    return value


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def check_device(device: str, ranks: int) -> None:
    """Refuse more ranks on this machine than it has devices: GPUs on a GPU run, cores on a CPU run."""
    import torch

    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise HarnessError(f"DEVICE={device} but torch sees no GPU ({torch.__version__}); use DEVICE=cpu")
        if ranks > 1 and device != "cuda":
            raise HarnessError(f"DEVICE={device} names one GPU; with {ranks} ranks each takes its own: DEVICE=cuda")
        available, what = torch.cuda.device_count(), "GPUs"
    elif device == "cpu":
        available, what = os.cpu_count() or 1, "CPU cores"
    else:
        raise HarnessError(f"unknown DEVICE={device}; use cpu, cuda or cuda:N")
    if ranks > available:
        raise HarnessError(f"{ranks} ranks on this machine, which has {available} {what}: each rank needs one of its "
                           f"own; give WORKERS (or STAGES) of at most {available}, or spread the ranks over nodes "
                           "with srun (slurm/train.sbatch)")


def resolve(args) -> TrainConfig:
    """Every option as given (or its default), checked against the others; nothing is loaded yet."""
    task = _choice("TASK", args.task, TASKS)
    parallel = _choice("PARALLEL", args.parallel, PARALLEL_MODES)
    workers = whole_number("WORKERS", args.workers, 1)
    stages = whole_number("STAGES", args.stages, 2)
    if parallel == "none" and (workers or 1) > 1:
        raise HarnessError(f"WORKERS={workers} with PARALLEL=none: one process trains; give PARALLEL=ddp (a replica "
                           "per worker) or PARALLEL=pipeline (a stage per worker)")
    if stages is not None and parallel not in PIPELINES:
        raise HarnessError(f"STAGES={stages} splits the model for PARALLEL=pipeline, not PARALLEL={parallel}")
    if parallel in PIPELINES and task == "pretrain":
        raise HarnessError("TASK=pretrain runs PARALLEL=none or ddp; pipelines are for fine-tuning so far")
    if parallel == "deepspeed-pipeline":
        check_deepspeed(args.precision)
    if parallel == "pipeline":
        stages = stages or workers or 2
        if workers is not None and workers != stages:
            raise HarnessError(f"PARALLEL={parallel} runs one rank per stage: WORKERS={workers} but STAGES={stages}; "
                               "give STAGES alone")
        workers = stages
    elif parallel == "deepspeed-pipeline":
        stages = stages or 2
        workers = workers or stages
        if workers % stages:
            raise HarnessError(f"PARALLEL=deepspeed-pipeline runs WORKERS / STAGES copies of the pipeline: WORKERS="
                               f"{workers} is not a multiple of STAGES={stages}")
    elif parallel == "ddp":
        workers = workers or 2
    else:
        workers = 1
    microbatches = whole_number("MICROBATCHES", args.microbatches, 1)
    if microbatches is not None and parallel not in PIPELINES:
        raise HarnessError(f"MICROBATCHES={microbatches} is for PARALLEL=pipeline")
    microbatches = microbatches or 2 * (stages or 1)
    schedule = _choice("SCHEDULE", args.schedule, SCHEDULES)
    if args.schedule and parallel != "pipeline":
        raise HarnessError(f"SCHEDULE={args.schedule} is for PARALLEL=pipeline (DeepSpeed runs its own 1F1B)")
    if args.shape:
        parse_shape(args.shape)
    zero = deepspeed_zero(args.zero, parallel, args.optimizer)
    accumulate = whole_number("ACCUMULATE", args.accumulate, 1) or 1
    batch_size = global_batch(whole_number("BATCH_SIZE", args.batch_size, 1),
                              whole_number("MICRO_BATCH", args.micro_batch, 1), accumulate,
                              workers // (stages or 1) if parallel in PIPELINES else workers)
    if batch_size % accumulate:
        raise HarnessError(f"BATCH_SIZE={batch_size} does not divide into ACCUMULATE={accumulate} equal slices")
    featurisation = resolve_samples("squad", args.seq_len, args.doc_stride).featurisation
    device = args.device or default_device()
    steps = whole_number("STEPS", args.steps, 1)
    dropout = None if args.dropout in (None, "") else _number("DROPOUT", args.dropout, 0.0, 0.0, 0.9)
    val_questions = whole_number("VAL_QUESTIONS", args.val_questions, 1)
    checkpoint_every = whole_number("CHECKPOINT_EVERY", args.checkpoint_every, 0)
    max_predictions = whole_number("MAX_PREDICTIONS", args.max_predictions, 1)
    if task == "pretrain":
        dataset = pretraining_dataset(args.dataset)
        if max_predictions is not None and max_predictions > featurisation.seq_length - 3:
            raise HarnessError(f"MAX_PREDICTIONS={max_predictions} is more than the {featurisation.seq_length - 3} "
                               f"word pieces a {featurisation.seq_length}-token sequence holds")
        for name, value in (("EVAL_EVERY", args.eval_every), ("VAL_QUESTIONS", args.val_questions)):
            if value not in (None, ""):
                raise HarnessError(f"{name}={value} is for fine-tuning: pre-training measures, it does not validate")
    else:
        dataset = _choice("DATASET", args.dataset, DATASETS)
        if max_predictions is not None:
            raise HarnessError(f"MAX_PREDICTIONS={max_predictions} is for TASK=pretrain")
    return TrainConfig(
        task=task, model=args.model or None, shape=args.shape or None, dataset=dataset,
        parallel=parallel, workers=workers, stages=stages or 1, zero=zero,
        microbatches=microbatches if parallel in PIPELINES else 1, schedule=schedule,
        precision=_choice("PRECISION", args.precision, PRECISIONS), device=device,
        epochs=whole_number("EPOCHS", args.epochs, 1) or 2, steps=steps or (50 if task == "pretrain" else None),
        batch_size=batch_size, accumulate=accumulate,
        lr=_number("LR", args.lr, 1e-4 if task == "pretrain" else 5e-5, 1e-9, 1.0),
        warmup=_number("WARMUP", args.warmup, 0.1, 0.0, 1.0), weight_decay=0.01, max_grad_norm=1.0,
        dropout=dropout, seed=whole_number("SEED", args.seed, 0) or 0, seq_length=featurisation.seq_length,
        doc_stride=featurisation.doc_stride, eval_every=whole_number("EVAL_EVERY", args.eval_every, 0) or 0,
        val_questions=val_questions,
        checkpoint_every=checkpoint_every if checkpoint_every is not None else 0 if task == "pretrain" else 100,
        target_loss=_number("TARGET_LOSS", args.target_loss, 2.0, 0.0),
        max_predictions=max_predictions or max(1, round(featurisation.seq_length * MASK_RATE) + 1),
        steps_per_log=whole_number("STEPS_PER_LOG", args.steps_per_log, 0) or 0,
        optimizer=_choice("OPTIMIZER", args.optimizer, OPTIMIZERS), loss_scale=static_loss_scale(args.loss_scale,
                                                                                               args.precision))


def check_deepspeed(precision: str | None) -> None:
    """PARALLEL=deepspeed-pipeline: DeepSpeed installed, and a precision it runs here."""
    import importlib.util

    if importlib.util.find_spec("deepspeed") is None:
        raise HarnessError("PARALLEL=deepspeed-pipeline needs DeepSpeed: pip install '.[deepspeed]'")
    if precision == "fp16":
        raise HarnessError("PARALLEL=deepspeed-pipeline runs fp32 or bf16 (autocast, as the other modes); DeepSpeed's "
                           "fp16 casts the whole model to half and scales the loss itself, which this comparison "
                           "leaves out: give PRECISION=bf16")


def deepspeed_zero(value: str | None, parallel: str, optimizer: str | None) -> int:
    """ZERO: DeepSpeed's ZeRO stage under its pipeline engine, which takes 0 or 1 (2 and 3 split the gradients
    and weights a pipeline stage must hold whole)."""
    if value in (None, ""):
        return 0
    if parallel != "deepspeed-pipeline":
        raise HarnessError(f"ZERO={value} is DeepSpeed's: for PARALLEL=deepspeed-pipeline")
    if value not in ("0", "1"):
        raise HarnessError(f"ZERO={value}: DeepSpeed's pipeline engine runs ZeRO stage 0 or 1 (2 and 3 split the "
                           "gradients and weights that a pipeline stage holds whole)")
    if value == "1" and optimizer == "lamb":
        raise HarnessError("ZERO=1 flattens the weights into one partition per rank, so LAMB's trust ratio, taken "
                           "weight by weight, would be taken over the partition: give OPTIMIZER=adamw")
    return int(value)


def static_loss_scale(value: str | None, precision: str | None) -> float | None:
    """LOSS_SCALE: dynamic (the default) or a number, for PRECISION=fp16 only."""
    if value in (None, "", "dynamic"):
        return None
    if precision != "fp16":
        raise HarnessError(f"LOSS_SCALE={value} is for PRECISION=fp16; bf16 and fp32 need no loss scale")
    return _number("LOSS_SCALE", value, 1.0, 1.0)


def global_batch(batch_size: int | None, micro_batch: int | None, accumulate: int, workers: int) -> int:
    """BATCH_SIZE, or MICRO_BATCH x ACCUMULATE x WORKERS (the replicas), as pre-training recipes give it."""
    if micro_batch is None:
        return batch_size or 32
    product = micro_batch * accumulate * workers
    if batch_size is not None and batch_size != product:
        raise HarnessError(f"BATCH_SIZE={batch_size}, but MICRO_BATCH={micro_batch} x ACCUMULATE={accumulate} x "
                           f"{workers} replica{'s' * (workers > 1)} is {product}: give one of them")
    return product


def pretraining_dataset(dataset: str | None) -> str:
    """synthetic (the default), a text file that is there, or a Hugging Face hub corpus (name or name:config)."""
    dataset = dataset or "synthetic"
    if dataset in DATASETS:
        raise HarnessError(f"DATASET={dataset} is SQuAD, for fine-tuning; TASK=pretrain takes synthetic, a text file "
                           "(one sentence per line, a blank line between documents) or a hub corpus name")
    looks_like_file = dataset.startswith(("/", ".", "~")) or Path(dataset).suffix == ".txt"
    if dataset != "synthetic" and looks_like_file and not Path(dataset).expanduser().is_file():
        raise HarnessError(f"DATASET={dataset}: no such file (a pre-training text: one sentence per line, a blank "
                           "line between documents)")
    return dataset


def resolve_and_check(args) -> tuple[TrainConfig, str]:
    """The settings and the model's short name, with every check that needs neither data nor ranks: what
    stops a run before it starts (train/__main__.py) or keeps `make train-compare` from starting it."""
    from harness.distributed import launched_rank
    from train.model import layer_split, outline, pretraining_outline

    config = resolve(args)
    layers, model_name = (pretraining_outline(config.model, config.bert_shape()) if config.task == "pretrain"
                          else outline(config.model, config.bert_shape()))
    if config.pipelined:
        layer_split(layers, config.stages)  # before MICROBATCHES, whose default follows STAGES
    check_batch_split(config)
    launched = launched_rank()  # by torchrun, srun or DeepSpeed: the ranks on this node; else all of them
    check_device(config.device, launched.local_world if launched else config.workers)
    return config, model_name


def check_batch_split(config: TrainConfig) -> None:
    """Each slice of a step (BATCH_SIZE over ACCUMULATE) splits into equal parts: a replica's or a microbatch's."""
    parts = {"ddp": (config.workers, "WORKERS"), "pipeline": (config.microbatches, "MICROBATCHES"),
             "deepspeed-pipeline": (config.microbatches * config.replicas, "MICROBATCHES x WORKERS / STAGES")}.get(
        config.parallel)
    piece = config.batch_size // config.accumulate
    if parts and piece % parts[0]:
        raise HarnessError(f"BATCH_SIZE={config.batch_size} over ACCUMULATE={config.accumulate} gives slices of "
                           f"{piece}, which do not divide into {parts[1]}={parts[0]} equal parts")


def run_dir(build_dir: Path, name: str) -> Path:
    return build_dir / "train" / name
