"""The configuration schema: one dataclass tree, types and defaults in one place.

Sections: ``model`` (architecture; also fixes the crop sizes the network reads), ``data`` (training data and
sampling), ``train`` (stage, optimisation, losses), ``test`` (tracker settings, per-dataset overrides).
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ModelConfig:
    """Architecture. ``name`` is a registered model (``mixformerv2`` student or ``mixvit`` teacher).

    Sizes are pixels; ``num_bins`` is the number of bins per box side of the student's distribution head.
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


@dataclass
class DataConfig:
    """Training data: dataset mixture, frame sampling and crop jitter (official_spec §3.7-3.9)."""

    train_datasets: list[str] = field(
        default_factory=lambda: ["got10k_vottrain", "lasot_train", "coco", "trackingnet_train"])
    train_ratios: list[float] = field(default_factory=lambda: [1.0, 1.0, 1.0, 1.0])
    val_datasets: list[str] = field(default_factory=lambda: ["got10k_votval"])
    val_ratios: list[float] = field(default_factory=lambda: [1.0])
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
    mean: list[float] = field(default_factory=lambda: [0.485, 0.456, 0.406])
    std: list[float] = field(default_factory=lambda: [0.229, 0.224, 0.225])
    gray_prob: float = 0.05
    flip_prob: float = 0.5
    brightness_jitter: float = 0.2
    crop_flip_prob: float = 0.5  # independent horizontal flip of each crop (official quirk); 0 disables
    positive_prob: float = 0.5  # score training: probability of a positive search frame
    num_workers: int = 8
    roots: dict[str, str] = field(default_factory=dict)  # dataset name -> root directory override


@dataclass
class TrainConfig:
    """Optimisation and losses of one training stage (teacher, dense_to_sparse, deep_to_shallow, score)."""

    stage: str = "dense_to_sparse"
    epochs: int = 500
    batch_size: int = 32
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
    remove_layers: list[int] = field(default_factory=list)
    remove_epochs: int = 40
    distill_layers_student: list[int] = field(default_factory=list)
    distill_layers_teacher: list[int] = field(default_factory=list)
    init_checkpoint: str = ""  # weights to start from: MAE ('model') or a MixFormerV2 checkpoint ('net')
    init_drop_layers: list[int] = field(default_factory=list)  # layers removed (and renumbered) on loading
    teacher_config: str = ""
    teacher_checkpoint: str = ""
    print_interval: int = 50
    val_interval: int = 5
    keep_last: int = 3
    # --- trainer (issue #9). An iteration is one optimizer step: grad_accum_steps batches of batch_size per process.
    scheduler: str = "step"  # step: x lr_drop_gamma every lr_drop_epoch epochs | cosine: down to min_lr_factor
    warmup_iters: int = 0  # linear warm-up of the learning rate over the first iterations (0: none)
    min_lr_factor: float = 0.0  # cosine: the final learning rate as a fraction of lr
    amp_dtype: str = "bfloat16"  # with amp: bfloat16 (autocast) | float16 (autocast and a GradScaler)
    grad_accum_steps: int = 1  # batches per iteration and process; the gradient is their mean
    checkpoint_interval: int = 0  # also write the full training state every N iterations (0: at epoch ends only)
    max_bad_steps: int = 5  # stop after this many consecutive iterations with a non-finite loss or gradient


@dataclass
class DatasetTestConfig:
    """Per-dataset tracker settings; an unset (None) value falls back to the ``test`` section's default."""

    search_factor: float | None = None
    update_interval: int | None = None
    online_size: int | None = None


@dataclass
class TestConfig:
    """Tracker settings (official_spec §4); ``datasets`` maps a benchmark name to its overrides."""

    template_factor: float = 2.0
    search_factor: float = 4.5
    update_interval: int = 200
    online_size: int = 1
    score_threshold: float = 0.5
    max_score_decay: float = 1.0
    clip_margin: int = 10
    datasets: dict[str, DatasetTestConfig] = field(default_factory=dict)

    def for_dataset(self, name: str | None) -> "TestConfig":
        """The settings for one benchmark: this section with that dataset's overrides applied."""
        from dataclasses import replace

        override = self.datasets.get((name or "").lower())
        if override is None:
            return self
        changes = {k: v for k, v in vars(override).items() if v is not None}
        return replace(self, **changes)


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    test: TestConfig = field(default_factory=TestConfig)
