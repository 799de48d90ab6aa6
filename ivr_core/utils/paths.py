"""Paths read from data files must stay inside their dataset root."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from ivr_core.errors import IvrError


def inside(root: Path, rel: str, source: str) -> Path:
    """``root / rel``, refused when ``rel`` is absolute, climbs with ``..``, holds a NUL
    byte, or resolves (through symbolic links) outside ``root``. ``source`` names the file
    it came from. A link loop inside the root passes here; reading the file reports it."""
    if "\0" in rel:
        raise IvrError(f"{source}: path {rel!r} holds a NUL byte; data files must hold plain "
                       "paths relative to the dataset root")
    parts = PurePosixPath(rel.replace("\\", "/"))
    if parts.is_absolute() or ".." in parts.parts or Path(rel).is_absolute():
        raise IvrError(f"{source}: path '{rel}' leaves the dataset root {root}; data files "
                       "must hold paths relative to it")
    path = root / rel
    # os.path.realpath, not Path.resolve: on Python < 3.13 resolve raises on a link loop
    resolved = Path(os.path.realpath(path))
    if not within(root, resolved):
        raise IvrError(f"{source}: '{rel}' is a link to {resolved}, outside the dataset root "
                       f"{root}; copy the file into the dataset instead")
    return path


def within(root: Path, resolved: Path) -> bool:
    """Whether the fully resolved ``resolved`` is ``root`` (resolved) or lies under it."""
    base = Path(os.path.realpath(root))
    return resolved == base or base in resolved.parents
