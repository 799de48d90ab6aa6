"""What only a GPU can show about the CUDA kernels: grids at the largest sizes ivr meets,
element indices past 2^31, half-precision sums, the caller's stream, the tensor's device.
Every test needs a CUDA GPU and ivr_ext built with CUDA (skipped otherwise)."""

import pytest
import torch

from ivr_core.ops import inverse_boxes

from ops_support import compiled_crop, compiled_device, compiled_paste

pytestmark = pytest.mark.cuda


@pytest.fixture
def cuda():
    compiled_device("cuda")
    torch.cuda.empty_cache()
    yield torch.device("cuda")
    torch.use_deterministic_algorithms(False)
    torch.cuda.empty_cache()


@pytest.fixture
def deterministic():
    torch.use_deterministic_algorithms(True)
    yield
    torch.use_deterministic_algorithms(False)


def _random_px_boxes(gen, k, size, min_side=16):
    """(K, 4) pixel boxes (x1, y1, x2, y2) inside a size x size image."""
    wh = min_side + torch.rand(k, 2, generator=gen) * (size / 16)
    xy = torch.rand(k, 2, generator=gen) * (size - wh)
    return torch.cat([xy, xy + wh], 1)


def _grads(fn, inputs, dout):
    inputs = [x.detach().clone().requires_grad_() for x in inputs]
    return [g.cpu() for g in torch.autograd.grad(fn(*inputs), inputs, dout)]


def _assert_close_in_norm(got, want, tol):
    """||got - want|| / ||want|| <= tol: sums of many terms grouped differently (box
    gradients; atomic adds) agree to rounding relative to their scale, not element-wise."""
    err = float((got.double() - want.double()).norm() / want.double().norm())
    assert err <= tol, f"relative error {err:.2e} > {tol:.0e}"


# ----------------------------------------------------------------- the largest grids


@pytest.mark.parametrize("mode", ["atomic", "deterministic"])
def test_crop_2000_boxes_from_a_4096_map_matches_the_cpu_kernel(cuda, mode, request):
    if mode == "deterministic":
        request.getfixturevalue("deterministic")
    gen = torch.Generator().manual_seed(0)
    c = 4 if mode == "atomic" else 1  # the gather backward costs K x crop_h per pixel
    image = torch.randn(1, c, 4096, 4096, generator=gen)
    boxes = torch.rand(2000, 4, generator=gen) * 1.2 - 0.1  # some partly outside
    ind = torch.zeros(2000, dtype=torch.long)
    dout = torch.randn(2000, c, 7, 7, generator=gen)

    def op(img, bx):
        return compiled_crop(img, bx, ind.to(img.device), (7, 7))

    on_gpu = [x.to(cuda) for x in (image, boxes)]
    assert torch.equal(op(*on_gpu).cpu(), op(image, boxes))  # forward: bit for bit
    g_gpu = _grads(op, on_gpu, dout.to(cuda))
    g_cpu = _grads(op, (image, boxes), dout)
    if mode == "deterministic":  # the gather kernel adds in the CPU's order
        assert torch.equal(g_gpu[0], g_cpu[0])
    _assert_close_in_norm(g_gpu[0], g_cpu[0], 1e-6)
    _assert_close_in_norm(g_gpu[1], g_cpu[1], 1e-5)


def test_paste_2000_regions_onto_a_4096_map_matches_the_cpu_kernel(cuda):
    gen = torch.Generator().manual_seed(1)
    px = _random_px_boxes(gen, 2000, 4096 * 16)
    inv = inverse_boxes(px, 16, 4096, 4096)
    maps = torch.randn(2000, 2, 7, 7, generator=gen)
    dout = torch.randn(2, 4096, 4096, generator=gen)

    def op(m, b):
        return compiled_paste(m, b, (4096, 4096))

    on_gpu = [x.to(cuda) for x in (maps, inv)]
    assert torch.equal(op(*on_gpu).cpu(), op(maps, inv))  # both sum regions in order
    g_gpu = _grads(op, on_gpu, dout.to(cuda))
    g_cpu = _grads(op, (maps, inv), dout)
    assert torch.equal(g_gpu[0], g_cpu[0])  # a gather, in the CPU's order
    _assert_close_in_norm(g_gpu[1], g_cpu[1], 1e-5)


# ------------------------------------------------------- element indices past 2^31
# Integer-valued data on sample grids of power-of-two spacing: every product and partial
# sum is exact in float32, so chunked sums (each chunk below 2^31 elements) must equal the
# one-launch result exactly, whatever the order of the adds.

INT32_MAX = 2**31 - 1


def test_crop_with_more_than_2_31_output_elements(cuda):
    gen = torch.Generator().manual_seed(2)
    c, batch, side = 64, 8, 33  # span 32: box edges a / 32 sample whole pixels
    k = INT32_MAX // (c * 49) + 1000
    assert k * c * 49 > INT32_MAX
    image = torch.randint(-3, 4, (batch, c, side, side), generator=gen).half().to(cuda)
    start = torch.randint(0, side - 7, (k, 2), generator=gen).double()
    boxes = (torch.cat([start, start + 6], 1) / (side - 1)).to(cuda)  # [y1, x1, y2, x2]
    ind = torch.randint(0, batch, (k,), generator=gen).to(cuda)
    image.requires_grad_()
    out = compiled_crop(image, boxes, ind, (7, 7))
    tail = slice(k - 300, k)
    assert torch.equal(out[tail], compiled_crop(image.detach(), boxes[tail], ind[tail], (7, 7)))
    grad, = torch.autograd.grad(out, image, torch.ones_like(out))
    del out
    expected = torch.zeros(image.shape, dtype=torch.float32, device=cuda)
    img32 = image.detach().float().requires_grad_()
    for lo in range(0, k, 200_000):
        part = compiled_crop(img32, boxes[lo:lo + 200_000], ind[lo:lo + 200_000], (7, 7))
        expected += torch.autograd.grad(part, img32, torch.ones_like(part))[0]
    assert expected.max() > 2048  # beyond what a half-precision running sum holds
    assert torch.equal(grad, expected.half())


def test_paste_with_more_than_2_31_map_elements(cuda):
    gen = torch.Generator(device=cuda).manual_seed(3)
    c, side = 64, 33
    k = INT32_MAX // (c * 81) + 1000  # 9 x 9 maps: span 8
    assert k * c * 81 > INT32_MAX
    maps = torch.randint(0, 4, (k, c, 9, 9), generator=gen, device=cuda, dtype=torch.half)
    # edges -p and 2 - p, p = q / 8: the samples fall on half-integers of the map
    p = torch.randint(0, 33, (k, 2), generator=gen, device=cuda, dtype=torch.float64) / 8
    boxes = torch.cat([-p, 2 - p], 1)
    maps.requires_grad_()
    out = compiled_paste(maps, boxes, (side, side))
    expected = torch.zeros(c, side, side, dtype=torch.float32, device=cuda)
    for lo in range(0, k, 100_000):
        expected += compiled_paste(maps.detach()[lo:lo + 100_000].float(),
                                   boxes[lo:lo + 100_000], (side, side))
    assert torch.equal(out, expected.half())
    dout = torch.randn(c, side, side, generator=gen, device=cuda).half()
    grad, = torch.autograd.grad(out, maps, dout)
    tail = slice(k - 300, k)  # each region's map gradient depends on its box alone
    m = maps.detach()[tail].clone().requires_grad_()
    tail_grad, = torch.autograd.grad(compiled_paste(m, boxes[tail], (side, side)), m, dout)
    assert torch.equal(grad[tail], tail_grad)


# ------------------------------------------------------------- half-precision sums


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("mode", ["atomic", "deterministic"])
def test_half_gradients_sum_in_float_and_round_once(cuda, dtype, mode, request):
    """5000 boxes over the whole 4 x 4 image, samples on its pixels: each pixel's gradient
    is 5000 ones. A half-precision running sum stops at 2048 (fp16) or 256 (bf16)."""
    if mode == "deterministic":
        request.getfixturevalue("deterministic")
    image = torch.zeros(1, 3, 4, 4, dtype=dtype, device=cuda, requires_grad=True)
    boxes = torch.tensor([[0.0, 0.0, 1.0, 1.0]], device=cuda).repeat(5000, 1)
    ind = torch.zeros(5000, dtype=torch.long, device=cuda)
    out = compiled_crop(image, boxes, ind, (4, 4))
    grad, = torch.autograd.grad(out, image, torch.ones_like(out))
    assert torch.equal(grad, torch.full_like(grad, 5000.0))  # 5000 rounded once to dtype
    maps = torch.ones(5000, 3, 4, 4, dtype=dtype, device=cuda)
    pasted = compiled_paste(maps, boxes, (4, 4))
    assert torch.equal(pasted, torch.full_like(pasted, 5000.0))


# ------------------------------------------------------------------ stream, device


def test_kernels_run_on_the_callers_stream_under_graph_capture(cuda):
    """A CUDA graph captures only the work on its capture stream; a kernel on any other
    stream (or a host sync) makes the capture fail. Replays must track new inputs."""
    gen = torch.Generator().manual_seed(4)
    image = torch.randn(2, 8, 38, 50, generator=gen).to(cuda).requires_grad_()
    boxes = (torch.rand(16, 4, generator=gen) * 1.2 - 0.1).to(cuda).requires_grad_()
    ind = torch.randint(0, 2, (16,), generator=gen).to(cuda)
    maps = torch.randn(16, 8, 7, 7, generator=gen).to(cuda).requires_grad_()

    def step():
        crops = compiled_crop(image, boxes, ind, (7, 7))
        pasted = compiled_paste(maps, boxes, (38, 50))
        loss = crops.square().sum() + pasted.square().sum()
        return torch.autograd.grad(loss, (image, boxes, maps))

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        step()  # warm-up outside the capture, as CUDA graphs require
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured = step()
    with torch.no_grad():
        image.copy_(torch.randn(image.shape, generator=gen))
        maps.copy_(torch.randn(maps.shape, generator=gen))
    graph.replay()
    for got, want in zip(captured, step()):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_kernels_run_on_the_tensors_device_not_the_current_one():
    compiled_device("cuda")
    if torch.cuda.device_count() < 2:
        pytest.skip("needs two CUDA GPUs")
    gen = torch.Generator().manual_seed(5)
    image = torch.randn(2, 4, 13, 17, generator=gen, dtype=torch.float64)
    boxes = torch.rand(9, 4, generator=gen, dtype=torch.float64) * 1.2 - 0.1
    ind = torch.randint(0, 2, (9,), generator=gen)
    maps = torch.randn(9, 4, 7, 7, generator=gen, dtype=torch.float64)

    def run(device):
        x, b, m = (t.to(device).requires_grad_() for t in (image, boxes, maps))
        crops = compiled_crop(x, b, ind.to(device), (5, 6))
        pasted = compiled_paste(m, b, (11, 12))
        assert crops.device == x.device and pasted.device == x.device
        grads = torch.autograd.grad(crops.square().sum() + pasted.square().sum(), (x, b, m))
        return [t.cpu() for t in (crops, pasted, *grads)]

    with torch.cuda.device(0):
        on_second = run("cuda:1")
    for got, want in zip(on_second, run("cpu")):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def test_an_empty_batch_is_a_clear_error_not_a_device_assert(cuda):
    image = torch.zeros(0, 3, 5, 5, device=cuda)
    boxes = torch.rand(2, 4, device=cuda)
    ind = torch.zeros(2, dtype=torch.long, device=cuda)
    with pytest.raises(RuntimeError, match=r"box_ind must lie in \[0, 0\)"):
        compiled_crop(image, boxes, ind, (3, 3))
    torch.cuda.synchronize()  # the context is intact: a device assert would raise here
    assert compiled_crop(torch.ones(1, 3, 5, 5, device=cuda), boxes, ind, (3, 3)).eq(1).all()
