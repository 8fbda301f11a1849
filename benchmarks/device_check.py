"""`make device-check`: every GPU measurement the project needs, in one run that stops at a time limit.

    python -m benchmarks.device_check [--time-limit 420] [--out DIR] [--small-model DIR] [--steps a,b] [--plan]

A lent GPU comes for about 15 minutes, start-up included, so the first device minute must measure, not
debug. The steps run in the order below, each a subprocess (its output in OUT/<step>.log), each given
at most its own cap and never more than the time left; a step that runs past either is stopped (SIGINT,
then SIGKILL) and the steps after it run if time remains. Ctrl-C or SIGTERM stops the current step and
still writes the summary. Needs only torch with CUDA and LoadGen (`PYTHON=python3`, nothing installed).

Written under OUT ($OUT when set, else build/device-check/<time>): a log per step, the logs of
its LoadGen runs, device_check.md (a row per step: status, seconds, its figure) and benchmarks.md, a
copy of docs/benchmarks.md with `make bench` and `make profile`'s sections updated and the summary
appended, naming the GPU.
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from common.cli import REPO, ArgumentParser, run_main
from common.errors import HarnessError
from common.variables import add_variables

STOP_GRACE_S = 15  # after SIGINT, before SIGKILL: LoadGen writes its logs when a run stops
DEFAULT_TIME_LIMIT_S = 420


@dataclass
class Step:
    name: str
    command: list[str]
    cap_s: float
    why: str


@dataclass
class Outcome:
    name: str
    status: str  # ok, failed (exit N), stopped at its cap, stopped at the time limit, skipped: ...
    seconds: float
    figure: str = ""


def make(target: str, *variables: str) -> list[str]:
    return ["make", "--no-print-directory", target, f"PYTHON={sys.executable}", *variables]


def plan(small_model: Path | None) -> list[Step]:
    """Most valuable first: correctness, issue 21's targets, the small model's F1 by precision, then the
    evidence for the next change (profile, kernel sweeps, the backends side by side)."""
    python = sys.executable
    steps = [
        Step("environment", [python, "-m", "benchmarks.device_check", "--environment"], 30,
             "GPU, driver, torch, Triton and LoadGen versions"),
        Step("cuda-tests", [python, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "tests/test_packed.py",
                            "-k", "kernel or cuda or triton"], 120,
             "the CUDA paths keep F1 and the kernels match their emulation before anything is timed"),
        Step("offline-fp8", make("perf", "SCENARIO=Offline", "PRECISION=fp8", "COUNT=10833"), 150,
             "LoadGen Offline over all 10,833 features, fp8 (target 9,100 samples/s)"),
        Step("offline-fp16", make("perf", "SCENARIO=Offline", "PRECISION=fp16", "COUNT=10833"), 150,
             "LoadGen Offline over all 10,833 features, fp16 (target 5,500 samples/s)"),
    ]
    if small_model is not None:
        steps += [Step(f"accuracy-{precision}", make("accuracy", f"MODEL={small_model}", f"PRECISION={precision}"),
                       120, f"the small real model's F1 in {precision} (fp8 within 1% of fp32)")
                  for precision in ("fp32", "fp8")]
    steps += [
        Step("profile-fp8", make("profile", "PRECISION=fp8", "UPDATE_DOCS=1"), 120,
             "where one fp8 batch's time goes, kernel by kernel"),
        Step("tiles", [python, "-m", "benchmarks.tiles", "--kernel", "both"], 150,
             "Triton attention against flash attention; the FFN kernel's tile shapes"),
        Step("singlestream-fp16", make("perf", "SCENARIO=SingleStream", "PRECISION=fp16", "COUNT=300"), 120,
             "SingleStream p90 (target under 1.2 ms)"),
        Step("bench", make("bench", "UPDATE_DOCS=1"), 240, "the backends side by side, without LoadGen"),
    ]
    return steps


def stop(process: subprocess.Popen) -> None:
    """SIGINT to the step's process group (a clean stop, logs written), then SIGKILL after a grace period."""
    for sent, grace in ((signal.SIGINT, STOP_GRACE_S), (signal.SIGKILL, 5)):
        try:
            os.killpg(process.pid, sent)
        except ProcessLookupError:
            return
        try:
            process.wait(grace)
            return
        except subprocess.TimeoutExpired:
            continue


class Runner:
    """Runs steps one at a time; a signal stops the one running and skips the rest, keeping what was measured."""

    def __init__(self, out: Path, deadline: float, on_done=None, environment: dict | None = None):
        self.out, self.deadline, self.on_done, self.environment = out, deadline, on_done, environment
        self.current: subprocess.Popen | None = None
        self.interrupted = False
        self.outcomes: list[Outcome] = []

    def interrupt(self, *_) -> None:
        self.interrupted = True
        if self.current is not None and self.current.poll() is None:
            os.killpg(self.current.pid, signal.SIGINT)

    def run(self, steps: list[Step]) -> list[Outcome]:
        for step in steps:
            left = self.deadline - time.monotonic()
            if self.interrupted or left < 1:
                self.outcomes.append(Outcome(step.name, "skipped: " + ("interrupted" if self.interrupted
                                                                        else "time limit"), 0.0))
                continue
            self.outcomes.append(self.run_one(step, min(step.cap_s, left)))
        return self.outcomes

    def run_one(self, step: Step, budget: float) -> Outcome:
        print(f"=== {step.name} ({step.why}; at most {budget:.0f} s): {shlex.join(step.command)}", flush=True)
        started = time.monotonic()
        with open(self.out / f"{step.name}.log", "w") as log:
            self.current = subprocess.Popen(step.command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True, env=self.environment)
            try:
                code = self.current.wait(budget)
                status = "ok" if code == 0 else f"failed (exit {code})"
            except subprocess.TimeoutExpired:
                stop(self.current)
                status = ("stopped at the time limit" if budget < step.cap_s
                          else f"stopped at its cap ({step.cap_s:.0f} s)")
            self.current = None
        if self.interrupted:
            status = "interrupted"
        outcome = Outcome(step.name, status, time.monotonic() - started)
        if self.on_done is not None:
            outcome.figure = self.on_done(step, outcome)
        print(f"    {outcome.status} in {outcome.seconds:.0f} s{': ' + outcome.figure if outcome.figure else ''}",
              flush=True)
        return outcome


def tail_line(log: Path, pattern: str) -> str:
    """The last line of a step's log matching pattern, stripped; empty when none does."""
    if not log.is_file():
        return ""
    matches = [line.strip() for line in log.read_text(errors="replace").splitlines() if re.search(pattern, line)]
    return matches[-1] if matches else ""


def run_folder(log: Path) -> Path | None:
    """The LoadGen log folder a `make perf` or `make accuracy` step reported ("logs ... in <folder>")."""
    found = re.search(r"logs (?:and accuracy\.txt )?in (\S+)$", tail_line(log, r"logs (and accuracy\.txt )?in "))
    return REPO / found.group(1) if found else None


def loadgen_figure(run: Path) -> str:
    """Throughput (Offline) or p90 latency, and the verdict, from LoadGen's detail log: '6,096.1 samples/s, VALID'."""
    from harness.detail_log import read_detail_log

    detail = read_detail_log(run / "mlperf_log_detail.txt")
    rate, p90 = detail.get("result_samples_per_second"), detail.get("result_90.00_percentile_latency_ns")
    figure = f"{float(rate):,.1f} samples/s" if rate is not None else f"p90 {float(p90) / 1e6:.3f} ms"
    return f"{figure}, {detail.get('result_validity')}"


def collect(step: Step, outcome: Outcome, out: Path) -> str:
    """The step's figure for the summary; a LoadGen step's log folder is copied into OUT/logs/<step>."""
    log = out / f"{step.name}.log"
    run = run_folder(log)
    if run is not None and run.is_dir():
        shutil.copytree(run, out / "logs" / step.name, dirs_exist_ok=True)
        if step.name.startswith("accuracy-"):
            return tail_line(log, r"F1")
        return loadgen_figure(run)
    if step.name == "cuda-tests":
        return tail_line(log, r"passed|failed|error|no tests ran")
    return tail_line(log, r"\S") if outcome.status != "ok" else ""


def describe_environment() -> int:
    import torch

    print(f"GPU: {torch.cuda.get_device_name(0)}; capability {torch.cuda.get_device_capability(0)}")
    print(f"torch {torch.__version__} (CUDA {torch.version.cuda}); Python {sys.version.split()[0]}")
    for module in ("triton", "mlperf_loadgen", "transformers", "onnxruntime"):
        try:
            imported = __import__(module)
            print(f"{module} {getattr(imported, '__version__', 'installed')}")
        except ImportError:
            print(f"{module}: not installed")
    smi = shutil.which("nvidia-smi")
    if smi:
        subprocess.run([smi, "--query-gpu=name,driver_version,memory.total,power.limit,clocks.max.sm",
                        "--format=csv"], check=False)
    return 0


def require_gpu() -> str:
    """The GPU's name; refuses before anything runs on a machine without CUDA or without LoadGen."""
    import torch

    if not torch.cuda.is_available():
        raise HarnessError("make device-check measures a CUDA GPU and this machine has none "
                           "(torch.cuda.is_available() is False); run it on the lent H100/H200 with PYTHON=python3")
    try:
        import mlperf_loadgen  # noqa: F401
    except ImportError as error:
        raise HarnessError("LoadGen is not installed: pip install --target .gpu/site "
                           ".gpu/wheels/mlcommons_loadgen-*.whl and put .gpu/site on PYTHONPATH") from error
    return torch.cuda.get_device_name(0)


def summary(outcomes: list[Outcome], gpu: str, limit_s: float, out: Path) -> str:
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"## make device-check, {gpu}, {when}", "",
             f"`make device-check TIME_LIMIT={limit_s:.0f}`; logs in the run's OUT folder ({out.name}). Quick runs "
             "(`COUNT` set): not compliant.", "",
             "| step | status | seconds | figure |", "|---|---|---:|---|"]
    for outcome in outcomes:
        figure = outcome.figure.replace("|", "/")
        lines.append(f"| {outcome.name} | {outcome.status} | {outcome.seconds:.0f} | {figure} |")
    return "\n".join(lines) + "\n"


def write_results(outcomes: list[Outcome], gpu: str, limit_s: float, out: Path,
                  docs: Path = REPO / "docs" / "benchmarks.md") -> None:
    """The summary into OUT and appended to docs, whose copy goes into OUT: a lent machine's tree is not kept."""
    text = summary(outcomes, gpu, limit_s, out)
    (out / "device_check.md").write_text(text)
    docs.write_text(docs.read_text().rstrip("\n") + "\n\n" + text)
    shutil.copy2(docs, out / "benchmarks.md")
    print(text)
    print(f"wrote {out / 'device_check.md'} and {out / 'benchmarks.md'} (docs/benchmarks.md with the figures)")


def parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="python -m benchmarks.device_check", description=__doc__.split("\n\n")[0])
    add_variables(parser, "device-check", time_limit={"default": DEFAULT_TIME_LIMIT_S},
                  build_dir={"default": REPO / "build"})
    parser.add_argument("--out", type=Path, help="where results go (default $OUT, else build/device-check/<time>)")
    parser.add_argument("--environment", action="store_true", help=argparse.SUPPRESS)
    return parser


def main() -> int:
    args = parser().parse_args()
    if args.environment:
        return describe_environment()
    if args.time_limit < 60:
        raise HarnessError(f"TIME_LIMIT={args.time_limit:.0f}: give at least 60 seconds (default "
                           f"{DEFAULT_TIME_LIMIT_S})")
    if args.small_model is not None and not (args.small_model / "config.json").is_file():
        raise HarnessError(f"SMALL_MODEL={args.small_model}: no config.json there; give the shared small model's "
                           "directory (../shared/models/minilm-squad-devhalf, carried to the device)")
    steps = plan(args.small_model.resolve() if args.small_model else None)
    if args.steps:
        wanted = args.steps.split(",")
        unknown = sorted(set(wanted) - {step.name for step in steps})
        if unknown:
            raise HarnessError(f"CHECKS: no step {', '.join(unknown)}; the steps: {', '.join(s.name for s in steps)}")
        steps = [step for step in steps if step.name in wanted]
    if args.plan:
        for step in steps:
            print(f"{step.name:18} at most {step.cap_s:4.0f} s  {shlex.join(step.command)}")
        return 0
    gpu = require_gpu()
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = args.out or (Path(os.environ["OUT"]) if os.environ.get("OUT") else args.build_dir / "device-check" / stamp)
    out.mkdir(parents=True, exist_ok=True)

    environment = dict(os.environ)
    if args.small_model is not None and args.small_model.resolve().parent.name == "models":
        environment["BERT99_SHARED"] = str(args.small_model.resolve().parents[1])  # where the CUDA tests look
    runner = Runner(out, time.monotonic() + args.time_limit,
                    lambda step, outcome: collect(step, outcome, out), environment)
    signal.signal(signal.SIGTERM, runner.interrupt)
    signal.signal(signal.SIGINT, runner.interrupt)
    outcomes = runner.run(steps)
    code = 130 if runner.interrupted else 0 if all(outcome.status == "ok" for outcome in outcomes) else 1
    write_results(outcomes, gpu, args.time_limit, out)
    return code


if __name__ == "__main__":
    run_main(main)
