"""One training process per run folder: an exclusive ``fcntl`` lock on ``RUN_DIR/.lock``.

A POSIX record lock belongs to its process: the kernel drops it when the process exits,
however it exits (SIGKILL included), so a lock is never stale, and DataLoader workers
forked by the holder do not inherit it (they would keep it alive after a kill). Being
per process, it cannot refuse a second ``train()`` in the same process: a set of the
locks held here does. The file stays after release (deleting it would let a third
process lock a new file while a second still holds the old one); while the lock is held
it names the holder's PID and host, for the message that refuses a second run.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
from pathlib import Path

from ivr_core.errors import IvrError
from ivr_core.utils.outputs import writing

LOCK_NAME = ".lock"
_held_here: set[tuple[int, int]] = set()  # (device, inode) of the lock files this process holds


class RunLock:
    """The lock of ``run_dir``: :meth:`acquire` takes it (creating the folder; again: nothing
    more), the end of a ``with`` block or :meth:`release` lets it go."""

    def __init__(self, run_dir: str | os.PathLike):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self._file = None
        self._key: tuple[int, int] | None = None

    def acquire(self) -> "RunLock":
        """Take the lock; an IvrError naming the holder's PID when another run holds it."""
        if self._file is not None:
            return self
        with writing(self.path, "choose another --run-dir"):
            self.run_dir.mkdir(parents=True, exist_ok=True)
            # checked before opening: closing a second descriptor of the file would drop
            # the lock this process holds
            if self.path.exists() and _key(os.stat(self.path)) in _held_here:
                raise _in_use(self.run_dir, f"this process, PID {os.getpid()}")
            f = open(self.path, "a+b", buffering=0)  # "a": never truncates the holder's PID
        try:
            fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            f.seek(0)
            holder = f.read().decode(errors="replace").split()
            f.close()
            if e.errno not in (errno.EACCES, errno.EAGAIN):
                raise
            raise _in_use(self.run_dir, f"PID {holder[0]}" + (
                f" on {holder[1]}" if holder[1:] else "") if holder else
                "a process that has not yet written its PID") from None
        self._file, self._key = f, _key(os.fstat(f.fileno()))
        _held_here.add(self._key)
        _record(f, f"{os.getpid()} {socket.gethostname()}\n")
        return self

    def release(self) -> None:
        if self._file is None:
            return
        _record(self._file, "")  # released: a later reader finds no PID
        _held_here.discard(self._key)
        self._file.close()  # closing the descriptor releases the lock
        self._file = None

    def __enter__(self) -> "RunLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _key(stat: os.stat_result) -> tuple[int, int]:
    return stat.st_dev, stat.st_ino


def _in_use(run_dir: Path, holder: str) -> IvrError:
    return IvrError(f"run folder {run_dir} is in use by another `ivr train` ({holder}); wait "
                    "for it to finish or stop it, or choose another --run-dir")


def _record(f, text: str) -> None:
    """Best effort (unbuffered, so nothing is left to flush on close): a full disk may
    refuse even these few bytes; the lock holds anyway."""
    try:
        f.seek(0)
        f.truncate()
        f.write(text.encode())
    except OSError:
        pass
