"""Writing segmentations in the formats labelling tools read: PNG masks, indexed PNG, COCO, YOLO, overlays.

::

    from sansa.export import FolderWriter, OutputFormat
    with FolderWriter(Path("out"), predictor.labels, [OutputFormat.COCO, "png"]) as writer:
        for path in paths:
            name = path.relative_to(folder).as_posix()
            if not writer.is_done(name):
                seg, image = predictor.segment(path), load_image(path)
                scores = {label: p.score for label, p in seg.predictions.items()}
                writer.write(name, image, seg.label_map, seg.labels, scores)

Whole labelling runs (discovery, batches, resuming, failures, ``run.json``) are :mod:`sansa.labeling`.

Class ids: 0 background, ``i + 1`` = ``labels[i]`` (YOLO class indices are ``i``); colours in
:mod:`sansa.export.palette`; both are written to ``classes.json``.
"""

from sansa.export.formats import DEFAULT_FORMATS, CocoLayout, ImageMode, OutputFormat, parse_formats
from sansa.export.palette import class_color, classes_table
from sansa.export.writer import FolderWriter, TargetRecord

__all__ = [
    "DEFAULT_FORMATS",
    "CocoLayout",
    "FolderWriter",
    "ImageMode",
    "OutputFormat",
    "TargetRecord",
    "class_color",
    "classes_table",
    "parse_formats",
]
