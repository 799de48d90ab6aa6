"""One ``ivr train`` per run folder: a second one, a real second process, is refused with the
holder's PID; the lock dies with its holder, SIGKILL included, so it is never stale."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from faults_support import sets, tiny
from ivr_core.engine import checkpoint as ckpt
from ivr_core.engine.logger import read_log
from ivr_core.engine.runlock import RunLock
from ivr_core.errors import IvrError

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

HOLD = """
import sys, time
from ivr_core.engine.runlock import RunLock
with RunLock(sys.argv[1]).acquire():
    print("held", flush=True)
    time.sleep(600)
"""


def _holder(run_dir):
    """A real second process that takes the run folder's lock and keeps it."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held", proc.stderr.read()
    return proc


def test_the_lock_names_its_holder_and_dies_with_it(tmp_path):
    run_dir = tmp_path / "run"
    holder = _holder(run_dir)
    try:
        with pytest.raises(IvrError) as refused:
            RunLock(run_dir).acquire()
        assert str(refused.value) == (
            f"run folder {run_dir} is in use by another `ivr train` (PID {holder.pid} on "
            f"{socket.gethostname()}); wait for it to finish or stop it, or "
            "choose another --run-dir")
    finally:
        holder.send_signal(signal.SIGKILL)  # no cleanup runs: the kernel drops the lock
        holder.wait()
    with RunLock(run_dir).acquire() as lock:  # read by another process: closing a file
        # descriptor of the lock file here would drop this process's lock
        pid = subprocess.run(["cat", str(lock.path)], capture_output=True, text=True).stdout
        assert pid.split()[0] == str(os.getpid())
    assert lock.path.read_text() == ""  # released: no PID left behind


def test_a_second_train_in_the_same_process_is_refused_too(tmp_path):
    with RunLock(tmp_path / "run").acquire():
        with pytest.raises(IvrError, match=r"in use by another `ivr train` \(this process"):
            RunLock(tmp_path / "run").acquire()
        # the refusal did not drop the lock this process holds (a POSIX lock would go with
        # any descriptor of the file closed here)
        proc = subprocess.run([sys.executable, "-c", HOLD, str(tmp_path / "run")],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 1 and "in use by another `ivr train`" in proc.stderr


@pytest.mark.slow
def test_two_trainings_on_one_run_folder(synthetic_data, tmp_path):
    run_dir = tmp_path / "run"

    def train_cmd(*extra):
        return [sys.executable, "-m", "ivr_cli", "train", "--run-dir", str(run_dir), "-q",
                *sets(tiny(synthetic_data, "train.snapshot_every=2", *extra))]

    first = subprocess.Popen(train_cmd("train.iters=100000"), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not ckpt.list_checkpoints(run_dir):  # running, with something to lose
            assert first.poll() is None and time.time() < deadline, first.stderr.read()
            time.sleep(0.1)
        log_before = (run_dir / "log.jsonl").read_text().splitlines()[0]
        second = subprocess.run(train_cmd("train.iters=4") + ["--resume"], capture_output=True,
                                text=True, timeout=300)
        assert second.returncode == 1
        line = second.stderr.strip().splitlines()[-1]
        assert line.startswith(f"error: run folder {run_dir} is in use by another `ivr train` "
                               f"(PID {first.pid} on "), second.stderr
        assert first.poll() is None  # the first run goes on, its log untouched
        assert (run_dir / "log.jsonl").read_text().splitlines()[0] == log_before
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    # killed without any cleanup: the lock went with it, and the run continues
    resumed = subprocess.run(train_cmd(f"train.iters={ckpt.list_checkpoints(run_dir)[-1][0]}")
                             + ["--resume"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert read_log(run_dir)[0]["iter"] == 1
