"""The Python API: loading from every kind of path, input types, outputs, bad input."""

import doctest
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import ivr_core
from ivr_core import api
from ivr_core.data.dataset import to_model_input
from ivr_core.engine.checkpoint import list_checkpoints
from ivr_core.errors import IvrError

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def test_the_docstring_example_runs(runs, photo):
    result = doctest.testmod(api, extraglobs={"run_dir": runs["memory"], "image_path": photo[0]},
                             optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.attempted >= 6 and result.failed == 0


@pytest.mark.parametrize("model_type", ["baseline", "memory", "full"])
def test_outputs_per_box_match_the_network(runs, photo, model_type):
    path, boxes = photo
    model = ivr_core.load(runs[model_type])
    out = model.predict(path, boxes)
    assert model.model_type == model_type and model.iteration == 2
    assert len(out) == len(boxes) and out.boxes.tolist() == [[float(v) for v in b] for b in boxes]
    # the network run by hand on the same input gives the same probabilities
    image = cv2.imread(str(path))
    tensor, factor = to_model_input(image, model.config.data.scale, model.config.data.max_size)
    with torch.no_grad():
        raw = model.network(tensor[None], torch.tensor(boxes, dtype=torch.float32) * factor)
    np.testing.assert_allclose(out.probs, torch.softmax(raw["final"], 1).numpy(), atol=1e-6)
    np.testing.assert_allclose(out.probs.sum(1), 1, atol=1e-5)
    iterations = {"baseline": 1, "memory": 3, "full": 3}[model_type]
    modules = {"baseline": [], "memory": ["local"], "full": ["global", "local"]}[model_type]
    attention = {"baseline": None, "memory": 3, "full": 5}[model_type]
    assert out.iteration_probs.shape == (iterations, len(boxes), len(model.classes))
    for k, box in enumerate(out):
        assert box.label == model.classes[int(out.probs[k].argmax())] == out.labels[k]
        assert box.score == pytest.approx(out.probs[k].max())
        assert len(box.iterations) == iterations and sorted(box.modules) == modules
        assert all(len(chain) == iterations for chain in box.modules.values())
        if attention is None:
            assert box.attention is None
        else:
            assert box.attention.shape == (attention,)
            assert box.attention.sum() == pytest.approx(1, abs=1e-5)


def test_path_array_and_pil_image_give_the_same_labels(runs, photo):
    path, boxes = photo
    model = ivr_core.load(runs["memory"])
    rgb = cv2.imread(str(path))[:, :, ::-1]
    by_path = model.predict(path, boxes)
    by_array = model.predict(rgb, np.array(boxes))
    np.testing.assert_array_equal(by_path.probs, by_array.probs)
    pil = pytest.importorskip("PIL.Image")
    np.testing.assert_array_equal(by_path.probs, model.predict(pil.fromarray(rgb), boxes).probs)
    batch = model.predict_batch([str(path), rgb[:, ::-1].copy()],
                                [boxes, [[127 - b[2], b[1], 127 - b[0], b[3]] for b in boxes]])
    np.testing.assert_array_equal(batch[0].probs, by_path.probs)
    assert len(batch[1]) == len(boxes)


def test_every_kind_of_path_loads_the_same_weights(runs, photo):
    run = runs["memory"]
    newest = list_checkpoints(run)[-1][1]
    expected = ivr_core.load(run).predict(*photo).probs
    for path in (newest, newest.parent, str(run)):
        np.testing.assert_array_equal(ivr_core.load(path).predict(*photo).probs, expected)


def _one_line_error(call, pattern: str) -> str:
    with pytest.raises(IvrError) as e:
        call()
    message = str(e.value)
    assert "\n" not in message and re.search(pattern, message), message
    return message


def test_bad_input_is_one_clear_line(runs, photo, tmp_path):
    path, boxes = photo
    model = ivr_core.load(runs["baseline"])
    rgb = cv2.imread(str(path))[:, :, ::-1]
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG at all")
    (tmp_path / "empty").mkdir()
    cases = [
        (lambda: model.predict(path, [1, 2, 3, 4]), r"boxes must be an \(N, 4\) array.*\(4,\)"),
        (lambda: model.predict(path, [[1, 2, 3]]), r"got shape \(1, 3\)"),
        (lambda: model.predict(path, []), r"N >= 1"),
        (lambda: model.predict(path, [["a", 1, 2, 3]]), r"array of numbers"),
        (lambda: model.predict(path, [[0, 0, 10, 200]]), r"outside the 128x128 image"),
        (lambda: model.predict(path, [[5, 5, 2, 9], [0, 0, 1, 1], [0, 0, -1, 4]]),
         r"degenerate.*\(and 1 more\)"),
        (lambda: model.predict(path, [[0, 0, np.nan, 4]]), r"not finite"),
        (lambda: model.predict(tmp_path / "nope.png", boxes), r"image not found"),
        (lambda: model.predict(corrupt, boxes), r"cannot read image .*corrupt"),
        (lambda: model.predict(rgb.astype(np.float32), boxes), r"RGB uint8 of shape"),
        (lambda: model.predict(rgb[:, :, 0], boxes), r"\(128, 128\)"),
        (lambda: model.predict(42, boxes), r"not int"),
        (lambda: model.predict_batch([path, corrupt], [boxes, boxes]), r"^image 1: cannot read"),
        (lambda: model.predict_batch([path], [boxes, boxes]), r"1 images but 2 box lists"),
        (lambda: ivr_core.load(tmp_path / "empty"), r"holds no model"),
        (lambda: ivr_core.load(tmp_path / "missing"), r"checkpoint not found"),
        (lambda: ivr_core.load(corrupt), r"corrupt or truncated|not an ivr checkpoint|refusing"),
        (lambda: ivr_core.load(runs["baseline"], device="tpu"), r"runtime.device"),
    ]
    for call, pattern in cases:
        _one_line_error(call, pattern)


def test_a_run_whose_checkpoints_are_all_broken(runs, tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "iter_00000002.pt").write_bytes(b"PK\x03\x04 torn")
    _one_line_error(lambda: ivr_core.load(run), r"no checkpoint in .* could be loaded")


def test_import_ivr_core_stays_light():
    import subprocess
    import sys

    code = "import sys, ivr_core.config; print('torch' in sys.modules, ivr_core.load.__module__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=Path(__file__).parents[2], check=True).stdout.split()
    assert out == ["False", "ivr_core.api"]
