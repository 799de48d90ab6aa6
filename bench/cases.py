"""Shapes, boxes and timing shared by bench/ops.py (PyTorch) and bench/tf_ops.py (TensorFlow).

NumPy only, so that TensorFlow can run from an environment without torch or ivr: both
sides build the same boxes from the same seeds.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

H, W, STRIDE = 38, 50, 16  # a 600 x 800 image at stride 16
FEAT_C, MEM_C = 1024, 512  # feature-map channels (crop), memory channels (paste)
CROP_SIZES = (7, 14)
KS = (16, 64, 256)
PASTE_SIZE = 7


def pixel_boxes(k: int) -> np.ndarray:
    """K random boxes of the image, (K, 4) pixel [x1, y1, x2, y2], 16 to 316 px a side."""
    rng = np.random.default_rng(k)
    xy = rng.random((k, 2)) * [700.0, 500.0]
    return np.clip(np.concatenate([xy, xy + 16 + rng.random((k, 2)) * 300], 1), None, 799)


def crop_boxes(k: int) -> np.ndarray:
    """The boxes normalised to the feature map, (K, 4) float32 [y1, x1, y2, x2]."""
    feat = pixel_boxes(k) / STRIDE
    return np.stack([feat[:, 1] / (H - 1), feat[:, 0] / (W - 1), feat[:, 3] / (H - 1),
                     feat[:, 2] / (W - 1)], 1).astype(np.float32)


def paste_boxes(k: int) -> np.ndarray:
    """The inverse boxes that paste a region's map back onto the feature map, (K, 4) float32."""
    feat = pixel_boxes(k) / STRIDE
    h = np.maximum(feat[:, 3] - feat[:, 1], 1e-14)
    w = np.maximum(feat[:, 2] - feat[:, 0], 1e-14)
    return np.stack([-feat[:, 1] / h, -feat[:, 0] / w, (H - 1 - feat[:, 1]) / h,
                     (W - 1 - feat[:, 0]) / w], 1).astype(np.float32)


def random(shape: tuple, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)


def median_ms(fn, repeat: int, warmup: int = 3) -> float:
    """Median wall time of ``fn()`` in ms over ``repeat`` calls after ``warmup`` calls; calls
    slower than 100 ms are repeated at most 7 times."""
    for _ in range(warmup):
        start = time.perf_counter()
        fn()
        first = time.perf_counter() - start
    if first > 0.1:
        repeat = min(repeat, 7)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def crop_case(crop: int, k: int) -> str:
    return f"crop {crop}x{crop} K={k}"


def paste_case(k: int) -> str:
    return f"paste K={k}"
