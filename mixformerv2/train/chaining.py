"""Stage chaining: the model a stage ends with, the model a checkpoint holds, and whether one can start the other.

A stage that continues a trained MixFormerV2 (``deep_to_shallow``, ``score``) loads ``train.init_checkpoint``
strictly. Before that, ``init_mismatches`` compares the model the file holds (``checkpoint_model_config``: its
tensors, plus the config stored in the file for what tensors do not show) with the stage config's ``model``
section, key by key (architecture, width, depth after ``train.init_drop_layers``, MLP width, input sizes, bins,
score head, heads, patch size, normalisation). A key listed in ``train.init_adapt`` may differ: ``adapt_state_dict``
then transforms the weights (``models/surgery.py``). Any other difference stops the stage with one ``ChainError``
line naming the key and both files, e.g.
``model.depth: configs/paper/b_stage2b.yaml says 8 but runs/paper/b_stage1/model_final.pth.tar has 12 blocks``.

The pipeline checks the same thing without any file: ``stage_output_model(cfg)`` is the model a stage config ends
with (depth reduced when its fade completes), and ``init_problems(next_cfg, that model, ...)`` must be empty.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
import yaml

from ..config import Config, ConfigError, ModelConfig
from ..models import build_model
from ..models.checkpoint import infer_model_fields, layout_problems
from ..models.registry import describe
from ..models.surgery import resample_pos_embeds, truncate_mlp
from .pruning import pruned_model_config
from .schedules import layer_fade

logger = logging.getLogger(__name__)

STAGE_CONFIG = "the stage config"  # how a message names the config file when the caller did not say which


def model_layout(model_cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Parameter and buffer names -> shapes of the network ``model_cfg`` describes (built on the meta device: no
    memory, no time, also for ViT-B)."""
    with torch.device("meta"):
        model = build_model(model_cfg)
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}


def fade_completes(cfg: Config) -> bool:
    """Whether a ``deep_to_shallow`` stage's fade reaches rate 0 within ``train.epochs`` (then the stage removes
    ``train.remove_layers`` from its final model)."""
    t = cfg.train
    return (cfg.train.stage == "deep_to_shallow" and bool(t.remove_layers)
            and layer_fade(t.epochs - 1, t.remove_epochs) == 0.0)


def stage_output_model(cfg: Config) -> ModelConfig:
    """The model config of a stage's ``model_final.pth.tar``: ``cfg.model``, with the depth reduced by
    ``train.remove_layers`` when the stage is a deep-to-shallow fade that completes (``fade_completes``)."""
    if fade_completes(cfg):
        return pruned_model_config(cfg.model, cfg.train.remove_layers)
    return cfg.model


def _stored_model(obj: Any) -> ModelConfig | None:
    """The ``model`` section of the config a final model file stores (the trainer writes it as YAML), if any."""
    text = obj.get("config") if isinstance(obj, Mapping) else None
    if not isinstance(text, str):
        return None
    try:
        model = (yaml.safe_load(text) or {}).get("model")
        return ModelConfig(**model) if isinstance(model, dict) else None
    except (yaml.YAMLError, TypeError, AttributeError):
        logger.warning("the config stored in the checkpoint is unreadable; the model is inferred from its tensors")
        return None


def checkpoint_model_config(obj: Any, state_dict: Mapping[str, torch.Tensor], fallback: ModelConfig) -> ModelConfig:
    """The model a checkpoint holds: the architecture its tensors show (name, width, depth, MLP width, input sizes,
    bins, score head; ``infer_model_fields``) over the config stored in the file, or over ``fallback`` for what
    neither tensors nor file say (heads, patch size, normalisation)."""
    base = _stored_model(obj) or fallback
    inferred = infer_model_fields(state_dict, base.patch_size)
    known = {f.name for f in fields(ModelConfig)}
    return replace(base, **{k: v for k, v in inferred.items() if k in known})


def _hidden(m: ModelConfig) -> int:
    return int(m.embed_dim * m.mlp_ratio)


def _px(m: ModelConfig, key: str) -> str:
    size = getattr(m, key)
    return f"{size} px ({size // m.patch_size}x{size // m.patch_size} position grid)"


# model key -> (what a config says, what a checkpoint of that model has), both as text
_DESCRIBE = {
    "name": (lambda m: m.name, lambda m: f"a {m.name} network"),
    "embed_dim": (lambda m: str(m.embed_dim), lambda m: f"width {m.embed_dim}"),
    "mlp_ratio": (lambda m: f"{m.mlp_ratio} ({_hidden(m)} hidden units)",
                  lambda m: f"MLP ratio {m.mlp_ratio} ({_hidden(m)} hidden units)"),
    "template_size": (lambda m: _px(m, "template_size"), lambda m: _px(m, "template_size")),
    "search_size": (lambda m: _px(m, "search_size"), lambda m: _px(m, "search_size")),
    "num_bins": (lambda m: str(m.num_bins), lambda m: f"{m.num_bins} bins"),
    "score_head": (lambda m: str(m.score_head).lower(), lambda m: "a score head" if m.score_head else "no score head"),
}
_COMPARED = ("name", "embed_dim", "depth", "mlp_ratio", "template_size", "search_size", "num_bins", "score_head",
             "head_type", "num_heads", "patch_size", "image_mean", "image_std")


@dataclass(frozen=True)
class Mismatch:
    """One key on which a config and a checkpoint disagree: ``key`` (dotted, or ``layout``), what the config
    ``says`` and what the checkpoint ``has`` (short text)."""

    key: str
    says: str
    has: str

    def render(self, config_file: str | Path, checkpoint_file: str | Path) -> str:
        return f"{self.key}: {config_file} says {self.says} but {checkpoint_file} has {self.has}"


def _differs(key: str, target: ModelConfig, source: ModelConfig) -> bool:
    if key == "mlp_ratio":
        return _hidden(target) != _hidden(source)
    return getattr(target, key) != getattr(source, key)


def init_mismatches(target: Config, source: ModelConfig) -> list[Mismatch]:
    """The keys on which a checkpoint of model ``source`` cannot start stage ``target``: those its ``model`` section
    sets otherwise and ``train.init_adapt`` does not declare. The checkpoint's depth is compared after
    ``train.init_drop_layers``; a checkpoint without a score head may start a ``score`` stage."""
    t, m = target.train, target.model
    mismatches = []
    for key in _COMPARED:
        if key == "depth":
            wanted = m.depth + len(set(t.init_drop_layers))
            if wanted != source.depth:
                says = f"{m.depth}" + (f" ({wanted} before train.init_drop_layers)" if t.init_drop_layers else "")
                mismatches.append(Mismatch("model.depth", says, f"{source.depth} blocks"))
            continue
        if key in t.init_adapt or not _differs(key, m, source):
            continue
        if key == "score_head" and m.score_head and t.stage == "score":
            continue  # the score stage adds the head
        says, has = _DESCRIBE.get(key, (lambda c, k=key: repr(getattr(c, k)),) * 2)
        mismatches.append(Mismatch(f"model.{key}", says(m), has(source)))
    return mismatches


def init_problems(target: Config, source: ModelConfig, source_file: str | Path,
                  config_file: str | Path = STAGE_CONFIG) -> list[str]:
    """Why a checkpoint ``source_file`` of model ``source`` cannot start the stage ``config_file`` describes
    (``target``): one line per key, naming both files (see ``init_mismatches``); empty when it can."""
    return [m.render(config_file, source_file) for m in init_mismatches(target, source)]


class ChainError(ConfigError):
    """A checkpoint that cannot start a stage; the one-line message names the key, the config and the checkpoint.
    ``for_config(path)`` names the config file where the raiser knew only the config object."""

    def __init__(self, mismatches: Sequence[Mismatch], checkpoint_file: str | Path,
                 config_file: str | Path = STAGE_CONFIG):
        self.mismatches, self.checkpoint_file, self.config_file = list(mismatches), checkpoint_file, config_file
        first = self.mismatches[0].render(config_file, checkpoint_file)
        others = [m.key for m in self.mismatches[1:]]
        super().__init__(first + (f" (also {', '.join(others)})" if others else ""))

    def for_config(self, config_file: str | Path) -> "ChainError":
        return type(self)(self.mismatches, self.checkpoint_file, config_file)


def adapt_state_dict(state_dict: Mapping[str, torch.Tensor], source: ModelConfig, target: ModelConfig,
                     keys: Sequence[str]) -> dict[str, torch.Tensor]:
    """Weights of model ``source`` transformed to fit ``target`` on the model ``keys`` (``INIT_ADAPT_KEYS``) where
    the two differ: ``mlp_ratio`` keeps the ``truncate_mlp`` subset of hidden units (only fewer units: a wider MLP
    has no trained weights to start from), ``template_size`` / ``search_size`` resample the position embeddings
    (``resample_pos_embeds``). Raises ``ValueError`` for a transform that cannot be done."""
    state = dict(state_dict)
    if "mlp_ratio" in keys and _hidden(source) != _hidden(target):
        if _hidden(target) > _hidden(source):
            raise ValueError(f"model.mlp_ratio: {target.mlp_ratio} needs {_hidden(target)} hidden units, the "
                             f"checkpoint has {_hidden(source)}; init_adapt can only remove units")
        state, kept = truncate_mlp(state, _hidden(target))
        logger.info("MLP hidden units %d -> %d in %d blocks (largest ||fc1 row|| x ||fc2 column|| kept)",
                    _hidden(source), _hidden(target), len(kept))
    grids = {key: getattr(target, key) // target.patch_size for key in ("template_size", "search_size")
             if key in keys and getattr(source, key) != getattr(target, key)}
    if grids:
        state = resample_pos_embeds(state, grids)
        logger.info("position embeddings resampled to %s", ", ".join(f"{k} {getattr(target, k)} px" for k in grids))
    return state


def layout_mismatch(model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor]) -> Mismatch | None:
    """A ``layout`` mismatch when ``state_dict`` does not load strictly into ``model`` (its config's network)."""
    problems = layout_problems(model, state_dict, limit=3)
    if not problems:
        return None
    return Mismatch("layout", describe(model.model_config), f"other tensors ({'; '.join(problems)})")
