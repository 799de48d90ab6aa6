"""The attention over candidates and its losses, the memory write's init, the TF1 resize of
the memory init, and float32 memory bookkeeping under mixed precision."""

import pytest
import torch

from ivr_core.models import BaselineModel, ResNetC4, SpatialMemoryModel
from ivr_core.models.backbone import RandomInitWarning
from ivr_core.models.heads import attend, candidate_logits, candidate_names, reasoning_losses
from ivr_core.models.memory import resize_bilinear_tf1

SMALL_MEMORY = dict(channels=8, init_size=5, fc_dim=16, norm="group", norm_groups=4)


def _memory_model(**kw):
    with pytest.warns(RandomInitWarning):
        backbone = ResNetC4("resnet18", weights="none", norm="bn", fixed_blocks=0, tail_stride=2)
    return SpatialMemoryModel(BaselineModel(backbone, num_classes=4), **{**SMALL_MEMORY, **kw})


def test_candidates_are_named_in_the_attentions_order():
    a, b = torch.zeros(2, 3), torch.ones(2, 3)
    modules = {"local": [a, b, b], "global": [a, b, b]}
    assert candidate_names(modules) == ["local 0", "local 1", "local 2", "global 1", "global 2"]
    assert len(candidate_logits(modules)) == 5
    assert candidate_logits(modules)[0] is a  # the shared baseline prediction appears once


def test_a_neglected_candidate_still_gets_a_gradient_from_the_prior():
    # the collapse: iteration 0 holds all the weight, iteration 1 is right but weighs ~1e-9.
    # Through the final loss its confidence gets a gradient scaled by that weight; the prior
    # KL(uniform || attention) gives it an O(1) push back.
    classes = torch.tensor([1, 1, 1])
    useless, right = torch.zeros(3, 2), torch.tensor([[0.0, 6.0]] * 3)
    confidence = torch.tensor([[20.0, -1.0]] * 3, requires_grad=True)

    def losses(prior_weight):
        outputs = {**attend([useless, right], list(confidence.unbind(1))),
                   "modules": {"local": [useless, right]}}
        return reasoning_losses(outputs, classes, 0.5, 1.0, 1.0, prior_weight=prior_weight)

    grad_final, = torch.autograd.grad(losses(0.0)["final"], confidence)
    grad_prior, = torch.autograd.grad(losses(1.0)["prior"], confidence)
    assert grad_final[:, 1].abs().max() < 1e-6
    assert (grad_prior[:, 1] < -0.1).all()  # descending raises iteration 1's confidence
    assert set(losses(0.0)) == {"base", "iter", "final"}  # weight 0: the authors' losses


def test_the_prior_is_zero_for_a_uniform_attention():
    outputs = {**attend([torch.zeros(4, 3)] * 3, [torch.full((4,), 2.0)] * 3),
               "modules": {"local": [torch.zeros(4, 3)] * 3}}
    prior = reasoning_losses(outputs, torch.ones(4, dtype=torch.long), 0.5, 1.0, 1.0, 1.0)["prior"]
    assert prior.abs().item() < 1e-6


def _attention_after_training(prior_weight: float, steps: int = 1000) -> torch.Tensor:
    """The mean attention over [iteration 0, iteration 1] after SGD on the losses, with one
    confidence per candidate, on training regions that iteration 0 gets all right (the baseline head
    memorises its training images) and iteration 1 three in four."""
    classes = torch.ones(16, dtype=torch.long)
    memorised = torch.tensor([[0.0, 4.0]] * 16)
    reasoned = torch.tensor([[0.0, 4.0]] * 12 + [[2.0, 0.0]] * 4)
    bias = torch.zeros(2, requires_grad=True)  # one confidence per candidate, for all regions
    opt = torch.optim.SGD([bias], lr=1.0)
    for _ in range(steps):
        confidence = bias.expand(16, 2)
        outputs = {**attend([memorised, reasoned], list(confidence.unbind(1))),
                   "modules": {"local": [memorised, reasoned]}}
        losses = reasoning_losses(outputs, classes, 0.5, 1.0, 1.0, prior_weight=prior_weight)
        opt.zero_grad()
        (losses["final"] + losses.get("prior", 0.0)).backward()
        opt.step()
    return torch.softmax(bias.detach(), 0)


def test_the_final_loss_alone_collapses_the_attention_and_the_prior_bounds_it():
    # the mechanism behind the collapse: the final loss moves all weight to the candidate
    # best on the training images, whatever its worth on unseen ones; KL(uniform ||
    # attention) keeps every candidate in the answer
    alone = _attention_after_training(0.0)
    with_prior = _attention_after_training(1.0)
    assert alone[0] > 0.97
    assert 0.5 < with_prior[0] < 0.7
    assert with_prior[1] > 5 * alone[1]


def _toy_batch(g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A 64x64 image with 4 squares; a square's class (1..3) is its colour channel."""
    image, boxes, classes = torch.zeros(1, 3, 64, 64), [], []
    for _ in range(4):
        x, y = torch.randint(0, 40, (2,), generator=g).tolist()
        c = int(torch.randint(1, 4, (1,), generator=g))
        image[0, c - 1, y:y + 20, x:x + 20] = 1.0
        boxes.append([x, y, x + 19, y + 19])
        classes.append(c)
    return image, torch.tensor(boxes, dtype=torch.float32), torch.tensor(classes)


def test_the_attention_moves_off_a_useless_first_iteration():
    torch.manual_seed(0)
    model = _memory_model(iterations=2)
    with torch.no_grad():  # iteration 0 (the baseline head): constant logits, confidently wrong
        model.base.cls.weight.zero_()
        model.base.cls.bias.copy_(torch.tensor([4.0, 0, 0, 0]))
    model.base.cls.requires_grad_(False)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    g = torch.Generator().manual_seed(0)
    model.train()
    weights = []
    for _ in range(10):
        image, boxes, classes = _toy_batch(g)
        out = model(image, boxes)
        weights.append(out["attention"][:, 0].mean().item())
        opt.zero_grad()
        sum(model.losses(out, classes).values()).backward()
        opt.step()
    assert torch.equal(out["iterations"][0], out["iterations"][0][:1].expand_as(out["iterations"][0]))
    assert weights[0] == pytest.approx(1 / 2, abs=0.05)  # two candidates; starts even
    assert weights[-1] < 0.15  # and leaves the useless iteration


def test_memory_write_layers_start_with_the_authors_init():
    torch.manual_seed(0)
    model = _memory_model(channels=64, fc_dim=32, norm_groups=8)
    write = [model.input_pool5[0], model.input_logits, *model.update.children()]
    for layer in write:
        assert layer.weight.std().item() == pytest.approx(0.01, rel=0.15)
        assert layer.bias is None or not layer.bias.any()
    he = _memory_model(channels=64, fc_dim=32, norm_groups=8, write_init="he")
    assert he.update.n_a.weight.std() > 5 * model.update.n_a.weight.std()
    # the read path keeps variance scaling, as the authors' context convs and FCs do
    assert model.context.first[0].weight.std().item() == pytest.approx((2 / (64 * 9)) ** 0.5, rel=0.15)


def test_tf1_legacy_resize_by_hand():
    # TF1 resize_bilinear, align_corners=False, no half-pixel centres: out[i] = in at i * 2 / 4
    x = torch.tensor([[[[0.0, 10.0], [20.0, 30.0]]]])
    out = resize_bilinear_tf1(x, (4, 4))
    assert out[0, 0, 0].tolist() == [0.0, 5.0, 10.0, 10.0]  # sources 0, 0.5, 1, 1.5 -> clamped
    assert out[0, 0, :, 0].tolist() == [0.0, 10.0, 20.0, 20.0]
    assert out[0, 0, 1, 1].item() == 15.0  # (0.5, 0.5): mean of the four
    down = resize_bilinear_tf1(torch.arange(16.0).view(1, 1, 4, 4), (2, 2))
    assert down[0, 0].tolist() == [[0.0, 2.0], [8.0, 10.0]]  # sources 0 and 2


@pytest.mark.parametrize("ops", ["reference", "auto"])
def test_memory_count_is_exact_under_bf16_autocast(ops):
    from ivr_core.ops import set_backend
    set_backend(ops)
    try:
        model = _memory_model(iterations=2)
        k = 1001  # not representable in bf16 (its neighbours are 1000 and 1008)
        boxes = torch.tensor([[10.0, 10.0, 60.0, 60.0]] * k)
        image = torch.randn(1, 3, 96, 96)
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            base = model.base.regions(image, boxes)
            st = model.start(base, boxes, None)
            assert st["count"].dtype == torch.float32 and st["memory"].dtype == torch.float32
            assert st["count"].max().item() == k
            model.write(st, base["logits"])
        assert st["memory"].dtype == torch.float32
    finally:
        set_backend("auto")


def test_the_attention_temperature_applies_when_evaluating_only():
    torch.manual_seed(0)
    model = _memory_model(iterations=3, attention_temperature=1e6)
    image, boxes = torch.randn(1, 3, 96, 96), torch.tensor([[5.0, 5, 40, 50], [30, 20, 90, 70]])
    with torch.no_grad():
        model.confidence.weight.mul_(1000)  # confidences far apart
        trained = model.train()(image, boxes)
        tested = model.eval()(image, boxes)
    assert torch.allclose(trained["attention"], torch.softmax(trained["confidence"], 1))
    assert trained["attention"].max() > 0.9
    assert torch.allclose(tested["attention"], torch.full_like(tested["attention"], 1 / 3),
                          atol=1e-3)  # a very high temperature: the uniform control
    mean_logits = torch.stack(tested["iterations"]).mean(0)
    assert torch.allclose(tested["final"], mean_logits, atol=1e-3)
