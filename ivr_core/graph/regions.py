"""The region graph: spatial relations between an image's regions from their boxes.

Five edge types: ``left_of``, ``right_of``, ``above``, ``below`` (between boxes that do not
overlap, by the dominant direction between their centres) and ``overlaps`` (boxes whose
intersection has a positive area; boxes that only touch do not overlap, and every region
overlaps itself). A directional edge j -> i carries the pixel kernel exp(-d_ij / delta),
d_ij the distance between the box centres in pixels of the network input; an overlap edge
carries the boxes' IoU (1 for the region itself). Each region's incoming weights, over all
types and itself, are divided by their total: the region and its close neighbours share
the messages, while a far region sends little even when it is the only other one.
"""

from __future__ import annotations

import torch

REGION_EDGES = ("left_of", "right_of", "above", "below", "overlaps")


def pairwise_iou(boxes: torch.Tensor) -> torch.Tensor:
    """IoU (K, K) of boxes x1 y1 x2 y2 taken as continuous rectangles (touching = 0)."""
    x1, y1, x2, y2 = boxes.unbind(1)
    iw = (torch.minimum(x2[:, None], x2[None]) - torch.maximum(x1[:, None], x1[None])).clamp(min=0)
    ih = (torch.minimum(y2[:, None], y2[None]) - torch.maximum(y1[:, None], y1[None])).clamp(min=0)
    inter = iw * ih
    area = (x2 - x1).clamp(min=0) * (y2 - y1).clamp(min=0)
    union = area[:, None] + area[None] - inter
    return torch.where(union > 0, inter / union.clamp_min(1e-12), torch.zeros_like(inter))


def region_graph(boxes: torch.Tensor, delta: float, keep: torch.Tensor | None = None,
                 layout: bool = True) -> torch.Tensor:
    """boxes (K, 4) x1 y1 x2 y2 in network-input pixels -> adjacency (5, K, K): row i holds
    the weights of the regions j that send to i (``adj[t, i, j]``: j is
    ``REGION_EDGES[t]`` of i). Regions with ``keep`` False send nothing to the others (they
    still receive, and keep their own self edge). ``layout`` False (``graph.regions = self``,
    a control) keeps only the self edges: no region hears another."""
    k = boxes.shape[0]
    boxes = boxes.float()
    eye = torch.eye(k, dtype=torch.bool, device=boxes.device)
    if not layout:
        return torch.cat([torch.zeros(4, k, k, device=boxes.device), eye[None].float()])
    centre = torch.stack([boxes[:, 0] + boxes[:, 2], boxes[:, 1] + boxes[:, 3]], 1) / 2
    dx = centre[None, :, 0] - centre[:, None, 0]  # (K, K): x_j - x_i
    dy = centre[None, :, 1] - centre[:, None, 1]
    kernel = torch.exp(-torch.sqrt(dx ** 2 + dy ** 2) / delta)
    iou = torch.where(eye, torch.ones_like(kernel), pairwise_iou(boxes))
    apart = (iou <= 0) & ~eye
    horizontal = dx.abs() >= dy.abs()
    masks = torch.stack([apart & horizontal & (dx < 0), apart & horizontal & (dx > 0),
                         apart & ~horizontal & (dy < 0), apart & ~horizontal & (dy > 0)])
    adj = torch.cat([masks * kernel, iou[None]])
    if keep is not None:
        sends = keep[None, :] | eye  # (K, K): j may send to i
        adj = adj * sends[None].to(adj.dtype)
    return adj / adj.sum((0, 2), keepdim=True).clamp_min(1e-12)
