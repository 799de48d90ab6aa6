"""The global and full models: shapes, gradients, cross-feeding, config-driven sizes."""

import pytest
import torch
from typer.testing import CliRunner

from conftest import TINY
from ivr_cli.main import app
from ivr_core.config import load_config
from ivr_core.data.dataset import PreparedSplit
from ivr_core.evaluation.tester import kept_regions
from ivr_core.graph.knowledge import build_graph
from ivr_core.models import FullModel, GlobalModel, build_model

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
CLASSES = ["__background__", "house", "bus", "window", "wheel", "disc"]


def _graph(tmp_path):
    rec = {"image": "x", "width": 1, "height": 1, "boxes": [[0, 0, 0, 0]] * 3,
           "classes": [1, 3, 3], "seg_areas": [1] * 3, "parents": [-1, 0, 0]}
    return build_graph(PreparedSplit(tmp_path / "s.json", tmp_path, CLASSES, [rec] * 3))


def _model(kind, tmp_path, *extra):
    cfg = load_config(overrides=[f"model.type={kind}", "model.backbone=resnet18",
                                 "model.weights=none", "model.norm=bn", "memory.channels=8",
                                 "memory.fc_dim=16", "memory.norm=group", "memory.norm_groups=4",
                                 "graph.hidden=12", "graph.class_dim=6", *extra])
    return build_model(cfg, len(CLASSES), graph=_graph(tmp_path))


def _inputs(k=5):
    torch.manual_seed(0)
    xy = torch.rand(k, 2) * 90
    return torch.randn(1, 3, 100, 130), torch.cat([xy, xy + 8 + torch.rand(k, 2) * 20], 1), \
        torch.randint(1, len(CLASSES), (k,))


@pytest.mark.parametrize("kind, candidates", [("global", 3), ("full", 5)])
def test_shapes_backward_and_attention(kind, candidates, tmp_path):
    model = _model(kind, tmp_path)
    assert isinstance(model, GlobalModel if kind == "global" else FullModel)
    image, boxes, classes = _inputs()
    out = model(image, boxes)
    assert out["final"].shape == (5, len(CLASSES))
    assert out["attention"].shape == (5, candidates)
    assert set(out["modules"]) == ({"global"} if kind == "global" else {"local", "global"})
    assert all(len(chain) == 3 for chain in out["modules"].values())
    for chain in out["modules"].values():  # every chain starts from the baseline head
        assert torch.equal(chain[0], out["modules"][next(iter(out["modules"]))][0])
    parts = model.losses(out, classes)
    assert set(parts) == {"base", "iter", "final"}  # the authors' losses by default
    sum(parts.values()).backward()
    g = model.global_
    assert g.class_nodes.grad is not None and g.kg.weight.grad.abs().sum() > 0
    assert g.spatial.weight.grad.abs().sum() > 0
    if kind == "full":
        assert model.update.n_a.weight.grad is not None and model.memory_init.grad is not None


def test_the_bare_control_leaves_no_path_between_regions(tmp_path):
    """graph.knowledge = empty and graph.regions = self (ivr demo's full-bare): a region's
    global answer no longer depends on where the other regions are; with the region graph
    it does."""
    image, boxes, _ = _inputs()
    moved = boxes.clone()
    moved[1] += 30
    for regions, coupled in (("boxes", True), ("self", False)):
        model = _model("global", tmp_path, "graph.knowledge=empty",
                       f"graph.regions={regions}").eval()
        with torch.no_grad():
            a, b = (model(image, x)["modules"]["global"][-1][0] for x in (boxes, moved))
        assert (not torch.allclose(a, b)) == coupled


def test_the_knowledge_graph_is_part_of_the_weights(tmp_path):
    model = _model("full", tmp_path)
    state = model.state_dict()
    src, dst = state["global_.kg_index"]
    pairs = {(CLASSES[s], CLASSES[d]) for s, d in zip(src.tolist(), dst.tolist())}
    assert ("window", "house") in pairs and ("house", "window") in pairs


def test_sizes_come_from_the_config(tmp_path):
    model = _model("full", tmp_path, "graph.hidden=20", "graph.class_dim=3",
                   "memory.iterations=4")
    assert model.global_.class_nodes.shape == (len(CLASSES), 3)
    assert model.global_.cls.in_features == 20
    image, boxes, _ = _inputs()
    assert model(image, boxes)["attention"].shape == (5, 7)


def test_dropped_regions_do_not_speak_but_are_scored(tmp_path):
    model = _model("full", tmp_path).eval()
    image, boxes, _ = _inputs()
    keep = torch.tensor([True, True, True, True, False])
    moved = boxes.clone()
    moved[4] += 5  # a dropped region moves: what the others conclude must not change
    with torch.no_grad():
        a = model(image, boxes, keep)
        b = model(image, moved, keep)
    # the baseline head sees the image through the crops of every box: compare reasoning only
    assert a["final"].shape == (5, len(CLASSES))
    assert torch.allclose(a["modules"]["global"][1][:4], b["modules"]["global"][1][:4], atol=1e-5)
    assert kept_regions(10, 3, 0.5).sum() == 5
    assert torch.equal(kept_regions(10, 3, 0.5), kept_regions(10, 3, 0.5))
    assert kept_regions(10, 3, 0.0) is None


@pytest.mark.slow
def test_full_model_trains_and_tests_per_module(synthetic_data, tmp_path):
    run = CliRunner()
    mined = run.invoke(app, ["prepare-graph", "--data", str(synthetic_data), "--min-count", "1",
                             "--min-part-count", "1"])
    assert mined.exit_code == 0, mined.output
    sets = [x for s in [*TINY, f"data.dir={synthetic_data}", "data.min_count=1"]
            for x in ("--set", s)]
    trained = run.invoke(app, ["train", "--model", "full", "--run-dir", str(tmp_path / "full"),
                               "--iters", "2", "-q", *sets])
    assert trained.exit_code == 0, trained.output
    tested = run.invoke(app, ["test", "--run-dir", str(tmp_path / "full"), "-q"])
    assert tested.exit_code == 0, tested.output
    assert "global iter 2" in tested.output and "local iter 2" in tested.output
    dropped = run.invoke(app, ["test", "--run-dir", str(tmp_path / "full"), "--drop-regions",
                               "0.5", "-q"])
    assert dropped.exit_code == 0, dropped.output
    assert "50% of the regions left out of the reasoning, change against none" in " ".join(
        dropped.output.split())
    assert (tmp_path / "full" / "results_drop0.5.json").is_file()
    no_graph = run.invoke(app, ["train", "--model", "global", "--run-dir", str(tmp_path / "g"),
                                "--iters", "1", "-q", *sets, "--set",
                                f"graph.file={tmp_path / 'none.json'}"])
    assert no_graph.exit_code == 1 and "knowledge graph not found" in no_graph.output


def test_an_absent_class_gets_no_belief(tmp_path):
    # one region (a bus) believes in the house with p = 1e-3: the house node's input from the
    # regions must be ~0, not the region's features as a belief-weighted mean would give
    model = _model("global", tmp_path)
    memory = torch.rand(1, model.global_.hidden) + 0.5
    probs = torch.zeros(1, len(CLASSES))
    probs[0, CLASSES.index("bus")], probs[0, CLASSES.index("house")] = 1 - 1e-3, 1e-3
    beliefs = model.global_.class_beliefs(memory, probs)
    present, absent = beliefs[CLASSES.index("bus")], beliefs[CLASSES.index("house")]
    assert absent.norm() <= 1e-2 * present.norm()
    assert beliefs[CLASSES.index("disc")].abs().sum() == 0


def test_the_global_memory_carries_across_iterations(tmp_path):
    model = _model("global", tmp_path, "memory.iterations=3").eval()
    image, boxes, _ = _inputs()
    with torch.no_grad():
        base = model.base.regions(image, boxes)
        from ivr_core.graph.regions import region_graph
        adj = region_graph(boxes, model.delta)
        m0 = model.global_.init_memory(base["fc7"])
        probs = torch.softmax(base["logits"], 1)
        _, _, m1 = model.global_(m0, probs, adj)
        a, _, _ = model.global_(m1, probs, adj)
        b, _, _ = model.global_(m0, probs, adj)
    assert not torch.allclose(m1, m0)
    assert not torch.allclose(a, b)  # the second step reasons on the first one's memory


@pytest.mark.parametrize("kind", ["global", "full"])
def test_one_iteration_is_refused_for_the_graph_models(kind):
    from ivr_core.errors import IvrError
    with pytest.raises(IvrError, match="memory.iterations' must be >= 2"):
        load_config(overrides=[f"model.type={kind}", "memory.iterations=1"])
