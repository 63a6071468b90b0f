"""Image normalisation shared by training and tracking (ImageNet mean/std by default)."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalize_image(image: np.ndarray | torch.Tensor, mean: Sequence[float] = IMAGENET_MEAN,
                    std: Sequence[float] = IMAGENET_STD, device: torch.device | str | None = None) -> torch.Tensor:
    """(H, W, 3) RGB with values in [0, 255] (uint8 or float; numpy or tensor; never modified) -> (3, H, W) float32
    tensor ``(image / 255 - mean) / std``."""
    tensor = torch.as_tensor(image, device=device).permute(2, 0, 1).to(torch.float32, copy=True).div_(255.0)
    mean_t = torch.tensor(mean, dtype=tensor.dtype, device=tensor.device).view(3, 1, 1)
    std_t = torch.tensor(std, dtype=tensor.dtype, device=tensor.device).view(3, 1, 1)
    return tensor.sub_(mean_t).div_(std_t)
