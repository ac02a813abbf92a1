"""The output formats of a labelled folder, shared by the library, the CLI and the web app.

The formats themselves are exporters registered by name (:mod:`sansa.export.exporter`);
:class:`OutputFormat` names the built-in ones for typed code.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import TypeVar

from sansa.errors import SansaError

E = TypeVar("E", bound=enum.Enum)


class OutputFormat(str, enum.Enum):
    """The built-in formats (:func:`sansa.export.exporter.format_names` lists every registered one):
    what :class:`~sansa.export.FolderWriter` writes for each target (paths relative to the out folder).

    Every format is made from the same label map (``Segmentation.label_map``): where classes
    overlap, the class of highest logit owns the pixel, and objects split their class's pixels,
    so all formats agree. Object formats write one annotation per object (``per_class``: per class).
    """

    PNG = "png"  #: ``masks/<stem>_<label>.png``: one binary PNG per class per image (255 = class)
    INDEXED = "indexed"  #: ``labels/<stem>.png``: one palette PNG per image, pixel = class id (0 background)
    COCO = "coco"  #: ``annotations.json`` (or a ``coco/`` dataset, see :class:`CocoLayout`): one annotation per object
    YOLO = "yolo"  #: ``yolo/``: an Ultralytics dataset, ``images/``, ``labels/<stem>.txt`` a polygon per object,
    #: ``data.yaml`` (flat: a stem's sub-folders joined with ``+``)
    INSTANCES = "instances"  #: ``instances/<stem>.png``, 16-bit object ids, + ``instances.json`` (class, score, box)
    OVERLAY = "overlay"  #: ``overlays/<stem>.jpg``: the image with coloured classes, each object outlined, a legend
    LABELSTUDIO = "labelstudio"  #: ``labelstudio/tasks.json`` + ``config.xml``: Label Studio tasks, a region per object


class CocoLayout(str, enum.Enum):
    """Where the COCO format goes."""

    FILE = "file"  #: ``annotations.json``; ``file_name`` relative to the image folder (pycocotools, supervision)
    DATASET = "dataset"  #: ``coco/annotations/instances_default.json`` + ``coco/images/`` (datumaro, CVAT import)


class ImageMode(str, enum.Enum):
    """How dataset folders (``yolo/images/``, ``coco/images/``) get their images."""

    COPY = "copy"  #: a copy of each image file: the folder stands alone (zip it, move it)
    LINK = "link"  #: a hard link to each image file (no extra disk space), or a copy where links cannot be


#: What is written when nobody says otherwise: masks to use, a dataset file, pictures to check.
DEFAULT_FORMATS: tuple[OutputFormat, ...] = (OutputFormat.PNG, OutputFormat.COCO, OutputFormat.OVERLAY)


def parse_formats(formats: Iterable[OutputFormat | str]) -> tuple[str, ...]:
    """Validate and de-duplicate format names (``"coco"``, ``OutputFormat.PNG``, ...), keeping their order."""
    from sansa.export.exporter import format_names

    known = format_names()
    parsed: list[str] = []
    for value in formats:
        fmt = value.value if isinstance(value, OutputFormat) else str(value).lower()
        if fmt not in known:
            raise SansaError(f"format: unknown format {value!r} (known: {', '.join(known)})")
        if fmt not in parsed:
            parsed.append(fmt)
    if not parsed:
        raise SansaError("format: give at least one output format")
    return tuple(parsed)


def parse_choice(kind: type[E], value: E | str, argument: str) -> E:
    """``kind(value)``, or a one-line :class:`SansaError` naming ``argument`` and the choices."""
    try:
        return kind(value.lower() if isinstance(value, str) else value)
    except ValueError:
        known = ", ".join(str(c.value) for c in kind)
        raise SansaError(f"{argument}: unknown value {value!r} (known: {known})") from None
