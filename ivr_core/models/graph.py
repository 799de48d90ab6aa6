"""The global module: the paper's graph reasoning over regions and classes, with a region
memory carried across iterations (docs/global.md).

Nodes are the image's regions and the dataset's classes. The module keeps a region memory
M_r (K, H), initialised from the regions' features, and at each reasoning step, given the
current class probabilities p (K, C) of the regions (the assignment graph A_{r->c} = p^T,
A_{c->r} = p):

- spatial path:  G_spatial = sum_e A_e M_r W_e over the region-edge types;
- semantic path: G_c = sum_e A_e relu(A_{r->c} M_r W_{r->c} + M_c W_c) W_e over the
  knowledge-edge types, M_c the class nodes' features (word vectors of the class names when
  given, else learned embeddings);
- back to the regions: G_r = relu(G_spatial + relu(A_{c->r} G_c W_{c->r}));
- G_r gives the step's logits and its confidence for the attention, and updates the
  memory through a gate: M_r <- M_r + z * (G_r - M_r), z = sigmoid([G_r, M_r] W_z).

The class beliefs A_{r->c} M_r are sums weighted by the probabilities, so a class no region
believes in receives ~0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ivr_core.graph.knowledge import EDGE_TYPES
from ivr_core.graph.regions import REGION_EDGES
from ivr_core.models.heads import he_init, normal_init


def _linear(cin: int, cout: int, bias: bool = False) -> nn.Linear:
    return he_init(nn.Linear(cin, cout, bias=bias))


class GlobalReasoning(nn.Module):
    def __init__(self, in_dim: int, num_classes: int, hidden: int = 256, class_dim: int = 128,
                 kg_edges: int = 0, class_vectors: torch.Tensor | None = None):
        """``class_vectors`` (C, D): initial class node features (word vectors; rows of
        zeros for classes without one get a small random init); without them the class
        nodes are learned embeddings of size ``class_dim``, initialised N(0, 0.01)."""
        super().__init__()
        self.hidden = hidden
        self.region_in = _linear(in_dim, hidden, bias=True)  # M_r^0 = relu(fc7 W_in)
        self.spatial = _linear(hidden, hidden * len(REGION_EDGES))  # W_e, region edges
        self.to_class = _linear(hidden, hidden)  # W_{r->c}
        nodes = torch.randn(num_classes, class_dim) * 0.01
        if class_vectors is not None:
            nodes = torch.randn(class_vectors.shape) * 0.01
            covered = class_vectors.abs().sum(1) > 0
            nodes[covered] = class_vectors[covered].float()
        self.class_nodes = nn.Parameter(nodes)  # M_c
        self.class_in = _linear(nodes.shape[1], hidden)  # W_c
        self.kg = _linear(hidden, hidden * len(EDGE_TYPES))  # W_e, knowledge edges
        self.to_region = _linear(hidden, hidden)  # W_{c->r}
        self.gate = normal_init(nn.Linear(2 * hidden, hidden))
        self.cls = normal_init(nn.Linear(hidden, num_classes))
        self.confidence = normal_init(nn.Linear(hidden, 1, bias=False))
        # the knowledge graph travels with the weights (checkpoints need no graph file)
        self.register_buffer("kg_index", torch.zeros(2, kg_edges, dtype=torch.long))
        self.register_buffer("kg_weight", torch.zeros(kg_edges))
        self.register_buffer("kg_type", torch.zeros(kg_edges, dtype=torch.long))

    def set_graph(self, index: torch.Tensor, weight: torch.Tensor, kind: torch.Tensor) -> None:
        self.kg_index, self.kg_weight, self.kg_type = index, weight, kind

    def init_memory(self, feats: torch.Tensor) -> torch.Tensor:
        """The region memory M_r^0 (K, H) from the regions' features (K, D)."""
        return F.relu(self.region_in(feats))

    def class_beliefs(self, memory: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
        """A_{r->c} M_r W_{r->c} (C, H): each class receives the sum of the regions' memory
        weighted by how much they believe in it."""
        return probs.t() @ self.to_class(memory)

    def _propagate(self, nodes: torch.Tensor) -> torch.Tensor:
        """nodes (C, H) -> (C, H): sum over edges (src -> dst, type e) of w nodes[src] W_e."""
        src, dst = self.kg_index
        per_type = self.kg(nodes).view(nodes.shape[0], len(EDGE_TYPES), self.hidden)  # (C, E, H)
        messages = per_type[src, self.kg_type] * self.kg_weight[:, None].to(nodes.dtype)
        return torch.zeros_like(nodes).index_add_(0, dst, messages)

    def forward(self, memory: torch.Tensor, probs: torch.Tensor, region_adj: torch.Tensor,
                keep: torch.Tensor | None = None):
        """memory (K, H), probs (K, C) (detached), region_adj (T, K, K) -> logits (K, C),
        confidence (K,), the updated memory (K, H). Regions with ``keep`` False send
        nothing to the classes (the region graph already has them send nothing to regions);
        every region receives."""
        k = memory.shape[0]
        spatial = torch.einsum("tij,jth->ih", region_adj.to(memory.dtype),
                               self.spatial(memory).view(k, -1, self.hidden))  # (K, H)
        send = probs if keep is None else probs * keep[:, None].to(probs.dtype)
        nodes = F.relu(self.class_beliefs(memory, send) + self.class_in(self.class_nodes))
        semantic = F.relu(self.to_region(probs @ self._propagate(nodes)))  # (K, H)
        out = F.relu(spatial + semantic)  # G_r
        z = torch.sigmoid(self.gate(torch.cat([out, memory], 1)))
        return self.cls(out), self.confidence(out)[:, 0], memory + z * (out - memory)
