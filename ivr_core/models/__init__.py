"""Models and ``build_model(cfg, num_classes)``, the only reader of the model config."""

from __future__ import annotations

import warnings

from torch import nn

from ivr_core.config import NO_WEIGHTS, Config, model_changes
from ivr_core.errors import IvrError
from ivr_core.models.backbone import FEATURE_STRIDE, RandomInitWarning, ResNetC4
from ivr_core.models.baseline import BaselineModel
from ivr_core.models.full import FullModel, GlobalModel
from ivr_core.models.graph import GlobalReasoning
from ivr_core.models.memory import SpatialMemoryModel

__all__ = ["FEATURE_STRIDE", "BaselineModel", "FullModel", "GlobalModel", "ResNetC4",
           "SpatialMemoryModel", "build_model", "model_from_state"]


def build_model(cfg: Config, num_classes: int, pretrained: bool = True, graph=None,
                kg_edges: int | None = None, class_dim: int | None = None) -> nn.Module:
    """The model of ``cfg.model.type``; ``pretrained=False`` skips loading backbone weights
    (for a model about to receive a checkpoint). ``global`` and ``full`` models take the
    knowledge graph (a :class:`~ivr_core.graph.knowledge.KnowledgeGraph`, ablated as
    ``graph.knowledge`` says), or room for ``kg_edges`` edges and class nodes of
    ``class_dim`` features that a checkpoint will fill."""
    m, mem, g = cfg.model, cfg.memory, cfg.graph
    with warnings.catch_warnings():
        if not pretrained:  # random weights that the checkpoint replaces: nothing to warn of
            warnings.simplefilter("ignore", RandomInitWarning)
        backbone = ResNetC4(m.backbone, weights=m.weights if pretrained else NO_WEIGHTS,
                            norm=m.norm, fixed_blocks=m.fixed_blocks, tail_stride=m.tail_stride)
    base = BaselineModel(backbone, num_classes, crop_size=m.crop_size)
    if m.type == "baseline":
        return base
    losses = dict(iterations=mem.iterations, beta=mem.beta,
                  iter_loss_weight=mem.iter_loss_weight,
                  final_loss_weight=mem.final_loss_weight,
                  attention_prior_weight=mem.attention_prior_weight,
                  attention_temperature=mem.attention_temperature)
    memory = dict(channels=mem.channels, init_size=mem.init_size, fc_dim=mem.fc_dim,
                  context_layers=mem.context_layers, input_convs=mem.input_convs,
                  gate_kernel=mem.gate_kernel, norm=mem.norm, norm_groups=mem.norm_groups,
                  write_init=mem.write_init, **losses)
    if m.type == "memory":
        return SpatialMemoryModel(base, **memory)
    if graph is None and kg_edges is None:
        raise ValueError(f"a {m.type} model needs the knowledge graph")
    if graph is not None:
        graph = graph.ablated(g.knowledge, cfg.train.seed)
    vectors = graph.vector_matrix() if graph is not None else None
    layout = g.regions == "boxes"  # "self": the region-graph control
    reasoning = GlobalReasoning(backbone.out_channels, num_classes, hidden=g.hidden,
                                class_dim=class_dim or g.class_dim, kg_edges=kg_edges or 0,
                                class_vectors=vectors)
    if graph is not None:
        reasoning.set_graph(*graph.tensors())
    if m.type == "global":
        return GlobalModel(base, reasoning, delta=g.delta, layout=layout, **losses)
    return FullModel(base, reasoning, delta=g.delta, layout=layout, **memory)


def model_from_state(cfg: Config, state: dict) -> nn.Module:
    """The model of a checkpoint ``state`` (its classes, its weights, its knowledge graph),
    built from ``cfg``.

    Weights that do not fit (model settings overridden since training) are an IvrError
    naming the settings that differ from the checkpoint's config."""
    kg = state["model"].get("global_.kg_weight")
    nodes = state["model"].get("global_.class_nodes")
    model = build_model(cfg, len(state["classes"]), pretrained=False,
                        kg_edges=None if kg is None else len(kg),
                        class_dim=None if nodes is None else nodes.shape[1])
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as e:
        changed = model_changes(state.get("config", {}), cfg)
        why = ", ".join(changed) or " ".join(str(e).split())[:300]
        raise IvrError(f"the checkpoint's weights do not fit the model the config builds: "
                       f"{why}; leave the checkpoint's model settings as they are") from None
    return model
