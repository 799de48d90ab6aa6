"""TensorFlow's ``tf.image.crop_and_resize`` (bilinear) in pure PyTorch.

The model was written against TensorFlow, and its region features, the inverse crop that pastes
region maps back into the spatial memory, and the box gradients all depend on TF's exact
sampling rule, which differs from ``torchvision.ops.roi_align`` and ``F.grid_sample``:

* a normalised coordinate ``y`` maps to pixel ``y * (H - 1)`` (no half-pixel shift), and the
  ``h`` samples of a crop include both box edges; a 1-sample crop sits at the box centre;
* a sample outside ``[0, H - 1] x [0, W - 1]`` is ``extrapolation_value`` for every channel
  (neither clamped nor blended with the border);
* in-range samples interpolate between ``floor`` and ``ceil``, so at an integer coordinate
  the two taps coincide and the box gradient on that axis is 0 (TF's one-sided choice).

``sample_coords`` and ``bilinear_taps`` are shared with :mod:`ivr_core.ops.paste`, so the TF
arithmetic lives in one place.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["crop_and_resize", "sample_coords", "bilinear_taps"]


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
