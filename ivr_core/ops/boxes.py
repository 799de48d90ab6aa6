"""Region boxes in the model's feature-map conventions.

Boxes come in scaled-image pixels ``x1, y1, x2, y2`` (inclusive). Dividing by the feature
stride gives feature coordinates, where feature cell i sits at i: no half-cell shift, exactly
the convention of TF's ``crop_and_resize`` (normalised 0 and 1 are the first and last cells).

* :func:`crop_boxes` normalises a box for cropping a region out of a (Hm, Wm) feature map.
* :func:`inverse_boxes` gives the box that, used on a region's own small map, samples that map
  at the feature-map cells: cropping with it to size (Hm, Wm) pastes the region map back over
  its box (:func:`ivr_core.ops.paste_and_sum`). Cells outside the box fall outside the
  region map and are extrapolated to 0.
"""

from __future__ import annotations

import operator

import torch
from torch import Tensor

from .reference import _check_boxes

__all__ = ["crop_boxes", "inverse_boxes"]


def _feature_coords(boxes_px: Tensor, stride: float, feat_h: int, feat_w: int) -> tuple[Tensor, ...]:
    """Validated ``x1, y1, x2, y2`` (each (K,)) in feature cells."""
    _check_boxes(boxes_px)
    if not stride > 0:
        raise ValueError(f"stride must be positive, got {stride!r}")
    for name, size in (("feat_h", feat_h), ("feat_w", feat_w)):
        if operator.index(size) < 1:
            raise ValueError(f"{name} must be a positive int, got {size!r}")
    return _exact_div(boxes_px, stride).unbind(1)


def _exact_div(t: Tensor, d: float) -> Tensor:
    # Divide by a device tensor: CUDA turns division by a Python scalar into a multiply by its
    # reciprocal, which is not bit-identical to the CPU result unless d is a power of two.
    return t / torch.full((), float(d), dtype=t.dtype, device=t.device)


def crop_boxes(boxes_px: Tensor, stride: float, feat_h: int, feat_w: int) -> Tensor:
    """Normalised crop boxes for a (feat_h, feat_w) feature map.

    Args:
        boxes_px: (K, 4) ``x1, y1, x2, y2`` in scaled-image pixels.
        stride: image pixels per feature cell (16 for conv4/conv5 of the backbone).
        feat_h, feat_w: feature map size (Hm, Wm).

    Returns:
        (K, 4) ``[y1, x1, y2, x2]`` in feature cells divided by ``Hm - 1`` / ``Wm - 1`` (1 for a
        one-cell axis, so it does not divide by zero), in ``boxes_px``' dtype.
    """
    x1, y1, x2, y2 = _feature_coords(boxes_px, stride, feat_h, feat_w)
    dh = max(feat_h - 1, 1)
    dw = max(feat_w - 1, 1)
    y1, y2 = _exact_div(y1, dh), _exact_div(y2, dh)
    x1, x2 = _exact_div(x1, dw), _exact_div(x2, dw)
    return torch.stack([y1, x1, y2, x2], dim=1)


def inverse_boxes(
    boxes_px: Tensor, stride: float, feat_h: int, feat_w: int, eps: float = 1e-14
) -> Tensor:
    """Inverse boxes that paste a region map back over its box in a (feat_h, feat_w) map.

    With ``(x1', y1', x2', y2') = boxes_px / stride``, ``h = max(y2' - y1', eps)`` and
    ``w = max(x2' - x1', eps)``, the box is ``[-y1'/h, -x1'/w, (Hm-1-y1')/h, (Wm-1-x1')/w]``:
    the feature map's corner cells expressed in the region's normalised frame, where the region
    spans [0, 1]. Pasting with it, feature row i samples the (ch, cw) region map at row
    ``(i - y1') / h * (ch - 1)``: the map's first and last rows land on y1' and y2'.

    Args:
        boxes_px: (K, 4) ``x1, y1, x2, y2`` in scaled-image pixels.
        stride: image pixels per feature cell.
        feat_h, feat_w: feature map size (Hm, Wm), the paste target.
        eps: floor on the box size, so a zero-size or flipped box gives huge but finite inverse
            boxes (it collapses to a line or point) instead of a division by zero.

    Returns:
        (K, 4) normalised ``[y1, x1, y2, x2]``, in ``boxes_px``' dtype.
    """
    x1, y1, x2, y2 = _feature_coords(boxes_px, stride, feat_h, feat_w)
    h = (y2 - y1).clamp(min=eps)
    w = (x2 - x1).clamp(min=eps)
    return torch.stack([(0 - y1) / h, (0 - x1) / w, (feat_h - 1 - y1) / h, (feat_w - 1 - x1) / w], dim=1)
