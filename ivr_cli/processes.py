"""``--nproc N``: the same command again, under torchrun.

``ivr train --nproc 4 ...`` runs ``torch.distributed.run --standalone --nproc-per-node 4 -m
ivr_cli train --nproc 4 ...`` (through :func:`torchrun`, which leaves out torchrun's failure
report): torchrun picks a free port, starts the processes with their ranks, stops the
others when one fails and passes signals on. Inside torchrun (``WORLD_SIZE`` is set) the
command runs as one of the processes, which is also how ``torchrun --nproc-per-node 4 -m
ivr_cli train ...`` works.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys

import torch
import typer

SHUTDOWN_S = 600  # after a stop request, each process saves a checkpoint: wait for it
_ARGV = "ivr.argv"  # key of the command line in the context's meta


def remember_argv(ctx: typer.Context, args: list[str]) -> None:
    """Keep the arguments ``ivr`` was called with (after the program name)."""
    ctx.meta[_ARGV] = [str(a) for a in args]


def run_in_processes(ctx: typer.Context, nproc: int) -> None:
    """Return at once when this process should do the work (``nproc`` 1, or already one of
    torchrun's processes); else run this same command under torchrun in ``nproc``
    processes and exit with its exit code."""
    if nproc == 1 or "WORLD_SIZE" in os.environ:
        return
    argv = ctx.meta[_ARGV]
    # "--": torchrun's argparse would read "--nproc" after the module as an ambiguous
    # abbreviation of its own --nproc-per-node and refuse the command line
    command = [sys.executable, "-m", "ivr_cli.processes", "--standalone",
               f"--nproc-per-node={nproc}", f"--shutdown-timeout={SHUTDOWN_S}", "-m", "--",
               "ivr_cli", *argv]
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


def torchrun(args: list[str]) -> int:
    """``torch.distributed.run`` with the command-line ``args``; returns the exit code of
    the first process that failed, else 0. torchrun's own report of a failure (a traceback
    and a table) is left out: each process has said what went wrong, in one line."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    logging.disable(logging.ERROR)  # torchrun's log lines on the failure
    try:
        run(get_args_parser().parse_args(args))
    except ChildFailedError as e:
        code = e.get_first_failure()[1].exitcode
        return code if code > 0 else 128 - code  # -N: killed by signal N
    except SignalException:  # the processes were stopped, each saying where it saved
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(torchrun(sys.argv[1:]))
