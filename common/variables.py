"""Every make variable, defined once: its flag, kind, default and help.

From this table come the Makefile's pass-through (variables.mk, generated), the flags of every command a make
target calls (`add_variables`), `make help`'s list and the reference page docs/reference/variables.md, so
none of them can drift from another. Regenerate the two files with `python -m common.variables write`;
tests/test_variables.py fails when they are stale.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MAKEFILE_INCLUDE = REPO / "variables.mk"
REFERENCE_PAGE = REPO / "docs" / "reference" / "variables.md"
RUNS = "perf accuracy"
DATA_TARGETS = "perf accuracy features scale sweep bench"
MODEL_TARGETS = "perf accuracy scale sweep bench profile train train-compare train-bench"
TRAIN_TARGETS = "train train-compare"
PRETRAIN_SWEEP = "pretrain-sweep"


@dataclass(frozen=True)
class Variable:
    name: str  # as typed after make: MAX_TOKENS=4096
    help: str  # what it is, one sentence or two: the reference page and --help both show it
    targets: str  # make targets that take it, space-separated; `sweep:list` takes a list, `submission:given`
    #              passes it only when typed (not the Makefile's own default)
    default: str = "none"  # the default, as the reader should understand it
    flag: str | None = ""  # "" for --max-tokens from MAX_TOKENS; None for a variable make itself reads
    kind: str = "value"  # value: --flag "V"; switch: V=1 gives --flag; each: --flag per word of V
    make_default: str | None = None  # the Makefile's `?=` value
    parser: dict = field(default_factory=dict)  # argparse extras for every target: choices, type, default
    notes: dict[str, str] = field(default_factory=dict)  # what it means for one target, where that differs

    @property
    def option(self) -> str:
        return self.flag or "--" + self.name.lower().replace("_", "-")

    @property
    def dest(self) -> str:
        return self.option.lstrip("-").replace("-", "_")

    def modes(self) -> dict[str, set[str]]:
        """Target -> its modifiers ({"list"}, {"given"} or none)."""
        result = {}
        for word in self.targets.split():
            target, *modifiers = word.split(":")
            result[target] = set(modifiers)
        return result


PATH = {"type": Path}
ZERO_ONE = {"choices": ("0", "1")}

VARIABLES = (
    # --- a run: make perf, make accuracy, and what drives them
    Variable("SCENARIO", "LoadGen scenario: Offline, Server, SingleStream or MultiStream.", "perf accuracy compliance",
             "Offline", make_default="Offline", parser={"default": "Offline"}),
    Variable("SCENARIOS", "The scenarios to run in order and package (make all), or to package (make submission; "
             "each must have both runs).", "all submission:list scale:list",
             "SCENARIO when given, else what configs/submission.json's system_type needs (edge: Offline "
             "SingleStream; datacenter: Offline Server); make submission: every scenario with runs; make scale: "
             "Offline",
             make_default="$(if $(filter command line environment,$(origin SCENARIO)),$(SCENARIO))",
             notes={"scale": "the scenarios to scale (Offline, Server), each at every worker count"}),
    Variable("BACKEND", "pytorch (ours: packed, no padding computed), huggingface (transformers' "
             "BertForQuestionAnswering, the yardstick), onnxruntime, openvino (CPU), tensorrt, or simulated (no "
             "model: sleeps as a device of a given speed would, for make scale without GPUs).",
             "perf accuracy compliance:given submission:given scale:given", "pytorch", make_default="pytorch",
             parser={"default": "pytorch"},
             notes={"compliance": "whose runs (default: the newest with both runs)",
                    "submission": "whose runs to package (default: the newest)"}),
    Variable("MODEL", "A model.pytorch (with bert_config.json beside it, else BERT-Large's), a Hugging Face BERT "
             "or DistilBERT directory, or for the ONNX backends an .onnx file.",
             f"{MODEL_TARGETS} compliance submission",
             "the MLPerf model from make download; without it a random BERT-Large, in a run marked as such",
             notes={"compliance": "the model name under BUILD/logs whose runs to test (default: the newest)",
                    "submission": "the model name under BUILD/logs whose runs to package (default: the newest)",
                    "train": "a Hugging Face BERT directory (with or without a SQuAD head) or model.pytorch"}),
    Variable("DEVICE", "cpu, cuda or cuda:N.", "perf accuracy scale sweep profile train train-compare train-bench "
             "pretrain-sweep",
             "the system file's (train: cuda when there is a GPU)"),
    Variable("PRECISION", "pytorch: fp32, fp16, bf16, fp8; huggingface: fp32, fp16, bf16; onnxruntime: fp32, fp16 "
             "(GPU), int8 (CPU, dynamic); openvino: fp32, bf16, int8 (CPU, NNCF); tensorrt: fp32, fp16, int8, fp8. "
             "Training: fp32, bf16, fp16.",
             "perf accuracy compliance submission scale profile train train-compare train-bench pretrain-sweep",
             "the system file's: on a CPU, bf16 where it has AMX or AVX512-BF16 and the backend runs it, else fp32 "
             "(configs/systems/cpu.json; the run's first line says which and why); training: fp32",
             notes={"compliance": "whose runs (default: the newest with both runs)",
                    "submission": "whose runs to package (default: the newest)"}),
    Variable("COUNT", "A quick, non-compliant run over the first N samples (its logs say NOT COMPLIANT); full "
             "forces compliant settings.", "perf accuracy scale sweep",
             "the system file's default_count (64 on cpu; none on GPUs)",
             notes={"scale": "samples per rank, or full"}),
    Variable("SYSTEM", "A settings file of configs/systems (cpu, gpu, h100, h200, simulated-h100) or the path of "
             "one (make sweep OPTIMAL=1 writes one).", "perf accuracy scale sweep profile",
             "detected: h100, h200, else gpu, or cpu"),
    Variable("BATCH_SIZE", "The largest batch. Training: the global batch, features per optimiser step.",
             f"{RUNS} scale {TRAIN_TARGETS} train-bench", "the system file's (training: 32)"),
    Variable("MAX_TOKENS", "Token budget per batch (batch size x its longest sample), or none.",
             f"{RUNS} scale sweep:list", "the system file's max_tokens (make sweep: none)",
             notes={"sweep": "token budgets to sweep, none for none"}),
    Variable("BACKEND_OPTIONS", "Backend settings as \"key=value ...\": pytorch compile=0|1, graphs=0|1, "
             "triton_attention=0|1, onednn=0|1; onnxruntime optimize=0|1, providers=cpu|cuda|tensorrt, "
             "intra_threads=N, inter_threads=N; tensorrt max_batch=N, workspace_gb=N; simulated "
             "samples_per_second=N (default 9100, one H100; 0 answers at once). An unknown key lists the "
             "accepted ones.", f"{RUNS} profile scale", flag="--backend-option", kind="each",
             parser={"metavar": "KEY=VALUE"}),
    Variable("WORKERS", "Ranks under torch.distributed, each running the backend on its own device (a GPU, or a "
             "share of the cores). Training: DDP ranks, or STAGES x copies of a DeepSpeed pipeline.",
             f"{RUNS} scale:list {TRAIN_TARGETS}", "1 (make scale: 1 2; training: 2; deepspeed-pipeline: STAGES)",
             notes={"scale": "the worker counts to compare"}),
    Variable("RANK0_COMPUTES", "With WORKERS: 1 lets rank 0 run a backend beside LoadGen, 0 keeps it to "
             "LoadGen and dispatch.", f"{RUNS} scale", "1", parser={**ZERO_ONE}),
    Variable("WORKER_TIMEOUT", "Seconds (above 0) a worker may take over one batch before the run ends, naming "
             "it.", f"{RUNS} scale", "300"),
    Variable("LAUNCHER", "local: make scale starts each count's ranks here; srun: as srun --ntasks N (inside "
             "SLURM).", "scale", "local", parser={"choices": ("local", "srun"), "default": "local"}),
    Variable("TRUST_CHECKPOINT", "1: load a model.pytorch that needs full unpickling (torch.load "
             "weights_only=False); only for files you trust.", f"{RUNS} compliance", "0", kind="switch"),
    Variable("TRACE", "1: LoadGen's trace log (about 270 bytes per sample); without it no trace file is left.",
             RUNS, "0", flag="--enable-trace", kind="switch"),
    Variable("REPLACE", "1: let a quick run become the newest over a compliant one (or an accuracy run over one "
             "of more samples); the earlier run is kept under earlier/ either way.", RUNS, "0",
             parser={**ZERO_ONE, "default": "0"}),
    Variable("BUILD", "Where data, models, logs and results go.", f"{RUNS} compliance features download submission "
             "scale sweep bench profile train train-compare train-bench pretrain-sweep device-check", "build",
             flag="--build-dir",
             make_default="build", parser={"type": Path, "default": Path("build")}),
    # --- data and model shapes (not the MLPerf setting)
    Variable("DATA", "squad: the dev set's features; synthetic: generated samples laid out like them "
             "(performance only).", DATA_TARGETS, "squad"),
    Variable("SEQ_LEN", "Tokens per sample, 32 to 512 (SQuAD: 68 or more); anything but 384 is not the MLPerf "
             "setting.", f"{DATA_TARGETS} {TRAIN_TARGETS} train-bench pretrain-sweep", "384"),
    Variable("DOC_STRIDE", "SQuAD's window stride.", f"{DATA_TARGETS} {TRAIN_TARGETS}",
             "SEQ_LEN // 3 (128 at 384)"),
    Variable("SAMPLES", "DATA=synthetic: how many samples.", DATA_TARGETS, "10833"),
    Variable("LENGTHS", "DATA=synthetic: squad (SQuAD dev's length distribution) or full (all SEQ_LEN).",
             DATA_TARGETS, "squad"),
    Variable("SEED", "DATA=synthetic: the generator's seed. Training: data order, dropout and new weights.",
             f"{DATA_TARGETS} {TRAIN_TARGETS} pretrain-sweep", "0"),
    Variable("SHAPE", "A randomly initialised model instead of MODEL: bert-large, bert-base, distilbert (a "
             "DistilBERT of distilbert-base's size; inference only), tiny, or "
             "layers=L,hidden=H,heads=A[,intermediate=I].",
             "perf accuracy scale sweep bench train train-compare train-bench pretrain-sweep"),
    # --- compliance and submission
    Variable("AUDIT_CONFIG", "make compliance: TEST01's audit.config (the round's own, from an mlcommons/inference "
             "checkout).", "compliance", "configs/compliance/TEST01/audit.config", parser={**PATH}),
    Variable("SHORT", "1: an SCC short submission (open division; quick runs allowed; what a full one would fail "
             "listed as warnings); 0: full closed rules, with TEST01 per scenario in make all.", "all submission",
             "1", kind="switch", make_default="1"),
    Variable("LAYOUT", "The submission tree's layout: v6 (the current round: src/, measurements.json beside "
             "results) or v5 (code/, measurements/, compliance/).", "submission", "v6", make_default="v6",
             parser={"choices": ("v6", "v5"), "default": "v6"}),
    Variable("CHECKER", "An mlcommons/inference checkout: also run its official submission checker.",
             "submission", "$MLPERF_INFERENCE_DIR", parser={**PATH}),
    Variable("SUBMITTER", "The organisation name (overrides configs/submission.json).", "submission"),
    # --- sweeps and benchmarks
    Variable("BATCH_SIZES", "make sweep: the largest batches to sweep.", "sweep:list", "1 4 16",
             parser={"default": ["1", "4", "16"]}),
    Variable("PRECISIONS", "make sweep: the precisions to sweep.", "sweep:list", "the system file's"),
    Variable("BACKENDS", "make sweep: the backends to sweep.", "sweep:list", "pytorch",
             parser={"default": ["pytorch"]}),
    Variable("MODE", "make sweep: direct (the backend over the SUT's batches, no LoadGen) or loadgen (a quick "
             "Offline and SingleStream run per point).", "sweep", "direct",
             parser={"choices": ("direct", "loadgen"), "default": "direct"}),
    Variable("NAME", "The folder of a sweep (under BUILD/sweeps) or of a training comparison (under "
             "BUILD/train/compare, BUILD/train/pretrain-sweep).", "sweep train-compare pretrain-sweep",
             "sweep: from the model, device, data and mode; "
             "train-compare: default"),
    Variable("OPTIMAL", "1: make sweep writes a system file for its best point, which make perf SYSTEM= takes.",
             "sweep", "0", kind="switch"),
    Variable("OPTIMAL_FILE", "Where make sweep OPTIMAL=1 writes that system file.", "sweep",
             "BUILD/systems/<NAME>-optimal.json", parser={**PATH}),
    Variable("UPDATE_DOCS", "1: make bench and make profile also record their tables in docs/benchmarks.md "
             "(only on a quiet machine).", "bench profile", "0", kind="switch"),
    # --- training
    Variable("TASK", "finetune (SQuAD question answering) or pretrain (masked-language-model and next-sentence "
             "heads on generated or real text, from random weights; make pretrain sets it).", "train", "finetune"),
    Variable("PARALLEL", "none (one process), ddp (a replica per worker), pipeline (a stage per rank, "
             "torch.distributed.pipelining) or deepspeed-pipeline (the same stages in DeepSpeed's pipeline engine; "
             "pip install '.[deepspeed]', in make setup).", "train", "none"),
    Variable("STAGES", "Pipeline stages, one rank each; at most the encoder's layers.", "train train-compare:list",
             "2 (train-compare: 2 4)", notes={"train-compare": "the pipeline stage counts to compare"}),
    Variable("MICROBATCHES", "Microbatches per pipeline step.", TRAIN_TARGETS, "2 x STAGES"),
    Variable("ZERO", "PARALLEL=deepspeed-pipeline: DeepSpeed's ZeRO stage, 0 or 1 (1 splits the optimiser's state "
             "over the pipeline's copies, WORKERS / STAGES of them).", "train", "0"),
    Variable("SCHEDULE", "Pipeline schedule: 1f1b or gpipe.", TRAIN_TARGETS, "1f1b"),
    Variable("STEPS", "Optimiser steps.", f"{TRAIN_TARGETS} train-bench pretrain-sweep",
             "EPOCHS epochs' worth (pretrain: 50; train-compare, train-bench: 30)"),
    Variable("EPOCHS", "Passes over the training features.", TRAIN_TARGETS, "2"),
    Variable("ACCUMULATE", "Gradient accumulation: each step in this many slices.", f"{TRAIN_TARGETS} {PRETRAIN_SWEEP}",
             "1"),
    Variable("MICRO_BATCH", "Samples per replica per slice: BATCH_SIZE becomes MICRO_BATCH x ACCUMULATE x WORKERS.",
             "train", "BATCH_SIZE / ACCUMULATE / WORKERS"),
    Variable("MAX_PREDICTIONS", "TASK=pretrain: masked word pieces per sequence, at most (15% are masked).",
             "train pretrain-sweep",
             "15% of SEQ_LEN, plus one (20 at 128)"),
    Variable("MICRO_BATCHES", "make pretrain-sweep: the micro-batch sizes to sweep.", "pretrain-sweep:list",
             "1 2 4 8"),
    Variable("STEPS_PER_LOG", "A console line (loss, its parts, samples/s, tokens/s) every N steps.",
             "train pretrain-sweep",
             "none"),
    Variable("LR", "Peak learning rate, warmed up over WARMUP then decayed linearly to 0.",
             f"{TRAIN_TARGETS} {PRETRAIN_SWEEP}", "5e-5 (pretrain: 1e-4)"),
    Variable("OPTIMIZER", "adamw, or lamb (MLPerf Training BERT's: Adam's update scaled per tensor by ||weight|| / "
             "||update||, for large batches).", f"{TRAIN_TARGETS} {PRETRAIN_SWEEP}", "adamw"),
    Variable("LOSS_SCALE", "PRECISION=fp16: dynamic, or a static loss scale (a number, 1 or more); a step whose "
             "gradients overflow is skipped either way.", f"{TRAIN_TARGETS} {PRETRAIN_SWEEP}", "dynamic"),
    Variable("WARMUP", "Fraction of the steps over which the learning rate climbs from 0.",
             f"{TRAIN_TARGETS} {PRETRAIN_SWEEP}", "0.1"),
    Variable("DROPOUT", "Dropout everywhere in the model; 0 makes configurations comparable step by step.",
             f"{TRAIN_TARGETS} {PRETRAIN_SWEEP}", "the model's own (0.1 for BERT)"),
    Variable("DATASET", "dev-split (offline: the shipped dev set's even articles train, odd ones validate), squad "
             "or squad_v2 (the hub's sets; needs internet once). TASK=pretrain: synthetic (generated), a text file "
             "(one sentence per line, a blank line between documents) or a hub corpus with a text column "
             "(name or name:config); make pretrain also takes it as DATA=.",
             f"{TRAIN_TARGETS} {PRETRAIN_SWEEP}", "dev-split (pretrain: synthetic)"),
    Variable("EVAL_EVERY", "Also validate every N steps (and at step 0).", TRAIN_TARGETS,
             "at each epoch's end and the last step"),
    Variable("VAL_QUESTIONS", "Validate on the first N validation questions.", TRAIN_TARGETS, "all"),
    Variable("CHECKPOINT_EVERY", "Steps between checkpoints (0: epoch ends only); one is also written at the end "
             "and on Ctrl-C. TASK=pretrain writes them only when asked, and on Ctrl-C.", "train", "100 (pretrain: 0)"),
    Variable("TARGET_LOSS", "The training loss whose time to reach the summary reports.", TRAIN_TARGETS, "2.0"),
    Variable("RUN", "The training run's folder under BUILD/train.", "train", "from the model and settings"),
    Variable("RESUME", "1: continue the training run from its last checkpoint, with the settings it started with.",
             "train", "0", kind="switch"),
    # --- a lent GPU
    Variable("TIME_LIMIT", "make device-check: seconds for all its steps (at least 60); the summary is written "
             "after.", "device-check", "420", parser={"type": float}),
    Variable("SMALL_MODEL", "make device-check: the small real model's directory (adds its F1 in fp32 and fp8, and "
             "the CUDA tests that need it).", "device-check", parser={**PATH}),
    Variable("CHECKS", "make device-check: comma-separated steps to run, in plan order.", "device-check", "all",
             flag="--steps"),
    Variable("PLAN", "1: make device-check prints its steps and their commands and runs nothing.", "device-check",
             "0", kind="switch"),
    # --- make itself
    Variable("PYTHON", "Use this Python as it is (an HPC module, a CUDA container): nothing is installed.",
             "all setup test", ".venv/bin/python (made on first use)", flag=None),
    Variable("TORCH_SPEC", "The torch that make setup installs into .venv.", "setup", "torch==2.13.0", flag=None,
             make_default="torch==2.13.0"),
    Variable("TEST_WORKERS", "make test: pytest processes, each taking a whole test file at a time (1: one "
             "process).", "test", "3", flag=None, make_default="3"),
)
BY_NAME = {variable.name: variable for variable in VARIABLES}


def takes(variable: Variable, target: str) -> bool:
    return target in variable.modes()


def add_variables(parser: argparse.ArgumentParser, target: str, only: tuple[str, ...] | None = None,
                  **overrides: dict) -> None:
    """The flags of every variable `target` takes (or of those of them named in `only`), with the table's help;
    `overrides` (by dest) adjusts one for this command (a default of its own, a type)."""
    for variable in VARIABLES:
        if variable.flag is None or not takes(variable, target) or (only is not None and variable.name not in only):
            continue
        modifiers = variable.modes()[target]
        text = variable.notes.get(target, variable.help)
        kwargs: dict = {"help": f"{text} (default: {variable.default})", "metavar": variable.name}
        if variable.kind == "switch":
            kwargs = {"help": kwargs["help"], "action": "store_true"}
        elif variable.kind == "each":
            kwargs.update(action="append", default=[])
        elif "list" in modifiers:
            kwargs.update(nargs="*", default=None)
        else:
            kwargs["default"] = None
        if variable.kind != "switch":
            kwargs.update(variable.parser)
            if "given" in modifiers:  # the command's own default is "whichever runs there are"
                kwargs["default"] = None
        kwargs.update(overrides.pop(variable.dest, {}))
        parser.add_argument(variable.option, **kwargs)
        if hasattr(parser, "variables"):
            parser.variables[variable.option] = variable.name
    if overrides:
        raise TypeError(f"{target} takes no variable for {sorted(overrides)}")


def pass_through(variable: Variable, target: str) -> str:
    """How make hands the variable to the command a target runs."""
    name, option, modifiers = variable.name, variable.option, variable.modes()[target]
    if variable.kind == "switch":
        words = f"$(if $(filter 1,$({name})),{option})"
    elif variable.kind == "each":
        words = f"$(foreach word,$({name}),{option} $(word))"
    elif "list" in modifiers:
        words = f"$(if $({name}),{option} $({name}))"
    else:
        words = f'$(if $({name}),{option} "$({name})")'
    if "given" in modifiers:
        words = f"$(if $(filter command line environment,$(origin {name})),{words})"
    return words


def targets() -> list[str]:
    """Targets that run a command taking flags, in the table's order of first use."""
    seen: dict[str, None] = {}
    for variable in VARIABLES:
        if variable.flag is not None:
            seen.update(dict.fromkeys(variable.modes()))
    return [target for target in seen if target != "all"]


def makefile_include() -> str:
    lines = ["# Generated from common/variables.py by `python -m common.variables write`: do not edit here.",
             "# Each target's pass-through: ARGS_<target> holds the flags of the variables it takes.", ""]
    lines += [f"{variable.name} ?= {variable.make_default}" for variable in VARIABLES
              if variable.make_default is not None]
    switches = " ".join(variable.name for variable in VARIABLES if variable.kind == "switch")
    lines += ["", f"SWITCHES = {switches}",
              "$(foreach name,$(SWITCHES),$(if $(filter-out 0 1,$($(name))),"
              "$(error $(name)=$($(name)): give 1 (on) or 0 (off))))", ""]
    for target in targets():
        words = [pass_through(variable, target) for variable in VARIABLES
                 if variable.flag is not None and takes(variable, target)]
        lines.append(f"ARGS_{target.replace('-', '_')} = " + " \\\n\t".join(words))
    lines += ["", "VARIABLE_NAMES = " + " ".join(variable.name for variable in VARIABLES), ""]
    return "\n".join(lines)


def reference_page() -> str:
    lines = ["# Make variables", "",
             "Every variable the Makefile takes, generated from `common/variables.py` (the one place they are "
             "defined; the Makefile's pass-through and every command's flags come from it too). Give them after "
             "`make` (`make perf SCENARIO=Server COUNT=64`); lists in quotes (`BATCH_SIZES=\"1 4 16\"`). The same "
             "settings as flags: `python -m harness perf --help`, and so on for each command.", "",
             "| variable | targets | default | meaning |", "| --- | --- | --- | --- |"]
    for variable in VARIABLES:
        modes = variable.modes()
        where = ", ".join(f"`{target}`" + (" (a list)" if "list" in modes[target] else "") for target in modes)
        meaning = variable.help + "".join(f" *make {target}*: {note}." for target, note in variable.notes.items())
        if variable.flag is not None:
            meaning += f" Flag: `{variable.option}`."
        lines.append(f"| `{variable.name}` | {where} | {variable.default} | {meaning.replace('|', '&#124;')} |")
    return "\n".join(lines) + "\n"


def write() -> None:
    MAKEFILE_INCLUDE.write_text(makefile_include())
    REFERENCE_PAGE.parent.mkdir(parents=True, exist_ok=True)
    REFERENCE_PAGE.write_text(reference_page())


if __name__ == "__main__":
    if sys.argv[1:] == ["write"]:
        write()
        print(f"wrote {MAKEFILE_INCLUDE.relative_to(REPO)} and {REFERENCE_PAGE.relative_to(REPO)}")
    else:
        print("usage: python -m common.variables write", file=sys.stderr)
        sys.exit(2)
