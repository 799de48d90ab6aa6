"""What a bug report needs: versions, devices, toolchain and whether the compiled ops load."""

from __future__ import annotations

import platform
import sys

import numpy as np
import torch

from ivr_core import __version__


def collect() -> list[tuple[str, str]]:
    import cv2
    import torchvision

    from ivr_core.extension import probe
    from ivr_core.ops import compiled_status

    loaded, ops = compiled_status()
    rows = [("ivr", __version__), ("python", sys.version.split()[0]),
            ("platform", platform.platform()), ("numpy", np.__version__),
            ("opencv", cv2.__version__), ("torchvision", torchvision.__version__),
            ("torch CPU threads", str(torch.get_num_threads())),
            ("CUDA available", str(torch.cuda.is_available())),
            ("compiled ops", ops if loaded else f"no ({ops}); pure-PyTorch reference in use")]
    tc = probe()
    rows += [(k, v) for k, v in tc.rows() if k not in ("kernels to build", "CUDA arch list")]
    return rows
