"""`make bench`: one run, one table of samples/s over the SQuAD dev features, written under build/bench/.

    python -m benchmarks.bench [--model DIR] [--passes 3] [--precisions fp16,bf16,fp8] [--update-docs]

The table goes to <build-dir>/bench/benchmarks.md; docs/benchmarks.md, which is tracked, changes only
with --update-docs (make bench UPDATE_DOCS=1), on a quiet machine whose figures are worth keeping.

On a GPU: the reference's way (Hugging Face fp32, batch 1, padded to 384), Hugging Face fp16 padded
(batch 512) and length-sorted, then our packed encoder in each precision, and with each candidate
option (CANDIDATES). Without a GPU: the small model on CPU through each CPU backend. Every row runs the
backend's own `predict` (host packing and copies included) over whole passes of the dev set after a
warm-up pass; the table gives the median.
The host column is the share of that time spent packing batches and scattering logits on the host.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import re
import sys
from pathlib import Path

import numpy as np

from benchmarks.timing import Row, host_seconds, measure, table, timed_passes
from common.cli import ArgumentParser, run_main
from common.variables import add_variables

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs" / "benchmarks.md"
REFERENCE_BATCH1_SAMPLES = 200
# Opt-in backend options not yet timed on a GPU: each gets its own row, beside the default path's.
CANDIDATES = [("Triton attention", precision, {"triton_attention": "1"}) for precision in ("fp16", "fp8")]


def fixed_batches(count: int, batch_size: int) -> list[np.ndarray]:
    order = np.arange(count)
    return [order[start:start + batch_size] for start in range(0, count, batch_size)]


def gpu_rows(args, built, log) -> list[Row]:
    import torch

    from harness.build import create_backend
    from sut.batching import plan_batches

    device = "cuda"
    model, features, system = built.model, built.features, built.config.system
    total = len(features.input_ids)
    rows: list[Row] = []

    def add(row: Row) -> None:
        rows.append(row)
        log(f"  {row.path} {row.precision} {row.batching}: {row.samples_per_second:,.0f} samples/s")

    huggingface = create_backend("huggingface", model, device, "fp32", features, log=log)
    subset = fixed_batches(args.reference_samples, 1)
    padded = features.seq_length  # the reference pads every sample to the full length
    add(Row("Hugging Face (reference style)", "fp32", f"batch 1, padded to {padded}", args.reference_samples,
            measure(huggingface, features, subset, device, args.passes, pad_to=padded)))
    del huggingface
    torch.cuda.empty_cache()
    huggingface = create_backend("huggingface", model, device, "fp16", features, log=log)
    add(Row("Hugging Face", "fp16", f"batch 512, padded to {padded}", total,
            measure(huggingface, features, fixed_batches(total, 512), device, args.passes, pad_to=padded)))
    sorted_batches = plan_batches(features.lengths, 512, None)
    add(Row("Hugging Face", "fp16", "batch 512, length-sorted, padded to batch max", total,
            measure(huggingface, features, sorted_batches, device, args.passes)))
    del huggingface
    torch.cuda.empty_cache()
    packed_batches = plan_batches(features.lengths, system.batch_size, system.max_tokens)
    host = host_seconds(features, packed_batches)
    variants = [("ours, packed", precision, {}) for precision in args.precisions]
    variants += [(f"ours, packed, {label}", precision, options) for label, precision, options in CANDIDATES
                 if precision in args.precisions]
    for path, precision, options in variants:
        try:
            backend = create_backend("pytorch", model, device, precision, features, options=options, log=log)
            rate = measure(backend, features, packed_batches, device, args.passes)
            add(Row(path, precision, f"token budget {system.max_tokens}, batch <= {system.batch_size}",
                    total, rate, host_share=host * rate / total))
            del backend
        except Exception as error:  # noqa: BLE001 - one failing variant must not lose the others
            log(f"  {path} {precision}: FAILED {error!r}")
            rows.append(Row(path, precision, "", total, float("nan"), note=f"failed: {error!r}"[:200]))
        torch.cuda.empty_cache()
    return rows


def gpu_header(model_name: str) -> list[str]:
    import torch

    properties = torch.cuda.get_device_properties(0)
    return [f"GPU: {properties.name} ({properties.total_memory / 2**30:.0f} GiB), CUDA {torch.version.cuda}, "
            f"torch {torch.__version__}, Python {platform.python_version()}", f"Model: {model_name}"]


def write_section(name: str, lines: list[str], path: Path = DOCS) -> None:
    """Replace this benchmark's own section of a markdown file, keeping the others."""
    begin, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    block = "\n".join([begin, *lines, end])
    text = path.read_text() if path.is_file() else "# Benchmarks\n\nWritten by `make bench`.\n"
    pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    else:
        text = text.rstrip("\n") + "\n\n" + block
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text.rstrip("\n") + "\n")


def record(name: str, lines: list[str], build_dir: Path, update_docs: bool) -> None:
    """A section into build/bench/benchmarks.md, and into the tracked docs/benchmarks.md only when asked."""
    for path in (build_dir / "bench" / "benchmarks.md", *([DOCS] if update_docs else [])):
        write_section(name, lines, path)
        print(f"wrote {path}")


def parser() -> argparse.ArgumentParser:
    result = ArgumentParser(prog="python -m benchmarks.bench", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    add_variables(result, "bench")
    result.add_argument("--passes", type=int, default=3, help="timed passes per row; the median is reported")
    result.add_argument("--precisions", default="fp16,bf16,fp8", type=lambda text: text.split(","),
                        help="precisions of our packed path on GPU (default fp16,bf16,fp8)")
    result.add_argument("--reference-samples", type=int, default=REFERENCE_BATCH1_SAMPLES,
                        help="samples timed for the batch-1 reference-style row")
    return result


def main() -> None:
    import torch

    from harness.build import build_run
    from harness.run_config import RunConfig, RunOptions
    from qsl.samples import load_samples

    args = parser().parse_args()
    config = RunConfig.from_options(RunOptions.from_args(args), accuracy=False)
    source, shape = config.source, config.shape
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    section = source.label  # tables of other data or lengths keep sections of their own
    if not torch.cuda.is_available():
        from benchmarks.cpu import cpu_section

        features = load_samples(source, args.build_dir)
        record(f"cpu{section}{'-' + shape.name if shape else ''}", cpu_section(args, features, started, shape, source),
               args.build_dir, args.update_docs)
        return
    built = build_run(config)
    model, features = built.model, built.features
    rows = gpu_rows(args, built, print)
    data = "the 10,833 dev features" if source.is_mlperf else f"{len(features):,} samples ({source.label.lstrip('-')})"
    lines = [f"## GPU, {model.name}, measured {started}", "", *[f"- {line}" for line in gpu_header(model.name)],
             f"- Command: `{' '.join(['python -m benchmarks.bench', *sys.argv[1:]])}`; {timed_passes(args.passes)} "
             f"over {data} after a warm-up pass, backend `predict` timed with CUDA events",
             "", *table(rows)]
    print("\n".join(table(rows)))
    record(f"gpu{section}-{model.name}" if section or shape else "gpu", lines, args.build_dir, args.update_docs)


if __name__ == "__main__":
    run_main(main)
