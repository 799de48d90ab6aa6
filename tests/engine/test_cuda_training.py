"""Training on a CUDA GPU (skipped without one): every model trains under
runtime.deterministic=true, where PyTorch refuses any op that has no deterministic CUDA
kernel, and two runs end with bitwise equal weights."""

import pytest
import torch

from ivr_core.data.dataset import load_prepared
from ivr_core.engine import checkpoint as ckpt
from ivr_core.engine.trainer import train
from ivr_core.graph.knowledge import build_graph
from ivr_core.utils.io import write_json

pytestmark = [pytest.mark.cuda, pytest.mark.filterwarnings("ignore::UserWarning"),
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


@pytest.mark.parametrize("model", ["baseline", "memory", "full"])
def test_each_model_trains_bit_for_bit_under_deterministic_cuda(tiny_cfg, synthetic_data,
                                                                tmp_path, model):
    extra = []
    if model == "full":
        graph = build_graph(load_prepared(synthetic_data, "train", 1), min_part_count=1)
        write_json(tmp_path / "graph.json", graph.to_json())
        extra = [f"graph.file={tmp_path / 'graph.json'}"]
    cfg = tiny_cfg(f"model.type={model}", "runtime.device=cuda", *extra)
    runs = [train(cfg, tmp_path / name, show_progress=False) for name in ("a", "b")]
    a, b = (ckpt.load_checkpoint(r.checkpoint)["model"] for r in runs)
    assert all(torch.equal(a[k], b[k]) for k in a)
