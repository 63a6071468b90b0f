"""Checkpoints are untrusted files: reading one runs no code from it, every unreadable file is one error line naming
it, official files with their pickled settings still load, writes are atomic and durable, wrapper prefixes go."""
from __future__ import annotations

import builtins
import io
import logging
import os
import pickle
import stat
import subprocess
import sys
import types
from collections import OrderedDict

import pytest
import torch

from mixformerv2.config import ModelConfig
from mixformerv2.models import CheckpointError, build_model, load_checkpoint, read_checkpoint, save_checkpoint
from mixformerv2.models.checkpoint import strip_prefixes

TINY = dict(depth=1, embed_dim=32, num_heads=2, template_size=32, search_size=64, num_bins=8, score_head=True)


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return build_model(ModelConfig(**TINY))


def assert_one_line_error(path, match: str = ""):
    """Reading ``path`` raises CheckpointError whose message is one line naming the file (and ``match``)."""
    with pytest.raises(CheckpointError) as info:
        read_checkpoint(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message and match in message
    return message


# ------------------------------------------------------------------------------------------------ malicious files
class Payload:
    """Unpickling this object calls ``func(arg)``: the classic pickle code-execution gadget."""

    def __init__(self, func, arg):
        self.func, self.arg = func, arg

    def __reduce__(self):
        return self.func, (self.arg,)


def payloads(marker):
    """Each creates ``marker`` if it is ever called."""
    touch = f"open({str(marker)!r}, 'w').close()"
    return {"os.system": Payload(os.system, f"touch {marker}"),
            "exec": Payload(builtins.exec, touch),
            "eval": Payload(builtins.eval, touch),
            "subprocess.Popen": Payload(subprocess.Popen, ["touch", str(marker)])}


def write_file(obj, path, fmt: str, protocol: int) -> None:
    if fmt == "raw_pickle":
        path.write_bytes(pickle.dumps(obj, protocol=protocol))
    else:
        torch.save(obj, path, pickle_protocol=protocol, _use_new_zipfile_serialization=(fmt == "zip"))


@pytest.mark.parametrize("protocol", [2, 4])
@pytest.mark.parametrize("fmt", ["zip", "legacy", "raw_pickle"])
@pytest.mark.parametrize("gadget", ["os.system", "exec", "eval", "subprocess.Popen"])
def test_malicious_checkpoint_runs_nothing(tmp_path, tiny_model, gadget, fmt, protocol):
    marker = tmp_path / "pwned"
    path = tmp_path / f"evil_{fmt}_{protocol}.pth.tar"
    write_file({"net": tiny_model.state_dict(), "settings": payloads(marker)[gadget], "epoch": 1}, path, fmt, protocol)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(build_model(ModelConfig(**TINY)), path)
    message = str(info.value)
    assert not marker.exists(), f"{gadget} ran while loading a {fmt} checkpoint"
    assert "\n" not in message and str(path) in message


def test_refusal_names_the_forbidden_global(tmp_path, tiny_model):
    path = tmp_path / "evil.pth.tar"
    torch.save({"net": tiny_model.state_dict(), "x": payloads(tmp_path / "m")["subprocess.Popen"]}, path)
    assert "Popen" in assert_one_line_error(path, "refused")


# ------------------------------------------------------------------------------------------------ broken files
def test_missing_empty_and_folder(tmp_path):
    assert_one_line_error(tmp_path / "nope.pth.tar", "not found")
    (tmp_path / "empty.pth.tar").touch()
    assert_one_line_error(tmp_path / "empty.pth.tar", "empty")  # was IndexError
    (tmp_path / "dir.pth.tar").mkdir()
    assert_one_line_error(tmp_path / "dir.pth.tar", "folder")


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("start", [b"", b"\x80\x02", b"PK\x03\x04", b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19."])
def test_random_bytes(tmp_path, seed, start):
    """Random tails behind the first bytes of a pickle, a zip and a legacy torch file (its magic number)."""
    path = tmp_path / "random.pth"
    path.write_bytes(start + torch.randint(0, 256, (64 + 97 * seed,), generator=torch.Generator().manual_seed(seed),
                                           dtype=torch.uint8).numpy().tobytes())
    assert_one_line_error(path)


@pytest.mark.parametrize("legacy", [False, True])
def test_truncated_checkpoint(tmp_path, tiny_model, legacy):
    whole = tmp_path / "whole.pth.tar"
    torch.save({"net": tiny_model.state_dict(), "epoch": 3}, whole, _use_new_zipfile_serialization=not legacy)
    data = whole.read_bytes()
    cut = tmp_path / "cut.pth.tar"
    for fraction in (0.5, 0.01, 0.25, 0.75, 0.99):
        cut.write_bytes(data[:int(len(data) * fraction)])
        assert_one_line_error(cut)


# ------------------------------------------------------------------------------------------------ official files
OFFICIAL_CLASSES = {"lib.train.admin.settings": ["Settings"], "lib.train.admin.local": ["EnvironmentSettings"],
                    "lib.train.admin.stats": ["AverageMeter", "StatValue"], "lib.train.admin.other": ["Unknown"]}


@pytest.fixture
def official_code(monkeypatch):
    """The official code base's classes as importable modules, while the test writes its files; dropped after."""
    classes = {}
    for parts in ("lib", "lib.train", "lib.train.admin"):
        monkeypatch.setitem(sys.modules, parts, types.ModuleType(parts))
    for module_name, names in OFFICIAL_CLASSES.items():
        module = types.ModuleType(module_name)
        for name in names:
            cls = type(name, (), {"__module__": module_name, "__qualname__": name})
            setattr(module, name, cls)
            classes[name] = cls
        monkeypatch.setitem(sys.modules, module_name, module)
    return types.SimpleNamespace(**classes)


def official_checkpoint(model, code, **settings_extra) -> dict:
    """What the official BaseTrainer.save_checkpoint writes: weights, AdamW state, meters and the settings."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model(*(torch.zeros(1, 3, s, s) for s in (32, 32, 64))).box_xyxy_norm.sum().backward()
    optimizer.step()
    settings, env, meter, lr = code.Settings(), code.EnvironmentSettings(), code.AverageMeter(), code.StatValue()
    env.workspace_dir, env.lasot_dir = "/work/space", "data/lasot"
    meter.avg, meter.count, lr.val = 0.25, 8, [1e-4]
    settings.__dict__.update(env=env, script_name="mixformer2_vit_online", device=torch.device("cpu"),
                             search_area_factor={"template": 2.0, "search": 5.0}, local_rank=-1, **settings_extra)
    return {"epoch": 40, "actor_type": "MixFormerActor", "net_type": "MixFormer", "net": model.state_dict(),
            "net_info": None, "constructor": None, "optimizer": optimizer.state_dict(),
            "stats": OrderedDict(train=OrderedDict({"Loss/total": meter, "LearningRate/group0": lr})),
            "settings": settings}


@pytest.mark.parametrize("legacy", [False, True])
def test_official_checkpoint_with_settings_loads(tmp_path, official_code, caplog, legacy):
    model = build_model(ModelConfig(**TINY))
    path = tmp_path / "MixFormer_ep0040.pth.tar"
    torch.save(official_checkpoint(model, official_code), path, _use_new_zipfile_serialization=not legacy)
    for name in OFFICIAL_CLASSES:  # the reader has no official code base to import
        sys.modules.pop(name)
    fresh = build_model(ModelConfig(**TINY))
    with caplog.at_level(logging.WARNING, logger="mixformerv2.models.checkpoint"):
        ckpt = load_checkpoint(fresh, path)
    assert all(torch.equal(v, fresh.state_dict()[k]) for k, v in model.state_dict().items())
    settings = ckpt["settings"]
    assert (settings.script_name, settings.env.workspace_dir, settings.device) == ("mixformer2_vit_online",
                                                                                  "/work/space", torch.device("cpu"))
    assert settings.search_area_factor["search"] == 5.0
    assert ckpt["stats"]["train"]["Loss/total"].avg == 0.25 and ckpt["epoch"] == 40
    moments = [state["exp_avg"] for state in ckpt["optimizer"]["state"].values()]
    assert all(torch.is_tensor(m) for m in moments) and any(m.abs().sum() > 0 for m in moments)
    assert "stubs for the official code" in caplog.text and str(path) in caplog.text


def test_official_classes_do_not_open_the_door(tmp_path, official_code):
    """A file that also pickles a payload, or a class of the official code outside the allow-list, is refused."""
    model = build_model(ModelConfig(**TINY))
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pth.tar"
    torch.save(official_checkpoint(model, official_code, hook=payloads(marker)["exec"]), evil)
    unknown = tmp_path / "unknown.pth.tar"
    torch.save(official_checkpoint(model, official_code, extra=official_code.Unknown()), unknown)
    for name in OFFICIAL_CLASSES:
        sys.modules.pop(name)
    assert_one_line_error(evil, "exec")
    assert not marker.exists()
    assert_one_line_error(unknown, "lib.train.admin.other.Unknown")


# ------------------------------------------------------------------------------------------------ writing
def test_save_streams_to_a_synced_temp_file(tmp_path, tiny_model, monkeypatch):
    """The checkpoint is written to a temporary file in the target folder, fsynced, renamed, the folder fsynced."""
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(stat.S_IFMT(os.fstat(fd).st_mode)) or real_fsync(fd))
    written_to, renamed = [], []
    real_save, real_replace = torch.save, os.replace
    monkeypatch.setattr(torch, "save", lambda obj, f, **kw: written_to.append(f) or real_save(obj, f, **kw))
    monkeypatch.setattr(os, "replace", lambda src, dst: renamed.append((src, dst)) or real_replace(src, dst))
    path = tmp_path / "ckpt" / "MixFormer_ep0001.pth.tar"
    save_checkpoint(tiny_model, path, epoch=1)
    assert synced == [stat.S_IFREG, stat.S_IFDIR]
    assert hasattr(written_to[0], "fileno") and not isinstance(written_to[0], io.BytesIO)  # streamed, no bytes copy
    assert [(os.path.dirname(src), str(dst)) for src, dst in renamed] == [(str(path.parent), str(path))]
    assert os.listdir(path.parent) == [path.name] and stat.S_IMODE(path.stat().st_mode) == 0o644
    assert read_checkpoint(path)["epoch"] == 1


def test_failed_save_keeps_the_previous_checkpoint(tmp_path, tiny_model):
    path = tmp_path / "MixFormer_ep0001.pth.tar"
    save_checkpoint(tiny_model, path, epoch=1)
    before = path.read_bytes()
    with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
        save_checkpoint(tiny_model, path, epoch=2, hook=lambda: None)  # cannot be pickled: fails mid-write
    assert path.read_bytes() == before and os.listdir(tmp_path) == [path.name]


# ------------------------------------------------------------------------------------------------ prefixes
def test_strip_prefixes_any_nesting():
    t = torch.zeros(1)
    keys = {"module._orig_mod.module.backbone.x": t, "_orig_mod.module.head.y": t, "module.module.z": t,
            "backbone.module.w": t, "_orig_mod._orig_mod.v": t}
    assert list(strip_prefixes(keys)) == ["backbone.x", "head.y", "z", "backbone.module.w", "v"]
    with pytest.raises(CheckpointError, match="'module.a.b' and '_orig_mod.a.b' both become 'a.b'"):
        strip_prefixes({"module.a.b": t, "_orig_mod.a.b": t}, "f.pth")


def test_nested_prefixes_load_strictly(tmp_path, tiny_model):
    path = tmp_path / "compiled_ddp.pth"
    torch.save({"model": {f"_orig_mod.module._orig_mod.{k}": v for k, v in tiny_model.state_dict().items()}}, path)
    fresh = build_model(ModelConfig(**TINY))
    load_checkpoint(fresh, path)
    assert all(torch.equal(v, fresh.state_dict()[k]) for k, v in tiny_model.state_dict().items())
