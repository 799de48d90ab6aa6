"""Read what a run folder holds for ``ivr report``: config, environment, training log,
evaluation results, visualizations and checkpoints.

A run that is still training (no ``results.json``) or was only evaluated (no ``log.jsonl``)
is read as far as it goes; what is absent or unreadable becomes a note shown in the
report. A folder that does not exist or holds none of the files is an :class:`IvrError`.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ivr_core.data.dataset import prepared_name
from ivr_core.errors import IvrError
from ivr_core.utils import tomltext

FILES = ("config.toml", "env.json", "log.jsonl", "results.json")
_CHECKPOINT = re.compile(r"^iter_(\d+)\.pt$")
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
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
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
    except (OSError, UnicodeDecodeError, tomltext.TOMLDecodeError) as e:
        run.notes.append(f"config.toml could not be read ({type(e).__name__}: "
                         f"{str(e).splitlines()[0][:160] if str(e) else ''})")
        return None
    return data


def _read_log(run: Run) -> list[dict]:
    """Records of ``log.jsonl`` sorted by iteration; a torn or bad line is skipped (and
    noted): the file may be appended to while we read it."""
    path = run.path / "log.jsonl"
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        run.notes.append(f"log.jsonl could not be read ({type(e).__name__})")
        return []
    records, bad = [], 0
    for line in lines:
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            int(record["iter"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            bad += 1
            continue
        if isinstance(record, dict):
            records.append(record)
        else:
            bad += 1
    if bad:
        run.notes.append(f"log.jsonl: skipped {bad} unreadable line{'s' * (bad != 1)}")
    if not records and not bad:
        run.notes.append("log.jsonl is empty (training has not logged yet)")
    records.sort(key=lambda r: int(r["iter"]))
    return records


def _images(run: Run) -> list[Path]:
    folder = run.path / "visualizations"
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob("*.png") if p.is_file())


def _checkpoints(run: Run) -> list[tuple[int, Path]]:
    folder = run.path / "checkpoints"
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _CHECKPOINT.match(p.name))]
    return sorted(found)


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
        run.results = _read_object(run, "results.json", "an object")
    else:
        _note_missing(run, "results.json", f"not evaluated yet: ivr test --run-dir {path}")
    run.checkpoints = _checkpoints(run)
    run.graph = _read_graph(run)
    return run


def _read_graph(run: Run) -> dict | None:
    """The knowledge graph a global or full model was trained with (its JSON file)."""
    config = run.config or {}
    if config.get("model", {}).get("type") not in ("global", "full"):
        return None
    data, graph = config.get("data", {}), config.get("graph", {})
    split = prepared_name(data.get("train_split", "train"), data.get("min_count", 5),
                          data.get("dataset", "ade"))
    path = Path(graph.get("file") or Path(data.get("dir", ".")) / split.replace(".json",
                                                                              "_graph.json"))
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        run.notes.append(f"knowledge graph {path} not readable ({type(e).__name__})")
        return None


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
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


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
