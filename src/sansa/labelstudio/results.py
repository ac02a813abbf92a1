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
in the project's control type, made by the ``labelstudio`` export's own
:func:`~sansa.export.labelstudio.object_results`: its brush RLE (``brushlabels``), its outline,
pieces joined (``polygonlabels``), its box (``rectanglelabels``) or its innermost pixel
(``keypointlabels``). Objects smaller than the options' ``min_area`` pixels are left out, and at
most ``max_objects`` per class are written (the highest-scoring ones).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sansa.errors import SansaError
from sansa.export import brush_rle as rle
from sansa.export.labelstudio import object_results
from sansa.export.objects import mask_box
from sansa.export.shapes import components, rasterize_polygons
from sansa.labelstudio.config import Control, LabelConfig
from sansa.records import ObjectOptions, Prompt, Segmentation, SegmentedObject


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
        try:
            _read_result(result, config, height, width, masks, boxes, points)
        except (AttributeError, KeyError, TypeError, ValueError) as err:  # a hand-made or foreign result
            raise SansaError(
                f"result {result.get('id', '?')}: not a readable {result.get('type')} region "
                f"({type(err).__name__}: {err})"
            ) from None
    prompts = [ReferencePrompt(label, Prompt.create(mask=mask)) for label, mask in masks.items() if mask.any()]
    prompts += [ReferencePrompt(label, Prompt.create(box=box)) for label, box in boxes]
    prompts += [ReferencePrompt(label, Prompt.create(points=xy)) for label, xy in points.items()]
    return prompts


def _read_result(
    result: dict[str, Any],
    config: LabelConfig,
    height: int,
    width: int,
    masks: dict[str, np.ndarray],
    boxes: list[tuple[str, list[float]]],
    points: dict[str, list[list[float]]],
) -> None:
    """Add one result's region to ``masks``, ``boxes`` or ``points`` (nothing for other controls)."""
    control = config.control_named(result.get("from_name", ""))
    if control is None:
        return
    value = result.get("value") or {}
    labels = value.get(control.type)
    if not labels or result.get("type") != control.type:
        return
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
            found.append(SegmentedObject(label, part, mask_box(part), float(score)))
    return found


def segmentation_results(
    segmentation: Segmentation, config: LabelConfig, options: ObjectOptions | None = None
) -> tuple[list[dict[str, Any]], float]:
    """One Label Studio region per object of the classes the config has, and their mean score.

    Args:
        segmentation: sansa's result for the task's image.
        config: the project's config (a class goes to the first control that has it; classes
            no control has any more are left out).
        options: objects under its ``min_area`` (:meth:`ObjectOptions.area_floor` of the image)
            get no region, and at most its ``max_objects`` per class do (the highest-scoring);
            default: :class:`ObjectOptions`'s defaults.
    """
    options = options or ObjectOptions()
    min_area = options.area_floor(*segmentation.size)
    per_class: dict[str, list[SegmentedObject]] = {}
    for obj in objects_of(segmentation):
        if obj.label in config.labels and obj.area >= min_area:
            per_class.setdefault(obj.label, []).append(obj)
    results, scores = [], []
    for label, objects in per_class.items():
        best = sorted(objects, key=lambda o: -o.score)[: options.max_objects]
        results += control_results(segmentation.name, best, config.control_for(label))
        scores += [obj.score for obj in best]
    return results, round(sum(scores) / len(scores), 4) if scores else 0.0


def control_results(name: str, objects: Sequence[SegmentedObject], control: Control) -> list[dict[str, Any]]:
    """The regions of ``objects`` (one each, none for an empty mask) in ``control``'s type and
    names: :func:`sansa.export.labelstudio.object_results`, the export's own regions.

    Args:
        name: the image's name (seeds the regions' ids: unique per label and position in ``objects``).
        objects: ``bool [H, W]`` masks at the task image's size.
        control: where the results go (``from_name``/``to_name``/``type``).
    """
    return object_results(name, objects, control.type, from_name=control.name, to_name=control.to_name)
