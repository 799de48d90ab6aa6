"""What every reasoning model shares: layer inits, the candidates the attention weighs, the
attention itself, and the losses (docs/design.md, "Attention" and "Losses").

A *candidate* is one prediction of one module at one iteration. A model's ``modules`` maps a
module name to its chain of logits, each chain starting with the baseline head's prediction
(iteration 0, shared); the attention weighs every iteration of the first chain and the
iterations >= 1 of the others, in that order (:func:`candidate_names`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ivr_core.models.outputs import ModelOutputs


def he_init(layer: nn.Module) -> nn.Module:
    """Variance scaling (He, fan-in), zero biases: the authors' init of the context convs,
    the input convs after the first and the read-out FCs."""
    nn.init.kaiming_normal_(layer.weight, mode="fan_in", nonlinearity="relu")
    if getattr(layer, "bias", None) is not None:
        nn.init.zeros_(layer.bias)
    return layer


def normal_init(layer: nn.Module, std: float = 0.01) -> nn.Module:
    """N(0, std) weights, zero biases: the authors' init of classifiers, confidences and the
    memory write."""
    nn.init.normal_(layer.weight, std=std)
    if getattr(layer, "bias", None) is not None:
        nn.init.zeros_(layer.bias)
    return layer


class ReasoningModel(nn.Module):
    """What the memory, global and full models share: the loss settings, the attention's
    temperature and :meth:`losses` (see :func:`reasoning_losses`)."""

    chains: tuple[str, ...] = ("local",)  # the modules whose predictions the attention weighs

    def __init__(self, iterations: int = 3, beta: float = 0.5, iter_loss_weight: float = 1.0,
                 final_loss_weight: float = 1.0, attention_prior_weight: float = 0.0,
                 attention_temperature: float = 1.0):
        super().__init__()
        self.iterations, self.beta = iterations, beta
        self.attention_temperature = attention_temperature  # when evaluating
        self.attention_offset: torch.Tensor | None = None  # per candidate, from calibration
        self.loss_weights = dict(iter_weight=iter_loss_weight, final_weight=final_loss_weight,
                                 prior_weight=attention_prior_weight)

    def temperature(self) -> float:
        """The attention's softmax temperature: 1 while training, the configured one else."""
        return 1.0 if self.training else self.attention_temperature

    def candidates(self) -> list[str]:
        """The names of the attention's candidates, in its order."""
        return candidate_names({name: [None] * self.iterations for name in self.chains})

    def offset(self) -> torch.Tensor | None:
        """The per-candidate offset of the attention's scores when evaluating (None while
        training, and until :meth:`calibrate`)."""
        return None if self.training else self.attention_offset

    def calibrate(self, temperature: float, offset: torch.Tensor | None) -> None:
        """Evaluate with ``softmax(confidence / temperature + offset)`` (ivr calibrate)."""
        self.attention_temperature, self.attention_offset = temperature, offset

    def losses(self, outputs: ModelOutputs, classes: torch.Tensor) -> dict[str, torch.Tensor]:
        return reasoning_losses(outputs, classes, self.beta, **self.loss_weights)


def candidate_names(modules: dict[str, list]) -> list[str]:
    """``"<module> <iteration>"`` of every candidate, in the attention's order."""
    return [f"{name} {i}" for j, (name, chain) in enumerate(modules.items())
            for i in range(0 if j == 0 else 1, len(chain))]


def candidate_logits(modules: dict[str, list[torch.Tensor]]) -> list[torch.Tensor]:
    """The candidates' logits [N x (K, C)], in the order of :func:`candidate_names`."""
    return [x for j, chain in enumerate(modules.values()) for x in chain[0 if j == 0 else 1:]]


def attend(logits: list[torch.Tensor], confidences: list[torch.Tensor],
           temperature: float = 1.0, offset: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Softmax over the candidates' confidences / ``temperature`` (+ ``offset`` (N,), one per
    candidate, when calibrated) per region: ``final``
    (K, C), the attention-weighted sum of the detached logits (only the confidences learn
    from the final loss); ``attention`` (K, N); ``confidence`` (K, N), the scores before the
    softmax. The models pass their ``memory.attention_temperature`` when evaluating and 1
    when training (docs/design.md, "Attention")."""
    confidence = torch.stack(confidences, dim=1)
    scores = confidence.float() / temperature
    if offset is not None:
        scores = scores + offset.to(scores.device)
    attention = torch.softmax(scores, dim=1).to(confidence.dtype)
    final = (attention[:, :, None] * torch.stack(logits, 1).detach()).sum(1)
    return {"final": final, "attention": attention, "confidence": confidence}


def hard_example_weights(logits: torch.Tensor, classes: torch.Tensor, beta: float) -> torch.Tensor:
    """q = 1 - p(true class), set to beta where p >= 1 - beta, normalised to sum 1 (detached)."""
    p = torch.softmax(logits.detach().float(), dim=1).gather(1, classes[:, None])[:, 0]
    q = torch.where(p >= 1 - beta, torch.full_like(p, beta), 1 - p)
    return q / q.sum().clamp_min(1e-12)


def reasoning_losses(outputs: ModelOutputs, classes: torch.Tensor, beta: float, iter_weight: float,
                     final_weight: float, prior_weight: float) -> dict[str, torch.Tensor]:
    """The losses of a reasoning model's ``outputs``:

    - ``base``: CE of the shared first prediction (the baseline head);
    - ``iter``: the mean over every later prediction of every chain of its hard-example
      weighted CE (weights from the same chain's previous prediction), x ``iter_weight``;
    - ``final``: CE of the attended logits, x ``final_weight`` (the authors' only signal
      for the attention);
    - ``prior`` (when ``prior_weight`` > 0): KL(uniform || attention), the mean over the
      regions, x ``prior_weight``. On the training images every candidate is soon right
      (the baseline head fits them as well as the reasoning does), so the final loss alone
      teaches the attention preferences that do not hold on unseen images, and the gradient
      it gives a candidate's confidence is scaled by that candidate's weight, so a neglected
      candidate cannot win the weight back. The prior's gradient, ``attention - 1/N``, is
      not scaled by the weight: the attention departs from uniform only as far as the final
      loss keeps pushing (docs/design.md, "Attention").
    """
    chains = list(outputs["modules"].values())
    out = {"base": F.cross_entropy(chains[0][0], classes)}
    terms = [(hard_example_weights(chain[i - 1], classes, beta)
              * F.cross_entropy(chain[i], classes, reduction="none")).sum()
             for chain in chains for i in range(1, len(chain))]
    if terms:
        out["iter"] = iter_weight * torch.stack(terms).mean()
    out["final"] = final_weight * F.cross_entropy(outputs["final"], classes)
    if prior_weight > 0:
        log_attention = torch.log_softmax(outputs["confidence"].float(), 1)
        n = log_attention.shape[1]
        out["prior"] = prior_weight * (-math.log(n) - log_attention.mean(1)).mean()
    return out
