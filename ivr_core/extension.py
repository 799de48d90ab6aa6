"""Building the compiled ops (``ext/``, package ``ivr_ext``): toolchain checks, the build
itself with its log kept on disk, a diagnosis of failures, and a self-check of the result."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ivr_core.errors import IvrError

DEFAULT_ARCHS = "8.0;9.0"  # used when no GPU is visible and no list is given


@dataclass
class Toolchain:
    cxx: str | None = None  # first line of the compiler's --version
    torch_version: str = field(default_factory=lambda: torch.__version__)
    torch_cuda: str | None = field(default_factory=lambda: torch.version.cuda)
    cuda_home: str | None = None
    nvcc: str | None = None  # release, e.g. "13.0"
    ninja: str | None = None
    gpus: list[str] = field(default_factory=list)
    arch_list: str | None = None
    cuda: bool = False  # whether the CUDA kernels will be built
    problems: list[str] = field(default_factory=list)  # each blocks the build
    notes: list[str] = field(default_factory=list)

    def rows(self) -> list[tuple[str, str]]:
        return [("C++ compiler", self.cxx or "not found"),
                ("torch", f"{self.torch_version} (CUDA {self.torch_cuda or 'none: CPU-only build'})"),
                ("CUDA_HOME", self.cuda_home or "not found"),
                ("nvcc", self.nvcc or "not found"),
                ("GPUs", ", ".join(self.gpus) or "none visible"),
                ("kernels to build", "CPU + CUDA" if self.cuda else "CPU"),
                ("CUDA arch list", self.arch_list if self.cuda else "-"),
                ("ninja", self.ninja or "not found (serial build; pip install ninja)")]


def _first_line(cmd: list[str]) -> str | None:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0] if out.returncode == 0 and text else None


def _cuda_home() -> str | None:
    """CUDA_HOME / CUDA_PATH, else the toolkit around the nvcc on PATH, else /usr/local/cuda.

    A toolkit is a folder with include/cuda_runtime.h: an nvcc wrapper script in
    /usr/local/bin must not make /usr/local the toolkit."""
    home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    if home:
        return home
    nvcc = shutil.which("nvcc")
    candidates = [Path(nvcc).resolve().parents[1]] if nvcc else []
    candidates.append(Path("/usr/local/cuda"))
    return next((str(c) for c in candidates if (c / "include" / "cuda_runtime.h").is_file()), None)


def _nvcc_release(cuda_home: str | None) -> str | None:
    nvcc = str(Path(cuda_home) / "bin" / "nvcc") if cuda_home else shutil.which("nvcc")
    try:
        out = subprocess.run([nvcc or "nvcc", "--version"], capture_output=True, text=True,
                             timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"release (\d+\.\d+)", out)
    return m.group(1) if m else None


def probe(cuda: str = "auto", arch: str | None = None) -> Toolchain:
    """Inspect the toolchain; ``cuda`` is "auto", "on" (--cuda) or "off" (--cpu-only)."""
    tc = Toolchain()
    cxx = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++")
    tc.cxx = _first_line([cxx, "--version"]) if cxx else None
    if tc.cxx is None:
        tc.problems.append("no C++ compiler found (tried $CXX, c++, g++): install one "
                           "(Debian/Ubuntu: apt install g++) or set CXX")
    tc.ninja = _first_line(["ninja", "--version"])
    tc.cuda_home = _cuda_home()
    tc.nvcc = _nvcc_release(tc.cuda_home)
    if torch.cuda.is_available():
        tc.gpus = [f"{torch.cuda.get_device_name(i)} (sm_{''.join(map(str, torch.cuda.get_device_capability(i)))})"
                   for i in range(torch.cuda.device_count())]
    if cuda == "off":
        return tc
    why_not = None
    if tc.torch_cuda is None:
        why_not = (f"torch {tc.torch_version} is a CPU-only build: install a CUDA build of torch "
                   "(pytorch.org) that matches your CUDA toolkit")
    elif tc.nvcc is None:
        why_not = (f"no CUDA toolkit found (CUDA_HOME unset and no nvcc on PATH): install "
                   f"CUDA {tc.torch_cuda} (torch was built with it) and set "
                   "CUDA_HOME=/usr/local/cuda")
    elif tc.nvcc.split(".")[0] != tc.torch_cuda.split(".")[0]:
        why_not = (f"nvcc {tc.nvcc} does not match the CUDA {tc.torch_cuda} torch was built "
                   f"with: install CUDA {tc.torch_cuda} and point CUDA_HOME at it, or install "
                   f"a torch build for CUDA {tc.nvcc}")
    elif tc.nvcc != tc.torch_cuda:
        tc.notes.append(f"nvcc {tc.nvcc} and torch's CUDA {tc.torch_cuda} differ in the minor "
                        "version; this usually works")
    if why_not:
        if cuda == "on":
            tc.problems.append(why_not + " (or build with --cpu-only)")
        else:
            tc.notes.append(f"building the CPU kernels only: {why_not}")
        return tc
    tc.cuda = True
    tc.arch_list = arch or os.environ.get("TORCH_CUDA_ARCH_LIST")
    if not tc.arch_list and torch.cuda.is_available():
        caps = sorted({torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())})
        tc.arch_list = ";".join(f"{a}.{b}" for a, b in caps)
    if not tc.arch_list:
        tc.arch_list = DEFAULT_ARCHS
        tc.notes.append(f"no GPU visible and no --arch given: compiling for {DEFAULT_ARCHS} "
                        "(Ampere A100, Hopper H100); pass --arch to match your GPUs")
    return tc


def source_dir() -> Path:
    """The ``ext/`` folder of the checkout ivr is installed from."""
    path = Path(__file__).resolve().parents[1] / "ext"
    if not (path / "setup.py").is_file():
        raise IvrError(f"the extension sources are not at {path}: `ivr build-ext` needs a "
                       "checkout of the ivr repository (pip install -e .), or pass --source")
    return path


# (pattern in the build log, what to do) -- the first match explains the failure
_DIAGNOSES = [
    (r"Python\.h: No such file", "the Python headers are missing: install python3-dev "
                                 "(Debian/Ubuntu) or your Python's development package"),
    (r"mismatches the version that was used to compile", "the CUDA toolkit does not match "
     "torch's CUDA version: install the matching toolkit or use --cpu-only"),
    (r"unsupported GNU version|unsupported .*host compiler", "nvcc does not support this "
     "host compiler version: point NVCC_CCBIN (or CC/CXX) at a supported gcc, or use --cpu-only"),
    (r"nvcc.*(not found|No such file)", "nvcc was not found: set CUDA_HOME to your CUDA "
     "toolkit or use --cpu-only"),
    (r"(Killed|out of memory|cannot allocate memory)", "the compiler ran out of memory: "
     "use fewer --jobs"),
    (r"No space left on device", "the disk is full: free space and retry"),
]


def diagnose(log: str) -> str:
    """One paragraph: the first compiler error and what to do about it."""
    first = next((line.strip() for line in log.splitlines()
                  if re.search(r"\berror\b[:]", line) and "subprocess-exited" not in line), None)
    hint = next((fix for pattern, fix in _DIAGNOSES if re.search(pattern, log)), None)
    parts = [f"first error: {first[:300]}" if first else "the build failed without a "
             "compiler error message"]
    parts.append(hint or "check that the compiler and torch installation work "
                         "(`ivr env`), or retry with --cpu-only")
    return "; ".join(parts)


def build(tc: Toolchain, source: Path, jobs: int | None, log_path: Path) -> None:
    """``pip install --no-build-isolation`` the extension; raises IvrError on failure."""
    env = dict(os.environ)
    if tc.cuda:
        env.update(FORCE_CUDA="1", TORCH_CUDA_ARCH_LIST=tc.arch_list)
        if tc.cuda_home:
            env["CUDA_HOME"] = tc.cuda_home
    else:
        env["IVR_CPU_ONLY"] = "1"
    if jobs:
        env["MAX_JOBS"] = str(jobs)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "install", "-v", "--no-build-isolation", "--no-deps",
           "--force-reinstall", str(source)]
    with open(log_path, "w", encoding="utf-8") as log:
        log.write(f"$ {' '.join(cmd)}\n")
        log.flush()
        code = subprocess.run(cmd, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
    if code != 0:
        text = log_path.read_text(encoding="utf-8", errors="replace")
        raise IvrError(f"building the compiled ops failed. {diagnose(text)}. The full log is "
                       f"{log_path}")


_CHECK = r"""
import json, torch, ivr_ext
from ivr_core.ops import reference
result = {"version": ivr_ext.__version__, "devices": {}}
for device in ("cpu", "cuda"):
    if not ivr_ext.has_kernel(device) or (device == "cuda" and not torch.cuda.is_available()):
        continue
    g = torch.Generator().manual_seed(0)
    image = torch.randn(2, 3, 9, 11, generator=g, dtype=torch.float64).to(device).requires_grad_()
    boxes = (torch.rand(5, 4, generator=g, dtype=torch.float64) * 1.2 - 0.1).to(device)
    ind = torch.tensor([0, 1, 1, 0, 1], device=device)
    a = torch.ops.ivr.crop_and_resize(image, boxes, ind, 4, 5, 0.0)
    b = reference.crop_and_resize(image, boxes, ind, (4, 5), 0.0)
    ga, = torch.autograd.grad(a.sum(), image)
    gb, = torch.autograd.grad(b.sum(), image)
    maps = torch.randn(5, 3, 7, 7, generator=g, dtype=torch.float64).to(device)
    p = torch.ops.ivr.paste_and_sum(maps, boxes * 3 - 1, 6, 8)
    q = reference.paste_and_sum_reference(maps, boxes * 3 - 1, (6, 8))
    err = max(float((a - b).abs().max()), float((ga - gb).abs().max()), float((p - q).abs().max()))
    result["devices"][device] = err
print(json.dumps(result))
"""


def self_check() -> dict:
    """Load the freshly installed ops in a new interpreter and compare them with the
    reference; returns {"version", "devices": {device: max abs error}}."""
    out = subprocess.run([sys.executable, "-c", _CHECK], capture_output=True, text=True)
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or ["no output"])[-1]
        raise IvrError(f"the compiled ops were installed but do not load: {last}; rebuild "
                       "with `ivr build-ext` after changing torch, or see `ivr env`")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    bad = {d: e for d, e in result["devices"].items() if not e < 1e-9}
    if bad:
        raise IvrError(f"the compiled ops load but disagree with the reference: {bad}; please "
                       "report this with the output of `ivr env`")
    return result


def default_log_path() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ivr"
    return base / f"build-ext-{time.strftime('%Y%m%d-%H%M%S')}.log"
