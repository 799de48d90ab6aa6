"""Injected faults: SIGKILL and resume, SIGTERM/SIGINT, a kill during a checkpoint write, torn
log lines, unreadable images, non-finite losses, mixed precision (a full disk, for real, in
test_full_disk.py)."""

import json
import random
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import TINY
from ivr_core.config import load_config
from ivr_core.engine import checkpoint as ckpt
from ivr_core.engine.logger import read_log
from ivr_core.engine.trainer import train
from ivr_core.errors import IvrError

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _cli_train(data, run_dir, iters, *extra):
    sets = [*TINY, f"data.dir={data}", "data.min_count=1", "model.type=memory",
            "train.snapshot_every=2", *extra]
    return [sys.executable, "-m", "ivr_cli", "train", "--run-dir", str(run_dir), "--iters",
            str(iters), "-q", *[x for s in sets for x in ("--set", s)]]


def _wait_for_log(run_dir, at_least, proc, timeout=120):
    """Block until log.jsonl has a record for iteration >= at_least."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, proc.stderr.read()
        records = read_log(run_dir)  # a line being written is skipped
        if records and records[-1]["iter"] >= at_least:
            return records[-1]["iter"]
        time.sleep(0.05)
    raise AssertionError("training made no progress")


def _logged(run_dir):
    return [(r["iter"], r["loss"], r["losses"], r["lr"]) for r in read_log(run_dir)]


@pytest.mark.slow
def test_sigkill_then_resume_matches_an_uninterrupted_run(synthetic_data, tmp_path):
    straight = subprocess.run(_cli_train(synthetic_data, tmp_path / "a", 10),
                              capture_output=True, text=True)
    assert straight.returncode == 0, straight.stderr
    cmd = _cli_train(synthetic_data, tmp_path / "b", 10)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_log(tmp_path / "b", random.randint(3, 7), proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    resumed = subprocess.run(cmd + ["--resume"], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stderr
    a = ckpt.load_checkpoint(ckpt.checkpoint_path(tmp_path / "a", 10))
    b = ckpt.load_checkpoint(ckpt.checkpoint_path(tmp_path / "b", 10))
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])  # bitwise
    assert _logged(tmp_path / "a") == _logged(tmp_path / "b")


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_and_sigint_save_a_checkpoint_and_exit(synthetic_data, tmp_path, sig):
    cmd = _cli_train(synthetic_data, tmp_path / "run", 100000, "train.snapshot_every=1000")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_log(tmp_path / "run", 2, proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1
    line = err.strip().splitlines()[-1]
    name = signal.Signals(sig).name
    assert line.startswith(f"error: stopped by {name} at iteration ")
    it = int(line.split("at iteration ")[1].split(";")[0])
    path = ckpt.checkpoint_path(tmp_path / "run", it)
    assert f"checkpoint {path}; continue with the same command and --resume" in line
    assert ckpt.load_checkpoint(path)["iteration"] == it


def _tiny(data, *extra):
    return load_config(overrides=[*TINY, f"data.dir={data}", "data.min_count=1", *extra])


def test_kill_during_a_checkpoint_write_leaves_the_previous_one(synthetic_data, tmp_path):
    train(_tiny(synthetic_data, "train.iters=2"), tmp_path / "run", show_progress=False)
    # what a SIGKILL in the middle of writing iteration 4 leaves: a temp file beside it
    partial = ckpt.checkpoint_dir(tmp_path / "run") / ".iter_00000004.pt.x1y2.tmp"
    partial.write_bytes(ckpt.checkpoint_path(tmp_path / "run", 2).read_bytes()[:5000])
    state, skipped = ckpt.latest_checkpoint(tmp_path / "run")
    assert state["iteration"] == 2 and not skipped
    result = train(_tiny(synthetic_data, "train.iters=4"), tmp_path / "run", resume=True,
                   show_progress=False)
    assert result.resumed_from == 2 and result.iterations == 4
    assert not partial.exists()


def test_a_torn_log_line_is_dropped_on_resume(synthetic_data, tmp_path):
    run = tmp_path / "run"
    train(_tiny(synthetic_data, "train.iters=2"), run, show_progress=False)
    with open(run / "log.jsonl", "a") as f:
        f.write('{"iter": 3, "loss": 1.2, "los')  # killed mid-write
    train(_tiny(synthetic_data, "train.iters=4"), run, resume=True, show_progress=False)
    assert [r["iter"] for r in read_log(run)] == [1, 2, 3, 4]


def test_an_unreadable_image_is_skipped_not_fatal(synthetic_data, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(synthetic_data, data)
    split = json.loads((data / "ade_train_1.json").read_text())
    broken = data / split["images"][0]["image"]
    broken.write_bytes(b"not an image any more")
    result = train(_tiny(data, "train.iters=20", "data.flip=false"), tmp_path / "run",
                   show_progress=False)
    assert result.iterations == 20
    assert f"warning: cannot read image {broken} (corrupt or unreadable image); skipped" \
        in " ".join(capsys.readouterr().err.split())


def test_non_finite_loss_keeps_the_last_good_checkpoint_and_says_so(synthetic_data, tmp_path):
    run = tmp_path / "run"
    cfg = _tiny(synthetic_data, "train.optimizer=sgd", "train.lr=1e30", "train.iters=40",
                "train.snapshot_every=1")
    with pytest.raises(IvrError) as e:
        train(cfg, run, show_progress=False)
    message = str(e.value)
    it = int(message.split(" at iteration ")[1].split(";")[0])
    good = [i for i, _ in ckpt.list_checkpoints(run)]
    assert good and good[-1] == it - 1  # every finished step was saved, the bad one not
    assert f"The last good checkpoint is {ckpt.checkpoint_path(run, it - 1)}" in message


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_mixed_precision_trains_and_checkpoints_the_loss_scaler(synthetic_data, tmp_path, amp):
    run = tmp_path / amp
    result = train(_tiny(synthetic_data, f"runtime.amp={amp}", "model.type=memory"), run,
                   show_progress=False)
    state = ckpt.load_checkpoint(result.checkpoint)
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    if amp == "fp16":  # fp16 scales the loss; the scaler's state travels with the checkpoint
        assert state["scaler"]["scale"] > 0
        train(_tiny(synthetic_data, f"runtime.amp={amp}", "model.type=memory",
                    "train.iters=6"), run, resume=True, show_progress=False)
