"""The region ops under autocast (runtime.amp = bf16 | fp16): they compute in float32 and
return float32, through the compiled kernels (ivr_ext's autocast kernels) rather than the
reference, and gradients flow back to the half-precision inputs."""

import warnings

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from ivr_core.ops import OpsBackendWarning, backend, inverse_boxes

from ops_support import compiled_device

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]
HALF = [torch.bfloat16, torch.float16]


@pytest.fixture
def fresh_backend():
    """The front end as a new process finds it: auto, nothing announced yet."""
    backend.set_backend("auto")
    backend._state["said"].clear()  # each implementation is named once per process
    yield
    backend.set_backend("auto")


def _crop_inputs(device, dtype):
    gen = torch.Generator().manual_seed(0)
    image = torch.randn(2, 6, 13, 17, generator=gen).to(device, dtype).requires_grad_()
    boxes = (torch.rand(9, 4, generator=gen) * 1.4 - 0.2).to(device)
    box_ind = torch.randint(0, 2, (9,), generator=gen).to(device)
    return image, boxes, box_ind


def _run(device, amp, fn):
    """fn() under ``amp`` autocast, then its backward; (output, dispatched ivr op names,
    front-end announcements)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            with torch.autocast(device, dtype=amp):
                out = fn()
            out.backward(torch.ones_like(out))
    ops = {e.name for e in prof.events() if e.name.startswith("ivr::")}
    notes = [str(w.message) for w in caught if issubclass(w.category, OpsBackendWarning)]
    return out, ops, notes


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("amp", HALF)
def test_crop_runs_compiled_in_float32_under_autocast(device, amp, fresh_backend):
    compiled_device(device)
    image, boxes, box_ind = _crop_inputs(device, amp)
    out, ops, notes = _run(device, amp,
                           lambda: backend.crop_and_resize(image, boxes, box_ind, (5, 4)))
    assert ops == {"ivr::crop_and_resize", "ivr::_crop_and_resize_backward"}
    assert len(notes) == 1 and "compiled kernels" in notes[0]
    assert out.dtype == torch.float32
    # the float32 computation on the upcast input, and its gradient rounded once
    x = image.detach().float().requires_grad_()
    expected = torch.ops.ivr.crop_and_resize(x, boxes.float(), box_ind, 5, 4, 0.0)
    expected.backward(torch.ones_like(expected))
    assert torch.equal(out, expected)
    assert image.grad.dtype == amp
    if device == "cpu":  # on CUDA, atomic adds sum in varying order
        assert torch.equal(image.grad, x.grad.to(amp))
    else:
        torch.testing.assert_close(image.grad.float(), x.grad, rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("amp", HALF)
def test_paste_sums_many_regions_exactly_under_autocast(device, amp, fresh_backend):
    """2049 regions of ones over the same cells sum to 2049, which neither bf16 nor fp16
    holds (both round it to 2048), nor a running sum in either."""
    compiled_device(device)
    k = 2049
    maps = torch.ones(k, 2, 7, 7, dtype=amp, device=device, requires_grad=True)
    px = torch.tensor([[0.0, 0.0, 160.0, 160.0]]).repeat(k, 1)  # the same 11 x 11 cells
    inv = inverse_boxes(px, 16, 20, 20).to(device)
    out, ops, notes = _run(device, amp, lambda: backend.paste_and_sum(maps, inv, (20, 20)))
    assert ops == {"ivr::paste_and_sum", "ivr::_paste_and_sum_backward"}
    assert len(notes) == 1 and "compiled kernels" in notes[0]
    assert out.dtype == torch.float32
    assert out[:, :10, :10].eq(k).all() and out[:, 11:, :].eq(0).all()
    assert torch.tensor(float(k), dtype=amp).item() != k  # the case is a real one
    assert maps.grad.dtype == amp and maps.grad.abs().sum() > 0


@pytest.mark.parametrize("amp", HALF)
def test_reference_also_returns_float32_under_autocast(amp, fresh_backend):
    compiled_device("cpu")
    image, boxes, box_ind = _crop_inputs("cpu", amp)
    compiled, _, _ = _run("cpu", amp,
                          lambda: backend.crop_and_resize(image, boxes, box_ind, (5, 4)))
    backend.set_backend("reference")
    ref, ops, notes = _run("cpu", amp,
                           lambda: backend.crop_and_resize(image, boxes, box_ind, (5, 4)))
    assert not ops and "pure-PyTorch reference" in notes[0]
    assert ref.dtype == torch.float32 and torch.equal(ref, compiled)


@pytest.mark.parametrize("amp", HALF)
def test_the_reference_runs_float32_inputs_in_float32_under_autocast(amp, fresh_backend):
    """A float32 count of 1001 writing boxes (not a bf16/fp16 number) stays exact: autocast
    must not lower the reference's own matmuls either."""
    backend.set_backend("reference")
    k = 1001
    ones = torch.ones(k, 1, 7, 7)
    boxes = torch.tensor([[0.0, 0.0, 0.5, 0.5]] * k)
    with warnings.catch_warnings(), torch.autocast("cpu", dtype=amp):
        warnings.simplefilter("ignore")
        count = backend.paste_and_sum(ones, boxes, (8, 8))
    assert count.dtype == torch.float32 and count.max().item() == k


def test_without_autocast_half_inputs_still_fall_back_on_the_cpu(fresh_backend):
    image, boxes, box_ind = _crop_inputs("cpu", torch.bfloat16)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = backend.crop_and_resize(image, boxes, box_ind, (5, 4))
    assert out.dtype == torch.bfloat16
    assert "pure-PyTorch reference" in str(caught[0].message)
