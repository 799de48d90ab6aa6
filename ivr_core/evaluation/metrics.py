"""Region-classification metrics of Iterative Visual Reasoning (Chen et al., CVPR 2018).

The paper reports four headline numbers for region classification with given boxes:
per-instance AP, per-instance AC, per-class AP and per-class AC. :func:`evaluate` computes
them, plus the mean score given to the true class, from a score matrix and the ground truth.

Conventions
-----------
* ``scores`` is an ``(N, C)`` array, one row per region; column 0 is the background class
  and is never predicted (ground-truth classes are ``1..C-1``).
* Prediction = argmax over columns ``1..C-1``; ties go to the lowest class index (numpy's
  ``argmax`` behaviour).
* Every ranking used for an AP is a **stable** descending sort: regions with equal scores
  keep their input order (the region that comes first in ``scores`` is ranked first).
  With ties the AP therefore depends on the order of the regions, exactly as a stable
  ``argsort`` would make it.
* Areas under precision/recall curves use the VOC 2010+ rule (:func:`voc_ap`).

This module only needs numpy; keep torch out of it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

__all__ = ["evaluate", "voc_ap"]

# the paper's four numbers, in its column order: (key in a result, column title)
HEADLINE = (("inst_ap", "inst AP"), ("inst_ac", "inst AC"), ("cls_ap", "cls AP"),
            ("cls_ac", "cls AC"))
HEADLINE_KEYS = tuple(key for key, _ in HEADLINE)
FLOAT_KEYS = HEADLINE_KEYS + ("inst_sc", "cls_sc")


def voc_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """Area under a precision/recall curve, VOC 2010+ style.

    ``recall`` and ``precision`` are the points of the curve in rank order (recall
    non-decreasing). A point at recall 0 / precision 0 is prepended and one at recall 1 /
    precision 0 appended; precision is made monotone non-increasing from the right
    (each point takes the best precision at any later point); the area is then
    ``sum((r[i+1] - r[i]) * p[i+1])`` over the points ``i`` where recall changes.
    """
    recall = np.asarray(recall, dtype=np.float64)
    precision = np.asarray(precision, dtype=np.float64)
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([0.0], precision, [0.0]))
    # Precision envelope: running maximum taken from the right.
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


def _ranked_ap(values: np.ndarray, hits: np.ndarray, num_relevant: int) -> float:
    """VOC AP of ranking regions by ``values`` (stable, descending), ``hits`` being relevant.

    Recall = hits so far / ``num_relevant``; precision = hits so far / rank. Regions scoring
    below the lowest hit cannot change any hit's rank, so only the others are sorted (they
    keep their input order, so ties still break by input order).
    """
    if not hits.any():
        return 0.0
    contenders = np.flatnonzero(values >= values[hits].min())
    order = contenders[np.argsort(-values[contenders], kind="stable")]
    ranks = np.flatnonzero(hits[order]) + 1
    tp = np.arange(1, ranks.size + 1, dtype=np.float64)
    return voc_ap(tp / num_relevant, tp / ranks)


def _validate(scores: Any, gt_classes: Any) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores)
    gt = np.asarray(gt_classes)
    if scores.ndim != 2:
        raise ValueError(f"scores must be a 2-D (N, C) array, got shape {scores.shape}")
    if not (np.issubdtype(scores.dtype, np.floating) or np.issubdtype(scores.dtype, np.integer)):
        raise ValueError(f"scores must be a real-valued array, got dtype {scores.dtype}")
    if gt.ndim != 1:
        raise ValueError(f"gt_classes must be a 1-D (N,) array, got shape {gt.shape}")
    if gt.shape[0] != scores.shape[0]:
        raise ValueError(
            f"scores has {scores.shape[0]} rows but gt_classes has {gt.shape[0]} entries; "
            "they must match (one row per region)"
        )
    if scores.shape[0] == 0:
        raise ValueError("no regions to evaluate")
    num_classes = scores.shape[1]
    if num_classes < 2:
        raise ValueError(
            f"scores must have at least 2 columns (background + 1 class), got {num_classes}"
        )
    if not np.issubdtype(gt.dtype, np.integer):
        raise ValueError(f"gt_classes must hold integers, got dtype {gt.dtype}")
    bad = (gt < 1) | (gt >= num_classes)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"gt_classes must lie in 1..{num_classes - 1} (0 is background), "
            f"found {int(gt[i])} at index {i} ({int(bad.sum())} bad entries)"
        )
    if scores.dtype == np.float16:
        # Exact and order-preserving; numpy's float16 comparisons are very slow.
        scores = scores.astype(np.float32)
    elif np.issubdtype(scores.dtype, np.integer):
        # Integer scores (unsigned ones too) must survive negation in the stable sort.
        scores = scores.astype(np.float64)
    if not np.isfinite(scores).all():
        raise ValueError("scores contain NaN or infinite values")
    return scores, gt.astype(np.int64, copy=False)


def _select_classes(classes: Iterable[int], num_classes: int) -> np.ndarray:
    wanted = np.asarray(list(classes))
    if wanted.size == 0:
        return wanted.astype(np.int64)
    if not np.issubdtype(wanted.dtype, np.integer) or wanted.ndim != 1:
        raise ValueError(f"classes must be an iterable of integer class ids, got {wanted!r}")
    bad = (wanted < 1) | (wanted >= num_classes)
    if bad.any():
        raise ValueError(
            f"classes must lie in 1..{num_classes - 1} (0 is background), "
            f"got {sorted(int(c) for c in wanted[bad])}"
        )
    return np.unique(wanted).astype(np.int64)


def _empty_result() -> dict[str, Any]:
    result: dict[str, Any] = {key: math.nan for key in FLOAT_KEYS}
    result.update(num_regions=0, num_classes_present=0, per_class={})
    return result


def _per_class(scores: np.ndarray, gt: np.ndarray, keep: np.ndarray, correct: np.ndarray,
               true_scores: np.ndarray) -> dict[str, dict[str, float | int]]:
    """``{str(c): {"ap", "ac", "sc", "count"}}`` for every class among the kept regions'
    ground truth (``keep``, ``correct``, ``true_scores``: (N,) per region)."""
    num_classes = scores.shape[1]
    kept_gt = gt[keep]
    count = np.bincount(kept_gt, minlength=num_classes)
    n_correct = np.bincount(kept_gt, weights=correct[keep].astype(np.float64),
                            minlength=num_classes)
    score_sum = np.bincount(kept_gt, weights=true_scores[keep], minlength=num_classes)
    per_class: dict[str, dict[str, float | int]] = {}
    for c in np.flatnonzero(count):
        positives = gt == c  # over all N regions: every region competes in the ranking
        per_class[str(int(c))] = {
            "ap": _ranked_ap(scores[:, c], positives, int(count[c])),
            "ac": float(n_correct[c] / count[c]),
            "sc": float(score_sum[c] / count[c]),
            "count": int(count[c]),
        }
    return per_class


def evaluate(
    scores: np.ndarray,
    gt_classes: np.ndarray,
    classes: Iterable[int] | None = None,
) -> dict[str, Any]:
    """Region-classification metrics of the IVR paper.

    Args:
        scores: ``(N, C)`` class scores (probabilities), column 0 = background.
        gt_classes: ``(N,)`` integer ground-truth classes in ``1..C-1``.
        classes: optional class ids to restrict the evaluation to (see below).

    Returns a dict with

    * ``inst_ac``: per-instance accuracy, correct / N (prediction = argmax over 1..C-1).
    * ``cls_ac``: mean over the classes present in the ground truth of the fraction of that
      class's regions predicted correctly.
    * ``cls_ap``: mean over the classes present of the AP of class c: all N regions ranked by
      ``scores[:, c]`` (stable descending), positives = regions whose gt is c,
      recall = tp / #positives, precision = tp / rank, area by :func:`voc_ap`.
    * ``inst_ap``: all N regions ranked by the score of their own true class (stable
      descending); a region is a hit when its prediction is correct;
      recall = hits so far / N, precision = hits so far / rank, area by :func:`voc_ap`.
    * ``inst_sc``: mean over regions of the true-class score; ``cls_sc``: mean over classes
      present of the mean true-class score of that class's regions.
    * ``num_regions`` (int), ``num_classes_present`` (int) and ``per_class``:
      ``{str(c): {"ap", "ac", "sc", "count"}}`` for every class present.

    Ties in a ranking keep the input order (stable sort), so with tied scores the APs depend
    on the order of the regions.

    With ``classes`` given, only the regions whose gt is in ``classes`` count for the
    per-instance metrics (N becomes their number), and the per-class means run over the
    classes of ``classes`` that are present. The per-class AP of such a class c still ranks
    **all** N regions by ``scores[:, c]``: a region of another class (even one outside
    ``classes``) scoring high for c is a false positive. This is how "AP on the
    context-dependent classes" is reported. Predictions stay the argmax over all classes
    1..C-1. When no region has a class in ``classes``, every float metric is NaN and
    ``num_regions`` is 0 (no exception).

    Raises:
        ValueError: on bad shapes, no regions at all ("no regions to evaluate"), ground
            truth outside ``1..C-1``, non-finite scores, or ``classes`` outside ``1..C-1``.
    """
    scores, gt = _validate(scores, gt_classes)
    num_classes = scores.shape[1]

    predicted = np.argmax(scores[:, 1:], axis=1) + 1  # background never predicted
    correct = predicted == gt
    true_scores = scores[np.arange(gt.size), gt].astype(np.float64)

    if classes is None:
        keep = np.ones(gt.size, dtype=bool)
    else:
        keep = np.isin(gt, _select_classes(classes, num_classes))
    num_regions = int(keep.sum())
    if num_regions == 0:
        return _empty_result()

    # Per-instance metrics over the kept regions.
    kept_correct = correct[keep]
    inst_ac = float(kept_correct.mean())
    inst_sc = float(true_scores[keep].mean())
    inst_ap = _ranked_ap(true_scores[keep], kept_correct, num_regions)

    per_class = _per_class(scores, gt, keep, correct, true_scores)

    def class_mean(key: str) -> float:
        return float(np.mean([entry[key] for entry in per_class.values()]))

    return {
        "inst_ap": inst_ap,
        "inst_ac": inst_ac,
        "cls_ap": class_mean("ap"),
        "cls_ac": class_mean("ac"),
        "inst_sc": inst_sc,
        "cls_sc": class_mean("sc"),
        "num_regions": num_regions,
        "num_classes_present": len(per_class),
        "per_class": per_class,
    }
