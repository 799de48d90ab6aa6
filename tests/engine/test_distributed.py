"""Two processes (gloo on the CPU) against one process doing the same work."""

import json
import subprocess
import sys

import pytest
import torch
from typer.testing import CliRunner

from conftest import TINY
from ivr_cli.main import app
from ivr_core.config import load_config
from ivr_core.engine import checkpoint as ckpt
from ivr_core.engine.logger import read_log
from ivr_core.engine.trainer import train

runner = CliRunner()
pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::UserWarning")]


def _sets(data, *extra):
    items = [*TINY, f"data.dir={data}", "data.min_count=1", "model.type=memory", *extra]
    return [x for s in items for x in ("--set", s)]


def _weights(run, iteration):
    """The trained parameters. Batch-norm running statistics (TINY trains with model.norm=bn)
    differ by design: each process tracks its own images and DDP keeps rank 0's."""
    state = ckpt.load_checkpoint(ckpt.checkpoint_path(run, iteration))["model"]
    return {k: v for k, v in state.items() if "running_" not in k and "num_batches" not in k}


def _close(a, b, tol=1e-5):
    return all(torch.allclose(a[k].float(), b[k].float(), atol=tol, rtol=tol) for k in a)


def test_two_processes_match_one_process_with_two_images_per_step(synthetic_data, tmp_path):
    ddp = runner.invoke(app, ["train", "--run-dir", str(tmp_path / "ddp"), "--nproc", "2",
                              "--iters", "4", "-q", *_sets(synthetic_data)])
    assert ddp.exit_code == 0, ddp.output
    cfg = load_config(overrides=[*TINY, f"data.dir={synthetic_data}", "data.min_count=1",
                                 "model.type=memory", "train.images_per_step=2"])
    train(cfg, tmp_path / "one", show_progress=False)
    assert _close(_weights(tmp_path / "ddp", 4), _weights(tmp_path / "one", 4))
    a, b = read_log(tmp_path / "ddp"), read_log(tmp_path / "one")
    assert [r["iter"] for r in a] == [r["iter"] for r in b] == [1, 2, 3, 4]
    assert all(abs(x["loss"] - y["loss"]) < 1e-4 for x, y in zip(a, b))
    # ... and one image per step is a different run: the comparison can fail
    single = load_config(overrides=[*TINY, f"data.dir={synthetic_data}", "data.min_count=1",
                                    "model.type=memory"])
    train(single, tmp_path / "single", show_progress=False)
    assert not _close(_weights(tmp_path / "ddp", 4), _weights(tmp_path / "single", 4))


def test_resume_across_process_counts(synthetic_data, tmp_path):
    first = runner.invoke(app, ["train", "--run-dir", str(tmp_path / "run"), "--nproc", "2",
                                "--iters", "2", "-q", *_sets(synthetic_data)])
    assert first.exit_code == 0, first.output
    more = runner.invoke(app, ["train", "--run-dir", str(tmp_path / "run"), "--iters", "4",
                               "--resume", "--images-per-step", "2", "-q",
                               *_sets(synthetic_data)])
    assert more.exit_code == 0, more.output
    cfg = load_config(overrides=[*TINY, f"data.dir={synthetic_data}", "data.min_count=1",
                                 "model.type=memory", "train.images_per_step=2"])
    train(cfg, tmp_path / "one", show_progress=False)
    assert _close(_weights(tmp_path / "run", 4), _weights(tmp_path / "one", 4))


def test_distributed_test_equals_single_process(synthetic_data, tmp_path):
    cfg = load_config(overrides=[*TINY, f"data.dir={synthetic_data}", "data.min_count=1",
                                 "model.type=memory", "train.iters=2"])
    result = train(cfg, tmp_path / "run", show_progress=False)
    outs = {}
    for nproc in (1, 2):
        out = tmp_path / f"r{nproc}.json"
        done = runner.invoke(app, ["test", "--checkpoint", str(result.checkpoint), "--split",
                                   "train", "--nproc", str(nproc), "--out", str(out), "-q"])
        assert done.exit_code == 0, done.output
        outs[nproc] = json.loads(out.read_text())
    for key in ("inst_ap", "inst_ac", "cls_ap", "cls_ac", "inst_sc", "cls_sc", "per_class",
                "iterations", "num_images"):
        assert outs[1][key] == outs[2][key], key
    assert outs[1]["iterations"][0]["num_regions"] > 0


def test_a_user_error_in_every_process_is_one_line_each_without_a_traceback(tmp_path):
    done = subprocess.run([sys.executable, "-m", "ivr_cli", "train", "--nproc", "2", "--data",
                           str(tmp_path / "none"), "--run-dir", str(tmp_path / "run"), "-q",
                           "--device", "cpu"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert sorted(line.split(":")[0] for line in lines) == ["[rank 1] error", "error"], \
        done.stderr  # torchrun's own failure report (a traceback, a table) is left out
    assert all("prepared split not found" in line for line in lines), done.stderr
