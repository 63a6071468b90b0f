"""Value rules of a ``Config``: enumerations, ranges, registered dataset names and cross-field consistency.

``config_problems(cfg)`` lists every broken rule as ``Problem(key, message, related)``: ``key`` is the dotted key
the message is about, ``related`` the other keys the rule reads (the loader names the file or ``--set`` that last
set any of them). ``validate_config`` raises the first one as a ``ConfigError``.

``train.stage`` is an enumeration: by default the package's ``STAGES``. The stages themselves live in ``train``,
which ``config`` must not import, so a caller that knows the registered stages (``tools/train.py``:
``mixformerv2.train.stage.list_stages()``, which also holds stages registered by tests or plugins) passes them as
``stages``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Collection, Iterator

from ..data.names import DATASETS, family_keys
from .errors import ConfigError
from .schema import (AMP_DTYPES, INIT_ADAPT_KEYS, LR_SCHEDULES, MODEL_HEADS, SAMPLER_MODES, STAGES,
                     TEACHER_ADAPT_KEYS, Config)

# dotted key -> (lowest, highest, lowest included); None: unbounded on that side
_RANGES: dict[str, tuple[float | None, float | None, bool]] = {
    **{k: (1, None, True) for k in (
        "model.embed_dim", "model.depth", "model.num_heads", "model.patch_size", "model.template_size",
        "model.search_size", "model.head_channels", "data.samples_per_epoch", "data.max_sample_interval",
        "data.num_templates", "train.epochs", "train.batch_size_per_process", "train.print_interval",
        "train.keep_last", "train.grad_accum_steps", "train.max_bad_steps", "test.update_interval",
        "test.online_size")},
    **{k: (0, None, False) for k in (
        "model.mlp_ratio", "data.search_factor", "data.template_factor", "train.lr", "train.lr_drop_gamma",
        "test.template_factor", "test.search_factor")},
    **{k: (0, None, True) for k in (
        "data.val_samples_per_epoch", "data.search_center_jitter", "data.search_scale_jitter",
        "data.template_center_jitter", "data.template_scale_jitter", "data.brightness_jitter", "data.num_workers",
        "train.weight_decay", "train.lr_drop_epoch", "train.backbone_lr_multiplier", "train.grad_clip_norm",
        "train.iou_weight", "train.l1_weight", "train.kl_weight", "train.feat_weight", "train.score_weight",
        "train.remove_epochs", "train.val_interval", "train.pred_token_init_std", "train.warmup_iters", "train.checkpoint_interval",
        "train.cpu_threads",
        "test.clip_margin")},
    **{k: (0, 1, True) for k in (  # probabilities and fractions
        "model.drop_path_rate", "data.gray_prob", "data.flip_prob", "data.crop_flip_prob", "data.positive_prob",
        "test.score_threshold", "test.max_score_decay", "train.min_lr_factor")},
}
_DATASET_TEST_RANGES = {"search_factor": "test.search_factor", "update_interval": "test.update_interval",
                        "online_size": "test.online_size"}


@dataclass(frozen=True)
class Problem:
    """A broken rule: ``key: message``; ``related`` are further keys the rule depends on."""

    key: str
    message: str
    related: tuple[str, ...] = ()


def _get(cfg: Config, dotted: str) -> Any:
    value: Any = cfg
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


def _range_problem(key: str, value: float, bounds: tuple[float | None, float | None, bool]) -> Problem | None:
    low, high, low_included = bounds
    too_low = low is not None and (value < low if low_included else value <= low)
    if too_low or (high is not None and value > high):
        if high is not None:
            wanted = f"in [{low}, {high}]"
        else:
            wanted = f">= {low}" if low_included else f"> {low}"
        return Problem(key, f"must be {wanted}, got {value!r}")
    return None


def _ranges(cfg: Config) -> Iterator[Problem]:
    for key, bounds in _RANGES.items():
        problem = _range_problem(key, _get(cfg, key), bounds)
        if problem:
            yield problem
    for name, entry in cfg.test.datasets.items():
        for field_name, default_key in _DATASET_TEST_RANGES.items():
            value = getattr(entry, field_name)
            if value is not None:
                problem = _range_problem(f"test.datasets.{name}.{field_name}", value, _RANGES[default_key])
                if problem:
                    yield problem


def _one_of(key: str, value: str, allowed) -> Iterator[Problem]:
    if value not in allowed:
        yield Problem(key, f"{value!r} is not one of {', '.join(allowed) or '(none registered)'}")


def _model(cfg: Config) -> Iterator[Problem]:
    m = cfg.model
    yield from _one_of("model.name", m.name, tuple(MODEL_HEADS))
    if m.name in MODEL_HEADS:
        for problem in _one_of("model.head_type", m.head_type, MODEL_HEADS[m.name]):
            yield Problem(problem.key, f"{problem.message} (the heads of model.name {m.name})", ("model.name",))
    if m.num_heads > 0 and m.embed_dim % m.num_heads:
        yield Problem("model.embed_dim", f"{m.embed_dim} is not divisible by model.num_heads {m.num_heads}",
                      ("model.num_heads",))
    for key in ("model.template_size", "model.search_size"):
        size = _get(cfg, key)
        if m.patch_size > 0 and size % m.patch_size:
            yield Problem(key, f"{size} px is not a multiple of model.patch_size {m.patch_size}", ("model.patch_size",))
    if m.num_bins <= 1:
        yield Problem("model.num_bins", f"must be > 1, got {m.num_bins}")
    for key in ("model.image_mean", "model.image_std"):
        values = _get(cfg, key)
        if len(values) != 3:
            yield Problem(key, f"needs 3 values (R, G, B), got {len(values)}")
    if any(s <= 0 for s in m.image_std):
        yield Problem("model.image_std", f"must be > 0, got {list(m.image_std)}")


def _dataset_names(key: str, names: tuple[str, ...], allowed: set[str]) -> Iterator[Problem]:
    for i, name in enumerate(names):
        if name not in allowed:
            yield Problem(f"{key}[{i}]", f"unknown dataset {name!r} (known: {', '.join(sorted(allowed))})")


def _data(cfg: Config) -> Iterator[Problem]:
    d = cfg.data
    registered = set(DATASETS)
    for key in ("train", "val"):
        names, ratios = getattr(d, f"{key}_datasets"), getattr(d, f"{key}_ratios")
        yield from _dataset_names(f"data.{key}_datasets", names, registered)
        if len(ratios) != len(names):
            yield Problem(f"data.{key}_ratios", f"has {len(ratios)} entries for {len(names)} data.{key}_datasets",
                          (f"data.{key}_datasets",))
        elif any(r < 0 for r in ratios) or (ratios and not any(r > 0 for r in ratios)):
            yield Problem(f"data.{key}_ratios", f"must be >= 0 with at least one > 0, got {list(ratios)}")
    for name in d.roots:
        if name not in registered and name not in family_keys():
            yield Problem(f"data.roots.{name}", f"unknown dataset {name!r} (known: "
                                                f"{', '.join(sorted(registered | set(family_keys())))})")
    yield from _one_of("data.sampler_mode", d.sampler_mode, SAMPLER_MODES)


def _layers(key: str, layers, count: int, what: str, related: tuple[str, ...]) -> Iterator[Problem]:
    if len(set(layers)) != len(layers):
        yield Problem(key, f"repeats a layer: {list(layers)}")
    missing = [i for i in layers if not 0 <= i < count]
    if missing:
        yield Problem(key, f"layer {missing[0]} does not exist in {what} with {count} layers", related)


def _train(cfg: Config, stages: Collection[str]) -> Iterator[Problem]:
    t, depth = cfg.train, cfg.model.depth
    yield from _one_of("train.stage", t.stage, tuple(stages))
    yield from _one_of("train.scheduler", t.scheduler, LR_SCHEDULES)
    yield from _one_of("train.amp_dtype", t.amp_dtype, AMP_DTYPES)
    if t.scheduler == "step" and t.lr_drop_epoch < 1:
        yield Problem("train.lr_drop_epoch", f"must be >= 1 with train.scheduler step, got {t.lr_drop_epoch} (for "
                      f"no drop, set it to train.epochs or more)", ("train.scheduler",))
    model = ("model.depth",)
    yield from _layers("train.remove_layers", t.remove_layers, depth, "the model (model.depth)", model)
    if t.remove_layers and len(set(t.remove_layers)) >= depth:
        yield Problem("train.remove_layers", f"removes all {depth} layers", model)
    yield from _layers("train.distill_layers_student", t.distill_layers_student, depth, "the model (model.depth)",
                       model)
    checkpoint_depth = depth + len(t.init_drop_layers)
    yield from _layers("train.init_drop_layers", t.init_drop_layers, checkpoint_depth,
                       "the checkpoint (model.depth + dropped layers)", model)
    if any(i < 0 for i in t.distill_layers_teacher):
        yield Problem("train.distill_layers_teacher", f"negative layer index in {list(t.distill_layers_teacher)}")
    if len(t.distill_layers_teacher) != len(t.distill_layers_student):
        yield Problem("train.distill_layers_teacher", f"has {len(t.distill_layers_teacher)} layers for "
                      f"{len(t.distill_layers_student)} train.distill_layers_student (they are paired)",
                      ("train.distill_layers_student",))
    for key, allowed in (("train.init_adapt", INIT_ADAPT_KEYS), ("train.teacher_adapt", TEACHER_ADAPT_KEYS)):
        names = _get(cfg, key)
        if len(set(names)) != len(names):
            yield Problem(key, f"repeats a key: {list(names)}")
        for i, name in enumerate(names):
            yield from _one_of(f"{key}[{i}]", name, allowed)
    if t.init_adapt and not t.init_checkpoint:
        yield Problem("train.init_adapt", "adapts the weights of train.init_checkpoint, which is not set",
                      ("train.init_checkpoint",))


def _test(cfg: Config) -> Iterator[Problem]:
    for name in cfg.test.datasets:
        if name not in DATASETS:
            yield Problem(f"test.datasets.{name}", f"unknown benchmark {name!r} (known: {', '.join(sorted(DATASETS))})")


def config_problems(cfg: Config, stages: Collection[str] = STAGES) -> list[Problem]:
    """Every rule ``cfg`` breaks (names and consistency first, then ranges); empty when it is valid.
    ``stages``: the names ``train.stage`` may take (see the module docstring)."""
    return [*_model(cfg), *_data(cfg), *_train(cfg, stages), *_test(cfg), *_ranges(cfg)]


def validate_config(cfg: Config, source: str = "config", stages: Collection[str] = STAGES) -> Config:
    """Return ``cfg`` when it is valid; else raise ``ConfigError`` ``"<source>: <key>: <message>"`` for the first
    broken rule (e.g. after ``dataclasses.replace``, which does not re-run the loader's checks)."""
    problems = config_problems(cfg, stages)
    if problems:
        raise ConfigError(f"{source}: {problems[0].key}: {problems[0].message}")
    return cfg
