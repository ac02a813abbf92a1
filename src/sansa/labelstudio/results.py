"""Label Studio results <-> sansa prompts and masks.

Label Studio gives region coordinates in percent of the image (``x``, ``y``, ``width``,
``height``, polygon ``points``: 0..100 of ``original_width`` / ``original_height``, ``x`` to the
right, ``y`` down, from the image's top-left corner); brush regions are RLE
(:mod:`sansa.export.brush_rle`) at the image's own size. sansa works in pixels of the same image
(``x`` = column, ``y`` = row).

Reading an annotation (:func:`annotation_prompts`): every region becomes part of a reference of
its class (a smart tool's clicks only where the class has no other control). Brushes and
polygons of one class in one annotation are merged into one mask; all keypoints of one class are
one points prompt; each rectangle is a box prompt of its own (its ``rotation`` is ignored: the
box is the unrotated one).

Writing (:func:`segmentation_results`): one region per object (:class:`~sansa.records.SegmentedObject`)
in the project's control type: its brush RLE (``brushlabels``), the outline of its largest
hole-free piece (``polygonlabels``), its box (``rectanglelabels``) or its centre
(``keypointlabels``). Objects smaller than ``min_area`` pixels are left out, and at most
``max_objects`` per class are written (the highest-scoring ones).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np

from sansa.errors import SansaError
from sansa.export import brush_rle as rle
from sansa.export.shapes import components, polygons, rasterize_polygons
from sansa.labelstudio.config import Control, LabelConfig
from sansa.records import Prompt, Segmentation, SegmentedObject

#: the defaults of :func:`segmentation_results` (the CLI passes only what the user set)
MIN_AREA = 16
MAX_OBJECTS = 100


@dataclass(frozen=True)
class ReferencePrompt:
    """One reference to add: its class and what was marked (pixels of the task's image)."""

    label: str
    prompt: Prompt


def annotation_prompts(
    results: list[dict[str, Any]], config: LabelConfig, height: int, width: int
) -> list[ReferencePrompt]:
    """The references an annotation's results make, in a stable order (masks, boxes, points per class).

    Args:
        results: the annotation's ``result`` list.
        config: the project's config (results of other controls are ignored).
        height, width: the image's size in pixels.
    """
    masks: dict[str, np.ndarray] = {}
    boxes: list[tuple[str, list[float]]] = []
    points: dict[str, list[list[float]]] = {}
    for result in results:
        control = config.control_named(result.get("from_name", ""))
        if control is None:
            continue
        value = result.get("value") or {}
        labels = value.get(control.type)
        if not labels or result.get("type") != control.type:
            continue
        for label in labels:
            if label not in control.labels or config.control_for(label) is not control and control.smart:
                continue  # not a class of it, or a smart tool's click where the class has a real control
            if control.type in ("brushlabels", "polygonlabels"):
                region = _region_mask(control, value, result, height, width)
                masks[label] = masks[label] | region if label in masks else region
            elif control.type == "rectanglelabels":
                boxes.append((label, _box(value, height, width)))
            else:
                points.setdefault(label, []).append(_point(value, height, width))
    prompts = [ReferencePrompt(label, Prompt.create(mask=mask)) for label, mask in masks.items() if mask.any()]
    prompts += [ReferencePrompt(label, Prompt.create(box=box)) for label, box in boxes]
    prompts += [ReferencePrompt(label, Prompt.create(points=xy)) for label, xy in points.items()]
    return prompts


def _region_mask(
    control: Control, value: dict[str, Any], result: dict[str, Any], height: int, width: int
) -> np.ndarray:
    if control.type == "brushlabels":
        if value.get("format", "rle") != "rle" or "rle" not in value:
            raise SansaError(f"result {result.get('id', '?')}: brush region without an RLE")
        size = (result.get("original_height", height), result.get("original_width", width))
        if size != (height, width):
            raise SansaError(f"result {result.get('id', '?')}: brush is {size[1]}x{size[0]}, image {width}x{height}")
        return rle.decode(value["rle"], height, width)
    shape = np.asarray(value.get("points") or [], dtype=np.float64).reshape(-1, 2)
    if len(shape) < 3:
        return np.zeros((height, width), dtype=bool)
    return rasterize_polygons([shape * [width / 100.0, height / 100.0]], height, width)


def _box(value: dict[str, Any], height: int, width: int) -> list[float]:
    x, y = float(value["x"]) * width / 100.0, float(value["y"]) * height / 100.0
    w, h = float(value["width"]) * width / 100.0, float(value["height"]) * height / 100.0
    return [max(0.0, x), max(0.0, y), min(float(width), x + w), min(float(height), y + h)]


def _point(value: dict[str, Any], height: int, width: int) -> list[float]:
    x, y = float(value["x"]) * width / 100.0, float(value["y"]) * height / 100.0
    return [min(max(x, 0.0), float(width)), min(max(y, 0.0), float(height))]


def objects_of(segmentation: Segmentation) -> list[SegmentedObject]:
    """The segmentation's objects; where it has none for a class (an older predictor, or a mask
    without objects filled in), each 8-connected part of the class's mask is one object."""
    found = list(segmentation.objects)
    have = {obj.label for obj in found}
    for label in segmentation.labels:
        if label in have:
            continue
        score = segmentation.predictions[label].score if label in segmentation.predictions else 0.0
        for part in components(segmentation.mask(label)):
            found.append(SegmentedObject(label, part, _box_of(part), float(score)))
    return found


def segmentation_results(
    segmentation: Segmentation, config: LabelConfig, min_area: int = MIN_AREA, max_objects: int = MAX_OBJECTS
) -> tuple[list[dict[str, Any]], float]:
    """One Label Studio region per object of the classes the config has, and their mean score.

    Args:
        segmentation: sansa's result for the task's image.
        config: the project's config (a class goes to the first control that has it; classes
            no control has any more are left out).
        min_area: objects of fewer pixels are left out.
        max_objects: at most this many objects per class (the highest-scoring first).
    """
    per_class: dict[str, list[SegmentedObject]] = {}
    for obj in objects_of(segmentation):
        if obj.label in config.labels and obj.area >= min_area:
            per_class.setdefault(obj.label, []).append(obj)
    results, scores = [], []
    for label, objects in per_class.items():
        control = config.control_for(label)
        for obj in sorted(objects, key=lambda o: -o.score)[:max_objects]:
            results += object_results(obj.mask, label, control, obj.score)
            scores.append(obj.score)
    return results, round(sum(scores) / len(scores), 4) if scores else 0.0


def object_results(mask: np.ndarray, label: str, control: Control, score: float | None = None) -> list[dict[str, Any]]:
    """The Label Studio region of one object (none for an empty mask), in the control's type.

    Args:
        mask: ``bool [H, W]`` at the task image's size: the object's pixels.
        label: the class name (one of ``control.labels``).
        control: where the result goes (``from_name``/``to_name``/``type``).
        score: the decoder's confidence, written on the result.
    """
    height, width = mask.shape
    if not mask.any():
        return []
    value: dict[str, Any]
    if control.type == "brushlabels":
        value = {"format": "rle", "rle": rle.encode(mask)}
    elif control.type == "polygonlabels":
        outline = max(polygons(mask), key=_polygon_area)  # a region is one ring: the largest piece's
        value = {"points": _percent(outline, height, width).tolist(), "closed": True}
    elif control.type == "rectanglelabels":
        value = _rectangle(mask, height, width)
    else:
        value = _keypoint(mask, height, width)
    value[control.type] = [label]
    result = {
        "id": uuid.uuid4().hex[:10],
        "from_name": control.name,
        "to_name": control.to_name,
        "type": control.type,
        "original_width": width,
        "original_height": height,
        "image_rotation": 0,
        "value": value,
    }
    if score is not None:
        result["score"] = round(float(score), 4)
    return [result]


def _box_of(mask: np.ndarray) -> np.ndarray:
    """``float32 [4]`` ``x0, y0, x1, y1`` around a non-empty mask, in pixel edges."""
    rows, cols = np.nonzero(mask)
    return np.array([cols.min(), rows.min(), cols.max() + 1, rows.max() + 1], dtype=np.float32)


def _polygon_area(xy: np.ndarray) -> float:
    x, y = xy[:, 0], xy[:, 1]
    return abs(float(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1)))) / 2


def _percent(xy: np.ndarray, height: int, width: int) -> np.ndarray:
    return np.round(xy * [100.0 / width, 100.0 / height], 4)


def _rectangle(part: np.ndarray, height: int, width: int) -> dict[str, Any]:
    rows, cols = np.nonzero(part)
    x0, y0 = _percent(np.array([cols.min(), rows.min()], dtype=np.float64), height, width)
    x1, y1 = _percent(np.array([cols.max() + 1, rows.max() + 1], dtype=np.float64), height, width)
    return {"x": float(x0), "y": float(y0), "width": float(x1 - x0), "height": float(y1 - y0), "rotation": 0}


def _keypoint(part: np.ndarray, height: int, width: int) -> dict[str, Any]:
    rows, cols = np.nonzero(part)
    x, y = _percent(np.array([cols.mean() + 0.5, rows.mean() + 0.5]), height, width)
    return {"x": float(x), "y": float(y), "width": 0.5}
