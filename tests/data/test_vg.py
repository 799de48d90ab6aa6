"""Visual Genome 1.4 files -> prepared splits, on a hand-made copy; counts checked by hand."""

import json

import cv2
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from typer.testing import CliRunner

from ivr_cli.main import app
from ivr_core.config import preset_path
from ivr_core.data import vg
from ivr_core.data.dataset import RegionDataset, load_prepared
from ivr_core.errors import IvrError

runner = CliRunner()
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
URL = "https://cs.stanford.edu/people/rak248/"


def _obj(object_id, x, y, w, h, *names):
    return {"object_id": object_id, "x": x, "y": y, "w": w, "h": h, "names": list(names),
            "synsets": [], "merged_object_ids": []}


@pytest.fixture
def vg_root(tmp_path):
    """Eight images (image 7 without a file, image 8 under the other folder than its url
    says), objects.json with an entry for an unknown image 99, and object_alias.txt."""
    root = tmp_path / "VG"
    sizes = {i: (60 + 4 * i, 40 + 2 * i) for i in range(1, 9)}  # width, height
    folder_of = {i: "VG_100K" if i % 2 else "VG_100K_2" for i in sizes}
    folder_of[8] = "VG_100K"  # the url says VG_100K_2
    for i, (w, h) in sizes.items():
        if i != 7:
            (root / folder_of[i]).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / folder_of[i] / f"{i}.jpg"), np.full((h, w, 3), 20 * i, np.uint8))
    (root / "image_data.json").write_text(json.dumps([
        {"image_id": i, "width": w, "height": h, "coco_id": None, "flickr_id": None,
         "url": f"{URL}{'VG_100K_2' if i == 8 else folder_of[i]}/{i}.jpg"}
        for i, (w, h) in sizes.items()]))
    (root / "object_alias.txt").write_text("tree,trees,tree trunk\nman,men,guy\n")
    objects = [
        # image 1 (64 x 42): the case checked box by box
        {"image_id": 1, "objects": [
            _obj(10, 2, 3, 10, 5, "Man ", "person"),  # [2, 3, 11, 7] man
            _obj(11, 50, 30, 20, 20, "trees"),  # partly outside: [50, 30, 63, 41] tree
            _obj(12, 1, 1, 5, 5, "lamp", "Tree  Trunk"),  # lamp is rare: tree
            _obj(13, 70, 1, 5, 5, "man"),  # wholly outside
            _obj(14, 5, 5, 0, 9, "man"),  # degenerate
            _obj(15, "5", 5, 3, 3, "man"),  # malformed
            _obj(16, 5, 5, 3, 3),  # no name
            _obj(17, 1, 1, 3, 3, "lamp"),  # no name among the classes
            _obj(10, 2, 3, 10, 5, "man")]},  # repeated object id
        {"image_id": 2, "objects": [_obj(20, 0, 0, 9, 9, "men"), _obj(21, 3, 3, 6, 6, "window"),
                                    _obj(22, 1, 2, 3, 4, "guy", "man")]},  # counted once
        {"image_id": 3, "objects": [_obj(30, 4, 4, 8, 8, "window"), _obj(31, 0, 0, 5, 5, "zebra"),
                                    _obj(10, 1, 1, 4, 4, "zebra")]},  # id of image 1 again
        {"image_id": 4, "objects": [_obj(40, 4, 4, 8, 8, "Window"), _obj(41, 2, 2, 4, 4, "zebra"),
                                    _obj(42, 1, 1, 9, 9, "tree")]},
        {"image_id": 5, "objects": [_obj(50, 3, 3, 20, 10, "man")]},
        {"image_id": 6, "objects": []},
        {"image_id": 7, "objects": [_obj(70, 1, 1, 5, 5, "man")]},  # no image file
        {"image_id": 8, "objects": [_obj(80, 1, 2, 30, 20, "tree"), _obj(81, 0, 0, 4, 4, "zebra")]},
        {"image_id": 99, "objects": [_obj(990, 1, 1, 5, 5, "man")]},  # not in image_data
    ]
    # pretty-printed like a hand-edited file: white space everywhere the grammar allows
    (root / "objects.json").write_text(json.dumps(objects, indent=2))
    return root


CLASSES = ["__background__", "man", "tree", "window"]


def test_counts_classes_and_boxes(vg_root, tmp_path):
    out = tmp_path / "prepared"
    report = vg.prepare_vg(vg_root, out, top=3, seed=0, show_progress=False)
    # names after normalisation, objects counted once: man (10, 20, 22, 50), tree (11, 12,
    # 42, 80), window (21, 30, 40), zebra (31, 41, 81), lamp (12, 17), person (10); top 3:
    # man 4, tree 4, window 3 (zebra ties window and loses by name)
    split = {s.split: s for s in report.splits}
    assert report.classes == 4 and report.names == 6 and report.objects == 23
    assert +report.skipped == {vg.UNKNOWN_IMAGE: 1, vg.MISSING_FILE: 1, vg.DUPLICATE: 2,
                              vg.MALFORMED: 2, vg.DEGENERATE: 1, vg.OUTSIDE: 1, vg.RARE: 4}
    assert report.clipped == 1 and report.missing == ["7.jpg"]
    assert report.split_written and report.split_file == out / "vg_split.json"
    assert sorted(split) == ["mtest", "mval", "train"]
    assert sum(s.images for s in split.values()) == 7  # image 7 has no file
    assert sum(s.regions for s in split.values()) == 11
    records = {}
    for name in split:
        loaded = load_prepared(out, name, 0, dataset="vg")
        assert loaded.classes == CLASSES and loaded.root == vg_root.resolve()
        records.update({r["image"]: r for r in loaded.images})
    assert records["VG_100K/1.jpg"] == {
        "image": "VG_100K/1.jpg", "width": 64, "height": 42,
        "boxes": [[2, 3, 11, 7], [50, 30, 63, 41], [1, 1, 5, 5]], "classes": [1, 2, 2],
        "seg_areas": [50, 168, 25]}
    assert records["VG_100K/8.jpg"]["classes"] == [2]  # found under the other folder
    assert records["VG_100K_2/6.jpg"]["boxes"] == []
    assert records["VG_100K/3.jpg"]["classes"] == [3]  # its repeated id 10 is dropped


def test_the_split_file_is_seeded_written_and_read_back(vg_root, tmp_path):
    first = vg.prepare_vg(vg_root, tmp_path / "a", top=3, seed=5, show_progress=False)
    again = vg.prepare_vg(vg_root, tmp_path / "b", top=3, seed=5, show_progress=False)
    written = json.loads(first.split_file.read_text())
    assert written == json.loads(again.split_file.read_text()) and written["seed"] == 5
    assert sorted(i for k in ("train", "mval", "mtest") for i in written[k]) == \
        [1, 2, 3, 4, 5, 6, 8]
    assert len(written["mval"]) == len(written["mtest"]) == 1
    other = vg.prepare_vg(vg_root, tmp_path / "c", top=3, seed=6, show_progress=False)
    assert json.loads(other.split_file.read_text())["train"] != written["train"]
    custom = tmp_path / "split.json"
    custom.write_text(json.dumps({"train": [1, 2, 3, 4], "val": [5, 8], "test": [6, 12345]}))
    read = vg.prepare_vg(vg_root, tmp_path / "d", top=3, split_file=custom, show_progress=False)
    assert not read.split_written and read.unknown_split_ids == 1
    assert {s.split: s.images for s in read.splits} == {"train": 4, "val": 2, "test": 1}
    assert not (tmp_path / "d" / "vg_split.json").exists()


@pytest.mark.parametrize("text, message", [
    ('{"train": [1], "mval": [1]}', "in both 'train' and 'mval'"),
    ('{"train": ["1"]}', "not a split file"),
    ("[1, 2]", "not a split file"),
    ("{", "cannot read split file"),
])
def test_bad_split_files(vg_root, tmp_path, text, message):
    (tmp_path / "split.json").write_text(text)
    with pytest.raises(IvrError, match=message):
        vg.prepare_vg(vg_root, tmp_path / "o", split_file=tmp_path / "split.json",
                      show_progress=False)


def test_bad_roots_and_files(vg_root, tmp_path):
    with pytest.raises(IvrError, match="objects.json not found"):
        vg.prepare_vg(tmp_path, tmp_path / "o", show_progress=False)
    text = (vg_root / "objects.json").read_text()
    (vg_root / "objects.json").write_text(text[: len(text) // 2])  # a download cut short
    with pytest.raises(IvrError, match=r"objects.json is not valid JSON: .* at character \d+"):
        vg.prepare_vg(vg_root, tmp_path / "o", show_progress=False)
    (vg_root / "objects.json").write_text('[{"image_id": 1, "objects": {}}]')
    with pytest.raises(IvrError, match="entry 0 is not an image's objects"):
        vg.prepare_vg(vg_root, tmp_path / "o", show_progress=False)
    (vg_root / "objects.json").write_text("[]")
    with pytest.raises(IvrError, match="no object of .* could be kept"):
        vg.prepare_vg(vg_root, tmp_path / "o", show_progress=False)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20)


@settings(max_examples=150, deadline=None)
@given(values=st.lists(json_values, max_size=6), chunk=st.integers(1, 9),
       indent=st.sampled_from([None, 0, 2]))
def test_streamed_array_equals_json_loads(tmp_path_factory, values, chunk, indent):
    path = tmp_path_factory.mktemp("stream") / "a.json"
    path.write_text(json.dumps(values, indent=indent, ensure_ascii=False), encoding="utf-8")
    assert list(vg.iter_json_array(path, chunk=chunk)) == values


@pytest.mark.parametrize("text, where", [
    ('[1, 2, {"a": 1}', 15), ("[1 2]", 3), ('[1, 2] 3', 7), ('{"a": 1}', 0), ("[1, @]", 4),
    ('[1, {"a": 1}, {"b": ]}, ' + '"padding", ' * 2000 + "3]", 20),
])
def test_streaming_syntax_errors_name_the_position(tmp_path, text, where):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(IvrError, match=f"at character {where};"):
        list(vg.iter_json_array(path, chunk=4))


def test_cli_prepares_and_the_demo_preset_trains_and_tests_on_it(vg_root, tmp_path):
    out = tmp_path / "vg"
    result = runner.invoke(app, ["prepare-data", "--vg", str(vg_root), "--vg-top", "3",
                                 "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "4 classes (background included) of 6 distinct names" in text
    assert "1 repeated object id" not in text and "2 repeated object id" in text
    assert "missing: 7.jpg" in text and (out / "vg_train_graph.json").is_file()
    train = load_prepared(out, "train", 0, dataset="vg")
    item = RegionDataset(train, 64, 100)[0]
    assert item["boxes"].shape[0] == len(item["classes"]) > 0
    run_dir = tmp_path / "run"
    result = runner.invoke(app, [
        "train", "--config", str(preset_path("demo")), "--model", "memory", "--data", str(out),
        "--set", "data.dataset=vg", "--set", "data.workers=0", "--iters", "2",
        "--run-dir", str(run_dir), "--device", "cpu", "-q"])
    assert result.exit_code == 0, result.output
    assert (run_dir / "checkpoints" / "iter_00000002.pt").is_file()
    result = runner.invoke(app, ["test", "--run-dir", str(run_dir), "--split", "mval", "-q"])
    assert result.exit_code == 0, result.output
    assert json.loads((run_dir / "results.json").read_text())["split"] == "mval"
