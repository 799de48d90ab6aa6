"""Result tables shared by ``ivr test`` and ``ivr demo``."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

# results go to stdout, progress and notes to stderr; long paths are never wrapped
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)



def note(text: str, warning: bool = False) -> None:
    """A note of the core (``on_note``) on stderr; warnings in yellow."""
    err.print(text, style="yellow" if warning else None, markup=False, highlight=False)


HEADLINE = (("inst_ap", "inst AP"), ("inst_ac", "inst AC"), ("cls_ap", "cls AP"),
            ("cls_ac", "cls AC"))


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
        rows = [("final", res)]
        if res.get("modules"):
            rows += [(f"{name} iter {i}", r) for name, chain in res["modules"].items()
                     for i, r in enumerate(chain)]
        elif len(res.get("iterations", [])) > 1:
            rows += [(f"iter {i}", r) for i, r in enumerate(res["iterations"])]
        if "best_candidate" in res:
            rows.append(("best single candidate",
                         {k: v["value"] for k, v in res["best_candidate"].items()}))
            rows.append(("oracle (best candidate per region)", res["oracle"]))
            if "uniform_attention" in res:
                rows.append(("uniform attention (control)", res["uniform_attention"]))
        if "context" in res:
            rows.append(("context classes, final", res["context"]))
            if len(res["context"].get("iterations", [])) > 1:
                rows += [(f"context classes, iter {i}", r)
                         for i, r in enumerate(res["context"]["iterations"])]
        for label, r in rows:
            table.add_row(name, label, *(_fmt(r[key]) for key, _ in HEADLINE))
    return table
