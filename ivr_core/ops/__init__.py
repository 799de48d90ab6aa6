"""Region ops with TensorFlow's ``crop_and_resize`` semantics: compiled kernels (``ivr_ext``)
when installed, the pure-PyTorch reference (:mod:`ivr_core.ops.reference`) otherwise."""

from .backend import OpsBackendWarning, compiled_status, crop_and_resize, paste_and_sum, set_backend
from .boxes import crop_boxes, inverse_boxes

__all__ = ["crop_and_resize", "paste_and_sum", "crop_boxes", "inverse_boxes", "set_backend",
           "compiled_status", "OpsBackendWarning"]
