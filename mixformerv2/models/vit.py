"""The plain ViT backbone that reads one sequence ``[template | online templates | search | prediction tokens]``.

Two ways through it:
  * ``forward_features`` - the full forward used in training (every block's output is returned for feature
    distillation);
  * ``encode_templates`` + ``forward_search`` - the fast inference path: template keys/values of every layer are
    computed once per template update (``TemplateCache``), and each frame runs only the search and prediction
    tokens (and the last block only the prediction tokens, the one thing the heads read). Both give the same
    prediction-token outputs, since template queries never attend to search keys.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from timm.layers import trunc_normal_
from torch import nn

from .layers import KV, Block


def sincos_pos_embed_2d(grid_size: int, dim: int) -> torch.Tensor:
    """Fixed 2-D sin-cos position embedding (MAE construction, no class token): (1, G*G, dim) float32.

    Token n = row * G + col gets ``[sin(col w), cos(col w), sin(row w), cos(row w)]``, w_k = 10000^(-k / (dim/4)).
    """
    if dim % 4:
        raise ValueError(f"embed_dim {dim} must be divisible by 4 for the 2-D sin-cos position embedding")
    omega = 1.0 / 10000 ** (np.arange(dim // 4, dtype=np.float64) / (dim / 4))
    rows, cols = np.meshgrid(np.arange(grid_size), np.arange(grid_size), indexing="ij")
    col_arg = cols.reshape(-1, 1) * omega
    row_arg = rows.reshape(-1, 1) * omega
    emb = np.concatenate([np.sin(col_arg), np.cos(col_arg), np.sin(row_arg), np.cos(row_arg)], axis=1)
    return torch.from_numpy(emb).float().unsqueeze(0)


class PatchEmbed(nn.Module):
    """(B, 3, H, W) image -> (B, (H/p)*(W/p), C) tokens, row-major over the patch grid.

    The weights are those of a p x p, stride-p convolution (``proj``, as in the checkpoints); the forward computes
    the same thing as one matrix product over non-overlapping patches, which is faster on CPUs.
    """

    def __init__(self, patch_size: int, embed_dim: int):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(3, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        p = self.patch_size
        patches = x.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5).reshape(b, -1, c * p * p)
        return F.linear(patches, self.proj.weight.reshape(self.proj.out_channels, -1), self.proj.bias)


@dataclass
class TemplateCache:
    """Per-layer keys/values of the template tokens (each (B, heads, Nt, head_dim)) and the template count.

    A value held by the caller (the tracker); the model keeps no state between calls.
    """

    kv: list[KV]
    num_templates: int

    @property
    def num_tokens(self) -> int:
        return self.kv[0][0].shape[2] if self.kv else 0


def _check_image(x: torch.Tensor, name: str, size: int) -> None:
    if x.dim() != 4 or x.shape[1] != 3 or x.shape[2] != size or x.shape[3] != size:
        raise ValueError(f"{name}: expected a (B, 3, {size}, {size}) image tensor, got {tuple(x.shape)}")


class ViTBackbone(nn.Module):
    """ViT with mixed asymmetric attention over templates, search and (optionally) prediction tokens.

    Args:
        embed_dim, depth, num_heads, mlp_ratio: transformer size.
        template_size, search_size: input sizes in pixels (they fix the fixed position embeddings).
        patch_size: patch side in pixels.
        num_pred_tokens: learned prediction tokens appended after the search tokens (4 for the student, 0 for the
            teacher).
        drop_path_rate: stochastic depth, linearly increasing from 0 over the blocks.
        legacy_vit_params: keep the unused ImageNet ViT parameters of the MixViT teacher checkpoints
            (``cls_token``, ``pos_embed`` (197 positions), ``norm``, ``head``) so those files load strictly; frozen.
    """

    def __init__(self, embed_dim: int = 768, depth: int = 12, num_heads: int = 12, mlp_ratio: float = 4.0,
                 template_size: int = 128, search_size: int = 288, patch_size: int = 16, num_pred_tokens: int = 4,
                 drop_path_rate: float = 0.1, legacy_vit_params: bool = False):
        super().__init__()
        for name, size in (("template_size", template_size), ("search_size", search_size)):
            if size % patch_size:
                raise ValueError(f"{name} {size} is not a multiple of the patch size {patch_size}")
        self.template_size, self.search_size, self.patch_size = template_size, search_size, patch_size
        self.grid_t, self.grid_s = template_size // patch_size, search_size // patch_size
        self.patch_embed = PatchEmbed(patch_size, embed_dim)
        self.pos_embed_t = nn.Parameter(sincos_pos_embed_2d(self.grid_t, embed_dim), requires_grad=False)
        self.pos_embed_s = nn.Parameter(sincos_pos_embed_2d(self.grid_s, embed_dim), requires_grad=False)
        self.num_pred_tokens = num_pred_tokens
        if num_pred_tokens:
            self.reg_tokens = nn.Parameter(torch.zeros(1, num_pred_tokens, embed_dim))
            self.pos_embed_reg = nn.Parameter(torch.zeros(1, num_pred_tokens, embed_dim))
            trunc_normal_(self.reg_tokens, std=0.02)
        rates = torch.linspace(0, drop_path_rate, depth, device="cpu").tolist() if depth > 1 else [0.0] * depth
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_ratio, rate) for rate in rates)
        if legacy_vit_params:
            self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim), requires_grad=False)
            self.pos_embed = nn.Parameter(torch.zeros(1, 197, embed_dim), requires_grad=False)
            self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
            self.head = nn.Linear(embed_dim, 1000)
            for p in [*self.norm.parameters(), *self.head.parameters()]:
                p.requires_grad_(False)

    @property
    def depth(self) -> int:
        return len(self.blocks)

    def _scales(self, block_scales: Sequence[float] | None) -> Sequence[float]:
        if block_scales is None:
            return [1.0] * self.depth
        if len(block_scales) != self.depth:
            raise ValueError(f"block_scales has {len(block_scales)} values for {self.depth} blocks")
        return block_scales

    def embed_templates(self, template: torch.Tensor, online_templates: Sequence[torch.Tensor]) -> torch.Tensor:
        """Initial + online templates (each (B, 3, Ht, Wt)) -> (B, (1 + K) * Gt^2, C); all share ``pos_embed_t``."""
        images = [template, *online_templates]
        for i, image in enumerate(images):
            _check_image(image, "template" if i == 0 else "online_template", self.template_size)
        return torch.cat([self.patch_embed(image) + self.pos_embed_t for image in images], dim=1)

    def embed_search(self, search: torch.Tensor) -> torch.Tensor:
        """(B, 3, Hs, Ws) -> search tokens followed by the prediction tokens: (B, Gs^2 + num_pred_tokens, C)."""
        _check_image(search, "search", self.search_size)
        x = self.patch_embed(search) + self.pos_embed_s
        if self.num_pred_tokens:
            pred = (self.reg_tokens + self.pos_embed_reg).expand(x.shape[0], -1, -1)
            x = torch.cat([x, pred], dim=1)
        return x

    def forward_features(self, template: torch.Tensor, online_templates: Sequence[torch.Tensor],
                         search: torch.Tensor, block_scales: Sequence[float] | None = None
                         ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Full forward. Returns the final sequence (B, N, C) and every block's output (list of (B, N, C))."""
        x_t = self.embed_templates(template, online_templates)
        x = torch.cat([x_t, self.embed_search(search)], dim=1)
        num_template = x_t.shape[1]
        features = []
        for block, scale in zip(self.blocks, self._scales(block_scales)):
            x = block(x, num_template, scale)
            features.append(x)
        return x, features

    def encode_templates(self, template: torch.Tensor, online_templates: Sequence[torch.Tensor],
                         block_scales: Sequence[float] | None = None) -> TemplateCache:
        """Run only the template tokens and keep every layer's keys/values for ``forward_search``."""
        x_t = self.embed_templates(template, online_templates)
        kv = []
        for block, scale in zip(self.blocks, self._scales(block_scales)):
            x_t, layer_kv = block.forward_template(x_t, scale)
            kv.append(layer_kv)
        return TemplateCache(kv=kv, num_templates=1 + len(online_templates))

    def forward_search(self, cache: TemplateCache, search: torch.Tensor,
                       block_scales: Sequence[float] | None = None, num_outputs: int | None = None) -> torch.Tensor:
        """Search + prediction tokens attending to the cached templates: (B, Gs^2 + num_pred_tokens, C).

        ``num_outputs``: return only the last ``num_outputs`` tokens, (B, num_outputs, C). The last block then
        computes queries, attention and MLP for those tokens alone (the same values, less work).
        """
        if len(cache.kv) != self.depth:
            raise ValueError(f"template cache has {len(cache.kv)} layers, the backbone {self.depth}")
        x = self.embed_search(search)
        last = self.depth - 1
        for i, (block, scale, kv) in enumerate(zip(self.blocks, self._scales(block_scales), cache.kv)):
            x = block.forward_search(x, kv, scale, num_outputs if i == last else None)
        return x
