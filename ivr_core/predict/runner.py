"""``ivr predict``: label the given boxes of every image in a folder with a checkpoint.

Writes ``predictions.jsonl`` (one line per image: path, size, and per box the box, the
top-5 classes with probabilities, the class at each iteration and the final class) and,
optionally, annotated copies of the images. Unreadable images, images without boxes and
boxes outside the image or degenerate are skipped and listed in the summary. The model runs
through :class:`ivr_core.api.Model`, the same code path as the Python API.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ivr_core.config import Config
from ivr_core.data.coco import MAX_COORDINATE, is_coordinate, shown
from ivr_core.data.dataset import to_model_input
from ivr_core.errors import IvrError
from ivr_core.predict.box_sources import BoxError, BoxSource
from ivr_core.utils.files import UnreadableFile
from ivr_core.utils.images import read_image
from ivr_core.utils.io import atomic_open, staged_outputs
from ivr_core.utils.progress import progress_bar

if TYPE_CHECKING:  # the API runs the model; this module finds images and writes results
    from ivr_core.api import Model, Prediction

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


@dataclass
class PredictReport:
    out: Path
    images: int = 0
    regions: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    notes: list[tuple[str, str]] = field(default_factory=list)  # (path, note): still labelled
    correct: int = 0  # regions whose true class is known and predicted right
    labelled: int = 0  # regions whose true class is known


def list_images(images: Path) -> tuple[Path, list[Path]]:
    """(root, image files): a single file, or every image under a folder, recursively."""
    if not images.is_dir() and os.path.lexists(images):  # a FIFO or a bad link: reported
        return images.parent, [images]
    if not images.is_dir():
        raise IvrError(f"images not found: {images} (give an image file or a folder)")
    # not only regular files: a FIFO or a looping link named .jpg is listed as unreadable
    files = sorted(p for p in images.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES
                   and not p.is_dir() and not _is_ade_mask(p))
    if not files:
        raise IvrError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) under {images}")
    return images, files


def _is_ade_mask(path: Path) -> bool:
    """ADE20K masks lie beside the images; they are annotations, not images to label."""
    name = path.name
    return name.endswith("_seg.png") or ("_parts_" in name and name.endswith(".png"))


def check_boxes(raw, width: int, height: int) -> tuple[list[list[float]], list[str]]:
    """Boxes inside the image with x1 <= x2, y1 <= y2; and a reason for each other one.
    Coordinates must be numbers (strings and booleans are refused, not converted); raises
    BoxError when ``raw`` is no list of boxes at all."""
    if not isinstance(raw, list):
        raise BoxError(f"the boxes are {shown(raw)}, not a list of [x1, y1, x2, y2]")
    kept, problems = [], []
    for i, box in enumerate(raw):
        if not isinstance(box, (list, tuple)) or len(box) != 4 or \
                not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in box):
            problems.append(f"box {i} {shown(box)} is not 4 numbers")
            continue
        if not all(map(is_coordinate, box)):
            problems.append(f"box {i} {shown(box)} holds a number that is not finite or "
                            f"beyond +-{MAX_COORDINATE}")
            continue
        x1, y1, x2, y2 = (float(v) for v in box)
        if x2 < x1 or y2 < y1:
            problems.append(f"box {i} {box!r} is degenerate (x2 < x1 or y2 < y1)")
        elif x1 < 0 or y1 < 0 or x2 > width - 1 or y2 > height - 1:
            problems.append(f"box {i} {box!r} is outside the {width}x{height} image")
        else:
            kept.append([x1, y1, x2, y2])
    return kept, problems


class _Images(Dataset):
    """Decodes, boxes and resizes images in DataLoader workers; failures become items."""

    def __init__(self, root: Path, files: list[Path], source: BoxSource, cfg: Config):
        self.root, self.files, self.source = root, files, source
        self.scale, self.max_size = cfg.data.scale, cfg.data.max_size
        self.max_pixels = cfg.data.max_pixels

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> dict:
        path = self.files[i]
        rel = path.relative_to(self.root).as_posix()
        item = {"path": str(path), "rel": rel, "problems": [], "notes": []}
        try:
            loaded = read_image(path, self.max_pixels)
        except UnreadableFile as e:
            return item | {"error": e.reason}
        image, item["notes"] = loaded.bgr, loaded.notes()
        height, width = image.shape[:2]
        try:
            raw, truth = self.source.boxes(path, rel)
            boxes, problems = check_boxes(raw, width, height)
        except BoxError as e:
            return item | {"error": str(e)}
        if truth is not None and problems:
            truth = None  # cannot align truth with a partial box list
        if not boxes:
            reason = "no boxes" + (f" ({'; '.join(problems)})" if problems else "")
            return item | {"error": reason}
        tensor, factor = to_model_input(image, self.scale, self.max_size)
        return item | {"width": width, "height": height, "image": tensor,
                       "boxes": torch.tensor(boxes, dtype=torch.float32), "factor": factor,
                       "truth": truth, "problems": problems}


def _record(item: dict, pred: Prediction) -> dict:
    regions = []
    for k, (box, region) in enumerate(zip(item["boxes"].tolist(), pred)):
        top = np.argsort(-region.probs, kind="stable")[:5]
        regions.append({
            "box": box,
            "top5": [{"class": pred.classes[c], "prob": round(float(region.probs[c]), 6)}
                     for c in top],
            "class": region.label,
            "prob": round(region.score, 6),
            "iterations": region.iterations})
        if item["truth"] is not None:
            regions[-1]["true_class"] = pred.classes[item["truth"][k]]
    return {"image": item["rel"], "width": item["width"], "height": item["height"],
            "regions": regions}


def predict(images: Path, source: BoxSource, model: Model, out: Path, workers: int = 2,
            draw: bool = False, iterations: bool = False,
            show_progress: bool = True) -> PredictReport:
    """Label every image's boxes with ``model`` (:class:`ivr_core.api.Model`); writes
    ``out/predictions.jsonl`` and, with ``draw``, ``out/drawn/<relative path>``
    (``iterations``: one panel per iteration), both at the end and together (an
    interruption leaves the earlier outputs; ``drawn/`` is replaced as a whole). When no
    image can be labelled nothing is written (``report.images`` is 0)."""
    root, files = list_images(images)
    loader = DataLoader(_Images(root, files, source, model.config), batch_size=None,
                        num_workers=workers, collate_fn=lambda x: x)
    report = PredictReport(out=out / "predictions.jsonl")
    created = not out.exists()
    try:
        with staged_outputs(out) as staging, \
                atomic_open(staging / report.out.name, "w", encoding="utf-8") as f:
            for item in progress_bar(loader, len(files), "predict", enabled=show_progress):
                report.skipped += [(item["rel"], p) for p in item["problems"]]
                if "error" in item:
                    report.skipped.append((item["rel"], item["error"]))
                    continue
                report.notes += [(item["rel"], n) for n in item["notes"]]
                pred = model.run(item["image"], item["boxes"], item["factor"])
                record = _record(item, pred)
                f.write(json.dumps(record) + "\n")
                report.images += 1
                report.regions += len(record["regions"])
                if item["truth"] is not None:
                    report.labelled += len(item["truth"])
                    report.correct += sum(r["class"] == r["true_class"] for r in record["regions"])
                if draw:
                    try:
                        _draw(item, record, staging, pred, iterations,
                              model.config.data.max_pixels)
                    except UnreadableFile as e:  # changed since it was labelled
                        report.notes.append((item["rel"], f"not drawn: {e.reason}"))
            if not report.images:
                raise _NothingLabelled
    except _NothingLabelled:  # nothing to write: no empty predictions.jsonl, no new folder
        if created:
            with contextlib.suppress(OSError):
                out.rmdir()
    return report


class _NothingLabelled(Exception):
    """Every image was skipped: the output file is not written."""


def _draw(item: dict, record: dict, out: Path, pred: Prediction, iterations: bool,
          max_pixels: int) -> None:
    """``out/drawn/<relative path>``: the boxes with their labels, or (``iterations``) one
    panel per iteration as PNG."""
    from ivr_core.visualization import draw_boxes, plot_iterations, write_image

    image = read_image(item["path"], max_pixels).bgr
    target = out / "drawn" / item["rel"]
    boxes = [r["box"] for r in record["regions"]]
    if iterations:
        plot_iterations(target.with_suffix(".png"), image, boxes, list(pred.iteration_probs),
                        pred.probs, pred.classes)
        return
    picture = draw_boxes(image, boxes, [f"{r['class']} {r['prob']:.2f}" for r in record["regions"]],
                         [pred.classes.index(r["class"]) for r in record["regions"]])
    write_image(target, picture)
