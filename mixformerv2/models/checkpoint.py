"""Checkpoints: reading official files, strict loading with explanations, saving, layer removal, MAE init.

Official training checkpoints (``*.pth.tar``) keep the weights under ``'net'`` and also pickle a ``settings``
object of the official code base; they are read here without that code and without running any code from the file
(``torch.load(weights_only=True)``; the official classes, and only those, become inert stubs).
MAE files keep the weights under ``'model'``.
"""
from __future__ import annotations

import logging
import math
import pickle
import re
import struct
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

import torch
from torch import nn

from ..config.schema import ModelConfig
from ..utils.io import atomic_open

logger = logging.getLogger(__name__)

_BLOCK_KEY = re.compile(r"^(.*\bblocks\.)(\d+)(\..*)$")
_PREFIXES = ("module.", "_orig_mod.")


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the model; the message names the file."""


class _OfficialObject:
    """Inert stand-in for an object of the official code base (its ``Settings``, statistics meters, ...).

    Creating one runs no code of the file's choosing: arguments are ignored and the pickled state is only stored
    (a dict state becomes attributes, anything else sits under ``state``)."""

    official_name = "?"

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        if isinstance(state, dict):
            self.__dict__.update(state)
        else:
            self.__dict__["state"] = state

    def __repr__(self) -> str:
        return f"<stub of {self.official_name}>"


# The only classes beyond plain tensors and containers that the official training checkpoints pickle: the
# ``settings`` object with its ``env`` paths, and the meters in ``stats``. Each is read as an inert stub of its own.
_OFFICIAL_CLASSES = (
    "lib.train.admin.settings.Settings",
    "lib.train.admin.local.EnvironmentSettings",
    "lib.train.admin.stats.AverageMeter",
    "lib.train.admin.stats.StatValue",
)
_OFFICIAL_STUBS = [(type(name.rsplit(".", 1)[1], (_OfficialObject,), {"official_name": name}), name)
                   for name in _OFFICIAL_CLASSES]

# What torch.load raises on a file that is empty, cut short, random bytes or refused by the weights-only unpickler.
_UNREADABLE = (pickle.UnpicklingError, EOFError, OSError, RuntimeError, ValueError, IndexError, KeyError, TypeError,
               AttributeError, struct.error, OverflowError)
_GLOBAL_NAME = re.compile(r"GLOBAL (\S+)")


def _load_weights_only(path: Path):
    with warnings.catch_warnings():  # a file in another pickle protocol fails below with its own one-line error
        warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
        return torch.load(path, map_location="cpu", weights_only=True)


def _why(err: BaseException) -> str:
    """One line saying why torch.load failed: the refused global if there is one, else the first line of the
    unpickler's own reason."""
    text = str(err)
    refused = _GLOBAL_NAME.search(text)
    if refused:
        return f"refused to unpickle {refused.group(1).rstrip('.,')} (only tensors, containers and the official " \
               "code's settings objects are read)"
    lines = [line.strip() for line in text.split("WeightsUnpickler error:")[-1].splitlines() if line.strip()]
    reason = f"{type(err).__name__}: {lines[0] if lines else 'no message'}"
    if "Unsupported operand" in reason:
        reason += " (not written by torch.save with its default pickle protocol 2?)"
    return reason


def read_checkpoint(path: str | Path) -> dict:
    """Read a checkpoint file onto the CPU without running code from it.

    Only tensors, plain containers and numbers are unpickled (``torch.load(weights_only=True)``). Official training
    files also pickle their ``settings`` and statistics objects; for those exactly the classes in
    ``_OFFICIAL_CLASSES`` are allowed, as inert stubs, and a warning says so. Anything else (a missing, empty,
    truncated or corrupt file, or one that asks for any other global such as ``os.system``) raises one
    ``CheckpointError`` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found" + (" (it is a folder)" if path.is_dir() else ""))
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: checkpoint file is empty")
    try:
        return _load_weights_only(path)
    except pickle.UnpicklingError as err:
        if not any(name in str(err) for name in _OFFICIAL_CLASSES):
            raise CheckpointError(f"{path}: not a loadable checkpoint: {_why(err)}") from None
    except OSError as err:
        raise CheckpointError(f"{path}: checkpoint file cannot be read: {err.strerror or err}") from None
    except _UNREADABLE as err:
        raise CheckpointError(f"{path}: not a readable checkpoint (truncated or corrupt?): {_why(err)}") from None
    try:
        with torch.serialization.safe_globals(_OFFICIAL_STUBS):
            obj = _load_weights_only(path)
    except _UNREADABLE as err:
        raise CheckpointError(f"{path}: not a loadable checkpoint: {_why(err)}") from None
    logger.warning("%s: read with stubs for the official code's pickled objects (%s); only the weights and plain "
                   "values of that file are used", path, ", ".join(n.rsplit(".", 1)[1] for n in _OFFICIAL_CLASSES))
    return obj


def strip_prefixes(state_dict: Mapping[str, torch.Tensor], path: str | Path = "<checkpoint>") -> dict:
    """Keys without the wrapper prefixes ``module.`` (DDP) and ``_orig_mod.`` (torch.compile), in any nesting and
    order (``module._orig_mod.module.backbone.x`` -> ``backbone.x``); values and key order unchanged. Raises
    ``CheckpointError`` naming ``path`` when two keys become one."""
    clean: dict = {}
    origin: dict[str, str] = {}
    for key, value in state_dict.items():
        name = key
        while name.startswith(_PREFIXES):
            name = name.split(".", 1)[1]  # every prefix is one dotted component
        if name in clean:
            raise CheckpointError(f"{path}: keys {origin[name]!r} and {key!r} both become {name!r} without the "
                                  "module./_orig_mod. wrapper prefixes")
        clean[name], origin[name] = value, key
    return clean


def unwrap_state_dict(obj, path: str | Path = "<checkpoint>") -> dict[str, torch.Tensor]:
    """The weights inside a checkpoint object: ``'net'`` (official), ``'model'`` (MAE/ours) or ``'state_dict'``,
    or the object itself; DDP (``module.``) and torch.compile (``_orig_mod.``) prefixes removed (``strip_prefixes``)."""
    if isinstance(obj, Mapping):
        for key in ("net", "model", "state_dict"):
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not all(torch.is_tensor(v) for v in obj.values()):
        raise CheckpointError(f"{path}: no state dict found (expected weights under 'net', 'model' or 'state_dict')")
    return strip_prefixes(obj, path)


def infer_model_fields(state_dict: Mapping[str, torch.Tensor], patch_size: int = 16) -> dict:
    """Architecture fields a state dict implies (the ``ModelConfig`` names): name, depth, embed_dim, mlp_ratio,
    template_size, search_size, and num_bins/score_head (student) or head_type (teacher)."""
    fields: dict = {}
    blocks = {int(m.group(2)) for k in state_dict if (m := _BLOCK_KEY.match(k))}
    fields["depth"] = len(blocks)
    if "backbone.patch_embed.proj.weight" in state_dict:
        fields["embed_dim"] = state_dict["backbone.patch_embed.proj.weight"].shape[0]
    fc1 = state_dict.get("backbone.blocks.0.mlp.fc1.weight")
    if fc1 is not None:
        fields["mlp_ratio"] = fc1.shape[0] / fc1.shape[1]
    for key, name in (("backbone.pos_embed_t", "template_size"), ("backbone.pos_embed_s", "search_size")):
        if key in state_dict:
            fields[name] = math.isqrt(state_dict[key].shape[1]) * patch_size
    if "box_head.conv1_tl.0.weight" in state_dict:
        fields["name"] = "mixvit"
        fields["head_type"] = "corner_up" if "box_head.adjust1_tl.0.weight" in state_dict else "corner"
        fields["head_channels"] = state_dict["box_head.conv1_tl.0.weight"].shape[0]
    elif "box_head.layers.1.0.weight" in state_dict:
        fields["name"] = "mixformerv2"
        fields["num_bins"] = state_dict["box_head.layers.1.0.weight"].shape[0]
        fields["score_head"] = any(k.startswith("score_head.") for k in state_dict)
    return fields


def _contradictions(cfg: ModelConfig, implied: dict) -> list[str]:
    out = []
    for key, value in implied.items():
        mine = getattr(cfg, key)
        if (mine != value) if not isinstance(value, float) else abs(mine - value) > 1e-6:
            out.append(f"model.{key}: config says {mine!r}, checkpoint has {value!r}")
    return out


def layout_problems(model: nn.Module, state_dict: Mapping[str, torch.Tensor], limit: int = 5) -> list[str]:
    """Missing, unexpected and mis-shaped keys of ``state_dict`` for ``model`` (first ``limit`` of each)."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    shapes = [f"{k} {tuple(state_dict[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
              if k in state_dict and state_dict[k].shape != v.shape]
    problems = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch (file vs model)", shapes)):
        if items:
            more = f" and {len(items) - limit} more" if len(items) > limit else ""
            problems.append(f"{label}: {', '.join(items[:limit])}{more}")
    return problems


def load_state_dict_strict(model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """Load strictly; on any mismatch raise one ``CheckpointError`` that names the file, the expected model, the
    config keys the file contradicts, and the first missing/unexpected/mis-shaped keys."""
    problems = layout_problems(model, state_dict)
    if problems:
        cfg: ModelConfig | None = getattr(model, "model_config", None)
        expected = type(model).__name__
        hints: list[str] = []
        if cfg is not None:
            from .registry import describe

            expected = describe(cfg)
            hints = _contradictions(cfg, infer_model_fields(state_dict, cfg.patch_size))
        raise CheckpointError(f"{source}: does not fit {expected}: " + "; ".join(hints + problems))
    model.load_state_dict(state_dict, strict=True)


def load_checkpoint(model: nn.Module, path: str | Path) -> dict:
    """Read ``path`` (official ``.pth.tar`` or ours) and load its weights strictly into ``model``.

    Returns the raw checkpoint object (for epoch, optimizer state, ...)."""
    obj = read_checkpoint(path)
    load_state_dict_strict(model, unwrap_state_dict(obj, path), str(path))
    return obj if isinstance(obj, dict) else {}


def save_checkpoint(model: nn.Module, path: str | Path, **extra) -> None:
    """Write ``{'net': state_dict, 'net_type': 'MixFormer', **extra}`` (the official layout), streamed into a
    temporary file that replaces ``path`` once complete and fsynced (``atomic_open``).

    ``extra`` must hold only tensors, plain containers, numbers and strings: ``read_checkpoint`` reads nothing else."""
    save_state_dict(model.state_dict(), path, **extra)


def save_state_dict(state_dict: Mapping[str, torch.Tensor], path: str | Path, **extra) -> None:
    """``save_checkpoint`` for weights without their network (e.g. a state dict after ``remove_layers``)."""
    with atomic_open(path) as f:
        torch.save({"net": dict(state_dict), "net_type": "MixFormer", **extra}, f)


def remove_layers(state_dict: Mapping[str, torch.Tensor], layers: Iterable[int]) -> dict[str, torch.Tensor]:
    """Drop the blocks ``layers`` from a state dict and renumber the remaining ones 0, 1, ... in order.

    Every other key is kept unchanged. Raises ``ValueError`` for a layer index the state dict does not have.
    """
    removed = sorted(set(layers))
    present = sorted({int(m.group(2)) for k in state_dict if (m := _BLOCK_KEY.match(k))})
    unknown = [i for i in removed if i not in present]
    if unknown:
        raise ValueError(f"cannot remove layers {unknown}: the state dict has blocks {present}")
    new_index = {old: new for new, old in enumerate(i for i in present if i not in removed)}
    out = {}
    for key, value in state_dict.items():
        m = _BLOCK_KEY.match(key)
        if m is None:
            out[key] = value
        elif int(m.group(2)) in new_index:
            out[f"{m.group(1)}{new_index[int(m.group(2))]}{m.group(3)}"] = value
    return out


@dataclass
class InitReport:
    """What an initialisation from foreign weights did: keys loaded, skipped from the file (with reasons), and
    model keys left at their initial values."""

    loaded: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    not_initialised: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (f"loaded {len(self.loaded)} tensors; skipped {len(self.skipped)} from the file "
                f"({', '.join(list(self.skipped)[:6])}{' ...' if len(self.skipped) > 6 else ''}); "
                f"{len(self.not_initialised)} model tensors keep their initial values "
                f"({', '.join(self.not_initialised[:6])}{' ...' if len(self.not_initialised) > 6 else ''})")


def init_from_pretrained(model: nn.Module, path: str | Path, drop_layers: Iterable[int] = ()) -> InitReport:
    """Initialise ``model`` from MAE ViT weights (``'model'``, keys without ``backbone.``) or from a MixFormerV2
    checkpoint (``'net'``), optionally removing ``drop_layers`` first. Position embeddings are never taken from
    the file (they are fixed sin-cos); keys the model lacks or with another shape are skipped and reported."""
    obj = read_checkpoint(path)
    state = unwrap_state_dict(obj, path)
    if not any(k.startswith("backbone.") for k in state):  # MAE / timm ViT layout
        state = {f"backbone.{k}": v for k, v in state.items()}
    if drop_layers:
        state = remove_layers(state, drop_layers)
    own = model.state_dict()
    report = InitReport()
    usable = {}
    for key, value in state.items():
        if "pos_embed" in key and "pos_embed_reg" not in key or "mask_token" in key:
            report.skipped[key] = "fixed or unused position embedding"
        elif key not in own:
            report.skipped[key] = "not in the model"
        elif own[key].shape != value.shape:
            report.skipped[key] = f"shape {tuple(value.shape)} vs model {tuple(own[key].shape)}"
        else:
            usable[key] = value
            report.loaded.append(key)
    model.load_state_dict(usable, strict=False)
    report.not_initialised = [k for k in own if k not in usable and not k.endswith(("pos_embed_t", "pos_embed_s"))]
    logger.info("%s: %s", path, report.summary())
    return report
