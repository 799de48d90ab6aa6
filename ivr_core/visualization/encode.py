"""Figures encoded for a web page: at the width they are shown, photo-like pictures lossy,
charts lossless.

A figure of ``ivr test --visualize`` is a lossless PNG of up to 1600 px: right for the file,
about 1 MB each inside an HTML page. :func:`encode_for_page` scales a picture down to the
width a page shows it at and picks the encoding by what the picture holds: many distinct
colours (photographs, upsampled images, heat maps) compress ten times smaller as lossy WebP
at a quality where labels stay crisp, while charts with a few flat colours stay lossless
(lossy encoding would blur their thin lines and small text for little gain).
"""

from __future__ import annotations

from typing import NamedTuple

import cv2
import numpy as np

from ivr_core.config import DataConfig
from ivr_core.utils.images import decode_bytes_unchanged

__all__ = ["EncodedImage", "decode_image", "encode_for_page", "is_photo_like"]

PAGE_WIDTH = 1200  # px: the content width of a 1280-px browser window; wider is scaled down
LOSSY_QUALITY = 85  # WebP (or JPEG) quality of photo-like figures
PHOTO_COLOURS = 4096  # distinct colours in the sample above which a picture is photo-like
_SAMPLE = 4  # every 4th pixel in each direction is enough to count colours
# a figure whose header claims more pixels is not decoded: the images' cap, data.max_pixels
FIGURE_MAX_PIXELS = DataConfig().max_pixels


class EncodedImage(NamedTuple):
    mime: str  # "image/webp", "image/jpeg" or "image/png"
    data: bytes
    width: int  # px of the encoded picture
    height: int


def decode_image(data: bytes, max_pixels: int = FIGURE_MAX_PIXELS) -> np.ndarray:
    """``data`` (PNG, JPEG, WebP, ...) as a uint8 BGR image (H, W, 3), decoded by ivr's
    checked decoder (header within ``max_pixels``); a transparent picture is laid on white,
    a grey one turned to BGR, 16-bit values reduced to 8. ValueError when the bytes are not
    an image OpenCV can read, or claim more pixels."""
    image = decode_bytes_unchanged(data, max_pixels)
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise ValueError(f"unsupported pixel type {image.dtype}")
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        alpha = image[:, :, 3:].astype(np.float32) / 255.0
        white = np.full_like(image[:, :, :3], 255, dtype=np.float32)
        return np.round(image[:, :, :3] * alpha + white * (1 - alpha)).astype(np.uint8)
    return image


def is_photo_like(image_bgr: np.ndarray) -> bool:
    """More than :data:`PHOTO_COLOURS` distinct colours among every 4th pixel of every 4th
    row: a photograph or a smooth map, not a chart."""
    sample = image_bgr[::_SAMPLE, ::_SAMPLE].reshape(-1, 3).astype(np.int32)
    codes = (sample[:, 0] << 16) | (sample[:, 1] << 8) | sample[:, 2]
    return len(np.unique(codes)) > PHOTO_COLOURS


def _fit(image: np.ndarray, max_width: int) -> np.ndarray:
    height, width = image.shape[:2]
    if width <= max_width:
        return image
    size = (max_width, max(1, round(height * max_width / width)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def _lossy() -> tuple[str, str, list[int]]:
    """(suffix, mime, parameters): WebP where this OpenCV can write it, else JPEG."""
    if cv2.haveImageWriter(".webp"):
        return ".webp", "image/webp", [cv2.IMWRITE_WEBP_QUALITY, LOSSY_QUALITY]
    return ".jpg", "image/jpeg", [cv2.IMWRITE_JPEG_QUALITY, LOSSY_QUALITY]


def encode_for_page(image_bgr: np.ndarray, max_width: int = PAGE_WIDTH) -> EncodedImage:
    """``image_bgr`` (H, W, 3 uint8) scaled down to at most ``max_width`` px wide (aspect
    kept, never enlarged) and encoded as lossy WebP (JPEG without a WebP encoder) when it
    is photo-like, as PNG at the highest compression otherwise."""
    small = _fit(image_bgr, max_width)
    if is_photo_like(small):
        suffix, mime, params = _lossy()
    else:
        suffix, mime, params = ".png", "image/png", [cv2.IMWRITE_PNG_COMPRESSION, 9]
    ok, data = cv2.imencode(suffix, small, params)
    if not ok:
        raise ValueError(f"cannot encode a {small.shape} image as {suffix}")
    return EncodedImage(mime, data.tobytes(), small.shape[1], small.shape[0])
