"""COCO annotations: per-target records (kept while a run goes) and the assembled dataset.

One annotation per object (:class:`~sansa.records.SegmentedObject`; with ``per_class``, one per
class, its whole mask). Segmentations are compressed RLE (``counts`` as a string, as
pycocotools writes them), or with ``polygons=True`` lists of polygons for tools that cannot read
RLE: hole-free pieces that rasterise back to exactly the mask (see :mod:`sansa.export.shapes`;
holes are cut around, never filled), with ``area`` the polygons' area as pycocotools measures
it. Every annotation carries ``score``, the decoder's IoU estimate for its object, so the file is
also a valid COCO results file.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from sansa._version import __version__
from sansa.export import streamed
from sansa.export.shapes import bbox_xywh, polygon_area, polygons, to_rle
from sansa.records import SegmentedObject


def object_annotations(
    objects: Sequence[SegmentedObject], labels: list[str], use_polygons: bool = False
) -> list[dict[str, Any]]:
    """One annotation per object, without ``id``/``image_id`` (given when the dataset is assembled).

    Args:
        objects: the target's objects (``bool [H, W]`` masks, disjoint), class by class.
        labels: the class names; category id of ``labels[i]`` is ``i + 1``.
        use_polygons: polygons (one per hole-free piece of the object) instead of RLE.

    ``bbox`` is the object's mask box ``[x, y, width, height]`` in pixel edges, ``area`` its
    pixels (RLE) or its polygons' pixels as pycocotools counts them, ``score`` its IoU estimate.
    """
    annotations = []
    for obj in objects:
        rle = to_rle(obj.mask)
        if use_polygons:
            flat = [_flat_polygon(p) for p in polygons(obj.mask)]
            segmentation: dict[str, Any] | list[list[float]] = flat
            area = polygon_area(flat, *obj.mask.shape)
        else:
            segmentation, area = rle, obj.area
        annotations.append(
            {
                "category_id": labels.index(obj.label) + 1,
                "segmentation": segmentation,
                "area": area,
                "bbox": bbox_xywh(rle),
                "iscrowd": 0,
                "score": round(float(obj.score), 4),
            }
        )
    return annotations


def _flat_polygon(points: np.ndarray) -> list[float]:
    return [round(float(v), 2) for v in points.reshape(-1)]


def categories(labels: list[str]) -> list[dict[str, Any]]:
    """COCO categories: ``id`` = class id (1-based, as in the indexed PNGs)."""
    return [{"id": i, "name": name, "supercategory": "object"} for i, name in enumerate(labels, start=1)]


def assemble_chunks(labels: list[str], targets: Iterable[dict[str, Any]]) -> Iterator[bytes]:
    """The bytes of :func:`assemble`'s dataset as ``atomic.write_json(..., indent=None)`` writes it,
    in chunks, one target at a time (the annotations wait in a temporary file): the file of a
    million images without the dataset in memory."""
    spool = streamed.Spool()
    count = {"annotations": 0}

    def images() -> Iterator[dict[str, Any]]:
        for image_id, target in enumerate(targets, start=1):
            yield {
                "id": image_id,
                "file_name": target["file_name"],
                "width": target["width"],
                "height": target["height"],
            }
            for annotation in target["annotations"]:
                count["annotations"] += 1
                prefix = b", " if count["annotations"] > 1 else b""
                spool.write(prefix + streamed.dumps({"id": count["annotations"], "image_id": image_id, **annotation}))

    yield b'{"info": ' + streamed.dumps(_info()) + b', "licenses": [], "images": '
    yield from streamed.compact_list(images())
    yield b', "annotations": ['
    yield from spool.chunks()
    yield b'], "categories": ' + streamed.dumps(categories(labels)) + b"}\n"


def _info() -> dict[str, Any]:
    return {"description": "SANSA predictions", "version": __version__}


def assemble(labels: list[str], targets: list[dict[str, Any]]) -> dict[str, Any]:
    """The COCO dataset from per-target records, in the given order.

    Args:
        targets: dicts with ``file_name``, ``width``, ``height`` and ``annotations`` (from
            :func:`object_annotations`). Image ids are 1..N in this order, annotation ids
            1..M, so the same targets always give the same file.
    """
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for image_id, target in enumerate(targets, start=1):
        images.append(
            {"id": image_id, "file_name": target["file_name"], "width": target["width"], "height": target["height"]}
        )
        for annotation in target["annotations"]:
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, **annotation})
    return {
        "info": _info(),
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": categories(labels),
    }
