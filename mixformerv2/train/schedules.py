"""Learning-rate and layer-fade schedules as pure functions of the position in training.

Steps (optimiser iterations) and epochs are 0-based counts of what has already run, so a resumed run needs only
its step or epoch to continue exactly. The learning-rate functions return a factor for the base rate of every
parameter group (e.g. ``group["lr"] = group_base_lr * factor``, or ``torch.optim.lr_scheduler.LambdaLR``).
"""
from __future__ import annotations

import math
from typing import Sequence

from ..config.schema import LR_SCHEDULES


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")


def _check_position(name: str, value: int) -> None:
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")


def step_lr_factor(step: int, steps_per_epoch: int, drop_epoch: int, gamma: float = 0.1) -> float:
    """The official schedule (``StepLR(step_size=drop_epoch)``, stepped once per epoch): gamma^(epoch // drop_epoch).

    With drop_epoch 400 and 500 epochs, epochs 0..399 run at the base rate and 400..499 at gamma times it.
    """
    _check_positive(steps_per_epoch=steps_per_epoch, drop_epoch=drop_epoch)
    _check_position("step", step)
    return gamma ** ((step // steps_per_epoch) // drop_epoch)


def warmup_factor(step: int, warmup_steps: int) -> float:
    """Linear warm-up: (step + 1) / warmup_steps over the first ``warmup_steps`` steps, 1 from then on (and
    always 1 when ``warmup_steps`` is 0), so step warmup_steps - 1 already runs at 1."""
    _check_position("step", step)
    _check_position("warmup_steps", warmup_steps)
    return (step + 1) / warmup_steps if step < warmup_steps else 1.0


def cosine_lr_factor(step: int, total_steps: int, warmup_steps: int = 0, min_factor: float = 0.0) -> float:
    """Linear warm-up to 1 over ``warmup_steps`` steps, then a half cosine from 1 to ``min_factor``.

    Warm-up: ``warmup_factor``. Cosine: at
    step = warmup_steps + t * (total_steps - warmup_steps), factor = min + (1 - min) * (1 + cos(pi t)) / 2;
    ``min_factor`` from ``total_steps`` on.
    """
    _check_positive(total_steps=total_steps)
    _check_position("step", step)
    if not 0 <= warmup_steps < total_steps:
        raise ValueError(f"warmup_steps must be in [0, total_steps = {total_steps}), got {warmup_steps}")
    if step < warmup_steps:
        return warmup_factor(step, warmup_steps)
    progress = min(1.0, (step - warmup_steps) / (total_steps - warmup_steps))
    return min_factor + (1 - min_factor) * 0.5 * (1 + math.cos(math.pi * progress))


def lr_factor(schedule: str, step: int, steps_per_epoch: int, *, drop_epoch: int | None = None,
              gamma: float = 0.1, epochs: int | None = None, warmup_steps: int = 0,
              min_factor: float = 0.0) -> float:
    """Learning-rate factor of a named schedule (``LR_SCHEDULES``) at ``step``, both warming up linearly over the
    first ``warmup_steps`` steps (the train config's ``warmup_iters``).

    "step" (needs ``drop_epoch``): ``warmup_factor(step, warmup_steps) * step_lr_factor(step, steps_per_epoch,
    drop_epoch, gamma)``. "cosine" (needs ``epochs``): ``cosine_lr_factor`` over ``epochs * steps_per_epoch``
    steps, the first ``warmup_steps`` of them warming up.
    """
    if schedule == "step":
        if drop_epoch is None:
            raise ValueError("the 'step' learning-rate schedule needs drop_epoch")
        return warmup_factor(step, warmup_steps) * step_lr_factor(step, steps_per_epoch, drop_epoch, gamma)
    if schedule == "cosine":
        if epochs is None:
            raise ValueError("the 'cosine' learning-rate schedule needs epochs")
        return cosine_lr_factor(step, epochs * steps_per_epoch, warmup_steps, min_factor)
    raise ValueError(f"unknown learning-rate schedule {schedule!r}; expected one of {', '.join(LR_SCHEDULES)}")


def layer_fade(epoch: int, remove_epochs: int) -> float:
    """Residual scale of the layers being removed (deep-to-shallow stage) during 0-based epoch ``epoch``.

    A half cosine from 1 to 0 over the removal epochs 0 .. remove_epochs - 1, each epoch running at the value
    reached at its end: (1 + cos(pi * min(epoch + 1, R) / R)) / 2, so the last removal epoch and every later one
    run at 0 (the faded layers are then an identity and can be dropped).

    The official trainer evaluates the same expression with its 1-based epoch number (official_spec §3.6), i.e.
    it runs one epoch ahead of this schedule: its first epoch at layer_fade(1) = 0.99384, and 0 from its 39th.
    """
    _check_positive(remove_epochs=remove_epochs)
    _check_position("epoch", epoch)
    return 0.5 * (1 + math.cos(math.pi * min(epoch + 1, remove_epochs) / remove_epochs))


def block_scales(depth: int, remove_layers: Sequence[int], fade: float) -> list[float]:
    """Per-block residual scales for the models' ``block_scales`` argument: ``fade`` for the blocks in
    ``remove_layers``, 1 for the others. (depth,) list of floats."""
    missing = [i for i in remove_layers if not 0 <= i < depth]
    if missing:
        raise ValueError(f"remove_layers: layer {missing[0]} does not exist in a model of {depth} layers")
    if not 0.0 <= fade <= 1.0:
        raise ValueError(f"fade must be in [0, 1], got {fade}")
    removed = set(remove_layers)
    return [fade if i in removed else 1.0 for i in range(depth)]
