"""One LoadGen run: from checked settings to logs that take their place only once the run has finished."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from common.errors import HarnessError
from harness.build import BuiltRun, build_run, memory_hint
from harness.distributed import distribute, launched_rank, leave, rank_device
from harness.resolved_run import ResolvedRun, utc_now
from harness.run_config import RunConfig, RunOptions
from harness.run_folders import (
    RunLock,
    check_free_space,
    keep_earlier,
    log_bytes,
    log_dir,
    replacement_problem,
    unfinished_logs,
)
from harness.settings import test_settings, user_conf_text
from harness.start_test import progress, start_test
from harness.summary import boxed, loadgen_result, quick_run_lines
from sut.backend import backend_class

AUDIT_CONFIG = "audit.config"  # LoadGen reads this name from the working directory and obeys it over user.conf
TEST01_LOGGED_SAMPLES = 4096  # about what TEST01's audit.config has LoadGen log (accuracy_log_sampling_target)


def _quiet(*_) -> None:
    pass


def run(options: RunOptions, accuracy: bool, log=print, audit_config: Path | None = None,
        compliance_test: str = "", stages=None, meter=None,
        finish: Callable[[Path, ResolvedRun], None] | None = None) -> tuple[Path | None, ResolvedRun]:
    """`audit_config` makes it a compliance run: LoadGen runs in the log folder, where that file is copied.

    make sweep gives `stages` (sut/stages.py, without device synchronisation: the run is not slowed) and
    an energy `meter` (harness/energy.py), read over LoadGen's run alone. `finish` completes the run's
    folder (make accuracy scores it there) before it takes its place. A worker rank returns no folder.
    """
    if audit_config is None and Path(AUDIT_CONFIG).exists():  # a compliance run runs LoadGen in its own folder
        raise HarnessError(f"{Path.cwd() / AUDIT_CONFIG} is here: LoadGen would obey it and turn this run into a "
                           "compliance run (an accuracy run into a performance run). Remove it; `make compliance` "
                           f"runs TEST01 in a folder of its own (AUDIT_CONFIG={AUDIT_CONFIG} uses this file)")
    config = RunConfig.from_options(options, accuracy)
    rank = None
    if config.workers > 1:
        rank = launched_rank()
        if rank is None or rank.world != config.workers:
            raise HarnessError(f"WORKERS={config.workers}, but this process was started as "
                               f"{'one of ' + str(rank.world) + ' ranks' if rank else 'a single process'}: "
                               "run it through `make perf WORKERS=N` (torchrun), or srun with N tasks")
        if not rank.is_leader:
            log = _quiet  # rank 0 says what the run does
        if not backend_class(config.backend).simulated:  # a simulated device needs no cores of its own
            config = dataclasses.replace(config, device=rank_device(config.device, rank, log))
    built = build_run(config, log)
    resolved = ResolvedRun.before_run(config, built.model, rank.nodes if rank else 1, compliance_test)
    final_dir = log_dir(options.logs_dir or options.build_dir / "logs", built.model.name, config.backend,
                        resolved.configuration, config.scenario, accuracy, compliance_test)
    if rank is None or rank.is_leader:
        check_room(final_dir, built, audit_config is not None)
    # before any log folder: a failure leaves none
    backend = None if rank and rank.is_leader and not options.rank0_computes else built.backend(log)
    if rank is not None:  # WORKERS=N: rank 0 deals batches to every rank; the others serve them, then stop
        backend = distribute(rank, backend, built.features, config.device, config.worker_timeout_s)
        if backend is None:
            return None, resolved
        resolved.devices = backend.devices
    resolved.input_data_type = backend.input_data_type
    with RunLock(final_dir, f"{config.scenario} {resolved.mode} of {built.model.name} with {config.backend}"):
        work_dir = final_dir.with_name(final_dir.name + ".partial").resolve()  # absolute: LoadGen may run elsewhere
        shutil.rmtree(work_dir, ignore_errors=True)
        work_dir.mkdir(parents=True)
        if audit_config is not None:
            shutil.copyfile(audit_config, work_dir / AUDIT_CONFIG)
        seconds = run_loadgen(built, backend, work_dir, resolved, audit_config is not None, rank is not None,
                              stages, meter, log)
        complete_logs(built, work_dir, resolved, audit_config is not None, seconds, log)
        if finish is not None:  # scoring, say: a run whose folder is not complete never takes the newest place
            finish(work_dir, resolved)
        kept = keep_earlier(final_dir)
        work_dir.rename(final_dir)
        if kept is not None:
            log(f"the run that was in {final_dir} is kept in {kept}")
        return final_dir, resolved


def check_room(final_dir: Path, built: BuiltRun, audited: bool) -> None:
    """Before anything runs: the run may take the newest place, and its logs fit on the disk."""
    config = built.config
    problem = replacement_problem(final_dir, config.count, config.options.replace)
    if problem:
        raise HarnessError(problem)
    samples = config.count or len(built.features)
    logged = samples if config.accuracy else (TEST01_LOGGED_SAMPLES if audited else 0)
    seq_length = built.features.seq_length
    check_free_space(final_dir.parent, log_bytes(seq_length, logged, samples if config.options.enable_trace else 0),
                     f"this run's logs ({logged:,} logged responses of {seq_length} tokens)")


def run_loadgen(built: BuiltRun, backend, work_dir: Path, resolved: ResolvedRun, audited: bool, distributed: bool,
                stages, meter, log) -> float:
    """LoadGen's test over the QSL and SUT, its logs written into `work_dir`, and how long it took; a failure
    in the backend is raised once LoadGen has ended."""
    import mlperf_loadgen as lg

    from qsl.loadgen_qsl import SquadQSL
    from sut.sut import SUT

    config, features = built.config, built.features
    scenario, count = config.scenario, config.count
    user_conf = work_dir / "user.conf"
    user_conf.write_text(user_conf_text(config.system, scenario))
    settings = test_settings(user_conf, scenario, config.accuracy, count)
    qsl = SquadQSL(features, count)
    sut = SUT(backend, features, config.batch_size, config.max_tokens, arrivals=scenario == "Server")
    if stages is not None:
        sut.stages = backend.stages = stages
    log_settings = lg.LogSettings()
    log_settings.log_output.outdir = str(work_dir)
    log_settings.log_output.copy_summary_to_stdout = False  # printed below, once the progress bar is closed
    log_settings.enable_trace = config.options.enable_trace
    data = "" if config.source.is_mlperf else f", data {config.source.label.lstrip('-')}"
    log(f"bert-99 {scenario} {resolved.mode}: backend {config.backend}, {config.device}, {config.precision} "
        f"({config.precision_note}), model "
        f"{built.model.name}, system {config.system.name}, batch {config.batch_size}{data}, "
        f"{'COUNT=' + str(count) + ' (quick run, not compliant)' if count else 'full compliant settings'}")
    resolved.start_utc = utc_now()
    started, cpu_started = time.perf_counter(), time.process_time()
    if audited:
        os.chdir(work_dir)  # LoadGen looks for audit.config only in its working directory
    failure = lambda: sut.error or backend.check()  # noqa: E731 - polled, named once
    try:
        if meter is not None:
            meter.start()
        start_test(sut.handle, qsl.handle, settings, log_settings, work_dir,
                   *progress(sut, scenario, count, len(features), config.accuracy, settings),
                   backend_error=failure, stop_on_error=scenario != "Offline")
        if meter is not None:
            reading = meter.stop()
            resolved.energy_joules, resolved.energy_source = reading.joules, reading.source
    finally:
        os.chdir(resolved.working_directory)
        sut.close()
        qsl.close()
        if distributed:
            backend.close()  # tells the other ranks to stop
            leave()
    resolved.end_utc = utc_now()
    resolved.cpu_seconds = time.process_time() - cpu_started
    resolved.samples_answered = sut.samples_done
    error = failure()
    if error is not None:
        raise HarnessError(f"the {config.backend} backend failed during the run: {type(error).__name__}: {error}"
                           f"{memory_hint(error, config.system, config.batch_size)}; incomplete logs left in "
                           f"{work_dir}") from error
    return time.perf_counter() - started


def complete_logs(built: BuiltRun, work_dir: Path, resolved: ResolvedRun, audited: bool, seconds: float,
                  log) -> None:
    """LoadGen's logs checked whole, its summary shown with the run's notices, and run_info.json beside them."""
    config = built.config
    unfinished = unfinished_logs(work_dir, config.accuracy or audited)
    if unfinished:  # LoadGen writes on, without a word, into a full disk
        free = shutil.disk_usage(work_dir).free / 2**20
        raise HarnessError(f"LoadGen's logs are incomplete ({'; '.join(unfinished)}; {free:.1f} MiB free on "
                           f"that disk): not a result. Free some space, or give BUILD= a folder on a larger "
                           f"disk, and run again; the incomplete logs are in {work_dir}")
    trace = work_dir / "mlperf_log_trace.json"
    if not config.options.enable_trace and trace.is_file() and trace.stat().st_size == 0:
        trace.unlink()  # LoadGen creates it even when tracing is off
    summary = work_dir / "mlperf_log_summary.txt"
    resolved.loadgen_result = loadgen_result(summary)
    if not config.accuracy and summary.is_file():
        log(summary.read_text())
    notes = [*config.source.notes(), *(quick_run_lines(config.count) if config.count is not None else [])]
    if notes and summary.is_file():
        with open(summary, "a") as file:
            file.write(boxed(notes))
    (work_dir / "run_info.json").write_text(json.dumps(dataclasses.asdict(resolved), indent=2) + "\n")
    log(f"LoadGen run took {seconds:.1f} s")
    if backend_class(config.backend).simulated:
        log("reminder: simulated devices (BACKEND=simulated) ran no model; these numbers are dispatch and sleep")
    elif built.model.is_random:
        log("reminder: random weights; these numbers say nothing about accuracy")
    if notes:
        log(boxed(notes))
