"""``ivr prepare-data``: turn an ADE20K copy, or the generated synthetic dataset, into
prepared split files (``ade_<split>_<min_count>.json``); or COCO-format instance annotations
into one prepared split (``coco_<name>.json``).

Examples::

    ivr prepare-data --ade-root data/ADE               # the authors' split, shipped with ivr
    ivr prepare-data --ade-root data/ADE --out data/prepared --min-count 5
    ivr prepare-data --synthetic --out data/synthetic --images 900 --seed 0
    ivr prepare-data --coco annotations/instances_train2014.json --images train2014 \
        --coco annotations/instances_valminusminival2014.json --images val2014 --name trainval
    ivr prepare-data --coco annotations/instances_minival2014.json --images val2014 \
        --name minival --out data/coco
    ivr prepare-data --vg data/visual_genome --vg-top 3000 --out data/vg    # Visual Genome 1.4
    ivr prepare-data --vg data/visual_genome --vg-split data/vg/vg_split.json --out data/vg2
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Annotated, Optional

import typer

from ivr_cli.display import err as console
from ivr_cli.options import Quiet
from ivr_core.data import synthetic
from ivr_core.data.ade import DEFAULT_SPLIT_DIR, SPLITS
from ivr_core.data.coco import MISSING_FILE, REASONS, CocoReport, prepare_coco
from ivr_core.data.prepare import PrepareReport, prepare_ade
from ivr_cli.prepare_graph import mine
from ivr_core.data.dataset import load_prepared
from ivr_core.data.vg import REASONS as VG_REASONS, VgReport, prepare_vg
from ivr_core.errors import IvrError



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
    force: Annotated[bool, typer.Option(help="Synthetic: replace an existing dataset.")] = False,
    workers: Annotated[Optional[int], typer.Option(help="Processes [default: CPU count, "
                                                        "at most 8].")] = None,
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
    if vg is not None:
        vg_report = prepare_vg(vg, out, vg_top, vg_split, seed, show_progress=not quiet)
        print_vg_report(vg_report)
        train = next((s for s in vg_report.splits if s.split == "train"), None)
        if train is not None:
            mine(load_prepared(train.path.parent, "train", 0, dataset="vg"))
        return
    if coco:
        if not images or not name:
            raise IvrError("--coco needs --images DIR (the folder holding its images) and "
                           "--name NAME (the split name)")
        report = prepare_coco(coco, images, name, out, show_progress=not quiet)
        print_coco_report(report)
        return
    count = _image_count(images) if synthetic_ else 900
    if min_count < 0 or count < 6 or (workers is not None and workers < 1):
        raise IvrError("--min-count must be >= 0, --images >= 6 and --workers >= 1")
    if synthetic_:
        out = out or Path("data/synthetic")
        generate_synthetic(out, count, seed, force, workers, quiet)
        split_dir, ade_root = out, out
        extra = {"context_classes": list(synthetic.CONTEXT_CLASSES)}
    else:
        extra = None
    report = prepare_ade(ade_root, split_dir or DEFAULT_SPLIT_DIR, min_count, out, SPLITS,
                         workers, extra=extra, show_progress=not quiet)
    print_report(report)
    train = next(s for s in report.splits if s.split == "train")
    mine(load_prepared(train.path.parent, "train", min_count))


def _image_count(images: list[str] | None) -> int:
    if not images:
        return 900
    if len(images) > 1 or not images[0].lstrip("-").isdigit():
        raise IvrError(f"--synthetic takes one --images N (a number of images), got "
                       f"{' '.join(images)}")
    return int(images[0])


def generate_synthetic(out: Path, images: int, seed: int, force: bool,
                       workers: int | None, quiet: bool) -> None:
    """Generate into a temp folder beside ``out`` and move it in place when complete."""
    if out.exists() and any(out.iterdir()):
        if not force:
            raise IvrError(f"{out} already exists and is not empty; pass --force to replace "
                           "it or choose another --out")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        synthetic.generate(tmp, images=images, seed=seed, workers=workers,
                           show_progress=not quiet)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    console.print(f"generated {images} synthetic images in {out} (seed {seed})")


def print_report(report: PrepareReport) -> None:
    for s in report.splits:
        console.print(f"{s.split:>6}: {s.images} images, {s.regions} regions "
                      f"({s.empty} images without regions) -> {s.path}")
    console.print(f"{report.classes} classes (background included)")
    if report.problems:
        console.print(f"[yellow]skipped {len(report.problems)} image(s) with missing or "
                      "corrupt files:[/]")
        for p in report.problems:
            console.print(f"  {p.path}: {p.reason}", markup=False, highlight=False)


def print_coco_report(report: CocoReport, shown: int = 5) -> None:
    console.print(f"{report.split}: {report.images} images, {report.regions} regions "
                  f"({report.empty} images without regions) -> {report.path}")
    console.print(f"{report.classes} classes (background included)")
    skipped = [f"{report.skipped[r]} {r}" for r in REASONS if r != MISSING_FILE
               and report.skipped[r]]
    if skipped:
        console.print(f"[yellow]skipped annotations:[/] {', '.join(skipped)}")
    print_missing(report.missing, shown)


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
