"""The report's figures: re-encoded small at the width they are shown, each distinct picture
embedded once, bounded by --max-figures / --no-figures, and drawn by a real browser."""

from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from ivr_cli.main import app
from ivr_core.data import synthetic
from ivr_core.report import write_report
from ivr_core.visualization import save_figures
from ivr_core.visualization.encode import decode_image, is_photo_like

runner = CliRunner()
NAMES = [n.replace(" ", "_") for n in synthetic.NAMES]
PER_FIGURE = 150_000  # bytes of page per figure of a 320 x 320 test image
URI = re.compile(r'<img src="(data:image/[a-z]+;base64,[^"]+)"[^>]*alt="([^"]*)"')


def scene_figures(folder, index: int, iterations: int = 3) -> list:
    """The figures `ivr test --visualize` writes for a memory model's output on synthetic
    image ``index`` (320 x 320), with made-up scores; plus the full model's copy of the
    iterations figure under a second name, byte for byte."""
    scene = synthetic.render(0, index)
    boxes = []
    for inst in scene.instances:
        ys, xs = np.nonzero(inst.mask)
        boxes.append([xs.min(), ys.min(), xs.max(), ys.max()])
    k, g = len(boxes), torch.Generator().manual_seed(index)
    its = [torch.randn(k, len(NAMES), generator=g) for _ in range(iterations)]
    outputs = {"final": its[-1], "iterations": its,
               "attention": torch.softmax(torch.randn(k, iterations, generator=g), 1),
               "memories": [torch.randn(1, 16, 20, 20, generator=g) for _ in range(iterations)]}
    gt = torch.randint(1, len(NAMES), (k,), generator=g)
    stem = f"SYN_val_{index:08d}"
    written = save_figures(folder, stem, scene.image, np.array(boxes), outputs, NAMES, gt,
                           cell_size=16.0)
    copy = folder / f"{stem}_local_iterations.png"
    shutil.copyfile(folder / f"{stem}_iterations.png", copy)
    return [*written, copy]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A run folder holding only the figures of two test images (10 files, 2 repeats)."""
    run = tmp_path_factory.mktemp("figures") / "memory"
    (run / "visualizations").mkdir(parents=True)
    for index in (100, 101):
        scene_figures(run / "visualizations", index)
    return run


def test_figures_are_small_and_repeats_embedded_once(run, tmp_path):
    files = sorted((run / "visualizations").glob("*.png"))
    assert len(files) == 10
    page = write_report([run], tmp_path / "r.html").read_text()
    bare = write_report([run], tmp_path / "bare.html", max_figures=0).read_text()
    shown = dict((alt, uri) for uri, alt in URI.findall(page))
    # 8 distinct pictures: each _local_iterations.png repeats its _iterations.png
    assert len(shown) == 8 and len(set(shown.values())) == 8
    for index in (100, 101):
        name = f"visualizations/SYN_val_{index:08d}_iterations.png"
        assert page.count(shown[name]) == 1
        assert f"{name} = visualizations/SYN_val_{index:08d}_local_iterations.png" in page
    # photo-like panels as WebP, the attention chart lossless; every figure small
    for alt, uri in shown.items():
        kind = "png" if alt.endswith("_attention.png") else "webp"
        assert uri.startswith(f"data:image/{kind};"), alt
        assert len(uri) < PER_FIGURE, (alt, len(uri))
    per_figure = (len(page) - len(bare)) / len(files)
    source = sum(f.stat().st_size for f in files) / len(files)
    assert per_figure < PER_FIGURE and source > 4 * per_figure, (per_figure, source)
    # at most the width a 1280-px window shows
    assert all(int(w) <= 1200 for w in re.findall(r'<img src="data[^>]* width="(\d+)"', page))


def test_max_figures_and_no_figures(run, tmp_path):
    out = tmp_path / "r.html"
    result = runner.invoke(app, ["report", str(run), "--out", str(out), "--max-figures", "4"])
    assert result.exit_code == 0, result.output
    page = out.read_text()
    # labels, iterations, local_iterations (the same picture: a caption), memory
    assert [alt.rsplit("_", 1)[1] for _, alt in URI.findall(page)] == [
        "labels.png", "iterations.png", "memory.png"]
    assert "6 of the 10 figures are not embedded (at most 4 per run)" in page
    assert re.search(r"wrote \S+r\.html \(\d+\.\d MB\)", " ".join(result.output.split()))
    result = runner.invoke(app, ["report", str(run), "--out", str(out), "--no-figures"])
    assert result.exit_code == 0, result.output
    page = out.read_text()
    assert not URI.findall(page) and "10 of the 10 figures are not embedded" in page
    bad = runner.invoke(app, ["report", str(run), "--max-figures", "-1"])
    assert bad.exit_code == 2 and "Invalid value for '--max-figures'" in bad.output


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def test_browser_draws_the_webp_figures(run, tmp_path):
    """The page of a run with only figures, at 1280 px: the WebP panels are decoded and
    drawn (a photo-like screenshot has thousands of colours; broken images have few)."""
    browser = _chromium()
    if browser is None:
        pytest.skip("chromium not installed (apt-get install chromium)")
    page = write_report([run], tmp_path / "r.html", max_figures=2)  # labels, iterations
    shot = tmp_path / "shot.png"
    proc = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}",
         "--window-size=1280,1600", page.resolve().as_uri()],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    pixels = decode_image(shot.read_bytes())
    assert pixels.shape[:2] == (1600, 1280)
    assert is_photo_like(pixels)
    blank = write_report([run], tmp_path / "none.html", max_figures=0)
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                    f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}",
                    "--window-size=1280,1600", blank.resolve().as_uri()],
                   capture_output=True, timeout=120, check=True)
    assert not is_photo_like(decode_image(shot.read_bytes()))  # the check can fail


def test_a_picture_in_two_runs_is_embedded_once(run, tmp_path):
    other = tmp_path / "again"
    (other / "visualizations").mkdir(parents=True)
    name = "SYN_val_00000101_labels.png"
    shutil.copyfile(run / "visualizations" / name, other / "visualizations" / name)
    page = write_report([run, other], tmp_path / "r.html").read_text()
    uris = [uri for uri, alt in URI.findall(page) if alt == f"visualizations/{name}"]
    assert len(uris) == 1 and page.count(uris[0]) == 1
    first = re.search(rf'<figure id="(figure-\d+)"><img [^>]*alt="visualizations/{name}"', page)
    assert first and (f'the same picture as <a href="#{first.group(1)}">memory: '
                      f"visualizations/{name}</a>") in page
