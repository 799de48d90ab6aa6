"""Checkpoints: atomic writes, safe loads (``weights_only=True``), newest-loadable resume.

:func:`load_tensors` is the one place ivr calls ``torch.load``.
"""

from __future__ import annotations

import os
import pickle
import re
import struct
import zipfile
from pathlib import Path
from typing import Any

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
    """Write ``state`` to ``path`` atomically (temp file, fsync, rename).

    A failed write (disk full, quota, I/O error) raises the ``OSError`` and leaves no file;
    torch's zip writer reports it as a ``RuntimeError`` ("unexpected pos"), so the error of
    the underlying write is recovered and raised instead."""
    with atomic_open(path, "wb") as f:
        writer = _Writes(f)
        try:
            torch.save({"format": FORMAT, **state}, writer)
        except RuntimeError:
            if writer.error is None:
                raise
            raise writer.error from None
    return Path(path)


class _Writes:
    """A binary file that remembers the ``OSError`` of a failed write."""

    def __init__(self, f):
        self._f, self.error = f, None

    def write(self, data) -> int:
        try:
            return self._f.write(data)
        except OSError as e:
            self.error = e
            raise

    def flush(self) -> None:
        try:
            self._f.flush()
        except OSError as e:
            self.error = e
            raise


def load_tensors(path: str | os.PathLike, what: str = "checkpoint") -> Any:
    """``torch.load`` without executing code (``weights_only=True``, on the CPU); a missing,
    refused or unreadable file is an IvrError naming it and ``what`` it should be."""
    path = Path(path)
    if not path.is_file():
        raise IvrError(f"{what} not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise IvrError(_refusal(path, e)) from None
    except _DAMAGED as e:
        raise IvrError(f"{what} {path} is corrupt or truncated ({type(e).__name__}: "
                       f"{_first_line(e)})") from None
    return state


# what torch's reader raises on a damaged file: zero bytes (EOFError, IndexError), a cut zip
# (RuntimeError, BadZipFile), flipped bits (UnicodeDecodeError, TypeError, KeyError,
# struct.error, OverflowError); other exceptions are bugs and propagate
_DAMAGED = (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError, IndexError,
            TypeError, KeyError, AttributeError, struct.error, OverflowError, MemoryError)


def _first_line(error: Exception) -> str:
    lines = str(error).splitlines()
    return lines[0][:200] if lines else ""


# what every reader of a checkpoint uses: `ivr train --resume`, `ivr test`, `ivr predict`
REQUIRED = {"iteration": int, "model_type": str, "classes": list, "model": dict, "config": dict}


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Load an ivr checkpoint without executing code; any failure, and a file that loads but
    lacks a part ivr needs, is an IvrError naming the file."""
    state = load_tensors(path)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise IvrError(f"{path} is not an ivr checkpoint")
    for key, kind in REQUIRED.items():
        if not isinstance(state.get(key), kind) or isinstance(state.get(key), bool):
            raise IvrError(f"checkpoint {path} is damaged: its '{key}' is missing or not "
                           f"{'an' if kind is int else 'a'} {kind.__name__}")
    return state


def check_compatible(state: dict, model_type: str, classes: list[str], source: str) -> None:
    """An IvrError unless the checkpoint ``state`` (read from ``source``) holds a
    ``model_type`` model trained on ``classes``."""
    if state["model_type"] != model_type:
        raise IvrError(f"{source} holds a '{state['model_type']}' model, not '{model_type}'; "
                       f"use --model {state['model_type']} or another checkpoint")
    if state["classes"] != classes:
        raise IvrError(f"{source} was trained on {len(state['classes'])} classes but the data "
                       f"has {len(classes)} (or other names); use the data it was trained on")


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
