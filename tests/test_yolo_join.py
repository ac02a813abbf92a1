"""Many pieces of one object are linked over a Delaunay triangulation: a spanning tree as short as
Prim's loop's, and a polygon that draws back every piece."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from sansa.export import yolo
from sansa.export.shapes import polygons


def speckled(seed: int) -> np.ndarray:
    """``bool [60, 80]``: about a hundred specks, some touching (an object riddled by a random model)."""
    rng = np.random.default_rng(seed)
    mask = np.zeros((60, 80), dtype=bool)
    for y, x in rng.integers(0, (58, 78), (140, 2)):
        mask[y : y + rng.integers(1, 3), x : x + rng.integers(1, 3)] = True
    return mask


def bridge_length(pieces: list[np.ndarray], links: dict) -> float:
    """The summed length of the links between pieces (the spanning tree's weight)."""
    return sum(
        float(np.hypot(*(pieces[parent][vertex] - pieces[child][entry])))
        for parent, children in links.items()
        for vertex, child, entry in children
    )


def test_delaunay_links_span_the_pieces_as_prims_loop_does():
    for seed in range(3):
        outlines = [np.asarray(p, dtype=np.float64) for p in polygons(speckled(seed))]
        pieces = [yolo._sampled(p) for p in outlines]
        assert len(pieces) > yolo.MANY_PIECES
        sizes = np.array([len(p) for p in pieces])
        points, owner = np.concatenate(pieces), np.repeat(np.arange(len(pieces)), sizes)
        first = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        fast = yolo._delaunay_links(outlines, pieces)
        slow = yolo._prim_links(pieces, points, owner, first)
        assert fast is not None
        assert sum(len(c) for c in fast.values()) == len(pieces) - 1
        assert bridge_length(pieces, fast) == pytest.approx(bridge_length(pieces, slow))  # both minimal


def test_a_riddled_object_is_one_polygon_that_draws_back_its_pixels():
    mask = speckled(7)
    outline = yolo.join_pieces(polygons(mask))
    drawn = np.zeros(mask.shape, np.uint8)
    cv2.fillPoly(drawn, [np.floor(outline + 0.25).astype(np.int32)], 1)
    assert drawn[mask].all()  # every pixel of the object, plus the bridges' one-pixel lines
