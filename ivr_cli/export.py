"""``ivr export``: a trained model as a folder to share (weights as safetensors, config,
classes, knowledge graph, a README model card), loaded back without any pickle.

Examples::

    ivr export runs/res50_local --out models/res50_local          # the newest checkpoint
    ivr export runs/local/checkpoints/iter_00320000.pt --out models/local --force
    ivr predict photos/ --checkpoint models/res50_local --boxes boxes.json
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ivr_cli.display import err as console
from ivr_core.api import read_state
from ivr_core.export import export_model


def export(
    source: Annotated[Path, typer.Argument(
        metavar="RUN_DIR_OR_CHECKPOINT",
        help="A run folder (its newest checkpoint), a checkpoint file, or an exported "
             "folder.")],
    out: Annotated[Path, typer.Option(help="Folder to create.")],
    force: Annotated[bool, typer.Option(help="Replace OUT if it exists.")] = False,
) -> None:
    """Export a trained model: model.safetensors, config.toml, classes.json, README.md.

    Example: ivr export runs/local --out models/local
    """
    state = read_state(source)
    export_model(state, out, force=force)
    console.print(f"exported the {state['model_type']} model of {state['path']} (iteration "
                  f"{state.get('iteration', '?')}) -> {out}", markup=False, highlight=False)
    console.print(f"use it: ivr predict IMAGES --checkpoint {out} --boxes BOXES, or "
                  f'ivr_core.load("{out}")', markup=False, highlight=False)
