"""The exporter protocol: each output format is one object, registered by name.

An :class:`Exporter` turns one target's result into files (:meth:`Exporter.encode`, called once
per target, in any order, possibly in several processes) and, when a run ends, turns the
records it kept for every target into dataset files (:meth:`Exporter.finish`, in name order).
:class:`~sansa.export.FolderWriter` writes the files atomically and keeps the records in the
target's part file, so a killed run resumes and gives the same bytes.

The built-in formats are the modules of :mod:`sansa.export.exporters`, one file each, whose
module name is the format's name (``exporters/coco.py`` is ``coco``) and which define
``EXPORTER``, an :class:`Exporter` subclass. Listing the names imports nothing (the CLI builds
its ``--format`` choices from them without loading OpenCV); a format's module is imported when
it is used. Another package adds a format with :func:`register`.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from sansa.export.formats import CocoLayout, ImageMode
from sansa.records import SegmentedObject

if TYPE_CHECKING:
    from sansa.fs import AnyPath

BUILTIN_PACKAGE = "sansa.export.exporters"
#: The order formats are listed in (help texts, the web app); others follow by name.
LISTING_ORDER = ("png", "indexed", "coco", "yolo", "instances", "overlay", "labelstudio")
_registered: dict[str, type[Exporter]] = {}


@dataclass(frozen=True)
class ExportSettings:
    """Options every exporter may read (each reads those it needs).

    Attributes:
        labels: class names; class id ``i + 1`` is ``labels[i]`` (0 is background).
        per_class: one annotation per class instead of one per object (COCO, YOLO, Label Studio,
            instances, overlay outlines).
        coco_polygons: COCO polygons instead of RLE.
        coco_layout: ``annotations.json`` or a ``coco/`` dataset folder.
        dataset_images: how dataset folders get their images (copies or hard links).
        labelstudio_control: Label Studio regions: ``brush``, ``polygon``, ``rectangle``, ``keypoint``.
        labelstudio_annotations: Label Studio results as annotations instead of predictions.
        labelstudio_root: Label Studio's local-files document root (absolute): the tasks'
            ``?d=`` paths are the targets' files relative to it; ``None``: relative to the image root.
        model_version: the ``model_version`` of Label Studio predictions.
    """

    labels: tuple[str, ...]
    per_class: bool = False
    coco_polygons: bool = False
    coco_layout: CocoLayout = CocoLayout.FILE
    dataset_images: ImageMode = ImageMode.COPY
    labelstudio_control: str = "brush"
    labelstudio_annotations: bool = False
    labelstudio_root: str | None = None
    model_version: str = "sansa"

    @property
    def unit(self) -> str:
        """``"classes"`` or ``"objects"``: what one annotation stands for."""
        return "classes" if self.per_class else "objects"


@dataclass(frozen=True)
class Target:
    """One target's result, as every exporter gets it.

    Attributes:
        name: the target's name (relative to its image root, POSIX form).
        stem: its output stem (file-name safe, sub-folders kept; see :mod:`sansa.export.names`).
        image: RGB ``uint8 [H, W, 3]``.
        label_map: ``uint16 [H, W]``: 0 background, ``i + 1`` = ``labels[i]``.
        scores: per class, the decoder's IoU estimate.
        objects: the objects, class by class in label order: each inside its class's pixels of
            ``label_map``, disjoint (with ``per_class``, or when the result has none, one
            object per class present: the class's mask with the class's score).
        source: the target's image file, or ``None`` (dataset folders then get a PNG of ``image``).
        whole_classes: the objects are whole classes (``per_class``, or a result without objects).
    """

    name: str
    stem: str
    image: np.ndarray
    label_map: np.ndarray
    scores: Mapping[str, float]
    objects: Sequence[SegmentedObject]
    source: Path | None = None
    whole_classes: bool = False

    @property
    def size(self) -> tuple[int, int]:
        """``(H, W)``."""
        return int(self.label_map.shape[0]), int(self.label_map.shape[1])


@dataclass
class Encoded:
    """What an exporter makes of one target.

    Attributes:
        files: file bytes by path relative to the out folder (written atomically by the writer).
        images: paths (relative to the out folder) where the target's image goes, copied or
            linked from its file (dataset folders: ``yolo/images/``, ``coco/images/``).
        record: JSON-able data kept in the target's part file and given back to :meth:`Exporter.finish`
            (``None``: nothing to keep).
    """

    files: dict[str, bytes] = field(default_factory=dict)
    images: list[str] = field(default_factory=list)
    record: Any = None


@dataclass(frozen=True)
class Finished:
    """One written target as :meth:`Exporter.finish` gets it: its name, size and its record."""

    name: str
    height: int
    width: int
    record: Any


class Exporter:
    """One output format. Subclasses set :attr:`name` and implement :meth:`encode`.

    Args:
        settings: the writer's options (class names, per-class or objects, layouts).
    """

    name: ClassVar[str] = ""
    #: ``True``: the format shows objects (``--per-class`` changes it); ``False``: classes only.
    uses_objects: ClassVar[bool] = False

    def __init__(self, settings: ExportSettings) -> None:
        self.settings = settings
        self.labels: list[str] = list(settings.labels)

    def check(self) -> None:
        """Raise :class:`~sansa.errors.SansaError` when the format cannot hold these settings."""

    def product(self) -> str:
        """What a target must have been written with to count as done for this exporter
        (a target written with other settings is written again)."""
        return f"{self.name}:{self.settings.unit}" if self.uses_objects else self.name

    def encode(self, target: Target) -> Encoded:
        """The files (and record) of one target."""
        raise NotImplementedError

    def finish(self, out_dir: AnyPath, targets: Iterable[Finished]) -> None:
        """Write the dataset files from every written target's record (in name order; an iterable
        read once: write a large file a target at a time, e.g. :mod:`sansa.export.streamed`)."""

    def outputs(self) -> list[str]:
        """The output folders and files of this format, relative to the out folder."""
        return []


def register(exporter: type[Exporter]) -> type[Exporter]:
    """Add a format (a class decorator); its :attr:`Exporter.name` becomes a ``--format`` name."""
    if not exporter.name:
        raise ValueError(f"{exporter.__name__}: an exporter needs a name")
    _registered[exporter.name] = exporter
    return exporter


def format_names() -> list[str]:
    """Every format's name: the built-in ones (without importing them), then registered ones."""
    import sansa.export.exporters as package

    builtin = [m.name for m in pkgutil.iter_modules(package.__path__) if not m.name.startswith("_")]
    names = sorted(set(builtin) | set(_registered))
    order = {name: i for i, name in enumerate(LISTING_ORDER)}
    return sorted(names, key=lambda n: (order.get(n, len(order)), n))


def exporter_class(name: str) -> type[Exporter]:
    """The exporter of format ``name`` (one of :func:`format_names`)."""
    if name not in _registered:
        module = importlib.import_module(f"{BUILTIN_PACKAGE}.{name}")
        _registered[name] = module.EXPORTER
    return _registered[name]
