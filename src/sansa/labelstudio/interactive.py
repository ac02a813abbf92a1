"""Label Studio's interactive mode: a click or a box on the open task, answered at once.

Label Studio's smart tools (``<KeyPointLabels smart="true">``, ``<RectangleLabels smart="true">``)
send the annotator's clicks and boxes in ``/predict``'s ``context.result``, in percent of the image
like any result (``x``, ``y``, ``width``, ``height``; a keypoint's ``is_positive`` is false for a
"not this" click). As in Label Studio's official SAM2 backend, SAM2's mask decoder turns them
into the clicked object's mask on this image. What only a few-shot model adds: that object then
serves as a reference of its class (with the project's own references of the class), and every
other object of the class in the image is returned too, one region each.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from sansa.errors import SansaError
from sansa.export.objects import mask_box
from sansa.labelstudio.config import LabelConfig
from sansa.labelstudio.results import control_results, objects_of
from sansa.predictor import SansaPredictor
from sansa.records import Prompt, SegmentedObject

if TYPE_CHECKING:
    from sansa.labelstudio.backend import BackendOptions

PROMPT_TYPES = ("keypointlabels", "rectanglelabels")
#: an object of the class overlapping the clicked one by more than this share of its area is the same object
SAME_OBJECT_OVERLAP = 0.5


def has_prompt(context: dict[str, Any]) -> bool:
    """Whether a ``/predict`` context holds a click or a box."""
    results = context.get("result") if isinstance(context, dict) else None
    return isinstance(results, list) and any(isinstance(r, dict) and r.get("type") in PROMPT_TYPES for r in results)


def clicked_prompt(context: dict[str, Any], config: LabelConfig, height: int, width: int) -> tuple[str, Prompt]:
    """The class and the prompt (points with labels and/or a box, pixels) the context's clicks make.

    Raises :class:`SansaError` (one line) when the context has no click or box of a known class.
    """
    points, positive, box, label = [], [], None, None
    for result in context.get("result") or []:
        kind = result.get("type") if isinstance(result, dict) else None
        value = result.get("value") if kind in PROMPT_TYPES else None
        if not isinstance(value, dict):
            continue
        labels = value.get(kind)
        labels = labels if isinstance(labels, list) else []
        label = label or next((name for name in labels if name in config.labels), None)
        try:
            x, y = float(value["x"]) * width / 100.0, float(value["y"]) * height / 100.0
            if kind == "keypointlabels":
                points.append([min(max(x, 0.0), width), min(max(y, 0.0), height)])
                positive.append(0 if result.get("is_positive") is False else 1)
            else:
                w, h = float(value["width"]) * width / 100.0, float(value["height"]) * height / 100.0
                box = [max(0.0, x), max(0.0, y), min(float(width), x + w), min(float(height), y + h)]
        except (KeyError, TypeError, ValueError):
            raise SansaError(f"context: a {kind} without numeric x, y (and width, height)") from None
    if label is None:
        raise SansaError(f"context: no click or box with a class of the config ({', '.join(config.labels)})")
    prompt = Prompt.create(points=points or None, labels=positive or None, box=box)
    return label, prompt


def clicked_results(
    predictor: SansaPredictor, image: np.ndarray, context: dict[str, Any], config: LabelConfig, options: BackendOptions
) -> tuple[list[dict[str, Any]], float]:
    """Regions: the clicked object first, then the class's other objects in this image.

    Args:
        predictor: the project's predictor (its references of the class join the click's).
        image: ``uint8 [H, W, 3]``, the open task's image.
        context: ``/predict``'s context (see the module's docstring).
        config: the project's config; regions go to the class's (non-smart) control.
        options: the backend's options (:class:`~sansa.labelstudio.backend.BackendOptions`): its
            ``objects`` split the image into objects, their ``min_area`` and ``max_objects`` as
            for batch predictions.

    Returns:
        The results and the clicked object's score (the decoder's IoU estimate).
    """
    height, width = image.shape[:2]
    label, prompt = clicked_prompt(context, config, height, width)
    one_image = predictor.sibling()
    clicked = one_image.add_reference(image, prompt=prompt, label=label, name="the click")
    for reference in predictor.references:
        if reference.label == label:
            one_image.add_encoded(reference)
    control = config.control_for(label)
    score = float(clicked.score or 0.0)
    objects = options.objects
    segmentation = one_image.segment(image, name="the open task", objects=objects)
    others = []
    for obj in objects_of(segmentation):
        if obj.label != label:
            continue
        rest = obj.mask & ~clicked.mask
        if obj.area and np.count_nonzero(obj.mask & clicked.mask) > SAME_OBJECT_OVERLAP * obj.area:
            continue  # the clicked object itself
        if np.count_nonzero(rest) >= objects.area_floor(height, width):
            others.append(SegmentedObject(label, rest, mask_box(rest), obj.score))
    others = sorted(others, key=lambda obj: -obj.score)[: max(objects.max_objects - 1, 0)]
    first = [SegmentedObject(label, clicked.mask, mask_box(clicked.mask), score)] if clicked.mask.any() else []
    return control_results(segmentation.name, first + others, control), round(score, 4)
