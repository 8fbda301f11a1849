"""WORKERS=N: real torch.distributed (Gloo) ranks, real LoadGen, dealing by tokens, faults that name the rank."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import types

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from common.cpu import cpu_list, instance_cores, physical_cores
from harness.distributed import free_port
from sut.backend import Backend
from tests.conftest import cli_environment, run_cli

pytestmark = pytest.mark.slow  # processes joining a process group, LoadGen runs


class EchoBackend(Backend):
    """Each token's id as its start logit: whoever computes a batch, the answer is the same."""

    name = "echo"

    def __init__(self, fail_on_batch: int | None = None, seconds_per_token: float = 0.0):
        self.fail_on_batch, self.seconds_per_token, self.batches = fail_on_batch, seconds_per_token, 0

    def predict(self, input_ids, input_mask, segment_ids):
        self.batches += 1
        if self.batches == self.fail_on_batch:
            raise RuntimeError("CUDA out of memory (a stand-in)")
        time.sleep(self.seconds_per_token * int(input_mask.sum()))
        return np.stack([input_ids, -input_ids], axis=-1).astype(np.float32)


def rank_main(rank: int, world: int, port: int, backends: list, results, features_arrays) -> None:
    """One rank: rank 0 deals the samples in the SUT's batches, the others serve."""
    import torch.distributed as dist

    from qsl.features import ModelInputs
    from sut.batching import plan_batches
    from sut.workers import Peer, WorkerPool, serve

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    features = ModelInputs(*features_arrays)
    if rank:
        serve(backends[rank], features)
        dist.destroy_process_group()
        return
    pool = WorkerPool(backends[0], features, [Peer(index, "localhost", "cpu") for index in range(world)], 20.0)
    waits = [(rows, pool.submit_rows(features, rows)) for rows in plan_batches(features.lengths, 8)]
    answers, errors = {}, []
    for rows, wait in waits:
        try:
            answers.update((row, logits.tobytes()) for row, logits in zip(rows.tolist(), wait(), strict=True))
        except Exception as error:  # noqa: BLE001 - the test reads it
            errors.append(str(error))
    pool.close()
    dist.destroy_process_group()
    results.put((answers, errors, [worker.tokens_dealt for worker in pool.workers]))


def run_ranks(features, backends: list, samples: int = 96) -> tuple[dict, list[str], list[int]]:
    context = mp.get_context("spawn")
    results = context.Queue()
    arrays = tuple(array[:samples, :128] for array in (features.input_ids, features.input_mask,
                                                       features.segment_ids))
    port = free_port()
    processes = [context.Process(target=rank_main, args=(rank, len(backends), port, backends, results, arrays))
                 for rank in range(len(backends))]
    for process in processes:
        process.start()
    outcome = results.get(timeout=120)
    for process in processes:
        process.join(timeout=30)
    return outcome


@pytest.mark.parametrize("workers", [2, 8, 16])
def test_a_pool_s_batches_shrink_to_the_end_and_cover_the_query_once(features, workers):
    """Guided self-scheduling over the dev set's lengths, with H100 batching: each batch at most 1/(2W) of the
    tokens still to plan (or the floor), the last ones small, no sample left out, twice or in no batch."""
    from sut.batching import SHRINK, SMALLEST_SHARE, plan_batches

    lengths = features.lengths
    batches = plan_batches(lengths, 1024, 196608, workers)
    assert np.array_equal(np.sort(np.concatenate(batches)), np.arange(len(lengths)))
    assert all(len(batch) for batch in batches)
    total, remaining = int(lengths.sum()), int(lengths.sum())
    floor = total // (SMALLEST_SHARE * workers)
    for batch in batches:
        tokens = int(lengths[batch].sum())
        assert tokens <= max(floor, -(-remaining // (SHRINK * workers))), (remaining, tokens)
        remaining -= tokens
    sizes = [int(lengths[batch].sum()) for batch in batches]
    assert sizes[0] > 8 * sizes[-1] and sizes[-1] <= floor  # big first, small last
    assert len(batches) < 16 * workers  # not cut finer than it needs: each batch costs a round trip


def test_answers_do_not_depend_on_who_computes_them(features):
    one, errors_one, _ = run_ranks(features, [EchoBackend()])
    three, errors_three, dealt = run_ranks(features, [EchoBackend(), EchoBackend(), EchoBackend()])
    assert not errors_one and not errors_three and min(dealt) > 0
    assert one == three and len(one) == 96


def test_a_failing_worker_is_named(features):
    _, errors, _ = run_ranks(features, [EchoBackend(), EchoBackend(fail_on_batch=2)])
    assert errors and all("rank 1 on localhost (cpu) failed: RuntimeError('CUDA out of memory" in error
                          for error in errors)


def test_work_is_dealt_by_tokens_to_the_least_loaded(features):
    """A worker three times as slow gets about a quarter of the tokens, not half the batches."""
    answers, errors, dealt = run_ranks(features, [EchoBackend(seconds_per_token=2e-5),
                                                  EchoBackend(seconds_per_token=6e-5)], samples=400)
    assert not errors and len(answers) == 400
    assert dealt[1] / sum(dealt) < 0.4, dealt


def alive(pid: int) -> bool:
    """Running, not a zombie waiting to be reaped."""
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def processes_of(parent_pid: int) -> list[int]:
    """Every live descendant of a process, by /proc."""
    children = []
    for status in os.listdir("/proc"):
        if status.isdigit():
            try:
                fields = open(f"/proc/{status}/stat").read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == parent_pid and fields[0] != "Z":
                children += [int(status), *processes_of(int(status))]
    return children


def rank_pid(rank0_pid: int, rank: int) -> int:
    """A rank rank 0 started, found by the RANK its environment was given."""
    for pid in processes_of(rank0_pid):
        try:
            environment = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
        except OSError:
            continue
        if f"RANK={rank}".encode() in environment:
            return pid
    raise AssertionError(f"no rank {rank} under {rank0_pid}")


def start_run(tmp_path, build_dir, tiny_random_model, *extra: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "harness", "perf", "--model", str(tiny_random_model), "--workers", "2",
               "--scenario", "Server", "--count", "300", "--build-dir", str(build_dir), *extra]
    process = subprocess.Popen(command, cwd=tmp_path, env={**cli_environment(), "PYTHONUNBUFFERED": "1"},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    for line in process.stdout:  # until rank 0 starts LoadGen (about 300 s of Server queries at 1 per second)
        if "PerformanceOnly" in line:
            return process
    raise AssertionError(process.stderr.read())


@pytest.mark.parametrize(("fault", "message"), [
    (signal.SIGKILL, "rank 1 on {host} (cpu) died"),
    (signal.SIGSTOP, "rank 1 on {host} (cpu) hangs: no answer within 3 s"),
])
def test_a_worker_that_dies_or_hangs_ends_the_run_naming_it(tmp_path, build_dir, features, tiny_random_model,
                                                             fault, message):
    process = start_run(tmp_path, build_dir, tiny_random_model, "--worker-timeout", "3")
    time.sleep(3)
    worker = rank_pid(process.pid, 1)
    os.kill(worker, fault)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode != 0
    assert message.format(host=socket.gethostname()) in stderr, stderr[-2000:]
    partial = next(build_dir.glob("logs/*/pytorch/fp32-cpu-workers2/Server/performance/run_1.partial"))
    assert (partial / "mlperf_log_detail.txt").is_file() and not (partial / "run_info.json").exists()
    time.sleep(1)
    assert not alive(worker), "no rank may outlive the run (a hung one included)"


def test_ctrl_c_stops_every_rank(tmp_path, build_dir, features, tiny_random_model):
    process = start_run(tmp_path, build_dir, tiny_random_model)
    ranks = [process.pid, rank_pid(process.pid, 1)]  # rank 0 is the command itself
    os.killpg(process.pid, signal.SIGINT)
    process.communicate(timeout=60)
    assert process.returncode != 0
    time.sleep(1)
    assert not [pid for pid in ranks if alive(pid)]


def own_build(tmp_path, build_dir):
    build = tmp_path / "build"
    shutil.copytree(build_dir / "data", build / "data")
    return build


def test_two_workers_from_the_command_line(tmp_path, build_dir, features, small_model, runs_dir):
    """Offline and SingleStream quick runs VALID; an accuracy run's logits byte-identical to one worker's (the
    session's one-worker accuracy run of the same model and count, in runs_dir)."""
    build_dir = own_build(tmp_path, build_dir)  # its accuracy runs must not meet another test's in the shared one
    for scenario, count in (("Offline", "64"), ("SingleStream", "64")):  # tiny: the logits below are the small model's
        result = run_cli("harness", "perf", "--scenario", scenario, "--shape", "tiny", "--workers", "2",
                         "--count", count, "--build-dir", str(build_dir), cwd=tmp_path)
        assert result.returncode == 0 and "LoadGen result: VALID" in result.stdout, result.stdout[-3000:]
        shares = instance_cores(2)
        assert (f"rank 0 on {cpu_list(shares[0])}, rank 1 on {cpu_list(shares[1])}" if shares else
                "ranks share") in result.stdout
    one_worker = runs_dir / "logs" / small_model.name / "pytorch" / "fp32-cpu" / "Offline" / "accuracy"
    result = run_cli("harness", "accuracy", "--model", str(small_model), "--workers", "2", "--count",
                     str(json.loads((one_worker / "run_info.json").read_text())["count"]),
                     "--build-dir", str(build_dir), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    two_workers = build_dir / "logs" / small_model.name / "pytorch" / "fp32-cpu-workers2" / "Offline" / "accuracy"
    logs = [{entry["qsl_idx"]: entry["data"] for entry in json.loads((log / "mlperf_log_accuracy.json").read_text())}
            for log in (one_worker, two_workers)]
    assert logs[0] == logs[1] and len(logs[1]) == 24
    info = json.loads((two_workers / "run_info.json").read_text())
    assert info["workers"] == 2 and info["nodes"] == 1 and len(info["devices"]) == 2


def test_server_quick_run_with_two_workers(tmp_path, build_dir, features):
    system = tmp_path / "fast-server.json"
    # A latency bound of 2 s: the test is two ranks serving LoadGen's Server schedule to a VALID end, not how
    # fast a 2-core CI machine shared with other tests answers (at bert's 130 ms p99 went over there once; at 1 s,
    # early stopping failed twice once the suite ran DeepSpeed and pre-training beside it, p99 0.91 s).
    system.write_text(json.dumps({"description": "Server at 50 queries/s", "device": "cpu", "precision": "fp32",
                                  "batch_size": 8, "max_tokens": None, "default_count": 64,
                                  "loadgen": {"Server": {"target_qps": 50, "target_latency": 2000}}}))
    result = run_cli("harness", "perf", "--scenario", "Server", "--shape", "tiny", "--workers", "2", "--system",
                     str(system), "--count", "600", "--build-dir", str(build_dir), cwd=tmp_path)
    assert result.returncode == 0 and "LoadGen result: VALID" in result.stdout, result.stdout[-3000:]



def test_a_rank_killed_mid_query_stops_the_bar_where_the_answers_stopped(tmp_path, build_dir, features, small_model):
    """The answers after a failure are empty: the bar must not run on to 100% over them, nor the error stop mid-word."""
    command = [sys.executable, "-m", "harness", "perf", "--model", str(small_model), "--workers", "2", "--count",
               "1500", "--build-dir", str(tmp_path / "build")]
    process = subprocess.Popen(command, cwd=tmp_path, env={**cli_environment(), "PYTHONUNBUFFERED": "1"},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    for line in process.stdout:
        if "PerformanceOnly" in line:
            break
    time.sleep(4)
    shares = instance_cores(2)  # each rank pinned to its own cores, where this machine has two physical cores
    if shares is not None:
        assert [os.sched_getaffinity(pid) for pid in (process.pid, rank_pid(process.pid, 1))] == \
            [set(cpus) for cpus in shares]
    os.kill(rank_pid(process.pid, 1), signal.SIGKILL)
    _, stderr = process.communicate(timeout=120)
    bars = [part for part in stderr.replace("\r", "\n").splitlines() if part.startswith("inference:")]
    assert bars and not bars[-1].startswith("inference: 100%"), bars[-1:]
    error = next(line for line in stderr.splitlines() if line.startswith("error: "))
    assert f"rank 1 on {socket.gethostname()} (cpu) died: Connection closed by peer" in error, error
    assert "pair.cc" not in error and "; incomplete logs left in" in error


def test_cpu_instances_take_whole_physical_cores(tmp_path):
    """Hyperthread siblings stay together: 4 cores of 2 threads (cpu N and N+4 siblings) for 2 and 3 instances."""
    for cpu in range(8):
        topology = tmp_path / f"cpu{cpu}" / "topology"
        topology.mkdir(parents=True)
        (topology / "physical_package_id").write_text("0\n")
        (topology / "core_id").write_text(f"{cpu % 4}\n")
    assert physical_cores(set(range(8)), tmp_path) == [[0, 4], [1, 5], [2, 6], [3, 7]]
    assert instance_cores(2, set(range(8)), tmp_path) == [[0, 1, 4, 5], [2, 3, 6, 7]]
    assert instance_cores(3, set(range(8)), tmp_path) == [[0, 4], [1, 5], [2, 6]]  # the fourth core left idle
    assert instance_cores(5, set(range(8)), tmp_path) is None  # fewer cores than instances: shared, unpinned
    assert instance_cores(2, {0, 1, 2}, tmp_path / "none") == [[0], [1]]  # no topology: each CPU a core
    assert cpu_list([0, 1, 2, 3, 8, 9, 11]) == "0-3,8-9,11"


class DiesAfterItsHeader:
    """torch.distributed as rank 0 meets a worker killed between the header of an answer and its logits."""

    def __init__(self):
        self.sent = threading.Event()

    def isend(self, tensor, dst):
        self.sent.set()

    def irecv(self, header, src):
        header.copy_(torch.tensor([1, 0, 384]))  # OK, batch 0, logits 384 tokens wide
        return types.SimpleNamespace(wait=lambda: self.sent.wait())  # the answer comes once a batch went out

    def recv(self, tensor, src):
        raise RuntimeError("Connection closed by peer")


def test_a_worker_dying_between_its_header_and_its_logits_fails_that_batch(monkeypatch, features):
    """That batch was already off the worker's pending list: it was never answered, and rank 0 waited forever."""
    from concurrent.futures import Future

    from sut import workers

    monkeypatch.setattr(workers, "dist", DiesAfterItsHeader())
    worker = workers.RemoteWorker(workers.Peer(1, "host", "cpu"), features, timeout_s=60)
    future: Future = Future()
    worker.dispatch(np.array([0, 1]), future)
    with pytest.raises(workers.WorkerError, match=r"rank 1 on host \(cpu\) died: Connection closed by peer"):
        future.result(timeout=10)


def test_scale_reports_each_scenario_at_simulated_h100_speed(tmp_path, build_dir, features):
    """make scale SCENARIOS="Offline Server" BACKEND=simulated: a row per scenario and count, each count asked for
    its share of the system file's targets, rank 0's cost per sample, and what the devices were."""
    out = tmp_path / "scale"
    result = run_cli("benchmarks.scale", "--backend", "simulated", "--system", "simulated-h100", "--workers", "1",
                     "2", "--scenarios", "Offline", "Server", "--count", "1000", "--build-dir", str(build_dir),
                     "--out", str(out), cwd=tmp_path)
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [(row["scenario"], row["workers"], row["status"], row["samples"]) for row in rows] == [
        ("Offline", 1, "ok", 1000), ("Offline", 2, "ok", 2000), ("Server", 1, "ok", 1000),
        ("Server", 2, "ok", 2000)], result.stdout[-3000:] + result.stderr[-3000:]
    assert [row["target_qps"] for row in rows] == [9100, 18200, 7000, 14000]
    assert all(row["rank0_us_per_sample"] > 0 for row in rows) and rows[1]["loadgen_result"].startswith("VALID")
    table = (out / "scaling.md").read_text()
    assert "simulated devices of 9,100 samples/s each (BACKEND=simulated)" in table and "| Server | 2 |" in table
    assert (out / "scaling.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
