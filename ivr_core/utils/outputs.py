"""Where commands write: output locations checked before the work starts, and failed writes
(a full disk, a quota, a read-only file system) turned into one line naming the file."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ivr_core.errors import IvrError


def output_folder(path: str | os.PathLike, option: str) -> Path:
    """``path`` as a folder to write into, refused before any work when it is a file, lies
    under a file, or cannot be written. ``option`` names it for the user (``--out``)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise IvrError(f"{option} {path} is a file, not a folder; give a folder to write into")
    _writable_folder(path, option)
    return path


def output_file(path: str | os.PathLike, option: str, example: str) -> Path:
    """``path`` as a file to (over)write, refused before any work when it is a folder or
    its folder cannot be written. ``example`` is a file name to suggest inside a folder."""
    path = Path(path)
    if path.is_dir():
        raise IvrError(f"{option} {path} is a folder; give a file name such as "
                       f"{path / example}")
    _writable_folder(path.parent, option, of=path)
    return path


def _writable_folder(folder: Path, option: str, of: Path | None = None) -> None:
    """The nearest existing folder at or above ``folder`` must be a writable folder (the
    rest is created; atomic writes put a temp file beside the target)."""
    target = of or folder
    existing = folder
    while not existing.exists():
        if existing.is_symlink():  # a link to nowhere: mkdir would fail on it
            raise IvrError(f"{option} {target}: {existing} is a broken symbolic link")
        existing = existing.parent
    if not existing.is_dir():
        raise IvrError(f"{option} {target}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        reason = ("is on a read-only file system" if _read_only(existing)
                  else "is not writable (permission denied)")
        raise IvrError(f"{option} {target}: {existing} {reason}; choose another location")


def _read_only(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return False


@contextmanager
def writing(path: str | os.PathLike, then: str) -> Iterator[None]:
    """Turn an ``OSError`` raised while writing ``path`` (or files under it) into one line:
    ``cannot write PATH (reason); THEN``. An error about another file is left alone."""
    try:
        yield
    except OSError as e:
        if e.filename is not None and not _within(Path(os.fsdecode(e.filename)), Path(path)):
            raise
        raise IvrError(f"cannot write {path} ({e.strerror or e}); {then}") from None


def _within(file: Path, path: Path) -> bool:
    file, path = file.absolute(), path.absolute()
    return file == path or path in file.parents or file.parent == path.parent
