"""Pure state-dict transforms that turn a trained MixFormerV2 into a smaller one (the MixFormerV2-S recipe).

The release has no recipe for MixFormerV2-S (official_spec §7.2, §8.2). Ours reaches it from a 4-layer,
MLP-ratio-4, 288/128 px model in one distilled stage whose student starts from these transforms:

* ``truncate_mlp``: every block keeps a subset of its MLP hidden units (rows of ``fc1``, columns of ``fc2``);
* ``resample_pos_embeds``: ``pos_embed_t`` / ``pos_embed_s`` are resampled on their 2-D grids to the new input
  sizes (bicubic, timm's ``resample_abs_pos_embed``).

Both are plain functions of a state dict (like timm's ``checkpoint_filter_fn``); the model then loads strictly.
"""
from __future__ import annotations

import logging
import math
import re
from typing import Mapping

import torch
from timm.layers import resample_abs_pos_embed

logger = logging.getLogger(__name__)

_FC1_WEIGHT = re.compile(r"^(.*\bblocks\.\d+\.mlp\.)fc1\.weight$")
POS_EMBED_KEYS = {"template_size": "backbone.pos_embed_t", "search_size": "backbone.pos_embed_s"}


def mlp_unit_importance(fc1_weight: torch.Tensor, fc1_bias: torch.Tensor | None,
                        fc2_weight: torch.Tensor) -> torch.Tensor:
    """Importance of each hidden unit of one MLP: ||[fc1 row j, fc1 bias j]|| * ||fc2 column j||, shape (H,).

    Unit j adds ``fc2[:, j] * GELU(fc1[j] . x + b_j)`` to the block's output, so for inputs of a given norm (the
    block's LayerNorm keeps them comparable) the size of its contribution is bounded by the product of the two
    norms. This data-free magnitude criterion ranks units by how much the block's output can depend on them;
    dropping the smallest keeps the truncated block closest to the trained one before distillation repairs the rest.

    Args:
        fc1_weight: (H, C); fc1_bias: (H,) or None; fc2_weight: (C, H).
    """
    rows = fc1_weight.float()
    if fc1_bias is not None:
        rows = torch.cat([rows, fc1_bias.float()[:, None]], dim=1)
    return rows.norm(dim=1) * fc2_weight.float().norm(dim=0)


def truncate_mlp(state_dict: Mapping[str, torch.Tensor], hidden: int
                 ) -> tuple[dict[str, torch.Tensor], dict[str, list[int]]]:
    """Keep ``hidden`` hidden units in every block's MLP, chosen per block by ``mlp_unit_importance``.

    The kept units stay in their original order: rows of ``fc1.weight`` / ``fc1.bias`` and columns of
    ``fc2.weight`` (``fc2.bias`` is unchanged). With ``hidden`` equal to the current width nothing changes.

    Returns:
        the new state dict (other keys untouched) and, per block prefix (``backbone.blocks.3.mlp.``), the kept
        indices in ascending order.
    Raises:
        ValueError when ``hidden`` is not in [1, current width] or a block has no ``fc2.weight``.
    """
    out = dict(state_dict)
    kept: dict[str, list[int]] = {}
    for key in state_dict:
        m = _FC1_WEIGHT.match(key)
        if m is None:
            continue
        prefix = m.group(1)
        fc1_w, fc1_b = state_dict[key], state_dict.get(f"{prefix}fc1.bias")
        fc2_w = state_dict.get(f"{prefix}fc2.weight")
        if fc2_w is None:
            raise ValueError(f"{prefix}fc2.weight missing next to {key}")
        width = fc1_w.shape[0]
        if not 1 <= hidden <= width:
            raise ValueError(f"{prefix}: cannot keep {hidden} of {width} hidden units")
        top = mlp_unit_importance(fc1_w, fc1_b, fc2_w).topk(hidden).indices
        index = top.sort().values
        out[key] = fc1_w[index].clone()
        if fc1_b is not None:
            out[f"{prefix}fc1.bias"] = fc1_b[index].clone()
        out[f"{prefix}fc2.weight"] = fc2_w[:, index].clone()
        kept[prefix] = index.tolist()
    return out, kept


def resample_pos_embed(pos_embed: torch.Tensor, grid: int) -> torch.Tensor:
    """(1, G*G, C) row-major grid embedding -> (1, grid*grid, C), bicubic with antialiasing (timm's
    ``resample_abs_pos_embed``, no prefix tokens); the same tensor when G == grid.

    Interpolating (rather than regenerating the sin-cos table for the new grid) keeps what the trained network
    associates with a position: a token of the new grid covers the same fraction of the crop as the old
    positions it is interpolated from, whereas a fresh table at the new size would shift every position's meaning.
    """
    old = math.isqrt(pos_embed.shape[1])
    if old * old != pos_embed.shape[1]:
        raise ValueError(f"position embedding of {pos_embed.shape[1]} tokens is not a square grid")
    if old == grid:
        return pos_embed
    return resample_abs_pos_embed(pos_embed, new_size=[grid, grid], old_size=[old, old], num_prefix_tokens=0)


def resample_pos_embeds(state_dict: Mapping[str, torch.Tensor], grids: Mapping[str, int]) -> dict[str, torch.Tensor]:
    """``state_dict`` with the position embeddings named by ``grids`` (``"template_size"`` / ``"search_size"`` ->
    the new grid side in patches) resampled by ``resample_pos_embed``; a missing key raises ``KeyError``."""
    out = dict(state_dict)
    for name, grid in grids.items():
        key = POS_EMBED_KEYS[name]
        if key not in out:
            raise KeyError(f"{key} missing: cannot change {name}")
        out[key] = resample_pos_embed(out[key], grid)
    return out
