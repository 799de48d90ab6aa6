"""Tiny trained runs of the baseline, memory and full models, and a photo with boxes."""

import json

import cv2
import pytest

from conftest import TINY  # tests/ is on sys.path (pyproject: pythonpath)
from ivr_core.config import load_config
from ivr_core.data.dataset import load_prepared
from ivr_core.engine.trainer import train
from ivr_core.graph.knowledge import build_graph, graph_path


@pytest.fixture(scope="session")
def runs(synthetic_data, tmp_path_factory):
    """model type -> run folder trained for 2 iterations on the synthetic data."""
    graph_dir = tmp_path_factory.mktemp("graph")
    split = load_prepared(synthetic_data, "train", 1)
    graph_file = graph_dir / graph_path(split).name
    graph_file.write_text(json.dumps(build_graph(split, min_part_count=1).to_json()))
    out = {}
    for model in ("baseline", "memory", "full"):
        cfg = load_config(overrides=[*TINY, f"data.dir={synthetic_data}", "data.min_count=1",
                                     f"model.type={model}", "train.iters=2",
                                     f"graph.file={graph_file}"])
        run_dir = tmp_path_factory.mktemp(model)
        train(cfg, run_dir, show_progress=False)
        out[model] = run_dir
    return out


@pytest.fixture(scope="session")
def photo(synthetic_data, tmp_path_factory):
    """(path of a test image as PNG, its boxes x1 y1 x2 y2 from the prepared split)."""
    rec = json.loads((synthetic_data / "ade_mtest_1.json").read_text())["images"][0]
    path = tmp_path_factory.mktemp("photo") / "photo.png"
    cv2.imwrite(str(path), cv2.imread(str(synthetic_data / rec["image"])))
    return path, rec["boxes"]
