"""The objects an export shows: the result's own, or one per class (``per_class``, or none given).

Objects are :class:`~sansa.records.SegmentedObject`: ``bool [H, W]`` masks inside their class's
pixels of the label map, disjoint, boxes ``[x0, y0, x1, y1]`` in pixel edges (exclusive ends).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from sansa.records import SegmentedObject


def mask_box(mask: np.ndarray) -> np.ndarray:
    """``float32 [4]`` ``x0, y0, x1, y1`` around a non-empty ``bool [H, W]`` mask, in pixel edges
    (a mask in columns 3..5 has ``x0 = 3, x1 = 6``)."""
    rows, cols = np.any(mask, axis=1), np.any(mask, axis=0)
    y0, y1 = np.flatnonzero(rows)[[0, -1]]
    x0, x1 = np.flatnonzero(cols)[[0, -1]]
    return np.array([x0, y0, x1 + 1, y1 + 1], dtype=np.float32)


def class_objects(label_map: np.ndarray, labels: Sequence[str], scores: Mapping[str, float]) -> list[SegmentedObject]:
    """One object per class present in ``label_map`` (``uint16 [H, W]``): the class's mask,
    with the class's score (0 when it has none)."""
    objects = []
    for class_id, label in enumerate(labels, start=1):
        mask = label_map == class_id
        if mask.any():
            objects.append(SegmentedObject(label, mask, mask_box(mask), float(scores.get(label, 0.0))))
    return objects


def export_objects(
    label_map: np.ndarray,
    labels: Sequence[str],
    scores: Mapping[str, float],
    objects: Sequence[SegmentedObject] | None,
    per_class: bool,
) -> list[SegmentedObject]:
    """The objects to export, class by class in label order.

    With ``per_class`` (or no objects given) one object per class. Otherwise the given objects;
    a class with pixels but no object (a result made without objects, e.g. a hand-drawn mask)
    gets one object, its whole mask, so every class's pixels are always exported.

    Raises:
        ValueError: an object of an unknown class, or a mask of another size.
    """
    if per_class or not objects:
        return class_objects(label_map, labels, scores)
    by_class: dict[str, list[SegmentedObject]] = {label: [] for label in labels}
    for obj in objects:
        if obj.label not in by_class:
            raise ValueError(f"object of class {obj.label!r}, not one of {list(labels)}")
        if obj.mask.shape != label_map.shape:
            raise ValueError(f"object mask {obj.mask.shape} differs from the label map's {label_map.shape}")
        if obj.mask.any():  # an empty object has nothing to annotate
            by_class[obj.label].append(obj)
    whole = {o.label: o for o in class_objects(label_map, labels, scores)}
    return [obj for label in labels for obj in (by_class[label] or ([whole[label]] if label in whole else []))]


def objects_per_class(objects: Sequence[SegmentedObject], labels: Sequence[str]) -> dict[str, int]:
    """How many objects each class has (every label a key)."""
    counts = dict.fromkeys(labels, 0)
    for obj in objects:
        counts[obj.label] += 1
    return counts
