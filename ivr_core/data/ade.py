"""ADE20K (release 2016_07_26) parsing, by the authors' rules (docs/design.md, "Data").

A *prepared split* is one JSON file ``ade_<split>_<min_count>.json``::

    {"classes": ["__background__", name, ...],
     "root": "../ADE20K_2016_07_26", "split": "mtest", "min_count": 5,
     "images": [{"image": "images/validation/...jpg", "width": W, "height": H,
                 "boxes": [[x1, y1, x2, y2], ...], "classes": [int, ...],
                 "seg_areas": [int, ...], "parents": [int, ...]}, ...]}

``root`` is the dataset root relative to the folder of the JSON file (absolute only where
no relative path exists, as across Windows drives), so the two can move together; image
paths are relative to it. ``parents`` gives, per region, the index of the region of the
level above that holds it (-1 for objects), see :func:`parse_image`. Boxes are inclusive pixel coordinates of the object mask, whose size is the record's: the
image's stored pixels (an EXIF orientation tag is not applied, see
:mod:`ivr_core.utils.images`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from ivr_core.config import DataConfig
from ivr_core.errors import IvrError
from ivr_core.utils.files import MissingFile, UnreadableFile, read_text
from ivr_core.utils.images import read_image
from ivr_core.utils.paths import inside

BACKGROUND = "__background__"
DEFAULT_SPLIT_DIR = Path(__file__).parent / "ade_split"
SPLITS = ("train", "mval", "mtest")


class AnnotationError(UnreadableFile):
    """One image's annotation is unusable; the image is skipped and reported."""


def normalise_name(raw: str) -> str:
    return raw.strip().replace(" ", "_")


def load_classes(split_dir: str | os.PathLike, min_count: int) -> list[str]:
    """Background, then every raw class (line >= 1) counted >= ``min_count``, in file order."""
    split_dir = Path(split_dir)
    names = _read_lines(split_dir / "objectnames.txt")
    counts = _read_lines(split_dir / "objectcounts.txt")
    if len(names) != len(counts):
        raise IvrError(f"{split_dir}: objectnames.txt has {len(names)} lines but "
                       f"objectcounts.txt has {len(counts)}; they must match line by line")
    classes = [BACKGROUND]
    for line, (name, count) in enumerate(zip(names, counts)):
        try:
            n = int(count)
        except ValueError:
            raise IvrError(f"{split_dir / 'objectcounts.txt'} line {line + 1}: "
                           f"'{count}' is not a count") from None
        if line >= 1 and n >= min_count:
            classes.append(normalise_name(name))
    return classes


def read_split(split_dir: str | os.PathLike, split: str) -> list[str]:
    """Image paths of a split file, checked not to be absolute or climb out with ``..``
    (links that lead out of the root are refused when the image is read; a NUL byte makes
    the whole file unreadable text)."""
    path = Path(split_dir) / f"{split}.txt"
    entries = [line.strip() for line in _read_lines(path) if line.strip()]
    for entry in entries:
        p = PurePosixPath(entry)
        if p.is_absolute() or ".." in p.parts:
            raise IvrError(f"{path}: entry '{entry}' leaves the dataset root; split files "
                           "must hold paths relative to it")
    return entries


def load_names(split_dir: str | os.PathLike) -> set[str]:
    """Every class name of objectnames.txt (normalised), kept or not."""
    return {normalise_name(n) for n in _read_lines(Path(split_dir) / "objectnames.txt")[1:]}


def _read_lines(path: Path) -> list[str]:
    try:
        return read_text(path, what="split file").splitlines()
    except MissingFile:
        raise IvrError(f"split file not found: {path} (expected the ADE split files "
                       "train.txt, mval.txt, mtest.txt, objectnames.txt, "
                       "objectcounts.txt)") from None
    except UnreadableFile as e:
        raise IvrError(f"cannot read split file {e}") from None


def parse_atr(path: Path, class_index: dict[str, int], known: set[str] | None = None,
              root: Path | None = None) -> tuple[dict[str, int], int]:
    """Map ``"%03d_%d" % (instance, level)`` to a kept class index, and count the instances
    whose name is not in ``known`` (all of objectnames.txt): those are skipped, as the
    authors' reader skips them, and the image is kept. Empty lines are ignored."""
    text = read_text(path, root, what="attribute file")
    instances: dict[str, int] = {}
    unknown = 0
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        fields = [f.strip() for f in line.split("#")]
        if len(fields) < 5:
            raise AnnotationError(path, f"line {number} has {len(fields)} '#'-separated "
                                        "fields, expected at least 5")
        try:
            key = "%03d_%d" % (int(fields[0]), int(fields[1]))
        except ValueError:
            raise AnnotationError(path, f"line {number}: instance number and part level "
                                        "must be integers") from None
        name = normalise_name(fields[4])
        if known is not None and name not in known:
            unknown += 1
            continue
        cls = class_index.get(name)
        if cls is not None:
            instances[key] = cls
    return instances, unknown


def read_mask_instances(path: Path, root: Path | None = None,
                        max_pixels: int = DataConfig.max_pixels) -> np.ndarray:
    """The B channel (instance ids) of an ADE mask PNG, as uint8 (H, W)."""
    return read_image(path, max_pixels, root, what="mask").bgr[:, :, 0]  # BGR: B = instance


def mask_path(image_path: Path, suffix: str) -> Path:
    return image_path.with_name(image_path.stem + suffix)


@dataclass
class ParsedImage:
    record: dict  # the prepared record (see the module docstring)
    notes: list[str] = field(default_factory=list)  # kept, but worth telling the user
    unknown: int = 0  # instances named in _atr.txt but not in objectnames.txt, skipped


def image_regions(root: Path, rel_path: str, class_index: dict[str, int],
                  known: set[str] | None = None,
                  max_pixels: int = DataConfig.max_pixels) -> dict:
    """One image's prepared record (see :func:`parse_image`)."""
    return parse_image(root, rel_path, class_index, known, max_pixels).record


def parse_image(root: Path, rel_path: str, class_index: dict[str, int],
                known: set[str] | None = None,
                max_pixels: int = DataConfig.max_pixels) -> ParsedImage:
    """One image's record: boxes, classes and seg areas, objects first, then parts by level,
    and ``parents``: for each region of a part level L, the region of level L - 1 that
    covers most of its pixels (-1 for objects, or when that instance is not a kept region).

    As the authors' reader: the size is the object mask's (a differently sized image is
    kept, with a note) and every mask's boxes are in its own pixels. The image must decode
    (a JPEG cut short decodes as far as it goes). Every file is read inside ``root``.
    Raises UnreadableFile (AnnotationError among them) when the image cannot be used."""
    try:
        image_path = inside(root, rel_path, "split file")
    except IvrError as e:
        raise AnnotationError(root / rel_path, str(e).split(": ", 1)[1]) from None
    image = read_image(image_path, max_pixels, root)
    instances, unknown = parse_atr(mask_path(image_path, "_atr.txt"), class_index, known, root)
    boxes, classes, areas, parents = [], [], [], []
    level, above, above_regions = 0, None, {}
    path = mask_path(image_path, "_seg.png")
    ids = read_mask_instances(path, root, max_pixels)
    height, width = ids.shape
    notes = image.notes()
    if image.bgr.shape[:2] != ids.shape:
        notes.append(f"the image is {image.bgr.shape[1]}x{image.bgr.shape[0]} but its mask "
                     f"{width}x{height}: boxes and size follow the mask, as in the authors' reader")
    while True:
        regions = _add_level(ids, level, instances, boxes, classes, areas)
        same_size = above is None or above.shape == ids.shape
        if not same_size:
            notes.append(f"{path.name} is {ids.shape[1]}x{ids.shape[0]} but the level above "
                         f"{above.shape[1]}x{above.shape[0]}: its regions have no parent")
        for value in regions:  # the instance of the level above covering most of the part
            parents.append(-1 if above is None or not same_size else
                           above_regions.get(_covering(above, ids == value), -1))
        above, above_regions = ids, regions
        level += 1
        path = mask_path(image_path, f"_parts_{level}.png")
        if not os.path.lexists(path):  # lexists: a looping link is read, and reported
            break
        ids = read_mask_instances(path, root, max_pixels)
    record = {"image": rel_path, "width": width, "height": height, "boxes": boxes,
              "classes": classes, "seg_areas": areas, "parents": parents}
    return ParsedImage(record, notes, unknown)


def _covering(ids: np.ndarray, pixels: np.ndarray) -> int:
    """The non-zero instance value that covers most of ``pixels`` (0 when none)."""
    values, counts = np.unique(ids[pixels], return_counts=True)
    counts[values == 0] = 0
    return int(values[counts.argmax()]) if counts.max(initial=0) > 0 else 0


def _add_level(ids: np.ndarray, level: int, instances: dict[str, int],
               boxes: list, classes: list, areas: list) -> dict[int, int]:
    """Append the level's kept regions; returns {instance value: region index}."""
    # Instance t of a level is the value at rank t of the sorted unique ids, 0 included when
    # present (the authors' reading of the format): with no 0 pixel the ranks shift by one.
    values = np.unique(ids)
    regions = {}
    for rank, value in enumerate(values.tolist()):
        if value == 0:
            continue
        cls = instances.get("%03d_%d" % (rank, level))
        if cls is None:
            continue
        ys, xs = np.nonzero(ids == value)
        regions[value] = len(boxes)
        boxes.append([int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())])
        classes.append(cls)
        areas.append(int(xs.size))
    return regions


@dataclass
class Problem:
    path: str
    reason: str


def check_root(root: Path, split_dir: Path, splits: tuple[str, ...]) -> None:
    """Fail early, with what was expected, when ``root`` is not an ADE-format dataset."""
    if not root.is_dir():
        raise IvrError(f"dataset root not found: {root} (expected the ADE20K_2016_07_26 "
                       "folder that holds images/training and images/validation)")
    if not (root / "images").is_dir():
        raise IvrError(f"{root} has no images/ folder: expected the ADE20K_2016_07_26 layout "
                       "ROOT/images/{training,validation}/<letter>/<scene>/ADE_*.jpg; point "
                       "--ade-root at the folder that holds images/")
    for split in splits:
        entries = read_split(split_dir, split)
        if entries and not any((root / e).is_file() for e in entries[:50]):
            raise IvrError(f"none of the first images of {split_dir / (split + '.txt')} exist "
                           f"under {root} (e.g. {root / entries[0]}); is --ade-root the folder "
                           "that the split paths are relative to?")
