"""The bad-input matrix: every case ends in one line that names the file or key and says what
to do, exits non-zero where the command cannot go on, and leaves no partial output behind.
Per-image problems of ``prepare-data`` are listed in its summary and the image is skipped."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from cli_support import (ATR, BAD, BOXES, GOOD, ade_dataset, assert_prepare_skips_bad,
                         last_line_error, one_line_error, prepare, run, sets)
from cli_support import stem as _stem
from conftest import TINY, _line
from ivr_core.config import TrainConfig
from ivr_core.data.dataset import RegionDataset, load_prepared

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def known_keys(section) -> str:
    return ", ".join(f.name for f in dataclasses.fields(section))


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
    assert (f"  {root / BAD}: '{BAD}' is a link to {target.resolve()}, outside the dataset "
            f"root {root}; copy the file into the dataset instead") in result.output.splitlines()
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
    assert f" train: 2 of 2 images kept, 2 regions (1 images without regions) -> " \
           f"{out / 'ade_train_5.json'}" in result.output.splitlines()
    split = load_prepared(out, "train", 5)
    assert [(r["image"], r["boxes"]) for r in split.images] == [(GOOD, BOXES), (BAD, [])]
    assert len(RegionDataset(split, 20, 1000)) == 1  # only the image with regions
    # a split of region-less images only cannot be trained on
    (ade / "split" / "train.txt").write_text(f"{BAD}\n")
    assert prepare(ade, out).exit_code == 0
    run_dir = tmp_path / "run"
    result = run("train", "--data", out, "--run-dir", run_dir, "-q",
                 *sets([*TINY, "data.min_count=5"]))
    assert one_line_error(result) == f"{out / 'ade_train_5.json'} has no image with regions " \
                                     "to train on"
    assert not run_dir.exists()


# --------------------------------------------------------------------------- whole-command errors


def test_missing_dataset_root(tmp_path):
    out = tmp_path / "out"
    result = prepare(tmp_path / "nope", out)
    assert one_line_error(result) == (
        f"dataset root not found: {tmp_path / 'nope'} (expected the ADE20K_2016_07_26 folder "
        "that holds images/training and images/validation)")
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
    assert one_line_error(result) == (
        f"none of the first images of {path} exist under the dataset root {moved} (recorded "
        f"in {path}; e.g. {moved / first}); set data.root to the folder the image paths are "
        "relative to")
    result = run(*train, *sets([*TINY, "data.min_count=1", f"data.root={tmp_path}"]))
    assert one_line_error(result) == (
        f"none of the first images of {path} exist under the dataset root {tmp_path} "
        f"(data.root; e.g. {tmp_path / first}); set data.root to the folder the image paths "
        "are relative to")
    result = run(*train, *sets([*TINY, "data.min_count=1", f"data.root={tmp_path / 'gone'}"]))
    assert one_line_error(result) == (
        f"dataset root {tmp_path / 'gone'} (data.root) does not exist; set data.root to where "
        "the images are")
    assert not run_dir.exists()
    result = run(*train, *sets([*TINY, "data.min_count=1", f"data.root={synthetic_data}",
                                "train.iters=1"]))
    assert result.exit_code == 0, result.output  # pointed at the images, it trains


@pytest.mark.parametrize("missing", ["mtest.txt", "objectnames.txt"])
def test_missing_split_file(missing, ade, tmp_path):
    (ade / "split" / missing).unlink()
    out = tmp_path / "out"
    result = prepare(ade, out)
    assert one_line_error(result) == (
        f"split file not found: {ade / 'split' / missing} (expected the ADE split files "
        "train.txt, mval.txt, mtest.txt, objectnames.txt, objectcounts.txt)")
    assert not out.exists()


def test_missing_prepared_split(synthetic_data, tmp_path):
    run_dir = tmp_path / "run"
    result = run("train", "--data", synthetic_data, "--run-dir", run_dir, "-q",
                 *sets([*TINY, "data.min_count=1", "data.train_split=nosuch"]))
    assert one_line_error(result) == (
        f"prepared split not found: {synthetic_data / 'ade_nosuch_1.json'}; run `ivr "
        "prepare-data` first (or point --data / data.dir at the folder holding it)")
    assert not run_dir.exists()


@pytest.mark.parametrize("entry", ["../outside/x.jpg", "images/../../x.jpg", "/etc/passwd"])
def test_split_entry_leaving_the_root(entry, ade, tmp_path):
    (ade / "split" / "mval.txt").write_text(f"{GOOD}\n{entry}\n")
    out = tmp_path / "out"
    result = prepare(ade, out)
    assert one_line_error(result) == (
        f"{ade / 'split' / 'mval.txt'}: entry '{entry}' leaves the dataset root; split files "
        "must hold paths relative to it")
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
        message = (f"{path}: '{entry}' is a link to {target.resolve()}, outside the dataset "
                   f"root {data}; copy the file into the dataset instead")
    else:
        message = (f"{path}: path '{entry}' leaves the dataset root {data}; data files must "
                   "hold paths relative to it")
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
    assert one_line_error(result) == message


# --------------------------------------------------------------------------- config


CONFIG_CASES = {  # (--set item, the same as a TOML file, message; {src}: where it came from)
    "unknown key": ("train.speed=1", "[train]\nspeed = 1\n",
                    f"unknown config key 'train.speed' in {{src}}; known keys: "
                    f"{known_keys(TrainConfig)}"),
    "unknown section": ("trian.lr=1", "[trian]\nlr = 1\n",
                        "unknown config section 'trian' in {src}; known sections: data, model, "
                        "memory, graph, train, runtime"),
    "wrong type": ("data.scale=big", '[data]\nscale = "big"\n',
                   "config key 'data.scale' must be int, got str 'big'"),
    "float for int": ("data.scale=600.5", "[data]\nscale = 600.5\n",
                      "config key 'data.scale' must be int, got float 600.5"),
    "int for bool": ("data.flip=1", "[data]\nflip = 1\n",
                     "config key 'data.flip' must be bool, got int 1"),
    "list type": ("train.lr_steps=5", "[train]\nlr_steps = 5\n",
                  "config key 'train.lr_steps' must be a list of int, got 5"),
    "negative size": ("data.scale=-600", "[data]\nscale = -600\n",
                      "config key 'data.scale' must be > 0, got -600"),
    "zero crop": ("model.crop_size=0", "[model]\ncrop_size = 0\n",
                  "config key 'model.crop_size' must be > 0, got 0"),
    "negative workers": ("data.workers=-1", "[data]\nworkers = -1\n",
                         "config key 'data.workers' must be >= 0, got -1"),
    "bad choice": ("model.type=transformer", '[model]\ntype = "transformer"\n',
                   "config key 'model.type' must be one of baseline, memory, global, full; got 'transformer'"),
}


@pytest.mark.parametrize("via", ["--set", "--config"])
@pytest.mark.parametrize("case", CONFIG_CASES)
def test_bad_config(case, via, synthetic_data, tmp_path):
    item, toml_text, message = CONFIG_CASES[case]
    if via == "--set":
        args, src = ["--set", item], f"--set {item}"
    else:
        file = tmp_path / "bad.toml"
        file.write_text(toml_text)
        args, src = ["--config", file], str(file)
    run_dir = tmp_path / "run"
    result = run("train", "--data", synthetic_data, "--run-dir", run_dir, "-q", *args)
    assert one_line_error(result) == message.format(src=src)
    assert not run_dir.exists()


def test_bad_config_files_and_set_syntax(tmp_path):
    run_dir = tmp_path / "run"
    missing = tmp_path / "missing.toml"
    assert one_line_error(run("train", "--run-dir", run_dir, "--config", missing)) == \
        f"config file not found: {missing}"
    broken = tmp_path / "broken.toml"
    broken.write_text("[train\nlr = 1\n")
    message = one_line_error(run("train", "--run-dir", run_dir, "--config", broken))
    assert message.startswith(f"config file {broken} is not valid TOML: ")
    latin = tmp_path / "latin.toml"
    latin.write_bytes('[model]\nweights = "/home/jos\xe9/r50.pth"\n'.encode("latin-1"))
    message = one_line_error(run("train", "--run-dir", run_dir, "--config", latin))
    assert message.startswith(f"config file {latin} is not valid TOML: ")
    not_table = tmp_path / "flat.toml"
    not_table.write_text("train = 3\n")
    assert one_line_error(run("train", "--run-dir", run_dir, "--config", not_table)) == \
        f"config section 'train' in {not_table} must be a table"
    assert one_line_error(run("train", "--run-dir", run_dir, "--set", "train.lr")) == \
        "--set expects section.key=value, got 'train.lr'"
    assert one_line_error(run("train", "--run-dir", run_dir, "--set", "lr=0.1")) == \
        "--set expects section.key=value, got 'lr=0.1'"
    assert not run_dir.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is visible")
@pytest.mark.parametrize("command", ["train", "test"])
def test_cuda_without_a_gpu(command, checkpoint, synthetic_data, tmp_path):
    if command == "train":
        out = tmp_path / "run"
        result = run("train", "--data", synthetic_data, "--run-dir", out, "--device", "cuda",
                     "-q", *sets([*TINY, "data.min_count=1"]))
    else:
        out = tmp_path / "results.json"
        result = run("test", "--checkpoint", checkpoint, "--out", out, "--device", "cuda", "-q")
    assert one_line_error(result) == (
        f"device 'cuda' requested but no CUDA GPU is visible to PyTorch (torch "
        f"{torch.__version__}, built for CUDA {torch.version.cuda or 'none'}); use --device cpu")
    assert not out.exists()


# --------------------------------------------------------------------------- checkpoints


@pytest.fixture(scope="module")
def trained(synthetic_data, tmp_path_factory):
    """A memory-model run folder trained for 1 iteration on the tiny synthetic data."""
    run_dir = tmp_path_factory.mktemp("trained") / "run"
    result = run("train", "--model", "memory", "--data", synthetic_data, "--run-dir", run_dir,
                 "--iters", 1, "-q", *sets([*TINY, "data.min_count=1", "train.snapshot_every=1"]))
    assert result.exit_code == 0, result.output
    return run_dir


@pytest.fixture
def checkpoint(trained):
    return trained / "checkpoints" / "iter_00000001.pt"


def num_classes(data):
    return len(json.loads((data / "ade_train_1.json").read_text())["classes"])


@pytest.fixture
def other_data(tmp_path):
    """A prepared dataset with other classes (the hand-made ADE one, min_count 1)."""
    root = ade_dataset(tmp_path / "ADE", mval=[GOOD])
    assert prepare(root, root, "--min-count", 1).exit_code == 0
    return root


def test_test_with_the_wrong_model_type(checkpoint, tmp_path):
    out = tmp_path / "results.json"
    result = run("test", "--checkpoint", checkpoint, "--model", "baseline", "--out", out, "-q")
    assert one_line_error(result) == f"{checkpoint} holds a 'memory' model, not 'baseline'"
    result = run("test", "--checkpoint", checkpoint, "--set", "model.type=baseline",
                 "--out", out, "-q")
    assert one_line_error(result) == (f"{checkpoint} holds a 'memory' model, not 'baseline'; "
                                      "use --model memory or another checkpoint")
    assert not out.exists()


def test_test_on_data_with_other_classes(checkpoint, synthetic_data, other_data, tmp_path):
    out = tmp_path / "results.json"
    result = run("test", "--checkpoint", checkpoint, "--data", other_data, "--out", out, "-q")
    assert one_line_error(result) == (
        f"{checkpoint} was trained on {num_classes(synthetic_data)} classes but the data has 8 "
        "(or other names); use the data it was trained on")
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
        result = _predict(checkpoint, tmp_path / "a.png", tmp_path / "boxes.json", out,
                          "--set", "memory.channels=32")
    assert one_line_error(result) == (
        "the checkpoint's weights do not fit the model the config builds: memory.channels (16 "
        "in the checkpoint, 32 now); leave the checkpoint's model settings as they are")
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
        expected = (f"{path} holds a 'memory' model, not 'baseline'; use --model memory or "
                    "another checkpoint")
    else:
        expected = (f"{path} was trained on {num_classes(synthetic_data)} classes but the data "
                    "has 8 (or other names); use the data it was trained on")
    assert one_line_error(result) == expected
    assert {p.name: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == before


def test_a_file_that_is_no_checkpoint(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"conv1.weight": torch.zeros(1)}, path)
    out = tmp_path / "results.json"
    assert one_line_error(run("test", "--checkpoint", path, "--out", out)) == \
        f"{path} is not an ivr checkpoint"
    assert not out.exists()


# --------------------------------------------------------------------------- predict


def _predict(checkpoint, images, boxes, out, *extra):
    return run("predict", images, "--checkpoint", checkpoint, "--boxes", boxes, "--out", out,
               "--workers", 0, "-q", *extra)


def test_predict_lists_bad_boxes_and_labels_the_rest(checkpoint, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), np.full((48, 64, 3), 90, np.uint8))
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"a.png": [[5, 5, 20, 20], [20, 5, 10, 30], [5, 30, 9, 29],
                                           [0, 0, 64, 10], [-1, 0, 5, 5], [0, 0, 63, 47]]}))
    out = tmp_path / "out"
    result = _predict(checkpoint, folder, boxes, out)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "skipped 4 image(s) or box(es):" in lines
    for line in ["a.png: box 1 [20, 5, 10, 30] is degenerate (x2 < x1 or y2 < y1)",
                 "a.png: box 2 [5, 30, 9, 29] is degenerate (x2 < x1 or y2 < y1)",
                 "a.png: box 3 [0, 0, 64, 10] is outside the 64x48 image",
                 "a.png: box 4 [-1, 0, 5, 5] is outside the 64x48 image"]:
        assert "  " + line in lines
    (record,) = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    assert [r["box"] for r in record["regions"]] == [[5, 5, 20, 20], [0, 0, 63, 47]]


def test_predict_with_no_usable_box_writes_nothing(checkpoint, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), np.full((48, 64, 3), 90, np.uint8))
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"a.png": [[20, 5, 10, 30], [0, 0, 64, 48]]}))
    out = tmp_path / "out"
    result = _predict(checkpoint, folder, boxes, out, "--draw")
    assert "  a.png: no boxes (box 0 [20, 5, 10, 30] is degenerate (x2 < x1 or y2 < y1); " \
           "box 1 [0, 0, 64, 48] is outside the 64x48 image)" in result.output.splitlines()
    assert last_line_error(result) == (
        "no image could be labelled (see the list above); nothing was written to "
        f"{out}; fix the images or boxes listed")
    assert not out.exists()


def test_predict_tiny_and_huge_images(checkpoint, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    cv2.imwrite(str(folder / "tiny.png"), np.full((1, 1, 3), 200, np.uint8))
    cv2.imwrite(str(folder / "huge.png"), np.zeros((10_000, 10_000), np.uint8))  # compresses well
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"tiny.png": [[0, 0, 0, 0]], "huge.png": [[0, 0, 9999, 9999]]}))
    out = tmp_path / "out"
    result = _predict(checkpoint, folder, boxes, out)
    assert result.exit_code == 0, result.output
    assert "skipped" not in result.output
    records = {r["image"]: r for r in map(json.loads,
                                          (out / "predictions.jsonl").read_text().splitlines())}
    assert {k: (r["width"], r["height"], [x["box"] for x in r["regions"]])
            for k, r in records.items()} == {
        "tiny.png": (1, 1, [[0, 0, 0, 0]]), "huge.png": (10_000, 10_000, [[0, 0, 9999, 9999]])}
    for record in records.values():
        assert len(record["regions"][0]["iterations"]) == 3  # the memory model's iterations


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
