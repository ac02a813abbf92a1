"""Class colours, shared by the indexed PNGs and the overlays, and the ``classes.json`` table.

Class id 0 is the background (black); class ``i`` (1-based, ``labels[i - 1]``) gets
``PALETTE[i - 1]`` from Sasha Trubetskoy's 20 distinct colours; beyond 20 classes colours
continue along the golden-ratio hue sequence, so every id has a fixed colour.
"""

from __future__ import annotations

import colorsys
from typing import Any

import numpy as np

BACKGROUND = (0, 0, 0)
PALETTE: tuple[tuple[int, int, int], ...] = tuple(
    (int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16))
    for h in (
        "e6194b",
        "3cb44b",
        "ffe119",
        "4363d8",
        "f58231",
        "911eb4",
        "46f0f0",
        "f032e6",
        "bcf60c",
        "fabebe",
        "008080",
        "e6beff",
        "9a6324",
        "fffac8",
        "800000",
        "aaffc3",
        "808000",
        "ffd8b1",
        "000075",
        "808080",
    )
)
GOLDEN_RATIO = 0.618033988749895


def class_color(class_id: int) -> tuple[int, int, int]:
    """The ``(R, G, B)`` colour of a class id (0 = background)."""
    if class_id == 0:
        return BACKGROUND
    if class_id <= len(PALETTE):
        return PALETTE[class_id - 1]
    hue = (class_id * GOLDEN_RATIO) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.75, 0.95)
    return round(r * 255), round(g * 255), round(b * 255)


def palette_array(num_classes: int) -> np.ndarray:
    """``uint8 [num_classes + 1, 3]``: row ``i`` is the colour of class id ``i`` (row 0 background)."""
    return np.array([class_color(i) for i in range(num_classes + 1)], dtype=np.uint8)


def png_palette(num_classes: int) -> list[int]:
    """A flat 256-entry RGB palette for a ``P``-mode PNG (unused entries black)."""
    colors = palette_array(min(num_classes, 255)).reshape(-1).tolist()
    return colors + [0] * (768 - len(colors))


def classes_table(labels: list[str]) -> list[dict[str, Any]]:
    """``classes.json`` rows: id, name and ``[R, G, B]`` colour, background first."""
    names = ["background", *labels]
    return [{"id": i, "name": name, "color": list(class_color(i))} for i, name in enumerate(names)]
