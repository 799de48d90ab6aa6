"""Paste region maps back into a spatial map and sum them (the model's "inverse crop").

The model writes each region's 7x7 update into the spatial memory by calling TF's
``crop_and_resize`` on the region map with an *inverse box* (see
:func:`ivr_core.ops.boxes.inverse_boxes`), crop size = memory size, extrapolation 0, and summing
over regions. Done literally, that materialises K x C x Hm x Wm (hundreds of MB for a few
hundred regions at 38x50x512). Bilinear resampling is separable, and with extrapolation 0 so is
the validity mask (a sample is kept iff its row and its column are both in range), so

    out[c] = sum_k Wy[k] @ maps[k, c] @ Wx[k]^T

with per-region row weights Wy[k] (Hm, ch) and column weights Wx[k] (Wm, cw) built from TF's
sample coordinates; a dropped row or column is an all-zero row of Wy or Wx. The result equals
the literal definition (:func:`paste_and_sum_reference`) up to float rounding.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .crop_and_resize import _check_boxes, _check_size, bilinear_taps, crop_and_resize, sample_coords

__all__ = ["paste_and_sum", "paste_and_sum_reference", "bilinear_weights"]


def bilinear_weights(coords: Tensor, valid: Tensor, in_size: int) -> Tensor:
    """Dense interpolation matrices for TF's bilinear sampling along one axis.

    Args:
        coords, valid: (K, n) from :func:`ivr_core.ops.crop_and_resize.sample_coords`.
        in_size: number of input pixels on this axis.

    Returns:
        (K, n, in_size) in ``coords``' dtype: row i holds ``1 - lerp`` at ``floor(coords[i])``
        and ``lerp`` at ``ceil(coords[i])`` (one 1 when they coincide), all zeros where not valid.
        Differentiable w.r.t. ``coords`` through ``lerp``.
    """
    lo, hi, lerp = bilinear_taps(coords, valid)
    pixels = torch.arange(in_size, device=coords.device)
    lerp = lerp[..., None]
    weights = (lo[..., None] == pixels) * (1 - lerp) + (hi[..., None] == pixels) * lerp
    # bilinear_taps parks dropped samples at pixel 0 with lerp 0; zero those rows here.
    return torch.where(valid[..., None], weights, 0.0)


def paste_and_sum(maps: Tensor, boxes: Tensor, out_size: Sequence[int]) -> Tensor:
    """Sum of the TF bilinear crops of each region map, without materialising them.

    Equals ``crop_and_resize(maps, boxes, arange(K), out_size, 0.0).sum(0)``.

    Args:
        maps: (K, C, ch, cw) floating point, one map per region.
        boxes: (K, 4) normalised ``[y1, x1, y2, x2]`` in each map's frame, usually inverse boxes
            (values well outside [0, 1]); cast to ``maps.dtype``.
        out_size: ``(Hm, Wm)`` positive ints.

    Returns:
        (C, Hm, Wm) tensor of ``maps.dtype``, differentiable w.r.t. ``maps`` and ``boxes``;
        zeros when K == 0. Peak extra memory is O(K * C * Hm * cw), not O(K * C * Hm * Wm).
    """
    if maps.dim() != 4:
        raise ValueError(f"maps must have shape (K, C, ch, cw), got {tuple(maps.shape)}")
    if not maps.is_floating_point():
        raise ValueError(f"maps must be floating point, got {maps.dtype}")
    k, c, ch, cw = maps.shape
    if ch < 1 or cw < 1:
        raise ValueError(f"maps must have non-empty ch and cw, got {tuple(maps.shape)}")
    _check_boxes(boxes, k)
    out_h, out_w = _check_size(out_size, "out_size")

    boxes = boxes.to(maps.dtype)
    wy = bilinear_weights(*sample_coords(boxes[:, 0], boxes[:, 2], ch, out_h), ch)  # (K, Hm, ch)
    wx = bilinear_weights(*sample_coords(boxes[:, 1], boxes[:, 3], cw, out_w), cw)  # (K, Wm, cw)

    # Rows first, one (Hm, ch) @ (ch, C*cw) product per region (shares Wy over channels
    # without expanding it): a[k, i, c, j] = sum_a Wy[k, i, a] maps[k, c, a, j].
    a = torch.bmm(wy, maps.transpose(1, 2).reshape(k, ch, c * cw)).view(k, out_h, c, cw)
    # Then regions and map columns together in one product, which also does the sum over k:
    # (C*Hm, K*cw) @ (K*cw, Wm). K == 0 gives a zero-length contraction, i.e. zeros.
    a = a.permute(2, 1, 0, 3).reshape(c * out_h, k * cw)
    b = wx.transpose(1, 2).reshape(k * cw, out_w)
    return (a @ b).view(c, out_h, out_w)


def paste_and_sum_reference(maps: Tensor, boxes: Tensor, out_size: Sequence[int]) -> Tensor:
    """The literal definition of :func:`paste_and_sum` (materialises K x C x Hm x Wm; tests)."""
    box_ind = torch.arange(maps.shape[0], device=maps.device)
    return crop_and_resize(maps, boxes, box_ind, out_size, 0.0).sum(0)
