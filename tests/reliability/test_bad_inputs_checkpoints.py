"""Checkpoints that do not fit the command: another model type, other classes, changed model
settings, a file that is no checkpoint. One line naming the checkpoint and the fix, a
non-zero exit, nothing written (a resumed run folder left byte for byte as it was)."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest
import torch

from cli_support import error_naming, run, sets
from conftest import TINY

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def num_classes(data):
    return len(json.loads((data / "ade_train_1.json").read_text())["classes"])


def test_test_with_the_wrong_model_type(checkpoint, tmp_path):
    out = tmp_path / "results.json"
    result = run("test", "--checkpoint", checkpoint, "--model", "baseline", "--out", out, "-q")
    error_naming(result, str(checkpoint), "holds a 'memory' model, not 'baseline'")
    result = run("test", "--checkpoint", checkpoint, "--set", "model.type=baseline",
                 "--out", out, "-q")
    error_naming(result, str(checkpoint), "holds a 'memory' model, not 'baseline'",
                 "use --model memory")
    assert not out.exists()


def test_test_on_data_with_other_classes(checkpoint, synthetic_data, other_data, tmp_path):
    out = tmp_path / "results.json"
    result = run("test", "--checkpoint", checkpoint, "--data", other_data, "--out", out, "-q")
    error_naming(result, str(checkpoint),
                 f"trained on {num_classes(synthetic_data)} classes but the data has 8",
                 "use the data it was trained on")
    assert not out.exists()


@pytest.mark.parametrize("command", ["test", "predict"])
def test_a_config_that_does_not_fit_the_weights(command, checkpoint, tmp_path):
    if command == "test":
        out = tmp_path / "results.json"
        result = run("test", "--checkpoint", checkpoint, "--out", out, "-q",
                     "--set", "memory.channels=32")
    else:
        cv2.imwrite(str(tmp_path / "a.png"), np.zeros((32, 32, 3), np.uint8))
        (tmp_path / "boxes.json").write_text(json.dumps({"a.png": [[0, 0, 9, 9]]}))
        out = tmp_path / "out"
        result = run("predict", tmp_path / "a.png", "--checkpoint", checkpoint, "--boxes",
                     tmp_path / "boxes.json", "--out", out, "--workers", 0, "-q",
                     "--set", "memory.channels=32")
    error_naming(result, "weights do not fit",
                 "memory.channels (16 in the checkpoint, 32 now)",
                 "leave the checkpoint's model settings")
    assert not out.exists()


@pytest.mark.parametrize("case", ["model type", "classes"])
def test_resume_with_the_wrong_model_type_or_classes(case, trained, synthetic_data, other_data,
                                                     tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(trained, run_dir)
    before = {p.name: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    model, data = ("baseline", synthetic_data) if case == "model type" else ("memory", other_data)
    result = run("train", "--run-dir", run_dir, "--resume", "--iters", 2, "--model", model,
                 "--data", data, "-q", *sets([*TINY, "data.min_count=1"]))
    path = run_dir / "checkpoints" / "iter_00000001.pt"
    if case == "model type":
        fragments = ("holds a 'memory' model, not 'baseline'", "use --model memory")
    else:
        fragments = (f"trained on {num_classes(synthetic_data)} classes but the data has 8",
                     "use the data it was trained on")
    error_naming(result, str(path), *fragments)
    assert {p.name: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == before


def test_a_file_that_is_no_checkpoint(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"conv1.weight": torch.zeros(1)}, path)
    out = tmp_path / "results.json"
    error_naming(run("test", "--checkpoint", path, "--out", out), str(path),
                 "is not an ivr checkpoint")
    assert not out.exists()
