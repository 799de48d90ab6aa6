"""bench/ops.py's race options that need no TensorFlow: a --baseline-ext folder without a
built extension is refused in one line, before any process is timed."""

import subprocess
import sys
from pathlib import Path

from ops_support import load_ext

ROOT = Path(__file__).resolve().parents[2]


def test_a_baseline_folder_without_a_build_is_refused_in_one_line(tmp_path):
    load_ext()
    (tmp_path / "ivr_ext").mkdir()  # sources, no compiled module
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "ops.py"), "--sections", "race",
         "--tf-python", sys.executable, "--baseline-ext", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("--baseline-ext: no built ivr_ext in")
    assert "round 1" not in done.stdout + done.stderr
