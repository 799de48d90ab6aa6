"""Implementations of the region ops under test: the pure-PyTorch reference, and the
compiled ``ivr_ext`` kernels on CPU and CUDA.

Without ``ivr_ext`` the compiled cases are skipped, unless IVR_REQUIRE_EXT=1 (set by CI,
which builds the extension first) turns that into a failure. CUDA cases need a GPU.
"""

import pytest

from ivr_core.ops import reference
from ops_support import compiled_crop, compiled_device, compiled_paste, on_device

IMPLS = ["reference", "compiled-cpu", pytest.param("compiled-cuda", marks=pytest.mark.cuda)]


def _impl(name, ref, compiled):
    if name == "reference":
        return ref
    device = compiled_device(name.split("-")[1])
    return on_device(device, compiled)


@pytest.fixture(params=IMPLS)
def crop_impl(request):
    """crop_and_resize(image, boxes, box_ind, crop_size, extrapolation_value=0.0)."""
    return _impl(request.param, reference.crop_and_resize, compiled_crop)


@pytest.fixture(params=IMPLS)
def paste_impl(request):
    """paste_and_sum(maps, boxes, out_size)."""
    return _impl(request.param, reference.paste_and_sum, compiled_paste)
