"""``ivr build-ext``: check the toolchain, build and install the compiled ops, self-check.

Examples::

    ivr build-ext                       # CPU kernels, plus CUDA ones when a toolkit matches torch
    ivr build-ext --cpu-only
    ivr build-ext --cuda --arch "8.0;9.0" --jobs 8
    ivr build-ext --check               # report the toolchain, build nothing
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from ivr_cli.display import err as console
from ivr_core import extension
from ivr_core.errors import IvrError


def build_ext(
    cpu_only: Annotated[bool, typer.Option(help="Build only the CPU kernels.")] = False,
    cuda: Annotated[bool, typer.Option(help="Require the CUDA kernels (fail without a "
                                            "matching toolkit).")] = False,
    arch: Annotated[Optional[str], typer.Option(
        help='CUDA architectures, e.g. "8.0;9.0" [default: TORCH_CUDA_ARCH_LIST, else the '
             "visible GPUs, else 8.0;9.0].")] = None,
    jobs: Annotated[Optional[int], typer.Option(help="Parallel compile jobs (MAX_JOBS).")] = None,
    source: Annotated[Optional[Path], typer.Option(
        help="The ext/ folder [default: the checkout ivr runs from].")] = None,
    log: Annotated[Optional[Path], typer.Option(
        help="Build log file [default: ~/.cache/ivr/build-ext-<time>.log].")] = None,
    check: Annotated[bool, typer.Option(help="Only report the toolchain.")] = False,
) -> None:
    """Build and install the compiled crop_and_resize / paste_and_sum ops.

    Example: ivr build-ext --cuda --arch "8.0;9.0"
    """
    if cpu_only and cuda:
        raise IvrError("--cpu-only and --cuda exclude each other")
    if jobs is not None and jobs < 1:
        raise IvrError("--jobs must be >= 1")
    tc = extension.probe("off" if cpu_only else "on" if cuda else "auto", arch)
    table = Table(title="toolchain", show_header=False)
    for key, value in tc.rows():
        table.add_row(key, value)
    console.print(table)
    for note in tc.notes:
        console.print(f"note: {note}")
    if tc.problems:
        raise IvrError(" ".join(tc.problems))
    if check:
        return
    src = source or extension.source_dir()
    log_path = log or extension.default_log_path()
    console.print(f"building {'CPU + CUDA' if tc.cuda else 'CPU'} kernels from {src} "
                  f"(log: {log_path}) ...")
    with console.status("compiling"):
        extension.build(tc, src, jobs, log_path)
    result = extension.self_check()
    checked = ", ".join(f"{d}: max error {e:.1e}" for d, e in result["devices"].items())
    console.print(f"[green]ivr_ext {result['version']} installed[/]; self-check against the "
                  f"reference passed ({checked})")
