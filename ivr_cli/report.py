"""``ivr report``: one self-contained HTML page comparing run folders.

Examples::

    ivr report runs/baseline runs/memory --out report.html
    ivr report runs/memory                     # one run: curves, results, visualizations
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ivr_cli.display import err, out as console
from ivr_core.report import write_report


def report(
    run_dirs: Annotated[list[Path], typer.Argument(
        metavar="RUN_DIR...", help="Run folders to compare; the first is the reference the "
                                   "differences are taken to.", show_default=False)],
    out: Annotated[Path, typer.Option(
        "--out", "-o", help="HTML file to write.")] = Path("report.html"),
    title: Annotated[Optional[str], typer.Option(
        help="Page title [default: the run names].")] = None,
) -> None:
    """Write an HTML report: configs side by side, training curves, results per iteration,
    per-class AP, visualizations and environment, for one run or several.

    Example: ivr report runs/baseline runs/memory --out report.html
    """
    path = write_report(run_dirs, out, title,
                        on_note=lambda text: err.print(f"note: {text}", markup=False,
                                                       highlight=False))
    console.print(f"wrote {path}", markup=False, highlight=False)
