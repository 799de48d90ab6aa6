"""A full disk, for real: a small tmpfs mounted by the test and filled with zeros until the
kernel refuses (ENOSPC). Training, resuming, ``ivr test --out`` and ``ivr predict --out``
each end with one line naming what could not be written, and leave no partial output."""

from __future__ import annotations

import pytest

from faults_support import (copy_run, files_under, fill, last_line_error, one_line_error, run,
                            sets, tiny, tmpfs, train_tiny)
from ivr_core.engine import checkpoint as ckpt

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::UserWarning")]

ROOM = "320m"  # room for two checkpoints of the tiny model (about 135 MB each)


@pytest.fixture(scope="module")
def trained(synthetic_data, tmp_path_factory):
    """A tiny run trained to iteration 2: one checkpoint."""
    run_dir = tmp_path_factory.mktemp("trained") / "run"
    train_tiny(synthetic_data, run_dir, "train.iters=2")
    return run_dir


def _resume(data, run_dir, iters=4):
    return run("train", "--run-dir", run_dir, "--resume", "-q",
               *sets(tiny(data, f"train.iters={iters}")))


def test_a_checkpoint_write_that_fills_the_disk(trained, synthetic_data, tmp_path):
    with tmpfs(tmp_path / "disk", ROOM) as disk:
        run_dir = copy_run(trained, disk / "run")
        filler = fill(disk, leave=256 * 1024)  # room for config, env and log; no checkpoint
        previous = ckpt.checkpoint_path(run_dir, 2)
        # torch's zip writer reports the failed write as RuntimeError("... unexpected pos")
        assert last_line_error(_resume(synthetic_data, run_dir)) == (
            f"cannot write checkpoint {ckpt.checkpoint_path(run_dir, 4)} (No space left on "
            f"device); the previous checkpoint ({previous}) is intact: free space and "
            "continue with --resume")
        assert sorted(p.name for p in ckpt.checkpoint_dir(run_dir).iterdir()) == [
            previous.name]  # no temp file of the failed write
        assert ckpt.load_checkpoint(previous)["iteration"] == 2
        filler.unlink()  # space again: the same command continues
        result = _resume(synthetic_data, run_dir)
        assert result.exit_code == 0, result.output
        assert [i for i, _ in ckpt.list_checkpoints(run_dir)] == [2, 4]


def test_resume_on_a_full_disk_changes_nothing(trained, synthetic_data, tmp_path):
    with tmpfs(tmp_path / "disk", ROOM) as disk:
        run_dir = copy_run(trained, disk / "run")
        fill(disk)
        before = files_under(run_dir)
        message = last_line_error(_resume(synthetic_data, run_dir))
        assert message == (f"cannot write {run_dir} (No space left on device); free space and "
                           "run the same command again")
        assert files_under(run_dir) == before


def test_test_out_on_a_full_disk(trained, tmp_path):
    with tmpfs(tmp_path / "disk", "1m") as disk:
        fill(disk)
        out = disk / "results.json"
        result = run("test", "--checkpoint", ckpt.checkpoint_path(trained, 2), "--out", out,
                     "-q")
        assert one_line_error(result) == (f"cannot write {out} (No space left on device); "
                                          "free space or choose another --out")
        assert sorted(p.name for p in disk.iterdir()) == ["filler"]


def test_predict_out_on_a_full_disk(trained, synthetic_data, tmp_path):
    with tmpfs(tmp_path / "disk", "1m") as disk:
        fill(disk)
        out = disk / "predictions"
        result = run("predict", synthetic_data / "images", "--checkpoint",
                     ckpt.checkpoint_path(trained, 2), "--boxes", "ade", "--out", out,
                     "--workers", "0", "-q")
        assert one_line_error(result) == (f"cannot write {out} (No space left on device); "
                                          "free space or choose another --out")
        assert sorted(p.name for p in disk.iterdir()) == ["filler"]  # no empty folder either
