"""OpenVINO backend: the same ONNX model ONNX Runtime runs, compiled by OpenVINO for this CPU.

fp32 is computed in fp32 (OpenVINO's default on CPUs with bf16 hardware is bf16, so it is asked for
explicitly); bf16 through OpenVINO's inference-precision hint, refused where the CPU would quietly
compute fp32; int8 by NNCF's post-training quantisation, its activation scales from MLPerf's
calibration list only (qsl/calibration.py), the quantised model cached beside the export. Shapes are
dynamic: each batch is padded only to its own longest sample.
Options (BACKEND_OPTIONS="key=value"): threads=N (0: OpenVINO's choice), streams=N (requests in flight;
default 1, as a batch at a time is what the SUT gives).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np

from common.errors import HarnessError
from qsl.calibration import calibration_indices
from qsl.features import SquadFeatures
from sut.backend import Backend, parse_options
from sut.batching import batch_inputs
from sut.models import LoadedModel
from sut.onnx_model import (
    Interface,
    check_sequence_axis,
    export_onnx,
    file_stamp,
    find_interface,
    is_quantised,
    named_inputs,
    stack_logits,
)

OPTIONS = {"threads": int, "streams": int}
PRECISION_HINTS = {"fp32": "f32", "bf16": "bf16"}  # int8: the quantised model, the rest at OpenVINO's default
OPENVINO_TYPES = {"i64": "tensor(int64)", "i32": "tensor(int32)"}  # as find_interface reads types
CALIBRATION_BATCH_SIZE = 8


def quantised_path(source: Path) -> Path:
    """Beside `source`, named by its identity and the OpenVINO and NNCF versions."""
    import nncf
    import openvino

    key = f"{file_stamp(source)}|nncf-int8-transformer|{openvino.__version__}|{nncf.__version__}"
    return source.with_name(f"{source.stem}.openvino-int8-{hashlib.sha256(key.encode()).hexdigest()[:12]}.xml")


def model_interface(network, path: Path) -> tuple[Interface, int | None]:
    """Which input is which, and the sequence axis's fixed length (the reference model.onnx: 384) or None."""
    interface = find_interface(
        [(port.get_any_name(), OPENVINO_TYPES.get(port.get_element_type().get_type_name(), "other"))
         for port in network.inputs], [port.get_any_name() for port in network.outputs], path)
    length = network.inputs[0].get_partial_shape()[1]
    return interface, length.get_length() if length.is_static else None


def feed(interface: Interface, fixed_length: int | None, input_ids: np.ndarray, input_mask: np.ndarray,
         segment_ids: np.ndarray) -> dict[str, np.ndarray]:
    arrays = named_inputs(input_ids, input_mask, segment_ids, fixed_length)
    return {name: arrays[ours].astype(dtype, copy=False) for ours, (name, dtype) in interface.inputs.items()}


def quantise_int8(core, source: Path, calibration: SquadFeatures, log) -> Path:
    """NNCF's post-training int8 (transformer preset: the products and attention's matrix products in int8, the
    softmax, LayerNorm and GELU left in float), calibrated on MLPerf's list, once per source model."""
    path = quantised_path(source)
    if path.is_file():
        return path
    try:
        import nncf
    except ModuleNotFoundError as error:
        raise HarnessError("BACKEND=openvino PRECISION=int8 needs NNCF: pip install '.[openvino]'") from error
    import openvino

    network = core.read_model(source)
    interface, fixed_length = model_interface(network, source)
    rows = calibration_indices(calibration)
    batches = [rows[start:start + CALIBRATION_BATCH_SIZE] for start in range(0, len(rows), CALIBRATION_BATCH_SIZE)]
    log(f"quantising {source.name} to int8 with NNCF on {len(rows)} calibration samples (once; cached)")
    logging.getLogger("nncf").setLevel(logging.ERROR)  # its progress bars and advice
    dataset = nncf.Dataset(batches, lambda batch: feed(interface, fixed_length, *batch_inputs(calibration, batch)))
    quantised = nncf.quantize(network, dataset, model_type=nncf.ModelType.TRANSFORMER, subset_size=len(batches))
    path.parent.mkdir(parents=True, exist_ok=True)
    openvino.save_model(quantised, path.with_suffix(".partial.xml"))
    path.with_suffix(".partial.bin").replace(path.with_suffix(".bin"))
    path.with_suffix(".partial.xml").replace(path)  # the .xml last: its presence means the pair is whole
    return path


class OpenVinoBackend(Backend):
    name = "openvino"
    takes_onnx = True
    input_data_type = "int64"
    precisions = ("fp32", "bf16", "int8")
    option_types = OPTIONS

    def __init__(self, model: LoadedModel, device: str, precision: str, calibration: SquadFeatures | None = None,
                 cache_dir: Path = Path("build/cache"), options: dict[str, str] | None = None, log=print):
        try:
            import openvino
        except ModuleNotFoundError as error:
            raise HarnessError("BACKEND=openvino needs OpenVINO: pip install '.[openvino]'") from error
        if device != "cpu":
            raise HarnessError(f"BACKEND=openvino runs on DEVICE=cpu (its GPU plugin is for Intel GPUs), not {device}")
        settings = parse_options(options, self.option_types, self.name)
        core = openvino.Core()
        path = model.onnx_path or export_onnx(model, cache_dir / "onnx", log)
        if precision == "int8":
            if is_quantised(path):
                raise HarnessError(f"{path.name} is already quantised; BACKEND=openvino PRECISION=int8 quantises an "
                                   "fp32 model itself (give the fp32 ONNX file or the PyTorch model)")
            if calibration is None:
                raise HarnessError("BACKEND=openvino PRECISION=int8 needs calibration features")
            path = quantise_int8(core, path, calibration, log)
        config = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": str(settings.get("streams") or 1)}
        if precision in PRECISION_HINTS:
            config["INFERENCE_PRECISION_HINT"] = PRECISION_HINTS[precision]
        if settings.get("threads"):
            config["INFERENCE_NUM_THREADS"] = str(settings["threads"])
        self.compiled = core.compile_model(core.read_model(path), "CPU", config)
        computed = self.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()  # f32, bf16
        if precision == "bf16" and computed != "bf16":
            raise HarnessError(f"OpenVINO computes {computed} on this CPU, not bf16 (it needs AVX512-BF16 or AMX): "
                               "use PRECISION=fp32 or int8")
        self.request = self.compiled.create_infer_request()
        self.interface, self.fixed_length = model_interface(self.compiled, path)
        check_sequence_axis(path, self.fixed_length, calibration.seq_length if calibration is not None else 0)
        self.computed_precision = computed
        log(f"OpenVINO {openvino.__version__}: {path.name} on {core.get_property('CPU', 'FULL_DEVICE_NAME')}, "
            f"computing in {computed}")

    def predict(self, input_ids: np.ndarray, input_mask: np.ndarray, segment_ids: np.ndarray) -> np.ndarray:
        length = input_ids.shape[1]
        results = self.request.infer(feed(self.interface, self.fixed_length, input_ids, input_mask, segment_ids))
        named = {port.get_any_name(): value for port, value in results.items()}
        return stack_logits(self.interface, named)[:, :length]
