"""Device choice and process-wide settings."""

from __future__ import annotations

import contextlib
import ctypes
import os

import torch
from torch import nn

from ivr_core.config import RuntimeConfig
from ivr_core.errors import IvrError
from ivr_core.models.backbone import ResNetC4
from ivr_core.models.memory import Context, GatedUpdate
from ivr_core.ops import set_backend


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise IvrError(f"device '{name}' requested but no CUDA GPU is visible to PyTorch "
                           f"(torch {torch.__version__}, built for CUDA "
                           f"{torch.version.cuda or 'none'}); use --device cpu")
        index = torch.device(name).index or 0
        if index >= torch.cuda.device_count():
            raise IvrError(f"device '{name}' requested but only {torch.cuda.device_count()} "
                           "CUDA device(s) are visible")
    return torch.device(name)


def autocast(cfg: RuntimeConfig, device: torch.device):
    """Mixed precision for the forward pass (runtime.amp), or nothing."""
    if cfg.amp == "none":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if cfg.amp == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


def grad_scaler(cfg: RuntimeConfig, device: torch.device) -> torch.amp.GradScaler:
    """Loss scaling for fp16 (bf16 and fp32 need none: the scaler is then a no-op)."""
    return torch.amp.GradScaler(device.type, enabled=cfg.amp == "fp16")


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed blocks for reuse instead of returning every large
    one to the kernel: PyTorch's CPU tensors come from malloc, and a step that allocates
    hundreds of MB of fresh pages pays a page fault per 4 KB (about 10% of a memory-model
    step at 600 px). The peak resident set stays what it is. No-op off glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        never = ctypes.c_int(2**31 - 1)  # mallopt takes a C int
        return bool(libc.mallopt(m_mmap_threshold, ctypes.c_int(1 << 30)) and
                    libc.mallopt(m_trim_threshold, never))
    except (OSError, AttributeError):
        return False


def setup(cfg: RuntimeConfig) -> torch.device:
    """Resolve the device, apply thread, determinism and region-op settings."""
    device = resolve_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if cfg.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS needs it
    torch.use_deterministic_algorithms(cfg.deterministic)
    set_backend(cfg.ops)
    if device.type == "cpu" and cfg.keep_freed_memory:
        keep_freed_memory()
    return device


def dense_parts(model: nn.Module) -> list[nn.Module]:
    """The convolutional parts of ``model`` that carry most of its FLOPs and no region op:
    the backbone's head (over the image) and tail (over the region crops), and the memory's
    context convolutions and gated update. The region ops, the per-iteration Python loop
    and the FC layer on the memory crops (whose backward writes ``weight.grad`` in place,
    see :mod:`ivr_core.models.accumulating_linear`) stay eager."""
    parts = []
    for module in model.modules():
        if isinstance(module, ResNetC4):
            parts += [module.head, module.tail]
        elif isinstance(module, (Context, GatedUpdate)):
            parts.append(module)
    return parts


def compile_dense_parts(model: nn.Module, cfg: RuntimeConfig) -> nn.Module:
    """With ``runtime.compile``, wrap each of :func:`dense_parts` in ``torch.compile`` in
    place (``nn.Module.compile``: parameter names and checkpoints are unchanged). The first
    call at each new input shape compiles (tens of seconds on a CPU); shapes that vary
    between images are made dynamic after the second one. Returns ``model``."""
    if cfg.compile:
        for part in dense_parts(model):
            part.compile()
    return model
