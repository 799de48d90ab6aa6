"""runtime.compile: the dense parts of the memory model under torch.compile on the CPU give
the eager model's outputs, and the parameter names (checkpoints) do not change."""

import copy

import pytest
import torch
import torch._dynamo

from conftest import TINY  # tests/ is on sys.path (pyproject: pythonpath)
from ivr_core.config import load_config
from ivr_core.engine.runtime import compile_dense_parts, dense_parts
from ivr_core.models import build_model
from ivr_core.models.memory import Context, GatedUpdate

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _memory_model(*extra):
    cfg = load_config(overrides=[*TINY, "model.type=memory", *extra])
    torch.manual_seed(0)
    return cfg, build_model(cfg, 7).eval()


def test_dense_parts_are_the_convolutions_and_off_by_default():
    cfg, model = _memory_model()
    parts = dense_parts(model)
    assert parts[:2] == [model.base.backbone.head, model.base.backbone.tail]
    assert [type(p) for p in parts[2:]] == [Context, GatedUpdate]
    compile_dense_parts(model, cfg.runtime)  # runtime.compile = false: nothing happens
    assert all(p._compiled_call_impl is None for p in parts)


@pytest.mark.slow
def test_compiled_memory_model_gives_the_eager_outputs():
    cfg, eager = _memory_model("runtime.compile=true")
    compiled = copy.deepcopy(eager)
    names = list(compiled.state_dict())
    compile_dense_parts(compiled, cfg.runtime)
    assert list(compiled.state_dict()) == names
    assert all(p._compiled_call_impl is not None for p in dense_parts(compiled))
    torch.manual_seed(1)
    image = torch.randn(1, 3, 96, 128)
    boxes = torch.tensor([[0.0, 0, 50, 60], [10, 20, 120, 90], [5, 5, 30, 30]])
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    with torch.no_grad():
        expected, got = eager(image, boxes), compiled(image, boxes)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= len(dense_parts(compiled))
    for key in ("final", "attention"):
        torch.testing.assert_close(got[key], expected[key], rtol=1e-4, atol=1e-5)
    for a, b in zip(got["iterations"] + got["memories"], expected["iterations"] + expected["memories"]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
