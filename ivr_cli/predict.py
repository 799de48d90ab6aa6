"""``ivr predict``: label the given boxes of your own images with a trained checkpoint.

Examples::

    ivr predict photos/ --checkpoint runs/local/checkpoints/iter_00320000.pt --boxes boxes.json
    ivr predict photos/ --checkpoint ckpt.pt --boxes instances.json --draw       # COCO boxes
    ivr predict photos/ --checkpoint ckpt.pt --boxes photos/ --draw --iterations # stem.txt files
    ivr predict data/ADE/images/validation --checkpoint ckpt.pt --boxes ade
    ivr predict photos/ --checkpoint exported/ --boxes boxes.json        # `ivr export` output
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ivr_cli.display import err as console
from ivr_cli.options import ConfigFiles, Device, Quiet, SetItems, resolve
from ivr_core.api import Model, read_state
from ivr_core.engine.runtime import setup
from ivr_core.errors import IvrError
from ivr_core.predict import open_source, predict as run_predict
from ivr_core.utils.outputs import output_folder, writing


def predict(
    images: Annotated[Path, typer.Argument(help="An image, or a folder searched recursively "
                                                "(jpg, jpeg, png, bmp, webp).")],
    checkpoint: Annotated[Path, typer.Option(
        help="A trained model: a checkpoint file, a run folder (its newest checkpoint) or a "
             "folder written by `ivr export`.")],
    boxes: Annotated[str, typer.Option(
        help="The boxes: a COCO annotation JSON, a JSON mapping image path -> "
             "[[x1, y1, x2, y2], ...], a folder of per-image <stem>.json/.txt box files "
             "(beside or mirroring the images), or 'ade' for ADE20K annotations beside "
             "the images.")],
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("predictions"),
    draw: Annotated[bool, typer.Option(help="Also write annotated copies to OUT/drawn/.")] = False,
    iterations: Annotated[bool, typer.Option(
        help="Draw each iteration's labels side by side (memory model; implies --draw).")]
    = False,
    workers: Annotated[int, typer.Option(
        "--workers", "--batch-images",
        help="Loader worker processes decoding and resizing images ahead of the model (0: "
             "in this process). --batch-images is its former, deprecated name.")] = 2,
    config: ConfigFiles = None,
    set_: SetItems = None,
    device: Device = None,
    quiet: Quiet = False,
) -> None:
    """Label boxes in your images; writes OUT/predictions.jsonl.

    Example: ivr predict photos/ --checkpoint ckpt.pt --boxes boxes.json --draw
    """
    if workers < 0:
        raise IvrError("--workers must be >= 0")
    output_folder(out, "--out")
    state = read_state(checkpoint)
    cfg = resolve(config, set_, base=state["config"], runtime__device=device)
    model = Model(state, cfg, setup(cfg.runtime))
    source = open_source(boxes, images if images.is_dir() else images.parent, model.classes,
                         cfg.data.max_pixels)
    created = not out.exists()
    try:
        with writing(out, "free space or choose another --out"):
            report = run_predict(images, source, model, out, workers=workers,
                                 draw=draw or iterations, iterations=iterations,
                                 show_progress=not quiet)
    except IvrError:
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()  # the folder this run made, left empty by the failed write
        raise
    if report.images:
        console.print(f"labelled {report.regions} boxes in {report.images} images -> "
                      f"{report.out}")
    if report.labelled:
        console.print(f"accuracy against the annotations: {report.correct}/{report.labelled} "
                      f"= {report.correct / report.labelled:.3f}")
    if (draw or iterations) and report.images:
        console.print(f"drawings in {out / 'drawn'}")
    if report.notes:
        console.print(f"notes on {len({path for path, _ in report.notes})} labelled image(s):")
        for path, note in report.notes:
            console.print(f"  {path}: {note}", markup=False, highlight=False)
    if report.skipped:
        console.print(f"[yellow]skipped {len(report.skipped)} image(s) or box(es):[/]")
        for path, reason in report.skipped:
            console.print(f"  {path}: {reason}", markup=False, highlight=False)
    if not report.images:
        raise IvrError(f"no image could be labelled (see the list above); nothing was written "
                       f"to {out}; fix the images or boxes listed")
