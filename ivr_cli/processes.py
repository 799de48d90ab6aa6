"""``--nproc N``: the same command again, under torchrun.

``ivr train --nproc 4 ...`` runs ``python -m torch.distributed.run --standalone
--nproc-per-node 4 -m ivr_cli train --nproc 4 ...``: torchrun picks a free port, starts the
processes with their ranks, stops the others when one fails and passes signals on. Inside
torchrun (``WORLD_SIZE`` is set) the command runs as one of the processes, which is also how
``torchrun --nproc-per-node 4 -m ivr_cli train ...`` works.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import click
import torch
import typer

_ARGV = "ivr.argv"  # key of the command line in click's context


def remember_argv(ctx: click.Context, args: list[str]) -> None:
    """Keep the arguments ``ivr`` was called with (after the program name)."""
    ctx.meta[_ARGV] = [str(a) for a in args]


def run_in_processes(nproc: int) -> None:
    """Return at once when this process should do the work (``nproc`` 1, or already one of
    torchrun's processes); else run this same command under torchrun in ``nproc``
    processes and exit with its exit code."""
    if nproc == 1 or "WORLD_SIZE" in os.environ:
        return
    argv = click.get_current_context().meta[_ARGV]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc-per-node={nproc}", "-m", "ivr_cli", *argv]
    # torchrun would give each process one thread; keep what a single process has
    env = {"OMP_NUM_THREADS": str(torch.get_num_threads()), **os.environ}
    # its own process group: a Ctrl-C reaches torchrun once, from here, and torchrun stops
    # the processes in order (each saves a checkpoint and says where)
    launcher = subprocess.Popen(command, env=env, process_group=0)

    def forward(signum, frame):
        launcher.send_signal(signum)

    signals = (signal.SIGINT, signal.SIGTERM)
    previous = {s: signal.signal(s, forward) for s in signals}
    try:
        code = launcher.wait()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    raise typer.Exit(code if code >= 0 else 128 - code)
