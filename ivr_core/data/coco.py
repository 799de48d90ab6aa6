"""COCO-format instance annotations -> one prepared split ``coco_<name>.json``.

The prepared format is ADE's (see :mod:`ivr_core.data.ade`) without ``min_count``: every
category is a class, background first, then categories by ascending id, so two splits
prepared separately from files with the same categories get the same class list.

A COCO bbox ``[x, y, w, h]`` is in continuous pixels; the inclusive integer box is
``[floor(x), floor(y), ceil(x + w) - 1, ceil(y + h) - 1]`` clipped to the image.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ivr_core.config import DataConfig
from ivr_core.data.ade import BACKGROUND, normalise_name
from ivr_core.data.dataset import prepared_name
from ivr_core.data.prepare import portable_root
from ivr_core.errors import IvrError
from ivr_core.utils.files import MissingFile, UnreadableFile, read_json
from ivr_core.utils.images import read_header
from ivr_core.utils.io import write_json
from ivr_core.utils.progress import progress_bar

DEFAULT_OUT = Path("data/coco")
# skip reasons, in the order the summary lists them: annotations, then images
CROWD, DEGENERATE = "crowd", "degenerate box"
UNKNOWN_IMAGE, UNKNOWN_CATEGORY = "unknown image_id", "unknown category_id"
REASONS = (CROWD, DEGENERATE, UNKNOWN_IMAGE, UNKNOWN_CATEGORY)
MISSING_FILE, UNREADABLE, OTHER_SIZE = "missing", "unreadable", "not the annotated size"
IMAGE_REASONS = (MISSING_FILE, UNREADABLE, OTHER_SIZE)
# A box coordinate beyond this is no pixel of an image: OpenCV decodes no side over 2**20,
# float32 (the model's boxes) holds every integer only up to 2**24
MAX_COORDINATE = 2**24
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass
class CocoReport:
    split: str
    path: Path
    classes: int
    images: int = 0
    regions: int = 0
    empty: int = 0  # images kept in the list without any region
    skipped: Counter = field(default_factory=Counter)  # reason -> annotations
    skipped_images: Counter = field(default_factory=Counter)  # IMAGE_REASONS -> images
    unusable: list[tuple[str, str]] = field(default_factory=list)  # (image path, why)


def load_coco(path: str | os.PathLike) -> dict:
    """Read and check one annotation file; anything unusable is an IvrError naming it."""
    path = Path(path)
    if not path.is_file():
        raise IvrError(f"COCO annotation file not found: {path} (expected e.g. "
                       "annotations/instances_train2017.json)")
    try:
        doc = read_json(path, what="annotation file")
    except UnreadableFile as e:
        raise IvrError(f"{path} is {e.reason}; expected a COCO instance annotation "
                       "file") from None
    if not isinstance(doc, dict):
        raise IvrError(f"{path} is not a COCO annotation file: expected a JSON object with "
                       "'images', 'annotations' and 'categories'")
    for key in ("images", "annotations", "categories"):
        if not isinstance(doc.get(key), list):
            raise IvrError(f"{path} is not a COCO instance annotation file: "
                           f"{'no' if key not in doc else 'bad'} '{key}' list (expected "
                           "'images', 'annotations' and 'categories'; image-info files such "
                           "as test-dev have no annotations)")
    for i, c in enumerate(doc["categories"]):
        _expect(path, "categories", i, c, {"id": _is_int, "name": _is_name})
    for i, im in enumerate(doc["images"]):
        _expect(path, "images", i, im, {"id": _is_int, "file_name": _is_relative,
                                         "width": _is_positive, "height": _is_positive})
    for i, a in enumerate(doc["annotations"]):
        _expect(path, "annotations", i, a, {"image_id": _is_int, "category_id": _is_int,
                                             "bbox": is_bbox})
        if not _is_area(a.get("area", 0)) or a.get("iscrowd", 0) not in (0, 1):
            raise IvrError(f"{path}: annotations[{i}] has a bad 'area' or 'iscrowd' "
                           "(expected a number and 0 or 1)")
    return doc


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_coordinate(v) -> bool:
    """A JSON number (not a bool, nor a string) within +-MAX_COORDINATE."""
    return _is_number_within(v, MAX_COORDINATE)


def _is_area(v) -> bool:
    return _is_number_within(v, MAX_COORDINATE**2)


def _is_number_within(v, bound: int) -> bool:
    # compared without a conversion: NaN, infinities and 400-digit integers simply fail
    return isinstance(v, (int, float)) and not isinstance(v, bool) and -bound <= v <= bound


def _is_positive(v) -> bool:
    return _is_int(v) and 0 < v <= MAX_COORDINATE


def _is_name(v) -> bool:
    return isinstance(v, str) and bool(normalise_name(v))


def _is_relative(v) -> bool:
    p = PurePosixPath(v.replace("\\", "/")) if isinstance(v, str) else None
    return p is not None and bool(p.parts) and not p.is_absolute() and ".." not in p.parts


def is_bbox(v) -> bool:
    """A COCO ``[x, y, width, height]`` of coordinates (:func:`is_coordinate`)."""
    return isinstance(v, list) and len(v) == 4 and all(map(is_coordinate, v))


_EXPECTED = {_is_int: "an integer", _is_name: "a non-empty string", _is_positive:
             f"a positive integer up to {MAX_COORDINATE}", _is_relative:
             "a path relative to the images folder", is_bbox:
             f"[x, y, width, height]: 4 numbers within +-{MAX_COORDINATE}"}


def _expect(path: Path, section: str, i: int, entry, checks: dict) -> None:
    if not isinstance(entry, dict):
        raise IvrError(f"{path}: {section}[{i}] is not a JSON object")
    for key, check in checks.items():
        if not check(entry.get(key)):
            raise IvrError(f"{path}: {section}[{i}] has no valid '{key}' (expected "
                           f"{_EXPECTED[check]}, got {shown(entry.get(key))})")


def shown(value, limit: int = 60) -> str:
    """A JSON value as written, cut to ``limit`` characters (it may hold a 400-digit
    number)."""
    text = json.dumps(value, default=repr)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def merge_categories(docs: list[tuple[Path, dict]]) -> tuple[list[str], dict[int, int]]:
    """Classes (background, then names by category id) and category id -> class index."""
    names: dict[int, tuple[str, Path]] = {}
    for path, doc in docs:
        for c in doc["categories"]:
            name = normalise_name(c["name"])
            seen = names.setdefault(c["id"], (name, path))
            if seen[0] != name and seen[1] == path:
                raise IvrError(f"{path}: category id {c['id']} is both '{seen[0]}' and "
                               f"'{name}'; category ids must be unique")
            if seen[0] != name:
                raise IvrError(f"category id {c['id']} is '{seen[0]}' in {seen[1]} but "
                               f"'{name}' in {path}; annotation files combined into one "
                               "split must agree on their categories")
    ids = sorted(names)
    by_name: dict[str, int] = {BACKGROUND: -1}
    for cid in ids:
        name, path = names[cid]
        if by_name.setdefault(name, cid) != cid:
            raise IvrError(f"{path}: category '{name}' has id {cid} but also id "
                           f"{by_name[name]}; class names must be unique")
    return [BACKGROUND] + [names[c][0] for c in ids], {c: i + 1 for i, c in enumerate(ids)}


def inclusive_box(bbox: list[float]) -> list[int]:
    """The inclusive integer pixel box [x1, y1, x2, y2] covering a COCO ``[x, y, w, h]``."""
    x, y, w, h = (float(v) for v in bbox)
    return [math.floor(x), math.floor(y), math.ceil(x + w) - 1, math.ceil(y + h) - 1]


def to_box(bbox: list[float], width: int, height: int) -> list[int] | None:
    """Inclusive integer box of a COCO ``[x, y, w, h]``, clipped; None when degenerate."""
    if bbox[2] < 1 or bbox[3] < 1:
        return None
    x1, y1, x2, y2 = inclusive_box(bbox)
    x1, y1, x2, y2 = max(x1, 0), max(y1, 0), min(x2, width - 1), min(y2, height - 1)
    return [x1, y1, x2, y2] if x2 >= x1 and y2 >= y1 else None


def _image_problem(file: Path, image_dir: Path, im: dict,
                   max_pixels: int) -> tuple[str, str] | None:
    """(one of IMAGE_REASONS, the reason in words) why the image cannot be used, or None."""
    try:
        header = read_header(file, max_pixels, image_dir)
    except UnreadableFile as e:
        return (MISSING_FILE if isinstance(e, MissingFile) else UNREADABLE), e.reason
    size, annotated = (header.width, header.height), (im["width"], im["height"])
    if size == annotated:
        return None
    turned = header.orientation >= 5 and size == annotated[::-1]  # EXIF 5..8: a quarter turn
    return OTHER_SIZE, (f"the image is {size[0]}x{size[1]} but annotated as {annotated[0]}x"
                        f"{annotated[1]}" + (f": the annotation describes it turned by its "
                                             f"EXIF orientation {header.orientation}, ivr "
                                             "reads pixels as stored" if turned else ""))


def prepare_coco(annotation_files: list[str | os.PathLike],
                 image_dirs: list[str | os.PathLike], name: str,
                 out_dir: str | os.PathLike | None = None,
                 show_progress: bool = True,
                 max_pixels: int = DataConfig.max_pixels) -> CocoReport:
    """Combine COCO-format files into ``OUT/coco_<name>.json``; report what was skipped.

    ``image_dirs`` pairs with ``annotation_files`` in order (or one folder for all). Each
    image's header is read (nothing decoded): images missing, unreadable, above
    ``max_pixels`` or not of the annotated width and height in their stored frame (EXIF
    orientation is not applied: a turned image's annotation does not fit) are skipped.
    """
    files = [Path(f) for f in annotation_files]
    if not files:
        raise IvrError("give at least one COCO annotation file (--coco FILE)")
    if len(image_dirs) not in (1, len(files)):
        raise IvrError(f"give one --images folder per --coco file, in order, or one for all "
                       f"(got {len(files)} --coco and {len(image_dirs)} --images)")
    if not _NAME.fullmatch(name or ""):
        raise IvrError(f"split name '{name}' must be letters, digits, '.', '_' or '-' (it "
                       "names the file coco_<name>.json)")
    dirs = [Path(d).resolve() for d in image_dirs] * (len(files) if len(image_dirs) == 1 else 1)
    for f, d in zip(files, dirs):
        if not d.is_dir():
            raise IvrError(f"images folder not found: {d} (given with --images for {f})")
    docs = [(f, load_coco(f)) for f in files]
    classes, class_of = merge_categories(docs)
    root = Path(os.path.commonpath(dirs))
    out_dir = Path(out_dir) if out_dir is not None else DEFAULT_OUT
    report = CocoReport(name, out_dir / prepared_name(name, 0, "coco"), len(classes))
    records = []
    for (path, doc), image_dir in zip(docs, dirs):
        images = {}
        for i, im in enumerate(doc["images"]):
            if images.setdefault(im["id"], im) is not im:
                raise IvrError(f"{path}: images[{i}] repeats image id {im['id']}")
        regions: dict[int, list] = {}
        for a in doc["annotations"]:
            im = images.get(a["image_id"])
            if im is None or a["category_id"] not in class_of:
                report.skipped[UNKNOWN_IMAGE if im is None else UNKNOWN_CATEGORY] += 1
                continue
            if a.get("iscrowd", 0):
                report.skipped[CROWD] += 1
                continue
            box = to_box(a["bbox"], im["width"], im["height"])
            if box is None:
                report.skipped[DEGENERATE] += 1
                continue
            area = a.get("area")
            area = (box[2] - box[0] + 1) * (box[3] - box[1] + 1) if area is None else area
            regions.setdefault(im["id"], []).append((box, class_of[a["category_id"]],
                                                     int(round(area))))
        found = 0
        for im in progress_bar(doc["images"], len(doc["images"]), f"{path.name}",
                               enabled=show_progress):
            file = image_dir / im["file_name"].replace("\\", "/")
            problem = _image_problem(file, image_dir, im, max_pixels)
            found += problem is None or problem[0] != MISSING_FILE
            if problem:
                report.skipped_images[problem[0]] += 1
                report.unusable.append((str(file), problem[1]))
                continue
            kept = regions.get(im["id"], [])
            records.append({"image": file.relative_to(root).as_posix(), "width": im["width"],
                            "height": im["height"], "boxes": [r[0] for r in kept],
                            "classes": [r[1] for r in kept], "seg_areas": [r[2] for r in kept]})
            report.regions += len(kept)
            report.empty += not kept
        if doc["images"] and not found:
            raise IvrError(f"none of the {len(doc['images'])} images of {path} exist under "
                           f"{image_dir} (e.g. {image_dir / doc['images'][0]['file_name']}); "
                           "is --images the folder holding its file_name paths?")
    report.images = len(records)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(report.path, {"classes": classes, "root": portable_root(root, out_dir),
                             "split": name, "images": records})
    return report
