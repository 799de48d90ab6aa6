"""`ivr predict` on a folder mixing good, corrupt and box-less images, with every box format."""

import json

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from ivr_cli.main import app
from ivr_core.engine.trainer import train

runner = CliRunner()
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def checkpoints(synthetic_data, tmp_path_factory):
    from conftest import TINY  # tests/ is on sys.path (pyproject: pythonpath)
    from ivr_core.config import load_config

    out = {}
    for model in ("baseline", "memory"):
        cfg = load_config(overrides=[*TINY, f"data.dir={synthetic_data}", "data.min_count=1",
                                     f"model.type={model}", "train.iters=2"])
        out[model] = train(cfg, tmp_path_factory.mktemp(model), show_progress=False).checkpoint
    return out


@pytest.fixture
def photos(synthetic_data, tmp_path):
    """Two real images (one in a subfolder, one as PNG), a corrupt JPEG, an image without
    boxes, and the boxes of the real ones (pixel x1 y1 x2 y2) from the prepared split."""
    split = json.loads((synthetic_data / "ade_mtest_1.json").read_text())
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    boxes = {}
    for rec, rel in zip(split["images"][:2], ["a.jpg", "sub/b.png"]):
        image = cv2.imread(str(synthetic_data / rec["image"]))
        cv2.imwrite(str(folder / rel), image)
        boxes[rel] = rec["boxes"]
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 definitely not a jpeg")
    cv2.imwrite(str(folder / "empty.bmp"), np.zeros((40, 50, 3), np.uint8))
    return folder, boxes


def _check_jsonl(out, expected_boxes, classes=None):
    lines = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert sorted(r["image"] for r in lines) == sorted(expected_boxes)
    for record in lines:
        assert set(record) == {"image", "width", "height", "regions"}
        assert [r["box"] for r in record["regions"]] == [
            [float(v) for v in b] for b in expected_boxes[record["image"]]]
        for region in record["regions"]:
            assert {"box", "top5", "class", "prob", "iterations"} <= set(region)
            assert len(region["top5"]) == 5
            probs = [t["prob"] for t in region["top5"]]
            assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0001
            assert region["class"] == region["top5"][0]["class"]
    return lines


@pytest.mark.parametrize("model", ["baseline", "memory"])
def test_mapping_json_with_bad_boxes_and_images(checkpoints, photos, tmp_path, model):
    folder, boxes = photos
    mapping = dict(boxes)
    mapping["a.jpg"] = boxes["a.jpg"] + [[5, 5, 2, 9], [0, 0, 10_000, 10]]  # degenerate, outside
    (tmp_path / "boxes.json").write_text(json.dumps(mapping))
    out = tmp_path / "out"
    result = run("predict", folder, "--checkpoint", checkpoints[model], "--boxes",
                 tmp_path / "boxes.json", "--out", out, "--draw", "-q")
    assert result.exit_code == 0, result.output
    lines = _check_jsonl(out, boxes)
    iterations = 3 if model == "memory" else 1
    assert all(len(r["iterations"]) == iterations for line in lines for r in line["regions"])
    text = " ".join(result.output.split())
    assert "broken.jpg: corrupt or unreadable image" in text
    assert "empty.bmp: no boxes for it in" in text
    assert "is degenerate" in text and "is outside the 128x128 image" in text
    for rel in boxes:  # drawings keep the image size
        drawn = cv2.imread(str(out / "drawn" / rel))
        assert drawn.shape == cv2.imread(str(folder / rel)).shape


def test_coco_json_matches_by_file_name(checkpoints, photos, tmp_path):
    folder, boxes = photos
    images, annotations = [], []
    for i, (rel, bxs) in enumerate(boxes.items()):
        images.append({"id": i, "file_name": rel.split("/")[-1], "width": 320, "height": 320})
        annotations += [{"id": len(annotations), "image_id": i, "category_id": 1,
                         "bbox": [x1, y1, x2 - x1 + 1, y2 - y1 + 1]} for x1, y1, x2, y2 in bxs]
    (tmp_path / "coco.json").write_text(json.dumps({"images": images, "annotations": annotations}))
    out = tmp_path / "out"
    result = run("predict", folder, "--checkpoint", checkpoints["baseline"], "--boxes",
                 tmp_path / "coco.json", "--out", out, "-q")
    assert result.exit_code == 0, result.output
    _check_jsonl(out, boxes)


def test_folder_of_box_files_mirroring_the_images(checkpoints, photos, tmp_path):
    folder, boxes = photos
    box_dir = tmp_path / "boxes"
    (box_dir / "sub").mkdir(parents=True)
    (box_dir / "a.json").write_text(json.dumps({"boxes": boxes["a.jpg"]}))
    (box_dir / "sub" / "b.txt").write_text("\n".join(" ".join(map(str, b)) for b in boxes["sub/b.png"]))
    (box_dir / "broken.txt").write_text("1 2 three 4\n")
    out = tmp_path / "out"
    result = run("predict", folder, "--checkpoint", checkpoints["memory"], "--boxes", box_dir,
                 "--out", out, "--iterations", "-q")
    assert result.exit_code == 0, result.output
    _check_jsonl(out, boxes)
    assert "broken.jpg: corrupt or unreadable image" in " ".join(result.output.split())
    panel = cv2.imread(str(out / "drawn" / "a.png"))  # iteration panels are PNG figures
    assert panel is not None and panel.shape[1] > 2 * panel.shape[0]  # side by side


def test_ade_annotations_beside_the_images_report_accuracy(checkpoints, synthetic_data, tmp_path):
    folder = synthetic_data / "images" / "validation"
    out = tmp_path / "out"
    result = run("predict", folder, "--checkpoint", checkpoints["baseline"], "--boxes", "ade",
                 "--out", out, "-q")
    assert result.exit_code == 0, result.output
    lines = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(lines) == 4  # the 2 mval + 2 mtest images; their masks are not labelled
    assert all("true_class" in r for line in lines for r in line["regions"])
    assert "accuracy against the annotations" in result.output


def test_single_image_and_user_errors(checkpoints, photos, tmp_path):
    folder, boxes = photos
    (tmp_path / "b.json").write_text(json.dumps(boxes))
    ok = run("predict", folder / "a.jpg", "--checkpoint", checkpoints["baseline"], "--boxes",
             tmp_path / "b.json", "--out", tmp_path / "one", "-q")
    assert ok.exit_code == 0, ok.output
    assert len((tmp_path / "one" / "predictions.jsonl").read_text().splitlines()) == 1
    empty = tmp_path / "no_images"
    empty.mkdir()
    for args, message in [
        ((tmp_path / "nothing", "--boxes", tmp_path / "b.json"), "images not found"),
        ((empty, "--boxes", tmp_path / "b.json"), "no images (.bmp, .jpeg"),
        ((folder, "--boxes", tmp_path / "nope.json"), "no such file or folder"),
    ]:
        result = run("predict", *args, "--checkpoint", checkpoints["baseline"],
                     "--out", tmp_path / "o", "-q")
        assert result.exit_code == 1 and message in " ".join(result.output.split())
    bad = run("predict", folder, "--checkpoint", tmp_path / "missing.pt", "--boxes",
              tmp_path / "b.json")
    assert bad.exit_code == 1 and "checkpoint not found" in bad.output
