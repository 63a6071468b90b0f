"""MixFormerV2 (the fully transformer student) and MixViT (the dense-head teacher)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch import nn

from ..boxes import xyxy_to_cxcywh
from .heads import CornerHead, PyramidCornerHead, ScoreHead, SideBinHead
from .vit import TemplateCache, ViTBackbone

OnlineTemplates = torch.Tensor | Sequence[torch.Tensor]


def _as_list(online_template: OnlineTemplates) -> list[torch.Tensor]:
    return [online_template] if isinstance(online_template, torch.Tensor) else list(online_template)


@dataclass
class StudentOutput:
    """box_xyxy_norm: (B, 4) in search-crop units [0, 1); side_logits: (B, 4, num_bins), sides in token order
    (left, right, top, bottom); score_logit: (B,) or None without a score head; tokens: (B, 4, C) final prediction
    tokens; block_features: every block's output (B, N, C) (full forward only; empty on the cached path)."""

    box_xyxy_norm: torch.Tensor
    side_logits: torch.Tensor
    score_logit: torch.Tensor | None
    tokens: torch.Tensor
    block_features: list[torch.Tensor] = field(default_factory=list)

    @property
    def box_cxcywh_norm(self) -> torch.Tensor:
        return xyxy_to_cxcywh(self.box_xyxy_norm)


@dataclass
class TeacherOutput:
    """box_xyxy_norm: (B, 4); corner_logits: (B, 2, F*F) top-left / bottom-right maps (row-major, F = map side);
    block_features: every block's output (B, N, C)."""

    box_xyxy_norm: torch.Tensor
    corner_logits: torch.Tensor
    block_features: list[torch.Tensor] = field(default_factory=list)

    @property
    def box_cxcywh_norm(self) -> torch.Tensor:
        return xyxy_to_cxcywh(self.box_xyxy_norm)


class MixFormerV2(nn.Module):
    """The MixFormerV2 tracker network: ViT backbone with 4 prediction tokens, side-bin box head, score head.

    Args:
        embed_dim, depth, num_heads, mlp_ratio: backbone size (B: 768/8/12/4; S: 768/4/12/1).
        template_size, search_size, patch_size: input sizes in pixels.
        num_bins: bins per box side.
        score_head: build the confidence head (the online/tracking model).
        drop_path_rate: stochastic depth of the last block.
    Inputs are ImageNet-normalised RGB tensors (B, 3, H, W).
    """

    def __init__(self, embed_dim: int = 768, depth: int = 12, num_heads: int = 12, mlp_ratio: float = 4.0,
                 template_size: int = 128, search_size: int = 288, patch_size: int = 16, num_bins: int = 72,
                 score_head: bool = False, drop_path_rate: float = 0.1):
        super().__init__()
        self.backbone = ViTBackbone(embed_dim, depth, num_heads, mlp_ratio, template_size, search_size, patch_size,
                                    num_pred_tokens=4, drop_path_rate=drop_path_rate)
        self.box_head = SideBinHead(embed_dim, num_bins)
        self.score_head = ScoreHead(embed_dim) if score_head else None

    def forward(self, template: torch.Tensor, online_template: OnlineTemplates, search: torch.Tensor,
                block_scales: Sequence[float] | None = None) -> StudentOutput:
        """Full forward (training). ``block_scales``: per-block residual scale (layer fade), default all 1."""
        x, features = self.backbone.forward_features(template, _as_list(online_template), search, block_scales)
        return self.forward_head(x[:, -4:], features)

    def encode_templates(self, template: torch.Tensor, online_template: OnlineTemplates,
                         block_scales: Sequence[float] | None = None) -> TemplateCache:
        """Fast path, step 1: encode the templates once per template update."""
        return self.backbone.encode_templates(template, _as_list(online_template), block_scales)

    def forward_search(self, cache: TemplateCache, search: torch.Tensor,
                       block_scales: Sequence[float] | None = None) -> StudentOutput:
        """Fast path, step 2: one frame's search crop against cached templates (same outputs as ``forward``; the
        last block runs only the prediction tokens, the one thing the heads read)."""
        return self.forward_head(self.backbone.forward_search(cache, search, block_scales, num_outputs=4))

    def forward_head(self, tokens: torch.Tensor, features: list[torch.Tensor] | None = None) -> StudentOutput:
        """(B, 4, C) prediction tokens -> box, side logits and score."""
        logits = self.box_head(tokens)
        score = self.score_head(tokens) if self.score_head is not None else None
        return StudentOutput(self.box_head.decode(logits), logits, score, tokens, features or [])


class MixViT(nn.Module):
    """The MixViT teacher: the same backbone without prediction tokens and a dense corner head.

    Args: as ``MixFormerV2``, plus head_type ``corner_up`` (stride 4, official teacher) or ``corner`` (stride 16)
    and head_channels (width of the corner head's first conv).
    """

    def __init__(self, embed_dim: int = 768, depth: int = 12, num_heads: int = 12, mlp_ratio: float = 4.0,
                 template_size: int = 128, search_size: int = 288, patch_size: int = 16,
                 head_type: str = "corner_up", head_channels: int = 384, drop_path_rate: float = 0.1):
        super().__init__()
        self.backbone = ViTBackbone(embed_dim, depth, num_heads, mlp_ratio, template_size, search_size, patch_size,
                                    num_pred_tokens=0, drop_path_rate=drop_path_rate, legacy_vit_params=True)
        heads = {"corner_up": PyramidCornerHead, "corner": CornerHead}
        if head_type not in heads:
            raise ValueError(f"model.head_type: unknown teacher head {head_type!r} (known: {', '.join(heads)})")
        self.box_head = heads[head_type](embed_dim, head_channels)

    def forward(self, template: torch.Tensor, online_template: OnlineTemplates, search: torch.Tensor,
                block_scales: Sequence[float] | None = None) -> TeacherOutput:
        x, features = self.backbone.forward_features(template, _as_list(online_template), search, block_scales)
        g = self.backbone.grid_s
        search_map = x[:, -g * g:].transpose(1, 2).reshape(x.shape[0], -1, g, g)
        box, logits = self.box_head(search_map)
        return TeacherOutput(box, logits, features)
