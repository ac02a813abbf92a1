"""LVIS-92i (Matcher's annotation pickles): 10 folds of 92 classes, 2300 test episodes per fold.

Layout under the data root (Matcher's / SANSA's)::

    LVIS/
      coco/train2017/*.jpg, coco/val2017/*.jpg    COCO 2017 images (cocodataset.org)
      lvis_train.pkl, lvis_val.pkl                {class id: {"<train2017|val2017>/<file>.jpg":
                                                   {"annotations": [{"segmentation": polygons | RLE}, ...]}}}

The pickles are Matcher's ``lvis.zip`` (linked from SANSA's ``docs/data.md``). The mask of a
class in an image is the union of its instances.

Fold rule (no dependence on the shot count, unlike the reference code): the fold's members are
every 10th class, starting at ``F``, of the ``val`` classes with at least 2 images in class-id
order (``len // 10`` classes per fold: 92). A member is *usable* for ``K`` shots when it has more
than ``K`` images; test episodes cycle over the usable members in order. Training uses the
``train`` classes with at least 2 images that are not members of the fold.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from sansa.data.common import Split, as_split, decode_segmentation, read_pickle, require, union
from sansa.data.episode import Sampling
from sansa.images import load_image

FOLDS = 10
HINT = "LVIS-92i: COCO 2017 images + Matcher's lvis_*.pkl, see README, Benchmarks"


def fold_members(class_images: dict[int, Any], fold: int, folds: int = FOLDS) -> list[int]:
    """Every ``folds``-th class with at least 2 images, from ``fold``, in class-id order."""
    ids = sorted(c for c, images in class_images.items() if len(images) > 1)
    return [ids[fold + folds * v] for v in range(len(ids) // folds)]


class Lvis92i:
    """LVIS-92i, one fold and split. Keys are paths relative to ``LVIS/coco/``."""

    sampling = Sampling.CYCLE_CLASSES
    episodes = 2300
    image_size = 640

    def __init__(self, root: str | Path, fold: int, split: Split | str = Split.TEST, shots: int = 1) -> None:
        self.base = require(Path(root) / "LVIS", HINT)
        self.split = as_split(split)
        val = read_pickle(self.base / "lvis_val.pkl", HINT)
        members = fold_members(val, fold)
        if self.split is Split.TRAIN:
            self._anno = read_pickle(self.base / "lvis_train.pkl", HINT)
            candidates = [c for c in sorted(self._anno) if len(self._anno[c]) > 1 and c not in set(members)]
        else:
            self._anno, candidates = val, members
        self._classes = [c for c in candidates if len(self._anno[c]) > shots]
        self.name = f"lvis92i-fold{fold}-{self.split.value}"

    def class_ids(self) -> list[int]:
        return list(self._classes)

    def class_name(self, class_id: int) -> str:
        return f"lvis-{class_id}"

    def images_of(self, class_id: int) -> list[str]:
        return list(self._anno[class_id])

    def load(self, key: str, class_id: int) -> tuple[np.ndarray, np.ndarray]:
        image = load_image(self.base / "coco" / key)
        height, width = image.shape[:2]
        annotations = self._anno[class_id][key]["annotations"]
        masks = [decode_segmentation(a["segmentation"], height, width) for a in annotations]
        return image, union(masks, height, width)
