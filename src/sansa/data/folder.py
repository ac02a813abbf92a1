"""Any folder of images with masks, as a few-shot dataset (for your own data).

Layout: one sub-folder per class, each with ``images/`` and ``masks/``; a mask is the PNG of
the same stem as its image, every non-zero pixel being the object::

    my_data/
      dog/images/0001.jpg    dog/masks/0001.png
      dog/images/0002.jpg    dog/masks/0002.png
      cat/images/a.png       cat/masks/a.png

Class ids index the sorted class folder names. Every image is the query once, its supports
drawn with replacement among the other images of its class, as FSS-1000
(``sansa eval --benchmark folder --data my_data``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sansa.data.common import DatasetError, Split, as_split
from sansa.data.episode import Sampling
from sansa.images import list_images, load_image, load_mask


class FolderDataset:
    """``root/<class>/images/*`` with ``root/<class>/masks/<stem>.png``. Keys are ``<class>/<file>``."""

    sampling = Sampling.EVERY_IMAGE
    episodes = None

    def __init__(
        self, root: str | Path, fold: int = 0, split: Split | str = Split.TEST, shots: int = 1, image_size: int = 640
    ) -> None:
        self.root: Path = Path(root)
        if not self.root.is_dir():
            raise DatasetError(f"{self.root}: not a folder")
        as_split(split)
        self.image_size = image_size
        self._names = sorted(p.name for p in self.root.iterdir() if (p / "images").is_dir())
        if not self._names:
            raise DatasetError(f"{self.root}: no '<class>/images/' folders (expected <class>/images + <class>/masks)")
        self._images = [self._list(name) for name in self._names]
        self._classes = [i for i, keys in enumerate(self._images) if len(keys) > 1]
        self.name: str = f"folder-{self.root.name}"

    def _list(self, name: str) -> list[str]:
        keys = []
        for image in list_images(self.root / name / "images"):
            if not self._mask_path(name, image.name).exists():
                raise DatasetError(f"{self._mask_path(name, image.name)}: missing mask for {image}")
            keys.append(f"{name}/{image.name}")
        return keys

    def _mask_path(self, name: str, file_name: str) -> Path:
        return self.root / name / "masks" / f"{Path(file_name).stem}.png"

    def class_ids(self) -> list[int]:
        return list(self._classes)

    def class_name(self, class_id: int) -> str:
        return self._names[class_id]

    def images_of(self, class_id: int) -> list[str]:
        return self._images[class_id]

    def load(self, key: str, class_id: int) -> tuple[np.ndarray, np.ndarray]:
        name, _, file_name = key.partition("/")
        image = load_image(self.root / name / "images" / file_name)
        mask = load_mask(self._mask_path(name, file_name))
        if mask.shape != image.shape[:2]:
            raise DatasetError(f"{self._mask_path(name, file_name)}: mask size differs from its image")
        return image, mask
