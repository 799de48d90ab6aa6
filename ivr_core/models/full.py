"""The models with the global module: ``global`` (graph reasoning and attention) and
``full`` (local spatial memory + global graph reasoning, cross-fed, with attention).

Both start from the baseline's prediction (iteration 0). At every later iteration each
module reasons from the other module's latest prediction (the global model, alone, from its
own): the memory is written with the global module's class beliefs, the graphs are read
with the local module's. Attention over every module and iteration combines them.
"""

from __future__ import annotations

import torch
from torch import nn

from ivr_core.graph.regions import region_graph
from ivr_core.models.baseline import BaselineModel
from ivr_core.models.graph import GlobalReasoning
from ivr_core.models.heads import ReasoningModel, attend, candidate_logits, normal_init
from ivr_core.models.memory import SpatialMemoryModel
from ivr_core.models.outputs import ModelOutputs


def _probs(logits: torch.Tensor) -> torch.Tensor:
    return torch.softmax(logits.detach().float(), 1).to(logits.dtype)


class GlobalModel(ReasoningModel):
    """The baseline head plus a :class:`GlobalReasoning` iterated from its own predictions;
    ``losses`` as for :class:`ReasoningModel`."""

    chains = ("global",)

    def __init__(self, base: BaselineModel, reasoning: GlobalReasoning, delta: float = 50.0,
                 layout: bool = True, **losses):
        super().__init__(**losses)
        self.base, self.global_, self.delta, self.layout = base, reasoning, delta, layout
        self.base_confidence = normal_init(nn.Linear(base.backbone.out_channels, 1, bias=False))

    def forward(self, image: torch.Tensor, boxes: torch.Tensor,
                keep: torch.Tensor | None = None) -> ModelOutputs:
        """Like the memory model's outputs; ``modules`` = {"global": [ITER x (K, C)]}."""
        base = self.base.regions(image, boxes)
        feats = base["fc7"].detach()
        adj = region_graph(boxes, self.delta, keep, self.layout)
        memory = self.global_.init_memory(feats)
        logits, confidences = [base["logits"]], [self.base_confidence(feats)[:, 0]]
        for _ in range(1, self.iterations):
            g, c, memory = self.global_(memory, _probs(logits[-1]), adj, keep)
            logits.append(g)
            confidences.append(c)
        return {**attend(logits, confidences, self.temperature(), self.offset()),
                "iterations": logits,
                "modules": {"global": logits}}


class FullModel(SpatialMemoryModel):
    """The local module of :class:`SpatialMemoryModel` plus a :class:`GlobalReasoning`."""

    chains = ("local", "global")

    def __init__(self, base: BaselineModel, reasoning: GlobalReasoning, delta: float = 50.0,
                 layout: bool = True, **memory):
        super().__init__(base, **memory)
        self.global_, self.delta, self.layout = reasoning, delta, layout

    def forward(self, image: torch.Tensor, boxes: torch.Tensor,
                keep: torch.Tensor | None = None) -> ModelOutputs:
        """``iterations`` is the local chain; ``modules`` = {"local": [...], "global": [...]},
        both starting with the baseline's prediction; ``attention`` (K, 2 ITER - 1) over
        [local 0 .. ITER-1, global 1 .. ITER-1]."""
        base = self.base.regions(image, boxes)
        adj = region_graph(boxes, self.delta, keep, self.layout)
        st = self.start(base, boxes, keep)
        memories, g_memory = [st["memory"]], self.global_.init_memory(base["fc7"].detach())
        _, confidence = self.read(st)
        local, global_ = [base["logits"]], [base["logits"]]
        local_conf, global_conf = [confidence], []
        for _ in range(1, self.iterations):
            self.write(st, global_[-1])  # the memory hears the global module's beliefs
            memories.append(st["memory"])
            g, c, g_memory = self.global_(g_memory, _probs(local[-1]), adj, keep)  # and back
            l_logits, l_conf = self.read(st)
            local.append(l_logits)
            local_conf.append(l_conf)
            global_.append(g)
            global_conf.append(c)
        modules = {"local": local, "global": global_}
        return {**attend(candidate_logits(modules), local_conf + global_conf,
                         self.temperature(), self.offset()),
                "iterations": local, "memories": memories, "modules": modules}
