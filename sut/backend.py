"""What every backend provides: a batch of features in, start/end logits out. Nothing about LoadGen.

A backend is a subclass of `Backend` that sets the class attributes and writes `predict`; the rest has defaults it
may override, and one entry in BACKENDS adds it to every command (BACKEND=, the checks, the sweep).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

import numpy as np

from common.errors import HarnessError
from qsl.features import ModelInputs
from sut.batching import batch_inputs
from sut.stages import StageTimes, stage

BACKENDS = {  # BACKEND= name -> (module, class); imported only when chosen, so extras stay optional
    "pytorch": ("sut.pytorch_backend", "PackedBackend"),
    "huggingface": ("sut.huggingface_backend", "HuggingFaceBackend"),
    "onnxruntime": ("sut.onnxruntime_backend", "OnnxRuntimeBackend"),
    "openvino": ("sut.openvino_backend", "OpenVinoBackend"),
    "tensorrt": ("sut.tensorrt_backend", "TensorRTBackend"),
    "simulated": ("sut.simulated_backend", "SimulatedBackend"),
}


class Backend:
    name = ""
    precisions: tuple[str, ...] = ("fp32",)
    input_data_type = "int32"  # what the model is fed, int32 or int64: a submission's measurements.json says it
    option_types: dict[str, type] = {}  # the BACKEND_OPTIONS keys it takes, checked before the model is built
    takes_onnx = False  # MODEL may be an .onnx file; a PyTorch model is exported for it
    simulated = False  # it only takes a device's time (sut/simulated_backend.py): no model, no cores, no accuracy
    window = 2  # batches the SUT submits before it waits for the oldest
    parallelism = 1  # batches that run at once: the SUT cuts a query into enough for all of them
    stages: StageTimes | None = None  # a sweep's per-stage timing (sut/stages.py); off for runs

    def predict(self, input_ids: np.ndarray, input_mask: np.ndarray, segment_ids: np.ndarray) -> np.ndarray:
        """int32 [batch, seq] inputs (seq may be shorter than 384) -> float32 [batch, seq, 2] (start, end)."""
        raise NotImplementedError

    def submit(self, input_ids: np.ndarray, input_mask: np.ndarray,
               segment_ids: np.ndarray) -> Callable[[], np.ndarray]:
        """A call that waits for the logits. Here they are computed at once; a backend that returns before its
        device is done (sut/pytorch_backend.py on CUDA) lets the SUT prepare the next batch meanwhile."""
        with stage(self.stages, "forward"):
            logits = self.predict(input_ids, input_mask, segment_ids)
        return lambda: logits

    def submit_rows(self, features: ModelInputs, rows: np.ndarray) -> Callable[[], np.ndarray]:
        """The batch of these samples, as the SUT asks for it: here cut from the features and padded only to
        the batch's longest (sut/batching.py); a pool of workers (sut/workers.py) sends the indices instead, and
        the batch is built where it runs, and the call it returns is also a Future the SUT is woken by."""
        with stage(self.stages, "host_batch"):
            arrays = batch_inputs(features, rows)
        return self.submit(*arrays)

    def check(self) -> BaseException | None:
        """A failure that came between batches (a lost rank), polled while LoadGen runs."""
        return None

    def close(self) -> None:
        """After the run: release what the backend holds (other ranks are told to stop)."""


def backend_class(name: str) -> type[Backend]:
    """The backend's class, imported only when chosen."""
    if name not in BACKENDS:
        raise HarnessError(f"unknown BACKEND={name}; choose one of {', '.join(BACKENDS)}")
    module_name, class_name = BACKENDS[name]
    return getattr(importlib.import_module(module_name), class_name)


def parse_options(options: dict[str, str] | None, allowed: dict[str, type], backend: str) -> dict:
    """BACKEND_OPTIONS strings -> typed values; an unknown key or a bad value names what is accepted."""
    parsed = {}
    for key, text in (options or {}).items():
        if key not in allowed:
            accepted = ", ".join(allowed) or "none"
            raise HarnessError(f"BACKEND={backend} has no option {key!r}; it accepts: {accepted}")
        kind = allowed[key]
        if kind is bool:
            if text.lower() not in ("0", "1", "true", "false", "yes", "no"):
                raise HarnessError(f"BACKEND_OPTIONS {key}={text}: give {key}=1 or {key}=0")
            parsed[key] = text.lower() in ("1", "true", "yes")
        elif kind is int:
            if not text.isdigit():  # counts and sizes: no sign, so -2 threads is refused, not passed on
                raise HarnessError(f"BACKEND_OPTIONS {key}={text}: give a whole number, 0 or more")
            parsed[key] = int(text)
        else:
            parsed[key] = text
    return parsed
