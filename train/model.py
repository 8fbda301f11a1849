"""The model being fine-tuned: loaded or randomly initialised, and cut into pipeline stages.

Every configuration runs the same `QaStage` code: one stage over all layers (PARALLEL=none, ddp) or one per
pipeline rank. A stage keeps the full model's parameter names, so the stages' state dicts merge into one
Hugging Face BertForQuestionAnswering that `make accuracy MODEL=...` loads.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional

from common.errors import HarnessError
from qsl.features import PAD_LOGIT  # padding positions' logits: the loss then ignores how far a batch was padded
from sut.models import BERT, BertShape, load_hf_directory, load_model, random_bert


def outline(model: str | None, shape: BertShape | None) -> tuple[int, str]:
    """The encoder's depth and a short name, from configuration files alone: a MODEL or SHAPE that cannot be
    trained is refused before any rank starts or any data is made."""
    if model and shape is not None:
        raise HarnessError(f"give MODEL= or SHAPE=, not both: SHAPE={shape.name} trains a randomly initialised "
                           "model, MODEL= fine-tunes one")
    if shape is not None:
        if shape.family is not BERT:
            raise HarnessError(f"SHAPE={shape.name} is a {shape.family.model_type}, and training fine-tunes BERT "
                               f"question-answering models; for a BERT of its size give SHAPE=layers={shape.layers},"
                               f"hidden={shape.hidden},heads={shape.heads},intermediate={shape.intermediate}")
        return shape.layers, f"{shape.name}-scratch"
    if not model:
        raise HarnessError("nothing to train: give MODEL=<a Hugging Face BERT directory, e.g. bert-base-uncased, "
                           "with or without a SQuAD head> or SHAPE=<bert-base, tiny, layers=L,hidden=H,heads=A> "
                           "for random weights")
    path = Path(model).expanduser()
    if path.suffix == ".onnx":
        raise HarnessError(f"MODEL={path} is an ONNX file; training needs PyTorch weights (a Hugging Face directory "
                           "or model.pytorch)")
    if not path.exists():
        raise HarnessError(f"MODEL={path} does not exist; give a Hugging Face BERT directory (bert-base-uncased, "
                           "a SQuAD model) or SHAPE=")
    config_file = path / "config.json" if path.is_dir() else path.parent / "bert_config.json"
    if path.is_dir() and not config_file.is_file():
        if (path / "model.pytorch").is_file():
            return outline(str(path / "model.pytorch"), None)
        raise HarnessError(f"MODEL={path} is a directory without config.json: not a Hugging Face model")
    if not config_file.is_file():  # model.pytorch without its config: BERT-Large, as the loader assumes
        return 24, path.parent.name
    try:
        config = json.loads(config_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise HarnessError(f"{config_file} is not valid JSON ({error}); copy the model again") from error
    if path.is_dir() and config.get("model_type") != "bert":
        raise HarnessError(f"MODEL={path} is a {config.get('model_type') or 'model of unknown type'} "
                           f"({', '.join(config.get('architectures') or ['no architectures'])}), not BERT: training "
                           "fine-tunes a BERT question-answering model; give a BERT directory or SHAPE=")
    return int(config.get("num_hidden_layers", 0)), path.name if path.is_dir() else path.parent.name


def pretraining_outline(model: str | None, shape: BertShape | None) -> tuple[int, str]:
    """Pre-training starts from random weights of a BERT shape."""
    if model or shape is None:
        raise HarnessError("TASK=pretrain trains a randomly initialised BERT: give SHAPE=<bert-large, bert-base, "
                           "tiny or layers=L,hidden=H,heads=A> and no MODEL")
    if shape.family is not BERT:
        raise HarnessError(f"SHAPE={shape.name} is a {shape.family.model_type}; pre-training here is BERT's (MLM and "
                           "next-sentence heads): give a BERT shape")
    return shape.layers, shape.name


def load_for_training(model: str | None, shape: BertShape | None, build_dir: Path, seed: int, log=print):
    """A BertForQuestionAnswering to fine-tune, fp32 on the CPU: MODEL's weights, or SHAPE's random ones.

    A pre-trained encoder without a question-answering head (bert-base-uncased) gets a new one: that is
    how fine-tuning on SQuAD starts.
    """
    outline(model, shape)
    if shape is not None:
        return random_bert(shape, seed).module
    path = Path(model).expanduser()
    if not (path / "config.json").is_file():
        return load_model(model, build_dir, allow_random=False, log=log).module
    return load_hf_directory(path, log, new_head=True).module


def layer_split(layers: int, stages: int) -> list[range]:
    """Encoder layers per pipeline stage, as even as they divide (the first stages take one more)."""
    if not 1 <= stages <= layers:
        raise HarnessError(f"STAGES={stages}: the model has {layers} encoder layers, so at most {layers} stages")
    size, extra = divmod(layers, stages)
    bounds = [0]
    for stage in range(stages):
        bounds.append(bounds[-1] + size + (stage < extra))
    return [range(start, end) for start, end in zip(bounds, bounds[1:], strict=False)]


class QaStage(nn.Module):
    """Encoder layers `layers` of a BertForQuestionAnswering; the first stage embeds, the last scores.

    Inputs: (input_ids, segment_ids, input_mask) on the first stage, (hidden, input_mask) after it. Output:
    (hidden, input_mask) to the next stage, or the [batch, positions, 2] start/end logits from the last.
    """

    def __init__(self, model, layers: range, autocast_dtype: torch.dtype | None):
        super().__init__()
        count = model.config.num_hidden_layers
        self.first, self.last, self.layers = layers.start == 0, layers.stop == count, layers
        self.autocast_dtype = autocast_dtype
        self.bert = model.bert
        if not self.first:
            self.bert.embeddings = None
        for index in range(count):
            if index not in layers:
                self.bert.encoder.layer[index] = nn.Identity()  # no weights; the others keep their names
        self.qa_outputs = model.qa_outputs if self.last else None

    def forward(self, *inputs: torch.Tensor):
        with autocast(inputs[0].device.type, self.autocast_dtype):
            if self.first:
                input_ids, segment_ids, input_mask = inputs
                hidden = self.bert.embeddings(input_ids=input_ids, token_type_ids=segment_ids)
            else:
                hidden, input_mask = inputs
            for index in self.layers:
                hidden = encode(self.bert.encoder.layer[index], hidden, input_mask)
            if not self.last:
                return hidden, input_mask
            return score(self.qa_outputs, hidden, input_mask)


def autocast(device_type: str, dtype: torch.dtype | None):
    return torch.autocast(device_type, dtype=dtype or torch.float32, enabled=dtype is not None)


def encode(layer: nn.Module, hidden: torch.Tensor, input_mask: torch.Tensor) -> torch.Tensor:
    """One transformers encoder layer over padded rows, padding masked out of attention."""
    output = layer(hidden, attention_mask=(1.0 - input_mask[:, None, None, :].float()) * PAD_LOGIT)
    return output[0] if isinstance(output, tuple) else output  # transformers 4 returns a tuple


def score(head: nn.Module, hidden: torch.Tensor, input_mask: torch.Tensor) -> torch.Tensor:
    """[batch, positions, 2] start/end logits in fp32, padding's set to PAD_LOGIT."""
    return head(hidden).float().masked_fill(input_mask[..., None] == 0, PAD_LOGIT)


class PipeLayer(nn.Module):
    """One piece of the model as DeepSpeed's PipelineModule takes it: (embeddings | an encoder layer | the head),
    each taking and giving one tuple. The int mask travels beside the hidden states: DeepSpeed sends floating
    tensors back with gradients, which a mask has none of."""

    def __init__(self, kind: str, module: nn.Module, autocast_dtype: torch.dtype | None):
        super().__init__()
        self.kind, self.module, self.autocast_dtype = kind, module, autocast_dtype

    def forward(self, inputs: tuple[torch.Tensor, ...]):
        with autocast(inputs[0].device.type, self.autocast_dtype):
            if self.kind == "embeddings":
                input_ids, segment_ids, input_mask = inputs
                return self.module(input_ids=input_ids, token_type_ids=segment_ids), input_mask
            hidden, input_mask = inputs
            if self.kind == "encoder":
                return encode(self.module, hidden, input_mask), input_mask
            return score(self.module, hidden, input_mask)


class EncoderPipeLayer(PipeLayer):
    """An encoder layer: the only piece DeepSpeed's partitioning counts (`type:^EncoderPipeLayer$`), so its
    stages hold the layers layer_split gives ours, the embeddings joining the first and the head the last."""


def pipe_layers(model, autocast_dtype: torch.dtype | None) -> list[PipeLayer]:
    bert = model.bert
    return [PipeLayer("embeddings", bert.embeddings, autocast_dtype),
            *(EncoderPipeLayer("encoder", layer, autocast_dtype) for layer in bert.encoder.layer),
            PipeLayer("head", model.qa_outputs, autocast_dtype)]


def pipe_stage_layers(parts: list[int], layers: int) -> list[range]:
    """The encoder layers of each stage, from a PipelineModule's piece bounds (piece 0 embeds, pieces 1..layers
    are the encoder layers, the last scores)."""
    return [range(max(start, 1) - 1, min(end, layers + 1) - 1) for start, end in zip(parts, parts[1:], strict=False)]


def qa_stage_names(pipe_state: dict, layers: int) -> dict:
    """A PipelineModule's weights (keys "<layer index>.module.<name>") under QaStage's (the full model's) names."""
    def renamed(key: str) -> str:
        index, _, name = key.split(".", 2)
        position = int(index)
        if position == 0:
            return f"bert.embeddings.{name}"
        if position <= layers:
            return f"bert.encoder.layer.{position - 1}.{name}"
        return f"qa_outputs.{name}"

    return {renamed(key): value for key, value in pipe_state.items()}


def qa_loss(logits: torch.Tensor, positions: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Mean of the start and end cross-entropies (Hugging Face's question-answering loss)."""
    return (functional.cross_entropy(logits[..., 0], positions[:, 0], reduction=reduction)
            + functional.cross_entropy(logits[..., 1], positions[:, 1], reduction=reduction)) / 2


def qa_losses(logits: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """[the loss]: fine-tuning's in the shape every task's losses take (the loss minimised, then any parts)."""
    return qa_loss(logits, positions)[None]


def set_dropout(model, probability: float) -> None:
    """DROPOUT=: every dropout of the model, hidden and attention alike (0 makes runs comparable step by step)."""
    model.config.hidden_dropout_prob = model.config.attention_probs_dropout_prob = probability
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = probability
        if hasattr(module, "dropout_prob"):  # attention passes its probability to the kernel itself
            module.dropout_prob = probability


def save_model(model, state_dict: dict, directory: Path, vocabulary: Path, notes: dict) -> Path:
    """A Hugging Face model directory (config.json, model.safetensors, vocab.txt, training.json), written whole
    under another name and renamed, so no reader sees half of one."""
    import shutil

    partial = directory.with_name(directory.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.load_state_dict(state_dict)
    model.save_pretrained(partial, safe_serialization=True)
    shutil.copyfile(vocabulary, partial / "vocab.txt")
    (partial / "training.json").write_text(json.dumps(notes, indent=2) + "\n")
    shutil.rmtree(directory, ignore_errors=True)
    partial.rename(directory)
    return directory
