"""Output locations that cannot be written (a file where a folder goes, a folder where a file
goes, a read-only file system) are one line before any work starts: the checkpoints named
here do not even exist, so any work would have failed with another message."""

from __future__ import annotations

import pytest

from faults_support import one_line_error, run, tmpfs

NO_CHECKPOINT = "never-trained.pt"


@pytest.fixture
def a_file(tmp_path):
    path = tmp_path / "taken"
    path.write_text("a file, not a folder\n")
    return path


@pytest.mark.parametrize("command", [
    ["train", "--run-dir", "{file}"],
    ["predict", "{tmp}", "--checkpoint", NO_CHECKPOINT, "--boxes", "ade", "--out", "{file}"],
    ["prepare-data", "--synthetic", "--out", "{file}"],
    ["demo", "--out", "{file}"],
])
def test_a_file_where_a_folder_goes(command, a_file, tmp_path):
    args = [a.format(file=a_file, tmp=tmp_path) for a in command]
    option = args[args.index(str(a_file)) - 1]
    assert one_line_error(run(*args)) == (f"{option} {a_file} is a file, not a folder; give a "
                                          "folder to write into")
    assert a_file.read_text() == "a file, not a folder\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]  # nothing else written


def test_a_folder_under_a_file(a_file):
    assert one_line_error(run("train", "--run-dir", a_file / "run")) == (
        f"--run-dir {a_file / 'run'}: {a_file} is a file, not a folder")


def test_test_out_that_is_a_folder(tmp_path):
    assert one_line_error(run("test", "--checkpoint", NO_CHECKPOINT, "--out", tmp_path)) == (
        f"--out {tmp_path} is a folder; give a file name such as {tmp_path / 'results.json'}")


def test_visualizations_that_would_replace_a_file(tmp_path):
    (tmp_path / "visualizations").write_text("")
    assert one_line_error(run("test", "--checkpoint", NO_CHECKPOINT, "--out",
                              tmp_path / "results.json", "--visualize", "2")) == (
        f"--visualize: the figures' folder {tmp_path / 'visualizations'} is a file, not a "
        "folder; give a folder to write into")


@pytest.mark.parametrize("command", [
    ["train", "--run-dir", "{ro}/run"],
    ["test", "--checkpoint", NO_CHECKPOINT, "--out", "{ro}/results.json"],
    ["predict", "{ro}", "--checkpoint", NO_CHECKPOINT, "--boxes", "ade", "--out", "{ro}/p"],
    ["prepare-data", "--synthetic", "--out", "{ro}/data"],
    ["demo", "--out", "{ro}/demo"],
])
def test_a_read_only_file_system(command, tmp_path):
    with tmpfs(tmp_path / "ro", "1m", read_only=True) as ro:
        args = [a.format(ro=ro) for a in command]
        target = next(a for a in args if a.startswith(f"{ro}/"))
        option = args[args.index(target) - 1]
        assert one_line_error(run(*args)) == (f"{option} {target}: {ro} is on a read-only file "
                                              "system; choose another location")
