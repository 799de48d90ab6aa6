"""Visual Genome (the official 1.4 files) -> prepared splits ``vg_<split>.json``.

Reads ``objects.json`` (per image: ``image_id`` and its ``objects``, each with
``object_id``, ``x``, ``y``, ``w``, ``h`` and ``names``), ``image_data.json`` (``image_id``,
``width``, ``height``, ``url``) and, when present, ``object_alias.txt`` (one synonym set per
line, comma-separated: every name of a line becomes its first). Images lie under
``VG_100K/`` and ``VG_100K_2/``.

- Names are normalised (lower-case, stripped, inner white space collapsed, aliases merged);
  the classes are the ``top`` most frequent names (each object counts once for each of its
  distinct names; ties by name), background first. A class name writes spaces as ``_``.
- An object is labelled with the first of its names that is a class; objects with none,
  repeated object ids (the first one is kept), degenerate boxes (w or h < 1) and boxes
  wholly outside their image are skipped and counted; boxes partly outside are clipped.
  The box of ``x, y, w, h`` is the inclusive ``[x, y, x + w - 1, y + h - 1]``.
- Images whose file is missing are skipped and listed.
- The split assigns image ids to ``train``, ``mval`` and ``mtest`` (5% each for the
  latter two) by a seeded permutation and is written to ``vg_split.json``; given a split
  file (the same JSON, any split names), it is read instead.

``objects.json`` (about 1 GB) is read as a stream (:func:`iter_json_array`): one chunk and
one image's entry at a time; the objects are kept in compact arrays (about 30 bytes each).
"""

from __future__ import annotations

import json
import math
import os
import re
from array import array
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ivr_core.data.ade import BACKGROUND, normalise_name
from ivr_core.data.coco import to_box
from ivr_core.data.dataset import prepared_name
from ivr_core.data.prepare import SplitSummary, portable_root
from ivr_core.errors import IvrError
from ivr_core.utils.files import UnreadableFile, read_text
from ivr_core.utils.jsonstream import iter_json_array
from ivr_core.utils.io import atomic_open, write_json
from ivr_core.utils.progress import progress_bar

DEFAULT_OUT = Path("data/vg")
IMAGE_FOLDERS = ("VG_100K", "VG_100K_2")
SPLIT_FILE = "vg_split.json"
HOLDOUT = {"mval": 0.05, "mtest": 0.05}  # the rest is train
# skip reasons for objects, in the order the summary lists them
UNKNOWN_IMAGE, MISSING_FILE, DUPLICATE = "image not in image_data.json", "missing image file", \
    "repeated object id"
MALFORMED, DEGENERATE, OUTSIDE = "malformed object", "degenerate box", "box outside the image"
RARE, NOT_IN_SPLIT = "no name among the classes", "image in no split"
REASONS = (UNKNOWN_IMAGE, MISSING_FILE, DUPLICATE, MALFORMED, DEGENERATE, OUTSIDE, RARE,
           NOT_IN_SPLIT)
_SPLIT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass
class VgReport:
    classes: int
    names: int  # distinct names after normalisation
    objects: int  # object entries read
    split_file: Path
    split_written: bool
    clipped: int = 0  # boxes partly outside their image, clipped
    unknown_split_ids: int = 0  # image ids of the split file not in image_data.json
    splits: list[SplitSummary] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)  # reason -> objects
    missing: list[str] = field(default_factory=list)  # image files not found


# --- names -----------------------------------------------------------------------------------

def _clean(raw: str) -> str:
    return " ".join(raw.lower().split())


def read_aliases(path: str | os.PathLike) -> dict[str, str]:
    """``object_alias.txt``: each line a comma-separated synonym set; name -> its line's
    first name (normalised). A name on several lines keeps its first line."""
    aliases: dict[str, str] = {}
    try:
        text = read_text(path, what="alias file")
    except UnreadableFile as e:
        raise IvrError(f"cannot read {e.path}: {e.reason}") from None
    for line in text.splitlines():
        names = [n for n in (_clean(x) for x in line.split(",")) if n]
        if names:
            target = aliases.get(names[0], names[0])
            for name in names:
                aliases.setdefault(name, target)
    return aliases


def name_normaliser(aliases: dict[str, str]) -> Callable[[Any], str]:
    """raw name -> normalised name ("" for what is not a non-empty string)."""
    def normalise(raw: Any) -> str:
        if not isinstance(raw, str):
            return ""
        name = _clean(raw)
        return aliases.get(name, name)
    return normalise


# --- images ----------------------------------------------------------------------------------

def read_image_data(root: Path) -> dict[int, tuple[str, int, int]]:
    """image id -> (path relative to ``root``, width, height) of the images that exist."""
    path = root / "image_data.json"
    present = {folder: {e.name for e in os.scandir(root / folder)}
               for folder in IMAGE_FOLDERS if (root / folder).is_dir()}
    images: dict[int, tuple[str, int, int]] = {}
    for i, im in enumerate(iter_json_array(path)):
        image_id = im.get("image_id", im.get("id")) if isinstance(im, dict) else None
        width, height = (im.get("width"), im.get("height")) if isinstance(im, dict) else (0, 0)
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (image_id, width,
                                                                              height)) \
                or width < 1 or height < 1:
            raise IvrError(f"{path}: entry {i} has no valid image_id, width and height "
                           f"(got {str(im)[:120]})")
        url = im.get("url") or ""
        folder, _, name = url.rstrip("/").rpartition("/")
        folder = folder.rpartition("/")[2]
        if not (folder in present and name in present[folder]):
            name = f"{image_id}.jpg"
            folder = next((f for f in IMAGE_FOLDERS if name in present.get(f, ())), "")
        images[image_id] = (f"{folder}/{name}" if folder else "", width, height)
    return images


# --- splits ----------------------------------------------------------------------------------

def make_split(image_ids: list[int], seed: int) -> dict[str, list[int]]:
    """A seeded split of ``image_ids``: HOLDOUT fractions (at least one image each when
    there are three or more), the rest ``train``; ids sorted within each split."""
    ids = sorted(image_ids)
    order = np.random.default_rng(seed).permutation(len(ids))
    split, start = {}, 0
    for name, fraction in HOLDOUT.items():
        size = max(round(len(ids) * fraction), 1 if len(ids) >= 3 else 0)
        split[name] = sorted(ids[i] for i in order[start:start + size])
        start += size
    return {"train": sorted(ids[i] for i in order[start:]), **split}


def read_split(path: Path) -> dict[str, list[int]]:
    try:
        doc = json.loads(read_text(path, what="split file"))
    except UnreadableFile as e:
        raise IvrError(f"cannot read split file {path}: {e.reason}") from None
    except json.JSONDecodeError as e:
        raise IvrError(f"cannot read split file {path}: {e}") from None
    splits = {k: v for k, v in doc.items() if k != "seed"} if isinstance(doc, dict) else None
    if not splits or not all(_SPLIT_NAME.fullmatch(k) and isinstance(v, list) and all(
            isinstance(i, int) and not isinstance(i, bool) for i in v) for k, v in splits.items()):
        raise IvrError(f"{path} is not a split file: expected a JSON object of split name -> "
                       "list of image ids, e.g. {\"train\": [1, 2], \"mtest\": [3]}")
    seen: dict[int, str] = {}
    for name, ids in splits.items():
        for i in ids:
            if seen.setdefault(i, name) != name:
                raise IvrError(f"{path}: image {i} is in both '{seen[i]}' and '{name}'")
    return splits


# --- preparation -----------------------------------------------------------------------------

class _Objects:
    """The objects kept from the stream, in compact arrays (one entry per object)."""

    def __init__(self):
        self.object_id = array("q")
        self.image = array("q")
        self.box = array("i")  # x1 y1 x2 y2 per object
        self.names = array("i")  # the object's distinct name ids, concatenated
        self.name_end = array("q")  # end of each object's names in ``names``


def prepare_vg(root: str | os.PathLike, out_dir: str | os.PathLike | None = None,
               top: int = 3000, split_file: str | os.PathLike | None = None, seed: int = 0,
               show_progress: bool = True) -> VgReport:
    """Prepare a Visual Genome copy into ``OUT/vg_<split>.json`` (see the module doc)."""
    root = Path(root).resolve()
    out_dir = Path(out_dir) if out_dir is not None else DEFAULT_OUT
    for name in ("objects.json", "image_data.json"):
        if not (root / name).is_file():
            raise IvrError(f"{root / name} not found; --vg takes the Visual Genome folder "
                           "holding objects.json, image_data.json and VG_100K/, VG_100K_2/")
    if top < 1:
        raise IvrError(f"--vg-top must be >= 1, got {top}")
    if not any((root / f).is_dir() for f in IMAGE_FOLDERS):
        raise IvrError(f"no image folder {' or '.join(IMAGE_FOLDERS)} under {root}")
    images = read_image_data(root)
    alias_file = root / "object_alias.txt"
    normalise = name_normaliser(read_aliases(alias_file) if alias_file.is_file() else {})
    objects, report, vocabulary = _read_objects(root / "objects.json", images, normalise,
                                                show_progress)
    report.missing = [f"{i}.jpg" for i, (rel, _, _) in images.items() if not rel]
    classes, label = _choose_classes(objects, vocabulary, top, report)
    if len(classes) == 1:
        raise IvrError(f"no object of {root / 'objects.json'} could be kept ({report.objects} "
                       f"read; {', '.join(f'{n} {r}' for r, n in report.skipped.items())}); "
                       "are the images under VG_100K/ and VG_100K_2/?")
    report.classes = len(classes)
    if split_file is not None and Path(split_file).is_file():
        split_path, splits, written = Path(split_file), read_split(Path(split_file)), False
    elif split_file is not None:
        raise IvrError(f"split file not found: {split_file}")
    else:
        kept = [i for i, (rel, _, _) in images.items() if rel]
        split_path, splits, written = out_dir / SPLIT_FILE, make_split(kept, seed), True
        out_dir.mkdir(parents=True, exist_ok=True)
        write_json(split_path, {"seed": seed, **splits})
    report.split_file, report.split_written = split_path, written
    _write_splits(objects, label, images, splits, classes, root, out_dir, top, report)
    return report


def _read_objects(path: Path, images: dict[int, tuple[str, int, int]],
                  normalise: Callable[[Any], str],
                  show_progress: bool) -> tuple[_Objects, VgReport, dict[str, int]]:
    objects, vocabulary = _Objects(), {}
    report = VgReport(0, 0, 0, Path(), False)
    for i, entry in enumerate(progress_bar(iter_json_array(path), len(images),
                                           "objects.json", enabled=show_progress)):
        image_id = entry.get("image_id", entry.get("id")) if isinstance(entry, dict) else None
        listed = entry.get("objects") if isinstance(entry, dict) else None
        if not isinstance(image_id, int) or not isinstance(listed, list):
            raise IvrError(f"{path}: entry {i} is not an image's objects (expected "
                           f"{{\"image_id\": ..., \"objects\": [...]}}, got {str(entry)[:120]})")
        report.objects += len(listed)
        rel, width, height = images.get(image_id, (None, 0, 0))
        if not rel:
            report.skipped[UNKNOWN_IMAGE if rel is None else MISSING_FILE] += len(listed)
            continue
        for obj in listed:
            parsed = _parse_object(obj, width, height)
            if isinstance(parsed, str):
                report.skipped[parsed] += 1
                continue
            object_id, box, clipped, raw_names = parsed
            names = list(dict.fromkeys(n for n in map(normalise, raw_names) if n))
            if not names:
                report.skipped[MALFORMED] += 1
                continue
            report.clipped += clipped
            objects.object_id.append(object_id)
            objects.image.append(image_id)
            objects.box.extend(box)
            objects.names.extend(vocabulary.setdefault(n, len(vocabulary)) for n in names)
            objects.name_end.append(len(objects.names))
    report.names = len(vocabulary)
    return objects, report, vocabulary


def _parse_object(obj: Any, width: int, height: int):
    """(object id, clipped box, whether clipped, names) or the reason to skip it."""
    if not isinstance(obj, dict):
        return MALFORMED
    object_id = obj.get("object_id", obj.get("id"))
    xywh = [obj.get(k) for k in ("x", "y", "w", "h")]
    names = obj.get("names", [obj["name"]] if "name" in obj else None)
    if (not isinstance(object_id, int) or not isinstance(names, list)
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                       and math.isfinite(v) for v in xywh)):
        return MALFORMED
    if xywh[2] < 1 or xywh[3] < 1:
        return DEGENERATE
    box = to_box(xywh, width, height)
    if box is None:
        return OUTSIDE
    x, y, w, h = xywh
    clipped = box != [math.floor(x), math.floor(y), math.ceil(x + w) - 1, math.ceil(y + h) - 1]
    return object_id, box, clipped, names


def _choose_classes(objects: _Objects, vocabulary: dict[str, int], top: int,
                    report: VgReport) -> tuple[list[str], np.ndarray]:
    """Drop repeated object ids (marked by a label of -2), count names, keep the ``top``
    most frequent; returns the classes and each object's label (0 = no class)."""
    count = len(objects.object_id)
    lengths = np.diff(_np(objects.name_end, np.int64), prepend=0)
    _, first = np.unique(_np(objects.object_id, np.int64), return_index=True)
    keep = np.zeros(count, bool)
    keep[first] = True
    report.skipped[DUPLICATE] += int(count - keep.sum())
    names = _np(objects.names, np.int32)  # one entry per (object, name)
    owner = np.repeat(np.arange(count), lengths)  # the object of each entry
    counted = np.bincount(names[keep[owner]], minlength=len(vocabulary))
    by_id = list(vocabulary)
    ranked = sorted(range(len(by_id)), key=lambda i: (-counted[i], by_id[i]))
    chosen = [i for i in ranked[:top] if counted[i] > 0]
    class_of = np.zeros(len(by_id), np.int64)
    class_of[chosen] = np.arange(1, len(chosen) + 1)
    label = np.where(keep, 0, -2)
    hit = (class_of[names] > 0) & keep[owner]
    objects_hit, first_hit = np.unique(owner[hit], return_index=True)  # entries are in order
    label[objects_hit] = class_of[names[hit]][first_hit]
    report.skipped[RARE] += int((label == 0).sum())
    return [BACKGROUND] + [normalise_name(by_id[i]) for i in chosen], label


def _np(values: array, dtype) -> np.ndarray:
    """A compact array as numpy (a view), also when empty."""
    return np.frombuffer(values, dtype) if len(values) else np.zeros(0, dtype)


def _write_splits(objects: _Objects, label: np.ndarray, images: dict, splits: dict,
                  classes: list[str], root: Path, out_dir: Path, top: int,
                  report: VgReport) -> None:
    image_of = _np(objects.image, np.int64)
    boxes = _np(objects.box, np.int32).reshape(-1, 4)
    labelled = np.flatnonzero(label > 0)
    order = labelled[np.argsort(image_of[labelled], kind="stable")]
    starts = np.searchsorted(image_of[order], sorted(images), side="left")
    ends = np.searchsorted(image_of[order], sorted(images), side="right")
    span = dict(zip(sorted(images), zip(starts.tolist(), ends.tolist())))
    in_split = {i for ids in splits.values() for i in ids}
    report.unknown_split_ids = len(in_split - images.keys())
    report.skipped[NOT_IN_SPLIT] += sum(e - s for i, (s, e) in span.items()
                                        if i not in in_split and images[i][0])
    out_dir.mkdir(parents=True, exist_ok=True)
    header = {"classes": classes, "root": portable_root(root, out_dir), "top": top}
    for name, ids in splits.items():
        summary = SplitSummary(name, out_dir / prepared_name(name, 0, "vg"))
        with atomic_open(summary.path, "w", encoding="utf-8") as f:
            # streamed: one image record per line, never the whole split in memory
            f.write(json.dumps({**header, "split": name})[:-1] + ', "images": [')
            sep = "\n"
            for image_id in ids:
                rel, width, height = images.get(image_id, ("", 0, 0))
                if not rel:
                    continue
                s, e = span[image_id]
                box = boxes[order[s:e]]
                areas = ((box[:, 2] - box[:, 0] + 1) * (box[:, 3] - box[:, 1] + 1)).tolist()
                f.write(sep + json.dumps({"image": rel, "width": width, "height": height,
                                          "boxes": box.tolist(),
                                          "classes": label[order[s:e]].tolist(),
                                          "seg_areas": areas}))
                sep = ",\n"
                summary.images += 1
                summary.regions += e - s
                summary.empty += e == s
            f.write("\n]}\n")
        report.splits.append(summary)
