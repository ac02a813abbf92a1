"""Masks to the shapes annotation formats need: COCO RLE, boxes, connected parts, polygons.

Masks are ``bool [H, W]``. Polygon vertices are ``(x, y)`` pixel indices of the outer boundary
pixels (``x`` = column), the convention of ``cv2.findContours`` and of COCO/YOLO converters;
holes are not represented by polygons (use RLE or PNG for exact masks).
"""

from __future__ import annotations

import cv2
import numpy as np
from pycocotools import mask as mask_utils


def to_rle(mask: np.ndarray) -> dict:
    """COCO compressed RLE ``{"size": [H, W], "counts": str}`` of a ``bool [H, W]`` mask."""
    rle = mask_utils.encode(np.asfortranarray(mask, dtype=np.uint8))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


def from_rle(rle: dict) -> np.ndarray:
    """``bool [H, W]`` from a COCO RLE (``counts`` as ``str`` or ``bytes``)."""
    counts = rle["counts"]
    encoded = {"size": list(rle["size"]), "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
    return mask_utils.decode(encoded).astype(bool)


def bbox_xywh(rle: dict) -> list[float]:
    """COCO box ``[x, y, width, height]`` in pixel-edge coordinates (a 1-pixel mask is 1 x 1)."""
    encoded = {"size": rle["size"], "counts": rle["counts"].encode("ascii")}
    return [float(v) for v in mask_utils.toBbox(encoded)]


def components(mask: np.ndarray) -> list[np.ndarray]:
    """The 8-connected parts of a mask, ``bool [H, W]`` each, in raster order of their first pixel."""
    count, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    return [labels == i for i in range(1, count)]


def polygons(mask: np.ndarray) -> list[np.ndarray]:
    """Outer boundary of each connected part as ``float32 [P, 2]`` ``(x, y)`` vertices, ``P >= 3``.

    A part too thin for a polygon (one pixel, one row or one column) gets the rectangle of its
    pixels' outer edges instead.
    """
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    result = []
    for contour in contours:
        points = contour.reshape(-1, 2).astype(np.float32)
        if len(points) < 3 or _flat(points):
            x0, y0 = points.min(axis=0)
            x1, y1 = points.max(axis=0) + 1
            points = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float32)
        result.append(points)
    return result


def _flat(points: np.ndarray) -> bool:
    """All vertices on one row or one column: a polygon of zero area."""
    return bool(np.ptp(points[:, 0]) == 0 or np.ptp(points[:, 1]) == 0)


def rasterize_polygons(shapes: list[np.ndarray], height: int, width: int) -> np.ndarray:
    """``bool [H, W]``: the pixels ``cv2.fillPoly`` gives to the polygons (for checks and tests)."""
    canvas = np.zeros((height, width), dtype=np.uint8)
    cv2.fillPoly(canvas, [np.round(p).astype(np.int32) for p in shapes], 1)
    return canvas.astype(bool)
