"""Calibrating the attention on held-out images (``ivr calibrate``).

The attention's confidences are learned on the training images, where the baseline head
fits almost every region, so they cannot know which candidate generalises (docs/design.md,
"Attention"). Calibration keeps each region's learned confidences and fits, on a held-out
split (mval), a temperature T and one offset per candidate:

    attention = softmax(confidence / T + offset)

by minimising the cross-entropy of the attended answer on that split (L-BFGS, T within
[1/4, 256], a small L2 penalty on the offsets), as temperature scaling calibrates a
classifier. The cross-entropy is not the AP the answer is judged by: where a single
candidate's AP on the same split still beats the fitted answer's, that candidate's offset
is raised (``guard_best_candidate``). The result is ``<run>/calibration.json``, tied to one
checkpoint iteration; ``ivr test``, ``ivr predict`` and the Python API apply it when it
matches the checkpoint.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ivr_core.errors import IvrError
from ivr_core.evaluation.metrics import evaluate
from ivr_core.utils.io import write_json

CALIBRATION = "calibration.json"
LOG_T_RANGE = (math.log(0.25), math.log(256.0))
OFFSET_L2 = 1e-3
BONUSES = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0)  # tried on the guarded candidate's offset


def fit_attention(log_probs: np.ndarray, log_attention: np.ndarray, gt: np.ndarray,
                  steps: int = 200) -> tuple[float, np.ndarray]:
    """(T, offsets (N,)) minimising the cross-entropy of ``softmax(sum_n w_n log p_n)``,
    ``w = softmax(log_attention / T + offset)``; ``log_probs`` (R, N, C) of the N candidates,
    ``log_attention`` (R, N) at temperature 1, ``gt`` (R,)."""
    lp = torch.as_tensor(log_probs, dtype=torch.float64)
    la = torch.as_tensor(log_attention, dtype=torch.float64)
    target = torch.as_tensor(gt, dtype=torch.long)
    offset = torch.zeros(lp.shape[1], dtype=torch.float64, requires_grad=True)
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([offset, log_t], max_iter=steps, line_search_fn="strong_wolfe")

    def loss() -> torch.Tensor:
        opt.zero_grad()
        t = log_t.clamp(*LOG_T_RANGE).exp()
        w = torch.softmax(la / t + offset, 1)
        value = F.cross_entropy((w[:, :, None] * lp).sum(1), target) + OFFSET_L2 * offset.square().sum()
        value.backward()
        return value

    opt.step(loss)
    t = float(log_t.detach().clamp(*LOG_T_RANGE).exp())
    return t, (offset.detach() - offset.detach().mean()).numpy()


def attended(log_probs: np.ndarray, log_attention: np.ndarray, temperature: float,
             offset: np.ndarray | None) -> np.ndarray:
    """The attended class probabilities (R, C) at ``temperature`` and ``offset``."""
    scores = log_attention / temperature + (0 if offset is None else offset[None])
    w = np.exp(scores - scores.max(1, keepdims=True))
    w /= w.sum(1, keepdims=True)
    mixed = (w[:, :, None] * log_probs).sum(1)
    p = np.exp(mixed - mixed.max(1, keepdims=True))
    return p / p.sum(1, keepdims=True)


def mean_ap(probs: np.ndarray, gt: np.ndarray) -> float:
    """The mean of per-instance and per-class AP, the two numbers the answer is judged by."""
    metrics = evaluate(probs, gt)
    return (metrics["inst_ap"] + metrics["cls_ap"]) / 2


def guard_best_candidate(log_probs: np.ndarray, log_attention: np.ndarray, gt: np.ndarray,
                         temperature: float, offset: np.ndarray) -> tuple[np.ndarray, dict | None]:
    """(offsets, guard): the fitted offsets, unless a single candidate's mean AP on these
    held-out regions beats the attended answer's. Then that candidate's offset is raised by
    the bonus in ``BONUSES`` that gives the attended answer its best mean AP (the smallest
    among equals; none when no bonus helps): the attention still weighs every candidate per
    region, shifted towards the one these images show to be better. ``guard`` records the
    candidate's index, the bonus and the mean APs (None when the fit stands)."""
    score = mean_ap(attended(log_probs, log_attention, temperature, offset), gt)
    singles = [mean_ap(np.exp(log_probs[:, n]), gt) for n in range(log_probs.shape[1])]
    best = int(np.argmax(singles))
    if singles[best] <= score:
        return offset, None
    guard = {"candidate": best, "bonus": 0.0, "candidate_mean_ap": singles[best],
             "mean_ap_before": score, "mean_ap_after": score}
    for bonus in BONUSES:
        raised = offset.copy()
        raised[best] += bonus
        value = mean_ap(attended(log_probs, log_attention, temperature, raised), gt)
        if value > guard["mean_ap_after"]:
            guard.update(bonus=bonus, mean_ap_after=value)
    raised = offset.copy()
    raised[best] += guard["bonus"]
    return raised - raised.mean(), guard


def calibration_path(source: str | Path) -> Path:
    """``<run>/calibration.json`` for a checkpoint in ``<run>/checkpoints/``; the folder's
    own ``calibration.json`` for a folder written by ``ivr export``."""
    source = Path(source).resolve()
    return source / CALIBRATION if source.is_dir() else source.parent.parent / CALIBRATION


def read_calibration(checkpoint: str | Path, iteration: int,
                     candidates: list[str] | None = None) -> dict | None:
    """The calibration of the checkpoint's run when it was fitted for this ``iteration``
    and these ``candidates`` (any, when None); None otherwise. A damaged file is an
    IvrError."""
    path = calibration_path(checkpoint)
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        t, offset = float(doc["temperature"]), [float(v) for v in doc["offset"].values()]
        names, fitted_for = list(doc["offset"]), int(doc["iteration"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise IvrError(f"{path} is damaged ({type(e).__name__}); run `ivr calibrate` again "
                       "or delete it") from None
    if fitted_for != iteration or (candidates is not None and names != candidates):
        return None
    if not (0 < t < math.inf and all(map(math.isfinite, offset))):
        raise IvrError(f"{path} holds a temperature or offset that is not a finite number; "
                       "run `ivr calibrate` again or delete it")
    return doc


def apply_calibration(model: torch.nn.Module, checkpoint: str | Path,
                      iteration: int) -> dict | None:
    """Calibrate ``model``'s attention from its run's calibration.json when it matches;
    returns the calibration applied (or None: the configured temperature stays)."""
    if not hasattr(model, "calibrate"):
        return None
    doc = read_calibration(checkpoint, iteration, model.candidates())
    if doc is not None:
        model.calibrate(float(doc["temperature"]),
                        torch.tensor(list(doc["offset"].values()), dtype=torch.float32))
    return doc


def write_calibration(checkpoint: str | Path, doc: dict) -> Path:
    path = calibration_path(checkpoint)
    write_json(path, doc, indent=1)
    return path
