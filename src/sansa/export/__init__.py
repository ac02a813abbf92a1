"""Writing segmentations in the formats labelling tools read: PNG masks, indexed PNG, COCO, YOLO, overlays.

::

    from sansa.export import FolderWriter, OutputFormat
    with FolderWriter(Path("out"), predictor.labels, [OutputFormat.COCO, "png"], image_root=folder) as writer:
        for path in paths:
            if not writer.is_done(path):
                writer.write(predictor.segment(path), load_image(path), path)

Class ids: 0 background, ``i + 1`` = ``labels[i]`` (YOLO class indices are ``i``); colours in
:mod:`sansa.export.palette`; both are written to ``classes.json``.
"""

from sansa.export.formats import DEFAULT_FORMATS, OutputFormat, parse_formats
from sansa.export.palette import class_color, classes_table
from sansa.export.writer import FolderWriter, TargetRecord

__all__ = ["DEFAULT_FORMATS", "FolderWriter", "OutputFormat", "TargetRecord", "class_color", "classes_table",
           "parse_formats"]
