"""Episodes as data, and the small protocol every few-shot dataset implements.

A dataset knows its classes, which images contain each class, and how to load one image with
the binary mask of one class. Everything else (sampling episodes, prompts, resizing) is shared.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

import numpy as np

# Separates an image from one object in it in keys of part datasets ("img.jpg#3"): an episode
# then names the object as well as the image, and two keys of one image never meet in an episode.
OBJECT_SEPARATOR = "#"


@dataclass(frozen=True)
class Episode:
    """One few-shot episode: ``K`` supports (references) and one query of the same class.

    Image keys are dataset-relative identifiers (usually paths relative to the data root).
    """

    class_id: int
    query: str
    supports: tuple[str, ...]


class Sampling(str, enum.Enum):
    """How a benchmark draws its test episodes (the query; supports are always random).

    - ``random``: a class uniformly at random, then a random image of it (COCO-20i, PACO-Part).
    - ``cycle_classes``: episode ``i`` is of class ``i mod C`` in class order (LVIS-92i, Pascal-Part).
    - ``every_image``: every (image, class) pair is the query once, in order (FSS-1000, folders).
    - ``cycle_images``: the (image, class) list, cycled in order (PASCAL-5i, as HSNet).
    """

    RANDOM = "random"
    CYCLE_CLASSES = "cycle_classes"
    EVERY_IMAGE = "every_image"
    CYCLE_IMAGES = "cycle_images"


class FewShotDataset(Protocol):
    """What episode sampling, evaluation and training need from a dataset.

    Datasets of this package also carry ``sampling`` (a :class:`Sampling`), ``episodes`` (the
    benchmark's number of test episodes, ``None`` = one per query) and ``image_size`` (the side
    ``S`` images are squashed to before the model).
    """

    name: str

    def class_ids(self) -> list[int]:
        """The classes of this split/fold, in a fixed order."""

    def class_name(self, class_id: int) -> str:
        """A human-readable class name."""

    def images_of(self, class_id: int) -> list[str]:
        """Keys of the images that contain ``class_id``, in a fixed order."""

    def load(self, key: str, class_id: int) -> tuple[np.ndarray, np.ndarray]:
        """``(RGB uint8 [H, W, 3], bool [H, W] mask of class_id)`` of one image."""


def image_of(key: str) -> str:
    """The image part of a key (keys of part datasets also name an object: ``image#object``)."""
    return key.split(OBJECT_SEPARATOR, 1)[0]
