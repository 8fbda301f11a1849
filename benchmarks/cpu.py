"""The CPU half of `make bench`: every CPU backend on the small real model, over the same dev features."""

from __future__ import annotations

import os
import platform
import statistics
import time
from math import nan
from pathlib import Path

import numpy as np

from benchmarks.timing import Row, run_batches, table, timed_passes
from common.cpu import cpu_name, named_flags
from common.errors import HarnessError

SMALL_MODEL = Path(__file__).resolve().parents[2] / "shared" / "models" / "minilm-squad-devhalf"
SAMPLES = 256
BATCH_SIZE = 8  # configs/systems/cpu.json
CPU_ROWS = [  # (path label, backend, precision, options)
    ("Hugging Face PyTorch", "huggingface", "fp32", {}),
    ("ours, packed PyTorch", "pytorch", "fp32", {}),
    ("ours, packed PyTorch", "pytorch", "bf16", {}),
    ("ONNX Runtime, plain graph", "onnxruntime", "fp32", {"optimize": "0"}),
    ("ONNX Runtime, optimised graph", "onnxruntime", "fp32", {}),
    ("ONNX Runtime, optimised, dynamic INT8", "onnxruntime", "int8", {}),
    ("OpenVINO", "openvino", "fp32", {}),
    ("OpenVINO", "openvino", "bf16", {}),
    ("OpenVINO, NNCF static INT8", "openvino", "int8", {}),
]



def cpu_section(args, features, started: str, shape=None, source=None) -> list[str]:
    """Every CPU backend on the small real model, or on a random model of `shape` (SHAPE=)."""
    import onnxruntime
    import torch

    from harness.build import create_backend
    from sut.batching import plan_batches
    from sut.models import load_model

    model_path = args.model if shape else args.model or str(SMALL_MODEL)  # MODEL and SHAPE together are refused
    if model_path and not shape and not Path(model_path).exists():
        raise HarnessError(f"the CPU benchmark times the small real model, not found at {model_path}; "
                           "pass --model (MODEL=) a Hugging Face QA model directory, or SHAPE= for a random one")
    model = load_model(model_path, args.build_dir, allow_random=shape is not None, shape=shape)
    subset = np.linspace(0, len(features.input_ids) - 1, SAMPLES).astype(np.int64)
    batches = [subset[rows] for rows in plan_batches(features.lengths[subset], BATCH_SIZE)]
    backends = {}
    for label, backend_name, precision, options in CPU_ROWS:
        try:
            backends[label, precision] = create_backend(backend_name, model, "cpu", precision, features,
                                                        args.build_dir, options, log=lambda *_: None)
        except HarnessError as error:  # OpenVINO's bf16 on a CPU without bf16 hardware; an extra not installed
            backends[label, precision] = error
            print(f"  {label} {precision}: not timed ({error})", flush=True)
    rates = interleaved_rates({key: backend for key, backend in backends.items()
                               if not isinstance(backend, HarnessError)}, features, batches, args.passes)
    rows = [Row(label, precision, f"batch {BATCH_SIZE}, length-sorted", SAMPLES, rates.get((label, precision), nan),
                note=f"not timed: {backends[label, precision]}" if (label, precision) not in rates else "")
            for label, _, precision, _ in CPU_ROWS]
    lines = [f"## CPU, {model.name}, measured {started}", "",
             f"- CPU: {cpu_name()}, {os.cpu_count()} logical cores, {named_flags()}; torch {torch.__version__} "
             f"({torch.get_num_threads()} threads), ONNX Runtime {onnxruntime.__version__}, {openvino_version()}"
             f"Python {platform.python_version()}",
             f"- {SAMPLES} {'dev features' if source is None or source.is_mlperf else source.label.lstrip('-')} "
             f"spread evenly over the set, {timed_passes(args.passes)} after a warm-up pass, the rows' passes "
             "interleaved (every row's first pass, then every row's second, ...)", "",
             *table(rows, "× Hugging Face")]
    print("\n".join(table(rows, "× Hugging Face")))
    return lines


def interleaved_rates(backends: dict, features, batches: list[np.ndarray], passes: int) -> dict:
    """Median samples/s of each backend, its passes taken in turn with the others' so that a machine that slows
    down midway (another job, heat) slows every row alike."""
    samples = sum(len(rows) for rows in batches)
    for backend in backends.values():
        run_batches(backend, features, batches, None)  # warm-up
    seconds: dict = {key: [] for key in backends}
    for _ in range(passes):
        for key, backend in backends.items():
            started = time.perf_counter()
            run_batches(backend, features, batches, None)
            seconds[key].append(time.perf_counter() - started)
    for (label, precision), values in seconds.items():
        print(f"  {label} {precision}: {samples / statistics.median(values):,.1f} samples/s", flush=True)
    return {key: samples / statistics.median(values) for key, values in seconds.items()}


def openvino_version() -> str:
    try:
        import openvino
    except ModuleNotFoundError:
        return "no OpenVINO, "
    return f"OpenVINO {openvino.__version__.split('-')[0]}, "
