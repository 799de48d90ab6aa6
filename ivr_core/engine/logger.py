"""Training metrics: averaged over each logging window (and over processes), appended to
``log.jsonl`` by the main process, and to TensorBoard when it is installed.

Losses are summed on their device and read once per window, so logging adds no
host-device synchronisation to the steps in between.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from ivr_core.utils.io import write_text


class MetricsLog:
    def __init__(self, run_dir: Path, start: int, enabled: bool = True):
        self.path = Path(run_dir) / "log.jsonl"
        self.enabled = enabled
        if enabled:
            self._drop_after(start)  # a resumed run rewrites what followed its checkpoint
        self._file = None
        self._tb = None
        self._run_dir = Path(run_dir)
        self._reset()

    def _drop_after(self, start: int) -> None:
        """Keep the records up to ``start``; a line torn by a kill is dropped too."""
        if not self.path.is_file():
            return
        kept = []
        for line in self.path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                if json.loads(line)["iter"] <= start:
                    kept.append(line)
            except (json.JSONDecodeError, KeyError, TypeError):
                continue
        write_text(self.path, "".join(line + "\n" for line in kept))

    def _reset(self) -> None:
        self._images, self._loss, self._parts, self._attention = 0, None, {}, {}
        self._steps, self._step_s, self._data_s, self._lr = 0, 0.0, 0.0, 0.0

    def __enter__(self) -> "MetricsLog":
        if not self.enabled:
            return self
        self._file = open(self.path, "a", encoding="utf-8")
        try:
            from torch.utils.tensorboard import SummaryWriter
            self._tb = SummaryWriter(str(self._run_dir / "tensorboard"))
        except ImportError:  # tensorboard is optional
            self._tb = None
        return self

    def __exit__(self, *exc) -> None:
        if self._file:
            self._file.close()
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
