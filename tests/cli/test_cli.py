"""The command line driven through typer's CliRunner: help, errors, and a whole run."""

import json

import pytest
from typer.testing import CliRunner

from ivr_cli.main import app

runner = CliRunner()
COMMANDS = ["prepare-data", "train", "test", "demo"]


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
