"""EXIF orientation: ivr reads pixels as stored, in prepare-data, train/test and predict, so
annotations made on the stored pixels (ADE masks, COCO boxes and sizes) line up; a COCO
size that describes the turned image is skipped with the reason. A real JPEG carrying an
orientation tag, which OpenCV's default reading turns."""

import json

import cv2
import numpy as np
import pytest

from cli_support import BAD, GOOD, ade_dataset, prepare, run, tiny_checkpoint
from conftest import H, W
from image_files import jpeg_with_orientation
from ivr_core.data.dataset import RegionDataset, load_prepared

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
STORED = np.zeros((40, 100, 3), np.uint8)  # stored 100 wide, 40 high
STORED[:, 60:] = 250  # bright on the right of the stored frame
NOTE = "EXIF orientation 6 not applied: pixels and boxes are in the image's stored frame"


@pytest.fixture
def turned(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    path = jpeg_with_orientation(folder / "turned.jpg", STORED, 6)
    assert cv2.imread(str(path)).shape == (100, 40, 3)  # OpenCV's default turns it
    return path


def test_coco_sizes_are_checked_in_the_stored_frame(turned, tmp_path):
    (turned.parent / "copy.jpg").write_bytes(turned.read_bytes())
    doc = {"categories": [{"id": 1, "name": "bright"}],
           "images": [{"id": 1, "file_name": "turned.jpg", "width": 100, "height": 40},
                      {"id": 2, "file_name": "copy.jpg", "width": 40, "height": 100}],
           "annotations": [{"image_id": 1, "category_id": 1, "bbox": [60, 5, 30, 30]},
                           {"image_id": 2, "category_id": 1, "bbox": [5, 60, 30, 30]}]}
    (tmp_path / "a.json").write_text(json.dumps(doc))
    data = tmp_path / "data"
    result = run("prepare-data", "--coco", tmp_path / "a.json", "--images", turned.parent,
                 "--name", "a", "--out", data, "-q")
    assert result.exit_code == 0, result.output
    assert (f"  {turned.parent.resolve() / 'copy.jpg'}: the image is 100x40 but annotated as "
            "40x100: the annotation describes it turned by its EXIF orientation 6, ivr reads "
            "pixels as stored") in result.output.splitlines()
    split = load_prepared(data, "a", 0, dataset="coco")
    assert [(r["image"], r["width"], r["height"], r["boxes"]) for r in split.images] == [
        ("turned.jpg", 100, 40, [[60, 5, 89, 34]])]
    item = RegionDataset(split, scale=40, max_size=1000)[0]  # train and test read it so
    assert item["image"].shape == (3, 40, 100)
    x1, y1, x2, y2 = item["boxes"][0].int().tolist()
    assert item["image"][:, y1:y2 + 1, x1:x2 + 1].mean() > 1.5  # the box is on the bright part


def test_predict_reads_boxes_in_the_stored_frame_and_says_so(turned, synthetic_data, tmp_path):
    checkpoint = tiny_checkpoint(synthetic_data, tmp_path)
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"turned.jpg": [[60, 5, 89, 34]]}))
    out = tmp_path / "out"
    result = run("predict", turned.parent, "--checkpoint", checkpoint, "--boxes", boxes,
                 "--out", out, "--batch-images", 0, "-q")
    assert result.exit_code == 0, result.output
    assert f"  turned.jpg: {NOTE}" in result.output.splitlines()
    (record,) = map(json.loads, (out / "predictions.jsonl").read_text().splitlines())
    assert (record["width"], record["height"]) == (100, 40)
    assert [r["box"] for r in record["regions"]] == [[60, 5, 89, 34]]


def test_ade_image_with_an_orientation_tag_matches_its_masks(tmp_path):
    root = ade_dataset(tmp_path / "ADE")
    jpeg_with_orientation(root / BAD, np.full((H, W, 3), 128, np.uint8), 6)  # masks: H x W
    out = tmp_path / "out"
    result = prepare(root, out)
    assert result.exit_code == 0 and "skipped" not in result.output, result.output
    assert f"  {root.resolve() / BAD}: {NOTE}" in result.output.splitlines()
    mval = json.loads((out / "ade_mval_5.json").read_text())
    assert [(r["image"], r["width"], r["height"]) for r in mval["images"]] == [
        (GOOD, W, H), (BAD, W, H)]
