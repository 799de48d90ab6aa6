"""Outputs appear whole or not at all, readable by others: Ctrl-C (a real SIGINT to a real
process) during prepare-data leaves no split without the others, during predict --draw no
drawings without predictions.jsonl; files follow the umask; a refused checkpoint is
explained in ivr's words."""

import argparse
import json
import os
import signal
import stat
import subprocess
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from cli_support import (ATR, ade_dataset, ivr_process, one_line_error, prepare, run,
                         tiny_checkpoint)
from conftest import _mask

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
SLOW = "images/validation/s/slow/ADE_val_00000010.jpg"  # a 2000x2000 image: slow to parse


@pytest.fixture(scope="module")
def checkpoint(synthetic_data, tmp_path_factory):
    return tiny_checkpoint(synthetic_data, tmp_path_factory.mktemp("trained"))


def interrupt_when(args: list, ready, timeout: float = 120) -> subprocess.CompletedProcess:
    """Start ``ivr ARGS``, send it SIGINT (Ctrl-C) once ``ready()`` is true, and wait."""
    # SIGINT as at a terminal: a shell ignores it in the background jobs it starts, and
    # the child would inherit that from a test run in the background
    proc = subprocess.Popen(**ivr_process(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)))
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            assert proc.poll() is None, f"ended before the interruption: {proc.communicate()}"
            assert time.monotonic() < deadline, "never ready to be interrupted"
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_ctrl_c_during_prepare_data_leaves_the_earlier_splits(tmp_path):
    root = ade_dataset(tmp_path / "ADE")
    seg = np.zeros((2000, 2000), np.uint8)
    seg[100:900, 100:1900] = 50
    (root / SLOW).parent.mkdir(parents=True)
    cv2.imwrite(str(root / SLOW), np.full((2000, 2000, 3), 90, np.uint8))
    _mask(root / SLOW.replace(".jpg", "_seg.png"), seg)
    (root / SLOW.replace(".jpg", "_atr.txt")).write_text(ATR)
    (root / "split" / "mtest.txt").write_text(f"{SLOW}\n" * 200)  # the last split: slow
    out = tmp_path / "out"
    out.mkdir()
    earlier = {name: json.dumps({"from": "an earlier run", "name": name})
               for name in ("ade_train_5.json", "ade_mval_5.json", "ade_mtest_5.json")}
    for name, text in earlier.items():
        (out / name).write_text(text)

    def mval_written() -> bool:  # staged in a temp folder, or (were it not) in place
        return any(p.parent != out for p in out.rglob("ade_mval_5.json")) or \
            (out / "ade_mval_5.json").read_text() != earlier["ade_mval_5.json"]

    done = interrupt_when(["prepare-data", "--ade-root", root, "--split-dir", root / "split",
                           "--out", out, "--workers", 1, "-q"], ready=mval_written)
    assert done.returncode != 0, done
    assert "Traceback" not in done.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(earlier)  # no temp folder left
    assert {name: (out / name).read_text() for name in earlier} == earlier


def test_ctrl_c_during_predict_draw_leaves_no_drawings_without_predictions(checkpoint, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    names = [f"p{i:03d}.png" for i in range(300)]
    for name in names:
        cv2.imwrite(str(photos / name), np.full((64, 64, 3), 90, np.uint8))
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({name: [[5, 5, 40, 40]] for name in names}))
    out = tmp_path / "out"
    done = interrupt_when(["predict", photos, "--checkpoint", checkpoint, "--boxes", boxes,
                           "--out", out, "--draw", "--workers", 0, "-q"],
                          ready=lambda: any(out.glob("**/drawn/*.png")))
    assert done.returncode != 0, done
    assert not (out / "predictions.jsonl").exists() and not (out / "drawn").exists()
    assert not out.exists() or list(out.iterdir()) == []  # no temp folder left


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_outputs_follow_the_umask(umask, checkpoint, tmp_path):
    root = ade_dataset(tmp_path / "ADE")
    photos = tmp_path / "photos"
    photos.mkdir()
    cv2.imwrite(str(photos / "a.png"), np.full((64, 64, 3), 90, np.uint8))
    (tmp_path / "boxes.json").write_text(json.dumps({"a.png": [[5, 5, 40, 40]]}))
    previous = os.umask(umask)
    try:
        assert prepare(root, tmp_path / "prepared").exit_code == 0
        predicted = run("predict", photos, "--checkpoint", checkpoint, "--boxes",
                        tmp_path / "boxes.json", "--out", tmp_path / "predicted", "--draw",
                        "--workers", 0, "-q")
        assert predicted.exit_code == 0, predicted.output
        generated = run("prepare-data", "--synthetic", "--images", 6, "--out",
                        tmp_path / "synthetic", "-q")
        assert generated.exit_code == 0, generated.output
    finally:
        os.umask(previous)

    def mode(path: Path) -> int:
        return stat.S_IMODE(path.stat().st_mode)

    files = [tmp_path / "prepared" / "ade_mval_5.json", tmp_path / "predicted" /
             "predictions.jsonl", tmp_path / "predicted" / "drawn" / "a.png",
             tmp_path / "synthetic" / "ade_train_5.json", tmp_path / "synthetic" / "train.txt"]
    folders = [tmp_path / "predicted" / "drawn", tmp_path / "synthetic",
               tmp_path / "synthetic" / "images"]
    assert {p.name: oct(mode(p)) for p in files} == {p.name: oct(0o666 & ~umask) for p in files}
    assert {p.name: oct(mode(p)) for p in folders} == \
        {p.name: oct(0o777 & ~umask) for p in folders}


def test_a_refused_checkpoint_is_explained_in_ivrs_words(tmp_path):
    path = tmp_path / "foreign.pt"
    torch.save({"format": "ivr-checkpoint-1", "args": argparse.Namespace(lr=1)}, path)
    message = one_line_error(run("test", "--checkpoint", path, "--out", tmp_path / "r.json"))
    assert message == (f"refusing to load {path}: unpickling it would import "
                       "argparse.Namespace; an ivr checkpoint holds only tensors and plain "
                       "data, and ivr runs no code from a file (use a checkpoint written by "
                       "`ivr train`)")
    assert not (tmp_path / "r.json").exists()
