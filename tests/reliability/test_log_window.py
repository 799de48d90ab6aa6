"""A run stopped by SIGTERM between two log lines and resumed logs, bit for bit, what an
uninterrupted run logs: the checkpoint written at the stop holds the open logging window."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
import torch

from faults_support import sets, tiny
from ivr_core.engine import checkpoint as ckpt
from ivr_core.engine.logger import read_log

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::UserWarning")]

LOG_EVERY, ITERS = 4, 8


def _train(data, run_dir, *extra):
    # runtime.deterministic=true (in the tiny config): bitwise-repeatable on the CPU
    return [sys.executable, "-m", "ivr_cli", "train", "--run-dir", str(run_dir), "-q",
            *sets(tiny(data, f"train.iters={ITERS}",
                       f"train.log_every={LOG_EVERY}", "train.snapshot_every=1000")), *extra]


def _logged(run_dir):
    return [(r["iter"], r["loss"], r["losses"], r["lr"]) for r in read_log(run_dir)]


def test_sigterm_between_log_lines_then_resume_logs_as_an_uninterrupted_run(synthetic_data,
                                                                               tmp_path):
    straight = subprocess.run(_train(synthetic_data, tmp_path / "a"), capture_output=True,
                              text=True)
    assert straight.returncode == 0, straight.stderr

    stopped = tmp_path / "b"
    proc = subprocess.Popen(_train(synthetic_data, stopped), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        while not read_log(stopped):  # the first line is written: stop in the window
            assert proc.poll() is None, proc.stderr.read()  # that follows it
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    at = int(err.split("stopped by SIGTERM at iteration ")[1].split(";")[0])
    assert LOG_EVERY < at < ITERS, err  # stopped inside the second window
    assert [r["iter"] for r in read_log(stopped)] == [LOG_EVERY]

    resumed = subprocess.run(_train(synthetic_data, stopped, "--resume"), capture_output=True,
                             text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert f"from iteration {at}" in resumed.stderr
    assert _logged(tmp_path / "a") == _logged(stopped)  # the second window's loss too
    a = ckpt.load_checkpoint(ckpt.checkpoint_path(tmp_path / "a", ITERS))["model"]
    b = ckpt.load_checkpoint(ckpt.checkpoint_path(stopped, ITERS))["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
