"""Tiny model configs and checkpoint files shared by the tool and runner tests."""
from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

import torch
import yaml

from mixformerv2.config import ModelConfig
from mixformerv2.models import build_model, save_checkpoint

TINY = ModelConfig(embed_dim=32, depth=2, num_heads=2, mlp_ratio=2.0, template_size=32, search_size=64, num_bins=8,
                   score_head=True, drop_path_rate=0.0)


def write_tiny_model_files(root: Path) -> dict[str, Path]:
    """``config``: a YAML holding TINY; ``good``: a checkpoint that fits it; ``deeper``: one of depth 3 (a layout
    that does not fit)."""
    config = root / "tiny.yaml"
    config.write_text(yaml.safe_dump({"model": asdict(TINY)}))
    torch.manual_seed(0)
    good, deeper = root / "tiny.pth.tar", root / "deeper.pth.tar"
    save_checkpoint(build_model(TINY), good)
    save_checkpoint(build_model(replace(TINY, depth=3)), deeper)
    return {"config": config, "good": good, "deeper": deeper}
