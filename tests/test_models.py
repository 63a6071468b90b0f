"""Model structure, golden parity, the cached path, layer removal and checkpoint handling."""
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mixformerv2.config import ModelConfig, load_config
from mixformerv2.crop import crop_square_xywh
from mixformerv2.golden import check_golden_file
from mixformerv2.models import (CheckpointError, build_model, init_from_pretrained, load_checkpoint,
                                remove_layers, save_checkpoint)

ROOT = Path(__file__).resolve().parents[1]
LAYOUTS = ROOT / "tests" / "data" / "checkpoint_layout"
GOLDEN = ROOT / "tests" / "data" / "golden"
TINY = dict(embed_dim=64, num_heads=4, template_size=32, search_size=64, num_bins=16, score_head=True)


def read_layout(name: str) -> dict[str, tuple[int, ...]]:
    rows = {}
    for line in (LAYOUTS / name).read_text().splitlines():
        key, shape = line.split("\t")
        rows[key] = tuple(int(v) for v in shape.strip("()").split(",") if v.strip())
    return rows


def tiny_inputs(batch=2, seed=0, cfg=None):
    cfg = cfg or ModelConfig(**TINY)
    g = torch.Generator().manual_seed(seed)
    t, s = cfg.template_size, cfg.search_size
    return (torch.randn(batch, 3, t, t, generator=g), torch.randn(batch, 3, t, t, generator=g),
            torch.randn(batch, 3, s, s, generator=g))


def run_parity_tool(monkeypatch, *args) -> int:
    """tools/parity.py run in this process (its main() parses sys.argv); returns the exit status."""
    monkeypatch.setattr(sys, "argv", ["parity.py", *map(str, args)])
    return runpy.run_path(str(ROOT / "tools" / "parity.py"))["main"]()


def test_tracker_crops_without_the_padding_mask_are_the_official_pixels():
    data = torch.load(GOLDEN / "crops.pt", weights_only=False)
    image = np.asarray(data["image_rgb"])
    for case in data["crop_cases"]:
        crop = crop_square_xywh(image, case["box_xywh"], case["factor"], case["output_size"], padding_mask=False)
        assert crop.padding_mask is None and np.array_equal(crop.image, case["crop"])
        assert crop.resize_factor == case["resize_factor"]


@pytest.mark.parametrize("path", sorted(GOLDEN.glob("*.pt")), ids=lambda p: p.stem)
def test_golden_file_matches_the_official_outputs_on_every_output(path):
    data = torch.load(path, weights_only=False)
    rows = check_golden_file(path, fast_path=True)
    assert [row.name for row in rows if not row.ok] == []
    if data["kind"] == "crops":
        expected = {f"crop[{i}].{part}" for i in range(len(data["crop_cases"]))
                    for part in ("image", "padding_mask", "resize_factor")}
        expected |= {f"clip[{i}]" for i in range(len(data["clip_cases"]))}
    elif data["kind"] == "losses":
        expected = {f"ciou[{c}].{part}" for c in data["ciou"] for part in ("loss", "iou", "grad") if c != "same"}
        expected |= {"ciou[same].loss", "ciou[same].iou"}
        expected |= {f"kl[{c}].{part}" for c in data["kl"] for part in ("marginals", "kl")}
    else:
        expected = set(data["outputs"])  # every reference output compared, none skipped
        if data["kind"] == "student":
            expected |= {f"fast_path.{k}" for k in ("pred_boxes", "pred_scores") if k in data["outputs"]}
    assert {row.name for row in rows} == expected


def test_parity_tool_exit_status_and_the_one_output_a_wrong_reference_fails(tmp_path, monkeypatch):
    files = sorted(GOLDEN.glob("*.pt"))
    assert len(files) == 5
    assert run_parity_tool(monkeypatch, *files, "--fast-path") == 0
    data = torch.load(GOLDEN / "student_tiny.pt", weights_only=False)
    data["outputs"]["pred_scores"] = data["outputs"]["pred_scores"] + 1e-2
    torch.save(data, tmp_path / "wrong.pt")
    assert [row.name for row in check_golden_file(tmp_path / "wrong.pt") if not row.ok] == ["pred_scores"]
    assert run_parity_tool(monkeypatch, tmp_path / "wrong.pt") == 1


@pytest.mark.parametrize("config, layout", [
    ("mixformerv2_b.yaml", "mixformerv2_base.tsv"),
    ("mixformerv2_s.yaml", "mixformerv2_small.tsv"),
    ("mixvit_b_teacher.yaml", "mixvit_base_teacher.tsv"),
])
def test_state_dict_layout_matches_release(config, layout):
    model = build_model(load_config(ROOT / "configs" / config).model)
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert ours == read_layout(layout)


def test_official_format_checkpoint_round_trip(tmp_path):
    model = build_model(ModelConfig(depth=2, **TINY)).eval()
    path = tmp_path / "model.pth.tar"
    save_checkpoint(model, path, epoch=3)
    assert set(torch.load(path, weights_only=True)) >= {"net", "epoch", "net_type"}
    fresh = build_model(ModelConfig(depth=2, **TINY)).eval()
    load_checkpoint(fresh, path)
    inputs = tiny_inputs()
    with torch.no_grad():
        assert torch.equal(model(*inputs).box_xyxy_norm, fresh(*inputs).box_xyxy_norm)


@pytest.mark.parametrize("online", ["one", "two"])
def test_cached_path_equals_full_forward(online):
    cfg = ModelConfig(depth=3, **TINY)
    model = build_model(cfg).eval()
    template, online_template, search = tiny_inputs(cfg=cfg)
    online_templates = [online_template] if online == "one" else [online_template, online_template.flip(-1)]
    with torch.no_grad():
        full = model(template, online_templates, search)
        cached = model.forward_search(model.encode_templates(template, online_templates), search)
    assert (full.box_xyxy_norm - cached.box_xyxy_norm).abs().max() <= 1e-5
    assert (full.score_logit - cached.score_logit).abs().max() <= 1e-5


def test_cached_backbone_returns_the_full_forwards_search_tokens_and_can_skip_the_unread_ones():
    cfg = ModelConfig(depth=3, **TINY)
    backbone = build_model(cfg).eval().backbone
    template, online, search = tiny_inputs(cfg=cfg)
    scales = [1.0, 0.5, 1.0]
    with torch.no_grad():
        full, _ = backbone.forward_features(template, [online], search, scales)
        cache = backbone.encode_templates(template, [online], scales)
        every = backbone.forward_search(cache, search, scales)
        last4 = backbone.forward_search(cache, search, scales, num_outputs=4)
    n_search = every.shape[1]
    assert n_search == (cfg.search_size // 16) ** 2 + 4
    assert (every - full[:, -n_search:]).abs().max() <= 1e-5
    assert last4.shape[1] == 4 and (last4 - full[:, -4:]).abs().max() <= 1e-5


def test_removing_faded_layers_equals_faded_model():
    removed = [0, 3, 6, 9]
    big = build_model(ModelConfig(depth=12, **TINY)).eval()
    scales = [0.0 if i in removed else 1.0 for i in range(12)]
    small = build_model(ModelConfig(depth=8, **TINY)).eval()
    small.load_state_dict(remove_layers(big.state_dict(), removed), strict=True)
    inputs = tiny_inputs()
    with torch.no_grad():
        faded, shallow = big(*inputs, block_scales=scales), small(*inputs)
    assert torch.allclose(faded.box_xyxy_norm, shallow.box_xyxy_norm, atol=1e-6)
    assert torch.allclose(faded.score_logit, shallow.score_logit, atol=1e-6)
    # the kept blocks are renumbered in order: old 1 -> new 0, old 11 -> new 7
    assert torch.equal(small.backbone.blocks[0].attn.qkv.weight, big.backbone.blocks[1].attn.qkv.weight)
    assert torch.equal(small.backbone.blocks[7].mlp.fc2.bias, big.backbone.blocks[11].mlp.fc2.bias)


def test_remove_layers_rejects_missing_layer():
    sd = build_model(ModelConfig(depth=2, **TINY)).state_dict()
    with pytest.raises(ValueError, match=r"cannot remove layers \[5\]"):
        remove_layers(sd, [5])


def test_wrong_layout_checkpoint_names_file_model_and_keys(tmp_path):
    path = tmp_path / "deep.pth.tar"
    save_checkpoint(build_model(ModelConfig(depth=3, **TINY)), path)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(build_model(ModelConfig(depth=2, **TINY)), path)
    message = str(err.value)
    assert "\n" not in message
    assert str(path) in message and "mixformerv2(depth=2" in message
    assert "model.depth: config says 2, checkpoint has 3" in message
    assert "unexpected: backbone.blocks.2." in message


def test_truncated_checkpoint_names_file(tmp_path):
    path = tmp_path / "cut.pth.tar"
    save_checkpoint(build_model(ModelConfig(depth=1, **TINY)), path)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match=r"cut\.pth\.tar: not a readable checkpoint"):
        load_checkpoint(build_model(ModelConfig(depth=1, **TINY)), path)


def test_wrong_input_size_is_named():
    model = build_model(ModelConfig(depth=1, **TINY))
    template, online, _ = tiny_inputs()
    with pytest.raises(ValueError, match=r"search: expected a \(B, 3, 64, 64\) image tensor, got \(2, 3, 48, 48\)"):
        model(template, online, torch.zeros(2, 3, 48, 48))


def test_mae_initialisation_reports_what_was_skipped(tmp_path):
    donor = build_model(ModelConfig(depth=2, **TINY))
    mae = {k.removeprefix("backbone."): v for k, v in donor.state_dict().items()
           if k.startswith("backbone.blocks.") or k.startswith("backbone.patch_embed.")}
    mae.update({"cls_token": torch.zeros(1, 1, 64), "pos_embed": torch.zeros(1, 197, 64),
                "norm.weight": torch.ones(64), "norm.bias": torch.zeros(64)})
    torch.save({"model": mae}, tmp_path / "mae.pth")
    student = build_model(ModelConfig(depth=2, **TINY))
    report = init_from_pretrained(student, tmp_path / "mae.pth")
    assert torch.equal(student.backbone.blocks[1].mlp.fc1.weight, donor.backbone.blocks[1].mlp.fc1.weight)
    assert {"backbone.cls_token", "backbone.pos_embed", "backbone.norm.weight"} <= set(report.skipped)
    assert "backbone.reg_tokens" in report.not_initialised and "box_head.layers.0.0.weight" in report.not_initialised


def test_flop_count_includes_attention_and_the_cached_path_skips_unread_work():
    from mixformerv2.profiling import count_flops

    cfg = ModelConfig(depth=2, **TINY)
    model = build_model(cfg).eval()
    template, online, search = tiny_inputs(batch=1, cfg=cfg)
    with torch.inference_mode():
        full = count_flops(lambda: model(template, online, search))
        cache = model.encode_templates(template, online)
        cached = count_flops(lambda: model.forward_search(cache, search))
    c, n_t, n_s, depth = 64, 2 * 4, 16 + 4, 2  # width, template tokens, search + prediction tokens, blocks
    attention = lambda q, k: 2 * 2 * q * k * c  # noqa: E731  (Q K^T and P V)
    linears = lambda n: 2 * n * c * (3 * c + c + 4 * c + 4 * c)  # noqa: E731  (qkv, proj, fc1, fc2)
    heads = 2 * 4 * (c * c + c * 16) + 2 * 4 * (c * c + c)
    patches = lambda n: 2 * n * 3 * 16 * 16 * c  # noqa: E731
    full_blocks = depth * (linears(n_t) + attention(n_t, n_t) + linears(n_s) + attention(n_s, n_t + n_s))
    expected_full = full_blocks + heads + patches(n_t + 16)
    # cached: no template work; the last block computes keys/values of every search token but queries,
    # attention output, projection and MLP only for the 4 prediction tokens, the only tokens the heads read
    last_block = 2 * n_s * c * 2 * c + linears(4) - 2 * 4 * c * 2 * c + attention(4, n_t + n_s)
    expected_cached = (depth - 1) * (linears(n_s) + attention(n_s, n_t + n_s)) + last_block + heads + patches(16)
    assert (cached, full) == (expected_cached, expected_full)
