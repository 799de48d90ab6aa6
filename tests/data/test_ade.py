"""ADE20K parsing on a hand-made ADE-format fixture; boxes and classes checked by hand."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from ivr_core.data import ade
from ivr_core.data.dataset import RegionDataset, load_prepared
from ivr_core.data.prepare import prepare_ade
from ivr_core.errors import IvrError

NAMES = ["-", "wall", "traffic light", "knob", "rare thing", "left arm", "right arm", "door"]
COUNTS = [100, 10, 7, 5, 2, 6, 6, 9]  # min_count 5 drops "rare thing"; line 0 is never a class
H, W = 20, 30


def _mask(path: Path, ids: np.ndarray) -> None:
    bgr = np.zeros((*ids.shape, 3), np.uint8)
    bgr[:, :, 0] = ids  # B = instance value
    bgr[:, :, 1] = 7  # class code, unused by the rules
    cv2.imwrite(str(path), bgr)


def _image(root: Path, rel: str, seg=None, parts=(), atr=None) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((H, W, 3), 128, np.uint8))
    stem = path.with_suffix("")
    if seg is not None:
        _mask(Path(f"{stem}_seg.png"), seg)
    for level, ids in enumerate(parts, 1):
        _mask(Path(f"{stem}_parts_{level}.png"), ids)
    if atr is not None:
        Path(f"{stem}_atr.txt").write_text(atr)
    return path


def _line(inst, level, name):
    return f'{inst:03d} # {level} # 0 # {name}, synonym # {name} # ""\n'


@pytest.fixture
def ade_root(tmp_path):
    root = tmp_path / "ADE"
    seg = np.zeros((H, W), np.uint8)
    seg[0:5, :] = 50  # wall: box [0, 0, 29, 4], area 150
    seg[10:15, 5:10] = 80  # traffic light: [5, 10, 9, 14], area 25
    seg[16:19, 20:26] = 120  # rare thing (filtered out)
    seg[6:9, 25:29] = 200  # left arm: [25, 6, 28, 8], area 12
    parts1 = np.zeros((H, W), np.uint8)
    parts1[11:13, 6:8] = 7  # knob: [6, 11, 7, 12], area 4
    parts2 = np.full((H, W), 3, np.uint8)  # no 0 pixel: value 3 is rank 0, value 9 rank 1
    parts2[1:3, 1:4] = 9  # door: [1, 1, 3, 2], area 6
    atr = (_line(1, 0, "wall") + _line(2, 0, "traffic light") + _line(3, 0, "rare thing")
           + "\n" + _line(4, 0, "left arm") + _line(1, 1, "knob") + _line(1, 2, "door"))
    good = "images/training/a/abbey/ADE_train_00000001.jpg"
    _image(root, good, seg, [parts1, parts2], atr)
    only_rare = np.zeros((H, W), np.uint8)
    only_rare[2:4, 2:4] = 9
    empty = "images/training/b/bar/ADE_train_00000002.jpg"
    _image(root, empty, only_rare, [], _line(1, 0, "rare thing"))
    no_seg = "images/validation/c/cave/ADE_val_00000003.jpg"
    _image(root, no_seg, None, [], _line(1, 0, "wall"))
    corrupt = "images/validation/c/cave/ADE_val_00000004.jpg"
    _image(root, corrupt, seg, [], atr).write_bytes(b"\xff\xd8 not a jpeg \xff\xd9")
    bad_atr = "images/validation/d/dock/ADE_val_00000005.jpg"
    _image(root, bad_atr, seg, [], "001 # 0 # wall\n")
    splits = root / "split"
    splits.mkdir()
    (splits / "objectnames.txt").write_text("".join(n + " \n" for n in NAMES))
    (splits / "objectcounts.txt").write_text("".join(f"{c}\n" for c in COUNTS))
    (splits / "train.txt").write_text(f"{good}\n{empty}\n")
    (splits / "mval.txt").write_text(f"{no_seg}\n{corrupt}\n{bad_atr}\n")
    (splits / "mtest.txt").write_text(f"{good}\n")
    return root


EXPECTED_CLASSES = ["__background__", "wall", "traffic_light", "knob", "left_arm",
                    "right_arm", "door"]


def test_class_list_filters_by_count_and_skips_line_zero(ade_root):
    assert ade.load_classes(ade_root / "split", 5) == EXPECTED_CLASSES
    assert "rare_thing" in ade.load_classes(ade_root / "split", 2)
    assert ade.load_classes(ade_root / "split", 0)[1] == "wall"  # "-" never a class


def test_regions_objects_then_parts_with_the_rank_rule(ade_root):
    index = {n: i for i, n in enumerate(EXPECTED_CLASSES)}
    rec = ade.image_regions(ade_root, "images/training/a/abbey/ADE_train_00000001.jpg", index)
    assert (rec["width"], rec["height"]) == (W, H)
    assert rec["boxes"] == [[0, 0, 29, 4], [5, 10, 9, 14], [25, 6, 28, 8], [6, 11, 7, 12],
                            [1, 1, 3, 2]]
    assert rec["classes"] == [1, 2, 4, 3, 6]  # wall, traffic_light, left_arm, knob, door
    assert rec["seg_areas"] == [150, 25, 12, 4, 6]


@pytest.mark.parametrize("workers", [1, 2])
def test_prepare_writes_splits_and_reports_bad_files(ade_root, tmp_path, workers):
    out = tmp_path / f"prepared{workers}"
    report = prepare_ade(ade_root, ade_root / "split", 5, out, workers=workers,
                         show_progress=False)
    train = json.loads((out / "ade_train_5.json").read_text())
    assert train["classes"] == EXPECTED_CLASSES
    assert [r["image"] for r in train["images"]] == [
        "images/training/a/abbey/ADE_train_00000001.jpg",
        "images/training/b/bar/ADE_train_00000002.jpg"]
    assert train["images"][1]["boxes"] == []  # kept in the list, no region
    assert (out / "ade_mtest_5.json").is_file()
    mval = json.loads((out / "ade_mval_5.json").read_text())
    assert mval["images"] == []
    reasons = {Path(p.path).name: p.reason for p in report.problems}
    assert reasons == {"ADE_val_00000003_seg.png": "missing mask",
                       "ADE_val_00000004.jpg": "corrupt or unreadable image",
                       "ADE_val_00000005_atr.txt": reasons["ADE_val_00000005_atr.txt"]}
    assert "expected at least 5" in reasons["ADE_val_00000005_atr.txt"]
    assert [(s.split, s.images, s.regions, s.empty) for s in report.splits] == [
        ("train", 2, 5, 1), ("mval", 0, 0, 0), ("mtest", 1, 5, 0)]
    assert not list(out.glob(".*.tmp"))  # atomic writes leave no temp files


def test_flipped_copy_swaps_left_and_right(ade_root, tmp_path):
    prepare_ade(ade_root, ade_root / "split", 5, tmp_path, workers=1, show_progress=False)
    split = load_prepared(tmp_path, "train", 5)
    ds = RegionDataset(split, scale=20, max_size=1000, flip=True)
    assert len(ds) == 2  # one image with regions, and its flip
    plain, flipped = ds[0], ds[1]
    assert flipped["flipped"] and not plain["flipped"]
    assert plain["boxes"][2].tolist() == [25, 6, 28, 8]
    assert flipped["boxes"][2].tolist() == [30 - 28 - 1, 6, 30 - 25 - 1, 8]
    assert flipped["classes"].tolist() == [1, 2, 5, 3, 6]  # left_arm -> right_arm
    assert plain["image"].shape == (3, 20, 30)
    assert torch_allclose(plain["image"].flip(-1), flipped["image"])


def torch_allclose(a, b):
    return bool((a - b).abs().max() < 1e-6)


def test_scaling_follows_shorter_side_and_cap(ade_root, tmp_path):
    prepare_ade(ade_root, ade_root / "split", 5, tmp_path, workers=1, show_progress=False)
    split = load_prepared(tmp_path, "mtest", 5)
    item = RegionDataset(split, scale=40, max_size=1000)[0]  # 20x30 -> 40x60
    assert item["image"].shape == (3, 40, 60) and item["scale"] == 2.0
    assert item["boxes"][0].tolist() == [0, 0, 58, 8]
    capped = RegionDataset(split, scale=40, max_size=45)[0]  # longer side capped at 45
    assert capped["image"].shape == (3, 30, 45) and capped["scale"] == 1.5


def test_wrong_root_and_split_errors(ade_root, tmp_path):
    with pytest.raises(IvrError, match="dataset root not found"):
        prepare_ade(tmp_path / "nope", ade_root / "split", show_progress=False)
    with pytest.raises(IvrError, match="has no images/ folder"):
        prepare_ade(tmp_path, ade_root / "split", show_progress=False)
    with pytest.raises(IvrError, match="split file not found"):
        prepare_ade(ade_root, tmp_path, show_progress=False)
    (ade_root / "split" / "mtest.txt").write_text("../../etc/passwd\n")
    with pytest.raises(IvrError, match="leaves the dataset root"):
        prepare_ade(ade_root, ade_root / "split", show_progress=False)


def test_shipped_authors_split():
    classes = ade.load_classes(ade.DEFAULT_SPLIT_DIR, 5)
    assert len(classes) == 1485 and classes[0] == "__background__"
    assert [len(ade.read_split(ade.DEFAULT_SPLIT_DIR, s)) for s in ade.SPLITS] == [20210, 1000, 1000]
