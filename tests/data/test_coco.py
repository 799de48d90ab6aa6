"""COCO-format annotations -> prepared split, on hand-made files; boxes checked by hand."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import TINY  # tests/ is on sys.path (pyproject: pythonpath)
from ivr_cli.main import app
from ivr_core.config import load_config
from ivr_core.data import coco
from ivr_core.data.dataset import RegionDataset, load_prepared
from ivr_core.errors import IvrError

runner = CliRunner()
TRAIN_CATEGORIES = [{"id": 5, "name": " traffic light "}, {"id": 1, "name": "person"},
                    {"id": 3, "name": "dining table"}]  # listed out of order, ids with gaps
CLASSES = ["__background__", "person", "dining_table", "traffic_light"]


def _image(folder: Path, name: str, width: int, height: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(folder / name), np.full((height, width, 3), 100, np.uint8))


def _ann(image_id, category_id, bbox, area=None, **extra):
    a = {"image_id": image_id, "category_id": category_id, "bbox": bbox, **extra}
    if area is not None:
        a["area"] = area
    return a


@pytest.fixture
def coco_files(tmp_path):
    """train.json (images under coco/train2014) and val.json (coco/val2014, one more class)."""
    base = tmp_path / "coco"
    _image(base / "train2014", "a.jpg", 40, 30)
    _image(base / "train2014", "b.jpg", 20, 20)  # no annotation
    _image(base / "val2014", "v.jpg", 32, 24)
    train = {"info": {}, "categories": TRAIN_CATEGORIES, "images": [
        {"id": 10, "file_name": "a.jpg", "width": 40, "height": 30},
        {"id": 11, "file_name": "b.jpg", "width": 20, "height": 20},
        {"id": 12, "file_name": "gone.jpg", "width": 10, "height": 10}],
        "annotations": [
            _ann(10, 1, [2, 3, 10, 5], 40.4),  # [2, 3, 11, 7]
            _ann(10, 5, [0.5, 1.25, 4.0, 2.5], 9.6),  # fractional: [0, 1, 4, 3]
            _ann(10, 3, [35, 25, 10, 10], 100.0),  # clipped to 40x30: [35, 25, 39, 29]
            _ann(10, 1, [-3.5, -2, 6, 5], 30),  # clipped at 0: [0, 0, 2, 2]
            _ann(10, 1, [1, 1, 5, 5], 25, iscrowd=1),  # crowd
            _ann(10, 1, [5, 5, 0.5, 10], 5),  # degenerate: w < 1
            _ann(10, 3, [45, 5, 5, 5], 25),  # degenerate: nothing left after clipping
            _ann(99, 1, [1, 1, 2, 2], 4),  # unknown image
            _ann(10, 2, [1, 1, 2, 2], 4),  # unknown category
            _ann(12, 1, [1, 1, 2, 2], 4)]}  # image file missing: goes with it
    val = {"categories": [{"id": 7, "name": "zebra"}, *TRAIN_CATEGORIES],
           "images": [{"id": 10, "file_name": "v.jpg", "width": 32, "height": 24}],  # id reused
           "annotations": [_ann(10, 7, [1, 1, 3, 3]),  # no area: the box's, 3x3
                           _ann(10, 1, [10, 5, 8, 10], 80), _ann(10, 5, [20, 2, 6, 6], 36)]}
    (base / "train.json").write_text(json.dumps(train))
    (base / "val.json").write_text(json.dumps(val))
    return base


def test_to_box_rules():
    assert coco.to_box([2, 3, 10, 5], 40, 30) == [2, 3, 11, 7]
    assert coco.to_box([0.5, 1.25, 4.0, 2.5], 40, 30) == [0, 1, 4, 3]
    assert coco.to_box([2.9, 3.0, 1.0, 1.0], 40, 30) == [2, 3, 3, 3]
    assert coco.to_box([35, 25, 10, 10], 40, 30) == [35, 25, 39, 29]
    assert coco.to_box([1, 1, 0.99, 5], 40, 30) is None
    assert coco.to_box([40, 1, 3, 3], 40, 30) is None
    assert coco.to_box([-9, 1, 3, 3], 40, 30) is None


def test_one_file(coco_files, tmp_path):
    out = tmp_path / "prepared"
    report = coco.prepare_coco([coco_files / "train.json"], [coco_files / "train2014"], "tr",
                               out, show_progress=False)
    doc = json.loads((out / "coco_tr.json").read_text())
    assert doc["classes"] == CLASSES and doc["split"] == "tr"
    assert (out / doc["root"]).resolve() == (coco_files / "train2014").resolve()
    assert doc["root"] == "../coco/train2014"  # relative, like the ADE files
    a, b = doc["images"]
    assert a == {"image": "a.jpg", "width": 40, "height": 30,
                 "boxes": [[2, 3, 11, 7], [0, 1, 4, 3], [35, 25, 39, 29], [0, 0, 2, 2]],
                 "classes": [1, 3, 2, 1], "seg_areas": [40, 10, 100, 30]}
    assert b == {"image": "b.jpg", "width": 20, "height": 20, "boxes": [], "classes": [],
                 "seg_areas": []}
    assert (report.images, report.regions, report.empty, report.classes) == (2, 4, 1, 4)
    assert report.skipped == {"crowd": 1, "degenerate box": 2, "unknown image_id": 1,
                              "unknown category_id": 1}
    assert report.skipped_images == {"missing": 1}
    assert report.unusable == [(str((coco_files / "train2014" / "gone.jpg").resolve()),
                                "missing image")]
    assert report.path == out / "coco_tr.json"
    assert not list(out.glob(".*.tmp"))
    split = load_prepared(out, "tr", 0, dataset="coco")  # readable by train/test
    assert len(RegionDataset(split, scale=30, max_size=1000)) == 1


def test_two_files_combine_and_class_order_depends_only_on_ids(coco_files, tmp_path):
    report = coco.prepare_coco([coco_files / "train.json", coco_files / "val.json"],
                               [coco_files / "train2014", coco_files / "val2014"], "trainval",
                               tmp_path, show_progress=False)
    doc = json.loads((tmp_path / "coco_trainval.json").read_text())
    assert doc["classes"] == CLASSES + ["zebra"]  # the union, by id
    assert (tmp_path / doc["root"]).resolve() == coco_files.resolve()  # common parent
    assert [r["image"] for r in doc["images"]] == ["train2014/a.jpg", "train2014/b.jpg",
                                                   "val2014/v.jpg"]
    v = doc["images"][2]  # its image id 10 is also a train id: kept apart per file
    assert v["boxes"] == [[1, 1, 3, 3], [10, 5, 17, 14], [20, 2, 25, 7]]
    assert v["classes"] == [4, 1, 3] and v["seg_areas"] == [9, 80, 36]
    assert (report.images, report.regions, report.empty) == (3, 7, 1)
    # the val file alone (categories listed in another order) gets the same class list
    coco.prepare_coco([coco_files / "val.json"], [coco_files / "val2014"], "val", tmp_path,
                      show_progress=False)
    assert json.loads((tmp_path / "coco_val.json").read_text())["classes"] == doc["classes"]
    # one --images folder for all files
    coco.prepare_coco([coco_files / "train.json", coco_files / "train.json"],
                      [coco_files / "train2014"], "twice", tmp_path, show_progress=False)
    twice = json.loads((tmp_path / "coco_twice.json").read_text())
    assert [r["image"] for r in twice["images"]] == ["a.jpg", "b.jpg"] * 2


def test_conflicting_categories_name_both_files(coco_files, tmp_path):
    other = coco_files / "other.json"
    other.write_text(json.dumps({"categories": [{"id": 3, "name": "table"}], "images": [],
                                 "annotations": []}))
    with pytest.raises(IvrError) as e:
        coco.prepare_coco([coco_files / "train.json", other], [coco_files / "train2014"],
                          "x", tmp_path, show_progress=False)
    message = str(e.value)
    assert "category id 3" in message and "'dining_table'" in message and "'table'" in message
    assert str(coco_files / "train.json") in message and str(other) in message
    same_name = coco_files / "renumbered.json"
    same_name.write_text(json.dumps({"categories": [{"id": 9, "name": "person"}],
                                     "images": [], "annotations": []}))
    with pytest.raises(IvrError, match="category 'person' has id 9 but also id 1"):
        coco.prepare_coco([coco_files / "train.json", same_name], [coco_files / "train2014"],
                          "x", tmp_path, show_progress=False)


@pytest.mark.parametrize("content, message", [
    ("{oops", "is not valid JSON"),
    ("[1, 2]", "expected a JSON object with 'images', 'annotations' and 'categories'"),
    ('{"images": [], "categories": []}', "no 'annotations' list"),
    ('{"images": [], "annotations": [], "categories": [{"id": "1", "name": "a"}]}',
     r"categories\[0\] has no valid 'id' \(expected an integer"),
    ('{"images": [{"id": 1, "file_name": "/etc/a.jpg", "width": 2, "height": 2}], '
     '"annotations": [], "categories": []}', r"images\[0\] has no valid 'file_name'"),
    ('{"images": [], "categories": [], "annotations": [{"image_id": 1, "category_id": 1, '
     '"bbox": [1, 2, 3]}]}', r"annotations\[0\] has no valid 'bbox' \(expected \[x, y"),
])
def test_bad_files_are_errors_naming_the_file(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(IvrError, match=message) as e:
        coco.prepare_coco([path], [tmp_path], "x", tmp_path, show_progress=False)
    assert str(path) in str(e.value)


def test_argument_errors(coco_files, tmp_path):
    train, images = coco_files / "train.json", coco_files / "train2014"
    with pytest.raises(IvrError, match="COCO annotation file not found: .*nope.json"):
        coco.prepare_coco([tmp_path / "nope.json"], [images], "x", tmp_path, show_progress=False)
    with pytest.raises(IvrError, match="got 1 --coco and 2 --images"):
        coco.prepare_coco([train], [images, images], "x", tmp_path, show_progress=False)
    with pytest.raises(IvrError, match="images folder not found"):
        coco.prepare_coco([train], [tmp_path / "nope"], "x", tmp_path, show_progress=False)
    with pytest.raises(IvrError, match="split name '../x' must be"):
        coco.prepare_coco([train], [images], "../x", tmp_path, show_progress=False)
    with pytest.raises(IvrError, match="none of the 3 images of .*train.json exist under"):
        coco.prepare_coco([train], [coco_files / "val2014"], "x", tmp_path, show_progress=False)
    assert not (tmp_path / "coco_x.json").exists()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_cli_summary_and_errors(coco_files, tmp_path):
    result = run("prepare-data", "--coco", coco_files / "train.json", "--images",
                 coco_files / "train2014", "--coco", coco_files / "val.json", "--images",
                 coco_files / "val2014", "--name", "trainval", "--out", tmp_path, "-q")
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "trainval: 3 images, 7 regions (1 images without regions)" in text
    assert "5 classes (background included)" in text
    assert ("skipped annotations: 1 crowd, 2 degenerate box, 1 unknown image_id, "
            "1 unknown category_id") in text
    assert "skipped 1 image(s): 1 missing" in text and "gone.jpg: missing image" in text
    assert (tmp_path / "coco_trainval.json").is_file()
    for args, message in [
        (["--synthetic", "--coco", coco_files / "train.json"], "give exactly one of"),
        (["--coco", coco_files / "train.json", "--name", "x"], "--coco needs --images DIR"),
        (["--coco", coco_files / "none.json", "--images", tmp_path, "--name", "x"],
         "COCO annotation file not found"),
    ]:
        bad = run("prepare-data", *args)
        lines = bad.output.strip().splitlines()
        assert bad.exit_code == 1 and len(lines) == 1 and lines[0].startswith("error: ")
        assert message in lines[0]


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_prepared_coco_trains_and_tests(coco_files, tmp_path):
    from ivr_core.engine.trainer import train

    data = tmp_path / "prepared"
    coco.prepare_coco([coco_files / "train.json", coco_files / "val.json"],
                      [coco_files / "train2014", coco_files / "val2014"], "trainval", data,
                      show_progress=False)
    coco.prepare_coco([coco_files / "val.json"], [coco_files / "val2014"], "minival", data,
                      show_progress=False)
    cfg = load_config(overrides=[*TINY, "data.dataset=coco", f"data.dir={data}",
                                 "data.train_split=trainval", "train.iters=2",
                                 "model.type=memory"])
    result = train(cfg, tmp_path / "run", show_progress=False)
    assert result.iterations == 2
    tested = run("test", "--checkpoint", tmp_path / "run" / "checkpoints" / "iter_00000002.pt",
                 "--split", "minival", "--out", tmp_path / "r.json", "-q")
    assert tested.exit_code == 0, tested.output
    results = json.loads((tmp_path / "r.json").read_text())
    assert results["split"] == "minival" and results["num_images"] == 1
    assert 0 <= results["inst_ac"] <= 1
