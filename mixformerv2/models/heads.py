"""Prediction heads.

* ``SideBinHead`` (student): one MLP shared by the four prediction tokens (left, right, top, bottom) turns each
  into logits over ``num_bins`` bins; the coordinate is the softmax expectation of the bin positions.
* ``ScoreHead`` (student): an MLP on each prediction token, averaged into one confidence logit.
* ``PyramidCornerHead`` / ``CornerHead`` (MixViT teacher): dense top-left / bottom-right corner maps with a
  soft-argmax (the official CORNER_UP at stride 4, and the plain CORNER tower at stride 16).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

SIDES = ("left", "right", "top", "bottom")  # order of the prediction tokens


class SideBinHead(nn.Module):
    """(B, 4, C) prediction tokens -> (B, 4, num_bins) logits per side; ``decode`` gives xyxy in [0, 1)."""

    def __init__(self, embed_dim: int, num_bins: int):
        super().__init__()
        self.num_bins = num_bins
        self.layers = nn.ModuleList([
            nn.Sequential(nn.Linear(embed_dim, embed_dim), nn.LayerNorm(embed_dim), nn.ReLU(inplace=True)),
            nn.Sequential(nn.Linear(embed_dim, num_bins), nn.LayerNorm(num_bins)),
        ])
        # bin k sits at k / num_bins of the crop side (k * stride pixels, stride = crop size / num_bins)
        self.register_buffer("bin_positions", torch.arange(num_bins, dtype=torch.float32) / num_bins,
                             persistent=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            tokens = layer(tokens)
        return tokens

    def decode(self, logits: torch.Tensor) -> torch.Tensor:
        """(B, 4, num_bins) logits (l, r, t, b) -> (B, 4) normalised box (x1, y1, x2, y2)."""
        sides = logits.softmax(dim=-1) @ self.bin_positions.to(logits.dtype)
        return sides[:, [0, 2, 1, 3]]


class ScoreHead(nn.Module):
    """(B, 4, C) prediction tokens -> (B,) confidence logit (mean of a per-token MLP)."""

    def __init__(self, embed_dim: int):
        super().__init__()
        self.layers = nn.ModuleList([
            nn.Sequential(nn.Linear(embed_dim, embed_dim), nn.ReLU(inplace=True)),
            nn.Linear(embed_dim, 1),
        ])

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            tokens = layer(tokens)
        return tokens.mean(dim=1).view(-1)


def conv_bn_relu(in_ch: int, out_ch: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 3, padding=1), nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True))


def soft_argmax(score_map: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 1, F, F) logits -> expected (x, y) in [0, 1) of the map side (B, 2), and the flat logits (B, F*F)."""
    b, _, f, _ = score_map.shape
    logits = score_map.reshape(b, f * f)
    prob = logits.softmax(dim=-1).view(b, f, f)
    positions = torch.arange(f, device=logits.device, dtype=logits.dtype) / f
    x = prob.sum(dim=1) @ positions
    y = prob.sum(dim=2) @ positions
    return torch.stack([x, y], dim=1), logits


class _CornerMapHead(nn.Module):
    """Shared part of the teacher's corner heads: a conv tower per corner and the soft-argmax."""

    def _add_tower(self, corner: str, in_channels: int, c: int) -> None:
        setattr(self, f"conv1_{corner}", conv_bn_relu(in_channels, c))
        setattr(self, f"conv2_{corner}", conv_bn_relu(c, c // 2))
        setattr(self, f"conv3_{corner}", conv_bn_relu(c // 2, c // 4))
        setattr(self, f"conv4_{corner}", conv_bn_relu(c // 4, c // 8))
        setattr(self, f"conv5_{corner}", nn.Conv2d(c // 8, 1, kernel_size=1))

    def _corner(self, x: torch.Tensor, corner: str) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, G, G) -> normalised box xyxy (B, 4) and corner logits (B, 2, F*F) (top-left, bottom-right)."""
        tl, logits_tl = soft_argmax(self._corner(x, "tl"))
        br, logits_br = soft_argmax(self._corner(x, "br"))
        return torch.cat([tl, br], dim=1), torch.stack([logits_tl, logits_br], dim=1)


class PyramidCornerHead(_CornerMapHead):
    """CORNER_UP: corner maps at 4x the feature resolution (stride 4).

    Per corner: two 3x3 conv-BN-ReLU at G, then two nearest-upsampling stages fused with projections of the
    input, and a final sum of three score paths. Attribute names follow the official checkpoints.
    """

    def __init__(self, in_channels: int, channels: int = 384):
        super().__init__()
        c = channels
        for corner in ("tl", "br"):
            self._add_tower(corner, in_channels, c)
            setattr(self, f"adjust1_{corner}", conv_bn_relu(in_channels, c // 2))
            setattr(self, f"adjust2_{corner}", conv_bn_relu(in_channels, c // 4))
            setattr(self, f"adjust3_{corner}", nn.Sequential(
                conv_bn_relu(c // 2, c // 4), conv_bn_relu(c // 4, c // 8), conv_bn_relu(c // 8, 1)))
            setattr(self, f"adjust4_{corner}", nn.Sequential(conv_bn_relu(c // 4, c // 8), conv_bn_relu(c // 8, 1)))

    def _corner(self, x: torch.Tensor, corner: str) -> torch.Tensor:
        def m(name):
            return getattr(self, f"{name}_{corner}")

        def up(t, factor):
            return F.interpolate(t, scale_factor=factor)  # nearest

        t2 = m("conv2")(m("conv1")(x))
        t3 = m("conv3")(up(t2, 2) + up(m("adjust1")(x), 2))
        t4 = m("conv4")(up(t3, 2) + up(m("adjust2")(x), 4))
        return m("conv5")(t4) + up(m("adjust3")(t2), 4) + up(m("adjust4")(t3), 2)


class CornerHead(_CornerMapHead):
    """CORNER: a plain five-conv tower per corner at the feature resolution (stride 16)."""

    def __init__(self, in_channels: int, channels: int = 256):
        super().__init__()
        for corner in ("tl", "br"):
            self._add_tower(corner, in_channels, channels)

    def _corner(self, x: torch.Tensor, corner: str) -> torch.Tensor:
        for name in ("conv1", "conv2", "conv3", "conv4", "conv5"):
            x = getattr(self, f"{name}_{corner}")(x)
        return x
