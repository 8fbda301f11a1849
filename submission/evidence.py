"""Before anything is packaged: each chosen run is whole, and its logs support what it reports.

A run folder missing a file is named with the command that makes it again; a summary or accuracy.txt
that its own logs contradict (an edited figure) is refused; every accuracy log is scored again and must
give the F1 its accuracy.txt claims. Nothing of an earlier package is touched until all of this passes.
"""

from __future__ import annotations

from pathlib import Path

from accuracy.evaluate import evaluate_log
from accuracy.loadgen_log import file_sha256, read_log_entries
from common.errors import HarnessError
from harness.detail_log import read_detail_log
from harness.finished_runs import ScenarioRuns, make_command
from submission.log_consistency import accuracy_txt_problems, performance_problems
from submission.tree import accuracy_hash

PERFORMANCE_FILES = ("mlperf_log_summary.txt", "mlperf_log_detail.txt", "user.conf")
ACCURACY_FILES = ("mlperf_log_summary.txt", "mlperf_log_detail.txt", "mlperf_log_accuracy.json", "accuracy.txt")


def _remake(target: str, runs: ScenarioRuns, build_dir: Path) -> str:
    """The command that makes this run again, over as many samples."""
    info = runs.performance_info if target == "perf" else runs.accuracy_info
    return f"`{make_command(target, runs.scenario, info, build_dir, count=True)}`"


def check_evidence(all_runs: list[ScenarioRuns], build_dir: Path, log=print) -> None:
    """Refuse, naming the file and the command that remakes the run, anything a chosen run cannot back."""
    from qsl.samples import load_samples, resolve_samples

    features = None
    for runs in all_runs:
        for target, run_dir, names in (("perf", runs.performance_dir, PERFORMANCE_FILES),
                                       ("accuracy", runs.accuracy_dir, ACCURACY_FILES)):
            missing = [name for name in names if not (run_dir / name).is_file()]
            if missing:
                raise HarnessError(f"{run_dir} lacks {', '.join(missing)}: the run is damaged; make it again with "
                                   f"{_remake(target, runs, build_dir)}, or move the folder out of the way")
        problems = performance_problems(runs.performance_dir) + accuracy_txt_problems(runs.accuracy_dir)
        if problems:
            raise HarnessError("; ".join(problems) + f"; make the {runs.scenario} runs again "
                               f"({_remake('perf', runs, build_dir)}, {_remake('accuracy', runs, build_dir)})")
        full_log, accuracy_txt = runs.accuracy_dir / "mlperf_log_accuracy.json", runs.accuracy_dir / "accuracy.txt"
        if accuracy_hash(accuracy_txt) != file_sha256(full_log):
            raise HarnessError(f"{full_log} does not match the hash= line of {accuracy_txt}: the log changed "
                               f"after it was scored; rerun {_remake('accuracy', runs, build_dir)}")
        samples = read_detail_log(runs.accuracy_dir / "mlperf_log_detail.txt").get("qsl_reported_total_count")
        logged = len({index for index, _ in read_log_entries(full_log)})
        if logged != samples:
            raise HarnessError(f"{full_log} answers {logged} samples, but its run's mlperf_log_detail.txt says "
                               f"{samples}: the log is not this run's; rerun {_remake('accuracy', runs, build_dir)}")
        if features is None:
            log("scoring each accuracy log again, to check its accuracy.txt")
            features = load_samples(resolve_samples(), build_dir, log=lambda *_: None)
        claimed = accuracy_txt.read_text().splitlines()[0]
        scored = evaluate_log(full_log, features).official_line()
        if claimed != scored:
            raise HarnessError(f"{accuracy_txt} says {claimed}, but its log {full_log.name} scores {scored}: "
                               f"accuracy.txt was edited; rerun {_remake('accuracy', runs, build_dir)}")
