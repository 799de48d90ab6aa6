"""Bad configs, on the command line and in files: one line that names the key (and where it
came from) and what it must be, a non-zero exit, and no run folder left behind. Messages are
checked on what they name, not on their wording."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from cli_support import error_naming, run, sets
from conftest import TINY
from ivr_core.config import TrainConfig

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def known_keys(section) -> str:
    return ", ".join(f.name for f in dataclasses.fields(section))


CONFIG_CASES = {  # (--set item, the same as a TOML file, what the message names; {src}: where)
    "unknown key": ("train.speed=1", "[train]\nspeed = 1\n",
                    ("unknown config key 'train.speed'", "in {src}",
                     f"known keys: {known_keys(TrainConfig)}")),
    "unknown section": ("trian.lr=1", "[trian]\nlr = 1\n",
                        ("unknown config section 'trian'", "in {src}",
                         "known sections: data, model, memory, graph, train, runtime")),
    "wrong type": ("data.scale=big", '[data]\nscale = "big"\n',
                   ("'data.scale'", "must be int", "str 'big'")),
    "float for int": ("data.scale=600.5", "[data]\nscale = 600.5\n",
                      ("'data.scale'", "must be int", "float 600.5")),
    "int for bool": ("data.flip=1", "[data]\nflip = 1\n",
                     ("'data.flip'", "must be bool", "int 1")),
    "list type": ("train.lr_steps=5", "[train]\nlr_steps = 5\n",
                  ("'train.lr_steps'", "must be a list of int", "got 5")),
    "negative size": ("data.scale=-600", "[data]\nscale = -600\n",
                      ("'data.scale'", "must be > 0", "got -600")),
    "zero crop": ("model.crop_size=0", "[model]\ncrop_size = 0\n",
                  ("'model.crop_size'", "must be > 0", "got 0")),
    "negative workers": ("data.workers=-1", "[data]\nworkers = -1\n",
                         ("'data.workers'", "must be >= 0", "got -1")),
    "bad choice": ("model.type=transformer", '[model]\ntype = "transformer"\n',
                   ("'model.type'", "one of baseline, memory, global, full", "'transformer'")),
}


@pytest.mark.parametrize("via", ["--set", "--config"])
@pytest.mark.parametrize("case", CONFIG_CASES)
def test_bad_config(case, via, synthetic_data, tmp_path):
    item, toml_text, fragments = CONFIG_CASES[case]
    if via == "--set":
        args, src = ["--set", item], f"--set {item}"
    else:
        file = tmp_path / "bad.toml"
        file.write_text(toml_text)
        args, src = ["--config", file], str(file)
    run_dir = tmp_path / "run"
    result = run("train", "--data", synthetic_data, "--run-dir", run_dir, "-q", *args)
    error_naming(result, *(f.format(src=src) for f in fragments))
    assert not run_dir.exists()


def test_bad_config_files_and_set_syntax(tmp_path):
    run_dir = tmp_path / "run"
    missing = tmp_path / "missing.toml"
    error_naming(run("train", "--run-dir", run_dir, "--config", missing),
                 f"config file not found: {missing}")
    broken = tmp_path / "broken.toml"
    broken.write_text("[train\nlr = 1\n")
    error_naming(run("train", "--run-dir", run_dir, "--config", broken),
                 f"config file {broken} is not valid TOML")
    latin = tmp_path / "latin.toml"
    latin.write_bytes('[model]\nweights = "/home/jos\xe9/r50.pth"\n'.encode("latin-1"))
    error_naming(run("train", "--run-dir", run_dir, "--config", latin),
                 f"config file {latin} is not valid TOML")
    not_table = tmp_path / "flat.toml"
    not_table.write_text("train = 3\n")
    error_naming(run("train", "--run-dir", run_dir, "--config", not_table),
                 f"config section 'train' in {not_table}", "must be a table")
    for item in ("train.lr", "lr=0.1"):
        error_naming(run("train", "--run-dir", run_dir, "--set", item),
                     "--set expects section.key=value", f"'{item}'")
    assert not run_dir.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is visible")
@pytest.mark.parametrize("command", ["train", "test"])
def test_cuda_without_a_gpu(command, checkpoint, synthetic_data, tmp_path):
    if command == "train":
        out = tmp_path / "run"
        result = run("train", "--data", synthetic_data, "--run-dir", out, "--device", "cuda",
                     "-q", *sets([*TINY, "data.min_count=1"]))
    else:
        out = tmp_path / "results.json"
        result = run("test", "--checkpoint", checkpoint, "--out", out, "--device", "cuda", "-q")
    message = error_naming(result, "device 'cuda'", "no CUDA GPU is visible",
                           f"torch {torch.__version__}", "use --device cpu")
    assert f"CUDA {torch.version.cuda or 'none'}" in message
    assert not out.exists()
