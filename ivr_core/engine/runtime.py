"""Device choice and process-wide settings."""

from __future__ import annotations

import contextlib
import ctypes
import os

import torch

from ivr_core.config import RuntimeConfig
from ivr_core.errors import IvrError
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
