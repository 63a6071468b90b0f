"""The configuration schema: one tree of frozen dataclasses, types and defaults in one place.

Sections: ``model`` (architecture, crop sizes and the image normalisation the network reads), ``data`` (training
data and sampling), ``train`` (stage, optimisation, losses), ``test`` (tracker settings, per-benchmark overrides).

A config is immutable: list fields hold tuples and mapping fields a read-only ``FrozenDict`` (lists and dicts given
to a constructor or to ``dataclasses.replace`` are converted). Variants come from ``dataclasses.replace`` or from
``--set`` overrides (``config/load.py``); the rules that tie fields together live in ``config/validate.py``.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

# ImageNet statistics of RGB in [0, 1]: the normalisation every released MixFormer/MixViT checkpoint expects.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

MODEL_HEADS = {"mixformerv2": ("mlp",), "mixvit": ("corner_up", "corner")}  # model.name -> its box heads
STAGES = ("teacher", "dense_to_sparse", "deep_to_shallow", "score")  # the package's stages (train/stages/)
LR_SCHEDULES = ("step", "cosine")  # train.scheduler (train/schedules.py)
AMP_DTYPES = ("bfloat16", "float16")  # train.amp_dtype
SAMPLER_MODES = ("causal", "trident_pro")
INIT_ADAPT_KEYS = ("mlp_ratio", "search_size", "template_size")  # train.init_adapt (train/chaining.py)
TEACHER_ADAPT_KEYS = ("search_size", "template_size")  # train.teacher_adapt


class FrozenDict(dict):
    """A read-only dict: the mapping fields of a frozen config. Equal to a dict with the same items; hashable when
    its values are; pickles and deep-copies as itself."""

    def _read_only(self, *args: Any, **kwargs: Any):
        raise TypeError("a loaded config is read-only; use dataclasses.replace or --set KEY=VALUE")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = __ior__ = _read_only

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(frozenset(self.items()))

    def __reduce__(self):
        return type(self), (dict(self),)

    def __repr__(self) -> str:
        return f"FrozenDict({dict.__repr__(self)})"


class _Frozen:
    """``__post_init__`` of the config dataclasses: lists -> tuples, dicts -> ``FrozenDict``."""

    def __post_init__(self) -> None:
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if isinstance(value, list):
                object.__setattr__(self, f.name, tuple(value))
            elif isinstance(value, dict) and not isinstance(value, FrozenDict):
                object.__setattr__(self, f.name, FrozenDict(value))


@dataclass(frozen=True)
class ModelConfig(_Frozen):
    """Architecture. ``name`` is an architecture (``mixformerv2`` student or ``mixvit`` teacher) and ``head_type`` one
    of its box heads (``MODEL_HEADS``).

    Sizes are pixels and multiples of ``patch_size``; ``num_bins`` (> 1) is the number of bins per box side of the
    student's distribution head. ``image_mean``/``image_std`` (RGB, for pixel values scaled to [0, 1]) are the input
    normalisation the weights were trained with: training crops and tracker crops both use them.
    """

    name: str = "mixformerv2"
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    patch_size: int = 16
    template_size: int = 128
    search_size: int = 288
    num_bins: int = 72
    score_head: bool = False
    head_type: str = "mlp"  # student: mlp; teacher: corner_up | corner
    head_channels: int = 384  # teacher corner head width
    drop_path_rate: float = 0.1
    image_mean: tuple[float, ...] = IMAGENET_MEAN
    image_std: tuple[float, ...] = IMAGENET_STD


@dataclass(frozen=True)
class DataConfig(_Frozen):
    """Training data: dataset mixture, frame sampling and crop jitter (official_spec §3.7-3.9).

    Dataset names are registry names (``mixformerv2.data.names``); ``roots`` maps a name or a family key
    (``got10k``) to a root folder that overrides the registry's default.
    """

    train_datasets: tuple[str, ...] = ("got10k_vottrain", "lasot_train", "coco", "trackingnet_train")
    train_ratios: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0)
    val_datasets: tuple[str, ...] = ("got10k_votval",)
    val_ratios: tuple[float, ...] = (1.0,)
    samples_per_epoch: int = 60000
    val_samples_per_epoch: int = 10000
    sampler_mode: str = "causal"  # causal | trident_pro
    max_sample_interval: int = 200
    num_templates: int = 2
    search_factor: float = 5.0
    search_center_jitter: float = 4.5
    search_scale_jitter: float = 0.5
    template_factor: float = 2.0
    template_center_jitter: float = 0.0
    template_scale_jitter: float = 0.0
    gray_prob: float = 0.05
    flip_prob: float = 0.5
    brightness_jitter: float = 0.2
    crop_flip_prob: float = 0.5  # independent horizontal flip of each crop (official quirk); 0 disables
    positive_prob: float = 0.5  # score training: probability of a positive search frame
    num_workers: int = 8
    roots: dict[str, str] = field(default_factory=FrozenDict)  # dataset name or family key -> root directory


@dataclass(frozen=True)
class TrainConfig(_Frozen):
    """Optimisation and losses of one training stage (``STAGES``: teacher, dense_to_sparse, deep_to_shallow, score).

    Batches: ``batch_size_per_process`` samples per process and forward pass; an iteration (one optimizer step)
    takes ``grad_accum_steps`` such batches on each of the ``world_size`` processes, so the global batch is
    ``world_size * grad_accum_steps * batch_size_per_process`` and an epoch (``data.samples_per_epoch`` samples, a
    global count) has ``samples_per_epoch // global batch`` iterations.

    Layer lists are block indices: ``remove_layers`` and ``distill_layers_student`` of this model
    (``range(model.depth)``), ``init_drop_layers`` of the checkpoint it starts from (``model.depth`` plus the dropped
    layers), ``distill_layers_teacher`` of the teacher, paired one to one with the student's.
    """

    stage: str = "dense_to_sparse"
    epochs: int = 500
    batch_size_per_process: int = 32  # not global: see the docstring
    lr: float = 4e-4
    weight_decay: float = 1e-4
    lr_drop_epoch: int = 400
    lr_drop_gamma: float = 0.1
    backbone_lr_multiplier: float = 0.1
    grad_clip_norm: float = 0.1
    amp: bool = False
    seed: int = 42
    iou_weight: float = 2.0
    l1_weight: float = 5.0
    kl_weight: float = 5.0
    feat_weight: float = 0.2
    score_weight: float = 1.0
    remove_layers: tuple[int, ...] = ()
    remove_epochs: int = 40
    distill_layers_student: tuple[int, ...] = ()
    distill_layers_teacher: tuple[int, ...] = ()
    init_checkpoint: str = ""  # weights to start from: MAE ('model') or a MixFormerV2 checkpoint ('net')
    init_drop_layers: tuple[int, ...] = ()  # layers removed (and renumbered) on loading
    init_adapt: tuple[str, ...] = ()  # model keys init_checkpoint may differ in (INIT_ADAPT_KEYS)
    # std of the normal init of prediction tokens the init checkpoint does not hold (0: the official
    # trunc-normal 0.02); see train/stages/common.py build_initialised
    pred_token_init_std: float = 0.0
    teacher_adapt: tuple[str, ...] = ()  # teacher model keys taken from this model (TEACHER_ADAPT_KEYS)
    teacher_config: str = ""
    teacher_checkpoint: str = ""
    print_interval: int = 50
    val_interval: int = 5  # a validation pass every N epochs and after the last (0: none)
    keep_last: int = 3  # training states kept in <output>/checkpoints
    scheduler: str = "step"  # step: x lr_drop_gamma every lr_drop_epoch (>= 1) epochs | cosine: down to min_lr_factor
    warmup_iters: int = 0  # linear warm-up of the learning rate over the first iterations (0: none)
    min_lr_factor: float = 0.0  # cosine: the final learning rate as a fraction of lr
    amp_dtype: str = "bfloat16"  # with amp: bfloat16 (autocast) | float16 (autocast and a GradScaler)
    grad_accum_steps: int = 1  # batches per iteration and process; the gradient is their mean
    checkpoint_interval: int = 0  # also write the full training state every N iterations (0: at epoch ends only)
    max_bad_steps: int = 5  # stop after this many consecutive iterations with a non-finite loss or gradient
    # torch threads per process on a CPU device; 0: the node's logical CPUs per process minus data.num_workers, at
    # least 1 (an intra-op thread competing with a loader process for a core slows the tiny quickstart nets ~1.4x)
    cpu_threads: int = 0


@dataclass(frozen=True)
class DatasetTestConfig(_Frozen):
    """One benchmark's tracker settings; a value left unset (None) falls back to the ``test`` section's default."""

    search_factor: float | None = None
    update_interval: int | None = None
    online_size: int | None = None


@dataclass(frozen=True)
class TestConfig(_Frozen):
    """Tracker settings (official_spec §4): defaults for every benchmark, and per-benchmark entries in ``datasets``
    (registry name -> ``DatasetTestConfig``).

    Precedence: a value set in a benchmark's entry wins over the default of the same key in this section, so
    ``--set test.search_factor=5.0`` changes only benchmarks whose entry leaves ``search_factor`` unset; to change
    LaSOT's, set ``test.datasets.lasot.search_factor``. ``for_dataset`` returns the effective settings.
    """

    template_factor: float = 2.0
    search_factor: float = 4.5
    update_interval: int = 200
    online_size: int = 1
    score_threshold: float = 0.5
    max_score_decay: float = 1.0
    clip_margin: int = 10
    datasets: dict[str, DatasetTestConfig] = field(default_factory=FrozenDict)

    def dataset_overrides(self, name: str | None) -> dict[str, Any]:
        """The values benchmark ``name`` (case-insensitive) sets in its ``datasets`` entry: key -> value."""
        entry = self.datasets.get((name or "").lower())
        if entry is None:
            return {}
        return {f.name: getattr(entry, f.name) for f in fields(entry) if getattr(entry, f.name) is not None}

    def for_dataset(self, name: str | None) -> "TestConfig":
        """The effective tracker settings of benchmark ``name`` (case-insensitive; None or an unlisted name: the
        defaults): this section with the values of ``datasets[name]`` replacing the defaults of the same keys.
        The result's ``datasets`` is empty: it is already specialised."""
        return replace(self, datasets=FrozenDict(), **self.dataset_overrides(name))


@dataclass(frozen=True)
class Config(_Frozen):
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    test: TestConfig = field(default_factory=TestConfig)
