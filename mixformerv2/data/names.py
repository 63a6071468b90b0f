"""The registered dataset names: a pure-data table that imports nothing from the package.

``data/registry.py`` builds readers from it and ``config/`` checks benchmark names against it (config may import
this module and nothing else from ``data``).
"""
from __future__ import annotations

# name -> (module in mixformerv2.data.datasets, reader class, fixed keyword arguments, family root key). Names that
# share one download name a family key (every ``got10k_*`` split shares the ``got10k`` root).
DATASETS: dict[str, tuple[str, str, dict, str | None]] = {
    "lasot": ("lasot", "LaSOT", {}, None),
    "lasot_train": ("lasot", "LaSOT", {"split": "train"}, "lasot"),
    "lasot_ext": ("lasot", "LaSOTExt", {}, None),
    "tnl2k": ("tnl2k", "TNL2k", {}, None),
    "got10k_train": ("got10k", "GOT10k", {"split": "train"}, "got10k"),
    "got10k_vottrain": ("got10k", "GOT10k", {"split": "vottrain"}, "got10k"),
    "got10k_votval": ("got10k", "GOT10k", {"split": "votval"}, "got10k"),
    "got10k_train_full": ("got10k", "GOT10k", {"split": "train_full"}, "got10k"),
    "got10k_ltrval": ("got10k", "GOT10k", {"split": "ltrval"}, "got10k"),
    "got10k_val": ("got10k", "GOT10k", {"split": "val"}, "got10k"),
    "got10k_test": ("got10k", "GOT10k", {"split": "test"}, "got10k"),
    "trackingnet_train": ("trackingnet", "TrackingNet", {"split": "train"}, "trackingnet"),
    "trackingnet": ("trackingnet", "TrackingNet", {"split": "test"}, None),
    "uav123": ("uav", "UAV123", {}, None),
    "otb100": ("otb", "OTB100", {}, None),
    "nfs": ("nfs", "NfS", {}, None),
    "coco": ("coco", "COCO", {}, None),
}


def dataset_names() -> list[str]:
    """The registered dataset names, sorted."""
    return sorted(DATASETS)


def family_keys() -> list[str]:
    """Root keys shared by several names (``got10k``, ``lasot``, ``trackingnet``), sorted."""
    return sorted({entry[3] for entry in DATASETS.values() if entry[3]})


def root_keys(name: str) -> list[str]:
    """The keys a root for ``name`` is looked up under, most specific first: ``["got10k_val", "got10k"]``."""
    key = name.lower()
    family = DATASETS[key][3] if key in DATASETS else None
    return [key, family] if family else [key]
