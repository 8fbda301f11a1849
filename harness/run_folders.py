"""Where a run's logs live, and the rule that no finished run is lost: each new one keeps the one before it.

A scenario's folder holds the newest run of each mode where a submission tree has it (performance/run_1,
accuracy, TEST01) and every earlier one under earlier/ (earlier/performance-20261202T181126Z, ...). A quick
run never takes the place of a compliant one unless asked (REPLACE=1), and `make submission` packages the
best run of each mode, not merely the newest.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from common.errors import HarnessError

EARLIER = "earlier"  # a scenario's earlier runs, beside its newest
RUN_INFO = "run_info.json"


def configuration_name(precision: str, device: str, options: dict[str, str], data_label: str = "") -> str:
    """What keeps runs of one model and backend from replacing each other: precision, kind of device, data
    other than MLPerf's, and backend options (fp32-cpu, fp16-cuda-synthetic-seq128, fp8-cuda+triton_attention=1).
    cuda:0 and cuda:1 are one kind of system."""
    options_part = "".join(f"+{key}={value}" for key, value in sorted(options.items()))
    name = f"{precision}-{device.partition(':')[0]}{data_label}{options_part}"
    return re.sub(r"[^A-Za-z0-9._=+-]+", "-", name)


def log_dir(logs: Path, model_name: str, backend: str, configuration: str, scenario: str, accuracy: bool,
            compliance_test: str = "") -> Path:
    """Laid out as in a submission: <scenario>/performance/run_1, <scenario>/accuracy, <scenario>/TEST01/..."""
    base = logs / model_name / backend / configuration / scenario
    if compliance_test:
        return base / compliance_test / "performance" / "run_1"
    return base / "accuracy" if accuracy else base / "performance" / "run_1"


@dataclass(frozen=True)
class Slot:
    """One mode's place in a scenario's folder: its newest run, and where the earlier ones are kept."""

    scenario_dir: Path
    mode: str  # performance, accuracy or TEST01

    @property
    def newest(self) -> Path:
        if self.mode == "performance":
            return self.scenario_dir / "performance" / "run_1"
        return self.scenario_dir / self.mode

    def runs(self) -> list[Path]:
        """The newest run first, then the earlier ones, newest first."""
        earlier = sorted((self.scenario_dir / EARLIER).glob(f"{self.mode}-*"), reverse=True)
        return [path for path in (self.newest, *earlier) if path.is_dir()]


def slot_of(final_dir: Path) -> Slot:
    """The slot a run folder made by log_dir fills (TEST01's own run_1 fills none: the test keeps its folder)."""
    if final_dir.name == "run_1":
        return Slot(final_dir.parents[1], "performance")
    return Slot(final_dir.parent, final_dir.name)


def read_run_info(run_dir: Path) -> dict | None:
    try:
        return json.loads((run_dir / RUN_INFO).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def is_compliant(info: dict, mode: str) -> bool:
    """A performance run with full LoadGen settings and a VALID result; an accuracy run over every sample."""
    if info.get("count") is not None:
        return False
    return mode != "performance" or info.get("loadgen_result") == "VALID"


def describe_run(info: dict, mode: str) -> str:
    coverage = f"COUNT={info['count']}" if info.get("count") else "COUNT=full"
    result = f", LoadGen {info['loadgen_result']}" if mode == "performance" and info.get("loadgen_result") else ""
    return f"{coverage}{result}, finished {info.get('end_utc', '?')[:19].replace('T', ' ')} UTC"


def replacement_problem(final_dir: Path, count: int | None, replace: bool) -> str | None:
    """Why this run may not become the newest in `final_dir`: it would put a lesser run over a better one.

    A quick performance run over a compliant one; an accuracy run over fewer samples than the one there.
    Nothing is deleted either way (the earlier run is kept); this keeps the newest place for the better run
    unless REPLACE=1 says otherwise.
    """
    slot = slot_of(final_dir)
    earlier = read_run_info(final_dir)
    if replace or earlier is None or count is None:
        return None
    earlier_count = earlier.get("count")
    if slot.mode == "performance" and not is_compliant(earlier, slot.mode):
        return None
    if slot.mode == "accuracy" and earlier_count is not None and earlier_count <= count:
        return None
    what = "a compliant run" if is_compliant(earlier, slot.mode) else f"a run over {earlier_count} samples"
    return (f"{final_dir} holds {what} ({describe_run(earlier, slot.mode)}); this quick run (COUNT={count}) would "
            f"take its place as the newest. To run it anyway give REPLACE=1 (the earlier run is then kept in "
            f"{slot.scenario_dir / EARLIER}, and `make submission` still packages the better one), or give quick "
            "runs a BUILD= folder of their own")


def keep_earlier(final_dir: Path) -> Path | None:
    """Move the run in `final_dir` (if any) to earlier/<mode>-<its end time>; where it went."""
    if not final_dir.exists():
        return None
    slot = slot_of(final_dir)
    info = read_run_info(final_dir) or read_run_info(final_dir / "performance" / "run_1") or {}  # TEST01's own run
    stamp = re.sub(r"[^0-9TZ]", "", info.get("end_utc", "")[:19]) + "Z" if info.get("end_utc") else "unfinished"
    kept = slot.scenario_dir / EARLIER / f"{slot.mode}-{stamp}"
    suffix = 1
    while kept.exists():
        suffix += 1
        kept = kept.with_name(f"{slot.mode}-{stamp}-{suffix}")
    kept.parent.mkdir(parents=True, exist_ok=True)
    final_dir.rename(kept)
    return kept


LOG_BYTES = 2 << 20  # summary, detail log, user.conf and run_info.json, with room to spare
RESPONSE_BYTES_PER_TOKEN = 2 * 4 * 2  # a logged response: [start, end] float32 per position, written as hex
TRACE_BYTES_PER_SAMPLE = 300  # LoadGen's trace log (TRACE=1)


def log_bytes(seq_length: int, logged_samples: int, traced_samples: int = 0) -> int:
    """About what a run writes: LoadGen's logs, `logged_samples` responses in its accuracy log, the trace."""
    return (LOG_BYTES + logged_samples * (seq_length * RESPONSE_BYTES_PER_TOKEN + 64)
            + traced_samples * TRACE_BYTES_PER_SAMPLE)


def check_free_space(directory: Path, needed: int, what: str) -> None:
    """Refuse before a run starts, rather than leave LoadGen writing truncated logs into a full disk."""
    probe = directory
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free < needed:
        raise HarnessError(f"{probe} has {free / 2**20:.1f} MiB free, and {what} needs about {needed / 2**20:.1f} MiB; "
                           "free some space there, or give BUILD= a folder on a larger disk")


def unfinished_logs(work_dir: Path, accuracy_log: bool) -> list[str]:
    """LoadGen's logs that it did not finish writing (a disk that filled up): never to be taken for a result."""
    problems = []
    for name in ("mlperf_log_summary.txt", "mlperf_log_detail.txt"):
        path = work_dir / name
        if not path.is_file() or path.stat().st_size == 0:
            problems.append(f"{name} is empty")
    detail = work_dir / "mlperf_log_detail.txt"
    if detail.is_file() and detail.stat().st_size and not detail.read_bytes()[-4096:].rstrip().endswith(b"}"):
        problems.append("mlperf_log_detail.txt ends mid-record")
    responses = work_dir / "mlperf_log_accuracy.json"
    if accuracy_log and (not responses.is_file() or not _tail(responses).rstrip().endswith(b"]")):
        problems.append("mlperf_log_accuracy.json ends before its last response")
    return problems


def _tail(path: Path, size: int = 64) -> bytes:
    with open(path, "rb") as file:
        file.seek(max(0, path.stat().st_size - size))
        return file.read()


class RunLock:
    """Keeps a second run of the same scenario and mode out of this one's folder while it runs.

    Two at once (say, two precisions tried on two GPUs) would share the .partial folder: the second
    would delete the first one's logs under it. The lock file is removed when the run ends (the flock
    itself goes with the process, however it ends); a taker checks that the file it locked is still the
    one in place, so removing it never lets two runs in.
    """

    def __init__(self, final_dir: Path, what: str):
        import fcntl

        final_dir.parent.mkdir(parents=True, exist_ok=True)
        self.path = final_dir.with_name(final_dir.name + ".lock")
        while True:
            self.handle = open(self.path, "a")
            try:
                fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self.handle.close()
                raise HarnessError(f"another {what} is running into {final_dir}; wait for it to finish, or give "
                                   "this one its own BUILD= folder") from None
            if self.path.exists() and os.stat(self.path).st_ino == os.fstat(self.handle.fileno()).st_ino:
                return
            self.handle.close()  # its holder removed it as we took it: take the one in place now

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *_) -> None:
        self.path.unlink(missing_ok=True)  # while still held
        self.handle.close()
