# MLPerf Inference bert-99 harness. `make help` lists targets and variables.
# Without PYTHON, targets use a project venv (.venv) and create it on first use.
# With PYTHON=python3 (an HPC module, a CUDA container), that Python is used as it is: nothing is installed.

SCENARIO   ?= Offline
# make all: these scenarios; default SCENARIO when given, else those configs/submission.json's system_type needs
SCENARIOS  ?= $(if $(filter command line environment,$(origin SCENARIO)),$(SCENARIO))
BACKEND    ?= pytorch
MODEL      ?=
DEVICE     ?=
PRECISION  ?=
COUNT      ?=
SYSTEM     ?=
BATCH_SIZE ?=
MAX_TOKENS ?=
BACKEND_OPTIONS ?=
BUILD      ?= build
TEST_WORKERS ?= 3
TORCH_SPEC ?= torch==2.13.0
SHORT      ?= 1
LAYOUT     ?= v6
CHECKER    ?=
AUDIT_CONFIG ?=
DATA       ?=
SEQ_LEN    ?=
DOC_STRIDE ?=
SAMPLES    ?=
LENGTHS    ?=
SEED       ?=
SHAPE      ?=
WORKERS    ?=
RANK0_COMPUTES ?=
WORKER_TIMEOUT ?=
# make train / train-compare (train/): PARALLEL STAGES MICROBATCHES SCHEDULE STEPS EPOCHS ACCUMULATE LR WARMUP DROPOUT
# DATASET EVAL_EVERY VAL_QUESTIONS CHECKPOINT_EVERY TARGET_LOSS RUN RESUME, with MODEL SHAPE WORKERS PRECISION DEVICE
# BATCH_SIZE SEED SEQ_LEN DOC_STRIDE

ifeq ($(origin PYTHON),undefined)
PYTHON := .venv/bin/python
ENV    := .venv/.installed
else
ENV    :=
endif

DATA_ARGS = $(if $(DATA),--data $(DATA)) $(if $(SEQ_LEN),--seq-len $(SEQ_LEN)) \
	$(if $(DOC_STRIDE),--doc-stride $(DOC_STRIDE)) $(if $(SAMPLES),--samples $(SAMPLES)) \
	$(if $(LENGTHS),--lengths $(LENGTHS)) $(if $(SEED),--seed $(SEED))

RUN_ARGS = $(DATA_ARGS) $(if $(SHAPE),--shape "$(SHAPE)") --scenario $(SCENARIO) --backend $(BACKEND) --build-dir "$(BUILD)" \
	$(if $(MODEL),--model "$(MODEL)") $(if $(DEVICE),--device $(DEVICE)) \
	$(if $(PRECISION),--precision $(PRECISION)) $(if $(COUNT),--count $(COUNT)) \
	$(if $(SYSTEM),--system $(SYSTEM)) $(if $(BATCH_SIZE),--batch-size $(BATCH_SIZE)) \
	$(if $(MAX_TOKENS),--max-tokens $(MAX_TOKENS)) $(if $(WORKERS),--workers $(WORKERS)) \
	$(if $(RANK0_COMPUTES),--rank0-computes $(RANK0_COMPUTES)) $(if $(WORKER_TIMEOUT),--worker-timeout $(WORKER_TIMEOUT)) \
	$(if $(TRUST_CHECKPOINT),--trust-checkpoint) $(if $(TRACE),--enable-trace) $(if $(REPLACE),--replace $(REPLACE)) \
	$(foreach option,$(BACKEND_OPTIONS),--backend-option $(option))

TRAIN_OPTIONS = model shape dataset precision device steps epochs batch_size accumulate lr warmup dropout seed seq_len \
	doc_stride eval_every val_questions microbatches schedule target_loss
TRAIN_ARGS = --build-dir "$(BUILD)" $(foreach option,$(TRAIN_OPTIONS),$(if $($(call upper,$(option))),--$(subst _,-,$(option)) "$($(call upper,$(option)))"))
upper = $(shell echo $(1) | tr a-z A-Z)

.PHONY: help all setup features perf accuracy compliance submission download sweep scale bench profile train train-compare train-bench device-check test test-fast mutation lint clean distclean

help:
	@echo "Targets: all setup features perf accuracy compliance submission download sweep scale bench profile train"
	@echo "         train-compare train-bench device-check test"
	@echo "         test-fast mutation lint clean distclean"
	@echo "One command to a submission: make all (accuracy + perf [+ compliance if SHORT=0] per scenario, then"
	@echo "           submission; SCENARIOS=\"Offline Server\", default: what configs/submission.json's system_type needs)"
	@echo "Variables: SCENARIO=$(SCENARIO) BACKEND=$(BACKEND) MODEL= DEVICE= PRECISION= COUNT= SYSTEM= BATCH_SIZE= MAX_TOKENS="
	@echo "           BACKEND_OPTIONS=\"key=value ...\" (backend settings, e.g. optimize=0 or providers=tensorrt)"
	@echo "           BUILD=$(BUILD) PYTHON= TORCH_SPEC=$(TORCH_SPEC) TRUST_CHECKPOINT=1 TRACE=1 REPLACE=1 (a quick run"
	@echo "           over a compliant one; earlier runs are always kept under <scenario>/earlier/)"
	@echo "Many devices: WORKERS=N (ranks under torch.distributed: one per GPU, or sharing the cores; srun across"
	@echo "           nodes: slurm/) RANK0_COMPUTES=0|1 WORKER_TIMEOUT=s; make scale WORKERS=\"1 2 4 8\""
	@echo "Other data and models (not the MLPerf setting): DATA=squad|synthetic SEQ_LEN=32..512 DOC_STRIDE="
	@echo "           SAMPLES= LENGTHS=squad|full SEED= (DATA=synthetic), SHAPE=bert-base|distilbert|tiny|layers=L,hidden=H,heads=A"
	@echo "Compliance: make compliance SCENARIO=... (TEST01; AUDIT_CONFIG=<the round's audit.config> BACKEND= PRECISION=)"
	@echo "Submission: SHORT=$(SHORT) LAYOUT=$(LAYOUT) CHECKER=<mlcommons/inference checkout> SUBMITTER= BACKEND= PRECISION="
	@echo "           SCENARIOS=\"Offline ...\" (default: every scenario with runs; SHORT=0 needs the system type's)"
	@echo "Benchmarks: make bench, make profile (tables in $(BUILD)/bench/; UPDATE_DOCS=1 also into docs/benchmarks.md)"
	@echo "Sweeps: make sweep BATCH_SIZES=\"1 4 16\" MAX_TOKENS=\"none 4096\" PRECISIONS= BACKENDS= MODE=direct|loadgen"
	@echo "           NAME= OPTIMAL=1 OPTIMAL_FILE= (rows, plots and the optimal system file in $(BUILD)/sweeps/<name>/)"
	@echo "Training: make train MODEL=<BERT dir>|SHAPE= PARALLEL=none|ddp|pipeline WORKERS= STAGES= MICROBATCHES="
	@echo "           SCHEDULE=1f1b|gpipe PRECISION=fp32|bf16|fp16 STEPS=|EPOCHS= BATCH_SIZE= ACCUMULATE= LR= WARMUP= DROPOUT="
	@echo "           DATASET=dev-split|squad|squad_v2 EVAL_EVERY= VAL_QUESTIONS= CHECKPOINT_EVERY= TARGET_LOSS= RUN= RESUME=1"
	@echo "           make train-compare (baseline, DDP over WORKERS, pipelines of STAGES=\"2 4\"; NAME=)"
	@echo "           make train-bench (ours against Hugging Face's Trainer; needs pip install accelerate)"
	@echo "Tests: make test TEST_WORKERS=3 (pytest processes; 1: one), make test-fast (no slow tests), make mutation"
	@echo "GPU check: make device-check PYTHON=python3 TIME_LIMIT=420 SMALL_MODEL=<dir> CHECKS=a,b PLAN=1 (benchmarks/device_check.py)"
	@echo "Details: README.md, or $(PYTHON) -m harness perf --help, $(PYTHON) -m train --help"

# From nothing to a packaged submission: per scenario an accuracy run (first: it is short, and refuses a missing
# model before a 10-minute performance run), a performance run and, for a full (SHORT=0, closed) submission,
# TEST01; then the submission. Stops at the first step that fails.
all: $(ENV)
	@scenarios="$(SCENARIOS)"; \
	[ -n "$$scenarios" ] || scenarios=$$($(PYTHON) -m submission --required-scenarios) || exit 2; \
	for scenario in $$scenarios; do \
		for step in accuracy perf $(if $(filter 1,$(SHORT)),,compliance); do \
			echo "=== make $$step SCENARIO=$$scenario"; \
			$(MAKE) --no-print-directory $$step SCENARIO=$$scenario || exit $$?; \
		done; \
	done; \
	echo "=== make submission SCENARIOS=\"$$scenarios\""; \
	$(MAKE) --no-print-directory submission SCENARIOS="$$scenarios"

setup: .venv/.installed

# Jobs started together on a fresh checkout (a SLURM array) would each build .venv at once and break it:
# the first takes a lock and builds it; the others wait, then find it built. Without flock, no lock.
.venv/.installed: pyproject.toml
ifeq ($(SETUP_LOCKED),1)
	python3 -m venv .venv
	.venv/bin/python -m pip install --quiet --upgrade pip
	.venv/bin/python -m pip install --quiet "$(TORCH_SPEC)"
	@# setuptools notes every editable install ("Editable installation.") as a warning: not one of ours
	PYTHONWARNINGS="ignore:Editable installation" .venv/bin/python -m pip install --quiet -e ".[test,onnx]"
	touch $@
else
	@mkdir -p .venv
	@$(if $(shell command -v flock),flock .venv/.setup.lock) $(MAKE) --no-print-directory SETUP_LOCKED=1 $@
endif

features: $(ENV)
	$(PYTHON) -m harness features --build-dir "$(BUILD)" $(DATA_ARGS)

perf: $(ENV)
	$(PYTHON) -m harness perf $(RUN_ARGS)

accuracy: $(ENV)
	$(PYTHON) -m harness accuracy $(RUN_ARGS)

compliance: $(ENV)
	$(PYTHON) -m harness compliance --scenario $(SCENARIO) --build-dir "$(BUILD)" \
		$(if $(AUDIT_CONFIG),--audit-config "$(AUDIT_CONFIG)") $(if $(TRUST_CHECKPOINT),--trust-checkpoint) \
		$(if $(filter command line environment,$(origin BACKEND)),--backend $(BACKEND)) $(if $(PRECISION),--precision $(PRECISION))

submission: $(ENV)
	$(PYTHON) -m submission --build-dir "$(BUILD)" --layout $(LAYOUT) $(if $(filter 1,$(SHORT)),--short) \
		$(if $(SCENARIOS),--scenarios $(SCENARIOS)) \
		$(if $(CHECKER),--checker "$(CHECKER)") $(if $(SUBMITTER),--submitter "$(SUBMITTER)") \
		$(if $(filter command line environment,$(origin BACKEND)),--backend $(BACKEND)) $(if $(PRECISION),--precision $(PRECISION))

download: $(ENV)
	$(PYTHON) -m harness download --build-dir "$(BUILD)"

# Offline at each worker count of WORKERS="1 2 4 8" and its scaling efficiency (benchmarks/scale.py).
scale: $(ENV)
	$(PYTHON) -m benchmarks.scale --build-dir "$(BUILD)" --workers $(or $(WORKERS),1 2) $(DATA_ARGS) \
		$(if $(SHAPE),--shape "$(SHAPE)") $(if $(MODEL),--model "$(MODEL)") $(if $(DEVICE),--device $(DEVICE)) \
		$(if $(PRECISION),--precision $(PRECISION)) $(if $(SYSTEM),--system $(SYSTEM)) $(if $(COUNT),--count $(COUNT)) \
		$(if $(filter command line environment,$(origin BACKEND)),--backend $(BACKEND)) \
		$(if $(LAUNCHER),--launcher $(LAUNCHER)) $(if $(RANK0_COMPUTES),--rank0-computes $(RANK0_COMPUTES))

# A grid of batch sizes x token budgets x precisions x backends (benchmarks/sweep.py); lists in quotes.
sweep: $(ENV)
	$(PYTHON) -m benchmarks.sweep --build-dir "$(BUILD)" $(DATA_ARGS) $(if $(SHAPE),--shape "$(SHAPE)") \
		$(if $(MODEL),--model "$(MODEL)") $(if $(DEVICE),--device $(DEVICE)) $(if $(SYSTEM),--system $(SYSTEM)) \
		$(if $(COUNT),--count $(COUNT)) $(if $(MODE),--mode $(MODE)) $(if $(NAME),--name "$(NAME)") \
		$(if $(filter command line environment,$(origin BATCH_SIZES)),--batch-sizes $(BATCH_SIZES)) \
		$(if $(filter command line environment,$(origin PRECISIONS)),--precisions $(PRECISIONS)) \
		$(if $(filter command line environment,$(origin BACKENDS)),--backends $(BACKENDS)) \
		$(if $(filter command line environment,$(origin MAX_TOKENS)),--max-tokens $(MAX_TOKENS)) \
		$(if $(filter 1,$(OPTIMAL)),--optimal) $(if $(OPTIMAL_FILE),--optimal-file "$(OPTIMAL_FILE)")

bench: $(ENV)
	$(PYTHON) -m benchmarks.bench --build-dir "$(BUILD)" $(if $(MODEL),--model "$(MODEL)") $(if $(filter 1,$(UPDATE_DOCS)),--update-docs)

profile: $(ENV)
	$(PYTHON) -m benchmarks.batch_profile --build-dir "$(BUILD)" $(if $(filter 1,$(UPDATE_DOCS)),--update-docs) $(if $(MODEL),--model "$(MODEL)") \
		$(if $(DEVICE),--device $(DEVICE)) $(if $(PRECISION),--precision $(PRECISION)) $(if $(SYSTEM),--system $(SYSTEM)) \
		$(foreach option,$(BACKEND_OPTIONS),--backend-option $(option))

# Fine-tune a BERT question-answering model (train/): metrics, checkpoints and the model under $(BUILD)/train/<run>/.
train: $(ENV)
	$(PYTHON) -m train $(TRAIN_ARGS) $(if $(PARALLEL),--parallel $(PARALLEL)) $(if $(WORKERS),--workers $(WORKERS)) \
		$(if $(STAGES),--stages $(STAGES)) $(if $(CHECKPOINT_EVERY),--checkpoint-every $(CHECKPOINT_EVERY)) \
		$(if $(RUN),--run "$(RUN)") $(if $(filter 1,$(RESUME)),--resume)

# The same training on one worker, DDP over WORKERS and pipelines of STAGES (benchmarks/train_compare.py).
train-compare: $(ENV)
	$(PYTHON) -m benchmarks.train_compare $(TRAIN_ARGS) $(if $(WORKERS),--workers $(WORKERS)) \
		$(if $(STAGES),--stages $(STAGES)) $(if $(NAME),--name "$(NAME)")

# Our training loop against Hugging Face's Trainer, same features and batch (benchmarks/train_trainer.py).
train-bench: $(ENV)
	$(PYTHON) -m benchmarks.train_trainer --build-dir "$(BUILD)" $(if $(MODEL),--model "$(MODEL)") $(if $(SHAPE),--shape $(SHAPE)) \
		$(if $(STEPS),--steps $(STEPS)) $(if $(BATCH_SIZE),--batch-size $(BATCH_SIZE)) $(if $(PRECISION),--precision $(PRECISION)) \
		$(if $(DEVICE),--device $(DEVICE)) $(if $(SEQ_LEN),--seq-len $(SEQ_LEN))

# Every GPU measurement in one run that stops at TIME_LIMIT seconds, for a lent GPU (benchmarks/device_check.py).
device-check: $(ENV)
	$(PYTHON) -m benchmarks.device_check --build-dir "$(BUILD)" $(if $(TIME_LIMIT),--time-limit $(TIME_LIMIT)) \
		$(if $(SMALL_MODEL),--small-model "$(SMALL_MODEL)") $(if $(CHECKS),--steps $(CHECKS)) $(if $(filter 1,$(PLAN)),--plan)

# Three pytest workers (pytest-xdist, a test file each at a time) where it is installed: many tests wait on
# subprocesses and LoadGen's schedule, so three keep 2 cores busier than two (12.5 minutes against 13.75 on
# 2 cores, 2026-12-02). TEST_WORKERS=1 runs the suite in one process.
test: $(ENV)
	$(PYTHON) -m pytest -q $(if $(filter-out 1,$(TEST_WORKERS)),$(if $(shell $(PYTHON) -c "import xdist" 2>/dev/null \
		&& echo yes),-n $(TEST_WORKERS) --dist loadfile))

test-fast: $(ENV)
	$(PYTHON) -m pytest -q -m "not slow"

# Mutation testing of the scoring modules ([tool.mutmut] in pyproject.toml; mutmut installed on first use),
# then the hand-made mutations of the rules the suite once let break (tests/mutations.py).
mutation: $(ENV)
	$(PYTHON) -c "import mutmut" 2>/dev/null || $(PYTHON) -m pip install --quiet "mutmut>=3.3"
	rm -rf mutants && $(PYTHON) -m mutmut run --max-children 2; $(PYTHON) -m mutmut results
	$(PYTHON) -m tests.mutations

lint: $(ENV)
	$(PYTHON) -m ruff check .

clean:
	rm -rf "$(BUILD)/logs" "$(BUILD)/submission" "$(BUILD)/data/squad_features.npz"

distclean:
	rm -rf "$(BUILD)" .venv
