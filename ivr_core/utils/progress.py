"""Progress display for long loops (rich), silent when disabled or not on a terminal."""

from __future__ import annotations

from typing import Iterable, Iterator, TypeVar

from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)

T = TypeVar("T")


def make_progress(*extra_columns, transient: bool = False) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                    *extra_columns, transient=transient)


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
