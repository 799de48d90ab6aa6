"""Evaluation of region classification (numpy only; no torch import here)."""

from ivr_core.evaluation.metrics import evaluate

__all__ = ["evaluate"]
