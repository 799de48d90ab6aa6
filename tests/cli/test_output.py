"""What `ivr` prints when its output is a pipe (CI, nohup, a log file), in a real second
process: one complete progress line per logging window, the ops note once."""

import re
import subprocess
import sys

import pytest

from conftest import TINY
from ivr_core.utils.progress import progress_bar

PROGRESS = re.compile(r"^train memory (\d+)/6 \(\d+%\) loss \d+\.\d{3} \(base [\d.]+ iter [\d.]+ "
                      r"final [\d.]+\) lr \S+ \d+\.\d\ds/it, elapsed \d+:\d\d:\d\d, "
                      r"eta \d+:\d\d:\d\d$")


def ivr(*args) -> subprocess.CompletedProcess:
    """``ivr ARGS`` in a new process whose stdout and stderr are pipes, not a terminal."""
    proc = subprocess.run([sys.executable, "-m", "ivr_cli", *map(str, args)],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_train_and_test_print_plain_lines_through_a_pipe(synthetic_data, tmp_path):
    sets = [*TINY, f"data.dir={synthetic_data}", "data.min_count=1", "train.log_every=2",
            "train.snapshot_every=6"]
    trained = ivr("train", "--model", "memory", "--run-dir", tmp_path / "run", "--iters", 6,
                  *[x for s in sets for x in ("--set", s)])
    lines = trained.stderr.splitlines()
    windows = [int(m.group(1)) for line in lines if (m := PROGRESS.match(line))]
    assert windows == [2, 4, 6], trained.stderr  # one complete line per logging window
    assert not [line for line in lines if line.startswith("train memory") and
                not PROGRESS.match(line)], trained.stderr
    assert "━" not in trained.stderr + trained.stdout  # no bar drawn for a terminal
    assert sum("region ops" in line for line in lines) == 1
    tested = ivr("test", "--run-dir", tmp_path / "run", "--split", "mtest")
    counts = re.findall(r"^test (\d)/2 \((\d+)%\), elapsed \d+:\d\d:\d\d, eta \d+:\d\d:\d\d$",
                        tested.stderr, re.MULTILINE)
    assert counts == [("1", "50"), ("2", "100")], tested.stderr
    assert "inst AP" in tested.stdout and "test 1/2" not in tested.stdout


def test_counted_loops_print_a_line_per_tenth_when_not_on_a_terminal(capsys):
    assert list(progress_bar(range(25), 25, "prepare")) == list(range(25))
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(",")[0] for line in lines] == [
        f"prepare {n}/25 ({100 * n / 25:.0f}%)" for n in (3, 5, 8, 10, 13, 15, 18, 20, 23, 25)]
    assert lines[-1].endswith("eta 0:00:00")
    assert list(progress_bar(range(5), 5, "quiet", enabled=False)) == list(range(5))
    assert capsys.readouterr().err == ""
