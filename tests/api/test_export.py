"""`ivr export`: the exported folder predicts exactly like the run it came from, loads
without unpickling anything, is written atomically, and says what it holds."""

import json
import os
import pickle
import stat
import subprocess

import numpy as np
import pytest
import torch
from safetensors import safe_open
from typer.testing import CliRunner

import ivr_core
from ivr_cli.main import app
from ivr_core.engine.checkpoint import list_checkpoints, load_checkpoint
from ivr_core.errors import IvrError
from ivr_core.evaluation.tester import run_test
from ivr_core.export import export_model
from ivr_core.api import read_state

runner = CliRunner()
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def _no_unpickling(monkeypatch):
    """Any torch.load or unpickling from here on fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("unpickling while loading an exported model")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)


@pytest.mark.parametrize("model_type", ["baseline", "memory", "full"])
def test_exported_model_predicts_exactly_like_the_run(runs, photo, tmp_path, monkeypatch,
                                                      model_type):
    out = tmp_path / "exported"
    result = run("export", runs[model_type], "--out", out)
    assert result.exit_code == 0, result.output
    expected = ivr_core.load(runs[model_type]).predict(*photo)
    _no_unpickling(monkeypatch)
    with pytest.raises(AssertionError):  # the guard works
        ivr_core.load(runs[model_type])
    model = ivr_core.load(out)
    got = model.predict(*photo)
    np.testing.assert_array_equal(got.probs, expected.probs)
    np.testing.assert_array_equal(got.iteration_probs, expected.iteration_probs)
    assert model.iteration == 2 and model.model_type == model_type
    assert ivr_core.load(out / "model.safetensors").classes == model.classes


def test_export_files_hold_weights_only_and_a_model_card(runs, synthetic_data, tmp_path):
    run_dir = runs["full"]
    newest = list_checkpoints(run_dir)[-1][1]
    state = load_checkpoint(newest)
    out = tmp_path / "card"
    export_model(read_state(run_dir), out)
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o777 & ~mask  # not mkdtemp's 0700
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md", "classes.json", "config.toml", "knowledge_graph.json", "model.safetensors"]
    with safe_open(out / "model.safetensors", framework="pt") as f:
        assert set(f.keys()) == set(state["model"])  # no optimizer, no rng, no extras
        for key in ("global_.kg_index", "global_.kg_weight"):
            assert torch.equal(f.get_tensor(key), state["model"][key])
        assert f.metadata()["iteration"] == "2"
        assert f.metadata()["trained_with"] == state["ivr_version"]
    assert json.loads((out / "classes.json").read_text()) == state["classes"]
    graph = json.loads((out / "knowledge_graph.json").read_text())
    assert sum(map(len, graph["edges"].values())) == len(state["model"]["global_.kg_weight"]) > 0
    config = (out / "config.toml").read_text()
    assert 'type = "full"' in config and 'backbone = "resnet18"' in config
    card = (out / "README.md").read_text()
    for text in ("# ivr model: full, resnet18", "| iterations trained | 2 |",
                 f"ivr {ivr_core.__version__}", f"ivr predict photos/ --checkpoint {out}",
                 f'ivr_core.load("{out}")', "No evaluation results"):
        assert text in card, text
    # with the run's results.json the card shows its metrics
    cfg = ivr_core.load(run_dir).config
    results = run_test(newest, cfg, state, "mtest", show_progress=False)
    export_model(read_state(run_dir), out, force=True)
    card = (out / "README.md").read_text()
    assert "split `mtest`" in card and f"| {results['inst_ap']:.3f} | " in card


def test_an_exported_folder_exports_again_unchanged(runs, tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    export_model(read_state(runs["full"]), first)
    assert run("export", first, "--out", second).exit_code == 0
    for name in ("config.toml", "classes.json", "knowledge_graph.json"):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    with safe_open(first / "model.safetensors", "pt") as a, \
            safe_open(second / "model.safetensors", "pt") as b:
        assert a.metadata() == b.metadata() and a.keys() == b.keys()  # metadata: any order
        assert all(torch.equal(a.get_tensor(k), b.get_tensor(k)) for k in a.keys())


def test_existing_folder_needs_force_and_a_failed_export_leaves_it(runs, tmp_path):
    out = tmp_path / "models"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    result = run("export", runs["baseline"], "--out", out)
    assert result.exit_code == 1 and "--force" in result.output
    assert (out / "mine.txt").read_text() == "keep me"
    assert run("export", runs["baseline"], "--out", out, "--force").exit_code == 0
    assert not (out / "mine.txt").exists() and (out / "model.safetensors").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["models"]  # no temp folders left


def test_a_full_disk_leaves_no_partial_export(runs, tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)],
                             capture_output=True)
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        with pytest.raises(IvrError) as e:
            export_model(read_state(runs["memory"]), disk / "model")
        assert "No space left on device" in str(e.value) and "nothing was written" in str(e.value)
        assert os.listdir(disk) == []
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def test_broken_exports_are_clear_errors(runs, tmp_path):
    out = tmp_path / "exported"
    export_model(read_state(runs["baseline"]), out)
    weights = (out / "model.safetensors").read_bytes()
    (out / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    with pytest.raises(IvrError, match="corrupt or truncated"):
        ivr_core.load(out)
    (out / "model.safetensors").write_bytes(weights)
    (out / "classes.json").unlink()
    with pytest.raises(IvrError, match="classes.json is missing"):
        ivr_core.load(out)


def test_cli_predict_with_the_exported_folder(runs, photo, tmp_path, monkeypatch):
    path, boxes = photo
    (tmp_path / "boxes.json").write_text(json.dumps({path.name: boxes}))
    exported = tmp_path / "exported"
    assert run("export", runs["memory"], "--out", exported).exit_code == 0
    outputs = {}
    for name, checkpoint in (("run", runs["memory"]), ("exported", exported)):
        if name == "exported":
            _no_unpickling(monkeypatch)
        result = run("predict", path, "--checkpoint", checkpoint, "--boxes",
                     tmp_path / "boxes.json", "--out", tmp_path / name, "-q")
        assert result.exit_code == 0, result.output
        outputs[name] = (tmp_path / name / "predictions.jsonl").read_text()
    assert outputs["run"] == outputs["exported"]
