"""``ivr predict`` on bad boxes and odd images: each bad box is listed with its reason and
the rest labelled; with nothing usable, one error line and no output folder."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from cli_support import last_line_error, run

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


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
    message = last_line_error(result)
    for fragment in ("no image could be labelled", f"nothing was written to {out}",
                     "fix the images or boxes"):
        assert fragment in message, message
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
