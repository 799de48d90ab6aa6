"""bench/cuda_check.py, the one-command validation of the CUDA path, run where CI can run
it: on the CPU, at tiny sizes. On a GPU the same script is the whole validation."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ops_support import load_ext

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "cuda_check.py"


def _run(tmp_path, *args):
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out), "--work",
                           str(tmp_path / "work"), *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=1800)
    record = json.loads((out / "cuda_check.json").read_text()) if (
        out / "cuda_check.json").is_file() else None
    return done, record, out


@pytest.mark.slow
def test_the_cpu_run_passes_every_check_and_writes_the_record(tmp_path):
    load_ext()
    done, record, out = _run(tmp_path, "--device", "cpu", "--small", "--seed", "1",
                             "--pytest-paths", "tests/ops/test_cuda_kernels.py",
                             "tests/ops/test_autocast.py")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert record["passed"] and record["device"] == "cpu"
    checks = record["checks"]
    assert {name: c["status"] for name, c in checks.items()} == {
        "build": "pass", "ops": "pass", "gradcheck": "pass", "determinism": "pass",
        "pytest": "pass", "train": "pass", "train_step": "pass", "bench_ops": "skip"}
    assert not checks["build"]["built"] and checks["build"]["ext"]["autocast"]
    assert {(r["op"], r["dtype"]) for r in checks["ops"]["rows"]} == {
        (op, dt) for op in ("crop", "paste") for dt in ("float32", "float64")}
    # on a CPU every CUDA test is collected and skipped
    assert checks["pytest"]["passed"] == 0 and checks["pytest"]["counts"]["skipped"] >= 12
    train = checks["train"]
    assert 3 <= train["kill"]["killed_at"] < train["iterations"]
    assert train["resume"] == {"weights_bitwise_equal": True, "weights_max_abs_diff": 0.0,
                               "losses_equal": True}
    assert [i for i, _ in train["curve"]] == list(range(1, train["iterations"] + 1))
    rows = checks["train_step"]["rows"]
    assert {(r["model"], r["amp"]) for r in rows} == {
        (m, a) for m in ("memory", "full") for a in ("none", "bf16")}
    assert all(r["s"] > 0 and r["schedule_hours"] == pytest.approx(r["s"] * 320000 / 3600)
               for r in rows)
    summary = (out / "cuda_check.md").read_text()
    assert summary.startswith("# ivr cuda_check: PASSED") and "| train | pass |" in summary
    assert summary in done.stdout
    log = (out / "log.txt").read_text()
    assert "ivr train (to be killed)" in log and "ivr train (resumed)" in log


def test_a_failing_check_fails_the_run_and_is_recorded(tmp_path):
    done, record, out = _run(tmp_path, "--device", "cpu", "--checks", "pytest",
                             "--pytest-paths", "tests/no_such_test_file.py")
    assert done.returncode == 1
    assert record["passed"] is False and record["checks"]["pytest"]["status"] == "fail"
    assert (out / "cuda_check.md").read_text().startswith("# ivr cuda_check: FAILED")
    assert "no_such_test_file.py" in (out / "log.txt").read_text()


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_asking_for_cuda_without_a_gpu_is_a_clear_error(tmp_path):
    done, record, _ = _run(tmp_path)
    assert done.returncode == 2 and record is None
    assert done.stderr.strip() == (f"error: no CUDA GPU visible to torch {torch.__version__} "
                                   f"(CUDA {torch.version.cuda}); use --device cpu")
