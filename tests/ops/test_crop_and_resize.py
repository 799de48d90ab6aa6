"""crop_and_resize against a literal loop oracle and against TensorFlow's stored outputs."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from ivr_core.ops.reference import crop_and_resize, sample_coords

TF_DATA = Path(__file__).resolve().parents[1] / "data" / "tf_crop_and_resize.npz"
NUM_TF_CASES = 18


# --------------------------------------------------------------------------- oracle


def loop_crop_and_resize(image, boxes, box_ind, crop_size, extrapolation_value=0.0):
    """TF's bilinear crop_and_resize, one box, sample and channel at a time, in float64.

    image (B, C, H, W), boxes (K, 4) [y1, x1, y2, x2], box_ind (K,) -> (K, C, ch, cw) ndarray.
    """
    image = np.asarray(image, dtype=np.float64)
    _, n_chan, h, w = image.shape
    ch, cw = crop_size
    out = np.empty((len(boxes), n_chan, ch, cw))
    for k, (y1, x1, y2, x2) in enumerate(np.asarray(boxes, dtype=np.float64).tolist()):
        b = int(box_ind[k])
        height_scale = (y2 - y1) * (h - 1) / (ch - 1) if ch > 1 else 0.0
        width_scale = (x2 - x1) * (w - 1) / (cw - 1) if cw > 1 else 0.0
        for i in range(ch):
            in_y = y1 * (h - 1) + i * height_scale if ch > 1 else 0.5 * (y1 + y2) * (h - 1)
            for j in range(cw):
                in_x = x1 * (w - 1) + j * width_scale if cw > 1 else 0.5 * (x1 + x2) * (w - 1)
                if in_y < 0 or in_y > h - 1 or in_x < 0 or in_x > w - 1:
                    for c in range(n_chan):
                        out[k, c, i, j] = extrapolation_value
                    continue
                top, bottom, y_lerp = math.floor(in_y), math.ceil(in_y), in_y - math.floor(in_y)
                left, right, x_lerp = math.floor(in_x), math.ceil(in_x), in_x - math.floor(in_x)
                for c in range(n_chan):
                    img = image[b, c]
                    top_row = img[top, left] + (img[top, right] - img[top, left]) * x_lerp
                    bottom_row = img[bottom, left] + (img[bottom, right] - img[bottom, left]) * x_lerp
                    out[k, c, i, j] = top_row + (bottom_row - top_row) * y_lerp
    return out


SPECIAL_BOXES = [
    [0.0, 0.0, 1.0, 1.0],  # the full image: edge samples exactly on the border
    [0.2, 0.1, 0.7, 0.9],  # ordinary
    [-0.3, -0.2, 0.5, 0.6],  # partly outside
    [0.4, 0.5, 1.4, 1.3],  # partly outside, far side
    [1.2, 1.1, 1.9, 1.6],  # fully outside
    [-0.9, -0.8, -0.1, -0.2],  # fully outside, before the origin
    [0.8, 0.2, 0.1, 0.9],  # flipped y
    [0.1, 0.9, 0.8, 0.2],  # flipped x
    [0.9, 0.8, 0.3, 0.1],  # flipped both
    [0.5, 0.1, 0.5, 0.8],  # zero height
    [0.1, 0.4, 0.9, 0.4],  # zero width
    [0.35, 0.6, 0.35, 0.6],  # a point
    [0.5, 0.5, 0.5, 0.5],  # a point on the image centre
]


def _special_inputs(seed, batch=2, channels=3, h=13, w=17, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    image = torch.randn(batch, channels, h, w, generator=gen, dtype=dtype)
    random_boxes = torch.rand(8, 4, generator=gen, dtype=dtype) * 1.4 - 0.2
    boxes = torch.cat([torch.tensor(SPECIAL_BOXES, dtype=dtype), random_boxes])
    box_ind = torch.randint(0, batch, (len(boxes),), generator=gen)
    return image, boxes, box_ind


# --------------------------------------------------------------------------- loop oracle


@pytest.mark.parametrize("crop_size", [(1, 1), (7, 7), (14, 14), (5, 9)])
@pytest.mark.parametrize("extrapolation", [0.0, -0.7])
@pytest.mark.parametrize("image_hw", [(13, 17), (1, 9), (6, 1)])
def test_matches_loop_reference(crop_size, extrapolation, image_hw, crop_impl):
    image, boxes, box_ind = _special_inputs(seed=sum(crop_size) + image_hw[0], h=image_hw[0], w=image_hw[1])
    out = crop_impl(image, boxes, box_ind, crop_size, extrapolation)
    assert out.shape == (len(boxes), image.shape[1], *crop_size)
    expected = loop_crop_and_resize(image.numpy(), boxes.numpy(), box_ind.numpy(), crop_size, extrapolation)
    np.testing.assert_allclose(out.numpy(), expected, rtol=0, atol=1e-12)


def test_non_contiguous_inputs_and_int32_box_ind(crop_impl):
    image, boxes, box_ind = _special_inputs(seed=3)
    # Channels-last storage plus a strided slice, transposed boxes, strided int32 indices.
    image_nc = image.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)[:, ::2]
    boxes_nc = boxes.t().contiguous().t()
    ind_nc = torch.stack([box_ind, box_ind], 1).to(torch.int32)[:, 1]
    assert not (image_nc.is_contiguous() or boxes_nc.is_contiguous() or ind_nc.is_contiguous())
    out = crop_impl(image_nc, boxes_nc, ind_nc, (5, 9), 0.25)
    expected = crop_impl(image_nc.contiguous(), boxes, box_ind, (5, 9), 0.25)
    assert torch.equal(out, expected)
    assert out.is_contiguous()


def test_empty_boxes(crop_impl):
    image = torch.randn(2, 3, 5, 6, requires_grad=True)
    boxes = torch.zeros(0, 4, requires_grad=True)
    out = crop_impl(image, boxes, torch.zeros(0, dtype=torch.long), (7, 7))
    assert out.shape == (0, 3, 7, 7) and out.dtype == torch.float32
    out.sum().backward()
    assert torch.equal(image.grad, torch.zeros_like(image))
    assert boxes.grad.shape == (0, 4)


def test_dtypes():
    image, boxes, box_ind = _special_inputs(seed=4, dtype=torch.float32)
    boxes64 = boxes.double().requires_grad_()
    out = crop_and_resize(image, boxes64, box_ind, (7, 7))
    assert out.dtype == torch.float32
    out.sum().backward()
    assert boxes64.grad.dtype == torch.float64
    # Coordinates are computed in the image's dtype: float64 boxes give float32 results.
    assert torch.equal(out, crop_and_resize(image, boxes, box_ind, (7, 7)))


def test_full_box_at_image_size_is_identity_with_zero_box_gradient(crop_impl):
    image = torch.randn(1, 2, 13, 17)
    boxes = torch.tensor([[0.0, 0.0, 1.0, 1.0]], requires_grad=True)
    out = crop_impl(image, boxes, torch.zeros(1, dtype=torch.long), (13, 17))
    assert torch.equal(out[0], image[0])
    out.backward(torch.randn_like(out))
    # Every sample sits on an integer pixel: floor == ceil, so TF's box gradient is exactly 0.
    assert torch.equal(boxes.grad, torch.zeros_like(boxes))


@pytest.mark.parametrize(
    "image_shape, boxes_shape, ind_shape, crop_size, match",
    [
        ((3, 5, 6), (2, 4), (2,), (7, 7), "image must have shape"),
        ((1, 3, 5, 6), (2, 5), (2,), (7, 7), "boxes must have shape"),
        ((1, 3, 5, 6), (4,), (1,), (7, 7), "boxes must have shape"),
        ((1, 3, 5, 6), (2, 4), (3,), (7, 7), "box_ind must have shape"),
        ((1, 3, 5, 6), (2, 4), (2,), (7,), "crop_size must be two ints"),
        ((1, 3, 5, 6), (2, 4), (2,), (7, 0), "crop_size must be positive"),
        ((1, 3, 5, 6), (2, 4), (2,), (7.0, 7), "crop_size must be two ints"),
        ((1, 3, 0, 6), (2, 4), (2,), (7, 7), "non-empty H and W"),
    ],
)
def test_validation(image_shape, boxes_shape, ind_shape, crop_size, match):
    with pytest.raises(ValueError, match=match):
        box_ind = torch.zeros(ind_shape, dtype=torch.long)
        crop_and_resize(torch.zeros(image_shape), torch.zeros(boxes_shape), box_ind, crop_size)


def test_validation_dtypes():
    image, boxes, ind = torch.zeros(1, 1, 3, 3), torch.zeros(1, 4), torch.zeros(1, dtype=torch.long)
    with pytest.raises(ValueError, match="image must be floating point"):
        crop_and_resize(image.long(), boxes, ind, (2, 2))
    with pytest.raises(ValueError, match="boxes must be floating point"):
        crop_and_resize(image, boxes.long(), ind, (2, 2))
    with pytest.raises(ValueError, match="box_ind must be an integer tensor"):
        crop_and_resize(image, boxes, ind.double(), (2, 2))


def _smooth_boxes(gen, n, h, w, crop_size, margin=1e-3):
    """Random float64 boxes whose samples all stay ``margin`` away from integers (so from the
    border and from the kinks too): there the op is smooth and finite differences are valid."""
    boxes = []
    while len(boxes) < n:
        box = torch.rand(4, generator=gen, dtype=torch.float64) * 1.2 - 0.1
        ys, vy = sample_coords(box[0:1], box[2:3], h, crop_size[0])
        xs, vx = sample_coords(box[1:2], box[3:4], w, crop_size[1])
        coords = torch.cat([ys[0], xs[0]])
        if (coords - coords.round()).abs().min() > margin and vy.any() and vx.any():
            boxes.append(box)
    return torch.stack(boxes)


@pytest.mark.parametrize("crop_size", [(1, 1), (3, 4)])
def test_gradcheck(crop_size, crop_impl):
    gen = torch.Generator().manual_seed(11)
    image = torch.randn(2, 2, 5, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    boxes = _smooth_boxes(gen, 4, 5, 6, crop_size).requires_grad_()
    box_ind = torch.tensor([0, 1, 1, 0])
    assert torch.autograd.gradcheck(
        lambda img, bx: crop_impl(img, bx, box_ind, crop_size, 0.3), (image, boxes)
    )


@settings(max_examples=60, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    data=st.data(),
    k=st.integers(0, 5),
    hw=st.tuples(st.integers(1, 8), st.integers(1, 8)),
    crop_size=st.tuples(st.integers(1, 9), st.integers(1, 9)),
    batch=st.integers(1, 2),
    extrapolation=st.sampled_from([0.0, 0.5]),
    seed=st.integers(0, 2**31 - 1),
)
def test_property_matches_loop_reference(data, k, hw, crop_size, batch, extrapolation, seed, crop_impl):
    boxes = data.draw(arrays(np.float64, (k, 4), elements=st.floats(-0.5, 1.5)))
    box_ind = data.draw(arrays(np.int64, (k,), elements=st.integers(0, batch - 1)))
    image = np.random.default_rng(seed).standard_normal((batch, 2, *hw))
    image_t, boxes_t, ind_t = (torch.from_numpy(a) for a in (image, boxes, box_ind))
    out = crop_impl(image_t, boxes_t, ind_t, crop_size, extrapolation)
    expected = loop_crop_and_resize(image, boxes, box_ind, crop_size, extrapolation)
    np.testing.assert_allclose(out.numpy(), expected, rtol=0, atol=1e-12)


# --------------------------------------------------------------------------- TensorFlow


@pytest.fixture(scope="module")
def tf_data():
    with np.load(TF_DATA) as data:
        return dict(data)


def _tf_inputs(tf_data, case):
    """Case ``case`` as torch NCHW inputs, with the upstream gradient of ``out``."""
    get = lambda key: tf_data[f"case{case:02d}_{key}"]  # noqa: E731
    image = torch.from_numpy(get("image")).permute(0, 3, 1, 2)  # NHWC -> NCHW (a view)
    boxes = torch.from_numpy(get("boxes"))
    crop_size = tuple(int(v) for v in get("crop_size"))
    if f"case{case:02d}_dout" in tf_data:
        dout = torch.from_numpy(get("dout"))
    else:  # inverse_crop_sum: out is summed over boxes, so dout is dout_sum broadcast
        dout = torch.from_numpy(get("dout_sum")).expand(len(boxes), -1, -1, -1)
    inputs = dict(image=image, boxes=boxes, box_ind=torch.from_numpy(get("box_ind")), crop_size=crop_size,
                  extrapolation_value=float(get("extrapolation")))
    return inputs, dout.permute(0, 3, 1, 2), get


def _max_abs(a) -> float:
    return max(1.0, float(np.abs(a).max())) if np.size(a) else 1.0


@pytest.mark.parametrize("case", range(NUM_TF_CASES))
def test_tf_sample_coords_are_bit_identical(tf_data, case):
    inputs, _, get = _tf_inputs(tf_data, case)
    _, _, h, w = inputs["image"].shape
    (ch, cw), boxes = inputs["crop_size"], inputs["boxes"]
    in_y, _ = sample_coords(boxes[:, 0], boxes[:, 2], h, ch)
    in_x, _ = sample_coords(boxes[:, 1], boxes[:, 3], w, cw)
    np.testing.assert_array_equal(in_y.numpy(), get("in_y"))
    np.testing.assert_array_equal(in_x.numpy(), get("in_x"))


@pytest.mark.parametrize("case", range(NUM_TF_CASES))
def test_tf_forward(tf_data, case, crop_impl):
    inputs, _, get = _tf_inputs(tf_data, case)
    tf_out = get("out")  # (N, h, w, C'), C' may be the first channels only
    out = crop_impl(**inputs).permute(0, 2, 3, 1).numpy()[..., : tf_out.shape[-1]]
    steady = ~get("out_fragile")  # border samples kept or dropped by one ulp
    np.testing.assert_allclose(out[steady], tf_out[steady], rtol=0, atol=1e-6 * _max_abs(tf_out))
    # The coordinates are bit-identical, so even the fragile border decisions agree: in fact
    # the whole float32 forward is TF's to the bit.
    np.testing.assert_array_equal(out, tf_out)


@pytest.mark.parametrize("case", range(NUM_TF_CASES))
def test_tf_gradients(tf_data, case, crop_impl):
    inputs, dout, get = _tf_inputs(tf_data, case)
    image = inputs["image"].requires_grad_()
    boxes = inputs["boxes"].requires_grad_()
    dimage, dboxes = torch.autograd.grad(crop_impl(**inputs), (image, boxes), dout)
    tf_dimage = get("dimage")
    np.testing.assert_allclose(dimage.permute(0, 2, 3, 1).numpy(), tf_dimage, rtol=0, atol=2e-6 * _max_abs(tf_dimage))
    if f"case{case:02d}_dboxes" not in tf_data:  # slimmed cases 04, 05, 13
        return
    # At a kink the box gradient is one-sided, and TF's box-gradient kernel computes the sample
    # coordinates in another operation order than its forward, so only compare smooth boxes.
    smooth = ~get("dboxes_kink")
    tf_dboxes = get("dboxes")
    np.testing.assert_allclose(dboxes.numpy()[smooth], tf_dboxes[smooth], rtol=0, atol=1e-5 * _max_abs(tf_dboxes))
    if case in (11, 12):  # every sample on an integer pixel: TF's dboxes is exactly 0, and so is ours
        assert not tf_dboxes.any() and not dboxes.any()
