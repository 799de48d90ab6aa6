"""Damaged checkpoint files, made for real (zero bytes, bits flipped in the first 4 KB, a
truncated copy, a file that loads but lacks a part): ``--resume`` and ``ivr test --run-dir``
skip them with a note and take the next newest; naming one with ``--checkpoint`` (or as
backbone weights) is one line."""

from __future__ import annotations

import ast
import random
from pathlib import Path

import pytest
import torch

from faults_support import (copy_run, last_line_error, one_line_error, run, sets, tiny,
                            train_tiny)
from ivr_core.engine import checkpoint as ckpt

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::UserWarning")]


@pytest.fixture(scope="module")
def trained(synthetic_data, tmp_path_factory):
    """A tiny run with checkpoints at iterations 2 and 4."""
    run_dir = tmp_path_factory.mktemp("trained") / "run"
    train_tiny(synthetic_data, run_dir, "train.iters=4")
    return run_dir


def zero_bytes(path):
    path.write_bytes(b"")


def flipped_bits(seed):
    def spoil(path):
        data = bytearray(path.read_bytes())
        rng = random.Random(seed)
        for _ in range(8):
            data[rng.randrange(4096)] ^= 1 << rng.randrange(8)
        path.write_bytes(bytes(data))
    return spoil


def truncated(path):
    path.write_bytes(path.read_bytes()[:5000])


def without_model(path):
    """Loads fine, but lacks the weights every reader needs."""
    state = torch.load(path, weights_only=True)
    del state["model"]
    torch.save(state, path)


def flipped_text_bit(path):
    """The top bit of one byte of a text in the pickled header flipped: the reader fails
    decoding it (UnicodeDecodeError), where random flips mostly make it fail otherwise."""
    data = bytearray(path.read_bytes())
    at = data.find(ckpt.FORMAT.encode())
    assert 0 < at < 4096
    data[at] ^= 0x80
    path.write_bytes(bytes(data))


SPOILERS = {"zero bytes": zero_bytes, "truncated": truncated, "no model": without_model,
            "a text's bit flipped": flipped_text_bit,
            **{f"8 bits flipped, seed {s}": flipped_bits(s) for s in range(4)}}


@pytest.mark.parametrize("spoil", SPOILERS.values(), ids=SPOILERS.keys())
def test_resume_skips_a_damaged_newest_checkpoint(trained, synthetic_data, tmp_path, spoil):
    run_dir = copy_run(trained, tmp_path / "run")
    newest = ckpt.checkpoint_path(run_dir, 4)
    spoil(newest)
    with pytest.raises(Exception) as direct:
        torch.load(newest, weights_only=True)["model"]  # the damage is real
    if spoil is flipped_text_bit:
        assert isinstance(direct.value, UnicodeDecodeError)
    # train.iters=2: the run falls back to iteration 2 and has nothing left to train
    result = run("train", "--run-dir", run_dir, "--resume", "-q",
                 *sets(tiny(synthetic_data, "train.iters=2")))
    assert result.exit_code == 0, result.output
    lines = " ".join(result.output.split())
    assert f"skipped checkpoint {newest} is corrupt or truncated" in lines or \
        f"skipped refusing to load {newest}" in lines or \
        f"skipped checkpoint {newest} is damaged: its 'model' is missing" in lines, \
        (direct.value, result.output)
    assert f"resuming {run_dir} from iteration 2" in lines
    assert (f"trained baseline to iteration 2 in 0 s; checkpoint "
            f"{ckpt.checkpoint_path(run_dir, 2)}") in lines


def test_resume_with_every_checkpoint_damaged_is_one_line(trained, synthetic_data, tmp_path):
    run_dir = copy_run(trained, tmp_path / "run")
    for _, path in ckpt.list_checkpoints(run_dir):
        zero_bytes(path)
    result = run("train", "--run-dir", run_dir, "--resume", "-q",
                 *sets(tiny(synthetic_data, "train.iters=6")))
    assert last_line_error(result) == (f"no checkpoint in {ckpt.checkpoint_dir(run_dir)} "
                                       "could be loaded")
    assert result.output.count("skipped checkpoint") == 2


@pytest.mark.parametrize("spoil", SPOILERS.values(), ids=SPOILERS.keys())
def test_test_checkpoint_naming_a_damaged_file_is_one_line(trained, tmp_path, spoil):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(ckpt.checkpoint_path(trained, 4).read_bytes())
    spoil(bad)
    message = one_line_error(run("test", "--checkpoint", bad, "-q"))
    assert str(bad) in message


def test_test_run_dir_evaluates_the_newest_checkpoint_that_loads(trained, tmp_path):
    run_dir = copy_run(trained, tmp_path / "run")
    newest = ckpt.checkpoint_path(run_dir, 4)
    zero_bytes(newest)
    result = run("test", "--run-dir", run_dir, "-q")
    assert result.exit_code == 0, result.output
    assert f"skipped checkpoint {newest} is corrupt or truncated" in " ".join(
        result.output.split())
    assert "iteration 2" in result.output


def test_a_damaged_backbone_weights_file_is_one_line(synthetic_data, tmp_path):
    weights = tmp_path / "resnet18.pth"
    weights.write_bytes(b"")
    result = run("train", "--run-dir", tmp_path / "run", "-q",
                 *sets(tiny(synthetic_data, f"model.weights={weights}")))
    assert one_line_error(result).startswith(f"backbone weights file {weights} ")
    assert not (tmp_path / "run").exists()


def test_torch_load_is_called_in_one_checked_place():
    """Every file ivr reads with torch.load goes through checkpoint.load_tensors."""
    import ivr_cli
    import ivr_core

    calls = [f"{path.relative_to(Path(ivr_core.__file__).parent.parent).as_posix()}"
             for package in (ivr_core, ivr_cli)
             for path in sorted(Path(package.__file__).parent.rglob("*.py"))
             for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
             if isinstance(node, ast.Attribute) and node.attr == "load"
             and isinstance(node.value, ast.Name) and node.value.id == "torch"]
    assert calls == ["ivr_core/engine/checkpoint.py"]
