"""Corrupt or oversized image headers: the file is listed and skipped by prepare-data, skipped
with a warning by training and testing, refused before anything is decoded; the same under
OpenCV 4 (returns None) and OpenCV 5 (raises)."""

import json
import shutil

import cv2
import numpy as np
import pytest

from cli_support import BAD, ade_dataset, assert_prepare_skips_bad, one_line_error, run, sets
from conftest import TINY
from image_files import (bmp_claiming_width, jpeg_claiming_size, jpeg_cut_short,
                         png_claiming_size)
from ivr_core.data.dataset import RegionDataset, load_prepared

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

# case -> (write the file, the size its header claims)
HUGE = {"BMP 2147483647 wide": (bmp_claiming_width, "2147483647x4 = 8,589,934,588"),
        "JPEG SOF 65000x65000": (jpeg_claiming_size, "65000x65000 = 4,225,000,000"),
        "PNG IHDR 40000x40000": (png_claiming_size, "40000x40000 = 1,600,000,000")}


def over_cap(size: str, cap: int = 100_000_000) -> str:
    return f"its header says {size} pixels, over the cap of {cap:,} (data.max_pixels)"


@pytest.mark.parametrize("case", HUGE)
def test_prepare_lists_and_skips_an_image_whose_header_claims_too_many_pixels(case, tmp_path):
    write, size = HUGE[case]
    root = ade_dataset(tmp_path / "ADE")
    write(root / BAD)
    assert_prepare_skips_bad(root, tmp_path / "out", f"  {root.resolve() / BAD}: {over_cap(size)}")


@pytest.mark.parametrize("case", HUGE)
def test_training_and_testing_skip_it_with_the_reason(case, synthetic_data, tmp_path):
    write, size = HUGE[case]
    data = tmp_path / "data"
    shutil.copytree(synthetic_data, data)
    split = load_prepared(data, "train", 1)
    first = split.root / split.images[0]["image"]
    write(first)
    item = RegionDataset(split, 64, 64)[0]
    assert item == {"error": f"cannot read image {first} ({over_cap(size)})", "index": 0}
    if case != "PNG IHDR 40000x40000":
        return  # one command end to end is enough
    prepared = data / "ade_train_1.json"  # two images: two iterations see both
    doc = json.loads(prepared.read_text())
    prepared.write_text(json.dumps(doc | {"images": doc["images"][:2]}))
    result = run("train", "--data", data, "--run-dir", tmp_path / "run", "-q",
                 *sets([*TINY, "data.min_count=1", "train.iters=2", "data.flip=false"]))
    assert result.exit_code == 0, result.output
    assert f"warning: cannot read image {first} ({over_cap(size)}); skipped" in \
        " ".join(result.output.split())


def test_the_cap_is_checked_before_decoding_and_is_the_config_key(tmp_path, monkeypatch):
    from ivr_core.utils.files import UnreadableFile
    from ivr_core.utils.images import read_image

    path = tmp_path / "a.png"
    cv2.imwrite(str(path), np.full((64, 48, 3), 7, np.uint8))
    decoded = []
    real = cv2.imdecode
    monkeypatch.setattr(cv2, "imdecode", lambda *a: decoded.append(1) or real(*a))
    with pytest.raises(UnreadableFile, match=r"48x64 = 3,072 pixels, over the cap of 3,071"):
        read_image(path, max_pixels=3071)
    assert not decoded  # refused from the header alone
    assert read_image(path, max_pixels=3072).bgr.shape == (64, 48, 3) and decoded


@pytest.mark.parametrize("value", ["0", "2147483648"])
def test_max_pixels_is_range_checked(value, synthetic_data, tmp_path):
    result = run("train", "--data", synthetic_data, "--run-dir", tmp_path / "run",
                 *sets([*TINY, "data.min_count=1", f"data.max_pixels={value}"]))
    assert one_line_error(result) == ("config key 'data.max_pixels' must be 1..1073741824 "
                                      f"(OpenCV decodes no more), got {value}")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("opencv", ["4: returns None", "5: raises cv2.error"])
def test_opencv_4_and_5_failures_are_both_an_unreadable_image(opencv, tmp_path, monkeypatch):
    """OpenCV 5 raises where OpenCV 4 returned None (the only behaviour mocked here)."""
    from ivr_core.utils.files import UnreadableFile
    from ivr_core.utils.images import read_image

    path = tmp_path / "a.png"
    cv2.imwrite(str(path), np.zeros((4, 4, 3), np.uint8))

    def imdecode(*args):
        if opencv.startswith("4"):
            return None
        raise cv2.error("OpenCV(5.0.0) loadsave.cpp:79: error: (-215:Assertion failed)")

    monkeypatch.setattr(cv2, "imdecode", imdecode)
    with pytest.raises(UnreadableFile, match=r"a.png: corrupt or unreadable image$"):
        read_image(path, max_pixels=100)


def test_a_png_with_a_good_header_and_corrupt_data_is_unreadable(tmp_path):
    from ivr_core.utils.files import UnreadableFile
    from ivr_core.utils.images import read_image

    path = tmp_path / "a.png"
    data = bytearray(cv2.imencode(".png", np.arange(48, dtype=np.uint8).reshape(4, 4, 3))[1])
    idat = data.index(b"IDAT")
    data[idat + 4:idat + 12] = b"\xde\xad\xbe\xef" * 2  # compressed pixels spoiled
    path.write_bytes(bytes(data))
    with pytest.raises(UnreadableFile, match="corrupt or unreadable image"):
        read_image(path, max_pixels=100)


def test_a_jpeg_cut_short_decodes_without_libjpegs_message(tmp_path, capfd):
    from ivr_core.utils.images import read_image

    path = jpeg_cut_short(tmp_path / "cut.jpg", 64, 48)
    capfd.readouterr()
    assert cv2.imread(str(path)) is not None  # OpenCV's own reading decodes it, but says so:
    assert "Premature end of JPEG file" in capfd.readouterr().err
    loaded = read_image(path, max_pixels=10_000)
    assert loaded.cut_short and loaded.bgr.shape == (64, 48, 3)
    np.testing.assert_array_equal(loaded.bgr, cv2.imread(str(path)))  # the same pixels
    capfd.readouterr()
    read_image(path, max_pixels=10_000)
    assert capfd.readouterr().err == ""
