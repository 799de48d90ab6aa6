"""Region-op benchmark (not a test): ivr's compiled ops against the pure-PyTorch reference and
torchvision's roi_align, and raced against TensorFlow's crop_and_resize, at the model's shapes.

    python bench/ops.py                          # CPU: both sections
    python bench/ops.py --sections race          # only the race against TensorFlow
    python bench/ops.py --tf-python /tmp/tf/bin/python   # TensorFlow from another venv
    python bench/ops.py --device cuda --sections peers   # GPU, when there is one

Crop: feature map 1 x 1024 x 38 x 50 in NCHW and in channels-last (NHWC, TensorFlow's
layout) memory, K in {16, 64, 256} random boxes (bench/cases.py), crops 7x7 and 14x14;
forward, and forward + backward to the feature map with a fixed upstream gradient (the
output and the gradient both kept). Paste: K x 512 x 7 x 7 region maps pasted onto 38 x 50
and summed; forward + backward to the maps; peak extra memory of each variant (CPU: growth
of the peak resident set; CUDA: the caching allocator's peak).

peers: one process, medians of --repeat calls; "x" columns are ratios to the compiled op.
race: TensorFlow (bench/tf_ops.py) and ivr each time every case in their own process, the
two processes alternating (ivr first in even rounds, TensorFlow first in odd ones) for
--rounds rounds; a case's time is the median over rounds of its per-round medians, and the
ratio is ivr / TensorFlow (below 1: ivr is faster). Both sides use --threads threads. ivr
keeps freed memory in malloc as `ivr train` and `ivr test` do on CPUs (runtime
.keep_freed_memory; TensorFlow's allocator caches too) unless --system-malloc.
--baseline-ext DIR adds a third process, ivr with the extension found in DIR (an in-place
build of another commit's ext/), in the same rotation, and prints its table too and the
per-round ratio of this build to it: the way to tell a kernel change from the machine's
drift, since all three are timed in the same minutes.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import importlib.util
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import torch
import torchvision

import cases as C
from ivr_core.engine.runtime import keep_freed_memory
from ivr_core.ops import inverse_boxes, reference

HERE = Path(__file__).resolve().parent
LAYOUTS = {"NCHW": torch.contiguous_format, "NHWC": torch.channels_last}


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _timer(device: str, repeat: int):
    def timed(fn):
        return C.median_ms(lambda: (fn(), _sync(device)), repeat)
    return timed


def crop_inputs(crop: int, k: int, device: str, layout=torch.contiguous_format):
    """image (1, C, H, W) needing grad, boxes (K, 4), box_ind (K,), upstream gradient."""
    image = torch.from_numpy(C.random((1, C.H, C.W, C.FEAT_C), 0)).permute(0, 3, 1, 2)
    image = image.to(device).contiguous(memory_format=layout).requires_grad_()
    dout = torch.from_numpy(C.random((k, crop, crop, C.FEAT_C), 1)).permute(0, 3, 1, 2)
    dout = dout.to(device).contiguous(memory_format=layout)
    boxes = torch.from_numpy(C.crop_boxes(k)).to(device)
    return image, boxes, torch.zeros(k, dtype=torch.long, device=device), dout


def paste_inputs(k: int, device: str):
    """maps (K, 512, 7, 7) needing grad, inverse boxes (K, 4), upstream gradient (512, H, W)."""
    maps = torch.from_numpy(C.random((k, C.PASTE_SIZE, C.PASTE_SIZE, C.MEM_C), 2))
    maps = maps.permute(0, 3, 1, 2).contiguous().to(device).requires_grad_()
    inv = inverse_boxes(torch.from_numpy(C.pixel_boxes(k)).float(), C.STRIDE, C.H, C.W)
    dout = torch.from_numpy(C.random((C.H, C.W, C.MEM_C), 3)).permute(2, 0, 1).contiguous()
    return maps, inv.to(device), dout.to(device)


def fwd_bwd(fn, x, dout):
    """fn() and its gradient to x for the upstream gradient dout: both are returned."""
    def run():
        out = fn()
        return out, torch.autograd.grad(out, x, dout)
    return run


# --------------------------------------------------------------------------- peers


def crop_variants(crop: int, k: int, device: str) -> dict:
    """{name: (fn, x, dout)}: compiled (NCHW, channels-last), reference, roi_align."""
    image, boxes, ind, dout = crop_inputs(crop, k, device)
    nhwc, _, _, dout_nhwc = crop_inputs(crop, k, device, torch.channels_last)
    feat = torch.from_numpy(C.pixel_boxes(k) / C.STRIDE).float().to(device)
    rois = torch.cat([torch.zeros(k, 1, device=device), feat], 1)  # (K, 5) in feature pixels
    op = torch.ops.ivr.crop_and_resize
    variants = {
        "compiled": (lambda: op(image, boxes, ind, crop, crop, 0.0), image, dout),
        "compiled, channels-last": (lambda: op(nhwc, boxes, ind, crop, crop, 0.0), nhwc,
                                    dout_nhwc),
        "reference": (lambda: reference.crop_and_resize(image, boxes, ind, (crop, crop)), image,
                      dout),
    }
    for ratio in (1, 2):
        variants[f"roi_align s{ratio}"] = (lambda r=ratio: torchvision.ops.roi_align(
            image, rois, (crop, crop), 1.0, sampling_ratio=r, aligned=True), image, dout)
    return variants


def paste_variants(k: int, device: str) -> dict:
    maps, inv, dout = paste_inputs(k, device)
    size = (C.H, C.W)
    return {
        "compiled": (lambda: torch.ops.ivr.paste_and_sum(maps, inv, *size), maps, dout),
        "reference (separable)": (lambda: reference.paste_and_sum(maps, inv, size), maps, dout),
        "materialise + sum": (lambda: reference.paste_and_sum_reference(maps, inv, size), maps,
                              dout),
    }


def measure_peers(device: str, repeat: int) -> list[dict]:
    timed = _timer(device, repeat)
    rows = []
    for crop in C.CROP_SIZES:
        for k in C.KS:
            for name, (fn, x, dout) in crop_variants(crop, k, device).items():
                rows.append({"op": f"crop {crop}x{crop}", "K": k, "impl": name,
                             "fwd": timed(fn), "fwd+bwd": timed(fwd_bwd(fn, x, dout))})
    for k in C.KS:
        for name, (fn, x, dout) in paste_variants(k, device).items():
            rows.append({"op": f"paste {C.PASTE_SIZE}x{C.PASTE_SIZE} -> {C.H}x{C.W}", "K": k,
                         "impl": name, "fwd": timed(fn), "fwd+bwd": timed(fwd_bwd(fn, x, dout))})
    return rows


def _rss_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field)) / 1024


def peak_extra_mb(fn, device: str) -> float:
    """Peak memory (MB) that ``fn`` adds on top of what is allocated before it runs.

    CUDA: the caching allocator's peak. CPU: the peak resident set, reset first through
    /proc/self/clear_refs (Linux), minus the resident set before the call."""
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)  # freed blocks must not hide new allocations
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current resident set
    base = _rss_mb("VmRSS:")
    fn()
    return _rss_mb("VmHWM:") - base


def measure_memory(device: str) -> list[dict]:
    rows = []
    for k in C.KS:
        for name, (fn, x, dout) in paste_variants(k, device).items():
            rows.append({"K": k, "impl": name, "MB": peak_extra_mb(fwd_bwd(fn, x, dout), device)})
    return rows


def print_peers(times: list[dict], memory: list[dict]) -> None:
    print("| op | K | impl | fwd ms | fwd+bwd ms | fwd x | fwd+bwd x |")
    print("|---|---|---|---|---|---|---|")
    ref = {(r["op"], r["K"]): r for r in times if r["impl"] == "compiled"}
    for r in times:
        c = ref[(r["op"], r["K"])]
        print(f"| {r['op']} | {r['K']} | {r['impl']} | {r['fwd']:.2f} | {r['fwd+bwd']:.2f} | "
              f"{r['fwd'] / c['fwd']:.1f} | {r['fwd+bwd'] / c['fwd+bwd']:.1f} |")
    print("\n| paste fwd+bwd, K | impl | peak extra MB |")
    print("|---|---|---|")
    for r in memory:
        print(f"| {r['K']} | {r['impl']} | {r['MB']:.1f} |")


# --------------------------------------------------------------------------- race


def measure_race(repeat: int) -> dict:
    """ivr's side of the race: {case: {layout: {"fwd": ms, "fwd+bwd": ms}}} on the CPU."""
    timed = _timer("cpu", repeat)
    op = torch.ops.ivr.crop_and_resize
    times = {}
    for crop in C.CROP_SIZES:
        for k in C.KS:
            times[C.crop_case(crop, k)] = row = {}
            for layout, memory_format in LAYOUTS.items():
                image, boxes, ind, dout = crop_inputs(crop, k, "cpu", memory_format)
                fn = lambda: op(image, boxes, ind, crop, crop, 0.0)  # noqa: E731
                row[layout] = {"fwd": timed(fn), "fwd+bwd": timed(fwd_bwd(fn, image, dout))}
    for k in C.KS:
        maps, inv, dout = paste_inputs(k, "cpu")
        fn = lambda: torch.ops.ivr.paste_and_sum(maps, inv, C.H, C.W)  # noqa: E731
        times[C.paste_case(k)] = {"NCHW": {"fwd": timed(fn),
                                           "fwd+bwd": timed(fwd_bwd(fn, maps, dout))}}
    return times


def tensorflow_python(given: str | None) -> str | None:
    """The interpreter that runs bench/tf_ops.py: --tf-python, else this one if it has
    TensorFlow, else None."""
    if given:
        return given
    return sys.executable if importlib.util.find_spec("tensorflow") else None


def _worker(cmd: list[str], env: dict | None = None) -> dict:
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=HERE,
                         env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


def cpu_model() -> str:
    """The CPU's model name as Linux reports it, or "unknown CPU"."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def race(args) -> None:
    tf_python = tensorflow_python(args.tf_python)
    if tf_python is None:
        print("TensorFlow is not importable from this Python, so there is no race: install it "
              "(pip install tensorflow-cpu) or pass --tf-python /path/to/python of a venv "
              "that has it.")
        return
    common = ["--threads", str(args.threads), "--repeat", str(args.repeat)]
    ivr_cmd = [sys.executable, str(HERE / "ops.py"), "--race-worker"] + common + (
        ["--system-malloc"] if args.system_malloc else [])
    tf_cmd = [tf_python, str(HERE / "tf_ops.py"), "--json"] + common
    cmds = {"ivr": (ivr_cmd, None), "tf": (tf_cmd, None)}
    if args.baseline_ext:
        base = str(Path(args.baseline_ext).resolve())
        if not any(Path(base, "ivr_ext").glob("_C*.so")):
            sys.exit(f"--baseline-ext: no built ivr_ext in {base} (build it in place there: "
                     "IVR_CPU_ONLY=1 python setup.py build_ext --inplace)")
        path = os.pathsep.join(filter(None, [base, os.environ.get("PYTHONPATH")]))
        cmds["baseline"] = (ivr_cmd, {**os.environ, "PYTHONPATH": path})
    rounds = {side: [] for side in cmds}
    sides = list(cmds)
    version = ""
    load = [os.getloadavg()[0]]  # what else the machine was running
    for i in range(args.rounds):
        for side in sides[i % len(sides):] + sides[:i % len(sides)]:
            result = _worker(*cmds[side])
            rounds[side].append(result["times"])
            version = result.get("version", version)
            load.append(os.getloadavg()[0])
        print(f"round {i + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    print(f"torch {torch.__version__}, tensorflow {version}; {args.threads} threads each; "
          f"{args.rounds} alternating rounds of {args.repeat} calls; ivr malloc: "
          f"{'system' if args.system_malloc else 'keeps freed memory'}; {os.cpu_count()} "
          f"CPUs ({cpu_model()}), 1-minute load average {min(load):.1f} to {max(load):.1f}; "
          "medians in ms")
    print_race(rounds)
    if "baseline" in rounds:
        print(f"\nThe baseline build ({args.baseline_ext}), in the same rounds:")
        print_race({"ivr": rounds["baseline"], "tf": rounds["tf"]})
        print("\nThis build / the baseline, median of per-round ratios:")
        pairs = list(zip(rounds["ivr"], rounds["baseline"]))
        for case in rounds["ivr"][0]:
            for layout in rounds["ivr"][0][case]:
                ratios = [statistics.median(a[case][layout][step] / b[case][layout][step]
                                            for a, b in pairs) for step in ("fwd", "fwd+bwd")]
                print(f"  {case} {layout}: fwd {ratios[0]:.2f}, fwd+bwd {ratios[1]:.2f}")


def print_race(rounds: dict) -> None:
    """One row per case and pass: TensorFlow's time, ivr's per layout and the ratio (with its
    range over the rounds)."""
    print("| case | pass | TF ms | ivr NCHW ms | NCHW / TF | ivr NHWC ms | NHWC / TF |")
    print("|---|---|---|---|---|---|---|")
    losing = []
    for case in rounds["tf"][0]:
        for step in ("fwd", "fwd+bwd"):
            tf_runs = [r[case][step] for r in rounds["tf"]]
            tf_ms = statistics.median(tf_runs)
            cells = [case, step, f"{tf_ms:.2f}"]
            for layout in LAYOUTS:
                if layout not in rounds["ivr"][0][case]:
                    cells += ["", ""]
                    continue
                runs = [r[case][layout][step] for r in rounds["ivr"]]
                ratio = statistics.median(runs) / tf_ms
                per_round = [a / b for a, b in zip(runs, tf_runs)]
                cells += [f"{statistics.median(runs):.2f}",
                          f"{ratio:.2f} ({min(per_round):.2f}-{max(per_round):.2f})"]
                if ratio > 1:
                    losing.append(f"{case} {step} {layout} ({ratio:.2f})")
            print("| " + " | ".join(cells) + " |")
    print("\nivr slower than TensorFlow in: " + (", ".join(losing) if losing else "no case"))


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--sections", default="peers,race",
                        help="comma-separated: peers, race (the race is CPU only)")
    parser.add_argument("--repeat", type=int, default=15, help="timed calls per case")
    parser.add_argument("--rounds", type=int, default=5, help="race: alternating rounds")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads of both sides")
    parser.add_argument("--tf-python", help="race: a Python that can import tensorflow")
    parser.add_argument("--system-malloc", action="store_true",
                        help="ivr: leave glibc's malloc at its defaults")
    parser.add_argument("--baseline-ext", metavar="DIR",
                        help="race: also time ivr with the extension built in DIR")
    parser.add_argument("--race-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    import ivr_ext  # noqa: F401  (the compiled ops; `ivr build-ext` installs them)

    torch.set_num_threads(args.threads)
    if not args.system_malloc:
        keep_freed_memory()
    if args.race_worker:
        json.dump({"times": measure_race(args.repeat)}, sys.stdout)
        return
    sections = set(args.sections.split(","))
    if "peers" in sections:
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device "
              f"{args.device}" + (f" ({torch.cuda.get_device_name()})"
                                  if args.device == "cuda" else ""))
        print_peers(measure_peers(args.device, args.repeat), measure_memory(args.device))
    if "race" in sections:
        if args.device != "cpu":
            print("The race against TensorFlow runs on the CPU only.")
        else:
            print()
            race(args)


if __name__ == "__main__":
    main()
