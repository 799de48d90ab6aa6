"""``ivr train``: train a model (baseline, memory, global or full) on a prepared split.

Examples::

    ivr train --model baseline --data data/ADE --run-dir runs/res50_baseline
    ivr train --model memory --data data/ADE --run-dir runs/res50_local --set memory.iterations=3
    ivr train --model memory --run-dir runs/res50_local --resume      # continue after a stop
    ivr train --model memory --data data/ADE --nproc 4                 # 4 processes (DDP)
    torchrun --nproc_per_node 4 -m ivr_cli train --model memory        # the same, by torchrun
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from ivr_cli.display import err as console
from ivr_cli.display import note
from ivr_cli.options import ConfigFiles, Device, Quiet, SetItems, resolve
from ivr_cli.processes import run_in_processes
from ivr_core.config import MODEL_TYPES
from ivr_core.engine.trainer import train as run_train
from ivr_core.errors import IvrError
from ivr_core.utils.outputs import output_folder



def train(
    ctx: typer.Context,
    model: Annotated[Optional[str], typer.Option(
        help=f"Model type: {', '.join(MODEL_TYPES)} (model.type).")] = None,
    data: Annotated[Optional[Path], typer.Option(
        help="Folder with the prepared split files (data.dir).")] = None,
    run_dir: Annotated[Optional[Path], typer.Option(
        help="Run folder for checkpoints, logs and config [default: runs/<model>].")] = None,
    iters: Annotated[Optional[int], typer.Option(help="Training iterations (train.iters).")] = None,
    resume: Annotated[bool, typer.Option(
        help="Continue from the newest loadable checkpoint of the run folder.")] = False,
    nproc: Annotated[int, typer.Option(
        help="Processes for DistributedDataParallel (one per GPU; gloo on CPUs); each "
             "takes train.images_per_step images per step.")] = 1,
    images_per_step: Annotated[Optional[int], typer.Option(
        help="Images per step and process, gradients averaged (train.images_per_step).")]
    = None,
    config: ConfigFiles = None,
    set_: SetItems = None,
    device: Device = None,
    quiet: Quiet = False,
) -> None:
    """Train a model; checkpoints and log.jsonl go to the run folder.

    Example: ivr train --model memory --data data/ADE --run-dir runs/local
    """
    if nproc < 1:
        raise IvrError("--nproc must be >= 1")
    cfg = resolve(config, set_, model__type=model, data__dir=str(data) if data else None,
                  train__iters=iters, runtime__device=device,
                  train__images_per_step=images_per_step)
    run_dir = output_folder(run_dir or Path("runs") / cfg.model.type, "--run-dir")
    run_in_processes(ctx, nproc)
    result = run_train(cfg, run_dir, resume=resume, show_progress=not quiet, on_note=note)
    if os.environ.get("RANK", "0") == "0":
        console.print(f"trained {cfg.model.type} to iteration {result.iterations} in "
                      f"{result.seconds:.0f} s; checkpoint {result.checkpoint}")
