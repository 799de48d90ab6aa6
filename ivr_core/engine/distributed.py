"""Multi-process training and testing on PyTorch's distributed engine (torchrun).

A process group is set up when torchrun's environment (WORLD_SIZE > 1) is present: NCCL on
CUDA, gloo on the CPU, plus a gloo group for small control messages (stop requests,
non-finite losses) so that agreeing on them never waits on the GPU.
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ivr_core.config import RuntimeConfig
from ivr_core.engine.runtime import setup


@dataclass
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0
    control: object = None  # gloo group for flags

    @property
    def main(self) -> bool:
        return self.rank == 0

    def any(self, flag: bool) -> bool:
        """True on every process if ``flag`` is true on any (a collective: all must call)."""
        if self.size == 1:
            return flag
        t = torch.tensor([int(flag)])
        dist.all_reduce(t, op=dist.ReduceOp.MAX, group=self.control)
        return bool(t.item())

    def gather(self, obj):
        """Every process's ``obj``, in rank order, on every process."""
        if self.size == 1:
            return [obj]
        out = [None] * self.size
        dist.all_gather_object(out, obj, group=self.control)
        return out


def init(device_type: str) -> World:
    """Join the process group torchrun describes; a single process needs nothing."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        if device_type == "cuda":
            torch.cuda.set_device(local)
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
        # Torn down while the interpreter is whole: a group left to interpreter finalization
        # can abort the process (exit 134, "terminate called without an active exception")
        # after its work is done, seen once in this project's CI on a 2-process training run.
        atexit.register(_destroy_groups)
    return World(rank, size, local, dist.new_group(backend="gloo"))


def _destroy_groups() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()  # every group, the control group with it


def start(runtime: RuntimeConfig) -> tuple[torch.device, World]:
    """Apply the process-wide ``runtime`` settings, join the process group torchrun
    describes, and return this process's device (its own GPU under torchrun) and world."""
    device = setup(runtime)
    world = init(device.type)
    if world.size > 1 and device.type == "cuda":
        device = torch.device("cuda", world.local_rank)
    return device, world
