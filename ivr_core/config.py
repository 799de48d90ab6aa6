"""Typed configuration: dataclass defaults <- TOML files <- ``--set section.key=value``.

The defaults below are the authors' ADE20K setting (docs/design.md, "The model" and
"Training schedule"); ``ivr.toml`` at the repository root spells them out with a comment per
key. Unknown sections or keys, wrong types and out-of-range values are :class:`IvrError`\\ s
naming the key.
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


@dataclass
class DataConfig:
    dataset: str = "ade"  # ade (also the synthetic data) | coco | vg: names the prepared files
    dir: str = "data/ADE"  # folder with the prepared split files
    root: str = ""  # dataset root holding the images; "" = the root recorded by prepare-data
    train_split: str = "train"
    test_split: str = "mtest"
    min_count: int = 5  # class frequency threshold the split files were prepared with
    scale: int = 600  # shorter image side, in pixels
    max_size: int = 1000  # cap on the longer side
    flip: bool = True  # train on horizontally flipped copies too (left_/right_ classes swap)
    workers: int = 2  # DataLoader worker processes
    max_pixels: int = 100_000_000  # images whose header claims more are skipped, not decoded


@dataclass
class ModelConfig:
    type: str = "baseline"  # baseline | memory (local) | global | full (local + global)
    backbone: str = "resnet50"  # resnet18 | resnet34 | resnet50 | resnet101
    weights: str = "torchvision"  # torchvision | none | path to a backbone state dict
    norm: str = "frozen_bn"  # frozen_bn (pretrained) | bn (trainable, from scratch)
    fixed_blocks: int = 1  # frozen stages: 0 none, 1 conv1+layer1, 2 +layer2, 3 +layer3
    tail_stride: int = 1  # stride of layer4, run on each region's crop (authors: 1)
    crop_size: int = 7  # crop_and_resize output size for region features


@dataclass
class MemoryConfig:
    channels: int = 512  # memory channels C_m
    init_size: int = 20  # learned init, resized to the feature map
    iterations: int = 3  # ITER
    fc_dim: int = 4096  # width of the two FC layers on the memory crop
    context_layers: int = 3  # conv layers of the context block: 1 + 2 per residual block
    input_convs: int = 2  # convs turning (pool5, logits) into the update input
    gate_kernel: int = 3  # kernel size of the gated update convs
    beta: float = 0.5  # hard-example weighting threshold
    iter_loss_weight: float = 1.0
    final_loss_weight: float = 1.0
    attention_prior_weight: float = 0.0  # KL(uniform || attention) weight; 0 = the authors' (final loss only)
    attention_temperature: float = 16.0  # softmax(confidence / T) when testing; 1 = the authors'
    norm: str = "none"  # none | group: group norm inside the memory convs
    norm_groups: int = 32
    write_init: str = "authors"  # memory write layers: authors (N(0, 0.01)) | he (variance scaling)


@dataclass
class GraphConfig:
    hidden: int = 256  # width of the global module's region and class nodes
    class_dim: int = 128  # size of the learned class embeddings
    delta: float = 50.0  # region-graph kernel exp(-d / delta), d in pixels of the network input
    knowledge: str = "mined"  # knowledge graph: mined | empty | shuffled (controls: no edges, edges between random classes)
    min_part_count: int = 5  # (part, whole) class pairs seen less often are no part_of edge
    word_vectors: str = ""  # GloVe-style text file for the similar edges ("" = none)
    file: str = ""  # knowledge graph JSON; "" = <training split file>_graph.json


@dataclass
class TrainConfig:
    iters: int = 320000
    optimizer: str = "sgd"  # sgd | adamw
    lr: float = 5e-4
    momentum: float = 0.9  # sgd only
    weight_decay: float = 1e-4  # on weights only (not biases or norms)
    schedule: str = "step"  # step | cosine
    lr_steps: list[int] = field(default_factory=lambda: [280000])  # step schedule: x lr_gamma
    lr_gamma: float = 0.1
    warmup_iters: int = 0  # linear warm-up from 0
    snapshot_every: int = 10000
    keep_last: int = 3  # checkpoints kept in the run folder
    log_every: int = 20
    seed: int = 3
    images_per_step: int = 1  # images whose gradients are averaged per step, per process


@dataclass
class RuntimeConfig:
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    threads: int = 0  # torch CPU threads; 0 = torch's default
    ops: str = "auto"  # region ops: auto (compiled if built) | compiled | reference
    amp: str = "none"  # mixed precision: none | bf16 | fp16 (with loss scaling)
    channels_last: bool = False  # NHWC memory layout for the model and images
    keep_freed_memory: bool = True  # CPU: malloc keeps freed memory (fewer page faults)
    deterministic: bool = False  # deterministic kernels: bitwise-repeatable runs, a bit slower
    compile: bool = False  # torch.compile the convolutional parts (backbone, memory convs)


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    graph: GraphConfig = field(default_factory=GraphConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return dataclasses.asdict(self)

    def to_toml(self) -> str:
        return tomltext.dumps(self.to_dict())


def _sections() -> dict[str, type]:
    return typing.get_type_hints(Config)


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
        raise IvrError(
            f"config key '{key}' must be {expected.__name__}, got {type(value).__name__} {value!r}"
        )
    return value


def merge(cfg: Config, overrides: dict[str, Any], source: str) -> Config:
    """Return a copy of ``cfg`` with a nested ``{section: {key: value}}`` mapping applied."""
    cfg = dataclasses.replace(cfg, **{s: dataclasses.replace(getattr(cfg, s))
                                      for s in _sections()})
    for section, values in overrides.items():
        if section not in _sections():
            raise IvrError(f"unknown config section '{section}' in {source}; "
                           f"known sections: {', '.join(_sections())}")
        if not isinstance(values, dict):
            raise IvrError(f"config section '{section}' in {source} must be a table")
        target = getattr(cfg, section)
        hints = typing.get_type_hints(type(target))
        for key, value in values.items():
            if key not in hints:
                raise IvrError(f"unknown config key '{section}.{key}' in {source}; "
                               f"known keys: {', '.join(hints)}")
            setattr(target, key, _check_value(f"{section}.{key}", value, hints[key]))
    return cfg


def load_file(cfg: Config, path: str | Path) -> Config:
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
    key = key.strip()
    section, dot, name = key.partition(".")
    if not sep or not dot or not section or not name:
        raise IvrError(f"--set expects section.key=value, got '{item}'")
    raw = raw.strip()
    try:
        value = tomltext.loads(f"v = {raw}")["v"]
    except tomltext.TOMLDecodeError:
        value = raw  # unquoted string such as resnet18 or a path
    return {section: {name: value}}


# Upper bounds on sizes, far above the authors' settings (in brackets) yet small enough that
# a slip such as memory.fc_dim=1000000000 is one line here, before anything is allocated.
SIZE_LIMITS = {"data.scale": 4096, "data.max_size": 8192,  # [600, 1000]
               "data.workers": 256, "runtime.threads": 1024,
               "model.crop_size": 64, "model.tail_stride": 16,  # [7, 1]
               "memory.channels": 4096, "memory.init_size": 512,  # [512, 20]
               "memory.iterations": 32, "memory.fc_dim": 16384,  # [3, 4096]
               "memory.context_layers": 63, "memory.input_convs": 16,  # [3, 2]
               "memory.gate_kernel": 15, "memory.norm_groups": 4096,  # [3]
               "graph.hidden": 4096, "graph.class_dim": 4096,  # [256, 128]
               "train.images_per_step": 256}
INT_LIMIT = 2**63 - 1  # any other integer (iterations, seeds, counts): what torch can hold


def _numbers(cfg: Config) -> Iterable[tuple[str, Any]]:
    """("section.key", value) of every number in ``cfg``, list items included."""
    for section in _sections():
        for key, value in dataclasses.asdict(getattr(cfg, section)).items():
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, (int, float)) and not isinstance(item, bool):
                    yield f"{section}.{key}", item


def _check_magnitudes(cfg: Config) -> None:
    """Every float finite (no inf from 1e999, no nan), every size within its bound."""
    for key, value in _numbers(cfg):
        if isinstance(value, float) and not math.isfinite(value):
            raise IvrError(f"config key '{key}' must be a finite number, got {value}")
        limit = SIZE_LIMITS.get(key, INT_LIMIT)
        if isinstance(value, int) and value > limit:
            raise IvrError(f"config key '{key}' must be <= {limit}, got {value}")


def validate(cfg: Config) -> Config:
    """Range and choice checks that the type system cannot express."""
    def choice(key: str, value: str, allowed: Iterable[str]) -> None:
        if value not in allowed:
            raise IvrError(f"config key '{key}' must be one of {', '.join(allowed)}; got '{value}'")

    def positive(key: str, value: float, allow_zero: bool = False) -> None:
        if value < 0 or (value == 0 and not allow_zero):
            raise IvrError(f"config key '{key}' must be {'>= 0' if allow_zero else '> 0'}, "
                           f"got {value}")

    d, m, mem, t, r, g = cfg.data, cfg.model, cfg.memory, cfg.train, cfg.runtime, cfg.graph
    _check_magnitudes(cfg)
    choice("data.dataset", d.dataset, DATASETS)
    choice("model.type", m.type, MODEL_TYPES)
    choice("model.backbone", m.backbone, BACKBONES)
    choice("model.norm", m.norm, ("frozen_bn", "bn"))
    choice("memory.norm", mem.norm, ("none", "group"))
    choice("memory.write_init", mem.write_init, ("authors", "he"))
    choice("graph.knowledge", g.knowledge, ("mined", "empty", "shuffled"))
    choice("train.optimizer", t.optimizer, ("sgd", "adamw"))
    choice("train.schedule", t.schedule, ("step", "cosine"))
    choice("runtime.ops", r.ops, ("auto", "compiled", "reference"))
    choice("runtime.amp", r.amp, ("none", "bf16", "fp16"))
    if not 1 <= d.max_pixels <= MAX_PIXELS_LIMIT:
        raise IvrError(f"config key 'data.max_pixels' must be 1..{MAX_PIXELS_LIMIT} (OpenCV "
                       f"decodes no more), got {d.max_pixels}")
    for key, value in [("data.scale", d.scale), ("data.max_size", d.max_size),
                       ("model.crop_size", m.crop_size), ("model.tail_stride", m.tail_stride),
                       ("memory.channels", mem.channels), ("memory.init_size", mem.init_size),
                       ("memory.iterations", mem.iterations), ("memory.fc_dim", mem.fc_dim),
                       ("memory.context_layers", mem.context_layers),
                       ("memory.input_convs", mem.input_convs),
                       ("memory.gate_kernel", mem.gate_kernel),
                       ("memory.norm_groups", mem.norm_groups), ("train.iters", t.iters),
                       ("train.lr", t.lr), ("train.snapshot_every", t.snapshot_every),
                       ("train.keep_last", t.keep_last), ("train.log_every", t.log_every),
                       ("train.images_per_step", t.images_per_step),
                       ("train.lr_gamma", t.lr_gamma),  # negative: the lr changes sign
                       ("graph.hidden", g.hidden), ("graph.class_dim", g.class_dim),
                       ("graph.delta", g.delta),
                       ("memory.attention_temperature", mem.attention_temperature)]:
        positive(key, value)
    for key, value in [("data.min_count", d.min_count), ("data.workers", d.workers),
                       ("train.weight_decay", t.weight_decay), ("train.momentum", t.momentum),
                       ("train.warmup_iters", t.warmup_iters),
                       ("runtime.threads", r.threads), ("memory.beta", mem.beta),
                       ("memory.iter_loss_weight", mem.iter_loss_weight),
                       ("memory.final_loss_weight", mem.final_loss_weight),
                       ("memory.attention_prior_weight", mem.attention_prior_weight),
                       ("graph.min_part_count", g.min_part_count)]:
        positive(key, value, allow_zero=True)
    if not 0 <= m.fixed_blocks <= 3:
        raise IvrError(f"config key 'model.fixed_blocks' must be 0..3, got {m.fixed_blocks}")
    if mem.context_layers % 2 != 1:
        raise IvrError("config key 'memory.context_layers' must be odd (one conv, then "
                       f"residual blocks of two), got {mem.context_layers}")
    if mem.gate_kernel % 2 != 1:
        raise IvrError(f"config key 'memory.gate_kernel' must be odd, got {mem.gate_kernel}")
    if mem.norm == "group" and mem.channels % mem.norm_groups:
        raise IvrError(f"config key 'memory.norm_groups' ({mem.norm_groups}) must divide "
                       f"memory.channels ({mem.channels})")
    if m.type in ("global", "full") and mem.iterations < 2:
        raise IvrError(f"a {m.type} model reasons from iteration 1 on: config key "
                       f"'memory.iterations' must be >= 2, got {mem.iterations}")
    if not 0 <= mem.beta <= 1:
        raise IvrError(f"config key 'memory.beta' must be in [0, 1], got {mem.beta}")
    if sorted(t.lr_steps) != t.lr_steps:
        raise IvrError(f"config key 'train.lr_steps' must be increasing, got {t.lr_steps}")
    if r.device not in ("auto", "cpu", "cuda") and not r.device.startswith("cuda:"):
        raise IvrError(f"config key 'runtime.device' must be auto, cpu, cuda or cuda:N; "
                       f"got '{r.device}'")
    return cfg


def model_changes(saved: dict, cfg: Config) -> list[str]:
    """The model settings of ``cfg`` that differ from ``saved`` (a checkpoint's config, as
    a dict), each as "section.key (saved in the checkpoint, now)"; the backbone's initial
    weights (model.weights) do not count."""
    now = cfg.to_dict()
    return [f"{s}.{k} ({saved[s][k]!r} in the checkpoint, {v!r} now)"
            for s in ("model", "memory", "graph") for k, v in now[s].items()
            if k != "weights" and isinstance(saved.get(s), dict) and k in saved[s]
            and saved[s][k] != v]


def load_config(files: Iterable[str | Path] = (), overrides: Iterable[str] = (),
                base: Config | dict | None = None) -> Config:
    """Build the resolved config: ``base`` (defaults), then each file, then each ``--set``."""
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
