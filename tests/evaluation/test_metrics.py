"""Tests of the region-classification metrics (ivr_core.evaluation.metrics).

Expected numbers in the hand-made cases are worked out in the comments, never by calling
the code under test. A slow, direct re-implementation (``_brute_evaluate``) cross-checks
``evaluate`` on random data, ties included.
"""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ivr_core.evaluation import evaluate
from ivr_core.evaluation.metrics import HEADLINE_KEYS, voc_ap

FLOAT_KEYS = ("inst_ap", "inst_ac", "cls_ap", "cls_ac", "inst_sc", "cls_sc")


def _check(result, expected, per_class=None):
    for key, value in expected.items():
        assert result[key] == pytest.approx(value, abs=1e-12), key
    for cls, entry in (per_class or {}).items():
        for key, value in entry.items():
            assert result["per_class"][cls][key] == pytest.approx(value, abs=1e-12), (cls, key)


# --------------------------------------------------------------------------------------
# The worked example. C = 4 (background + classes 1..3), N = 5.
#
#   region  gt   bg    c1   c2   c3    prediction   true-class score
#   r0      1    0.0   0.6  0.3  0.1   1 (right)    0.6
#   r1      1    0.0   0.2  0.7  0.1   2 (wrong)    0.2
#   r2      2    0.0   0.5  0.4  0.1   1 (wrong)    0.4
#   r3      2    0.0   0.1  0.8  0.1   2 (right)    0.8
#   r4      3    0.0   0.3  0.2  0.5   3 (right)    0.5
#
# inst_ac = 3/5 = 0.6
# cls_ac  = mean(c1 1/2, c2 1/2, c3 1/1) = 2/3
# inst_sc = (0.6 + 0.2 + 0.4 + 0.8 + 0.5) / 5 = 0.5
# cls_sc  = mean(c1 0.4, c2 0.6, c3 0.5) = 0.5
# AP c1: column [.6 .2 .5 .1 .3] -> order r0+ r2 r4 r1+ r3: positives at ranks 1, 4
#        points (rec .5, prec 1), (rec 1, prec 2/4): AP = .5*1 + .5*.5 = 0.75
# AP c2: column [.3 .7 .4 .8 .2] -> order r3+ r1 r2+ r0 r4: ranks 1, 3
#        AP = .5*1 + .5*(2/3) = 5/6
# AP c3: column [.1 .1 .1 .1 .5] -> r4 first: AP = 1
# cls_ap  = (3/4 + 5/6 + 1) / 3 = 31/36 = 0.86111...
# inst_ap: true scores [.6 .2 .4 .8 .5], hits [T F F T T]; order r3+ r0+ r4+ r2 r1
#        recall = hits/5: .2 .4 .6 .6 .6; precision 1 1 1 .75 .6
#        AP = .2*1 + .2*1 + .2*1 (+ .4*0 for the appended recall 1) = 0.6
# --------------------------------------------------------------------------------------
EXAMPLE_SCORES = np.array(
    [
        [0.0, 0.6, 0.3, 0.1],
        [0.0, 0.2, 0.7, 0.1],
        [0.0, 0.5, 0.4, 0.1],
        [0.0, 0.1, 0.8, 0.1],
        [0.0, 0.3, 0.2, 0.5],
    ]
)
EXAMPLE_GT = np.array([1, 1, 2, 2, 3])


def test_worked_example():
    result = evaluate(EXAMPLE_SCORES, EXAMPLE_GT)
    _check(
        result,
        {
            "inst_ap": 0.6,
            "inst_ac": 0.6,
            "cls_ap": 31 / 36,
            "cls_ac": 2 / 3,
            "inst_sc": 0.5,
            "cls_sc": 0.5,
            "num_regions": 5,
            "num_classes_present": 3,
        },
        per_class={
            "1": {"ap": 0.75, "ac": 0.5, "sc": 0.4, "count": 2},
            "2": {"ap": 5 / 6, "ac": 0.5, "sc": 0.6, "count": 2},
            "3": {"ap": 1.0, "ac": 1.0, "sc": 0.5, "count": 1},
        },
    )


def test_result_keys_and_types():
    result = evaluate(EXAMPLE_SCORES, EXAMPLE_GT)
    assert set(result) == set(FLOAT_KEYS) | {"num_regions", "num_classes_present", "per_class"}
    for key in FLOAT_KEYS:
        assert type(result[key]) is float, key
    assert type(result["num_regions"]) is int
    assert type(result["num_classes_present"]) is int
    assert list(result["per_class"]) == ["1", "2", "3"]
    for entry in result["per_class"].values():
        assert set(entry) == {"ap", "ac", "sc", "count"}
        assert type(entry["ap"]) is float and type(entry["ac"]) is float
        assert type(entry["sc"]) is float and type(entry["count"]) is int


def test_headline_numbers_in_the_papers_order():
    # inst_ap .6, inst_ac .6, cls_ap 31/36 = .8611, cls_ac 2/3 = .6667 (see worked example)
    result = evaluate(EXAMPLE_SCORES, EXAMPLE_GT)
    assert HEADLINE_KEYS == ("inst_ap", "inst_ac", "cls_ap", "cls_ac")
    assert [result[k] for k in HEADLINE_KEYS] == pytest.approx([0.6, 0.6, 31 / 36, 2 / 3])


def test_perfect_scores():
    # One-hot on the true class: every prediction right, every positive ranked first, every
    # true-class score 1.0. inst_ap: all true scores tie at 1.0 but all are hits, so the
    # precision is 1 at every rank and the recall climbs to 4/4: AP 1.
    gt = np.array([1, 2, 3, 1])
    scores = np.zeros((4, 4))
    scores[np.arange(4), gt] = 1.0
    result = evaluate(scores, gt)
    _check(result, {key: 1.0 for key in FLOAT_KEYS})
    assert [result[k] for k in HEADLINE_KEYS] == [1.0, 1.0, 1.0, 1.0]


def test_single_instance_class_and_class_never_predicted():
    # C = 3, N = 3:
    #   r0 gt1 [0, .1, .9] -> pred 2 (wrong), true score .1
    #   r1 gt1 [0, .2, .8] -> pred 2 (wrong), true score .2
    #   r2 gt2 [0, .3, .7] -> pred 2 (right), true score .7
    # Class 1 is never predicted: ac 0.
    # AP c2 (single instance r2): column [.9 .8 .7], r2 ranks 3rd -> prec 1/3 at recall 1
    #   -> AP 1/3.
    # AP c1: column [.1 .2 .3] -> order r2 r1+ r0+: positives at ranks 2 and 3,
    #   precisions 1/2 and 2/3; the envelope lifts the first to 2/3:
    #   AP = .5*(2/3) + .5*(2/3) = 2/3.
    # inst_ap: true scores [.1 .2 .7], hits [F F T]: r2 first, recall 1/3 at precision 1,
    #   then no more hits -> AP = 1/3.
    scores = np.array([[0.0, 0.1, 0.9], [0.0, 0.2, 0.8], [0.0, 0.3, 0.7]])
    gt = np.array([1, 1, 2])
    _check(
        evaluate(scores, gt),
        {
            "inst_ap": 1 / 3,
            "inst_ac": 1 / 3,
            "cls_ap": (2 / 3 + 1 / 3) / 2,
            "cls_ac": (0.0 + 1.0) / 2,
            "inst_sc": (0.1 + 0.2 + 0.7) / 3,
            "cls_sc": (0.15 + 0.7) / 2,
        },
        per_class={
            "1": {"ap": 2 / 3, "ac": 0.0, "sc": 0.15, "count": 2},
            "2": {"ap": 1 / 3, "ac": 1.0, "sc": 0.7, "count": 1},
        },
    )


def test_ties_keep_input_order():
    # C = 3, every score 0.5: argmax ties go to the lowest class, 1, for every region.
    #   gt [2, 1, 2, 1] -> correct [F, T, F, T]; inst_ac .5; true scores all .5.
    # Stable ranking = input order r0 r1 r2 r3 for every column.
    # AP c1: positives r1, r3 at ranks 2, 4: precisions 1/2, 2/4 -> AP = .5*.5 + .5*.5 = .5
    # AP c2: positives r0, r2 at ranks 1, 3: precisions 1, 2/3 -> AP = .5 + .5*(2/3) = 5/6
    # inst_ap: hits r1, r3 at ranks 2, 4, recall = hits/4: (.25, 1/2), (.5, 2/4)
    #   -> AP = .25*.5 + .25*.5 = .25
    scores = np.array([[0.0, 0.5, 0.5]] * 4)
    gt = np.array([2, 1, 2, 1])
    result = evaluate(scores, gt)
    _check(
        result,
        {"inst_ap": 0.25, "inst_ac": 0.5, "cls_ap": (0.5 + 5 / 6) / 2, "cls_ac": 0.5},
        per_class={"1": {"ap": 0.5, "ac": 1.0}, "2": {"ap": 5 / 6, "ac": 0.0}},
    )
    # Same regions, reversed order: gt [1, 2, 1, 2], correct [T, F, T, F].
    # AP c1: ranks 1, 3 -> 5/6;  AP c2: ranks 2, 4 -> .5
    # inst_ap: hits at ranks 1, 3: (.25, 1), (.5, 2/3) -> AP = .25 + .25*(2/3) = 5/12
    result = evaluate(scores[::-1], gt[::-1])
    _check(
        result,
        {"inst_ap": 5 / 12, "inst_ac": 0.5, "cls_ap": (0.5 + 5 / 6) / 2, "cls_ac": 0.5},
        per_class={"1": {"ap": 5 / 6}, "2": {"ap": 0.5}},
    )


def test_tie_between_positive_and_negative():
    # C = 3; column 1 = [.4, .7, .7, .2], gt = [1, 2, 1, 1].
    # Stable order for c1: r1 (.7, neg) before r2 (.7, pos) since r1 comes first, then
    # r0 (.4, pos), r3 (.2, pos): positives at ranks 2, 3, 4, precisions 1/2, 2/3, 3/4.
    # Envelope: 3/4 everywhere -> AP c1 = 3/4.
    # Swapping r1 and r2 (gt [1, 1, 2, 1]): positives at ranks 1, 3, 4 with precisions
    # 1, 2/3, 3/4 -> envelope 1, 3/4, 3/4 -> AP c1 = (1 + 3/4 + 3/4) / 3 = 5/6.
    scores = np.array(
        [[0.0, 0.4, 0.1], [0.0, 0.7, 0.3], [0.0, 0.7, 0.3], [0.0, 0.2, 0.1]]
    )
    assert evaluate(scores, [1, 2, 1, 1])["per_class"]["1"]["ap"] == pytest.approx(3 / 4)
    assert evaluate(scores, [1, 1, 2, 1])["per_class"]["1"]["ap"] == pytest.approx(5 / 6)


def test_background_column_is_ignored():
    # Background has the highest score in every row, yet predictions come from 1..C-1:
    #   r0 [.9, .04, .06] -> pred 2;  r1 [.8, .15, .05] -> pred 1;  r2 [.7, .1, .1] -> tie -> 1
    scores = np.array([[0.9, 0.04, 0.06], [0.8, 0.15, 0.05], [0.7, 0.1, 0.1]])
    assert evaluate(scores, [2, 1, 1])["inst_ac"] == 1.0
    assert evaluate(scores, [1, 2, 2])["inst_ac"] == 0.0


def test_classes_restriction():
    # Worked example restricted to classes {2, 3}: regions r2, r3, r4 (N = 3).
    # inst_ac: r2 wrong, r3 right, r4 right -> 2/3
    # inst_ap: true scores [.4 .8 .5], hits [F T T]: order r3+ r4+ r2,
    #   recall 1/3, 2/3 at precision 1 -> AP = 2/3
    # cls_ac = mean(c2 .5, c3 1) = .75;  inst_sc = (.4+.8+.5)/3;  cls_sc = mean(.6, .5) = .55
    # AP c2 still ranks all 5 regions: r1 (class 1, score .7 for c2) is a false positive
    #   above r2 -> 5/6 as in the full evaluation (ranking r2..r4 alone would give 1).
    # cls_ap = (5/6 + 1) / 2 = 11/12
    result = evaluate(EXAMPLE_SCORES, EXAMPLE_GT, classes={2, 3})
    _check(
        result,
        {
            "inst_ap": 2 / 3,
            "inst_ac": 2 / 3,
            "cls_ap": 11 / 12,
            "cls_ac": 0.75,
            "inst_sc": 1.7 / 3,
            "cls_sc": 0.55,
            "num_regions": 3,
            "num_classes_present": 2,
        },
        per_class={"2": {"ap": 5 / 6, "count": 2}, "3": {"ap": 1.0, "count": 1}},
    )
    assert set(result["per_class"]) == {"2", "3"}


def test_classes_restriction_all_classes_is_the_full_evaluation():
    assert evaluate(EXAMPLE_SCORES, EXAMPLE_GT, classes=[3, 1, 2, 2]) == evaluate(
        EXAMPLE_SCORES, EXAMPLE_GT
    )


def test_classes_restriction_ignores_absent_classes():
    # Add a class 4 no region has: restricting to {3, 4} counts class 3 only (r4, AP 1).
    scores = np.hstack([EXAMPLE_SCORES, np.zeros((5, 1))])
    result = evaluate(scores, EXAMPLE_GT, classes=[3, 4])
    assert result["num_regions"] == 1 and result["num_classes_present"] == 1
    _check(result, {key: v for key, v in zip(FLOAT_KEYS, (1.0, 1.0, 1.0, 1.0, 0.5, 0.5))})


@pytest.mark.parametrize("classes", [[], [4], (c for c in [4])])
def test_classes_restriction_without_regions_gives_nan(classes):
    scores = np.hstack([EXAMPLE_SCORES, np.zeros((5, 1))])
    result = evaluate(scores, EXAMPLE_GT, classes=classes)
    assert all(math.isnan(result[key]) for key in FLOAT_KEYS)
    assert result["num_regions"] == 0
    assert result["num_classes_present"] == 0
    assert result["per_class"] == {}


@pytest.mark.parametrize(
    "scores, gt, match",
    [
        (np.zeros(4), [1, 1, 1, 1], "2-D"),
        (np.zeros((2, 3, 1)), [1, 1], "2-D"),
        (np.zeros((2, 3)), [[1, 1]], "1-D"),
        (np.zeros((3, 3)), [1, 1], "3 rows but gt_classes has 2"),
        (np.zeros((0, 3)), np.zeros(0, dtype=int), "no regions to evaluate"),
        (np.zeros((2, 1)), [1, 1], "at least 2 columns"),
        (np.zeros((2, 3)), [0, 1], r"1\.\.2"),
        (np.zeros((2, 3)), [1, 3], r"1\.\.2"),
        (np.zeros((2, 3)), [-1, 1], r"1\.\.2"),
        (np.zeros((2, 3)), [1.0, 2.0], "integers"),
        (np.array([[0.0, np.nan, 0.1], [0.0, 0.1, 0.2]]), [1, 2], "NaN"),
        (np.array([[0.0, np.inf, 0.1], [0.0, 0.1, 0.2]]), [1, 2], "NaN or infinite"),
        (np.array([["a", "b"]]), [1], "real-valued"),
    ],
)
def test_invalid_inputs(scores, gt, match):
    with pytest.raises(ValueError, match=match):
        evaluate(scores, gt)


@pytest.mark.parametrize("classes", [[0], [3], [1, 7]])
def test_invalid_classes(classes):
    with pytest.raises(ValueError, match=r"classes must lie in 1\.\.2"):
        evaluate(np.zeros((2, 3)), [1, 2], classes=classes)


def test_integer_and_float16_scores():
    # Integer scores (unsigned too) and float16 give the same metrics as their float64 values.
    scores = (EXAMPLE_SCORES * 10).round()
    reference = evaluate(scores, EXAMPLE_GT)
    assert evaluate(scores.astype(np.uint8), EXAMPLE_GT) == reference
    assert evaluate(scores.astype(np.float16), EXAMPLE_GT) == reference


def test_no_torch_import():
    # The evaluation package must stay light (importable without torch being loaded).
    import subprocess

    code = "import sys, ivr_core.evaluation; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_voc_ap_by_hand():
    # Points (.5, 1), (1, .5): area .5*1 + .5*.5 = .75
    assert voc_ap([0.5, 1.0], [1.0, 0.5]) == pytest.approx(0.75)
    # Points (.5, .5), (1, 2/3): the envelope lifts .5 to 2/3 -> 2/3
    assert voc_ap([0.5, 1.0], [0.5, 2 / 3]) == pytest.approx(2 / 3)
    # Recall stuck at .5 (a false positive after the hit): (.5, 1), (.5, .5) -> .5
    assert voc_ap([0.5, 0.5], [1.0, 0.5]) == pytest.approx(0.5)
    # Empty curve -> 0
    assert voc_ap([], []) == 0.0


# --------------------------------------------------------------------------------------
# Brute-force cross-check: a slow, direct implementation of every definition.
# --------------------------------------------------------------------------------------


def _brute_ap(values, relevant, num_relevant):
    """Interpolated AP straight from the definition.

    Rank by value descending, ties by input index (stable). At every recall step r (from
    the previous recall level), take the maximum precision over all points whose recall
    is >= r, times the size of the step. A final step up to recall 1 has precision 0.
    """
    n = len(values)
    order = sorted(range(n), key=lambda i: (-float(values[i]), i))
    recalls, precisions = [], []
    tp = 0
    for rank, i in enumerate(order, start=1):
        tp += bool(relevant[i])
        recalls.append(tp / num_relevant)
        precisions.append(tp / rank)
    recalls, precisions = np.array(recalls), np.array(precisions)
    ap, previous = 0.0, 0.0
    for r in recalls:
        if r > previous:
            ap += (r - previous) * precisions[recalls >= r].max()
            previous = r
    return ap


def _brute_evaluate(scores, gt, classes=None):
    n, c = scores.shape
    predicted = []
    for i in range(n):
        best = 1
        for k in range(2, c):
            if scores[i, k] > scores[i, best]:
                best = k
        predicted.append(best)
    keep = [i for i in range(n) if classes is None or gt[i] in classes]
    if not keep:
        return None
    correct = [predicted[i] == gt[i] for i in keep]
    true = [float(scores[i, gt[i]]) for i in keep]
    out = {
        "inst_ac": sum(correct) / len(keep),
        "inst_sc": sum(true) / len(keep),
        "inst_ap": _brute_ap(true, correct, len(keep)),
    }
    present = sorted({int(gt[i]) for i in keep})
    aps, acs, scs = [], [], []
    for k in present:
        members = [i for i in range(n) if gt[i] == k]
        positives = [gt[i] == k for i in range(n)]  # ranking over ALL regions
        aps.append(_brute_ap(scores[:, k], positives, len(members)))
        acs.append(sum(predicted[i] == k for i in members) / len(members))
        scs.append(sum(float(scores[i, k]) for i in members) / len(members))
    out.update(cls_ap=np.mean(aps), cls_ac=np.mean(acs), cls_sc=np.mean(scs))
    out.update(num_regions=len(keep), num_classes_present=len(present))
    return out


def _assert_matches_brute(scores, gt, classes=None):
    result = evaluate(scores, gt, classes=classes)
    expected = _brute_evaluate(scores, gt, classes)
    if expected is None:
        assert result["num_regions"] == 0
        assert all(math.isnan(result[key]) for key in FLOAT_KEYS)
        return
    for key, value in expected.items():
        assert result[key] == pytest.approx(value, abs=1e-9), key


@st.composite
def _problems(draw):
    n = draw(st.integers(1, 25))
    c = draw(st.integers(2, 6))
    levels = draw(st.sampled_from([2, 4, 10, 1000]))  # few levels -> many ties
    raw = draw(
        st.lists(st.integers(0, levels), min_size=n * c, max_size=n * c).map(np.array)
    )
    scores = (raw.reshape(n, c) / levels).astype(draw(st.sampled_from([np.float64, np.float32])))
    gt = np.array(draw(st.lists(st.integers(1, c - 1), min_size=n, max_size=n)))
    classes = draw(st.none() | st.sets(st.integers(1, c - 1)))
    return scores, gt, classes


@settings(max_examples=300, deadline=None)
@given(_problems())
def test_matches_brute_force_on_random_data(problem):
    _assert_matches_brute(*problem)


@pytest.mark.parametrize("decimals", [None, 2, 3])
def test_matches_brute_force_on_larger_data(decimals):
    # Hundreds of positives per class exercise the sort-based counting; rounding to 2
    # decimals gives at most ~100 distinct tied values (per-value tie counting), to 3
    # decimals several hundred (stable-sort fallback).
    rng = np.random.default_rng(1234)
    n, c = 1200, 4
    scores = rng.random((n, c))
    if decimals is not None:
        scores = scores.round(decimals)
    gt = rng.integers(1, c, n)
    _assert_matches_brute(scores, gt)
    _assert_matches_brute(scores, gt, classes={1, 3})


def test_best_candidate_and_oracle_by_hand():
    from ivr_core.evaluation.tester import candidates, compare_candidates
    gt = np.array([1, 2, 1, 2])
    a = np.array([[0, .9, .1], [0, .8, .2], [0, .9, .1], [0, .8, .2]])  # right on regions 0, 2
    b = np.array([[0, .2, .8], [0, .1, .9], [0, .2, .8], [0, .1, .9]])  # right on regions 1, 3
    pred = {"gt": gt, "iterations": np.stack([a, b]), "modules": {}, "module_names": ["local"]}
    cands = candidates(pred)
    assert list(cands) == ["local 0", "local 1"]
    out = compare_candidates(pred, cands)
    assert out["candidates"]["local 0"]["inst_ac"] == 0.5
    assert out["best_candidate"]["inst_ac"]["value"] == 0.5
    assert out["oracle"]["inst_ac"] == 1.0 and out["oracle"]["cls_ap"] == 1.0
    # uniform weights: softmax of the mean log-probability; region 0: log .9 + log .2 for
    # class 1 against log .1 + log .8 for class 2, so class 1 (.18 > .08); all four right
    assert out["uniform_attention"]["inst_ac"] == 1.0
    assert candidates({**pred, "iterations": a[None]}) == {}  # one prediction: no candidates
