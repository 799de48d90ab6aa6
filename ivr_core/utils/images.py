"""The one image reader: every image and mask ivr decodes goes through :func:`read_image`
(and :func:`read_header` where only the size is needed).

The rules, the same in ``prepare-data``, ``train``, ``test`` and ``predict``:

- the file is read as a checked dataset file (:mod:`ivr_core.utils.files`: a regular file,
  inside its root when one is given);
- the size in its header is compared with a pixel cap (``data.max_pixels``) before anything
  is decoded, so a small file whose header claims 65000 x 65000 pixels costs nothing;
- pixels are decoded as stored: an EXIF orientation tag is not applied. Annotations (ADE
  masks, COCO boxes and sizes) describe the stored pixels, and boxes given to
  ``ivr predict`` are read in that frame too;
- a JPEG that ends without its end-of-image marker is decoded as far as its data goes (as
  the authors' reader does), with libjpeg's own warning kept off stderr: the caller
  reports it (:meth:`LoadedImage.notes`);
- whatever OpenCV cannot decode (OpenCV 4 returns None, OpenCV 5 raises ``cv2.error``)
  is an :class:`~ivr_core.utils.files.UnreadableFile`, like every refusal above.
"""

from __future__ import annotations

import io
import os
import sys
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

import cv2
import numpy as np
from PIL import Image

from ivr_core.utils.files import UnreadableFile, open_checked, read_bytes

_DECODE = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION  # 3-channel BGR, as stored
_JPEG_START, _JPEG_END = b"\xff\xd8", b"\xff\xd9"
_EXIF_ORIENTATION = 0x0112


@dataclass(frozen=True)
class ImageHeader:
    width: int
    height: int
    orientation: int = 1  # EXIF orientation 1..8; 1: none (as stored), 6 and 8: a quarter turn


@dataclass(frozen=True)
class LoadedImage:
    bgr: np.ndarray  # (H, W, 3) uint8 BGR, in the stored frame
    orientation: int = 1  # the EXIF orientation tag, not applied
    cut_short: bool = False  # a JPEG without its end-of-image marker, decoded as far as it goes

    def notes(self) -> list[str]:
        """What the caller should tell the user about this image, which was still read."""
        notes = []
        if self.cut_short:
            notes.append("the JPEG data does not end with an end-of-image marker (cut "
                         "short?); decoded as far as it goes")
        if self.orientation != 1:
            notes.append(f"EXIF orientation {self.orientation} not applied: pixels and boxes "
                         "are in the image's stored frame")
        return notes


def read_header(path: str | os.PathLike, max_pixels: int, root: str | os.PathLike | None = None,
                what: str = "image") -> ImageHeader:
    """The header of a checked image file, refused (UnreadableFile) when unrecognised, empty
    or above ``max_pixels``; nothing is decoded."""
    with open_checked(path, root, what) as f:
        return _checked_header(f, Path(path), max_pixels, what)


def read_image(path: str | os.PathLike, max_pixels: int, root: str | os.PathLike | None = None,
               what: str = "image") -> LoadedImage:
    """Decode a checked image file (header within ``max_pixels``) to BGR in its stored
    frame; any failure is an UnreadableFile whose reason names ``what``."""
    path = Path(path)
    data = read_bytes(path, root, what)
    header = _checked_header(io.BytesIO(data), path, max_pixels, what)
    cut_short = data[:2] == _JPEG_START and _JPEG_END not in data[-64:]
    if cut_short:  # the marker added, OpenCV's in-memory decoder keeps what it decoded
        data += _JPEG_END
    try:
        with _quiet_stderr() if cut_short else nullcontext():
            bgr = cv2.imdecode(np.frombuffer(data, np.uint8), _DECODE)
    except cv2.error:  # OpenCV 5 raises where OpenCV 4 returns None
        bgr = None
    if bgr is None:
        raise UnreadableFile(path, f"corrupt or unreadable {what}")
    return LoadedImage(bgr, header.orientation, cut_short)


def decode_bytes_unchanged(data: bytes, max_pixels: int) -> np.ndarray:
    """Image bytes decoded as stored (any depth and channel count, OpenCV's
    IMREAD_UNCHANGED) once the header is within ``max_pixels``: the report's figures.
    ValueError when they are no readable image or claim more pixels."""
    try:
        _checked_header(io.BytesIO(data), Path("figure"), max_pixels, "image")
    except UnreadableFile as e:
        raise ValueError(f"not a readable image ({e.reason})") from None
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as e:  # OpenCV 5 raises on headers it refuses
        raise ValueError(f"not a readable image ({str(e).strip().splitlines()[-1]})") from None
    if image is None:
        raise ValueError("not a readable image")
    return image


def _checked_header(f: BinaryIO, path: Path, max_pixels: int, what: str) -> ImageHeader:
    found = _pillow_header(f)
    if found is None:
        raise UnreadableFile(path, f"corrupt or unreadable {what}")
    (width, height), info = found
    if width < 1 or height < 1:
        raise UnreadableFile(path, f"corrupt {what}: its header gives a {width}x{height} image")
    if width * height > max_pixels:
        raise UnreadableFile(path, f"its header says {width}x{height} = {width * height:,} "
                                   f"pixels, over the cap of {max_pixels:,} (data.max_pixels)")
    return ImageHeader(width, height, _orientation(info))


def _pillow_header(f: BinaryIO) -> tuple[tuple[int, int], dict] | None:
    """(width, height) and info of the first Pillow format plugin that reads the header of
    ``f`` (nothing is decoded); None when none does.

    ``PIL.Image.open`` tries the same plugins in the same order, but refuses, before the
    size can be read, any image above its own fixed pixel limit: ivr's cap could then
    neither name the size nor be set above that limit. So the plugins are called here."""
    Image.init()
    prefix = f.read(16)
    for name in Image.ID:
        factory, accept = Image.OPEN[name]
        f.seek(0)
        try:
            verdict = accept(prefix) if accept else True
            if not verdict or isinstance(verdict, str):  # a str is Pillow's "maybe" warning
                continue
            image = factory(f, "")
        except Exception:  # noqa: BLE001 - a plugin meeting a hostile header may raise anything
            continue
        return image.size, image.info
    return None


def _orientation(info: dict) -> int:
    raw = info.get("exif")
    if not raw:
        return 1
    try:
        exif = Image.Exif()
        exif.load(raw)
        value = exif.get(_EXIF_ORIENTATION, 1)
    except Exception:  # noqa: BLE001 - a malformed EXIF block says nothing ivr relies on
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


@contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Keep what C libraries write straight to file descriptor 2 off the terminal (libjpeg's
    "Premature end of JPEG file"): ivr says it in its own words."""
    try:
        saved = os.dup(2)
    except OSError:  # no stderr at all: nothing to keep quiet
        yield
        return
    sys.stderr.flush()
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
