"""Evaluation of region classification (numpy only; no torch import here)."""

from ivr_core.evaluation.metrics import evaluate, format_row

__all__ = ["evaluate", "format_row"]
