"""Boxes and labels drawn on an image with OpenCV: one stable colour per class.

Used by the figures of ``ivr test --visualize`` and by ``ivr predict --draw``. Boxes are
``x1, y1, x2, y2`` inclusive pixels of the image they are drawn on. Labels use OpenCV's
Hershey font, which has ASCII glyphs only: other characters are drawn as ``?``.
"""

from __future__ import annotations

import colorsys
from collections.abc import Sequence

import cv2
import numpy as np

__all__ = ["class_color", "draw_boxes", "layout_labels", "text_color"]

GOLDEN = 0.618033988749895  # successive hues are as far apart as possible on the circle
HIGHLIGHT_BGR = (0, 0, 255)  # red dashes, alternating with white, around highlighted boxes
FONT = cv2.FONT_HERSHEY_SIMPLEX
LABEL_PAD = 2  # pixels of background around a label's text


def class_color(class_id: int) -> tuple[int, int, int]:
    """A stable BGR colour for ``class_id``: golden-ratio hue steps, so nearby ids get very
    different hues, with saturation (3-cycle) and value (5-cycle) varied so that ids whose
    hues come close again (ids 55, 89, 144 apart) still differ. The same id always gives
    the same colour."""
    class_id = int(class_id)
    hue = (0.08 + class_id * GOLDEN) % 1.0
    sat = (0.90, 0.60, 1.00)[class_id % 3]
    val = (1.00, 0.72, 0.86, 0.60, 0.93)[class_id % 5]
    r, g, b = colorsys.hsv_to_rgb(hue, sat, val)
    return int(round(b * 255)), int(round(g * 255)), int(round(r * 255))


def text_color(background_bgr: Sequence[int]) -> tuple[int, int, int]:
    """Black or white, whichever contrasts more with ``background_bgr`` (relative luminance
    of the sRGB colour, WCAG contrast ratio)."""
    def linear(c: float) -> float:
        c = c / 255.0
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    b, g, r = (float(c) for c in background_bgr)
    lum = 0.2126 * linear(r) + 0.7152 * linear(g) + 0.0722 * linear(b)
    # contrast with black: (lum + 0.05) / 0.05; with white: 1.05 / (lum + 0.05)
    return (0, 0, 0) if (lum + 0.05) ** 2 > 0.05 * 1.05 else (255, 255, 255)


def _font(height: int, width: int) -> tuple[float, int]:
    """Font scale and outline thickness for an image of this size."""
    side = min(height, width)
    return float(np.clip(side / 1000.0, 0.35, 0.8)), max(1, int(round(side / 250.0)))


def _ascii(text: str) -> str:
    return str(text).encode("ascii", "replace").decode("ascii")


def _fit(text: str, scale: float, max_width: int) -> tuple[str, int, int, int]:
    """Cut ``text`` (ending in "..") until it fits ``max_width``; its width, height, baseline."""
    (w, h), base = cv2.getTextSize(text, FONT, scale, 1)
    while w + 2 * LABEL_PAD > max_width and len(text) > 1:
        text = text[:-3] + ".." if len(text) > 3 else text[:-1]
        (w, h), base = cv2.getTextSize(text, FONT, scale, 1)
    return text, w, h, base


def _overlaps(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def _boxes_array(boxes) -> np.ndarray:
    if hasattr(boxes, "detach"):  # a torch tensor
        boxes = boxes.detach().cpu().numpy()
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.size == 0:
        return boxes.reshape(0, 4)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must have shape (K, 4), got {boxes.shape}")
    return boxes


def _layout(shape: tuple[int, ...], boxes: np.ndarray, labels: Sequence[str],
            scale: float) -> list[tuple[int, int, int, int, str, int]]:
    height, width = shape[:2]
    placed: list[tuple[int, int, int, int]] = []
    out = []
    for (x1, y1, x2, y2), label in zip(boxes, labels):
        text, tw, th, base = _fit(_ascii(label), scale, width)
        w, h = tw + 2 * LABEL_PAD, th + base + 2 * LABEL_PAD
        x1, y1, x2, y2 = (int(round(v)) for v in (x1, y1, x2, y2))
        # above the box, inside its top, below it, inside its bottom: the first that is
        # within the image and free of earlier labels, else the first one shifted inside
        candidates = [(x1, y1 - h), (x1, y1), (x1, y2 + 1), (x1, y2 - h + 1)]
        rects = []
        for cx, cy in candidates:
            inside = 0 <= cy and cy + h <= height
            cx = int(np.clip(cx, 0, max(width - w, 0)))
            cy = int(np.clip(cy, 0, max(height - h, 0)))
            rects.append(((cx, cy, w, h), inside))
        chosen = next((r for r, inside in rects
                       if inside and not any(_overlaps(r, p) for p in placed)),
                      next((r for r, inside in rects if inside), rects[0][0]))
        placed.append(chosen)
        out.append((*chosen, text, th))
    return out


def layout_labels(image_shape: tuple[int, ...], boxes, labels: Sequence[str]
                  ) -> list[tuple[int, int, int, int]]:
    """Where :func:`draw_boxes` puts each label's background: ``(x, y, w, h)`` in pixels.
    Within the image whenever the image is larger than the label (long labels are cut)."""
    boxes = _boxes_array(boxes)
    scale, _ = _font(*image_shape[:2])
    return [r[:4] for r in _layout(image_shape, boxes, labels, scale)]


def _dashed_line(img: np.ndarray, p: tuple[int, int], q: tuple[int, int],
                 color: tuple[int, int, int], thickness: int, dash: int) -> None:
    length = max(abs(q[0] - p[0]), abs(q[1] - p[1]))
    for start in range(0, length + 1, 2 * dash):
        end = min(start + dash, length)
        a = (p[0] + (q[0] - p[0]) * start // max(length, 1),
             p[1] + (q[1] - p[1]) * start // max(length, 1))
        b = (p[0] + (q[0] - p[0]) * end // max(length, 1),
             p[1] + (q[1] - p[1]) * end // max(length, 1))
        cv2.line(img, a, b, color, thickness, cv2.LINE_8)


def _highlight_rect(img: np.ndarray, p1: tuple[int, int], p2: tuple[int, int],
                    thickness: int) -> None:
    """A thick outline of red and white dashes: visible on any background and unlike any
    class colour, red ones included."""
    cv2.rectangle(img, p1, p2, (255, 255, 255), thickness, cv2.LINE_8)
    dash = max(4, 3 * thickness)
    (x1, y1), (x2, y2) = p1, p2
    for a, b in (((x1, y1), (x2, y1)), ((x2, y1), (x2, y2)), ((x2, y2), (x1, y2)),
                 ((x1, y2), (x1, y1))):
        _dashed_line(img, a, b, HIGHLIGHT_BGR, thickness, dash)


def draw_boxes(image_bgr: np.ndarray, boxes, labels: list[str], class_ids: list[int],
               highlight: list[bool] | None = None) -> np.ndarray:
    """A copy of ``image_bgr`` (uint8, H x W x 3) with each box outlined in its class colour
    and its label written on a filled background of that colour, in black or white text,
    kept inside the image (above the box when there is room, else inside or below it; long
    labels are cut to the image width). ``highlight[k]`` draws box ``k`` with a thicker
    red-and-white dashed outline instead (e.g. a wrong prediction). ``boxes`` (K, 4):
    x1, y1, x2, y2 inclusive pixels of this image (array, list or tensor)."""
    image = np.asarray(image_bgr)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"draw_boxes needs a uint8 BGR image of shape (H, W, 3), got "
                         f"{image.dtype} {image.shape}")
    boxes = _boxes_array(boxes)
    labels, class_ids = list(labels), [int(c) for c in class_ids]
    highlight = [False] * len(boxes) if highlight is None else [bool(h) for h in highlight]
    if not len(boxes) == len(labels) == len(class_ids) == len(highlight):
        raise ValueError(f"draw_boxes: {len(boxes)} boxes, {len(labels)} labels, "
                         f"{len(class_ids)} class ids and {len(highlight)} highlight flags")
    out = np.ascontiguousarray(image.copy())
    height, width = out.shape[:2]
    scale, thickness = _font(height, width)
    colors = [class_color(c) for c in class_ids]
    ints = [tuple(int(round(v)) for v in box) for box in boxes]
    # plain outlines first, highlighted ones over them, labels over every outline
    for (x1, y1, x2, y2), color, high in zip(ints, colors, highlight):
        if not high:
            cv2.rectangle(out, (x1, y1), (x2, y2), color, thickness, cv2.LINE_8)
    for (x1, y1, x2, y2), high in zip(ints, highlight):
        if high:
            _highlight_rect(out, (x1, y1), (x2, y2), 2 * thickness + 1)
    for (x, y, w, h, text, th), color in zip(_layout(out.shape, boxes, labels, scale), colors):
        cv2.rectangle(out, (x, y), (x + w - 1, y + h - 1), color, cv2.FILLED)
        cv2.putText(out, text, (x + LABEL_PAD, y + LABEL_PAD + th), FONT, scale,
                    text_color(color), 1, cv2.LINE_AA)
    return out
