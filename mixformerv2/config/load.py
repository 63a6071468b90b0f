"""YAML -> ``Config``: ``_base_`` inheritance, dotted command-line overrides, strict keys and types.

A YAML file holds any subset of the schema; ``_base_: other.yaml`` (relative to the file) is loaded first and
then updated key by key. Unknown keys and values of the wrong type raise ``ConfigError`` naming the file and the
dotted key.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Iterable

import yaml

from .schema import Config


class ConfigError(ValueError):
    """A configuration problem; the message names the file and the dotted key."""


def _read_yaml(path: Path, chain: tuple[Path, ...] = ()) -> dict:
    """Read a YAML file and merge it over its ``_base_`` chain (raw dicts, not yet typed)."""
    path = path.resolve()
    if path in chain:
        raise ConfigError(f"{path}: _base_ cycle through {' -> '.join(str(p) for p in chain)}")
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({err})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    base = raw.pop("_base_", None)
    if base is None:
        return {"__file__": str(path), **raw}
    merged = _read_yaml(path.parent / base, chain + (path,))
    _deep_update(merged, raw)
    merged["__file__"] = str(path)
    return merged


def _deep_update(into: dict, new: dict) -> None:
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _deep_update(into[key], value)
        else:
            into[key] = value


def _convert(value: Any, annotation: Any, key: str, source: str) -> Any:
    """Check ``value`` against a type annotation and convert it (int or numeric string -> float; nothing else)."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(value, inner[0], key, source)
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: {key}: expected a mapping, got {value!r}")
        return _build(annotation, value, key, source)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{source}: {key}: expected a list, got {value!r}")
        return [_convert(v, args[0], f"{key}[{i}]", source) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: {key}: expected a mapping, got {value!r}")
        return {str(k): _convert(v, args[1], f"{key}.{k}", source) for k, v in value.items()}
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if annotation is float and isinstance(value, str):  # YAML 1.1 reads "1e-4" (no dot) as a string
        try:
            return float(value)
        except ValueError:
            pass
    if annotation in (int, float, str, bool) and (type(value) is not annotation):
        raise ConfigError(f"{source}: {key}: expected {annotation.__name__}, got {value!r}")
    return value


def _build(cls, values: dict, prefix: str, source: str, base=None):
    """Instantiate dataclass ``cls`` from ``values`` (updating ``base`` if given), rejecting unknown keys."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    obj = base if base is not None else cls()
    for key, value in values.items():
        dotted = f"{prefix}.{key}" if prefix else key
        if key not in names:
            raise ConfigError(f"{source}: {dotted}: unknown key (known: {', '.join(sorted(names))})")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(hints[key]) and isinstance(value, dict):
            _build(hints[key], value, dotted, source, base=current)
        else:
            setattr(obj, key, _convert(value, hints[key], dotted, source))
    return obj


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"model.depth=4"`` -> (["model", "depth"], 4); the value is parsed as YAML (numbers, lists, booleans)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected KEY=VALUE")
    key, raw = text.split("=", 1)
    return key.strip().split("."), yaml.safe_load(raw)


def load_config(path: str | Path | None = None, overrides: Iterable[str] = ()) -> Config:
    """Load a YAML config (or the defaults when ``path`` is None) and apply ``KEY=VALUE`` overrides."""
    cfg = Config()
    if path is not None:
        raw = _read_yaml(Path(path))
        source = raw.pop("__file__")
        _build(Config, raw, "", source, base=cfg)
    for text in overrides:
        keys, value = parse_override(text)
        nested: dict = value
        for k in reversed(keys):
            nested = {k: nested}
        _build(Config, nested, "", f"--set {text}", base=cfg)
    return cfg


def config_to_dict(cfg: Config) -> dict:
    return dataclasses.asdict(cfg)


def dump_config(cfg: Config, path: str | Path | None = None) -> str:
    """The full resolved config as YAML; written (atomically) to ``path`` when given."""
    text = yaml.safe_dump(config_to_dict(cfg), sort_keys=False)
    if path is not None:
        from ..utils.io import atomic_write_text

        atomic_write_text(path, text)
    return text
