"""Real image files with the flaws datasets bring: headers that claim huge sizes, a JPEG cut
short, a JPEG carrying an EXIF orientation tag. Each is built byte by byte from a valid
file, so the readers meet the bytes a real bad file holds."""

import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
from PIL import Image


def bmp_claiming_width(path: Path, width: int = 0x7FFFFFFF) -> Path:
    """A 4x4 BMP whose header says it is ``width`` pixels wide."""
    data = bytearray(cv2.imencode(".bmp", np.zeros((4, 4, 3), np.uint8))[1].tobytes())
    data[18:22] = struct.pack("<i", width)  # BITMAPINFOHEADER biWidth
    path.write_bytes(bytes(data))
    return path


def jpeg_claiming_size(path: Path, width: int = 65000, height: int = 65000) -> Path:
    """An 8x8 JPEG (a few hundred bytes) whose start-of-frame says ``width`` x ``height``."""
    data = bytearray(cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))[1].tobytes())
    sof = data.index(b"\xff\xc0")  # baseline SOF0: FF C0, length, precision, height, width
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    path.write_bytes(bytes(data))
    return path


def png_claiming_size(path: Path, width: int = 40000, height: int = 40000) -> Path:
    """A PNG of valid chunks (CRCs right) whose IHDR says ``width`` x ``height``, RGB."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + \
            struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                     + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))
    return path


def jpeg_cut_short(path: Path, height: int, width: int, keep: float = 0.6,
                   seed: int = 0) -> Path:
    """A noise JPEG of which only the first ``keep`` of the bytes are written: no
    end-of-image marker, the last rows missing."""
    noise = np.random.default_rng(seed).integers(0, 256, (height, width, 3), np.uint8)
    data = cv2.imencode(".jpg", noise)[1].tobytes()
    path.write_bytes(data[:int(len(data) * keep)])
    return path


def jpeg_with_orientation(path: Path, bgr: np.ndarray, orientation: int) -> Path:
    """``bgr`` saved as stored pixels, with an EXIF orientation tag (6: display turned a
    quarter clockwise) that OpenCV's default reading applies."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(np.ascontiguousarray(bgr[:, :, ::-1])).save(path, exif=exif.tobytes(),
                                                                quality=95)
    return path
