"""The README's Python example runs as written, on a tiny run and a 320 x 320 photo."""

import contextlib
import io
import re
import shutil
from pathlib import Path

import cv2
import pytest

import ivr_core

README = Path(__file__).parents[2] / "README.md"
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.DOTALL)
    found = [b for b in blocks if "ivr_core.load(" in b and "model.predict(" in b]
    assert found, "README.md has no ```python block that loads a model and predicts"
    return found[0]


def test_the_readme_example_runs(runs, photo, tmp_path, monkeypatch):
    shutil.copytree(runs["memory"], tmp_path / "runs" / "memory")
    image = cv2.resize(cv2.imread(str(photo[0])), (320, 320))
    cv2.imwrite(str(tmp_path / "photo.jpg"), image)
    monkeypatch.chdir(tmp_path)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(_example(), "README.md", "exec"), {})
    lines = printed.getvalue().splitlines()
    classes = ivr_core.load(tmp_path / "runs" / "memory").classes
    assert len(lines) == 2
    for line in lines:
        label, score, word, iterations = line.split(" ", 3)
        assert label in classes and 0 < float(score) <= 1 and word == "iterations:"
        assert len(eval(iterations)) == 3  # the memory model's three iterations
