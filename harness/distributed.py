"""WORKERS=N: one LoadGen run over N ranks, on this machine or across nodes (srun).

`python -m harness perf --workers N` from a plain process becomes rank 0 and starts ranks 1..N-1 as copies
of itself (each dies with it: no orphans, whatever ends rank 0); under srun (or torchrun) every rank finds
its place in the environment (SLURM_PROCID or RANK, ...). All join one Gloo process group by env://
rendezvous. Rank 0 runs LoadGen and the SUT; every rank (rank 0 too, unless RANK0_COMPUTES=0) runs a
backend on its own device: cuda:<local rank> on GPUs, a share of the cores on CPUs (sut/workers.py deals
the batches). A rank that dies or hangs during the run ends it with an error naming it (sut/workers.py);
one that fails while starting ends rank 0 at once, its own error printed above.
"""

import datetime
import os
import signal
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass

from common.cpu import cpu_list, instance_cores
from common.errors import HarnessError, reason

GROUP_TIMEOUT = datetime.timedelta(hours=1)  # idle workers wait this long for work; failures surface sooner
PR_SET_PDEATHSIG = 1  # prctl(2)
_joined = threading.Event()  # every rank has joined the process group


@dataclass(frozen=True)
class Rank:
    rank: int
    world: int
    local_rank: int
    local_world: int
    nodes: int

    @property
    def is_leader(self) -> bool:
        return self.rank == 0


def launched_rank() -> Rank | None:
    """This process's place when started by torchrun, DeepSpeed's launcher or srun, else None (a plain process)."""
    environment = os.environ
    if "RANK" in environment and "WORLD_SIZE" in environment:
        world = int(environment["WORLD_SIZE"])
        # LOCAL_SIZE: DeepSpeed's launcher's name for it
        local_world = int(environment.get("LOCAL_WORLD_SIZE", environment.get("LOCAL_SIZE", world)))
        return Rank(int(environment["RANK"]), world, int(environment.get("LOCAL_RANK", 0)), local_world,
                    max(1, world // local_world))
    if "SLURM_PROCID" in environment and int(environment.get("SLURM_NTASKS", "1")) > 1:
        world = int(environment["SLURM_NTASKS"])
        nodes = int(environment.get("SLURM_NNODES", "1"))
        local_world = int(environment.get("SLURM_NTASKS_PER_NODE", str(world // nodes)).split("(")[0])
        return Rank(int(environment["SLURM_PROCID"]), world, int(environment.get("SLURM_LOCALID", 0)),
                    local_world, nodes)
    return None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _die_with_parent() -> None:
    """In a started rank, before it runs: the kernel kills it when rank 0 ends, however rank 0 ends."""
    import ctypes

    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def start_local_ranks(workers: int, arguments: list[str]) -> list[subprocess.Popen]:
    """Ranks 1..N-1 as copies of this command (`python -m <arguments>`); this process becomes rank 0."""
    threads = max(1, (os.cpu_count() or 1) // workers)
    shared = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "WORLD_SIZE": str(workers),
              "LOCAL_WORLD_SIZE": str(workers), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", str(threads))}
    os.environ.update({**shared, "RANK": "0", "LOCAL_RANK": "0"})
    ranks = [subprocess.Popen([sys.executable, "-m", *arguments], preexec_fn=_die_with_parent,
                              env={**os.environ, **shared, "RANK": str(rank), "LOCAL_RANK": str(rank)})
             for rank in range(1, workers)]
    watch_startup(ranks)
    return ranks


def watch_startup(ranks: list[subprocess.Popen]) -> None:
    """Until every rank has joined, one that exits (a bad model path, no memory) ends rank 0 too."""
    def watch() -> None:
        while not _joined.is_set():
            for process in ranks:
                if process.poll() not in (None, 0):
                    print(f"error: rank {ranks.index(process) + 1} exited with code {process.returncode} while "
                          "starting (its error is above)", file=sys.stderr, flush=True)
                    os._exit(2)
            _joined.wait(0.5)

    threading.Thread(target=watch, name="rank-watch", daemon=True).start()


def join(rank: Rank, details: tuple, backend: str = "gloo") -> list:
    """Join the process group; every rank's (host, *details), once every rank has got this far."""
    import torch.distributed as dist

    if "MASTER_ADDR" not in os.environ or "MASTER_PORT" not in os.environ:
        raise HarnessError("a distributed run needs MASTER_ADDR and MASTER_PORT (torchrun sets them; under srun, "
                           "export them: see slurm/*.sbatch)")
    dist.init_process_group(backend, init_method="env://", rank=rank.rank, world_size=rank.world,
                            timeout=GROUP_TIMEOUT)
    everyone: list = [None] * rank.world
    try:
        dist.all_gather_object(everyone, (socket.gethostname(), *details))
    except RuntimeError as error:
        raise HarnessError(f"a rank failed while starting (its own error is printed above): "
                           f"{reason(error)}") from error
    _joined.set()
    return everyone


def launcher_bound() -> bool:
    """srun bound each task to cores of its own (--cpu-bind): they are left as it set them."""
    return os.environ.get("SLURM_CPU_BIND_TYPE", "none").strip(",") not in ("", "none")


def rank_device(device: str, rank: Rank, log=lambda *_: None) -> str:
    """Each rank its own GPU (cuda:<local rank>); on CPU, each rank cores of its own (the header, to `log`)."""
    import torch

    if device.startswith("cuda"):
        if device != "cuda":
            raise HarnessError(f"DEVICE={device} names one GPU; with WORKERS each rank takes its own: give DEVICE=cuda")
        if rank.local_rank >= torch.cuda.device_count():
            raise HarnessError(f"rank {rank.rank} on {socket.gethostname()} would use cuda:{rank.local_rank}, but "
                               f"that node shows {torch.cuda.device_count()} GPUs: start fewer ranks per node")
        return f"cuda:{rank.local_rank}"
    if launcher_bound():
        log("CPU instances: each rank on the cores srun bound it to")
        torch.set_num_threads(len(os.sched_getaffinity(0)))
        return device
    shares = instance_cores(rank.local_world)
    if shares is None:
        log(f"CPU instances: {rank.local_world} ranks share {os.cpu_count()} cores unpinned (fewer physical cores "
            "than ranks)")
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // rank.local_world))
        return device
    log(f"CPU instances: {rank.local_world} ranks per node, each pinned to its own {len(shares[0])} logical "
        f"CPU{'s' if len(shares[0]) > 1 else ''} with as many threads: "
        + ", ".join(f"rank {index} on {cpu_list(cpus)}" for index, cpus in enumerate(shares)))
    os.sched_setaffinity(0, shares[rank.local_rank])  # its own cores, as Intel's instances run
    torch.set_num_threads(len(shares[rank.local_rank]))
    return device


def distribute(rank: Rank, backend, features, device: str, timeout_s: float):
    """Rank 0: its WorkerPool over every rank. Another rank: serve rank 0's batches until it says stop; None."""
    import torch.distributed as dist

    from sut.workers import Peer, WorkerPool, serve

    everyone = join(rank, (device, backend.input_data_type if backend is not None else ""))
    if not rank.is_leader:
        try:
            serve(backend, features)
        except RuntimeError as error:  # rank 0 ended (an error it reports itself, Ctrl-C): nothing left to serve
            raise HarnessError(f"rank {rank.rank}: lost rank 0 ({reason(error)})") from error
        dist.destroy_process_group()
        return None
    peers = [Peer(index, host, rank_device_name) for index, (host, rank_device_name, _) in enumerate(everyone)]
    pool = WorkerPool(backend, features, peers, timeout_s)
    pool.input_data_type = next(kind for _, _, kind in everyone if kind)
    pool.devices = [f"{peer.host}:{peer.device}" for peer in peers if peer.rank or backend is not None]
    return pool


def leave() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
