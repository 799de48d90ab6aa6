"""Shared fixtures: a tiny prepared synthetic dataset and a tiny CPU model config."""

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from ivr_core.config import load_config
from ivr_core.data import synthetic
from ivr_core.data.prepare import prepare_ade

# resnet18 from scratch on 128-px images with a small memory: seconds per run on a CPU
TINY = ["model.backbone=resnet18", "model.weights=none", "model.norm=bn",
        "model.fixed_blocks=0", "model.tail_stride=2", "data.scale=128", "data.max_size=128",
        "data.workers=0", "memory.channels=16", "memory.fc_dim=32", "memory.norm=group",
        "memory.norm_groups=4", "train.optimizer=adamw", "train.lr=0.001", "train.iters=4",
        "train.snapshot_every=2", "train.log_every=1", "train.keep_last=10",
        "runtime.device=cpu", "runtime.deterministic=true"]


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory):
    """12 synthetic 128x128 images (8 train, 2 mval, 2 mtest), prepared with min_count 1."""
    root = tmp_path_factory.mktemp("synthetic")
    synthetic.generate(root, images=12, seed=0, size=(128, 128), workers=1,
                       show_progress=False)
    prepare_ade(root, root, 1, root, workers=1, show_progress=False,
                extra={"context_classes": list(synthetic.CONTEXT_CLASSES)})
    return root


@pytest.fixture
def tiny_cfg(synthetic_data):
    def make(*extra):
        return load_config(overrides=[*TINY, f"data.dir={synthetic_data}", "data.min_count=1",
                                      *extra])
    return make


@pytest.fixture
def tiny_overrides(synthetic_data):
    """The tiny config as --set items for the command line."""
    return [*TINY, f"data.dir={synthetic_data}", "data.min_count=1"]


# --- a hand-made ADE-format dataset (boxes and classes checked by hand in tests/data) ---
NAMES = ["-", "wall", "traffic light", "knob", "rare thing", "left arm", "right arm", "door"]
COUNTS = [100, 10, 7, 5, 2, 6, 6, 9]  # min_count 5 drops "rare thing"; line 0 is never a class
H, W = 20, 30


def _mask(path: Path, ids: np.ndarray) -> None:
    bgr = np.zeros((*ids.shape, 3), np.uint8)
    bgr[:, :, 0] = ids  # B = instance value
    bgr[:, :, 1] = 7  # class code, unused by the rules
    cv2.imwrite(str(path), bgr)


def _image(root: Path, rel: str, seg=None, parts=(), atr=None) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((H, W, 3), 128, np.uint8))
    stem = path.with_suffix("")
    if seg is not None:
        _mask(Path(f"{stem}_seg.png"), seg)
    for level, ids in enumerate(parts, 1):
        _mask(Path(f"{stem}_parts_{level}.png"), ids)
    if atr is not None:
        Path(f"{stem}_atr.txt").write_text(atr)
    return path


def _line(inst, level, name):
    return f'{inst:03d} # {level} # 0 # {name}, synonym # {name} # ""\n'


@pytest.fixture
def ade_root(tmp_path):
    root = tmp_path / "ADE"
    seg = np.zeros((H, W), np.uint8)
    seg[0:5, :] = 50  # wall: box [0, 0, 29, 4], area 150
    seg[10:15, 5:10] = 80  # traffic light: [5, 10, 9, 14], area 25
    seg[16:19, 20:26] = 120  # rare thing (filtered out)
    seg[6:9, 25:29] = 200  # left arm: [25, 6, 28, 8], area 12
    parts1 = np.zeros((H, W), np.uint8)
    parts1[11:13, 6:8] = 7  # knob: [6, 11, 7, 12], area 4
    parts2 = np.full((H, W), 3, np.uint8)  # no 0 pixel: value 3 is rank 0, value 9 rank 1
    parts2[1:3, 1:4] = 9  # door: [1, 1, 3, 2], area 6
    atr = (_line(1, 0, "wall") + _line(2, 0, "traffic light") + _line(3, 0, "rare thing")
           + "\n" + _line(4, 0, "left arm") + _line(1, 1, "knob") + _line(1, 2, "door"))
    good = "images/training/a/abbey/ADE_train_00000001.jpg"
    _image(root, good, seg, [parts1, parts2], atr)
    only_rare = np.zeros((H, W), np.uint8)
    only_rare[2:4, 2:4] = 9
    empty = "images/training/b/bar/ADE_train_00000002.jpg"
    _image(root, empty, only_rare, [], _line(1, 0, "rare thing"))
    no_seg = "images/validation/c/cave/ADE_val_00000003.jpg"
    _image(root, no_seg, None, [], _line(1, 0, "wall"))
    corrupt = "images/validation/c/cave/ADE_val_00000004.jpg"
    _image(root, corrupt, seg, [], atr).write_bytes(b"\xff\xd8 not a jpeg \xff\xd9")
    bad_atr = "images/validation/d/dock/ADE_val_00000005.jpg"
    _image(root, bad_atr, seg, [], "001 # 0 # wall\n")
    splits = root / "split"
    splits.mkdir()
    (splits / "objectnames.txt").write_text("".join(n + " \n" for n in NAMES))
    (splits / "objectcounts.txt").write_text("".join(f"{c}\n" for c in COUNTS))
    (splits / "train.txt").write_text(f"{good}\n{empty}\n")
    (splits / "mval.txt").write_text(f"{no_seg}\n{corrupt}\n{bad_atr}\n")
    (splits / "mtest.txt").write_text(f"{good}\n")
    return root


# --- disk: a tiny run's checkpoint is ~130 MB (resnet18 + AdamW state), and ~200 tests train ---
_FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.failed:
        item.stash[_FAILED] = True
    return report


@pytest.fixture(autouse=True)
def _free_tmp_path_of_a_passed_test(request):
    """Delete a passed test's tmp_path as soon as it ends (a failed one's stays for a look), so
    the suite's peak disk use is its shared fixtures plus one test, not the sum of all."""
    folder = request.getfixturevalue("tmp_path") if "tmp_path" in request.fixturenames else None
    yield
    if folder is not None and not request.node.stash.get(_FAILED, False):
        shutil.rmtree(folder, ignore_errors=True)
