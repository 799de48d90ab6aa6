"""Checkpoints: atomic writes, safe loads (``weights_only=True``), newest-loadable resume."""

from __future__ import annotations

import os
import pickle
import re
import zipfile
from pathlib import Path

import torch

from ivr_core.errors import IvrError
from ivr_core.utils.io import atomic_open

FORMAT = "ivr-checkpoint-1"
_NAME = re.compile(r"^iter_(\d+)\.pt$")


def checkpoint_dir(run_dir: str | os.PathLike) -> Path:
    return Path(run_dir) / "checkpoints"


def checkpoint_path(run_dir: str | os.PathLike, iteration: int) -> Path:
    return checkpoint_dir(run_dir) / f"iter_{iteration:08d}.pt"


def list_checkpoints(run_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """(iteration, path) of the run's checkpoints, oldest first."""
    folder = checkpoint_dir(run_dir)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return sorted(found)


def save_checkpoint(path: str | os.PathLike, state: dict) -> Path:
    """Write ``state`` to ``path`` atomically (temp file, fsync, rename)."""
    with atomic_open(path, "wb") as f:
        torch.save({"format": FORMAT, **state}, f)
    return Path(path)


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Load without executing code; any failure is an IvrError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise IvrError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise IvrError(_refusal(path, e)) from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile) as e:
        raise IvrError(f"checkpoint {path} is corrupt or truncated ({type(e).__name__}: "
                       f"{str(e).splitlines()[0][:200]})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise IvrError(f"{path} is not an ivr checkpoint")
    return state


def latest_checkpoint(run_dir: str | os.PathLike) -> tuple[dict | None, list[str]]:
    """The newest checkpoint of ``run_dir`` that loads, and a note for each one skipped."""
    skipped = []
    for _, path in reversed(list_checkpoints(run_dir)):
        try:
            return load_checkpoint(path) | {"path": str(path)}, skipped
        except IvrError as e:
            skipped.append(str(e))
    return None, skipped


def remove_partial(run_dir: str | os.PathLike) -> list[Path]:
    """Delete temp files of checkpoint writes that a kill interrupted; returns them."""
    folder = checkpoint_dir(run_dir)
    partial = sorted(folder.glob(".iter_*.pt.*.tmp")) if folder.is_dir() else []
    for path in partial:
        path.unlink(missing_ok=True)
    return partial


def prune_checkpoints(run_dir: str | os.PathLike, keep_last: int) -> None:
    for _, path in list_checkpoints(run_dir)[:-keep_last]:
        path.unlink(missing_ok=True)


def _refusal(path: Path, error: pickle.UnpicklingError) -> str:
    """Why ``torch.load(weights_only=True)`` refused ``path``, in ivr's words: torch's own
    message suggests loading with ``weights_only=False``, which would run the file's code."""
    found = re.search(r"GLOBAL ([\w.]+)", str(error))
    what = f"import {found.group(1)}" if found else "build Python objects"
    return (f"refusing to load {path}: unpickling it would {what}; an ivr checkpoint holds "
            "only tensors and plain data, and ivr runs no code from a file (use a checkpoint "
            "written by `ivr train`)")
