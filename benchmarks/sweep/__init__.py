"""`make sweep`: batch sizes x token budgets x precisions x backends, measured point by point, resumable.

    python -m benchmarks.sweep --batch-sizes 1 4 16 [--max-tokens none 4096] [--precisions fp32 bf16]
        [--backends pytorch onnxruntime] [--mode direct|loadgen] [--name NAME] [--optimal [--optimal-file F]]
        [--model M | --shape S] [--device D] [--system S] [--count N] [--data ... --seq-len ...]
    python -m benchmarks.sweep plot build/sweeps/<name>/results.jsonl

direct: the backend over the samples in the SUT's own batches (Backend.submit_rows), no LoadGen; one
row per point. loadgen: a quick Offline and a quick SingleStream LoadGen run per point; a row each.
Every point runs in a process of its own: LoadGen allows one run per process, and a point that runs out
of memory takes only itself down (its row says so). Rows are appended to build/sweeps/<name>/results.jsonl
as each point finishes: a rerun skips the finished ones, and Ctrl-C loses at most the running one. The
plots and, with --optimal, a system file for the best point are written beside them.
"""
