"""``ivr prepare-data``: turn an ADE20K copy, or the generated synthetic dataset, into
prepared split files (``ade_<split>_<min_count>.json``); or COCO-format instance annotations
into one prepared split (``coco_<name>.json``).

Examples::

    ivr prepare-data --ade-root data/ADE               # the authors' split, shipped with ivr
    ivr prepare-data --ade-root data/ADE --out data/prepared --min-count 5
    ivr prepare-data --synthetic --out data/synthetic --images 900 --seed 0
    ivr prepare-data --synthetic --task rooms --out data/rooms
    ivr prepare-data --coco annotations/instances_train2014.json --images train2014 \
        --coco annotations/instances_valminusminival2014.json --images val2014 --name trainval
    ivr prepare-data --coco annotations/instances_minival2014.json --images val2014 \
        --name minival --out data/coco
    ivr prepare-data --vg data/visual_genome --vg-top 3000 --out data/vg    # Visual Genome 1.4
    ivr prepare-data --vg data/visual_genome --vg-split data/vg/vg_split.json --out data/vg2
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated, Optional

import typer

from ivr_cli.display import err as console
from ivr_cli.options import ConfigFiles, Quiet, SetItems, resolve
from ivr_core.config import MAX_PIXELS_LIMIT
from ivr_core.data import synthetic
from ivr_core.data.ade import DEFAULT_SPLIT_DIR, SPLITS
from ivr_core.data.coco import IMAGE_REASONS, REASONS, CocoReport, prepare_coco
from ivr_core.data.prepare import PrepareReport, prepare_ade
from ivr_cli.prepare_graph import mine
from ivr_core.data.dataset import load_prepared
from ivr_core.data.vg import REASONS as VG_REASONS, VgReport, prepare_vg
from ivr_core.errors import IvrError
from ivr_core.utils.io import make_temp_dir
from ivr_core.utils.outputs import output_folder

SYNTHETIC_IMAGES = (900, 6, 1_000_000)  # default, least, most


def prepare_data(
    ade_root: Annotated[Optional[Path], typer.Option(
        help="ADE20K_2016_07_26 folder (the one holding images/).")] = None,
    synthetic_: Annotated[bool, typer.Option(
        "--synthetic", help="Generate the embedded synthetic dataset, then prepare it.")] = False,
    coco: Annotated[Optional[list[Path]], typer.Option(
        help="COCO-format instance annotation file (repeatable: the files are combined "
             "into one split named by --name).")] = None,
    name: Annotated[Optional[str], typer.Option(
        help="COCO: split name; writes OUT/coco_NAME.json.")] = None,
    split_dir: Annotated[Optional[Path], typer.Option(
        help="Folder with train/mval/mtest.txt, objectnames.txt, objectcounts.txt "
             "[default: the authors' ADE split shipped with ivr].")] = None,
    min_count: Annotated[int, typer.Option(help="Keep classes with at least this many "
                                                "instances in objectcounts.txt (not for "
                                                "--coco: every category is kept).")] = 5,
    out: Annotated[Optional[Path], typer.Option(
        help="Output folder [default: the ADE root; data/synthetic for --synthetic; "
             "data/coco for --coco; data/vg for --vg].")] = None,
    images: Annotated[Optional[list[str]], typer.Option(
        metavar="N|DIR", help="Synthetic: number of images, 900 if not given (2/3 train, "
                              "1/6 mval, 1/6 mtest). COCO: the folder holding the images of "
                              "each --coco file, in order (or one for all).")] = None,
    seed: Annotated[int, typer.Option(help="Synthetic, Visual Genome split: random seed.")] = 0,
    task: Annotated[str, typer.Option(
        help="Synthetic: which context task to draw: containers (the demo's) or rooms.")]
    = "containers",
    force: Annotated[bool, typer.Option(help="Synthetic: replace an existing dataset.")] = False,
    workers: Annotated[Optional[int], typer.Option(help="Processes [default: CPU count, "
                                                        "at most 8].")] = None,
    config: ConfigFiles = None,
    set_: SetItems = None,
    max_pixels: Annotated[Optional[int], typer.Option(
        help="Skip images whose header claims more pixels [default: data.max_pixels, "
             "100 million].")] = None,
    vg: Annotated[Optional[Path], typer.Option(
        help="Visual Genome folder: objects.json, image_data.json, object_alias.txt (optional), "
             "images in VG_100K/ and VG_100K_2/; writes OUT/vg_<split>.json.")] = None,
    vg_top: Annotated[int, typer.Option(
        help="Visual Genome: keep the N most frequent object names as classes.")] = 3000,
    vg_split: Annotated[Optional[Path], typer.Option(
        help="Visual Genome: split file to read ({split: [image ids]}) [default: a seeded "
             "split (--seed; 5% mval, 5% mtest), written to OUT/vg_split.json].")] = None,
    quiet: Quiet = False,
) -> None:
    """Prepare ADE20K, COCO-format, Visual Genome or synthetic data for training and testing.

    Example: ivr prepare-data --ade-root data/ADE

    COCO example: ivr prepare-data --coco annotations/instances_minival2014.json --images val2014 --name minival

    Visual Genome example: ivr prepare-data --vg data/visual_genome --out data/vg
    """
    if (ade_root is not None) + synthetic_ + bool(coco) + (vg is not None) != 1:
        raise IvrError("give exactly one of --ade-root ROOT or --synthetic or --coco FILE or "
                       "--vg ROOT")
    settings = resolve(config, set_)  # data.max_pixels, and graph.* for the graph mined last
    graph_settings = settings.graph
    if out is not None:
        output_folder(out, "--out")
    if max_pixels is None:
        max_pixels = settings.data.max_pixels
    if not 1 <= max_pixels <= MAX_PIXELS_LIMIT:
        raise IvrError(f"--max-pixels must be 1..{MAX_PIXELS_LIMIT} (OpenCV decodes no more), "
                       f"got {max_pixels}")
    if vg is not None:
        vg_report = prepare_vg(vg, out, vg_top, vg_split, seed, show_progress=not quiet)
        print_vg_report(vg_report)
        train = next((s for s in vg_report.splits if s.split == "train"), None)
        if train is not None:
            mine(load_prepared(train.path.parent, "train", 0, dataset="vg"), graph_settings)
        return
    if coco:
        if not images or not name:
            raise IvrError("--coco needs --images DIR (the folder holding its images) and "
                           "--name NAME (the split name)")
        report = prepare_coco(coco, images, name, out, show_progress=not quiet,
                              max_pixels=max_pixels)
        print_coco_report(report)
        return
    count = _image_count(images) if synthetic_ else SYNTHETIC_IMAGES[0]
    if min_count < 0 or (workers is not None and workers < 1):
        raise IvrError("--min-count must be >= 0 and --workers >= 1")
    if task not in synthetic.TASKS:
        raise IvrError(f"--task must be one of {', '.join(synthetic.TASKS)}, got '{task}'")
    if synthetic_:
        out = out or Path("data/synthetic")
        generate_synthetic(out, count, seed, force, workers, quiet, task)
        split_dir, ade_root = out, out
        extra = {"context_classes": list(synthetic.task_module(task).CONTEXT_CLASSES)}
    else:
        extra = None
    report = prepare_ade(ade_root, split_dir or DEFAULT_SPLIT_DIR, min_count, out, SPLITS,
                         workers, extra=extra, show_progress=not quiet, max_pixels=max_pixels)
    print_report(report)
    train = next(s for s in report.splits if s.split == "train")
    mine(load_prepared(train.path.parent, "train", min_count), graph_settings)


def _image_count(images: list[str] | None) -> int:
    if not images:
        return SYNTHETIC_IMAGES[0]
    text = images[0]
    if len(images) > 1 or not text.isdigit():
        raise IvrError(f"--synthetic takes one --images N (a whole number of images), got "
                       f"{' '.join(images)}")
    if len(text) > len(str(SYNTHETIC_IMAGES[2])):  # out of range, whatever its digits
        raise _count_error(text if len(text) <= 24 else text[:21] + "...")
    check_image_count(int(text))
    return int(text)


def check_image_count(count: int) -> None:
    """Synthetic image counts: at least 2 per split, at most what one disk should hold."""
    if not SYNTHETIC_IMAGES[1] <= count <= SYNTHETIC_IMAGES[2]:
        raise _count_error(f"{count:,}")


def _count_error(given: str) -> IvrError:
    _, low, high = SYNTHETIC_IMAGES
    return IvrError(f"--images must be {low}..{high:,} synthetic images (2/3 train, 1/6 mval, "
                    f"1/6 mtest), got {given}")


def generate_synthetic(out: Path, images: int, seed: int, force: bool,
                       workers: int | None, quiet: bool, task: str = "containers") -> None:
    """Generate into a temp folder beside ``out`` and move it in place when complete."""
    if out.exists() and any(out.iterdir()):
        if not force:
            raise IvrError(f"{out} already exists and is not empty; pass --force to replace "
                           "it or choose another --out")
    tmp = make_temp_dir(out.parent, out.name)
    try:
        synthetic.generate(tmp, images=images, seed=seed, workers=workers,
                           show_progress=not quiet, task=task)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    console.print(f"generated {images} synthetic images of the {task} task in {out} "
                  f"(seed {seed})")


def print_report(report: PrepareReport, shown: int = 5) -> None:
    for s in report.splits:
        unknown = (f", {s.unknown_instances} instance(s) named in no line of "
                   "objectnames.txt skipped" if s.unknown_instances else "")
        console.print(f"{s.split:>6}: {s.images} of {s.listed} images kept, {s.regions} "
                      f"regions ({s.empty} images without regions{unknown}) -> {s.path}",
                      markup=False, highlight=False)
    console.print(f"{report.classes} classes (background included)")
    if report.problems:
        console.print(f"[yellow]skipped {len(report.problems)} image(s) with missing or "
                      "corrupt files:[/]")
        for p in report.problems:
            console.print(f"  {p.path}: {p.reason}", markup=False, highlight=False)
    if report.notes:
        images = len({p.path for p in report.notes})
        console.print(f"notes on {images} kept image(s):")
        for p in report.notes[:shown]:
            console.print(f"  {p.path}: {p.reason}", markup=False, highlight=False)
        if len(report.notes) > shown:
            console.print(f"  ... and {len(report.notes) - shown} more")


def print_coco_report(report: CocoReport, shown: int = 5) -> None:
    console.print(f"{report.split}: {report.images} images, {report.regions} regions "
                  f"({report.empty} images without regions) -> {report.path}",
                  markup=False, highlight=False)
    console.print(f"{report.classes} classes (background included)")
    skipped = [f"{report.skipped[r]} {r}" for r in REASONS if report.skipped[r]]
    if skipped:
        console.print(f"[yellow]skipped annotations:[/] {', '.join(skipped)}")
    if report.unusable:
        kinds = [f"{report.skipped_images[r]} {r}" for r in IMAGE_REASONS
                 if report.skipped_images[r]]
        console.print(f"[yellow]skipped {len(report.unusable)} image(s):[/] {', '.join(kinds)}")
    for path, reason in report.unusable[:shown]:
        console.print(f"  {path}: {reason}", markup=False, highlight=False)
    if len(report.unusable) > shown:
        console.print(f"  ... and {len(report.unusable) - shown} more")


def print_vg_report(report: VgReport, shown: int = 5) -> None:
    for s in report.splits:
        console.print(f"{s.split:>6}: {s.images} images, {s.regions} regions ({s.empty} images "
                      f"without regions) -> {s.path}", markup=False, highlight=False)
    console.print(f"{report.classes} classes (background included) of {report.names} "
                  f"distinct names; {report.objects} objects read, {report.clipped} boxes "
                  "clipped to their image")
    console.print(f"split {'written to' if report.split_written else 'read from'} "
                  f"{report.split_file}", markup=False, highlight=False)
    skipped = [f"{report.skipped[r]} {r}" for r in VG_REASONS if report.skipped[r]]
    if skipped:
        console.print(f"[yellow]skipped objects:[/] {', '.join(skipped)}")
    if report.unknown_split_ids:
        console.print(f"[yellow]{report.unknown_split_ids} image id(s) of the split file are "
                      "not in image_data.json[/]")
    print_missing(report.missing, shown)


def print_missing(missing: list[str], shown: int) -> None:
    """The image files not found, the first ``shown`` of them by name."""
    if missing:
        console.print(f"[yellow]skipped {len(missing)} image(s): missing image file[/]")
    for path in missing[:shown]:
        console.print(f"  missing: {path}", markup=False, highlight=False)
    if len(missing) > shown:
        console.print(f"  ... and {len(missing) - shown} more missing image files")
