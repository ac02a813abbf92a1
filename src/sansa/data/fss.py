"""FSS-1000 (HSNet split files): 1000 classes of 10 images, fixed split 520 / 240 / 240.

Layout under the data root (HSNet's / Matcher's / SANSA's)::

    FSS-1000/
      data/<class>/<n>.jpg, <n>.png           10 images per class and their masks: read as the authors do
                                              (``convert('L')``: palette masks by their colours' luminance),
                                              >= 128 = object
      splits/trn.txt, val.txt, test.txt       one class name per line (HSNet ``data/splits/fss``)

Test (the authors' ``datasets/fss.py``): every image of the 240 test classes is the query once
(2400 episodes), in sorted path order; its supports are drawn with replacement among the other
images of its class folder (the authors draw ``1..10.jpg``; here the folder's own ``.jpg`` files,
so a class with fewer or other names works too).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sansa.data.common import DatasetError, Split, as_split, load_rgb, open_as_stored, read_lines, require
from sansa.data.episode import Sampling

HINT = "FSS-1000: see README, Benchmarks, for the archive and the split files"
_SPLIT_FILES = {Split.TRAIN: "trn.txt", Split.VAL: "val.txt", Split.TEST: "test.txt"}


class Fss1000:
    """FSS-1000, one split. Keys are ``<class>/<n>.jpg``; class ids index the sorted class names."""

    sampling = Sampling.EVERY_IMAGE
    episodes = None
    image_size = 518

    def __init__(self, root: str | Path, fold: int = 0, split: Split | str = Split.TEST, shots: int = 1) -> None:
        if fold not in (0, -1):
            raise DatasetError(f"fold: FSS-1000 has one fixed split (fold 0), got {fold}")
        self.base: Path = require(Path(root) / "FSS-1000", HINT)
        self.split: Split = as_split(split)
        self._names = sorted(set(read_lines(self.base / "splits" / _SPLIT_FILES[self.split], HINT)))
        self._images = [self._list(name) for name in self._names]
        self._classes = [i for i, keys in enumerate(self._images) if len(keys) > 1]
        self.name: str = f"fss1000-{self.split.value}"

    def _list(self, name: str) -> list[str]:
        folder = require(self.base / "data" / name, HINT)
        keys = sorted(f"{name}/{p.name}" for p in folder.glob("*.jpg"))
        if not keys:
            raise DatasetError(f"{folder}: no .jpg images")
        return keys

    def class_ids(self) -> list[int]:
        return list(self._classes)

    def class_name(self, class_id: int) -> str:
        return self._names[class_id]

    def images_of(self, class_id: int) -> list[str]:
        return self._images[class_id]

    def load(self, key: str, class_id: int) -> tuple[np.ndarray, np.ndarray]:
        path = self.base / "data" / key
        grey = np.asarray(open_as_stored(path.with_suffix(".png")).convert("L"))
        return load_rgb(path), grey >= 128
