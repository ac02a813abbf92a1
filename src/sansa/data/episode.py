"""Episodes as data, and the small protocol every few-shot dataset implements.

A dataset knows its classes, which images contain each class, and how to load one image with
the binary mask of one class. Everything else (sampling episodes, prompts, resizing) is shared.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class Episode:
    """One few-shot episode: ``K`` supports (references) and one query of the same class.

    Image keys are dataset-relative identifiers (usually paths relative to the data root).
    """

    class_id: int
    query: str
    supports: tuple[str, ...]


class FewShotDataset(Protocol):
    """What episode sampling, evaluation and training need from a dataset."""

    name: str

    def class_ids(self) -> list[int]:
        """The classes of this split/fold, in a fixed order."""

    def class_name(self, class_id: int) -> str:
        """A human-readable class name."""

    def images_of(self, class_id: int) -> list[str]:
        """Keys of the images that contain ``class_id``, in a fixed order."""

    def load(self, key: str, class_id: int) -> tuple[np.ndarray, np.ndarray]:
        """``(RGB uint8 [H, W, 3], bool [H, W] mask of class_id)`` of one image."""
