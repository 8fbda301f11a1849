"""Hugging Face backend: transformers' own model (BERT or DistilBERT) on padded batches, as the reference runs it.

Kept as the yardstick the packed `pytorch` backend is checked and benchmarked against.
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from sut.backend import Backend, parse_options
from sut.models import LoadedModel, model_inputs

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class HuggingFaceBackend(Backend):
    name = "huggingface"
    precisions = tuple(DTYPES)
    input_data_type = "int64"
    option_types: dict[str, type] = {}

    def __init__(self, model: LoadedModel, device: str, precision: str, calibration=None, cache_dir=None,
                 options: dict[str, str] | None = None, log=print):
        parse_options(options, self.option_types, self.name)
        self.device = torch.device(device)
        # A copy: the loaded model stays fp32 on the CPU for any other backend built from it (make bench).
        self.module = copy.deepcopy(model.module).to(device=self.device, dtype=DTYPES[precision]).eval()

    def _to_device(self, array: np.ndarray) -> torch.Tensor:
        tensor = torch.from_numpy(np.ascontiguousarray(array, np.int64))
        if self.device.type == "cuda":
            tensor = tensor.pin_memory().to(self.device, non_blocking=True)
        return tensor

    @torch.inference_mode()
    def predict(self, input_ids: np.ndarray, input_mask: np.ndarray, segment_ids: np.ndarray) -> np.ndarray:
        output = self.module(**model_inputs(self.module, self._to_device(input_ids), self._to_device(input_mask),
                                            self._to_device(segment_ids)))
        logits = torch.stack((output.start_logits, output.end_logits), dim=-1)
        return logits.float().cpu().numpy()
