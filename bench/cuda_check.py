"""One command that validates ivr's CUDA path and leaves a record.

A script, not a test; CI runs it with --device cpu --small (tests/bench/test_cuda_check.py).

    python bench/cuda_check.py --out DIR                     # on a GPU: everything, <= 9 min
    python bench/cuda_check.py --device cpu --out DIR        # the same checks a CPU can do
    python bench/cuda_check.py --device cpu --small --out DIR   # tiny sizes (CI)
    python bench/cuda_check.py --checks ops,gradcheck --out DIR # some checks only

Checks, in this order (the most telling first, so a time limit cuts the least):

  build        ivr_ext with kernels for the device; built when missing or stale with
               `ivr build-ext --cuda --arch <the GPU's>` (`--cpu-only` on a CPU)
  ops          compiled ops on the device vs a float64 CPU oracle (the pure-PyTorch
               reference), vs the reference on the device and vs the CPU kernels: outputs and
               gradients, every dtype the device's kernels take
  gradcheck    torch.autograd.gradcheck in float64 on the device (both ops, both inputs)
  determinism  with deterministic algorithms on, repeated backward passes agree bit for bit,
               and (CUDA) the crop's image gradient equals the CPU kernel's bit for bit
  pytest       `pytest -m cuda`: every CUDA test (on a CPU they all skip)
  train        `ivr train` of the memory model with the demo preset on generated synthetic
               data, runtime.deterministic=true: the device's loss curve vs a CPU run of the
               same seed (CUDA only), and a run killed with SIGKILL at a random iteration then
               resumed vs an uninterrupted run (weights and logged losses, bit for bit)
  train_step   bench/train_step.py at the authors' scale (600/1000, ResNet-50, 3 memory
               iterations): baseline, memory and full in fp32 / bf16 / fp16, s/step, peak
               memory, and the time of the 320k-iteration schedule at that speed
  bench_ops    bench/ops.py on the device: its table

Writes DIR/cuda_check.json (every number and each check's verdict), DIR/cuda_check.md (the
summary, also printed last) and DIR/log.txt (the output of every command it ran). Scratch
files (data, runs, build log) go to --work (default: a temporary folder). Exits 1 when a
check fails, 2 on bad arguments. TF32 stays PyTorch's default (matmul off, cuDNN on) except
in the CPU-vs-CUDA training comparison, which sets NVIDIA_TF32_OVERRIDE=0.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # ivr_core from this checkout even when not pip-installed

CHECKS = ("build", "ops", "gradcheck", "determinism", "pytest", "train", "train_step",
          "bench_ops")
# per dtype: (outputs and map/image gradients, box gradients) relative error bounds,
# ||x - oracle|| / ||oracle||, against the float64 oracle on the same (rounded) inputs
TOLERANCE = {torch.float64: (1e-12, 1e-9), torch.float32: (1e-5, 1e-3),
             torch.float16: (5e-3, 5e-2), torch.bfloat16: (3e-2, 2e-1)}
TF32_OFF = {"NVIDIA_TF32_OVERRIDE": "0"}  # cuBLAS and cuDNN: full float32
GRACE = 120  # seconds a check running at --time-limit may go on


class Run:
    """The state of one cuda_check run: arguments, folders, the log, the clock."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.device = args.device
        self.out = Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.work = Path(args.work or tempfile.mkdtemp(prefix="cuda_check_"))
        self.work.mkdir(parents=True, exist_ok=True)
        self.log_path = self.out / "log.txt"
        self.log_path.write_text(f"$ {' '.join(sys.argv)}\n", encoding="utf-8")
        self.start = time.monotonic()

    def left(self, hard: bool = False) -> float:
        """Seconds left until --time-limit (no check or configuration starts after it) or,
        with ``hard``, until GRACE seconds later (running commands are stopped then); inf
        without a limit."""
        limit = self.args.time_limit
        if not limit:
            return math.inf
        return limit + (GRACE if hard else 0) - (time.monotonic() - self.start)

    def log(self, text: str) -> None:
        """Append to log.txt; a section title ("===== ...") gets the run's clock."""
        if text.startswith("\n====="):
            text = f"\n===== [{time.monotonic() - self.start:.0f} s]" + text[len("\n====="):]
        with open(self.log_path, "a", encoding="utf-8") as f:
            f.write(text if text.endswith("\n") else text + "\n")

    def command(self, cmd: list[str], title: str, env: dict | None = None,
                timeout: float | None = None) -> subprocess.CompletedProcess:
        """Run ``cmd`` from the repository root, its output into the log; never raises on a
        non-zero exit (a timeout is returncode -9 with a note)."""
        self.log(f"\n===== {title}\n$ {' '.join(cmd)}")
        timeout = min(timeout or math.inf, max(self.left(hard=True), 1))
        try:
            done = subprocess.run(cmd, cwd=ROOT, env={**os.environ, **(env or {})},
                                  capture_output=True, text=True,
                                  timeout=None if math.isinf(timeout) else timeout)
        except subprocess.TimeoutExpired as e:
            out = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else e.stdout or ""
            done = subprocess.CompletedProcess(cmd, -9, out, f"timed out after {timeout:.0f} s")
        self.log(done.stdout + done.stderr + f"[exit {done.returncode}]")
        return done


# ----------------------------------------------------------------------------- build


_PROBE = ("import json, torch, ivr_ext; print(json.dumps({'version': ivr_ext.__version__, "
          "'cpu': ivr_ext.has_kernel('cpu'), 'cuda': ivr_ext.has_kernel('cuda'), "
          "'autocast': ivr_ext.has_autocast('cpu')}))")


def probe_ext(run: Run) -> dict:
    """What ivr_ext offers, asked in a fresh interpreter (this one must not import a stale
    build before a rebuild): {"loaded", "cpu", "cuda", "autocast", "version"|"why"}."""
    done = run.command([sys.executable, "-c", _PROBE], "probe ivr_ext", timeout=120)
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines() or ["no output"]
        return {"loaded": False, "why": lines[-1]}
    return {"loaded": True, **json.loads(done.stdout.strip().splitlines()[-1])}


def check_build(run: Run) -> dict:
    cuda = run.device == "cuda"
    found = probe_ext(run)
    ready = found["loaded"] and found.get("autocast") and (found.get("cuda") or not cuda)
    if ready and not run.args.rebuild:
        return {"status": "pass", "built": False, "ext": found}
    if run.args.build == "never":
        return {"status": "fail", "ext": found, "reason": "ivr_ext is missing or stale and "
                "--build never was given; run `ivr build-ext`"}
    log = run.work / "build-ext.log"
    cmd = [sys.executable, "-m", "ivr_cli", "build-ext", "--jobs", str(os.cpu_count() or 2),
           "--log", str(log)]
    if cuda:
        major, minor = torch.cuda.get_device_capability()
        cmd += ["--cuda", "--arch", f"{major}.{minor}"]
    else:
        cmd += ["--cpu-only"]
    done = run.command(cmd, "ivr build-ext")
    if log.is_file():  # pip -v output: the end holds the compiler's errors
        run.log("----- build log (last 300 lines)\n"
                + "\n".join(log.read_text(errors="replace").splitlines()[-300:]))
    found = probe_ext(run)
    ok = done.returncode == 0 and found["loaded"] and (found.get("cuda") or not cuda)
    return {"status": "pass" if ok else "fail", "built": True, "command": " ".join(cmd),
            "exit": done.returncode, "ext": found}


# ------------------------------------------------------------------- ops, gradcheck


def _rel(got: torch.Tensor, want: torch.Tensor) -> float:
    """||got - want|| / ||want|| in float64 (0 when both are 0; inf on NaN)."""
    got, want = got.detach().double().cpu(), want.detach().double().cpu()
    if not torch.isfinite(got).all():
        return math.inf
    den = float(want.norm())
    num = float((got - want).norm())
    return num / den if den else num


def _max_abs(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got.detach().double().cpu() - want.detach().double().cpu()).abs().max())


def op_cases(small: bool, seed: int = 0) -> dict:
    """CPU float64 inputs of both ops: {"crop": (image, boxes, box_ind, size, fill),
    "paste": (maps, boxes, size)} at model-like shapes, or tiny ones with --small."""
    from ivr_core.ops import inverse_boxes

    g = torch.Generator().manual_seed(seed)
    b, c, h, w, k = (2, 5, 13, 17, 24) if small else (1, 256, 38, 50, 64)
    image = torch.randn(b, c, h, w, generator=g, dtype=torch.float64)
    boxes = torch.rand(k, 4, generator=g, dtype=torch.float64) * 1.4 - 0.2  # some outside
    box_ind = torch.randint(0, b, (k,), generator=g)
    xy = torch.rand(k, 2, generator=g, dtype=torch.float64) * torch.tensor([w, h]) * 12
    px = torch.cat([xy, xy + 8 + torch.rand(k, 2, generator=g, dtype=torch.float64) * 200], 1)
    maps = torch.randn(k, c // 2 or 1, 7, 7, generator=g, dtype=torch.float64)
    return {"crop": (image, boxes, box_ind, (7, 7), 0.25),
            "paste": (maps, inverse_boxes(px, 16, h, w), (h, w))}


def _forward_backward(fn, args: tuple, dout_dtype: torch.dtype | None = None):
    """(output, d/d args[0], d/d args[1]) for a fixed random output gradient, rounded to
    ``dout_dtype`` (the oracle gets the gradient the op under test got)."""
    x, boxes = (a.detach().clone().requires_grad_() for a in args[:2])
    out = fn(x, boxes, *args[2:])
    g = torch.Generator().manual_seed(1)
    dout = torch.randn(out.shape, generator=g, dtype=torch.float64)
    dout = dout.to(dout_dtype or out.dtype).to(out.device, out.dtype)
    gx, gb = torch.autograd.grad(out, (x, boxes), dout)
    return out.detach(), gx, gb


def _compiled(op: str):
    from ivr_core.ops import backend

    def crop(image, boxes, box_ind, size, fill):
        return torch.ops.ivr.crop_and_resize(image, boxes, box_ind, size[0], size[1], fill)

    def paste(maps, boxes, size):
        return torch.ops.ivr.paste_and_sum(maps, boxes, size[0], size[1])

    assert backend.compiled_status()[0], backend.compiled_status()[1]
    return crop if op == "crop" else paste


def _reference(op: str):
    from ivr_core.ops import reference
    return reference.crop_and_resize if op == "crop" else reference.paste_and_sum


def _on(args: tuple, device: str, dtype: torch.dtype) -> tuple:
    """``args`` of an op on ``device``: the image or maps in ``dtype``, the boxes in float32
    for half precision (as the models pass them) and in ``dtype`` otherwise."""
    box_dtype = torch.promote_types(dtype, torch.float32)
    return (args[0].to(device, dtype), args[1].to(device, box_dtype),
            *(a.to(device) if torch.is_tensor(a) else a for a in args[2:]))


def check_ops(run: Run) -> dict:
    device = run.device
    dtypes = [torch.float32, torch.float64]
    if device == "cuda":
        dtypes += [torch.float16, torch.bfloat16]
    rows, failures = [], []
    for op, args in op_cases(run.args.small).items():
        for dtype in dtypes:
            tol_x, tol_boxes = TOLERANCE[dtype]
            # the oracle sees the inputs as rounded to dtype, so only the op's arithmetic
            # and the output rounding count
            rounded = _on(_on(args, "cpu", dtype), "cpu", torch.float64)
            oracle = _forward_backward(_reference(op), rounded, dout_dtype=dtype)
            results = {"compiled": _forward_backward(_compiled(op), _on(args, device, dtype))}
            results["reference"] = _forward_backward(_reference(op), _on(args, device, dtype))
            if device == "cuda" and dtype in (torch.float32, torch.float64):
                results["cpu kernel"] = _forward_backward(_compiled(op), _on(args, "cpu", dtype))
            row = {"op": op, "dtype": str(dtype).replace("torch.", "")}
            for what, (out, gx, gb) in results.items():
                errs = [_rel(out, oracle[0]), _rel(gx, oracle[1]), _rel(gb, oracle[2])]
                row[what] = {"rel_out": errs[0], "rel_grad": errs[1], "rel_box_grad": errs[2]}
                if what == "compiled" and (max(errs[:2]) > tol_x or errs[2] > tol_boxes):
                    failures.append(f"{op} {row['dtype']}: compiled errors {errs} exceed "
                                    f"({tol_x}, {tol_boxes})")
            ours = results["compiled"]
            for what in ("reference", "cpu kernel"):
                if what in results:
                    other = results[what]
                    row[f"compiled vs {what}"] = {
                        "max_abs_out": _max_abs(ours[0], other[0]),
                        "max_abs_grad": _max_abs(ours[1], other[1]),
                        "max_abs_box_grad": _max_abs(ours[2], other[2]),
                        "forward_bitwise": bool(torch.equal(ours[0].cpu(), other[0].cpu()))}
            rows.append(row)
    return {"status": "fail" if failures else "pass", "rows": rows, "failures": failures,
            "tolerance": {str(k).replace("torch.", ""): v for k, v in TOLERANCE.items()}}


def smooth_boxes(g: torch.Generator, n: int, in_size: tuple, out_size: tuple,
                 lo: float = -0.1, span: float = 1.2, margin: float = 1e-3) -> torch.Tensor:
    """n float64 boxes whose samples all lie ``margin`` away from integer coordinates (and
    at least one inside): there the ops are smooth, so finite differences are valid."""
    from ivr_core.ops.reference import sample_coords

    boxes = []
    while len(boxes) < n:
        box = torch.rand(4, generator=g, dtype=torch.float64) * span + lo
        ys, vy = sample_coords(box[0:1], box[2:3], in_size[0], out_size[0])
        xs, vx = sample_coords(box[1:2], box[3:4], in_size[1], out_size[1])
        coords = torch.cat([ys[0], xs[0]])
        if (coords - coords.round()).abs().min() > margin and vy.any() and vx.any():
            boxes.append(box)
    return torch.stack(boxes)


def check_gradcheck(run: Run) -> dict:
    dev = run.device
    g = torch.Generator().manual_seed(11)
    crop, paste = _compiled("crop"), _compiled("paste")
    image = torch.randn(2, 2, 5, 6, generator=g, dtype=torch.float64).to(dev).requires_grad_()
    cboxes = smooth_boxes(g, 4, (5, 6), (3, 4)).to(dev).requires_grad_()
    ind = torch.tensor([0, 1, 1, 0], device=dev)
    maps = torch.randn(3, 1, 4, 4, generator=g, dtype=torch.float64).to(dev).requires_grad_()
    pboxes = smooth_boxes(g, 3, (4, 4), (6, 7), lo=-0.6, span=2.3).to(dev).requires_grad_()
    results = {}
    for name, fn, inputs in (
            ("crop_and_resize", lambda x, b: crop(x, b, ind, (3, 4), 0.3), (image, cboxes)),
            ("paste_and_sum", lambda m, b: paste(m, b, (6, 7)), (maps, pboxes))):
        try:
            results[name] = bool(torch.autograd.gradcheck(fn, inputs))
        except torch.autograd.gradcheck.GradcheckError as e:
            results[name] = False
            run.log(f"gradcheck {name}: {e}")
    return {"status": "pass" if all(results.values()) else "fail", "results": results}


# ---------------------------------------------------------------------- determinism


def check_determinism(run: Run) -> dict:
    dev = run.device
    crop, paste = _compiled("crop"), _compiled("paste")
    g = torch.Generator().manual_seed(5)
    # many boxes over a small map: every pixel gets adds from many boxes
    image = torch.randn(2, 8, 19, 23, generator=g)
    boxes = torch.rand(200, 4, generator=g) * 1.2 - 0.1
    ind = torch.randint(0, 2, (200,), generator=g)
    maps = torch.randn(200, 8, 7, 7, generator=g)

    def crop_grads(device, dtype):
        args = _on((image, boxes, ind, (7, 7), 0.0), device, dtype)
        return _forward_backward(crop, args)

    def paste_grads(device, dtype):
        return _forward_backward(paste, _on((maps, boxes, (19, 23)), device, dtype))

    result, failures = {}, []
    previous = torch.are_deterministic_algorithms_enabled()
    try:
        torch.use_deterministic_algorithms(False)
        a, b = crop_grads(dev, torch.float32), crop_grads(dev, torch.float32)
        result["crop image grad, default mode, max abs diff of two runs"] = _max_abs(a[1], b[1])
        torch.use_deterministic_algorithms(True)
        for dtype in (torch.float32, torch.float64):
            name = str(dtype).replace("torch.", "")
            for op, fn in (("crop", crop_grads), ("paste", paste_grads)):
                a, b = fn(dev, dtype), fn(dev, dtype)
                same = all(torch.equal(x, y) for x, y in zip(a, b))
                result[f"{op} {name}: two runs bitwise equal"] = same
                if not same:
                    failures.append(f"{op} {name} differs between two deterministic runs")
            if dev == "cuda":
                gpu, cpu = crop_grads("cuda", dtype), crop_grads("cpu", dtype)
                same = torch.equal(gpu[1].cpu(), cpu[1])
                result[f"crop {name}: image grad equals the CPU kernel's"] = same
                if not same:
                    failures.append(f"crop {name}: deterministic CUDA image gradient differs "
                                    f"from the CPU kernel's (max {_max_abs(gpu[1], cpu[1]):.2e})")
    finally:
        torch.use_deterministic_algorithms(previous)
    return {"status": "fail" if failures else "pass", "results": result, "failures": failures}


# --------------------------------------------------------------------------- pytest


def check_pytest(run: Run) -> dict:
    xml = run.work / "pytest.xml"
    xml.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider",
           f"--junitxml={xml}", *run.args.pytest_paths]
    env = {"IVR_REQUIRE_EXT": "1"} if run.device == "cuda" else {}
    done = run.command(cmd, "pytest -m cuda", env=env)
    tail = (done.stdout + done.stderr).strip().splitlines()[-1:] or [""]
    result = {"command": " ".join(cmd[1:]), "exit": done.returncode, "summary": tail[0]}
    if not xml.is_file():
        return {**result, "status": "fail", "reason": "pytest wrote no report"}
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    failed, skips = [], {}
    for suite in ElementTree.parse(xml).getroot().iter("testsuite"):
        for key in counts:
            counts[key] += int(suite.get(key, 0))
        for case in suite.iter("testcase"):
            name = f"{case.get('classname')}::{case.get('name')}"
            if case.find("failure") is not None or case.find("error") is not None:
                failed.append(name)
            skip = case.find("skipped")
            if skip is not None:
                reason = (skip.get("message") or "").strip()[:120]
                skips[reason] = skips.get(reason, 0) + 1
    passed = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    ok = (done.returncode in (0, 5) and not failed
          and (run.device != "cuda" or passed > 0))  # 5: nothing collected
    return {**result, "status": "pass" if ok else "fail", "passed": passed,
            "failures": failed, "skip_reasons": skips, "counts": counts}


# ---------------------------------------------------------------------------- train


def make_data(run: Run) -> Path:
    """The synthetic dataset of `ivr demo`, --train-images images, prepared."""
    from ivr_core.data import synthetic
    from ivr_core.data.prepare import prepare_ade

    root, min_count = run.work / "data", run.args.min_count
    if not (root / f"ade_train_{min_count}.json").is_file():
        synthetic.generate(root, images=run.args.train_images, seed=0, show_progress=False)
        prepare_ade(root, root, min_count, root, show_progress=False,
                    extra={"context_classes": list(synthetic.CONTEXT_CLASSES)})
    return root


def train_command(run: Run, data: Path, run_dir: Path, device: str, threads: int) -> list:
    from ivr_core.config import preset_path

    sets = [f"data.min_count={run.args.min_count}", "train.seed=0", "train.log_every=1",
            f"train.snapshot_every={run.args.snapshot}",
            "train.keep_last=3", "runtime.deterministic=true", f"runtime.threads={threads}",
            *run.args.train_set]
    return [sys.executable, "-m", "ivr_cli", "train", "--config", str(preset_path("demo")),
            "--model", "memory", "--data", str(data), "--run-dir", str(run_dir),
            "--iters", str(run.args.train_iters), "--device", device, "-q",
            *[x for s in sets for x in ("--set", s)]]


def _log_iter(run_dir: Path) -> int:
    from ivr_core.engine.logger import read_log
    try:
        records = read_log(run_dir)
    except (OSError, ValueError):  # a line being written
        return 0
    return records[-1]["iter"] if records else 0


def _start(cmd: list, env: dict, log: Path) -> subprocess.Popen:
    """A training process in its own process group (killed with its loader workers)."""
    return subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **env}, start_new_session=True,
                            stdout=open(log, "w"), stderr=subprocess.STDOUT)


def _finish(run: Run, proc: subprocess.Popen, log: Path, title: str) -> int:
    try:
        code = proc.wait(timeout=max(run.left(hard=True), 1) if run.args.time_limit else None)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        code = proc.wait()
        run.log(f"{title}: killed at the time limit")
    run.log(f"\n===== {title}\n$ {' '.join(proc.args)}\n{log.read_text(errors='replace')}"
            f"[exit {code}]")
    return code


def _kill_at_random_iteration(run: Run, proc: subprocess.Popen, run_dir: Path) -> dict:
    """SIGKILL the process group once the log reaches a random iteration past the first
    checkpoint; {"killed_at": logged iteration} or {"error": ...}."""
    iters, snap = run.args.train_iters, run.args.snapshot
    target = random.Random(run.args.seed).randint(snap + 1, max(snap + 1, iters - 3))
    while proc.poll() is None:
        reached = _log_iter(run_dir)
        if reached >= target:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return {"target": target, "killed_at": reached}
        if run.left(hard=True) < 0:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return {"error": "time limit reached before the kill"}
        time.sleep(0.02)
    return {"error": f"the run ended (exit {proc.returncode}) before iteration {target}"}


def _losses(run_dir: Path) -> list[tuple[int, float]]:
    from ivr_core.engine.logger import read_log
    return [(r["iter"], r["loss"]) for r in read_log(run_dir)]


def _final_weights(run_dir: Path, iters: int) -> dict:
    from ivr_core.engine import checkpoint as ckpt
    return ckpt.load_checkpoint(ckpt.checkpoint_path(run_dir, iters))["model"]


def compare_curves(reference: list, other: list) -> dict:
    """Loss curves of the same seed on two devices: the first step (same weights, same data:
    only rounding differs), where they first part by more than 1e-3, and the mean over the
    last fifth (later steps are compared as levels: training amplifies rounding)."""
    ref, oth = dict(reference), dict(other)
    iters = sorted(set(ref) & set(oth))
    if not iters:
        return {"error": "no common logged iteration"}
    rel = [abs(oth[i] - ref[i]) / max(abs(ref[i]), 1e-12) for i in iters]
    tail = iters[-max(1, len(iters) // 5):]
    mean_ref = sum(ref[i] for i in tail) / len(tail)
    mean_oth = sum(oth[i] for i in tail) / len(tail)
    return {"first_iter": iters[0], "rel_first": rel[0],
            "parts_at": next((i for i, r in zip(iters, rel) if r > 1e-3), None),
            "rel_max": max(rel), "last_fifth_mean": [mean_ref, mean_oth],
            "rel_last_fifth": abs(mean_oth - mean_ref) / max(abs(mean_ref), 1e-12)}


def check_train(run: Run) -> dict:
    data = make_data(run)
    dev, cores = run.device, os.cpu_count() or 2
    env = TF32_OFF if dev == "cuda" else {}
    lanes = {"straight": (dev, env), "killed": (dev, env)}
    if dev == "cuda":
        lanes["cpu"] = ("cpu", {})
    procs, logs, dirs = {}, {}, {}
    for name, (device, lane_env) in lanes.items():  # side by side: wall time is the longest
        threads = max(1, cores - 4) if name == "cpu" else max(1, min(2, cores // 2))
        dirs[name] = run.work / f"run_{name}"
        logs[name] = run.work / f"train_{name}.log"
        procs[name] = _start(train_command(run, data, dirs[name], device, threads), lane_env,
                             logs[name])
    result = {"iterations": run.args.train_iters, "images": run.args.train_images}
    result["kill"] = _kill_at_random_iteration(run, procs["killed"], dirs["killed"])
    killed_log = logs["killed"].with_name("train_killed_first.log")
    logs["killed"].rename(killed_log)
    _finish(run, procs["killed"], killed_log, "ivr train (to be killed)")
    failures = []
    if "error" in result["kill"]:
        failures.append(result["kill"]["error"])
    else:
        cmd = train_command(run, data, dirs["killed"], dev, max(1, min(2, cores // 2)))
        procs["killed"] = _start(cmd + ["--resume"], env, logs["killed"])
    titles = {"straight": "uninterrupted", "killed": "resumed", "cpu": "on the CPU"}
    codes = {name: _finish(run, proc, logs[name], f"ivr train ({titles[name]})")
             for name, proc in procs.items() if name != "killed" or "error" not in result["kill"]}
    result["exit"] = codes
    failures += [f"ivr train ({name}) exited {code}" for name, code in codes.items() if code]
    if failures:
        return {**result, "status": "fail", "failures": failures}
    iters = run.args.train_iters
    a, b = _final_weights(dirs["straight"], iters), _final_weights(dirs["killed"], iters)
    diffs = [float((a[k].double() - b[k].double()).abs().max()) for k in a if a[k].numel()]
    result["resume"] = {"weights_bitwise_equal": all(torch.equal(a[k], b[k]) for k in a),
                        "weights_max_abs_diff": max(diffs, default=0.0),
                        "losses_equal": _losses(dirs["straight"]) == _losses(dirs["killed"])}
    if not (result["resume"]["weights_bitwise_equal"] and result["resume"]["losses_equal"]):
        failures.append("the resumed run differs from the uninterrupted one")
    if dev == "cuda":
        curves = compare_curves(_losses(dirs["cpu"]), _losses(dirs["straight"]))
        result["cpu_vs_cuda"] = curves
        if "error" in curves or curves["rel_first"] > 1e-4 or curves["rel_last_fifth"] > 0.1:
            failures.append("the CUDA loss curve does not follow the CPU one (first step "
                            "> 1e-4 or last fifth > 10% apart)")
    result["curve"] = _losses(dirs["straight"])
    return {**result, "status": "fail" if failures else "pass", "failures": failures}


# ----------------------------------------------------------------------- benchmarks


def check_train_step(run: Run) -> dict:
    sys.path.insert(0, str(ROOT / "bench"))
    import train_step
    from ivr_core.config import load_config

    schedule = load_config().train.iters
    scale, max_size = (int(v) for v in run.args.scale.split("/"))
    rows, failures = [], []
    matmul = train_step.matmul_gflops(run.device)
    for model in run.args.models.split(","):
        for amp in run.args.amps.split(","):
            if run.left() < 0:
                failures.append(f"time limit: {model} {amp} not run")
                continue
            row = {"model": model, "amp": amp, "scale": run.args.scale}
            try:
                r = train_step.bench(model, scale, max_size, run.device, run.args.steps, amp,
                                     False, run.args.step_set)
                row.update(r, schedule_hours=r["s"] * schedule / 3600)
            except Exception as e:  # a failing configuration must not hide the others
                run.log(f"train_step {model} {amp}:\n{traceback.format_exc()}")
                row["error"] = f"{type(e).__name__}: {str(e)[:200]}"
                failures.append(f"{model} {amp}: {row['error']}")
            rows.append(row)
            if run.device == "cuda":
                torch.cuda.empty_cache()
    return {"status": "fail" if failures else "pass", "rows": rows, "failures": failures,
            "matmul_fp32_gflops": matmul, "schedule_iters": schedule,
            "overrides": run.args.step_set}


def check_bench_ops(run: Run) -> dict:
    if run.args.small:
        return {"status": "skip", "reason": "bench/ops.py runs model-scale sizes only "
                "(minutes on a CPU); not with --small"}
    done = run.command([sys.executable, str(ROOT / "bench" / "ops.py"), "--device",
                        run.device], "bench/ops.py")
    table = [line for line in done.stdout.splitlines() if line.startswith("|")]
    return {"status": "pass" if done.returncode == 0 else "fail", "exit": done.returncode,
            "header": done.stdout.splitlines()[:1], "table": table}


# ------------------------------------------------------------------------ the record


def environment() -> dict:
    env = {"python": sys.version.split()[0], "platform": platform.platform(),
           "torch": torch.__version__, "torch_cuda": torch.version.cuda,
           "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
           "cuda_available": torch.cuda.is_available()}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        env.update(gpu=props.name, capability=f"{props.major}.{props.minor}",
                   gpu_memory_gib=round(props.total_memory / 2**30, 1),
                   gpu_count=torch.cuda.device_count(), cudnn=torch.backends.cudnn.version(),
                   tf32_matmul=torch.backends.cuda.matmul.allow_tf32,
                   tf32_cudnn=torch.backends.cudnn.allow_tf32)
    try:
        env["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                                       capture_output=True, text=True).stdout.strip() or None
    except OSError:
        env["commit"] = None
    return env


def _fmt(x) -> str:
    return f"{x:.1e}" if isinstance(x, float) else str(x)


def summary(record: dict) -> str:
    env, checks = record["environment"], record["checks"]
    where = env.get("gpu") or f"CPU, {env['cpu_count']} cores"
    lines = [f"# ivr cuda_check: {'PASSED' if record['passed'] else 'FAILED'}", "",
             f"{record['finished']}, device {record['device']} ({where}), torch {env['torch']} "
             f"(CUDA {env['torch_cuda']}), python {env['python']}, commit {env['commit']}; "
             f"{record['seconds']:.0f} s", "", "| check | status | s | result |",
             "|---|---|---|---|"]
    for name, c in checks.items():
        lines.append(f"| {name} | {c['status']} | {c.get('seconds', 0):.0f} | "
                     f"{_headline(name, c)} |")
    ops = checks.get("ops", {}).get("rows")
    if ops:
        lines += ["", "Relative errors vs the float64 oracle (output / map or image gradient "
                  "/ box gradient):", "", "| op | dtype | compiled | reference on device |",
                  "|---|---|---|---|"]
        for r in ops:
            cells = [" / ".join(_fmt(r[w][k]) for k in ("rel_out", "rel_grad", "rel_box_grad"))
                     for w in ("compiled", "reference")]
            lines.append(f"| {r['op']} | {r['dtype']} | {cells[0]} | {cells[1]} |")
    steps = checks.get("train_step", {}).get("rows")
    if steps:
        lines += ["", f"Training step ({checks['train_step']['schedule_iters']} iterations "
                  "= the schedule):", "",
                  "| model | amp | scale | s/step | peak MB | GFLOP/s | schedule h |",
                  "|---|---|---|---|---|---|---|"]
        for r in steps:
            if "error" in r:
                lines.append(f"| {r['model']} | {r['amp']} | {r['scale']} | {r['error']} | | | |")
            else:
                lines.append(f"| {r['model']} | {r['amp']} | {r['scale']} | {r['s']:.3f} | "
                             f"{r['peak_mb']:.0f} | {r['gflops']:.0f} | "
                             f"{r['schedule_hours']:.1f} |")
    problems = [f"- {name}: {p}" for name, c in checks.items()
                for p in c.get("failures", []) + ([c["reason"]] if c["status"] == "fail"
                                                  and "reason" in c else [])]
    if problems:
        lines += ["", "Failures:", *problems[:40]]
    return "\n".join(lines) + "\n"


def _headline(name: str, c: dict) -> str:
    if c["status"] == "skip":
        return c.get("reason", "")
    if "error" in c:
        return c["error"][:150]
    if name == "build":
        return f"built: {c.get('built')}; {c.get('ext')}"
    if name == "pytest":
        counts = c.get("counts", {})
        return (f"{c.get('passed', 0)} passed, {len(c.get('failures', []))} failed, "
                f"{counts.get('skipped', 0)} skipped; {c.get('summary', '')}")
    if name == "ops":
        worst = max((r["compiled"]["rel_out"] for r in c["rows"]), default=0.0)
        return f"{len(c['rows'])} cases, largest output error {worst:.1e}"
    if name in ("gradcheck", "determinism"):
        return ", ".join(f"{k}: {v}" for k, v in c["results"].items())
    if name == "train":
        parts = [f"killed at {c.get('kill', {}).get('killed_at')}",
                 f"resume {c.get('resume')}"]
        if "cpu_vs_cuda" in c:
            cv = c["cpu_vs_cuda"]
            parts.append(f"CPU vs CUDA: step 1 {_fmt(cv.get('rel_first'))}, last fifth "
                         f"{_fmt(cv.get('rel_last_fifth'))}, part at {cv.get('parts_at')}")
        return "; ".join(parts)
    if name == "train_step":
        return f"{len(c['rows'])} configurations"
    if name == "bench_ops":
        return f"{len(c['table'])} table lines"
    return ""


def _write(run: Run, record: dict) -> None:
    """The record and its summary, rewritten after every check (a killed run keeps what
    it had measured)."""
    (run.out / "cuda_check.json").write_text(json.dumps(record, indent=1, default=str) + "\n")
    (run.out / "cuda_check.md").write_text(summary(record))


RUNNERS = {"build": check_build, "ops": check_ops, "gradcheck": check_gradcheck,
           "determinism": check_determinism, "pytest": check_pytest, "train": check_train,
           "train_step": check_train_step, "bench_ops": check_bench_ops}
NEEDS_EXT = {"ops", "gradcheck", "determinism"}  # in this process


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n".join(__doc__.splitlines()[2:]))
    p.add_argument("--out", required=True, help="folder for the record")
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--checks", default=",".join(CHECKS),
                   help=f"comma-separated subset of {','.join(CHECKS)}")
    p.add_argument("--small", action="store_true",
                   help="tiny sizes everywhere (what CI runs on a CPU); see the knobs below")
    p.add_argument("--work", help="scratch folder [default: a new temporary folder]")
    p.add_argument("--time-limit", type=float, default=None,
                   help=f"seconds; checks not started by then are skipped, commands still "
                   f"running {GRACE} s later are stopped [cuda: 420]")
    p.add_argument("--build", choices=["auto", "never"], default="auto",
                   help="build ivr_ext when missing or stale (auto) or fail (never)")
    p.add_argument("--rebuild", action="store_true", help="build ivr_ext even if present")
    p.add_argument("--pytest-paths", nargs="*", default=["tests"])
    p.add_argument("--train-iters", type=int, help="[300; --small 8]")
    p.add_argument("--train-images", type=int, help="synthetic images [150; --small 12]")
    p.add_argument("--snapshot", type=int, help="checkpoint every N iterations [50; --small 2]")
    p.add_argument("--train-set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="extra --set for the training runs")
    p.add_argument("--scale", help="SCALE/MAX_SIZE of train_step [600/1000; --small 64/64]")
    p.add_argument("--models", help="train_step models [baseline,memory,full; --small "
                   "memory,full]")
    p.add_argument("--amps", help="train_step precisions [none,bf16,fp16; --small none,bf16]")
    p.add_argument("--steps", type=int, help="timed train_step steps [5; --small 1]")
    p.add_argument("--step-set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="config override for train_step (e.g. model.backbone=resnet18)")
    p.add_argument("--seed", type=int, default=None, help="seed of the kill point")
    args = p.parse_args(argv)
    small = args.small
    tiny_model = ["model.backbone=resnet18", "model.tail_stride=2", "memory.channels=16",
                  "memory.fc_dim=32", "memory.norm=group", "memory.norm_groups=4",
                  "graph.hidden=16", "graph.class_dim=8"]
    defaults = {"train_iters": (300, 8), "train_images": (150, 12), "snapshot": (50, 2),
                "scale": ("600/1000", "64/64"), "steps": (5, 1),
                "models": ("baseline,memory,full", "memory,full"),
                "amps": ("none,bf16,fp16", "none,bf16")}
    for key, (full, tiny) in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, tiny if small else full)
    if small:
        args.step_set = tiny_model + args.step_set
        args.train_set = [*tiny_model[:-2], "data.scale=128", "data.max_size=128",
                          "data.workers=0", *args.train_set]
    args.min_count = 1 if small else 5  # class frequency threshold of the generated data
    if args.time_limit is None and args.device == "cuda":
        args.time_limit = 420.0
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(2**31)
    unknown = set(args.checks.split(",")) - set(CHECKS)
    if unknown:
        p.error(f"unknown checks: {', '.join(sorted(unknown))}; choose from {', '.join(CHECKS)}")
    if args.train_iters < args.snapshot + 4:
        p.error("--train-iters must exceed --snapshot by at least 4 (room for the kill)")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print(f"error: no CUDA GPU visible to torch {torch.__version__} (CUDA "
              f"{torch.version.cuda}); use --device cpu", file=sys.stderr)
        return 2
    warnings.simplefilter("ignore")  # region-op notes, random-init warnings: not results
    run = Run(args)
    chosen = [c for c in CHECKS if c in args.checks.split(",")]
    record = {"command": sys.argv, "device": args.device, "small": args.small,
              "started": datetime.datetime.now().isoformat(timespec="seconds"),
              "work": str(run.work), "kill_seed": args.seed, "environment": environment(),
              "checks": {}, "passed": False}
    for name in chosen:
        if run.left() < 0:
            record["checks"][name] = {"status": "skip", "reason": "time limit reached"}
            continue
        if name in NEEDS_EXT and record["checks"].get("build", {}).get("status") == "fail":
            record["checks"][name] = {"status": "skip", "reason": "ivr_ext did not build"}
            continue
        print(f"[{time.monotonic() - run.start:5.0f} s] {name} ...", flush=True)
        began = time.monotonic()
        try:
            result = RUNNERS[name](run)
        except Exception as e:  # an internal failure of one check must not lose the others
            run.log(f"\n===== {name} raised\n{traceback.format_exc()}")
            result = {"status": "fail", "error": f"{type(e).__name__}: {str(e)[:300]}"}
        result["seconds"] = time.monotonic() - began
        record["checks"][name] = result
        print(f"[{time.monotonic() - run.start:5.0f} s] {name}: {result['status']}", flush=True)
        record["seconds"] = time.monotonic() - run.start
        record["finished"] = datetime.datetime.now().isoformat(timespec="seconds")
        _write(run, record)
    if "build" in record["checks"] and record["checks"]["build"]["status"] == "pass":
        from ivr_core.envinfo import collect  # imports ivr_ext: only after the build
        record["environment"]["ivr_env"] = dict(collect())
    record["passed"] = all(c["status"] != "fail" for c in record["checks"].values())
    record["seconds"] = time.monotonic() - run.start
    record["finished"] = datetime.datetime.now().isoformat(timespec="seconds")
    _write(run, record)
    print(summary(record))
    print(f"record: {run.out / 'cuda_check.json'}, {run.out / 'cuda_check.md'}, "
          f"{run.log_path}")
    return 0 if record["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
