"""Everything the training loop starts from: this process's device and world, the data,
the checkpoint resumed from, the model, optimizer and loss scaler, and the run folder's
lock and files (:func:`prepare_training`).

Notes for the user (a resumed run, a skipped checkpoint, an unreadable image) go to an
``on_note(text, warning=False)`` callback, only on the main process; the command line
presents them, :func:`print_note` is the plain default.
"""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ivr_core.config import Config, model_changes
from ivr_core.data.dataset import PreparedSplit, RegionDataset, load_prepared
from ivr_core.engine import checkpoint as ckpt
from ivr_core.engine import distributed
from ivr_core.engine.optim import make_optimizer
from ivr_core.engine.runlock import RunLock
from ivr_core.engine.runtime import compile_dense_parts, grad_scaler
from ivr_core.envinfo import collect as collect_env
from ivr_core.errors import IvrError
from ivr_core.graph.knowledge import load_graph
from ivr_core.models import build_model, model_from_state
from ivr_core.utils.io import write_json, write_text
from ivr_core.utils.outputs import writing


class OnNote(Protocol):
    def __call__(self, text: str, warning: bool = False) -> None: ...


def print_note(text: str, warning: bool = False) -> None:
    """The default ``on_note``: one plain line on stderr."""
    print(text, file=sys.stderr, flush=True)


def _silent(text: str, warning: bool = False) -> None:
    """``on_note`` of the other processes: the main process says it once."""


@dataclass
class Training:
    """What :func:`prepare_training` built for the loop. ``start`` is the iteration the
    run continues from (0 for a new run), ``state`` the checkpoint it was read from."""

    cfg: Config
    run_dir: Path
    device: torch.device
    world: distributed.World
    split: PreparedSplit
    dataset: RegionDataset
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    start: int
    state: dict | None
    note: OnNote


def memory_format(cfg: Config) -> torch.memory_format:
    """The layout of the model's weights and input images (runtime.channels_last)."""
    return torch.channels_last if cfg.runtime.channels_last else torch.contiguous_format


def prepare_training(cfg: Config, run_dir: Path, resume: bool, held: contextlib.ExitStack,
                     on_note: OnNote) -> Training:
    """Set up a run of ``cfg`` in ``run_dir``; the main process takes the folder's lock
    (released when ``held`` closes) before any work if the folder exists, and before the
    first write otherwise, then writes ``config.toml`` and ``env.json``."""
    device, world = distributed.start(cfg.runtime)
    lock = held.enter_context(RunLock(run_dir))
    if world.main and run_dir.is_dir():
        lock.acquire()  # a second run on the folder is refused before any work
    note = on_note if world.main else _silent
    split = load_prepared(cfg.data.dir, cfg.data.train_split, cfg.data.min_count, cfg.data.root,
                          cfg.data.dataset)
    dataset = RegionDataset(split, cfg.data.scale, cfg.data.max_size, flip=cfg.data.flip,
                            max_pixels=cfg.data.max_pixels)
    if len(dataset) == 0:
        raise IvrError(f"{split.path} has no image with regions to train on")
    state = _resume_state(run_dir, resume, cfg, split.classes, note)

    torch.manual_seed(cfg.train.seed)
    if state is not None:
        model = model_from_state(cfg, state)
    else:
        graph = load_graph(split, cfg.graph.file) if cfg.model.type in ("global", "full") else None
        model = build_model(cfg, split.num_classes, graph=graph)
    model = model.to(device).to(memory_format=memory_format(cfg))
    compile_dense_parts(model, cfg.runtime)
    optimizer = make_optimizer(model, cfg.train)
    scaler = grad_scaler(cfg.runtime, device)
    start = 0
    if state is not None:
        _load_optimizer(optimizer, state, cfg)
        if state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng"]["torch"])
        start = state["iteration"]
        note(f"resuming {run_dir} from iteration {start} ({state['path']})")
    if world.main:
        lock.acquire()  # (if not yet) before the first write; creates the folder
        for partial in ckpt.remove_partial(run_dir):
            note(f"removed {partial.name}, a checkpoint write that was interrupted")
        with writing(run_dir, "free space and run the same command again"):
            write_text(run_dir / "config.toml", cfg.to_toml())
            write_json(run_dir / "env.json", dict(collect_env()), indent=1)
    return Training(cfg, run_dir, device, world, split, dataset, model, optimizer, scaler, start,
                    state, note)


def data_parallel(run: Training) -> nn.Module:
    """What runs the steps: the model, or DistributedDataParallel around it with several
    processes."""
    if run.world.size == 1:
        return run.model
    # frozen parameters have requires_grad=False: nothing goes unused, except the update
    # path of a memory model with a single iteration
    cfg, device = run.cfg, run.device
    unused = cfg.model.type == "memory" and cfg.memory.iterations == 1
    return DistributedDataParallel(run.model, device_ids=[device.index] if device.type == "cuda"
                                   else None, find_unused_parameters=unused)


def _resume_state(run_dir: Path, resume: bool, cfg: Config, classes: list[str],
                  note: OnNote) -> dict | None:
    """The newest loadable checkpoint of ``run_dir`` to continue from (None for a new
    run); an IvrError when the folder holds checkpoints but ``resume`` is off, or when
    the checkpoint does not fit ``cfg`` and the data."""
    if not ckpt.list_checkpoints(run_dir):
        return None
    if not resume:
        raise IvrError(f"run folder {run_dir} already holds checkpoints; pass --resume to "
                       "continue it, or choose another --run-dir")
    state, skipped = ckpt.latest_checkpoint(run_dir)
    for text in skipped:
        note(f"skipped {text}", warning=True)
    if state is None:
        raise IvrError(f"no checkpoint in {ckpt.checkpoint_dir(run_dir)} could be loaded")
    ckpt.check_compatible(state, cfg.model.type, classes, state["path"])
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
