"""Masks to the shapes annotation formats need: COCO RLE, boxes, connected parts, polygons.

Masks are ``bool [H, W]``. Polygons are ``(x, y)`` vertices in continuous image coordinates,
where pixel ``(row i, column j)`` is the square ``[j, j + 1) x [i, i + 1)`` (COCO's convention).

Polygons give back exactly the mask's pixels, whichever common rasteriser reads them: they run
a quarter pixel inside the mask's outer pixel edges, so pycocotools (a pixel is in when its
centre is) and Ultralytics or supervision (vertices truncated to pixel indices, then
``cv2.fillPoly``) both recover every pixel, and no polygon, however thin, rasterises to 0 px.
Polygons cannot have holes, so a part with holes is cut into hole-free pieces (vertical cuts
through each hole), one polygon each: holes are never filled, and a class inside another
class's hole is never covered by the outer class's polygons.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
from pycocotools import mask as mask_utils


def to_rle(mask: np.ndarray) -> dict[str, Any]:
    """COCO compressed RLE ``{"size": [H, W], "counts": str}`` of a ``bool [H, W]`` mask."""
    rle = mask_utils.encode(np.asfortranarray(mask, dtype=np.uint8))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


def from_rle(rle: dict[str, Any]) -> np.ndarray:
    """``bool [H, W]`` from a COCO RLE (``counts`` as ``str`` or ``bytes``)."""
    counts = rle["counts"]
    encoded = {"size": list(rle["size"]), "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
    return mask_utils.decode(encoded).astype(bool)


def bbox_xywh(rle: dict[str, Any]) -> list[float]:
    """COCO box ``[x, y, width, height]`` in pixel-edge coordinates (a 1-pixel mask is 1 x 1)."""
    encoded = {"size": rle["size"], "counts": rle["counts"].encode("ascii")}
    return [float(v) for v in mask_utils.toBbox(encoded)]


def components(mask: np.ndarray) -> list[np.ndarray]:
    """The 8-connected parts of a mask, ``bool [H, W]`` each, in raster order of their first pixel."""
    count, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    return [labels == i for i in range(1, count)]


def polygons(mask: np.ndarray) -> list[np.ndarray]:
    """One outline per hole-free piece of ``mask``, ``float32 [P, 2]`` ``(x, y)`` vertices, ``P >= 4``.

    The vertices are pixel centres of the mask upsampled twice, so they lie a quarter pixel
    inside the outer pixel edges (see the module's docstring); one-pixel parts get a square.
    """
    result = []
    for piece, (x0, y0) in hole_free_pieces(mask):
        big: np.ndarray = np.kron(piece.astype(np.uint8), np.ones((2, 2), np.uint8))
        contours, _ = cv2.findContours(big, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        offset = np.array([x0, y0], dtype=np.float32)
        result += [(c.reshape(-1, 2).astype(np.float32) + 0.5) / 2 + offset for c in contours]
    return result


def hole_free_pieces(mask: np.ndarray) -> list[tuple[np.ndarray, tuple[int, int]]]:
    """The 8-connected parts of ``mask``, those with holes cut into hole-free pieces.

    A part with holes is cut at one column through each hole (all at once): every piece of a
    hole then touches a cut, so no piece encloses background.

    Returns:
        ``(piece, (x0, y0))`` pairs: ``piece`` is ``bool [h, w]``, the crop of the mask whose
        top-left pixel is column ``x0``, row ``y0``. The pieces cover the mask exactly.
    """
    pieces = []
    for crop, (x0, y0) in _parts(mask, 0, 0):
        edges = [0, *_hole_cuts(crop), crop.shape[1]]
        for start, stop in zip(edges[:-1], edges[1:], strict=True):
            pieces += _parts(crop[:, start:stop], x0 + start, y0) if len(edges) > 2 else [(crop, (x0, y0))]
    return sorted(pieces, key=lambda p: (p[1][1], p[1][0]))


def _parts(mask: np.ndarray, x0: int, y0: int) -> list[tuple[np.ndarray, tuple[int, int]]]:
    """The 8-connected parts of a crop, each cropped to its box, with their offsets."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    parts = []
    for i in range(1, count):
        x, y, w, h = (int(v) for v in stats[i, :4])
        parts.append((labels[y : y + h, x : x + w] == i, (x0 + x, y0 + y)))
    return parts


def _hole_cuts(piece: np.ndarray) -> list[int]:
    """Sorted columns cutting every hole of ``piece`` (background not 4-connected to the outside)
    into halves that each open onto the cut: ``x_min + width // 2`` of each hole."""
    background = np.pad(~piece, 1, constant_values=True).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(background, connectivity=4)
    outside = labels[0, 0]
    return sorted({int(stats[i, 0]) - 1 + int(stats[i, 2]) // 2 for i in range(1, count) if i != outside})


def polygon_area(segmentation: list[list[float]], height: int, width: int) -> int:
    """Pixels pycocotools gives to a COCO polygon segmentation (COCO's ``area`` of a polygon)."""
    rles = mask_utils.frPyObjects(segmentation, height, width)
    return int(mask_utils.area(mask_utils.merge(rles)))


def rasterize_polygons(shapes: list[np.ndarray], height: int, width: int) -> np.ndarray:
    """``bool [H, W]``: the pixels the polygons get as Ultralytics draws them (vertices truncated to
    pixel indices, then ``cv2.fillPoly`` one polygon at a time); for checks and tests."""
    canvas = np.zeros((height, width), dtype=np.uint8)
    for points in shapes:
        cv2.fillPoly(canvas, [points.astype(np.int32)], 1)
    return canvas.astype(bool)
