"""The fp8 format every fp8 path writes, emulated or in Triton: e4m3, saturating at its largest value.

Its own module so that sut/fp8.py and the Triton kernels it calls both import it from below.
"""

import torch

FP8 = torch.float8_e4m3fn
FP8_MAX = torch.finfo(FP8).max  # 448
