"""Prepared splits as a torch Dataset: one image and all its regions per item."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from ivr_core.config import DataConfig
from ivr_core.errors import IvrError
from ivr_core.utils.files import UnreadableFile, read_json
from ivr_core.utils.images import read_image
from ivr_core.utils.paths import inside

# torchvision's ImageNet weights expect RGB in [0, 1] normalised with these
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


@dataclass
class PreparedSplit:
    path: Path
    root: Path
    classes: list[str]
    images: list[dict]
    context_classes: list[str] = field(default_factory=list)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def flip_map(self) -> np.ndarray:
        """Class permutation of a horizontal flip: left_x <-> right_x where both exist."""
        index = {name: i for i, name in enumerate(self.classes)}
        perm = np.arange(len(self.classes))
        for name, i in index.items():
            for a, b in (("left_", "right_"), ("right_", "left_")):
                if name.startswith(a) and b + name[len(a):] in index:
                    perm[i] = index[b + name[len(a):]]
        return perm


def prepared_name(split: str, min_count: int, dataset: str = "ade") -> str:
    """File name of a prepared split: ``ade_<split>_<min_count>.json`` (ADE20K and the
    synthetic dataset, classes filtered by count), ``coco_<split>.json`` (all categories) or
    ``vg_<split>.json`` (Visual Genome, the most frequent names)."""
    if dataset in ("coco", "vg"):
        return f"{dataset}_{split}.json"
    return f"ade_{split}_{min_count}.json"


def load_prepared(data_dir: str | os.PathLike, split: str, min_count: int,
                  root: str | os.PathLike = "", dataset: str = "ade") -> PreparedSplit:
    """Read a prepared split (see :func:`prepared_name`) from ``data_dir``."""
    path = Path(data_dir) / prepared_name(split, min_count, dataset)
    if not os.path.lexists(path):  # anything else there is read, and refused, below
        raise IvrError(f"prepared split not found: {path}; run `ivr prepare-data` first "
                       "(or point --data / data.dir at the folder holding it)")
    try:
        doc = read_json(path, what="prepared split")
        classes, images = doc["classes"], doc["images"]
    except UnreadableFile as e:
        raise IvrError(f"{path} is not a prepared split ({e.reason}); rerun "
                       "`ivr prepare-data`") from None
    except (KeyError, TypeError) as e:
        raise IvrError(f"{path} is not a prepared split ({type(e).__name__}: {e}); rerun "
                       "`ivr prepare-data`") from None
    if root:
        root_path, origin = Path(root), "data.root"
    else:
        root_path, origin = (path.parent / doc.get("root", ".")).resolve(), f"recorded in {path}"
    if not root_path.is_dir():
        raise IvrError(f"dataset root {root_path} ({origin}) does not exist; "
                       "set data.root to where the images are")
    try:
        for rec in images:
            inside(root_path, rec["image"], str(path))
    except (KeyError, TypeError, AttributeError):
        raise IvrError(f"{path} holds a malformed image entry; rerun `ivr prepare-data`") from None
    if images and not any((root_path / rec["image"]).is_file() for rec in images[:50]):
        raise IvrError(f"none of the first images of {path} exist under the dataset root "
                       f"{root_path} ({origin}; e.g. {root_path / images[0]['image']}); set "
                       "data.root to the folder the image paths are relative to")
    return PreparedSplit(path, root_path, classes, images, doc.get("context_classes", []))


def image_scale(height: int, width: int, scale: int, max_size: int) -> float:
    """Shorter side to ``scale`` unless the longer side would exceed ``max_size``."""
    factor = scale / min(height, width)
    if round(factor * max(height, width)) > max_size:
        factor = max_size / max(height, width)
    return factor


def to_model_input(image_bgr: np.ndarray, scale: int, max_size: int) -> tuple[torch.Tensor, float]:
    """An OpenCV BGR uint8 image -> the normalised RGB (3, H', W') tensor the backbone
    expects (resized per :func:`image_scale`), and the resize factor for the boxes."""
    height, width = image_bgr.shape[:2]
    factor = image_scale(height, width, scale, max_size)
    image = cv2.resize(image_bgr, None, fx=factor, fy=factor, interpolation=cv2.INTER_LINEAR)
    image = (image[:, :, ::-1].astype(np.float32) / 255.0 - MEAN) / STD  # BGR -> RGB
    return torch.from_numpy(image.transpose(2, 0, 1).copy()), factor


class RegionDataset(Dataset):
    """Items: ``{"image": (3, H, W) float, "boxes": (K, 4) float x1 y1 x2 y2 in scaled
    pixels, "classes": (K,) long, "index": int, "flipped": bool, "scale": float}``, or
    ``{"error": message, "index": int}`` when the image cannot be read (the caller skips it:
    one unreadable file must not end a days-long run).

    Images without regions are left out. With ``flip`` the list is doubled with
    horizontally flipped copies (item ``i + n`` is the flip of item ``i``).
    """

    def __init__(self, split: PreparedSplit, scale: int, max_size: int, flip: bool = False,
                 max_pixels: int = DataConfig.max_pixels):
        self.split = split
        self.scale, self.max_size, self.max_pixels = scale, max_size, max_pixels
        self.indices = [i for i, rec in enumerate(split.images) if rec["boxes"]]
        self.flip = flip
        self._flip_map = torch.from_numpy(split.flip_map())

    def __len__(self) -> int:
        return len(self.indices) * (2 if self.flip else 1)

    def __getitem__(self, item: int) -> dict:
        flipped = item >= len(self.indices)
        index = self.indices[item - len(self.indices) if flipped else item]
        rec = self.split.images[index]
        try:
            image = self.read(index)
        except UnreadableFile as e:
            return {"error": f"cannot read image {e.path} ({e.reason})", "index": index}
        # flipped about the record's width (the object mask's, for ADE: the authors' rule,
        # which only differs from the image's where they disagree)
        width = rec["width"]
        boxes = torch.tensor(rec["boxes"], dtype=torch.float32).reshape(-1, 4)
        classes = torch.tensor(rec["classes"], dtype=torch.long)
        if flipped:
            image = image[:, ::-1]
            boxes = torch.stack([width - boxes[:, 2] - 1, boxes[:, 1],
                                 width - boxes[:, 0] - 1, boxes[:, 3]], dim=1)
            classes = self._flip_map[classes]
        tensor, factor = to_model_input(image, self.scale, self.max_size)
        return {"image": tensor, "boxes": boxes * factor, "classes": classes, "index": index,
                "flipped": flipped, "scale": factor}

    def read(self, index: int) -> np.ndarray:
        """Image ``index`` of the split as stored (BGR uint8, (H, W, 3)), read inside the
        dataset root; raises UnreadableFile."""
        path = self.split.root / self.split.images[index]["image"]
        return read_image(path, self.max_pixels, self.split.root).bgr


class IterationSampler(Sampler[int]):
    """Dataset indices for iterations ``start .. total - 1``, ``count`` per iteration.

    Iteration ``it`` uses the images at positions ``it * batch + first .. + count - 1`` of
    an endless sequence of seeded per-epoch permutations: with ``batch`` = processes x
    images per step and ``first`` = rank x images per step, the processes of a distributed
    run share each step's images without overlap, and the order depends only on (seed,
    position), so resuming continues it exactly.
    """

    def __init__(self, size: int, seed: int, start: int, total: int, batch: int = 1,
                 first: int = 0, count: int = 1):
        self.size, self.seed, self.start, self.total = size, seed, start, total
        self.batch, self.first, self.count = batch, first, count

    def __len__(self) -> int:
        return max(self.total - self.start, 0) * self.count

    def __iter__(self):
        epoch, perm = -1, None
        for it in range(self.start, self.total):
            for j in range(self.count):
                position = it * self.batch + self.first + j
                if position // self.size != epoch:
                    epoch = position // self.size
                    g = torch.Generator().manual_seed(self.seed * 100003 + epoch)
                    perm = torch.randperm(self.size, generator=g).tolist()
                yield perm[position % self.size]
