"""Masks as editable polygons (the page's polygon tool), and polygons back to masks.

A mask's outlines come from OpenCV's contours (``cv2.findContours``, the whole nesting: a part,
its holes, a part inside a hole, ...), simplified by Douglas-Peucker (``cv2.approxPolyDP``) to
``tolerance`` pixels so that there are few vertices to move. Vertices are ``(x, y)`` pixel
indices (``x`` = column, ``y`` = row), as :mod:`sansa.web.strokes` fills them: a ring is filled,
a hole ring is cut out, in the order given, so a part inside a hole comes after that hole.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from sansa.web import strokes
from sansa.web.schema import MaskEdit, PolygonRing

DEFAULT_TOLERANCE = 1.0  # pixels a simplified outline may stray from the mask's edge


def rings(mask: np.ndarray, tolerance: float = DEFAULT_TOLERANCE) -> list[PolygonRing]:
    """The outlines of ``bool [H, W]`` ``mask``: the parts, then their holes, then the parts in those
    holes, and so on (the order :func:`rasterise` needs).

    A part's ring runs through its edge pixels, a hole's through the hole's own edge pixels (so a
    one-pixel hole stays one pixel). A part or hole too thin for three vertices (a 1-pixel line or
    dot) keeps its 1-2 contour points, repeated to three (filled, that draws its pixels).
    """
    pixels = np.ascontiguousarray(mask, dtype=np.uint8)
    contours, hierarchy = cv2.findContours(pixels, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)
    if hierarchy is None:
        return []
    parents = hierarchy[0][:, 3]
    depth = [_depth(parents, i) for i in range(len(contours))]
    out = []
    for i in sorted(range(len(contours)), key=lambda i: depth[i]):
        hole = depth[i] % 2 == 1
        for outline in _hole_outlines(contours[i], pixels) if hole else [contours[i]]:
            out.append(PolygonRing(points=_simplified(outline, tolerance), hole=hole))
    return out


def _hole_outlines(contour: np.ndarray, pixels: np.ndarray) -> list[np.ndarray]:
    """The outlines of the background pixels a hole contour (through mask pixels) encloses."""
    x, y, w, h = cv2.boundingRect(contour)
    inside = np.zeros((h, w), dtype=np.uint8)
    cv2.drawContours(inside, [contour - np.array([x, y])], -1, 1, thickness=cv2.FILLED)
    inside &= 1 - pixels[y : y + h, x : x + w]
    found, _ = cv2.findContours(inside, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE, offset=(x, y))
    return list(found)


def _simplified(contour: np.ndarray, tolerance: float) -> list[tuple[float, float]]:
    points = cv2.approxPolyDP(contour, tolerance, True).reshape(-1, 2) if tolerance > 0 else contour.reshape(-1, 2)
    if len(points) < 3:
        points = contour.reshape(-1, 2)
    while len(points) < 3:
        points = np.concatenate([points, points[-1:]])
    return [(float(px), float(py)) for px, py in points]


def rasterise(polygons: Sequence[PolygonRing], size: tuple[int, int]) -> np.ndarray:
    """``bool [H, W]`` (``size``): the rings filled, hole rings cut out, in their order."""
    edits = [MaskEdit(op="cut" if ring.hole else "fill", points=ring.points) for ring in polygons]
    return strokes.apply(np.zeros(size, dtype=bool), edits)


def _depth(parents: np.ndarray, index: int) -> int:
    depth = 0
    while parents[index] >= 0:
        index, depth = int(parents[index]), depth + 1
    return depth
