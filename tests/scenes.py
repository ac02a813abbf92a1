"""Tiny synthetic photos shared by the labelling tests (import ``scenes`` from a test module)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

SIZE = (64, 48)  # width, height


def scene(seed: int, size: tuple[int, int] = SIZE, disc: bool = True) -> np.ndarray:
    """A noisy background with a bright square and (``disc``) a dark disc, RGB ``uint8 [H, W, 3]``."""
    rng = np.random.default_rng(seed)
    width, height = size
    image = np.clip(rng.normal(120, 10, (height, width, 3)), 0, 255)
    x, y = rng.integers(4, width - 24), rng.integers(4, height - 20)
    image[y : y + 14, x : x + 18] = (230, 200, 40)
    if disc:
        ys, xs = np.mgrid[0:height, 0:width]
        image[(xs - width * 0.7) ** 2 + (ys - height * 0.6) ** 2 < 60] = (30, 40, 160)
    return image.astype(np.uint8)


def write_reference(folder: Path, mask_name: str = "ref_mask.png", disc: bool = True) -> None:
    """``ref.png`` (``scene(0)``) and its mask, a 28x20 square at x 12, y 10, in ``folder``."""
    Image.fromarray(scene(0, disc=disc)).save(folder / "ref.png")
    mask = np.zeros(SIZE[::-1], np.uint8)
    mask[10:30, 12:40] = 255
    Image.fromarray(mask).save(folder / mask_name)
