"""The precision a CPU run takes by default: bf16 where the CPU computes it natively, else fp32, as
configs/systems/cpu.json says; PRECISION= always wins. Detection is faked through BERT99_CPU_FLAGS."""

from __future__ import annotations

import pytest

from common import cpu
from harness.run_config import RunConfig, RunOptions
from tests.conftest import run_cli

AMX_XEON = "fpu sse4_2 avx2 avx512f avx512_vnni avx512_bf16 amx_bf16 amx_int8 amx_tile"
AVX512_BF16_EPYC = "fpu sse4_2 avx2 avx512f avx512_vnni avx512_bf16"
AVX2_ONLY = "fpu sse4_2 avx2 fma"


@pytest.fixture
def flags(monkeypatch):
    def fake(value: str) -> None:
        monkeypatch.setenv(cpu.FLAGS_VARIABLE, value)
        cpu.cpu_flags.cache_clear()

    yield fake
    cpu.cpu_flags.cache_clear()


def config(**options) -> RunConfig:
    return RunConfig.from_options(RunOptions(system="cpu", **options), accuracy=False)


@pytest.mark.parametrize(("cpu_flags", "expected"), [(AMX_XEON, "bf16"), (AVX512_BF16_EPYC, "bf16"),
                                                     (AVX2_ONLY, "fp32"), ("", "fp32")])
def test_the_default_precision_follows_the_cpus_extensions(flags, cpu_flags, expected):
    flags(cpu_flags)
    chosen = config()
    assert chosen.precision == expected
    assert ("picked for this CPU's" in chosen.precision_note) == (expected == "bf16")


def test_a_given_precision_wins_over_the_cpus_pick(flags):
    flags(AMX_XEON)
    chosen = config(precision="fp32")
    assert (chosen.precision, chosen.precision_note) == ("fp32", "as given")


def test_a_backend_without_the_picked_precision_keeps_the_systems(flags):
    flags(AMX_XEON)
    assert config(backend="onnxruntime").precision == "fp32"  # it runs fp32, fp16, int8: never refused unasked


def test_a_default_run_says_what_it_picked_and_logs_apart(flags, tmp_path, build_dir, features):
    flags(AVX512_BF16_EPYC)
    result = run_cli("harness", "perf", "--shape", "tiny", "--count", "16", "--build-dir", str(build_dir),
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "cpu, bf16 (picked for this CPU's avx512_bf16; PRECISION=fp32 for fp32)" in result.stdout
    assert "/pytorch/bf16-cpu/Offline/performance/" in result.stdout
