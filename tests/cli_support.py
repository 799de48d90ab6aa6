"""Helpers for the command-line tests: running ``ivr`` in-process or as a real process, the
one-line error they must end with, and a two-image ADE-format dataset to spoil."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

import ivr_core
from conftest import COUNTS, NAMES, TINY, H, W, _image, _line
from ivr_cli.main import app

runner = CliRunner()
REPO = Path(ivr_core.__file__).resolve().parents[1]  # the checkout whose ivr is tested


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def ivr_process(args, **kwargs) -> dict:
    """Arguments of subprocess.run/Popen that run ``ivr ARGS`` from this checkout (the
    working folder too: ``python -m`` puts it first on the import path)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}
    return {"args": [sys.executable, "-m", "ivr_cli", *map(str, args)], "env": env,
            "cwd": REPO, "text": True, **kwargs}


def run_process(*args, timeout: float = 120) -> subprocess.CompletedProcess:
    """``ivr ARGS`` in a process of its own, killed after ``timeout`` seconds (a command
    that would block forever fails the test instead of hanging the suite)."""
    return subprocess.run(**ivr_process(args, capture_output=True, timeout=timeout))


def one_line_error(result) -> str:
    """The message of a command that failed with exit 1 and printed one ``error:`` line."""
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1, result.output
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0][len("error: "):]


def error_naming(result, *fragments: str) -> str:
    """As :func:`one_line_error`, and the message holds each of ``fragments`` (the file or key
    it names, the fix it gives) however the rest of the sentence is worded."""
    message = one_line_error(result)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in the error {message!r}"
    return message


def last_line_error(result) -> str:
    """As :func:`one_line_error` where a list of skipped items is printed before the error."""
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1, result.output
    assert lines[-1].startswith("error: ") and result.output.count("error: ") == 1, result.output
    return lines[-1][len("error: "):]


def sets(items):
    return [x for item in items for x in ("--set", item)]


def tiny_checkpoint(data: Path, folder: Path) -> Path:
    """The checkpoint of the tiny baseline (conftest's TINY) after one iteration on the
    synthetic ``data``."""
    result = run("train", "--data", data, "--run-dir", folder / "run", "-q",
                 *sets([*TINY, "data.min_count=1", "train.iters=1", "train.snapshot_every=1"]))
    assert result.exit_code == 0, result.output
    return folder / "run" / "checkpoints" / "iter_00000001.pt"


# --------------------------------------------------------------------------- an ADE dataset

GOOD = "images/training/a/abbey/ADE_train_00000001.jpg"
BAD = "images/validation/z/zoo/ADE_val_00000009.jpg"  # the image each case spoils
SEG = np.zeros((H, W), np.uint8)
SEG[0:5, :] = 50  # wall, [0, 0, 29, 4]
SEG[10:15, 5:10] = 80  # traffic light, [5, 10, 9, 14]
ATR = _line(1, 0, "wall") + _line(2, 0, "traffic light")
BOXES = [[0, 0, 29, 4], [5, 10, 9, 14]]


def ade_dataset(root: Path, mval=(GOOD, BAD)) -> Path:
    """GOOD in every split and, in mval, BAD written like GOOD (each case then spoils it)."""
    for rel in (GOOD, BAD):
        _image(root, rel, SEG, [], ATR)
    split = root / "split"
    split.mkdir()
    (split / "objectnames.txt").write_text("".join(n + " \n" for n in NAMES))
    (split / "objectcounts.txt").write_text("".join(f"{c}\n" for c in COUNTS))
    (split / "train.txt").write_text(GOOD + "\n")
    (split / "mval.txt").write_text("".join(r + "\n" for r in mval))
    (split / "mtest.txt").write_text(GOOD + "\n")
    return root


def prepare(root, out, *extra):
    return run("prepare-data", "--ade-root", root, "--split-dir", root / "split", "--out", out,
               "-q", *extra)


def assert_prepare_skips_bad(root: Path, out: Path, listed: str) -> None:
    """prepare-data succeeds, lists BAD with the line ``listed`` and keeps GOOD alone."""
    result = prepare(root, out)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "skipped 1 image(s) with missing or corrupt files:" in lines
    assert listed in lines, result.output
    mval = json.loads((out / "ade_mval_5.json").read_text())
    assert [r["image"] for r in mval["images"]] == [GOOD]  # the good one is kept


def stem(root) -> str:
    """BAD's path without its suffix: add ``_seg.png``, ``_atr.txt`` and so on."""
    return str((root / BAD).with_suffix(""))
