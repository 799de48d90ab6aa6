"""ivr's compiled ops, registered as ``torch.ops.ivr.crop_and_resize`` and
``torch.ops.ivr.paste_and_sum`` (CPU kernels always, CUDA kernels when built with CUDA).

Importing this package loads the library (schemas, kernels, autograd) and registers the ops'
fake and autocast kernels.
ivr uses the ops through ``ivr_core.ops``, which falls back to its pure-PyTorch reference
when this package is missing.
"""

import torch  # noqa: F401  (libtorch must be loaded before the extension library)

from ivr_ext import _C  # noqa: F401  (registers schemas, kernels and autograd)
from ivr_ext import _ops  # noqa: F401  (registers fake and autocast kernels)

__version__ = "0.1.0"


_KEYS = {"cpu": "CPU", "cuda": "CUDA"}


def has_kernel(device_type: str) -> bool:
    """Whether the ops have kernels for ``device_type`` ("cpu" or "cuda") in this build."""
    return device_type in _KEYS and torch._C._dispatch_has_kernel_for_dispatch_key(
        "ivr::crop_and_resize", _KEYS[device_type])


def has_autocast(device_type: str) -> bool:
    """Whether the ops run in float32 under ``device_type`` autocast (see _ops.py)."""
    return device_type in _KEYS and all(
        torch._C._dispatch_has_kernel_for_dispatch_key(op, "Autocast" + _KEYS[device_type])
        for op in _ops.AUTOCAST_OPS)
