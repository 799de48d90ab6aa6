"""The global module: graph reasoning over regions and classes (docs/global.md).

Nodes are the image's regions and the dataset's classes. One reasoning step, from region
features f (K, D) and the current class probabilities p (K, C) of every region:

- spatial path: f is propagated over the region graph (one weight matrix per edge type):
  h_s = sum_t A_t f W_t;
- semantic path: region beliefs go to the classes through the assignment graph (p), are added
  to the class nodes' own features (learned embeddings), propagated over every edge type of
  the knowledge graph, and come back to the regions through p:
  g = (p^T f W_r) / (p^T 1) + E W_e;  g' = relu(g W_0 + sum_e A_e g W_e);  h_c = p g';
- the region output relu([f W_f, h_s, h_c] W_o) feeds a classifier and a confidence for the
  attention over modules and iterations.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ivr_core.graph.knowledge import EDGE_TYPES
from ivr_core.graph.regions import REGION_EDGES


def _linear(cin: int, cout: int, bias: bool = True) -> nn.Linear:
    layer = nn.Linear(cin, cout, bias=bias)
    nn.init.kaiming_normal_(layer.weight, mode="fan_in", nonlinearity="relu")
    if bias:
        nn.init.zeros_(layer.bias)
    return layer


class GlobalReasoning(nn.Module):
    def __init__(self, in_dim: int, num_classes: int, hidden: int = 256, class_dim: int = 128,
                 kg_edges: int = 0):
        super().__init__()
        self.hidden = hidden
        self.region_in = _linear(in_dim, hidden)
        self.spatial = _linear(hidden, hidden * len(REGION_EDGES), bias=False)
        self.to_class = _linear(hidden, hidden, bias=False)
        self.class_embedding = nn.Parameter(torch.randn(num_classes, class_dim) * 0.01)
        self.class_in = _linear(class_dim, hidden)
        self.kg_self = _linear(hidden, hidden)
        self.kg = _linear(hidden, hidden * len(EDGE_TYPES), bias=False)
        self.out = _linear(3 * hidden, hidden)
        self.cls = nn.Linear(hidden, num_classes)
        nn.init.normal_(self.cls.weight, std=0.01)
        nn.init.zeros_(self.cls.bias)
        self.confidence = nn.Linear(hidden, 1, bias=False)
        nn.init.normal_(self.confidence.weight, std=0.01)
        # the knowledge graph travels with the weights (checkpoints need no graph file)
        self.register_buffer("kg_index", torch.zeros(2, kg_edges, dtype=torch.long))
        self.register_buffer("kg_weight", torch.zeros(kg_edges))
        self.register_buffer("kg_type", torch.zeros(kg_edges, dtype=torch.long))

    def set_graph(self, index: torch.Tensor, weight: torch.Tensor, kind: torch.Tensor) -> None:
        self.kg_index, self.kg_weight, self.kg_type = index, weight, kind

    def _propagate(self, g: torch.Tensor) -> torch.Tensor:
        """g (C, H) -> messages (C, H): sum over edges (src -> dst, type e) of w g[src] W_e."""
        src, dst = self.kg_index
        per_type = self.kg(g).view(g.shape[0], len(EDGE_TYPES), self.hidden)  # (C, E, H)
        messages = per_type[src, self.kg_type] * self.kg_weight[:, None].to(g.dtype)
        return torch.zeros_like(g).index_add_(0, dst, messages)

    def forward(self, feats: torch.Tensor, probs: torch.Tensor, region_adj: torch.Tensor,
                keep: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """feats (K, D), probs (K, C), region_adj (T, K, K) -> logits (K, C), confidence (K,).
        Regions with ``keep`` False send nothing to the classes (they still receive)."""
        f = F.relu(self.region_in(feats))  # (K, H)
        k = f.shape[0]
        spatial = torch.einsum("tij,jth->ih", region_adj.to(f.dtype),
                               self.spatial(f).view(k, -1, self.hidden))  # (K, H)
        send = probs if keep is None else probs * keep[:, None].to(probs.dtype)
        beliefs = send.t() @ self.to_class(f) / send.sum(0)[:, None].clamp_min(1e-6)  # (C, H)
        g = beliefs + self.class_in(self.class_embedding)
        g = F.relu(self.kg_self(g) + self._propagate(g))
        semantic = probs @ g  # (K, H)
        h = F.relu(self.out(torch.cat([f, spatial, semantic], 1)))
        return self.cls(h), self.confidence(h)[:, 0]
