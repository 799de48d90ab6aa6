"""Progress of long loops, on stderr: rich's live bar on a terminal, plain lines elsewhere.

A live bar redraws one line in place. Where stderr is not a terminal (CI, ``nohup``, output
redirected to a file) it cannot: rich would print the bar once, at the end, squeezed to 80
columns. There :class:`LineProgress` prints complete lines instead: one per update that
carries a status (the trainer's logging windows: iteration, losses, lr, s/iter, ETA), and for
counted loops one per tenth of the way, at least every :data:`LINE_EVERY_S` seconds.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, TypeVar

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)

T = TypeVar("T")
LINE_EVERY_S = 30.0  # a counted loop prints a line at least this often
STEPS = 10  # ...and one per tenth of the way


def live(console: Console) -> bool:
    """Whether ``console`` can redraw a bar in place (a terminal, or Jupyter)."""
    return console.is_terminal or console.is_jupyter


def duration(seconds: float) -> str:
    """``h:mm:ss``."""
    h, rest = divmod(int(round(seconds)), 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}"


@dataclass
class _Task:
    description: str
    total: float | None
    completed: float
    fields: dict[str, Any]
    began: float = field(default_factory=time.monotonic)
    first: float = 0.0  # completed when the task began (a resumed run)
    printed_at: float = field(default_factory=time.monotonic)
    printed_step: int = 0  # tenths of the way already printed


class LineProgress:
    """The parts of :class:`rich.progress.Progress` the loops use (``add_task``, ``update``,
    ``advance``, a context manager), printing plain lines to stderr while entered:
    ``train memory 40/800 (5%) loss 0.536 (...) lr 5.04e-04 0.22s/it, elapsed 0:00:09, eta
    0:02:51``."""

    def __init__(self) -> None:
        self._tasks: list[_Task] = []
        self._active = False

    def __enter__(self) -> "LineProgress":
        self._active = True
        return self

    def __exit__(self, *exc) -> None:
        self._active = False

    def add_task(self, description: str, total: float | None = None, completed: float = 0,
                 **fields: Any) -> int:
        self._tasks.append(_Task(description, total, completed, dict(fields), first=completed))
        return len(self._tasks) - 1

    def update(self, task_id: int, *, completed: float | None = None,
               advance: float | None = None, **fields: Any) -> None:
        """Move the task on; print a line when ``fields`` (a status) came with the update,
        else when the loop crossed a tenth of the way or :data:`LINE_EVERY_S` passed."""
        task = self._tasks[task_id]
        if completed is not None:
            task.completed = completed
        task.completed += advance or 0
        task.fields.update(fields)
        step = int(STEPS * task.completed / task.total) if task.total else 0
        due = (bool(fields) or step > task.printed_step
               or time.monotonic() - task.printed_at >= LINE_EVERY_S)
        if due and self._active:
            print(self.line(task), file=sys.stderr, flush=True)
            task.printed_at, task.printed_step = time.monotonic(), step

    def advance(self, task_id: int, advance: float = 1) -> None:
        self.update(task_id, advance=advance)

    @staticmethod
    def line(task: _Task) -> str:
        done, total = int(task.completed), task.total
        parts = [f"{task.description} {done}" + (f"/{int(total)} ({100 * done / total:.0f}%)"
                                                  if total else "")]
        parts += [str(v) for v in task.fields.values() if v not in (None, "")]
        elapsed = time.monotonic() - task.began
        text = " ".join(parts) + f", elapsed {duration(elapsed)}"
        if total and task.completed > task.first and elapsed > 0:
            rate = (task.completed - task.first) / elapsed
            text += f", eta {duration((total - task.completed) / rate)}"
        return text


def make_progress(*extra_columns, transient: bool = False) -> Progress | LineProgress:
    """rich's bar (with ``extra_columns``) on a terminal's stderr, else :class:`LineProgress`
    (whose lines carry the task's fields in place of the extra columns)."""
    console = Console(stderr=True)
    if not live(console):
        return LineProgress()
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                    *extra_columns, console=console, transient=transient)


def status_progress() -> Progress | LineProgress:
    """:func:`make_progress` with a status after the bar: ``update(task, status=text)``."""
    return make_progress(TextColumn("{task.fields[status]}"))


def progress_bar(items: Iterable[T], total: int, description: str,
                 enabled: bool = True) -> Iterator[T]:
    if not enabled:
        yield from items
        return
    with make_progress() as progress:
        task = progress.add_task(description, total=total)
        for item in items:
            yield item
            progress.advance(task)
