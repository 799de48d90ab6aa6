"""Training-step benchmark (not a test): seconds per step, peak memory, FLOPs and achieved
GFLOP/s of the baseline and the memory model, next to a plain fp32 matmul measured in the
same run.

    python bench/train_step.py                      # CPU, both scales
    python bench/train_step.py --scales 600/1000    # the authors' scale only
    python bench/train_step.py --device cuda --amp bf16
    python bench/train_step.py --models full --set model.backbone=resnet18   # any config key
    python bench/train_step.py --scales 256/400 --compile   # + each model with runtime.compile

ResNet-50 from random init with the authors' settings (frozen batch norm, conv1 + layer1
frozen, SGD with momentum, weight decay), the memory model with ITER 3, 512 memory channels
and FC 4096; a fixed sequence of synthetic 4:3 images with 13 regions each (boxes cover
the usual range of sizes); one image per step. The global and full models get a random
knowledge graph (GRAPH_EDGES part-of edges per class and their reverses). Peak memory: CPU,
the process's peak resident set while the model is built and trained (VmHWM, reset before
each model, so it includes the Python and library baseline); CUDA, max_memory_allocated. With ``--compile``
each model is run again with ``runtime.compile = true`` (its dense parts under
``torch.compile``, compiled during the first step, whose time is printed; FLOPs counted on
the eager first step).
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import statistics
import time
import warnings
from collections.abc import Sequence

import torch
from torch.utils.flop_counter import FlopCounterMode

from ivr_core.config import load_config
from ivr_core.engine.optim import make_optimizer
from ivr_core.engine.runtime import autocast, compile_dense_parts, grad_scaler, setup
from ivr_core.graph.knowledge import KnowledgeGraph
from ivr_core.models import build_model
from ivr_core.models.backbone import RandomInitWarning

REGIONS, NUM_CLASSES, GRAPH_EDGES = 13, 1485, 4


def inputs(scale: int, max_size: int, count: int, device: str):
    """``count`` fixed (image, boxes, classes): 3:4 images resized like the data loader."""
    g = torch.Generator().manual_seed(0)
    h, w = scale, min(round(scale * 4 / 3), max_size)
    out = []
    for _ in range(count):
        image = torch.randn(1, 3, h, w, generator=g)
        wh = torch.rand(REGIONS, 2, generator=g) * torch.tensor([w * 0.5, h * 0.5]) + 8
        xy = torch.rand(REGIONS, 2, generator=g) * (torch.tensor([w, h]) - wh)
        boxes = torch.cat([xy, xy + wh], 1)
        classes = torch.randint(1, NUM_CLASSES, (REGIONS,), generator=g)
        out.append((image.to(device), boxes.to(device), classes.to(device)))
    return out


def random_graph(num_classes: int, seed: int = 0) -> KnowledgeGraph:
    """GRAPH_EDGES random part_of edges per class, with their has_part reverses."""
    g = torch.Generator().manual_seed(seed)
    graph = KnowledgeGraph([f"class{i}" for i in range(num_classes)])
    for src in range(num_classes):
        for dst in torch.randint(0, num_classes, (GRAPH_EDGES,), generator=g).tolist():
            graph.add("part_of", src, dst)
            graph.add("has_part", dst, src)
    return graph.normalised()


def matmul_gflops(device: str, n: int = 2048) -> float:
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    for _ in range(3):
        a @ b
    _sync(device)
    t = time.perf_counter()
    reps = 10
    for _ in range(reps):
        a @ b
    _sync(device)
    return 2 * n ** 3 * reps / (time.perf_counter() - t) / 1e9


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _peak_mb(device: str) -> float:
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024


def _reset_peak(device: str) -> None:
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        return
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # VmHWM restarts from the current resident set


def bench(model_type: str, scale: int, max_size: int, device: str, steps: int,
          amp: str, channels_last: bool, overrides: Sequence[str] = (),
          compile_: bool = False) -> dict:
    """One model's training step: {"s": median s/step, "gflop", "gflops", "peak_mb",
    "first_s"}. ``overrides`` are ``section.key=value`` items applied last."""
    _reset_peak(device)
    cfg = load_config(overrides=[f"model.type={model_type}", "model.weights=none",
                                 f"runtime.amp={amp}", f"runtime.device={device}",
                                 f"runtime.compile={str(compile_).lower()}", *overrides])
    setup(cfg.runtime)  # what `ivr train` does: threads, region ops, malloc settings
    graph = random_graph(NUM_CLASSES) if model_type in ("global", "full") else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomInitWarning)
        model = build_model(cfg, NUM_CLASSES, graph=graph).to(device).train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, cfg.train)
    scaler = grad_scaler(cfg.runtime, torch.device(device))
    data = inputs(scale, max_size, 4, device)

    def step(image, boxes, classes):
        if channels_last:
            image = image.contiguous(memory_format=torch.channels_last)
        with autocast(cfg.runtime, torch.device(device)):
            loss = sum(model.losses(model(image, boxes), classes).values())
        optimizer.zero_grad(set_to_none=False)  # as ivr train does
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    with FlopCounterMode(display=False) as counter:
        step(*data[0])
    flops = counter.get_total_flops()
    compile_dense_parts(model, cfg.runtime)  # after the count: compiled kernels are not counted
    times = []
    for i in range(steps + 2):
        _sync(device)
        t = time.perf_counter()
        step(*data[i % len(data)])
        _sync(device)
        times.append(time.perf_counter() - t)
    seconds = statistics.median(times[2:])
    return {"s": seconds, "gflop": flops / 1e9, "gflops": flops / 1e9 / seconds,
            "peak_mb": _peak_mb(device), "first_s": times[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--scales", default="600/1000,256/400",
                        help="comma-separated SCALE/MAX_SIZE pairs")
    parser.add_argument("--models", default="baseline,memory")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--amp", default="none", choices=["none", "bf16", "fp16"])
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="config override, as `ivr train --set` (repeatable)")
    parser.add_argument("--compile", action="store_true",
                        help="also run each model with runtime.compile = true")
    args = parser.parse_args()
    ref = matmul_gflops(args.device)
    name = torch.cuda.get_device_name() if args.device == "cuda" else \
        f"{torch.get_num_threads()} threads"
    print(f"torch {torch.__version__}, {args.device} ({name}), amp {args.amp}, "
          f"channels_last {args.channels_last}; fp32 matmul 2048^3: {ref:.0f} GFLOP/s\n")
    notes: list[str] = []
    print("| model | scale | s/step | GFLOP/step | GFLOP/s | of matmul | peak MB |")
    print("|---|---|---|---|---|---|---|")
    for pair in args.scales.split(","):
        scale, max_size = (int(v) for v in pair.split("/"))
        for model_type in args.models.split(","):
            for compiled in (False, True) if args.compile else (False,):
                r = bench(model_type, scale, max_size, args.device, args.steps, args.amp,
                          args.channels_last, args.set, compiled)
                name = f"{model_type}, compiled" if compiled else model_type
                print(f"| {name} | {scale}/{max_size} | {r['s']:.2f} | {r['gflop']:.0f} | "
                      f"{r['gflops']:.0f} | {r['gflops'] / ref:.0%} | {r['peak_mb']:.0f} |",
                      flush=True)
                if compiled:
                    notes.append(f"{model_type} {scale}/{max_size}: compiled {eager_s / r['s']:.2f}x "
                                 f"the eager step's speed; first step (compiling) "
                                 f"{r['first_s']:.0f} s")
                eager_s = r["s"]
    for note in notes:
        print(note)


if __name__ == "__main__":
    main()
