"""OpenVINO backend on the small real model: fp32 F1 as ONNX Runtime's, int8 calibrated on MLPerf's list only and
within 1% of fp32, bf16 computed in bf16 or refused, and a LoadGen run through it."""

from __future__ import annotations

import numpy as np
import pytest

from common import cpu
from common.errors import HarnessError
from qsl.calibration import calibration_indices
from sut import openvino_backend
from sut.onnxruntime_backend import OnnxRuntimeBackend
from tests.conftest import mixed_batch, run_cli, subset_f1

pytest.importorskip("openvino", reason="BACKEND=openvino needs OpenVINO: pip install '.[openvino]'")
pytestmark = pytest.mark.slow  # ONNX export, quantisation and real-model F1

QUESTIONS = 100  # the first 100 dev questions and all their features
QUIET = {"log": lambda *_: None}


@pytest.fixture(scope="module")
def fp32(model, onnx_cache, features):
    return openvino_backend.OpenVinoBackend(model, "cpu", "fp32", features, onnx_cache, **QUIET)


@pytest.fixture(scope="module")
def fp32_f1(fp32, features, examples):
    return subset_f1(fp32, features, examples, QUESTIONS)


def test_fp32_computes_in_fp32_and_scores_as_onnx_runtime(model, onnx_cache, fp32, fp32_f1, features, examples):
    assert fp32.computed_precision == "f32"  # OpenVINO's own default on a CPU with bf16 hardware is bf16
    onnx_runtime = OnnxRuntimeBackend(model, "cpu", "fp32", cache_dir=onnx_cache, options={"optimize": "0"}, **QUIET)
    arguments = mixed_batch(features)
    real = arguments[1].astype(bool)
    np.testing.assert_allclose(fp32.predict(*arguments)[real], onnx_runtime.predict(*arguments)[real], atol=1e-3)
    assert fp32_f1 == pytest.approx(subset_f1(onnx_runtime, features, examples, QUESTIONS), abs=0.1)


def test_int8_calibrates_on_mlperfs_list_only_and_keeps_f1(model, onnx_cache, fp32_f1, features, examples,
                                                            monkeypatch):
    seen = []
    batch_inputs = openvino_backend.batch_inputs
    monkeypatch.setattr(openvino_backend, "batch_inputs",
                        lambda samples, rows: seen.extend(rows.tolist()) or batch_inputs(samples, rows))
    int8 = openvino_backend.OpenVinoBackend(model, "cpu", "int8", features, onnx_cache, **QUIET)
    assert sorted(set(seen)) == sorted(calibration_indices(features).tolist()) and len(set(seen)) == 100
    int8_f1 = subset_f1(int8, features, examples, QUESTIONS)
    assert abs(int8_f1 - fp32_f1) <= 0.01 * fp32_f1, f"int8 F1 {int8_f1:.2f} vs fp32 {fp32_f1:.2f}"
    calibrated = len(seen)
    openvino_backend.OpenVinoBackend(model, "cpu", "int8", features, onnx_cache, **QUIET)
    assert len(seen) == calibrated  # the quantised model is cached: not calibrated again


def test_bf16_is_computed_in_bf16_or_refused(model, onnx_cache, features, monkeypatch):
    monkeypatch.delenv(cpu.FLAGS_VARIABLE)  # this CPU's own flags, not the suite's pinned ones
    cpu.cpu_flags.cache_clear()
    try:
        native = bool({"avx512_bf16", "amx_bf16"} & cpu.cpu_flags())
    finally:
        cpu.cpu_flags.cache_clear()
    if native:
        assert openvino_backend.OpenVinoBackend(model, "cpu", "bf16", features, onnx_cache,
                                                **QUIET).computed_precision == "bf16"
    else:
        with pytest.raises(HarnessError, match="not bf16"):
            openvino_backend.OpenVinoBackend(model, "cpu", "bf16", features, onnx_cache, **QUIET)


def test_a_loadgen_run_through_openvino(tmp_path, build_dir, features, small_model):
    result = run_cli("harness", "perf", "--backend", "openvino", "--model", str(small_model), "--count", "32",
                     "--build-dir", str(build_dir), cwd=tmp_path)
    assert result.returncode == 0 and "LoadGen result: VALID" in result.stdout, result.stdout[-3000:]
    assert "/openvino/fp32-cpu/Offline/performance/" in result.stdout
