"""The local module: a spatial memory read and written by every region, iterated (DESIGN §3).

Per image: S_0 = learned init resized to the feature map. At iteration i each region reads
its crop of context(S_i) to predict (iteration 0 predicts with the baseline head instead);
unless it is the last iteration, every region writes a gated update over its box and the
updates are pasted back and averaged: S_{i+1} = S_i + sum_k paste(d_k) / count. An attention
over iterations, learned from per-iteration confidences, combines the (detached) logits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ivr_core.models.accumulating_linear import AccumulatingLinear
from ivr_core.models.baseline import BaselineModel
from ivr_core.ops import crop_and_resize, inverse_boxes, paste_and_sum
from ivr_core.models.backbone import FEATURE_STRIDE

COUNT_EPS = 1e-6  # cells no box covers have count 0 and a zero update


def _init(layer: nn.Module) -> nn.Module:
    """Variance scaling (He, fan-in), zero biases: the authors' init for memory layers."""
    nn.init.kaiming_normal_(layer.weight, mode="fan_in", nonlinearity="relu")
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)
    return layer


def _conv(cin: int, cout: int, k: int, bias: bool = True) -> nn.Conv2d:
    return _init(nn.Conv2d(cin, cout, k, padding=k // 2, bias=bias))


def _norm(channels: int, kind: str, groups: int) -> nn.Module:
    return nn.GroupNorm(groups, channels) if kind == "group" else nn.Identity()


class ConvNorm(nn.Sequential):
    def __init__(self, cin: int, cout: int, k: int, norm: str, groups: int):
        super().__init__(_conv(cin, cout, k), _norm(cout, norm, groups))


class Context(nn.Module):
    """x = conv(S); then residual blocks x + conv(relu(conv(relu(x)))); no final activation."""

    def __init__(self, channels: int, layers: int, norm: str, groups: int):
        super().__init__()
        self.first = ConvNorm(channels, channels, 3, norm, groups)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.ReLU(), ConvNorm(channels, channels, 3, norm, groups),
                          nn.ReLU(), ConvNorm(channels, channels, 3, norm, groups))
            for _ in range((layers - 1) // 2))

    def forward(self, memory: torch.Tensor) -> torch.Tensor:
        x = self.first(memory)
        for block in self.blocks:
            x = x + block(x)
        return x


class GatedUpdate(nn.Module):
    """Per-region update d = u * (n - s) of the memory crop s from the input a (GRU-like)."""

    def __init__(self, channels: int, k: int):
        super().__init__()
        self.r_a, self.r_s = _conv(channels, 1, k), _conv(channels, 1, k, bias=False)
        self.u_a, self.u_s = _conv(channels, 1, k), _conv(channels, 1, k, bias=False)
        self.n_a, self.n_s = _conv(channels, channels, k), _conv(channels, channels, k, bias=False)

    def forward(self, a: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        r = torch.sigmoid(self.r_a(a) + self.r_s(s))  # (K, 1, s, s)
        u = torch.sigmoid(self.u_a(a) + self.u_s(s))
        n = F.relu(self.n_a(a) + self.n_s(r * s))  # (K, C_m, s, s)
        return u * (n - s)


def attend(logits: list[torch.Tensor], confidences: list[torch.Tensor]):
    """Softmax over the candidates' confidences per region -> (final (K, C), attention
    (K, N)); the logits are detached, so only the confidences learn from the final loss."""
    attention = torch.softmax(torch.stack(confidences, dim=1), dim=1)
    final = (attention[:, :, None] * torch.stack(logits, 1).detach()).sum(1)
    return final, attention


def reasoning_losses(chains: list[list[torch.Tensor]], final: torch.Tensor,
                     classes: torch.Tensor, beta: float, iter_weight: float,
                     final_weight: float) -> dict[str, torch.Tensor]:
    """CE of the shared first prediction, the mean hard-example weighted CE of every later
    prediction of every chain (weights from the chain's previous prediction), CE of final."""
    out = {"base": F.cross_entropy(chains[0][0], classes)}
    terms = [(hard_example_weights(chain[i - 1], classes, beta)
              * F.cross_entropy(chain[i], classes, reduction="none")).sum()
             for chain in chains for i in range(1, len(chain))]
    if terms:
        out["iter"] = iter_weight * torch.stack(terms).mean()
    out["final"] = final_weight * F.cross_entropy(final, classes)
    return out


def hard_example_weights(logits: torch.Tensor, classes: torch.Tensor, beta: float) -> torch.Tensor:
    """q = 1 - p(true class), set to beta where p >= 1 - beta, normalised to sum 1 (detached)."""
    p = torch.softmax(logits.detach().float(), dim=1).gather(1, classes[:, None])[:, 0]
    q = torch.where(p >= 1 - beta, torch.full_like(p, beta), 1 - p)
    return q / q.sum().clamp_min(1e-12)


class SpatialMemoryModel(nn.Module):
    def __init__(self, base: BaselineModel, channels: int = 512, init_size: int = 20,
                 iterations: int = 3, fc_dim: int = 4096, context_layers: int = 3,
                 input_convs: int = 2, gate_kernel: int = 3, beta: float = 0.5,
                 iter_loss_weight: float = 1.0, final_loss_weight: float = 1.0,
                 norm: str = "none", norm_groups: int = 32):
        super().__init__()
        self.base = base
        self.iterations, self.beta = iterations, beta
        self.iter_loss_weight, self.final_loss_weight = iter_loss_weight, final_loss_weight
        s, c, num_classes = base.crop_size, channels, base.num_classes
        self.memory_init = nn.Parameter(torch.zeros(1, c, init_size, init_size))
        self.context = Context(c, context_layers, norm, norm_groups)
        self.fc = nn.Sequential(_init(AccumulatingLinear(c * s * s, fc_dim)), nn.ReLU(),
                                _init(AccumulatingLinear(fc_dim, fc_dim)), nn.ReLU())
        self.cls = nn.Linear(fc_dim, num_classes)
        nn.init.normal_(self.cls.weight, std=0.01)
        nn.init.zeros_(self.cls.bias)
        self.confidence = nn.Linear(fc_dim, 1, bias=False)
        nn.init.normal_(self.confidence.weight, std=0.01)
        self.input_pool5 = ConvNorm(base.backbone.feature_channels, c, 1, norm, norm_groups)
        self.input_logits = _init(nn.Linear(num_classes, c, bias=False))
        self.input_convs = nn.ModuleList(ConvNorm(c, c, 3, norm, norm_groups)
                                         for _ in range(input_convs - 1))
        self.update = GatedUpdate(c, gate_kernel)

    def _read(self, memory: torch.Tensor, cboxes: torch.Tensor, box_ind: torch.Tensor):
        s = self.base.crop_size
        crops = crop_and_resize(self.context(memory), cboxes, box_ind, (s, s))
        hidden = self.fc(crops.flatten(1))  # (K, fc_dim)
        return hidden, self.confidence(hidden)[:, 0]

    def _write(self, memory, pool5, logits, cboxes, box_ind, inv, count, keep):
        s = self.base.crop_size
        a = F.relu(self.input_pool5(pool5) + self.input_logits(logits)[:, :, None, None])
        for conv in self.input_convs:
            a = F.relu(conv(a))
        crops = crop_and_resize(memory, cboxes, box_ind, (s, s))  # (K, C_m, s, s)
        delta = self.update(a, crops)
        if keep is not None:  # regions left out of reasoning write nothing
            delta = delta * keep[:, None, None, None].to(delta.dtype)
        pasted = paste_and_sum(delta, inv, memory.shape[-2:])  # (C_m, Hm, Wm)
        return memory + (pasted / count.clamp_min(COUNT_EPS))[None]

    def start(self, base: dict, boxes: torch.Tensor, keep: torch.Tensor | None) -> dict:
        """What every iteration of one image shares: crop and inverse boxes, the count of
        writing boxes per memory cell, the detached pool5, and the initial memory S_0."""
        hm, wm = base["feature"].shape[-2:]
        s = self.base.crop_size
        weights = torch.ones(len(boxes), 1, s, s, dtype=base["pool5"].dtype, device=boxes.device)
        if keep is not None:
            weights = weights * keep[:, None, None, None].to(weights.dtype)
        inv = inverse_boxes(boxes, FEATURE_STRIDE, hm, wm)
        return {"cboxes": base["crop_boxes"], "inv": inv, "pool5": base["pool5"].detach(),
                "box_ind": torch.zeros(len(boxes), dtype=torch.long, device=boxes.device),
                "count": paste_and_sum(weights, inv, (hm, wm)),  # (1, Hm, Wm)
                "memory": F.interpolate(self.memory_init, size=(hm, wm), mode="bilinear",
                                        align_corners=False), "keep": keep}

    def read(self, st: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits from the current memory (K, C), confidence (K,))."""
        hidden, confidence = self._read(st["memory"], st["cboxes"], st["box_ind"])
        return self.cls(hidden), confidence

    def write(self, st: dict, logits: torch.Tensor) -> None:
        """Every kept region writes its update, conditioned on ``logits`` (detached)."""
        st["memory"] = self._write(st["memory"], st["pool5"], logits.detach(), st["cboxes"],
                                   st["box_ind"], st["inv"], st["count"], st["keep"])

    def forward(self, image: torch.Tensor, boxes: torch.Tensor,
                keep: torch.Tensor | None = None) -> dict:
        """image (1, 3, H, W), boxes (K, 4) -> ``final`` (K, C) attended logits,
        ``iterations`` [ITER x (K, C)], ``attention`` (K, ITER), ``memories`` [ITER x
        (1, C_m, Hm, Wm)]. ``keep`` (K,) bool: regions allowed to write into the memory
        (all by default); every region is read and scored."""
        base = self.base.regions(image, boxes)
        st = self.start(base, boxes, keep)
        logits, confidences, memories = [], [], []
        for i in range(self.iterations):
            memories.append(st["memory"])
            mem_logits, confidence = self.read(st)
            logits.append(base["logits"] if i == 0 else mem_logits)
            confidences.append(confidence)
            if i + 1 < self.iterations:
                self.write(st, logits[-1])
        final, attention = attend(logits, confidences)
        return {"final": final, "iterations": logits, "attention": attention,
                "memories": memories, "modules": {"local": logits}}

    def losses(self, outputs: dict, classes: torch.Tensor) -> dict[str, torch.Tensor]:
        return reasoning_losses(list(outputs["modules"].values()), outputs["final"], classes,
                                self.beta, self.iter_loss_weight, self.final_loss_weight)
