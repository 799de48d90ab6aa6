"""Training metrics: averaged over each logging window, appended to ``log.jsonl`` (and to
TensorBoard when it is installed)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from ivr_core.utils.io import write_text


class MetricsLog:
    def __init__(self, run_dir: Path, start: int):
        self.path = Path(run_dir) / "log.jsonl"
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
        self._n, self._loss, self._parts = 0, 0.0, {}
        self._step_s, self._data_s, self._lr = 0.0, 0.0, 0.0

    def __enter__(self) -> "MetricsLog":
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

    def add(self, loss: torch.Tensor, parts: dict[str, torch.Tensor], lr: float,
            step_s: float, data_s: float) -> None:
        self._n += 1
        self._loss += float(loss.detach())
        for k, v in parts.items():
            self._parts[k] = self._parts.get(k, 0.0) + float(v.detach())
        self._step_s += step_s
        self._data_s += data_s
        self._lr = lr

    def flush(self, iteration: int) -> dict:
        n = max(self._n, 1)
        record = {"iter": iteration, "loss": self._loss / n,
                  "losses": {k: v / n for k, v in self._parts.items()}, "lr": self._lr,
                  "s_per_iter": self._step_s / n, "data_s": self._data_s / n,
                  "time": time.time()}
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        if self._tb:
            self._tb.add_scalar("loss/total", record["loss"], iteration)
            for k, v in record["losses"].items():
                self._tb.add_scalar(f"loss/{k}", v, iteration)
            self._tb.add_scalar("lr", record["lr"], iteration)
            self._tb.add_scalar("s_per_iter", record["s_per_iter"], iteration)
        self._reset()
        return record
