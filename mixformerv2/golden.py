"""Checks against the official implementation's outputs ("golden" files, ``tests/data/golden/*.pt``).

A model file holds ``kind`` ('student' | 'teacher'), ``hyper_parameters``, ``state_dict`` (official layout),
``inputs`` (template, online_template, search) and ``outputs``. A crop file (``kind == 'crops'``) holds an RGB
image with crop and clipping cases. A losses file (``kind == 'losses'``) holds CIoU cases (with the gradient) and
stage-1 KL cases of the official training code. Each check yields ``(name, max_abs_error, tolerance)`` rows; a row fails when
its error exceeds ``1e-4 * max(1, largest magnitude of the reference)``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .boxes import clip_box_xywh
from .config.schema import ModelConfig
from .crop import crop_square_xywh
from .models import build_model

RELATIVE_TOLERANCE = 1e-4


@dataclass
class Comparison:
    name: str
    max_abs_error: float
    tolerance: float

    @property
    def ok(self) -> bool:
        return self.max_abs_error <= self.tolerance


def _as_double(values) -> torch.Tensor:
    if torch.is_tensor(values):
        return values.detach().double()
    return torch.as_tensor(np.asarray(values, dtype=np.float64))


def compare(name: str, ours, reference) -> Comparison:
    ours_t, ref_t = _as_double(ours), _as_double(reference)
    if ours_t.shape != ref_t.shape:
        return Comparison(f"{name} (shape {tuple(ours_t.shape)} vs {tuple(ref_t.shape)})", float("inf"), 0.0)
    scale = max(1.0, ref_t.abs().max().item()) if ref_t.numel() else 1.0
    error = (ours_t - ref_t).abs().max().item() if ref_t.numel() else 0.0
    return Comparison(name, error, RELATIVE_TOLERANCE * scale)


def model_config_from_golden(data: dict) -> ModelConfig:
    hp = data["hyper_parameters"]
    common = dict(embed_dim=hp["embed_dim"], depth=hp["depth"], num_heads=hp["num_heads"],
                  mlp_ratio=float(hp["mlp_ratio"]), template_size=hp["template_size"],
                  search_size=hp["search_size"])
    if data["kind"] == "student":
        return ModelConfig(name="mixformerv2", num_bins=hp["num_bins"], score_head="pred_scores" in data["outputs"],
                           **common)
    return ModelConfig(name="mixvit", head_type=hp.get("head_type", "corner_up"),
                       head_channels=hp["head_channels"], **common)


def _student_outputs(out) -> dict[str, torch.Tensor]:
    rows = {"pred_boxes": out.box_cxcywh_norm.unsqueeze(1), "reg_tokens": out.tokens}
    probs = out.side_logits.softmax(dim=-1)
    for i, side in enumerate("lrtb"):  # token order: left, right, top, bottom
        rows[f"logits_{side}"] = out.side_logits[:, i]
        rows[f"prob_{side}"] = probs[:, i]
    if out.score_logit is not None:
        rows["pred_scores"] = out.score_logit
    if out.block_features:
        rows["block_outputs"] = torch.stack(out.block_features)
    return rows


def _teacher_outputs(out) -> dict[str, torch.Tensor]:
    rows = {"pred_boxes": out.box_cxcywh_norm.unsqueeze(1)}
    for i, corner in enumerate(("tl", "br")):
        rows[f"logits_{corner}"] = out.corner_logits[:, i]
        rows[f"prob_{corner}"] = out.corner_logits[:, i].softmax(dim=-1)
    return rows


@torch.no_grad()
def check_model_file(data: dict, fast_path: bool = False) -> list[Comparison]:
    """Build the model from the hyper-parameters, load the state dict strictly, run the inputs, compare."""
    model = build_model(model_config_from_golden(data)).eval()
    model.load_state_dict(data["state_dict"], strict=True)
    inputs = data["inputs"]
    args = (inputs["template"], inputs["online_template"], inputs["search"])
    out = model(*args)
    ours = _student_outputs(out) if data["kind"] == "student" else _teacher_outputs(out)
    rows = [compare(k, ours[k], v) for k, v in data["outputs"].items() if k in ours]
    rows += [Comparison(f"{k} (not produced)", float("inf"), 0.0) for k in data["outputs"] if k not in ours]
    if fast_path and data["kind"] == "student":
        cached = model.forward_search(model.encode_templates(args[0], args[1]), args[2])
        rows.append(compare("fast_path.pred_boxes", cached.box_cxcywh_norm.unsqueeze(1), data["outputs"]["pred_boxes"]))
        if cached.score_logit is not None:
            rows.append(compare("fast_path.pred_scores", cached.score_logit, data["outputs"]["pred_scores"]))
    return rows


def check_crop_file(data: dict) -> list[Comparison]:
    """Every crop case (pixels, padding mask, resize factor) and clipping case."""
    rows = []
    image = np.asarray(data["image_rgb"])
    for i, case in enumerate(data["crop_cases"]):
        crop = crop_square_xywh(image, case["box_xywh"], case["factor"], case["output_size"])
        rows.append(compare(f"crop[{i}].image", crop.image.astype(np.float64), case["crop"].astype(np.float64)))
        rows.append(compare(f"crop[{i}].padding_mask", crop.padding_mask, case["padding_mask"]))
        rows.append(compare(f"crop[{i}].resize_factor", [crop.resize_factor], [case["resize_factor"]]))
    for i, case in enumerate(data["clip_cases"]):
        clipped = clip_box_xywh(case["box_xywh"], case["H"], case["W"], case["margin"])
        rows.append(compare(f"clip[{i}]", clipped, case["clipped"]))
    return rows


def check_losses_file(data: dict) -> list[Comparison]:
    """CIoU (loss, IoU, gradient) and the stage-1 KL (corner marginals, KL). Where the official CIoU is 0/0 (case
    ``same``: prediction equal to target, NaN there) ours is compared with the limit: loss 0, IoU 1."""
    from .train.losses import ciou_loss, corner_marginals, side_kl

    rows = []
    for name, case in data["ciou"].items():
        pred = case["pred_xyxy"].clone().requires_grad_(True)
        loss, iou = ciou_loss(pred, case["target_xyxy"])
        loss.backward()
        if name == "same":
            rows += [compare("ciou[same].loss", loss, torch.zeros(())),
                     compare("ciou[same].iou", iou, torch.ones_like(case["iou"]))]
            continue
        rows += [compare(f"ciou[{name}].loss", loss, case["loss"]), compare(f"ciou[{name}].iou", iou, case["iou"]),
                 compare(f"ciou[{name}].grad", pred.grad, case["grad_pred"])]
    for name, case in data["kl"].items():
        marginals = corner_marginals(case["prob_tl"], case["prob_br"])
        rows += [compare(f"kl[{name}].marginals", marginals, case["marginals"]),
                 compare(f"kl[{name}].kl", side_kl(case["student_logits"], marginals), case["kl"])]
    return rows


def load_golden_file(path: str | Path) -> dict:
    """Read a golden file with ``weights_only=True``; numpy arrays (the crop cases) are the only globals allowed."""
    allowed = [np.ndarray, np.dtype, np.core.multiarray._reconstruct, *{type(np.dtype(t)) for t in "?bBhHiIlLqQefdgFDG"}]
    with torch.serialization.safe_globals(allowed):
        return torch.load(path, map_location="cpu", weights_only=True)


def check_golden_file(path: str | Path, fast_path: bool = False) -> list[Comparison]:
    data = load_golden_file(path)
    if data.get("kind") == "crops":
        return check_crop_file(data)
    if data.get("kind") == "losses":
        return check_losses_file(data)
    if data.get("kind") in ("student", "teacher"):
        return check_model_file(data, fast_path)
    raise ValueError(f"{path}: unknown golden file kind {data.get('kind')!r}")
