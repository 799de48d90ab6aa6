"""Read what a run folder holds for ``ivr report``: config, environment, training log,
evaluation results, visualizations and checkpoints.

A run that is still training (no ``results.json``) or was only evaluated (no ``log.jsonl``)
is read as far as it goes; what is absent or unreadable becomes a note shown in the
report. A folder that does not exist or holds none of the files is an :class:`IvrError`.

The files may have been written by anyone: every value the page uses is checked for its
type here (a field of the wrong type is dropped with a note), and files reached through a
symbolic link that leads out of the run folder are neither read nor embedded.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ivr_core.data.dataset import prepared_name
from ivr_core.engine.checkpoint import list_checkpoints
from ivr_core.engine.logger import log_lines, log_path
from ivr_core.errors import IvrError
from ivr_core.graph.knowledge import graph_path
from ivr_core.utils import tomltext

FILES = ("config.toml", "env.json", "log.jsonl", "results.json")
# the figures `ivr test` writes per image, <image stem>_<kind>.png, in the order shown
VIEW_ORDER = ("labels", "iterations", "memory", "attention")
# a trailing tag that names a view of an image rather than the image itself
_VIEW_TAG = re.compile(r"[_\-.](labels?|iterations|iter(ation)?[_\-]?\d+|it\d+|step\d+|final|"
                       r"gt|truth|input|image|img|attention|attn|att\d*|pred(iction)?s?|memory|"
                       r"memories|mem\d*|context|boxes|regions|overlay|scores?|local|global)$",
                       re.IGNORECASE)


@dataclass
class Run:
    """One run folder as far as it could be read."""

    path: Path
    name: str = ""
    config: dict[str, dict[str, Any]] | None = None
    env: dict[str, Any] | None = None
    log: list[dict[str, Any]] = field(default_factory=list)
    results: dict[str, Any] | None = None
    images: list[Path] = field(default_factory=list)
    checkpoints: list[tuple[int, Path]] = field(default_factory=list)
    graph: dict[str, Any] | None = None  # the knowledge graph of global and full models
    notes: list[str] = field(default_factory=list)  # what is missing or unreadable


def _note_missing(run: Run, name: str, hint: str) -> None:
    run.notes.append(f"no {name} ({hint})")


def _read_json(run: Run, name: str) -> Any:
    path = run.path / name
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:  # ValueError: bad JSON, bad UTF-8, a 5000-digit number
        run.notes.append(f"{name} could not be read ({type(e).__name__}: "
                         f"{str(e).splitlines()[0][:160] if str(e) else ''})")
        return None


def _read_object(run: Run, name: str, expected: str) -> dict | None:
    """A JSON file that must hold an object: its dict, or None with a note."""
    doc = _read_json(run, name)
    if doc is not None and not isinstance(doc, dict):
        run.notes.append(f"{name} is not {expected}; ignored")
        return None
    return doc


def _read_config(run: Run) -> dict | None:
    path = run.path / "config.toml"
    try:
        data = tomltext.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:  # ValueError: bad UTF-8, tomllib's TOMLDecodeError
        run.notes.append(f"config.toml could not be read ({type(e).__name__}: "
                         f"{str(e).splitlines()[0][:160] if str(e) else ''})")
        return None
    return data


def _read_log(run: Run) -> list[dict]:
    """Records of ``log.jsonl`` sorted by iteration; a torn or bad line is skipped (and
    noted): the file may be appended to while we read it."""
    try:
        text = log_path(run.path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        run.notes.append(f"log.jsonl could not be read ({type(e).__name__})")
        return []
    records, bad, dropped = [], 0, 0
    for _, record in log_lines(text):
        iteration = _iteration(record.get("iter")) if record is not None else None
        if iteration is None:
            bad += 1
            continue
        record["iter"] = iteration
        dropped += len(_drop_bad_fields(record, _LOG_FIELDS))
        records.append(record)
    if bad:
        run.notes.append(f"log.jsonl: skipped {bad} unreadable line{'s' * (bad != 1)}")
    if dropped:
        run.notes.append(f"log.jsonl: ignored {dropped} value{'s' * (dropped != 1)} of the "
                         "wrong type or out of range")
    if not records and not bad:
        run.notes.append("log.jsonl is empty (training has not logged yet)")
    records.sort(key=lambda r: r["iter"])
    return records


MAX_ITERATION = 10**15


def _iteration(value: Any) -> int | None:
    """A log record's iteration as an int, or None unless it is a whole number in
    0..MAX_ITERATION (``"iter": 1e400`` reads as infinity)."""
    if not finite(value) or value != int(value) or not 0 <= value <= MAX_ITERATION:
        return None
    return int(value)


def _is_object(value: Any) -> bool:
    return isinstance(value, dict)


def _is_objects(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(x, dict) for x in value)


def _is_scalar(value: Any) -> bool:
    return not isinstance(value, (list, dict))


def _is_timestamp(value: Any) -> bool:  # seconds since 1970, before the year 10000
    return finite(value) and 0 <= value < 253402300800


# field: (check, what it must be); the page relies on these types
_LOG_FIELDS = {"losses": (_is_object, "an object"), "attention": (_is_object, "an object"),
               "time": (_is_timestamp, "a timestamp")}
_RESULT_FIELDS = {
    "iterations": (_is_objects, "a list of objects"),
    "modules": (lambda v: _is_object(v) and all(_is_objects(c) for c in v.values()),
                "an object of lists of objects"),
    "per_class": (lambda v: _is_object(v) and all(_is_object(c) for c in v.values()),
                  "an object of objects"),
    "context": (_is_object, "an object"),
    "candidates": (lambda v: _is_object(v) and all(_is_object(c) for c in v.values()),
                   "an object of objects"),
    "best_candidate": (lambda v: _is_object(v) and all(_is_object(c) for c in v.values()),
                       "an object of objects"),
    "oracle": (_is_object, "an object"),
    "uniform_attention": (_is_object, "an object"),
    "attention_mean": (_is_object, "an object"),
    "classes": (lambda v: isinstance(v, list) and all(_is_scalar(c) for c in v), "a list"),
    **{key: (_is_scalar, "a number or a text") for key in (
        "split", "checkpoint", "model_type", "iteration", "num_images", "num_regions",
        "num_classes_present")},
}


def _drop_bad_fields(doc: dict, fields: dict) -> list[str]:
    """Remove the fields of ``doc`` that fail their check; returns what each should be."""
    bad = [key for key, (check, _) in fields.items() if key in doc and not check(doc[key])]
    for key in bad:
        del doc[key]
    return [f"'{key}' is not {fields[key][1]}" for key in bad]


def _check_results(run: Run, doc: dict | None) -> dict | None:
    """``results.json`` with each field the page uses of the type it needs; a field of
    another type is dropped with a note (the context classes' part alike)."""
    if doc is None:
        return None
    for part, where in ((doc, "results.json"), (doc.get("context"), "results.json context")):
        if isinstance(part, dict):
            run.notes += [f"{where}: {bad}; ignored" for bad in _drop_bad_fields(
                part, _RESULT_FIELDS)]
    return doc


def _inside(run: Run, path: Path) -> bool:
    """Whether ``path``, its links followed, lies inside the run folder."""
    try:
        return path.resolve().is_relative_to(run.path.resolve())
    except (OSError, RuntimeError):  # a link loop
        return False


def _images(run: Run) -> list[Path]:
    folder = run.path / "visualizations"
    if not folder.is_dir():
        return []
    found = sorted(p for p in folder.rglob("*.png") if p.is_file())
    kept = [p for p in found if _inside(run, p)]
    if len(kept) < len(found):
        run.notes.append(f"{len(found) - len(kept)} image(s) under visualizations/ are links "
                         "out of the run folder; not embedded")
    return kept


def load_run(path: str | Path) -> Run:
    """Read one run folder; an IvrError if it does not exist or holds none of its files."""
    path = Path(path)
    if not path.exists():
        raise IvrError(f"run folder not found: {path}; give a folder written by `ivr train` "
                       "or `ivr test`")
    if not path.is_dir():
        raise IvrError(f"{path} is not a folder; give a run folder (it holds config.toml, "
                       "log.jsonl, results.json)")
    run = Run(path=path)
    present = {name for name in FILES if (path / name).is_file()}
    for name in sorted(present):
        if not _inside(run, path / name):
            present.discard(name)
            run.notes.append(f"{name} is a link out of the run folder (to "
                             f"{(path / name).resolve()}); not read")
    run.images = _images(run)
    if not present and not run.images:
        raise IvrError(f"{path} holds none of {', '.join(FILES)}; give a run folder written "
                       "by `ivr train` or `ivr test`")
    if "config.toml" in present:
        run.config = _read_config(run)
    else:
        _note_missing(run, "config.toml", "written when `ivr train` starts")
    if "env.json" in present:
        run.env = _read_object(run, "env.json", "a {name: value} object")
    else:
        _note_missing(run, "env.json", "written when `ivr train` starts")
    if "log.jsonl" in present:
        run.log = _read_log(run)
    else:
        _note_missing(run, "log.jsonl", "training has not logged yet, or the run was not "
                                        "trained here")
    if "results.json" in present:
        run.results = _check_results(run, _read_object(run, "results.json", "an object"))
    else:
        _note_missing(run, "results.json", f"not evaluated yet: ivr test --run-dir {path}")
    run.checkpoints = list_checkpoints(run.path)
    run.graph = _read_graph(run)
    return run


def _read_graph(run: Run) -> dict | None:
    """The knowledge graph a global or full model was trained with (its JSON file)."""
    model, data, graph = (_section(run.config, name) for name in ("model", "data", "graph"))
    if model.get("type") not in ("global", "full"):
        return None
    split = prepared_name(str(data.get("train_split", "train")), data.get("min_count", 5),
                          str(data.get("dataset", "ade")))
    path = Path(str(graph.get("file") or graph_path(Path(str(data.get("dir", "."))) / split)))
    try:
        graph = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        run.notes.append(f"knowledge graph {path} not readable ({type(e).__name__})")
        return None
    return _check_graph(run, graph, path)


def _section(config: dict | None, name: str) -> dict:
    """A config section as a dict; {} when absent or not a table."""
    section = (config or {}).get(name)
    return section if isinstance(section, dict) else {}


def _check_graph(run: Run, graph: Any, path: Path) -> dict | None:
    """The graph's notes (texts) and edges ``[from, to, weight]`` (two names, a finite
    number) by edge type; anything else is left out with a note."""
    if not isinstance(graph, dict):
        run.notes.append(f"knowledge graph {path} is not an object; ignored")
        return None
    edges = graph.get("edges", {})
    if not isinstance(edges, dict):
        run.notes.append(f"knowledge graph {path}: 'edges' is not an object; ignored")
        edges = {}
    kept, bad = {}, 0
    for kind, items in edges.items():
        items = items if isinstance(items, list) else [items]
        kept[kind] = [e for e in items if isinstance(e, list) and len(e) == 3
                      and isinstance(e[0], str) and isinstance(e[1], str) and finite(e[2])]
        bad += len(items) - len(kept[kind])
    if bad:
        run.notes.append(f"knowledge graph {path}: left out {bad} malformed edge"
                         f"{'s' * (bad != 1)} (each must be [from, to, number])")
    notes = graph.get("notes") if isinstance(graph.get("notes"), list) else []
    return dict(graph, edges=kept, notes=[n for n in notes if isinstance(n, str)])


def _labels(paths: list[Path]) -> list[str]:
    """Short unique names: the folder name, with as many parent folders as it takes to tell
    the runs apart (a run given twice gets a #2 suffix)."""
    parts = [p.resolve().parts for p in paths]
    depth = 1
    while True:
        labels = ["/".join(ps[-depth:]) for ps in parts]
        if len(set(labels)) == len(labels) or all(depth >= len(ps) for ps in parts):
            break
        depth += 1
    seen: dict[str, int] = {}
    out = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        out.append(label if seen[label] == 1 else f"{label} #{seen[label]}")
    return out


def load_runs(paths: list[str | Path]) -> list[Run]:
    if not paths:
        raise IvrError("give at least one run folder")
    runs = [load_run(p) for p in paths]
    for run, label in zip(runs, _labels([r.path for r in runs])):
        run.name = label
    return runs


# --- helpers shared by the plots and the page ---------------------------------------------

def flat_config(config: dict | None) -> dict[str, Any]:
    """{"section.key": value} in file order."""
    out: dict[str, Any] = {}
    for section, values in (config or {}).items():
        if isinstance(values, dict):
            for key, value in values.items():
                out[f"{section}.{key}"] = value
        else:
            out[section] = values
    return out


def finite(value: Any) -> bool:
    """A real number (not a bool) that a float can hold: not inf, nan or a 400-digit int."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


def view_rank(image: Path) -> tuple[int, str]:
    """Sort key inside one image's group: labels, iterations, memory, attention, the rest."""
    for rank, kind in enumerate(VIEW_ORDER):
        if image.stem.lower().endswith("_" + kind):
            return rank, image.name
    return len(VIEW_ORDER), image.name


def image_key(run_path: Path, image: Path) -> str:
    """The image a visualization shows: its subfolder under ``visualizations/`` when it has
    one, else the file name without a trailing view tag (``_labels``, ``_iterations``,
    ``_memory``, ``_attention`` as `ivr test` writes them, or ``_iter2``, ``_final``, ...)."""
    rel = image.relative_to(run_path / "visualizations")
    if len(rel.parts) > 1:
        return "/".join(rel.parts[:-1])
    stem = image.stem
    while True:
        shorter = _VIEW_TAG.sub("", stem)
        if shorter == stem or not shorter:
            return stem
        stem = shorter
