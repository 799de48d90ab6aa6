"""The compiled CPU crop_and_resize: its AVX-512 and portable kernels, both memory layouts,
thread counts, and a forked process.

Where the CPU has AVX-512 the op runs vector kernels; IVR_CPU_SIMD=off (read at every call)
selects the portable loops. The two give the same outputs and gradients to the bit, in NCHW
and channels-last memory, on any number of threads. The shared behaviour tests (oracle,
TensorFlow's outputs, gradcheck, fuzzing) run the default path, i.e. the vector kernels
here.
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ivr_core.ops import reference
from ops_support import compiled_crop, load_ext

SPECIAL = [[0, 0, 1, 1], [-0.3, -0.2, 0.5, 0.6], [1.2, 1.1, 1.9, 1.6], [0.8, 0.2, 0.1, 0.9],
           [0.5, 0.1, 0.5, 0.8], [0.35, 0.6, 0.35, 0.6], [0.25, 0.0, 0.75, 1.0]]


def _has_avx512() -> bool:
    cpuinfo = Path("/proc/cpuinfo")
    return cpuinfo.exists() and " avx512f" in cpuinfo.read_text()


def _inputs(dtype, layout, batch, c, h, w, k, crop, seed=0):
    """image (B, C, H, W) in `layout`, boxes (K, 4), box_ind (K,) never naming the last image,
    and an upstream gradient (K, C, *crop) in `layout`."""
    gen = torch.Generator().manual_seed(seed)
    image = torch.randn(batch, c, h, w, generator=gen, dtype=dtype)
    image = image.contiguous(memory_format=layout)
    boxes = torch.cat([torch.tensor(SPECIAL, dtype=dtype),
                       torch.rand(k, 4, generator=gen, dtype=dtype) * 1.4 - 0.2])
    box_ind = torch.randint(0, max(1, batch - 1), (len(boxes),), generator=gen)
    dout = torch.randn(len(boxes), c, *crop, generator=gen, dtype=dtype)
    return image, boxes, box_ind, dout.contiguous(memory_format=layout)


def _forward_and_grads(image, boxes, box_ind, dout, crop):
    img, bx = image.clone().requires_grad_(), boxes.clone().requires_grad_()
    out = compiled_crop(img, bx, box_ind, crop, 0.25)
    return (out, *torch.autograd.grad(out, (img, bx), dout))


LAYOUTS = {"nchw": torch.contiguous_format, "nhwc": torch.channels_last}
# (batch, C, H, W, K, crop): small and odd (channel counts that are no multiple of a vector,
# or of a kernel's block of 4 vectors, 70 = a full block and part of one; a crop of one
# sample, an image no box names), and three large enough to run on several threads with
# streamed stores: one whose boxes' output planes start off a 64-byte boundary, one whose
# image gradient (over 2 MiB) is streamed too, in blocks of channels and a part of one.
SHAPES = [(3, 5, 9, 13, 12, (7, 7)), (2, 21, 6, 17, 9, (1, 1)), (3, 40, 13, 7, 10, (5, 9)),
          (2, 70, 11, 15, 20, (7, 7)), (2, 37, 20, 30, 60, (21, 23)),
          (2, 144, 38, 50, 40, (7, 7)), (1, 256, 38, 50, 128, (14, 14))]


@pytest.mark.skipif(not _has_avx512(), reason="no AVX-512 here: only the portable kernels run")
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s[:5])))
def test_vector_and_portable_kernels_agree_bitwise(layout, dtype, shape, monkeypatch):
    load_ext()
    batch, c, h, w, k, crop = shape
    inputs = _inputs(dtype, LAYOUTS[layout], batch, c, h, w, k, crop)
    vector = _forward_and_grads(*inputs, crop)
    monkeypatch.setenv("IVR_CPU_SIMD", "off")
    portable = _forward_and_grads(*inputs, crop)
    for a, b in zip(vector, portable):
        assert a.stride() == b.stride()
        assert torch.equal(a, b)
    if batch > 1:
        assert vector[1][-1].abs().max() == 0  # the image no box names has no gradient


@pytest.mark.parametrize("layout", LAYOUTS)
def test_channels_last_and_nchw_agree_with_the_reference(layout):
    load_ext()
    crop = (5, 9)
    image, boxes, box_ind, dout = _inputs(torch.float64, LAYOUTS[layout], 3, 21, 9, 13, 12, crop)
    out, dimage, dboxes = _forward_and_grads(image, boxes, box_ind, dout, crop)
    assert out.is_contiguous(memory_format=LAYOUTS[layout])
    assert dimage.is_contiguous(memory_format=LAYOUTS[layout])
    img, bx = image.clone().requires_grad_(), boxes.clone().requires_grad_()
    expected = reference.crop_and_resize(img, bx, box_ind, crop, 0.25)
    assert torch.equal(out, expected)
    edimage, edboxes = torch.autograd.grad(expected, (img, bx), dout)
    torch.testing.assert_close(dimage, edimage, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(dboxes, edboxes, rtol=1e-10, atol=1e-10)


@pytest.fixture
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_results_do_not_depend_on_the_thread_count(layout, restore_threads):
    load_ext()
    shape = SHAPES[-1]
    inputs = _inputs(torch.float32, LAYOUTS[layout], *shape)
    results = []
    for threads in (1, 3):
        torch.set_num_threads(threads)
        results.append(_forward_and_grads(*inputs, shape[-1]))
    for a, b in zip(*results):
        assert torch.equal(a, b)


def _crop_ops(image, boxes, box_ind, dout, crop):
    """The forward op and the backward op, called directly (no autograd)."""
    out = torch.ops.ivr.crop_and_resize(image, boxes, box_ind, *crop, 0.25)
    dimage, _ = torch.ops.ivr._crop_and_resize_backward(dout, image, boxes, box_ind, True, False)
    return out, dimage


def _crop_in_child(queue, layout):
    # PyTorch's own OpenMP ops hang in a fork of a process that ran them (libgomp is not
    # fork-safe; DataLoader workers run on one thread): only the crop ops get two threads.
    torch.set_num_threads(1)
    shape = SHAPES[-1]
    inputs = _inputs(torch.float32, LAYOUTS[layout], *shape)
    torch.set_num_threads(2)
    out, dimage = _crop_ops(*inputs, shape[-1])
    torch.set_num_threads(1)
    queue.put((out.numpy(), dimage.numpy()))


@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_forked_process_runs_the_op(layout, restore_threads):
    """The kernels hand work to ivr's helper threads, which a fork does not copy: in a
    forked process whose parent ran them, the op must still finish, with the same results.
    The parent is a fresh interpreter: the test process has threads of earlier tests that a
    fork could find holding a lock, which is not what this checks."""
    if not os.environ.get("IVR_FORK_PARENT"):
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
             f"{__file__}::test_a_forked_process_runs_the_op[{layout}]"],
            capture_output=True, text=True, timeout=300, cwd=Path(__file__).parents[2],
            env={**os.environ, "IVR_FORK_PARENT": "1"})
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
        return
    load_ext()
    torch.set_num_threads(2)
    shape = SHAPES[-1]
    out, dimage = _crop_ops(*_inputs(torch.float32, LAYOUTS[layout], *shape), shape[-1])
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_crop_in_child, args=(queue, layout))
    child.start()
    try:
        child_out, child_dimage = queue.get(timeout=120)
    except Exception:
        pytest.fail("the op did not finish in a forked process")
    finally:
        child.join(timeout=10)
        if child.is_alive():
            child.kill()
    assert child.exitcode == 0
    assert torch.equal(torch.from_numpy(child_out), out.contiguous())
    assert torch.equal(torch.from_numpy(child_dimage), dimage.contiguous())


def test_opcheck_channels_last():
    load_ext()
    image, boxes, box_ind, _ = _inputs(torch.float64, torch.channels_last, 2, 3, 5, 6, 2, (3, 4))
    image.requires_grad_()
    torch.library.opcheck(torch.ops.ivr.crop_and_resize, (image, boxes, box_ind, 3, 4, 0.5))
