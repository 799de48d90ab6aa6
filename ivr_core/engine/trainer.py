"""The training loop: one image (all its regions) per step, checkpoints, logs, resume.

The data order depends only on (seed, iteration) and the model has no randomness beyond
its seeded init, so a resumed run continues exactly where the checkpoint left off.
"""

from __future__ import annotations

import json
import signal
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import TextColumn
from torch.utils.data import DataLoader

from ivr_core import __version__
from ivr_core.config import Config
from ivr_core.data.dataset import IterationSampler, RegionDataset, load_prepared
from ivr_core.engine import checkpoint as ckpt
from ivr_core.engine.logger import MetricsLog
from ivr_core.engine.optim import lr_at, make_optimizer, set_lr
from ivr_core.engine.runtime import autocast, grad_scaler, setup
from ivr_core.errors import IvrError
from ivr_core.models import build_model, model_from_state
from ivr_core.envinfo import collect as collect_env
from ivr_core.utils.io import write_json, write_text
from ivr_core.utils.progress import make_progress


@dataclass
class TrainResult:
    run_dir: Path
    iterations: int
    checkpoint: Path
    seconds: float
    resumed_from: int = 0


class _StopRequest:
    """SIGINT/SIGTERM set a flag; the loop finishes its step, saves and stops."""

    def __init__(self):
        self.signal: int | None = None

    def __call__(self, signum, frame):
        self.signal = signum


@contextmanager
def _catch_signals(stop: _StopRequest):
    try:
        previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread: leave signal handling alone
        yield
        return
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def check_compatible(state: dict, model_type: str, classes: list[str], source: str) -> None:
    if state["model_type"] != model_type:
        raise IvrError(f"{source} holds a '{state['model_type']}' model, not '{model_type}'; "
                       f"use --model {state['model_type']} or another checkpoint")
    if state["classes"] != classes:
        raise IvrError(f"{source} was trained on {len(state['classes'])} classes but the data "
                       f"has {len(classes)} (or other names); use the data it was trained on")


def train(cfg: Config, run_dir: str | Path, resume: bool = False, show_progress: bool = True,
          console: Console | None = None) -> TrainResult:
    console = console or Console(stderr=True, soft_wrap=True)
    run_dir = Path(run_dir)
    device = setup(cfg.runtime)
    t = cfg.train
    split = load_prepared(cfg.data.dir, cfg.data.train_split, cfg.data.min_count, cfg.data.root,
                          cfg.data.dataset)
    dataset = RegionDataset(split, cfg.data.scale, cfg.data.max_size, flip=cfg.data.flip)
    if len(dataset) == 0:
        raise IvrError(f"{split.path} has no image with regions to train on")

    state = None
    if ckpt.list_checkpoints(run_dir):
        if not resume:
            raise IvrError(f"run folder {run_dir} already holds checkpoints; pass --resume to "
                           "continue it, or choose another --run-dir")
        state, skipped = ckpt.latest_checkpoint(run_dir)
        for note in skipped:
            console.print(f"[yellow]skipped {note}[/]")
        if state is None:
            raise IvrError(f"no checkpoint in {ckpt.checkpoint_dir(run_dir)} could be loaded")
        check_compatible(state, cfg.model.type, split.classes, state["path"])

    torch.manual_seed(t.seed)
    model = (build_model(cfg, split.num_classes) if state is None
             else model_from_state(cfg, state)).to(device)
    optimizer = make_optimizer(model, t)
    scaler = grad_scaler(cfg.runtime, device)
    start = 0
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        if state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng"]["torch"])
        start = state["iteration"]
        console.print(f"resuming {run_dir} from iteration {start} ({state['path']})")
    run_dir.mkdir(parents=True, exist_ok=True)
    for partial in ckpt.remove_partial(run_dir):
        console.print(f"removed {partial.name}, a checkpoint write that was interrupted")
    write_text(run_dir / "config.toml", cfg.to_toml())
    write_json(run_dir / "env.json", dict(collect_env()), indent=1)  # for reports and bug reports
    if start >= t.iters:
        last = ckpt.checkpoint_path(run_dir, start)
        return TrainResult(run_dir, start, Path(state["path"]) if state else last, 0.0, start)

    def snapshot(iteration: int) -> Path:
        path = ckpt.checkpoint_path(run_dir, iteration)
        try:
            ckpt.save_checkpoint(path, {
                "iteration": iteration, "model_type": cfg.model.type, "classes": split.classes,
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scaler": scaler.state_dict(), "config": cfg.to_dict(),
                "rng": {"torch": torch.get_rng_state()}, "ivr_version": __version__})
        except OSError as e:  # disk full, quota, permissions: the previous one is intact
            previous = last_path if last_path.exists() else "none"
            raise IvrError(f"cannot write checkpoint {path} ({e.strerror or e}); the previous "
                           f"checkpoint ({previous}) is intact: free space and continue with "
                           "--resume") from None
        ckpt.prune_checkpoints(run_dir, t.keep_last)
        return path

    loader = DataLoader(dataset, batch_size=None,
                        sampler=IterationSampler(len(dataset), t.seed, start, t.iters),
                        num_workers=cfg.data.workers, pin_memory=device.type == "cuda",
                        prefetch_factor=4 if cfg.data.workers else None)
    log = MetricsLog(run_dir, start)
    stop = _StopRequest()
    skipped_images: set[str] = set()
    updates = 0
    last_path = ckpt.checkpoint_path(run_dir, start)
    began = time.perf_counter()
    model.train()
    progress = make_progress(TextColumn("{task.fields[status]}"))
    with _catch_signals(stop), log, progress if show_progress else _null():
        task = progress.add_task(f"train {cfg.model.type}", total=t.iters, completed=start,
                                 status="")
        it = start
        tick = time.perf_counter()
        try:
            for sample in loader:
                fetched = time.perf_counter()
                if "error" in sample:  # unreadable image: skip the step, say so once
                    it += 1
                    if sample["error"] not in skipped_images:
                        skipped_images.add(sample["error"])
                        console.print(f"[yellow]warning: {sample['error']}; skipped[/]")
                    tick = time.perf_counter()
                    continue
                lr = lr_at(it, t)
                set_lr(optimizer, lr)
                image = sample["image"].to(device, non_blocking=True)[None]
                boxes = sample["boxes"].to(device, non_blocking=True)
                classes = sample["classes"].to(device, non_blocking=True)
                with autocast(cfg.runtime, device):
                    parts = model.losses(model(image, boxes), classes)
                loss = sum(parts.values())
                if not torch.isfinite(loss):
                    raise IvrError(
                        f"loss is {loss.item()} at iteration {it + 1}; training stopped. The "
                        f"last good checkpoint is {last_path if last_path.exists() else 'none'}"
                        "; lower train.lr (or add train.warmup_iters) and --resume")
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                updates += 1
                it += 1
                now = time.perf_counter()
                log.add(loss=loss, parts=parts, lr=lr, step_s=now - tick, data_s=fetched - tick)
                tick = now
                if it % t.log_every == 0 or it == t.iters:
                    record = log.flush(it)
                    progress.update(task, completed=it, status=_status(record))
                if it % t.snapshot_every == 0 or it == t.iters:
                    last_path = snapshot(it)
                if stop.signal is not None:
                    break
        except RuntimeError:
            if stop.signal is None:  # a DataLoader worker died of the signal otherwise
                raise
    if updates == 0 and it > start:
        raise IvrError(f"no training step ran: none of the {len(skipped_images)} images met "
                       "could be read (see the warnings above); check the dataset files")
    if stop.signal is not None:
        if it > start and last_path != ckpt.checkpoint_path(run_dir, it):
            last_path = snapshot(it)
        name = signal.Signals(stop.signal).name
        raise IvrError(f"stopped by {name} at iteration {it}; checkpoint {last_path}; "
                       "continue with the same command and --resume")
    return TrainResult(run_dir, it, last_path, time.perf_counter() - began, start)


def _status(record: dict) -> str:
    parts = " ".join(f"{k} {v:.3f}" for k, v in record["losses"].items())
    return (f"loss {record['loss']:.3f} ({parts}) lr {record['lr']:.2e} "
            f"{record['s_per_iter']:.2f}s/it")


@contextmanager
def _null():
    yield


def read_log(run_dir: str | Path) -> list[dict]:
    path = Path(run_dir) / "log.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
