"""A memory-model checkpoint and a dataset with other classes, shared by the bad-input tests
(files that need a checkpoint of their own define their own ``trained``/``checkpoint``)."""

from __future__ import annotations

import pytest

from cli_support import GOOD, TINY, ade_dataset, prepare, run, sets


@pytest.fixture(scope="session")
def trained(synthetic_data, tmp_path_factory):
    """A memory-model run folder trained for 1 iteration on the tiny synthetic data."""
    run_dir = tmp_path_factory.mktemp("trained") / "run"
    result = run("train", "--model", "memory", "--data", synthetic_data, "--run-dir", run_dir,
                 "--iters", 1, "-q", *sets([*TINY, "data.min_count=1", "train.snapshot_every=1"]))
    assert result.exit_code == 0, result.output
    return run_dir


@pytest.fixture
def checkpoint(trained):
    return trained / "checkpoints" / "iter_00000001.pt"


@pytest.fixture
def other_data(tmp_path):
    """A prepared dataset with other classes (the hand-made ADE one, min_count 1)."""
    root = ade_dataset(tmp_path / "ADE", mval=[GOOD])
    assert prepare(root, root, "--min-count", 1).exit_code == 0
    return root
