"""Numbers that are no pixel coordinates (a 400-digit integer, 1e308, a string, a boolean),
box files holding no list of boxes, and counts out of range: each a clear line, the rest of
the work done, never a traceback."""

import json

import cv2
import numpy as np
import pytest

from cli_support import last_line_error, one_line_error, run, tiny_checkpoint
from image_files import png_claiming_size

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
HUGE_INT = 10**400
RANGE = "holds a number that is not finite or beyond +-16777216"
NOT_COORDINATES, NOT_COORDINATE_IDS = [1e308, HUGE_INT, "5", True], ["1e308", "400 digits",
                                                                      "string", "bool"]


@pytest.fixture(scope="module")
def checkpoint(synthetic_data, tmp_path_factory):
    return tiny_checkpoint(synthetic_data, tmp_path_factory.mktemp("trained"))


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("a.png", "b.png", "c.png", "d.png"):
        cv2.imwrite(str(folder / name), np.full((48, 64, 3), 90, np.uint8))
    return folder


def predict(checkpoint, images, boxes, out, *extra):
    return run("predict", images, "--checkpoint", checkpoint, "--boxes", boxes, "--out", out,
               "--workers", 0, "-q", *extra)


def labelled(out) -> dict:
    return {r["image"]: [x["box"] for x in r["regions"]]
            for r in map(json.loads, (out / "predictions.jsonl").read_text().splitlines())}


def test_mapping_boxes_that_are_not_numbers_in_range(checkpoint, photos, tmp_path):
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"a.png": [[5, 5, 20, 20], [1e308, 0, 5, 5],
                                           [HUGE_INT, 0, 5, 5], ["5", 5, 20, 20],
                                           [True, 5, 20, 20], [5, 5, 20], "5 5 20 20"]}))
    out = tmp_path / "out"
    result = predict(checkpoint, photos / "a.png", boxes, out)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "skipped 6 image(s) or box(es):" in lines
    for line in [f"a.png: box 1 [1e+308, 0, 5, 5] {RANGE}",
                 f"a.png: box 2 {json.dumps([HUGE_INT, 0, 5, 5])[:57]}... {RANGE}",
                 'a.png: box 3 ["5", 5, 20, 20] is not 4 numbers',  # refused, not converted
                 "a.png: box 4 [true, 5, 20, 20] is not 4 numbers",
                 "a.png: box 5 [5, 5, 20] is not 4 numbers",
                 'a.png: box 6 "5 5 20 20" is not 4 numbers']:
        assert "  " + line in lines
    assert labelled(out) == {"a.png": [[5, 5, 20, 20]]}


def test_a_mapping_with_an_integer_too_long_to_parse_is_one_line(checkpoint, photos, tmp_path):
    boxes = tmp_path / "boxes.json"
    boxes.write_text('{"a.png": [[' + "9" * 5000 + ", 0, 5, 5]]}")
    assert one_line_error(predict(checkpoint, photos, boxes, tmp_path / "out")).startswith(
        f"cannot read boxes file {boxes}: not valid JSON (Exceeds the limit (4300 digits)")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("value", NOT_COORDINATES, ids=NOT_COORDINATE_IDS)
def test_coco_boxes_for_predict(value, checkpoint, photos, tmp_path):
    doc = {"images": [{"id": 1, "file_name": "a.png"}],
           "annotations": [{"image_id": 1, "bbox": [1, 1, 5, 5]},
                           {"image_id": 1, "bbox": [1, 1, value, 5]}]}
    boxes = tmp_path / "coco.json"
    boxes.write_text(json.dumps(doc))
    message = one_line_error(predict(checkpoint, photos, boxes, tmp_path / "out"))
    assert message.startswith(f"{boxes}: annotations[1] has bbox [1, 1, "), message
    assert message.endswith("expected [x, y, width, height]: 4 numbers within +-16777216")


@pytest.mark.parametrize("value", NOT_COORDINATES, ids=NOT_COORDINATE_IDS)
def test_coco_boxes_for_prepare_data(value, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    cv2.imwrite(str(images / "a.png"), np.zeros((48, 64, 3), np.uint8))
    doc = {"images": [{"id": 1, "file_name": "a.png", "width": 64, "height": 48}],
           "categories": [{"id": 1, "name": "thing"}],
           "annotations": [{"image_id": 1, "category_id": 1, "bbox": [value, 1, 5, 5]}]}
    (tmp_path / "a.json").write_text(json.dumps(doc))
    out = tmp_path / "out"
    message = one_line_error(run("prepare-data", "--coco", tmp_path / "a.json", "--images",
                                 images, "--name", "a", "--out", out, "-q"))
    assert message.startswith(f"{tmp_path / 'a.json'}: annotations[0] has no valid 'bbox' "
                              "(expected [x, y, width, height]: 4 numbers within +-16777216, "
                              "got ["), message
    assert not out.exists()


def test_box_files_that_hold_no_list_of_boxes(checkpoint, photos, tmp_path):
    folder = tmp_path / "boxes"
    folder.mkdir()
    (folder / "a.json").write_text("5")
    (folder / "b.json").write_text("null")
    (folder / "c.json").write_text('{"boxes": 3}')
    (folder / "d.txt").write_text("5 5 20 20\n")
    out = tmp_path / "out"
    result = predict(checkpoint, photos, folder, out)
    assert result.exit_code == 0, result.output
    expected = 'expected a list of [x1, y1, x2, y2] or {"boxes": [...]}'
    for name, held in [("a", "5"), ("b", "null"), ("c", '{"boxes": 3}')]:
        assert f"  {name}.png: unusable box file {folder / name}.json: it holds {held}; " \
               f"{expected}" in result.output.splitlines()
    assert labelled(out) == {"d.png": [[5, 5, 20, 20]]}


def test_predict_lists_an_image_whose_header_claims_too_many_pixels(checkpoint, photos,
                                                                     tmp_path):
    png_claiming_size(photos / "b.png")
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"a.png": [[5, 5, 20, 20]], "b.png": [[5, 5, 20, 20]]}))
    out = tmp_path / "out"
    result = predict(checkpoint, photos, boxes, out)
    assert result.exit_code == 0, result.output
    assert ("  b.png: its header says 40000x40000 = 1,600,000,000 pixels, over the cap of "
            "100,000,000 (data.max_pixels)") in result.output.splitlines()
    assert labelled(out) == {"a.png": [[5, 5, 20, 20]]}
    capped = predict(checkpoint, photos / "a.png", boxes, tmp_path / "out2",
                     "--set", "data.max_pixels=3071")  # a.png is 64x48 = 3,072 pixels
    assert last_line_error(capped).startswith("no image could be labelled")
    assert "  a.png: its header says 64x48 = 3,072 pixels, over the cap of 3,071 " \
           "(data.max_pixels)" in capped.output.splitlines()


@pytest.mark.parametrize("images", ["1e20", "100000000000000000000", "9" * 5000, "5", "-7"])
def test_synthetic_image_counts_out_of_range(images, tmp_path):
    out = tmp_path / "synthetic"
    message = one_line_error(run("prepare-data", "--synthetic", "--images", images,
                                 "--out", out))
    if images.isdigit():
        shown = f"{int(images):,}" if len(images) < 8 else images[:21] + "..." * (
            len(images) > 24)
        assert message == ("--images must be 6..1,000,000 synthetic images (2/3 train, 1/6 "
                           f"mval, 1/6 mtest), got {shown}")
    else:
        assert message == ("--synthetic takes one --images N (a whole number of images), got "
                           f"{images}")
    assert not out.exists()


@pytest.mark.parametrize("images", ["2", "100000000000000000000"])
def test_demo_image_counts_out_of_range(images, tmp_path):
    out = tmp_path / "demo"
    message = one_line_error(run("demo", "--images", images, "--out", out))
    assert message.startswith("--images must be 6..1,000,000 synthetic images")
    assert not out.exists()
