import warnings

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torchvision.ops.misc import FrozenBatchNorm2d

from ivr_core.config import load_config
from ivr_core.models import BaselineModel, ResNetC4, SpatialMemoryModel, build_model
from ivr_core.models.backbone import RandomInitWarning
from ivr_core.models.heads import hard_example_weights

SMALL_MEMORY = dict(channels=8, init_size=5, fc_dim=16, norm="group", norm_groups=4)


def _inputs(k=5, h=100, w=130):
    torch.manual_seed(0)
    image = torch.randn(1, 3, h, w)
    xy = torch.rand(k, 2) * torch.tensor([w - 30, h - 30])
    boxes = torch.cat([xy, xy + 5 + torch.rand(k, 2) * 25], dim=1)
    return image, boxes, torch.randint(1, 6, (k,))


def _backbone(**kw):
    with pytest.warns(RandomInitWarning):
        return ResNetC4("resnet18", weights="none", norm="bn", fixed_blocks=0, **kw)


def test_backbone_c4_layout_stride_16_and_tail():
    net = _backbone(tail_stride=1)
    feature = net.forward_head(torch.randn(1, 3, 100, 130))
    assert feature.shape == (1, 256, 7, 9)  # ceil(100/16), ceil(130/16)
    assert net.forward_tail(torch.randn(3, 256, 7, 7)).shape == (3, 512)
    assert net.tail(torch.randn(1, 256, 7, 7)).shape[-1] == 7  # stride 1: no downsampling


def test_frozen_batchnorm_and_fixed_blocks():
    with pytest.warns(RandomInitWarning):
        net = ResNetC4("resnet50", weights="none", norm="frozen_bn", fixed_blocks=1)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    trainable = {n.split(".")[1] for n, p in net.named_parameters() if p.requires_grad}
    assert trainable == {"5", "6"} or trainable >= {"5", "6"}  # layer2, layer3 of the head
    assert not any(p.requires_grad for p in net.head[0].parameters())  # conv1
    assert not any(p.requires_grad for p in net.head[4].parameters())  # layer1
    assert net.feature_channels == 1024 and net.out_channels == 2048


def test_frozen_batchnorm_built_in_equals_one_swapped_in_after_construction(tmp_path):
    """norm_layer=FrozenBatchNorm2d gives the network that replacing each trained batch norm
    by a frozen copy gives: same state-dict keys, same values, same outputs."""
    torch.manual_seed(1)
    reference = torchvision.models.resnet18(weights=None)
    for module in reference.modules():  # non-trivial statistics and affine to carry over
        if isinstance(module, torch.nn.BatchNorm2d):
            for buffer in (module.weight, module.bias, module.running_mean):
                buffer.data.uniform_(-0.5, 0.5)
            module.running_var.data.uniform_(0.5, 2.0)
    torch.save(reference.state_dict(), tmp_path / "r18.pth")
    for name, child in list(reference.named_modules()):
        for key, bn in list(child.named_children()):
            if isinstance(bn, torch.nn.BatchNorm2d):
                frozen = FrozenBatchNorm2d(bn.num_features, eps=bn.eps)
                for buffer in ("weight", "bias", "running_mean", "running_var"):
                    getattr(frozen, buffer).copy_(getattr(bn, buffer).detach())
                setattr(child, key, frozen)
    net = ResNetC4("resnet18", weights=str(tmp_path / "r18.pth"), norm="frozen_bn")
    ours = {**{f"head.{k}": v for k, v in net.head.state_dict().items()},
            **{f"tail.{k}": v for k, v in net.tail.state_dict().items()}}
    head = torch.nn.Sequential(reference.conv1, reference.bn1, reference.relu,
                               reference.maxpool, reference.layer1, reference.layer2,
                               reference.layer3)
    theirs = {**{f"head.{k}": v for k, v in head.state_dict().items()},
              **{f"tail.{k}": v for k, v in reference.layer4.state_dict().items()}}
    assert list(ours) == list(theirs)
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    image = torch.randn(1, 3, 64, 80)
    assert torch.equal(net.forward_head(image), head.eval()(image))


def test_a_model_for_a_checkpoint_is_built_without_the_random_init_warning():
    cfg = load_config(overrides=["model.backbone=resnet18", "model.weights=none"])
    with warnings.catch_warnings():
        warnings.simplefilter("error", RandomInitWarning)
        build_model(cfg, 4, pretrained=False)
    with pytest.warns(RandomInitWarning):
        build_model(cfg, 4)


def test_baseline_shapes_and_backward():
    model = BaselineModel(_backbone(), num_classes=6)
    image, boxes, classes = _inputs()
    out = model(image, boxes)
    assert out["final"].shape == (5, 6) and len(out["iterations"]) == 1
    loss = sum(model.losses(out, classes).values())
    loss.backward()
    assert model.cls.weight.grad is not None and model.backbone.head[0].weight.grad is not None


@pytest.mark.parametrize("iterations", [1, 2, 3])
def test_memory_shapes_backward_and_attention(iterations):
    base = BaselineModel(_backbone(), num_classes=6)
    model = SpatialMemoryModel(base, iterations=iterations, **SMALL_MEMORY)
    image, boxes, classes = _inputs()
    out = model(image, boxes)
    assert len(out["iterations"]) == iterations and out["final"].shape == (5, 6)
    assert out["attention"].shape == (5, iterations)
    assert torch.allclose(out["attention"].sum(1), torch.ones(5))
    assert [m.shape for m in out["memories"]] == [(1, 8, 7, 9)] * iterations
    expected = sum(out["attention"][:, i:i + 1] * out["iterations"][i] for i in range(iterations))
    assert torch.allclose(out["final"], expected, atol=1e-6)
    parts = model.losses(out, classes)
    assert set(parts) == ({"base", "final"} if iterations == 1
                          else {"base", "iter", "final"})  # the authors' losses by default
    sum(parts.values()).backward()
    assert model.confidence.weight.grad is not None
    if iterations > 1:
        assert model.update.n_a.weight.grad is not None
        assert model.memory_init.grad is not None


def test_final_loss_reaches_no_classifier():
    # the attended logits are detached: the final loss trains the confidences (and the memory
    # path that feeds them), never the classifiers or the backbone
    base = BaselineModel(_backbone(), num_classes=6)
    model = SpatialMemoryModel(base, iterations=3, **SMALL_MEMORY)
    image, boxes, classes = _inputs()
    F.cross_entropy(model(image, boxes)["final"], classes).backward()
    grads = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert "confidence.weight" in grads
    assert not any(n.startswith(("base.", "cls.")) for n in grads)


def test_first_iteration_is_the_baseline_head():
    base = BaselineModel(_backbone(), num_classes=6).eval()
    model = SpatialMemoryModel(base, iterations=2, **SMALL_MEMORY).eval()
    image, boxes, _ = _inputs()
    with torch.no_grad():
        assert torch.equal(model(image, boxes)["iterations"][0], base(image, boxes)["final"])


def test_hard_example_weights_by_hand():
    # softmax at the true class: p = [0.9, 0.2, 0.5]; q = 1 - p = [0.1, 0.8, 0.5];
    # p >= 1 - beta (0.5) -> beta: [0.5, 0.8, 0.5]; normalised by 1.8
    p = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.5, 0.5]])
    q = hard_example_weights(p.log(), torch.tensor([0, 1, 0]), beta=0.5)
    assert torch.allclose(q, torch.tensor([0.5, 0.8, 0.5]) / 1.8)


def test_build_model_reads_every_size_from_config():
    cfg = load_config(overrides=["model.type=memory", "model.backbone=resnet18",
                                 "model.weights=none", "model.norm=bn", "model.crop_size=5",
                                 "memory.channels=12", "memory.fc_dim=20", "memory.iterations=4",
                                 "memory.context_layers=5", "memory.input_convs=3",
                                 "memory.init_size=6"])
    with pytest.warns(RandomInitWarning):
        model = build_model(cfg, num_classes=9)
    assert model.memory_init.shape == (1, 12, 6, 6)
    assert model.fc[0].in_features == 12 * 5 * 5 and model.fc[2].out_features == 20
    assert len(model.context.blocks) == 2 and len(model.input_convs) == 2
    assert model.iterations == 4 and model.cls.out_features == 9
    image, boxes, _ = _inputs()
    assert len(model(image, boxes)["iterations"]) == 4


def test_empty_region_list_is_handled():
    base = BaselineModel(_backbone(), num_classes=6)
    model = SpatialMemoryModel(base, iterations=2, **SMALL_MEMORY).eval()
    image, _, _ = _inputs()
    with torch.no_grad():
        out = model(image, torch.zeros(0, 4))
    assert out["final"].shape == (0, 6)


def _reference_state():
    import torchvision
    torch.manual_seed(1)
    return torchvision.models.resnet18().state_dict()


def test_backbone_weights_from_a_local_file(tmp_path):
    state = _reference_state()
    torch.save({"state_dict": state}, tmp_path / "r18.pth")
    net = ResNetC4("resnet18", weights=str(tmp_path / "r18.pth"), norm="bn", fixed_blocks=0)
    assert torch.equal(net.head[0].weight, state["conv1.weight"])
    assert torch.equal(net.tail[1].conv2.weight, state["layer4.1.conv2.weight"])


def test_backbone_weights_from_torchvisions_cache(tmp_path, monkeypatch):
    import torchvision
    url = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    state = _reference_state()
    torch.save(state, tmp_path / "hub" / "checkpoints" / url.rsplit("/", 1)[1])
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    net = ResNetC4("resnet18", weights="torchvision", norm="frozen_bn")
    assert torch.equal(net.head[0].weight, state["conv1.weight"])


def test_bad_backbone_weights_are_user_errors(tmp_path):
    from ivr_core.errors import IvrError
    with pytest.raises(IvrError, match="backbone weights file not found"):
        ResNetC4("resnet18", weights=str(tmp_path / "missing.pth"))
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "wrong.pth")
    with pytest.raises(IvrError, match="do not fit torchvision's resnet18"):
        ResNetC4("resnet18", weights=str(tmp_path / "wrong.pth"))
