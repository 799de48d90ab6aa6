"""``ivr export``: a trained model as a folder to share, read back without any pickle.

The folder holds

- ``calibration.json``: when the run was calibrated (``ivr calibrate``) for this
  checkpoint, its attention calibration, applied on load;
- ``model.safetensors``: the weights only (no optimizer state); for the global and full
  models also the knowledge graph, which they keep as buffers (``global_.kg_*``); metadata
  ``format``, ``model_type``, ``iteration``, ``trained_with`` and ``exported_with`` (ivr
  versions);
- ``config.toml``: the configuration the model was trained with (the ``runtime`` section
  reset to the defaults: it describes the training machine, not the model);
- ``classes.json``: the class names, background first;
- ``knowledge_graph.json`` (global and full models): the graph in the readable form of
  ``ivr prepare-graph``, weights rounded to 6 decimals (the model reads the exact weights
  from ``model.safetensors``);
- ``README.md``: a model card (model, backbone, data, iterations, the run's evaluation
  results when it has them, the ivr version, how to use it).

The folder is written beside its destination under a temporary name and renamed into
place when complete: a crash leaves either no folder or a whole one.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ivr_core import __version__
from ivr_core.config import Config, RuntimeConfig, load_config
from ivr_core.errors import IvrError
from ivr_core.evaluation.calibrate import CALIBRATION, read_calibration
from ivr_core.graph.knowledge import EDGE_TYPES, KnowledgeGraph
from ivr_core.utils.io import write_json, write_text

FORMAT = "ivr-export-1"
WEIGHTS, CONFIG, CLASSES, GRAPH, CARD = ("model.safetensors", "config.toml", "classes.json",
                                         "knowledge_graph.json", "README.md")
_KG = "global_.kg_"  # the knowledge-graph buffers of the global and full models


def is_exported(folder: str | os.PathLike) -> bool:
    return (Path(folder) / WEIGHTS).is_file()


def read_exported(folder: str | os.PathLike) -> dict:
    """The checkpoint-shaped state of an exported folder (``model``, ``classes``,
    ``config``, ``model_type``, ``iteration``, ``ivr_version``, ``path``); safetensors,
    TOML and JSON only, nothing unpickled."""
    folder = Path(folder)
    for name in (WEIGHTS, CONFIG, CLASSES):
        if not (folder / name).is_file():
            raise IvrError(f"{folder} is not a complete exported model: {name} is missing "
                           "(export it again with `ivr export`)")
    try:
        with safe_open(folder / WEIGHTS, framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            weights = {key: f.get_tensor(key) for key in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise IvrError(f"{folder / WEIGHTS} is corrupt or truncated ({type(e).__name__}: "
                       f"{str(e).splitlines()[0][:200]}); export the model again") from None
    if metadata.get("format") != FORMAT:
        raise IvrError(f"{folder / WEIGHTS} was not written by `ivr export` (no '{FORMAT}' "
                       "format tag in its metadata)")
    cfg = load_config(files=[folder / CONFIG])
    try:
        classes = json.loads((folder / CLASSES).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise IvrError(f"cannot read {folder / CLASSES}: {e}") from None
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise IvrError(f"{folder / CLASSES} must hold a JSON list of class names")
    if cfg.model.type != metadata.get("model_type"):
        raise IvrError(f"{folder}: config.toml says model.type {cfg.model.type} but the "
                       f"weights are of a {metadata.get('model_type')} model")
    return {"model": weights, "classes": classes, "config": cfg.to_dict(),
            "model_type": cfg.model.type, "iteration": int(metadata.get("iteration", 0)),
            "ivr_version": metadata.get("trained_with", ""), "path": str(folder)}


def export_model(state: dict, out: str | os.PathLike, force: bool = False) -> Path:
    """Write the model of a checkpoint ``state`` (see :func:`ivr_core.api.read_state`) to
    the folder ``out``; an existing non-empty ``out`` is replaced only with ``force``."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise IvrError(f"--out {out} is a file; give a folder to create")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise IvrError(f"{out} already exists and is not empty; pass --force to replace it "
                       "or choose another --out")
    cfg = dataclasses.replace(load_config(base=state["config"]), runtime=RuntimeConfig())
    tmp = None
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp's 0700 would keep the model from others
        _write_files(tmp, state, cfg, out)
        _replace_folder(tmp, out)
    except OSError as e:  # disk full, quota, permissions
        raise IvrError(f"cannot write the exported model to {out} ({e.strerror or e}); "
                       f"{'the old folder is intact' if out.exists() else 'nothing was written'}"
                       ": free space or choose another --out") from None
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def _write_files(folder: Path, state: dict, cfg: Config, out: Path) -> None:
    weights = {k: v.detach().cpu().contiguous() for k, v in state["model"].items()}
    metadata = {"format": FORMAT, "model_type": cfg.model.type,
                "iteration": str(state.get("iteration", 0)),
                "trained_with": state.get("ivr_version") or "", "exported_with": __version__}
    _save_weights(weights, folder / WEIGHTS, metadata)
    write_text(folder / CONFIG, cfg.to_toml())
    write_json(folder / CLASSES, list(state["classes"]), indent=1)
    # `ivr calibrate` of this run, fitted for this checkpoint (a damaged file: IvrError)
    doc = read_calibration(state["path"], state["iteration"]) if state.get("path") else None
    if doc is not None:
        write_json(folder / CALIBRATION, doc, indent=1)
    graph = knowledge_graph(weights, state["classes"])
    if graph is not None:
        write_json(folder / GRAPH, graph.to_json(), indent=1)
    write_text(folder / CARD, model_card(state, cfg, out, graph))


def _save_weights(weights: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    try:
        save_file(weights, path, metadata=metadata)
    except SafetensorError as e:  # the writer's I/O errors come as its own type
        code = re.search(r"\(os error (\d+)\)", str(e))
        if code is None:
            raise
        raise OSError(int(code.group(1)), os.strerror(int(code.group(1))), str(path)) from None
    _fsync(path)


def knowledge_graph(weights: dict[str, torch.Tensor], classes: list[str]) -> KnowledgeGraph | None:
    """The graph held in the ``global_.kg_*`` buffers, or None for models without one."""
    if _KG + "index" not in weights:
        return None
    graph = KnowledgeGraph(list(classes))
    src, dst = weights[_KG + "index"].tolist()
    for s, d, w, t in zip(src, dst, weights[_KG + "weight"].tolist(),
                          weights[_KG + "type"].tolist()):
        graph.edges[EDGE_TYPES[t]][(s, d)] = w
    return graph


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _replace_folder(tmp: Path, out: Path) -> None:
    """Rename the complete ``tmp`` to ``out``; an old ``out`` is moved aside first and
    removed only once the new one is in place."""
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
        os.replace(out, old / out.name)
    try:
        os.replace(tmp, out)
    except OSError:
        if old is not None:  # put the old one back
            os.replace(old / out.name, out)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    _fsync(out.parent)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on folders
        pass
    finally:
        os.close(fd)


def _results(state: dict) -> tuple[dict | None, Path | None]:
    """The run's ``results.json`` (beside ``checkpoints/``), when there is a readable one."""
    path = Path(state.get("path", ""))
    if path.parent.name != "checkpoints":
        return None, None
    results = path.parent.parent / "results.json"
    try:
        doc = json.loads(results.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None, results
    return (doc, results) if isinstance(doc, dict) else (None, results)


def model_card(state: dict, cfg: Config, out: Path, graph: KnowledgeGraph | None) -> str:
    """The README.md of an exported model."""
    m, d, mem = cfg.model, cfg.data, cfg.memory
    kind = {"baseline": "baseline (ResNet region classifier)",
            "memory": f"memory (local spatial memory, {mem.iterations} iterations)",
            "global": f"global (graph reasoning, {mem.iterations} iterations)",
            "full": f"full (local memory + global graph reasoning, {mem.iterations} "
                    "iterations)"}[m.type]
    data = f"`{d.dataset}`, prepared files in `{d.dir}`, trained on split `{d.train_split}`"
    if d.dataset == "ade":
        data += f" (classes counted >= {d.min_count})"
    rows = [("model type", kind),
            ("backbone", f"{m.backbone}, ResNet C4 layout, {m.norm}, crop {m.crop_size}"),
            ("classes", f"{len(state['classes'])} (`{CLASSES}`, background first)"),
            ("data", data),
            ("image scale", f"shorter side {d.scale} px, longer side at most {d.max_size} px"),
            ("iterations trained", str(state.get("iteration", "unknown"))),
            ("trained with", f"ivr {state.get('ivr_version') or 'unknown'}"),
            ("exported with", f"ivr {__version__}")]
    if graph is not None:
        edges = sum(len(e) for e in graph.edges.values())
        rows.append(("knowledge graph", f"{edges} edges (`{GRAPH}`)"))
    lines = [f"# ivr model: {m.type}, {m.backbone}", "",
             "Region classification with given boxes, after *Iterative Visual Reasoning "
             "Beyond Convolutions* (Chen, Li, Fei-Fei, Gupta, CVPR 2018), trained with ivr.",
             "", "| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows), "",
             "## Results", ""]
    results, path = _results(state)
    keys = ("inst_ap", "inst_ac", "cls_ap", "cls_ac")
    if results is not None and all(isinstance(results.get(k), (int, float)) for k in keys):
        lines += [f"From the run's `results.json` (`ivr test`): split "
                  f"`{results.get('split', '?')}`, {results.get('num_images', '?')} images, "
                  f"checkpoint of iteration {results.get('iteration', '?')}.", "",
                  "| inst AP | inst AC | cls AP | cls AC |", "|---|---|---|---|",
                  "| " + " | ".join(f"{results[k]:.3f}" for k in keys) + " |", ""]
        if results.get("iteration") != state.get("iteration"):
            lines += [f"These results are of another checkpoint than the exported one "
                      f"(iteration {state.get('iteration')}).", ""]
    else:
        lines += ["No evaluation results were found beside the run (`ivr test` writes "
                  "them to `RUN_DIR/results.json`).", ""]
    folder = out.as_posix()
    lines += ["## Use", "", "```bash",
              f"ivr predict photos/ --checkpoint {folder} --boxes boxes.json --out predictions",
              "```", "", "```python", "import ivr_core", "",
              f'model = ivr_core.load("{folder}")',
              'out = model.predict("photo.jpg", [[10, 20, 200, 240]])  # x1 y1 x2 y2, pixels',
              "print(out.labels)", "```", "",
              "## Files", "",
              f"- `{WEIGHTS}`: the weights only (no optimizer state); safetensors, read "
              "without unpickling anything",
              f"- `{CONFIG}`: the configuration the model was trained with (`runtime` reset "
              "to the defaults)",
              f"- `{CLASSES}`: the class names, in the order of the model's outputs"]
    if graph is not None:
        lines.append(f"- `{GRAPH}`: the knowledge graph, readable (the model holds it in "
                     f"`{WEIGHTS}`)")
    return "\n".join(lines) + "\n"
