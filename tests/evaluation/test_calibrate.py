"""Calibrating the attention on held-out images: the fit, the file, and its use by ivr test."""

import json

import numpy as np
import pytest

from cli_support import one_line_error, run
from conftest import TINY
from ivr_core.engine.trainer import train
from ivr_core.errors import IvrError
from ivr_core.evaluation.calibrate import (attended, fit_attention, guard_best_candidate,
                                          mean_ap, read_calibration)


def _held_out(n=60, seed=0):
    """Three candidates: 0 confidently wrong, 1 right, 2 noise; the attention as trained
    prefers candidate 0 (as after training on images that the baseline head memorised)."""
    rng = np.random.default_rng(seed)
    gt = rng.integers(0, 4, n)
    p = np.full((n, 3, 4), 0.1)
    p[np.arange(n), 0, (gt + 1) % 4] = 0.7
    p[np.arange(n), 1, gt] = 0.7
    p[:, 2] = rng.dirichlet(np.ones(4), n)
    attention = np.tile([0.8, 0.1, 0.1], (n, 1)) * rng.uniform(0.9, 1.1, (n, 3))
    attention /= attention.sum(1, keepdims=True)
    return np.log(p / p.sum(2, keepdims=True)), np.log(attention), gt


def test_the_fit_moves_the_weight_to_the_candidate_right_on_held_out_images():
    log_probs, log_attention, gt = _held_out()
    before = attended(log_probs, log_attention, 1.0, None).argmax(1)
    temperature, offset = fit_attention(log_probs, log_attention, gt)
    after = attended(log_probs, log_attention, temperature, offset).argmax(1)
    assert (before == gt).mean() < 0.1 and (after == gt).all()
    assert offset[1] > offset[0] + 1 and 0.25 <= temperature <= 256
    assert abs(offset.sum()) < 1e-9  # offsets are centred: only their differences matter
    # on other images of the same kind, the fitted attention holds
    log_probs2, log_attention2, gt2 = _held_out(seed=1)
    assert (attended(log_probs2, log_attention2, temperature, offset).argmax(1) == gt2).all()


def _scored(n=60, seed=0):
    """_held_out with a background class 0 in front, as ivr's metrics expect."""
    log_probs, log_attention, gt = _held_out(n, seed)
    p = np.concatenate([np.full(log_probs.shape[:2] + (1,), 1e-6), np.exp(log_probs)], 2)
    return np.log(p / p.sum(2, keepdims=True)), log_attention, gt + 1


def test_the_guard_raises_a_candidate_that_beats_the_answer_on_held_out_images():
    log_probs, log_attention, gt = _scored()
    # offsets that keep the trained preference for the confidently wrong candidate 0
    offset = np.zeros(3)
    before = mean_ap(attended(log_probs, log_attention, 1.0, offset), gt)
    right = mean_ap(np.exp(log_probs[:, 1]), gt)
    assert before < right - 0.3
    raised, guard = guard_best_candidate(log_probs, log_attention, gt, 1.0, offset)
    assert guard["candidate"] == 1 and guard["bonus"] > 0
    assert guard["mean_ap_before"] == pytest.approx(before)
    after = mean_ap(attended(log_probs, log_attention, 1.0, raised), gt)
    assert after == pytest.approx(guard["mean_ap_after"]) and after >= right - 1e-9
    assert raised[1] - raised[0] == pytest.approx(guard["bonus"])  # only candidate 1 moved
    assert abs(raised.sum()) < 1e-9


def test_the_guard_leaves_a_fit_that_no_single_candidate_beats():
    log_probs, log_attention, gt = _scored()
    temperature, offset = fit_attention(log_probs, log_attention, gt)
    kept, guard = guard_best_candidate(log_probs, log_attention, gt, temperature, offset)
    assert guard is None and np.array_equal(kept, offset)


@pytest.fixture(scope="module")
def memory_run(synthetic_data, tmp_path_factory):
    from ivr_core.config import load_config
    run_dir = tmp_path_factory.mktemp("calibrated") / "run"
    cfg = load_config(overrides=[*TINY, f"data.dir={synthetic_data}", "data.min_count=1",
                                 "model.type=memory", "train.iters=2"])
    train(cfg, run_dir, show_progress=False)
    return run_dir


def test_ivr_calibrate_writes_the_file_that_ivr_test_applies(memory_run, tmp_path):
    result = run("calibrate", "--run-dir", memory_run, "-q")
    assert result.exit_code == 0, result.output
    doc = json.loads((memory_run / "calibration.json").read_text())
    assert doc["split"] == "mval" and doc["iteration"] == 2
    assert list(doc["offset"]) == ["local 0", "local 1", "local 2"]
    assert "guard" in doc  # None, or the candidate the guard raised
    tested = run("test", "--run-dir", memory_run, "--out", tmp_path / "r.json", "-q")
    assert tested.exit_code == 0, tested.output
    results = json.loads((tmp_path / "r.json").read_text())
    assert results["attention_calibration"]["temperature"] == doc["temperature"]
    # fitted for another iteration or other candidates: not applied
    assert read_calibration(memory_run / "checkpoints" / "x.pt", 4, list(doc["offset"])) is None
    assert read_calibration(memory_run / "checkpoints" / "x.pt", 2, ["local 0"]) is None


def test_calibrating_on_the_test_split_or_a_damaged_file_is_one_line(memory_run, tmp_path):
    assert "test split" in one_line_error(run("calibrate", "--run-dir", memory_run,
                                              "--split", "mtest"))
    damaged = tmp_path / "run" / "checkpoints"
    damaged.mkdir(parents=True)
    (tmp_path / "run" / "calibration.json").write_text('{"temperature": "hot"}')
    with pytest.raises(IvrError, match="damaged"):
        read_calibration(damaged / "iter_2.pt", 2, ["local 0"])


def test_the_api_and_an_exported_model_apply_the_runs_calibration(memory_run, tmp_path):
    import ivr_core
    assert run("calibrate", "--run-dir", memory_run, "-q").exit_code == 0
    fitted = json.loads((memory_run / "calibration.json").read_text())["temperature"]
    assert run("export", memory_run, "--out", tmp_path / "exported").exit_code == 0
    for source in (memory_run, tmp_path / "exported"):
        model = ivr_core.load(source)
        assert model.calibration is not None and model.network.attention_temperature == fitted
