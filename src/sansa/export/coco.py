"""COCO annotations: per-target records (kept while a run goes) and the assembled dataset.

One annotation per class per image by default: SANSA predicts a semantic mask per class, and
that mask is the faithful unit. ``instances=True`` splits each class mask into its 8-connected
parts, one annotation each. Segmentations are compressed RLE (``counts`` as a string, as
pycocotools writes them), or with ``polygons=True`` lists of polygons for tools that cannot read
RLE: hole-free pieces that rasterise back to exactly the mask (see :mod:`sansa.export.shapes`;
holes are cut around, never filled), with ``area`` the polygons' area as pycocotools measures
it. Every annotation carries ``score``, the decoder's IoU estimate for its class, so the file is
also a valid COCO results file.
"""

from __future__ import annotations

import numpy as np

from sansa._version import __version__
from sansa.export.shapes import bbox_xywh, components, polygon_area, polygons, to_rle


def target_annotations(
    label_map: np.ndarray,
    labels: list[str],
    scores: dict[str, float],
    instances: bool = False,
    use_polygons: bool = False,
) -> list[dict]:
    """Annotations of one target, without ``id``/``image_id`` (given when the dataset is assembled).

    Args:
        label_map: ``uint16 [H, W]``, 0 background, ``i + 1`` = ``labels[i]``.
        labels: the class names; category id of ``labels[i]`` is ``i + 1``.
        scores: the decoder's IoU estimate per class.
        instances: one annotation per connected part instead of one per class.
        use_polygons: polygons instead of RLE.
    """
    annotations = []
    for class_id, label in enumerate(labels, start=1):
        mask = label_map == class_id
        if not mask.any():
            continue
        for piece in components(mask) if instances else [mask]:
            rle = to_rle(piece)
            if use_polygons:
                segmentation: dict | list = [_flat_polygon(p) for p in polygons(piece)]
                area = polygon_area(segmentation, *piece.shape)
            else:
                segmentation, area = rle, int(piece.sum())
            annotations.append(
                {
                    "category_id": class_id,
                    "segmentation": segmentation,
                    "area": area,
                    "bbox": bbox_xywh(rle),
                    "iscrowd": 0,
                    "score": round(float(scores.get(label, 0.0)), 4),
                }
            )
    return annotations


def _flat_polygon(points: np.ndarray) -> list[float]:
    return [round(float(v), 2) for v in points.reshape(-1)]


def categories(labels: list[str]) -> list[dict]:
    """COCO categories: ``id`` = class id (1-based, as in the indexed PNGs)."""
    return [{"id": i, "name": name, "supercategory": "object"} for i, name in enumerate(labels, start=1)]


def assemble(labels: list[str], targets: list[dict]) -> dict:
    """The COCO dataset from per-target records, in the given order.

    Args:
        targets: dicts with ``file_name``, ``width``, ``height`` and ``annotations`` (from
            :func:`target_annotations`). Image ids are 1..N in this order, annotation ids
            1..M, so the same targets always give the same file.
    """
    images, annotations = [], []
    for image_id, target in enumerate(targets, start=1):
        images.append(
            {"id": image_id, "file_name": target["file_name"], "width": target["width"], "height": target["height"]}
        )
        for annotation in target["annotations"]:
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, **annotation})
    return {
        "info": {"description": "SANSA predictions", "version": __version__},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": categories(labels),
    }
