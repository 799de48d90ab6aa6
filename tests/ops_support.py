"""Helpers for the region-op tests: the compiled ops, skipped or failed when ivr_ext is
missing (IVR_REQUIRE_EXT=1, as set by CI, makes it a failure), and device wrappers."""

import os

import pytest
import torch


def load_ext():
    try:
        import ivr_ext
    except ImportError as e:
        if os.environ.get("IVR_REQUIRE_EXT") == "1":
            pytest.fail(f"IVR_REQUIRE_EXT=1 but ivr_ext does not import: {e}")
        pytest.skip(f"ivr_ext not built (run `ivr build-ext`): {e}")
    return ivr_ext


def compiled_device(device):
    ext = load_ext()
    if device == "cuda" and not (torch.cuda.is_available() and ext.has_kernel("cuda")):
        pytest.skip("needs a CUDA GPU and ivr_ext built with CUDA")
    return device


def on_device(device, fn):
    """Run ``fn`` on ``device`` with CPU tensors in and out (autograd flows through .to)."""
    def run(*tensors, **kw):
        moved = [t.to(device) if isinstance(t, torch.Tensor) else t for t in tensors]
        out = fn(*moved, **kw)
        return out.cpu()
    return run


def compiled_crop(image, boxes, box_ind, crop_size, extrapolation_value=0.0):
    return torch.ops.ivr.crop_and_resize(image, boxes, box_ind, int(crop_size[0]),
                                         int(crop_size[1]), float(extrapolation_value))


def compiled_paste(maps, boxes, out_size):
    return torch.ops.ivr.paste_and_sum(maps, boxes, int(out_size[0]), int(out_size[1]))
