"""A run's settings: as given (RunOptions, strings from the command line) and as checked (RunConfig).

Every make variable of a run is read and checked here, in the user's own words (COUNT=abc, WORKERS=3 on a
2-core machine, WORKER_TIMEOUT=0), before ranks start or a model loads.
"""

from __future__ import annotations

import argparse
import math
import os
from dataclasses import dataclass, field, fields
from pathlib import Path

from common.cli import backend_options
from common.errors import HarnessError
from common.values import whole_number
from harness.settings import SystemConfig, check_scenario, chosen_system, default_precision
from qsl.samples import SampleSource, resolve_samples
from sut.backend import BACKENDS, backend_class, parse_options

WORKER_TIMEOUT_S = 300.0  # a batch a worker has not answered in this long: the run ends, naming it


@dataclass
class RunOptions:
    scenario: str = "Offline"
    backend: str = "pytorch"
    model: str | None = None
    device: str | None = None
    precision: str | None = None
    count: str | None = None  # a number, "full", or None for the system's default
    system: str | None = None
    batch_size: str | int | None = None
    build_dir: Path = Path("build")
    trust_checkpoint: bool = False
    enable_trace: bool = False
    backend_options: dict[str, str] = field(default_factory=dict)
    data: str | None = None  # squad (default) or synthetic: qsl/samples.py
    seq_len: str | None = None
    doc_stride: str | None = None
    samples: str | None = None
    lengths: str | None = None
    seed: str | None = None
    shape: str | None = None  # a randomly initialised model of this shape (sut/models.py)
    max_tokens: str | None = None  # the token budget per batch: a number, "none", or None for the system's
    logs_dir: Path | None = None  # where the logs go (default <build_dir>/logs; make sweep keeps its own)
    workers: str | None = None  # ranks under torch.distributed (harness/distributed.py); None or 1: this process
    rank0_computes: bool = True  # with WORKERS: rank 0 runs a backend too, beside LoadGen
    worker_timeout: str | float | None = None  # seconds a worker may take over a batch before the run ends
    replace: bool = False  # REPLACE=1: a quick run may become the newest over a compliant one (which is kept)


    @classmethod
    def from_args(cls, args: argparse.Namespace, **changes) -> RunOptions:
        """The options a command's flags give (named as in common/variables.py), with `changes` over them."""
        values = {name: value for name, value in vars(args).items() if name in RUN_OPTION_NAMES}
        if "backend_option" in vars(args):
            values["backend_options"] = backend_options(args.backend_option)
        for switch in ("rank0_computes", "replace"):  # 0|1 as typed
            if switch in values:
                values[switch] = values[switch] == "1" if switch == "replace" else values[switch] != "0"
        return cls(**{**values, **changes})

    @classmethod
    def from_run_info(cls, info: dict, build_dir: Path, trust_checkpoint: bool = False) -> RunOptions:
        """A finished run's options from its run_info.json, to run it again exactly as it ran (TEST01)."""
        def text(value) -> str | None:
            return None if value is None else str(value)

        return cls(scenario=info["scenario"], backend=info["backend"],
                   model=None if info.get("model_is_random") else os.path.join(info["working_directory"],
                                                                           info["model_source"]),
                   device=info["device"], precision=info["precision"],
                   count=str(info["count"]) if info["count"] else "full", system=info["system"],
                   batch_size=info["batch_size"], build_dir=build_dir, trust_checkpoint=trust_checkpoint,
                   backend_options=dict(info["backend_options"]), data=info.get("data"),
                   seq_len=text(info.get("seq_len")), doc_stride=text(info.get("doc_stride")),
                   samples=text(info.get("samples")), lengths=info.get("lengths"), seed=text(info.get("seed")),
                   shape=info.get("shape"),
                   max_tokens="none" if info["max_tokens"] is None else str(info["max_tokens"]),
                   workers=text(info.get("workers", 1)))

RUN_OPTION_NAMES = {option.name for option in fields(RunOptions)}


@dataclass(frozen=True)
class RunConfig:
    """A run's settings checked and typed; nothing loaded yet (the system file aside)."""

    options: RunOptions
    accuracy: bool
    scenario: str
    backend: str
    system: SystemConfig
    device: str
    precision: str
    count: int | None
    batch_size: int
    max_tokens: int | None
    workers: int
    worker_timeout_s: float
    source: SampleSource
    shape: object  # sut.models.BertShape, or None
    precision_note: str = "as given"  # why this precision, in the run's header

    @classmethod
    def from_options(cls, options: RunOptions, accuracy: bool) -> RunConfig:
        from sut.models import check_model_path, parse_shape

        # First what needs neither the system file, torch nor a backend: a typo is refused at once
        scenario = check_scenario(options.scenario)
        backend = check_choice("BACKEND", options.backend, tuple(BACKENDS))
        count = resolve_count(options.count, None)  # the system file's defaults come below, for what is not given
        batch_size = resolve_batch_size(options.batch_size, 1)
        max_tokens = resolve_max_tokens(options.max_tokens, None)
        workers = whole_number("WORKERS", options.workers, 1) or 1
        worker_timeout_s = seconds("WORKER_TIMEOUT", options.worker_timeout, WORKER_TIMEOUT_S)
        source = resolve_samples(options.data, options.seq_len, options.doc_stride, options.samples,
                                 options.lengths, options.seed)
        if accuracy and source.data == "synthetic":
            raise HarnessError("make accuracy DATA=synthetic: generated samples have no answers to score; use the "
                               "SQuAD dev set (DATA=squad, the default)")
        if options.model and not options.shape:  # both: load_model refuses the pair
            check_model_path(options.model)
        shape = parse_shape(options.shape) if options.shape else None

        system = chosen_system(options.system)
        device = resolve_device(options.device or system.device)
        chosen = backend_class(backend)
        simulated = chosen.simulated
        if accuracy and simulated:
            raise HarnessError("make accuracy BACKEND=simulated: a simulated device only takes time and answers "
                               "zeros, which have nothing to score; give a backend that runs the model (pytorch)")
        if simulated and (options.model or shape is not None):
            raise HarnessError(f"BACKEND={backend} loads no model: leave out MODEL= and SHAPE=")
        if not simulated:  # a simulated device sleeps: any number of them share the cores
            check_cores(workers, device, options.rank0_computes)
        precision, precision_note = ((options.precision, "as given") if options.precision else
                                     default_precision(system, device, chosen.precisions))
        check_backend_settings(backend, precision, options.backend_options)
        return cls(options, accuracy, scenario, backend, system, device, precision,
                   count if given(options.count) else system.default_count,
                   batch_size if given(options.batch_size) else system.batch_size,
                   max_tokens if given(options.max_tokens) else system.max_tokens, workers,
                   worker_timeout_s, source, shape, precision_note)


def given(value: object) -> bool:
    return value is not None and value != ""


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise HarnessError(f"unknown {name}={value}; choose one of {', '.join(choices)}")
    return value


def resolve_device(device: str) -> str:
    import torch

    if device == "cpu":
        return device
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise HarnessError(f"DEVICE={device} but no CUDA GPU is visible to torch {torch.__version__}; "
                               "use DEVICE=cpu, or install a CUDA build of torch on a GPU machine")
        index = device.partition(":")[2]
        if index and not (index.isdigit() and int(index) < torch.cuda.device_count()):
            raise HarnessError(f"DEVICE={device} is not a visible GPU; this machine shows "
                               f"cuda:0 to cuda:{torch.cuda.device_count() - 1}")
        return device
    raise HarnessError(f"unknown DEVICE={device}; choose cpu, cuda or cuda:N")


def resolve_count(count: str | None, default: int | None) -> int | None:
    if not given(count):
        return default
    if count == "full":
        return None
    try:
        value = int(count)
    except ValueError:
        raise HarnessError(f"COUNT={count} is not a number; give a sample count or COUNT=full") from None
    if value < 1:
        raise HarnessError(f"COUNT must be at least 1, got {value}")
    return value


def resolve_max_tokens(max_tokens: str | None, default: int | None) -> int | None:
    """MAX_TOKENS: a token budget per batch, "none" for none, or the system file's when not given."""
    if not given(max_tokens):
        return default
    if max_tokens == "none":
        return None
    if not max_tokens.isdigit() or int(max_tokens) < 1:
        raise HarnessError(f"MAX_TOKENS={max_tokens} is not a token budget; give a whole number of at least 1, "
                           "or none")
    return int(max_tokens)


def resolve_batch_size(batch_size: str | int | None, default: int) -> int:
    if not given(batch_size):
        return default
    try:
        value = int(batch_size)
    except ValueError:
        raise HarnessError(f"BATCH_SIZE={batch_size} is not a whole number; give the largest batch, 1 or more") \
            from None
    if value < 1:
        raise HarnessError(f"BATCH_SIZE must be at least 1, got {value}")
    return value


def seconds(name: str, value: str | float | None, default: float) -> float:
    """A time limit in seconds, above 0; the default when not given."""
    if not given(value):
        return default
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not 0 < number < math.inf:
        raise HarnessError(f"{name}={value} must be a number of seconds above 0 (default {default:g})")
    return number


def check_cores(workers: int, device: str, rank0_computes: bool = True) -> None:
    """On a CPU, ranks started here each need a core of their own: more would share cores, unnoticed, and
    time each other's work (make train refuses the same). Ranks started by srun or torchrun are theirs to place."""
    launched = "SLURM_PROCID" in os.environ or "LOCAL_WORLD_SIZE" in os.environ
    computing = workers - (0 if rank0_computes else 1)
    cores = os.cpu_count() or 1
    if device == "cpu" and workers > 1 and computing > cores and not launched:
        raise HarnessError(f"WORKERS={workers} on this machine, which has {cores} CPU cores: each computing rank "
                           f"needs one of its own; give WORKERS of at most {cores + (0 if rank0_computes else 1)}, "
                           "or spread the ranks over nodes with srun (slurm/)")


def check_backend_settings(name: str, precision: str, options: dict[str, str]) -> None:
    """PRECISION and BACKEND_OPTIONS as this backend takes them: refused before seconds go into the model."""
    chosen = backend_class(name)
    if precision not in chosen.precisions:
        raise HarnessError(f"BACKEND={name} runs PRECISION={', '.join(chosen.precisions)}, not {precision}")
    parse_options(options, chosen.option_types, name)
