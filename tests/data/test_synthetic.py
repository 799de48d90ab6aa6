"""The synthetic dataset's design: what makes context necessary is really there."""

import numpy as np

from ivr_core.data import synthetic
from ivr_core.data.synthetic import CONTAINERS, CONTEXT, PLATE_H, PLATE_W, PLATES, render


def _box(mask):
    ys, xs = np.nonzero(mask)
    return xs.min(), ys.min(), xs.max() + 1, ys.max() + 1


def test_render_is_deterministic_per_seed_and_index():
    a, b, c = render(0, 5), render(0, 5), render(1, 5)
    assert np.array_equal(a.image, b.image)
    assert [i.name for i in a.instances] == [i.name for i in b.instances]
    assert not np.array_equal(a.image, c.image)


def test_loose_plates_lie_far_from_their_only_container():
    scenes = [render(0, i) for i in range(40)]
    with_plates = [s for s in scenes if any(i.name in PLATES.values() for i in s.instances)]
    assert 8 <= len(with_plates) <= 32  # about half of the images
    loose_seen = 0
    for scene in with_plates:
        w = scene.image.shape[1]
        containers = [i for i in scene.instances if i.name in CONTAINERS]
        assert len(containers) == 1
        kind = containers[0].name
        cx1, _, cx2, _ = _box(containers[0].mask)
        plates = [i for i in scene.instances if i.name in PLATES.values()]
        assert {p.name for p in plates} == {PLATES[kind]}  # the container decides the class
        inside = [p for p in plates if p.level == 1]
        loose = [p for p in plates if p.level == 0]
        assert len(inside) == 1 and (inside[0].mask & ~containers[0].mask).sum() == 0
        for p in loose:
            x1, y1, x2, y2 = _box(p.mask)
            assert (x2 - x1, y2 - y1) == (PLATE_W, PLATE_H)  # every plate looks the same
            gap = x1 - cx2 if x1 >= cx2 else cx1 - x2
            assert gap > 0.3 * w  # across the image from the container
        loose_seen += len(loose)
    assert loose_seen >= len(with_plates)


def test_plates_and_windows_are_the_context_classes():
    names = {n.replace(" ", "_") for n in (*CONTEXT.values(), *PLATES.values())}
    assert set(synthetic.CONTEXT_CLASSES) == names
