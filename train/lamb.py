"""LAMB (You et al., 2019, "Large Batch Optimization for Deep Learning"), the optimiser of MLPerf Training's BERT.

Adam's bias-corrected update plus decoupled weight decay, scaled per tensor by the trust ratio
||weight|| / ||update||, so every layer moves by about the same fraction of itself whatever its gradients'
size. Written here because no maintained package on PyPI offers one that runs on a CPU without pulling
in other builds (apex and DeepSpeed ship fused CUDA kernels; timm needs torchvision).
"""

from __future__ import annotations

import torch


class Lamb(torch.optim.Optimizer):
    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-6,
                 weight_decay: float = 0.01):
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None if closure is None else closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for parameter in group["params"]:
                if parameter.grad is None:
                    continue
                state = self.state[parameter]
                if not state:
                    state["step"] = 0
                    state["mean"] = torch.zeros_like(parameter)
                    state["square"] = torch.zeros_like(parameter)
                state["step"] += 1
                gradient = parameter.grad.float()
                state["mean"].mul_(beta1).add_(gradient, alpha=1 - beta1)
                state["square"].mul_(beta2).addcmul_(gradient, gradient, value=1 - beta2)
                mean = state["mean"] / (1 - beta1 ** state["step"])
                square = state["square"] / (1 - beta2 ** state["step"])
                update = mean / (square.sqrt() + group["eps"]) + group["weight_decay"] * parameter
                weight_norm, update_norm = parameter.norm(), update.norm()
                trust = torch.where((weight_norm > 0) & (update_norm > 0), weight_norm / update_norm,
                                    torch.ones_like(weight_norm))
                parameter.sub_(update * (group["lr"] * trust))
        return loss
