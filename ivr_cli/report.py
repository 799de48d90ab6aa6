"""``ivr report``: one self-contained HTML page comparing run folders.

Examples::

    ivr report runs/baseline runs/memory --out report.html
    ivr report runs/memory                     # one run: curves, results, visualizations
    ivr report runs/* --max-figures 8          # a lighter page: 8 figures per run
    ivr report runs/baseline runs/memory --no-figures
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ivr_cli.display import err, out as console
from ivr_core.report import MAX_FIGURES, write_report


def report(
    run_dirs: Annotated[list[Path], typer.Argument(
        metavar="RUN_DIR...", help="Run folders to compare; the first is the reference the "
                                   "differences are taken to.", show_default=False)],
    out: Annotated[Path, typer.Option(
        "--out", "-o", help="HTML file to write.")] = Path("report.html"),
    title: Annotated[Optional[str], typer.Option(
        help="Page title [default: the run names].")] = None,
    max_figures: Annotated[int, typer.Option(
        metavar="N", min=0, help="Embed at most N visualizations (ivr test --visualize) per "
                                 "run; the page says how many were left out.")] = MAX_FIGURES,
    no_figures: Annotated[bool, typer.Option(
        "--no-figures", help="Embed no visualizations (same as --max-figures 0); the plots "
                             "stay.")] = False,
) -> None:
    """Write an HTML report: configs side by side, training curves, results per iteration,
    per-class AP, visualizations and environment, for one run or several.

    Example: ivr report runs/baseline runs/memory --out report.html
    """
    path = write_report(run_dirs, out, title,
                        on_note=lambda text: err.print(f"note: {text}", markup=False,
                                                       highlight=False),
                        max_figures=0 if no_figures else max_figures)
    console.print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)", markup=False,
                  highlight=False)
