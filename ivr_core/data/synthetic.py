"""The embedded synthetic dataset, written in the ADE20K on-disk format.

Spatial context is needed to label it: the light-blue squares inside tall grey containers
are identical, and only the container says whether one is a ``house window``, a
``bus window`` or a ``shelf box``. The containers are told apart by a large cue at one end
(a red roof on top, big wheels or brown legs at the bottom), far from most squares. Decoy
cues make the neighbourhood unreliable: unlabelled roofs, wheels and legs lie around, and
half of the containers have a wrong cue just outside their box (a roof above a bus), so only
the container's box says which cue is its own. Half of the images hold one container and
identical white plates: one inside the container (a part) and a few lying loose at the other
side of the image (whole objects), far from it and among decoy cues. A plate is a
``house plate``, ``bus plate`` or ``shelf plate`` after the kind of container it belongs
to: neither its look nor its neighbourhood says which, only the part-of relation between
the classes and the container elsewhere in the image. Unambiguous shapes, a ``left arrow`` /
``right arrow`` pair, labelled ``wheel`` parts and two classes rarer than the default count
threshold complete it. Everything is drawn from ``numpy.random.default_rng((seed, index))``,
so a seed gives the same dataset whatever the number of processes.

This is the ``containers`` task, the demo's; :mod:`ivr_core.data.synthetic_rooms` draws a
second one (``rooms``) with another layout and other kinds of cues. Both are written by
:func:`generate`.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ivr_core.utils.io import write_text
from ivr_core.utils.progress import progress_bar

CONTAINERS = ("house", "bus", "shelf")
CONTEXT = {"house": "house window", "bus": "bus window", "shelf": "shelf box"}
PLATES = {"house": "house plate", "bus": "bus plate", "shelf": "shelf plate"}
SHAPES = ("disc", "triangle", "cross", "diamond", "traffic sign", "left arrow", "right arrow")
RARE = ("star", "hexagon")  # fewer instances than the default min_count of 5
# one base colour (BGR) per shape; the arrows share one so only their direction differs
SHAPE_BGR = {"disc": (200, 60, 60), "triangle": (40, 160, 40), "cross": (120, 200, 230),
             "diamond": (170, 40, 120), "traffic sign": (30, 30, 210),
             "left arrow": (20, 140, 250), "right arrow": (20, 140, 250),
             "star": (0, 215, 255), "hexagon": (140, 140, 20)}
NAMES = ("-", *CONTAINERS, *CONTEXT.values(), *PLATES.values(), "wheel", *SHAPES, *RARE)
CONTEXT_CLASSES = tuple(n.replace(" ", "_") for n in (*CONTEXT.values(), *PLATES.values()))
SPLIT_FRACTIONS = {"train": 2 / 3, "mval": 1 / 6, "mtest": 1 / 6}
WINDOW_BGR = (235, 220, 175)  # identical light blue for every window class
PLATE_W, PLATE_H = 18, 12  # identical white plates with a dark bar for every plate class


@dataclass
class Instance:
    name: str
    mask: np.ndarray  # bool (H, W): this instance's pixels
    level: int = 0  # 0 = whole object, 1 = part


@dataclass
class Scene:
    image: np.ndarray  # uint8 BGR (H, W, 3)
    instances: list[Instance] = field(default_factory=list)
    taken: list[tuple[int, int, int, int]] = field(default_factory=list)  # x1, y1, x2, y2


def _poly_mask(shape: tuple[int, int], pts: np.ndarray) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    cv2.fillPoly(mask, [pts.astype(np.int32)], 1)
    return mask.astype(bool)


def _paint(scene: Scene, mask: np.ndarray, bgr, rng: np.random.Generator,
           jitter: int = 12) -> None:
    color = np.clip(np.asarray(bgr, float) + rng.integers(-jitter, jitter + 1, 3), 0, 255)
    scene.image[mask] = color.astype(np.uint8)


def _rect(shape, x1, y1, x2, y2) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[max(y1, 0):max(y2, 0), max(x1, 0):max(x2, 0)] = True
    return m


def _disc(shape, cx, cy, r) -> np.ndarray:
    m = np.zeros(shape, np.uint8)
    cv2.circle(m, (int(cx), int(cy)), int(r), 1, -1)
    return m.astype(bool)


# Cues: (mask pieces) drawn in a band of height `band` whose top-left is (x, y), width w.
def _roof(shape, x, y, w, band):
    return [_poly_mask(shape, np.array([[x - 4, y + band], [x + w // 2, y], [x + w + 4, y + band]]))]


def _wheels(shape, x, y, w, band):
    r = band // 2
    return [_disc(shape, x + w * 0.27, y + r, r), _disc(shape, x + w * 0.73, y + r, r)]


def _legs(shape, x, y, w, band):
    lw = max(w // 7, 4)
    return [_rect(shape, x + 2, y, x + 2 + lw, y + band), _rect(shape, x + w - 2 - lw, y, x + w - 2, y + band)]


CUES = {"house": (_roof, (40, 40, 200)), "bus": (_wheels, (25, 25, 25)),
        "shelf": (_legs, (30, 70, 120))}


def _free(scene: Scene, box, margin: int = 4) -> bool:
    x1, y1, x2, y2 = box
    h, w = scene.image.shape[:2]
    if x1 < 2 or y1 < 2 or x2 > w - 2 or y2 > h - 2:
        return False
    return all(x1 >= b[2] + margin or x2 + margin <= b[0] or y1 >= b[3] + margin
               or y2 + margin <= b[1] for b in scene.taken)


def _place(scene: Scene, rng, bw: int, bh: int, tries: int = 60, xs: tuple[int, int] | None = None):
    h, w = scene.image.shape[:2]
    lo, hi = xs or (2, w - 2)
    for _ in range(tries):
        x = int(rng.integers(lo, max(hi - bw, lo + 1)))
        y = int(rng.integers(2, max(h - bh - 2, 3)))
        if _free(scene, (x, y, x + bw, y + bh)):
            scene.taken.append((x, y, x + bw, y + bh))
            return x, y
    return None


def _background(rng, h: int, w: int) -> np.ndarray:
    c0, c1 = rng.integers(60, 200, 3), rng.integers(60, 200, 3)
    t = np.linspace(0, 1, h if rng.random() < 0.5 else w)
    ramp = c0[None] * (1 - t[:, None]) + c1[None] * t[:, None]
    img = np.broadcast_to(ramp[:, None] if len(t) == h else ramp[None], (h, w, 3)).copy()
    for _ in range(rng.integers(2, 5)):  # soft blobs
        blob = np.zeros((h, w), np.uint8)
        cv2.ellipse(blob, (int(rng.integers(w)), int(rng.integers(h))),
                    (int(rng.integers(15, 60)), int(rng.integers(15, 60))),
                    float(rng.integers(180)), 0, 360, 1, -1)
        img[blob > 0] = 0.7 * img[blob > 0] + 0.3 * rng.integers(0, 255, 3)
    for _ in range(rng.integers(3, 7)):  # thin lines
        p = rng.integers(0, [w, h, w, h])
        cv2.line(img, (int(p[0]), int(p[1])), (int(p[2]), int(p[3])),
                 rng.integers(0, 255, 3).tolist(), int(rng.integers(1, 3)), cv2.LINE_AA)
    return img.astype(np.uint8)


def _plate(scene: Scene, kind: str, x: int, y: int, level: int) -> None:
    shape = scene.image.shape[:2]
    plate = _rect(shape, x, y, x + PLATE_W, y + PLATE_H)
    scene.image[plate] = 245
    scene.image[y + PLATE_H // 2 - 1:y + PLATE_H // 2 + 1, x + 3:x + PLATE_W - 3] = 40
    scene.instances.append(Instance(PLATES[kind], plate, level=level))


def _container(scene: Scene, rng, kind: str, x: int, y: int, cw: int, ch: int,
               plate: bool = False) -> None:
    shape = scene.image.shape[:2]
    band = int(ch * rng.uniform(0.2, 0.25))
    make_cue, cue_color = CUES[kind]
    if kind == "house":
        body, cue_y = (x, y + band, x + cw, y + ch), y
    else:
        body, cue_y = (x, y, x + cw, y + ch - band), y + ch - band
    body_mask = _rect(shape, *body)
    grey = int(rng.integers(115, 150))
    _paint(scene, body_mask, (grey, grey, grey), rng, jitter=6)
    for row in range(body[1] + 6, body[3] - 3, int(rng.integers(9, 15))):  # faint texture
        scene.image[row, body[0]:body[2]] = np.clip(grey - 18, 0, 255)
    cue = make_cue(shape, x, cue_y, cw, band)
    for piece in cue:
        _paint(scene, piece, cue_color, rng)
    object_mask = body_mask | np.logical_or.reduce(cue)
    scene.instances.append(Instance(kind, object_mask))
    if kind == "bus":
        scene.instances += [Instance("wheel", piece, level=1) for piece in cue]
    # identical squares anywhere in the body, not overlapping each other or the plate
    placed: list[tuple[int, int, int]] = []
    if plate:
        px = int(rng.integers(body[0] + 3, max(body[2] - PLATE_W - 3, body[0] + 4)))
        py = int(rng.integers(body[1] + 3, max(body[3] - PLATE_W - 3, body[1] + 4)))
        _plate(scene, kind, px, py, level=1)
        placed.append((px, py, PLATE_W))
    for _ in range(int(rng.integers(1, 5))):
        s = int(rng.integers(14, 21))
        for _ in range(30):
            sx = int(rng.integers(body[0] + 4, max(body[2] - s - 4, body[0] + 5)))
            sy = int(rng.integers(body[1] + 4, max(body[3] - s - 4, body[1] + 5)))
            if all(abs(sx - px) > s + 3 or abs(sy - py) > s + 3 for px, py, _ in placed):
                placed.append((sx, sy, s))
                window = _rect(shape, sx, sy, sx + s, sy + s)
                _paint(scene, window, WINDOW_BGR, rng, jitter=0)
                scene.instances.append(Instance(CONTEXT[kind], window, level=1))
                break


def _decoy(scene: Scene, rng, kind: str, x: int, y: int, w: int, band: int) -> None:
    make_cue, color = CUES[kind]
    for piece in make_cue(scene.image.shape[:2], x, y, w, band):
        _paint(scene, piece, color, rng)  # unlabelled: stays background in the masks


def _shape(scene: Scene, rng, name: str, x: int, y: int, s: int) -> None:
    shape = scene.image.shape[:2]
    c = np.array([x + s / 2, y + s / 2])
    r = s / 2
    if name == "disc":
        m = _disc(shape, c[0], c[1], r)
    elif name == "cross":
        t = s // 3
        m = _rect(shape, x + t, y, x + s - t, y + s) | _rect(shape, x, y + t, x + s, y + s - t)
    else:
        polys = {
            "triangle": [[0, 1], [0.5, 0], [1, 1]],
            "diamond": [[0.5, 0], [1, 0.5], [0.5, 1], [0, 0.5]],
            "traffic sign": [[0.3, 0], [0.7, 0], [1, 0.3], [1, 0.7], [0.7, 1], [0.3, 1], [0, 0.7], [0, 0.3]],
            "right arrow": [[0, 0.35], [0.55, 0.35], [0.55, 0.1], [1, 0.5], [0.55, 0.9], [0.55, 0.65], [0, 0.65]],
            "star": [[0.5, 0], [0.62, 0.38], [1, 0.38], [0.69, 0.6], [0.8, 1], [0.5, 0.75], [0.2, 1], [0.31, 0.6], [0, 0.38], [0.38, 0.38]],
            "hexagon": [[0.25, 0], [0.75, 0], [1, 0.5], [0.75, 1], [0.25, 1], [0, 0.5]],
        }
        key = "right arrow" if name == "left arrow" else name
        pts = np.array(polys[key], float)
        if name == "left arrow":
            pts[:, 0] = 1 - pts[:, 0]
        m = _poly_mask(shape, pts * (s - 1) + [x, y])
    _paint(scene, m, SHAPE_BGR[name], rng, jitter=25)
    scene.instances.append(Instance(name, m))


def render(seed: int, index: int, size: tuple[int, int] = (320, 320)) -> Scene:
    """Draw image ``index`` of the dataset with ``seed``: image and labelled instances."""
    rng = np.random.default_rng((seed, index))
    h, w = size
    scene = Scene(_background(rng, h, w))
    plates = rng.random() < 0.5  # one container at one side, its loose plates at the other
    left = rng.random() < 0.5
    n = 1 if plates else int(rng.integers(2, 4))
    slot = w // n
    for i in range(n):
        kind = CONTAINERS[int(rng.integers(3))]
        cw = int(min(w * rng.uniform(0.2, 0.3), slot - 10))
        ch = int(h * rng.uniform(0.45, 0.62))
        x = i * slot + int(rng.integers(4, max(slot - cw - 4, 5)))
        if plates:
            x = int(rng.integers(4, 16)) if left else w - cw - int(rng.integers(4, 16))
        y = int(rng.integers(16, max(h - ch - 16, 17)))
        _container(scene, rng, kind, x, y, cw, ch, plate=plates)
        scene.taken.append((x - 2, y - 2, x + cw + 2, y + ch + 2))
        if rng.random() < 0.5:  # a wrong cue 3-7 px outside the box, at the other end
            gap, band = int(rng.integers(3, 8)), int(ch * 0.2)
            if kind == "house" and y + ch + gap + band < h - 2:
                _decoy(scene, rng, ("bus", "shelf")[int(rng.integers(2))], x, y + ch + gap, cw, band)
                scene.taken.append((x, y + ch, x + cw, y + ch + gap + band))
            elif kind != "house" and y - gap - band > 2:
                _decoy(scene, rng, "house", x, y - gap - band, cw, band)
                scene.taken.append((x - 4, y - gap - band, x + cw + 4, y))
    if plates:  # the loose plates: in the third of the image away from the container
        far = (int(w * 0.64), w - 2) if left else (2, int(w * 0.36))
        for _ in range(int(rng.integers(2, 5))):
            spot = _place(scene, rng, PLATE_W + 6, PLATE_H + 6, xs=far)
            if spot:
                _plate(scene, kind, spot[0] + 3, spot[1] + 3, level=0)
    for _ in range(int(rng.integers(2, 5))):  # decoy cues scattered around
        kind = CONTAINERS[int(rng.integers(3))]
        bw, band = int(rng.integers(40, 80)), int(rng.integers(20, 36))
        spot = _place(scene, rng, bw + 8, band)
        if spot:
            _decoy(scene, rng, kind, spot[0] + 4, spot[1], bw, band)
    names = [SHAPES[int(k)] for k in rng.integers(len(SHAPES), size=int(rng.integers(1, 5)))]
    if index in (7, 19):
        names.append("star")
    if index == 11:
        names.append("hexagon")
    for name in names:
        s = int(rng.integers(26, 45))
        spot = _place(scene, rng, s, s)
        if spot:
            _shape(scene, rng, name, spot[0], spot[1], s)
    noise = rng.normal(0, 5, scene.image.shape)
    scene.image = np.clip(scene.image + noise, 0, 255).astype(np.uint8)
    return scene


TASKS = ("containers", "rooms")  # containers: the demo's; rooms: ivr_core.data.synthetic_rooms


def task_module(task: str):
    """The module drawing ``task``: it has ``render(seed, index, size)``, ``NAMES`` (line 0
    is the background slot) and ``CONTEXT_CLASSES``."""
    if task == "containers":
        import ivr_core.data.synthetic as module
    elif task == "rooms":
        import ivr_core.data.synthetic_rooms as module
    else:
        raise ValueError(f"unknown synthetic task {task!r}; known: {', '.join(TASKS)}")
    return module


def _masks_and_atr(scene: Scene, rng, names: tuple[str, ...]) -> tuple[list[np.ndarray], str]:
    """ADE encoding: R/10*256 + G = class, B = instance value; atr lists instances by rank."""
    code = {name: i for i, name in enumerate(names)}
    h, w = scene.image.shape[:2]
    lines, masks = [], []
    for level in (0, 1):
        insts = [i for i in scene.instances if i.level == level]
        mask = np.zeros((h, w, 3), np.uint8)  # B, G, R
        # distinct increasing instance values with gaps: the atr numbers are their ranks
        values = np.sort(rng.choice(np.arange(1, 256), size=len(insts), replace=False))
        visible = []
        for inst, value in zip(insts, values):  # later instances occlude earlier ones
            c = code[inst.name]
            mask[inst.mask] = (value, c % 256, c // 256 * 10)
        present = np.unique(mask[:, :, 0])
        for inst, value in zip(insts, values):
            if value in present:
                visible.append((value, inst))
        for value, inst in visible:
            rank = int(np.searchsorted(present, value))
            lines.append(f"{rank:03d} # {level} # 0 # {inst.name} # {inst.name} # \"\"")
        masks.append(mask)
    return masks, "\n".join(lines) + "\n"


def _image_path(split: str, index: int) -> str:
    folder, tag = ("training", "train") if split == "train" else ("validation", "val")
    return f"images/{folder}/s/synthetic/SYN_{tag}_{index:08d}.jpg"


def _write_one(args) -> dict[str, int]:
    root, seed, index, rel, size, task = args
    module = task_module(task)
    scene = module.render(seed, index, size)
    masks, atr = _masks_and_atr(scene, np.random.default_rng((seed, index, 1)), module.NAMES)
    path = Path(root) / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), scene.image, [cv2.IMWRITE_JPEG_QUALITY, 95])
    cv2.imwrite(str(path.with_name(path.stem + "_seg.png")), masks[0])
    cv2.imwrite(str(path.with_name(path.stem + "_parts_1.png")), masks[1])
    write_text(path.with_name(path.stem + "_atr.txt"), atr)
    counts: dict[str, int] = {}
    for line in atr.splitlines():
        name = line.split("#")[4].strip()
        counts[name] = counts.get(name, 0) + 1
    return counts


def generate(root: str | os.PathLike, images: int = 900, seed: int = 0,
             size: tuple[int, int] = (320, 320), workers: int | None = None,
             show_progress: bool = True, task: str = "containers") -> Path:
    """Write the dataset of ``task`` under ``root``: images, masks, atr files, split and
    name files, and ``context_classes.txt``."""
    module = task_module(task)
    if images < 6:
        raise ValueError("the synthetic dataset needs at least 6 images (2 per split)")
    root = Path(root)
    n_train = int(round(images * SPLIT_FRACTIONS["train"]))
    n_mval = (images - n_train) // 2
    splits = {"train": range(n_train), "mval": range(n_train, n_train + n_mval),
              "mtest": range(n_train + n_mval, images)}
    jobs = [(str(root), seed, i, _image_path(split, i), size, task)
            for split, ids in splits.items() for i in ids]
    workers = workers or min(8, os.cpu_count() or 1)
    totals = dict.fromkeys(module.NAMES[1:], 0)
    with mp.get_context("fork" if os.name == "posix" else None).Pool(workers) as pool:
        for counts in progress_bar(pool.imap(_write_one, jobs, chunksize=8), len(jobs),
                                   "generate", enabled=show_progress):
            for name, c in counts.items():
                totals[name] += c
    for split, ids in splits.items():
        write_text(root / f"{split}.txt", "".join(_image_path(split, i) + "\n" for i in ids))
    write_text(root / "objectnames.txt", "".join(f"{n} \n" for n in module.NAMES))
    write_text(root / "objectcounts.txt",
               "0\n" + "".join(f"{totals[n]}\n" for n in module.NAMES[1:]))
    write_text(root / "context_classes.txt", "".join(n + "\n" for n in module.CONTEXT_CLASSES))
    return root
