"""Training metrics: averaged over each logging window (and over processes), appended to
``log.jsonl`` by the main process, and to TensorBoard when it is installed.

Losses are summed on their device and read once per window, so logging adds no
host-device synchronisation to the steps in between. A checkpoint holds the open window
(:meth:`MetricsLog.window`), so a run stopped in the middle of one and resumed logs what an
uninterrupted run logs.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Iterator

import torch

from ivr_core.utils.io import write_text
from ivr_core.utils.outputs import writing

# what a failed write of the log tells the user to do
_RESUME = "free space and continue with --resume"


def log_path(run_dir: str | os.PathLike) -> Path:
    return Path(run_dir) / "log.jsonl"


def log_lines(text: str) -> Iterator[tuple[str, dict | None]]:
    """Each non-blank line of a ``log.jsonl`` text with its record, or with None where the
    line is not a JSON object (torn by a kill, or damaged)."""
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        yield line, record if isinstance(record, dict) else None


def read_log(run_dir: str | os.PathLike) -> list[dict]:
    """The records of the run's ``log.jsonl`` in file order (none without the file); a line
    that is not a JSON object is skipped."""
    path = log_path(run_dir)
    if not path.is_file():
        return []
    text = path.read_text(encoding="utf-8", errors="replace")
    return [record for _, record in log_lines(text) if record is not None]


class MetricsLog:
    def __init__(self, run_dir: Path, start: int, enabled: bool = True):
        self.path = log_path(run_dir)
        self.enabled = enabled
        if enabled:
            with writing(self.path, _RESUME):
                self._drop_after(start)  # a resumed run rewrites what followed its checkpoint
        self._file = None
        self._tb = None
        self._run_dir = Path(run_dir)
        before = set(vars(self))
        self._reset()
        self._window_fields = sorted(set(vars(self)) - before)  # what _reset() sets

    def _drop_after(self, start: int) -> None:
        """Keep the records up to ``start``; a line torn by a kill is dropped too."""
        if not self.path.is_file():
            return
        kept = []
        for line, record in log_lines(self.path.read_text(encoding="utf-8", errors="replace")):
            try:
                if record is not None and record["iter"] <= start:
                    kept.append(line)
            except (KeyError, TypeError):
                continue
        write_text(self.path, "".join(line + "\n" for line in kept))

    def _reset(self) -> None:
        self._images, self._loss, self._parts, self._attention = 0, None, {}, {}
        self._steps, self._step_s, self._data_s, self._lr = 0, 0.0, 0.0, 0.0

    def __enter__(self) -> "MetricsLog":
        if not self.enabled:
            return self
        with writing(self.path, _RESUME):
            self._file = open(self.path, "a", encoding="utf-8")
        try:
            from torch.utils.tensorboard import SummaryWriter
            self._tb = SummaryWriter(str(self._run_dir / "tensorboard"))
        except ImportError:  # tensorboard is optional
            self._tb = None
        return self

    def __exit__(self, *exc) -> None:
        if self._file:
            try:
                self._file.close()
            except OSError:  # a write that failed (disk full) was already reported
                pass
        if self._tb:
            self._tb.close()

    def add(self, loss: torch.Tensor, parts: dict[str, torch.Tensor],
            attention: dict[str, torch.Tensor] | None = None) -> None:
        """One image's loss, its components and the attention's mean weight per candidate
        (device tensors, not read here)."""
        self._images += 1
        self._loss = loss.detach() if self._loss is None else self._loss + loss.detach()
        for sums, values in ((self._parts, parts), (self._attention, attention or {})):
            for k, v in values.items():
                sums[k] = v.detach() + sums[k] if k in sums else v.detach()

    def time(self, lr: float, step_s: float, data_s: float) -> None:
        """One step's learning rate, duration and wait for data."""
        self._steps += 1
        self._step_s += step_s
        self._data_s += data_s
        self._lr = lr

    def flush(self, iteration: int, world) -> dict | None:
        """Write the window's means (over images, then processes); the record on the main
        process, None elsewhere. Every process must call it at the same iterations."""
        images = max(self._images, 1)
        local = {"loss": float(self._loss) / images if self._loss is not None else float("nan"),
                 "losses": {k: float(v) / images for k, v in self._parts.items()},
                 "attention": {k: float(v) / images for k, v in self._attention.items()},
                 "s_per_iter": self._step_s / max(self._steps, 1),
                 "data_s": self._data_s / max(self._steps, 1)}
        everyone = world.gather(local)
        lr = self._lr
        self._reset()
        if not self.enabled:
            return None
        n = len(everyone)
        record = {"iter": iteration, "loss": sum(r["loss"] for r in everyone) / n,
                  "losses": {k: sum(r["losses"].get(k, 0.0) for r in everyone) / n
                             for k in everyone[0]["losses"]},
                  "lr": lr, "s_per_iter": max(r["s_per_iter"] for r in everyone),
                  **({"attention": {k: sum(r["attention"].get(k, 0.0) for r in everyone) / n
                                    for k in everyone[0]["attention"]}}
                     if everyone[0]["attention"] else {}),
                  "data_s": max(r["data_s"] for r in everyone), "time": time.time()}
        with writing(self.path, _RESUME):
            self._file.write(json.dumps(record) + "\n")
            self._file.flush()
        if self._tb:
            self._tb.add_scalar("loss/total", record["loss"], iteration)
            for k, v in record["losses"].items():
                self._tb.add_scalar(f"loss/{k}", v, iteration)
            for k, v in record.get("attention", {}).items():
                self._tb.add_scalar(f"attention/{k}", v, iteration)
            self._tb.add_scalar("lr", record["lr"], iteration)
            self._tb.add_scalar("s_per_iter", record["s_per_iter"], iteration)
        return record

    def window(self, world) -> list[dict]:
        """The open window of every process, in rank order, for a checkpoint: device sums
        as CPU tensors, so a resumed run's first record equals an uninterrupted run's, bit
        for bit. Every process must call it at the same iterations."""
        cpu = torch.device("cpu")
        return world.gather({name: _on(getattr(self, name), cpu)
                             for name in self._window_fields})

    def restore(self, saved, world, device: torch.device) -> None:
        """Reopen the window a checkpoint saved (:meth:`window`); kept empty when the
        checkpoint has none or was written by another number of processes."""
        mine = saved[world.rank] if isinstance(saved, list) and len(saved) == world.size \
            else None
        if not isinstance(mine, dict) or set(mine) != set(self._window_fields):
            return
        for name, value in mine.items():
            setattr(self, name, _on(value, device))


def _on(value, device: torch.device):
    """``value`` (a tensor, or a dict of them) on ``device``; anything else as it is."""
    if torch.is_tensor(value):
        return value.detach().to(device)
    if isinstance(value, dict):
        return {k: _on(v, device) for k, v in value.items()}
    return value
