"""Differentiable region ops with TensorFlow's ``crop_and_resize`` semantics (pure PyTorch)."""

from .boxes import crop_boxes, inverse_boxes
from .crop_and_resize import crop_and_resize
from .paste import paste_and_sum

__all__ = ["crop_and_resize", "paste_and_sum", "crop_boxes", "inverse_boxes"]
