"""The report page: plain f-strings, every value through :func:`html.escape`, inline CSS,
images as ``data:`` URIs. No script, font or stylesheet is fetched: the file works offline.
"""

from __future__ import annotations

import base64
import json
import math
import time
from html import escape
from typing import Any, Iterable

from ivr_core import __version__
from ivr_core.report import plots
from ivr_core.report.collect import Run, finite, flat_config, image_key, view_rank

HEADLINE = (("inst_ap", "inst AP"), ("inst_ac", "inst AC"), ("cls_ap", "cls AP"),
            ("cls_ac", "cls AC"))
TOP_CHANGES = 10  # classes listed as gained and as lost most
MAX_IMAGES = 200  # per run: more visualizations than this are listed, not embedded
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

CSS = """
:root { --muted:#6b7280; --line:#d9dde3; --diff:#fff1b8; --up:#17803d; --down:#c0262d; }
* { box-sizing: border-box; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", Arial,
       sans-serif; font-size: 14px; color: #1f2328; margin: 0; background: #f6f7f9; }
header { background: #24292f; color: #fff; padding: 14px 28px; }
header h1 { margin: 0; font-size: 22px; }
header p { margin: 4px 0 0; color: #c9d1d9; font-size: 13px; }
nav { background: #fff; border-bottom: 1px solid var(--line); padding: 8px 28px;
      position: sticky; top: 0; z-index: 1; }
nav a { margin-right: 16px; color: #0b5cad; text-decoration: none; }
main { padding: 8px 28px 40px; max-width: 1500px; }
section { background: #fff; border: 1px solid var(--line); border-radius: 6px;
          padding: 6px 18px 16px; margin: 16px 0; }
h2 { font-size: 18px; margin: 12px 0 8px; }
h3 { font-size: 15px; margin: 16px 0 6px; }
h4 { font-size: 13px; margin: 12px 0 4px; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; margin: 6px 0; font-size: 13px; }
th, td { border: 1px solid var(--line); padding: 3px 8px; text-align: left;
         vertical-align: top; }
thead th { background: #eef1f4; position: sticky; top: 0; }
tbody tr:nth-child(even) td, tbody tr:nth-child(even) th { background: #fafbfc; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.diff td, tr.diff th { background: var(--diff) !important; }
tr.diff th::after { content: " \\2260"; color: #a16207; }
tr.sep td, tr.sep th { border-top: 2px solid #9aa4b1; }
.d { font-size: 11px; margin-left: 4px; }
.up { color: var(--up); } .down { color: var(--down); } .same { color: var(--muted); }
.muted { color: var(--muted); }
.nowrap { white-space: nowrap; }
.note { background: #fdf6e3; border-left: 4px solid #e0a100; padding: 6px 10px; margin: 8px 0; }
.note ul { margin: 2px 0; padding-left: 18px; }
.swatch { display: inline-block; width: 10px; height: 10px; border-radius: 2px;
          margin-right: 5px; vertical-align: baseline; }
.plots { display: flex; flex-wrap: wrap; gap: 10px; align-items: flex-start; }
.plots img { border: 1px solid var(--line); border-radius: 4px; background: #fff;
             max-width: 100%; height: auto; }
.group { border-top: 1px solid var(--line); padding: 6px 0; }
.group .imgs { display: flex; flex-wrap: wrap; gap: 10px; align-items: flex-start; }
figure { margin: 0; max-width: 100%; }
figure img { max-width: 100%; max-height: 560px; border: 1px solid var(--line); }
figcaption { font-size: 11px; color: var(--muted); word-break: break-all; }
.wrap { word-break: break-word; max-width: 520px; }
details summary { cursor: pointer; color: #0b5cad; margin: 8px 0; }
code { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 12px; }
footer { color: var(--muted); font-size: 12px; padding: 0 28px 24px; }
"""


# --- small formatting helpers -----------------------------------------------------------

def f3(value: Any) -> str:
    return f"{value:.3f}" if finite(value) else "–"


def delta(value: Any, ref: Any, title: str = "") -> str:
    """``+0.034`` in green, ``-0.012`` in red, ``0.000`` grey; nothing when either is NaN."""
    if not (finite(value) and finite(ref)):
        return ""
    d = round(value - ref, 3)
    cls, text = ("up", f"{d:+.3f}") if d > 0 else ("down", f"{d:+.3f}") if d < 0 else \
        ("same", "0.000")
    tip = f' title="{escape(title)}"' if title else ""
    return f'<span class="d {cls}"{tip}>{text}</span>'


def value_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value if value else '""'
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


def swatch(index: int) -> str:
    return f'<span class="swatch" style="background:{plots.color(index)}"></span>'


def run_header(runs: list[Run], indices: Iterable[int] | None = None) -> str:
    indices = range(len(runs)) if indices is None else indices
    return "".join(f"<th>{swatch(i)}{escape(runs[i].name)}</th>" for i in indices)


def png_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def plot_img(data: bytes | None, alt: str) -> str:
    return f'<img src="{png_uri(data)}" alt="{escape(alt)}">' if data else ""


def note(items: list[str]) -> str:
    if not items:
        return ""
    if len(items) == 1:
        return f'<div class="note">{items[0]}</div>'
    return '<div class="note"><ul>' + "".join(f"<li>{i}</li>" for i in items) + "</ul></div>"


def duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}"


def side_by_side(rows: dict[str, list[Any]], runs: list[Run], columns: list[int],
                 missing: str) -> tuple[str, list[str]]:
    """A key x run table; rows whose values differ between the runs that have any value
    are highlighted. Returns (html, differing keys)."""
    differing = []
    body = []
    previous_section = None
    for key, values in rows.items():
        present = [v for v in values if v is not _ABSENT]
        differs = len(columns) > 1 and (len(present) < len(values) or
                                        len({json.dumps(v, sort_keys=True, default=str)
                                             for v in present}) > 1)
        section = key.split(".", 1)[0] if "." in key else None
        classes = []
        if differs:
            differing.append(key)
            classes.append("diff")
        if previous_section is not None and section != previous_section:
            classes.append("sep")
        previous_section = section
        attr = f' class="{" ".join(classes)}"' if classes else ""
        cells = "".join(
            f'<td class="wrap muted">{escape(missing)}</td>' if v is _ABSENT
            else f'<td class="wrap">{escape(value_text(v))}</td>' for v in values)
        body.append(f"<tr{attr}><th>{escape(key)}</th>{cells}</tr>")
    table = (f'<div class="scroll"><table><thead><tr><th>key</th>{run_header(runs, columns)}'
             f'</tr></thead><tbody>{"".join(body)}</tbody></table></div>')
    return table, differing


class _Absent:
    def __repr__(self) -> str:
        return "<absent>"


_ABSENT = _Absent()


# --- sections -----------------------------------------------------------------------------

def overview(runs: list[Run]) -> str:
    rows = []
    for i, run in enumerate(runs):
        flat = flat_config(run.config)
        model = flat.get("model.type") or (run.results or {}).get("model_type") or "?"
        backbone = flat.get("model.backbone")
        if backbone:
            model = f"{model} ({backbone})"
        if run.log:
            last = int(run.log[-1]["iter"])
            total = flat.get("train.iters")
            training = f"iteration {last}" + (
                f" of {total} ({100 * last / total:.0f}%)" if finite(total) and total else "")
        else:
            training = '<span class="muted">no log</span>'
        if run.checkpoints:
            ckpts = f"{len(run.checkpoints)}, newest iter {run.checkpoints[-1][0]}"
        else:
            ckpts = '<span class="muted">none</span>'
        res = run.results
        if res:
            evaluated = escape(f"{res.get('split', '?')} split, iteration "
                               f"{res.get('iteration', '?')}, {res.get('num_images', '?')} images")
        else:
            evaluated = '<span class="muted">not evaluated</span>'
        notes = "<br>".join(escape(n) for n in run.notes) or '<span class="muted">—</span>'
        rows.append(f'<tr><th class="nowrap">{swatch(i)}{escape(run.name)}</th>'
                    f'<td class="nowrap"><code>{escape(str(run.path))}</code></td>'
                    f'<td class="nowrap">{escape(str(model))}</td>'
                    f'<td class="nowrap">{training}</td><td class="nowrap">{ckpts}</td>'
                    f'<td class="nowrap">{evaluated}</td><td class="wrap">{notes}</td></tr>')
    return ('<section id="runs"><h2>Runs</h2><div class="scroll"><table><thead><tr>'
            "<th>run</th><th>folder</th><th>model</th><th>training</th><th>checkpoints</th>"
            "<th>evaluation</th><th>notes</th></tr></thead><tbody>"
            + "".join(rows) + "</tbody></table></div></section>")


def config_section(runs: list[Run]) -> str:
    columns = [i for i, r in enumerate(runs) if r.config is not None]
    missing = [f"{escape(runs[i].name)}: no readable config.toml"
               for i in range(len(runs)) if i not in columns]
    head = '<section id="config"><h2>Configuration</h2>'
    if not columns:
        return head + note(missing or ["no run has a config.toml"]) + "</section>"
    flats = [flat_config(runs[i].config) for i in columns]
    keys: list[str] = []
    for flat in flats:
        keys += [k for k in flat if k not in keys]
    rows = {k: [flat.get(k, _ABSENT) for flat in flats] for k in keys}
    table, differing = side_by_side(rows, runs, columns, "(absent)")
    if len(columns) > 1:
        summary = (f"<p>{len(differing)} of {len(keys)} keys differ"
                   + (": " + ", ".join(f"<code>{escape(k)}</code>" for k in differing)
                      if differing else "") + " (highlighted).</p>")
    else:
        summary = f"<p>{len(keys)} keys of the resolved config.</p>"
    return head + note(missing) + summary + table + "</section>"


def training_section(runs: list[Run]) -> str:
    head = '<section id="training"><h2>Training</h2>'
    logged = [r for r in runs if r.log]
    missing = [f"{escape(r.name)}: no training log (log.jsonl missing or empty)"
               for r in runs if not r.log]
    if not logged:
        return head + note(missing) + "</section>"
    rows = []
    for i, run in enumerate(runs):
        if not run.log:
            continue
        log = run.log
        step = [r["s_per_iter"] for r in log if finite(r.get("s_per_iter"))]
        data = [r["data_s"] for r in log if finite(r.get("data_s"))]
        times = [r["time"] for r in log if finite(r.get("time"))]
        mean_step = sum(step) / len(step) if step else math.nan
        mean_data = sum(data) / len(data) if data else math.nan
        share = f"{100 * mean_data / mean_step:.0f}%" if step and data and mean_step > 0 else "–"
        span = duration(times[-1] - times[0]) if len(times) > 1 else "–"
        lr = f"{log[-1]['lr']:.3g}" if finite(log[-1].get("lr")) else "–"
        last_time = time.strftime("%Y-%m-%d %H:%M", time.localtime(times[-1])) if times else "–"
        rows.append(f"<tr><th>{swatch(i)}{escape(run.name)}</th>"
                    f'<td class="num">{len(log)}</td>'
                    f'<td class="num">{int(log[0]["iter"])}–{int(log[-1]["iter"])}</td>'
                    f'<td class="num">{f3(log[-1].get("loss"))}</td>'
                    f'<td class="num">{lr}</td>'
                    f'<td class="num">{f3(mean_step)}</td><td class="num">{f3(mean_data)}</td>'
                    f'<td class="num">{share}</td><td class="num">{span}</td>'
                    f'<td class="num">{last_time}</td></tr>')
    table = ('<div class="scroll"><table><thead><tr><th>run</th><th class="num">records</th>'
             '<th class="num">iterations</th><th class="num">last loss</th>'
             '<th class="num">last lr</th><th class="num">mean s/iter</th>'
             '<th class="num">mean data wait (s)</th><th class="num">data share</th>'
             '<th class="num">logged span</th><th class="num">last record</th></tr></thead>'
             "<tbody>" + "".join(rows) + "</tbody></table></div>")
    images = []
    for key, title in plots.curve_quantities(runs):
        png = plots.training_curve(runs, key, title)
        if png:
            images.append(plot_img(png, title))
    return (head + note(missing) + table
            + "<p class=\"muted\">Each point averages one logging window (train.log_every "
              "iterations).</p>"
            + f'<div class="plots">{"".join(images)}</div></section>')


def _eval_rows(res: dict) -> list[tuple[str, dict, str]]:
    """(label, metrics, key of the matching row in another run)."""
    rows = [("final", res, "final")]
    iterations = res.get("iterations") or []
    if isinstance(res.get("modules"), dict):  # global and full models: each module's chain
        rows += [(f"{name} iter {i}", r, f"iter {i}") for name, chain in res["modules"].items()
                 for i, r in enumerate(chain)]
    elif len(iterations) > 1:
        rows += [(f"iter {i}", r, f"iter {i}") for i, r in enumerate(iterations)]
    return rows


def _reference(res: dict | None, key: str) -> tuple[dict | None, str]:
    """The first run's row to compare with: the same row, else its final output."""
    if not res:
        return None, ""
    if key.startswith("iter "):
        iterations = res.get("iterations") or []
        i = int(key.split()[1])
        if i < len(iterations):
            return iterations[i], key
    return res, "final"


def metrics_table(runs: list[Run], shown: list[int], pick, ref_name: str) -> str:
    """Final and per-iteration rows of the runs ``shown`` (indices into ``runs``); the later
    ones show their difference to the first one's matching row."""
    first = pick(runs[shown[0]])
    body = []
    for n, i in enumerate(shown):
        run = runs[i]
        res = pick(run)
        for j, (label, metrics, key) in enumerate(_eval_rows(res)):
            ref, ref_key = _reference(first, key) if n > 0 else (None, "")
            cells = []
            for name, title in HEADLINE:
                d = delta(metrics.get(name), ref.get(name),
                          f"{title} minus {ref_name} {ref_key}") if ref else ""
                cells.append(f'<td class="num">{f3(metrics.get(name))}{d}</td>')
            sep = ' class="sep"' if j == 0 and n > 0 else ""
            who = f"{swatch(i)}{escape(run.name)}" if j == 0 else ""
            body.append(f"<tr{sep}><th>{who}</th><td>{escape(label)}</td>{''.join(cells)}</tr>")
    heads = "".join(f'<th class="num">{escape(t)}</th>' for _, t in HEADLINE)
    return ('<div class="scroll"><table><thead><tr><th>run</th><th>output</th>'
            f"{heads}</tr></thead><tbody>{''.join(body)}</tbody></table></div>")


def evaluation_section(runs: list[Run]) -> str:
    head = '<section id="evaluation"><h2>Evaluation</h2>'
    evaluated = [i for i, r in enumerate(runs) if r.results]
    missing = [f"{escape(r.name)}: no results.json — evaluate it with "
               f"<code>ivr test --run-dir {escape(str(r.path))}</code>"
               for r in runs if not r.results]
    if not evaluated:
        return head + note(missing) + "</section>"
    info = []
    for i in evaluated:
        res = runs[i].results
        info.append(f"<tr><th>{swatch(i)}{escape(runs[i].name)}</th>"
                    + "".join(f'<td class="num">{escape(str(res.get(k, "–")))}</td>'
                              for k in ("split", "iteration", "num_images", "num_regions",
                                        "num_classes_present"))
                    + f'<td class="num">{len(res.get("iterations") or [])}</td>'
                    + f'<td class="wrap"><code>{escape(str(res.get("checkpoint", "–")))}</code>'
                      "</td></tr>")
    info_table = ('<div class="scroll"><table><thead><tr><th>run</th><th>split</th>'
                  '<th class="num">iteration</th><th class="num">images</th>'
                  '<th class="num">regions</th><th class="num">classes present</th>'
                  '<th class="num">reasoning iterations</th><th>checkpoint</th></tr></thead>'
                  "<tbody>" + "".join(info) + "</tbody></table></div>")
    warnings = list(missing)
    splits = {(runs[i].results.get("split"), runs[i].results.get("num_regions"))
              for i in evaluated}
    if len(splits) > 1:
        warnings.append("the runs were evaluated on different splits or region counts: "
                        "their differences do not compare like with like")
    base = runs[evaluated[0]].name
    explain = ""
    if len(evaluated) > 1:
        explain = (f'<p class="muted">Coloured numbers: difference to {escape(base)}\'s same '
                   "row (its final output where it has no such iteration).</p>")
    body = (head + note(warnings) + info_table + "<h3>Region classification</h3>"
            + "<p class=\"muted\">AP: average precision, AC: accuracy; per instance (every region "
              "counts alike) and per class (mean over classes).</p>"
            + metrics_table(runs, evaluated, lambda r: r.results, base) + explain)
    with_context = [i for i in evaluated if runs[i].results.get("context")]
    if with_context:
        classes = runs[with_context[0]].results["context"].get("classes") or []
        body += ("<h3>Context classes</h3><p>Classes that depend on their surroundings "
                 f"({len(classes)}): " + escape(", ".join(map(str, classes))) + "</p>"
                 + metrics_table(runs, with_context, lambda r: r.results.get("context"),
                                 runs[with_context[0]].name))
        if len(with_context) < len(evaluated):
            body += note([f"{escape(runs[i].name)}: no context-class results"
                          for i in evaluated if i not in with_context])
    return body + "</section>"


def _per_class(run: Run) -> dict[str, dict]:
    per_class = ((run.results or {}).get("per_class")) or {}
    return {str(k): v for k, v in per_class.items() if isinstance(v, dict)}


def class_changes(a: Run, b: Run) -> tuple[list, list, int]:
    """(gained, lost, compared): classes with an AP in both runs, ranked by b - a."""
    pa, pb = _per_class(a), _per_class(b)
    both = [(name, pb[name]["ap"] - pa[name]["ap"], pa[name], pb[name])
            for name in pa if name in pb and finite(pa[name].get("ap"))
            and finite(pb[name].get("ap"))]
    gained = sorted((c for c in both if c[1] > 0), key=lambda c: (-c[1], c[0]))[:TOP_CHANGES]
    lost = sorted((c for c in both if c[1] < 0), key=lambda c: (c[1], c[0]))[:TOP_CHANGES]
    return gained, lost, len(both)


def _changes_table(rows, a: Run, b: Run) -> str:
    body = "".join(
        f"<tr><th>{escape(name)}</th><td class=\"num\">{escape(str(va.get('count', '–')))}</td>"
        f'<td class="num">{f3(va.get("ap"))}</td><td class="num">{f3(vb.get("ap"))}</td>'
        f'<td class="num">{delta(vb.get("ap"), va.get("ap"))}</td></tr>'
        for name, _, va, vb in rows)
    return ('<table><thead><tr><th>class</th><th class="num">regions</th>'
            f'<th class="num">AP {escape(a.name)}</th><th class="num">AP {escape(b.name)}</th>'
            f'<th class="num">difference</th></tr></thead><tbody>{body}</tbody></table>')


def per_class_section(runs: list[Run]) -> str:
    head = '<section id="classes"><h2>Per-class AP</h2>'
    evaluated = [i for i, r in enumerate(runs) if _per_class(r)]
    if not evaluated:
        return head + note(["no run has per-class results (results.json)"]) + "</section>"
    images = [plot_img(plots.sorted_class_ap(runs), "per-class AP, sorted")]
    changes, notes = "", []
    if len(runs) >= 2:
        a, b = runs[0], runs[1]
        if _per_class(a) and _per_class(b):
            gained, lost, compared = class_changes(a, b)
            images.append(plot_img(
                plots.class_changes([(n, d) for n, d, _, _ in gained]
                                    + [(n, d) for n, d, _, _ in reversed(lost)],
                                    f"AP change, {b.name} vs {a.name}"), "AP change per class"))
            changes = (f"<h3>Gained and lost most: {escape(b.name)} vs {escape(a.name)}</h3>"
                       f'<p class="muted">{compared} classes with an AP in both runs; '
                       f"up to {TOP_CHANGES} each way.</p>"
                       '<div class="plots"><div><h4>gained most</h4>'
                       + (_changes_table(gained, a, b) if gained else
                          '<p class="muted">no class gained</p>')
                       + "</div><div><h4>lost most</h4>"
                       + (_changes_table(lost, a, b) if lost else
                          '<p class="muted">no class lost</p>') + "</div></div>")
        else:
            notes.append("the classes that gained and lost most need per-class results in "
                         f"both {escape(a.name)} and {escape(b.name)}")
    parts = [head, note(notes), f'<div class="plots">{"".join(images)}</div>', changes]
    # every class, sorted by the first evaluated run's AP
    first = runs[evaluated[0]]
    names: list[str] = []
    names_seen: set[str] = set()
    for i in evaluated:
        names += [n for n in _per_class(runs[i]) if n not in names_seen]
        names_seen = set(names)
    pf = _per_class(first)
    names.sort(key=lambda n: (-(pf[n]["ap"]) if n in pf and finite(pf[n].get("ap"))
                              else math.inf, n))
    show_delta = len(evaluated) > 1
    rows = []
    for name in names:
        count = next((runs[i].results["per_class"][name].get("count")
                      for i in evaluated if name in _per_class(runs[i])), "–")
        cells = []
        for k, i in enumerate(evaluated):
            v = _per_class(runs[i]).get(name, {})
            d = delta(v.get("ap"), pf.get(name, {}).get("ap")) if k > 0 else ""
            cells.append(f'<td class="num">{f3(v.get("ap"))}{d}</td>'
                         f'<td class="num">{f3(v.get("ac"))}</td>')
        rows.append(f"<tr><th>{escape(name)}</th><td class=\"num\">{escape(str(count))}</td>"
                    + "".join(cells) + "</tr>")
    heads = "".join(f"<th class=\"num\">{swatch(i)}AP {escape(runs[i].name)}</th>"
                    f"<th class=\"num\">AC {escape(runs[i].name)}</th>" for i in evaluated)
    parts.append(f"<details{' open' if len(names) <= 40 else ''}><summary>all {len(names)} "
                 f"classes, sorted by AP of {escape(first.name)}"
                 + (" (coloured: difference to it)" if show_delta else "") + "</summary>"
                 '<div class="scroll"><table><thead><tr><th>class</th>'
                 f'<th class="num">regions</th>{heads}</tr></thead><tbody>{"".join(rows)}'
                 "</tbody></table></div></details></section>")
    return "".join(parts)


def gallery_section(runs: list[Run]) -> str:
    head = '<section id="visualizations"><h2>Visualizations</h2>'
    if not any(r.images for r in runs):
        return (head + '<p class="muted">No run has a <code>visualizations/</code> folder with '
                "PNG files.</p></section>")
    parts = [head]
    for i, run in enumerate(runs):
        parts.append(f"<h3>{swatch(i)}{escape(run.name)}</h3>")
        if not run.images:
            parts.append('<p class="muted">no visualizations</p>')
            continue
        groups: dict[str, list] = {}
        for path in run.images:
            groups.setdefault(image_key(run.path, path), []).append(path)
        notes = []
        embedded = 0
        for key, paths in groups.items():
            figures = []
            for path in sorted(paths, key=view_rank):
                rel = path.relative_to(run.path).as_posix()
                if embedded >= MAX_IMAGES:
                    notes.append(escape(rel))
                    continue
                try:
                    data = path.read_bytes()
                except OSError as e:
                    notes.append(f"{escape(rel)} could not be read ({type(e).__name__})")
                    continue
                if not data.startswith(PNG_MAGIC):
                    notes.append(f"{escape(rel)} is not a PNG file")
                    continue
                embedded += 1
                figures.append(f'<figure><img src="{png_uri(data)}" alt="{escape(rel)}">'
                               f"<figcaption>{escape(rel)}</figcaption></figure>")
            if figures:
                parts.append(f'<div class="group"><h4>{escape(key)}</h4><div class="imgs">'
                             + "".join(figures) + "</div></div>")
        if embedded >= MAX_IMAGES and len(run.images) > MAX_IMAGES:
            notes.insert(0, f"only the first {MAX_IMAGES} of {len(run.images)} images are "
                            "embedded; not shown:")
        parts.append(note(notes))
    return "".join(parts) + "</section>"


def environment_section(runs: list[Run]) -> str:
    head = '<section id="environment"><h2>Environment</h2>'
    columns = [i for i, r in enumerate(runs) if r.env is not None]
    missing = [f"{escape(runs[i].name)}: no readable env.json"
               for i in range(len(runs)) if i not in columns]
    if not columns:
        return head + note(missing) + "</section>"
    keys: list[str] = []
    for i in columns:
        keys += [k for k in runs[i].env if k not in keys]
    rows = {k: [runs[i].env.get(k, _ABSENT) for i in columns] for k in keys}
    table, differing = side_by_side(rows, runs, columns, "(absent)")
    summary = (f"<p>{len(differing)} of {len(keys)} entries differ (highlighted).</p>"
               if len(columns) > 1 else "")
    return head + note(missing) + summary + table + "</section>"


def knowledge_section(runs: list[Run]) -> str:
    """The strongest edges of each edge type of the knowledge graph (global, full models)."""
    head = '<section id="knowledge"><h2>Knowledge graph</h2>'
    shown = [r for r in runs if r.graph]
    if not shown:
        return head + "<p>No run uses the global module.</p></section>"
    parts = []
    for run in shown:
        rows = []
        for kind, edges in run.graph.get("edges", {}).items():
            for src, dst, w in sorted(edges, key=lambda e: -e[2])[:8]:
                rows.append(f"<tr><td>{escape(kind)}</td><td>{escape(src)}</td>"
                            f"<td>{escape(dst)}</td><td class=\"num\">{w:.3f}</td></tr>")
        notes = "".join(f"<li>{escape(n)}</li>" for n in run.graph.get("notes", []))
        parts.append(f"<h3>{escape(run.name)}</h3>" + (f"<ul>{notes}</ul>" if notes else "")
                     + '<div class="scroll"><table><thead><tr><th>edge type</th><th>from</th>'
                     '<th>to</th><th>weight</th></tr></thead><tbody>' + "".join(rows)
                     + "</tbody></table></div>")
    return head + "<p>The strongest edges of each type (at most 8), as mined by "\
        "<code>ivr prepare-graph</code>.</p>" + "".join(parts) + "</section>"


SECTIONS = (("runs", "Runs"), ("config", "Configuration"), ("training", "Training"),
            ("evaluation", "Evaluation"), ("classes", "Per-class AP"),
            ("knowledge", "Knowledge graph"), ("visualizations", "Visualizations"),
            ("environment", "Environment"))


def render(runs: list[Run], title: str | None = None) -> str:
    """The whole page as one string."""
    title = title or "ivr report: " + ", ".join(r.name for r in runs)
    generated = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    nav = "".join(f'<a href="#{sid}">{escape(label)}</a>' for sid, label in SECTIONS)
    body = "".join(section(runs) for section in (overview, config_section, training_section,
                                                 evaluation_section, per_class_section,
                                                 knowledge_section, gallery_section,
                                                 environment_section))
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            '<meta name="color-scheme" content="light">'
            f"<title>{escape(title)}</title><style>{CSS}</style></head><body>"
            f"<header><h1>{escape(title)}</h1><p>{len(runs)} run{'s' * (len(runs) != 1)} · "
            f"generated {escape(generated)} by ivr {escape(__version__)}</p></header>"
            f"<nav>{nav}</nav><main>{body}</main>"
            "<footer>Self-contained page: images are embedded, nothing is loaded from the "
            "network.</footer></body></html>\n")
