import dataclasses
from pathlib import Path

import pytest

from ivr_core.config import (CONFIG_VERSION, RENAMED, Config, defaults_toml, load_config,
                             parse_override, preset_path, upgrade)
from ivr_core.errors import IvrError
from ivr_core.utils.tomltext import loads  # the standard library's tomllib

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_are_the_authors_ade_setting():
    cfg = load_config()
    assert (cfg.model.backbone, cfg.model.norm, cfg.model.fixed_blocks) == ("resnet50", "frozen_bn", 1)
    assert (cfg.train.lr, cfg.train.momentum, cfg.train.weight_decay) == (5e-4, 0.9, 1e-4)
    assert (cfg.train.iters, cfg.train.lr_steps, cfg.train.snapshot_every) == (320000, [280000], 10000)
    assert (cfg.memory.channels, cfg.memory.iterations, cfg.memory.fc_dim, cfg.memory.beta) == (512, 3, 4096, 0.5)
    assert (cfg.data.scale, cfg.data.max_size) == (600, 1000)


def test_shipped_ivr_toml_is_the_generated_one():
    text = (ROOT / "ivr.toml").read_text(encoding="utf-8")
    assert text == defaults_toml(), "ivr.toml is stale: python -m ivr_core.config > ivr.toml"
    assert loads(text) == Config().to_dict()
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            assert "#" in line, f"uncommented key in ivr.toml: {line}"


def test_a_resolved_config_is_frozen():
    cfg = load_config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.train.lr = 1.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.runtime = cfg.runtime
    assert cfg.train.lr == 5e-4


# one rename per version, as a later version of ivr might make them
RENAMES = {1: {}, 2: {"memory.iters": "memory.iterations"},
           3: {"memory.fc": "memory.fc_dim", "model.arch": "model.backbone"}}


def test_an_old_config_has_its_renamed_keys_upgraded():
    old = {"model": {"arch": "resnet18"}, "memory": {"iters": 4, "fc": 256}}  # no version: 0
    assert upgrade(old, "old", RENAMES) == {"model": {"backbone": "resnet18"},
                                            "memory": {"iterations": 4, "fc_dim": 256}}
    assert old == {"model": {"arch": "resnet18"}, "memory": {"iters": 4, "fc": 256}}
    # a version-2 config already says iterations; only the version-3 renames apply
    v2 = {"version": 2, "memory": {"iterations": 5, "fc": 256}}
    assert upgrade(v2, "v2", RENAMES) == {"memory": {"iterations": 5, "fc_dim": 256}}
    with pytest.raises(IvrError, match=r"config key 'version' in new must be an integer 0\.\.3"):
        upgrade({"version": 4}, "new", RENAMES)


def test_a_checkpoint_config_of_an_older_version_loads(monkeypatch):
    saved = load_config(overrides=["memory.iterations=4"]).to_dict()
    assert saved["version"] == CONFIG_VERSION
    saved = {k: v for k, v in saved.items() if k != "version"}  # written before versions
    saved["memory"]["iters"] = saved["memory"].pop("iterations")
    with pytest.raises(IvrError, match="unknown config key 'memory.iters'"):
        load_config(base=saved)
    monkeypatch.setitem(RENAMED, CONFIG_VERSION, {"memory.iters": "memory.iterations"})
    cfg = load_config(base=saved)
    assert cfg.memory.iterations == 4 and cfg.version == CONFIG_VERSION
    assert load_config(base=cfg.to_dict()) == cfg


def test_file_then_overrides_in_order(tmp_path):
    f = tmp_path / "a.toml"
    f.write_text('[train]\nlr = 0.01\niters = 50\n[model]\nbackbone = "resnet18"\n')
    cfg = load_config([f], ["train.lr=0.02", "model.type=memory", "train.lr_steps=[10, 20]"])
    assert cfg.train.lr == 0.02 and cfg.train.iters == 50
    assert cfg.model.backbone == "resnet18" and cfg.model.type == "memory"
    assert cfg.train.lr_steps == [10, 20]


def test_int_is_accepted_for_float_keys():
    assert load_config(overrides=["train.lr=1"]).train.lr == 1.0


@pytest.mark.parametrize("item, message", [
    ("train.lrr=0.1", "unknown config key 'train.lrr'"),
    ("trian.lr=0.1", "unknown config section 'trian'"),
    ("train.lr=fast", "config key 'train.lr' must be float"),
    ("train.iters=1.5", "config key 'train.iters' must be int"),
    ("data.flip=1", "config key 'data.flip' must be bool"),
    ("model.crop_size=-7", "config key 'model.crop_size' must be > 0"),
    ("data.scale=0", "config key 'data.scale' must be > 0"),
    ("model.backbone=vgg16", "config key 'model.backbone' must be one of"),
    ("memory.context_layers=2", "config key 'memory.context_layers' must be odd"),
    ("train.lr_steps=[3, 1]", "config key 'train.lr_steps' must be increasing"),
    ("train.lr_steps=[1, 'a']", "config key 'train.lr_steps[1]' must be int, got str 'a'"),
    ("train.lr_steps=1", "config key 'train.lr_steps' must be a list of int"),
    ("runtime.device=gpu", "config key 'runtime.device'"),
    ("trainlr=1", "--set expects section.key=value"),
])
def test_bad_overrides_name_the_key(item, message):
    with pytest.raises(IvrError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_config(overrides=[item])


def test_bad_files(tmp_path):
    with pytest.raises(IvrError, match="config file not found"):
        load_config([tmp_path / "missing.toml"])
    bad = tmp_path / "bad.toml"
    bad.write_text("[train\nlr = 1")
    with pytest.raises(IvrError, match="not valid TOML"):
        load_config([bad])
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("[train]\nspeed = 3\n")
    with pytest.raises(IvrError, match=f"unknown config key 'train.speed' in {unknown}"):
        load_config([unknown])


def test_override_values_parse_as_toml_with_bare_strings():
    assert parse_override("model.weights=/tmp/x.pth") == {"model": {"weights": "/tmp/x.pth"}}
    assert parse_override("train.lr = 1e-3") == {"train": {"lr": 1e-3}}
    assert parse_override("data.flip=false") == {"data": {"flip": False}}
    assert parse_override('data.dir="a b"') == {"data": {"dir": "a b"}}
    assert parse_override("data.dir=a b") == {"data": {"dir": "a b"}}  # not TOML: as written
    assert parse_override("runtime.device=cuda:1") == {"runtime": {"device": "cuda:1"}}
    assert parse_override("train.lr_steps=[10, 20]") == {"train": {"lr_steps": [10, 20]}}


def test_roundtrip_through_toml_and_checkpoint_dict():
    cfg = load_config(overrides=["train.lr=0.125", "model.type=memory"])
    assert load_config(base=loads(cfg.to_toml())) == cfg
    assert load_config(base=cfg.to_dict()) == cfg


def test_a_saved_config_with_awkward_strings_loads_back_equal(tmp_path):
    awkward = 'C:\\data\\"ADE" \'20k\'\n\tunicode é ☃ 🚀 \x7f\x01 # not a comment'
    cfg = load_config(overrides=["train.lr=5e-4", "train.weight_decay=1e-3",
                                 "train.lr_steps=[10, 20]"])
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, dir=awkward))
    path = tmp_path / "config.toml"
    path.write_text(cfg.to_toml(), encoding="utf-8")
    again = load_config([path])
    assert again == cfg and again.data.dir == awkward
    assert again.train.lr == 5e-4 and again.train.weight_decay == 1e-3


def test_demo_preset_is_valid():
    cfg = load_config([preset_path("demo")])
    assert cfg.model.backbone == "resnet18" and cfg.model.weights == "none"
    with pytest.raises(IvrError, match="unknown preset"):
        preset_path("nope")
