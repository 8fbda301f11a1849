"""One LoadGen run: resolve options, build QSL + backend + SUT, run, and keep the logs only if it finished."""

from __future__ import annotations

import datetime
import json
import os
import shlex
import shutil
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from common.errors import HarnessError
from harness.distributed import distribute, launched_rank, leave, rank_device
from harness.run_config import RunConfig, RunOptions, check_backend_settings
from harness.run_folders import (
    RunLock,
    check_free_space,
    configuration_name,
    keep_earlier,
    log_bytes,
    log_dir,
    replacement_problem,
    unfinished_logs,
)
from harness.settings import (
    SystemConfig,
    test_settings,
    user_conf_text,
)
from sut.backend import backend_class

AUDIT_CONFIG = "audit.config"  # LoadGen reads this name from the working directory and obeys it over user.conf
TEST01_LOGGED_SAMPLES = 4096  # about what TEST01's audit.config has LoadGen log (accuracy_log_sampling_target)


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
    energy_joules: float | None = None  # over LoadGen's run, where a meter was given (make sweep)
    energy_source: str = ""
    workers: int = 1  # ranks that ran backends (WORKERS), over `nodes` nodes
    nodes: int = 1
    devices: list[str] = field(default_factory=list)  # each computing rank's host:device


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def create_backend(name: str, model, device: str, precision: str, features, build_dir: Path = Path("build"),
                   options: dict[str, str] | None = None, log=print):
    """Every backend takes the same arguments; `features` serve those that calibrate or warm up."""
    check_backend_settings(name, precision, options or {})
    return backend_class(name)(model, device, precision, calibration=features, cache_dir=build_dir / "cache",
                               options=options, log=log)


def loadgen_result(summary: Path) -> str:
    """LoadGen's verdict line ("VALID"/"INVALID"), or "" when the summary has none (accuracy runs)."""
    if not summary.is_file():
        return ""
    for line in summary.read_text().splitlines():
        if line.startswith("Result is :"):
            return line.split(":", 1)[1].strip()
    return ""


def unmet_constraints(summary: Path) -> list[str]:
    """The summary's 'X satisfied : NO' lines: why LoadGen called a run INVALID."""
    if not summary.is_file():
        return []
    lines = [line.strip() for line in summary.read_text().splitlines()]
    return [line.split(" satisfied")[0] for line in lines if " satisfied" in line and line.endswith("NO")]


def memory_hint(error: BaseException, system: SystemConfig, batch_size: int) -> str:
    """For an out-of-memory error, the settings that size the batches; else nothing."""
    if "out of memory" not in str(error).lower():
        return ""
    path = system.path.resolve()
    shown = path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path  # as the user would type it
    return (f"; the batches did not fit: lower max_tokens ({system.max_tokens or 'none set'}) or batch_size "
            f"({batch_size}) in {shown}, or give BATCH_SIZE=")


def quick_run_lines(count: int) -> list[str]:
    return [f"NOT COMPLIANT: quick run (COUNT={count}). LoadGen's minimum duration and sample count were",
            "lowered for this run; it cannot be submitted. Run with COUNT=full for a compliant run."]


def boxed(lines: list[str]) -> str:
    """A notice the console and mlperf_log_summary.txt both show, set off so it cannot be missed."""
    return "\n" + "=" * 78 + "\n" + "\n".join(lines) + "\n" + "=" * 78 + "\n"


def progress(sut, scenario: str, count: int | None, dataset_size: int, accuracy: bool,
             settings) -> tuple[Callable[[], int] | None, int | None]:
    """What start_test's progress bar reads, and its total where LoadGen's sample count is known in advance.

    A large Offline query has the SUT's own bar (by tokens); every other run gets this one, so no run
    is silent for long. A compliant performance run lasts as long as LoadGen's minimum duration
    asks: its bar counts without a total.
    """
    from sut.sut import PROGRESS_MIN_SAMPLES

    expected = count or dataset_size
    if scenario == "Offline" and expected >= PROGRESS_MIN_SAMPLES:
        return None, None
    if count is None and not accuracy:
        return (lambda: sut.samples_done), None
    per_query = settings.multi_stream_samples_per_query if scenario == "MultiStream" else 1
    return (lambda: sut.samples_done), -(-expected // per_query) * per_query


def start_test(sut_handle, qsl_handle, settings, log_settings, work_dir: Path,
               answered: Callable[[], int] | None = None, total: int | None = None,
               backend_error: Callable[[], BaseException | None] | None = None, stop_on_error: bool = False) -> None:
    """LoadGen's StartTest, with Ctrl-C honoured and, given `answered`, a progress bar of samples answered.

    StartTest blocks in C++, where Python never sees Ctrl-C until the run ends (up to 10 minutes
    or more), so it runs in a thread while the main thread waits. LoadGen cannot be stopped once a
    test has begun, so an interrupt ends the process at once, its logs left as they were; so does a
    `backend_error` (polled as the main thread waits) with `stop_on_error`, for scenarios whose queries
    LoadGen would go on issuing to the end of its schedule (an Offline query, answered empty after a
    failure, ends at once and is left to end). The main thread reads the SUT's count as it waits: the
    progress bar costs the SUT's latency path nothing.
    """
    import mlperf_loadgen as lg
    from tqdm import tqdm

    failure: list[BaseException] = []

    def target() -> None:
        try:
            lg.StartTestWithLogSettings(sut_handle, qsl_handle, settings, log_settings)
        except BaseException as error:  # noqa: BLE001 - re-raised in the calling thread
            failure.append(error)

    thread = threading.Thread(target=target, name="loadgen", daemon=True)
    bar = tqdm(total=total, unit="sample", desc="LoadGen run", disable=answered is None, mininterval=1.0)
    thread.start()
    try:
        while thread.is_alive():
            thread.join(0.2)
            if answered is not None:
                bar.update(answered() - bar.n)
            if backend_error is not None and (error := backend_error()) is not None and stop_on_error:
                bar.close()
                print(f"error: the backend failed during the run: {error}\nLoadGen cannot be stopped mid-run and "
                      f"would go on issuing queries to the end of its schedule, so the run ends here; its incomplete "
                      f"logs are in {work_dir} (not a result)", file=sys.stderr, flush=True)
                sys.stdout.flush()
                os._exit(2)
        bar.close()
    except KeyboardInterrupt:
        print(f"\ninterrupted: LoadGen stopped mid-run; this run's incomplete logs are in {work_dir} "
              "(not a result)", file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(130)  # LoadGen's threads cannot be joined mid-test; a normal exit aborts in C++
    if failure:
        raise failure[0]


def _quiet(*_) -> None:
    pass


def run(options: RunOptions, accuracy: bool, log=print, audit_config: Path | None = None,
        compliance_test: str = "", stages=None, meter=None,
        finish: Callable[[Path, ResolvedRun], None] | None = None) -> tuple[Path, ResolvedRun]:
    """`audit_config` makes it a compliance run: LoadGen runs in the log folder, where that file is copied.

    make sweep gives `stages` (sut/stages.py, without device synchronisation: the run is not slowed) and
    an energy `meter` (harness/energy.py), read over LoadGen's run alone. `finish` completes the run's
    folder (make accuracy scores it there) before it takes its place.
    """
    import mlperf_loadgen as lg

    from qsl.loadgen_qsl import SquadQSL
    from qsl.samples import load_samples
    from sut.models import load_model
    from sut.sut import SUT

    if audit_config is None and Path(AUDIT_CONFIG).exists():  # a compliance run runs LoadGen in its own folder
        raise HarnessError(f"{Path.cwd() / AUDIT_CONFIG} is here: LoadGen would obey it and turn this run into a "
                           "compliance run (an accuracy run into a performance run). Remove it; `make compliance` "
                           f"runs TEST01 in a folder of its own (AUDIT_CONFIG={AUDIT_CONFIG} uses this file)")
    config = RunConfig.from_options(options, accuracy)
    scenario, backend_name, system, precision = config.scenario, config.backend, config.system, config.precision
    count, batch_size, max_tokens, workers, source = (config.count, config.batch_size, config.max_tokens,
                                                      config.workers, config.source)
    device = config.device
    rank = launched_rank() if workers > 1 else None
    if workers > 1:
        if rank is None or rank.world != workers:
            raise HarnessError(f"WORKERS={workers}, but this process was started as "
                               f"{'one of ' + str(rank.world) + ' ranks' if rank else 'a single process'}: "
                               "run it through `make perf WORKERS=N` (torchrun), or srun with N tasks")
        device = rank_device(device, rank)
        if not rank.is_leader:
            log = _quiet  # rank 0 says what the run does
    features = load_samples(source, options.build_dir, log)
    longest = int(features.lengths[:count or len(features)].max())  # LoadGen's samples: the first COUNT
    if max_tokens is not None and max_tokens < longest:
        given = f"MAX_TOKENS={max_tokens}" if options.max_tokens else f"max_tokens {max_tokens} in {system.path}"
        raise HarnessError(f"{given} is below the longest sample ({longest} tokens): a batch holds at least one "
                           f"sample, so every batch would be over the budget; give MAX_TOKENS of at least {longest}, "
                           "or MAX_TOKENS=none")
    model = load_model(options.model, options.build_dir, allow_random=not accuracy,
                       trust_checkpoint=options.trust_checkpoint, log=log,
                       accept_onnx=backend_class(backend_name).takes_onnx, shape=config.shape)
    positions = getattr(getattr(model.module, "config", None), "max_position_embeddings", features.seq_length)
    if features.seq_length > positions:
        raise HarnessError(f"SEQ_LEN={features.seq_length} is longer than {model.name} takes ({positions} positions)")
    resolved = ResolvedRun(
        scenario=scenario, mode="AccuracyOnly" if accuracy else "PerformanceOnly", backend=backend_name,
        device=device, precision=precision, system=system.name, count=count, batch_size=batch_size,
        max_tokens=max_tokens, model_name=model.name, model_source=model.source,
        model_is_random=model.is_random, backend_options=options.backend_options,
        configuration=configuration_name(precision, device, options.backend_options,
                                         source.label + (f"-workers{workers}" if workers > 1 else "")),
        input_data_type="", data=source.data, seq_len=source.featurisation.seq_length,
        doc_stride=source.featurisation.doc_stride if source.data == "squad" else None, samples=source.samples,
        lengths=source.lengths, seed=source.seed, shape=options.shape, workers=workers,
        nodes=rank.nodes if rank else 1, devices=[f"{socket.gethostname()}:{device}"],
        compliant_settings=count is None, compliance_test=compliance_test,
        command=shlex.join([sys.executable, "-m", "harness", *sys.argv[1:]]), working_directory=os.getcwd())
    final_dir = log_dir(options.logs_dir or options.build_dir / "logs", model.name, backend_name,
                        resolved.configuration, scenario, accuracy, compliance_test)
    if rank is None or rank.is_leader:
        problem = replacement_problem(final_dir, count, options.replace)
        if problem:
            raise HarnessError(problem)
        samples = count or len(features)
        logged = samples if accuracy else (TEST01_LOGGED_SAMPLES if audit_config is not None else 0)
        check_free_space(final_dir.parent, log_bytes(features.seq_length, logged,
                                                     samples if options.enable_trace else 0),
                         f"this run's logs ({logged:,} logged responses of {features.seq_length} tokens)")
    try:  # before any log folder: a failure leaves none
        backend = None if rank and rank.is_leader and not options.rank0_computes else create_backend(
            backend_name, model, device, precision, features, options.build_dir, options.backend_options, log)
    except RuntimeError as error:  # torch.OutOfMemoryError among them: warm-up runs the largest batches
        hint = memory_hint(error, system, batch_size)
        if not hint:
            raise
        raise HarnessError(f"the {backend_name} backend failed while warming up: {error!r}{hint}") from error
    if rank is not None:  # WORKERS=N: rank 0 deals batches to every rank; the others serve them, then stop
        backend = distribute(rank, backend, features, device, config.worker_timeout_s)
        if backend is None:
            return None, resolved
        resolved.devices = backend.devices
    resolved.input_data_type = backend.input_data_type
    with RunLock(final_dir, f"{scenario} {resolved.mode} of {model.name} with {backend_name}"):
        work_dir = final_dir.with_name(final_dir.name + ".partial").resolve()  # absolute: LoadGen may run elsewhere
        shutil.rmtree(work_dir, ignore_errors=True)
        work_dir.mkdir(parents=True)
        if audit_config is not None:
            shutil.copyfile(audit_config, work_dir / AUDIT_CONFIG)
        user_conf = work_dir / "user.conf"
        user_conf.write_text(user_conf_text(system, scenario))
        settings = test_settings(user_conf, scenario, accuracy, count)

        qsl = SquadQSL(features, count)
        sut = SUT(backend, features, batch_size, max_tokens)
        if stages is not None:
            sut.stages = backend.stages = stages
        log_settings = lg.LogSettings()
        log_settings.log_output.outdir = str(work_dir)
        log_settings.log_output.copy_summary_to_stdout = False  # printed below, once the progress bar is closed
        log_settings.enable_trace = options.enable_trace
        data = "" if source.is_mlperf else f", data {source.label.lstrip('-')}"
        log(f"bert-99 {scenario} {resolved.mode}: backend {backend_name}, {device}, {precision}, model "
            f"{model.name}, system {system.name}, batch {batch_size}{data}, "
            f"{'COUNT=' + str(count) + ' (quick run, not compliant)' if count else 'full compliant settings'}")
        resolved.start_utc = utc_now()
        started = time.perf_counter()
        if audit_config is not None:
            os.chdir(work_dir)  # LoadGen looks for audit.config only in its working directory
        failure = lambda: sut.error or backend.check()  # noqa: E731 - polled, named once
        try:
            if meter is not None:
                meter.start()
            start_test(sut.handle, qsl.handle, settings, log_settings, work_dir,
                       *progress(sut, scenario, count, len(features), accuracy, settings),
                       backend_error=failure, stop_on_error=scenario != "Offline")
            if meter is not None:
                reading = meter.stop()
                resolved.energy_joules, resolved.energy_source = reading.joules, reading.source
        finally:
            os.chdir(resolved.working_directory)
            sut.close()
            qsl.close()
            if rank is not None:
                backend.close()  # tells the other ranks to stop
                leave()
        resolved.end_utc = utc_now()
        resolved.samples_answered = sut.samples_done
        error = sut.error or backend.check()
        if error is not None:
            raise HarnessError(f"the {backend_name} backend failed during the run: {type(error).__name__}: {error}"
                               f"{memory_hint(error, system, batch_size)}; incomplete logs left in {work_dir}") \
                from error
        unfinished = unfinished_logs(work_dir, accuracy or audit_config is not None)
        if unfinished:  # LoadGen writes on, without a word, into a full disk
            free = shutil.disk_usage(work_dir).free / 2**20
            raise HarnessError(f"LoadGen's logs are incomplete ({'; '.join(unfinished)}; {free:.1f} MiB free on "
                               f"that disk): not a result. Free some space, or give BUILD= a folder on a larger "
                               f"disk, and run again; the incomplete logs are in {work_dir}")
        trace = work_dir / "mlperf_log_trace.json"
        if not options.enable_trace and trace.is_file() and trace.stat().st_size == 0:
            trace.unlink()  # LoadGen creates it even when tracing is off
        summary = work_dir / "mlperf_log_summary.txt"
        resolved.loadgen_result = loadgen_result(summary)
        if not accuracy and summary.is_file():
            log(summary.read_text())
        notes = [*source.notes(), *(quick_run_lines(count) if count is not None else [])]
        if notes and summary.is_file():
            with open(summary, "a") as file:
                file.write(boxed(notes))
        (work_dir / "run_info.json").write_text(json.dumps(asdict(resolved), indent=2) + "\n")
        log(f"LoadGen run took {time.perf_counter() - started:.1f} s")
        if model.is_random:
            log("reminder: random weights; these numbers say nothing about accuracy")
        if notes:
            log(boxed(notes))
        if finish is not None:  # scoring, say: a run whose folder is not complete never takes the newest place
            finish(work_dir, resolved)
        kept = keep_earlier(final_dir)
        work_dir.rename(final_dir)
        if kept is not None:
            log(f"the run that was in {final_dir} is kept in {kept}")
        return final_dir, resolved
