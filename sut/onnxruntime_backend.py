"""ONNX Runtime backend: an exported or given ONNX model on explicitly chosen execution providers.

By default the graph goes through ONNX Runtime's transformer optimizer for BERT (attention,
skip-layer-norm and GELU fusions); on GPU it is then converted to fp16, and on CPU PRECISION=int8
quantises its matrix products dynamically. Every derived model is cached beside the export.
Options (BACKEND_OPTIONS="key=value ..."): optimize=0|1, providers=cpu|cuda|tensorrt,
intra_threads=N, inter_threads=N.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np

from common.errors import HarnessError
from common.files import save_atomically
from sut.backend import Backend, parse_options
from sut.models import LoadedModel
from sut.onnx_model import (
    check_sequence_axis,
    export_onnx,
    file_stamp,
    find_interface,
    is_quantised,
    named_inputs,
    stack_logits,
)

PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}
OPTIONS = {"optimize": bool, "providers": str, "intra_threads": int, "inter_threads": int}


def derived_path(source: Path, step: str) -> Path:
    """Beside `source`, named by its identity, the step and the ONNX Runtime version."""
    import onnxruntime

    key = hashlib.sha256(f"{file_stamp(source)}|{step}|{onnxruntime.__version__}".encode()).hexdigest()[:12]
    return source.with_name(f"{source.stem}.{step}-{key}.onnx")


def optimise(source: Path, use_gpu: bool, fp16: bool, shape: tuple[int, int], log) -> Path:
    """ONNX Runtime's BERT fusions (and fp16 for GPU), once per source model; `shape` is (heads, hidden), 0 = detect."""
    from onnxruntime.transformers.optimizer import optimize_model

    path = derived_path(source, f"bert-{'gpu' if use_gpu else 'cpu'}{'-fp16' if fp16 else ''}")
    if path.is_file():
        return path
    log(f"optimising {source.name} with ONNX Runtime's transformer optimizer (once; cached)")
    optimised = optimize_model(str(source), model_type="bert", num_heads=shape[0], hidden_size=shape[1],
                               use_gpu=use_gpu)
    fused = {op: count for op, count in optimised.get_fused_operator_statistics().items() if count}
    log(f"fused operators: {fused}")
    if fp16:
        optimised.convert_float_to_float16(keep_io_types=True)
    return save_atomically(optimised.save_model_to_file, path)


def quantise_int8(source: Path, log) -> Path:
    """Dynamic INT8 (weights int8 per channel, activations scaled per batch): needs no calibration data.

    Only MatMul nodes, weights per channel. F1 of the small model on the first 200 questions: fp32 92.95,
    this 92.57; with the fused Attention quantised too 90.24; with per-tensor weights 91.38.
    """
    from onnx import TensorProto
    from onnxruntime.quantization import QuantType, quantize_dynamic

    path = derived_path(source, "int8-dynamic-matmul-per-channel")
    if not path.is_file():
        log(f"quantising {source.name} to dynamic INT8 (once; cached)")
        # fused ops hide tensor types from shape inference; their outputs are float
        extra = {"DefaultTensorType": TensorProto.FLOAT}
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # its advice to pre-process targets image models
        try:
            save_atomically(lambda output: quantize_dynamic(source, output, weight_type=QuantType.QInt8,
                                                            per_channel=True, op_types_to_quantize=["MatMul"],
                                                            extra_options=extra), path)
        finally:
            root.setLevel(level)
    return path


def providers_for(device: str, requested: str | None, available: list[str]) -> list:
    kind = requested or ("cuda" if device.startswith("cuda") else "cpu")
    if kind not in PROVIDERS:
        raise HarnessError(f"unknown providers={kind}; choose one of {', '.join(PROVIDERS)}")
    names = PROVIDERS[kind]
    if names[0] not in available:
        fix = "pip install '.[onnx-gpu]' (onnxruntime-gpu, in place of onnxruntime)" if kind != "cpu" else ""
        raise HarnessError(f"ONNX Runtime here has no {names[0]} (it has {', '.join(available)}); {fix}".rstrip("; "))
    device_id = int(device.split(":")[1]) if ":" in device else 0
    return [(name, {"device_id": device_id}) if name != "CPUExecutionProvider" else name for name in names]


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    takes_onnx = True
    precisions = ("fp32", "fp16", "int8")
    option_types = OPTIONS

    def __init__(self, model: LoadedModel, device: str, precision: str, calibration=None,
                 cache_dir: Path = Path("build/cache"), options: dict[str, str] | None = None, log=print):
        try:
            import onnxruntime
        except ModuleNotFoundError as error:
            raise HarnessError("BACKEND=onnxruntime needs ONNX Runtime: pip install '.[onnx]' "
                               "(or '.[onnx-gpu]' on a GPU machine)") from error
        settings = parse_options(options, self.option_types, self.name)
        use_gpu = device.startswith("cuda")
        if precision == "fp16" and not use_gpu:
            raise HarnessError("ONNX Runtime fp16 is for GPUs; on CPU use PRECISION=fp32 or int8")
        if precision == "int8" and use_gpu:
            raise HarnessError("ONNX Runtime dynamic INT8 runs on CPU; on GPU use PRECISION=fp16")
        providers = providers_for(device, settings.get("providers"), onnxruntime.get_available_providers())
        path = model.onnx_path or export_onnx(model, cache_dir / "onnx", log)
        if precision == "int8" and is_quantised(path):
            log(f"{path.name} is already quantised: running it as it is")
        else:
            if settings.get("optimize", True):
                config = getattr(model.module, "config", None)
                shape = (config.num_attention_heads, config.hidden_size) if config else (0, 0)
                path = optimise(path, use_gpu, precision == "fp16", shape, log)
            if precision == "int8":
                path = quantise_int8(path, log)
        session_options = onnxruntime.SessionOptions()
        session_options.intra_op_num_threads = settings.get("intra_threads", 0)
        session_options.inter_op_num_threads = settings.get("inter_threads", 1)
        self.session = onnxruntime.InferenceSession(str(path), session_options, providers=providers)
        wanted = providers[0][0] if isinstance(providers[0], tuple) else providers[0]
        if wanted not in self.session.get_providers():
            raise HarnessError(f"ONNX Runtime could not start {wanted} (it fell back to "
                               f"{', '.join(self.session.get_providers())}); check the CUDA/TensorRT libraries")
        self.path = path
        self.interface = find_interface([(item.name, item.type) for item in self.session.get_inputs()],
                                        [item.name for item in self.session.get_outputs()], path)
        self.input_data_type = np.dtype(self.interface.inputs["input_ids"][1]).name  # as the model declares
        length = self.session.get_inputs()[0].shape[1]
        self.fixed_length = length if isinstance(length, int) else None  # the reference model.onnx is 384 wide
        check_sequence_axis(path, self.fixed_length, calibration.seq_length if calibration is not None else 0)
        log(f"ONNX Runtime {onnxruntime.__version__}: {path.name} on {', '.join(self.session.get_providers())}")

    def predict(self, input_ids: np.ndarray, input_mask: np.ndarray, segment_ids: np.ndarray) -> np.ndarray:
        length = input_ids.shape[1]
        arrays = named_inputs(input_ids, input_mask, segment_ids, self.fixed_length)
        feed = {name: arrays[ours].astype(dtype, copy=False) for ours, (name, dtype) in self.interface.inputs.items()}
        names = [self.interface.joint] if self.interface.joint else [self.interface.start, self.interface.end]
        results = dict(zip(names, self.session.run(names, feed), strict=True))
        return stack_logits(self.interface, results)[:, :length]
