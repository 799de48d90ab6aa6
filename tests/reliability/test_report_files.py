"""``ivr report`` on run files written by anyone: fields of the wrong type, numbers no float
holds, a knowledge graph with a text for a weight, names that matplotlib would read as
mathtext, and links that lead out of the run folder. The page is written with a note for
each problem; never a traceback, and nothing outside the run folder is embedded."""

from __future__ import annotations

import base64
import json
import re
import struct
import zlib

import cv2
import numpy as np
import pytest
from markupsafe import escape

from faults_support import run
from ivr_core.config import Config, merge
from ivr_core.visualization import save_figures

MATH = r"$\foo$"  # matplotlib: "Unknown symbol: \foo" when read as mathtext


def png(rgb: tuple[int, int, int]) -> bytes:
    """A valid 4x4 PNG of one colour, written by hand."""
    rows = b"".join(b"\x00" + bytes(rgb) * 4 for _ in range(4))

    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 4, 4, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def metrics(ap: float) -> dict:
    return {"inst_ap": ap, "inst_ac": ap, "cls_ap": ap, "cls_ac": ap,
            "per_class": {"wall": {"ap": ap, "ac": ap, "count": 3},
                          MATH: {"ap": 1 - ap, "ac": ap, "count": 2}}}


def run_folder(root, name, model="memory", ap=0.5, log=(), results=None, graph=None):
    folder = root / name
    (folder / "visualizations").mkdir(parents=True)
    cfg = merge(Config(), {"model": {"type": model},
                           "graph": {"file": "" if graph is None else str(graph)}}, "a test")
    (folder / "config.toml").write_text(cfg.to_toml())
    lines = log or [json.dumps({"iter": it, "loss": 1.0 / it, "losses": {"final": 0.5 / it},
                                "lr": 1e-3, "s_per_iter": 0.1, "data_s": 0.0,
                                "time": 1e9 + it}) for it in (1, 2, 3)]
    (folder / "log.jsonl").write_text("".join(line + "\n" for line in lines))
    doc = {**metrics(ap), "iterations": [metrics(ap)] * 2, "split": "mtest",
           "iteration": 3, "model_type": model, "num_images": 2}
    (folder / "results.json").write_text(json.dumps(results if results is not None else doc))
    (folder / "visualizations" / "img_labels.png").write_bytes(png((10, 200, 30)))
    return folder


def report(tmp_path, *folders):
    out = tmp_path / "report.html"
    result = run("report", *folders, "--out", out)
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    return out.read_text(), " ".join(result.output.split())


def test_results_fields_of_the_wrong_type(tmp_path):
    good = run_folder(tmp_path, "good")
    bad = run_folder(tmp_path, "bad", results={
        "inst_ap": "high", "iterations": 5, "modules": {"local": 3}, "per_class": [1, 2],
        "context": {"classes": 7, "iterations": [1]}, "split": ["mtest"],
        "num_regions": {"n": 1}, "iteration": 3})
    page, notes = report(tmp_path, good, bad)
    for note in ("results.json: 'iterations' is not a list of objects; ignored",
                 "results.json: 'modules' is not an object of lists of objects; ignored",
                 "results.json: 'per_class' is not an object of objects; ignored",
                 "results.json: 'split' is not a number or a text; ignored",
                 "results.json context: 'iterations' is not a list of objects; ignored",
                 "results.json context: 'classes' is not a list; ignored"):
        assert f"bad: {note}" in notes
        assert str(escape(note)) in page  # as the page's template escapes it


def test_log_values_no_float_holds(tmp_path):
    folder = run_folder(tmp_path, "run", log=[
        '{"iter": 1e400, "loss": 1.0}',  # "iter" reads as infinity
        '{"iter": 2, "loss": 1e308, "losses": [1, 2], "time": 1e300, "lr": 1e400}',
        '{"iter": 3, "loss": ' + "9" * 400 + ', "s_per_iter": 0.5}',
        '{"iter": 4.5, "loss": 1.0}', '[4]', '{"iter": 5, "loss": 0.5, "time": 1e9}'])
    page, notes = report(tmp_path, folder)
    assert "run: log.jsonl: skipped 3 unreadable lines" in notes
    assert "run: log.jsonl: ignored 2 values of the wrong type or out of range" in notes
    assert 'alt="total loss"' in page  # iterations 2, 3 and 5, the loss of 5 drawn


def test_a_graph_with_a_text_for_a_weight(tmp_path):
    graph = tmp_path / "graph.json"
    graph.write_text(json.dumps({"classes": ["wall", "door"], "notes": ["mined", 7],
                                 "edges": {"part_of": [["door", "wall", "heavy"],
                                                       ["door", "wall", 0.75], ["door"]],
                                           "similar": "none"}}))
    folder = run_folder(tmp_path, "global", model="global", graph=graph)
    page, notes = report(tmp_path, folder)
    assert (f"global: knowledge graph {graph}: left out 3 malformed edges (each must be "
            "[from, to, number])") in notes
    assert "<td>door</td><td>wall</td><td class=\"num\">0.750</td>" in page
    assert "<li>mined</li>" in page


def test_mathtext_in_run_and_class_names(tmp_path):
    first = run_folder(tmp_path, MATH, ap=0.8)
    second = run_folder(tmp_path, "plain", ap=0.4)
    page, _ = report(tmp_path, first, second)
    assert page.count("data:image/png;base64,") >= 6  # curves, sorted AP, AP changes
    assert "AP change per class" in page


def test_mathtext_in_class_names_of_test_visualize(tmp_path):
    outputs = {"final": np.eye(3, dtype=np.float32), "iterations": [np.eye(3)] * 2,
               "attention": np.full((3, 2), 0.5, np.float32)}
    written = save_figures(tmp_path, "img", np.zeros((40, 60, 3), np.uint8),
                           np.array([[0, 0, 9, 9], [10, 10, 30, 30], [5, 20, 50, 35]], float),
                           outputs, ["wall", MATH, "door"], gt=[0, 1, 2])
    assert {p.name for p in written} >= {"img_labels.png", "img_attention.png"}


def _flat_colours(page: str) -> set[tuple[int, ...]]:
    """The colours (RGB) of the embedded pictures that are of one colour throughout: the
    report re-encodes pictures at the size shown, so their bytes are not the file's."""
    colours = set()
    for data in re.findall(r'src="data:image/png;base64,([^"]+)"', page):
        bgr = cv2.imdecode(np.frombuffer(base64.b64decode(data), np.uint8), cv2.IMREAD_COLOR)
        pixels = np.unique(bgr.reshape(-1, 3), axis=0)
        if len(pixels) == 1:
            colours.add(tuple(int(v) for v in pixels[0][::-1]))
    return colours


def test_links_out_of_the_run_folder_are_not_read(tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "secret.png").write_bytes(png((255, 0, 0)))
    (outside / "private.toml").write_text('[model]\ntype = "secret-model-name"\n')
    folder = run_folder(tmp_path / "runs", "run")
    (folder / "visualizations" / "leak_labels.png").symlink_to(outside / "secret.png")
    (folder / "visualizations" / "more").symlink_to(outside, target_is_directory=True)
    (folder / "config.toml").unlink()
    (folder / "config.toml").symlink_to(outside / "private.toml")
    inside = folder / "visualizations" / "img_labels.png"
    (folder / "visualizations" / "alias_labels.png").symlink_to(inside)  # stays inside: shown
    page, notes = report(tmp_path, folder)
    shown = _flat_colours(page)
    assert (255, 0, 0) not in shown and (10, 200, 30) in shown  # the secret's, the inside one's
    assert "secret-model-name" not in page
    assert (f"run: config.toml is a link out of the run folder (to {outside / 'private.toml'}); "
            "not read") in notes
    assert "image(s) under visualizations/ are links out of the run folder; not embedded" in notes


@pytest.mark.parametrize("content", ["[1, 2]", '"text"', "{\"edges\": 5}"])
def test_a_graph_file_of_another_shape(tmp_path, content):
    graph = tmp_path / "graph.json"
    graph.write_text(content)
    page, notes = report(tmp_path, run_folder(tmp_path, "global", model="global", graph=graph))
    assert f"knowledge graph {graph}" in notes


@pytest.mark.parametrize("config", ['model = "global"\n',
                                    '[model]\ntype = "full"\n[data]\ndir = 5\nmin_count = []\n'
                                    '[graph]\nfile = ["a"]\n',
                                    '[model]\ntype = "global"\n[data]\ndir = "a\\u0000b"\n'])
def test_a_config_of_another_shape(tmp_path, config):
    folder = run_folder(tmp_path, "run")
    (folder / "config.toml").write_text(config)
    page, _ = report(tmp_path, folder)
    assert "Configuration" in page
