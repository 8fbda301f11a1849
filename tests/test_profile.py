"""The GPU investigation tools on the CPU: `make profile` for real, and the tile sweep refusing politely."""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import pytest
import torch

from benchmarks import bench
from benchmarks.batch_profile import OTHER, category
from benchmarks.bench import DOCS
from sut.onednn import onednn_available
from tests.conftest import run_cli


def test_categories_name_what_a_kernel_does():
    assert category("_product_gelu_quantise") == "FFN input product, GELU, quantise (Triton)"
    assert category("sm90_xmma_gemm_e4m3f32_e4m3f32_f32_tn_n_tilesize128x256x64") == "matrix products"
    assert category("void pytorch_flash::flash_fwd_kernel<Flash_fwd_kernel_traits<64, 128>>") == "attention"
    assert category("triton_red_fused_native_layer_norm_0") == "LayerNorm"
    assert category("aten::addmm") == "matrix products" and category("aten::gelu") == "GELU"
    assert category("mkldnn::_linear_pointwise") == "matrix products"
    assert category("aten::empty") == OTHER


@pytest.mark.slow
def test_profile_of_one_batch_on_cpu(tmp_path, build_dir, features, tiny_random_model):
    build = tmp_path / "build"
    shutil.copytree(build_dir / "data", build / "data")
    tracked = DOCS.read_bytes()
    result = run_cli("benchmarks.batch_profile", "--model", str(tiny_random_model), "--build-dir", str(build),
                     "--device", "cpu", "--system", "cpu", "--iterations", "2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert DOCS.read_bytes() == tracked, "docs/benchmarks.md changes only with --update-docs"
    written = (build / "bench" / "benchmarks.md").read_text()
    assert "<!-- bench:profile-cpu-fp32 -->" in written
    assert "## Profile: " in written and "- CPU " in written and "| matrix products |" in written
    batch = re.search(r"One batch: ([\d,]+) tokens, 8 samples", result.stdout)
    assert batch and int(batch.group(1).replace(",", "")) > 8 * 300  # the cpu plan's longest 8 samples
    shares = [float(share) for share in re.findall(r"\| ([\d.]+)% \|\n", result.stdout.split("Longest")[0])]
    assert abs(sum(shares) - 100) < 0.5
    assert "| matrix products |" in result.stdout and "| attention |" in result.stdout
    products = "mkldnn::_linear_pointwise" if onednn_available() else "aten::addmm"  # sut/onednn.py
    assert f"| `{products}` | matrix products |" in result.stdout


def test_figures_reach_the_tracked_docs_only_when_asked(tmp_path, monkeypatch):
    docs = tmp_path / "docs.md"
    docs.write_text("# Benchmarks\n\nnotes kept as they are\n")
    monkeypatch.setattr(bench, "DOCS", docs)
    bench.record("cpu", ["| a | table |"], tmp_path / "build", update_docs=False)
    assert "| a | table |" in (tmp_path / "build" / "bench" / "benchmarks.md").read_text()
    assert "| a | table |" not in docs.read_text()
    bench.record("cpu", ["| a | table |"], tmp_path / "build", update_docs=True)
    assert "notes kept as they are" in docs.read_text() and "<!-- bench:cpu -->\n| a | table |" in docs.read_text()


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here: the sweep would run")
def test_tile_sweep_says_what_it_needs(tmp_path):
    result = run_cli("benchmarks.tiles", cwd=tmp_path)
    assert result.returncode == 2 and "run on a CUDA GPU; none is visible here" in result.stderr


def test_no_module_shadows_the_standard_library():
    """`python benchmarks/host.py` puts benchmarks/ first on sys.path: a benchmarks/profile.py there was
    imported as the standard library's `profile` (by cProfile, which torch imports) and broke the script."""
    repo = Path(__file__).resolve().parents[1]
    ours = {path.stem for path in repo.glob("*/*.py") if ".venv" not in path.parts}
    assert not ours & set(sys.stdlib_module_names)
