"""The command line driven through typer's CliRunner: help, errors, and a whole run."""

import json
import sys
import subprocess
import shutil
import os
import warnings
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ivr_cli.demo import parse_models
from ivr_cli.main import app
from ivr_core.errors import IvrError
from ivr_core.ops import OpsBackendWarning, backend

runner = CliRunner()
COMMANDS = ["prepare-data", "train", "test", "demo", "export"]


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.mark.parametrize("command", COMMANDS)
def test_help_shows_an_example(command):
    result = run(command, "--help")
    assert result.exit_code == 0
    assert "Example: ivr " + command in " ".join(result.output.split())


def test_top_level_help_lists_commands():
    result = run("--help")
    assert result.exit_code == 0 and all(c in result.output for c in COMMANDS)


def test_version_is_one_line():
    import torch

    from ivr_core import __version__

    result = run("--version")
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"ivr {__version__}, torch {torch.__version__}, "
                                                   "compiled ops: ")


def test_shell_completion_is_offered_and_completes():
    # the installed `ivr` command, as the shell runs it (a process of its own)
    ivr = shutil.which("ivr", path=str(Path(sys.executable).parent)) or "ivr"

    def shell(*args, **env):
        return subprocess.run([ivr, *args], capture_output=True, text=True, timeout=120,
                              env={**os.environ, **env})

    script = shell("--show-completion", "bash")
    assert script.returncode == 0 and "_IVR_COMPLETE=complete_bash" in script.stdout, script.stderr
    for words, expect in (("ivr tr", "train"), ("ivr report --no", "--no-figures")):
        done = shell(_IVR_COMPLETE="complete_bash", COMP_WORDS=words,
                     COMP_CWORD=str(len(words.split()) - 1))
        assert done.returncode == 0 and done.stdout.split() == [expect], done.stderr


@pytest.mark.parametrize("args, message", [
    (["prepare-data"], "give exactly one of --ade-root ROOT or --synthetic"),
    (["prepare-data", "--ade-root", "/nonexistent/ADE"], "dataset root not found: /nonexistent/ADE"),
    (["train", "--data", "/nonexistent/prep", "--run-dir", "{tmp}/r"],
     "prepared split not found: /nonexistent/prep/ade_train_5.json; run `ivr prepare-data` first"),
    (["train", "--set", "train.lr=fast"], "config key 'train.lr' must be float"),
    (["train", "--set", "train.speed=1"], "unknown config key 'train.speed'"),
    (["train", "--device", "cuda:7", "--data", "{tmp}"], "device 'cuda:7' requested but"),
    (["test"], "give exactly one of --run-dir DIR or --checkpoint FILE"),
    (["test", "--checkpoint", "{tmp}/missing.pt"], "checkpoint not found"),
    (["test", "--run-dir", "{tmp}"], "no checkpoint in"),
    (["predict", "{tmp}", "--checkpoint", "{tmp}/x.pt", "--boxes", "b.json", "--workers", "-1"],
     "--workers must be >= 0"),
    (["predict", "{tmp}", "--checkpoint", "{tmp}/x.pt", "--boxes", "b.json",
      "--batch-images", "-1"], "--workers must be >= 0"),  # the former name still works
])
def test_user_errors_are_one_line(args, message, tmp_path):
    result = run(*[a.replace("{tmp}", str(tmp_path)) for a in args])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert message in lines[0]


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_train_resume_test(synthetic_data, tiny_overrides, tmp_path):
    sets = [x for item in tiny_overrides for x in ("--set", item)]
    run_dir = tmp_path / "mem"
    first = run("train", "--model", "memory", "--data", synthetic_data, "--run-dir", run_dir,
                "--iters", 2, "-q", *sets)
    assert first.exit_code == 0, first.output
    again = run("train", "--model", "memory", "--data", synthetic_data, "--run-dir", run_dir,
                "--iters", 3, "-q", *sets)
    assert again.exit_code == 1 and "pass --resume" in again.output
    resumed = run("train", "--model", "memory", "--data", synthetic_data, "--run-dir", run_dir,
                  "--iters", 3, "--resume", "-q", *sets)
    assert resumed.exit_code == 0, resumed.output
    assert "resuming" in resumed.output and "iteration 3" in resumed.output
    tested = run("test", "--run-dir", run_dir, "--split", "mtest", "-q")
    assert tested.exit_code == 0, tested.output
    results = json.loads((run_dir / "results.json").read_text())
    for key in ("inst_ap", "inst_ac", "cls_ap", "cls_ac", "inst_sc", "cls_sc"):
        assert 0 <= results[key] <= 1
    assert len(results["iterations"]) == 3 and results["iteration"] == 3
    assert "context" in results and len(results["context"]["iterations"]) == 3
    assert "iter 2" in tested.output and "context classes" in tested.output
    wrong = run("test", "--run-dir", run_dir, "--model", "baseline")
    assert wrong.exit_code == 1 and "holds a 'memory' model, not 'baseline'" in wrong.output


def test_prepare_ade_lists_every_skipped_file(ade_root, tmp_path):
    result = run("prepare-data", "--ade-root", ade_root, "--split-dir", ade_root / "split",
                 "--out", tmp_path, "-q")
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "skipped 3 image(s) with missing or corrupt files" in text
    for name in ("ADE_val_00000003_seg.png: missing mask",
                 "ADE_val_00000004.jpg: corrupt or unreadable image", "ADE_val_00000005_atr.txt"):
        assert name in text
    assert (tmp_path / "ade_train_5.json").is_file()


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_synthetic_prepare_then_train_and_test(tmp_path):
    data = tmp_path / "syn"
    made = run("prepare-data", "--synthetic", "--out", data, "--images", 8, "--seed", 3, "-q")
    assert made.exit_code == 0, made.output
    assert {p.name for p in data.glob("ade_*_5.json")} == {
        "ade_train_5.json", "ade_mval_5.json", "ade_mtest_5.json"}
    again = run("prepare-data", "--synthetic", "--out", data, "--images", 8, "-q")
    assert again.exit_code == 1 and "pass --force" in again.output
    assert not list(tmp_path.glob(".syn.*"))  # no half-written dataset left behind
    tiny = ["model.backbone=resnet18", "model.weights=none", "model.norm=bn",
            "data.scale=96", "data.max_size=96", "data.workers=0", "train.iters=2",
            "train.snapshot_every=1", "runtime.device=cpu"]
    sets = [x for item in tiny for x in ("--set", item)]
    trained = run("train", "--model", "baseline", "--data", data, "--run-dir",
                  tmp_path / "run", "-q", *sets)
    assert trained.exit_code == 0, trained.output
    tested = run("test", "--checkpoint", tmp_path / "run" / "checkpoints" / "iter_00000002.pt",
                 "--out", tmp_path / "r.json", "-q")
    assert tested.exit_code == 0, tested.output
    assert "context" in json.loads((tmp_path / "r.json").read_text())


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_demo_with_the_global_module_and_bad_model_names(tmp_path):
    small = ["data.scale=96", "data.max_size=96", "data.workers=0", "memory.channels=8",
             "memory.norm_groups=4", "memory.fc_dim=16", "graph.hidden=8", "graph.class_dim=4",
             "runtime.device=cpu"]
    sets = [x for item in small for x in ("--set", item)]
    result = run("demo", "--out", tmp_path, "--images", 8, "--iters", 1, "--models",
                 "memory,full", "-q", *sets)
    assert result.exit_code == 0, result.output
    assert "full - memory, per-class AP" in " ".join(result.output.split())
    assert json.loads((tmp_path / "full" / "results.json").read_text())["modules"]["global"]
    assert "Knowledge graph" in (tmp_path / "report.html").read_text()
    bad = run("demo", "--out", tmp_path, "--models", "baseline,transformer")
    assert bad.exit_code == 1 and "--models takes distinct names among" in bad.output


def test_demo_control_names_set_the_graph_ablations():
    runs = parse_models("memory,full-empty,full-bare,global-shuffled")
    assert runs["memory"]["graph__knowledge"] is None
    assert (runs["full-empty"]["graph__knowledge"], runs["full-empty"]["graph__regions"]) \
        == ("empty", "boxes")
    assert (runs["full-bare"]["graph__knowledge"], runs["full-bare"]["graph__regions"]) \
        == ("empty", "self")
    assert runs["global-shuffled"]["graph__knowledge"] == "shuffled"
    for bad in ("memory-empty", "full-nothing", "full,full"):
        with pytest.raises(IvrError, match="--models takes distinct names"):
            parse_models(bad)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_demo_end_to_end_tiny(tmp_path):
    small = ["data.scale=96", "data.max_size=96", "data.workers=0", "memory.channels=8",
             "memory.norm_groups=4", "memory.fc_dim=16", "train.warmup_iters=1",
             "runtime.device=cpu"]
    sets = [x for item in small for x in ("--set", item)]
    backend._state["said"].clear()  # as in a new process
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run("demo", "--out", tmp_path, "--images", 8, "--iters", 2, "-q", *sets)
    assert result.exit_code == 0, result.output
    # two trainings and two tests, one note on the region ops
    assert sum(issubclass(w.category, OpsBackendWarning) for w in caught) == 1
    for model in ("baseline", "memory"):
        results = json.loads((tmp_path / model / "results.json").read_text())
        assert "context" in results and results["iteration"] == 2
        assert results["visualizations"]
    assert (tmp_path / "report.html").stat().st_size > 10_000
    text = " ".join(result.output.split())
    report = tmp_path / "report.html"
    assert "memory - baseline, per-class AP" in text
    assert f"report: {report.resolve().as_uri()} (" in text  # a link a terminal can open
    assert "the same page for your own runs: ivr report runs/baseline runs/memory --out " \
           "report.html" in text
    again = run("demo", "--out", tmp_path, "--images", 8, "--iters", 2, "-q", *sets)
    assert again.exit_code == 0 and "0 s this session" in " ".join(again.output.split())
