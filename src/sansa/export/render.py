"""Pictures of a segmentation as files: binary and indexed PNGs, and overlays as JPEG for people
to check (drawn by :mod:`sansa.drawing`).

Images are RGB ``uint8 [H, W, 3]``; label maps ``uint16 [H, W]`` (0 background, ``i + 1`` =
``labels[i]``); colours come from :mod:`sansa.drawing.palette`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from sansa.atomic import encode_image
from sansa.drawing import overlay
from sansa.drawing.palette import png_palette

JPEG_QUALITY = 90


def binary_png(mask: np.ndarray) -> bytes:
    """A grayscale PNG of a ``bool [H, W]`` mask: 255 = the class, 0 = not."""
    return encode_image(Image.fromarray(mask.astype(np.uint8) * 255, mode="L"), "PNG")


def indexed_png(label_map: np.ndarray, num_classes: int) -> bytes:
    """A palette PNG whose pixel values are class ids and whose palette is the class colours."""
    image = Image.fromarray(label_map.astype(np.uint8), mode="P")
    image.putpalette(png_palette(num_classes))
    return encode_image(image, "PNG")


def overlay_jpeg(
    image: np.ndarray,
    label_map: np.ndarray,
    labels: list[str],
    colors: np.ndarray | None = None,
    outlines: Sequence[tuple[int, np.ndarray]] | None = None,
) -> bytes:
    """:func:`overlay` encoded as JPEG (``colors`` and ``outlines`` as there)."""
    image = overlay(image, label_map, labels, colors=colors, outlines=outlines)
    return encode_image(image, "JPEG", quality=JPEG_QUALITY)
