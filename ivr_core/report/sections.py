"""What each section of the report page shows, prepared for the templates.

Every function takes the runs and returns plain values: strings, numbers, lists and the
small records below. Nothing here is HTML: the template (``templates/``) escapes every
string it prints, so a class name, config value or folder name is always shown as text.
Runs are referred to by their index in the list given to ``ivr report``; the template
draws each with its colour and name.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any, Callable, NamedTuple

from ivr_core.evaluation.metrics import HEADLINE
from ivr_core.evaluation.rows import result_rows
from ivr_core.report import plots
from ivr_core.report.collect import Run, finite, flat_config
from ivr_core.report.figures import data_uri
from ivr_core.utils.progress import duration

NONE = "–"  # shown for a value that is absent or not a number


class Note(NamedTuple):
    """One line of a note box: text, then (optionally) a command shown as code."""

    text: str
    code: str = ""


class Delta(NamedTuple):
    """A difference to the reference run, shown small after a value."""

    text: str  # "+0.034"
    kind: str  # "up", "down" or "same" (its colour)
    title: str = ""  # what was subtracted, as a tooltip


class Value(NamedTuple):
    """A number in a table and, in a later run, its difference to the first."""

    text: str
    delta: Delta | None = None


class Plot(NamedTuple):
    src: str  # data: URI of a PNG
    alt: str


class Row(NamedTuple):
    """One key of a side-by-side table (config, environment)."""

    key: str
    values: list[str | None]  # per shown run; None: the run has no such key
    differs: bool
    new_section: bool  # the first key of another config section: a rule above it


class SideBySide(NamedTuple):
    columns: list[int]  # the runs that have the file
    missing: list[Note]
    rows: list[Row]
    differing: list[str]


# --- formatting ---------------------------------------------------------------------------

def f3(value: Any) -> str:
    return f"{value:.3f}" if finite(value) else NONE


def delta(value: Any, ref: Any, title: str = "") -> Delta | None:
    """``+0.034`` (up), ``-0.012`` (down), ``0.000`` (same); None when either is not a number."""
    if not (finite(value) and finite(ref)):
        return None
    d = round(value - ref, 3)
    if d == 0:
        return Delta("0.000", "same", title)
    return Delta(f"{d:+.3f}", "up" if d > 0 else "down", title)


def value_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value if value else '""'
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


def plot(png: bytes | None, alt: str) -> list[Plot]:
    """A one-item list for a drawn plot, empty when there was nothing to draw."""
    return [Plot(data_uri("image/png", png), alt)] if png else []


# --- runs, configuration, environment -----------------------------------------------------

def overview(runs: list[Run]) -> list[dict]:
    """Per run: folder, model, how far training got, checkpoints, evaluation, notes; a
    missing part is None (shown greyed)."""
    rows = []
    for i, run in enumerate(runs):
        flat = flat_config(run.config)
        model = flat.get("model.type") or (run.results or {}).get("model_type") or "?"
        if flat.get("model.backbone"):
            model = f"{model} ({flat['model.backbone']})"
        training = None
        if run.log:
            last, total = int(run.log[-1]["iter"]), flat.get("train.iters")
            training = f"iteration {last}" + (
                f" of {total} ({100 * last / total:.0f}%)" if finite(total) and total else "")
        res = run.results
        rows.append({
            "run": i, "folder": str(run.path), "model": str(model), "training": training,
            "checkpoints": (f"{len(run.checkpoints)}, newest iter {run.checkpoints[-1][0]}"
                            if run.checkpoints else None),
            "evaluation": (f"{res.get('split', '?')} split, iteration {res.get('iteration', '?')}"
                           f", {res.get('num_images', '?')} images" if res else None),
            "notes": list(run.notes)})
    return rows


def side_by_side(tables: list[dict[str, Any]], columns: list[int], runs: list[Run],
                 file: str) -> SideBySide:
    """Keys x runs for the runs ``columns`` whose ``file`` was read (``tables``, one dict
    each); a key differs when its values differ or some run lacks it."""
    missing = [Note(f"{runs[i].name}: no readable {file}") for i in range(len(runs))
               if i not in columns]
    keys = list(dict.fromkeys(k for table in tables for k in table))
    rows, differing, previous = [], [], None
    for key in keys:
        present = [t[key] for t in tables if key in t]
        differs = len(columns) > 1 and (len(present) < len(tables) or len(
            {json.dumps(v, sort_keys=True, default=str) for v in present}) > 1)
        section = key.split(".", 1)[0] if "." in key else None
        if differs:
            differing.append(key)
        rows.append(Row(key, [value_text(t[key]) if key in t else None for t in tables],
                        differs, previous is not None and section != previous))
        previous = section
    return SideBySide(columns, missing, rows, differing)


def config(runs: list[Run]) -> SideBySide:
    columns = [i for i, r in enumerate(runs) if r.config is not None]
    return side_by_side([flat_config(runs[i].config) for i in columns], columns, runs,
                        "config.toml")


def environment(runs: list[Run]) -> SideBySide:
    columns = [i for i, r in enumerate(runs) if r.env is not None]
    return side_by_side([runs[i].env for i in columns], columns, runs, "env.json")


# --- training -----------------------------------------------------------------------------

def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def _training_row(i: int, log: list[dict]) -> dict:
    step = [r["s_per_iter"] for r in log if finite(r.get("s_per_iter"))]
    data = [r["data_s"] for r in log if finite(r.get("data_s"))]
    times = [r["time"] for r in log if finite(r.get("time"))]
    mean_step, mean_data = _mean(step), _mean(data)
    return {
        "run": i, "records": len(log),
        "iterations": f"{int(log[0]['iter'])}–{int(log[-1]['iter'])}",
        "loss": f3(log[-1].get("loss")),
        "lr": f"{log[-1]['lr']:.3g}" if finite(log[-1].get("lr")) else NONE,
        "step": f3(mean_step), "data": f3(mean_data),
        "share": f"{100 * mean_data / mean_step:.0f}%" if step and data and mean_step > 0
        else NONE,
        "span": duration(times[-1] - times[0]) if len(times) > 1 else NONE,
        "last": time.strftime("%Y-%m-%d %H:%M", time.localtime(times[-1])) if times else NONE}


def training(runs: list[Run]) -> dict:
    """Per logged run: records, iteration span, last loss and lr, time per step and data
    wait; the training curves of every logged quantity."""
    missing = [Note(f"{r.name}: no training log (log.jsonl missing or empty)")
               for r in runs if not r.log]
    rows = [_training_row(i, r.log) for i, r in enumerate(runs) if r.log]
    curves = []
    if rows:
        for key, title in plots.curve_quantities(runs):
            curves += plot(plots.training_curve(runs, key, title), title)
        for run in runs:
            curves += plot(plots.attention_curve(run), f"attention of {run.name}")
    return {"missing": missing, "rows": rows, "curves": curves}


# --- evaluation ---------------------------------------------------------------------------

def _reference(res: dict | None, key: str) -> tuple[dict | None, str]:
    """The first run's row to compare with: the same row, else its final output."""
    if not res:
        return None, ""
    if key.startswith("iter "):
        iterations = res.get("iterations") or []
        i = int(key.split()[1])
        if i < len(iterations):
            return iterations[i], key
    if key == "oracle" and isinstance(res.get("oracle"), dict):
        return res["oracle"], key
    if key == "uniform" and isinstance(res.get("uniform_attention"), dict):
        return res["uniform_attention"], key
    return res, "final"


def metrics_table(runs: list[Run], shown: list[int], pick: Callable[[Run], dict],
                  ref_name: str) -> list[dict]:
    """The headline metrics of the final output and per iteration of the runs ``shown``;
    the later runs carry their difference to the first one's matching row. Each row:
    ``run`` (index, on a run's first row only), ``label``, ``cells`` (Values), ``first``."""
    first = pick(runs[shown[0]])
    rows = []
    for n, i in enumerate(shown):
        for j, (label, metrics, key) in enumerate(result_rows(pick(runs[i]))):
            ref, ref_key = _reference(first, key) if n > 0 else (None, "")
            cells = [Value(f3(metrics.get(name)),
                           delta(metrics.get(name), ref.get(name),
                                 f"{title} minus {ref_name} {ref_key}") if ref else None)
                     for name, title in HEADLINE]
            rows.append({"run": i if j == 0 else None, "label": label, "cells": cells,
                         "first": j == 0 and n > 0})
    return rows


def evaluation(runs: list[Run]) -> dict:
    """What was evaluated where, the headline metrics per output and iteration with their
    differences to the first evaluated run, and the same on the context classes."""
    evaluated = [i for i, r in enumerate(runs) if r.results]
    notes = [Note(f"{r.name}: no results.json — evaluate it with",
                  f"ivr test --run-dir {r.path}") for r in runs if not r.results]
    if not evaluated:
        return {"evaluated": [], "notes": notes}
    info = [{"run": i, "values": [str(runs[i].results.get(k, NONE)) for k in (
                "split", "iteration", "num_images", "num_regions", "num_classes_present")],
             "iterations": len(runs[i].results.get("iterations") or []),
             "checkpoint": str(runs[i].results.get("checkpoint", NONE))} for i in evaluated]
    if len({(runs[i].results.get("split"), runs[i].results.get("num_regions"))
            for i in evaluated}) > 1:
        notes.append(Note("the runs were evaluated on different splits or region counts: "
                          "their differences do not compare like with like"))
    base = runs[evaluated[0]].name
    with_context = [i for i in evaluated if runs[i].results.get("context")]
    context = None
    if with_context:
        first = runs[with_context[0]]
        context = {"classes": ", ".join(map(str, first.results["context"].get("classes") or [])),
                   "count": len(first.results["context"].get("classes") or []),
                   "table": metrics_table(runs, with_context, lambda r: r.results["context"],
                                          first.name),
                   "missing": [Note(f"{runs[i].name}: no context-class results")
                               for i in evaluated if i not in with_context]}
    return {"evaluated": evaluated, "notes": notes, "info": info, "base": base,
            "table": metrics_table(runs, evaluated, lambda r: r.results, base),
            "context": context}


# --- per-class AP, knowledge graph --------------------------------------------------------

TOP_CHANGES = 10  # classes listed as gained and as lost most
OPEN_CLASSES = 40  # the table of every class starts unfolded up to this many classes
TOP_EDGES = 8  # strongest edges shown per edge type


def _per_class(run: Run) -> dict[str, dict]:
    per_class = ((run.results or {}).get("per_class")) or {}
    return {str(k): v for k, v in per_class.items() if isinstance(v, dict)}


def class_changes(a: Run, b: Run) -> tuple[list, list, int]:
    """(gained, lost, compared): classes with an AP in both runs, ranked by b - a; each
    entry (name, difference, a's metrics, b's metrics)."""
    pa, pb = _per_class(a), _per_class(b)
    both = [(name, pb[name]["ap"] - pa[name]["ap"], pa[name], pb[name])
            for name in pa if name in pb and finite(pa[name].get("ap"))
            and finite(pb[name].get("ap"))]
    gained = sorted((c for c in both if c[1] > 0), key=lambda c: (-c[1], c[0]))[:TOP_CHANGES]
    lost = sorted((c for c in both if c[1] < 0), key=lambda c: (c[1], c[0]))[:TOP_CHANGES]
    return gained, lost, len(both)


def _change_rows(changes: list) -> list[dict]:
    return [{"name": name, "count": str(va.get("count", NONE)), "a": f3(va.get("ap")),
             "b": f3(vb.get("ap")), "delta": delta(vb.get("ap"), va.get("ap"))}
            for name, _, va, vb in changes]


def _changes(runs: list[Run]) -> tuple[dict | None, list[Plot], list[Note]]:
    """The classes the second run gained and lost most against the first."""
    if len(runs) < 2:
        return None, [], []
    a, b = runs[0], runs[1]
    if not (_per_class(a) and _per_class(b)):
        return None, [], [Note("the classes that gained and lost most need per-class results "
                               f"in both {a.name} and {b.name}")]
    gained, lost, compared = class_changes(a, b)
    bars = plots.class_changes([(n, d) for n, d, _, _ in gained]
                               + [(n, d) for n, d, _, _ in reversed(lost)],
                               f"AP change, {b.name} vs {a.name}")
    return ({"a": a.name, "b": b.name, "compared": compared, "top": TOP_CHANGES,
             "gained": _change_rows(gained), "lost": _change_rows(lost)},
            plot(bars, "AP change per class"), [])


def _all_classes(runs: list[Run], evaluated: list[int]) -> dict:
    """Every class, sorted by the first evaluated run's AP, with each run's AP and AC."""
    per_class = {i: _per_class(runs[i]) for i in evaluated}
    first = per_class[evaluated[0]]
    names = list(dict.fromkeys(n for i in evaluated for n in per_class[i]))
    names.sort(key=lambda n: (-first[n]["ap"] if n in first and finite(first[n].get("ap"))
                              else math.inf, n))
    rows = []
    for name in names:
        count = next((per_class[i][name].get("count") for i in evaluated
                      if name in per_class[i]), NONE)
        cells = []
        for k, i in enumerate(evaluated):
            v = per_class[i].get(name, {})
            cells += [Value(f3(v.get("ap")), delta(v.get("ap"), first.get(name, {}).get("ap"))
                            if k > 0 else None), Value(f3(v.get("ac")))]
        rows.append({"name": name, "count": str(count), "cells": cells})
    return {"first": runs[evaluated[0]].name, "runs": evaluated, "rows": rows,
            "open": len(names) <= OPEN_CLASSES, "deltas": len(evaluated) > 1}


def per_class(runs: list[Run]) -> dict:
    """Per-class AP: the sorted-AP plot, the classes gained and lost most (second run vs
    first) and every class's AP and AC per run."""
    evaluated = [i for i, r in enumerate(runs) if _per_class(r)]
    if not evaluated:
        return {"evaluated": []}
    changes, bars, notes = _changes(runs)
    return {"evaluated": evaluated, "notes": notes, "changes": changes,
            "plots": plot(plots.sorted_class_ap(runs), "per-class AP, sorted") + bars,
            "classes": _all_classes(runs, evaluated)}


def knowledge(runs: list[Run]) -> list[dict]:
    """Per run with a knowledge graph (global and full models): its notes and the
    strongest edges of each type."""
    shown = []
    for run in runs:
        if not run.graph:
            continue
        edges = [{"kind": kind, "src": str(src), "dst": str(dst), "weight": f3(w)}
                 for kind, found in (run.graph.get("edges") or {}).items()
                 for src, dst, w in sorted(found, key=lambda e: -e[2])[:TOP_EDGES]]
        shown.append({"name": run.name, "notes": [str(n) for n in run.graph.get("notes", [])],
                      "edges": edges})
    return shown
