"""make sweep OPTIMAL=1: a system file for the best point, with LoadGen targets from its figures."""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path

from common.errors import HarnessError

TARGET_QPS_HEADROOM = 1.1  # above the measured rate: a faster compliant run would end before 600 s


def best_row(rows: list[dict], scenario: str) -> dict | None:
    """Offline/direct: the most samples/s; SingleStream: the lowest p90; ties to the lower energy per sample."""
    measured = [row for row in rows if row.get("status") == "ok" and row["scenario"] == scenario]
    if not measured:
        return None
    energy = lambda row: row.get("joules_per_sample") or float("inf")  # noqa: E731 - one sort key, named
    if scenario == "SingleStream":
        return min(measured, key=lambda row: (row["latency_ms"]["per_sample"]["p90"], energy(row)))
    return min(measured, key=lambda row: (-row["samples_per_second"], energy(row)))


def write_optimal(rows: list[dict], args: argparse.Namespace, path: Path, folder: Path) -> Path:
    """A system file with the best point's batching, precision and device, and LoadGen targets from its figures."""
    from harness.settings import chosen_system

    throughput = best_row(rows, "Offline") or best_row(rows, "direct")
    if throughput is None:
        raise HarnessError("no measured point to choose from: every point failed (see the rows)")
    base = chosen_system(args.system)
    loadgen = {scenario: dict(values) for scenario, values in base.loadgen.items()}
    target_qps = round(throughput["samples_per_second"] * TARGET_QPS_HEADROOM, 3)
    loadgen.setdefault("Offline", {})["target_qps"] = target_qps
    reasons = [f"batch size {throughput['batch_size']}, token budget {throughput['max_tokens'] or 'none'}, "
               f"{throughput['backend']} {throughput['precision']}: the most samples/s "
               f"({throughput['samples_per_second']:,.1f}) of the {throughput['scenario']} rows",
               f"Offline target_qps {target_qps}: {TARGET_QPS_HEADROOM:.0%} of the measured rate, so a compliant "
               "run asks for enough samples to last at least 600 s even if it runs a little faster"]
    latency = best_row(rows, "SingleStream")
    if latency is not None:
        p90 = latency["latency_ms"]["per_sample"]["p90"]
        loadgen.setdefault("SingleStream", {})["target_latency"] = round(p90, 3)
        reasons.append(f"SingleStream target_latency {p90:.3f} ms: the lowest p90 (batch size "
                       f"{latency['batch_size']})")
    system = {"description": f"make sweep OPTIMAL=1 from {folder}: " + "; ".join(reasons),
              "device": throughput["device"].partition(":")[0], "precision": throughput["precision"],
              "batch_size": throughput["batch_size"], "max_tokens": throughput["max_tokens"],
              "default_count": base.default_count, "loadgen": loadgen}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(system, indent=2) + "\n")
    print("optimal: " + "\n         ".join(reasons))
    same = [f"{variable}={shlex.quote(str(getattr(args, name)))}" for variable, name in (
        ("MODEL", "model"), ("SHAPE", "shape"), ("DATA", "data"), ("SEQ_LEN", "seq_len"), ("DOC_STRIDE", "doc_stride"),
        ("SAMPLES", "samples"), ("LENGTHS", "lengths"), ("SEED", "seed")) if getattr(args, name) is not None]
    print(f"wrote {path}; use it: make perf SYSTEM={shlex.quote(str(path))} BACKEND={throughput['backend']} "
          + " ".join(same))
    return path
