"""Where ``ivr predict`` finds each image's boxes.

Four sources, chosen from the ``--boxes`` argument:

- a COCO-style annotation JSON (``images`` + ``annotations`` with ``bbox`` = x, y, w, h);
- a JSON mapping image path -> list of [x1, y1, x2, y2];
- a folder of per-image box files, beside or mirroring the images: ``<stem>.json`` (a list
  of boxes, or ``{"boxes": [...]}``) or ``<stem>.txt`` (one ``x1 y1 x2 y2`` per line);
- ``ade``: ADE20K annotations (``_seg.png``, ``_parts_N.png``, ``_atr.txt``) beside the
  images, whose true classes are then reported too.

Boxes are inclusive pixel coordinates of the original image. Image paths in a JSON match the
image's path relative to the images folder, its absolute path, or (when unique) its name.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

from ivr_core.config import DataConfig
from ivr_core.data import ade
from ivr_core.data.coco import MAX_COORDINATE, inclusive_box, is_bbox, shown
from ivr_core.errors import IvrError
from ivr_core.utils.files import TEXT_CAP, UnreadableFile, read_json, read_text


class BoxError(Exception):
    """This image's boxes cannot be read; the image is skipped and reported."""


class BoxSource:
    """``boxes(path, rel) -> (boxes, true class ids or None)``; raises BoxError."""

    def boxes(self, path: Path, rel: str) -> tuple[list[list[float]], list[int] | None]:
        raise NotImplementedError


class JsonBoxes(BoxSource):
    """A mapping from image path (relative, absolute or bare name) to boxes."""

    def __init__(self, table: dict[str, list], source: Path):
        self.table, self.source = table, source
        names = Counter(Path(k).name for k in table)
        self.by_name = {Path(k).name: v for k, v in table.items() if names[Path(k).name] == 1}

    def boxes(self, path, rel):
        for key in (rel, str(path), str(path.resolve())):
            if key in self.table:
                return self.table[key], None
        if path.name in self.by_name:
            return self.by_name[path.name], None
        raise BoxError(f"no boxes for it in {self.source}")


def _load_json(path: Path) -> JsonBoxes:
    try:
        doc = read_json(path, what="boxes file")
    except UnreadableFile as e:
        raise IvrError(f"cannot read boxes file {e}") from None
    if isinstance(doc, dict) and "images" in doc and "annotations" in doc:
        try:
            files = {im["id"]: im["file_name"] for im in doc["images"]}
            table: dict[str, list] = {name: [] for name in files.values()}
            for i, ann in enumerate(doc["annotations"]):
                if not is_bbox(ann["bbox"]):
                    raise IvrError(f"{path}: annotations[{i}] has bbox {shown(ann['bbox'])}; "
                                   f"expected [x, y, width, height]: 4 numbers within "
                                   f"+-{MAX_COORDINATE}")
                if not ann.get("iscrowd", 0):
                    # not clipped: boxes outside the image are reported, not altered
                    table[files[ann["image_id"]]].append(inclusive_box(ann["bbox"]))
        except (KeyError, TypeError) as e:
            raise IvrError(f"{path} looks like COCO but an entry is malformed ({e!r}); "
                           "expected images[{id, file_name}] and "
                           "annotations[{image_id, bbox: [x, y, w, h]}]") from None
        return JsonBoxes(table, path)
    if isinstance(doc, dict) and all(isinstance(v, list) for v in doc.values()):
        return JsonBoxes(doc, path)
    raise IvrError(f"{path} is neither a COCO annotation file nor a JSON mapping of image "
                   "path -> [[x1, y1, x2, y2], ...]")


class FolderBoxes(BoxSource):
    """``<folder>/<relative path without suffix>.json|.txt`` for each image."""

    def __init__(self, folder: Path):
        self.folder = folder

    def boxes(self, path, rel):
        stem = self.folder / Path(rel).with_suffix("")
        for suffix in (".json", ".txt"):
            file = stem.with_suffix(suffix)
            if os.path.lexists(file):  # lexists: a FIFO or a looping link is reported
                try:
                    return self._read(file), None
                except UnreadableFile as e:
                    raise BoxError(f"unusable box file {e}") from None
        raise BoxError(f"no box file {stem}.json or {stem}.txt")

    def _read(self, file: Path) -> list:
        if file.suffix == ".json":
            doc = read_json(file, self.folder, what="box file", max_bytes=TEXT_CAP)
            boxes = doc.get("boxes") if isinstance(doc, dict) else doc
            if not isinstance(boxes, list):
                raise UnreadableFile(file, f"it holds {shown(doc)}; expected a list of "
                                           '[x1, y1, x2, y2] or {"boxes": [...]}')
            return boxes
        text = read_text(file, self.folder, what="box file")
        try:
            return [[float(v) for v in line.replace(",", " ").split()]
                    for line in text.splitlines() if line.strip()]
        except ValueError as e:
            raise UnreadableFile(file, f"not numbers ({e}); expected one 'x1 y1 x2 y2' per "
                                       "line") from None


class AdeBoxes(BoxSource):
    """ADE20K annotations beside each image, read by the authors' rules for the model's
    classes (regions of other classes are not scored)."""

    def __init__(self, classes: list[str], max_pixels: int = DataConfig.max_pixels):
        self.index = {name: i for i, name in reversed(list(enumerate(classes)))}
        self.max_pixels = max_pixels

    def boxes(self, path, rel):
        try:
            rec = ade.image_regions(path.parent, path.name, self.index,
                                    max_pixels=self.max_pixels)
        except UnreadableFile as e:
            raise BoxError(f"{e.path}: {e.reason}") from None
        return rec["boxes"], rec["classes"]


def open_source(spec: str, images_root: Path, classes: list[str],
                max_pixels: int = DataConfig.max_pixels) -> BoxSource:
    """The box source named by ``--boxes``: "ade", a JSON file, or a folder."""
    if spec == "ade":
        return AdeBoxes(classes, max_pixels)
    path = Path(spec)
    if path.is_file():
        return _load_json(path)
    if path.is_dir():
        return FolderBoxes(path)
    raise IvrError(f"--boxes {spec}: no such file or folder (give a COCO or mapping JSON, a "
                   "folder of per-image .json/.txt box files, or 'ade')")
