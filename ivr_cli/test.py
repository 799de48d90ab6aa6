"""``ivr test``: evaluate a checkpoint with the authors' metrics, final and per iteration.

Examples::

    ivr test --run-dir runs/res50_local                   # newest checkpoint, data.test_split
    ivr test --checkpoint runs/local/checkpoints/iter_00320000.pt --split mval
    ivr test --run-dir runs/res50_local --visualize 5    # + figures of the first 5 images
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ivr_cli.display import err, results_table, out as console
from ivr_cli.options import ConfigFiles, Device, Quiet, SetItems, resolve
from ivr_cli.processes import run_in_processes
from ivr_core.engine.checkpoint import checkpoint_dir, latest_checkpoint, load_checkpoint
from ivr_core.errors import IvrError
from ivr_core.evaluation.metrics import HEADLINE_KEYS
from ivr_core.evaluation.tester import results_path, run_test
from ivr_core.utils.outputs import output_file, output_folder



def test(
    ctx: typer.Context,
    run_dir: Annotated[Optional[Path], typer.Option(
        help="Run folder: its newest checkpoint is evaluated.")] = None,
    checkpoint: Annotated[Optional[Path], typer.Option(help="Checkpoint file.")] = None,
    split: Annotated[Optional[str], typer.Option(
        help="Split to evaluate [default: data.test_split, mtest].")] = None,
    data: Annotated[Optional[Path], typer.Option(
        help="Folder with the prepared split files [default: the checkpoint's data.dir].")] = None,
    model: Annotated[Optional[str], typer.Option(
        help="Expected model type; an error if the checkpoint holds another.")] = None,
    out: Annotated[Optional[Path], typer.Option(
        help="results.json path [default: RUN_DIR/results.json].")] = None,
    visualize: Annotated[int, typer.Option(
        metavar="N",
        help="Also save figures of the first N test images (labels, per-iteration labels, "
             "memory, attention) as PNGs into visualizations/ beside results.json.")] = 0,
    drop_regions: Annotated[float, typer.Option(
        metavar="P",
        help="Leave a random fraction P of each image's regions out of the reasoning "
             "(still scored) and report the change against P = 0 [default: 0; results "
             "go to RUN_DIR/results_drop<P>.json].")] = 0.0,
    nproc: Annotated[int, typer.Option(
        help="Processes sharing the images (results are gathered; same metrics).")] = 1,
    config: ConfigFiles = None,
    set_: SetItems = None,
    device: Device = None,
    quiet: Quiet = False,
) -> None:
    """Evaluate a checkpoint and write results.json.

    Example: ivr test --run-dir runs/local --split mtest
    """
    if visualize < 0 or nproc < 1 or not 0 <= drop_regions < 1:
        raise IvrError("--visualize must be >= 0, --nproc >= 1 and --drop-regions in [0, 1)")
    checkpoint, state = find_checkpoint(run_dir, checkpoint)
    out = output_file(out or results_path(checkpoint, drop_regions), "--out", "results.json")
    if visualize:
        output_folder(out.parent / "visualizations", "--visualize: the figures' folder")
    run_in_processes(ctx, nproc)
    state = state or load_checkpoint(checkpoint)
    if model and model != state["model_type"]:
        raise IvrError(f"{checkpoint} holds a '{state['model_type']}' model, not '{model}'")
    cfg = resolve(config, set_, base=state["config"], data__dir=str(data) if data else None,
                  runtime__device=device)
    if drop_regions:
        intact = run_test(checkpoint, cfg, state, split, show_progress=False, write=False)
    results = run_test(checkpoint, cfg, state, split, out, show_progress=not quiet,
                       visualize=visualize, drop_regions=drop_regions)
    if not results:  # not the main process of a multi-process run
        return
    if drop_regions:
        console.print(f"{state['model_type']}, {drop_regions:.0%} of the regions left out of "
                      "the reasoning, change against none: " + ", ".join(
                          f"{k} {results[k] - intact[k]:+.3f}" for k in HEADLINE_KEYS))
    console.print(results_table({state["model_type"]: results},
                                f"{results['split']}: {results['num_images']} images, "
                                f"iteration {results['iteration']}"))
    for message in results["skipped_images"]:
        console.print(f"[yellow]warning: {message}; skipped[/]")
    console.print(f"wrote {results['path']}")
    if visualize:
        figures = results.get("visualizations", [])
        console.print(f"wrote {len(figures)} figure(s) to "
                      f"{Path(results['path']).parent / 'visualizations'}")


def find_checkpoint(run_dir: Path | None, checkpoint: Path | None) -> tuple[Path, dict | None]:
    """The checkpoint to evaluate: ``checkpoint`` (loaded later), or the newest checkpoint
    of ``run_dir`` that loads, with its state; each newer one that does not is noted."""
    if (run_dir is None) == (checkpoint is None):
        raise IvrError("give exactly one of --run-dir DIR or --checkpoint FILE")
    if checkpoint is not None:
        return checkpoint, None
    state, skipped = latest_checkpoint(run_dir)
    for note in skipped:
        err.print(f"skipped {note}", style="yellow", markup=False, highlight=False)
    if state is None:
        could = " could be loaded" if skipped else ""
        raise IvrError(f"no checkpoint in {checkpoint_dir(run_dir)}{could}; train first or "
                       "pass --checkpoint")
    return Path(state["path"]), state
