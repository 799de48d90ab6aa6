"""The pure-PyTorch reference ops: TensorFlow's ``tf.image.crop_and_resize`` (bilinear) and the
separable paste-back. Used when the compiled ops (``ivr_ext``) are missing, and as the test oracle.

The model was written against TensorFlow, and its region features, the inverse crop that pastes
region maps back into the spatial memory, and the box gradients all depend on TF's exact
sampling rule, which differs from ``torchvision.ops.roi_align`` and ``F.grid_sample``:

* a normalised coordinate ``y`` maps to pixel ``y * (H - 1)`` (no half-pixel shift), and the
  ``h`` samples of a crop include both box edges; a 1-sample crop sits at the box centre;
* a sample outside ``[0, H - 1] x [0, W - 1]`` is ``extrapolation_value`` for every channel
  (neither clamped nor blended with the border);
* in-range samples interpolate between ``floor`` and ``ceil``, so at an integer coordinate
  the two taps coincide and the box gradient on that axis is 0 (TF's one-sided choice).

``sample_coords`` and ``bilinear_taps`` serve both ops, so the TF arithmetic lives in one place.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["crop_and_resize", "paste_and_sum", "paste_and_sum_reference", "sample_coords",
           "bilinear_taps", "bilinear_weights"]


def _check_size(size: Sequence[int], name: str) -> tuple[int, int]:
    """``size`` as two positive Python ints, or a ValueError naming ``name``."""
    try:
        h, w = (operator.index(s) for s in size)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be two ints (h, w), got {size!r}") from None
    if h < 1 or w < 1:
        raise ValueError(f"{name} must be positive, got ({h}, {w})")
    return h, w


def _check_boxes(boxes: Tensor, k: int | None = None) -> None:
    if boxes.dim() != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must have shape (K, 4), got {tuple(boxes.shape)}")
    if k is not None and boxes.shape[0] != k:
        raise ValueError(f"boxes has {boxes.shape[0]} rows but {k} were expected")
    if not boxes.is_floating_point():
        raise ValueError(f"boxes must be floating point, got {boxes.dtype}")


def sample_coords(lo: Tensor, hi: Tensor, in_size: int, out_size: int) -> tuple[Tensor, Tensor]:
    """TF's sample positions along one axis.

    Args:
        lo, hi: (K,) normalised box edges on this axis (y1, y2 or x1, x2); ``hi < lo`` mirrors.
        in_size: number of input pixels on this axis (H or W).
        out_size: number of samples (crop height or width).

    Returns:
        coords: (K, out_size) positions in input pixels, in ``lo``'s dtype.
        valid: (K, out_size) bool, ``0 <= coords <= in_size - 1``.
    """
    span = in_size - 1
    if out_size > 1:
        # TF's forward kernel, in float32 for float32 and in exactly this order:
        #   scale = ((hi - lo) * span) / (out_size - 1);  coord = lo * span + i * scale.
        # Reassociating (e.g. span / (out_size - 1) first, or one fused lerp) moves samples by an
        # ulp, and samples on a box edge at 0 or 1 then flip between kept and extrapolated.
        # The divisor is a device tensor because CUDA divides by a Python scalar as a multiply
        # by its reciprocal, which is not bit-identical to a true division.
        divisor = torch.full((), out_size - 1, dtype=lo.dtype, device=lo.device)
        scale = (hi - lo) * span / divisor
        steps = torch.arange(out_size, dtype=lo.dtype, device=lo.device)
        coords = (lo * span)[:, None] + steps * scale[:, None]
    else:
        # TF computes 0.5 * (lo + hi) * span in double and rounds once to float; the product
        # of a float and a small integer is exact in double, so the float32 product agrees.
        coords = ((lo + hi) * 0.5 * span)[:, None]
    valid = (coords >= 0) & (coords <= span)
    return coords, valid


def bilinear_taps(coords: Tensor, valid: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The two interpolation taps of each sample.

    Args:
        coords, valid: (K, n) as returned by :func:`sample_coords`.

    Returns:
        lo, hi: (K, n) int64 indices ``floor(coords)``, ``ceil(coords)``; 0 where not valid.
        lerp: (K, n) weight of ``hi`` (``coords - floor(coords)``); 0 where not valid.
    """
    # Dropped samples may sit anywhere (far outside, inf, NaN boxes): park them at pixel 0 so
    # the indices stay in range and their lerp stays finite. A NaN lerp would poison the
    # gradient of every tap even though ``torch.where`` later discards the sample.
    safe = torch.where(valid, coords, torch.zeros_like(coords))
    lo = torch.floor(safe)
    # floor and ceil have zero gradient, so d(lerp)/d(coords) = 1 and, at an integer
    # coordinate, lo == hi: both taps read the same pixel and the box gradient term vanishes.
    lerp = safe - lo
    return lo.long(), torch.ceil(safe).long(), lerp


def crop_and_resize(
    image: Tensor,
    boxes: Tensor,
    box_ind: Tensor,
    crop_size: Sequence[int],
    extrapolation_value: float = 0.0,
) -> Tensor:
    """Bilinear crops of ``image``, identical to ``tf.image.crop_and_resize`` (NCHW).

    Args:
        image: (B, C, H, W) floating point.
        boxes: (K, 4) normalised ``[y1, x1, y2, x2]``; may be flipped, zero-size or outside
            ``[0, 1]``. Cast to ``image.dtype``: sample coordinates are computed in the image's
            precision, as TF does (this is what makes float32 outputs bit-identical to TF).
        box_ind: (K,) integer, the image of each box, in ``[0, B)`` (not checked here, as that
            would need a device-to-host sync; an out-of-range index fails in the gather).
        crop_size: ``(ch, cw)`` positive ints.
        extrapolation_value: value of samples outside the image.

    Returns:
        (K, C, ch, cw) tensor of ``image.dtype``, differentiable w.r.t. ``image`` and ``boxes``.
    """
    if image.dim() != 4:
        raise ValueError(f"image must have shape (B, C, H, W), got {tuple(image.shape)}")
    if not image.is_floating_point():
        raise ValueError(f"image must be floating point, got {image.dtype}")
    _check_boxes(boxes)
    k = boxes.shape[0]
    if box_ind.shape != (k,):
        raise ValueError(f"box_ind must have shape ({k},) to match boxes, got {tuple(box_ind.shape)}")
    if box_ind.is_floating_point() or box_ind.is_complex() or box_ind.dtype == torch.bool:
        raise ValueError(f"box_ind must be an integer tensor, got {box_ind.dtype}")
    ch, cw = _check_size(crop_size, "crop_size")
    _, _, h, w = image.shape
    if h < 1 or w < 1:
        raise ValueError(f"image must have non-empty H and W, got {tuple(image.shape)}")

    if image.dtype in (torch.float16, torch.bfloat16):  # compute in float32, like the kernels
        return crop_and_resize(image.float(), boxes, box_ind, crop_size,
                               extrapolation_value).to(image.dtype)
    boxes = boxes.to(image.dtype)
    in_y, valid_y = sample_coords(boxes[:, 0], boxes[:, 2], h, ch)  # (K, ch)
    in_x, valid_x = sample_coords(boxes[:, 1], boxes[:, 3], w, cw)  # (K, cw)
    top, bottom, y_lerp = bilinear_taps(in_y, valid_y)
    left, right, x_lerp = bilinear_taps(in_x, valid_x)

    # Advanced indices on dims 0, 2, 3 around the channel slice: each gather is (K, ch, cw, C).
    b = box_ind.to(device=image.device, dtype=torch.long)[:, None, None]
    top, bottom = top[:, :, None], bottom[:, :, None]
    left, right = left[:, None, :], right[:, None, :]
    top_left, top_right = image[b, :, top, left], image[b, :, top, right]
    bottom_left, bottom_right = image[b, :, bottom, left], image[b, :, bottom, right]

    # TF's operation order (x first, then y) -- keep it for bit-identical float32 outputs.
    x_lerp = x_lerp[:, None, :, None]
    y_lerp = y_lerp[:, :, None, None]
    top_row = top_left + (top_right - top_left) * x_lerp
    bottom_row = bottom_left + (bottom_right - bottom_left) * x_lerp
    out = top_row + (bottom_row - top_row) * y_lerp

    valid = (valid_y[:, :, None] & valid_x[:, None, :])[..., None]
    out = torch.where(valid, out, float(extrapolation_value))
    return out.permute(0, 3, 1, 2).contiguous()


# --- paste-back --------------------------------------------------------------------------------
# Paste region maps back into a spatial map and sum them (the model's "inverse crop").
#
# The model writes each region's 7x7 update into the spatial memory by calling TF's
# ``crop_and_resize`` on the region map with an *inverse box* (see
# :func:`ivr_core.ops.boxes.inverse_boxes`), crop size = memory size, extrapolation 0, and summing
# over regions. Done literally, that materialises K x C x Hm x Wm (hundreds of MB for a few
# hundred regions at 38x50x512). Bilinear resampling is separable, and with extrapolation 0 so is
# the validity mask (a sample is kept iff its row and its column are both in range), so
#
#     out[c] = sum_k Wy[k] @ maps[k, c] @ Wx[k]^T
#
# with per-region row weights Wy[k] (Hm, ch) and column weights Wx[k] (Wm, cw) built from TF's
# sample coordinates; a dropped row or column is an all-zero row of Wy or Wx. The result equals
# the literal definition (:func:`paste_and_sum_reference`) up to float rounding.

def bilinear_weights(coords: Tensor, valid: Tensor, in_size: int) -> Tensor:
    """Dense interpolation matrices for TF's bilinear sampling along one axis.

    Args:
        coords, valid: (K, n) from :func:`sample_coords`.
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

    if maps.dtype in (torch.float16, torch.bfloat16):  # compute in float32, like the kernels
        return paste_and_sum(maps.float(), boxes, out_size).to(maps.dtype)
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
