"""Shared fixtures: a tiny prepared synthetic dataset and a tiny CPU model config."""

import pytest

from ivr_core.config import load_config
from ivr_core.data import synthetic
from ivr_core.data.prepare import prepare_ade

# resnet18 from scratch on 128-px images with a small memory: seconds per run on a CPU
TINY = ["model.backbone=resnet18", "model.weights=none", "model.norm=bn",
        "model.fixed_blocks=0", "model.tail_stride=2", "data.scale=128", "data.max_size=128",
        "data.workers=0", "memory.channels=16", "memory.fc_dim=32", "memory.norm=group",
        "memory.norm_groups=4", "train.optimizer=adamw", "train.lr=0.001", "train.iters=4",
        "train.snapshot_every=2", "train.log_every=1", "train.keep_last=10",
        "runtime.device=cpu", "runtime.deterministic=true"]


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory):
    """12 synthetic 128x128 images (8 train, 2 mval, 2 mtest), prepared with min_count 1."""
    root = tmp_path_factory.mktemp("synthetic")
    synthetic.generate(root, images=12, seed=0, size=(128, 128), workers=1,
                       show_progress=False)
    prepare_ade(root, root, 1, root, workers=1, show_progress=False,
                extra={"context_classes": list(synthetic.CONTEXT_CLASSES)})
    return root


@pytest.fixture
def tiny_cfg(synthetic_data):
    def make(*extra):
        return load_config(overrides=[*TINY, f"data.dir={synthetic_data}", "data.min_count=1",
                                      *extra])
    return make


@pytest.fixture
def tiny_overrides(synthetic_data):
    """The tiny config as --set items for the command line."""
    return [*TINY, f"data.dir={synthetic_data}", "data.min_count=1"]
