"""The baseline region classifier: crop each box from the stride-16 map, run the tail."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ivr_core.models.backbone import FEATURE_STRIDE, ResNetC4
from ivr_core.models.heads import normal_init
from ivr_core.models.outputs import ModelOutputs
from ivr_core.ops import crop_and_resize, crop_boxes


class BaselineModel(nn.Module):
    """pool5 = crop_and_resize(F, boxes, s x s) -> tail -> fc7 -> linear -> logits."""

    def __init__(self, backbone: ResNetC4, num_classes: int, crop_size: int = 7):
        super().__init__()
        self.backbone = backbone
        self.crop_size = crop_size
        self.num_classes = num_classes
        self.cls = nn.Linear(backbone.out_channels, num_classes)
        normal_init(self.cls)

    def regions(self, image: torch.Tensor, boxes: torch.Tensor) -> dict[str, torch.Tensor]:
        """image (1, 3, H, W), boxes (K, 4) x1 y1 x2 y2 in image pixels.

        Returns the feature map ``feature`` (1, C_f, Hm, Wm), the normalised crop boxes
        ``crop_boxes`` (K, 4), ``pool5`` (K, C_f, s, s), ``fc7`` (K, C_out) and the baseline
        ``logits`` (K, C).
        """
        feature = self.backbone.forward_head(image)
        _, _, hm, wm = feature.shape
        cboxes = crop_boxes(boxes, FEATURE_STRIDE, hm, wm)
        box_ind = torch.zeros(len(boxes), dtype=torch.long, device=boxes.device)
        pool5 = crop_and_resize(feature, cboxes, box_ind, (self.crop_size, self.crop_size))
        fc7 = self.backbone.forward_tail(pool5)
        return {"feature": feature, "crop_boxes": cboxes, "pool5": pool5, "fc7": fc7,
                "logits": self.cls(fc7)}

    def forward(self, image: torch.Tensor, boxes: torch.Tensor,
                keep: torch.Tensor | None = None) -> ModelOutputs:
        """``final`` (K, C) logits and ``iterations``: the list of per-iteration logits
        (``keep``, the regions allowed into reasoning, does not apply: there is none)."""
        logits = self.regions(image, boxes)["logits"]
        return {"final": logits, "iterations": [logits]}

    def losses(self, outputs: ModelOutputs, classes: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"cls": F.cross_entropy(outputs["final"], classes)}
