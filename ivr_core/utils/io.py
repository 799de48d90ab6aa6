"""Atomic file writes: a reader sees the old file or the new one, never a torn one; and
outputs of several files that appear together or not at all (:func:`staged_outputs`).

Files and folders are created with the permissions the umask gives (0644 and 0755 under
the usual 022), as ``open`` would, so a prepared dataset can be shared.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Iterator


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs: Any) -> Iterator[IO]:
    """Open a temp file beside ``path``; on success fsync and rename it over ``path``.

    On any exception the temp file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~umask())  # mkstemp makes it 0600, readable by its owner only
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)


def umask() -> int:
    """The process's umask, read without changing it where the system says it (Linux)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore (briefly 022 for other threads)
    os.umask(mask)
    return mask


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write(text)


def write_json(path: str | os.PathLike, obj: Any, indent: int | None = None) -> None:
    with atomic_open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=indent)
        f.write("\n")


def make_temp_dir(parent: Path, name: str) -> Path:
    """A new hidden folder ``parent/.name.XXXX`` with the umask's permissions (mkdtemp
    alone makes it 0700, and a folder moved into place keeps them)."""
    parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=parent))
    os.chmod(folder, 0o777 & ~umask())
    return folder


@contextmanager
def staged_outputs(out_dir: str | os.PathLike) -> Iterator[Path]:
    """A temp folder inside ``out_dir`` to write the outputs into; when the block ends
    without an exception, each entry of it replaces its namesake in ``out_dir`` (a folder
    as a whole), one rename after the other with Ctrl-C and SIGTERM held until all are
    done. On an exception (an interruption included) nothing is moved and the temp folder
    is removed: the outputs of an earlier run stay as they were."""
    out_dir = Path(out_dir)
    staging = make_temp_dir(out_dir, "staged")
    try:
        yield staging
        with _signals_held():
            for entry in sorted(staging.iterdir()):
                target = out_dir / entry.name
                if entry.is_dir() and target.is_dir() and not target.is_symlink():
                    target.rename(staging / f".replaced-{entry.name}")  # removed below
                os.replace(entry, target)
        _fsync_dir(out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@contextmanager
def _signals_held() -> Iterator[None]:
    """Ctrl-C (SIGINT) and SIGTERM received in the block take effect when it ends."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set handlers; it receives the signals too
        return
    received: list[int] = []
    previous = {sig: signal.signal(sig, lambda number, frame: received.append(number))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if received:
            signal.raise_signal(received[0])
