"""Finding and loading the QA model: the MLPerf `model.pytorch`, a Hugging Face directory (BERT or DistilBERT),
or random weights of a shape. What differs between the two families lives here, so backends never learn names."""

from __future__ import annotations

import json
import pickle
import re
from dataclasses import dataclass
from pathlib import Path

from common.errors import HarnessError
from configs import BERT_LARGE_CONFIG

MLPERF_CHECKPOINT_NAMES = ("model.pytorch",)
HF_WEIGHT_NAMES = ("model.safetensors", "pytorch_model.bin")
# Buffers older transformers saved with the weights; harmless when absent or extra.
BENIGN_KEYS = re.compile(r"(^|\.)(position_ids|token_type_ids)$")



def banner(*lines: str) -> str:
    return "\n".join(["", "#" * 78, *(f"#  {line:<74}#" for line in lines), "#" * 78, ""])


RANDOM_BANNER = banner("NO MODEL GIVEN: using a RANDOMLY INITIALISED BERT-Large.",
                       "Results are for PERFORMANCE ONLY; accuracy is meaningless.",
                       "Real model: `make download` (MLPerf model.pytorch) or MODEL=<path>.")


@dataclass(frozen=True)
class ModelFamily:
    """An encoder family: transformers' question-answering class, whether it has segment (token type)
    embeddings, and its weight names as BERT's (regular expressions), which the packed encoder reads."""

    model_type: str
    qa_class: str
    segment_ids: bool
    bert_names: tuple[tuple[str, str], ...] = ()


BERT = ModelFamily("bert", "BertForQuestionAnswering", segment_ids=True)
DISTILBERT = ModelFamily("distilbert", "DistilBertForQuestionAnswering", segment_ids=False, bert_names=(
    (r"^distilbert\.embeddings\.", "bert.embeddings."),
    (r"^distilbert\.transformer\.layer\.(\d+)\.", r"bert.encoder.layer.\1."),
    (r"\.attention\.q_lin\.", ".attention.self.query."),
    (r"\.attention\.k_lin\.", ".attention.self.key."),
    (r"\.attention\.v_lin\.", ".attention.self.value."),
    (r"\.attention\.out_lin\.", ".attention.output.dense."),
    (r"\.sa_layer_norm\.", ".attention.output.LayerNorm."),
    (r"\.ffn\.lin1\.", ".intermediate.dense."),
    (r"\.ffn\.lin2\.", ".output.dense."),
    (r"\.output_layer_norm\.", ".output.LayerNorm."),
))
FAMILIES = {family.model_type: family for family in (BERT, DISTILBERT)}


def family_of(module) -> ModelFamily:
    return FAMILIES[module.config.model_type]


def model_inputs(module, input_ids, attention_mask, segment_ids) -> dict:
    """transformers' keyword arguments for this model: DistilBERT has no segment embeddings and takes none."""
    inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
    if family_of(module).segment_ids:
        inputs["token_type_ids"] = segment_ids
    return inputs


def as_bert(module):
    """(a BertConfig, the state dict in BERT's weight names) of a loaded question-answering model: what the
    packed encoder is built from, whichever family the model is."""
    from transformers import BertConfig

    family, config = family_of(module), module.config
    state_dict = module.state_dict()
    if family is BERT:
        return config, state_dict
    renamed = {}
    for key, tensor in state_dict.items():
        for pattern, replacement in family.bert_names:
            key = re.sub(pattern, replacement, key)
        renamed[key] = tensor
    bert_config = BertConfig(
        vocab_size=config.vocab_size, hidden_size=config.dim, num_hidden_layers=config.n_layers,
        num_attention_heads=config.n_heads, intermediate_size=config.hidden_dim, hidden_act=config.activation,
        max_position_embeddings=config.max_position_embeddings, type_vocab_size=0,
        layer_norm_eps=module.distilbert.embeddings.LayerNorm.eps)
    return bert_config, renamed


@dataclass(frozen=True)
class BertShape:
    """An encoder's size, for randomly initialised models (SHAPE=)."""

    name: str
    layers: int
    hidden: int
    heads: int
    intermediate: int
    family: ModelFamily = BERT

    @property
    def spec(self) -> str:
        return f"layers={self.layers},hidden={self.hidden},heads={self.heads},intermediate={self.intermediate}"


SHAPES = {shape.name: shape for shape in (
    BertShape("bert-large", 24, 1024, 16, 4096),
    BertShape("bert-base", 12, 768, 12, 3072),
    BertShape("distilbert", 6, 768, 12, 3072, DISTILBERT),  # distilbert-base-uncased's shape
    BertShape("tiny", 2, 128, 2, 512),
)}
SHAPE_KEYS = ("layers", "hidden", "heads", "intermediate")


def parse_shape(text: str) -> BertShape:
    """SHAPE=: a name (bert-large, bert-base, distilbert, tiny) or layers=L,hidden=H,heads=A[,intermediate=I]."""
    if text in SHAPES:
        return SHAPES[text]
    usage = (f"SHAPE={text} is not a shape: give one of {', '.join(SHAPES)}, or "
             "layers=L,hidden=H,heads=A[,intermediate=I] (intermediate defaults to 4 x hidden)")
    values: dict[str, int] = {}
    for part in text.split(","):
        key, separator, value = part.strip().partition("=")
        if not separator or key not in SHAPE_KEYS or key in values:
            raise HarnessError(usage)
        if not value.isdigit() or int(value) < 1:
            raise HarnessError(f"SHAPE={text}: {key} must be a whole number of at least 1, not {value!r}")
        values[key] = int(value)
    missing = [key for key in SHAPE_KEYS[:3] if key not in values]
    if missing:
        raise HarnessError(f"SHAPE={text} lacks {', '.join(missing)}; {usage}")
    if values["hidden"] % values["heads"]:
        raise HarnessError(f"SHAPE={text}: hidden ({values['hidden']}) must divide into heads ({values['heads']}) "
                           "equal parts")
    intermediate = values.get("intermediate", 4 * values["hidden"])
    name = f"bert-l{values['layers']}-h{values['hidden']}-a{values['heads']}-i{intermediate}"
    return BertShape(name, values["layers"], values["hidden"], values["heads"], intermediate)


@dataclass
class LoadedModel:
    module: object  # transformers Bert- or DistilBertForQuestionAnswering, fp32, on CPU, eval mode
    name: str  # short name used in log paths
    source: str  # the file or directory it came from, or "random:<shape>"
    is_random: bool
    onnx_path: Path | None = None  # set, with module None, when MODEL is an .onnx file


def default_model_path(build_dir: Path) -> Path:
    return build_dir / "models" / "bert-large" / "model.pytorch"


def _bert_config(path: Path):
    from transformers import BertConfig

    with open(path) as file:
        return BertConfig(**json.load(file))


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "model"


def bert_config(shape: BertShape):
    """transformers' BertConfig of this shape, BERT-Large's in everything else (vocabulary, positions)."""
    config = _bert_config(BERT_LARGE_CONFIG)
    config.num_hidden_layers, config.hidden_size = shape.layers, shape.hidden
    config.num_attention_heads, config.intermediate_size = shape.heads, shape.intermediate
    return config


def random_bert(shape: BertShape = SHAPES["bert-large"], seed: int = 0) -> LoadedModel:
    """A model of this shape and family with N(0, 0.02) weights; filled directly, three times faster than
    transformers' init."""
    import torch
    import transformers
    from transformers.initialization import no_init_weights

    config = bert_config(shape)
    if shape.family is DISTILBERT:
        config = transformers.DistilBertConfig(
            vocab_size=config.vocab_size, max_position_embeddings=config.max_position_embeddings,
            n_layers=shape.layers, dim=shape.hidden, n_heads=shape.heads, hidden_dim=shape.intermediate)
    with no_init_weights():
        module = getattr(transformers, shape.family.qa_class)(config)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in module.named_parameters():
            if parameter.dim() > 1:
                parameter.normal_(0.0, 0.02, generator=generator)
            elif name.endswith(("LayerNorm.weight", "layer_norm.weight")):
                parameter.fill_(1.0)
            else:
                parameter.zero_()
    # The source names the shape: caches keyed on it (the ONNX export) never mix two shapes.
    source = f"random:{shape.spec}" + ("" if shape.family is BERT else f",family={shape.family.model_type}")
    return LoadedModel(module.eval(), f"{shape.name}-random", source, is_random=True)


def _load_state_dict(path: Path, trust_checkpoint: bool) -> dict:
    import torch

    with path.open("rb") as file:
        magic = file.read(2)
    if magic != b"PK" and magic[:1] != b"\x80":  # torch.save writes a zip archive, or a pickle in old torch
        raise HarnessError(f"{path} is not a PyTorch checkpoint (neither a torch.save archive nor a pickle); "
                           "pass a model.pytorch file, a Hugging Face model directory, or an .onnx file")
    try:
        return torch.load(path, map_location="cpu", weights_only=not trust_checkpoint)
    except pickle.UnpicklingError as error:
        raise HarnessError(f"{path} holds more than plain tensors, so torch refuses it with weights_only=True; "
                           "if you trust the file, add TRUST_CHECKPOINT=1 (--trust-checkpoint)") from error
    except (RuntimeError, EOFError, OSError) as error:
        raise HarnessError(f"cannot read checkpoint {path} ({error}); delete it and run `make download`") from error


def _check_keys(path: Path, missing: list[str], unexpected: list[str], log, new_head: bool = False) -> None:
    """Refuse a model with randomly initialised layers; `new_head`: a base BERT's missing question-answering
    head is allowed (fine-tuning starts it from random weights)."""
    missing = [key for key in missing if not BENIGN_KEYS.search(key)]
    unexpected = [key for key in unexpected if not BENIGN_KEYS.search(key)]
    if unexpected:
        log(f"warning: {path}: {len(unexpected)} unexpected keys ignored: {', '.join(unexpected[:5])}")
    head = [key for key in missing if key.startswith("qa_outputs.")]
    if head and not new_head:
        raise HarnessError(f"{path} has no question-answering head (qa_outputs): it is a base BERT, "
                           "not a SQuAD model; use the MLPerf model.pytorch or a SQuAD fine-tuned model")
    encoder = [key for key in missing if key not in head]
    if encoder:
        raise HarnessError(f"{path} lacks {len(encoder)} encoder weights ({', '.join(encoder[:5])}): not a complete "
                           "BERT; refusing to run with randomly initialised layers")
    if head:
        log(f"{path.name}: no question-answering head, so a new one starts from random weights (as fine-tuning a "
            "pre-trained encoder on SQuAD does)")


def load_mlperf_checkpoint(path: Path, trust_checkpoint: bool = False, log=print) -> LoadedModel:
    """A state dict saved by the reference's bert_tf_to_pytorch.py, with bert_config.json beside it if present."""
    from transformers import BertForQuestionAnswering

    config_path = path.parent / "bert_config.json"
    config = _bert_config(config_path if config_path.is_file() else BERT_LARGE_CONFIG)
    check_vocabulary(config_path if config_path.is_file() else path, config.vocab_size)
    state_dict = _load_state_dict(path, trust_checkpoint)
    if not isinstance(state_dict, dict):
        raise HarnessError(f"{path} is not a state dict (found {type(state_dict).__name__})")
    module = BertForQuestionAnswering(config)
    _check_shapes(path, state_dict, module.state_dict(), config_path.is_file())
    result = module.load_state_dict(state_dict, strict=False)
    _check_keys(path, result.missing_keys, result.unexpected_keys, log)
    return LoadedModel(module.eval(), "bert-large-mlperf", str(path), is_random=False)


def _check_shapes(path: Path, state_dict: dict, expected: dict, has_config: bool) -> None:
    """A checkpoint of another size: name its first misfit and where the expected size came from."""
    misfits = [key for key, tensor in state_dict.items()
               if key in expected and getattr(tensor, "shape", None) not in (None, expected[key].shape)]
    if not misfits:
        return
    key = misfits[0]
    source = ("the bert_config.json beside it" if has_config
              else "BERT-Large's configuration, as no bert_config.json lies beside it")
    raise HarnessError(f"{path} does not fit {source}: {len(misfits)} weights differ in shape, first {key} "
                       f"({list(state_dict[key].shape)} in the file, {list(expected[key].shape)} expected); "
                       "place the model's own bert_config.json next to it")


def shipped_vocabulary() -> list[str]:
    from qsl.dataset import SHIPPED_VOCAB

    return SHIPPED_VOCAB.read_text(encoding="utf-8").splitlines()


def check_vocabulary(path: Path, vocab_size: int, directory: Path | None = None) -> None:
    """The features are word pieces of the shipped vocabulary (bert-large-uncased's): a model that reads ids
    as another vocabulary's words computes nonsense, or fails on an id past its table mid-run."""
    shipped = shipped_vocabulary()
    fix = ("the features are made with bert-large-uncased's vocabulary (qsl/data/vocab.txt), so this harness runs "
           "models trained on it (uncased BERT); pass such a MODEL=")
    if vocab_size != len(shipped):
        raise HarnessError(f"{path}: vocab_size {vocab_size}, but the features' vocabulary has {len(shipped)} word "
                           f"pieces; {fix}")
    if directory is None:
        return
    words = None
    if (directory / "vocab.txt").is_file():
        words = (directory / "vocab.txt").read_text(encoding="utf-8").splitlines()
        source = directory / "vocab.txt"
    elif (directory / "tokenizer.json").is_file():
        try:
            table = json.loads((directory / "tokenizer.json").read_text())["model"]["vocab"]
            words = sorted(table, key=table.get) if isinstance(table, dict) else None
        except (json.JSONDecodeError, KeyError, TypeError):
            words = None
        source = directory / "tokenizer.json"
    if words is not None and words != shipped:
        differing = next((index for index, (mine, theirs) in enumerate(zip(words, shipped, strict=False))
                          if mine != theirs), min(len(words), len(shipped)))
        raise HarnessError(f"{source} is another vocabulary than the features' ({len(words)} word pieces, first "
                           f"difference at id {differing}); {fix}")


def check_architecture(path: Path, config: dict) -> ModelFamily:
    """The family a config.json describes; when it is neither, say so instead of transformers' long load report."""
    model_type = config.get("model_type")
    architectures = config.get("architectures") or []
    bert_named = not architectures or any(str(name).startswith("Bert") for name in architectures)
    if model_type in FAMILIES:
        return FAMILIES[model_type]
    if model_type is None and bert_named:
        return BERT
    named = ", ".join(map(str, architectures)) or "none named"
    raise HarnessError(f"{path / 'config.json'} describes a {model_type or 'model of no model_type'} "
                       f"(architectures: {named}); supported: {', '.join(FAMILIES)} "
                       f"({', '.join(family.qa_class for family in FAMILIES.values())}, fine-tuned on SQuAD)")


def load_hf_directory(path: Path, log=print, new_head: bool = False) -> LoadedModel:
    import torch
    import transformers

    try:
        config = json.loads((path / "config.json").read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise HarnessError(f"{path / 'config.json'} is not valid JSON ({error}); copy the model directory "
                           "again, or pass another MODEL=") from error
    if not isinstance(config, dict):
        raise HarnessError(f"{path / 'config.json'} is not a model configuration (a JSON object)")
    family = check_architecture(path, config)
    check_vocabulary(path / "config.json", config.get("vocab_size", 30522), path)
    weights = [name for name in HF_WEIGHT_NAMES if (path / name).is_file()]
    if not weights:
        raise HarnessError(f"{path} has config.json but no {' or '.join(HF_WEIGHT_NAMES)}")
    try:
        module, info = getattr(transformers, family.qa_class).from_pretrained(path, dtype=torch.float32,
                                                                               output_loading_info=True)
    except Exception as error:  # noqa: BLE001 - any way transformers fails on a user's files is a bad MODEL
        reason = " ".join(line.strip() for line in str(error).splitlines()[:2])
        raise HarnessError(f"cannot load the model in {path} ({type(error).__name__}: {reason}); check its "
                           f"config.json and {weights[0]} (copy the directory again), or pass another MODEL=") \
            from error
    _check_keys(path, info["missing_keys"], info["unexpected_keys"], log, new_head)
    name = path.resolve().parent.name if path.name == "model" else path.name  # build/train/<run>/model: the run's
    return LoadedModel(module.eval(), _slug(name), str(path), is_random=False)


def load_model(model: str | None, build_dir: Path, allow_random: bool, trust_checkpoint: bool = False,
               log=print, accept_onnx: bool = False, shape: BertShape | None = None) -> LoadedModel:
    """MODEL as given, a random model of SHAPE, else the downloaded MLPerf model, else random BERT-Large if allowed."""
    if shape is not None:
        if model:
            raise HarnessError(f"give MODEL= or SHAPE=, not both: SHAPE={shape.name} makes a randomly initialised "
                               "model, MODEL= loads one")
        if not allow_random:
            raise HarnessError(f"SHAPE={shape.name} gives random weights, which an accuracy run refuses; "
                               "give MODEL=<a trained model> instead")
        kind = "DistilBERT" if shape.family is DISTILBERT else "BERT"
        log(banner(f"SHAPE={shape.name}: a RANDOMLY INITIALISED {kind}, {shape.layers} layers,",
                   f"hidden {shape.hidden}, {shape.heads} heads, intermediate {shape.intermediate}.",
                   "Results are for PERFORMANCE ONLY; accuracy is meaningless."))
        return random_bert(shape)
    if not model:
        path = default_model_path(build_dir)
        if path.is_file():
            return load_mlperf_checkpoint(path, trust_checkpoint, log)
        if not allow_random:
            raise HarnessError(f"no model: {path} does not exist and accuracy needs real weights; "
                               "run `make download` or pass MODEL=<model.pytorch or Hugging Face directory>")
        log(RANDOM_BANNER)
        return random_bert()
    check_model_path(model)
    path = Path(model).expanduser()
    if path.is_dir():
        if (path / "config.json").is_file():
            return load_hf_directory(path, log)
        for name in MLPERF_CHECKPOINT_NAMES:
            if (path / name).is_file():
                return load_mlperf_checkpoint(path / name, trust_checkpoint, log)
        raise HarnessError(f"MODEL={path} is a directory without config.json or model.pytorch")
    if path.is_file():
        if path.suffix == ".onnx":
            if not accept_onnx:
                raise HarnessError(f"MODEL={path} is an ONNX file; it needs BACKEND=onnxruntime or tensorrt")
            return LoadedModel(None, _slug(path.stem), str(path), is_random=False, onnx_path=path)
        return load_mlperf_checkpoint(path, trust_checkpoint, log)
    raise HarnessError(f"MODEL={path} is neither a file nor a directory")


def check_model_path(model: str) -> None:
    """MODEL names something that is there (checked before anything loads)."""
    path = Path(model).expanduser()
    if not path.exists():
        raise HarnessError(f"MODEL={path} does not exist; pass a model.pytorch file or a Hugging Face "
                           "model directory, or run `make download`")
