"""Transformer building blocks with mixed asymmetric attention.

Token layout everywhere: ``[templates | search (+ prediction tokens)]``. Template queries attend only to template
keys; search and prediction-token queries attend to every token. Because the template path never reads the
search tokens, the templates' keys and values can be computed once and cached (``KVCache``).

Deployment copies may change two things without changing the function computed (``mixformerv2.export``):
``MixedAttention.fused_attn`` (``F.scaled_dot_product_attention`` or the explicit softmax(q k^T) v, faster in
bf16 on CPUs) and ``MixedAttention.split_qkv`` (separate q and kv layers for the cached path, so that dynamic
quantisation, which replaces every ``nn.Linear``, keeps that path working).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import DropPath, Mlp
from torch import nn

KV = tuple[torch.Tensor, torch.Tensor]


class MixedAttention(nn.Module):
    """Multi-head attention where the first ``num_template`` tokens see only themselves.

    Args:
        dim: token width C.
        num_heads: number of heads (head width C / num_heads; scale head_width^-0.5).
        qkv_bias: bias on the fused qkv projection.

    ``fused_attn`` (default True): ``F.scaled_dot_product_attention``; False: the explicit product (the same
    function). ``split_qkv()``: see there.
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embed_dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.fused_attn = True
        self.q_proj: nn.Module | None = None  # set by split_qkv
        self.kv_proj: nn.Module | None = None

    def split_qkv(self) -> None:
        """Give the cached path its own layers ``q_proj`` (C -> C) and ``kv_proj`` (C -> 2C), copies of the rows of
        the fused ``qkv``, which stays for the full forward and the templates.

        The cached path otherwise slices ``qkv.weight``, which a quantised layer does not have; call this on a
        deployment copy before ``torch.ao.quantization.quantize_dynamic`` (the state dict gains the two layers).
        """
        c = self.qkv.in_features
        has_bias = self.qkv.bias is not None
        self.q_proj, self.kv_proj = nn.Linear(c, c, bias=has_bias), nn.Linear(c, 2 * c, bias=has_bias)
        with torch.no_grad():
            for layer, rows in ((self.q_proj, slice(0, c)), (self.kv_proj, slice(c, None))):
                layer.to(self.qkv.weight)
                layer.weight.copy_(self.qkv.weight[rows])
                if has_bias:
                    layer.bias.copy_(self.qkv.bias[rows])

    def _split_heads(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(B, N, P * C) projections -> P tensors (B, heads, N, head_dim)."""
        b, n, _ = x.shape
        return x.reshape(b, n, -1, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)

    def _qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self._split_heads(self.qkv(x))  # q, k, v

    def _rows_of_qkv(self, x: torch.Tensor, rows: slice, layer: nn.Module | None) -> tuple[torch.Tensor, ...]:
        """Only the rows ``rows`` of the fused projection (q: [0, C), k: [C, 2C), v: [2C, 3C)), computed by
        ``layer`` when ``split_qkv`` made one."""
        if layer is not None:
            return self._split_heads(layer(x))
        bias = None if self.qkv.bias is None else self.qkv.bias[rows]
        return self._split_heads(F.linear(x, self.qkv.weight[rows], bias))

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """(B, heads, Nq, d) queries against (B, heads, Nk, d) keys/values -> (B, heads, Nq, d)."""
        if self.fused_attn:
            return F.scaled_dot_product_attention(q, k, v)
        weights = (q * self.head_dim ** -0.5) @ k.transpose(-2, -1)
        return weights.softmax(dim=-1) @ v

    def _merge(self, out: torch.Tensor) -> torch.Tensor:
        b, h, n, d = out.shape
        return out.transpose(1, 2).reshape(b, n, h * d)

    def forward(self, x: torch.Tensor, num_template: int) -> torch.Tensor:
        """x: (B, N, C) -> (B, N, C); tokens [0, num_template) are the templates."""
        q, k, v = self._qkv(x)
        t = num_template
        out_t = self._attend(q[:, :, :t], k[:, :, :t], v[:, :, :t])
        out_s = self._attend(q[:, :, t:], k, v)
        return self.proj(self._merge(torch.cat([out_t, out_s], dim=2)))

    def forward_template(self, x_t: torch.Tensor) -> tuple[torch.Tensor, KV]:
        """Template tokens only: (B, Nt, C) -> output (B, Nt, C) and this layer's template (k, v)."""
        q, k, v = self._qkv(x_t)
        return self.proj(self._merge(self._attend(q, k, v))), (k, v)

    def forward_search(self, x_s: torch.Tensor, kv_t: KV, num_queries: int | None = None) -> torch.Tensor:
        """Search tokens attending to [cached template (k, v) ; own (k, v)]: (B, Ns, C) -> (B, Ns, C).

        ``num_queries``: compute the output of the last ``num_queries`` tokens only, (B, num_queries, C); every
        token still contributes its key and value.
        """
        # q and (k, v) as two products: on CPUs this is faster than one fused product whose q, k and v are then
        # read with a stride of 3C, and it lets the last block compute queries for the prediction tokens only.
        c = x_s.shape[-1]
        (q,) = self._rows_of_qkv(x_s if num_queries is None else x_s[:, -num_queries:], slice(0, c), self.q_proj)
        k, v = self._rows_of_qkv(x_s, slice(c, None), self.kv_proj)
        k = torch.cat([kv_t[0], k], dim=2)
        v = torch.cat([kv_t[1], v], dim=2)
        return self.proj(self._merge(self._attend(q, k, v)))


def use_explicit_attention(model: nn.Module) -> nn.Module:
    """Switch every ``MixedAttention`` of ``model`` to the explicit product (``fused_attn = False``; in place, the
    same function); returns ``model``."""
    for module in model.modules():
        if isinstance(module, MixedAttention):
            module.fused_attn = False
    return model


class Block(nn.Module):
    """Pre-norm transformer block; both residual branches can be scaled by ``scale`` (the layer-fade
    "remove rate" of deep-to-shallow distillation: 1 = normal block, 0 = identity).

    Args:
        dim: token width. num_heads: attention heads. mlp_ratio: hidden width of the MLP / dim.
        drop_path: stochastic-depth rate of both branches.
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, drop_path: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = MixedAttention(dim, num_heads)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU)

    def _residual(self, x: torch.Tensor, branch: torch.Tensor, scale: float) -> torch.Tensor:
        branch = self.drop_path(branch)
        return x + branch if scale == 1.0 else x + scale * branch

    def forward(self, x: torch.Tensor, num_template: int, scale: float = 1.0) -> torch.Tensor:
        x = self._residual(x, self.attn(self.norm1(x), num_template), scale)
        return self._residual(x, self.mlp(self.norm2(x)), scale)

    def forward_template(self, x_t: torch.Tensor, scale: float = 1.0) -> tuple[torch.Tensor, KV]:
        """Template tokens through the block; also returns the (k, v) the search tokens will attend to."""
        attn, kv = self.attn.forward_template(self.norm1(x_t))
        x_t = self._residual(x_t, attn, scale)
        return self._residual(x_t, self.mlp(self.norm2(x_t)), scale), kv

    def forward_search(self, x_s: torch.Tensor, kv_t: KV, scale: float = 1.0,
                       num_outputs: int | None = None) -> torch.Tensor:
        """Search tokens against cached template (k, v). ``num_outputs``: return only the last ``num_outputs``
        tokens, skipping the queries, attention and MLP of the others (used for the last block, whose search-token
        outputs no head reads)."""
        attn = self.attn.forward_search(self.norm1(x_s), kv_t, num_outputs)
        if num_outputs is not None:
            x_s = x_s[:, -num_outputs:]
        x_s = self._residual(x_s, attn, scale)
        return self._residual(x_s, self.mlp(self.norm2(x_s)), scale)
