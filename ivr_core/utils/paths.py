"""Paths read from data files must stay inside their dataset root."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from ivr_core.errors import IvrError


def inside(root: Path, rel: str, source: str) -> Path:
    """``root / rel``, refused when ``rel`` is absolute, climbs with ``..``, or resolves
    (through symbolic links) outside ``root``. ``source`` names the file it came from."""
    parts = PurePosixPath(rel.replace("\\", "/"))
    if parts.is_absolute() or ".." in parts.parts or Path(rel).is_absolute():
        raise IvrError(f"{source}: path '{rel}' leaves the dataset root {root}; data files "
                       "must hold paths relative to it")
    path = root / rel
    resolved, base = path.resolve(), root.resolve()
    if resolved != base and base not in resolved.parents:
        raise IvrError(f"{source}: '{rel}' is a link to {resolved}, outside the dataset root "
                       f"{root}; copy the file into the dataset instead")
    return path
