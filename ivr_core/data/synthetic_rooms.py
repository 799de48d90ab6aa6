"""The second synthetic context task, ``rooms``: scenes told apart by their floor.

Built to check the reasoning models (and the attention over their predictions) on a layout
and kinds of cues that the ``containers`` task of the demo does not have:

- **a texture cue for the whole scene**: the floor across the bottom of the image is tiled
  (a kitchen), planked (a workshop) or grass (a garden). Identical grey jars stand on the
  wall anywhere above it, near the floor or far from it: a jar is a ``spice jar``, a
  ``paint can`` or a ``flower pot`` after the room, which its look does not say. Small
  rugs of every texture lie around as decoys, so a texture nearby is no answer: only the
  floor's.
- **parts named after their whole**: identical dark knobs are a ``cabinet knob`` or a
  ``door knob`` after the furniture they are on (a wide low cabinet or a tall narrow door,
  same wood). The whole overlaps its knobs, so local context is enough here: the global
  module has no advantage to show on these classes.
- unambiguous objects (clock, picture, lamp) complete it.

Same on-disk format, splits and determinism as the ``containers`` task
(:mod:`ivr_core.data.synthetic`), which writes the files.
"""

from __future__ import annotations

import cv2
import numpy as np

from ivr_core.data.synthetic import Instance, Scene, _background, _disc, _paint, _place, _rect

ROOMS = ("kitchen", "workshop", "garden")
FLOORS = {"kitchen": "tile floor", "workshop": "plank floor", "garden": "grass"}
JARS = {"kitchen": "spice jar", "workshop": "paint can", "garden": "flower pot"}
FURNITURE = ("cabinet", "door")
KNOBS = {"cabinet": "cabinet knob", "door": "door knob"}
OBJECTS = ("clock", "picture", "lamp")
NAMES = ("-", *FLOORS.values(), *JARS.values(), "rug", *FURNITURE, *KNOBS.values(), *OBJECTS)
CONTEXT_CLASSES = tuple(n.replace(" ", "_") for n in (*JARS.values(), *KNOBS.values()))
JAR_W, JAR_H = 16, 22
WOOD_BGR = (40, 90, 140)


def _texture(room: str, h: int, w: int, rng) -> np.ndarray:
    """A (h, w, 3) BGR patch of the room's floor texture."""
    yy, xx = np.mgrid[0:h, 0:w]
    if room == "kitchen":  # checkered tiles
        light = ((yy // 14 + xx // 14) % 2 == 0)[..., None]
        img = np.where(light, [225, 225, 215], [150, 160, 170])
    elif room == "workshop":  # planks with dark seams
        img = np.broadcast_to(np.array([60, 110, 170], float), (h, w, 3)).copy()
        img[(yy % 10) < 2] = (25, 45, 70)
    else:  # grass: green with dark blades
        img = np.broadcast_to(np.array([50, 150, 60], float), (h, w, 3)).copy()
        img[rng.random((h, w)) < 0.18] = (20, 90, 25)
    return np.clip(img + rng.integers(-10, 11, 3), 0, 255).astype(np.uint8)


def _patch(scene: Scene, room: str, x: int, y: int, w: int, h: int, rng) -> np.ndarray:
    mask = _rect(scene.image.shape[:2], x, y, x + w, y + h)
    scene.image[y:y + h, x:x + w] = _texture(room, h, w, rng)
    return mask


def _jar(scene: Scene, room: str, x: int, y: int, rng) -> None:
    shape = scene.image.shape[:2]
    body = _rect(shape, x, y + 4, x + JAR_W, y + JAR_H)
    lid = _rect(shape, x + 2, y, x + JAR_W - 2, y + 4)
    _paint(scene, body, (150, 150, 150), rng, jitter=0)
    _paint(scene, lid, (70, 70, 70), rng, jitter=0)
    scene.instances.append(Instance(JARS[room], body | lid))


def _furniture(scene: Scene, kind: str, x: int, y: int, fw: int, fh: int, rng) -> None:
    shape = scene.image.shape[:2]
    body = _rect(shape, x, y, x + fw, y + fh)
    _paint(scene, body, WOOD_BGR, rng, jitter=8)
    cv2.rectangle(scene.image, (x, y), (x + fw - 1, y + fh - 1), (20, 50, 80), 2)
    scene.instances.append(Instance(kind, body))
    spots = ([(x + fw - 10, y + fh // 2)] if kind == "door"
             else [(x + fw // 3, y + 12), (x + 2 * fw // 3, y + 12)][:int(rng.integers(1, 3))])
    for cx, cy in spots:
        knob = _disc(shape, cx, cy, 4)
        _paint(scene, knob, (30, 30, 30), rng, jitter=0)
        scene.instances.append(Instance(KNOBS[kind], knob, level=1))


def _object(scene: Scene, name: str, x: int, y: int, s: int, rng) -> None:
    shape = scene.image.shape[:2]
    if name == "clock":
        m = _disc(shape, x + s / 2, y + s / 2, s / 2)
        _paint(scene, m, (240, 240, 240), rng, jitter=5)
        cv2.circle(scene.image, (x + s // 2, y + s // 2), s // 2, (20, 20, 20), 2)
        cv2.line(scene.image, (x + s // 2, y + s // 2), (x + s // 2, y + 4), (20, 20, 20), 2)
    elif name == "picture":
        m = _rect(shape, x, y, x + s, y + int(s * 0.75))
        _paint(scene, m, (30, 160, 200), rng, jitter=30)
        cv2.rectangle(scene.image, (x, y), (x + s - 1, y + int(s * 0.75) - 1), (20, 20, 90), 3)
    else:  # lamp: a yellow shade on a thin stand
        pts = np.array([[x + s * 0.2, y], [x + s * 0.8, y], [x + s, y + s * 0.5],
                        [x, y + s * 0.5]], np.int32)
        m = np.zeros(shape, np.uint8)
        cv2.fillPoly(m, [pts], 1)
        m = m.astype(bool) | _rect(shape, x + s // 2 - 1, y + s // 2, x + s // 2 + 2, y + s)
        _paint(scene, m, (60, 220, 240), rng, jitter=15)
    scene.instances.append(Instance(name, m))


def render(seed: int, index: int, size: tuple[int, int] = (320, 320)) -> Scene:
    """Draw image ``index`` of the ``rooms`` dataset with ``seed``."""
    rng = np.random.default_rng((seed, index, 7))
    h, w = size
    scene = Scene(_background(rng, h, w))
    room = ROOMS[int(rng.integers(3))]
    top = int(h * rng.uniform(0.72, 0.8))  # the floor spans the bottom of the image
    floor = _patch(scene, room, 0, top, w, h - top, rng)
    scene.instances.append(Instance(FLOORS[room], floor))
    scene.taken.append((0, top - 4, w, h))
    for _ in range(int(rng.integers(1, 3))):  # furniture stands on the floor
        kind = FURNITURE[int(rng.integers(2))]
        fw, fh = ((int(rng.integers(90, 130)), int(rng.integers(45, 65))) if kind == "cabinet"
                  else (int(rng.integers(40, 56)), int(rng.integers(110, 150))))
        x = int(rng.integers(4, w - fw - 4))
        if all(x >= b[2] + 6 or x + fw + 6 <= b[0] for b in scene.taken[1:]):
            _furniture(scene, kind, x, top - fh, fw, fh, rng)
            scene.taken.append((x - 2, top - fh - 2, x + fw + 2, top))
    for _ in range(int(rng.integers(1, 3))):  # decoy rugs of any texture, on the wall
        rw, rh = int(rng.integers(34, 50)), int(rng.integers(18, 26))
        spot = _place(scene, rng, rw, rh)
        if spot and spot[1] + rh < top - 4:
            rug = _patch(scene, ROOMS[int(rng.integers(3))], spot[0], spot[1], rw, rh, rng)
            scene.instances.append(Instance("rug", rug))
    for _ in range(int(rng.integers(2, 5))):  # the identical jars, anywhere above the floor
        spot = _place(scene, rng, JAR_W + 4, JAR_H + 4)
        if spot and spot[1] + JAR_H + 4 < top - 2:
            _jar(scene, room, spot[0] + 2, spot[1] + 2, rng)
    for _ in range(int(rng.integers(1, 4))):
        s = int(rng.integers(24, 40))
        spot = _place(scene, rng, s, s)
        if spot and spot[1] + s < top - 2:
            _object(scene, OBJECTS[int(rng.integers(3))], spot[0], spot[1], s, rng)
    noise = rng.normal(0, 5, scene.image.shape)
    scene.image = np.clip(scene.image + noise, 0, 255).astype(np.uint8)
    return scene
