"""Ultralytics YOLO segmentation labels: ``class x1 y1 x2 y2 ...``, one line per object.

Class indices are 0-based (``labels[i]`` is ``i``, one less than the class id of the other
formats); coordinates are polygon vertices divided by the image width and height (0..1).

YOLO readers draw polygons with ``cv2.fillPoly`` on pixel indices, Ultralytics truncating the
vertices, supervision rounding them. So each vertex is put a quarter pixel into the pixel it
stands for (``index + 0.25``), which both turn back into that index: the outline of the
boundary pixels, drawn back to exactly the mask's pixels (holes cut around, see
:mod:`sansa.export.shapes`). A one-pixel part is a polygon of four equal vertices (one pixel).

A line holds one polygon, and an object can be several hole-free pieces (cut around a hole, or
split by an occluder). So an object's pieces are joined into one polygon as Ultralytics' own
COCO converter joins multi-part segments: the pieces are linked by their closest vertices, and
the outline walks out along each link and back along it (a zero-width bridge), so filling it
gives the pieces and the bridges' lines. Pieces cut around a hole touch, and their bridges run
between neighbouring pixels of the object (nothing added); a bridge between separate pieces
adds the one-pixel line between their closest points. Unlike Ultralytics, which links the
pieces in the order given, the links here are the shortest tree joining the pieces.
Whole classes (``per_class``, or results without objects) keep one line per piece: exact.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.spatial import cKDTree

from sansa.export.shapes import polygons
from sansa.records import SegmentedObject


def label_lines(label_map: np.ndarray, labels: list[str]) -> list[str]:
    """One line per hole-free piece of each class in ``label_map`` (``uint16 [H, W]``)."""
    lines = []
    for index in range(len(labels)):
        lines += [_line(index, points, label_map.shape) for points in polygons(label_map == index + 1)]
    return lines


def object_lines(objects: Sequence[SegmentedObject], labels: list[str]) -> list[str]:
    """One line per object: its pieces joined into one polygon (see the module's docstring)."""
    return [
        _line(labels.index(obj.label), join_pieces(polygons(obj.mask)), obj.mask.shape)
        for obj in objects
        if obj.mask.any()
    ]


def _line(index: int, points: np.ndarray, size: tuple[int, ...]) -> str:
    """``index x1 y1 ...``: vertices a quarter pixel into their pixels, normalised to 0..1."""
    scale = np.array([size[1], size[0]], dtype=np.float64)
    coords = ((np.floor(points) + 0.25) / scale).clip(0.0, 1.0).reshape(-1)
    return " ".join([str(index), *(f"{v:.6f}" for v in coords)])


def join_pieces(pieces: Sequence[np.ndarray]) -> np.ndarray:
    """One closed outline through every piece, ``float32 [P, 2]``.

    The pieces (``[P_i, 2]`` closed outlines) are linked by a minimum spanning tree over their
    closest vertex pairs (Prim's algorithm); the outline walks each piece once, round from the
    vertex it entered at, and at each link's vertex detours into the linked piece and comes
    back to the same vertex.
    """
    if len(pieces) == 1:
        return np.asarray(pieces[0], dtype=np.float32)
    trees = [cKDTree(p) for p in pieces]
    links: dict[int, list[tuple[int, int, int]]] = {i: [] for i in range(len(pieces))}  # (vertex, child, entry)
    best = {j: (*_closest(trees[0], pieces[j]), 0) for j in range(1, len(pieces))}
    while best:
        child = min(best, key=lambda j: best[j][0])
        _, vertex, entry, parent = best.pop(child)
        links[parent].append((vertex, child, entry))
        for j in best:
            distance, a, b = _closest(trees[child], pieces[j])
            if distance < best[j][0]:
                best[j] = (distance, a, b, child)
    return np.array(_walk(pieces, links, 0, 0)[:-1], dtype=np.float32)


def _closest(tree: cKDTree, points: np.ndarray) -> tuple[float, int, int]:
    """``(distance, vertex in the tree's piece, vertex of points)`` of the closest pair."""
    distances, nearest = tree.query(points)
    k = int(np.argmin(distances))
    return float(distances[k]), int(nearest[k]), k


def _walk(pieces: Sequence[np.ndarray], links: dict, piece: int, entry: int) -> list[np.ndarray]:
    """The vertices of ``piece`` from ``entry`` round back to ``entry``, with linked pieces spliced in."""
    points = pieces[piece]
    detours: dict[int, list[tuple[int, int]]] = {}
    for vertex, child, child_entry in links[piece]:
        detours.setdefault(vertex, []).append((child, child_entry))
    path = []
    for step in range(len(points) + 1):
        k = (entry + step) % len(points)
        path.append(points[k])
        for child, child_entry in detours.pop(k, []):  # each link once, on the first visit
            path += _walk(pieces, links, child, child_entry)
            path.append(points[k])
    return path


def parse_lines(text: str, height: int, width: int) -> list[tuple[int, np.ndarray]]:
    """``(class index, float32 [P, 2] pixel vertices)`` per line of a label file."""
    shapes = []
    for line in text.splitlines():
        values = line.split()
        if values:
            xy = np.array(values[1:], dtype=np.float64).reshape(-1, 2) * [width, height]
            shapes.append((int(values[0]), xy.astype(np.float32)))
    return shapes


def data_yaml(labels: list[str]) -> str:
    """``data.yaml`` text for Ultralytics: ``images/`` for training and validation, the class names.

    It has no ``path:`` key on purpose: Ultralytics then takes the folder of ``data.yaml`` as the
    dataset root, so the folder loads from any working directory and after being moved or zipped
    (``path: .`` would be taken from the working directory).
    """
    import yaml

    body = yaml.safe_dump(
        {"train": "images", "val": "images", "nc": len(labels), "names": dict(enumerate(labels))},
        sort_keys=False,
        allow_unicode=True,
    )
    return (
        "# SANSA labels for Ultralytics YOLO segmentation: labels/<stem>.txt match images/<stem>.<ext>;\n"
        "# paths are relative to this file: `yolo train data=path/to/data.yaml` works from anywhere\n" + body
    )
