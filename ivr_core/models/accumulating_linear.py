"""A linear layer that adds its weight gradient straight into ``weight.grad``.

The memory model applies its 25088 x 4096 FC layer once per iteration. Plain autograd
computes a fresh weight gradient for each use (411 MB in fp32 at the authors' sizes) and
then adds it to the one accumulated so far, so two such buffers are alive at once (three
under autocast, with the reduced-precision one). Here the backward adds
``grad_out^T @ x`` into ``weight.grad`` itself: the same sum, no full-size temporary in fp32.
Not used under DistributedDataParallel, whose reducer must see every gradient through
autograd; there and without gradients it is ``nn.Linear``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class _AccumulateWeightGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias):
        out = F.linear(x, weight, bias)  # under autocast: in its dtype, weight cast cached
        ctx.save_for_backward(x.to(out.dtype), weight)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        x, weight = ctx.saved_tensors
        w = weight.to(grad_out.dtype)  # the reduced-precision copy again under autocast
        grad_x = grad_out @ w if ctx.needs_input_grad[0] else None
        grad_bias = grad_out.sum(0).to(weight.dtype) if ctx.needs_input_grad[2] else None
        if weight.grad is None:
            weight.grad = (grad_out.t() @ x).to(weight.dtype)
        elif grad_out.dtype == weight.dtype:
            torch.addmm(weight.grad, grad_out.t(), x, out=weight.grad)  # counted as addmm
        else:
            weight.grad.add_(grad_out.t() @ x)
        return grad_x, None, grad_bias


class AccumulatingLinear(nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (not self.weight.requires_grad or not torch.is_grad_enabled() or x.dim() != 2
                or _distributed()):
            return super().forward(x)
        # autograd gets no gradient for the weight (None): the backward writes it
        return _AccumulateWeightGrad.apply(x, self.weight, self.bias)


def _distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()
