"""Mask edits sent as strokes, not as a full-size PNG: the page sends what the brush, eraser or
lasso did (a few hundred points), the server applies it to the reference's mask it holds.

A 12-Mpx mask as a PNG is megabytes to encode in the browser, send and decode; a stroke is a few
kilobytes, and applying it touches only its bounding box. Coordinates are image pixels (``x`` =
column, ``y`` = row), as for every prompt; ``width`` is the brush's diameter in image pixels.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from sansa.web.errors import WebError
from sansa.web.schema import MaskEdit


def apply(mask: np.ndarray, edits: Sequence[MaskEdit]) -> np.ndarray:
    """``mask`` (``bool [H, W]``, left as it is) with ``edits`` applied in order; a new array.

    ``paint`` / ``erase``: a polyline of round ends and joins, ``width`` pixels wide; ``fill`` /
    ``cut``: the polygon through ``points`` (closed), its inside set / cleared.
    """
    out = mask.copy()
    height, width = out.shape
    for edit in edits:
        points = np.asarray(edit.points, dtype=np.float64).reshape(-1, 2)
        pad = (edit.width or 0) / 2 + 2
        x0, y0 = np.floor(points.min(axis=0) - pad).astype(int).clip(0, [width, height])
        x1, y1 = np.ceil(points.max(axis=0) + pad + 1).astype(int).clip(0, [width, height])
        if x1 <= x0 or y1 <= y0:
            continue  # wholly outside the image
        local = [(float(x - x0), float(y - y0)) for x, y in points]
        stamp = Image.new("1", (int(x1 - x0), int(y1 - y0)), 0)
        draw = ImageDraw.Draw(stamp)
        if edit.op in ("paint", "erase"):
            if not edit.width:
                raise WebError(f"prompt.edits: a {edit.op} needs its width (the brush diameter in pixels)")
            _stroke(draw, local, edit.width)
        elif len(local) >= 3:
            draw.polygon(local, fill=1)
        region = np.asarray(stamp, dtype=bool)
        window = out[y0:y1, x0:x1]
        window[region] = edit.op in ("paint", "fill")
    return out


def _stroke(draw: ImageDraw.ImageDraw, points: list[tuple[float, float]], width: float) -> None:
    """A round-capped, round-joined polyline (as the page's canvas draws it)."""
    radius = width / 2
    if len(points) > 1:
        draw.line(points, fill=1, width=max(1, round(width)))
    for x, y in points:
        draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=1)
