"""Typed configuration: dataclass defaults <- TOML files <- ``--set section.key=value``.

The defaults below are the authors' ADE20K setting (docs/design.md, "The model" and
"Training schedule"). Each key is declared once, with :func:`setting`: its default, its
help text and its constraints. :func:`validate` checks the constraints, and ``ivr.toml`` at
the repository root is generated from the same declarations (:func:`defaults_toml`;
``python -m ivr_core.config > ivr.toml``). Unknown sections or keys, wrong types and
out-of-range values are :class:`IvrError`\\ s naming the key. A resolved config is frozen
(derive a changed one with :func:`dataclasses.replace`) and carries a ``version``, so an old
checkpoint's config is read under renamed keys' new names (:data:`RENAMED`).
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from ivr_core.errors import IvrError
from ivr_core.utils import tomltext

BACKBONES = ("resnet18", "resnet34", "resnet50", "resnet101")
MODEL_TYPES = ("baseline", "memory", "global", "full")
MAX_PIXELS_LIMIT = 2**30  # OpenCV's own ceiling on decoded pixels (CV_IO_MAX_IMAGE_PIXELS)
DATASETS = ("ade", "coco", "vg")  # the prepared-file families (data.dataset)
NO_WEIGHTS = "none"  # model.weights: the backbone starts from random weights
INT_LIMIT = 2**63 - 1  # any integer without its own bound (iterations, seeds): what torch holds

CONFIG_VERSION = 1  # bump it with each key rename, and list the rename in RENAMED
# version -> {"old section.key": "new section.key"}: the renames made by that version. A
# config of an older version (no ``version`` key: 0) goes through every later entry in turn.
RENAMED: dict[int, dict[str, str]] = {1: {}}


def setting(default: Any, help: str, *, choices: Iterable[str] = (), minimum: float | None = None,
            positive: bool = False, limit: int | None = None,
            within: tuple[float, float, str] | None = None, odd: str | None = None) -> Any:
    """A config key: ``default`` and ``help`` (the comment ``ivr.toml`` carries), and the
    rules :func:`validate` applies: one of ``choices``; ``positive`` (> 0) or at least
    ``minimum``; at most ``limit`` (a size cap far above the authors' setting, so a slip such
    as memory.fc_dim=1000000000 is one line before anything is allocated); ``within`` (low,
    high, how the range reads in the message); ``odd`` (the reason appended to the message)."""
    rules = dict(help=help, choices=tuple(choices), minimum=minimum, positive=positive,
                 limit=limit, within=within, odd=odd)
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=rules)
    return field(default=default, metadata=rules)


@dataclass(frozen=True)
class DataConfig:
    dataset: str = setting("ade", "ade (ADE20K, synthetic): ade_<split>_<min_count>.json | coco: "
                           "coco_<split>.json | vg: vg_<split>.json", choices=DATASETS)
    dir: str = setting("data/ADE", "folder holding the prepared split files")
    root: str = setting("", 'dataset root with the images; "" = the root recorded by '
                        "`ivr prepare-data`")
    train_split: str = setting("train", "split trained on (train, mval, mtest)")
    test_split: str = setting("mtest", "split `ivr test` evaluates by default")
    min_count: int = setting(5, "class frequency threshold the ADE files were prepared with "
                             "(ade_*_5.json)", minimum=0)
    scale: int = setting(600, "shorter image side after resizing, in pixels", positive=True,
                         limit=4096)
    max_size: int = setting(1000, "cap on the longer side after resizing, in pixels",
                            positive=True, limit=8192)
    flip: bool = setting(True, "also train on horizontally flipped copies "
                         "(left_*/right_* classes swap)")
    workers: int = setting(2, "DataLoader worker processes decoding and resizing images",
                           minimum=0, limit=256)
    max_pixels: int = setting(100_000_000, "images whose header claims more pixels are "
                              "skipped, never decoded",
                              within=(1, MAX_PIXELS_LIMIT,
                                      f"1..{MAX_PIXELS_LIMIT} (OpenCV decodes no more)"))


@dataclass(frozen=True)
class ModelConfig:
    type: str = setting("baseline", "baseline | memory (local spatial memory) | global "
                        "(graphs) | full (both)", choices=MODEL_TYPES)
    backbone: str = setting("resnet50", "resnet18 | resnet34 | resnet50 | resnet101 "
                            "(torchvision)", choices=BACKBONES)
    weights: str = setting("torchvision", "torchvision (ImageNet, cached or downloaded) | "
                           f"{NO_WEIGHTS} (random init) | path/to/file.pth")
    norm: str = setting("frozen_bn", "frozen_bn: all batch norms frozen (pretrained) | bn: "
                        "trainable (scratch)", choices=("frozen_bn", "bn"))
    fixed_blocks: int = setting(1, "frozen stages: 0 none, 1 conv1 + layer1 (authors), "
                                "2 + layer2, 3 + layer3", within=(0, 3, "0..3"))
    tail_stride: int = setting(1, "stride of layer4, run on each region's crop (authors: 1)",
                               positive=True, limit=16)
    crop_size: int = setting(7, "side of the crop_and_resize region features", positive=True,
                             limit=64)


@dataclass(frozen=True)
class MemoryConfig:
    channels: int = setting(512, "memory channels C_m", positive=True, limit=4096)
    init_size: int = setting(20, "side of the learned memory init, resized to the feature map",
                             positive=True, limit=512)
    iterations: int = setting(3, "ITER: iteration 0 is the baseline head, then ITER - 1 "
                              "memory updates", positive=True, limit=32)
    fc_dim: int = setting(4096, "width of the two FC layers reading a region's memory crop",
                          positive=True, limit=16384)
    context_layers: int = setting(3, "conv layers of the context block: one conv + residual "
                                  "blocks of two", positive=True, limit=63,
                                  odd=" (one conv, then residual blocks of two)")
    input_convs: int = setting(2, "convs turning (pool5, logits) into the update input: a "
                               "1x1, then 3x3s", positive=True, limit=16)
    gate_kernel: int = setting(3, "kernel of the gated-update convs", positive=True,
                               limit=15, odd="")
    beta: float = setting(0.5, "hard-example weights: 1 - p(true class), set to beta where "
                          "p >= 1 - beta", minimum=0, within=(0, 1, "in [0, 1]"))
    iter_loss_weight: float = setting(1.0, "weight of the per-iteration (hard-example "
                                      "weighted) losses", minimum=0)
    final_loss_weight: float = setting(1.0, "weight of the loss on the attention-combined "
                                       "logits", minimum=0)
    attention_prior_weight: float = setting(
        0.0, "weight of KL(uniform || attention), which keeps a neglected candidate "
        "reachable (0 = authors: final loss only)", minimum=0)
    attention_temperature: float = setting(
        16.0, "softmax(confidence / T) when testing a run that `ivr calibrate` has not "
        "calibrated; training always uses 1 (1 = authors)",
        positive=True)
    norm: str = setting("none", "none (authors) | group: group norm inside the memory convs",
                        choices=("none", "group"))
    norm_groups: int = setting(32, "groups of that group norm (must divide channels)",
                               positive=True, limit=4096)
    write_init: str = setting("authors", "init of the memory write layers: authors "
                              "(N(0, 0.01)) | he (variance scaling)", choices=("authors", "he"))


@dataclass(frozen=True)
class GraphConfig:
    hidden: int = setting(256, "width of the global module's region and class nodes "
                          "(model.type global, full)", positive=True, limit=4096)
    class_dim: int = setting(128, "size of the learned class nodes (word vectors set it when "
                             "the graph has them)", positive=True, limit=4096)
    delta: float = setting(50.0, "region-graph kernel exp(-d / delta), d the centre distance "
                           "in pixels of the network input", positive=True)
    knowledge: str = setting("mined", "knowledge graph: mined | empty | shuffled (controls "
                             "that remove or scramble its relations)",
                             choices=("mined", "empty", "shuffled"))
    regions: str = setting("boxes", "region graph: boxes (edges from the boxes' layout) | self "
                           "(each region hears only itself: a control)",
                           choices=("boxes", "self"))
    min_part_count: int = setting(5, "(part, whole) class pairs seen less often become no "
                                  "part_of edge", minimum=0)
    word_vectors: str = setting("", "GloVe-style text file of word vectors for the similar "
                                'edges ("" = none)')
    file: str = setting("", 'knowledge graph JSON; "" = the one beside the training split '
                        "(<split>_graph.json)")


@dataclass(frozen=True)
class TrainConfig:
    iters: int = setting(320000, "training iterations, one image (all its regions) each",
                         positive=True)
    optimizer: str = setting("sgd", "sgd | adamw", choices=("sgd", "adamw"))
    lr: float = setting(5e-4, "base learning rate", positive=True)
    momentum: float = setting(0.9, "SGD momentum", minimum=0)
    weight_decay: float = setting(1e-4, "applied to weights only, not to biases or "
                                  "normalisation", minimum=0)
    schedule: str = setting("step", "step: x lr_gamma at each of lr_steps | cosine: to 0 at "
                            "iters", choices=("step", "cosine"))
    lr_steps: list[int] = setting([280000], "iterations where the step schedule multiplies "
                                  "the lr by lr_gamma")
    lr_gamma: float = setting(0.1, "factor of each step", positive=True)  # < 0 flips the lr
    warmup_iters: int = setting(0, "linear warm-up from 0 over this many iterations", minimum=0)
    snapshot_every: int = setting(10000, "checkpoint interval, in iterations (and always at "
                                  "the end)", positive=True)
    keep_last: int = setting(3, "checkpoints kept in RUN_DIR/checkpoints", positive=True)
    log_every: int = setting(20, "iterations averaged into each log.jsonl record", positive=True)
    seed: int = setting(3, "seeds the model init and the data order")
    images_per_step: int = setting(1, "images per step per process, gradients averaged "
                                   "(authors: 1)", positive=True, limit=256)


@dataclass(frozen=True)
class RuntimeConfig:
    device: str = setting("auto", "auto (cuda if available) | cpu | cuda | cuda:N")
    threads: int = setting(0, "torch CPU threads; 0 = torch's default", minimum=0, limit=1024)
    ops: str = setting("auto", "region ops: auto (compiled ivr_ext if built, else pure "
                       "PyTorch) | compiled | reference",
                       choices=("auto", "compiled", "reference"))
    amp: str = setting("none", "mixed precision: none | bf16 | fp16 (fp16 with loss scaling); "
                       "mainly for CUDA", choices=("none", "bf16", "fp16"))
    channels_last: bool = setting(False, "NHWC memory layout for the model and images (often "
                                  "faster on GPUs)")
    keep_freed_memory: bool = setting(True, "CPU: glibc malloc keeps freed blocks for reuse "
                                      "(faster steps)")
    deterministic: bool = setting(False, "deterministic kernels: bitwise-repeatable runs and "
                                  "resumes, a bit slower")
    compile: bool = setting(False, "torch.compile the convolutional parts (backbone head and "
                            "tail, memory convs)")


@dataclass(frozen=True)
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    graph: GraphConfig = field(default_factory=GraphConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    version: int = CONFIG_VERSION  # the key names this config uses (RENAMED)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_toml(self) -> str:
        return tomltext.dumps(self.to_dict())


def _sections() -> dict[str, type]:
    """Section name -> its dataclass, in file order."""
    return {name: hint for name, hint in typing.get_type_hints(Config).items()
            if dataclasses.is_dataclass(hint)}


def upgrade(data: dict[str, Any], source: str,
            renamed: dict[int, dict[str, str]] = RENAMED) -> dict[str, Any]:
    """``data`` (a nested ``{section: {key: value}}`` mapping, with or without ``version``)
    with the keys renamed since its version given today's names; ``version`` removed."""
    data = {k: dict(v) if isinstance(v, dict) else v for k, v in data.items()}
    version = data.pop("version", 0)
    current = max(renamed, default=0)
    if isinstance(version, bool) or not isinstance(version, int) or not 0 <= version <= current:
        raise IvrError(f"config key 'version' in {source} must be an integer 0..{current} "
                       f"(this ivr's config version), got {version!r}; a newer ivr wrote it")
    for step in sorted(v for v in renamed if v > version):
        for old, new in renamed[step].items():
            (old_section, old_key), (new_section, new_key) = old.split("."), new.split(".")
            table = data.get(old_section)
            if isinstance(table, dict) and old_key in table:
                data.setdefault(new_section, {})[new_key] = table.pop(old_key)
    return data


def _check_value(key: str, value: Any, expected: Any) -> Any:
    """Return ``value`` converted to ``expected`` or raise an IvrError naming ``key``."""
    origin = typing.get_origin(expected)
    if origin is list:
        (item,) = typing.get_args(expected)
        if not isinstance(value, list):
            raise IvrError(f"config key '{key}' must be a list of {item.__name__}, got {value!r}")
        return [_check_value(f"{key}[{i}]", v, item) for i, v in enumerate(value)]
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if expected is not bool and isinstance(value, bool) or not isinstance(value, expected):
        raise IvrError(f"config key '{key}' must be {expected.__name__}, "
                       f"got {type(value).__name__} {value!r}")
    return value


def merge(cfg: Config, overrides: dict[str, Any], source: str) -> Config:
    """Return ``cfg`` with a nested ``{section: {key: value}}`` mapping applied (keys of an
    older config version renamed first)."""
    sections = _sections()
    changed: dict[str, dict[str, Any]] = {}
    for section, values in upgrade(overrides, source).items():
        if section not in sections:
            raise IvrError(f"unknown config section '{section}' in {source}; "
                           f"known sections: {', '.join(sections)}")
        if not isinstance(values, dict):
            raise IvrError(f"config section '{section}' in {source} must be a table")
        hints = typing.get_type_hints(sections[section])
        for key, value in values.items():
            if key not in hints:
                raise IvrError(f"unknown config key '{section}.{key}' in {source}; "
                               f"known keys: {', '.join(hints)}")
            changed.setdefault(section, {})[key] = _check_value(f"{section}.{key}", value,
                                                                hints[key])
    return dataclasses.replace(cfg, **{s: dataclasses.replace(getattr(cfg, s), **values)
                                       for s, values in changed.items()})


def load_file(cfg: Config, path: str | Path) -> Config:
    """``cfg`` with the TOML file at ``path`` merged over it."""
    path = Path(path)
    if not path.is_file():
        raise IvrError(f"config file not found: {path}")
    try:
        data = tomltext.loads(path.read_text(encoding="utf-8"))
    except (tomltext.TOMLDecodeError, UnicodeDecodeError) as e:
        raise IvrError(f"config file {path} is not valid TOML: {e}") from None
    return merge(cfg, data, str(path))


def parse_override(item: str) -> dict[str, dict[str, Any]]:
    """``"train.lr=0.01"`` -> ``{"train": {"lr": 0.01}}``; bare words are strings."""
    key, sep, raw = item.partition("=")
    section, dot, name = key.strip().partition(".")
    if not sep or not dot or not section or not name:
        raise IvrError(f"--set expects section.key=value, got '{item}'")
    raw = raw.strip()
    try:
        value = tomltext.loads(f"v = {raw}")["v"]
    except tomltext.TOMLDecodeError:
        value = raw  # unquoted string such as resnet18 or a path
    return {section: {name: value}}


def _keys(cfg: Config) -> Iterable[tuple[str, Any, dict[str, Any]]]:
    """("section.key", value, rules) of every key of ``cfg``, in file order."""
    for section in _sections():
        part = getattr(cfg, section)
        for f in dataclasses.fields(part):
            yield f"{section}.{f.name}", getattr(part, f.name), f.metadata


def _check_rules(key: str, value: Any, rules: dict[str, Any]) -> None:
    """One key against its :func:`setting` rules; an IvrError naming the key if it fails."""
    for item in value if isinstance(value, list) else [value]:
        if not isinstance(item, (int, float)) or isinstance(item, bool):
            continue
        if isinstance(item, float) and not math.isfinite(item):
            raise IvrError(f"config key '{key}' must be a finite number, got {item}")
        limit = rules["limit"] or INT_LIMIT
        if isinstance(item, int) and item > limit:
            raise IvrError(f"config key '{key}' must be <= {limit}, got {item}")
    if rules["choices"] and value not in rules["choices"]:
        raise IvrError(f"config key '{key}' must be one of {', '.join(rules['choices'])}; "
                       f"got '{value}'")
    if rules["positive"] and value <= 0:
        raise IvrError(f"config key '{key}' must be > 0, got {value}")
    if rules["minimum"] is not None and value < rules["minimum"]:
        raise IvrError(f"config key '{key}' must be >= {rules['minimum']}, got {value}")
    if rules["within"] and not rules["within"][0] <= value <= rules["within"][1]:
        raise IvrError(f"config key '{key}' must be {rules['within'][2]}, got {value}")
    if rules["odd"] is not None and value % 2 != 1:
        raise IvrError(f"config key '{key}' must be odd{rules['odd']}, got {value}")


def validate(cfg: Config) -> Config:
    """Every key against the rules it was declared with (:func:`setting`), then the checks
    that relate keys."""
    for key, value, rules in _keys(cfg):
        _check_rules(key, value, rules)
    m, mem, t, r = cfg.model, cfg.memory, cfg.train, cfg.runtime
    if mem.norm == "group" and mem.channels % mem.norm_groups:
        raise IvrError(f"config key 'memory.norm_groups' ({mem.norm_groups}) must divide "
                       f"memory.channels ({mem.channels})")
    if m.type in ("global", "full") and mem.iterations < 2:
        raise IvrError(f"a {m.type} model reasons from iteration 1 on: config key "
                       f"'memory.iterations' must be >= 2, got {mem.iterations}")
    if sorted(t.lr_steps) != t.lr_steps:
        raise IvrError(f"config key 'train.lr_steps' must be increasing, got {t.lr_steps}")
    if r.device not in ("auto", "cpu", "cuda") and not r.device.startswith("cuda:"):
        raise IvrError(f"config key 'runtime.device' must be auto, cpu, cuda or cuda:N; "
                       f"got '{r.device}'")
    return cfg


SIZE_LIMITS = {key: rules["limit"] for key, _, rules in _keys(Config()) if rules["limit"]}

_HEADER = """\
# ivr default configuration: the authors' ADE20K setting (ResNet-50 C4, one image per step,
# SGD 5e-4 with a x0.1 step at 280k of 320k iterations). Every command that trains or tests
# takes `--config FILE` (merged over these defaults; partial files are fine) and
# `--set section.key=value`. Generated from ivr_core/config.py by
# `python -m ivr_core.config > ivr.toml`; a test checks that the two agree.
"""


def defaults_toml() -> str:
    """The text of the shipped ``ivr.toml``: every default with its help as a comment."""
    out = [_HEADER, f"version = {CONFIG_VERSION}  # config version: the key names it uses"]
    section = None
    for key, value, rules in _keys(Config()):
        name, _, leaf = key.partition(".")
        if name != section:
            out.append(f"\n[{name}]")
            section = name
        out.append(f"{leaf} = {tomltext.format_value(value)}  # {rules['help']}")
    return "\n".join(out) + "\n"


def model_changes(saved: dict, cfg: Config) -> list[str]:
    """The model settings of ``cfg`` that differ from ``saved`` (a checkpoint's config, as
    a dict), each as "section.key (saved in the checkpoint, now)"; the backbone's initial
    weights (model.weights) do not count."""
    saved = upgrade(saved, "the checkpoint's config")
    now = cfg.to_dict()
    return [f"{s}.{k} ({saved[s][k]!r} in the checkpoint, {v!r} now)"
            for s in ("model", "memory", "graph") for k, v in now[s].items()
            if k != "weights" and isinstance(saved.get(s), dict) and k in saved[s]
            and saved[s][k] != v]


def load_config(files: Iterable[str | Path] = (), overrides: Iterable[str] = (),
                base: Config | dict | None = None) -> Config:
    """Build the resolved (validated, frozen) config: ``base`` (defaults), then each file,
    then each ``--set``."""
    if isinstance(base, dict):
        cfg = merge(Config(), base, "the checkpoint's config")
    else:
        cfg = base or Config()
    for path in files:
        cfg = load_file(cfg, path)
    for item in overrides:
        cfg = merge(cfg, parse_override(item), f"--set {item}")
    return validate(cfg)


def preset_path(name: str) -> Path:
    path = Path(__file__).parent / "presets" / f"{name}.toml"
    if not path.is_file():
        raise IvrError(f"unknown preset '{name}'")
    return path


if __name__ == "__main__":
    print(defaults_toml(), end="")
