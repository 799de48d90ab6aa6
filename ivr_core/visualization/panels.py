"""Figures of one image and a model's outputs, written as PNG files (atomically).

* :func:`plot_labels`: predicted labels (wrong ones highlighted) beside the true labels;
* :func:`plot_iterations`: the labels at iteration 0, 1, ... and the final output side by
  side, the regions whose label changed since the previous panel highlighted;
* :func:`plot_memory`: per iteration, the memory's per-cell L2 norm as a heat map and its
  top-3 principal components as RGB, upsampled and overlaid on the image (memory model);
* :func:`plot_attention`: the attention of each region over the iterations (memory model);
* :func:`save_figures`: all of those that apply to one model output.

Image panels are composed with OpenCV at a fixed layout (see :func:`panel_size`); the
attention chart uses matplotlib's Agg canvas directly (pyplot is never imported, no window
opens). Probabilities are ``(K, C)`` arrays with column 0 the background, which is never
predicted (the convention of :mod:`ivr_core.evaluation.metrics`).
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from ivr_core.utils.figures import literal_text
from ivr_core.utils.io import atomic_open
from ivr_core.visualization.draw import FONT, draw_boxes

__all__ = ["changed_regions", "panel_size", "plot_attention", "plot_iterations",
           "plot_labels", "plot_memory", "predicted_classes", "save_figures", "softmax",
           "write_png"]

MAX_WIDTH = 1600  # px: no figure is wider
MIN_PANEL_WIDTH = 512  # px: small images are enlarged to this so labels stay readable
MAX_PANEL_HEIGHT = 900  # px
MAX_COLUMNS = 4  # image panels per row before wrapping (iterations figure)
GAP = 8  # px between panels and around them
TITLE_HEIGHT = 28  # px of title bar above each panel
OVERLAY_ALPHA = 0.6  # weight of the memory maps over the (grey) image
ATTENTION_DPI = 100
ATTENTION_WIDTH_IN = 7.0  # 700 px


# --- numbers ------------------------------------------------------------------------------

def _numpy(x) -> np.ndarray:
    """A float numpy copy of an array or a torch tensor (any device, any dtype)."""
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float32)


def softmax(logits) -> np.ndarray:
    """Row-wise softmax of ``(K, C)`` logits (numpy or torch), as float32 numpy."""
    z = _numpy(logits)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def predicted_classes(probs) -> np.ndarray:
    """``(K,)`` argmax over the classes ``1..C-1`` (background never predicted; with a single
    column, 0). Ties go to the lowest index, as in the metrics."""
    p = _numpy(probs)
    if p.shape[1] < 2:
        return np.zeros(len(p), dtype=np.int64)
    return np.argmax(p[:, 1:], axis=1).astype(np.int64) + 1


def changed_regions(previous, current) -> np.ndarray:
    """``(K,)`` bool: the regions whose predicted class differs between two ``(K, C)``
    score arrays (probabilities or logits: only the argmax matters)."""
    return predicted_classes(previous) != predicted_classes(current)


# --- composing panels ---------------------------------------------------------------------

def panel_size(height: int, width: int, columns: int) -> tuple[int, int]:
    """``(height, width)`` of one image panel when ``columns`` panels share a row: the image
    enlarged to at least :data:`MIN_PANEL_WIDTH` wide, shrunk to fit the row in
    :data:`MAX_WIDTH` and to at most :data:`MAX_PANEL_HEIGHT` high, aspect kept. A figure of
    ``rows x columns`` panels is ``columns * w + (columns + 1) * GAP`` wide and
    ``rows * (h + TITLE_HEIGHT) + (rows + 1) * GAP`` high."""
    columns = max(int(columns), 1)
    room = (MAX_WIDTH - (columns + 1) * GAP) // columns
    factor = min(max(width, MIN_PANEL_WIDTH), room) / width
    factor = min(factor, MAX_PANEL_HEIGHT / height)
    return max(1, int(round(height * factor))), max(1, int(round(width * factor)))


def _resize(image: np.ndarray, columns: int) -> tuple[np.ndarray, float, float]:
    """The image at panel size and the x / y factors from image pixels to panel pixels."""
    h, w = image.shape[:2]
    ph, pw = panel_size(h, w, columns)
    interp = cv2.INTER_AREA if pw < w else cv2.INTER_LINEAR
    return cv2.resize(image, (pw, ph), interpolation=interp), pw / w, ph / h


def _scale_boxes(boxes, fx: float, fy: float) -> np.ndarray:
    """Inclusive pixel boxes of the image -> inclusive pixel boxes of the resized image."""
    b = _numpy(boxes).reshape(-1, 4).astype(np.float64)
    return np.stack([b[:, 0] * fx, b[:, 1] * fy, (b[:, 2] + 1) * fx - 1,
                     (b[:, 3] + 1) * fy - 1], axis=1)


def _title(panel: np.ndarray, title: str) -> np.ndarray:
    bar = np.full((TITLE_HEIGHT, panel.shape[1], 3), 255, np.uint8)
    text = title.encode("ascii", "replace").decode("ascii")
    scale = 0.5
    while cv2.getTextSize(text, FONT, scale, 1)[0][0] > panel.shape[1] - 8 and scale > 0.3:
        scale -= 0.05
    (_, th), _ = cv2.getTextSize(text, FONT, scale, 1)
    cv2.putText(bar, text, (4, (TITLE_HEIGHT + th) // 2), FONT, scale, (0, 0, 0), 1,
                cv2.LINE_AA)
    return np.concatenate([bar, panel], axis=0)


def _grid(panels: Sequence[tuple[str, np.ndarray]], columns: int) -> np.ndarray:
    """Equal-sized panels with their titles in rows of ``columns``, on white."""
    ph, pw = panels[0][1].shape[:2]
    rows = math.ceil(len(panels) / columns)
    columns = min(columns, len(panels))
    canvas = np.full((rows * (ph + TITLE_HEIGHT) + (rows + 1) * GAP,
                      columns * pw + (columns + 1) * GAP, 3), 255, np.uint8)
    for i, (title, panel) in enumerate(panels):
        r, c = divmod(i, columns)
        y, x = GAP + r * (ph + TITLE_HEIGHT + GAP), GAP + c * (pw + GAP)
        canvas[y:y + ph + TITLE_HEIGHT, x:x + pw] = _title(panel, title)
    return canvas


def write_image(path: str | os.PathLike, image_bgr: np.ndarray) -> Path:
    """Encode ``image_bgr`` in the format of the path's suffix (jpg, png, bmp, webp) and
    write it atomically; returns the path."""
    path = Path(path)
    ok, data = cv2.imencode(path.suffix.lower() or ".png", image_bgr)
    if not ok:
        raise ValueError(f"cannot encode a {image_bgr.dtype} {image_bgr.shape} image as {path}")
    with atomic_open(path, "wb") as f:
        f.write(data.tobytes())
    return path


def write_png(path: str | os.PathLike, image_bgr: np.ndarray) -> Path:
    """Write ``image_bgr`` as PNG, atomically; returns the path."""
    return write_image(Path(path).with_suffix(".png"), image_bgr)


def _check(image_bgr: np.ndarray, boxes, probs: np.ndarray | None = None) -> np.ndarray:
    image = np.asarray(image_bgr)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 BGR image (H, W, 3), got {image.dtype} "
                         f"{image.shape}")
    k = len(_numpy(boxes).reshape(-1, 4))
    if probs is not None and len(probs) != k:
        raise ValueError(f"{k} boxes but scores for {len(probs)} regions")
    return image


def _name(class_names: Sequence[str], c: int) -> str:
    return class_names[c] if 0 <= c < len(class_names) else str(c)


def _labelled(image: np.ndarray, boxes, probs: np.ndarray, class_names: Sequence[str],
              highlight: np.ndarray | None) -> np.ndarray:
    pred = predicted_classes(probs)
    labels = [f"{_name(class_names, c)} {probs[k, c]:.2f}" for k, c in enumerate(pred)]
    return draw_boxes(image, boxes, labels, pred.tolist(),
                      None if highlight is None else highlight.tolist())


# --- figures ------------------------------------------------------------------------------

def plot_labels(path: str | os.PathLike, image_bgr: np.ndarray, boxes, probs,
                class_names: Sequence[str], gt=None) -> Path:
    """Predicted labels ("class p") on the image, wrong ones highlighted, beside the true
    labels when ``gt`` (K,) is given. ``boxes`` (K, 4) inclusive pixels of ``image_bgr``;
    ``probs`` (K, C) class probabilities."""
    probs = _numpy(probs)
    image = _check(image_bgr, boxes, probs)
    columns = 1 if gt is None else 2
    small, fx, fy = _resize(image, columns)
    sboxes = _scale_boxes(boxes, fx, fy)
    pred = predicted_classes(probs)
    if gt is None:
        panels = [(f"predicted: {len(pred)} regions",
                   _labelled(small, sboxes, probs, class_names, None))]
    else:
        gt = np.asarray(_numpy(gt), dtype=np.int64).reshape(-1)
        wrong = pred != gt
        panels = [(f"predicted: {int(wrong.sum())} of {len(pred)} wrong (dashed red)",
                   _labelled(small, sboxes, probs, class_names, wrong)),
                  ("ground truth", draw_boxes(small, sboxes,
                                              [_name(class_names, c) for c in gt],
                                              gt.tolist()))]
    return write_png(path, _grid(panels, columns))


def plot_iterations(path: str | os.PathLike, image_bgr: np.ndarray, boxes,
                    iterations: Sequence, final, class_names: Sequence[str],
                    gt=None) -> Path:
    """One panel per iteration (``iterations``: list of (K, C) probabilities) and one for
    ``final``, :data:`MAX_COLUMNS` per row; in each panel the regions whose predicted class
    changed since the previous panel are highlighted. With one iteration equal to the final
    output (the baseline) the single panel is titled ``final (= iteration 0)``."""
    its = [_numpy(p) for p in iterations]
    final = _numpy(final)
    image = _check(image_bgr, boxes, final)
    if not its:
        raise ValueError("plot_iterations needs at least one iteration")
    gt = None if gt is None else np.asarray(_numpy(gt), dtype=np.int64).reshape(-1)
    steps = [(f"iteration {i}", p) for i, p in enumerate(its)]
    if len(its) == 1 and np.allclose(its[0], final):
        steps = [("final (= iteration 0)", final)]
    else:
        steps.append(("final", final))
    columns = min(len(steps), MAX_COLUMNS)
    small, fx, fy = _resize(image, columns)
    sboxes = _scale_boxes(boxes, fx, fy)
    panels, previous = [], None
    for name, probs in steps:
        changed = (np.zeros(len(probs), bool) if previous is None
                   else changed_regions(previous, probs))
        title = name
        if gt is not None:
            title += f": {int((predicted_classes(probs) == gt).sum())}/{len(gt)} right"
        if previous is not None:
            title += f", {int(changed.sum())} changed (dashed red)"
        panels.append((title, _labelled(small, sboxes, probs, class_names, changed)))
        previous = probs
    return write_png(path, _grid(panels, columns))


def _memory_maps(memories: Sequence) -> tuple[list[np.ndarray], list[np.ndarray], float]:
    """Per memory: the per-cell L2 norm (Hm, Wm) and the top-3 principal components
    (Hm, Wm, 3) in [0, 1], the components fitted on the cells of all iterations together
    so that colours compare across iterations; and the largest norm."""
    mems = []
    for m in memories:
        m = _numpy(m)
        if m.ndim == 4:
            m = m[0]
        if m.ndim != 3:
            raise ValueError(f"a memory must be (1, C, H, W) or (C, H, W), got {m.shape}")
        mems.append(m)
    norms = [np.sqrt((m.astype(np.float64) ** 2).sum(0)) for m in mems]
    cells = np.concatenate([m.reshape(m.shape[0], -1).T for m in mems]).astype(np.float64)
    centred = cells - cells.mean(0, keepdims=True)
    comps = np.zeros((len(cells), 3))
    if np.abs(centred).max(initial=0) > 0:
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        vt = vt[:3]
        # fix each component's sign: its largest loading positive (deterministic colours)
        vt *= np.sign(vt[np.arange(len(vt)), np.abs(vt).argmax(1)])[:, None]
        comps[:, :len(vt)] = centred @ vt.T
    lo, hi = np.percentile(comps, 1, axis=0), np.percentile(comps, 99, axis=0)
    comps = np.clip((comps - lo) / np.where(hi > lo, hi - lo, 1.0), 0, 1)
    pcs, start = [], 0
    for m in mems:
        n = m.shape[1] * m.shape[2]
        pcs.append(comps[start:start + n].reshape(m.shape[1], m.shape[2], 3))
        start += n
    return norms, pcs, float(max(n.max(initial=0) for n in norms))


def _upsample(cells: np.ndarray, size: tuple[int, int], cell: float | None) -> np.ndarray:
    """(Hm, Wm[, 3]) -> (H, W[, 3]) bilinear: each cell covers ``cell`` x ``cell`` panel
    pixels from the top-left corner (cropped or edge-padded to the panel), or, with
    ``cell`` None, the map is stretched over the whole panel."""
    h, w = size
    if cell is None:
        return cv2.resize(cells.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    hm, wm = cells.shape[:2]
    big = cv2.resize(cells.astype(np.float32),
                     (max(1, int(round(wm * cell))), max(1, int(round(hm * cell)))),
                     interpolation=cv2.INTER_LINEAR)[:h, :w]
    pad = ((0, h - big.shape[0]), (0, w - big.shape[1])) + ((0, 0),) * (big.ndim - 2)
    return np.pad(big, pad, mode="edge")


def _overlay(grey: np.ndarray, colour: np.ndarray) -> np.ndarray:
    return cv2.addWeighted(colour, OVERLAY_ALPHA, grey, 1 - OVERLAY_ALPHA, 0)


def plot_memory(path: str | os.PathLike, image_bgr: np.ndarray, memories: Sequence,
                cell_size: float | None = None) -> Path:
    """Two rows, one column per iteration: the memory's per-cell L2 norm over channels as a
    heat map (one colour scale for all iterations, 0 to the largest norm) and its top-3
    principal components as RGB (fitted on all iterations), upsampled and overlaid on the
    image in grey. ``memories``: (1, C_m, Hm, Wm) or (C_m, Hm, Wm) per iteration.
    ``cell_size``: image pixels per memory cell (feature stride / image scale), so cells
    land where they belong; None stretches the map over the image."""
    image = _check(image_bgr, np.zeros((0, 4)))
    if not memories:
        raise ValueError("plot_memory needs at least one memory")
    norms, pcs, top = _memory_maps(memories)
    columns = len(norms)
    small, fx, _ = _resize(image, columns)
    grey = cv2.cvtColor(cv2.cvtColor(small, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    size = small.shape[:2]
    cell = None if cell_size is None else cell_size * fx
    cmap = getattr(cv2, "COLORMAP_VIRIDIS", cv2.COLORMAP_JET)
    heat_row, pc_row = [], []
    for i, (norm, pc) in enumerate(zip(norms, pcs)):
        heat = _upsample(norm / top if top > 0 else norm, size, cell)
        heat = cv2.applyColorMap(np.clip(heat * 255, 0, 255).astype(np.uint8), cmap)
        heat_row.append((f"iter {i}: |memory| (max {norm.max(initial=0):.3g} of {top:.3g})",
                         _overlay(grey, heat)))
        rgb = np.clip(_upsample(pc, size, cell) * 255, 0, 255).astype(np.uint8)
        pc_row.append((f"iter {i}: top-3 PCs as RGB", _overlay(grey, rgb[:, :, ::-1].copy())))
    return write_png(path, _grid(heat_row + pc_row, columns))


@literal_text
def plot_attention(path: str | os.PathLike, attention, region_labels: Sequence[str]) -> Path:
    """Heat map of the attention (K, ITER) that each region (a row, labelled with
    ``region_labels``) gives its iterations, values written in the cells when they fit.
    :data:`ATTENTION_WIDTH_IN` x (1.6 + 0.3 K, at most 16) inches at
    :data:`ATTENTION_DPI`."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    att = _numpy(attention)
    if att.ndim != 2 or len(att) != len(region_labels):
        raise ValueError(f"attention {att.shape} does not match {len(region_labels)} regions")
    k, iters = att.shape
    fig = Figure(figsize=(ATTENTION_WIDTH_IN, min(1.6 + 0.3 * max(k, 1), 16.0)),
                 dpi=ATTENTION_DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    shown = ax.imshow(att if k else np.zeros((1, iters)), aspect="auto", cmap="viridis",
                      vmin=0.0, vmax=1.0, interpolation="nearest")
    fontsize = float(np.clip(300 / max(k, 1), 4, 9))
    ax.set_xticks(range(iters), [f"iter {i}" for i in range(iters)], fontsize=9)
    ax.set_yticks(range(k), list(region_labels), fontsize=fontsize)
    ax.set_xlabel("iteration")
    ax.set_title(f"attention over iterations ({k} regions)", fontsize=10)
    if k * iters <= 300:
        for r in range(k):
            for c in range(iters):
                ax.text(c, r, f"{att[r, c]:.2f}", ha="center", va="center",
                        fontsize=min(fontsize, 8), color="white" if att[r, c] < 0.6 else "black")
    fig.colorbar(shown, ax=ax, fraction=0.05, pad=0.03)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=ATTENTION_DPI)
    path = Path(path)
    with atomic_open(path, "wb") as f:
        f.write(buf.getvalue())
    return path


def save_figures(out_dir: str | os.PathLike, stem: str, image_bgr: np.ndarray, boxes,
                 outputs: dict, class_names: Sequence[str], gt=None,
                 cell_size: float | None = None) -> list[Path]:
    """Every figure that applies to one model output, as ``<out_dir>/<stem>_<kind>.png``:
    ``labels`` and ``iterations`` always, ``memory`` and ``attention`` when ``outputs``
    has them. ``outputs``: a model's output dict (logits ``final`` and ``iterations``;
    optional ``attention`` and ``memories``), torch or numpy; ``boxes`` in pixels of
    ``image_bgr``. Returns the written paths."""
    out_dir = Path(out_dir)
    final = softmax(outputs["final"])
    iterations = [softmax(x) for x in outputs.get("iterations") or [outputs["final"]]]
    written = [plot_labels(out_dir / f"{stem}_labels.png", image_bgr, boxes, final,
                           class_names, gt),
               plot_iterations(out_dir / f"{stem}_iterations.png", image_bgr, boxes,
                               iterations, final, class_names, gt)]
    if outputs.get("memories"):
        written.append(plot_memory(out_dir / f"{stem}_memory.png", image_bgr,
                                   outputs["memories"], cell_size))
    if outputs.get("attention") is not None:
        pred = predicted_classes(final)
        gt_list = None if gt is None else np.asarray(_numpy(gt), dtype=np.int64).reshape(-1)
        labels = [f"#{k} {_name(class_names, int(gt_list[k]))} -> {_name(class_names, c)}"
                  if gt_list is not None else f"#{k} {_name(class_names, c)}"
                  for k, c in enumerate(pred)]
        written.append(plot_attention(out_dir / f"{stem}_attention.png",
                                      outputs["attention"], labels))
    return written
