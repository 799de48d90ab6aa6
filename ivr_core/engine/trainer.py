"""The training loop: ``train.images_per_step`` images per step and process, checkpoints,
logs, resume, and DistributedDataParallel under torchrun.

The data order depends only on (seed, image position) and the model has no randomness
beyond its seeded init, so a resumed run continues exactly where the checkpoint left off.
Nothing in a step waits for the device: losses and the non-finite check stay on it until a
log or checkpoint iteration.
"""

from __future__ import annotations

import contextlib
import json
import signal
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import TextColumn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from ivr_core import __version__
from ivr_core.config import Config, model_changes
from ivr_core.data.dataset import IterationSampler, RegionDataset, load_prepared
from ivr_core.engine import checkpoint as ckpt
from ivr_core.engine import distributed
from ivr_core.engine.logger import MetricsLog
from ivr_core.engine.optim import lr_at, make_optimizer, set_lr
from ivr_core.engine.runlock import RunLock
from ivr_core.engine.runtime import autocast, compile_dense_parts, grad_scaler, setup
from ivr_core.envinfo import collect as collect_env
from ivr_core.graph.knowledge import load_graph
from ivr_core.errors import IvrError
from ivr_core.models import build_model, model_from_state
from ivr_core.models.heads import candidate_names
from ivr_core.utils.io import write_json, write_text
from ivr_core.utils.outputs import writing
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


def _resume_state(run_dir: Path, resume: bool, cfg: Config, classes: list[str],
                  console: Console) -> dict | None:
    if not ckpt.list_checkpoints(run_dir):
        return None
    if not resume:
        raise IvrError(f"run folder {run_dir} already holds checkpoints; pass --resume to "
                       "continue it, or choose another --run-dir")
    state, skipped = ckpt.latest_checkpoint(run_dir)
    for note in skipped:
        console.print(f"skipped {note}", style="yellow", markup=False, highlight=False)
    if state is None:
        raise IvrError(f"no checkpoint in {ckpt.checkpoint_dir(run_dir)} could be loaded")
    check_compatible(state, cfg.model.type, classes, state["path"])
    saved = state["config"].get("train", {}).get("optimizer")
    if saved != cfg.train.optimizer:
        raise IvrError(f"{state['path']} was trained with train.optimizer = {saved}, not "
                       f"{cfg.train.optimizer}; resume with --set train.optimizer={saved}, or "
                       "start a new --run-dir")
    for part in ("optimizer", "rng"):
        if not isinstance(state.get(part), dict):
            raise IvrError(f"cannot resume from {state['path']}: it holds no {part} state")
    return state


def _load_optimizer(optimizer: torch.optim.Optimizer, state: dict, cfg: Config) -> None:
    """The checkpoint's optimizer state (momenta, step counts) with the hyperparameters of
    ``cfg`` (the resumed run's config.toml); parameter groups that do not fit are an
    IvrError naming the model settings that changed."""
    saved = state["optimizer"]
    groups = [dict(fresh, params=old["params"]) for fresh, old in
              zip(optimizer.state_dict()["param_groups"], saved.get("param_groups", []))]
    try:
        optimizer.load_state_dict({"state": saved.get("state", {}), "param_groups": groups})
    except (ValueError, KeyError, TypeError) as e:
        why = ", ".join(model_changes(state["config"], cfg)) or " ".join(str(e).split())[:200]
        raise IvrError(f"the optimizer state of {state['path']} does not fit the model the "
                       f"config builds: {why}; leave the checkpoint's model settings as they "
                       "are") from None


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
          console: Console | None = None) -> TrainResult:
    """Train (or, with ``resume``, continue) a model in ``run_dir``; the main process holds
    the run folder's lock (:class:`~ivr_core.engine.runlock.RunLock`) to the end."""
    with contextlib.ExitStack() as held:
        return _train(cfg, run_dir, resume, show_progress, console, held)


def _train(cfg: Config, run_dir: str | Path, resume: bool, show_progress: bool,
           console: Console | None, held: contextlib.ExitStack) -> TrainResult:
    run_dir = Path(run_dir)
    device = setup(cfg.runtime)
    world = distributed.init(device.type)
    lock = held.enter_context(RunLock(run_dir))
    if world.main and run_dir.is_dir():
        lock.acquire()  # a second run on the folder is refused before any work
    if world.size > 1 and device.type == "cuda":
        device = torch.device("cuda", world.local_rank)
    console = console or Console(stderr=True, soft_wrap=True)
    if not world.main:
        console, show_progress = Console(quiet=True), False
    t = cfg.train
    split = load_prepared(cfg.data.dir, cfg.data.train_split, cfg.data.min_count, cfg.data.root,
                          cfg.data.dataset)
    dataset = RegionDataset(split, cfg.data.scale, cfg.data.max_size, flip=cfg.data.flip,
                            max_pixels=cfg.data.max_pixels)
    if len(dataset) == 0:
        raise IvrError(f"{split.path} has no image with regions to train on")
    state = _resume_state(run_dir, resume, cfg, split.classes, console)

    torch.manual_seed(t.seed)
    if state is not None:
        model = model_from_state(cfg, state)
    else:
        graph = load_graph(split, cfg.graph.file) if cfg.model.type in ("global", "full") else None
        model = build_model(cfg, split.num_classes, graph=graph)
    model = model.to(device)
    memory_format = torch.channels_last if cfg.runtime.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    compile_dense_parts(model, cfg.runtime)
    optimizer = make_optimizer(model, t)
    scaler = grad_scaler(cfg.runtime, device)
    start = 0
    if state is not None:
        _load_optimizer(optimizer, state, cfg)
        if state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng"]["torch"])
        start = state["iteration"]
        console.print(f"resuming {run_dir} from iteration {start} ({state['path']})")
    if world.main:
        lock.acquire()  # (if not yet) before the first write; creates the folder
        for partial in ckpt.remove_partial(run_dir):
            console.print(f"removed {partial.name}, a checkpoint write that was interrupted")
        with writing(run_dir, "free space and run the same command again"):
            write_text(run_dir / "config.toml", cfg.to_toml())
            write_json(run_dir / "env.json", dict(collect_env()), indent=1)
    if start >= t.iters:
        last = ckpt.checkpoint_path(run_dir, start)
        return TrainResult(run_dir, start, Path(state["path"]) if state else last, 0.0, start)

    net = model
    if world.size > 1:  # frozen parameters have requires_grad=False: nothing goes unused,
        # except the update path of a memory model with a single iteration
        unused = cfg.model.type == "memory" and cfg.memory.iterations == 1
        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda"
                                      else None, find_unused_parameters=unused)

    def snapshot(iteration: int) -> Path:
        path = ckpt.checkpoint_path(run_dir, iteration)
        window = log.window(world)  # every process's open logging window
        if not world.main:
            return path
        try:
            ckpt.save_checkpoint(path, {
                "iteration": iteration, "model_type": cfg.model.type, "classes": split.classes,
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scaler": scaler.state_dict(), "config": cfg.to_dict(),
                "rng": {"torch": torch.get_rng_state()}, "log_window": window,
                "ivr_version": __version__})
        except OSError as e:  # disk full, quota, permissions: the previous one is intact
            previous = last_path if last_path.exists() else "none"
            raise IvrError(f"cannot write checkpoint {path} ({e.strerror or e}); the previous "
                           f"checkpoint ({previous}) is intact: free space and continue with "
                           "--resume") from None
        ckpt.prune_checkpoints(run_dir, t.keep_last)
        return path

    per_step = t.images_per_step
    sampler = IterationSampler(len(dataset), t.seed, start, t.iters, batch=world.size * per_step,
                               first=world.rank * per_step, count=per_step)
    loader = iter(DataLoader(dataset, batch_size=None, sampler=sampler,
                             num_workers=cfg.data.workers, pin_memory=device.type == "cuda",
                             prefetch_factor=4 if cfg.data.workers else None))
    log = MetricsLog(run_dir, start, enabled=world.main)
    if state is not None:  # the window open at the checkpoint (a stop between log lines)
        log.restore(state.get("log_window"), world, device)
    stop, nonfinite = _StopRequest(), _NonFinite()
    skipped_images: set[str] = set()
    updates, last_good = 0, None
    last_path = ckpt.checkpoint_path(run_dir, start)
    began = time.perf_counter()
    model.train()
    progress = make_progress(TextColumn("{task.fields[status]}"))

    def check_finite() -> None:
        bad = nonfinite.first(world)
        if bad is not None:
            raise IvrError(
                f"loss is {bad[1]} at iteration {bad[0]}; training stopped. The last good "
                f"checkpoint is {last_path if last_path.exists() else 'none'}; lower "
                "train.lr (or add train.warmup_iters) and --resume")

    def one_image(sample: dict, weight: float, sync: bool) -> dict:
        image = sample["image"].to(device, non_blocking=True)[None]
        image = image.contiguous(memory_format=memory_format)
        boxes = sample["boxes"].to(device, non_blocking=True)
        classes = sample["classes"].to(device, non_blocking=True)
        with contextlib.nullcontext() if sync or world.size == 1 else net.no_sync():
            with autocast(cfg.runtime, device):
                outputs = net(image, boxes)
                parts = model.losses(outputs, classes)
            scaler.scale(sum(parts.values()) * weight).backward()
        return parts, outputs

    with _catch_signals(stop), log, progress if show_progress else _null():
        task = progress.add_task(f"train {cfg.model.type}", total=t.iters, completed=start,
                                 status="")
        it = start
        tick = time.perf_counter()
        try:
            while it < t.iters:
                samples = [next(loader) for _ in range(per_step)]
                fetched = time.perf_counter()
                for s in samples:
                    if "error" in s and s["error"] not in skipped_images:
                        skipped_images.add(s["error"])
                        console.print(f"[yellow]warning: {s['error']}; skipped[/]")
                good = [s for s in samples if "error" not in s]
                last_good = good[-1] if good else last_good
                lr = lr_at(it, t)
                set_lr(optimizer, lr)
                # gradients stay allocated between steps (zeroed, not freed): no 650 MB of
                # fresh pages per memory-model step, and a flatter peak
                optimizer.zero_grad(set_to_none=False)
                if not good and (world.size == 1 or last_good is None):
                    it += 1  # nothing readable in this step: skip it
                    tick = time.perf_counter()
                    continue
                # with DDP every process must run a backward: an unreadable image is replaced
                # by an earlier one with weight 0
                batch = good or [last_good]
                weight = 1.0 / len(good) if good else 0.0
                for j, sample in enumerate(batch):
                    parts, outputs = one_image(sample, weight, sync=j == len(batch) - 1)
                    if good:
                        loss = sum(parts.values())
                        nonfinite.add(it + 1, loss)
                        log.add(loss=loss, parts=parts, attention=attention_means(outputs))
                scaler.step(optimizer)
                scaler.update()
                updates += bool(good)
                it += 1
                now = time.perf_counter()
                log.time(lr=lr, step_s=now - tick, data_s=fetched - tick)
                tick = now
                save = it % t.snapshot_every == 0 or it == t.iters
                if save or it % t.log_every == 0:
                    check_finite()  # before anything is saved
                    record = log.flush(it, world)
                    if record:
                        progress.update(task, completed=it, status=_status(record))
                if save:
                    last_path = snapshot(it)
                if world.any(stop.signal is not None):
                    stop.signal = stop.signal or signal.SIGTERM
                    break
        except RuntimeError:
            if stop.signal is None:  # a DataLoader worker died of the signal otherwise
                raise
    if updates == 0 and it > start and world.size == 1:
        raise IvrError(f"no training step ran: none of the {len(skipped_images)} images met "
                       "could be read (see the warnings above); check the dataset files")
    if stop.signal is not None:
        check_finite()
        if it > start and last_path != ckpt.checkpoint_path(run_dir, it):
            last_path = snapshot(it)
        name = signal.Signals(stop.signal).name
        raise IvrError(f"stopped by {name} at iteration {it}; checkpoint {last_path}; "
                       "continue with the same command and --resume")
    return TrainResult(run_dir, it, last_path, time.perf_counter() - began, start)


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


@contextmanager
def _null():
    yield


def read_log(run_dir: str | Path) -> list[dict]:
    path = Path(run_dir) / "log.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
