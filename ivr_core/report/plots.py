"""Matplotlib figures for ``ivr report``, rendered to PNG bytes with the Agg canvas.

No pyplot: figures are built from :class:`matplotlib.figure.Figure` directly, so nothing
touches matplotlib's global backend or figure registry.
"""

from __future__ import annotations

import io

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ivr_core.report.collect import Run, finite
from ivr_core.utils.figures import literal_text

# one colour per run, the same in every plot and in the page's run legend
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
          "#7f7f7f", "#bcbd22", "#17becf")
SIZE = (4.6, 2.9)  # inches
DPI = 110
LARGEST = 1e100  # values beyond are left out: matplotlib's axis maths overflows near 1e308


def _plottable(value) -> bool:
    return finite(value) and abs(value) <= LARGEST


def color(index: int) -> str:
    return COLORS[index % len(COLORS)]


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def _figure(title: str, xlabel: str, ylabel: str = "") -> tuple[Figure, object]:
    fig = Figure(figsize=SIZE, layout="constrained")
    ax = fig.add_subplot()
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel, fontsize=8)
    if ylabel:
        ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(True, alpha=0.3, linewidth=0.6)
    return fig, ax


def _value(record: dict, quantity: str):
    if quantity.startswith("losses."):
        return (record.get("losses") or {}).get(quantity[len("losses."):])
    return record.get(quantity)


def curve_quantities(runs: list[Run]) -> list[tuple[str, str]]:
    """(key, title) of every logged quantity: total loss, each loss component (in first-seen
    order), lr, s/iter and data wait."""
    components: list[str] = []
    for run in runs:
        for record in run.log:
            for name in (record.get("losses") or {}):
                if name not in components:
                    components.append(name)
    return ([("loss", "total loss")] + [(f"losses.{c}", f"loss: {c}") for c in components]
            + [("lr", "learning rate"), ("s_per_iter", "seconds per iteration"),
               ("data_s", "data wait (s per iteration)")])


@literal_text
def training_curve(runs: list[Run], quantity: str, title: str) -> bytes | None:
    """One line per run that logged ``quantity``; None when no run did."""
    fig, ax = _figure(title, "iteration")
    drawn = 0
    for i, run in enumerate(runs):
        points = [(int(r["iter"]), v) for r in run.log if _plottable(v := _value(r, quantity))]
        if not points:
            continue
        xs, ys = zip(*points)
        ax.plot(xs, ys, color=color(i), linewidth=1.2, label=run.name,
                marker="o" if len(xs) < 30 else None, markersize=2.5)
        drawn += 1
    if not drawn:
        return None
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if quantity == "lr":
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    if len(runs) > 1:  # also when one run logged it: the legend says which
        ax.legend(fontsize=7, frameon=False)
    return _png(fig)


@literal_text
def attention_curve(run: Run) -> bytes | None:
    """The attention's mean weight of each candidate over training (one run): a collapse
    onto one candidate shows as one line going to 1."""
    names: list[str] = []
    for record in run.log:
        names += [n for n in (record.get("attention") or {}) if n not in names]
    if not names:
        return None
    fig, ax = _figure(f"attention: mean weight per candidate, {run.name}", "iteration")
    for j, name in enumerate(names):
        points = [(int(r["iter"]), v) for r in run.log
                  if _plottable(v := (r.get("attention") or {}).get(name))]
        if points:
            xs, ys = zip(*points)
            ax.plot(xs, ys, color=color(j), linewidth=1.2, label=name,
                    marker="o" if len(xs) < 30 else None, markersize=2.5)
    ax.set_ylim(0, 1)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=7, frameon=False, ncol=2)
    return _png(fig)


@literal_text
def sorted_class_ap(runs: list[Run]) -> bytes | None:
    """Per-class AP of each evaluated run, sorted from best to worst class."""
    fig, ax = _figure("per-class AP, sorted", "class rank (best first)", "AP")
    drawn = 0
    for i, run in enumerate(runs):
        per_class = (run.results or {}).get("per_class") or {}
        aps = sorted((v["ap"] for v in per_class.values()
                      if isinstance(v, dict) and _plottable(v.get("ap"))), reverse=True)
        if not aps:
            continue
        mean = sum(aps) / len(aps)
        ax.plot(range(1, len(aps) + 1), aps, color=color(i), linewidth=1.4,
                marker="o" if len(aps) < 30 else None, markersize=3,
                label=f"{run.name} (mean {mean:.3f})")
        drawn += 1
    if not drawn:
        return None
    ax.set_ylim(-0.02, 1.02)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=7, frameon=False)
    return _png(fig)


@literal_text
def class_changes(gains: list[tuple[str, float]], title: str) -> bytes | None:
    """Horizontal bars of per-class AP differences (gains up, losses down)."""
    gains = [(name, d) for name, d in gains if _plottable(d)]
    if not gains:
        return None
    fig = Figure(figsize=(SIZE[0], max(1.6, 0.22 * len(gains) + 0.8)), layout="constrained")
    ax = fig.add_subplot()
    names = [n if len(n) <= 28 else n[:27] + "…" for n, _ in gains]
    values = [d for _, d in gains]
    ax.barh(range(len(gains)), values,
            color=["#2ca02c" if d >= 0 else "#d62728" for d in values])
    ax.set_yticks(range(len(gains)), names, fontsize=7)
    ax.invert_yaxis()
    ax.axvline(0, color="black", linewidth=0.6)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("AP difference", fontsize=8)
    ax.tick_params(axis="x", labelsize=7)
    lim = max(abs(v) for v in values) or 1.0
    ax.set_xlim(-lim * 1.1 if min(values) < 0 else 0, lim * 1.1 if max(values) > 0 else 0.01)
    ax.grid(True, axis="x", alpha=0.3, linewidth=0.6)
    return _png(fig)


__all__ = ["COLORS", "class_changes", "color", "curve_quantities", "sorted_class_ap",
           "training_curve"]
