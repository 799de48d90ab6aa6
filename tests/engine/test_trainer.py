import pickle

import pytest
import torch

from ivr_core.engine import checkpoint as ckpt
from ivr_core.engine.optim import lr_at
from ivr_core.engine.logger import read_log
from ivr_core.engine.trainer import train
from ivr_core.config import TrainConfig
from ivr_core.errors import IvrError

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def test_train_writes_checkpoints_log_and_config(tiny_cfg, tmp_path):
    result = train(tiny_cfg("model.type=memory"), tmp_path / "run", show_progress=False)
    assert result.iterations == 4
    assert [i for i, _ in ckpt.list_checkpoints(tmp_path / "run")] == [2, 4]
    log = read_log(tmp_path / "run")
    assert [r["iter"] for r in log] == [1, 2, 3, 4]
    assert set(log[0]["losses"]) == {"base", "iter", "final"}
    # the attention's mean weight per candidate, a distribution over the three iterations
    assert list(log[0]["attention"]) == ["local 0", "local 1", "local 2"]
    assert sum(log[0]["attention"].values()) == pytest.approx(1.0)
    assert "model.type" not in (tmp_path / "run" / "config.toml").read_text()
    assert 'type = "memory"' in (tmp_path / "run" / "config.toml").read_text()
    state = ckpt.load_checkpoint(result.checkpoint)
    assert state["iteration"] == 4 and state["model_type"] == "memory"
    assert state["config"]["model"]["type"] == "memory"


@pytest.mark.parametrize("model", ["baseline", "memory"])
def test_resume_continues_exactly(tiny_cfg, tmp_path, model):
    straight = train(tiny_cfg(f"model.type={model}"), tmp_path / "a", show_progress=False)
    train(tiny_cfg(f"model.type={model}", "train.iters=2"), tmp_path / "b", show_progress=False)
    resumed = train(tiny_cfg(f"model.type={model}"), tmp_path / "b", resume=True,
                    show_progress=False)
    assert resumed.resumed_from == 2 and resumed.iterations == 4
    a = ckpt.load_checkpoint(straight.checkpoint)["model"]
    b = ckpt.load_checkpoint(resumed.checkpoint)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)  # bitwise, with deterministic kernels
    logged = [[(r["iter"], r["loss"], r["losses"], r["lr"]) for r in read_log(tmp_path / run)]
              for run in ("a", "b")]
    assert logged[0] == logged[1] and len(logged[0]) == 4


def test_existing_run_needs_resume_and_matching_model(tiny_cfg, tmp_path):
    train(tiny_cfg("train.iters=2"), tmp_path / "run", show_progress=False)
    with pytest.raises(IvrError, match="already holds checkpoints; pass --resume"):
        train(tiny_cfg(), tmp_path / "run", show_progress=False)
    with pytest.raises(IvrError, match="holds a 'baseline' model, not 'memory'"):
        train(tiny_cfg("model.type=memory"), tmp_path / "run", resume=True, show_progress=False)


def test_resume_skips_a_corrupt_newest_checkpoint(tiny_cfg, tmp_path):
    train(tiny_cfg(), tmp_path / "run", show_progress=False)
    newest = ckpt.checkpoint_path(tmp_path / "run", 4)
    newest.write_bytes(newest.read_bytes()[:1000])  # truncated
    state, skipped = ckpt.latest_checkpoint(tmp_path / "run")
    assert state["iteration"] == 2
    assert len(skipped) == 1 and "iter_00000004.pt is corrupt or truncated" in skipped[0]


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tiny_cfg, tmp_path):
    cfg = tiny_cfg("train.optimizer=sgd", "train.lr=1e30", "train.iters=30")
    with pytest.raises(IvrError, match=r"loss is (nan|inf) at iteration \d+; training stopped"):
        train(cfg, tmp_path / "run", show_progress=False)
    for _, path in ckpt.list_checkpoints(tmp_path / "run"):
        state = ckpt.load_checkpoint(path)
        assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_checkpoints_refuse_pickled_code(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pt"
    torch.save({"format": ckpt.FORMAT, "x": Payload()}, path)
    with pytest.raises(IvrError, match="refusing to load"):
        ckpt.load_checkpoint(path)
    path.write_bytes(pickle.dumps({"format": ckpt.FORMAT}))
    with pytest.raises(IvrError):
        ckpt.load_checkpoint(path)


def test_keep_last_prunes_old_checkpoints(tiny_cfg, tmp_path):
    train(tiny_cfg("train.snapshot_every=1", "train.keep_last=2"), tmp_path / "run",
          show_progress=False)
    assert [i for i, _ in ckpt.list_checkpoints(tmp_path / "run")] == [3, 4]


def test_lr_schedules():
    step = TrainConfig(lr=1.0, lr_steps=[10, 20], lr_gamma=0.1, warmup_iters=4, iters=30)
    assert [lr_at(i, step) for i in (0, 3, 9, 10, 19, 20)] == pytest.approx(
        [0.25, 1.0, 1.0, 0.1, 0.1, 0.01])
    cos = TrainConfig(lr=1.0, schedule="cosine", warmup_iters=0, iters=10)
    assert [lr_at(i, cos) for i in (0, 5)] == pytest.approx([1.0, 0.5])
