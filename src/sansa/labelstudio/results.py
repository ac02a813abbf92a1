"""Label Studio results <-> sansa prompts and masks.

Label Studio gives region coordinates in percent of the image (``x``, ``y``, ``width``,
``height``, polygon ``points``: 0..100 of ``original_width`` / ``original_height``, ``x`` to the
right, ``y`` down, from the image's top-left corner); brush regions are RLE
(:mod:`sansa.export.brush_rle`) at the image's own size. sansa works in pixels of the same image
(``x`` = column, ``y`` = row).

Reading an annotation (:func:`annotation_prompts`): every region becomes part of a reference of
its class. Brushes and polygons of one class in one annotation are merged into one mask; all
keypoints of one class are one points prompt; each rectangle is a box prompt of its own (its
``rotation`` is ignored: the box is the unrotated one).

Writing (:func:`mask_results`): one class mask becomes one brush region (``brushlabels``), its
outer polygons (``polygonlabels``), the boxes of its parts (``rectanglelabels``) or the centres
of its parts (``keypointlabels``), as the project's control type asks.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import numpy as np

from sansa.errors import SansaError
from sansa.export import brush_rle as rle
from sansa.export.shapes import components, polygons, rasterize_polygons
from sansa.labelstudio.config import Control, LabelConfig
from sansa.records import Prompt


@dataclass(frozen=True)
class ReferencePrompt:
    """One reference to add: its class and what was marked (pixels of the task's image)."""

    label: str
    prompt: Prompt


def annotation_prompts(results: list[dict], config: LabelConfig, height: int, width: int) -> list[ReferencePrompt]:
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
        value = result.get("value") or {}
        labels = value.get(control.type) if control is not None else None
        if not labels or result.get("type") != control.type:
            continue
        for label in labels:
            if label not in control.labels:
                continue
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


def _region_mask(control: Control, value: dict, result: dict, height: int, width: int) -> np.ndarray:
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


def _box(value: dict, height: int, width: int) -> list[float]:
    x, y = float(value["x"]) * width / 100.0, float(value["y"]) * height / 100.0
    w, h = float(value["width"]) * width / 100.0, float(value["height"]) * height / 100.0
    return [max(0.0, x), max(0.0, y), min(float(width), x + w), min(float(height), y + h)]


def _point(value: dict, height: int, width: int) -> list[float]:
    x, y = float(value["x"]) * width / 100.0, float(value["y"]) * height / 100.0
    return [min(max(x, 0.0), float(width)), min(max(y, 0.0), float(height))]


def mask_results(mask: np.ndarray, label: str, control: Control, score: float | None = None) -> list[dict]:
    """Label Studio results showing one class mask in the control's type.

    Args:
        mask: ``bool [H, W]`` at the task image's size.
        label: the class name (one of ``control.labels``).
        control: where the results go (``from_name``/``to_name``/``type``).
        score: the decoder's confidence, written on each result.
    """
    height, width = mask.shape
    if not mask.any():
        return []
    values: list[dict]
    if control.type == "brushlabels":
        values = [{"format": "rle", "rle": rle.encode(mask)}]
    elif control.type == "polygonlabels":
        values = [{"points": _percent(p, height, width).tolist(), "closed": True} for p in polygons(mask)]
    elif control.type == "rectanglelabels":
        values = [_rectangle(part, height, width) for part in components(mask)]
    else:
        values = [_keypoint(part, height, width) for part in components(mask)]
    results = []
    for value in values:
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
        results.append(result)
    return results


def _percent(xy: np.ndarray, height: int, width: int) -> np.ndarray:
    return np.round(xy * [100.0 / width, 100.0 / height], 4)


def _rectangle(part: np.ndarray, height: int, width: int) -> dict:
    rows, cols = np.nonzero(part)
    x0, y0 = _percent(np.array([cols.min(), rows.min()], dtype=np.float64), height, width)
    x1, y1 = _percent(np.array([cols.max() + 1, rows.max() + 1], dtype=np.float64), height, width)
    return {"x": float(x0), "y": float(y0), "width": float(x1 - x0), "height": float(y1 - y0), "rotation": 0}


def _keypoint(part: np.ndarray, height: int, width: int) -> dict:
    rows, cols = np.nonzero(part)
    x, y = _percent(np.array([cols.mean() + 0.5, rows.mean() + 0.5]), height, width)
    return {"x": float(x), "y": float(y), "width": 0.5}
