"""``ivr calibrate``: fit the attention's temperature and per-candidate offsets on held-out
images (mval), for ``ivr test``, ``ivr predict`` and the Python API to apply.

Examples::

    ivr calibrate --run-dir runs/res50_full              # newest checkpoint, on mval
    ivr test --run-dir runs/res50_full                   # then evaluate on mtest
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ivr_cli.display import out as console
from ivr_cli.options import ConfigFiles, Device, Quiet, SetItems, resolve
from ivr_cli.test import find_checkpoint
from ivr_core.engine.checkpoint import load_checkpoint
from ivr_core.errors import IvrError
from ivr_core.evaluation.tester import run_calibration


def calibrate(
    run_dir: Annotated[Optional[Path], typer.Option(
        help="Run folder: its newest checkpoint is calibrated.")] = None,
    checkpoint: Annotated[Optional[Path], typer.Option(help="Checkpoint file.")] = None,
    split: Annotated[str, typer.Option(
        help="Held-out split to fit on; never the split you report on.")] = "mval",
    data: Annotated[Optional[Path], typer.Option(
        help="Folder with the prepared split files [default: the checkpoint's data.dir].")] = None,
    config: ConfigFiles = None,
    set_: SetItems = None,
    device: Device = None,
    quiet: Quiet = False,
) -> None:
    """Calibrate a reasoning model's attention on a held-out split (writes calibration.json).

    Example: ivr calibrate --run-dir runs/full && ivr test --run-dir runs/full
    """
    checkpoint, state = find_checkpoint(run_dir, checkpoint)
    state = state or load_checkpoint(checkpoint)
    test_split = state["config"].get("data", {}).get("test_split", "mtest")
    if split == test_split:
        raise IvrError(f"--split {split} is the test split; calibrate on a held-out split "
                       "such as mval")
    cfg = resolve(config, set_, base=state["config"], data__dir=str(data) if data else None,
                  runtime__device=device)
    doc = run_calibration(checkpoint, cfg, state, split, show_progress=not quiet)
    before, after = doc["before"], doc["after"]
    best = {k: v["value"] for k, v in doc["best_candidate"].items()}
    console.print(f"attention calibrated on {split}: temperature {doc['temperature']:.3g}, "
                  "offsets " + ", ".join(f"{k} {v:+.2f}" for k, v in doc["offset"].items()))
    guard = doc.get("guard")
    if guard:
        console.print(f"  {guard['candidate']} alone beat the fitted answer on {split} (mean AP "
                      f"{guard['candidate_mean_ap']:.3f} vs {guard['mean_ap_before']:.3f}): its "
                      f"offset raised by {guard['bonus']:g}", markup=False, highlight=False)
    for label, r in (("as trained", before), ("calibrated", after),
                     ("best single candidate", best)):
        console.print(f"  {label:>22}: inst AP {r['inst_ap']:.3f}  cls AP {r['cls_ap']:.3f}")
    console.print(f"-> {doc['path']} (ivr test, ivr predict and ivr_core.load apply it to "
                  f"iteration {doc['iteration']})", markup=False, highlight=False)
