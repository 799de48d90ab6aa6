"""Region-op benchmark (not a test): compiled ops vs the pure-PyTorch reference vs
torchvision's roi_align, at the model's shapes, measured in one run.

    python bench/ops.py                 # CPU
    python bench/ops.py --device cuda   # GPU, when there is one

Crop: feature map 1 x 1024 x 38 x 50 (NCHW, and channels-last: TensorFlow's NHWC layout),
K in {16, 64, 256} random boxes, crops 7x7 and 14x14; forward, and forward + backward to the
feature map (roi_align has no box gradient). Paste:
K x 512 x 7 x 7 update maps pasted onto 38 x 50 and summed; forward + backward to the maps;
peak extra memory of each variant (CPU: growth of the peak resident set; CUDA: the caching
allocator's peak). Times are medians; ratios are relative to the compiled op.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import statistics
import time

import torch
import torchvision

from ivr_core.ops import inverse_boxes, reference

H, W, FEAT_C, MEM_C = 38, 50, 1024, 512


def _boxes(k: int, device: str):
    """Random boxes of a 600 x 800 image: pixel (x1, y1, x2, y2) and normalised crop boxes."""
    g = torch.Generator().manual_seed(k)
    xy = torch.rand(k, 2, generator=g) * torch.tensor([700.0, 500.0])
    px = torch.cat([xy, xy + 16 + torch.rand(k, 2, generator=g) * 300], 1).clamp(max=799)
    feat = px / 16
    norm = torch.stack([feat[:, 1] / (H - 1), feat[:, 0] / (W - 1),
                        feat[:, 3] / (H - 1), feat[:, 2] / (W - 1)], 1)
    return px.to(device), feat.to(device), norm.to(device)


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _median_ms(fn, device: str, repeat: int) -> float:
    """Median over ``repeat`` calls after a warm-up; slow variants (>100 ms) get 3 calls."""
    times = []
    for i in range(repeat + 2):
        _sync(device)
        t = time.perf_counter()
        fn()
        _sync(device)
        times.append((time.perf_counter() - t) * 1e3)
        if i == 1 and times[-1] > 100:
            repeat = 3
        if len(times) >= repeat + 2:
            break
    return statistics.median(times[2:])


def crop_variants(k: int, crop: int, device: str) -> dict:
    _, feat, norm = _boxes(k, device)
    image = torch.randn(1, FEAT_C, H, W, device=device, requires_grad=True)
    ind = torch.zeros(k, dtype=torch.long, device=device)
    rois = torch.cat([torch.zeros(k, 1, device=device), feat], 1)  # (K, 5) in feature pixels
    nhwc = image.detach().contiguous(memory_format=torch.channels_last).requires_grad_()
    variants = {
        "compiled": lambda: torch.ops.ivr.crop_and_resize(image, norm, ind, crop, crop, 0.0),
        "compiled, channels-last": lambda: torch.ops.ivr.crop_and_resize(nhwc, norm, ind, crop,
                                                                         crop, 0.0),
        "reference": lambda: reference.crop_and_resize(image, norm, ind, (crop, crop)),
    }
    for ratio in (1, 2):
        variants[f"roi_align s{ratio}"] = (lambda r=ratio: torchvision.ops.roi_align(
            image, rois, (crop, crop), 1.0, sampling_ratio=r, aligned=True))
    return variants, {"compiled, channels-last": nhwc}, image


def paste_variants(k: int, device: str) -> dict:
    px, _, _ = _boxes(k, device)
    inv = inverse_boxes(px, 16, H, W)
    maps = torch.randn(k, MEM_C, 7, 7, device=device, requires_grad=True)
    return {
        "compiled": lambda: torch.ops.ivr.paste_and_sum(maps, inv, H, W),
        "reference (separable)": lambda: reference.paste_and_sum(maps, inv, (H, W)),
        "materialise + sum": lambda: reference.paste_and_sum_reference(maps, inv, (H, W)),
    }, maps


def measure_times(device: str, repeat: int) -> list[dict]:
    rows = []
    for crop in (7, 14):
        for k in (16, 64, 256):
            variants, inputs, image = crop_variants(k, crop, device)
            for name, fn in variants.items():
                x = inputs.get(name, image)
                fwd = _median_ms(lambda: fn(), device, repeat)
                both = _median_ms(lambda: torch.autograd.grad(fn().sum(), x), device, repeat)
                rows.append({"op": f"crop {crop}x{crop}", "K": k, "impl": name, "fwd": fwd,
                             "fwd+bwd": both})
    for k in (16, 64, 256):
        variants, maps = paste_variants(k, device)
        for name, fn in variants.items():
            fwd = _median_ms(lambda: fn(), device, repeat)
            both = _median_ms(lambda: torch.autograd.grad(fn().sum(), maps), device, repeat)
            rows.append({"op": "paste 7x7 -> 38x50", "K": k, "impl": name, "fwd": fwd,
                         "fwd+bwd": both})
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
    for k in (16, 64, 256):
        variants, maps = paste_variants(k, device)
        for name, fn in variants.items():
            mb = peak_extra_mb(lambda: torch.autograd.grad(fn().sum(), maps), device)
            rows.append({"K": k, "impl": name, "MB": mb})
    return rows


def print_tables(times: list[dict], memory: list[dict]) -> None:
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    import ivr_ext  # noqa: F401  (the compiled ops; `ivr build-ext` installs them)

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}"
          + (f" ({torch.cuda.get_device_name()})" if args.device == "cuda" else ""))
    print_tables(measure_times(args.device, args.repeat), measure_memory(args.device))


if __name__ == "__main__":
    main()
