"""``ivr demo``: the whole pipeline on the embedded synthetic dataset, on a CPU.

Generates the dataset (if absent), trains the baseline and the spatial-memory model with the
same small preset (``ivr_core/presets/demo.toml``: same backbone, normalisation, iterations
and learning rate for both), evaluates both on the synthetic test split and compares them,
overall and on the context-dependent classes, and writes an HTML report of both runs
(``report.html``). Interrupted? Run it again: it resumes.

Examples::

    ivr demo                         # writes ivr-demo/{data,baseline,memory}
    ivr demo --models baseline,memory,full   # adds the global module (local + global)
    ivr demo --out /tmp/demo --seed 1
    ivr demo --models memory,full,full-empty,full-shuffled,global   # the global module's controls
    ivr demo --task rooms --out ivr-demo-rooms   # a second context task
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Annotated, Optional

import typer

from ivr_cli.display import err, note, results_table, out as console
from ivr_cli.options import ConfigFiles, Device, Quiet, SetItems, resolve
from ivr_cli.prepare_data import check_image_count, generate_synthetic, print_report
from ivr_cli.prepare_graph import mine
from ivr_core.config import MODEL_TYPES, preset_path
from ivr_core.data import synthetic
from ivr_core.data.ade import SPLITS
from ivr_core.data.dataset import load_prepared, prepared_name
from ivr_core.errors import IvrError
from ivr_core.utils.outputs import output_folder
from ivr_core.graph.knowledge import graph_path
from ivr_core.data.prepare import prepare_ade
from ivr_core.engine.checkpoint import load_checkpoint
from ivr_core.engine.trainer import train as run_train
from ivr_core.models.backbone import RandomInitWarning
from ivr_core.report import write_report
from ivr_core.evaluation.tester import run_calibration, run_test

VISUALIZE = 4  # test images drawn for the report (labels, iterations, memory, attention)
# the global module's control runs: name suffix -> (graph.knowledge, graph.regions)
CONTROLS = {"empty": ("empty", "boxes"), "shuffled": ("shuffled", "boxes"),
            "bare": ("empty", "self")}


def parse_models(models: str) -> dict[str, dict]:
    """``--models`` -> {run name: config shortcuts}. A name is a model type, or ``global`` /
    ``full`` with ``-empty``, ``-shuffled`` or ``-bare``: the controls trained with an empty
    or a shuffled knowledge graph (``graph.knowledge``), or with an empty one and no region
    edges either (``graph.regions = self``)."""
    names = [m.strip() for m in models.split(",") if m.strip()]
    runs = {}
    for name in names:
        kind, _, control = name.partition("-")
        if (kind not in MODEL_TYPES or (control and (kind not in ("global", "full")
                                                     or control not in CONTROLS))):
            runs = {}
            break
        knowledge, regions = CONTROLS[control] if control else (None, None)
        runs[name] = {"model__type": kind, "graph__knowledge": knowledge,
                      "graph__regions": regions}
    if not runs or len(runs) < len(names):
        raise IvrError(f"--models takes distinct names among {', '.join(MODEL_TYPES)}, or "
                       f"global/full with -{' or -'.join(CONTROLS)} (the global module's "
                       f"controls), got '{models}'")
    return runs


def demo(
    out: Annotated[Path, typer.Option(help="Folder for the data and the run folders.")]
    = Path("ivr-demo"),
    seed: Annotated[int, typer.Option(help="Seed of the generated data and of training.")] = 0,
    iters: Annotated[Optional[int], typer.Option(
        help="Training iterations per model [default: the preset's].")] = None,
    images: Annotated[int, typer.Option(help="Synthetic images to generate.")] = 900,
    task: Annotated[str, typer.Option(
        help="Synthetic context task: containers (context from the container a square is "
             "in, or that a plate belongs to) or rooms (from the floor's texture, or the "
             "furniture a knob is on).")] = "containers",
    models: Annotated[str, typer.Option(
        help="Comma-separated models to train and compare: baseline, memory, global, full, "
             "and the controls full-empty, full-shuffled, full-bare (knowledge graph "
             "without edges, or with its edges between random classes, or without edges "
             "and without region edges); the first is the reference of the differences.")]
    = "baseline,memory",
    config: ConfigFiles = None,
    set_: SetItems = None,
    device: Device = None,
    quiet: Quiet = False,
) -> None:
    """Train and compare the baseline and the reasoning models on synthetic data (CPU).

    Example: ivr demo --out ivr-demo
    """
    check_image_count(images)
    output_folder(out, "--out")
    runs = parse_models(models)
    if task not in synthetic.TASKS:
        raise IvrError(f"--task must be one of {', '.join(synthetic.TASKS)}, got '{task}'")
    data_dir = out / "data"
    configs = {name: resolve([preset_path("demo"), *(config or [])], set_,
                             data__dir=str(data_dir), data__min_count=5, train__seed=seed,
                             train__iters=iters, runtime__device=device, **shortcuts)
               for name, shortcuts in runs.items()}  # every config checked before any work
    if not all((data_dir / prepared_name(s, 5)).is_file() for s in SPLITS):
        generate_synthetic(data_dir, images, seed, force=True, workers=None, quiet=quiet,
                           task=task)
        context = synthetic.task_module(task).CONTEXT_CLASSES
        print_report(prepare_ade(data_dir, data_dir, 5, data_dir, SPLITS,
                                 extra={"context_classes": list(context)},
                                 show_progress=not quiet))
    train_split = load_prepared(data_dir, "train", 5)
    if list(train_split.context_classes) != list(synthetic.task_module(task).CONTEXT_CLASSES):
        raise IvrError(f"{data_dir} holds the data of another synthetic task than '{task}'; "
                       "choose another --out")
    if not graph_path(train_split).is_file():
        mine(train_split, next(iter(configs.values())).graph)
    results = {}
    err.print("training from random init (the demo needs no ImageNet weights)")
    for name, cfg in configs.items():
        with warnings.catch_warnings():  # the preset trains from scratch on purpose
            warnings.simplefilter("ignore", RandomInitWarning)
            trained = run_train(cfg, out / name, resume=True, show_progress=not quiet,
                                on_note=note)
        console.print(f"{name}: {trained.iterations} iterations, "
                      f"{trained.seconds:.0f} s this session")
        state = load_checkpoint(trained.checkpoint)
        if cfg.model.type != "baseline":  # the attention calibrated on mval, then mtest
            calibrated = run_calibration(trained.checkpoint, cfg, state, "mval",
                                         show_progress=not quiet)
            console.print(f"{name}: attention calibrated on mval (temperature "
                          f"{calibrated['temperature']:.3g})")
        results[name] = run_test(trained.checkpoint, cfg, state,
                                 out=out / name / "results.json", show_progress=not quiet,
                                 visualize=VISUALIZE)
    console.print(results_table(results, f"ivr demo ({task}, seed {seed}): synthetic test split"))
    names = list(runs)
    ref = results[names[0]]
    for name in names[1:]:
        r = results[name]
        console.print(f"{name} - {names[0]}, per-class AP: overall "
                      f"{r['cls_ap'] - ref['cls_ap']:+.3f}, context-dependent classes "
                      f"{r['context']['cls_ap'] - ref['context']['cls_ap']:+.3f}")
    console.print("results: " + ", ".join(str(out / m / "results.json") for m in names))
    report = write_report([out / m for m in names], out / "report.html",
                          title=f"ivr demo ({task}, seed {seed})")
    console.print(f"report: {report.resolve().as_uri()} ({report.stat().st_size / 1e6:.1f} MB)",
                  highlight=False)
    console.print("the same page for your own runs: ivr report "
                  f"{' '.join(f'runs/{m}' for m in names)} --out report.html", highlight=False)
