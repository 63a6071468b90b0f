"""Dataset registry and dataset roots: ``get_dataset(name, root=None, split=None, **kw)`` is the one way to a reader.

Registered names (lowercase): see :func:`list_datasets`. Readers are imported lazily, so asking for one benchmark
never imports the others.

Roots resolve in this order (:func:`dataset_root`):
  1. an explicit override (command line; ``DataConfig.roots`` under the name, else its family key);
  2. the environment variable ``MIXFORMERV2_<NAME>_ROOT`` (e.g. ``MIXFORMERV2_LASOT_ROOT``);
  3. a paths file: a YAML mapping ``name: path``, at ``$MIXFORMERV2_PATHS`` or else ``./paths.yaml`` when it exists;
     relative paths in it are relative to the file's folder;
  4. the default ``data/<name>`` (relative to the working directory).
Names that share one download also try their family key at steps 2-4 after their own name: every ``got10k_*`` name
tries ``got10k`` (default ``data/got10k``), ``trackingnet_train`` tries ``trackingnet``, ``lasot_train`` tries
``lasot``. No Python file is generated or imported for paths.
"""
from __future__ import annotations

import importlib
import logging
import os
from pathlib import Path

import yaml

from mixformerv2.data.datasets.base import DatasetReader
from mixformerv2.data.names import DATASETS, dataset_names, family_keys, root_keys

logger = logging.getLogger(__name__)

PATHS_ENV = "MIXFORMERV2_PATHS"
DEFAULT_PATHS_FILE = "paths.yaml"


def list_datasets() -> list[str]:
    """The registered dataset names, sorted."""
    return dataset_names()


def get_dataset(name: str, root: str | Path | None = None, split: str | None = None, **kwargs) -> DatasetReader:
    """Build the reader of dataset ``name`` at ``dataset_root(name, root)``.

    ``split`` selects the split of readers that have several (``lasot``: test/train, ``tnl2k``: test/train,
    ``coco``: train/val); names that fix a split (``got10k_val``, ``trackingnet_train``, ...) accept only that split.
    Other keyword arguments go to the reader (``chunks=[0, 1]`` for ``trackingnet_train``). An unknown name raises
    ValueError listing the known names.
    """
    key = name.lower()
    if key not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(list_datasets())}")
    module_name, class_name, fixed, _ = DATASETS[key]
    arguments = dict(fixed)
    if split is not None:
        if "split" in fixed and fixed["split"] != split:
            raise ValueError(f"dataset {key!r} is the {fixed['split']!r} split; it cannot be read as split {split!r}")
        arguments["split"] = split
    arguments.update(kwargs)
    reader_class = getattr(importlib.import_module(f"mixformerv2.data.datasets.{module_name}"), class_name)
    return reader_class(dataset_root(key, root), **arguments)


def dataset_root(name: str, override: str | Path | None = None) -> Path:
    """The root folder of dataset ``name`` (see the module docstring for the order). Nothing is checked on disk
    except the paths file itself; a reader raises when the root does not exist."""
    if override not in (None, ""):
        return Path(override).expanduser()
    keys = root_keys(name)
    for candidate in keys:
        value = os.environ.get(f"MIXFORMERV2_{candidate.upper()}_ROOT")
        if value:
            return Path(value).expanduser()
    paths = _read_paths_file()
    if paths is not None:
        mapping, folder = paths
        for candidate in keys:
            if candidate in mapping:
                path = Path(mapping[candidate]).expanduser()
                return path if path.is_absolute() else folder / path
    return Path("data") / keys[-1]


def _read_paths_file() -> tuple[dict[str, str], Path] | None:
    """The paths file as (mapping name -> path, folder of the file), or None when there is none."""
    explicit = os.environ.get(PATHS_ENV)
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"{path}: paths file named by ${PATHS_ENV} does not exist")
    else:
        path = Path(DEFAULT_PATHS_FILE)
        if not path.is_file():
            return None
    try:
        mapping = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ValueError(f"{path}: not valid YAML ({error})") from None
    if mapping is None:
        mapping = {}
    if not isinstance(mapping, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()):
        raise ValueError(f"{path}: a paths file is a YAML mapping of dataset name to root folder (strings)")
    unknown = [k for k in mapping if k.lower() not in DATASETS and k.lower() not in family_keys()]
    if unknown:
        raise ValueError(f"{path}: unknown dataset names {unknown}; known: {', '.join(list_datasets())}")
    return {k.lower(): v for k, v in mapping.items()}, path.resolve().parent
