"""Every file read from a dataset follows the image rules: a regular file (a FIFO must not
block, a device must not be read), inside the dataset root (no symbolic link leading out, a
link loop reported), text within a size cap. A bad file makes its image skipped and listed;
a bad split or prepared file is one line. Real FIFOs, links and devices throughout."""

import ast
import json
import os
import shutil
import stat
from pathlib import Path

import pytest

from cli_support import (GOOD, REPO, SEG, ATR, ade_dataset, one_line_error, prepare, run,
                         run_process, sets)
from conftest import TINY, _image

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
TEXT_CAP = 64 * 2**20  # ivr_core.utils.files.TEXT_CAP, the cap on an attribute file


def fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


def loop(path: Path) -> None:
    path.unlink()
    path.symlink_to(path.name)  # a link to itself


def link_out(path: Path) -> None:
    outside = path.parents[5] / "outside" / path.name  # beside the dataset root
    outside.parent.mkdir(exist_ok=True)
    path.rename(outside)
    path.symlink_to(outside)


def to_dev_zero(path: Path) -> None:
    path.unlink()
    path.symlink_to("/dev/zero")


def char_device(path: Path) -> None:
    path.unlink()
    os.mknod(path, stat.S_IFCHR | 0o644, os.makedev(1, 5))  # what /dev/zero is


def huge_text(path: Path) -> None:
    with open(path, "r+b") as f:
        f.truncate(TEXT_CAP + 1)  # sparse: no disk used


def folder(path: Path) -> None:
    path.unlink()
    path.mkdir()


def outside_reason(path: Path, root: Path) -> str:
    return (f"a link to {os.path.realpath(path)}, outside the dataset root {root}; copy the "
            "file into the dataset instead")


# case -> (the file of the image spoiled, how, the reason listed; None: computed)
CASES = {
    "image is a FIFO": (".jpg", fifo, "a FIFO, not a regular file"),
    "image is a link loop": (".jpg", loop, "symbolic link loop"),
    "_seg.png is a FIFO": ("_seg.png", fifo, "a FIFO, not a regular file"),
    "_seg.png links out": ("_seg.png", link_out, None),
    "_seg.png is a link loop": ("_seg.png", loop, "symbolic link loop"),
    "_parts_1.png is a FIFO": ("_parts_1.png", fifo, "a FIFO, not a regular file"),
    "_parts_1.png links out": ("_parts_1.png", link_out, None),
    "_parts_1.png is a link loop": ("_parts_1.png", loop, "symbolic link loop"),
    "_atr.txt is a FIFO": ("_atr.txt", fifo, "a FIFO, not a regular file"),
    "_atr.txt links out": ("_atr.txt", link_out, None),
    "_atr.txt links to /dev/zero": ("_atr.txt", to_dev_zero, None),
    "_atr.txt is a character device": ("_atr.txt", char_device,
                                       "a character device, not a regular file"),
    "_atr.txt is 64 MiB + 1": ("_atr.txt", huge_text,
                               f"{TEXT_CAP + 1:,} bytes, over the {TEXT_CAP:,}-byte cap on "
                               "attribute files"),
    "_atr.txt is a folder": ("_atr.txt", folder, "a folder, not a regular file"),
}


def test_prepare_lists_every_unsafe_annotation_file_and_never_blocks(tmp_path):
    """One image per case in mval, prepared by a real process that must end in time."""
    root = (tmp_path / "ADE").resolve()
    bad = [f"images/validation/z/zoo/ADE_val_{i:08d}.jpg" for i in range(len(CASES))]
    ade_dataset(root, mval=(GOOD, *bad))
    expected = []
    for rel, (suffix, spoil, reason) in zip(bad, CASES.values()):
        _image(root, rel, SEG, [SEG], ATR)  # with a part mask to spoil
        path = Path(str(root / rel)[:-len(".jpg")] + suffix)
        try:
            spoil(path)
        except PermissionError:  # mknod needs CAP_MKNOD
            assert spoil is char_device
            continue
        expected.append(f"  {path}: {reason or outside_reason(path, root)}")
    out = tmp_path / "out"
    done = run_process("prepare-data", "--ade-root", root, "--split-dir", root / "split",
                       "--out", out, "--workers", 1, "-q", timeout=180)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert f"skipped {len(expected)} image(s) with missing or corrupt files:" in lines
    assert sorted(line for line in lines if line.startswith("  /")) == sorted(expected)
    mval = json.loads((out / "ade_mval_5.json").read_text())
    assert [r["image"] for r in mval["images"]] == [GOOD]


def test_a_nul_byte_in_a_split_entry_is_one_line(tmp_path):
    root = ade_dataset(tmp_path / "ADE")
    (root / "split" / "mval.txt").write_text(f"{GOOD}\nimages/a\0b.jpg\n")
    out = tmp_path / "out"
    assert one_line_error(prepare(root, out)) == (
        f"cannot read split file {root / 'split' / 'mval.txt'}: not a text file (NUL bytes)")
    assert not out.exists()


def test_a_link_loop_or_a_nul_byte_in_a_prepared_split(synthetic_data, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(synthetic_data, data)
    (data / "images" / "loop.jpg").symlink_to("loop.jpg")
    prepared = data / "ade_train_1.json"
    doc = json.loads(prepared.read_text())
    first = doc["images"][0]
    overrides = sets([*TINY, "data.min_count=1", "train.iters=2", "data.flip=false"])
    prepared.write_text(json.dumps(doc | {"images": [first, first | {"image": "images/loop.jpg"}]}))
    result = run("train", "--data", data, "--run-dir", tmp_path / "run", "-q", *overrides)
    assert result.exit_code == 0, result.output
    assert (f"warning: cannot read image {data / 'images' / 'loop.jpg'} (symbolic link loop); "
            "skipped") in " ".join(result.output.split())
    prepared.write_text(json.dumps(doc | {"images": [first | {"image": "images/x\0.jpg"}]}))
    result = run("train", "--data", data, "--run-dir", tmp_path / "run2", "-q", *overrides)
    assert one_line_error(result) == (
        f"{prepared}: path 'images/x\\x00.jpg' holds a NUL byte; data files must hold plain "
        "paths relative to the dataset root")


def test_a_split_file_or_prepared_split_that_is_a_fifo_is_one_line(synthetic_data, tmp_path):
    root = ade_dataset(tmp_path / "ADE")
    fifo(root / "split" / "mval.txt")
    done = run_process("prepare-data", "--ade-root", root, "--split-dir", root / "split",
                       "--out", tmp_path / "out", "-q", timeout=120)
    assert (done.returncode, done.stderr) == (1, f"error: cannot read split file "
                                                 f"{root / 'split' / 'mval.txt'}: a FIFO, not "
                                                 "a regular file\n")
    data = tmp_path / "data"
    data.mkdir()
    os.mkfifo(data / "ade_train_1.json")
    done = run_process("train", "--data", data, "--run-dir", tmp_path / "run", "-q",
                       *sets([*TINY, "data.min_count=1"]), timeout=120)
    assert (done.returncode, done.stderr) == (1, f"error: {data / 'ade_train_1.json'} is not a "
                                                 "prepared split (a FIFO, not a regular "
                                                 "file); rerun `ivr prepare-data`\n")


# calls that decode images, and calls that open or read files (``json.loads`` parses text
# already read); the checked readers themselves excepted
READERS = {"imread", "imdecode"}
FILE_READS = {"read_text", "read_bytes", "open", "load", "fromfile"}


def _calls(path: Path):
    """(name, how it reads in the source, line) of every call of a function or method;
    the checked readers are imported functions, so ``x.read_text()`` is a pathlib read."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            yield node.func.attr, ast.unparse(node.func), node.lineno
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            yield ("open" if node.func.id == "open" else None), node.func.id, node.lineno


def test_ivr_core_decodes_images_and_reads_dataset_files_only_through_the_checked_readers():
    core = REPO / "ivr_core"
    checked = {core / "utils" / "images.py", core / "utils" / "files.py"}
    offenders = [f"{path.relative_to(REPO)}:{line} {call}"
                 for path in sorted(core.rglob("*.py")) if path not in checked
                 for name, call, line in _calls(path) if name in READERS]
    dataset_code = [*(core / "data").glob("*.py"), *(core / "predict").glob("*.py"),
                    core / "evaluation" / "tester.py"]
    offenders += [f"{path.relative_to(REPO)}:{line} {call}" for path in sorted(dataset_code)
                  for name, call, line in _calls(path) if name in FILE_READS]
    assert offenders == []
