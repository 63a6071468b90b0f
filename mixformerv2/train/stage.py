"""The Stage protocol: one object per training stage owns its networks and losses; the trainer knows only this.

A stage (pytracking's actor, DINOv2's ``SSLMetaArch``) holds the student that trains and, where used, a frozen
teacher; it says which parameters train and in which optimizer groups, computes ``loss(batch, step) -> (loss,
metrics)``, reacts to epoch starts (schedules such as the layer fade), saves and restores the parts that train, and
at the end hands over the model to save in the official layout. ``BaseStage`` implements all of it except ``loss``
for the usual student (+ frozen teacher) case. Two optional hooks, looked up by the trainer with ``getattr``:
``final_extra() -> dict`` (fields saved next to ``'net'`` in the final model, e.g. the removed layers) and
``validation_summary(gather) -> dict`` (split-level validation metrics such as AUROC, which are not means of
per-batch values; ``gather(obj)`` returns every rank's ``obj``).

Stages are built by name (``train.stage``) from a registry: ``@register_stage("teacher")`` on a factory
``(cfg: Config, device: torch.device) -> Stage``, then ``build_stage(cfg, device)``, which first imports the
package ``mixformerv2.train.stages`` (if present) so that its modules register themselves.
"""
from __future__ import annotations

import importlib
from typing import Any, Callable, Iterable, Mapping, Protocol, runtime_checkable

import torch
from torch import nn

from ..config import Config, ConfigError, TrainConfig
from ..models.checkpoint import load_state_dict_strict

Metrics = dict[str, "float | torch.Tensor"]
StageFactory = Callable[[Config, torch.device], "Stage"]


@runtime_checkable
class Stage(Protocol):
    """What the trainer calls. ``batch`` is the loader's dict with its tensors already on the stage's device."""

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Every parameter the optimizer updates (the union of ``param_groups``), for clipping and checks."""

    def param_groups(self, cfg: TrainConfig) -> list[dict[str, Any]]:
        """Optimizer groups ``{"name": str, "params": [...], "lr": float}``; frozen parameters are left out."""

    def loss(self, batch: Mapping[str, Any], step: int) -> tuple[torch.Tensor, Metrics]:
        """The scalar loss to minimise at iteration ``step`` and named metrics (0-dim tensors or floats), e.g.
        ``{"loss/ciou": ..., "iou": ...}``; validation averages the same metrics."""

    def train(self, mode: bool = True) -> None:
        """Training mode for the parts that train (frozen teachers stay in eval mode)."""

    def eval(self) -> None: ...

    def on_epoch_start(self, epoch: int) -> None:
        """Called before each epoch (0-based), also the first one after a resume."""

    def wrap_modules(self, wrap: Callable[[nn.Module], nn.Module]) -> None:
        """Replace each module that trains by ``wrap(module)`` (DistributedDataParallel) and call it from then on."""

    def state_dict(self) -> dict[str, Any]:
        """What resuming needs of the stage (tensors, numbers, strings, lists and dicts only)."""

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore ``state_dict()``'s output strictly; raises naming the first mismatching key."""

    def finalize(self) -> nn.Module:
        """The trained network to save as ``{'net': state_dict}`` (after any surgery such as dropping layers)."""


def official_param_groups(named_parameters: Iterable[tuple[str, nn.Parameter]], lr: float,
                          backbone_lr_multiplier: float) -> list[dict[str, Any]]:
    """official_spec §3.5: parameters whose name contains ``backbone`` train at ``lr * backbone_lr_multiplier``,
    the others (heads) at ``lr``; parameters with ``requires_grad`` False are left out, and so are empty groups."""
    head, backbone = [], []
    for name, param in named_parameters:
        if param.requires_grad:
            (backbone if "backbone" in name else head).append(param)
    groups = [{"name": "head", "params": head, "lr": lr},
              {"name": "backbone", "params": backbone, "lr": lr * backbone_lr_multiplier}]
    return [g for g in groups if g["params"]]


def unwrap(module: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel (or any ``.module``) wrapper; the module itself otherwise."""
    return module.module if isinstance(module, nn.parallel.DistributedDataParallel) else module


class BaseStage:
    """A stage with a ``student`` that trains and an optional frozen ``teacher``; subclasses write ``loss``.

    The teacher is put in eval mode with ``requires_grad`` False and never wrapped; ``self.student`` may be a DDP
    wrapper after ``wrap_modules`` (call it in ``loss``), ``self.raw_student`` is always the network itself.
    """

    def __init__(self, student: nn.Module, teacher: nn.Module | None = None):
        self.student = student
        self.teacher = teacher
        if teacher is not None:
            teacher.requires_grad_(False)
            teacher.eval()

    @property
    def raw_student(self) -> nn.Module:
        return unwrap(self.student)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.raw_student.parameters() if p.requires_grad]

    def param_groups(self, cfg: TrainConfig) -> list[dict[str, Any]]:
        return official_param_groups(self.raw_student.named_parameters(), cfg.lr, cfg.backbone_lr_multiplier)

    def loss(self, batch: Mapping[str, Any], step: int) -> tuple[torch.Tensor, Metrics]:
        raise NotImplementedError(f"{type(self).__name__} must define loss(batch, step)")

    def train(self, mode: bool = True) -> None:
        self.student.train(mode)
        if self.teacher is not None:
            self.teacher.eval()

    def eval(self) -> None:
        self.train(False)

    def on_epoch_start(self, epoch: int) -> None:
        pass

    def wrap_modules(self, wrap: Callable[[nn.Module], nn.Module]) -> None:
        self.student = wrap(self.student)

    def state_dict(self) -> dict[str, Any]:
        return {"student": self.raw_student.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if "student" not in state:
            raise KeyError(f"stage state has no 'student' entry (keys: {sorted(state)})")
        load_state_dict_strict(self.raw_student, state["student"], "stage state 'student'")

    def finalize(self) -> nn.Module:
        return self.raw_student


_STAGES: dict[str, StageFactory] = {}


def register_stage(name: str) -> Callable[[StageFactory], StageFactory]:
    """Decorator: make ``factory(cfg, device) -> Stage`` buildable as ``train.stage: <name>``."""

    def decorator(factory: StageFactory) -> StageFactory:
        if _STAGES.get(name, factory) is not factory:
            raise ValueError(f"stage {name!r} is already registered (by {_STAGES[name].__qualname__})")
        _STAGES[name] = factory
        return factory

    return decorator


def list_stages() -> list[str]:
    """The names ``train.stage`` may take: the package's stages and any registered since (tests, plugins). Pass
    them to ``load_config(..., stages=list_stages())``."""
    _import_stage_modules()
    return sorted(_STAGES)


def _import_stage_modules() -> None:
    """Import ``mixformerv2.train.stages`` (whose modules register the package's stages) when it exists."""
    name = f"{__package__}.stages"
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as err:
        if err.name != name:
            raise


def build_stage(cfg: Config, device: torch.device) -> Stage:
    """The stage ``cfg.train.stage`` names, built on ``device``; an unknown name raises naming the key."""
    _import_stage_modules()
    factory = _STAGES.get(cfg.train.stage)
    if factory is None:
        raise ConfigError(f"train.stage: unknown stage {cfg.train.stage!r} "
                         f"(registered: {', '.join(list_stages()) or 'none'})")
    return factory(cfg, device)
