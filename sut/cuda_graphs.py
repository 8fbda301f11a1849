"""CUDA graphs for small batches, where launching the encoder's kernels costs more than running them.

On an H100 each compiled layer spends about 0.6 ms of host time on guards and launches: 15 ms per
batch, whatever its size. SingleStream (one sample, about 2 ms of GPU work), MultiStream (eight) and
Server (tens of samples waiting at a few thousand per second) were bound by that. A batch of at most
128 samples is packed into a fixed shape instead: its token count rounded up to a bucket, the padding
split into dummy sequences no longer than a sample may be (384 tokens for MLPerf), and cu_seqlens of a
fixed length, the unused entries being zero-length sequences, which attention skips. One graph per shape
is captured before LoadGen starts and replayed with one launch.
"""

from __future__ import annotations

import functools
from bisect import bisect_left
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from qsl.features import MAX_SEQ_LENGTH
from sut.packed_bert import PackedBert

FINE_STEP = 128  # token buckets every 128 tokens up to eight full samples, then 25% apart


@dataclass(frozen=True)
class GraphFamily:
    """Graphs for batches of up to `sequences` samples, one per token bucket."""

    sequences: int
    buckets: tuple[int, ...]
    max_length: int = MAX_SEQ_LENGTH  # the longest sequence, the padding's dummies included

    @property
    def boundaries(self) -> int:
        """cu_seqlens length: 0, each sample's end, then the padding's dummies (enough for the widest gap)."""
        widest_gap = int(np.diff([0, *self.buckets]).max())
        return 1 + self.sequences + -(-widest_gap // self.max_length)


def _geometric(start: int, stop: int) -> tuple[int, ...]:
    sizes = [start]
    while sizes[-1] < stop:
        sizes.append(min(stop, -(-sizes[-1] * 5 // 4 // FINE_STEP) * FINE_STEP))
    return tuple(sizes)


@functools.cache
def graph_families(max_length: int = MAX_SEQ_LENGTH) -> tuple[GraphFamily, ...]:
    """Each zero-length sequence still costs attention a little (SingleStream p90 on an H100: 1.7 ms with
    10 cu_seqlens entries, 2.6 ms with 145), so SingleStream and MultiStream get graphs of their own."""
    full = 8 * max_length  # eight samples of the longest length
    return (GraphFamily(8, tuple(range(FINE_STEP, full + 1, FINE_STEP)), max_length),
            GraphFamily(128, tuple(range(FINE_STEP, full, FINE_STEP)) + _geometric(full, 32768), max_length))


def graph_shape(real_tokens: int, sequences: int, max_length: int = MAX_SEQ_LENGTH) -> tuple[int, int] | None:
    """(tokens, cu_seqlens length) of the graph a batch is replayed in; None when no graph is large enough."""
    for family in graph_families(max_length):
        if sequences <= family.sequences and real_tokens <= family.buckets[-1]:
            return family.buckets[bisect_left(family.buckets, real_tokens)], family.boundaries
    return None


class GraphedEncoder:
    """The encoder captured once per token bucket; all graphs share one memory pool (they never overlap)."""

    def __init__(self, encoder: PackedBert, device: torch.device):
        self.graphs: dict[tuple[int, int], tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor]] = {}
        pool = torch.cuda.graph_pool_handle()
        side = torch.cuda.Stream(device)
        shapes = sorted(((tokens, family.boundaries) for family in graph_families(encoder.max_length)
                         for tokens in family.buckets), reverse=True)  # largest first: the pool is sized once
        with torch.inference_mode():
            for tokens, boundaries in tqdm(shapes, unit="graph", desc="CUDA graphs (small batches)"):
                flat = torch.zeros(3 * tokens + boundaries, dtype=torch.int32, device=device)
                # Capture-time inputs: sequences of at most the longest length covering the bucket.
                ends = np.minimum(np.arange(boundaries) * encoder.max_length, tokens)
                flat[3 * tokens:] = torch.from_numpy(ends.astype(np.int32))
                side.wait_stream(torch.cuda.current_stream(device))
                with torch.cuda.stream(side):
                    for _ in range(2):  # compiles and autotunes outside the capture
                        encoder.forward_flat(flat, tokens)
                torch.cuda.current_stream(device).wait_stream(side)
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph, pool=pool):
                    logits = encoder.forward_flat(flat, tokens)
                self.graphs[tokens, boundaries] = (graph, flat, logits)

    def __call__(self, packed: torch.Tensor, tokens: int) -> torch.Tensor:
        """Packed inputs (pinned host or device) -> the shape's [tokens, 2] logits, valid until the next call."""
        graph, flat, logits = self.graphs[tokens, packed.numel() - 3 * tokens]
        flat.copy_(packed, non_blocking=True)
        graph.replay()
        return logits
