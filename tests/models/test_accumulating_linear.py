import pytest
import torch
from torch import nn

from ivr_core.models.accumulating_linear import AccumulatingLinear


def _pair(dtype=torch.float64):
    torch.manual_seed(0)
    fused = AccumulatingLinear(12, 8).to(dtype)
    plain = nn.Linear(12, 8).to(dtype)
    plain.load_state_dict(fused.state_dict())
    return fused, plain


def _use_three_times(layer, x):
    """Like the memory model: the same layer on inputs that depend on its earlier outputs."""
    h = x
    outs = []
    for _ in range(3):
        y = layer(h)
        outs.append(y)
        h = x + torch.tanh(y).repeat(1, 2)[:, :12] * 0.5
    return sum((o ** 2).sum() * (i + 1) for i, o in enumerate(outs))


@pytest.mark.parametrize("steps", [1, 2])  # 2: adds into gradients already there
def test_gradients_equal_nn_linear(steps):
    fused, plain = _pair()
    grads_x = []
    for layer in (fused, plain):
        x = torch.randn(5, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(1),
                        requires_grad=True)
        for _ in range(steps):
            _use_three_times(layer, x).backward()
        grads_x.append(x.grad)
    torch.testing.assert_close(fused.weight.grad, plain.weight.grad, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(fused.bias.grad, plain.bias.grad, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grads_x[0], grads_x[1], rtol=1e-12, atol=1e-12)


def test_zeroed_gradient_is_overwritten_not_kept():
    fused, plain = _pair()
    x = torch.randn(5, 12, dtype=torch.float64)
    _use_three_times(fused, x).backward()
    fused.zero_grad(set_to_none=False)
    _use_three_times(fused, x).backward()
    _use_three_times(plain, x).backward()
    torch.testing.assert_close(fused.weight.grad, plain.weight.grad, rtol=1e-12, atol=1e-12)


def test_frozen_weight_gets_no_gradient():
    fused, _ = _pair()
    fused.weight.requires_grad_(False)
    x = torch.randn(5, 12, dtype=torch.float64, requires_grad=True)
    _use_three_times(fused, x).backward()
    assert fused.weight.grad is None and fused.bias.grad is not None and x.grad is not None


def test_under_autocast_matches_nn_linear():
    fused, plain = _pair(torch.float32)
    x = torch.randn(5, 12)
    for layer in (fused, plain):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = _use_three_times(layer, x).float()
        loss.backward()
    assert fused.weight.grad.dtype == torch.float32
    torch.testing.assert_close(fused.weight.grad, plain.weight.grad, rtol=2e-2, atol=2e-2)
    torch.testing.assert_close(fused.bias.grad, plain.bias.grad, rtol=2e-2, atol=2e-2)


def test_without_grad_is_plain_linear():
    fused, plain = _pair()
    x = torch.randn(5, 12, dtype=torch.float64)
    with torch.no_grad():
        assert torch.equal(fused(x), plain(x))
