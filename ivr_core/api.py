"""The Python API: load a trained model and label the boxes of images with it.

``load`` takes a run folder (its newest checkpoint), a checkpoint file, or a folder written
by ``ivr export``; ``Model.predict`` labels the given boxes of one image, whose
``Prediction`` holds, per box, the final class and probabilities, the class at every
iteration and of every module, and the attention over them:

>>> import ivr_core
>>> model = ivr_core.load(run_dir, device="cpu")
>>> model.classes[0]
'__background__'
>>> out = model.predict(image_path, [[2, 3, 60, 70], [40, 10, 120, 100]])  # x1 y1 x2 y2
>>> len(out), out.probs.shape == (2, len(model.classes))
(2, True)
>>> box = out[0]
>>> box.label in model.classes, len(box.iterations) == model.config.memory.iterations
(True, True)
>>> sorted(box.modules), box.attention.shape
(['local'], (3,))

Images are a path, an RGB ``uint8`` array of shape (H, W, 3), or a PIL image; boxes an
(N, 4) array-like of inclusive pixel coordinates ``x1 y1 x2 y2`` inside the image. Bad
input is an :class:`~ivr_core.errors.IvrError` naming what to fix.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from ivr_core.config import Config, RuntimeConfig, load_config
from ivr_core.data.dataset import to_model_input
from ivr_core.engine.checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint
from ivr_core.engine.runtime import compile_dense_parts, resolve_device
from ivr_core.errors import IvrError
from ivr_core.evaluation.calibrate import apply_calibration
from ivr_core.export import is_exported, read_exported
from ivr_core.models import model_from_state
from ivr_core.predict.runner import check_boxes
from ivr_core.utils.files import MissingFile, UnreadableFile
from ivr_core.utils.images import read_image

__all__ = ["load", "read_state", "Model", "Prediction", "BoxPrediction"]


def read_state(path: str | os.PathLike) -> dict:
    """The checkpoint-shaped state (``model`` weights, ``classes``, ``config``,
    ``model_type``, ``iteration``, ``path``) of a checkpoint file, of the newest loadable
    checkpoint of a run folder (or of its ``checkpoints/`` folder), or of a folder written
    by ``ivr export`` (read without unpickling anything)."""
    path = Path(path)
    if path.is_file():
        if path.suffix == ".safetensors":
            return read_exported(path.parent)
        return load_checkpoint(path) | {"path": str(path)}
    if not path.is_dir():
        raise IvrError(f"checkpoint not found: {path} (give a checkpoint file, a run folder or "
                       "a folder written by `ivr export`)")
    if is_exported(path):
        return read_exported(path)
    run_dir = path.parent if path.name == "checkpoints" else path
    if list_checkpoints(run_dir):
        state, skipped = latest_checkpoint(run_dir)
        if state is None:
            raise IvrError(f"no checkpoint in {run_dir / 'checkpoints'} could be loaded "
                           f"({skipped[0]})")
        return state
    raise IvrError(f"{path} holds no model: give a checkpoint file, a run folder with "
                   "checkpoints/iter_*.pt, or a folder written by `ivr export` "
                   "(model.safetensors, config.toml, classes.json)")


def load(path: str | os.PathLike, device: str | torch.device = "cpu") -> "Model":
    """The model of a run folder, checkpoint or exported folder (see :func:`read_state`),
    in eval mode on ``device`` ("cpu", "cuda", "cuda:N" or "auto").

    The model's settings come from the config it was trained with; the ``runtime`` ones
    (which describe the training machine) are the defaults, and process-wide settings
    (threads, deterministic kernels, region-op backend) are left as they are."""
    state = read_state(path)
    cfg = load_config(base=state["config"], overrides=[f"runtime.device={device}"])
    cfg = replace(cfg, runtime=RuntimeConfig(device=cfg.runtime.device))
    return Model(state, cfg, resolve_device(cfg.runtime.device))


@dataclass(frozen=True, eq=False)  # numpy fields: no element-wise ==
class BoxPrediction:
    """What the model says about one box."""

    box: tuple[float, float, float, float]  # x1 y1 x2 y2, pixels of the input image
    label: str  # the final class
    score: float  # its final probability
    probs: np.ndarray  # (C,) final class probabilities
    iterations: list[str]  # the class at each iteration (the local chain for `full`)
    modules: dict[str, list[str]]  # module name -> the class at each of its iterations
    attention: np.ndarray | None  # (A,) weights over the combined predictions, or None


@dataclass(frozen=True, eq=False)  # numpy fields: no element-wise ==
class Prediction:
    """The boxes of one image; ``prediction[k]`` is box k's :class:`BoxPrediction`.

    ``probs`` (N, C) final probabilities; ``iteration_probs`` (I, N, C) per iteration;
    ``module_probs`` {name: (I, N, C)} for models with reasoning modules (``local``,
    ``global``); ``attention`` (N, A) or None (baseline). For the full model the attention
    is over [local 0 .. I-1, global 1 .. I-1]."""

    boxes: np.ndarray  # (N, 4) float32
    classes: list[str]
    probs: np.ndarray
    iteration_probs: np.ndarray
    module_probs: dict[str, np.ndarray]
    attention: np.ndarray | None

    def __len__(self) -> int:
        return len(self.boxes)

    def __getitem__(self, k: int) -> BoxPrediction:
        if not -len(self) <= k < len(self):
            raise IndexError(f"box {k} of {len(self)}")
        final = int(self.probs[k].argmax())
        return BoxPrediction(
            box=tuple(float(v) for v in self.boxes[k]), label=self.classes[final],
            score=float(self.probs[k, final]), probs=self.probs[k],
            iterations=self._names(self.iteration_probs[:, k]),
            modules={name: self._names(p[:, k]) for name, p in self.module_probs.items()},
            attention=None if self.attention is None else self.attention[k])

    def _names(self, probs: np.ndarray) -> list[str]:
        """(I, C) probabilities of one box -> its class at each of the I steps."""
        return [self.classes[int(c)] for c in probs.argmax(1)]

    def __iter__(self) -> Iterator[BoxPrediction]:
        return (self[k] for k in range(len(self)))

    @property
    def labels(self) -> list[str]:
        """The final class of every box."""
        return self._names(self.probs)

    @classmethod
    def from_outputs(cls, outputs: dict[str, Any], boxes: np.ndarray,
                     classes: list[str]) -> "Prediction":
        """From a model's output dict; only ``final`` is required (``iterations``,
        ``modules`` and ``attention`` are read when the model gives them)."""
        final = outputs["final"]
        attention = outputs.get("attention")
        return cls(boxes=np.asarray(boxes, np.float32).reshape(-1, 4), classes=classes,
                   probs=_probs(final),
                   iteration_probs=_chain_probs(outputs.get("iterations") or [final]),
                   module_probs={name: _chain_probs(chain)
                                 for name, chain in (outputs.get("modules") or {}).items()},
                   attention=None if attention is None
                   else attention.detach().float().cpu().numpy())


def _probs(logits: torch.Tensor) -> np.ndarray:
    """(N, C) logits -> (N, C) probabilities, float32 numpy."""
    return torch.softmax(logits.detach().float(), 1).cpu().numpy()


def _chain_probs(chain: Sequence[torch.Tensor]) -> np.ndarray:
    """[I x (N, C)] logits -> (I, N, C) probabilities."""
    return np.stack([_probs(x) for x in chain])


class Model:
    """A trained model ready to label boxes; build it with :func:`load`.

    ``classes`` (background first), ``config`` (the :class:`~ivr_core.config.Config` it
    was trained with), ``model_type``, ``iteration`` (trained iterations), ``device``,
    ``network`` (the ``torch.nn.Module``, in eval mode)."""

    def __init__(self, state: dict, cfg: Config, device: torch.device):
        self.classes: list[str] = list(state["classes"])
        self.config = cfg
        self.model_type: str = cfg.model.type
        self.iteration: int = int(state.get("iteration", 0))
        self.source = state.get("path", "")
        self.device = device
        self.network = model_from_state(cfg, state).to(device).eval()
        compile_dense_parts(self.network, cfg.runtime)
        # a checkpoint of a run calibrated by `ivr calibrate`: its attention as calibrated
        self.calibration = (apply_calibration(self.network, self.source, self.iteration)
                            if self.source else None)

    def __repr__(self) -> str:
        return (f"Model({self.model_type}, {self.config.model.backbone}, "
                f"{len(self.classes)} classes, iteration {self.iteration}, {self.device})")

    def predict(self, image: str | os.PathLike | np.ndarray | Any,
                boxes: Sequence[Sequence[float]] | np.ndarray) -> Prediction:
        """Label ``boxes`` (N, 4: x1 y1 x2 y2, inclusive pixels) of ``image`` (a path, an
        RGB uint8 (H, W, 3) array or a PIL image)."""
        bgr = _to_bgr(image, self.config.data.max_pixels)
        height, width = bgr.shape[:2]
        checked = _checked_boxes(boxes, width, height)
        tensor, factor = to_model_input(bgr, self.config.data.scale, self.config.data.max_size)
        return self.run(tensor, checked, factor)

    def predict_batch(self, images: Sequence[Any], boxes: Sequence[Any]) -> list[Prediction]:
        """:meth:`predict` for each (image, boxes) pair, in order (one image per forward
        pass, as the models reason over one image's regions at a time)."""
        if len(images) != len(boxes):
            raise IvrError(f"predict_batch got {len(images)} images but {len(boxes)} box "
                           "lists; give one list of boxes per image")
        out = []
        for i, (image, image_boxes) in enumerate(zip(images, boxes)):
            try:
                out.append(self.predict(image, image_boxes))
            except IvrError as e:
                raise IvrError(f"image {i}: {e}") from None
        return out

    @torch.no_grad()
    def run(self, image: torch.Tensor, boxes: np.ndarray | torch.Tensor,
            factor: float) -> Prediction:
        """The model on one prepared image: ``image`` (3, H', W') as
        :func:`~ivr_core.data.dataset.to_model_input` makes it, ``boxes`` (N, 4) in the
        original image's pixels (checked), ``factor`` the resize factor."""
        boxes = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4)
        outputs = self.network(image.to(self.device)[None], (boxes * factor).to(self.device))
        return Prediction.from_outputs(outputs, boxes.numpy(), self.classes)


def _to_bgr(image: Any, max_pixels: int) -> np.ndarray:
    """A path, an RGB uint8 (H, W, 3) array or a PIL image -> OpenCV's BGR uint8 array; a
    path is read as ``ivr predict`` reads it (checked header, pixels as stored)."""
    if isinstance(image, (str, os.PathLike)):
        try:
            return read_image(image, max_pixels).bgr
        except MissingFile:
            raise IvrError(f"image not found: {image}") from None
        except UnreadableFile as e:
            raise IvrError(f"cannot read image {e.path}: {e.reason}") from None
    if hasattr(image, "convert") and hasattr(image, "size"):  # a PIL image
        image = np.asarray(image.convert("RGB"))
    if not isinstance(image, np.ndarray):
        raise IvrError(f"image must be a path, an RGB uint8 (H, W, 3) numpy array or a PIL "
                       f"image, not {type(image).__name__}")
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3 or not image.size:
        raise IvrError(f"image array must be RGB uint8 of shape (H, W, 3), got {image.dtype} "
                       f"{tuple(image.shape)}")
    return np.ascontiguousarray(image[:, :, ::-1])


def _checked_boxes(boxes: Any, width: int, height: int) -> np.ndarray:
    """``boxes`` as an (N, 4) float32 array, N >= 1, every box inside the image."""
    try:
        array = np.asarray(boxes, dtype=np.float64)
    except (TypeError, ValueError):
        raise IvrError("boxes must be an (N, 4) array of numbers x1 y1 x2 y2") from None
    if array.ndim != 2 or array.shape[1] != 4 or not len(array):
        raise IvrError(f"boxes must be an (N, 4) array x1 y1 x2 y2 with N >= 1, got shape "
                       f"{tuple(array.shape)}")
    _, problems = check_boxes(array.tolist(), width, height)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise IvrError(f"{problems[0]}{more}; boxes are inclusive pixels x1 y1 x2 y2 with "
                       f"0 <= x1 <= x2 <= {width - 1} and 0 <= y1 <= y2 <= {height - 1}")
    return array.astype(np.float32)
