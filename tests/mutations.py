"""Rules the suite once let break unnoticed, each broken again on purpose: its tests must now fail.

    python -m tests.mutations            # all of them, from the repository root (about 10 minutes on 2 cores)
    python -m tests.mutations --list     # names only
    python -m tests.mutations "N_BEST 21" "SUT address"

Each mutation replaces one exact piece of code in a copy of the checkout (the working tree is never
touched) and runs, in that copy, the tests that guard the rule. 'caught' means they failed; a mutation
whose code is no longer found is reported as such, so the list cannot silently go stale. mutmut covers
the scoring modules more widely: `make mutation`. The list and its last results: docs/mutations.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("BERT99_SHARED", REPO.parent / "shared"))
CHECK = "submission/check.py"
RULES = "tests/test_check_rules.py"
POST = "accuracy/postprocess.py"
POST_TESTS = "tests/test_postprocess.py"
TRAIN_TESTS = "tests/test_train.py"
PARALLEL_TRAIN_TESTS = "tests/test_train_parallel.py"

# name: (file, code as it is, code broken, tests that must fail)
MUTATIONS = {
    "minimum duration": (CHECK, 'if (log.get("effective_min_duration_ms") or 0) < MIN_DURATION_MS:', "if False:",
                         RULES),
    "performance sample count": (CHECK, 'if (log.get("effective_performance_sample_count") or 0) < DATASET_SIZE:',
                                 "if False:", RULES),
    "samples per query": (CHECK, 'if scenario == "Offline" and (log.get("effective_samples_per_query") or 0) < '
                                 "DATASET_SIZE:", "if False:", RULES),
    "minimum query count": (CHECK, "if scenario in MIN_QUERIES and", "if False and", RULES),
    "early stopping": (CHECK, 'if scenario != "Offline" and not log.get("early_stopping_met", False):', "if False:",
                       RULES),
    "Server 130 ms": (CHECK, 'if scenario == "Server" and (log.get("effective_target_latency_ns") or 0) > '
                             "SERVER_LATENCY_NS:", "if False:", RULES),
    "accuracy log truncation": (CHECK, '.stat().st_size > MAX_ACCURACY_LOG_BYTES:', ".stat().st_size < 0:", RULES),
    "accuracy coverage": (CHECK, "if covered != DATASET_SIZE:", "if False:", RULES),
    "bert-99 target 0": (CHECK, "TARGET_F1 = REFERENCE_F1 * 0.99", "TARGET_F1 = 0.0", RULES),
    "required scenarios": (CHECK, "if scenario not in scenarios:", "if False:", RULES),
    "N_BEST 5": (POST, "N_BEST = 20", "N_BEST = 5", POST_TESTS),
    "N_BEST 10": (POST, "N_BEST = 20", "N_BEST = 10", POST_TESTS),
    "N_BEST 19": (POST, "N_BEST = 20", "N_BEST = 19", POST_TESTS),
    "N_BEST 21": (POST, "N_BEST = 20", "N_BEST = 21", POST_TESTS),
    "max answer 29": (POST, "MAX_ANSWER_LENGTH = 30", "MAX_ANSWER_LENGTH = 29", POST_TESTS),
    "max context on the end": (POST, "end_ok = (ends < length) & (token_to_orig[ends] >= 0)",
                               "end_ok = (ends < length) & (token_to_orig[ends] >= 0) & max_context[ends]",
                               POST_TESTS),
    "answer text through WordPiece": (POST, "return [word for word, _ in backend.pre_tokenizer",
                                      "return tokenizer.tokenize(text)\n    return [word for word, _ in "
                                      "backend.pre_tokenizer", f"{POST_TESTS} tests/test_reference_parity.py"),
    "bert-99 verdict": ("accuracy/evaluate.py", 'verdict = "PASS" if self.f1 >= target else "FAIL"',
                        'verdict = "PASS"', POST_TESTS),
    "COUNT=full gives the default": ("harness/run_config.py", 'if count == "full":\n        return None',
                                     'if count == "full":\n        return default', "tests/test_run.py -k count_full"),
    "bf16 on CPU in fp32": ("sut/pytorch_backend.py",
                            'dtype = CPU_FP8_DTYPE if precision == "fp8" and self.device.type == "cpu"',
                            'dtype = CPU_FP8_DTYPE if precision in ("fp8", "bf16") and self.device.type == "cpu"',
                            "tests/test_packed.py -k bf16"),
    "tanh GELU switch a no-op": ("sut/packed_bert.py", "layer.approximate_gelu = enabled",
                                 "layer.approximate_gelu = False", "tests/test_packed.py -k gelu"),
    "SUT address": ("sut/sut.py", "range(address, address + count * stride, stride)",
                    "itertools.repeat(address, count)", "tests/test_run.py -k own_logits"),
    "full answers after a backend error": ("sut/sut.py", "size = 0 if self.error is not None else stride",
                                           "size = stride", "tests/test_run.py -k empty_answers"),
    "accelerators_per_node 0": ("submission/system.py", '"accelerators_per_node": str(gpu_count),',
                                '"accelerators_per_node": gpu_count,', "tests/test_submission.py -k artifacts"),
    # Training (train/): each rule broken once, watched failing, when it was written.
    "answer span not narrowed": ("train/data.py", "            if doc_ids[new_start:new_end + 1].tolist() == wanted:",
                                 "            if False:", f"{TRAIN_TESTS} -k equal_the_references"),
    "pipeline microbatch losses summed": ("train/parallel.py", "* (self.factor / self.microbatches)",
                                          "* self.factor", f"{PARALLEL_TRAIN_TESTS} -k single_process_curve"),
    "DDP loss not averaged over ranks": ("train/parallel.py", "last_slice) / self.world", "last_slice)",
                                         f"{PARALLEL_TRAIN_TESTS} -k single_process_curve"),
    "DDP gradients not synchronised": ("train/parallel.py", "with nullcontext() if last_slice else",
                                       "with self.module.no_sync() if True else",
                                       f"{PARALLEL_TRAIN_TESTS} -k single_process_curve"),
    "padding in the loss": ("train/model.py",
                            "return head(hidden).float().masked_fill(input_mask[..., None] == 0, PAD_LOGIT)",
                            "return head(hidden).float()", f"{PARALLEL_TRAIN_TESTS} -k single_process_curve"),
    "dropout not reseeded per step": ("train/loop.py", "torch.manual_seed(config.seed * 1_000_003 + self.step",
                                      "int(config.seed * 1_000_003 + self.step",
                                      f"{PARALLEL_TRAIN_TESTS} -k killed_run"),
    "scheduler not restored": ("train/loop.py", '        self.scheduler.load_state_dict(part["scheduler"])\n', "",
                               f"{PARALLEL_TRAIN_TESTS} -k killed_run"),
    "rows past the checkpoint kept": ("train/loop.py", 'rows = [row for row in rows if row["step"] <= step]',
                                      "rows = rows", f"{PARALLEL_TRAIN_TESTS} -k killed_run"),
    "Ctrl-C not shared by the ranks": ("train/loop.py", "self.engine.reduce_sum([*losses, float(interrupted())])",
                                       "[*self.engine.reduce_sum([*losses]), float(interrupted())]",
                                       f"{PARALLEL_TRAIN_TESTS} -k ctrl_c"),
}


def checkout_copy(destination: Path) -> None:
    """The tracked and untracked (not ignored) files of this checkout, as they are now."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, check=True,
                            capture_output=True, text=True).stdout.split("\0")
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)


def run_mutation(name: str) -> str:
    path, original, broken, tests = MUTATIONS[name]
    with tempfile.TemporaryDirectory(prefix="mutation-") as work:
        copy = Path(work) / "repo"
        checkout_copy(copy)
        text = (copy / path).read_text()
        if text.count(original) != 1:
            return f"STALE (the code to break is found {text.count(original)} times in {path})"
        (copy / path).write_text(text.replace(original, broken))
        environment = {**os.environ, "PYTHONPATH": str(copy), "BERT99_SHARED": str(SHARED)}
        result = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
                                 *tests.split()], cwd=copy, env=environment, capture_output=True, text=True)
    if result.returncode == 1:
        return "caught"
    if result.returncode == 0:
        return "SURVIVED (its tests pass)"
    return f"ERROR (pytest exit {result.returncode}: {result.stdout.strip().splitlines()[-1:]})"


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.mutations", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help="mutations to try (default: all)")
    parser.add_argument("--list", action="store_true", help="print the names and exit")
    args = parser.parse_args()
    if args.list:
        print("\n".join(MUTATIONS))
        return 0
    unknown = [name for name in args.names if name not in MUTATIONS]
    if unknown:
        print(f"error: unknown mutation {', '.join(unknown)}; --list names them", file=sys.stderr)
        return 2
    failures = 0
    for name in args.names or MUTATIONS:
        started = time.monotonic()
        verdict = run_mutation(name)
        failures += verdict != "caught"
        print(f"{name}: {verdict} ({time.monotonic() - started:.0f} s; {MUTATIONS[name][3]})", flush=True)
    print(f"{len(args.names or MUTATIONS) - failures} caught, {failures} not")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
