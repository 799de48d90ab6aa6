"""The region graph: spatial relations between an image's regions from their boxes.

Five edge types: ``left_of``, ``right_of``, ``above``, ``below`` (between boxes that do not
overlap, by the dominant direction between their centres) and ``overlaps``. An edge i -> j
of a type carries exp(-d_ij / delta), d_ij the distance between the box centres divided by
the image diagonal; each type is row-normalised (a region's incoming messages of one type
average its neighbours of that type).
"""

from __future__ import annotations

import torch

REGION_EDGES = ("left_of", "right_of", "above", "below", "overlaps")


def region_graph(boxes: torch.Tensor, image_size: tuple[int, int], delta: float,
                 keep: torch.Tensor | None = None) -> torch.Tensor:
    """boxes (K, 4) x1 y1 x2 y2 -> adjacency (5, K, K): row i holds the weights of the
    regions j that send to i (``adj[t, i, j]``: j is ``REGION_EDGES[t]`` of i). Regions
    with ``keep`` False send nothing (they are still given messages)."""
    k = boxes.shape[0]
    h, w = image_size
    centre = torch.stack([boxes[:, 0] + boxes[:, 2], boxes[:, 1] + boxes[:, 3]], 1) / 2
    dx = centre[None, :, 0] - centre[:, None, 0]  # (K, K): x_j - x_i
    dy = centre[None, :, 1] - centre[:, None, 1]
    weight = torch.exp(-torch.sqrt(dx ** 2 + dy ** 2) / ((h ** 2 + w ** 2) ** 0.5 * delta))
    ix = (torch.minimum(boxes[:, None, 2], boxes[None, :, 2])
          - torch.maximum(boxes[:, None, 0], boxes[None, :, 0]) + 1).clamp(min=0)
    iy = (torch.minimum(boxes[:, None, 3], boxes[None, :, 3])
          - torch.maximum(boxes[:, None, 1], boxes[None, :, 1]) + 1).clamp(min=0)
    overlap = (ix * iy > 0) & ~torch.eye(k, dtype=torch.bool, device=boxes.device)
    apart = ~overlap & ~torch.eye(k, dtype=torch.bool, device=boxes.device)
    horizontal = dx.abs() >= dy.abs()
    masks = torch.stack([apart & horizontal & (dx < 0), apart & horizontal & (dx > 0),
                         apart & ~horizontal & (dy < 0), apart & ~horizontal & (dy > 0),
                         overlap])
    adj = masks * weight
    if keep is not None:
        adj = adj * keep[None, None, :].to(adj.dtype)
    return adj / adj.sum(-1, keepdim=True).clamp_min(1e-12)
