"""Named model variants and the one way to build a model: from a ``ModelConfig`` or a registered name."""
from __future__ import annotations

from dataclasses import asdict, replace
from typing import Callable

from torch import nn

from ..config.schema import ModelConfig
from .mixformer import MixFormerV2, MixViT

_VARIANTS: dict[str, Callable[[], ModelConfig]] = {}


def register_model(fn: Callable[[], ModelConfig]) -> Callable[[], ModelConfig]:
    """Register a function returning a variant's ``ModelConfig`` under the function's name."""
    _VARIANTS[fn.__name__] = fn
    return fn


def list_models() -> list[str]:
    return sorted(_VARIANTS)


def model_config(name: str, **overrides) -> ModelConfig:
    if name not in _VARIANTS:
        raise ValueError(f"unknown model {name!r} (known: {', '.join(list_models())})")
    return replace(_VARIANTS[name](), **overrides)


def build_model(cfg: ModelConfig) -> nn.Module:
    """Build the network a ``ModelConfig`` describes (student ``mixformerv2`` or teacher ``mixvit``); the config
    is kept as ``model.model_config``."""
    common = dict(embed_dim=cfg.embed_dim, depth=cfg.depth, num_heads=cfg.num_heads, mlp_ratio=cfg.mlp_ratio,
                  template_size=cfg.template_size, search_size=cfg.search_size, patch_size=cfg.patch_size,
                  drop_path_rate=cfg.drop_path_rate)
    if cfg.name == "mixformerv2":
        if cfg.head_type != "mlp":
            raise ValueError(f"model.head_type: the mixformerv2 student has the 'mlp' head, not {cfg.head_type!r}")
        model = MixFormerV2(num_bins=cfg.num_bins, score_head=cfg.score_head, **common)
    elif cfg.name == "mixvit":
        model = MixViT(head_type=cfg.head_type, head_channels=cfg.head_channels, **common)
    else:
        raise ValueError(f"model.name: unknown architecture {cfg.name!r} (known: mixformerv2, mixvit)")
    model.model_config = cfg  # kept for error messages and for saving with checkpoints
    return model


def create_model(name: str, **overrides) -> nn.Module:
    """``create_model("mixformerv2_s")``: build a registered variant, with ``ModelConfig`` field overrides."""
    return build_model(model_config(name, **overrides))


@register_model
def mixformerv2_b() -> ModelConfig:
    """MixFormerV2-B: 8 layers, 288/128 px, 96 bins, score head (released mixformerv2_base.pth.tar)."""
    return ModelConfig(depth=8, num_bins=96, score_head=True)


@register_model
def mixformerv2_s() -> ModelConfig:
    """MixFormerV2-S: 4 layers, MLP ratio 1, 224/112 px, 96 bins, score head (mixformerv2_small.pth.tar)."""
    return ModelConfig(depth=4, mlp_ratio=1.0, template_size=112, search_size=224, num_bins=96, score_head=True)


@register_model
def mixformerv2_b12_stage1() -> ModelConfig:
    """The 12-layer, 72-bin student of dense-to-sparse distillation (stage 1 and 2a)."""
    return ModelConfig(depth=12, num_bins=72)


@register_model
def mixvit_b_teacher() -> ModelConfig:
    """MixViT-B teacher with the CORNER_UP head (MixFormer v1 mixformer_vit_base_online.pth.tar)."""
    return ModelConfig(name="mixvit", depth=12, head_type="corner_up", head_channels=384)


def describe(cfg: ModelConfig) -> str:
    """Short description used in error messages: ``mixformerv2(depth=4, mlp_ratio=1.0, ...)``."""
    keys = ("depth", "embed_dim", "mlp_ratio", "template_size", "search_size")
    keys += ("num_bins", "score_head") if cfg.name == "mixformerv2" else ("head_type", "head_channels")
    values = asdict(cfg)
    return f"{cfg.name}(" + ", ".join(f"{k}={values[k]}" for k in keys) + ")"
