"""Learning-rate and layer-fade schedules against hand-computed values and torch's StepLR."""
import math

import pytest
import torch

from mixformerv2.train.schedules import block_scales, cosine_lr_factor, layer_fade, lr_factor, step_lr_factor


def test_step_lr_drops_by_gamma_every_drop_epoch():
    assert step_lr_factor(0, steps_per_epoch=10, drop_epoch=3) == 1.0
    assert step_lr_factor(29, steps_per_epoch=10, drop_epoch=3) == 1.0  # last step of epoch 2
    assert step_lr_factor(30, steps_per_epoch=10, drop_epoch=3) == pytest.approx(0.1)
    assert step_lr_factor(60, steps_per_epoch=10, drop_epoch=3, gamma=0.5) == 0.25
    # the official 500-epoch recipe: base rate for 400 epochs, a tenth for the last 100
    assert step_lr_factor(399 * 234 + 233, 234, 400) == 1.0 and step_lr_factor(400 * 234, 234, 400) == 0.1


def test_step_lr_equals_torch_steplr_stepped_per_epoch():
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=3, gamma=0.1)
    for epoch in range(10):
        for step in range(epoch * 5, epoch * 5 + 5):
            assert step_lr_factor(step, 5, 3) == pytest.approx(optimizer.param_groups[0]["lr"], rel=1e-12)
        optimizer.step()
        scheduler.step()


def test_cosine_lr_with_warmup():
    assert cosine_lr_factor(0, total_steps=110, warmup_steps=10) == pytest.approx(0.1)
    assert cosine_lr_factor(9, 110, 10) == 1.0
    assert cosine_lr_factor(10, 110, 10) == 1.0
    assert cosine_lr_factor(60, 110, 10) == pytest.approx(0.5)  # half way: (1 + cos(pi / 2)) / 2
    assert cosine_lr_factor(35, 110, 10) == pytest.approx((1 + math.cos(math.pi / 4)) / 2)
    assert cosine_lr_factor(110, 110, 10) == pytest.approx(0.0)
    assert cosine_lr_factor(500, 110, 10, min_factor=0.1) == pytest.approx(0.1)
    assert cosine_lr_factor(60, 110, 10, min_factor=0.1) == pytest.approx(0.55)
    assert cosine_lr_factor(0, 100) == 1.0
    with pytest.raises(ValueError, match="warmup_steps"):
        cosine_lr_factor(0, 10, 10)


def test_lr_factor_by_name():
    assert lr_factor("step", 30, 10, drop_epoch=3) == step_lr_factor(30, 10, 3)
    assert lr_factor("cosine", 60, 10, epochs=11, warmup_steps=10) == cosine_lr_factor(60, 110, 10)
    # the step schedule warms up too: 5 warm-up steps, drop after 3 epochs of 10 steps
    assert [lr_factor("step", s, 10, drop_epoch=3, warmup_steps=5) for s in (0, 3, 4, 29, 30)] == pytest.approx(
        [0.2, 0.8, 1.0, 1.0, 0.1])
    with pytest.raises(ValueError, match="'linear'.*step, cosine"):
        lr_factor("linear", 0, 10)
    with pytest.raises(ValueError, match="drop_epoch"):
        lr_factor("step", 0, 10)


def test_layer_fade_is_a_cosine_over_the_removal_epochs():
    assert layer_fade(0, 4) == pytest.approx((1 + math.cos(math.pi / 4)) / 2)
    assert layer_fade(1, 4) == pytest.approx(0.5)
    assert layer_fade(3, 4) == 0.0 and layer_fade(10, 4) == 0.0
    assert all(layer_fade(e, 40) > layer_fade(e + 1, 40) for e in range(39))
    with pytest.raises(ValueError, match="remove_epochs"):
        layer_fade(0, 0)


@pytest.mark.parametrize("official_epoch, rate", [(1, 0.99384), (2, 0.98618), (5, 0.9455), (10, 0.82472),
                                                  (19, 0.5), (20, 0.46077), (30, 0.1198), (38, 0.00154),
                                                  (39, 0.0), (45, 0.0)])
def test_layer_fade_is_the_official_rate_one_epoch_later(official_epoch, rate):
    # official_spec §3.6: the official trainer's 1-based epoch e runs at our value for epoch index e
    assert layer_fade(official_epoch, 40) == pytest.approx(rate, abs=5e-6)


def test_block_scales():
    assert block_scales(6, [0, 3], 0.25) == [0.25, 1.0, 1.0, 0.25, 1.0, 1.0]
    assert block_scales(3, [], 0.0) == [1.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="layer 9 does not exist in a model of 8 layers"):
        block_scales(8, [0, 9], 0.5)
    with pytest.raises(ValueError, match="fade"):
        block_scales(8, [0], 1.5)
