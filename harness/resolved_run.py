"""ResolvedRun: everything a run was made of, as run_info.json keeps it beside its logs."""

from __future__ import annotations

import datetime
import os
import shlex
import socket
import sys
from dataclasses import dataclass, field

from harness.run_config import RunConfig
from harness.run_folders import configuration_name
from sut.models import LoadedModel


@dataclass
class ResolvedRun:
    """Everything a run was made of, written next to its logs as run_info.json."""

    scenario: str
    mode: str
    backend: str
    device: str
    precision: str
    system: str
    count: int | None
    batch_size: int
    max_tokens: int | None
    model_name: str
    model_source: str
    model_is_random: bool
    backend_options: dict[str, str]
    configuration: str  # the log folder that keeps it apart from runs of another precision, device, options or data
    input_data_type: str  # what the model was fed (measurements.json's input_data_types)
    data: str  # squad or synthetic
    seq_len: int
    doc_stride: int | None  # SQuAD's window stride
    samples: int | None  # generated samples: how many, their lengths and seed
    lengths: str | None
    seed: int | None
    shape: str | None  # SHAPE= as given, for a random model of that shape
    compliant_settings: bool
    compliance_test: str  # "TEST01" for a compliance run, else ""
    command: str  # runnable as it stands, from `working_directory`
    working_directory: str
    start_utc: str = ""
    end_utc: str = ""
    loadgen_result: str = ""
    samples_answered: int = 0
    cpu_seconds: float | None = None  # its CPU time, every thread, over LoadGen's run (rank 0's, with WORKERS)
    energy_joules: float | None = None  # over LoadGen's run, where a meter was given (make sweep)
    energy_source: str = ""
    workers: int = 1  # ranks that ran backends (WORKERS), over `nodes` nodes
    nodes: int = 1
    devices: list[str] = field(default_factory=list)  # each computing rank's host:device

    @classmethod
    def before_run(cls, config: RunConfig, model: LoadedModel, nodes: int,
                   compliance_test: str) -> ResolvedRun:
        """What is known before LoadGen starts; the run fills in its times, result and devices."""
        options, source, workers, device = config.options, config.source, config.workers, config.device
        return cls(
            scenario=config.scenario, mode="AccuracyOnly" if config.accuracy else "PerformanceOnly",
            backend=config.backend, device=device, precision=config.precision, system=config.system.name,
            count=config.count, batch_size=config.batch_size, max_tokens=config.max_tokens, model_name=model.name,
            model_source=model.source, model_is_random=model.is_random, backend_options=options.backend_options,
            configuration=configuration_name(config.precision, device, options.backend_options,
                                             source.label + (f"-workers{workers}" if workers > 1 else "")),
            input_data_type="", data=source.data, seq_len=source.featurisation.seq_length,
            doc_stride=source.featurisation.doc_stride if source.data == "squad" else None, samples=source.samples,
            lengths=source.lengths, seed=source.seed, shape=options.shape, workers=workers, nodes=nodes,
            devices=[f"{socket.gethostname()}:{device}"], compliant_settings=config.count is None,
            compliance_test=compliance_test, command=shlex.join([sys.executable, "-m", "harness", *sys.argv[1:]]),
            working_directory=os.getcwd())


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
