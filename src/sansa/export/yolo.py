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
from typing import Any

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
    closest outline points (Prim's algorithm; outlines are first sampled every half pixel, so
    pieces that touch, as those cut around a hole, link where they touch, never across the
    hole; many pieces are linked over a Delaunay triangulation instead, :func:`_delaunay_links`); the
    outline walks each piece once, round from the point it entered at, and at each
    link's point detours into the linked piece and comes back to the same point. Points in the
    middle of straight runs are dropped again at the end.
    """
    if len(pieces) == 1:
        return np.asarray(pieces[0], dtype=np.float32)
    outlines = [np.asarray(p, dtype=np.float64) for p in pieces]
    pieces = [_sampled(p) for p in outlines]
    links = _delaunay_links(outlines, pieces) if len(pieces) > MANY_PIECES else None
    if links is None:
        sizes = np.array([len(p) for p in pieces])
        points, owner = np.concatenate(pieces), np.repeat(np.arange(len(pieces)), sizes)
        first = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        links = _prim_links(pieces, points, owner, first)
    return _without_straight_runs(np.array(_walk(pieces, links, 0, 0)[:-1])).astype(np.float32)


TOUCHING = 0.75  # outlines sit a quarter pixel into their pixels: touching pieces' samples are this close
MANY_PIECES = 64  # beyond this, the links come from a Delaunay triangulation (Prim's loop is quadratic)


def _prim_links(
    pieces: Sequence[np.ndarray], points: np.ndarray, owner: np.ndarray, first: np.ndarray
) -> dict[int, list[Any]]:
    """Prim's minimum spanning tree over the pieces' closest points: per piece, its links
    ``(vertex, child piece, the child's vertex)``. One k-d tree query of every outside point per
    piece added: quadratic in the number of pieces."""
    in_tree = np.zeros(len(pieces), bool)
    best = np.full(len(pieces), np.inf)  # per piece: the closest distance to the tree so far,
    parent, parent_vertex, own_vertex = (np.zeros(len(pieces), int) for _ in range(3))  # and where
    links: dict[int, list[Any]] = {i: [] for i in range(len(pieces))}  # (vertex, child, entry)
    added = 0
    for _ in range(len(pieces) - 1):
        in_tree[added] = True
        outside = np.flatnonzero(~in_tree[owner])  # vertices of pieces not joined yet, in piece order
        distances, nearest = cKDTree(pieces[added]).query(points[outside])
        order = np.lexsort((distances, owner[outside]))  # by piece, closest first
        heads = order[np.concatenate([[True], np.diff(owner[outside][order]) != 0])]
        closer = heads[distances[heads] < best[owner[outside][heads]]]
        for vertex in closer:  # pieces now closest to the piece just added
            piece = owner[outside][vertex]
            best[piece], parent[piece] = distances[vertex], added
            parent_vertex[piece], own_vertex[piece] = nearest[vertex], outside[vertex] - first[piece]
        added = int(np.argmin(np.where(in_tree, np.inf, best)))
        links[int(parent[added])].append((int(parent_vertex[added]), added, int(own_vertex[added])))
    return links


def _delaunay_links(outlines: Sequence[np.ndarray], pieces: Sequence[np.ndarray]) -> dict[int, list[Any]] | None:
    """Links like :func:`_prim_links` for many pieces, in about ``O(P log P)``: the pairs of pieces
    that are neighbours in the Delaunay triangulation of their outline vertices, or that touch
    (samples within :data:`TOUCHING`), are the candidates (the closest pair of two pieces a minimum
    spanning tree joins is a Delaunay edge of all their points); each
    candidate's distance is that of the closest points of the two pieces' half-pixel samples
    (``pieces``), so pieces that touch are at 0 and link where they touch; the tree is the minimum
    spanning tree over the candidates, rooted at piece 0. ``None`` when the triangulation fails
    (degenerate points) or does not join every piece."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import breadth_first_order, minimum_spanning_tree
    from scipy.spatial import Delaunay, QhullError

    points = np.concatenate(outlines)
    owner = np.repeat(np.arange(len(outlines)), [len(p) for p in outlines])
    try:
        triangulation = Delaunay(points)
    except (QhullError, ValueError):
        return None
    simplices, coplanar = triangulation.simplices, triangulation.coplanar  # coplanar: repeated points
    a = owner[np.concatenate([simplices[:, [0, 1, 2]].ravel(), coplanar[:, 0]])]
    b = owner[np.concatenate([simplices[:, [1, 2, 0]].ravel(), coplanar[:, 2]])]
    samples = np.concatenate(pieces)  # pieces that touch: samples of both within a diagonal half pixel
    sample_owner = np.repeat(np.arange(len(pieces)), [len(p) for p in pieces])
    near = cKDTree(samples).query_pairs(TOUCHING, output_type="ndarray")
    a = np.concatenate([a, sample_owner[near[:, 0]]])
    b = np.concatenate([b, sample_owner[near[:, 1]]])
    count = len(outlines)
    pairs = np.unique(np.minimum(a, b)[a != b] * count + np.maximum(a, b)[a != b])
    trees: dict[int, cKDTree] = {}
    closest = {
        (int(k) // count, int(k) % count): _closest(pieces, trees, int(k) // count, int(k) % count) for k in pairs
    }
    rows, cols = np.array(list(closest)).reshape(-1, 2).T
    weight = np.array([d for d, _, _ in closest.values()]) + 1e-9  # 0 would be no edge
    graph = coo_matrix((weight, (rows, cols)), shape=(count, count))
    tree = minimum_spanning_tree(graph + graph.T).tocoo()
    if tree.nnz != count - 1:
        return None
    adjacency = coo_matrix((np.ones(tree.nnz), (tree.row, tree.col)), shape=(count, count))
    visit, parents = breadth_first_order(adjacency + adjacency.T, 0, directed=False)
    links: dict[int, list[Any]] = {i: [] for i in range(count)}
    for child in visit[1:].tolist():
        parent = int(parents[child])
        low, high = min(parent, child), max(parent, child)
        _, at_low, at_high = closest[(low, high)]
        links[parent].append((at_low, child, at_high) if parent == low else (at_high, child, at_low))
    return links


def _closest(pieces: Sequence[np.ndarray], trees: dict[int, cKDTree], p: int, q: int) -> tuple[float, int, int]:
    """``(distance, p's vertex, q's vertex)``: the closest points of pieces ``p`` and ``q`` (the
    smaller piece's points looked up in the larger one's k-d tree, each tree built once)."""
    small, large = (q, p) if len(pieces[q]) <= len(pieces[p]) else (p, q)
    if large not in trees:
        trees[large] = cKDTree(pieces[large])
    distances, nearest = trees[large].query(pieces[small])
    at = int(np.argmin(distances))
    vertex = {small: at, large: int(nearest[at])}
    return float(distances[at]), vertex[p], vertex[q]


def _sampled(outline: np.ndarray, step: float = 0.5) -> np.ndarray:
    """A closed outline ``[P, 2]`` with points added along each edge, at most ``step`` apart."""
    ends = np.roll(outline, -1, axis=0)
    counts = np.maximum(1, np.ceil(np.abs(ends - outline).max(axis=1) / step)).astype(int)
    fractions = np.concatenate([np.arange(n) / n for n in counts])
    starts = np.repeat(np.arange(len(outline)), counts)
    return outline[starts] + fractions[:, None] * (ends[starts] - outline[starts])


def _without_straight_runs(outline: np.ndarray) -> np.ndarray:
    """A closed outline without the points lying between two others on a straight line, going on
    in the same direction (turns, and the way back along a link, are kept)."""
    before = outline - np.roll(outline, 1, axis=0)
    after = np.roll(outline, -1, axis=0) - outline
    cross = before[:, 0] * after[:, 1] - before[:, 1] * after[:, 0]
    straight = (np.abs(cross) < 1e-9) & ((before * after).sum(axis=1) > 0)
    return outline[~straight]


def _walk(pieces: Sequence[np.ndarray], links: dict[int, list[Any]], piece: int, entry: int) -> list[np.ndarray]:
    """The vertices of ``piece`` from ``entry`` round back to ``entry``, with each linked piece
    walked the same way at its link's vertex, then that vertex again (depth first, on a stack of
    its own: a chain of thousands of pieces needs no recursion)."""
    detours: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for parent, children in links.items():
        for vertex, child, child_entry in children:
            detours.setdefault((parent, vertex), []).append((child, child_entry))
    path: list[np.ndarray] = []
    stack = [[piece, entry, 0, -1]]  # piece, its entry vertex, steps round it, detours done here (-1: not arrived)
    while stack:
        frame = stack[-1]
        current, start, step, done = frame
        points = pieces[current]
        k = (start + step) % len(points)
        if done == -1:  # arrive at vertex k
            path.append(points[k])
            frame[3] = done = 0
        children = detours.get((current, k), []) if step < len(points) else []
        if done < len(children):
            frame[3] = done + 1
            stack.append([*children[done], 0, -1])
        elif step < len(points):
            frame[2], frame[3] = step + 1, -1
        else:  # round and back at the entry: return to the parent's vertex
            stack.pop()
            if stack:
                parent, parent_start, parent_step, _ = stack[-1]
                parent_points = pieces[parent]
                path.append(parent_points[(parent_start + parent_step) % len(parent_points)])
    return path


def parse_lines(text: str, height: int, width: int) -> list[tuple[int, np.ndarray]]:
    """``(class index, float32 [P, 2] pixel vertices)`` per line of a label file: the labels read
    back as YOLO readers read them (the inverse of :func:`label_lines`, up to the quarter pixel)."""
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
