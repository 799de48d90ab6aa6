"""ADE20K parsing on a hand-made ADE-format fixture; boxes and classes checked by hand."""

import json
from pathlib import Path

import pytest

from ivr_core.data import ade
from ivr_core.data.dataset import RegionDataset, load_prepared
from ivr_core.data.prepare import prepare_ade
from ivr_core.errors import IvrError

EXPECTED_CLASSES = ["__background__", "wall", "traffic_light", "knob", "left_arm",
                    "right_arm", "door"]


def test_class_list_filters_by_count_and_skips_line_zero(ade_root):
    assert ade.load_classes(ade_root / "split", 5) == EXPECTED_CLASSES
    assert "rare_thing" in ade.load_classes(ade_root / "split", 2)
    assert ade.load_classes(ade_root / "split", 0)[1] == "wall"  # "-" never a class


def test_regions_objects_then_parts_with_the_rank_rule(ade_root):
    index = {n: i for i, n in enumerate(EXPECTED_CLASSES)}
    rec = ade.image_regions(ade_root, "images/training/a/abbey/ADE_train_00000001.jpg", index)
    assert (rec["width"], rec["height"]) == (30, 20)  # the fixture's image size
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
