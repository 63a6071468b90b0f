"""Removing faded layers from a saved MixFormerV2 (``tools/prune.py``), refusing layers that have not faded.

A stage-2 final model whose fade has not ended records ``fade_layers`` (block indices of that file) and
``remove_rate`` (their residual scale in the last epoch) next to ``'net'``; one pruned by the stage records
``removed_layers``. A training state of the trainer (``checkpoints/*``) holds the same information as the stage
config's ``train.remove_layers`` and the epoch of the fade. A block may be dropped only when it is in
``fade_layers`` and ``remove_rate`` is 0: it is then an identity, and dropping it changes no output. ``force``
drops any block (the outputs then change).
"""
from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..config import Config, ModelConfig
from ..models import build_model, read_checkpoint, remove_layers, unwrap_state_dict
from ..models.checkpoint import CheckpointError, load_state_dict_strict, save_state_dict
from .checkpointing import STATE_FORMAT
from .schedules import layer_fade

logger = logging.getLogger(__name__)


def pruned_model_config(model: ModelConfig, removed: Sequence[int]) -> ModelConfig:
    """The model config after removing the blocks ``removed`` (depth reduced by their number)."""
    return replace(model, depth=model.depth - len(set(removed)))


def pruned_config(cfg: Config, removed: Sequence[int]) -> Config:
    """The config of ``cfg``'s model without the blocks ``removed``: depth reduced, no ``train.remove_layers``, and
    ``train.distill_layers_student`` renumbered as the blocks are (a pair whose student block was removed is
    dropped, with its teacher block), so that the config stays valid for the shallower model."""
    removed = set(removed)
    t = cfg.train
    pairs = [(s - sum(r < s for r in removed), teacher)
             for s, teacher in zip(t.distill_layers_student, t.distill_layers_teacher) if s not in removed]
    train = replace(t, remove_layers=(), distill_layers_student=tuple(p[0] for p in pairs),
                    distill_layers_teacher=tuple(p[1] for p in pairs))
    return replace(cfg, model=pruned_model_config(cfg.model, tuple(removed)), train=train)


class PruneError(CheckpointError):
    """A layer cannot be pruned from a checkpoint (not faded, or not there); the message names the file."""


def fade_fields(obj: Any) -> dict[str, Any]:
    """``fade_layers`` / ``remove_rate`` of a read checkpoint: the fields of a final model, or, for a training
    state of the trainer, ``train.remove_layers`` of its config at the rate of the epoch the stage last started."""
    if not isinstance(obj, dict):
        return {}
    if obj.get("format") != STATE_FORMAT:
        return obj
    train = obj.get("config", {}).get("train", {})
    layers, epoch = list(train.get("remove_layers", ())), obj.get("stage", {}).get("fade_epoch", -1)
    rate = layer_fade(epoch, train["remove_epochs"]) if layers and epoch >= 0 else 1.0
    return {"fade_layers": layers, "remove_rate": rate}


def unfaded(meta: Mapping[str, Any], remove: Sequence[int]) -> list[int]:
    """The layers of ``remove`` that a checkpoint's fields (``fade_layers``, ``remove_rate``) do not show faded
    out to 0."""
    faded = set(meta.get("fade_layers", ())) if float(meta.get("remove_rate", 1.0)) == 0.0 else set()
    return [i for i in remove if i not in faded]


def prune_checkpoint(checkpoint: str | Path, remove: Sequence[int], out: str | Path, cfg: Config | None = None,
                     force: bool = False) -> dict[str, Any]:
    """Write ``checkpoint`` without the blocks ``remove`` (the others renumbered) to ``out``, official layout.

    With ``cfg`` (the config the checkpoint was trained with) the result must load strictly into its model with
    ``model.depth`` reduced by the removed blocks. Returns the fields written next to ``'net'``. Raises
    ``PruneError`` naming the file for a block that has not faded (unless ``force``) or does not exist.
    """
    remove = sorted(set(remove))
    obj = read_checkpoint(checkpoint)
    meta = fade_fields(obj)
    if isinstance(obj, dict) and obj.get("format") == STATE_FORMAT:
        obj = obj["stage"]["student"]  # a training state: the student's weights
    bad = unfaded(meta, remove)
    if bad and not force:
        rate = meta.get("remove_rate", "not recorded")
        raise PruneError(f"{checkpoint}: layer(s) {bad} have not faded out (fade_layers "
                         f"{list(meta.get('fade_layers', ()))}, remove_rate {rate}); dropping them changes the "
                         "outputs (--force to drop them anyway)")
    if bad:
        logger.warning("%s: dropping layer(s) %s that have not faded out (--force): the outputs change", checkpoint,
                       bad)
    try:
        state = remove_layers(unwrap_state_dict(obj, checkpoint), remove)
    except ValueError as err:
        raise PruneError(f"{checkpoint}: {err}") from None
    if cfg is not None:
        load_state_dict_strict(build_model(pruned_model_config(cfg.model, tuple(remove))), state,
                               f"{checkpoint} without layers {remove}")
    kept = [i for i in meta.get("fade_layers", ()) if i not in remove]
    renumber = {old: old - sum(r < old for r in remove) for old in kept}
    extra: dict[str, Any] = {"removed_layers": remove, "remove_rate": float(meta.get("remove_rate", 1.0)) if bad
                             else 0.0, "pruned_from": str(checkpoint)}
    if kept:
        extra["fade_layers"] = [renumber[i] for i in kept]
    save_state_dict(state, out, **extra)
    logger.info("%s: removed layers %s -> %s", checkpoint, remove, out)
    return extra
