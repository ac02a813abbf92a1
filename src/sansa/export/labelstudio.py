"""Label Studio's own task JSON: each image a task, each object a region.

``labelstudio/`` holds::

    tasks.json    [{"data": {"image": "/data/local-files/?d=<name>"},
                    "predictions": [{"model_version": "...", "score": ..., "result": [...]}]}, ...]
    config.xml    the labelling config the results fit (<Image name="image"> + one labels control)

Results are written as ``predictions`` (with a ``model_version``), so imported tasks stay
unlabelled and in the review queue; ``annotations=True`` writes them as annotations instead
(every task then counts as labelled). Regions are one per object (one per class with
``per_class``), in the control the export was asked for:

=========== ===================================================================================
control     region
=========== ===================================================================================
brush       ``brushlabels``: the object's mask as Label Studio's brush RLE (exact)
polygon     ``polygonlabels``: the object's outline, its pieces joined (as in YOLO)
rectangle   ``rectanglelabels``: the object's box
keypoint    ``keypointlabels``: the object's most inner pixel (farthest from its edge)
=========== ===================================================================================

Coordinates are percent of the image (0..100, ``x`` right, ``y`` down); each region carries its
object's ``score``. Import: create a project with ``config.xml`` as its labelling config, then
import ``tasks.json`` (Label Studio's Import button, or ``POST /api/projects/<id>/import``).
"""

from __future__ import annotations

import hashlib
import urllib.parse
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import quoteattr

import cv2
import numpy as np

from sansa import atomic
from sansa.drawing.palette import class_color
from sansa.export import brush_rle as rle
from sansa.export import streamed
from sansa.export.shapes import polygons
from sansa.export.yolo import join_pieces
from sansa.records import SegmentedObject
from sansa.vocab import LabelStudioControl

if TYPE_CHECKING:
    from sansa.fs import AnyPath

FOLDER = "labelstudio"
IMAGE_NAME, CONTROL_NAME = "image", "label"
LOCAL_FILES_URL = "/data/local-files/?d="
#: control name -> (labelling config tag, result type)
CONTROLS = {
    LabelStudioControl.BRUSH: ("BrushLabels", "brushlabels"),
    LabelStudioControl.POLYGON: ("PolygonLabels", "polygonlabels"),
    LabelStudioControl.RECTANGLE: ("RectangleLabels", "rectanglelabels"),
    LabelStudioControl.KEYPOINT: ("KeyPointLabels", "keypointlabels"),
}
#: result type -> control name
CONTROL_OF_TYPE = {kind: control for control, (_, kind) in CONTROLS.items()}


def object_results(
    name: str,
    objects: Sequence[SegmentedObject],
    control: LabelStudioControl | str = LabelStudioControl.BRUSH,
    from_name: str = CONTROL_NAME,
    to_name: str = IMAGE_NAME,
) -> list[dict[str, Any]]:
    """One target's regions, one per object (none for an empty mask). The one place regions are
    made: the ``labelstudio`` export and the Label Studio backend both call it.

    Args:
        name: the target's name (relative to the image root); seeds the regions' ids, so the
            same objects always give the same bytes.
        objects: ``bool [H, W]`` masks (see :class:`~sansa.records.SegmentedObject`).
        control: ``brush``, ``polygon``, ``rectangle`` or ``keypoint`` (see the module's docstring),
            or its result type (``brushlabels``, ...).
        from_name, to_name: the labels control's and the image's names in the labelling config.
    """
    control = LabelStudioControl(CONTROL_OF_TYPE.get(control, control))
    kind = CONTROLS[control][1]
    results = []
    for index, obj in enumerate(objects):
        if not obj.mask.any():
            continue
        height, width = obj.mask.shape
        region_id = hashlib.sha256(f"{name}\n{obj.label}\n{index}".encode()).hexdigest()[:10]
        value = {**_value(control, obj), kind: [obj.label]}
        results.append(
            {
                "id": region_id,
                "from_name": from_name,
                "to_name": to_name,
                "type": kind,
                "original_width": int(width),
                "original_height": int(height),
                "image_rotation": 0,
                "value": value,
                "score": round(float(obj.score), 4),
            }
        )
    return results


def _value(control: LabelStudioControl | str, obj: SegmentedObject) -> dict[str, Any]:
    """The region's ``value`` without its labels."""
    height, width = obj.mask.shape
    scale = np.array([100.0 / width, 100.0 / height])
    if control == "brush":
        return {"format": "rle", "rle": rle.encode(obj.mask)}
    if control == "polygon":
        points = np.round(join_pieces(polygons(obj.mask)) * scale, 4)
        return {"points": points.tolist(), "closed": True}
    if control == "rectangle":
        x0, y0, x1, y1 = (float(v) for v in np.asarray(obj.box, dtype=np.float64))
        (px, py), (pw, ph) = np.round([x0, y0] * scale, 4), np.round([x1 - x0, y1 - y0] * scale, 4)
        return {"x": float(px), "y": float(py), "width": float(pw), "height": float(ph), "rotation": 0}
    x, y = np.round((_inner_pixel(obj.mask) + 0.5) * scale, 4)
    return {"x": float(x), "y": float(y), "width": 0.5}


def _inner_pixel(mask: np.ndarray) -> np.ndarray:
    """``(x, y)`` of the mask's pixel farthest from its edge (a keypoint always on the object)."""
    distance = cv2.distanceTransform(np.pad(mask, 1).astype(np.uint8), cv2.DIST_L2, 3)[1:-1, 1:-1]
    row, col = np.unravel_index(int(np.argmax(distance)), distance.shape)
    return np.array([col, row], dtype=np.float64)


def label_config(
    labels: Sequence[str],
    control: LabelStudioControl | str = LabelStudioControl.BRUSH,
    colors: Sequence[tuple[int, int, int]] | None = None,
) -> str:
    """The labelling config of the exported results: the image and one labels control of the classes,
    in ``colors`` (RGB per class; default: the palette's)."""
    tag = CONTROLS[LabelStudioControl(control)][0]
    lines = [
        "<View>",
        f'  <Image name="{IMAGE_NAME}" value="${IMAGE_NAME}" zoom="true"/>',
        f'  <{tag} name="{CONTROL_NAME}" toName="{IMAGE_NAME}">',
    ]
    for class_id, label in enumerate(labels, start=1):
        color = "#{:02x}{:02x}{:02x}".format(*(colors[class_id - 1] if colors else class_color(class_id)))
        lines.append(f"    <Label value={quoteattr(label)} background={quoteattr(color)}/>")
    return "\n".join(lines + [f"  </{tag}>", "</View>", ""])


def task(name: str, results: list[dict[str, Any]], model_version: str, annotations: bool = False) -> dict[str, Any]:
    """One Label Studio task: the image as a local-files URL, the regions as a prediction of
    ``model_version`` (its score the mean of the regions'), or as an annotation."""
    data = {IMAGE_NAME: LOCAL_FILES_URL + urllib.parse.quote(name, safe="/")}
    if annotations:
        return {"data": data, "annotations": [{"result": results, "ground_truth": False}]}
    scores = [r["score"] for r in results if "score" in r]
    score = round(float(np.mean(scores)), 4) if scores else 0.0
    return {"data": data, "predictions": [{"model_version": model_version, "score": score, "result": results}]}


def write_dataset(
    out_dir: AnyPath,
    labels: Sequence[str],
    targets: Iterable[tuple[str, list[dict[str, Any]]]],
    *,
    model_version: str,
    control: LabelStudioControl | str = LabelStudioControl.BRUSH,
    annotations: bool = False,
) -> None:
    """Write ``tasks.json`` and ``config.xml`` into ``out_dir`` (a ``Path``, or a ``UPath`` on an
    object store: see :mod:`sansa.fs`) atomically, targets in the given order."""
    tasks = (task(name, results, model_version, annotations) for name, results in targets)
    atomic.write_chunks(out_dir / "tasks.json", streamed.list_file(tasks))  # one task at a time
    atomic.write_text(out_dir / "config.xml", label_config(labels, control))
