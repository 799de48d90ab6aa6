"""The public region ops: the compiled kernels of ``ivr_ext`` when they are installed and
cover the tensor's device and dtype, the pure-PyTorch reference otherwise.

``set_backend("auto" | "compiled" | "reference")`` (config ``runtime.ops``) forces either.
The first call says which implementation runs, once per process (a demo that trains and
tests several models says it once).

Under autocast (``runtime.amp``) both implementations compute in float32 and return float32
for float16/bfloat16 inputs: the compiled ops through their autocast kernels (``ivr_ext``),
the reference through :func:`_float32_under_autocast`. So mixed precision runs the compiled
CPU kernels (float32/float64 only) rather than falling back, and sums of many regions are
not rounded to 16 bits.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from torch import Tensor

from ivr_core.errors import IvrError
from ivr_core.ops import reference

BACKENDS = ("auto", "compiled", "reference")
_COMPILED_DTYPES = {"cpu": (torch.float32, torch.float64),
                    "cuda": (torch.float32, torch.float64, torch.float16, torch.bfloat16)}
_HALF = (torch.float16, torch.bfloat16)


class OpsBackendWarning(UserWarning):
    """Which implementation of the region ops runs (said once per process)."""


_state = {"mode": "auto", "said": set()}  # said: `use` values already announced
_ext = {}


def compiled_status() -> tuple[bool, str]:
    """(loaded, description): whether ``ivr_ext`` imports, and its version or the reason."""
    if "module" not in _ext:
        try:
            import ivr_ext
            _ext["module"] = ivr_ext
            kinds = [d for d in ("cpu", "cuda") if ivr_ext.has_kernel(d)]
            _ext["why"] = f"ivr_ext {ivr_ext.__version__} ({'+'.join(kinds)} kernels)"
        except (ImportError, OSError) as e:  # not built, or built for another torch
            _ext["module"] = None
            _ext["why"] = f"ivr_ext not loaded: {type(e).__name__}: {e}"
    return _ext["module"] is not None, _ext["why"]


def set_backend(mode: str) -> None:
    if mode not in BACKENDS:
        raise IvrError(f"unknown ops backend '{mode}'; use one of {', '.join(BACKENDS)}")
    if mode == "compiled" and not compiled_status()[0]:
        raise IvrError(f"runtime.ops = compiled but {compiled_status()[1]}; run `ivr build-ext` "
                       "or set runtime.ops = auto")
    _state["mode"] = mode


def _upcast(t: Tensor) -> bool:
    """Whether autocast of ``t``'s device is on and ``t`` is one that it runs in float32."""
    return t.dtype in _HALF and torch.is_autocast_enabled(t.device.type)


def _compiled_dtype(t: Tensor) -> torch.dtype:
    """The dtype the compiled kernel would see: float32 where the op's autocast kernel
    upcasts ``t`` (builds of ivr_ext without one see ``t``'s own dtype)."""
    upcast = _upcast(t) and _ext["module"].has_autocast(t.device.type)
    return torch.float32 if upcast else t.dtype


def _use_compiled(t: Tensor) -> bool:
    mode = _state["mode"]
    use = (mode != "reference" and compiled_status()[0]
           and _ext["module"].has_kernel(t.device.type)
           and _compiled_dtype(t) in _COMPILED_DTYPES.get(t.device.type, ()))
    if mode == "compiled" and not use:
        raise IvrError(f"runtime.ops = compiled but ivr_ext has no {t.device.type} kernel for "
                       f"{t.dtype}; rebuild with `ivr build-ext` or set runtime.ops = auto")
    if use not in _state["said"]:  # each implementation named once per process
        _state["said"].add(use)
        what = (f"compiled kernels, {compiled_status()[1]}" if use else
                f"the pure-PyTorch reference ({compiled_status()[1]}; `ivr build-ext` "
                "builds the faster kernels)")
        warnings.warn(f"region ops: {what}", OpsBackendWarning, stacklevel=3)
    return use


def _float32_under_autocast(fn, *args):
    """``fn(*args)`` the way the compiled ops' autocast kernels run: under autocast of the
    first tensor's device, float16/bfloat16 tensors upcast to float32 and the op run with
    autocast off, whatever the inputs' dtype (float32 inputs too: autocast must not lower
    the op's own matmuls)."""
    device = args[0].device.type
    if not torch.is_autocast_enabled(device):
        return fn(*args)
    args = [a.float() if isinstance(a, Tensor) and a.dtype in _HALF else a for a in args]
    with torch.autocast(device, enabled=False):
        return fn(*args)


def crop_and_resize(image: Tensor, boxes: Tensor, box_ind: Tensor, crop_size: Sequence[int],
                    extrapolation_value: float = 0.0) -> Tensor:
    """TensorFlow's ``crop_and_resize`` (bilinear), NCHW.

    image (B, C, H, W); boxes (K, 4) normalised ``[y1, x1, y2, x2]``; box_ind (K,) ->
    (K, C, ch, cw). Differentiable w.r.t. image and boxes.
    """
    if _use_compiled(image):
        ch, cw = crop_size
        return torch.ops.ivr.crop_and_resize(image, boxes, box_ind, int(ch), int(cw),
                                             float(extrapolation_value))
    return _float32_under_autocast(reference.crop_and_resize, image, boxes, box_ind, crop_size,
                                   extrapolation_value)


def paste_and_sum(maps: Tensor, boxes: Tensor, out_size: Sequence[int]) -> Tensor:
    """Sum over regions of each map (K, C, ch, cw) resampled over its (inverse) box onto an
    (Hm, Wm) grid, zeros outside -> (C, Hm, Wm); never materialises K x C x Hm x Wm."""
    if _use_compiled(maps):
        out_h, out_w = out_size
        return torch.ops.ivr.paste_and_sum(maps, boxes, int(out_h), int(out_w))
    return _float32_under_autocast(reference.paste_and_sum, maps, boxes, out_size)
