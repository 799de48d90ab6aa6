"""Result tables shared by ``ivr test`` and ``ivr demo``."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from ivr_core.evaluation.metrics import HEADLINE
from ivr_core.evaluation.rows import result_rows

# results go to stdout, progress and notes to stderr; long paths are never wrapped
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def note(text: str, warning: bool = False) -> None:
    """A note of the core (``on_note``) on stderr; warnings in yellow."""
    err.print(text, style="yellow" if warning else None, markup=False, highlight=False)


def _fmt(value: float) -> str:
    return "-" if value != value else f"{value:.3f}"  # NaN -> "-"


def results_table(results: dict[str, dict], title: str) -> Table:
    """One row per (run, output): the final output, each iteration, and the context classes."""
    table = Table(title=title)
    table.add_column("run")
    table.add_column("output")
    for _, label in HEADLINE:
        table.add_column(label, justify="right")
    for name, res in results.items():
        rows = result_rows(res)
        if "context" in res:
            rows += [(f"context classes, {label}", r, key)
                     for label, r, key in result_rows(res["context"], controls=False)]
        for label, r, _ in rows:
            table.add_row(name, label, *(_fmt(r[key]) for key, _ in HEADLINE))
    return table
