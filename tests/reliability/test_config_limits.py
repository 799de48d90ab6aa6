"""Numbers in the config that no run can use: infinite or NaN floats, a learning rate that
turns negative, sizes far beyond any model that fits in memory. Each is one line naming the
key, from the config alone: the data folder named here does not exist, so any work (or any
allocation) would have failed with another message first."""

from __future__ import annotations

from pathlib import Path

import pytest

from faults_support import one_line_error, run, sets
from ivr_core.config import SIZE_LIMITS, Config, load_config, preset_path

CASES = {
    "train.lr=1e999": "config key 'train.lr' must be a finite number, got inf",
    "train.lr=inf": "config key 'train.lr' must be a finite number, got inf",
    "train.lr=nan": "config key 'train.lr' must be a finite number, got nan",
    "memory.beta=-inf": "config key 'memory.beta' must be a finite number, got -inf",
    "train.lr_gamma=-1": "config key 'train.lr_gamma' must be > 0, got -1.0",
    "train.lr_gamma=0": "config key 'train.lr_gamma' must be > 0, got 0.0",
    "memory.fc_dim=1000000000": "config key 'memory.fc_dim' must be <= 16384, got 1000000000",
    "memory.fc_dim=1e9": "config key 'memory.fc_dim' must be int, got float 1000000000.0",
    "data.scale=100000000000": "config key 'data.scale' must be <= 4096, got 100000000000",
    "memory.channels=100000": "config key 'memory.channels' must be <= 4096, got 100000",
    "memory.iterations=1000000": "config key 'memory.iterations' must be <= 32, got 1000000",
    "graph.hidden=1000000": "config key 'graph.hidden' must be <= 4096, got 1000000",
    "train.images_per_step=100000": "config key 'train.images_per_step' must be <= 256, got "
                                    "100000",
    "train.iters=" + "9" * 400: f"config key 'train.iters' must be <= {2**63 - 1}, got "
                                + "9" * 400,
    "train.lr_steps=[10, 100000000000000000000]": f"config key 'train.lr_steps' must be <= "
                                                  f"{2**63 - 1}, got 100000000000000000000",
}


@pytest.mark.parametrize("item", CASES)
def test_an_unusable_number_is_one_line(item, tmp_path):
    result = run("train", "--data", tmp_path / "no-data", "--run-dir", tmp_path / "run",
                 *sets([item]))
    assert one_line_error(result) == CASES[item]
    assert not (tmp_path / "run").exists()


def test_the_shipped_settings_are_within_the_limits():
    defaults = Config()
    load_config([Path(__file__).parents[2] / "ivr.toml"])
    load_config([preset_path("demo")])
    for key, limit in SIZE_LIMITS.items():
        section, name = key.split(".")
        assert getattr(getattr(defaults, section), name) * 4 <= limit, key  # ample room
