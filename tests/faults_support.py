"""Real faults for the reliability tests: a small tmpfs mounted by the test (full for real,
or read-only), a tiny trained run to spoil, and the one-line error of a command."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from conftest import TINY
from ivr_core.config import load_config
from ivr_core.engine.runlock import LOCK_NAME
from ivr_core.engine.trainer import train

# the command helpers live in cli_support; reliability tests take them from here too
from cli_support import last_line_error, one_line_error, run, sets  # noqa: F401,E402


def tiny(data: Path, *extra: str) -> list[str]:
    """The tiny CPU config (tests/conftest.py) as --set items, on ``data``."""
    return [*TINY, f"data.dir={data}", "data.min_count=1", *extra]


def train_tiny(data: Path, run_dir: Path, *extra: str):
    """Train the tiny model into ``run_dir`` (in this process)."""
    cfg = load_config(overrides=tiny(data, *extra))
    return train(cfg, run_dir, show_progress=False)


@contextmanager
def tmpfs(where: Path, size: str, read_only: bool = False) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``where`` for the block; the test is skipped (with the
    reason) where mounting is not allowed (not root, no CAP_SYS_ADMIN)."""
    where.mkdir(parents=True, exist_ok=True)
    options = f"size={size},mode=0755" + (",ro" if read_only else "")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
                             capture_output=True, text=True)
    if mounted.returncode:
        pytest.skip("a real small file system is needed and mounting a tmpfs is not allowed "
                    f"here (mount: {mounted.stderr.strip() or mounted.returncode}); run as root")
    try:
        yield where
    finally:
        subprocess.run(["umount", "--lazy", str(where)], check=True)


def fill(folder: Path, leave: int = 0) -> Path:
    """Write zeros into ``folder/filler`` until the file system refuses (ENOSPC, for real),
    then give back ``leave`` bytes. Returns the filler file."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        size = 1 << 20
        while size:
            try:
                os.write(fd, bytes(size))
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
                size //= 2
    finally:
        os.close(fd)
    if leave:
        os.truncate(filler, max(filler.stat().st_size - leave, 0))
    return filler


def copy_run(source: Path, target: Path) -> Path:
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(".lock"))
    return target


def files_under(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` but the run lock (relative path -> SHA-256 of its bytes):
    what a failed command must leave as it found it."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != LOCK_NAME}
