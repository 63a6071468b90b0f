"""COCO 2017 detection annotations as single-frame tracking sequences (one per non-crowd object), for training.

Layout: ``<root>/annotations/instances_<split><version>.json`` and the images in ``<root>/<split><version>/`` (or
``<root>/images/<split><version>/``). The JSON is read with :mod:`json` (no pycocotools). Each annotation with
``iscrowd == 0`` becomes a sequence named by its annotation id, in file order: one frame, ``gt_xywh`` (1, 4) =
COCO's ``bbox`` (0-based, continuous pixels), ``object_class`` = the category name. ``visible`` follows MixFormerV2's
COCO reader: w > 50 and h > 50 (its sampler ignores visibility for image datasets). ``meta``: ``image_id``,
``category_id``.
"""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np

from mixformerv2.data.datasets.annotations import AnnotationError
from mixformerv2.data.datasets.base import DatasetReader
from mixformerv2.data.sequence import Sequence

logger = logging.getLogger(__name__)

MIN_VISIBLE_SIZE = 50.0


class COCO(DatasetReader):
    """COCO ``split`` (``"train"``, ``"val"``) of ``version`` ``"2017"`` (reader name ``coco``)."""

    def __init__(self, root: str | Path, split: str = "train", version: str = "2017"):
        root = Path(root)
        self.name = "coco" if (split, version) == ("train", "2017") else f"coco_{split}{version}"
        self.split = split
        self.annotation_path = root / "annotations" / f"instances_{split}{version}.json"
        self.image_dir = root / f"{split}{version}"
        if not self.image_dir.is_dir() and (root / "images" / f"{split}{version}").is_dir():
            self.image_dir = root / "images" / f"{split}{version}"
        try:
            with open(self.annotation_path, encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError:
            raise FileNotFoundError(f"{self.annotation_path}: COCO annotation file is missing") from None
        except json.JSONDecodeError as error:
            raise ValueError(f"{self.annotation_path}: not valid JSON ({error})") from None
        try:
            files = {image["id"]: image["file_name"] for image in data["images"]}
            categories = {category["id"]: category["name"] for category in data["categories"]}
            annotations = [a for a in data["annotations"] if not a.get("iscrowd", 0)]
        except (KeyError, TypeError) as error:
            raise ValueError(f"{self.annotation_path}: not a COCO instances file (missing {error})") from None
        self._objects = {}
        for annotation in annotations:
            name = str(annotation["id"])
            image_id = annotation["image_id"]
            if image_id not in files:
                raise ValueError(f"{self.annotation_path}: annotation {name} refers to unknown image {image_id}")
            self._objects[name] = (files[image_id], annotation["bbox"], categories.get(annotation["category_id"]),
                                   image_id, annotation["category_id"])
        logger.info("%s: %d non-crowd objects", self.annotation_path, len(self._objects))
        super().__init__(root, list(self._objects))

    def _load(self, sequence_name: str) -> Sequence:
        file_name, bbox, category, image_id, category_id = self._objects[sequence_name]
        box = _checked_bbox(self.annotation_path, sequence_name, bbox)
        return Sequence(name=sequence_name, dataset=self.name, frame_paths=(self.image_dir / file_name,),
                        gt_xywh=box[None, :],
                        visible=np.array([box[2] > MIN_VISIBLE_SIZE and box[3] > MIN_VISIBLE_SIZE]),
                        object_class=category, meta={"image_id": image_id, "category_id": category_id})


def _checked_bbox(path: Path, annotation_id: str, bbox) -> np.ndarray:
    """A COCO ``bbox`` as a (4,) float64 array; anything but 4 finite numbers with w, h >= 0 raises naming the
    annotation."""
    try:
        values = [float(v) for v in bbox]
    except (TypeError, ValueError):
        values = []
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise AnnotationError(path, f"annotation {annotation_id}: bbox {bbox!r} is not 4 finite numbers")
    if values[2] < 0 or values[3] < 0:
        raise AnnotationError(path, f"annotation {annotation_id}: bbox {bbox!r} has a negative size")
    return np.array(values, dtype=np.float64)
