"""Label Studio's own task JSON: each image a task, each class a brush region (brush RLE).

``labelstudio/`` holds::

    tasks.json    [{"data": {"image": "/data/local-files/?d=<name>"}, "annotations": [{"result": [...]}]}, ...]
    config.xml    the labelling config the results fit (<Image name="image"> + <BrushLabels name="label">)

Import: create a project with ``config.xml`` as its labelling config, then import ``tasks.json``
(Label Studio's Import button, or ``POST /api/projects/<id>/import``). Images: start Label Studio
with ``LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true`` and ``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT``
set to the image folder (the names are relative to it) and add that folder as the project's
Local Files storage. Each region is a ``brushlabels`` result at the image's own size with the
class's ``score``; masks are the label map's classes, so they never overlap, and decode
(Label Studio's editor, ``label-studio-converter``) to exactly the PNG masks.
"""

from __future__ import annotations

import hashlib
import urllib.parse
from collections.abc import Mapping, Sequence
from pathlib import Path
from xml.sax.saxutils import quoteattr

import numpy as np

from sansa import atomic
from sansa.export import brush_rle as rle
from sansa.export.palette import class_color

FOLDER = "labelstudio"
IMAGE_NAME, CONTROL_NAME = "image", "label"
LOCAL_FILES_URL = "/data/local-files/?d="


def target_results(name: str, label_map: np.ndarray, labels: Sequence[str], scores: Mapping[str, float]) -> list[dict]:
    """One target's brush regions, one per class present.

    Args:
        name: the target's name (relative to the image root); seeds the regions' ids.
        label_map: ``uint16 [H, W]``: 0 background, ``i + 1`` = ``labels[i]``.
        labels: the class names.
        scores: per class, the decoder's IoU estimate.
    """
    height, width = label_map.shape
    results = []
    for class_id, label in enumerate(labels, start=1):
        mask = label_map == class_id
        if not mask.any():
            continue
        region_id = hashlib.sha256(f"{name}\n{label}".encode()).hexdigest()[:10]  # same bytes on every run
        result = {
            "id": region_id,
            "from_name": CONTROL_NAME,
            "to_name": IMAGE_NAME,
            "type": "brushlabels",
            "original_width": int(width),
            "original_height": int(height),
            "image_rotation": 0,
            "value": {"format": "rle", "rle": rle.encode(mask), "brushlabels": [label]},
        }
        if label in scores:
            result["score"] = round(float(scores[label]), 4)
        results.append(result)
    return results


def label_config(labels: Sequence[str]) -> str:
    """The labelling config of the exported results: the image and a BrushLabels of the classes."""
    lines = [
        "<View>",
        f'  <Image name="{IMAGE_NAME}" value="${IMAGE_NAME}" zoom="true"/>',
        f'  <BrushLabels name="{CONTROL_NAME}" toName="{IMAGE_NAME}">',
    ]
    for class_id, label in enumerate(labels, start=1):
        color = "#{:02x}{:02x}{:02x}".format(*class_color(class_id))
        lines.append(f"    <Label value={quoteattr(label)} background={quoteattr(color)}/>")
    return "\n".join(lines + ["  </BrushLabels>", "</View>", ""])


def task(name: str, results: list[dict]) -> dict:
    """One Label Studio task: the image as a local-files URL and the regions as its annotation."""
    url = LOCAL_FILES_URL + urllib.parse.quote(name, safe="/")
    return {"data": {IMAGE_NAME: url}, "annotations": [{"result": results, "ground_truth": False}]}


def write_dataset(out_dir: Path, labels: Sequence[str], targets: Sequence[tuple[str, list[dict]]]) -> None:
    """Write ``tasks.json`` and ``config.xml`` into ``out_dir`` (atomically), targets in the given order."""
    atomic.write_json(Path(out_dir) / "tasks.json", [task(name, results) for name, results in targets], indent=None)
    atomic.write_text(Path(out_dir) / "config.xml", label_config(labels))
