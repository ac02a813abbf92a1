"""PASCAL-5i (HSNet split files): 20 classes, 4 folds of 5, 1000 test episodes per fold.

Layout under the data root (HSNet's / Matcher's)::

    VOC2012/
      JPEGImages/<name>.jpg                   PASCAL VOC 2012 images
      SegmentationClassAug/<name>.png         SBD-augmented masks, pixel = class 1..20, 0 background,
                                              255 object boundary
      splits/trn/fold{0..3}.txt               lines "<name>__<class 1..20>" (HSNet ``data/splits/pascal``)
      splits/val/fold{0..3}.txt

PASCAL-5i is not in the SANSA authors' code; this reader follows HSNet (``data/pascal.py``,
``common/evaluation.py``): fold ``F`` tests classes ``5F+1 .. 5F+5`` (1-based); test episodes
cycle through the fold's ``val`` list in file order (query = the listed image), supports drawn
with replacement among the class's listed images other than the query. Boundary pixels (255)
are left out of the metric (:meth:`Pascal5i.load_with_ignore`; after the nearest resize, as
HSNet): they count neither as object nor as background.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sansa.data.common import DatasetError, Split, as_split, load_rgb, read_label_png, read_lines, require
from sansa.data.episode import Sampling

FOLDS = 4
IGNORE = 255  # object boundaries in SegmentationClassAug
HINT = "PASCAL-5i: VOC2012 + SegmentationClassAug + HSNet split files, see README, Benchmarks"
CLASS_NAMES = (
    "aeroplane bicycle bird boat bottle bus car cat chair cow diningtable dog horse motorbike person "
    "pottedplant sheep sofa train tvmonitor"
).split()


def fold_classes(fold: int) -> list[int]:
    """The 5 test classes of a fold (0-based ids ``5F .. 5F+4``)."""
    return list(range(5 * fold, 5 * fold + 5))


class Pascal5i:
    """PASCAL-5i, one fold and split. Keys are image names (``2007_000033``)."""

    sampling = Sampling.CYCLE_IMAGES
    episodes = 1000
    image_size = 518

    def __init__(self, root: str | Path, fold: int, split: Split | str = Split.TEST, shots: int = 1) -> None:
        self.base: Path = require(Path(root) / "VOC2012", HINT)
        self.split: Split = as_split(split)
        part = "trn" if self.split is Split.TRAIN else "val"
        folds = [f for f in range(FOLDS) if f != fold] if part == "trn" else [fold]
        self._pairs: list[tuple[str, int]] = []
        for f in folds:
            path = self.base / "splits" / part / f"fold{f}.txt"
            for line in read_lines(path, HINT):
                name, sep, cls = line.rpartition("__")
                if not sep or not cls.isdigit():
                    raise DatasetError(f"{path}: line {line!r} is not '<name>__<class>'")
                self._pairs.append((name, int(cls) - 1))
        self._images: dict[int, list[str]] = {}
        for name, c in self._pairs:
            self._images.setdefault(c, []).append(name)
        self._classes = sorted(c for c, names in self._images.items() if len(set(names)) > 1)
        self._pairs = [(n, c) for n, c in self._pairs if c in self._classes]
        self.name: str = f"pascal5i-fold{fold}-{self.split.value}"

    def class_ids(self) -> list[int]:
        return list(self._classes)

    def class_name(self, class_id: int) -> str:
        return CLASS_NAMES[class_id]

    def images_of(self, class_id: int) -> list[str]:
        return list(dict.fromkeys(self._images[class_id]))

    def key_weights(self, class_id: int) -> list[int]:
        """How often each image is listed for the class (HSNet draws list entries)."""
        names = self._images[class_id]
        return [names.count(k) for k in self.images_of(class_id)]

    def queries(self) -> list[tuple[str, int]]:
        """``(image, class)`` in split-file order: the order test episodes cycle through."""
        return list(self._pairs)

    def load(self, key: str, class_id: int) -> tuple[np.ndarray, np.ndarray]:
        image, mask, _ = self.load_with_ignore(key, class_id)
        return image, mask

    def load_with_ignore(self, key: str, class_id: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(RGB [H, W, 3], bool [H, W] class mask, bool [H, W] boundary pixels (255) to ignore)``."""
        image = load_rgb(self.base / "JPEGImages" / f"{key}.jpg")
        labels = read_label_png(self.base / "SegmentationClassAug" / f"{key}.png")
        return image, labels == class_id + 1, labels == IGNORE
