"""``ivr predict``: labels for the boxes of a user's images."""

from ivr_core.predict.box_sources import open_source
from ivr_core.predict.runner import PredictReport, list_images, predict

__all__ = ["open_source", "predict", "list_images", "PredictReport"]
