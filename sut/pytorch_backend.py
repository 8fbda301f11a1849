"""PyTorch backend: our packed BERT encoder, in fp32, fp16, bf16 or fp8, on CPU or CUDA.

fp32 computes exactly what the reference model computes. Below fp32, GELU takes its tanh form
(within 5e-4 of exact), which cuBLASLt fuses into the preceding product: 9% faster on an H100.

The host packs each batch's real tokens into one flat row (numpy, no device syncs), ships it in
one pinned copy, and scatters the logits back into LoadGen's [batch, seq, 2] layout. On CUDA each
encoder layer is compiled once with dynamic shapes (all 24 layers share the compiled code) and
warmed up before LoadGen starts, so compile time never lands inside a measured run.
Batches of up to 128 samples (SingleStream, MultiStream, Server) replay CUDA graphs (sut/cuda_graphs.py).
On CPU in fp32 and bf16 the products run through oneDNN with GELU fused (sut/onednn.py): in fp32, 1.7-1.8x
the samples/s on an AMD EPYC.
Options (BACKEND_OPTIONS="key=value"): compile=0|1, graphs=0|1 (default for both: 1 on CUDA below fp32),
triton_attention=0|1 (default 0: sut/triton_attention.py, not yet timed against flash attention),
onednn=0|1 (default 1 on CPU in fp32 and bf16 unless compile=1).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from common.errors import HarnessError
from qsl.calibration import calibration_indices
from qsl.features import MAX_SEQ_LENGTH, PAD_LOGIT, SquadFeatures
from sut.backend import Backend, parse_options
from sut.batching import batch_inputs
from sut.cuda_graphs import GraphedEncoder, graph_shape
from sut.fp8 import calibrate_input_amax, fp8_kernels_supported, fp8_supported, quantise_layers
from sut.models import LoadedModel
from sut.onednn import onednn_available, use_onednn_linears
from sut.packed_bert import PackedBert
from sut.stages import stage

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16, "fp8": torch.float16}
CPU_FP8_DTYPE = torch.float32  # fp16 arithmetic on CPU is slow; emulated fp8 rounds the same either way
TOKEN_MULTIPLE = 16  # fp8 products need multiples of 16; a dummy sequence fills the gap
WARM_UP_BATCH_SIZE = 16  # several batch shapes, so the dynamic-shape compile happens before LoadGen starts


@dataclass
class PackedBatch:
    flat: np.ndarray  # int32: token ids, segment ids, positions (tokens each), then cu_seqlens
    tokens: int  # padded token count
    real_tokens: int
    mask: np.ndarray  # bool [batch, seq]: where each real token came from
    graphed: bool = False  # laid out for a captured CUDA graph (sut/cuda_graphs.py)


def pack(input_ids: np.ndarray, input_mask: np.ndarray, segment_ids: np.ndarray, graph_buckets: bool = False,
         max_length: int = MAX_SEQ_LENGTH) -> PackedBatch:
    """Real tokens only, in one flat row; padding up to the token count is dummy sequences of <= max_length tokens.

    With `graph_buckets`, a small batch is padded to its CUDA graph bucket and cu_seqlens to the graphs'
    fixed length (zero-length sequences at the end).
    """
    mask = input_mask.astype(bool)
    lengths = mask.sum(axis=1)
    real_tokens = int(lengths.sum())
    shape = graph_shape(real_tokens, len(lengths), max_length) if graph_buckets else None
    if shape is None:
        tokens = -(-real_tokens // TOKEN_MULTIPLE) * TOKEN_MULTIPLE
        boundaries = len(lengths) + 1 + (tokens > real_tokens)
    else:
        tokens, boundaries = shape
    positions = np.broadcast_to(np.arange(mask.shape[1], dtype=np.int32), mask.shape)
    flat = np.zeros(3 * tokens + boundaries, np.int32)
    flat[:real_tokens] = input_ids[mask]
    flat[tokens:tokens + real_tokens] = segment_ids[mask]
    flat[2 * tokens:2 * tokens + real_tokens] = positions[mask]
    cu_seqlens = flat[3 * tokens:]
    cu_seqlens[1:len(lengths) + 1] = np.cumsum(lengths)
    padding_ends = real_tokens + max_length * np.arange(1, boundaries - len(lengths))
    cu_seqlens[len(lengths) + 1:] = np.minimum(padding_ends, tokens)
    return PackedBatch(flat, tokens, real_tokens, mask, shape is not None)


def scatter(batch: PackedBatch, logits: np.ndarray) -> np.ndarray:
    """Packed [real_tokens, 2] logits back into LoadGen's float32 [batch, seq, 2], padding at PAD_LOGIT."""
    output = np.full((*batch.mask.shape, 2), PAD_LOGIT, np.float32)
    # Each (start, end) pair moved as one int64: ten times faster than boolean-mask assignment of rows.
    pairs = np.ascontiguousarray(logits, np.float32).view(np.int64).reshape(-1)
    output.view(np.int64).reshape(-1)[np.flatnonzero(batch.mask)] = pairs
    return output


def require_fp8_kernels() -> None:
    """Fail before calibration, with the fix, where the fp8 kernels cannot be built."""
    try:
        import sut.fp8_kernels  # noqa: F401
    except ImportError as error:
        raise HarnessError(f"PRECISION=fp8 on a GPU needs Triton 3.4 or newer, which comes with torch 2.8+ "
                           f"(pip install 'torch>=2.8'), or PRECISION=fp16: {error}") from error


class PackedBackend(Backend):
    name = "pytorch"
    precisions = tuple(DTYPES)
    input_data_type = "int32"  # packed into one int32 row
    option_types = {"compile": bool, "graphs": bool, "triton_attention": bool, "onednn": bool}

    def __init__(self, model: LoadedModel, device: str, precision: str, calibration: SquadFeatures | None = None,
                 cache_dir=None, options: dict[str, str] | None = None, log=print):
        parsed = parse_options(options, self.option_types, self.name)
        compile_layers, use_graphs = parsed.get("compile"), parsed.get("graphs")
        self.device = torch.device(device)
        if self.device.type == "cuda" and self.device.index is not None:  # DEVICE=cuda:N
            torch.cuda.set_device(self.device)  # events, graph capture and replay use the current device's stream
        dtype = CPU_FP8_DTYPE if precision == "fp8" and self.device.type == "cpu" else DTYPES[precision]
        self.encoder = PackedBert.from_huggingface(model.module).to(device=self.device, dtype=dtype)
        self.encoder.max_length = calibration.seq_length if calibration is not None else MAX_SEQ_LENGTH
        self.calibration = calibration
        # Two pinned slots for inputs and two for logits: while one batch runs, the next one is packed.
        self._inputs = [torch.empty(0, dtype=torch.int32), torch.empty(0, dtype=torch.int32)]
        self._outputs = [torch.empty(0), torch.empty(0)]
        self._slot = 0
        self.graphs: GraphedEncoder | None = None  # captured last, after calibration and compiling
        if precision == "fp8":
            if calibration is None:
                raise ValueError("PRECISION=fp8 needs calibration features")
            native, fused = fp8_supported(self.device), fp8_kernels_supported(self.device)
            if fused:
                require_fp8_kernels()
            if not native:
                log(f"fp8 on {self.device} is emulated (needs a CUDA GPU of compute capability 8.9+): "
                    "accuracy is fp8's, speed is not")
            amax = calibrate_input_amax(self.encoder.layers, lambda: self._calibration_batches("fp8 calibration"))
            quantise_layers(self.encoder.layers, amax, native, fused)
        self.encoder.use_tanh_gelu(precision != "fp32")  # after calibration: its hooks watch ffn_in as a module
        # fp32 attention loops over sequences in Python, syncing with the host: nothing to gain from
        # compiling, and it cannot be captured in a CUDA graph.
        fast_path = self.device.type == "cuda" and precision != "fp32"
        if parsed.get("triton_attention"):
            self._use_triton_attention(fast_path, precision)
        if compile_layers is None:
            compile_layers = fast_path
        self._use_onednn(parsed.get("onednn"), precision, compile_layers)
        if compile_layers:
            for layer in self.encoder.layers:
                layer.compile(dynamic=True)
        if calibration is not None and self.device.type == "cuda":
            for _ in self._calibration_batches("warm-up (compiles the encoder layers)", WARM_UP_BATCH_SIZE):
                pass
        if use_graphs and not fast_path:
            raise HarnessError("BACKEND_OPTIONS=graphs=1 needs a CUDA device and PRECISION fp16, bf16 or fp8")
        if use_graphs is None:
            use_graphs = fast_path
        if use_graphs:
            self.graphs = GraphedEncoder(self.encoder, self.device)

    def _use_onednn(self, chosen: bool | None, precision: str, compile_layers: bool) -> None:
        """fp32 and bf16 on CPU: the encoder's products through oneDNN (sut/onednn.py), where torch has it.

        Not with compile=1: inductor cannot lower oneDNN's reordered weights (it prepacks its own).
        """
        applies = self.device.type == "cpu" and precision in ("fp32", "bf16") and onednn_available()
        if chosen and compile_layers:
            raise HarnessError("BACKEND_OPTIONS onednn=1 and compile=1 exclude each other: inductor cannot "
                               "compile oneDNN's reordered weights; give one of them")
        if chosen and not applies:
            raise HarnessError("BACKEND_OPTIONS onednn=1 needs DEVICE=cpu, PRECISION fp32 or bf16 and a torch "
                               f"built with oneDNN (torch.backends.mkldnn); this is {self.device}, {precision}, "
                               f"torch {torch.__version__}")
        if chosen is None:
            chosen = applies and not compile_layers
        if chosen:
            use_onednn_linears(self.encoder.layers)

    def _use_triton_attention(self, fast_path: bool, precision: str) -> None:
        """Attention from the fused QKV product in one Triton kernel; in fp8 it writes attention_out's input."""
        if not fast_path:
            raise HarnessError("BACKEND_OPTIONS triton_attention=1 needs a CUDA device and PRECISION fp16, bf16 or fp8")
        try:
            from sut.triton_attention import varlen_attention_from_qkv
        except ImportError as error:
            raise HarnessError(f"BACKEND_OPTIONS triton_attention=1 needs Triton, which comes with CUDA builds of "
                               f"torch: {error}") from error
        for layer in self.encoder.layers:
            scale = layer.attention_out.input_scale if precision == "fp8" else None
            layer.fused_attention = functools.partial(varlen_attention_from_qkv, heads=layer.heads,
                                                      output_scale=scale)

    def _calibration_batches(self, description: str, batch_size: int = 50) -> Iterator[np.ndarray]:
        """MLPerf's calibration features: fp8 scales come from these, and warm-up runs them."""
        features = self.calibration
        indices = calibration_indices(features)
        with tqdm(total=len(indices), unit="sample", desc=description) as bar:
            for start in range(0, len(indices), batch_size):
                rows = indices[start:start + batch_size]
                yield self.predict(*batch_inputs(features, rows))
                bar.update(len(rows))

    def _pinned(self, buffers: list[torch.Tensor], size: int, dtype: torch.dtype) -> torch.Tensor:
        """This batch's slot, pinned once and grown when needed: pinning per batch is slow."""
        if buffers[self._slot].numel() < size:
            buffers[self._slot] = torch.empty(2 * size, dtype=dtype).pin_memory()
        return buffers[self._slot][:size]

    @torch.inference_mode()
    def submit(self, input_ids: np.ndarray, input_mask: np.ndarray, segment_ids: np.ndarray
               ) -> Callable[[], np.ndarray]:
        """Pack and launch a batch; the returned call waits for it and gives float32 [batch, seq, 2].

        On CUDA nothing here waits for the GPU, so the SUT packs the next batch while this one runs.
        At most two batches may be outstanding: the SUT finishes one before submitting a third.
        """
        if input_ids.shape[1] > self.encoder.max_length:
            raise ValueError(f"a batch {input_ids.shape[1]} tokens wide; this backend was built for samples of at "
                             f"most {self.encoder.max_length} (its calibration features)")
        with stage(self.stages, "pack"):
            batch = pack(input_ids, input_mask, segment_ids, self.graphs is not None, self.encoder.max_length)
        cuda = self.device.type == "cuda"
        with stage(self.stages, "host_to_device"):  # a graphed batch is copied by its graph's replay (forward)
            if cuda:
                staging = self._pinned(self._inputs, batch.flat.size, torch.int32)
                staging.numpy()[:] = batch.flat
                flat = staging if batch.graphed else staging.to(self.device, non_blocking=True)
            else:
                flat = torch.from_numpy(batch.flat)
        run = self.graphs if batch.graphed else self.encoder.forward_flat
        with stage(self.stages, "forward"):
            logits = run(flat, batch.tokens)[:batch.real_tokens].float()
        done = None
        with stage(self.stages, "device_to_host"):
            if cuda:
                host = self._pinned(self._outputs, logits.numel(), torch.float32).view(-1, 2)
                host.copy_(logits, non_blocking=True)
                done = torch.cuda.Event()
                done.record()
                self._slot = 1 - self._slot
            else:
                host = logits

        def finish() -> np.ndarray:
            if done is not None:
                done.synchronize()
            with stage(self.stages, "scatter"):
                return scatter(batch, host.numpy())

        return finish

    def predict(self, input_ids: np.ndarray, input_mask: np.ndarray, segment_ids: np.ndarray) -> np.ndarray:
        return self.submit(input_ids, input_mask, segment_ids)()
