"""What every model's ``forward`` returns (K regions, C classes, N attention candidates)."""

from __future__ import annotations

from typing import TypedDict

import torch


class _Always(TypedDict):
    final: torch.Tensor  # (K, C) logits: the model's answer (attended, for reasoning models)
    iterations: list[torch.Tensor]  # [ITER x (K, C)] the first module's chain (baseline: [final])


class ModelOutputs(_Always, total=False):
    """``final`` and ``iterations`` always; the reasoning models add the rest."""

    attention: torch.Tensor  # (K, N) softmax weights over the candidates
    confidence: torch.Tensor  # (K, N) the candidates' scores before the softmax
    modules: dict[str, list[torch.Tensor]]  # module name -> its chain [ITER x (K, C)]
    memories: list[torch.Tensor]  # the local memory: [ITER x (1, C_m, Hm, Wm)] (float32)
