"""Checked reads of dataset files: the one way ivr opens a file that a dataset, an
annotation or a box source holds (images go through :mod:`ivr_core.utils.images`, which
reads them here too).

A file is read only when it is a regular file (a FIFO would block the read forever, a
device such as ``/dev/zero`` never ends), that resolves without a link loop, inside its
dataset root when one is given (no symbolic link leading out), and, for text, within a
size cap. Anything else raises :class:`UnreadableFile` with a reason the caller shows:
skip one image, or stop the command with one line.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, Iterator

from ivr_core.utils.paths import within

TEXT_CAP = 64 * 2**20  # split lists, attribute files, per-image box files
JSON_CAP = 4 * 2**30  # annotation files (COCO's instances_train2017.json is 448 MiB)

_NOT_REGULAR = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"),
                (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                (stat.S_ISSOCK, "a socket"))
# O_NONBLOCK: opening a FIFO returns at once instead of waiting for a writer (it is then
# refused as not regular); O_NOFOLLOW: the resolved path must not have become a link since
_OPEN_FLAGS = os.O_RDONLY | sum(getattr(os, name, 0) for name in
                                ("O_NONBLOCK", "O_NOFOLLOW", "O_CLOEXEC", "O_BINARY"))


class UnreadableFile(Exception):
    """A file ivr refuses or cannot read; ``reason`` says why (without the path)."""

    def __init__(self, path: str | os.PathLike, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


class MissingFile(UnreadableFile):
    """The file (or the target of its link) does not exist."""


@contextmanager
def open_checked(path: str | os.PathLike, root: str | os.PathLike | None = None,
                 what: str = "file") -> Iterator[BinaryIO]:
    """``path`` opened for binary reading, or UnreadableFile: missing, a link loop, a link
    out of ``root`` (when given), or not a regular file. ``what`` names it in messages."""
    path = Path(path)
    try:
        real = os.path.realpath(path, strict=True)
    except FileNotFoundError:
        raise MissingFile(path, f"missing {what}") from None
    except ValueError:  # os functions refuse embedded NUL bytes
        raise UnreadableFile(path, "its path holds a NUL byte") from None
    except OSError as e:
        reason = "symbolic link loop" if e.errno == errno.ELOOP else f"unreadable ({e.strerror})"
        raise UnreadableFile(path, reason) from None
    if root is not None and not within(Path(root), Path(real)):
        raise UnreadableFile(path, f"a link to {real}, outside the dataset root {root}; copy "
                                   "the file into the dataset instead")
    try:
        fd = os.open(real, _OPEN_FLAGS)
    except OSError as e:
        raise UnreadableFile(path, f"unreadable ({e.strerror})") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = next((name for test, name in _NOT_REGULAR if test(mode)), "special file")
            raise UnreadableFile(path, f"{kind}, not a regular file")
        file = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with file:
        yield file


def read_bytes(path: str | os.PathLike, root: str | os.PathLike | None = None,
               what: str = "file", max_bytes: int | None = None) -> bytes:
    """The whole content of a checked file (:func:`open_checked`), refused above
    ``max_bytes`` (None: no cap)."""
    def too_big(size: int) -> UnreadableFile:
        return UnreadableFile(path, f"{size:,} bytes, over the {max_bytes:,}-byte cap on "
                                    f"{what}s")

    with open_checked(path, root, what) as f:
        try:
            size = os.fstat(f.fileno()).st_size
            if max_bytes is not None and size > max_bytes:
                raise too_big(size)
            data = f.read() if max_bytes is None else f.read(max_bytes + 1)
        except OSError as e:
            raise UnreadableFile(path, f"unreadable ({e.strerror})") from None
    if max_bytes is not None and len(data) > max_bytes:  # it grew since the size check
        raise too_big(len(data))
    return data


def read_text(path: str | os.PathLike, root: str | os.PathLike | None = None,
              what: str = "text file", max_bytes: int = TEXT_CAP) -> str:
    """A checked text file as UTF-8 (a byte-order mark dropped), else Latin-1 (some ADE
    files are); NUL bytes (binary data, UTF-16) are refused."""
    raw = read_bytes(path, root, what, max_bytes)
    if b"\x00" in raw:
        raise UnreadableFile(path, "not a text file (NUL bytes)")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def read_json(path: str | os.PathLike, root: str | os.PathLike | None = None,
              what: str = "JSON file", max_bytes: int = JSON_CAP) -> Any:
    """A checked JSON file's document; malformed JSON is UnreadableFile too."""
    raw = read_bytes(path, root, what, max_bytes)
    try:
        return json.loads(raw)
    # JSONDecodeError, UnicodeDecodeError and Python's limit on integer digits are
    # ValueErrors; deep nesting exhausts the recursion limit
    except (ValueError, RecursionError) as e:
        detail = (str(e).splitlines() or [type(e).__name__])[0][:160]
        raise UnreadableFile(path, f"not valid JSON ({detail})") from None
