"""Resuming with settings the checkpoint cannot continue under (another optimizer, a model
whose parameters differ): one line naming the key, and nothing in the run folder written."""

from __future__ import annotations

import pytest

from faults_support import copy_run, files_under, last_line_error, run, sets, tiny, train_tiny
from ivr_core.engine import checkpoint as ckpt

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::UserWarning")]


@pytest.fixture(scope="module")
def trained(synthetic_data, tmp_path_factory):
    """A tiny memory model trained with AdamW to iteration 2."""
    run_dir = tmp_path_factory.mktemp("trained") / "run"
    train_tiny(synthetic_data, run_dir, "model.type=memory", "train.iters=2")
    return run_dir


CHANGES = {
    # SGD would crash at its first step on AdamW's state (KeyError 'momentum')
    "train.optimizer=sgd": "was trained with train.optimizer = adamw, not sgd; resume with "
                           "--set train.optimizer=adamw, or start a new --run-dir",
    # same weight shapes, but frozen layers leave the optimizer fewer parameters
    "model.fixed_blocks=1": "does not fit the model the config builds: model.fixed_blocks (0 in "
                            "the checkpoint, 1 now)",
    "memory.fc_dim=64": "do not fit the model the config builds: memory.fc_dim (32 in the "
                        "checkpoint, 64 now)",
}


@pytest.mark.parametrize("change", CHANGES)
def test_an_incompatible_resume_is_one_line_and_writes_nothing(trained, synthetic_data,
                                                               tmp_path, change):
    run_dir = copy_run(trained, tmp_path / "run")
    before = files_under(run_dir)
    result = run("train", "--run-dir", run_dir, "--resume", "-q",
                 *sets(tiny(synthetic_data, "model.type=memory", "train.iters=4", change)))
    assert CHANGES[change] in last_line_error(result)
    after = files_under(run_dir)
    assert after == before  # config.toml, log.jsonl, checkpoints: untouched
    assert (run_dir / ".lock").read_bytes() == b""  # released


def test_resume_applies_the_configs_optimizer_settings(trained, synthetic_data, tmp_path):
    """The checkpoint gives the optimizer its state; the config (config.toml) its settings."""
    run_dir = copy_run(trained, tmp_path / "run")
    result = run("train", "--run-dir", run_dir, "--resume", "-q",
                 *sets(tiny(synthetic_data, "model.type=memory", "train.iters=4",
                            "train.weight_decay=0.5")))
    assert result.exit_code == 0, result.output
    groups = ckpt.load_checkpoint(ckpt.checkpoint_path(run_dir, 4))["optimizer"]["param_groups"]
    assert [g["weight_decay"] for g in groups] == [0.5, 0.0]
