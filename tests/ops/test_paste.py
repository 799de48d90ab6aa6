"""paste_and_sum against its materialise-and-sum definition and TensorFlow's inverse crop."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ivr_core.ops import inverse_boxes
from ivr_core.ops.reference import paste_and_sum, paste_and_sum_reference, sample_coords

TF_DATA = Path(__file__).resolve().parents[1] / "data" / "tf_crop_and_resize.npz"
INVERSE_CASES = [15, 16, 17]
MEMORY = (38, 50)  # conv5 size of a 600x800 image at stride 16


def _pixel_boxes(gen, n, dtype=torch.float64):
    """Random gt boxes x1, y1, x2, y2 in a 600x800 image, plus awkward ones."""
    xy1 = torch.rand(n, 2, generator=gen, dtype=dtype) * torch.tensor([700.0, 500.0], dtype=dtype)
    wh = torch.rand(n, 2, generator=gen, dtype=dtype) * 300 + 4
    special = torch.tensor(
        [
            [0.0, 0.0, 799.0, 599.0],  # the whole image
            [100.0, 200.0, 108.0, 205.0],  # tiny: under one feature cell, may paste nothing
            [760.0, 560.0, 900.0, 700.0],  # past the feature border
            [-40.0, -30.0, 60.0, 50.0],  # before the origin
            [320.0, 160.0, 320.0, 400.0],  # zero width
            [500.0, 300.0, 400.0, 200.0],  # flipped
            [17.0, 33.0, 250.0, 120.0],  # ordinary
        ],
        dtype=dtype,
    )
    return torch.cat([torch.cat([xy1, xy1 + wh], 1), special])


def _inputs(seed, channels=3, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    boxes = inverse_boxes(_pixel_boxes(gen, 9, dtype), 16, *MEMORY)
    maps = torch.randn(len(boxes), channels, 7, 7, generator=gen, dtype=dtype)
    return maps, boxes


@pytest.mark.parametrize("seed", [0, 1])
def test_matches_reference_forward_and_backward(seed, paste_impl):
    maps, boxes = _inputs(seed)
    maps.requires_grad_()
    boxes.requires_grad_()
    out = paste_impl(maps, boxes, MEMORY)
    expected = paste_and_sum_reference(maps, boxes, MEMORY)
    assert out.shape == (3, *MEMORY) and out.dtype == torch.float64
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)
    assert out.abs().max() > 0.5  # something was pasted

    dout = torch.randn_like(out)
    grads = torch.autograd.grad(out, (maps, boxes), dout)
    expected_grads = torch.autograd.grad(expected, (maps, boxes), dout)
    torch.testing.assert_close(grads[0], expected_grads[0], rtol=0, atol=1e-12)
    torch.testing.assert_close(grads[1], expected_grads[1], rtol=1e-10, atol=1e-10)


def test_float32_and_non_contiguous(paste_impl):
    maps, boxes = _inputs(2, dtype=torch.float32)
    maps_nc = maps.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)  # channels-last
    boxes_nc = boxes.t().contiguous().t()
    assert not (maps_nc.is_contiguous() or boxes_nc.is_contiguous())
    out = paste_impl(maps_nc, boxes_nc, MEMORY)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, paste_and_sum_reference(maps, boxes, MEMORY), rtol=0, atol=2e-6)


def test_odd_sizes_match_reference(paste_impl):
    gen = torch.Generator().manual_seed(5)
    maps = torch.randn(4, 2, 3, 5, generator=gen, dtype=torch.float64)
    boxes = torch.rand(4, 4, generator=gen, dtype=torch.float64) * 4 - 1.5
    for out_size in [(1, 1), (1, 9), (6, 1), (11, 13)]:
        torch.testing.assert_close(
            paste_impl(maps, boxes, out_size), paste_and_sum_reference(maps, boxes, out_size), rtol=0, atol=1e-12
        )


def test_empty_regions(paste_impl):
    maps = torch.zeros(0, 5, 7, 7, requires_grad=True)
    boxes = torch.zeros(0, 4, requires_grad=True)
    out = paste_impl(maps, boxes, MEMORY)
    assert out.shape == (5, *MEMORY) and not out.any()
    out.sum().backward()
    assert maps.grad.shape == maps.shape and boxes.grad.shape == (0, 4)


def test_gradcheck(paste_impl):
    gen = torch.Generator().manual_seed(7)
    out_size = (6, 7)  # small: gradcheck does one backward pass per output element
    maps = torch.randn(3, 1, 4, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    boxes = []
    while len(boxes) < 3:  # samples away from integers of the 4x4 maps: the function is smooth there
        jitter = torch.rand(4, generator=gen, dtype=torch.float64) * 0.3
        box = torch.tensor([-0.6, -0.4, 1.7, 1.5], dtype=torch.float64) + jitter
        ys, vy = sample_coords(box[0:1], box[2:3], 4, out_size[0])
        xs, vx = sample_coords(box[1:2], box[3:4], 4, out_size[1])
        coords = torch.cat([ys[0], xs[0]])
        if (coords - coords.round()).abs().min() > 1e-3 and vy.any() and vx.any():
            boxes.append(box)
    boxes = torch.stack(boxes).requires_grad_()
    assert torch.autograd.gradcheck(lambda m, b: paste_impl(m, b, out_size), (maps, boxes))


@pytest.mark.parametrize(
    "maps_shape, boxes_shape, out_size, match",
    [
        ((2, 3, 7), (2, 4), MEMORY, "maps must have shape"),
        ((2, 3, 7, 7), (3, 4), MEMORY, "boxes has 3 rows"),
        ((2, 3, 7, 7), (2, 3), MEMORY, "boxes must have shape"),
        ((2, 3, 7, 7), (2, 4), (38,), "out_size must be two ints"),
        ((2, 3, 0, 7), (2, 4), MEMORY, "non-empty ch and cw"),
    ],
)
def test_validation(maps_shape, boxes_shape, out_size, match):
    with pytest.raises(ValueError, match=match):
        paste_and_sum(torch.zeros(maps_shape), torch.zeros(boxes_shape), out_size)


# --------------------------------------------------------------------------- TensorFlow


@pytest.fixture(scope="module")
def tf_data():
    with np.load(TF_DATA) as data:
        return dict(data)


@pytest.mark.parametrize("case", INVERSE_CASES)
def test_tf_inverse_crop_sum(tf_data, case, paste_impl):
    get = lambda key: tf_data[f"case{case:02d}_{key}"]  # noqa: E731
    assert str(get("kind")) == "inverse_crop_sum"
    maps = torch.from_numpy(get("image")).permute(0, 3, 1, 2).requires_grad_()  # per-box maps, NCHW
    boxes = torch.from_numpy(get("boxes")).requires_grad_()
    memory_size = tuple(int(v) for v in get("memory_size"))
    assert memory_size == tuple(int(v) for v in get("crop_size"))

    out = paste_impl(maps, boxes, memory_size)
    tf_out = get("outsum")[0].transpose(2, 0, 1)  # (C, Hm, Wm)
    scale = max(1.0, np.abs(tf_out).max())
    fragile = get("out_fragile").any(0)  # memory cells some box keeps or drops by one ulp
    np.testing.assert_allclose(out.detach().numpy()[:, ~fragile], tf_out[:, ~fragile], rtol=0, atol=1e-6 * scale)
    # Our sample coordinates are TF's to the bit, so the border decisions agree as well.
    np.testing.assert_allclose(out.detach().numpy(), tf_out, rtol=0, atol=1e-6 * scale)

    dout = torch.from_numpy(get("dout_sum")[0]).permute(2, 0, 1)
    dmaps, dboxes = torch.autograd.grad(out, (maps, boxes), dout)
    tf_dmaps = get("dimage")
    np.testing.assert_allclose(dmaps.permute(0, 2, 3, 1).numpy(), tf_dmaps, rtol=0, atol=2e-6 * np.abs(tf_dmaps).max())
    smooth = ~get("dboxes_kink")  # see test_crop_and_resize.test_tf_gradients
    tf_dboxes = get("dboxes")
    np.testing.assert_allclose(dboxes.numpy()[smooth], tf_dboxes[smooth], rtol=0, atol=1e-5 * np.abs(tf_dboxes).max())
