"""Knowledge graph mining and the region graph's geometry, on hand-made cases."""

import json

import pytest
import torch
from typer.testing import CliRunner

from ivr_cli.main import app
from ivr_core.data import ade
from ivr_core.data.dataset import PreparedSplit
from ivr_core.errors import IvrError
from ivr_core.graph.knowledge import build_graph, graph_path, load_graph, write_graph
from ivr_core.graph.regions import REGION_EDGES, region_graph

CLASSES = ["__background__", "house", "bus", "window", "wheel", "left_arm", "right_arm",
           "shelf", "shelves"]


def test_parents_are_the_covering_instance_of_the_level_above(ade_root):
    index = {n: i for i, n in enumerate(["__background__", "wall", "traffic_light", "knob",
                                         "left_arm", "right_arm", "door"])}
    rec = ade.image_regions(ade_root, "images/training/a/abbey/ADE_train_00000001.jpg", index)
    # wall, traffic_light, left_arm (objects), knob (part of the traffic light), door (a level-2
    # part lying where no level-1 part is)
    assert rec["parents"] == [-1, -1, -1, 1, -1]


def _split(tmp_path, images):
    return PreparedSplit(tmp_path / "ade_train_5.json", tmp_path, CLASSES, images)


def _image(classes, parents):
    return {"image": "x.jpg", "width": 10, "height": 10, "boxes": [[0, 0, 1, 1]] * len(classes),
            "classes": classes, "seg_areas": [1] * len(classes), "parents": parents}


def test_part_of_pairs_are_counted_thresholded_and_normalised(tmp_path):
    # window: 6 times part of a house, 2 times part of a bus; wheel: once part of a bus
    images = [_image([1, 3, 3, 3], [-1, 0, 0, 0]), _image([1, 3, 3, 3], [-1, 0, 0, 0]),
              _image([2, 3, 3, 4], [-1, 0, 0, 0])]
    graph = build_graph(_split(tmp_path, images), min_part_count=2)
    # normalised per receiving class: a house's and a bus's parts are all windows; a window
    # belongs to a house 6 / 8 of the time, to a bus 2 / 8 (wheel: 1 < min_part_count)
    assert graph.edges["part_of"] == {(3, 1): 1.0, (3, 2): 1.0}
    assert graph.edges["has_part"] == {(1, 3): 0.75, (2, 3): 0.25}
    assert graph.edges["mirror"] == {(5, 6): 1.0, (6, 5): 1.0}
    assert graph.edges["plural_of"] == {(8, 7): 1.0} and graph.edges["singular_of"] == {(7, 8): 1.0}


def test_graph_file_round_trip_and_mismatch(tmp_path):
    split = _split(tmp_path, [_image([1, 3], [-1, 0])] * 5)
    path = write_graph(split, build_graph(split))
    assert path == graph_path(split) and path.name == "ade_train_5_graph.json"
    doc = json.loads(path.read_text())
    assert ["window", "house", 1.0] in doc["edges"]["part_of"]
    assert load_graph(split).edges == build_graph(split).edges
    other = PreparedSplit(split.path, tmp_path, CLASSES[:-1], [])
    with pytest.raises(IvrError, match="was mined for other classes"):
        load_graph(other)
    with pytest.raises(IvrError, match="knowledge graph not found.*ivr prepare-graph"):
        load_graph(split, tmp_path / "missing.json")


def test_word_vectors_give_similar_edges(tmp_path):
    vectors = tmp_path / "vec.txt"
    vectors.write_text("house 1 0 0\nbus 0 1 0\nwindow 0.9 0.1 0\nwheel 0 0.9 0.1\n")
    graph = build_graph(_split(tmp_path, []), word_vectors=vectors, similar_k=1)
    # each class receives from its nearest: house from window, bus from wheel (and back)
    assert graph.edges["similar"][(3, 1)] == 1.0 and graph.edges["similar"][(4, 2)] == 1.0
    assert graph.edges["similar"][(1, 3)] == 1.0


def test_region_graph_geometry():
    boxes = torch.tensor([[0, 0, 10, 10],  # 0: left
                          [50, 0, 60, 10],  # 1: right of 0
                          [5, 5, 15, 15],  # 2: overlaps 0
                          [0, 80, 10, 90]], dtype=torch.float32)  # 3: below 0
    adj = region_graph(boxes, delta=50.0)
    t = {name: i for i, name in enumerate(REGION_EDGES)}
    assert adj[t["left_of"], 1, 0] > 0 and adj[t["right_of"], 0, 1] > 0
    assert adj[t["overlaps"], 0, 2] > 0 and adj[t["overlaps"], 2, 0] > 0
    assert adj[t["below"], 0, 3] > 0 and adj[t["above"], 3, 0] > 0
    assert adj[t["left_of"], 0].sum() == 0  # nothing is left of region 0
    # every region overlaps itself (IoU 1); a region's incoming weights sum to 1
    assert (torch.diagonal(adj[t["overlaps"]]) > 0).all()
    assert torch.allclose(adj.sum((0, 2)), torch.ones(4))
    kept = region_graph(boxes, 50.0, keep=torch.tensor([True, True, False, True]))
    assert kept[:, [0, 1, 3], 2].abs().sum() == 0  # a dropped region sends to no other
    assert kept[t["overlaps"], 2, 2] > 0  # but keeps its own edge


def test_a_far_region_sends_less_than_a_near_one():
    near = region_graph(torch.tensor([[0, 0, 10, 10], [30, 0, 40, 10]], dtype=torch.float32), 50.0)
    far = region_graph(torch.tensor([[0, 0, 10, 10], [300, 0, 310, 10]], dtype=torch.float32), 50.0)
    t = REGION_EDGES.index("right_of")
    # alone with one other region, far or near: the far one still weighs little
    assert far[t, 0, 1] < 0.01 < 0.3 < near[t, 0, 1]
    assert near[t, 0, 1] / far[t, 0, 1] > 50
    three = region_graph(torch.tensor([[0, 0, 1, 1], [10, 0, 11, 1], [90, 0, 91, 1]],
                                      dtype=torch.float32), 50.0)
    assert three[t, 0, 1] > three[t, 0, 2]


def test_overlaps_are_weighted_by_iou_and_touching_is_no_overlap():
    boxes = torch.tensor([[0, 0, 10, 10], [5, 0, 15, 10], [0, 0, 10, 9], [10, 0, 20, 10]],
                         dtype=torch.float32)
    adj = region_graph(boxes, 50.0)
    t = {name: i for i, name in enumerate(REGION_EDGES)}
    raw = adj[:, 0] * adj[:, 0].sum() / adj[t["overlaps"], 0, 0]  # undo the normalisation
    assert raw[t["overlaps"], 1].item() == pytest.approx(50 / 150)  # IoU of the half shift
    assert raw[t["overlaps"], 2].item() == pytest.approx(0.9)
    assert adj[t["overlaps"], 0, 3] == 0 and adj[t["right_of"], 0, 3] > 0  # they only touch


def test_the_region_graph_control_keeps_only_the_self_edges():
    boxes = torch.tensor([[0, 0, 10, 10], [5, 0, 15, 10], [40, 0, 50, 10]], dtype=torch.float32)
    assert region_graph(boxes, 50.0)[:, 0, 1:].sum() > 0  # the layout's edges
    bare = region_graph(boxes, 50.0, layout=False)
    assert bare.shape == (len(REGION_EDGES), 3, 3)
    assert torch.equal(bare[REGION_EDGES.index("overlaps")], torch.eye(3))
    assert bare.sum() == 3  # nothing between regions


def test_knowledge_graph_controls(tmp_path):
    images = [{"image": "x", "width": 1, "height": 1, "boxes": [[0, 0, 0, 0]] * 3,
               "classes": [1, 3, 4], "seg_areas": [1] * 3, "parents": [-1, 0, 0]}] * 3
    graph = build_graph(_split(tmp_path, images), min_part_count=1)
    assert graph.ablated("mined") is graph
    assert not graph.ablated("empty").tensors()[0].numel()
    shuffled = graph.ablated("shuffled", seed=0)
    for kind in graph.edges:  # same number of edges and weights per type, other classes
        assert sorted(shuffled.edges[kind].values()) == sorted(graph.edges[kind].values())
    assert shuffled.edges != graph.edges
    assert all(0 not in pair for e in shuffled.edges.values() for pair in e)  # background kept
    assert shuffled.edges == graph.ablated("shuffled", seed=0).edges


def test_word_vectors_initialise_the_class_nodes(tmp_path):
    vectors = tmp_path / "vec.txt"
    vectors.write_text("house 1 0 0\nbus 0 1 0\nwindow 0.9 0.1 0\n")
    split = _split(tmp_path, [])
    graph = build_graph(split, word_vectors=vectors, similar_k=1)
    assert any("cover 3 of" in note for note in graph.notes)
    m = graph.vector_matrix()
    assert m.shape == (len(CLASSES), 3) and m[1].tolist() == [1.0, 0.0, 0.0]
    assert not m[4].any()  # wheel has no vector
    write_graph(split, graph)
    assert load_graph(split).vectors == graph.vectors


def test_prepare_graph_command(synthetic_data, tmp_path):
    result = CliRunner().invoke(app, ["prepare-graph", "--data", str(synthetic_data),
                                      "--min-count", "1", "--min-part-count", "1"])
    assert result.exit_code == 0, result.output
    graph = json.loads((synthetic_data / "ade_train_1_graph.json").read_text())
    part_of = {(a, b) for a, b, _ in graph["edges"]["part_of"]}
    assert ("house_window", "house") in part_of and ("wheel", "bus") in part_of
    bad = CliRunner().invoke(app, ["prepare-graph", "--data", str(tmp_path)])
    assert bad.exit_code == 1 and "prepared split not found" in bad.output
