"""The compiled ops (ivr_ext) against the pure-PyTorch reference, opcheck, and the front end.

The shared behaviour tests (TensorFlow's outputs, the float64 loop oracle, gradcheck, empty
and non-contiguous inputs) run on every implementation through the ``crop_impl`` and
``paste_impl`` fixtures of conftest.py; this file holds what is specific to the kernels.
"""

import warnings

import pytest
import torch

from ivr_core.errors import IvrError
from ivr_core.ops import OpsBackendWarning, backend, inverse_boxes, reference

from ops_support import compiled_crop, compiled_device, compiled_paste, load_ext

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]
SPECIAL = [[0, 0, 1, 1], [-0.3, -0.2, 0.5, 0.6], [1.2, 1.1, 1.9, 1.6], [0.8, 0.2, 0.1, 0.9],
           [0.1, 0.9, 0.8, 0.2], [0.5, 0.1, 0.5, 0.8], [0.35, 0.6, 0.35, 0.6]]


def _crop_inputs(device, dtype, k=24, batch=2, c=5, h=13, w=17, seed=0):
    gen = torch.Generator().manual_seed(seed)
    image = torch.randn(batch, c, h, w, generator=gen).to(device, dtype)
    boxes = torch.cat([torch.tensor(SPECIAL, dtype=torch.float64),
                       torch.rand(k, 4, generator=gen, dtype=torch.float64) * 1.4 - 0.2])
    box_ind = torch.randint(0, batch, (len(boxes),), generator=gen)
    return image, boxes.to(device, dtype), box_ind.to(device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("crop", [(1, 1), (7, 7), (14, 14), (5, 9)])
def test_crop_forward_is_bitwise_the_reference(device, dtype, crop):
    compiled_device(device)
    image, boxes, box_ind = _crop_inputs(device, dtype)
    out = compiled_crop(image, boxes, box_ind, crop, 0.25)
    assert torch.equal(out, reference.crop_and_resize(image, boxes, box_ind, crop, 0.25))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("crop", [(1, 1), (7, 7), (5, 9)])
def test_crop_gradients_match_the_reference(device, crop):
    compiled_device(device)
    image, boxes, box_ind = _crop_inputs(device, torch.float64, seed=1)
    dout = torch.randn(len(boxes), image.shape[1], *crop, dtype=torch.float64, device=device)
    grads = []
    for fn in (compiled_crop, reference.crop_and_resize):
        img, bx = image.clone().requires_grad_(), boxes.clone().requires_grad_()
        grads.append(torch.autograd.grad(fn(img, bx, box_ind, crop, 0.0), (img, bx), dout))
    torch.testing.assert_close(grads[0][0], grads[1][0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grads[0][1], grads[1][1], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("device", DEVICES)
def test_paste_matches_the_reference_on_model_shapes(device):
    compiled_device(device)
    gen = torch.Generator().manual_seed(3)
    xy = torch.rand(40, 2, generator=gen) * torch.tensor([700.0, 500.0])
    px = torch.cat([xy, xy + 1 + torch.rand(40, 2, generator=gen) * 300], 1)
    px[0] = torch.tensor([0.0, 0.0, 799.0, 599.0])  # the whole image
    px[1] = torch.tensor([5.0, 5.0, 6.0, 6.0])  # smaller than a cell
    boxes = inverse_boxes(px.double(), 16, 38, 50).to(device)
    maps = torch.randn(40, 16, 7, 7, generator=gen, dtype=torch.float64).to(device)
    maps.requires_grad_()
    out = compiled_paste(maps, boxes, (38, 50))
    expected = reference.paste_and_sum_reference(maps, boxes, (38, 50))
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    dout = torch.randn_like(out)
    g1, = torch.autograd.grad(out, maps, dout)
    g2, = torch.autograd.grad(expected, maps, dout)
    torch.testing.assert_close(g1, g2, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device):
    compiled_device(device)
    image, boxes, box_ind = _crop_inputs(device, torch.float64, k=4)
    image.requires_grad_()
    torch.library.opcheck(torch.ops.ivr.crop_and_resize, (image, boxes, box_ind, 3, 4, 0.5))
    maps = torch.randn(3, 2, 7, 7, dtype=torch.float64, device=device, requires_grad=True)
    inv = inverse_boxes(torch.tensor([[0.0, 0, 40, 30], [10, 20, 90, 50], [3, 3, 4, 70]],
                                     dtype=torch.float64), 16, 5, 6).to(device)
    torch.library.opcheck(torch.ops.ivr.paste_and_sum, (maps, inv, 5, 6))


@pytest.mark.parametrize("device", DEVICES)
def test_double_backward_raises(device):
    """The gradients are not differentiable: a graph of them is refused, not built wrong."""
    compiled_device(device)
    image, boxes, box_ind = _crop_inputs(device, torch.float64, k=4)
    image.requires_grad_()
    out = compiled_crop(image, boxes, box_ind, (3, 3))
    with pytest.raises(RuntimeError, match="crop_and_resize has no double backward"):
        torch.autograd.grad(out.square().sum(), image, create_graph=True)
    grad, = torch.autograd.grad(compiled_crop(image, boxes, box_ind, (3, 3)).square().sum(),
                                image)
    assert not grad.requires_grad
    maps = torch.randn(3, 2, 7, 7, dtype=torch.float64, device=device, requires_grad=True)
    inv = inverse_boxes(torch.tensor([[0.0, 0, 40, 30], [10, 20, 90, 50], [3, 3, 4, 70]],
                                     dtype=torch.float64), 16, 5, 6).to(device)
    with pytest.raises(RuntimeError, match="paste_and_sum has no double backward"):
        torch.autograd.grad(compiled_paste(maps, inv, (5, 6)).square().sum(), maps,
                            create_graph=True)


def test_bad_box_index_and_shapes_are_caught():
    load_ext()
    image, boxes, box_ind = _crop_inputs("cpu", torch.float32)
    with pytest.raises(RuntimeError, match=r"box_ind must lie in \[0, 2\)"):
        compiled_crop(image, boxes, box_ind + 1, (3, 3))
    with pytest.raises(RuntimeError, match="boxes must be \\(K, 4\\)"):
        compiled_crop(image, boxes[:, :3], box_ind, (3, 3))
    with pytest.raises(RuntimeError, match="crop size must be positive"):
        compiled_crop(image, boxes, box_ind, (0, 3))


@pytest.fixture
def restore_backend():
    yield
    backend.set_backend("auto")


def test_front_end_chooses_and_announces_once(restore_backend):
    load_ext()
    image, boxes, box_ind = _crop_inputs("cpu", torch.float32)
    backend._state["said"].clear()  # as in a new process
    # a second training or test in the same process (set_backend again) says nothing new
    for mode, expect in (("auto", "compiled kernels"), ("auto", None),
                         ("reference", "pure-PyTorch reference"), ("reference", None)):
        backend.set_backend(mode)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            backend.crop_and_resize(image, boxes, box_ind, (7, 7))
            backend.paste_and_sum(torch.zeros(2, 3, 7, 7), boxes[:2], (5, 5))
        notes = [str(w.message) for w in caught if issubclass(w.category, OpsBackendWarning)]
        assert len(notes) == (expect is not None) and (expect is None or expect in notes[0])
    backend.set_backend("compiled")
    with pytest.raises(IvrError, match="no cpu kernel for torch.float16"):
        backend.crop_and_resize(image.half(), boxes, box_ind, (7, 7))
    with pytest.raises(IvrError, match="unknown ops backend"):
        backend.set_backend("fast")
