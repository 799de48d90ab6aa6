"""``ivr report``: one self-contained HTML page comparing run folders.

The page holds the configs side by side, the training curves, the evaluation tables (final
and per reasoning iteration, with differences to the first run), per-class AP with the
classes that gained and lost most, each run's visualizations and its environment. Images
are embedded as ``data:`` URIs (the visualizations re-encoded at the width they are shown,
each distinct picture once) and the CSS is inline, so the file can be mailed or opened
offline. Runs still training (no ``results.json``) or never trained here (no
``log.jsonl``) are shown as far as they go, with a note on what is missing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterable

from ivr_core.errors import IvrError
from ivr_core.report.collect import Run, load_runs
from ivr_core.report.figures import MAX_FIGURES
from ivr_core.utils.io import atomic_open

__all__ = ["MAX_FIGURES", "Run", "load_runs", "render_report", "write_report"]


def _file_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def render_report(runs: list[Run], title: str | None = None,
                  max_figures: int = MAX_FIGURES) -> str:
    from ivr_core.report.html import render  # matplotlib is imported only when rendering

    return render(runs, title, max_figures)


def write_report(run_dirs: Iterable[str | os.PathLike], out: str | os.PathLike = "report.html",
                 title: str | None = None,
                 on_note: Callable[[str], None] | None = None,
                 max_figures: int = MAX_FIGURES) -> Path:
    """Read ``run_dirs``, render the page and write it atomically to ``out``, with at most
    ``max_figures`` visualizations per run (0: none).

    ``on_note`` receives one line per missing or unreadable file ("run: note"). A run folder
    that does not exist or holds none of the run files is an IvrError naming it.
    """
    if max_figures < 0:
        raise IvrError(f"max_figures must be >= 0, not {max_figures}")
    out = Path(out)
    if out.is_dir():
        raise IvrError(f"--out {out} is a folder; give a file name such as {out / 'report.html'}")
    runs = load_runs(list(run_dirs))
    if on_note:
        for run in runs:
            for text in run.notes:
                on_note(f"{run.name}: {text}")
    page = render_report(runs, title, max_figures)
    try:
        with atomic_open(out, "w", encoding="utf-8") as f:
            try:
                os.fchmod(f.fileno(), _file_mode())  # a page to share, not mkstemp's 0600
            except OSError:
                pass
            f.write(page)
    except OSError as e:
        raise IvrError(f"cannot write {out} ({e.strerror or type(e).__name__}); choose another "
                       "--out") from None
    return out
