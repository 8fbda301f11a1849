# MLPerf Inference bert-99 harness. `make help` lists targets and variables.
# Without PYTHON, targets use a project venv (.venv) and create it on first use.
# With PYTHON=python3 (an HPC module, a CUDA container), that Python is used as it is: nothing is installed.

# Every variable, its default and its flag: common/variables.py, from which variables.mk is generated.
include variables.mk

ifeq ($(origin PYTHON),undefined)
PYTHON := .venv/bin/python
ENV    := .venv/.installed
else
ENV    :=
endif

.PHONY: help all setup features perf accuracy compliance submission download sweep scale bench profile train pretrain pretrain-sweep train-compare train-bench device-check test test-fast mutation lint docs clean distclean

help:
	@echo "bert99-harness, MLPerf Inference bert-99 (SQuAD v1.1). Guides: docs/ (make docs builds the site in $(BUILD)/site)"
	@echo "Run:      make perf SCENARIO=Offline|Server|SingleStream|MultiStream, make accuracy (MODEL= PRECISION= COUNT=)"
	@echo "Submit:   make all (accuracy + perf per scenario [+ compliance if SHORT=0], then submission),"
	@echo "          make compliance (TEST01), make submission (SHORT=1: SCC short; SHORT=0: closed)"
	@echo "Set up:   make setup, make download, make features"
	@echo "Measure:  make bench, make profile, make sweep, make scale, make device-check (a lent GPU)"
	@echo "Train:    make train, make pretrain, make pretrain-sweep, make train-compare, make train-bench"
	@echo "Check:    make test, make test-fast, make mutation, make lint, make docs; make clean, make distclean"
	@echo "Variables (each one's targets, default and meaning: docs/reference/variables.md):"
	@echo "$(VARIABLE_NAMES)" | fold -s -w 100 | sed 's/^/  /'
	@echo "Flags of each command: $(PYTHON) -m harness perf --help, python -m submission --help, python -m train --help"

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
	PYTHONWARNINGS="ignore:Editable installation" .venv/bin/python -m pip install --quiet -e ".[test,onnx,openvino,deepspeed]"
	@# DeepSpeed compiles its CPU communication kernel on first use (a minute): once here, not in the first run
	.venv/bin/python -m train.deepspeed_kernels
	touch $@
else
	@mkdir -p .venv
	@$(if $(shell command -v flock),flock .venv/.setup.lock) $(MAKE) --no-print-directory SETUP_LOCKED=1 $@
endif

features: $(ENV)
	$(PYTHON) -m harness features $(ARGS_features)

perf: $(ENV)
	$(PYTHON) -m harness perf $(ARGS_perf)

accuracy: $(ENV)
	$(PYTHON) -m harness accuracy $(ARGS_accuracy)

compliance: $(ENV)
	$(PYTHON) -m harness compliance $(ARGS_compliance)

submission: $(ENV)
	$(PYTHON) -m submission $(ARGS_submission)

download: $(ENV)
	$(PYTHON) -m harness download $(ARGS_download)

# Offline at each worker count of WORKERS="1 2 4 8" and its scaling efficiency (benchmarks/scale.py).
scale: $(ENV)
	$(PYTHON) -m benchmarks.scale $(ARGS_scale)

# A grid of batch sizes x token budgets x precisions x backends (benchmarks/sweep/); lists in quotes.
sweep: $(ENV)
	$(PYTHON) -m benchmarks.sweep $(ARGS_sweep)

bench: $(ENV)
	$(PYTHON) -m benchmarks.bench $(ARGS_bench)

profile: $(ENV)
	$(PYTHON) -m benchmarks.batch_profile $(ARGS_profile)

# Fine-tune a BERT question-answering model (train/): metrics, checkpoints and the model under $(BUILD)/train/<run>/.
train: $(ENV)
	$(PYTHON) -m train $(ARGS_train)

# Pre-train a randomly initialised BERT of SHAPE (MLM + NSP heads) on DATASET (synthetic by default): throughput
# and losses step by step under $(BUILD)/train/<run>/ (train/pretrain.py). DATA= is taken as DATASET= here, as
# pre-training recipes name it (DATA=synthetic, DATA=corpus.txt); DATASET= wins where both are given.
pretrain: $(ENV)
	$(PYTHON) -m train --task pretrain $(if $(DATA),--dataset "$(DATA)") $(ARGS_train)

# Pre-training throughput over MICRO_BATCHES, one make pretrain run each (benchmarks/pretrain_sweep.py).
pretrain-sweep: $(ENV)
	$(PYTHON) -m benchmarks.pretrain_sweep $(ARGS_pretrain_sweep)

# The same training on one worker, DDP over WORKERS and pipelines of STAGES (benchmarks/train_compare.py).
train-compare: $(ENV)
	$(PYTHON) -m benchmarks.train_compare $(ARGS_train_compare)

# Our training loop against Hugging Face's Trainer, same features and batch (benchmarks/train_trainer.py).
train-bench: $(ENV)
	$(PYTHON) -m benchmarks.train_trainer $(ARGS_train_bench)

# Every GPU measurement in one run that stops at TIME_LIMIT seconds, for a lent GPU (benchmarks/device_check.py).
device-check: $(ENV)
	$(PYTHON) -m benchmarks.device_check $(ARGS_device_check)

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

# The documentation site (MkDocs + Material, mkdocs.yml): broken links and pages missing from it fail the build.
docs: $(ENV)
	NO_MKDOCS_2_WARNING=1 $(PYTHON) -m mkdocs build --strict --quiet --site-dir "$(BUILD)/site"

clean:
	rm -rf "$(BUILD)/logs" "$(BUILD)/submission" "$(BUILD)/data/squad_features.npz"

distclean:
	rm -rf "$(BUILD)" .venv
