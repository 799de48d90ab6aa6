"""Figures encoded for a page: scaled to the shown width, photo-like ones lossy, charts
lossless, and any readable picture decoded to BGR."""

import cv2
import numpy as np
import pytest

from ivr_core.visualization.encode import (PAGE_WIDTH, decode_image, encode_for_page,
                                           is_photo_like)


def photo(height=400, width=1600):
    """Smooth gradients plus noise: tens of thousands of colours, like a photograph."""
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 // width, y * 255 // height, (x + y) * 255 // (width + height)], 2)
    noise = np.random.default_rng(0).integers(-20, 21, base.shape)
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def chart(height=300, width=500):
    """A white canvas with a few flat bars and a text label: few colours, like a plot."""
    image = np.full((height, width, 3), 255, np.uint8)
    for i, color in enumerate([(180, 119, 31), (40, 39, 214), (44, 160, 44)]):
        cv2.rectangle(image, (40 + 140 * i, 100), (140 + 140 * i, 280), color, cv2.FILLED)
    cv2.putText(image, "AP 0.73", (20, 40), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (0, 0, 0), 1,
                cv2.LINE_AA)
    return image


def test_photo_like_pictures_become_webp_at_the_page_width():
    image = photo()
    encoded = encode_for_page(image)
    assert encoded.mime == "image/webp" and (encoded.width, encoded.height) == (PAGE_WIDTH, 300)
    back = decode_image(encoded.data)
    assert back.shape == (300, PAGE_WIDTH, 3)
    lossless = cv2.imencode(".png", cv2.resize(image, (PAGE_WIDTH, 300),
                                               interpolation=cv2.INTER_AREA))[1].size
    assert len(encoded.data) * 4 < lossless
    # lossy, but close: the mean error is a few grey levels
    reference = cv2.resize(image, (PAGE_WIDTH, 300), interpolation=cv2.INTER_AREA)
    assert np.abs(back.astype(int) - reference).mean() < 8


def test_charts_stay_lossless_and_small_pictures_keep_their_size():
    image = chart()
    assert not is_photo_like(image)
    encoded = encode_for_page(image)
    assert encoded.mime == "image/png" and (encoded.width, encoded.height) == (500, 300)
    assert np.array_equal(decode_image(encoded.data), image)  # never enlarged, exact
    assert encode_for_page(image, max_width=250)[2:] == (250, 150)


def test_decode_lays_transparency_on_white_and_turns_grey_to_bgr():
    rgba = np.zeros((4, 6, 4), np.uint8)
    rgba[:, :3] = (0, 0, 255, 255)  # opaque red on the left, transparent on the right
    image = decode_image(cv2.imencode(".png", rgba)[1].tobytes())
    assert image.shape == (4, 6, 3)
    assert tuple(image[0, 0]) == (0, 0, 255) and tuple(image[0, 5]) == (255, 255, 255)
    grey = decode_image(cv2.imencode(".png", np.full((3, 3), 7, np.uint16) * 256)[1].tobytes())
    assert grey.shape == (3, 3, 3) and (grey == 7).all()
    for data in (b"", b"not an image", b"\x89PNG\r\n\x1a\n" + b"\0" * 20):
        with pytest.raises(ValueError, match="not a readable image"):
            decode_image(data)
