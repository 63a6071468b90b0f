"""tools/prune.py: dropping faded layers keeps the outputs; layers that have not faded are refused."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from mixformerv2.config import load_config
from mixformerv2.models import build_model, load_checkpoint, read_checkpoint, save_checkpoint
from mixformerv2.train.schedules import block_scales
from mixformerv2.train.pruning import pruned_model_config

REPO = Path(__file__).resolve().parents[1]
CONFIG = """\
model: {name: mixformerv2, head_type: mlp, embed_dim: 32, depth: 4, num_heads: 2, mlp_ratio: 2.0, patch_size: 8,
        template_size: 32, search_size: 64, num_bins: 16, drop_path_rate: 0.0}
"""


def prune_tool():
    spec = importlib.util.spec_from_file_location("prune_tool", REPO / "tools" / "prune.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


@pytest.fixture()
def deep(tmp_path):
    """(config path, model) of a random tiny 4-layer MixFormerV2."""
    config = tmp_path / "deep.yaml"
    config.write_text(CONFIG)
    torch.manual_seed(0)
    return config, build_model(load_config(config).model).eval()


def inputs():
    g = torch.Generator().manual_seed(2)
    return (torch.randn(2, 3, 32, 32, generator=g), [torch.randn(2, 3, 32, 32, generator=g)],
            torch.randn(2, 3, 64, 64, generator=g))


def test_a_model_faded_to_rate_0_and_its_pruned_copy_give_the_same_outputs(deep, tmp_path):
    config, model = deep
    save_checkpoint(model, tmp_path / "faded.pth.tar", fade_layers=[0, 2], remove_rate=0.0)
    out = tmp_path / "pruned.pth.tar"
    assert prune_tool()(["--checkpoint", str(tmp_path / "faded.pth.tar"), "--remove", "0,2", "--out", str(out),
                         "--config", str(config)]) == 0
    shallow = build_model(pruned_model_config(load_config(config).model, (0, 2))).eval()
    meta = load_checkpoint(shallow, out)
    assert meta["removed_layers"] == [0, 2] and meta["remove_rate"] == 0.0 and meta["net_type"] == "MixFormer"
    with torch.no_grad():
        a = model(*inputs(), block_scales=block_scales(4, [0, 2], 0.0))
        b = shallow(*inputs())
    assert (a.side_logits - b.side_logits).abs().max() <= 1e-5
    assert (a.box_xyxy_norm - b.box_xyxy_norm).abs().max() <= 1e-5


@pytest.mark.parametrize("fields", [{}, {"fade_layers": [0, 2], "remove_rate": 0.3}, {"fade_layers": [0],
                                                                                      "remove_rate": 0.0}])
def test_pruning_a_layer_that_has_not_faded_is_refused_unless_forced(deep, tmp_path, capsys, fields):
    _, model = deep
    source = tmp_path / "in.pth.tar"
    save_checkpoint(model, source, **fields)
    out = tmp_path / "out.pth.tar"
    assert prune_tool()(["--checkpoint", str(source), "--remove", "0,2", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(source) in err[0] and "have not faded out" in err[0] and not out.exists()
    assert prune_tool()(["--checkpoint", str(source), "--remove", "0,2", "--out", str(out), "--force"]) == 0
    assert sorted({k.split(".")[2] for k in read_checkpoint(out)["net"] if k.startswith("backbone.blocks.")}) == \
        ["0", "1"]


def test_pruning_a_layer_the_checkpoint_lacks_names_the_file(deep, tmp_path, capsys):
    _, model = deep
    save_checkpoint(model, tmp_path / "in.pth.tar", fade_layers=[7], remove_rate=0.0)
    assert prune_tool()(["--checkpoint", str(tmp_path / "in.pth.tar"), "--remove", "7",
                         "--out", str(tmp_path / "o.pth.tar")]) == 2
    err = capsys.readouterr().err
    assert "in.pth.tar" in err and "cannot remove layers [7]" in err


@pytest.mark.parametrize("epoch, allowed", [(39, True), (19, False)])
def test_a_training_state_is_pruned_only_once_its_fade_epoch_reached_rate_0(tmp_path, capsys, epoch, allowed):
    from test_stage2 import stage2_cfg, write_config, write_model

    from mixformerv2.config import config_to_dict
    from mixformerv2.train.checkpointing import STATE_FORMAT
    from mixformerv2.train.stage import build_stage

    config = write_config(tmp_path / "s1.yaml")
    cfg = stage2_cfg((config, write_model(config, tmp_path / "s1.pth.tar")), "train.remove_layers=[1,3]")
    stage = build_stage(cfg, torch.device("cpu"))
    stage.on_epoch_start(epoch)
    state = tmp_path / "iter_100.pth.tar"
    torch.save({"format": STATE_FORMAT, "stage": stage.state_dict(), "config": config_to_dict(cfg)}, state)
    out = tmp_path / "pruned.pth.tar"
    status = prune_tool()(["--checkpoint", str(state), "--remove", "1,3", "--out", str(out)])
    assert (status == 0) == allowed and out.exists() == allowed
    if allowed:
        assert read_checkpoint(out)["net"]["backbone.blocks.1.mlp.fc1.weight"].equal(
            stage.raw_student.backbone.blocks[2].mlp.fc1.weight)
    else:
        assert "remove_rate 0.5" in capsys.readouterr().err
