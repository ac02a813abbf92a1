"""LVIS-92i (Matcher's annotation pickles): 10 folds of 92 classes, 2300 test episodes per fold.

Layout under the data root (Matcher's / SANSA's)::

    LVIS/
      coco/train2017/*.jpg, coco/val2017/*.jpg    COCO 2017 images (cocodataset.org)
      lvis_train.pkl, lvis_val.pkl                {class id: {"<train2017|val2017>/<file>.jpg":
                                                   {"annotations": [{"segmentation": polygons | RLE}, ...]}}}

The pickles are Matcher's ``lvis.zip`` (linked from SANSA's ``docs/data.md``). The mask of a
class in an image is the union of its instances.

Fold rule, exactly the authors' (``datasets/lvis.py``): take the ``val`` pickle's classes **in
the pickle's key order** (not sorted) that have more than ``K`` images; the fold is every 10th of
them starting at ``F`` (``len // 10`` classes). So the folds depend on the shot count: 1-shot and
5-shot folds are different partitions. Test episodes cycle over the fold's classes in that order;
the query is an image of the class uniformly, the supports drawn with replacement among its other
images. Training uses the ``train`` pickle's classes (key order) with more than ``K`` images that
are not in the fold.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from sansa.data.common import (
    Layout,
    Split,
    as_split,
    decode_segmentation,
    dict_of,
    list_of,
    load_rgb,
    read_pickle,
    require,
    union,
)
from sansa.data.episode import Sampling

FOLDS = 10
HINT = "LVIS-92i: COCO 2017 images + Matcher's lvis_*.pkl, see README, Benchmarks"


ANNOTATIONS = Layout(
    "a dict of class id -> {image path: {'annotations': [{'segmentation': ...}, ...]}}",
    dict_of(
        dict_of(
            lambda entry: (
                isinstance(entry, dict)
                and list_of(lambda a: isinstance(a, dict) and "segmentation" in a)(entry.get("annotations"))
            )
        )
    ),
)


def fold_members(class_images: dict[int, Any], fold: int, shots: int, folds: int = FOLDS) -> list[int]:
    """Every ``folds``-th class with more than ``shots`` images, from ``fold``, in the dict's key order."""
    ids = [c for c, images in class_images.items() if len(images) > shots]
    return [ids[fold + folds * v] for v in range(len(ids) // folds)]


class Lvis92i:
    """LVIS-92i, one fold and split. Keys are paths relative to ``LVIS/coco/``."""

    sampling = Sampling.CYCLE_CLASSES
    episodes = 2300
    image_size = 640

    def __init__(self, root: str | Path, fold: int, split: Split | str = Split.TEST, shots: int = 1) -> None:
        self.base: Path = require(Path(root) / "LVIS", HINT)
        self.split: Split = as_split(split)
        val = read_pickle(self.base / "lvis_val.pkl", HINT, ANNOTATIONS)
        members = fold_members(val, fold, shots)
        if self.split is Split.TRAIN:
            self._anno = read_pickle(self.base / "lvis_train.pkl", HINT, ANNOTATIONS)
            self._classes = [c for c in self._anno if len(self._anno[c]) > shots and c not in set(members)]
        else:
            self._anno, self._classes = val, members
        self.name: str = f"lvis92i-fold{fold}-{self.split.value}"

    def class_ids(self) -> list[int]:
        return list(self._classes)

    def class_name(self, class_id: int) -> str:
        return f"lvis-{class_id}"

    def images_of(self, class_id: int) -> list[str]:
        return list(self._anno[class_id])

    def load(self, key: str, class_id: int) -> tuple[np.ndarray, np.ndarray]:
        image = load_rgb(self.base / "coco" / key)
        height, width = image.shape[:2]
        annotations = self._anno[class_id][key]["annotations"]
        masks = [decode_segmentation(a["segmentation"], height, width) for a in annotations]
        return image, union(masks, height, width)
