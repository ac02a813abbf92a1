"""The job record of a labelling run: everything a run needs, JSON-serialisable.

A :class:`Job` names the references (image paths with :class:`~sansa.records.Prompt` records,
mask prompts inline as PNG), the targets as the user gave them, the output folder, formats and
export options, the batch size and the model. ``Job.from_dict(job.to_dict())`` gives an equal
job, so a job can be saved, shipped to other processes (Ray actors) and rebuilt there:

    >>> import json
    >>> job = Job(references=[ReferenceEntry("ref.jpg", "dog", Prompt.create(box=[4, 4, 40, 30]))],
    ...           targets=["photos/"], out="labels/", model=ModelSpec(model="sansa-universal"))
    >>> text = json.dumps(job.to_dict())
    >>> Job.from_dict(json.loads(text)).to_dict() == job.to_dict()
    True

Coordinates in prompts: pixels of the reference image, ``x`` = column, ``y`` = row.
"""

from __future__ import annotations

import base64
import io
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sansa import fs
from sansa.errors import PromptError, SansaError
from sansa.export import DEFAULT_FORMATS, parse_formats
from sansa.hub import DEFAULT_MODEL
from sansa.images import load_mask, open_image_file
from sansa.records import ObjectOptions, Prompt

if TYPE_CHECKING:
    from sansa.fs import AnyPath
    from sansa.predictor import SansaPredictor
    from sansa.references import ReferenceSpec


# -- prompts ------------------------------------------------------------------------------------
def prompt_to_dict(prompt: Prompt) -> dict[str, Any]:
    """A :class:`Prompt` as JSON values: lists of ``[x, y]`` (``strokes``: a list of them) and a mask
    as a base64 PNG."""
    out: dict[str, Any] = {}
    if prompt.mask is not None:
        from PIL import Image

        buffer = io.BytesIO()
        Image.fromarray(prompt.mask.astype(np.uint8) * 255).save(buffer, format="PNG", optimize=True)
        out["mask_png"] = base64.b64encode(buffer.getvalue()).decode("ascii")
    for key in ("points", "labels", "box", "scribble"):
        value = getattr(prompt, key)
        if value is not None:
            out[key] = value.tolist()
    if prompt.scribble is not None:
        out["strokes"] = [stroke.tolist() for stroke in prompt.strokes]
    return out


def prompt_from_dict(values: dict[str, Any]) -> Prompt:
    """The inverse of :func:`prompt_to_dict` (no re-thinning: the record is already normalised)."""
    if "mask_png" in values:
        return Prompt(mask=load_mask(open_image_file(base64.b64decode(values["mask_png"]), "mask_png")))
    arrays = {
        key: np.asarray(values[key], dtype=np.int32 if key == "labels" else np.float32)
        for key in ("points", "labels", "box", "scribble")
        if values.get(key) is not None
    }
    strokes = tuple(np.asarray(stroke, dtype=np.float32) for stroke in values.get("strokes") or ())
    return Prompt(**arrays, strokes=strokes)


# -- records --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReferenceEntry:
    """One reference of a job.

    Attributes:
        image: the reference image file.
        label: its class.
        prompt: what was marked on it (already read and validated: a mask file is read once, here).
        source: where the user wrote it (for error messages), e.g. ``refs.yaml: reference 2``.
    """

    image: str
    label: str
    prompt: Prompt
    source: str = ""

    @classmethod
    def from_spec(cls, spec: ReferenceSpec) -> ReferenceEntry:
        """From a :class:`sansa.references.ReferenceSpec` (reads its mask file, if any)."""

        try:
            prompt = spec.prompt()
        except PromptError as err:
            raise SansaError(f"{spec.source} ({spec.image}): {err}") from None
        except SansaError as err:
            raise SansaError(f"{spec.source}: {err}") from None
        return cls(str(spec.image), spec.label, prompt, spec.source or str(spec.image))

    def to_dict(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "label": self.label,
            "prompt": prompt_to_dict(self.prompt),
            "source": self.source,
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ReferenceEntry:
        return cls(
            values["image"],
            values["label"],
            prompt_from_dict(values["prompt"]),
            values.get("source", ""),
        )


@dataclass(frozen=True)
class ModelSpec:
    """Which model to load; only what the user set (the library owns the defaults).

    Attributes:
        model: a released model name (default ``sansa-universal``).
        sam2_checkpoint: Meta's SAM2 checkpoint, with ``adapter`` and ``backbone``.
        random_weights: a seeded random model of ``backbone`` (for trying things out).
        device: ``auto``, ``cpu``, ``cuda`` or ``mps``.
        precision: ``fp32``, ``bf16``, ``fp16`` or ``auto`` (see :class:`~sansa.predictor.SansaPredictor`).
    """

    model: str | None = None
    sam2_checkpoint: str | None = None
    adapter: str | None = None
    backbone: str | None = None
    random_weights: bool = False
    device: str | None = None
    precision: str | None = None

    def __post_init__(self) -> None:
        files = [k for k in ("model", "sam2_checkpoint", "adapter") if getattr(self, k)]
        if self.random_weights and files:  # the files would be ignored while the run records them
            raise SansaError(
                f"random_weights cannot be combined with {' and '.join(files)}: random weights "
                "would ignore it; drop one"
            )

    def check(self) -> None:
        """Refuse a device or precision this machine lacks, before anything is loaded or written."""
        from sansa.devices import resolve_device, resolve_precision

        resolve_precision(self.precision, resolve_device(self.device))

    def resolved_precision(self, device: str | None = None) -> str:
        """The precision that runs on ``device`` (default: the spec's): ``auto`` resolved
        (:func:`sansa.devices.choose_precision`)."""
        from sansa.devices import choose_precision, resolve_device

        return choose_precision(self.precision, resolve_device(device or self.device))

    def load(self, device: str | None = None) -> SansaPredictor:
        """The :class:`~sansa.predictor.SansaPredictor` (``device`` overrides the spec's)."""
        from sansa.model.build import DEFAULT_BACKBONE
        from sansa.predictor import SansaPredictor

        device = device or self.device
        backbone = self.backbone or DEFAULT_BACKBONE
        if self.random_weights:  # seeded: every run (and a resumed run) gets the same random model
            return SansaPredictor.from_checkpoint(None, model=backbone, device=device, precision=self.precision)
        if self.sam2_checkpoint is not None:
            if self.model is not None:
                raise SansaError("model and sam2_checkpoint: give one or the other")
            return SansaPredictor.from_checkpoint(
                self.sam2_checkpoint, self.adapter, model=backbone, device=device, precision=self.precision
            )
        if self.adapter is not None or self.backbone is not None:
            raise SansaError(
                "adapter or backbone without sam2_checkpoint: give sam2_checkpoint too, or name a released model"
            )
        return SansaPredictor.from_pretrained(self.model or DEFAULT_MODEL, device=device, precision=self.precision)

    def identity(self) -> dict[str, Any]:
        """What the results depend on: names, and each checkpoint file's size and modification time."""
        values = {**asdict(self), "precision": self.resolved_precision()}
        ident: dict[str, Any] = {
            k: v for k, v in values.items() if v not in (None, False, "fp32") and k != "device"
        }  # fp32 set or not: the same; "auto" as it resolves here (a resume elsewhere may not mix)
        for key in ("sam2_checkpoint", "adapter"):
            if key in ident:
                path = Path(ident[key])
                stat = path.stat() if path.is_file() else None
                ident[key] = {
                    "file": str(path.resolve()),
                    "bytes": stat.st_size if stat else None,
                    "mtime_ns": stat.st_mtime_ns if stat else None,
                }
        return ident or {"model": "default"}


@dataclass(frozen=True)
class ExportOptions:
    """What is written per target.

    Attributes:
        formats: format names (``sansa.export.exporter.format_names()``); ``None``: ``sansa.export.DEFAULT_FORMATS``.
        per_class: one annotation per class instead of one per object (COCO, YOLO, instances,
            Label Studio, overlay outlines).
        coco_polygons: COCO polygons instead of RLE.
        coco_layout: ``"file"`` (``annotations.json``) or ``"dataset"`` (``coco/`` as datumaro and
            CVAT import).
        dataset_images: ``"copy"`` or ``"link"``: how ``yolo/images/`` and ``coco/images/`` get
            the targets.
        labelstudio_control: Label Studio regions: ``brush``, ``polygon``, ``rectangle`` or ``keypoint``.
        labelstudio_annotations: Label Studio results as annotations instead of predictions.
        labelstudio_root: Label Studio's local-files document root; the tasks' ``?d=`` paths are
            relative to it (``None``: relative to the image root).
    """

    formats: tuple[str, ...] | None = None
    per_class: bool = False
    coco_polygons: bool = False
    coco_layout: str = "file"
    dataset_images: str = "copy"
    labelstudio_control: str = "brush"
    labelstudio_annotations: bool = False
    labelstudio_root: str | None = None

    def writer_options(self) -> dict[str, Any]:
        """The :class:`~sansa.export.FolderWriter` keyword arguments of these options."""
        return {
            "per_class": self.per_class,
            "coco_polygons": self.coco_polygons,
            "coco_layout": self.coco_layout,
            "dataset_images": self.dataset_images,
            "labelstudio_control": self.labelstudio_control,
            "labelstudio_annotations": self.labelstudio_annotations,
            "labelstudio_root": self.labelstudio_root,
        }

    def parsed_formats(self) -> tuple[str, ...]:
        """The format names to write (validated; the defaults when none were given)."""
        return parse_formats(self.formats) if self.formats is not None else DEFAULT_FORMATS


@dataclass(frozen=True)
class Job:
    """A labelling run: label every target from the references, into ``out``.

    Attributes:
        references: at least one; classes are the labels in order of first appearance.
        targets: folders, globs (``**`` recurses), image files or list files, as given.
        out: the output folder (resumed when it holds results of the same inputs).
        export: formats and their options.
        model: the model to load.
        objects: how each class is split into objects (only what the user set differs from the
            defaults; see :class:`~sansa.records.ObjectOptions`).
        recursive: also look in sub-folders of target folders.
        batch_size: targets encoded together (``None``: the predictor's default for its device).
        overwrite: delete earlier results in ``out`` (made from other inputs) and start over.
        options: what the user set, recorded in ``run.json`` as given.
    """

    references: list[ReferenceEntry]
    targets: list[str]
    out: str
    export: ExportOptions = field(default_factory=ExportOptions)
    model: ModelSpec = field(default_factory=ModelSpec)
    objects: ObjectOptions = field(default_factory=ObjectOptions)
    recursive: bool = False
    batch_size: int | None = None
    overwrite: bool = False
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def labels(self) -> list[str]:
        """The classes, in order of their first reference."""
        return list(dict.fromkeys(r.label for r in self.references))

    @property
    def out_dir(self) -> AnyPath:
        """The output folder: a ``Path``, or a ``UPath`` for a URL (``s3://bucket/labels``; see :mod:`sansa.fs`)."""

        return fs.as_path(self.out)

    def load_predictor(self, device: str | None = None) -> Any:
        """The model (:meth:`ModelSpec.load`, ``device`` overriding the spec's) as a predictor
        that finds objects with this job's :attr:`objects`."""
        predictor = self.model.load(device)
        predictor.objects = self.objects
        return predictor

    def check(self) -> None:
        """Raise a one-line :class:`SansaError` for a job that cannot run (before any file is touched)."""
        if not self.references:
            raise SansaError("references: no reference given (mark one with a mask, box, points or a scribble)")
        if not self.targets:
            raise SansaError("targets: give at least one folder, glob, image or list file")
        if self.batch_size is not None and self.batch_size < 1:
            raise SansaError(f"batch_size: must be at least 1, got {self.batch_size}")
        self.export.parsed_formats()

    def to_dict(self) -> dict[str, Any]:
        """JSON values (see :meth:`from_dict`)."""
        return {
            "references": [r.to_dict() for r in self.references],
            "targets": list(self.targets),
            "out": self.out,
            "export": {**asdict(self.export), "formats": _list(self.export.formats)},
            "model": asdict(self.model),
            "objects": self.objects.changed(),
            "recursive": self.recursive,
            "batch_size": self.batch_size,
            "overwrite": self.overwrite,
            "options": dict(self.options),
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Job:
        export = dict(values.get("export") or {})
        export.pop("coco_instances", None)  # a run of an earlier version: objects replace it
        if export.get("formats") is not None:
            export["formats"] = tuple(export["formats"])
        return cls(
            references=[ReferenceEntry.from_dict(r) for r in values["references"]],
            targets=list(values["targets"]),
            out=values["out"],
            export=ExportOptions(**export),
            model=ModelSpec(**(values.get("model") or {})),
            objects=ObjectOptions(**(values.get("objects") or {})),
            recursive=bool(values.get("recursive")),
            batch_size=values.get("batch_size"),
            overwrite=bool(values.get("overwrite")),
            options=dict(values.get("options") or {}),
        )


def _list(value: tuple[str, ...] | None) -> list[str] | None:
    return [str(getattr(v, "value", v)) for v in value] if value is not None else None
