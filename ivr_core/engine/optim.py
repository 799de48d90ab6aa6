"""Optimizer with weight decay on weights only, and the learning rate as a function of the
iteration (so resuming needs no scheduler state)."""

from __future__ import annotations

import math

import torch
from torch import nn

from ivr_core.config import TrainConfig

NO_DECAY = ("memory_init",)  # learned tensors that are not layer weights


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        is_weight = p.ndim > 1 and not any(key in name for key in NO_DECAY)
        (decay if is_weight else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    # fused kernels: one pass over all parameters instead of a loop of small ops
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, fused=True)
    return torch.optim.AdamW(groups, lr=cfg.lr, fused=True)


def lr_at(iteration: int, cfg: TrainConfig) -> float:
    """Learning rate of (0-based) ``iteration``: linear warm-up, then step or cosine decay."""
    if iteration < cfg.warmup_iters:
        return cfg.lr * (iteration + 1) / cfg.warmup_iters
    if cfg.schedule == "step":
        return cfg.lr * cfg.lr_gamma ** sum(iteration >= s for s in cfg.lr_steps)
    span = max(cfg.iters - cfg.warmup_iters, 1)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * (iteration - cfg.warmup_iters) / span))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
