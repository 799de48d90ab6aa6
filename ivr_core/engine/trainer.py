"""The training loop: ``train.images_per_step`` images per step and process, checkpoints,
logs, resume, and DistributedDataParallel under torchrun.

The data order depends only on (seed, image position) and the model has no randomness
beyond its seeded init, so a resumed run continues exactly where the checkpoint left off.
Nothing in a step waits for the device: losses and the non-finite check stay on it until a
log or checkpoint iteration.

:mod:`ivr_core.engine.prepare` builds what the loop starts from; here are one step
(:func:`_step`) and the loop (:func:`_loop`), which logs, saves and stops on a signal.
"""

from __future__ import annotations

import contextlib
import signal
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import torch
from torch import nn
from torch.utils.data import DataLoader

from ivr_core import __version__
from ivr_core.config import Config
from ivr_core.data.dataset import IterationSampler
from ivr_core.engine import checkpoint as ckpt
from ivr_core.engine import distributed
from ivr_core.engine.logger import MetricsLog
from ivr_core.engine.optim import lr_at, set_lr
from ivr_core.engine.prepare import (OnNote, Training, data_parallel, memory_format,
                                     prepare_training, print_note)
from ivr_core.engine.runtime import autocast
from ivr_core.errors import IvrError
from ivr_core.models.heads import candidate_names
from ivr_core.utils.progress import status_progress


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


class _NonFinite:
    """Remembers, on the device, whether a step's loss was not finite; read (one sync) only
    at log and checkpoint iterations, and before a bad update could be saved."""

    def __init__(self):
        self.steps: list[tuple[int, torch.Tensor]] = []

    def add(self, iteration: int, loss: torch.Tensor) -> None:
        self.steps.append((iteration, loss.detach()))

    def first(self, world: distributed.World) -> tuple[int, float] | None:
        bad = None
        if self.steps:
            losses = torch.stack([loss for _, loss in self.steps]).float().cpu()
            index = (~torch.isfinite(losses)).nonzero()
            if len(index):
                i = int(index[0])
                bad = (self.steps[i][0], float(losses[i]))
        self.steps.clear()
        if world.any(bad is not None):  # every process stops together
            return bad or (0, float("nan"))
        return None


def train(cfg: Config, run_dir: str | Path, resume: bool = False, show_progress: bool = True,
          on_note: OnNote = print_note) -> TrainResult:
    """Train (or, with ``resume``, continue) a model in ``run_dir``; the main process holds
    the run folder's lock (:class:`~ivr_core.engine.runlock.RunLock`) to the end. Notes for
    the user go to ``on_note`` (see :mod:`ivr_core.engine.prepare`)."""
    with contextlib.ExitStack() as held:
        run = prepare_training(cfg, Path(run_dir), resume, held, on_note)
        if run.start >= cfg.train.iters:
            last = Path(run.state["path"]) if run.state else \
                ckpt.checkpoint_path(run.run_dir, run.start)
            return TrainResult(run.run_dir, run.start, last, 0.0, run.start)
        return _loop(run, show_progress)


class _Images:
    """The samples of each step from the loader; an unreadable image is noted (once) and
    left out. With DDP every process must run a backward: a step without a readable image
    then runs an earlier one with weight 0."""

    def __init__(self, run: Training):
        t, world = run.cfg.train, run.world
        self.per_step, self.note, self.distributed = t.images_per_step, run.note, world.size > 1
        sampler = IterationSampler(len(run.dataset), t.seed, run.start, t.iters,
                                   batch=world.size * self.per_step,
                                   first=world.rank * self.per_step, count=self.per_step)
        workers = run.cfg.data.workers
        self.loader = iter(DataLoader(run.dataset, batch_size=None, sampler=sampler,
                                      num_workers=workers, pin_memory=run.device.type == "cuda",
                                      prefetch_factor=4 if workers else None))
        self.skipped: set[str] = set()
        self.last_good: dict | None = None

    def next_step(self) -> tuple[list[dict], float] | None:
        """The step's samples and each one's loss weight (1 / readable images), or None
        when the step has nothing to train on."""
        samples = [next(self.loader) for _ in range(self.per_step)]
        for s in samples:
            if "error" in s and s["error"] not in self.skipped:
                self.skipped.add(s["error"])
                self.note(f"warning: {s['error']}; skipped", warning=True)
        good = [s for s in samples if "error" not in s]
        self.last_good = good[-1] if good else self.last_good
        if good:
            return good, 1.0 / len(good)
        if self.distributed and self.last_good is not None:
            return [self.last_good], 0.0
        return None


def _step(run: Training, net: nn.Module, batch: list[dict], weight: float, iteration: int,
          log: MetricsLog, nonfinite: _NonFinite) -> None:
    """One update from ``batch``: each image's forward and backward (the gradients, scaled
    by ``weight``, are synchronised across processes at the last one), then the optimizer's
    step. Losses stay on the device."""
    device, model, scaler = run.device, run.model, run.scaler
    for j, sample in enumerate(batch):
        image = sample["image"].to(device, non_blocking=True)[None]
        image = image.contiguous(memory_format=memory_format(run.cfg))
        boxes = sample["boxes"].to(device, non_blocking=True)
        classes = sample["classes"].to(device, non_blocking=True)
        sync = j == len(batch) - 1 or run.world.size == 1
        with contextlib.nullcontext() if sync else net.no_sync():
            with autocast(run.cfg.runtime, device):
                outputs = net(image, boxes)
                parts = model.losses(outputs, classes)
            scaler.scale(sum(parts.values()) * weight).backward()
        if weight:
            loss = sum(parts.values())
            nonfinite.add(iteration + 1, loss)
            log.add(loss=loss, parts=parts, attention=attention_means(outputs))
    scaler.step(run.optimizer)
    scaler.update()


def _loop(run: Training, show_progress: bool) -> TrainResult:
    """Steps from ``run.start`` to ``train.iters``: log every ``train.log_every``, save
    every ``train.snapshot_every`` and at the end; a SIGINT/SIGTERM saves and stops."""
    t, world = run.cfg.train, run.world
    net, images = data_parallel(run), _Images(run)
    log = MetricsLog(run.run_dir, run.start, enabled=world.main)
    if run.state is not None:  # the window open at the checkpoint (a stop between log lines)
        log.restore(run.state.get("log_window"), world, run.device)
    stop, nonfinite, progress = _StopRequest(), _NonFinite(), status_progress()
    it, updates, began = run.start, 0, time.perf_counter()
    last_path = ckpt.checkpoint_path(run.run_dir, run.start)
    run.model.train()
    with _catch_signals(stop), log, progress if show_progress else contextlib.nullcontext():
        task = progress.add_task(f"train {run.cfg.model.type}", total=t.iters,
                                 completed=run.start, status="")
        tick = time.perf_counter()
        try:
            while it < t.iters:
                step = images.next_step()
                fetched = time.perf_counter()
                lr = lr_at(it, t)
                set_lr(run.optimizer, lr)
                # gradients stay allocated between steps (zeroed, not freed): no 650 MB of
                # fresh pages per memory-model step, and a flatter peak
                run.optimizer.zero_grad(set_to_none=False)
                if step is None:  # nothing readable in this step: skip it
                    it += 1
                    tick = time.perf_counter()
                    continue
                _step(run, net, *step, it, log, nonfinite)
                updates += step[1] > 0
                it += 1
                now = time.perf_counter()
                log.time(lr=lr, step_s=now - tick, data_s=fetched - tick)
                tick = now
                save = it % t.snapshot_every == 0 or it == t.iters
                if save or it % t.log_every == 0:
                    _check_finite(nonfinite, world, last_path)  # before anything is saved
                    record = log.flush(it, world)
                    if record:
                        progress.update(task, completed=it, status=_status(record))
                if save:
                    last_path = _snapshot(run, log, it, last_path)
                if world.any(stop.signal is not None):
                    stop.signal = stop.signal or signal.SIGTERM
                    break
        except RuntimeError:
            if stop.signal is None:  # a DataLoader worker died of the signal otherwise
                raise
    if updates == 0 and it > run.start and world.size == 1:
        raise IvrError(f"no training step ran: none of the {len(images.skipped)} images met "
                       "could be read (see the warnings above); check the dataset files")
    if stop.signal is not None:
        _stopped(run, log, nonfinite, it, last_path, stop.signal)
    return TrainResult(run.run_dir, it, last_path, time.perf_counter() - began, run.start)


def _stopped(run: Training, log: MetricsLog, nonfinite: _NonFinite, iteration: int,
             last_path: Path, signum: int) -> NoReturn:
    """After a stop request: save ``iteration`` unless it is saved, and say how to go on."""
    _check_finite(nonfinite, run.world, last_path)
    if iteration > run.start and last_path != ckpt.checkpoint_path(run.run_dir, iteration):
        last_path = _snapshot(run, log, iteration, last_path)
    raise IvrError(f"stopped by {signal.Signals(signum).name} at iteration {iteration}; "
                   f"checkpoint {last_path}; continue with the same command and --resume")


def _check_finite(nonfinite: _NonFinite, world: distributed.World, last_path: Path) -> None:
    bad = nonfinite.first(world)
    if bad is not None:
        raise IvrError(
            f"loss is {bad[1]} at iteration {bad[0]}; training stopped. The last good "
            f"checkpoint is {last_path if last_path.exists() else 'none'}; lower "
            "train.lr (or add train.warmup_iters) and --resume")


def _snapshot(run: Training, log: MetricsLog, iteration: int, previous: Path) -> Path:
    """Save the checkpoint of ``iteration`` (on the main process; every process must call)
    and prune old ones; a failed write names ``previous``, the one still intact."""
    path = ckpt.checkpoint_path(run.run_dir, iteration)
    window = log.window(run.world)  # every process's open logging window
    if not run.world.main:
        return path
    cfg = run.cfg
    try:
        ckpt.save_checkpoint(path, {
            "iteration": iteration, "model_type": cfg.model.type, "classes": run.split.classes,
            "model": run.model.state_dict(), "optimizer": run.optimizer.state_dict(),
            "scaler": run.scaler.state_dict(), "config": cfg.to_dict(),
            "rng": {"torch": torch.get_rng_state()}, "log_window": window,
            "ivr_version": __version__})
    except OSError as e:  # disk full, quota, permissions: the previous one is intact
        previous = previous if previous.exists() else "none"
        raise IvrError(f"cannot write checkpoint {path} ({e.strerror or e}); the previous "
                       f"checkpoint ({previous}) is intact: free space and continue with "
                       "--resume") from None
    ckpt.prune_checkpoints(run.run_dir, cfg.train.keep_last)
    return path


def attention_means(outputs: dict) -> dict[str, torch.Tensor]:
    """The attention's mean weight of each candidate over one image's regions (on the
    device), by candidate name; empty for models without attention."""
    if "attention" not in outputs:
        return {}
    means = outputs["attention"].detach().float().mean(0)
    return dict(zip(candidate_names(outputs["modules"]), means.unbind()))


def _status(record: dict) -> str:
    parts = " ".join(f"{k} {v:.3f}" for k, v in record["losses"].items())
    return (f"loss {record['loss']:.3f} ({parts}) lr {record['lr']:.2e} "
            f"{record['s_per_iter']:.2f}s/it")
