"""Bad datasets and prepared splits: a per-image problem of ``prepare-data`` is listed in its
summary and the image skipped; a whole-command problem is one line that names the file and
says what to do, exits non-zero and leaves no output behind. Messages are checked on what
they name (file, key, fix), not on their wording."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from cli_support import (ATR, BAD, BOXES, GOOD, ade_dataset, assert_prepare_skips_bad,
                         error_naming, prepare, run, sets)
from cli_support import stem as _stem
from conftest import TINY, _line
from ivr_core.data.dataset import RegionDataset, load_prepared

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


# --------------------------------------------------------------------------- an ADE dataset


@pytest.fixture
def ade(tmp_path):
    return ade_dataset(tmp_path / "ADE")


def link_outside(root):
    outside = root.parent / "outside" / "elsewhere.jpg"
    outside.parent.mkdir()
    (root / BAD).rename(outside)
    (root / BAD).symlink_to(outside)
    return outside


def folder_link_outside(root):
    outside = root.parent / "outside_folder"
    (root / BAD).parent.rename(outside)
    (root / BAD).parent.symlink_to(outside, target_is_directory=True)
    return outside / Path(BAD).name


def write_atr(text, encoding="utf-8"):
    return lambda root: Path(_stem(root) + "_atr.txt").write_bytes(text.encode(encoding))


# case -> (spoil the BAD image, file reported (suffix added to BAD's stem), reason)
SKIPPED = {
    "corrupt JPEG": (lambda root: (root / BAD).write_bytes(b"\xff\xd8 not a jpeg \xff\xd9"),
                     ".jpg", "corrupt or unreadable image"),
    "missing image": (lambda root: (root / BAD).unlink(), ".jpg", "missing image"),
    "missing _seg.png": (lambda root: Path(_stem(root) + "_seg.png").unlink(), "_seg.png",
                         "missing mask"),
    "corrupt _seg.png": (lambda root: Path(_stem(root) + "_seg.png").write_bytes(b"\x89PNG.."),
                         "_seg.png", "corrupt or unreadable mask"),
    "missing _atr.txt": (lambda root: Path(_stem(root) + "_atr.txt").unlink(), "_atr.txt",
                         "missing attribute file"),
    "atr field count": (write_atr(_line(1, 0, "wall") + "002 # 0 # wall\n"), "_atr.txt",
                        "line 2 has 3 '#'-separated fields, expected at least 5"),
    "atr non-numeric id": (write_atr('one # 0 # 0 # wall # wall # ""\n'), "_atr.txt",
                           "line 1: instance number and part level must be integers"),
    "atr non-numeric level": (write_atr(_line(1, 0, "wall") + '002 # x # 0 # wall # wall # ""\n'),
                              "_atr.txt",
                              "line 2: instance number and part level must be integers"),
    "atr NUL bytes": (write_atr(_line(1, 0, "wall") + "\x00\x00\x00"), "_atr.txt",
                      "not a text file (NUL bytes)"),
    "atr UTF-16": (write_atr(ATR, "utf-16"), "_atr.txt", "not a text file (NUL bytes)"),
}


@pytest.mark.parametrize("case", SKIPPED)
def test_prepare_lists_and_skips_a_bad_image(case, ade, tmp_path):
    spoil, suffix, reason = SKIPPED[case]
    spoil(ade)
    assert_prepare_skips_bad(ade, tmp_path / "out", f"  {_stem(ade.resolve())}{suffix}: {reason}")


@pytest.mark.parametrize("case", ["file", "folder"])
def test_prepare_skips_a_link_out_of_the_root(case, ade, tmp_path):
    target = (link_outside if case == "file" else folder_link_outside)(ade)
    result = prepare(ade, tmp_path / "out")
    assert result.exit_code == 0, result.output
    root = ade.resolve()
    (listed,) = [line for line in result.output.splitlines()
                 if line.startswith(f"  {root / BAD}: ")]
    for fragment in (f"is a link to {target.resolve()}", f"outside the dataset root {root}",
                     "copy the file into the dataset"):
        assert fragment in listed, listed
    mval = json.loads((tmp_path / "out" / "ade_mval_5.json").read_text())
    assert [r["image"] for r in mval["images"]] == [GOOD]


TOLERATED = {  # case -> the bytes of an _atr.txt that reads as ATR
    "empty lines": ("\n" + _line(1, 0, "wall") + "   \n\n" + _line(2, 0, "traffic light")
                    + "\n\n").encode(),
    "CRLF": ATR.replace("\n", "\r\n").encode(),
    "Latin-1": ATR.replace("wall, synonym", "wall, façade").encode("latin-1"),  # not UTF-8
    "UTF-8 BOM": ("\ufeff" + ATR).encode(),
}


@pytest.mark.parametrize("case", TOLERATED)
def test_prepare_reads_odd_but_valid_atr_files(case, ade, tmp_path):
    data = TOLERATED[case]
    if case == "Latin-1":
        with pytest.raises(UnicodeDecodeError):
            data.decode("utf-8")
    Path(_stem(ade) + "_atr.txt").write_bytes(data)
    out = tmp_path / "out"
    result = prepare(ade, out)
    assert result.exit_code == 0 and "skipped" not in result.output, result.output
    mval = json.loads((out / "ade_mval_5.json").read_text())
    assert [r["image"] for r in mval["images"]] == [GOOD, BAD]
    assert mval["images"][1]["boxes"] == BOXES and mval["images"][1]["classes"] == [1, 2]


def test_image_without_regions_is_kept_but_not_trained_on(ade, tmp_path, tiny_overrides):
    Path(_stem(ade) + "_atr.txt").write_text(_line(1, 0, "rare thing"))  # filtered class only
    (ade / "split" / "train.txt").write_text(f"{GOOD}\n{BAD}\n")
    out = tmp_path / "out"
    result = prepare(ade, out)
    assert result.exit_code == 0, result.output
    (summary,) = [line for line in result.output.splitlines() if line.startswith(" train: ")]
    for fragment in ("2 of 2 images kept", "2 regions", "(1 images without regions)",
                     str(out / "ade_train_5.json")):
        assert fragment in summary, summary
    split = load_prepared(out, "train", 5)
    assert [(r["image"], r["boxes"]) for r in split.images] == [(GOOD, BOXES), (BAD, [])]
    assert len(RegionDataset(split, 20, 1000)) == 1  # only the image with regions
    # a split of region-less images only cannot be trained on
    (ade / "split" / "train.txt").write_text(f"{BAD}\n")
    assert prepare(ade, out).exit_code == 0
    run_dir = tmp_path / "run"
    result = run("train", "--data", out, "--run-dir", run_dir, "-q",
                 *sets([*TINY, "data.min_count=5"]))
    error_naming(result, str(out / "ade_train_5.json"), "no image with regions")
    assert not run_dir.exists()


# --------------------------------------------------------------------------- whole-command errors


def test_missing_dataset_root(tmp_path):
    out = tmp_path / "out"
    result = prepare(tmp_path / "nope", out)
    error_naming(result, f"dataset root not found: {tmp_path / 'nope'}", "ADE20K_2016_07_26",
                 "images/training and images/validation")
    assert not out.exists()


def test_moved_prepared_split_names_the_missing_root(synthetic_data, tmp_path):
    moved = tmp_path / "moved"
    moved.mkdir()
    shutil.copy(synthetic_data / "ade_train_1.json", moved)  # its root "." now holds no images
    path = moved / "ade_train_1.json"
    first = json.loads(path.read_text())["images"][0]["image"]
    run_dir = tmp_path / "run"
    train = ["train", "--data", moved, "--run-dir", run_dir, "-q"]
    result = run(*train, *sets([*TINY, "data.min_count=1"]))
    error_naming(result, f"none of the first images of {path}", f"dataset root {moved} ",
                 f"recorded in {path}", str(moved / first), "set data.root")
    result = run(*train, *sets([*TINY, "data.min_count=1", f"data.root={tmp_path}"]))
    error_naming(result, f"none of the first images of {path}", f"dataset root {tmp_path} ",
                 "(data.root", str(tmp_path / first), "set data.root")
    result = run(*train, *sets([*TINY, "data.min_count=1", f"data.root={tmp_path / 'gone'}"]))
    error_naming(result, f"dataset root {tmp_path / 'gone'} (data.root) does not exist",
                 "set data.root")
    assert not run_dir.exists()
    result = run(*train, *sets([*TINY, "data.min_count=1", f"data.root={synthetic_data}",
                                "train.iters=1"]))
    assert result.exit_code == 0, result.output  # pointed at the images, it trains


@pytest.mark.parametrize("missing", ["mtest.txt", "objectnames.txt"])
def test_missing_split_file(missing, ade, tmp_path):
    (ade / "split" / missing).unlink()
    out = tmp_path / "out"
    result = prepare(ade, out)
    error_naming(result, f"split file not found: {ade / 'split' / missing}",
                 "train.txt, mval.txt, mtest.txt, objectnames.txt, objectcounts.txt")
    assert not out.exists()


def test_missing_prepared_split(synthetic_data, tmp_path):
    run_dir = tmp_path / "run"
    result = run("train", "--data", synthetic_data, "--run-dir", run_dir, "-q",
                 *sets([*TINY, "data.min_count=1", "data.train_split=nosuch"]))
    error_naming(result, f"prepared split not found: {synthetic_data / 'ade_nosuch_1.json'}",
                 "`ivr prepare-data`", "--data / data.dir")
    assert not run_dir.exists()


@pytest.mark.parametrize("entry", ["../outside/x.jpg", "images/../../x.jpg", "/etc/passwd"])
def test_split_entry_leaving_the_root(entry, ade, tmp_path):
    (ade / "split" / "mval.txt").write_text(f"{GOOD}\n{entry}\n")
    out = tmp_path / "out"
    result = prepare(ade, out)
    error_naming(result, f"{ade / 'split' / 'mval.txt'}: entry '{entry}'",
                 "leaves the dataset root", "relative to it")
    assert not out.exists()


@pytest.mark.parametrize("entry", ["../x.jpg", "/tmp/x.jpg", "link"])
@pytest.mark.parametrize("command", ["train", "test"])
def test_prepared_split_edited_to_leave_the_root(entry, command, checkpoint, synthetic_data,
                                                  tmp_path):
    data = tmp_path / "data"
    shutil.copytree(synthetic_data, data, symlinks=True)
    split = "train" if command == "train" else "mtest"
    path = data / f"ade_{split}_1.json"
    doc = json.loads(path.read_text())
    if entry == "link":
        target = data.parent / "outside.jpg"
        shutil.copy(data / doc["images"][0]["image"], target)
        (data / "images" / "link.jpg").symlink_to(target)
        entry = "images/link.jpg"
        fragments = (f"{path}: '{entry}' is a link to {target.resolve()}",
                     f"outside the dataset root {data}", "copy the file into the dataset")
    else:
        fragments = (f"{path}: path '{entry}' leaves the dataset root {data}",
                     "relative to it")
    doc["images"][1]["image"] = entry
    path.write_text(json.dumps(doc))
    if command == "train":
        run_dir = tmp_path / "run"
        result = run("train", "--data", data, "--run-dir", run_dir, "-q",
                     *sets([*TINY, "data.min_count=1"]))
        assert not run_dir.exists()
    else:
        out = tmp_path / "results.json"
        result = run("test", "--checkpoint", checkpoint, "--data", data, "--out", out, "-q")
        assert not out.exists()
    error_naming(result, *fragments)


# --------------------------------------------------------------------------- 2,000 regions


def test_an_image_with_2000_regions_trains_and_tests(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    cv2.imwrite(str(images / "crowded.jpg"), rng.integers(0, 256, (128, 128, 3), np.uint8))
    xy = rng.integers(0, 122, (2000, 2)).tolist()
    doc = {"images": [{"id": 1, "file_name": "crowded.jpg", "width": 128, "height": 128}],
           "categories": [{"id": i, "name": f"thing{i}"} for i in (1, 2, 3)],
           "annotations": [{"id": i, "image_id": 1, "category_id": 1 + i % 3,
                            "bbox": [x, y, 6, 6], "area": 36, "iscrowd": 0}
                           for i, (x, y) in enumerate(xy)]}
    (tmp_path / "crowded.json").write_text(json.dumps(doc))
    data = tmp_path / "data"
    result = run("prepare-data", "--coco", tmp_path / "crowded.json", "--images", images,
                 "--name", "crowded", "--out", data, "-q")
    assert result.exit_code == 0, result.output
    assert f"crowded: 1 images, 2000 regions (0 images without regions) -> " \
           f"{data / 'coco_crowded.json'}" in result.output
    run_dir = tmp_path / "run"
    # crop_size 2 keeps the 2,000 region tails (layer4 per region) to about a second on a CPU
    overrides = [*TINY, "data.dataset=coco", "data.train_split=crowded",
                 "data.test_split=crowded", "model.crop_size=2", "train.snapshot_every=1"]
    result = run("train", "--model", "memory", "--data", data, "--run-dir", run_dir,
                 "--iters", 1, "-q", *sets(overrides))
    assert result.exit_code == 0, result.output
    result = run("test", "--run-dir", run_dir, "-q")
    assert result.exit_code == 0, result.output
    results = json.loads((run_dir / "results.json").read_text())
    assert results["num_regions"] == 2000 and results["num_images"] == 1
    assert len(results["iterations"]) == 3
