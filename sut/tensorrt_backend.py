"""TensorRT backend: the ONNX model built into an engine, run on CUDA buffers that torch owns.

Needs `pip install '.[tensorrt]'` and a CUDA GPU. The engine has one optimisation profile covering
batch 1..max_batch and sequence 1..384 (batches arrive length-sorted, padded only to their own
longest sample); larger batches are split. INT8 and FP8 are explicit quantisation: the ONNX graph
must carry Q/DQ nodes (the reference bert_large_v1_1_fake_quant.onnx does), since TensorRT 10
deprecates implicit calibration. Engines and the timing cache are kept on disk, keyed by model,
GPU, TensorRT version and settings. Options: max_batch=N (default 256), workspace_gb=N (default 8).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from common.errors import HarnessError
from common.files import save_atomically
from qsl.features import MAX_SEQ_LENGTH
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

OPTIONS = {"max_batch": int, "workspace_gb": int}
TYPICAL_LENGTH = 192  # the profile's optimum: SQuAD features average about 176 real tokens


def fixed_sequence_length(onnx_path: Path) -> int | None:
    import onnx

    dimension = onnx.load(str(onnx_path), load_external_data=False).graph.input[0].type.tensor_type.shape.dim[1]
    return dimension.dim_value if dimension.HasField("dim_value") else None


def import_tensorrt():
    try:
        import tensorrt
    except ModuleNotFoundError as error:
        raise HarnessError("BACKEND=tensorrt needs the TensorRT Python package: pip install '.[tensorrt]' "
                           "on a machine with an NVIDIA GPU (or use BACKEND=pytorch)") from error
    return tensorrt


class TensorRTBackend(Backend):
    name = "tensorrt"
    takes_onnx = True
    precisions = ("fp32", "fp16", "int8", "fp8")
    option_types = OPTIONS

    def __init__(self, model: LoadedModel, device: str, precision: str, calibration=None,
                 cache_dir: Path = Path("build/cache"), options: dict[str, str] | None = None, log=print):
        trt = import_tensorrt()
        settings = parse_options(options, self.option_types, self.name)
        if not device.startswith("cuda"):
            raise HarnessError("BACKEND=tensorrt runs on CUDA GPUs only; use DEVICE=cuda")
        self.trt = trt
        self.device = torch.device(device)
        self.max_batch = settings.get("max_batch", 256)
        onnx_path = model.onnx_path or export_onnx(model, cache_dir / "onnx", log)
        if precision in ("int8", "fp8") and not is_quantised(onnx_path):
            raise HarnessError(f"PRECISION={precision} with TensorRT needs Q/DQ nodes in the ONNX graph (explicit "
                               f"quantisation), and {onnx_path.name} has none; give MODEL=<quantised .onnx>, "
                               "e.g. the reference bert_large_v1_1_fake_quant.onnx")
        self.fixed_length = fixed_sequence_length(onnx_path)
        self.seq_length = calibration.seq_length if calibration is not None else MAX_SEQ_LENGTH  # the profile's top
        check_sequence_axis(onnx_path, self.fixed_length, self.seq_length)
        logger = trt.Logger(trt.Logger.WARNING)
        engine_bytes = self._engine(onnx_path, precision, settings.get("workspace_gb", 8), cache_dir / "tensorrt",
                                    logger, log)
        self.engine = trt.Runtime(logger).deserialize_cuda_engine(engine_bytes)
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(index) for index in range(self.engine.num_io_tensors)]
        inputs = [name for name in names if self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT]
        input_types = [(name, "tensor(int32)" if self.engine.get_tensor_dtype(name) == trt.int32
                        else "tensor(int64)") for name in inputs]
        self.outputs = [name for name in names if name not in inputs]
        self.interface = find_interface(input_types, self.outputs, onnx_path)
        self.input_data_type = np.dtype(self.interface.inputs["input_ids"][1]).name  # as the engine declares
        log(f"TensorRT {trt.__version__}: engine for {onnx_path.name}, {precision}, batch <= {self.max_batch}")

    def _engine(self, onnx_path: Path, precision: str, workspace_gb: int, cache_dir: Path, logger, log) -> bytes:
        trt = self.trt
        gpu = torch.cuda.get_device_name(self.device)
        key = hashlib.sha256(f"{file_stamp(onnx_path)}|{gpu}|{trt.__version__}|{precision}|{self.max_batch}|"
                             f"{self.seq_length}".encode()).hexdigest()[:16]
        engine_path = cache_dir / f"{onnx_path.stem}-{precision}-{key}.engine"
        if engine_path.is_file():
            log(f"TensorRT engine cached: {engine_path}")
            return engine_path.read_bytes()
        cache_dir.mkdir(parents=True, exist_ok=True)
        builder = trt.Builder(logger)
        network = builder.create_network(0)
        parser = trt.OnnxParser(network, logger)
        if not parser.parse_from_file(str(onnx_path)):
            errors = "; ".join(str(parser.get_error(index)) for index in range(parser.num_errors))
            raise HarnessError(f"TensorRT cannot parse {onnx_path}: {errors}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_gb << 30)
        for flag in {"fp32": [], "fp16": ["FP16"], "int8": ["INT8", "FP16"], "fp8": ["FP8", "FP16"]}[precision]:
            config.set_flag(getattr(trt.BuilderFlag, flag))
        timing_path = cache_dir / f"timing-{hashlib.sha256(f'{gpu}|{trt.__version__}'.encode()).hexdigest()[:12]}.cache"
        timing = config.create_timing_cache(timing_path.read_bytes() if timing_path.is_file() else b"")
        config.set_timing_cache(timing, ignore_mismatch=False)
        profile = builder.create_optimization_profile()
        for index in range(network.num_inputs):
            fixed = network.get_input(index).shape[1]  # -1 when dynamic; 384 in the reference model.onnx
            top = self.seq_length
            lengths = (1, min(TYPICAL_LENGTH, top), top) if fixed < 0 else (fixed, fixed, fixed)
            profile.set_shape(network.get_input(index).name, (1, lengths[0]),
                              (self.max_batch, lengths[1]), (self.max_batch, lengths[2]))
        config.add_optimization_profile(profile)
        log(f"building a TensorRT {precision} engine for {onnx_path.name} (minutes, once; cached)")
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise HarnessError(f"TensorRT could not build an engine for {onnx_path} in {precision}")
        timing_path.write_bytes(memoryview(config.get_timing_cache().serialize()))
        save_atomically(lambda name: Path(name).write_bytes(memoryview(serialized)), engine_path)
        return bytes(memoryview(serialized))

    def _run(self, arrays: dict[str, np.ndarray]) -> np.ndarray:
        trt = self.trt
        stream = torch.cuda.current_stream(self.device)
        keep = []  # device buffers must live until the stream has used them
        for ours, (name, dtype) in self.interface.inputs.items():
            tensor = torch.from_numpy(arrays[ours].astype(dtype, copy=False)).to(self.device, non_blocking=True)
            keep.append(tensor)
            self.context.set_input_shape(name, tuple(tensor.shape))
            self.context.set_tensor_address(name, tensor.data_ptr())
        results = {}
        for name in self.outputs:
            dtype = torch.float16 if self.engine.get_tensor_dtype(name) == trt.float16 else torch.float32
            output = torch.empty(tuple(self.context.get_tensor_shape(name)), dtype=dtype, device=self.device)
            self.context.set_tensor_address(name, output.data_ptr())
            results[name] = output
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise RuntimeError("TensorRT execution failed")
        return stack_logits(self.interface, {name: tensor.float().cpu().numpy() for name, tensor in results.items()})

    def predict(self, input_ids: np.ndarray, input_mask: np.ndarray, segment_ids: np.ndarray) -> np.ndarray:
        length = input_ids.shape[1]
        parts = []
        for start in range(0, len(input_ids), self.max_batch):
            rows = slice(start, start + self.max_batch)
            arrays = named_inputs(input_ids[rows], input_mask[rows], segment_ids[rows], self.fixed_length)
            parts.append(self._run(arrays)[:, :length])
        return np.concatenate(parts)
