"""ResNet in the "C4" layout: a stride-16 head over the image, layer4 as a per-region tail."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
import torchvision
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

from ivr_core.config import NO_WEIGHTS
from ivr_core.engine.checkpoint import load_tensors
from ivr_core.errors import IvrError

FEATURE_STRIDE = 16


class RandomInitWarning(UserWarning):
    """The backbone starts from random weights."""


NORM_LAYERS = {"frozen_bn": FrozenBatchNorm2d, "bn": nn.BatchNorm2d}  # model.norm


def _load_weights(net: nn.Module, name: str, weights: str) -> None:
    if weights == NO_WEIGHTS:
        warnings.warn(
            f"\n{'!' * 78}\n  {name} starts from RANDOM weights (model.weights = none).\n"
            "  Expect far lower accuracy than with ImageNet weights; train with\n"
            "  model.norm = bn. Pass model.weights = torchvision or a .pth file to fix.\n"
            f"{'!' * 78}", RandomInitWarning, stacklevel=3)
        return
    if weights == "torchvision":
        enum = torchvision.models.get_model_weights(name).IMAGENET1K_V1
        try:
            state = enum.get_state_dict(progress=False, check_hash=True)
        except Exception as e:  # no cached file and no network, bad download, ...
            cache = Path(torch.hub.get_dir()) / "checkpoints" / Path(enum.url).name
            raise IvrError(
                f"cannot get torchvision's ImageNet weights for {name} ({type(e).__name__}: "
                f"{e}); put {Path(enum.url).name} at {cache}, pass model.weights=PATH to a "
                "local file, or model.weights=none to train from random init") from None
    else:
        state = load_tensors(weights, "backbone weights file")
        for key in ("state_dict", "model"):
            if isinstance(state, dict) and isinstance(state.get(key), dict):
                state = state[key]
        if not isinstance(state, dict):
            raise IvrError(f"backbone weights file {weights} holds no state dict (model.weights)")
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    try:
        missing, unexpected = net.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shape mismatches
        raise IvrError(f"backbone weights {weights} do not fit torchvision's {name}: "
                       f"{str(e).splitlines()[-1].strip()}") from None
    missing = [k for k in missing if not k.startswith("fc.")]
    if missing or unexpected:
        raise IvrError(f"backbone weights {weights} do not fit torchvision's {name}: "
                       f"missing {missing[:3]}, unexpected {unexpected[:3]}")


class ResNetC4(nn.Module):
    """``head``: conv1 .. layer3, stride 16. ``tail``: layer4 (stride ``tail_stride``) applied
    to region crops, then a spatial mean.

    ``weights``: "torchvision", a file path, or :data:`~ivr_core.config.NO_WEIGHTS` (random
    init, with a :class:`RandomInitWarning`; ignore it where a checkpoint is loaded over
    them). ``norm = "frozen_bn"`` builds every batch norm as a FrozenBatchNorm2d (statistics
    and affine fixed, the authors' setting); ``"bn"`` keeps ordinary trainable batch norm,
    for training from scratch.
    ``fixed_blocks``: 0 trains everything, k >= 1 freezes conv1 and layer1..layer k.
    """

    def __init__(self, name: str = "resnet50", weights: str = "torchvision",
                 norm: str = "frozen_bn", fixed_blocks: int = 1, tail_stride: int = 1):
        super().__init__()
        net = getattr(torchvision.models, name)(weights=None, norm_layer=NORM_LAYERS[norm])
        _load_weights(net, name, weights)
        block = net.layer4[0]
        strided = block.conv2 if isinstance(block, torchvision.models.resnet.Bottleneck) else block.conv1
        strided.stride = (tail_stride, tail_stride)
        block.downsample[0].stride = (tail_stride, tail_stride)
        self.head = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool,
                                  net.layer1, net.layer2, net.layer3)
        self.tail = net.layer4
        frozen = [net.conv1, net.bn1] + [net.layer1, net.layer2, net.layer3][:fixed_blocks] \
            if fixed_blocks else []
        for module in frozen:
            module.requires_grad_(False)
        self._frozen = frozen  # kept in eval mode: trainable BN there must not drift
        self.feature_channels = net.layer3[-1].conv1.in_channels
        self.out_channels = net.fc.in_features

    def train(self, mode: bool = True) -> "ResNetC4":
        super().train(mode)
        for module in self._frozen:
            module.eval()
        return self

    def forward_head(self, image: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, C_f, ceil(H/16), ceil(W/16))."""
        return self.head(image)

    def forward_tail(self, crops: torch.Tensor) -> torch.Tensor:
        """(K, C_f, s, s) region crops -> (K, C_out) pooled features ("fc7")."""
        return self.tail(crops).mean(dim=(2, 3))
