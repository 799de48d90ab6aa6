"""Box drawing, the figures of ``ivr test --visualize`` and the command end to end."""

import json

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from ivr_cli.main import app
from ivr_core.engine.checkpoint import load_checkpoint
from ivr_core.engine.trainer import train
from ivr_core.evaluation.tester import run_test
from ivr_core.visualization import (changed_regions, class_color, draw_boxes, layout_labels,
                                    panel_size, plot_attention, plot_iterations, plot_labels,
                                    plot_memory, predicted_classes, save_figures, text_color)
from ivr_core.visualization import panels
from ivr_core.visualization.panels import GAP, MAX_WIDTH, TITLE_HEIGHT

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

NAMES = ["-", "house", "house_window", "bus_window", "shelf_box", "wheel"]


# --- drawing ------------------------------------------------------------------------------

def test_draw_boxes_outlines_in_class_colour_on_a_copy():
    image = np.full((200, 240, 3), 50, np.uint8)
    before = image.copy()
    out = draw_boxes(image, [[40, 60, 150, 160]], ["house_window 0.93"], [3])
    assert out.shape == image.shape and out.dtype == image.dtype
    assert np.array_equal(image, before)  # the input is left alone
    color = class_color(3)
    for y, x in [(110, 40), (110, 150), (160, 100)]:  # left, right and bottom edges
        assert tuple(int(v) for v in out[y, x]) == color
    assert np.array_equal(out[110, 95], before[110, 95])  # the inside is not painted
    assert (out != before).any(axis=2).sum() > 300


def test_draw_boxes_accepts_tensors_and_empty_input():
    image = np.zeros((64, 64, 3), np.uint8)
    out = draw_boxes(image, torch.tensor([[5.0, 5.0, 40.0, 30.0]]), ["a"], [1], [True])
    assert out.shape == image.shape and out.any()
    assert np.array_equal(draw_boxes(image, np.zeros((0, 4)), [], []), image)
    with pytest.raises(ValueError, match="1 boxes, 2 labels"):
        draw_boxes(image, [[0, 0, 5, 5]], ["a", "b"], [1])
    with pytest.raises(ValueError, match="uint8 BGR image"):
        draw_boxes(image[:, :, 0], [[0, 0, 5, 5]], ["a"], [1])


def test_highlight_draws_a_thicker_red_outline():
    image = np.full((200, 240, 3), 128, np.uint8)
    box, plain_kw = [[40, 60, 150, 160]], dict(labels=["x"], class_ids=[2])
    plain = draw_boxes(image, box, **plain_kw)
    marked = draw_boxes(image, box, **plain_kw, highlight=[True])
    red = np.all(marked == (0, 0, 255), axis=2)
    assert red[60:161, 38:43].any() and red[60:161, 148:153].any()  # on the left/right edges
    assert not np.all(plain == (0, 0, 255), axis=2).any()
    changed = lambda img: (img != image).any(axis=2).sum()
    assert changed(marked) > changed(plain)


def test_class_colours_are_stable_and_distinct():
    colors = [class_color(i) for i in range(200)]
    assert colors == [class_color(i) for i in range(200)]
    assert class_color(np.int64(7)) == colors[7]
    assert all(len(c) == 3 and all(isinstance(v, int) and 0 <= v <= 255 for v in c)
               for c in colors)
    assert len(set(colors)) == len(colors)
    arr = np.array(colors[:30], float)
    dist = np.abs(arr[:, None] - arr[None]).sum(-1) + np.eye(30) * 1e9
    assert dist.min() >= 30  # the first classes are clearly different


def test_text_colour_contrasts_with_its_background():
    assert text_color((255, 255, 255)) == (0, 0, 0)
    assert text_color((0, 255, 255)) == (0, 0, 0)  # yellow
    assert text_color((0, 0, 0)) == (255, 255, 255)
    assert text_color((120, 20, 20)) == (255, 255, 255)  # dark blue


@pytest.mark.parametrize("box", [[0, 0, 30, 20], [90, 80, 119, 99], [0, 80, 20, 99],
                                 [100, 0, 119, 10], [0, 0, 119, 99], [-10, -5, 130, 110]])
def test_labels_stay_inside_the_image_at_its_borders(box):
    image = np.zeros((100, 120, 3), np.uint8)
    label = "house_window 0.93 with a much longer name than fits"
    (x, y, w, h), = layout_labels(image.shape, [box], [label])
    assert 0 <= x and 0 <= y and x + w <= 120 and y + h <= 100
    out = draw_boxes(image, [box], [label], [4])
    color = class_color(4)
    # the label's background is drawn whole where the layout says: all four corners
    for cy, cx in [(y, x), (y, x + w - 1), (y + h - 1, x), (y + h - 1, x + w - 1)]:
        assert tuple(int(v) for v in out[cy, cx]) == color
    patch = out[y:y + h, x:x + w]
    assert np.all(patch == text_color(color), axis=2).any()  # and text written on it


def test_labels_of_neighbouring_boxes_do_not_overlap():
    boxes = [[30, 40, 60, 70], [35, 45, 65, 75], [32, 42, 62, 72]]
    rects = layout_labels((200, 200, 3), boxes, ["first", "second", "third"])
    for i, a in enumerate(rects):
        for b in rects[:i]:
            assert (a[0] + a[2] <= b[0] or b[0] + b[2] <= a[0]
                    or a[1] + a[3] <= b[1] or b[1] + b[3] <= a[1])


# --- predictions and changes --------------------------------------------------------------

def test_changed_regions_follow_the_argmax_without_background():
    previous = np.array([[0.1, 0.6, 0.2, 0.1],  # 1 -> 1
                         [0.1, 0.2, 0.6, 0.1],  # 2 -> 3
                         [0.9, 0.05, 0.04, 0.01],  # background ignored: 1 -> 1
                         [0.0, 0.1, 0.2, 0.7],  # 3 -> 1
                         [0.0, 0.4, 0.3, 0.3]])  # 1 -> 1, scores changed a lot
    current = np.array([[0.1, 0.5, 0.3, 0.1],
                        [0.1, 0.2, 0.1, 0.6],
                        [0.1, 0.5, 0.3, 0.1],
                        [0.0, 0.8, 0.1, 0.1],
                        [0.0, 0.9, 0.05, 0.05]])
    assert predicted_classes(previous).tolist() == [1, 2, 1, 3, 1]
    assert changed_regions(previous, current).tolist() == [False, True, False, True, False]
    assert changed_regions(torch.tensor(previous), torch.tensor(previous)).sum() == 0


def test_iteration_panels_mark_exactly_the_changed_regions(monkeypatch, tmp_path):
    calls = []

    def spy(image, boxes, labels, class_ids, highlight=None):
        calls.append((list(class_ids), highlight))
        return image.copy()

    monkeypatch.setattr(panels, "draw_boxes", spy)
    eye = np.eye(4)[[1, 2, 3, 1]] + 0.01  # iteration 0 predicts 1 2 3 1
    its = [eye, np.eye(4)[[1, 3, 3, 2]] + 0.01, np.eye(4)[[1, 3, 1, 2]] + 0.01]
    final = np.eye(4)[[2, 3, 1, 2]] + 0.01
    boxes = [[0, 0, 9, 9], [10, 10, 19, 19], [20, 20, 29, 29], [30, 0, 39, 9]]
    plot_iterations(tmp_path / "it.png", np.zeros((40, 40, 3), np.uint8), boxes, its, final,
                    NAMES[:4])
    assert [c for c, _ in calls] == [[1, 2, 3, 1], [1, 3, 3, 2], [1, 3, 1, 2], [2, 3, 1, 2]]
    assert [h for _, h in calls] == [[False] * 4, [False, True, False, True],
                                     [False, False, True, False], [True, False, False, False]]


# --- figures ------------------------------------------------------------------------------

def _fake(iterations: int, k: int = 4, c: int = len(NAMES), memory: bool = True):
    g = torch.Generator().manual_seed(iterations)
    its = [torch.randn(k, c, generator=g) * 3 for _ in range(iterations)]
    if not memory:
        return {"final": its[0], "iterations": its}
    attention = torch.softmax(torch.randn(k, iterations, generator=g), 1)
    final = (attention[:, :, None] * torch.stack(its, 1)).sum(1)
    memories = [torch.randn(1, 8, 6, 8, generator=g) for _ in range(iterations)]
    return {"final": final, "iterations": its, "attention": attention, "memories": memories}


IMAGE = np.random.default_rng(0).integers(0, 256, (96, 128, 3), dtype=np.uint8)
BOXES = np.array([[0, 0, 40, 30], [60, 50, 127, 95], [30, 40, 70, 80], [100, 0, 127, 20]])
GT = np.array([1, 2, 3, 4])


def _size(path):
    img = cv2.imread(str(path))
    assert img is not None, f"{path} is not a readable image"
    return img.shape[:2]


def _grid_size(rows, columns, height=96, width=128):
    ph, pw = panel_size(height, width, columns)
    return rows * (ph + TITLE_HEIGHT) + (rows + 1) * GAP, columns * pw + (columns + 1) * GAP


def test_panel_size_enlarges_small_images_and_fits_the_width():
    assert panel_size(96, 128, 1) == (384, 512)
    assert panel_size(96, 128, 2) == (384, 512)
    assert panel_size(96, 128, 4) == (292, 390)  # (1600 - 5 * 8) / 4 wide
    assert panel_size(2000, 1000, 1) == (900, 450)  # height capped
    assert _grid_size(1, 4)[1] <= MAX_WIDTH


def test_baseline_figures(tmp_path):
    outputs = _fake(1, memory=False)
    written = save_figures(tmp_path, "img", IMAGE, BOXES, outputs, NAMES, GT)
    assert [p.name for p in written] == ["img_labels.png", "img_iterations.png"]
    assert _size(written[0]) == _grid_size(1, 2)  # predicted | ground truth
    assert _size(written[1]) == _grid_size(1, 1)  # iteration 0 is the final output
    probs = torch.softmax(outputs["final"], 1).numpy()
    assert _size(plot_labels(tmp_path / "nogt.png", IMAGE, BOXES, probs, NAMES)) == \
        _grid_size(1, 1)
    assert not list(tmp_path.glob(".*"))  # no temp file left behind


def test_memory_figures(tmp_path):
    outputs = _fake(3)
    written = save_figures(tmp_path, "img", IMAGE, BOXES, outputs, NAMES, GT, cell_size=16.0)
    assert [p.name for p in written] == ["img_labels.png", "img_iterations.png",
                                         "img_memory.png", "img_attention.png"]
    assert _size(written[0]) == _grid_size(1, 2)
    assert _size(written[1]) == _grid_size(1, 4)  # 3 iterations and the final output
    assert _size(written[2]) == _grid_size(2, 3)  # norm and PCA rows, one column per iteration
    assert _size(written[3]) == (280, 700)  # 7 x (1.6 + 0.3 * 4) inches at 100 dpi
    for path in written:
        assert _size(path)[1] <= MAX_WIDTH
    # each figure function on its own, memory maps stretched and (C, H, W) memories
    mems = [m[0].numpy() for m in outputs["memories"]]
    assert _size(plot_memory(tmp_path / "m.png", IMAGE, mems)) == _grid_size(2, 3)
    assert _size(plot_attention(tmp_path / "a.png", outputs["attention"],
                                [f"r{i}" for i in range(4)])) == (280, 700)
    its = [torch.softmax(x, 1) for x in outputs["iterations"]]
    final = torch.softmax(outputs["final"], 1)
    assert _size(plot_iterations(tmp_path / "i.png", IMAGE, BOXES, its, final, NAMES)) == \
        _grid_size(1, 4)


def test_memory_figure_handles_constant_memories(tmp_path):
    zeros = [np.zeros((1, 2, 3, 4), np.float32)] * 2  # fewer than 3 channels, no variance
    assert _size(plot_memory(tmp_path / "z.png", IMAGE, zeros)) == _grid_size(2, 2)


# --- end to end ---------------------------------------------------------------------------

def test_ivr_test_visualize_end_to_end(tiny_cfg, tmp_path):
    run_dir = tmp_path / "mem"
    train(tiny_cfg("model.type=memory", "train.iters=2"), run_dir, show_progress=False)
    result = CliRunner().invoke(app, ["test", "--run-dir", str(run_dir), "--split", "mtest",
                                      "--visualize", "2", "-q"])
    assert result.exit_code == 0, result.output
    assert str(run_dir / "visualizations") in " ".join(result.output.split())
    results = json.loads((run_dir / "results.json").read_text())
    figures = results["visualizations"]
    kinds = ["labels", "iterations", "memory", "attention"]
    assert len(figures) == 4 * min(2, results["num_images"])
    assert [f.rsplit("_", 1)[1] for f in figures[:4]] == [k + ".png" for k in kinds]
    for rel in figures:
        assert rel.startswith("visualizations/")
        assert _size(run_dir / rel)[1] <= MAX_WIDTH
    wrong = CliRunner().invoke(app, ["test", "--run-dir", str(run_dir), "--visualize", "-1"])
    assert wrong.exit_code == 1 and "--visualize must be >= 0" in wrong.output


def test_run_test_visualizes_a_baseline_beside_out(tiny_cfg, tmp_path):
    run = train(tiny_cfg("train.iters=2"), tmp_path / "base", show_progress=False)
    cfg = tiny_cfg()
    out = tmp_path / "elsewhere" / "r.json"
    results = run_test(run.checkpoint, cfg, load_checkpoint(run.checkpoint), "mtest", out,
                       show_progress=False, visualize=10)
    listed = json.loads(out.read_text())["visualizations"]
    assert listed == results["visualizations"]
    assert len(listed) == 2 * results["num_images"]  # labels and iterations only
    assert all((out.parent / rel).is_file() for rel in listed)
    plain = run_test(run.checkpoint, cfg, load_checkpoint(run.checkpoint), "mtest",
                     tmp_path / "plain.json", show_progress=False)
    assert "visualizations" not in plain
