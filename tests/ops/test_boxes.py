"""Region box geometry: crop_boxes, inverse_boxes, and what they do with the ops."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ivr_core.ops import crop_and_resize, crop_boxes, inverse_boxes, paste_and_sum

TF_DATA = Path(__file__).resolve().parents[1] / "data" / "tf_crop_and_resize.npz"


def test_crop_boxes_values():
    boxes_px = torch.tensor([[32.0, 16.0, 160.0, 96.0], [0.0, 0.0, 784.0, 592.0]], dtype=torch.float64)
    out = crop_boxes(boxes_px, 16, 38, 50)
    # feature cells: x 2..10, y 1..6, and the last cells 49, 37
    expected = torch.tensor([[1 / 37, 2 / 49, 6 / 37, 10 / 49], [0.0, 0.0, 37 / 37, 49 / 49]], dtype=torch.float64)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-15)
    assert crop_boxes(boxes_px.float(), 16, 38, 50).dtype == torch.float32


def test_crop_boxes_one_cell_map_does_not_divide_by_zero():
    out = crop_boxes(torch.tensor([[8.0, 4.0, 24.0, 12.0]]), 16, 1, 1)
    torch.testing.assert_close(out, torch.tensor([[0.25, 0.5, 0.75, 1.5]]))


def test_crop_boxes_sample_feature_cells():
    # A ramp feature map f[y, x] = 100 y + x: a 2x2 crop returns the box corners in cells.
    feat = (100 * torch.arange(38.0)[:, None] + torch.arange(50.0)).expand(1, 1, 38, 50).double()
    boxes_px = torch.tensor([[40.0, 24.0, 328.0, 200.0]], dtype=torch.float64)  # cells x 2.5..20.5, y 1.5..12.5
    out = crop_and_resize(feat, crop_boxes(boxes_px, 16, 38, 50), torch.zeros(1, dtype=torch.long), (2, 2))
    expected = torch.tensor([[150 + 2.5, 150 + 20.5], [1250 + 2.5, 1250 + 20.5]], dtype=torch.float64)
    torch.testing.assert_close(out[0, 0], expected, rtol=0, atol=1e-9)


def test_inverse_boxes_formula():
    boxes_px = torch.tensor([[40.0, 24.0, 328.0, 200.0], [80.0, 80.0, 80.0, 40.0]], dtype=torch.float64)
    out = inverse_boxes(boxes_px, 16, 38, 50)
    x1, y1, x2, y2 = 2.5, 1.5, 20.5, 12.5
    h, w = y2 - y1, x2 - x1
    expected = torch.tensor([-y1 / h, -x1 / w, (37 - y1) / h, (49 - x1) / w], dtype=torch.float64)
    torch.testing.assert_close(out[0], expected)
    # zero width and flipped height: the size is floored at eps, never a division by zero
    assert torch.isfinite(out[1]).all()
    expected = torch.tensor([-5 / 1e-14, -5 / 1e-14, 32 / 1e-14, 44 / 1e-14], dtype=torch.float64)
    torch.testing.assert_close(out[1], expected)
    assert inverse_boxes(boxes_px.float(), 16, 38, 50).dtype == torch.float32


def test_inverse_boxes_paste_over_the_box():
    # Box edges at half cells: memory rows 2..8 and columns 3..15 lie strictly inside the box.
    boxes_px = torch.tensor([[40.0, 24.0, 248.0, 136.0]], dtype=torch.float64)  # cells x 2.5..15.5, y 1.5..8.5
    x1, y1, x2, y2 = 2.5, 1.5, 15.5, 8.5
    inside = torch.zeros(38, 50, dtype=torch.bool)
    inside[2:9, 3:16] = True
    inv = inverse_boxes(boxes_px, 16, 38, 50)
    # A constant map pastes 1 exactly on the cells inside the box, 0 elsewhere.
    ones = paste_and_sum(torch.ones(1, 1, 7, 7, dtype=torch.float64), inv, (38, 50))[0]
    torch.testing.assert_close(ones, inside.double(), rtol=0, atol=1e-12)
    # A ramp along the map's rows lands on memory row i at map row (i - y1) / h * 6.
    ramp = torch.arange(7.0, dtype=torch.float64)[:, None].expand(1, 1, 7, 7)
    pasted = paste_and_sum(ramp, inv, (38, 50))[0]
    rows = torch.arange(38.0, dtype=torch.float64)[:, None].expand(38, 50)
    torch.testing.assert_close(pasted[inside], ((rows - y1) / (y2 - y1) * 6)[inside], rtol=0, atol=1e-12)
    cols = paste_and_sum(ramp.transpose(2, 3), inv, (38, 50))[0]
    expected_cols = ((torch.arange(50.0, dtype=torch.float64) - x1) / (x2 - x1) * 6).expand(38, 50)
    torch.testing.assert_close(cols[inside], expected_cols[inside], rtol=0, atol=1e-12)


@pytest.mark.parametrize("case", [15, 16, 17])
def test_inverse_boxes_reproduce_tf_data(case):
    with np.load(TF_DATA) as data:
        get = lambda key: data[f"case{case:02d}_{key}"]  # noqa: E731
        feat_h, feat_w = (int(v) for v in get("memory_size"))
        out = inverse_boxes(torch.from_numpy(get("gt_boxes_pixel")), float(get("feat_stride")), feat_h, feat_w)
        assert out.dtype == torch.float32
        np.testing.assert_allclose(out.numpy(), get("boxes"), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("fn", [crop_boxes, inverse_boxes])
def test_validation(fn):
    with pytest.raises(ValueError, match="boxes must have shape"):
        fn(torch.zeros(3, 5), 16, 38, 50)
    with pytest.raises(ValueError, match="stride must be positive"):
        fn(torch.zeros(3, 4), 0, 38, 50)
    with pytest.raises(ValueError, match="feat_w must be a positive int"):
        fn(torch.zeros(3, 4), 16, 38, 0)
