"""``ivr test``: score every region of a split with a checkpoint and evaluate (docs/design.md,
"Metrics")."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from ivr_core.config import Config
from ivr_core.data.dataset import PreparedSplit, RegionDataset, load_prepared
from ivr_core.engine import distributed
from ivr_core.engine.checkpoint import check_compatible
from ivr_core.engine.runtime import compile_dense_parts
from ivr_core.errors import IvrError
from ivr_core.evaluation.calibrate import (apply_calibration, attended, fit_attention,
                                          guard_best_candidate, write_calibration)
from ivr_core.evaluation.metrics import HEADLINE_KEYS, evaluate
from ivr_core.models import model_from_state
from ivr_core.models.heads import candidate_logits, candidate_names
from ivr_core.models.backbone import FEATURE_STRIDE
from ivr_core.utils.files import UnreadableFile
from ivr_core.utils.io import write_json
from ivr_core.utils.outputs import writing
from ivr_core.utils.progress import progress_bar
from ivr_core.visualization import plot_iterations, save_figures, softmax


def kept_regions(count: int, index: int, drop: float, seed: int = 0) -> torch.Tensor | None:
    """The regions of image ``index`` left in the reasoning input when a fraction ``drop``
    of them is removed at random (the same ones in every run and process), or None."""
    if drop <= 0:
        return None
    g = torch.Generator().manual_seed(seed * 1_000_003 + index)
    keep = torch.ones(count, dtype=torch.bool)
    keep[torch.randperm(count, generator=g)[:round(drop * count)]] = False
    return keep


@torch.no_grad()
def predict_split(model: torch.nn.Module, dataset: RegionDataset, device: torch.device,
                  workers: int = 0, show_progress: bool = True,
                  world: distributed.World | None = None,
                  drop_regions: float = 0.0) -> dict[str, np.ndarray]:
    """Class probabilities of every region: ``final`` (N, C), ``iterations`` (I, N, C),
    ``modules`` ({name: (I, N, C)} for models with several), ``gt`` (N,) and ``image`` (N,)
    (index of the region's image in the split), and ``skipped``: the messages of images that
    could not be read. ``drop_regions``: the fraction of each image's regions left out of
    the reasoning (still scored).

    With several processes (``world``) each scores every size-th image and the results are
    gathered, in the dataset's order, so every image counts exactly once."""
    world = world or distributed.World()
    model.eval()
    mine = Subset(dataset, range(world.rank, len(dataset), world.size))
    loader = DataLoader(mine, batch_size=None, num_workers=workers)
    final, iterations, modules, gt, image, skipped, attention = [], [], [], [], [], [], []
    module_names: list[str] = []
    probs = lambda xs: torch.stack([torch.softmax(x.float(), 1) for x in xs]).cpu()  # noqa: E731
    for sample in progress_bar(loader, len(mine), "test", enabled=show_progress and world.main):
        if "error" in sample:
            skipped.append(sample["error"])
            continue
        keep = kept_regions(len(sample["classes"]), sample["index"], drop_regions)
        out = model(sample["image"].to(device)[None], sample["boxes"].to(device),
                    None if keep is None else keep.to(device))
        final.append(torch.softmax(out["final"].float(), 1).cpu())
        iterations.append(probs(out["iterations"]))
        module_names = list(out.get("modules", {}))
        if len(module_names) > 1:  # a single chain is ``iterations`` itself
            modules.append({k: probs(v) for k, v in out["modules"].items()})
        if "attention" in out:
            attention.append(out["attention"].float().cpu())
        gt.append(sample["classes"])
        image.append(torch.full_like(sample["classes"], sample["index"]))
    parts = world.gather((final, iterations, modules, gt, image, skipped, attention,
                          module_names))
    final, iterations, modules, gt, image, skipped, attention = (
        [x for p in parts for x in p[i]] for i in range(7))
    module_names = next((p[7] for p in parts if p[7]), [])
    if not final:
        raise IvrError(f"{dataset.split.path} has no image with regions to evaluate")
    order = np.argsort(np.array([int(x[0]) for x in image]), kind="stable")  # dataset order
    pick = lambda xs: [xs[i] for i in order]  # noqa: E731
    names = module_names if modules else []
    return {"final": torch.cat(pick(final)).numpy(),
            "iterations": torch.cat(pick(iterations), 1).numpy(),
            "modules": {k: torch.cat(pick([m[k] for m in modules]), 1).numpy() for k in names},
            "module_names": module_names,
            "attention": torch.cat(pick(attention)).numpy() if attention else None,
            "gt": torch.cat(pick(gt)).numpy(), "image": torch.cat(pick(image)).numpy(),
            "skipped": skipped}


def _named(metrics: dict, classes: list[str]) -> dict:
    metrics = dict(metrics)
    metrics["per_class"] = {classes[int(k)]: v for k, v in metrics["per_class"].items()}
    return metrics


def _headline(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k != "per_class"}


def candidates(pred: dict) -> dict[str, np.ndarray]:
    """The probabilities (N, C) of every candidate the attention weighs, by name, in the
    attention's order (empty for a model with a single prediction)."""
    if len(pred["iterations"]) < 2 and not pred.get("modules"):
        return {}
    chains = pred.get("modules") or {(pred.get("module_names") or ["local"])[0]:
                                     list(pred["iterations"])}
    return dict(zip(candidate_names(chains), candidate_logits(chains)))


def _log(p: np.ndarray) -> np.ndarray:
    """log of probabilities, zeros floored at 1e-30 (finite in every mixture)."""
    return np.log(np.maximum(p, 1e-30))


def compare_candidates(pred: dict, cands: dict[str, np.ndarray],
                       classes: list[int] | None = None) -> dict:
    """Each candidate's headline metrics, the best single candidate per metric, the oracle
    (for each region the candidate giving its true class the highest probability) and the
    uniform attention's answer (the control: every candidate weighed alike, the softmax of
    the mean log-probability, which the attended logits become at equal weights)."""
    gt = pred["gt"]
    per = {name: _headline(evaluate(p, gt, classes=classes)) for name, p in cands.items()}
    rows = np.arange(len(gt))
    oracle, best_true = next(iter(cands.values())).copy(), np.full(len(gt), -1.0)
    for p in cands.values():
        better = p[rows, gt] > best_true
        oracle[better], best_true[better] = p[better], p[rows, gt][better]
    best = {}
    for key in HEADLINE_KEYS:
        name = max(per, key=lambda n: per[n][key])
        best[key] = {"candidate": name, "value": per[name][key]}
    log_probs = _log(np.stack(list(cands.values()), 1))  # (R, N, C)
    uniform = attended(log_probs, np.zeros(log_probs.shape[:2]), 1.0, None)  # equal weights
    return {"candidates": per, "best_candidate": best,
            "oracle": _headline(evaluate(oracle, gt, classes=classes)),
            "uniform_attention": _headline(evaluate(uniform, gt, classes=classes))}


def summarize(pred: dict[str, np.ndarray], split: PreparedSplit) -> dict:
    """Metrics of the final output, of each iteration, of every candidate of the attention
    (with the best one and the oracle) and, when the split defines them, of the
    context-dependent classes."""
    classes = split.classes
    results = _named(evaluate(pred["final"], pred["gt"]), classes)
    results["iterations"] = [_named(evaluate(p, pred["gt"]), classes) for p in pred["iterations"]]
    if pred.get("modules"):  # global and full models: every module at every iteration
        results["modules"] = {name: [_headline(evaluate(p, pred["gt"])) for p in chain]
                              for name, chain in pred["modules"].items()}
    cands = candidates(pred)
    if cands:
        results.update(compare_candidates(pred, cands))
        if pred.get("attention") is not None:
            results["attention_mean"] = dict(zip(cands, pred["attention"].mean(0).tolist()))
    context_ids = [classes.index(c) for c in split.context_classes if c in classes]
    if context_ids:
        context = _named(evaluate(pred["final"], pred["gt"], classes=context_ids), classes)
        context["classes"] = [classes[i] for i in context_ids]
        context["iterations"] = [_named(evaluate(p, pred["gt"], classes=context_ids), classes)
                                 for p in pred["iterations"]]
        if cands:
            context.update(compare_candidates(pred, cands, context_ids))
        results["context"] = context
    return results


def _to_cpu(value):
    if torch.is_tensor(value):
        return value.detach().float().cpu()
    if isinstance(value, (list, tuple)):
        return [_to_cpu(x) for x in value]
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    return value


@torch.no_grad()
def visualize_split(model: torch.nn.Module, dataset: RegionDataset, device: torch.device,
                    out_dir: str | Path, count: int) -> list[Path]:
    """Run ``model`` again on the first ``count`` images of ``dataset`` (those with regions)
    and save their figures (:func:`ivr_core.visualization.save_figures`) into ``out_dir``
    as ``<image stem>_{labels,iterations,memory,attention}.png``, drawn on the image as
    read from disk. Returns the written paths."""
    model.eval()
    split, written, stems = dataset.split, [], set()
    for item in range(min(count, len(dataset))):
        sample = dataset[item]
        if "error" in sample:  # unreadable: already listed under skipped_images
            continue
        record = split.images[sample["index"]]
        try:
            image = dataset.read(sample["index"])
        except UnreadableFile:  # changed since it was read a moment ago: no figure
            continue
        out = model(sample["image"].to(device)[None], sample["boxes"].to(device))
        outputs = {key: _to_cpu(value) for key, value in out.items()}
        stem = Path(record["image"]).stem
        if stem in stems:  # two images with one name in different folders
            stem = f"{stem}_{sample['index']}"
        stems.add(stem)
        boxes = sample["boxes"] / sample["scale"]
        written += save_figures(out_dir, stem, image, boxes, outputs, split.classes,
                                sample["classes"], cell_size=FEATURE_STRIDE / sample["scale"])
        final = softmax(outputs["final"])
        for name, chain in outputs.get("modules", {}).items():
            if len(outputs["modules"]) > 1:  # one row of panels per module (full model)
                written.append(plot_iterations(
                    Path(out_dir) / f"{stem}_{name}_iterations.png", image, boxes,
                    [softmax(x) for x in chain], final, split.classes, sample["classes"]))
    return written


def results_path(checkpoint: str | Path, drop_regions: float = 0.0) -> Path:
    """Where ``ivr test`` writes by default: ``results.json`` (``results_drop<P>.json``
    with regions dropped) in the checkpoint's run folder."""
    name = f"results_drop{drop_regions}.json" if drop_regions else "results.json"
    return Path(checkpoint).resolve().parent.parent / name


def _model_and_split(checkpoint: str | Path, cfg: Config, state: dict, split_name: str):
    """(model, split, dataset, device, world) of a checkpoint to evaluate on a split."""
    device, world = distributed.start(cfg.runtime)
    split = load_prepared(cfg.data.dir, split_name, cfg.data.min_count, cfg.data.root,
                          cfg.data.dataset)
    check_compatible(state, cfg.model.type, split.classes, str(checkpoint))
    model = compile_dense_parts(model_from_state(cfg, state).to(device), cfg.runtime)
    dataset = RegionDataset(split, cfg.data.scale, cfg.data.max_size, flip=False,
                           max_pixels=cfg.data.max_pixels)
    return model, split, dataset, device, world


def run_calibration(checkpoint: str | Path, cfg: Config, state: dict, split_name: str = "mval",
                    show_progress: bool = True) -> dict:
    """Fit the attention's temperature and per-candidate offsets on ``split_name``
    (:mod:`ivr_core.evaluation.calibrate`) and write them beside the run's checkpoints;
    returns the calibration with the split's metrics before and after."""
    model, split, dataset, device, world = _model_and_split(checkpoint, cfg, state, split_name)
    if not hasattr(model, "calibrate"):
        raise IvrError(f"{checkpoint} holds a {state['model_type']} model: it has no attention "
                       "to calibrate")
    model.calibrate(1.0, None)  # the attention as trained
    pred = predict_split(model, dataset, device, cfg.data.workers, show_progress, world)
    cands = candidates(pred)
    log_probs = _log(np.stack(list(cands.values()), 1))  # (R, N, C)
    log_attention = _log(pred["attention"])
    temperature, offset = fit_attention(log_probs, log_attention, pred["gt"])
    offset, guard = guard_best_candidate(log_probs, log_attention, pred["gt"], temperature,
                                         offset)
    if guard is not None:
        guard["candidate"] = list(cands)[guard["candidate"]]
    after = attended(log_probs, log_attention, temperature, offset)
    doc = {"iteration": state["iteration"], "split": split_name, "temperature": temperature,
           "offset": dict(zip(cands, offset.tolist())), "guard": guard,
           "before": _headline(evaluate(pred["final"], pred["gt"])),
           "after": _headline(evaluate(after, pred["gt"])),
           **compare_candidates(pred, cands)}
    doc["path"] = str(write_calibration(checkpoint, doc))
    return doc


def run_test(checkpoint: str | Path, cfg: Config, state: dict, split_name: str | None = None,
             out: str | Path | None = None, show_progress: bool = True,
             visualize: int = 0, drop_regions: float = 0.0, write: bool = True) -> dict:
    """Evaluate ``checkpoint`` on ``split_name`` (default: ``data.test_split``); writes
    ``results.json`` to ``out`` (default: beside the checkpoint's run folder).

    ``visualize`` N > 0 also saves figures of the first N test images into
    ``visualizations/`` beside results.json (see :func:`visualize_split`) and lists them,
    relative to that folder, under ``"visualizations"`` in results.json.
    ``drop_regions`` P leaves a random fraction P of each image's regions out of the
    reasoning input (they are still scored), for robustness studies."""
    if visualize < 0:
        raise IvrError(f"visualize must be >= 0, not {visualize}")
    split_name = split_name or cfg.data.test_split
    model, split, dataset, device, world = _model_and_split(checkpoint, cfg, state, split_name)
    calibration = apply_calibration(model, checkpoint, state["iteration"])
    pred = predict_split(model, dataset, device, cfg.data.workers, show_progress, world,
                         drop_regions)
    if not world.main:
        return {}
    results = summarize(pred, split)
    results["attention_calibration"] = calibration
    results.update({"checkpoint": str(checkpoint), "iteration": state["iteration"],
                    "model_type": state["model_type"], "split": split_name,
                    "num_images": len(dataset) - len(pred["skipped"]),
                    "drop_regions": drop_regions,
                    "skipped_images": pred["skipped"]})
    out = Path(out) if out else results_path(checkpoint)
    if visualize:
        with writing(out.parent / "visualizations", "free space or choose another --out"):
            figures = visualize_split(model, dataset, device, out.parent / "visualizations",
                                      visualize)
        results["visualizations"] = [p.relative_to(out.parent).as_posix() for p in figures]
    if write:
        with writing(out, "free space or choose another --out"):
            write_json(out, results, indent=1)
        results["path"] = str(out)
    return results
