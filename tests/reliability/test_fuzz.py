"""Property tests against slow definitions written here: the region ops (reference and
compiled) against a float64 loop, the ADE parser against a brute-force reading of its rules,
and the metrics against direct counts and per-class APs."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ivr_core.data import ade
from ivr_core.evaluation import evaluate
from ivr_core.ops import inverse_boxes
from ivr_core.ops.reference import paste_and_sum
from ops_support import load_ext

def fuzz(examples: int) -> settings:
    return settings(max_examples=examples, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow])


# --------------------------------------------------------------------------- region ops


def loop_crop(image, box, crop_h, crop_w, fill=0.0):
    """TF's bilinear crop_and_resize of one (C, H, W) float64 image with one normalised box
    [y1, x1, y2, x2], sample by sample: a sample outside [0, H-1] x [0, W-1] is ``fill``."""
    n_chan, h, w = image.shape
    y1, x1, y2, x2 = (float(v) for v in box)
    out = np.full((n_chan, crop_h, crop_w), fill, dtype=np.float64)
    for i in range(crop_h):
        if crop_h > 1:
            y = y1 * (h - 1) + i * ((y2 - y1) * (h - 1) / (crop_h - 1))
        else:
            y = 0.5 * (y1 + y2) * (h - 1)
        if not 0 <= y <= h - 1:
            continue
        for j in range(crop_w):
            if crop_w > 1:
                x = x1 * (w - 1) + j * ((x2 - x1) * (w - 1) / (crop_w - 1))
            else:
                x = 0.5 * (x1 + x2) * (w - 1)
            if not 0 <= x <= w - 1:
                continue
            top, left = math.floor(y), math.floor(x)
            bottom, right = math.ceil(y), math.ceil(x)
            dy, dx = y - top, x - left
            for c in range(n_chan):
                a = image[c, top, left] + (image[c, top, right] - image[c, top, left]) * dx
                b = image[c, bottom, left] + (image[c, bottom, right] - image[c, bottom, left]) * dx
                out[c, i, j] = a + (b - a) * dy
    return out


def loop_paste(maps, boxes, out_h, out_w):
    """The paste-back by definition: the sum over regions of each map's crop with its box."""
    out = np.zeros((maps.shape[1], out_h, out_w))
    for k in range(maps.shape[0]):
        out += loop_crop(maps[k], boxes[k], out_h, out_w)
    return out


EDGES = [0.0, 1.0, 0.5, -0.5, 1.5, -1e3, 1e3, 1 / 3]  # borders, centres, far outside


def coordinate():
    return st.floats(-3, 4, allow_nan=False, width=64) | st.sampled_from(EDGES)


@st.composite
def normalised_box(draw):
    y1, x1, y2, x2 = (draw(coordinate()) for _ in range(4))
    if draw(st.booleans()):  # degenerate: a line or a point
        y2 = y1
        if draw(st.booleans()):
            x2 = x1
    return [y1, x1, y2, x2]


@st.composite
def paste_case(draw):
    k = draw(st.integers(0, 6))
    c = draw(st.integers(1, 3))
    ch, cw = draw(st.integers(1, 7)), draw(st.integers(1, 7))
    out_h, out_w = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    seed = draw(st.integers(0, 2**32 - 1))
    maps = np.random.default_rng(seed).standard_normal((k, c, ch, cw))
    if draw(st.booleans()):  # inverse boxes of pixel boxes, as the model makes them
        px = draw(st.lists(st.tuples(*[st.floats(-40, 200, allow_nan=False)] * 2,
                                     st.floats(0, 120, allow_nan=False),
                                     st.floats(0, 120, allow_nan=False)),
                           min_size=k, max_size=k))
        pixel = torch.tensor([[x, y, x + w, y + h] for x, y, w, h in px],
                             dtype=torch.float64).reshape(-1, 4)
        boxes = inverse_boxes(pixel, 16, out_h, out_w).numpy()
    else:
        boxes = np.array(draw(st.lists(normalised_box(), min_size=k, max_size=k)),
                         dtype=np.float64).reshape(-1, 4)
    return maps, boxes, out_h, out_w


@fuzz(800)
@given(paste_case())
def test_paste_and_sum_reference_matches_loop(case):
    maps, boxes, out_h, out_w = case
    expected = loop_paste(maps, boxes, out_h, out_w)
    out = paste_and_sum(torch.from_numpy(maps), torch.from_numpy(boxes), (out_h, out_w))
    assert out.dtype == torch.float64
    np.testing.assert_allclose(out.numpy(), expected, rtol=0, atol=1e-12)


@pytest.fixture(scope="module")
def ext():
    return load_ext()


@fuzz(800)
@given(case=paste_case())
def test_compiled_paste_and_sum_matches_loop(ext, case):
    maps, boxes, out_h, out_w = case
    expected = loop_paste(maps, boxes, out_h, out_w)
    out = torch.ops.ivr.paste_and_sum(torch.from_numpy(maps), torch.from_numpy(boxes),
                                      out_h, out_w)
    np.testing.assert_allclose(out.numpy(), expected, rtol=0, atol=1e-12)


@st.composite
def nhwc_crop_case(draw):
    b = draw(st.integers(1, 3))
    c = draw(st.integers(2, 4))  # C == 1 is plain NCHW memory
    h, w = draw(st.integers(1, 7)), draw(st.integers(1, 7))
    assume(h * w > 1)  # so is H == W == 1
    k = draw(st.integers(0, 6))
    crop_h, crop_w = draw(st.integers(1, 7)), draw(st.integers(1, 7))
    boxes = np.array(draw(st.lists(normalised_box(), min_size=k, max_size=k)),
                     dtype=np.float64).reshape(-1, 4)
    box_ind = np.array(draw(st.lists(st.integers(0, b - 1), min_size=k, max_size=k)), np.int64)
    fill = draw(st.sampled_from([0.0, -0.7, 2.5]))
    image = np.random.default_rng(draw(st.integers(0, 2**32 - 1))).standard_normal((b, c, h, w))
    return image, boxes, box_ind, crop_h, crop_w, fill


@fuzz(800)
@given(case=nhwc_crop_case())
def test_compiled_crop_and_resize_channels_last_matches_loop(ext, case):
    image, boxes, box_ind, crop_h, crop_w, fill = case
    nhwc = torch.from_numpy(image).contiguous(memory_format=torch.channels_last)
    assert not nhwc.is_contiguous()  # the kernel's channels-last path
    out = torch.ops.ivr.crop_and_resize(nhwc, torch.from_numpy(boxes),
                                        torch.from_numpy(box_ind), crop_h, crop_w, fill)
    expected = np.stack([loop_crop(image[b], box, crop_h, crop_w, fill)
                         for b, box in zip(box_ind, boxes)]) if len(boxes) else \
        np.zeros((0, image.shape[1], crop_h, crop_w))
    assert out.shape == expected.shape
    np.testing.assert_allclose(out.numpy(), expected, rtol=0, atol=1e-12)


# --------------------------------------------------------------------------- ADE parser

# objectnames.txt / objectcounts.txt of the fuzzed dataset: line 0 is never a class
OBJECT_NAMES = ["-", "wall", "floor", "rare thing", "door knob", "left arm", "scarce part"]
OBJECT_COUNTS = [50, 9, 6, 2, 5, 7, 1]
MIN_COUNT = 5
IMAGE = "images/training/f/fuzz/ADE_train_00000001.jpg"


def write_dataset(root: Path, masks: list[np.ndarray], atr_lines: list[tuple[int, int, str]],
                  seed: int) -> None:
    """The image (a JPEG of the masks' size), its B-channel masks and its _atr.txt."""
    path = root / IMAGE
    path.parent.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    h, w = masks[0].shape
    cv2.imwrite(str(path), rng.integers(0, 256, (h, w, 3), np.uint8))
    stem = str(path.with_suffix(""))
    for level, ids in enumerate(masks):
        bgr = rng.integers(0, 256, (h, w, 3), np.uint8)  # G and R: class codes, unused
        bgr[:, :, 0] = ids
        suffix = "_seg.png" if level == 0 else f"_parts_{level}.png"
        assert cv2.imwrite(stem + suffix, bgr)
    Path(stem + "_atr.txt").write_text("".join(
        f"{inst:03d} # {level} # 0 # {name}, raw # {name} # \"\"\n"
        for inst, level, name in atr_lines))


def brute_force_regions(masks, atr_lines):
    """docs/design.md, "Regions of an image", read literally: level by level (objects, then
    parts by level), the mask's distinct values ascending, 0 included when present, the value
    at rank t is instance t; value 0 is never a region; "%03d_%d" % (t, level) names the
    class, kept when counted >= MIN_COUNT; the box is the tight bound of the pixels, the area
    their number."""
    kept = [n.replace(" ", "_") for n, c in zip(OBJECT_NAMES, OBJECT_COUNTS) if c >= MIN_COUNT][1:]
    index = {name: i + 1 for i, name in enumerate(kept)}
    named = {"%03d_%d" % (inst, level): name.replace(" ", "_") for inst, level, name in atr_lines}
    boxes, classes, areas = [], [], []
    for level, ids in enumerate(masks):
        for t, value in enumerate(sorted(set(ids.ravel().tolist()))):
            name = named.get("%03d_%d" % (t, level))
            if value == 0 or name not in index:
                continue
            pixels = [(y, x) for y in range(ids.shape[0]) for x in range(ids.shape[1])
                      if ids[y, x] == value]
            ys, xs = [p[0] for p in pixels], [p[1] for p in pixels]
            boxes.append([min(xs), min(ys), max(xs), max(ys)])
            classes.append(index[name])
            areas.append(len(pixels))
    return boxes, classes, areas


@st.composite
def ade_case(draw):
    h, w = draw(st.integers(1, 8)), draw(st.integers(1, 8))
    levels = draw(st.integers(1, 3))  # the object mask, then 0..2 part masks
    masks = []
    for _ in range(levels):
        values = sorted(draw(st.sets(st.integers(0, 255), min_size=1, max_size=6)))
        if draw(st.booleans()) and 0 not in values:
            values = [0] + values[:-1] if len(values) > 1 else [0]
        picks = draw(st.lists(st.integers(0, len(values) - 1), min_size=h * w, max_size=h * w))
        masks.append(np.array(values, np.uint8)[np.array(picks)].reshape(h, w))
    lines = draw(st.lists(st.tuples(st.integers(0, 7), st.integers(0, 2),
                                    st.sampled_from(OBJECT_NAMES[1:])),
                          max_size=12, unique_by=lambda line: line[:2]))
    return masks, lines, draw(st.integers(0, 2**16))


@fuzz(800)
@given(ade_case())
def test_ade_regions_match_a_brute_force_reading(case):
    masks, lines, seed = case
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_dataset(root, masks, lines, seed)
        split = root / "split"
        split.mkdir()
        (split / "objectnames.txt").write_text("".join(n + "\n" for n in OBJECT_NAMES))
        (split / "objectcounts.txt").write_text("".join(f"{c}\n" for c in OBJECT_COUNTS))
        classes = ade.load_classes(split, MIN_COUNT)
        index = {name: i for i, name in enumerate(classes)}
        record = ade.image_regions(root, IMAGE, index, ade.load_names(split))
    boxes, class_ids, areas = brute_force_regions(masks, lines)
    assert (record["height"], record["width"]) == masks[0].shape
    assert record["boxes"] == boxes
    assert record["classes"] == class_ids
    assert record["seg_areas"] == areas


# --------------------------------------------------------------------------- metrics


def interpolated_ap(values, relevant, num_relevant):
    """VOC AP as a mean over the relevant items: each one, at its rank r in the stable
    descending order, counts the best precision reached at any rank >= r."""
    order = sorted(range(len(values)), key=lambda i: (-values[i], i))
    precision, hits = [], 0
    for rank, i in enumerate(order, 1):
        hits += bool(relevant[i])
        precision.append(hits / rank)
    best_after = np.maximum.accumulate(precision[::-1])[::-1]
    return sum(best_after[r] for r, i in enumerate(order) if relevant[i]) / num_relevant


@st.composite
def metric_case(draw):
    n = draw(st.integers(1, 30))
    c = draw(st.integers(2, 7))
    levels = draw(st.sampled_from([1, 2, 3, 5, 100]))  # few levels: many ties
    raw = draw(st.lists(st.integers(0, levels), min_size=n * c, max_size=n * c))
    scores = np.array(raw, np.float64).reshape(n, c) / levels
    gt = np.array(draw(st.lists(st.integers(1, c - 1), min_size=n, max_size=n)))
    return scores, gt


@fuzz(1000)
@given(metric_case())
def test_metrics_match_direct_counts(case):
    scores, gt = case
    n, c = scores.shape
    result = evaluate(scores, gt)
    # prediction: the best non-background class, the lowest one on ties
    predicted = [max(range(1, c), key=lambda k: (scores[i, k], -k)) for i in range(n)]
    right = [predicted[i] == gt[i] for i in range(n)]
    assert result["inst_ac"] == pytest.approx(sum(right) / n, abs=1e-12)
    true_scores = [scores[i, gt[i]] for i in range(n)]
    assert result["inst_ap"] == pytest.approx(interpolated_ap(true_scores, right, n), abs=1e-12)
    present = sorted(set(gt.tolist()))
    assert sorted(map(int, result["per_class"])) == present
    aps = []
    for k in present:
        members = [i for i in range(n) if gt[i] == k]
        entry = result["per_class"][str(k)]
        assert entry["count"] == len(members)
        assert entry["ac"] == pytest.approx(sum(right[i] for i in members) / len(members),
                                            abs=1e-12)
        aps.append(interpolated_ap(scores[:, k].tolist(), gt == k, len(members)))
        assert entry["ap"] == pytest.approx(aps[-1], abs=1e-12)
    assert result["cls_ap"] == pytest.approx(sum(aps) / len(aps), abs=1e-12)
    assert result["cls_ac"] == pytest.approx(
        np.mean([result["per_class"][str(k)]["ac"] for k in present]), abs=1e-12)
