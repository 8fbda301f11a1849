# Generated from common/variables.py by `python -m common.variables write`: do not edit here.
# Each target's pass-through: ARGS_<target> holds the flags of the variables it takes.

SCENARIO ?= Offline
SCENARIOS ?= $(if $(filter command line environment,$(origin SCENARIO)),$(SCENARIO))
BACKEND ?= pytorch
BUILD ?= build
SHORT ?= 1
LAYOUT ?= v6
TORCH_SPEC ?= torch==2.13.0
TEST_WORKERS ?= 3

SWITCHES = TRUST_CHECKPOINT TRACE SHORT OPTIMAL UPDATE_DOCS RESUME PLAN
$(foreach name,$(SWITCHES),$(if $(filter-out 0 1,$($(name))),$(error $(name)=$($(name)): give 1 (on) or 0 (off))))

ARGS_perf = $(if $(SCENARIO),--scenario "$(SCENARIO)") \
	$(if $(BACKEND),--backend "$(BACKEND)") \
	$(if $(MODEL),--model "$(MODEL)") \
	$(if $(DEVICE),--device "$(DEVICE)") \
	$(if $(PRECISION),--precision "$(PRECISION)") \
	$(if $(COUNT),--count "$(COUNT)") \
	$(if $(SYSTEM),--system "$(SYSTEM)") \
	$(if $(BATCH_SIZE),--batch-size "$(BATCH_SIZE)") \
	$(if $(MAX_TOKENS),--max-tokens "$(MAX_TOKENS)") \
	$(foreach word,$(BACKEND_OPTIONS),--backend-option $(word)) \
	$(if $(WORKERS),--workers "$(WORKERS)") \
	$(if $(RANK0_COMPUTES),--rank0-computes "$(RANK0_COMPUTES)") \
	$(if $(WORKER_TIMEOUT),--worker-timeout "$(WORKER_TIMEOUT)") \
	$(if $(filter 1,$(TRUST_CHECKPOINT)),--trust-checkpoint) \
	$(if $(filter 1,$(TRACE)),--enable-trace) \
	$(if $(REPLACE),--replace "$(REPLACE)") \
	$(if $(BUILD),--build-dir "$(BUILD)") \
	$(if $(DATA),--data "$(DATA)") \
	$(if $(SEQ_LEN),--seq-len "$(SEQ_LEN)") \
	$(if $(DOC_STRIDE),--doc-stride "$(DOC_STRIDE)") \
	$(if $(SAMPLES),--samples "$(SAMPLES)") \
	$(if $(LENGTHS),--lengths "$(LENGTHS)") \
	$(if $(SEED),--seed "$(SEED)") \
	$(if $(SHAPE),--shape "$(SHAPE)")
ARGS_accuracy = $(if $(SCENARIO),--scenario "$(SCENARIO)") \
	$(if $(BACKEND),--backend "$(BACKEND)") \
	$(if $(MODEL),--model "$(MODEL)") \
	$(if $(DEVICE),--device "$(DEVICE)") \
	$(if $(PRECISION),--precision "$(PRECISION)") \
	$(if $(COUNT),--count "$(COUNT)") \
	$(if $(SYSTEM),--system "$(SYSTEM)") \
	$(if $(BATCH_SIZE),--batch-size "$(BATCH_SIZE)") \
	$(if $(MAX_TOKENS),--max-tokens "$(MAX_TOKENS)") \
	$(foreach word,$(BACKEND_OPTIONS),--backend-option $(word)) \
	$(if $(WORKERS),--workers "$(WORKERS)") \
	$(if $(RANK0_COMPUTES),--rank0-computes "$(RANK0_COMPUTES)") \
	$(if $(WORKER_TIMEOUT),--worker-timeout "$(WORKER_TIMEOUT)") \
	$(if $(filter 1,$(TRUST_CHECKPOINT)),--trust-checkpoint) \
	$(if $(filter 1,$(TRACE)),--enable-trace) \
	$(if $(REPLACE),--replace "$(REPLACE)") \
	$(if $(BUILD),--build-dir "$(BUILD)") \
	$(if $(DATA),--data "$(DATA)") \
	$(if $(SEQ_LEN),--seq-len "$(SEQ_LEN)") \
	$(if $(DOC_STRIDE),--doc-stride "$(DOC_STRIDE)") \
	$(if $(SAMPLES),--samples "$(SAMPLES)") \
	$(if $(LENGTHS),--lengths "$(LENGTHS)") \
	$(if $(SEED),--seed "$(SEED)") \
	$(if $(SHAPE),--shape "$(SHAPE)")
ARGS_compliance = $(if $(SCENARIO),--scenario "$(SCENARIO)") \
	$(if $(filter command line environment,$(origin BACKEND)),$(if $(BACKEND),--backend "$(BACKEND)")) \
	$(if $(MODEL),--model "$(MODEL)") \
	$(if $(PRECISION),--precision "$(PRECISION)") \
	$(if $(filter 1,$(TRUST_CHECKPOINT)),--trust-checkpoint) \
	$(if $(BUILD),--build-dir "$(BUILD)") \
	$(if $(AUDIT_CONFIG),--audit-config "$(AUDIT_CONFIG)")
ARGS_submission = $(if $(SCENARIOS),--scenarios $(SCENARIOS)) \
	$(if $(filter command line environment,$(origin BACKEND)),$(if $(BACKEND),--backend "$(BACKEND)")) \
	$(if $(MODEL),--model "$(MODEL)") \
	$(if $(PRECISION),--precision "$(PRECISION)") \
	$(if $(BUILD),--build-dir "$(BUILD)") \
	$(if $(filter 1,$(SHORT)),--short) \
	$(if $(LAYOUT),--layout "$(LAYOUT)") \
	$(if $(CHECKER),--checker "$(CHECKER)") \
	$(if $(SUBMITTER),--submitter "$(SUBMITTER)")
ARGS_scale = $(if $(SCENARIOS),--scenarios $(SCENARIOS)) \
	$(if $(filter command line environment,$(origin BACKEND)),$(if $(BACKEND),--backend "$(BACKEND)")) \
	$(if $(MODEL),--model "$(MODEL)") \
	$(if $(DEVICE),--device "$(DEVICE)") \
	$(if $(PRECISION),--precision "$(PRECISION)") \
	$(if $(COUNT),--count "$(COUNT)") \
	$(if $(SYSTEM),--system "$(SYSTEM)") \
	$(if $(BATCH_SIZE),--batch-size "$(BATCH_SIZE)") \
	$(if $(MAX_TOKENS),--max-tokens "$(MAX_TOKENS)") \
	$(foreach word,$(BACKEND_OPTIONS),--backend-option $(word)) \
	$(if $(WORKERS),--workers $(WORKERS)) \
	$(if $(RANK0_COMPUTES),--rank0-computes "$(RANK0_COMPUTES)") \
	$(if $(WORKER_TIMEOUT),--worker-timeout "$(WORKER_TIMEOUT)") \
	$(if $(LAUNCHER),--launcher "$(LAUNCHER)") \
	$(if $(BUILD),--build-dir "$(BUILD)") \
	$(if $(DATA),--data "$(DATA)") \
	$(if $(SEQ_LEN),--seq-len "$(SEQ_LEN)") \
	$(if $(DOC_STRIDE),--doc-stride "$(DOC_STRIDE)") \
	$(if $(SAMPLES),--samples "$(SAMPLES)") \
	$(if $(LENGTHS),--lengths "$(LENGTHS)") \
	$(if $(SEED),--seed "$(SEED)") \
	$(if $(SHAPE),--shape "$(SHAPE)")
ARGS_sweep = $(if $(MODEL),--model "$(MODEL)") \
	$(if $(DEVICE),--device "$(DEVICE)") \
	$(if $(COUNT),--count "$(COUNT)") \
	$(if $(SYSTEM),--system "$(SYSTEM)") \
	$(if $(MAX_TOKENS),--max-tokens $(MAX_TOKENS)) \
	$(if $(BUILD),--build-dir "$(BUILD)") \
	$(if $(DATA),--data "$(DATA)") \
	$(if $(SEQ_LEN),--seq-len "$(SEQ_LEN)") \
	$(if $(DOC_STRIDE),--doc-stride "$(DOC_STRIDE)") \
	$(if $(SAMPLES),--samples "$(SAMPLES)") \
	$(if $(LENGTHS),--lengths "$(LENGTHS)") \
	$(if $(SEED),--seed "$(SEED)") \
	$(if $(SHAPE),--shape "$(SHAPE)") \
	$(if $(BATCH_SIZES),--batch-sizes $(BATCH_SIZES)) \
	$(if $(PRECISIONS),--precisions $(PRECISIONS)) \
	$(if $(BACKENDS),--backends $(BACKENDS)) \
	$(if $(MODE),--mode "$(MODE)") \
	$(if $(NAME),--name "$(NAME)") \
	$(if $(filter 1,$(OPTIMAL)),--optimal) \
	$(if $(OPTIMAL_FILE),--optimal-file "$(OPTIMAL_FILE)")
ARGS_bench = $(if $(MODEL),--model "$(MODEL)") \
	$(if $(BUILD),--build-dir "$(BUILD)") \
	$(if $(DATA),--data "$(DATA)") \
	$(if $(SEQ_LEN),--seq-len "$(SEQ_LEN)") \
	$(if $(DOC_STRIDE),--doc-stride "$(DOC_STRIDE)") \
	$(if $(SAMPLES),--samples "$(SAMPLES)") \
	$(if $(LENGTHS),--lengths "$(LENGTHS)") \
	$(if $(SEED),--seed "$(SEED)") \
	$(if $(SHAPE),--shape "$(SHAPE)") \
	$(if $(filter 1,$(UPDATE_DOCS)),--update-docs)
ARGS_profile = $(if $(MODEL),--model "$(MODEL)") \
	$(if $(DEVICE),--device "$(DEVICE)") \
	$(if $(PRECISION),--precision "$(PRECISION)") \
	$(if $(SYSTEM),--system "$(SYSTEM)") \
	$(foreach word,$(BACKEND_OPTIONS),--backend-option $(word)) \
	$(if $(BUILD),--build-dir "$(BUILD)") \
	$(if $(filter 1,$(UPDATE_DOCS)),--update-docs)
ARGS_train = $(if $(MODEL),--model "$(MODEL)") \
	$(if $(DEVICE),--device "$(DEVICE)") \
	$(if $(PRECISION),--precision "$(PRECISION)") \
	$(if $(BATCH_SIZE),--batch-size "$(BATCH_SIZE)") \
	$(if $(WORKERS),--workers "$(WORKERS)") \
	$(if $(BUILD),--build-dir "$(BUILD)") \
	$(if $(SEQ_LEN),--seq-len "$(SEQ_LEN)") \
	$(if $(DOC_STRIDE),--doc-stride "$(DOC_STRIDE)") \
	$(if $(SEED),--seed "$(SEED)") \
	$(if $(SHAPE),--shape "$(SHAPE)") \
	$(if $(TASK),--task "$(TASK)") \
	$(if $(PARALLEL),--parallel "$(PARALLEL)") \
	$(if $(STAGES),--stages "$(STAGES)") \
	$(if $(MICROBATCHES),--microbatches "$(MICROBATCHES)") \
	$(if $(ZERO),--zero "$(ZERO)") \
	$(if $(SCHEDULE),--schedule "$(SCHEDULE)") \
	$(if $(STEPS),--steps "$(STEPS)") \
	$(if $(EPOCHS),--epochs "$(EPOCHS)") \
	$(if $(ACCUMULATE),--accumulate "$(ACCUMULATE)") \
	$(if $(MICRO_BATCH),--micro-batch "$(MICRO_BATCH)") \
	$(if $(MAX_PREDICTIONS),--max-predictions "$(MAX_PREDICTIONS)") \
	$(if $(STEPS_PER_LOG),--steps-per-log "$(STEPS_PER_LOG)") \
	$(if $(LR),--lr "$(LR)") \
	$(if $(OPTIMIZER),--optimizer "$(OPTIMIZER)") \
	$(if $(LOSS_SCALE),--loss-scale "$(LOSS_SCALE)") \
	$(if $(WARMUP),--warmup "$(WARMUP)") \
	$(if $(DROPOUT),--dropout "$(DROPOUT)") \
	$(if $(DATASET),--dataset "$(DATASET)") \
	$(if $(EVAL_EVERY),--eval-every "$(EVAL_EVERY)") \
	$(if $(VAL_QUESTIONS),--val-questions "$(VAL_QUESTIONS)") \
	$(if $(CHECKPOINT_EVERY),--checkpoint-every "$(CHECKPOINT_EVERY)") \
	$(if $(TARGET_LOSS),--target-loss "$(TARGET_LOSS)") \
	$(if $(RUN),--run "$(RUN)") \
	$(if $(filter 1,$(RESUME)),--resume)
ARGS_train_compare = $(if $(MODEL),--model "$(MODEL)") \
	$(if $(DEVICE),--device "$(DEVICE)") \
	$(if $(PRECISION),--precision "$(PRECISION)") \
	$(if $(BATCH_SIZE),--batch-size "$(BATCH_SIZE)") \
	$(if $(WORKERS),--workers "$(WORKERS)") \
	$(if $(BUILD),--build-dir "$(BUILD)") \
	$(if $(SEQ_LEN),--seq-len "$(SEQ_LEN)") \
	$(if $(DOC_STRIDE),--doc-stride "$(DOC_STRIDE)") \
	$(if $(SEED),--seed "$(SEED)") \
	$(if $(SHAPE),--shape "$(SHAPE)") \
	$(if $(NAME),--name "$(NAME)") \
	$(if $(STAGES),--stages $(STAGES)) \
	$(if $(MICROBATCHES),--microbatches "$(MICROBATCHES)") \
	$(if $(SCHEDULE),--schedule "$(SCHEDULE)") \
	$(if $(STEPS),--steps "$(STEPS)") \
	$(if $(EPOCHS),--epochs "$(EPOCHS)") \
	$(if $(ACCUMULATE),--accumulate "$(ACCUMULATE)") \
	$(if $(LR),--lr "$(LR)") \
	$(if $(OPTIMIZER),--optimizer "$(OPTIMIZER)") \
	$(if $(LOSS_SCALE),--loss-scale "$(LOSS_SCALE)") \
	$(if $(WARMUP),--warmup "$(WARMUP)") \
	$(if $(DROPOUT),--dropout "$(DROPOUT)") \
	$(if $(DATASET),--dataset "$(DATASET)") \
	$(if $(EVAL_EVERY),--eval-every "$(EVAL_EVERY)") \
	$(if $(VAL_QUESTIONS),--val-questions "$(VAL_QUESTIONS)") \
	$(if $(TARGET_LOSS),--target-loss "$(TARGET_LOSS)")
ARGS_train_bench = $(if $(MODEL),--model "$(MODEL)") \
	$(if $(DEVICE),--device "$(DEVICE)") \
	$(if $(PRECISION),--precision "$(PRECISION)") \
	$(if $(BATCH_SIZE),--batch-size "$(BATCH_SIZE)") \
	$(if $(BUILD),--build-dir "$(BUILD)") \
	$(if $(SEQ_LEN),--seq-len "$(SEQ_LEN)") \
	$(if $(SHAPE),--shape "$(SHAPE)") \
	$(if $(STEPS),--steps "$(STEPS)")
ARGS_pretrain_sweep = $(if $(DEVICE),--device "$(DEVICE)") \
	$(if $(PRECISION),--precision "$(PRECISION)") \
	$(if $(BUILD),--build-dir "$(BUILD)") \
	$(if $(SEQ_LEN),--seq-len "$(SEQ_LEN)") \
	$(if $(SEED),--seed "$(SEED)") \
	$(if $(SHAPE),--shape "$(SHAPE)") \
	$(if $(NAME),--name "$(NAME)") \
	$(if $(STEPS),--steps "$(STEPS)") \
	$(if $(ACCUMULATE),--accumulate "$(ACCUMULATE)") \
	$(if $(MAX_PREDICTIONS),--max-predictions "$(MAX_PREDICTIONS)") \
	$(if $(MICRO_BATCHES),--micro-batches $(MICRO_BATCHES)) \
	$(if $(STEPS_PER_LOG),--steps-per-log "$(STEPS_PER_LOG)") \
	$(if $(LR),--lr "$(LR)") \
	$(if $(OPTIMIZER),--optimizer "$(OPTIMIZER)") \
	$(if $(LOSS_SCALE),--loss-scale "$(LOSS_SCALE)") \
	$(if $(WARMUP),--warmup "$(WARMUP)") \
	$(if $(DROPOUT),--dropout "$(DROPOUT)") \
	$(if $(DATASET),--dataset "$(DATASET)")
ARGS_features = $(if $(BUILD),--build-dir "$(BUILD)") \
	$(if $(DATA),--data "$(DATA)") \
	$(if $(SEQ_LEN),--seq-len "$(SEQ_LEN)") \
	$(if $(DOC_STRIDE),--doc-stride "$(DOC_STRIDE)") \
	$(if $(SAMPLES),--samples "$(SAMPLES)") \
	$(if $(LENGTHS),--lengths "$(LENGTHS)") \
	$(if $(SEED),--seed "$(SEED)")
ARGS_download = $(if $(BUILD),--build-dir "$(BUILD)")
ARGS_device_check = $(if $(BUILD),--build-dir "$(BUILD)") \
	$(if $(TIME_LIMIT),--time-limit "$(TIME_LIMIT)") \
	$(if $(SMALL_MODEL),--small-model "$(SMALL_MODEL)") \
	$(if $(CHECKS),--steps "$(CHECKS)") \
	$(if $(filter 1,$(PLAN)),--plan)

VARIABLE_NAMES = SCENARIO SCENARIOS BACKEND MODEL DEVICE PRECISION COUNT SYSTEM BATCH_SIZE MAX_TOKENS BACKEND_OPTIONS WORKERS RANK0_COMPUTES WORKER_TIMEOUT LAUNCHER TRUST_CHECKPOINT TRACE REPLACE BUILD DATA SEQ_LEN DOC_STRIDE SAMPLES LENGTHS SEED SHAPE AUDIT_CONFIG SHORT LAYOUT CHECKER SUBMITTER BATCH_SIZES PRECISIONS BACKENDS MODE NAME OPTIMAL OPTIMAL_FILE UPDATE_DOCS TASK PARALLEL STAGES MICROBATCHES ZERO SCHEDULE STEPS EPOCHS ACCUMULATE MICRO_BATCH MAX_PREDICTIONS MICRO_BATCHES STEPS_PER_LOG LR OPTIMIZER LOSS_SCALE WARMUP DROPOUT DATASET EVAL_EVERY VAL_QUESTIONS CHECKPOINT_EVERY TARGET_LOSS RUN RESUME TIME_LIMIT SMALL_MODEL CHECKS PLAN PYTHON TORCH_SPEC TEST_WORKERS
