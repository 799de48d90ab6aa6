"""The local module: a spatial memory read and written by every region, iterated
(docs/design.md, "The local module").

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
from ivr_core.models.backbone import FEATURE_STRIDE
from ivr_core.models.baseline import BaselineModel
from ivr_core.models.heads import ReasoningModel, attend, he_init, normal_init
from ivr_core.models.outputs import ModelOutputs
from ivr_core.ops import crop_and_resize, inverse_boxes, paste_and_sum

COUNT_EPS = 1e-6  # cells no box covers have count 0 and a zero update
WRITE_INITS = ("authors", "he")


def _conv(cin: int, cout: int, k: int, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, padding=k // 2, bias=bias)


def _norm(channels: int, kind: str, groups: int) -> nn.Module:
    return nn.GroupNorm(groups, channels) if kind == "group" else nn.Identity()


class ConvNorm(nn.Sequential):
    def __init__(self, cin: int, cout: int, k: int, norm: str, groups: int):
        super().__init__(he_init(_conv(cin, cout, k)), _norm(cout, norm, groups))


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
    """Per-region update d = u * (n - s) of the memory crop s from the input a (GRU-like).
    ``_a`` convs read the input (the authors' ``p_*``), ``_s`` convs the memory (``m_*``)."""

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


def resize_bilinear_tf1(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """TF1's legacy ``resize_bilinear`` (align_corners=False, no half-pixel centres), the
    authors' resize of the learned memory init: output cell ``i`` samples the input at
    ``i * in / out``, clamped at the last row/column. x (B, C, h, w) -> (B, C, *size)."""
    def axis(n_in: int, n_out: int):
        src = torch.arange(n_out, dtype=torch.float64) * (n_in / n_out)
        lo = src.floor().long().clamp(max=n_in - 1)
        hi = (lo + 1).clamp(max=n_in - 1)
        return lo, hi, (src - lo).to(x.dtype).to(x.device)

    (y0, y1, wy), (x0, x1, wx) = axis(x.shape[-2], size[0]), axis(x.shape[-1], size[1])
    rows = x[..., y0, :] + (x[..., y1, :] - x[..., y0, :]) * wy[:, None]  # (B, C, H, w)
    return rows[..., x0] + (rows[..., x1] - rows[..., x0]) * wx


class SpatialMemoryModel(ReasoningModel):
    """The local model: baseline head + spatial memory iterated ``iterations`` times +
    attention. ``write_init``: "authors" initialises the memory write (the 1x1 conv on
    pool5, the FC on the logits, the six gate convs of the update) with N(0, 0.01) as the
    authors do; "he" with variance scaling like the other memory layers."""

    def __init__(self, base: BaselineModel, channels: int = 512, init_size: int = 20,
                 iterations: int = 3, fc_dim: int = 4096, context_layers: int = 3,
                 input_convs: int = 2, gate_kernel: int = 3, beta: float = 0.5,
                 iter_loss_weight: float = 1.0, final_loss_weight: float = 1.0,
                 attention_prior_weight: float = 0.0, attention_temperature: float = 1.0,
                 norm: str = "none", norm_groups: int = 32, write_init: str = "authors"):
        super().__init__(iterations, beta, iter_loss_weight, final_loss_weight,
                         attention_prior_weight, attention_temperature)
        if write_init not in WRITE_INITS:
            raise ValueError(f"write_init must be one of {WRITE_INITS}, got {write_init!r}")
        self.base = base
        s, c, num_classes = base.crop_size, channels, base.num_classes
        self.memory_init = nn.Parameter(torch.zeros(1, c, init_size, init_size))
        self.context = Context(c, context_layers, norm, norm_groups)
        self.fc = nn.Sequential(he_init(AccumulatingLinear(c * s * s, fc_dim)), nn.ReLU(),
                                he_init(AccumulatingLinear(fc_dim, fc_dim)), nn.ReLU())
        self.cls = normal_init(nn.Linear(fc_dim, num_classes))
        self.confidence = normal_init(nn.Linear(fc_dim, 1, bias=False))
        self.input_pool5 = nn.Sequential(_conv(base.backbone.feature_channels, c, 1),
                                         _norm(c, norm, norm_groups))
        self.input_logits = nn.Linear(num_classes, c, bias=False)
        self.input_convs = nn.ModuleList(ConvNorm(c, c, 3, norm, norm_groups)
                                         for _ in range(input_convs - 1))
        self.update = GatedUpdate(c, gate_kernel)
        init = normal_init if write_init == "authors" else he_init
        for layer in (self.input_pool5[0], self.input_logits, *self.update.children()):
            init(layer)

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
        # float32 under autocast too (the ops' autocast rule): a sum over many boxes
        # keeps its small updates
        pasted = paste_and_sum(delta, inv, memory.shape[-2:])  # (C_m, Hm, Wm)
        return memory + (pasted / count.clamp_min(COUNT_EPS))[None]

    def start(self, base: dict, boxes: torch.Tensor, keep: torch.Tensor | None) -> dict:
        """What every iteration of one image shares: crop and inverse boxes, the count of
        writing boxes per memory cell (float32), the detached pool5, and the initial memory
        S_0 (float32)."""
        hm, wm = base["feature"].shape[-2:]
        s = self.base.crop_size
        weights = torch.ones(len(boxes), 1, s, s, dtype=torch.float32, device=boxes.device)
        if keep is not None:
            weights = weights * keep[:, None, None, None].to(weights.dtype)
        inv = inverse_boxes(boxes, FEATURE_STRIDE, hm, wm)
        return {"cboxes": base["crop_boxes"], "inv": inv, "pool5": base["pool5"].detach(),
                "box_ind": torch.zeros(len(boxes), dtype=torch.long, device=boxes.device),
                "count": paste_and_sum(weights, inv, (hm, wm)),  # (1, Hm, Wm), float32
                "memory": resize_bilinear_tf1(self.memory_init.float(), (hm, wm)),
                "keep": keep}

    def read(self, st: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits from the current memory (K, C), confidence (K,))."""
        hidden, confidence = self._read(st["memory"], st["cboxes"], st["box_ind"])
        return self.cls(hidden), confidence

    def write(self, st: dict, logits: torch.Tensor) -> None:
        """Every kept region writes its update, conditioned on ``logits`` (detached)."""
        st["memory"] = self._write(st["memory"], st["pool5"], logits.detach(), st["cboxes"],
                                   st["box_ind"], st["inv"], st["count"], st["keep"])

    def forward(self, image: torch.Tensor, boxes: torch.Tensor,
                keep: torch.Tensor | None = None) -> ModelOutputs:
        """image (1, 3, H, W), boxes (K, 4) -> ``final`` (K, C) attended logits,
        ``iterations`` [ITER x (K, C)], ``attention`` and ``confidence`` (K, ITER),
        ``memories`` [ITER x (1, C_m, Hm, Wm)], ``modules`` {"local": iterations}.
        ``keep`` (K,) bool: regions allowed to write into the memory (all by default);
        every region is read and scored."""
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
        return {**attend(logits, confidences, self.temperature(), self.offset()),
                "iterations": logits,
                "memories": memories, "modules": {"local": logits}}
