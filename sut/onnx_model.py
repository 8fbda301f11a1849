"""ONNX models for the ONNX Runtime and TensorRT backends: export ours, or read the reference's, by name.

An export uses the reference model.onnx's interface (inputs `input_ids, input_mask, segment_ids`,
outputs `output_start_logits, output_end_logits`, batch and sequence axes dynamic) and is cached
under a key of the model and the export settings, so a second run reuses it. Input names are
matched by meaning, because the reference INT8 model calls them `attention_mask, token_type_ids`.
"""

from __future__ import annotations

import copy
import hashlib
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.errors import HarnessError
from common.files import save_atomically
from sut.models import LoadedModel, model_inputs

OPSET = 17
INPUTS = ("input_ids", "input_mask", "segment_ids")
OUTPUTS = ("output_start_logits", "output_end_logits")
INPUT_ALIASES = {  # our name -> names models use for it
    "input_ids": ("input_ids",),
    "input_mask": ("input_mask", "attention_mask"),
    "segment_ids": ("segment_ids", "token_type_ids"),
}
OPTIONAL_INPUTS = ("segment_ids",)  # a model without segment embeddings (DistilBERT) is exported without it
START_ALIASES = ("output_start_logits", "start_logits")
END_ALIASES = ("output_end_logits", "end_logits")
ONNX_DTYPES = {"tensor(int64)": np.int64, "tensor(int32)": np.int32}
QUANTISED_OPS = {"QuantizeLinear", "DequantizeLinear", "MatMulInteger", "DynamicQuantizeLinear", "QAttention"}


def file_stamp(path: Path) -> str:
    """A file's identity in cache keys: where it is, its size and when it last changed."""
    stat = path.stat()
    return f"{path.resolve()}|{stat.st_size}|{int(stat.st_mtime)}"


def export_key(model: LoadedModel) -> str:
    """Changes when the weights' file or the exporter does: path, size and mtime, torch version, opset."""
    import torch

    source = Path(model.source)
    stamp = []
    if source.exists():
        files = sorted(source.iterdir()) if source.is_dir() else [source]
        stamp = [file_stamp(file) for file in files if file.is_file()]
    text = json.dumps([model.source, stamp, torch.__version__, OPSET, INPUTS, OUTPUTS])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def export_onnx(model: LoadedModel, cache_dir: Path, log=print) -> Path:
    """The model as ONNX in fp32, exported once per key into `cache_dir`."""
    import torch

    path = cache_dir / f"{model.name}-{export_key(model)}.onnx"
    if path.is_file():
        log(f"ONNX export cached: {path}")
        return path
    cache_dir.mkdir(parents=True, exist_ok=True)
    module = copy.deepcopy(model.module).float().eval()  # the loaded model stays as other backends expect it
    module.set_attn_implementation("eager")  # the pattern ONNX Runtime's attention fusion recognises

    class ReferenceSignature(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = module

        def forward(self, input_ids, input_mask, segment_ids):
            output = self.model(**model_inputs(self.model, input_ids, input_mask, segment_ids))
            return output.start_logits, output.end_logits

    log(f"exporting {model.name} to ONNX (once; cached as {path.name})")
    example = torch.ones(2, 64, dtype=torch.int64)
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer chatter about shapes fixed by the example input
        return save_atomically(lambda target: torch.onnx.export(
            ReferenceSignature(), (example, example, example), target, dynamo=False, input_names=list(INPUTS),
            output_names=list(OUTPUTS), opset_version=OPSET,
            dynamic_axes={name: {0: "batch", 1: "sequence"} for name in INPUTS + OUTPUTS}), path)


@dataclass
class Interface:
    """How to feed one ONNX model: which of its inputs is which of ours, in which integer type."""

    inputs: dict[str, tuple[str, type]]  # our name -> (model's name, numpy dtype)
    start: str | None  # output names; None when one output holds [batch, seq, 2]
    end: str | None
    joint: str | None


def find_interface(inputs: list[tuple[str, str]], outputs: list[str], path: Path) -> Interface:
    """`inputs` as (name, onnx type string) pairs, the way ONNX Runtime and TensorRT both report them."""
    types = dict(inputs)
    mapping = {}
    for ours, aliases in INPUT_ALIASES.items():
        name = next((alias for alias in aliases if alias in types), None)
        if name is None and ours in OPTIONAL_INPUTS:
            continue
        if name is None:
            raise HarnessError(f"{path}: no input for {ours} (looked for {', '.join(aliases)}; "
                               f"the model has {', '.join(types)})")
        if types[name] not in ONNX_DTYPES:
            raise HarnessError(f"{path}: input {name} is {types[name]}, expected int64 or int32")
        mapping[ours] = (name, ONNX_DTYPES[types[name]])
    unknown = [name for name in types if name not in {name for name, _ in mapping.values()}]
    if unknown:
        raise HarnessError(f"{path}: input {', '.join(unknown)} is none of ours (we feed "
                           f"{', '.join(alias for aliases in INPUT_ALIASES.values() for alias in aliases)})")
    start = next((name for name in START_ALIASES if name in outputs), None)
    end = next((name for name in END_ALIASES if name in outputs), None)
    if start and end:
        return Interface(mapping, start, end, None)
    if len(outputs) == 1:
        return Interface(mapping, None, None, outputs[0])
    raise HarnessError(f"{path}: cannot tell start from end logits among outputs {', '.join(outputs)}")


def stack_logits(interface: Interface, results: dict[str, np.ndarray]) -> np.ndarray:
    if interface.joint is not None:
        return np.ascontiguousarray(results[interface.joint], np.float32)
    return np.stack([results[interface.start], results[interface.end]], axis=-1).astype(np.float32, copy=False)


def is_quantised(path: Path) -> bool:
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return any(node.op_type in QUANTISED_OPS for node in graph.node)


def check_sequence_axis(path: Path, fixed_length: int | None, seq_length: int) -> None:
    """A model with a static sequence axis (the reference model.onnx: 384) takes samples no longer than it."""
    if fixed_length and seq_length > fixed_length:
        raise HarnessError(f"{path.name} takes {fixed_length} tokens per sample (a static axis), and these samples "
                           f"are {seq_length} long: give SEQ_LEN={fixed_length} or less, or MODEL=<model.pytorch or "
                           "a Hugging Face directory>, which is exported with a dynamic axis")


def named_inputs(input_ids: np.ndarray, input_mask: np.ndarray, segment_ids: np.ndarray,
                 fixed_length: int | None) -> dict[str, np.ndarray]:
    """Our inputs by our name; models with a static sequence axis (the reference model.onnx: 384) get
    zero padding up to it."""
    arrays = dict(zip(INPUTS, (input_ids, input_mask, segment_ids), strict=True))
    length = input_ids.shape[1]
    if not fixed_length or fixed_length == length:
        return arrays
    return {key: np.pad(value, ((0, 0), (0, fixed_length - length))) for key, value in arrays.items()}
