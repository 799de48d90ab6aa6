"""Training-step time of two checkouts of ivr, raced in one run (not a test).

    python bench/step_ab.py --a /path/to/old/checkout --b . --model full --data ivr-demo/data

Trains ``--steps`` iterations of ``--model`` with the demo preset on a prepared synthetic
dataset, alternately with the code of checkout A and of checkout B (each in its own process,
``--rounds`` rounds, A and B taking turns so that a busy machine slows both alike), and
prints the median seconds per step of each (warm-up steps excluded) and their ratio B / A.
Both use the same thread count (``--threads``) and the compiled ops of the running venv.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

WORKER = r"""
import json, sys, time, warnings
import torch
warnings.simplefilter("ignore")
from ivr_core.config import load_config, preset_path
from ivr_core.data.dataset import RegionDataset, load_prepared
from ivr_core.graph.knowledge import load_graph
from ivr_core.engine.optim import make_optimizer
from ivr_core.models import build_model
data, model_type, steps, warmup, threads = sys.argv[1:6]
torch.set_num_threads(int(threads))
cfg = load_config([preset_path("demo")], [f"model.type={model_type}", f"data.dir={data}",
                                          "data.min_count=5"])
split = load_prepared(cfg.data.dir, "train", 5)
dataset = RegionDataset(split, cfg.data.scale, cfg.data.max_size, flip=True)
graph = load_graph(split) if model_type in ("global", "full") else None
torch.manual_seed(0)
model = build_model(cfg, split.num_classes, graph=graph).train()
opt = make_optimizer(model, cfg.train)
times = []
for i in range(int(steps)):
    sample = dataset[i % len(dataset)]
    t = time.perf_counter()
    opt.zero_grad(set_to_none=False)
    out = model(sample["image"][None], sample["boxes"])
    sum(model.losses(out, sample["classes"]).values()).backward()
    opt.step()
    times.append(time.perf_counter() - t)
print(json.dumps(times[int(warmup):]))
"""


def run(checkout: Path, args) -> list[float]:
    env = {**os.environ, "PYTHONPATH": str(checkout.resolve()), "OMP_NUM_THREADS": str(args.threads)}
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(WORKER)
    try:
        out = subprocess.run([sys.executable, f.name, str(args.data), args.model, str(args.steps),
                              str(args.warmup), str(args.threads)], env=env, check=True,
                             capture_output=True, text=True, cwd=tempfile.gettempdir())
    finally:
        os.unlink(f.name)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--a", type=Path, required=True, help="checkout A (the reference)")
    p.add_argument("--b", type=Path, default=Path("."), help="checkout B (the change)")
    p.add_argument("--data", type=Path, required=True, help="prepared synthetic data folder")
    p.add_argument("--model", default="full")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    times = {"A": [], "B": []}
    for r in range(args.rounds):
        for name, checkout in (("A", args.a), ("B", args.b)) if r % 2 == 0 else \
                (("B", args.b), ("A", args.a)):
            times[name] += run(checkout, args)
            print(f"round {r + 1}: {name} median so far "
                  f"{statistics.median(times[name]):.3f} s/step", flush=True)
    a, b = statistics.median(times["A"]), statistics.median(times["B"])
    print(f"{args.model}, demo preset, {args.threads} threads: A {a:.3f} s/step, "
          f"B {b:.3f} s/step, B / A = {b / a:.2f} ({len(times['A'])} steps each)")


if __name__ == "__main__":
    main()
