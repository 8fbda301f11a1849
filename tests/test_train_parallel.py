"""Fine-tuning over several processes: every PARALLEL layout on the single process's loss curve, resume after a
kill or Ctrl-C, the SLURM job. (tests/test_train.py has the rest; apart, pytest-xdist runs them side by side.)"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys

import numpy as np
import pytest

from common.errors import HarnessError
from tests.conftest import REPO, cli_environment, run_cli
from tests.training_runs import (
    TINY,
    deepspeed_launcher,
    losses,
    rows,
    start,
    start_nodes,
    train,
    wait_for_steps,
)

NEEDS_DEEPSPEED = pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None,
                                     reason="DeepSpeed is not installed (make setup installs it)")


@pytest.mark.slow
def test_every_layout_draws_the_single_process_curve_and_train_compare_tables_them(train_build):
    """Same seed, data and global batch, dropout 0: the same losses step by step, the same trained model.
    `make train-compare` runs the baseline, DDP, the pipelines and DeepSpeed's; the other layouts run beside."""
    common = [*TINY, "--steps", "4", "--dropout", "0"]
    compare = ["benchmarks.train_compare", *common, "--eval-every", "2", "--build-dir", str(train_build)]
    result = run_cli(*compare, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    folder = train_build / "train" / "compare" / "default"
    results = {row["configuration"]: row for row in json.loads((folder / "results.json").read_text())}
    deepspeed = importlib.util.find_spec("deepspeed") is not None  # installed by make setup
    assert [results[name]["status"] for name in ("baseline", "ddp2", "pipeline2", "deepspeed-pipeline2")] == \
        ["ok"] * 3 + ["ok" if deepspeed else "skipped"]
    assert results["pipeline4"]["status"] == ("ok" if (os.cpu_count() or 1) >= 4 else "skipped")
    table = (folder / "compare.md").read_text()
    assert "| baseline | 1 |" in table and "| pipeline2 | 2 |" in table
    assert ("| deepspeed-pipeline2 | 2 |" in table) == deepspeed
    assert (folder / "throughput.png").stat().st_size > 0 and (folder / "validation_loss.png").stat().st_size > 0
    runs = {label: f"compare/default/{label}" for label in ("baseline", "ddp2", "pipeline2")}
    layouts = {"ddp-accumulate": ["--parallel", "ddp", "--workers", "2", "--accumulate", "2"],  # no_sync slices
               "pipeline-gpipe": ["--parallel", "pipeline", "--stages", "2", "--schedule", "gpipe",
                                  "--microbatches", "2"]}
    for name, layout in layouts.items():
        train(train_build, *common, *layout, "--run", runs.setdefault(name, f"curve-{name}"))
    if deepspeed:
        runs["deepspeed-pipeline2"] = "compare/default/deepspeed-pipeline2"
        runs["deepspeed-launched"] = "curve-deepspeed-launched"  # DeepSpeed's own launcher passes --local_rank
        deepspeed_launcher(train_build, *common, "--parallel", "deepspeed-pipeline", "--stages", "2", "--accumulate",
                           "2", "--run", runs["deepspeed-launched"], ranks=2)
    single = losses(train_build, runs["baseline"])
    assert len(single) == 4 and single[-1] < single[0]
    summaries = {name: json.loads((train_build / "train" / run / "summary.json").read_text())
                 for name, run in runs.items()}
    for name, run in runs.items():
        assert losses(train_build, run) == pytest.approx(single, rel=1e-5, abs=1e-6), name
        assert summaries[name]["validation_loss"] == pytest.approx(summaries["baseline"]["validation_loss"], rel=1e-5)
    assert summaries["pipeline2"]["workers"] == 2 and summaries["pipeline-gpipe"]["schedule"] == "gpipe"
    from safetensors.torch import load_file

    merged = load_file(train_build / "train" / runs["pipeline2"] / "model" / "model.safetensors")
    whole = load_file(train_build / "train" / runs["baseline"] / "model" / "model.safetensors")
    assert merged.keys() == whole.keys()  # every stage's weights, under the full model's names
    # Adam moves a weight by up to lr per step whatever the gradient's size: rounding can flip a tiny one's sign
    assert all(np.allclose(merged[key].numpy(), whole[key].numpy(), atol=4 * 5e-5) for key in whole)
    if deepspeed:
        launched = train_build / "train" / runs["deepspeed-launched"]
        settings = json.loads((launched / "ds_config.json").read_text())
        assert (settings["train_batch_size"], settings["gradient_accumulation_steps"]) == (8, 8)  # 2 x 4 microbatches
        assert load_file(launched / "model" / "model.safetensors").keys() == whole.keys()
    again = run_cli(*compare, cwd=REPO)
    assert again.returncode == 0 and again.stdout.count("finished before, reusing") == 3 + deepspeed


def test_deepspeed_missing_names_the_extra(monkeypatch):
    from train.__main__ import parser
    from train.config import resolve

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *rest: None if name == "deepspeed" else
                        real(name, *rest))
    with pytest.raises(HarnessError, match=re.escape("needs DeepSpeed: pip install '.[deepspeed]'")):
        resolve(parser().parse_args(["--shape", "tiny", "--parallel", "deepspeed-pipeline"]))
    monkeypatch.undo()
    if real("deepspeed"):
        with pytest.raises(HarnessError, match="give PRECISION=bf16"):
            resolve(parser().parse_args(["--shape", "tiny", "--parallel", "deepspeed-pipeline", "--precision",
                                         "fp16"]))


@pytest.mark.slow
@NEEDS_DEEPSPEED
def test_zero1_over_two_copies_of_a_deepspeed_pipeline_resumes_on_the_single_process_curve(train_build):
    """Four ranks as two torchrun nodes of two: 2 stages x 2 copies, ZeRO-1 splitting AdamW's state between the
    copies; killed past a checkpoint, resumed from DeepSpeed's own checkpoint files, every loss on the curve."""
    common = [*TINY, "--steps", "6", "--dropout", "0"]
    train(train_build, *common, "--run", "zero-single")
    layout = [*common, "--parallel", "deepspeed-pipeline", "--stages", "2", "--workers", "4", "--zero", "1",
              "--checkpoint-every", "2", "--run", "zero1"]
    ranks = start_nodes(train_build, *layout, nodes=2, per_node=2)
    wait_for_steps(train_build, "zero1", 3, ranks[0])
    for rank in ranks:
        rank.kill()
        rank.wait()
    from train.checkpoint import latest_step, step_dir

    folder = train_build / "train" / "zero1"
    saved = step_dir(folder, latest_step(folder))
    assert sorted(path.name for path in (saved / "deepspeed").glob("zero_pp_rank_*")) == [
        f"zero_pp_rank_{copy}_mp_rank_{stage:02d}_optim_states.pt" for copy in (0, 1) for stage in (0, 1)]
    settings = json.loads((folder / "ds_config.json").read_text())
    assert settings["zero_optimization"]["stage"] == 1 and settings["train_micro_batch_size_per_gpu"] == 1
    resumed = start_nodes(train_build, *layout, "--resume", nodes=2, per_node=2)
    outputs = [rank.communicate(timeout=600) for rank in resumed]
    assert [rank.returncode for rank in resumed] == [0] * 4, outputs[0][1][-3000:]
    assert "resuming zero1 at step" in outputs[0][0]
    assert losses(train_build, "zero1") == pytest.approx(losses(train_build, "zero-single"), rel=1e-5, abs=1e-6)


@pytest.mark.slow
@NEEDS_DEEPSPEED
def test_deepspeed_splits_an_uneven_layer_count_as_our_pipeline_does(train_build):
    """4 layers over 3 stages: [0, 1], [2], [3] as layer_split gives (DeepSpeed's own balance of every piece,
    embeddings and head counted, gives [0], [1, 2], [3], and the run stops saying so); 3 ranks as three nodes.
    (Its losses do not show the split: the other DeepSpeed tests hold them to the single process's.)"""
    ranks = start_nodes(train_build, "--shape", "layers=4,hidden=64,heads=2,intermediate=128", "--seq-len", "128",
                        "--batch-size", "6", "--val-questions", "20", "--steps", "1", "--parallel",
                        "deepspeed-pipeline", "--stages", "3", "--microbatches", "3", "--run", "uneven", nodes=3,
                        per_node=1)
    outputs = [rank.communicate(timeout=600) for rank in ranks]
    assert [rank.returncode for rank in ranks] == [0] * 3, outputs[0][1][-3000:]
    assert "not as PARALLEL=pipeline does" not in outputs[0][1]


@NEEDS_DEEPSPEED
@pytest.mark.parametrize(("arguments", "message"), [
    (["--zero", "2"], r"ZERO=2: DeepSpeed's pipeline engine runs ZeRO stage 0 or 1"),
    (["--zero", "1", "--optimizer", "lamb"], r"LAMB's trust ratio, taken weight by weight.*give OPTIMIZER=adamw"),
    (["--workers", "3"], r"WORKERS / STAGES copies of the pipeline: WORKERS=3 is not a multiple of STAGES=2"),
    (["--workers", "4", "--batch-size", "12"], r"slices of 12, which do not divide into MICROBATCHES x WORKERS / "
                                                 r"STAGES=8 equal parts"),
])
def test_bad_deepspeed_settings_get_one_clear_error(arguments, message):
    from train.__main__ import parser
    from train.config import resolve_and_check

    with pytest.raises(HarnessError, match=message):
        resolve_and_check(parser().parse_args(["--shape", "tiny", "--parallel", "deepspeed-pipeline", "--stages",
                                               "2", *arguments]))


@NEEDS_DEEPSPEED
def test_deepspeed_copies_and_zero_name_the_run():
    from train.__main__ import parser
    from train.config import resolve

    config = resolve(parser().parse_args(["--shape", "tiny", "--parallel", "deepspeed-pipeline", "--workers", "4",
                                          "--zero", "1", "--micro-batch", "2"]))
    assert (config.stages, config.replicas, config.batch_size) == (2, 2, 4)  # 2 stages (the default) x 2 copies
    assert config.default_run_name("tiny").startswith("tiny-deepspeed-pipeline2x2-zero1-fp32-")


@pytest.mark.slow
def test_a_killed_run_resumes_on_the_same_curve(train_build):
    """Dropout on (its masks come from the step's seed): killed with SIGKILL, resumed from the last checkpoint."""
    common = [*TINY, "--seq-len", "256", "--steps", "12", "--checkpoint-every", "3"]
    train(train_build, *common, "--run", "whole")
    process = start(train_build, *common, "--run", "killed")
    wait_for_steps(train_build, "killed", 7, process)
    process.kill()
    process.wait()
    assert len(rows(train_build, "killed")) >= 7  # more rows than the checkpoint has: they are dropped and redone
    changed = train(train_build, *common, "--lr", "1e-3", "--run", "killed", "--resume", check=False)
    assert changed.returncode == 2 and "these differ: LR=5e-05 then, 0.001 now" in changed.stderr
    resumed = train(train_build, *common, "--run", "killed", "--resume")
    assert "resuming killed at step 6 of 12" in resumed.stdout or "resuming killed at step 9 of 12" in resumed.stdout
    assert losses(train_build, "killed") == losses(train_build, "whole")
    assert [row["loss"] for row in rows(train_build, "killed", "evals")] == \
        [row["loss"] for row in rows(train_build, "whole", "evals")]


@pytest.mark.slow
def test_ctrl_c_stops_a_pipeline_with_a_checkpoint_and_resume_finishes_it(train_build):
    common = [*TINY, "--seq-len", "256", "--steps", "10", "--checkpoint-every", "0", "--parallel", "pipeline"]
    train(train_build, *common, "--run", "pipeline-whole")
    process = start(train_build, *common, "--run", "pipeline-stopped")
    wait_for_steps(train_build, "pipeline-stopped", 3, process)
    process.send_signal(signal.SIGINT)  # rank 0 alone: it tells the other stage
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr[-3000:]
    from train.checkpoint import checkpoints_dir, latest_step

    stopped_at = latest_step(train_build / "train" / "pipeline-stopped")
    assert 3 <= stopped_at < 10 and len(rows(train_build, "pipeline-stopped")) == stopped_at
    assert sorted(path.name for path in (checkpoints_dir(train_build / "train" / "pipeline-stopped")
                                         / f"step-{stopped_at}").iterdir()) == ["rank-0.pt", "rank-1.pt"]
    train(train_build, *common, "--run", "pipeline-stopped", "--resume")
    assert losses(train_build, "pipeline-stopped") == pytest.approx(losses(train_build, "pipeline-whole"), rel=1e-6)
    again = train(train_build, *common, "--run", "pipeline-stopped", "--resume")
    assert "finished all 10 steps before: nothing to resume" in again.stdout


@pytest.mark.slow
def test_slurm_training_job_stops_with_a_checkpoint_and_resumes(train_build):
    environment = {**cli_environment(), "SLURM_SUBMIT_DIR": str(REPO), "SLURM_GPUS_ON_NODE": "0",
                   "PYTHON": sys.executable, "BUILD": str(train_build), "SHAPE": "tiny", "SEQ_LEN": "256",
                   "BATCH_SIZE": "8", "STEPS": "40", "VAL_QUESTIONS": "20", "DEVICE": "cpu", "RUN": "slurm"}
    job = subprocess.Popen(["bash", "slurm/train.sbatch"], cwd=REPO, env=environment, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, start_new_session=True)  # as slurmstepd starts it
    wait_for_steps(train_build, "slurm", 3, job)
    job.send_signal(signal.SIGINT)  # what #SBATCH --signal=B:INT@120 sends before the time limit
    output, _ = job.communicate(timeout=120)
    assert job.returncode == 130, output[-3000:]
    assert "RESUME=1 sbatch slurm/train.sbatch" in output
    run = json.loads((train_build / "train" / "slurm" / "run.json").read_text())
    assert run["config"]["parallel"] == "ddp" and run["config"]["workers"] == 2  # the job's defaults on CPUs
    finished = subprocess.run(["bash", "slurm/train.sbatch"], cwd=REPO, env={**environment, "RESUME": "1"},
                              capture_output=True, text=True, timeout=600, start_new_session=True)
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    assert len(rows(train_build, "slurm")) == 40
    assert (train_build / "train" / "slurm" / "model" / "model.safetensors").is_file()
