"""The CPU half of `make bench`: every CPU backend on the small real model, over the same dev features."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import numpy as np

from benchmarks.timing import Row, measure, table, timed_passes
from common.cpu import cpu_name, named_flags
from common.errors import HarnessError

SMALL_MODEL = Path(__file__).resolve().parents[2] / "shared" / "models" / "minilm-squad-devhalf"
SAMPLES = 256
BATCH_SIZE = 8  # configs/systems/cpu.json
CPU_ROWS = [  # (path label, backend, precision, options)
    ("Hugging Face PyTorch", "huggingface", "fp32", {}),
    ("ours, packed PyTorch", "pytorch", "fp32", {}),
    ("ONNX Runtime, plain graph", "onnxruntime", "fp32", {"optimize": "0"}),
    ("ONNX Runtime, optimised graph", "onnxruntime", "fp32", {}),
    ("ONNX Runtime, optimised, dynamic INT8", "onnxruntime", "int8", {}),
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
    rows: list[Row] = []
    for label, backend_name, precision, options in CPU_ROWS:
        backend = create_backend(backend_name, model, "cpu", precision, features, args.build_dir, options,
                                 log=lambda *_: None)
        rate = measure(backend, features, batches, "cpu", args.passes)
        rows.append(Row(label, precision, f"batch {BATCH_SIZE}, length-sorted", SAMPLES, rate))
        print(f"  {label} {precision}: {rate:,.1f} samples/s", flush=True)
    lines = [f"## CPU, {model.name}, measured {started}", "",
             f"- CPU: {cpu_name()}, {os.cpu_count()} logical cores, {named_flags()}; torch {torch.__version__} "
             f"({torch.get_num_threads()} threads), ONNX Runtime {onnxruntime.__version__}, "
             f"Python {platform.python_version()}",
             f"- {SAMPLES} {'dev features' if source is None or source.is_mlperf else source.label.lstrip('-')} "
             f"spread evenly over the set, {timed_passes(args.passes)} after a warm-up pass", "",
             *table(rows, "× Hugging Face")]
    print("\n".join(table(rows, "× Hugging Face")))
    return lines
