"""ADE images the authors' reader keeps, ivr keeps too, parsed as their code parses them: an
instance whose name is in no line of objectnames.txt is skipped (and counted), a JPEG cut
short is decoded as far as it goes, a mask of another size than its image gives the size
and the boxes. The reference below transcribes their ``_load_annotation``
(lib/datasets/ade.py of endernewton/iter-reason) for one image."""

import json
import os
from pathlib import Path

import cv2
import numpy as np

from cli_support import ATR, GOOD, SEG, ade_dataset, prepare
from conftest import H, W, _line, _mask
from image_files import jpeg_cut_short
from ivr_core.data.prepare import prepare_ade

UNKNOWN = "images/validation/u/unknown/ADE_val_00000011.jpg"  # names a class not listed
CUT = "images/validation/c/cut/ADE_val_00000012.jpg"  # JPEG without its end marker
OTHER_SIZE = "images/validation/o/other/ADE_val_00000013.jpg"  # image 36x24, masks 30x20


def authors_reading(image_path: Path, classes: list[str]) -> dict:
    """Their rules, as their code runs them: keys from the raw '#' fields, a class when the
    name is a kept class (any other line ignored), size and boxes from the masks."""
    class_to_ind = {name: i for i, name in enumerate(classes)}
    class_keys = {}
    with open(str(image_path).replace(".jpg", "_atr.txt")) as fid:
        for line in fid.readlines():
            columns = line.split("#")
            name = columns[4].strip().replace(" ", "_")
            if name in class_to_ind:
                class_keys["%s_%s" % (columns[0].strip(), columns[1].strip())] = \
                    class_to_ind[name]
    boxes, gt_classes, seg_areas = [], [], []
    seg = cv2.imread(str(image_path).replace(".jpg", "_seg.png"))
    height, width, _ = seg.shape
    level = 0
    while seg is not None:
        instances = seg[:, :, 0]
        for t, ins in enumerate(np.unique(instances)):
            key = "%03d_%d" % (t, level)
            if ins != 0 and key in class_keys:
                ys, xs = np.where(instances == ins)
                boxes.append([int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())])
                gt_classes.append(class_keys[key])
                seg_areas.append(int(ys.shape[0]))
        level += 1
        part_path = str(image_path).replace(".jpg", "_parts_%d.png" % level)
        seg = cv2.imread(part_path) if os.path.exists(part_path) else None
    return {"width": width, "height": height, "boxes": boxes, "classes": gt_classes,
            "seg_areas": seg_areas}


def authors_fixture(root: Path) -> Path:
    parts = np.zeros((H, W), np.uint8)
    parts[11:13, 6:8] = 7  # a knob on the traffic light
    ade_dataset(root, mval=(GOOD, UNKNOWN, CUT, OTHER_SIZE))
    for rel, atr in [(UNKNOWN, _line(1, 0, "wall") + _line(2, 0, "flux capacitor")
                      + _line(1, 1, "knob")),
                     (CUT, ATR), (OTHER_SIZE, ATR + _line(1, 1, "knob"))]:
        stem = str(root / rel)[:-len(".jpg")]
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / rel), np.full((H, W, 3), 128, np.uint8))
        _mask(Path(stem + "_seg.png"), SEG)
        _mask(Path(stem + "_parts_1.png"), parts)
        Path(stem + "_atr.txt").write_text(atr)
    jpeg_cut_short(root / CUT, H, W)
    cv2.imwrite(str(root / OTHER_SIZE), np.full((24, 36, 3), 128, np.uint8))
    return root


def test_images_the_authors_keep_are_kept_and_parsed_as_theirs(tmp_path, capfd):
    root = authors_fixture(tmp_path / "ADE").resolve()
    out = tmp_path / "out"
    result = prepare(root, out)
    assert result.exit_code == 0 and "skipped 1 image" not in result.output, result.output
    lines = result.output.splitlines()
    assert (f"  mval: 4 of 4 images kept, 9 regions (0 images without regions, 1 instance(s) "
            f"named in no line of objectnames.txt skipped) -> {out / 'ade_mval_5.json'}") in lines
    assert f"  {root / CUT}: the JPEG data does not end with an end-of-image marker (cut " \
           "short?); decoded as far as it goes" in lines
    assert f"  {root / OTHER_SIZE}: the image is 36x24 but its mask 30x20: boxes and size " \
           "follow the mask, as in the authors' reader" in lines
    assert "Premature end of JPEG file" not in capfd.readouterr().err  # ivr said it instead
    doc = json.loads((out / "ade_mval_5.json").read_text())
    records = {r["image"]: r for r in doc["images"]}
    assert list(records) == [GOOD, UNKNOWN, CUT, OTHER_SIZE]
    for rel, record in records.items():
        theirs = authors_reading(root / rel, doc["classes"])
        assert {k: record[k] for k in theirs} == theirs, rel
    assert records[UNKNOWN]["boxes"] == [[0, 0, 29, 4], [6, 11, 7, 12]]  # wall, knob
    assert (records[OTHER_SIZE]["width"], records[OTHER_SIZE]["height"]) == (W, H)


def test_every_image_of_an_intact_dataset_is_kept(synthetic_data, tmp_path):
    report = prepare_ade(synthetic_data, synthetic_data, 1, tmp_path, workers=1,
                         show_progress=False)
    assert report.problems == [] and report.notes == []
    assert [(s.split, s.images, s.listed) for s in report.splits] == [
        ("train", 8, 8), ("mval", 2, 2), ("mtest", 2, 2)]
