"""``ivr report``: the page built from two hand-made run folders, its failure modes on the
command line, and the page rendered by a real headless browser."""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import zlib

import pytest
from typer.testing import CliRunner

from ivr_cli.main import app
from ivr_core.config import load_config
from ivr_core.report import write_report

runner = CliRunner()
CLASSES = ["wall", "door", "knob", "traffic light", "left arm"]


def tiny_png(width=24, height=16, rgb=(200, 40, 40)) -> bytes:
    """A valid RGB PNG with a colour gradient, written by hand (no image library)."""
    rows = b"".join(b"\x00" + bytes(
        v for x in range(width) for v in ((rgb[0] * x // width), rgb[1], (rgb[2] + 8 * y) % 256))
        for y in range(height))

    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
            + chunk(b"IEND", b""))


def metrics(base: float, per_class_ap: dict[str, float]) -> dict:
    return {"inst_ap": base, "inst_ac": base + 0.1, "cls_ap": base - 0.1, "cls_ac": base - 0.05,
            "inst_sc": 0.3, "cls_sc": 0.2, "num_regions": 50, "num_classes_present": 5,
            "per_class": {c: {"ap": ap, "ac": ap / 2, "sc": 0.1, "count": 10 + i}
                          for i, (c, ap) in enumerate(per_class_ap.items())}}


def make_run(root, name, model, lr, iterations, per_class, base, log=True, results=True):
    run = root / name
    (run / "checkpoints").mkdir(parents=True)
    cfg = load_config(overrides=[f"model.type={model}", f"train.lr={lr}"])
    (run / "config.toml").write_text(cfg.to_toml())
    (run / "env.json").write_text(json.dumps({"ivr": "0.1.0", "python": "3.11.2",
                                              "CUDA available": "False",
                                              "compiled ops": f"{name} ops"}))
    if log:
        lines = [{"iter": it, "loss": 3.0 / it, "losses": {"final": 2.0 / it, "iter": 1.0 / it},
                  "lr": lr, "s_per_iter": 0.2 + it / 1000, "data_s": 0.01, "time": 1e9 + it}
                 for it in (20, 40, 60, 80)]
        (run / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    (run / "checkpoints" / "iter_00000080.pt").write_bytes(b"")
    if results:
        res = metrics(base, per_class)
        res["iterations"] = [metrics(base - 0.05 * (iterations - 1 - i), per_class)
                             for i in range(iterations)]
        res.update({"checkpoint": str(run / "checkpoints" / "iter_00000080.pt"),
                    "iteration": 80, "model_type": model, "split": "mtest", "num_images": 4})
        if model == "memory":
            res["context"] = {**metrics(base - 0.2, per_class), "classes": ["knob", "left arm"],
                              "iterations": [metrics(base - 0.2, per_class)] * iterations}
        (run / "results.json").write_text(json.dumps(res, indent=1))
    vis = run / "visualizations"
    vis.mkdir()
    # named as `ivr test` writes them: <image stem>_<kind>.png
    for stem in ("ADE_val_00000001_labels", "ADE_val_00000001_iterations",
                 "ADE_val_00000001_attention", "ADE_val_00000002_labels"):
        shade = zlib.crc32(f"{name}/{stem}".encode()) % 200  # every file different
        (vis / f"{stem}.png").write_bytes(tiny_png(rgb=(shade, 90, 160)))
    return run


@pytest.fixture
def runs(tmp_path):
    baseline = make_run(tmp_path, "baseline", "baseline", 5e-4, 1,
                        {"wall": 0.9, "door": 0.5, "knob": 0.2, "traffic light": 0.6,
                         "left arm": 0.4}, base=0.612)
    memory = make_run(tmp_path, "memory", "memory", 1e-3, 3,
                      {"wall": 0.85, "door": 0.7, "knob": 0.45, "traffic light": 0.3,
                       "left arm": 0.4}, base=0.662)
    return baseline, memory


def text_of(page: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", page).split())


def test_report_holds_tables_curves_images(runs, tmp_path):
    notes = []
    out = write_report(runs, tmp_path / "out" / "report.html", on_note=notes.append)
    page = out.read_text()
    assert notes == []
    text = text_of(page)
    # evaluation: formatted values and the difference to the first run
    assert "0.612" in page and "0.662" in page and "+0.050" in page
    assert "iter 2" in text and "Context classes" in text and "knob, left arm" in text
    # configuration: the changed keys are highlighted, the others are not
    assert re.search(r'<tr class="diff[^"]*"><th>train\.lr</th><td[^>]*>0\.0005</td>'
                     r'<td[^>]*>0\.001</td>', page)
    assert re.search(r'<tr class="diff[^"]*"><th>model\.type</th>', page)
    assert re.search(r'<tr( class="sep")?><th>train\.momentum</th>', page)
    assert "2 of " in text and "keys differ" in text
    # gainers and losers between the two runs
    gained = page.split("gained most</h4>")[1].split("</table>")[0]
    lost = page.split("lost most</h4>")[1].split("</table>")[0]
    assert gained.index("knob") < gained.index("door") and "+0.250" in gained
    assert "traffic light" in lost and "-0.300" in lost and "wall" in lost
    assert "left arm" not in gained + lost  # unchanged
    # curves for the total loss, each component, lr, s/iter and data wait
    for title in ("total loss", "loss: final", "loss: iter", "learning rate",
                  "seconds per iteration", "data wait"):
        assert f'alt="{title}' in page
    # visualizations grouped per image, environment side by side
    assert text.count("ADE_val_00000001 visualizations/ADE_val_00000001_labels.png "
                      "visualizations/ADE_val_00000001_iterations.png "
                      "visualizations/ADE_val_00000001_attention.png") == 2
    assert text.count("ADE_val_00000002 visualizations/ADE_val_00000002_labels.png") == 2
    assert re.search(r'<tr class="diff[^"]*"><th>compiled ops</th>', page)
    # self-contained
    images = re.findall(r'<img src="([^"]+)"', page)
    assert len(images) >= 6 + 2 + 8 and all(re.match("data:image/(png|webp);base64,", s)
                                            for s in images)
    assert not re.search(r"https?://", page)
    assert not re.search(r"<(script|link|iframe)\b", page) and "@import" not in page


def test_missing_results_and_log_are_noted(runs, tmp_path):
    baseline, memory = runs
    (memory / "results.json").unlink()
    (baseline / "log.jsonl").write_text('{"iter": 20, "loss": 1.0, "losses": {}}\n{"iter": 4')
    notes = []
    page = write_report([baseline, memory], tmp_path / "r.html", on_note=notes.append).read_text()
    text = text_of(page)
    assert "no results.json" in text and f"ivr test --run-dir {memory}" in text
    assert "skipped 1 unreadable line" in text
    assert any(n.startswith("memory: no results.json") for n in notes)
    assert "0.612" in page and "+0.050" not in page
    assert "need per-class results in both" in text
    # a run folder with only a log (training has just started)
    young = tmp_path / "young"
    young.mkdir()
    (young / "log.jsonl").write_text(json.dumps({"iter": 20, "loss": 2.0}) + "\n")
    page = write_report([young], tmp_path / "y.html").read_text()
    assert "no config.toml" in page and "no results.json" in page and 'alt="total loss' in page


def test_cli_writes_report(runs, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["report", *map(str, runs)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "report.html").is_file() and "wrote report.html" in result.output
    assert not list(tmp_path.glob(".report.html.*"))  # the atomic write left no temp file


@pytest.mark.parametrize("case", ["nonexistent", "empty", "out_is_folder"])
def test_cli_errors_are_one_line(runs, tmp_path, case):
    args = ["report", str(runs[0])]
    if case == "nonexistent":
        args.append(str(tmp_path / "nope"))
        message = f"run folder not found: {tmp_path / 'nope'}"
    elif case == "empty":
        (tmp_path / "empty").mkdir()
        args.append(str(tmp_path / "empty"))
        message = f"{tmp_path / 'empty'} holds none of config.toml"
    else:
        args += ["--out", str(tmp_path)]
        message = f"--out {tmp_path} is a folder"
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]


def test_help_shows_the_example():
    result = runner.invoke(app, ["report", "--help"])
    assert result.exit_code == 0
    assert ("Example: ivr report runs/baseline runs/memory --out report.html"
            in " ".join(result.output.split()))


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    return "/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None


def _screenshot(browser: str, page, shot, profile) -> list[str]:
    """Render ``page`` to ``shot``; returns the browser's console lines about the page."""
    proc = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--no-first-run", "--no-default-browser-check", f"--user-data-dir={profile}",
         "--enable-logging=stderr", "--v=0", f"--screenshot={shot}", "--window-size=1280,2000",
         page.resolve().as_uri()],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # console messages are logged as "INFO:CONSOLE(line)] "text", source: file:///... (line)"
    return [line for line in proc.stderr.splitlines()
            if ("CONSOLE" in line or "Uncaught" in line) and page.name in line]


def test_page_renders_in_headless_chromium(runs, tmp_path):
    browser = _chromium()
    if browser is None:
        if os.environ.get("IVR_REQUIRE_BROWSER") == "1":
            pytest.fail("IVR_REQUIRE_BROWSER=1 but no chromium on PATH or at /usr/bin/chromium")
        pytest.skip("chromium not installed (apt-get install chromium)")
    import matplotlib.image

    # the check sees a page's console errors...
    broken = tmp_path / "broken.html"
    broken.write_text("<!DOCTYPE html><p>x</p><script>console.error('boom'); nope();</script>")
    caught = _screenshot(browser, broken, tmp_path / "broken.png", tmp_path / "profile")
    assert any("boom" in line for line in caught) and any("nope" in line for line in caught)
    # ...and the report has none; it has no script at all, so any console line is a problem
    page = write_report(runs, tmp_path / "report.html")
    shot = tmp_path / "shot.png"
    console = _screenshot(browser, page, shot, tmp_path / "profile")
    assert not console, "\n".join(console)
    assert shot.is_file()
    pixels = matplotlib.image.imread(shot)[..., :3]
    assert pixels.shape[:2] == (2000, 1280)
    assert pixels.std() > 0.05  # text, tables and plots, not a blank page
    assert (pixels < 0.9).mean() > 0.02  # not all white


def test_hostile_strings_are_shown_as_text(tmp_path):
    """Markup in a folder name, a class name, a config value, a loss name, an environment
    entry and the title is printed as text: the page holds no element it did not write."""
    attack = '<img src=x onerror="alert(1)">'
    run = make_run(tmp_path, attack, "memory", 1e-3, 2,
                   {"wall": 0.5, "<script>alert('class')</script>": 0.7}, base=0.5)
    other = make_run(tmp_path, "plain", "baseline", 1e-3, 1,
                     {"wall": 0.4, "<script>alert('class')</script>": 0.2}, base=0.4)
    config = (run / "config.toml").read_text().replace(
        'dir = "data/ADE"', 'dir = "</td><script>alert(\'config\')</script>"')
    assert "alert('config')" in config
    (run / "config.toml").write_text(config)
    (run / "env.json").write_text(json.dumps({"<b>key</b>": "<iframe src=x>"}))
    with open(run / "log.jsonl", "a") as log:
        log.write(json.dumps({"iter": 100, "loss": 1.0, "losses": {"<svg onload=x>": 1.0},
                              "lr": 1e-3, "s_per_iter": 0.2, "data_s": 0.01}) + "\n")
    page = write_report([run, other], tmp_path / "r.html",
                        title="<script>alert('title')</script>").read_text()
    assert not re.search(r"<(script|iframe|svg|b)\b", page)
    assert "<img src=x" not in page and "onerror=\"alert" not in page
    for shown in ("&lt;script&gt;alert(&#39;class&#39;)&lt;/script&gt;",
                  "&lt;/td&gt;&lt;script&gt;alert(&#39;config&#39;)",
                  "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;",
                  "&lt;b&gt;key&lt;/b&gt;", "&lt;iframe src=x&gt;",
                  "loss: &lt;svg onload=x&gt;", "&lt;script&gt;alert(&#39;title&#39;)"):
        assert shown in page, shown


def test_attention_and_candidates_are_shown(runs, tmp_path):
    _, memory = runs
    with open(memory / "log.jsonl", "a") as log:  # a collapse onto iteration 0
        for it, w0 in ((100, 0.6), (120, 0.9)):
            log.write(json.dumps({"iter": it, "loss": 1.0, "losses": {"final": 1.0},
                                  "attention": {"local 0": w0, "local 1": (1 - w0) / 2,
                                                "local 2": (1 - w0) / 2}}) + "\n")
    res = json.loads((memory / "results.json").read_text())
    res["best_candidate"] = {k: {"candidate": "local 2", "value": 0.777}
                             for k in ("inst_ap", "inst_ac", "cls_ap", "cls_ac")}
    res["oracle"] = metrics(0.888, {})
    res["uniform_attention"] = metrics(0.666, {})
    (memory / "results.json").write_text(json.dumps(res))
    page = write_report(runs, tmp_path / "report.html").read_text()
    text = text_of(page)
    assert 'alt="attention of memory' in page and 'alt="attention of baseline' not in page
    row = text.split("best single candidate")[1].split("oracle")[0]
    assert "0.777" in row
    assert "0.888" in text.split("oracle (best candidate per region)")[1][:80]
    assert "0.666" in text.split("uniform attention (control)")[1][:80]
