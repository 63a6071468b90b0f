"""YAML -> ``Config``: ``_base_`` inheritance, dotted command-line overrides, strict keys, types and rules.

A YAML file holds any subset of the schema; ``_base_: other.yaml`` (relative to the file) is loaded first. Then
the file, and after it each ``--set KEY=VALUE`` override in order, is merged over the result key by key:

* a section or a mapping field (``test.datasets``, ``data.roots``) MERGES: ``--set
  test.datasets.got10k_test.search_factor=4.8`` changes that one value and keeps GOT-10k's update interval and
  every other benchmark's entry; a mapping entry set to ``null`` is removed (``--set test.datasets.lasot=null``);
* any other value (numbers, strings, lists) replaces the previous one.

Unknown keys, values of the wrong type and broken rules (``config/validate.py``) raise ``ConfigError`` naming the
file or override and the dotted key; a rule that ties several keys together names the source that set one of them
last. The result is a frozen ``Config``.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Collection, Iterable, Mapping

import yaml

from .errors import ConfigError
from .schema import STAGES, Config, FrozenDict
from .validate import config_problems

DEFAULTS_SOURCE = "defaults"

# dotted key -> the file or override that set it last; insertion order is the order of setting
Origins = dict[str, str]


def _read_yaml(path: Path) -> dict:
    """One YAML file as a dict (``_base_`` not yet resolved)."""
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({err})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    return raw


def _apply_file(cfg: Config, path: Path, origins: Origins, chain: tuple[Path, ...] = ()) -> Config:
    """Merge the file at ``path`` (after its ``_base_`` chain) over ``cfg``."""
    path = path.resolve()
    if path in chain:
        raise ConfigError(f"{path}: _base_ cycle through {' -> '.join(str(p) for p in chain)}")
    raw = _read_yaml(path)
    base = raw.pop("_base_", None)
    if base is not None:
        if not isinstance(base, str):
            raise ConfigError(f"{path}: _base_: expected a file name, got {base!r}")
        cfg = _apply_file(cfg, path.parent / base, origins, chain + (path,))
    return _merge(Config, cfg, raw, "", str(path), origins)


def _set_origin(origins: Origins, key: str, source: str) -> None:
    origins.pop(key, None)
    origins[key] = source


def _convert(value: Any, annotation: Any, key: str, source: str) -> Any:
    """Check a leaf ``value`` against a type annotation and convert it (int or numeric string -> float, list ->
    tuple; nothing else)."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(value, inner[0], key, source)
    if dataclasses.is_dataclass(annotation) or origin is dict:
        raise ConfigError(f"{source}: {key}: expected a mapping, got {value!r}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{source}: {key}: expected a list, got {value!r}")
        return tuple(_convert(v, args[0], f"{key}[{i}]", source) for i, v in enumerate(value))
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


def _merge(cls, current, values: Mapping, prefix: str, source: str, origins: Origins):
    """A copy of dataclass instance ``current`` with ``values`` merged in (sections and mappings merge, leaves are
    replaced), rejecting unknown keys."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    changes = {}
    for key, value in values.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if key not in names:
            raise ConfigError(f"{source}: {dotted}: unknown key (known: {', '.join(sorted(names))})")
        hint, old = hints[key], getattr(current, key)
        if dataclasses.is_dataclass(hint) and isinstance(value, dict):
            changes[key] = _merge(hint, old, value, dotted, source, origins)
        elif typing.get_origin(hint) is dict and isinstance(value, dict):
            changes[key] = _merge_mapping(typing.get_args(hint)[1], old, value, dotted, source, origins)
        else:
            changes[key] = _convert(value, hint, dotted, source)
            _set_origin(origins, dotted, source)
    return dataclasses.replace(current, **changes)


def _merge_mapping(value_type, current: Mapping, values: Mapping, prefix: str, source: str,
                   origins: Origins) -> FrozenDict:
    """``current`` (name -> value) with ``values`` merged in: entries that are dataclasses merge field by field,
    other entries are replaced, ``None`` removes an entry."""
    merged = dict(current)
    for name, value in values.items():
        name = str(name)
        dotted = f"{prefix}.{name}"
        if value is None:
            merged.pop(name, None)
            _set_origin(origins, dotted, source)
        elif dataclasses.is_dataclass(value_type) and isinstance(value, dict):
            merged[name] = _merge(value_type, merged.get(name, value_type()), value, dotted, source, origins)
        else:
            merged[name] = _convert(value, value_type, dotted, source)
            _set_origin(origins, dotted, source)
    return FrozenDict(merged)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"model.depth=4"`` -> (["model", "depth"], 4); the value is parsed as YAML (numbers, lists, booleans)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected KEY=VALUE")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as err:
        raise ConfigError(f"--set {text}: the value is not valid YAML ({err})") from None
    return key.strip().split("."), value


def apply_overrides(cfg: Config, overrides: Iterable[str], origins: Origins | None = None) -> Config:
    """``cfg`` with ``KEY=VALUE`` overrides merged in order (see the module docstring), not yet validated."""
    origins = {} if origins is None else origins
    for text in overrides:
        keys, value = parse_override(text)
        nested: Any = value
        for k in reversed(keys):
            nested = {k: nested}
        cfg = _merge(Config, cfg, nested, "", f"--set {text}", origins)
    return cfg


def _blame(origins: Origins, keys: Iterable[str], fallback: str) -> str:
    """The source that set any of ``keys`` (or a key inside or above one of them) last; ``fallback`` if none did."""
    order = list(origins)
    best = -1
    for key in keys:
        for i, origin in enumerate(order):
            if origin == key or origin.startswith((key + ".", key + "[")) or key.startswith((origin + ".",
                                                                                             origin + "[")):
                best = max(best, i)
    return origins[order[best]] if best >= 0 else fallback


def _check(cfg: Config, origins: Origins, fallback: str, stages: Collection[str]) -> None:
    problems = config_problems(cfg, stages)
    if problems:
        first = problems[0]
        source = _blame(origins, (first.key, *first.related), fallback)
        raise ConfigError(f"{source}: {first.key}: {first.message}")


#: The released-model configs, shipped inside the package (``mixformerv2/configs/`` in a wheel, built from the
#: repository's ``configs/``, the files people edit) and selectable by name: ``--config mixformerv2_s``.
RELEASED_CONFIGS = ("mixformerv2_b", "mixformerv2_s", "mixvit_b_teacher")


def released_config_dir() -> Path | None:
    """Where the released configs are: ``<package>/configs`` when installed, ``<checkout>/configs`` when the
    package runs from a source checkout; None when neither exists."""
    package = Path(__file__).resolve().parents[1]
    installed = package / "configs"
    if installed.is_dir():
        return installed
    checkout = package.parent
    return checkout / "configs" if (checkout / "pyproject.toml").is_file() else None


def resolve_config_path(path: str | Path) -> Path:
    """A config file path, or the file of a released config named without a folder or suffix (``mixformerv2_s``);
    a name that is neither an existing file nor a released config raises ``ConfigError`` listing the names."""
    path = Path(path)
    if path.is_file() or path.suffix or len(path.parts) != 1:
        return path
    folder = released_config_dir()
    if str(path) in RELEASED_CONFIGS and folder is not None and (folder / f"{path}.yaml").is_file():
        return folder / f"{path}.yaml"
    raise ConfigError(f"{path}: no such config file, nor a released config name (known: "
                      f"{', '.join(RELEASED_CONFIGS)})")


def load_config(path: str | Path | None = None, overrides: Iterable[str] = (),
                stages: Collection[str] = STAGES) -> Config:
    """Load a YAML config (or the defaults when ``path`` is None), merge ``KEY=VALUE`` overrides and validate.
    ``path`` may also name a released config (``mixformerv2_b``, see ``resolve_config_path``).

    ``stages``: the names ``train.stage`` may take (default: the package's ``STAGES``; the training tool passes
    the registered stages). Returns a frozen ``Config``; raises ``ConfigError`` naming the file or override and
    the dotted key.
    """
    origins: Origins = {}
    cfg = Config()
    if path is not None:
        cfg = _apply_file(cfg, resolve_config_path(path), origins)
    cfg = apply_overrides(cfg, overrides, origins)
    _check(cfg, origins, str(path) if path is not None else DEFAULTS_SOURCE, stages)
    return cfg


def config_to_dict(cfg: Any) -> Any:
    """A config (or any part of it) as plain dicts, lists and scalars: what YAML and JSON files hold."""
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        return {f.name: config_to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, Mapping):
        return {k: config_to_dict(v) for k, v in cfg.items()}
    if isinstance(cfg, (list, tuple)):
        return [config_to_dict(v) for v in cfg]
    return cfg


def dump_config(cfg: Config) -> str:
    """The full resolved config as YAML text; ``load_config`` of a file holding it gives back an equal ``Config``.

    (Write it with ``mixformerv2.utils.io.atomic_write_text``: ``config`` imports nothing else from the package.)
    """
    return yaml.safe_dump(config_to_dict(cfg), sort_keys=False)


def shadowed_overrides(cfg: Config, overrides: Iterable[str], dataset: str | None) -> list[str]:
    """Messages for the ``--set test.KEY=...`` overrides that have no effect on benchmark ``dataset`` because its
    ``test.datasets`` entry sets KEY (the entry wins; see ``TestConfig``)."""
    own = cfg.test.dataset_overrides(dataset)
    messages = []
    for text in overrides:
        keys, _ = parse_override(text)
        if len(keys) == 2 and keys[0] == "test" and keys[1] in own:
            messages.append(f"--set {text} has no effect on {dataset}: test.datasets.{dataset.lower()}.{keys[1]}="
                            f"{own[keys[1]]} wins (set test.datasets.{dataset.lower()}.{keys[1]} instead)")
    return messages
