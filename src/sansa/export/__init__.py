"""Writing segmentations in the formats labelling tools read: PNG masks, indexed PNG, COCO, YOLO, overlays.

::

    from sansa.export import FolderWriter, OutputFormat
    with FolderWriter(Path("out"), predictor.labels, [OutputFormat.COCO, "png"]) as writer:
        for path in paths:
            name = path.relative_to(folder).as_posix()
            if not writer.is_done(name):
                seg, image = predictor.segment(path), load_image(path)
                scores = {label: p.score for label, p in seg.predictions.items()}
                writer.write(name, image, seg.label_map, seg.labels, scores, objects=seg.objects)

Whole labelling runs (discovery, batches, resuming, failures, ``run.json``) are :mod:`sansa.labeling`.

Each format is an exporter registered by name (:mod:`sansa.export.exporter`; the built-in ones
are the modules of :mod:`sansa.export.exporters`). Object formats (coco, yolo, instances,
labelstudio, overlay outlines) write one annotation per object of ``Segmentation.objects``
(``per_class=True``: one per class); png and indexed are per class.

Class ids: 0 background, ``i + 1`` = ``labels[i]`` (YOLO class indices are ``i``); colours in
:mod:`sansa.drawing.palette`; both are written to ``classes.json``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from sansa.export.formats import DEFAULT_FORMATS, CocoLayout, ImageMode, OutputFormat, parse_formats

if TYPE_CHECKING:
    from sansa.drawing.palette import class_color, classes_table
    from sansa.export.exporter import Exporter, format_names, register
    from sansa.export.writer import FolderWriter, TargetRecord

__all__ = [
    "DEFAULT_FORMATS",
    "CocoLayout",
    "Exporter",
    "FolderWriter",
    "ImageMode",
    "OutputFormat",
    "TargetRecord",
    "class_color",
    "classes_table",
    "format_names",
    "parse_formats",
    "register",
]
# Loaded on first use: listing the formats (the CLI's --format choices) imports no OpenCV.
_LAZY = {
    "Exporter": "sansa.export.exporter",
    "format_names": "sansa.export.exporter",
    "register": "sansa.export.exporter",
    "class_color": "sansa.drawing.palette",
    "classes_table": "sansa.drawing.palette",
    "FolderWriter": "sansa.export.writer",
    "TargetRecord": "sansa.export.writer",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'sansa.export' has no attribute {name!r}")
