"""``FolderWriter``: writes every output format of many targets into one folder, resumably.

Layout of ``out_dir`` (``<stem>``: the target's path relative to the image root, sub-folders
kept, suffix dropped; ``<label>``: the class name made file-name safe)::

    masks/<stem>_<label>.png     binary PNG per class (png)
    labels/<stem>.png            palette PNG, pixel = class id (indexed)
    overlays/<stem>.jpg          image + coloured classes, each object outlined, legend (overlay)
    yolo/labels/<flat>.txt       a polygon per object (yolo), with yolo/data.yaml and yolo/images/<flat>.<ext>
                                 (<flat>: the stem, sub-folders joined with "+")
    annotations.json             COCO dataset, an annotation per object (coco), or with coco_layout="dataset":
    coco/annotations/instances_default.json + coco/images/<stem>.<ext>
    instances/<stem>.png         16-bit object ids, with instances.json: id -> class, score, box (instances)
    labelstudio/tasks.json       Label Studio tasks, a region per object, and config.xml (labelstudio)
    classes.json                 class id -> name and palette colour
    manifest.json                target name -> every file written for it (as the user named it)
    .sansa/parts/<hash>.json     what was written for each target (for resuming and dataset files),
    .sansa/records/<t>.jsonl     until compacted with others into a shard (:mod:`sansa.export.shards`)

Each format is an exporter (:mod:`sansa.export.exporter`): the writer hands it each target and
writes the files it returns, and at :meth:`close` hands it every target's record to make its
dataset files. Each file is written atomically; a target's part file is written last, so a
target counts as done only when all its outputs are complete; :meth:`compact` later moves many
records into one shard (resuming a million targets reads thousands of objects, not a million).
Dataset files are assembled from the records at :meth:`close`, in name order, a target at a
time (never the whole file in memory): a run killed and restarted gives the same bytes as a run
never interrupted.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import numpy as np

from sansa import atomic, fs
from sansa._version import __version__
from sansa.drawing.palette import classes_table
from sansa.errors import SansaError
from sansa.export import dataset, names, shards, streamed
from sansa.export.exporter import Exporter, ExportSettings, Finished, Target, exporter_class
from sansa.export.formats import CocoLayout, ImageMode, OutputFormat, parse_choice, parse_formats
from sansa.export.objects import export_objects, objects_per_class
from sansa.records import SegmentedObject
from sansa.spill import SpilledMapping

if TYPE_CHECKING:
    from sansa.fs import AnyPath

STATE_DIR = ".sansa"
MANIFEST = "manifest.json"


@dataclass
class TargetRecord:
    """What was written for one target.

    Attributes:
        name: the target's name (relative to its image root, POSIX form).
        stem: its output stem.
        size: ``(H, W)``.
        files: output files, relative to the out folder.
        pixels: pixels per class.
        objects: objects exported per class (one per class present with ``per_class``).
        made_from: what the result was made from (the caller's provenance record), or ``None``.
    """

    name: str
    stem: str
    size: tuple[int, int]
    files: list[str] = field(default_factory=list)
    pixels: dict[str, int] = field(default_factory=dict)
    objects: dict[str, int] = field(default_factory=dict)
    made_from: dict[str, Any] | None = None


class FolderWriter:
    """Writes segmentations of many targets into ``out_dir`` in the chosen formats.

    Args:
        out_dir: the output folder (created). Re-opening a folder resumes it; its classes must
            be the same.
        labels: class names; class id ``i + 1`` is ``labels[i]`` (0 is background).
        formats: format names (:func:`sansa.export.exporter.format_names`) or :class:`OutputFormat` values.
        per_class: one annotation per class (its whole mask) instead of one per object, in the
            object formats (coco, yolo, instances, labelstudio, overlay outlines).
        coco_polygons: COCO polygons instead of RLE.
        coco_layout: ``"file"`` (``annotations.json``) or ``"dataset"`` (``coco/annotations/
            instances_default.json`` + ``coco/images/``, as datumaro and CVAT import).
        dataset_images: how ``yolo/images/`` and ``coco/images/`` get the targets' images from
            their files (``source`` of :meth:`write`): ``"copy"`` or ``"link"`` (hard links).
        labelstudio_control: the Label Studio regions: ``brush``, ``polygon``, ``rectangle`` or ``keypoint``.
        labelstudio_annotations: Label Studio results as annotations instead of predictions.
        labelstudio_root: Label Studio's ``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT``: the tasks'
            ``?d=`` paths are the targets' files relative to it (they must lie under it).
        model_version: the Label Studio predictions' ``model_version``.
        prepare: check the folder's classes, remove a killed run's temporaries, drop damaged
            records and load the records of earlier runs. ``False`` in a worker process writing
            into a folder that one driver prepared (and that assembles the dataset files).

    Use as a context manager: dataset files are written when the block ends without an error.
    Targets are named by the caller (a name resolved once, e.g. relative to an image root).
    """

    def __init__(
        self,
        out_dir: str | os.PathLike[str] | AnyPath,
        labels: list[str],
        formats: Sequence[OutputFormat | str],
        *,
        per_class: bool = False,
        coco_polygons: bool = False,
        coco_layout: CocoLayout | str = CocoLayout.FILE,
        dataset_images: ImageMode | str = ImageMode.COPY,
        labelstudio_control: str = "brush",
        labelstudio_annotations: bool = False,
        labelstudio_root: str | Path | None = None,
        model_version: str = f"sansa-{__version__}",
        prepare: bool = True,
    ) -> None:
        self.out_dir: AnyPath = fs.as_path(out_dir)  # a Path, or a UPath for a URL (see sansa.fs)
        self.labels: list[str] = list(labels)
        self.formats: tuple[str, ...] = parse_formats(formats)
        _check_labels(self.labels)
        self.settings: ExportSettings = ExportSettings(
            labels=tuple(self.labels),
            per_class=bool(per_class),
            coco_polygons=bool(coco_polygons),
            coco_layout=parse_choice(CocoLayout, coco_layout, "coco_layout"),
            dataset_images=parse_choice(ImageMode, dataset_images, "dataset_images"),
            labelstudio_control=str(labelstudio_control),
            labelstudio_annotations=bool(labelstudio_annotations),
            labelstudio_root=str(Path(labelstudio_root).resolve()) if labelstudio_root is not None else None,
            model_version=str(model_version),
        )
        self.exporters: list[Exporter] = [exporter_class(f)(self.settings) for f in self.formats]
        for exporter in self.exporters:
            exporter.check()
        self._parts_dir = self.out_dir / STATE_DIR / "parts"
        self._shards_dir = self.out_dir / STATE_DIR / shards.SHARDS_DIR
        self.damaged: list[AnyPath] = []  # unreadable records dropped on opening (their targets are redone)
        self._parts: shards.PackedRecords = shards.PackedRecords()  # name -> record (on disk, see sansa.spill)
        self._stems: SpilledMapping[str] = _stem_table()  # collision key of each stem -> its target's name
        self._prepared = bool(prepare)
        self._journal: list[str] = []  # names whose record this writer wrote as a file, not yet compacted
        self._loose: set[str] = set()  # names whose newest record on opening was a file of its own
        self._lock = threading.Lock()  # writes come from writer threads; compact() from another
        if prepare:
            self._open_folder()
            self._parts, self._stems = self._load_parts()

    # -- per target -----------------------------------------------------------------------
    def is_done(self, name: str) -> bool:
        """Whether every output this writer would make for target ``name`` is already complete."""
        part = self._parts.get(name)
        if part is None or not set(self._products()) <= set(part["products"]):
            return False
        if not isinstance(self.out_dir, Path):  # a store: objects appear whole, the record last
            return True  # (one request per file would make resuming a million targets take hours)
        return all((self.out_dir / f).is_file() for f in part["files"])

    def record(self, name: str) -> TargetRecord | None:
        """What was written for target ``name`` (this run or an earlier one), or ``None``."""
        part = self._parts.get(name)
        return _record(part) if part is not None else None

    def has_record(self, name: str) -> bool:
        """Whether target ``name`` has a record (this run or an earlier one)."""
        return name in self._parts

    def names(self) -> list[str]:
        """Every target with a record (this run or an earlier one), sorted."""
        return list(self._parts)

    def record_count(self) -> int:
        """How many targets have a record (this run or an earlier one)."""
        return len(self._parts)

    def reload(self) -> None:
        """Re-read the records from disk (after other processes wrote targets)."""
        self._parts, self._stems = self._load_parts()

    def stem_for(self, name: str) -> str:
        """The output stem of target ``name``: its earlier one, else its name made file-name safe
        (with a short hash of the name only when another target's stem would be the same file on a
        case- or normalisation-insensitive file system)."""
        known = self._parts.get(name)
        if known is not None:
            return known["stem"]
        stem = names.safe_stem(name)
        return stem if self._stems.get(names.collision_key(stem), name) == name else names.disambiguate(stem, name)

    def claim_stem(self, name: str) -> str:
        """:meth:`stem_for`, reserved for ``name`` (so the next clashing name gets another one)."""
        stem = self.stem_for(name)
        self._stems.setdefault(names.collision_key(stem), name)
        return stem

    def write(
        self,
        name: str,
        image: np.ndarray,
        label_map: np.ndarray,
        labels: Sequence[str],
        scores: Mapping[str, float],
        *,
        objects: Sequence[SegmentedObject] | None = None,
        stem: str | None = None,
        made_from: dict[str, Any] | None = None,
        source: str | Path | None = None,
    ) -> TargetRecord:
        """Write one target in every format, each file atomically, then its record (marks it done).

        Args:
            name: the target's name (relative to its image root, POSIX form).
            image: the target, RGB ``uint8 [H, W, 3]`` (for overlays).
            label_map: ``uint16 [H, W]``: 0 background, ``i + 1`` = ``labels[i]``.
            labels: the label map's classes; must be this writer's labels.
            scores: per class, the decoder's IoU estimate (the score of a whole-class annotation).
            objects: the target's objects (``Segmentation.objects``: inside their classes' pixels,
                disjoint). ``None`` or empty: one object per class (as with ``per_class``).
            stem: the output stem (default: :meth:`claim_stem`).
            made_from: what the result was made from, kept in its record.
            source: the target's image file, copied or linked into the ``yolo/`` and ``coco/``
                dataset folders; ``None`` (or not a file): a PNG of ``image`` goes there.
        """
        if list(labels) != self.labels:
            raise ValueError(f"segmentation labels {list(labels)} differ from the writer's {self.labels}")
        if tuple(image.shape[:2]) != tuple(label_map.shape[:2]):
            raise ValueError(f"image {image.shape[:2]} and label map {label_map.shape[:2]} differ in size")
        stem = stem if stem is not None else self.claim_stem(name)
        source = Path(source) if source is not None and Path(source).is_file() else None
        whole_classes = self.settings.per_class or not objects
        target = Target(
            name=name,
            stem=stem,
            image=image,
            label_map=label_map,
            scores={k: float(v) for k, v in scores.items()},
            objects=export_objects(label_map, self.labels, scores, objects, self.settings.per_class),
            source=source,
            whole_classes=whole_classes,
        )
        files: dict[str, bytes] = {}
        image_files: list[str] = []
        records: dict[str, object] = {}
        kept = self._kept_outputs(name, stem, made_from)  # a format added on resume: the others stay as written
        for exporter in self.exporters:
            if exporter.product() in kept:
                if exporter.name in self._parts[name].get("records", {}):
                    records[exporter.name] = self._parts[name]["records"][exporter.name]
                continue
            encoded = exporter.encode(target)
            files.update(encoded.files)
            image_files += [path for path in encoded.images if path not in image_files]
            if encoded.record is not None:
                records[exporter.name] = encoded.record
        for path, data in files.items():
            atomic.write_bytes(self.out_dir / path, data)
        for path in image_files:
            dataset.place_image(self.out_dir / path, source, image, self.settings.dataset_images)
        outputs = self._outputs_by_product(files, image_files, kept)
        part: dict = {
            "name": name,
            "stem": stem,
            "height": int(label_map.shape[0]),
            "width": int(label_map.shape[1]),
            "labels": self.labels,
            "products": self._products(),
            "files": list(dict.fromkeys([*(p for paths in outputs.values() for p in paths), *files, *image_files])),
            "outputs": outputs,
            "pixels": {label: int(np.count_nonzero(label_map == i)) for i, label in enumerate(self.labels, 1)},
            "objects": objects_per_class(target.objects, self.labels),
            "records": records,
        }
        if made_from is not None:
            part["made_from"] = made_from
        atomic.write_json(self._part_path(name), part, indent=None)  # last: marks the target done
        with self._lock:
            self._parts[name] = part
            self._stems[names.collision_key(stem)] = name
            self._journal.append(name)
        return _record(part)

    def compact(self, minimum: int | None = None) -> int:
        """Move the records written as files of their own (by this writer, or found on opening)
        into one shard, when there are at least ``minimum`` (default :data:`sansa.export.shards.SHARD_TARGETS`);
        then remove those files. Returns how many records moved. A worker's writer then forgets
        them (its memory stays bounded)."""
        minimum = max(1, shards.SHARD_TARGETS if minimum is None else minimum)
        with self._lock:
            if not (self._journal or self._loose) or len(self._journal) + len(self._loose) < minimum:
                return 0  # (cheap: called after every batch)
            todo = sorted(set(self._journal) | self._loose)
            if len(todo) < minimum:
                return 0
            self._journal, self._loose = [], set()
        try:
            shards.write_packed(self._shards_dir, self._parts, todo)
        except BaseException:
            with self._lock:
                self._journal += todo  # still files of their own
            raise
        shards.remove([self._part_path(name) for name in todo])
        if not self._prepared:
            with self._lock:
                for name in todo:
                    if name not in self._journal:  # not written again meanwhile
                        self._parts.pop(name, None)
        return len(todo)

    # -- dataset --------------------------------------------------------------------------
    def close(self) -> None:
        """Write the dataset files: ``classes.json``, and each format's (``annotations.json``, ...)."""
        self.compact()
        atomic.write_json(self.out_dir / "classes.json", classes_table(self.labels))
        # each file is written a target at a time, the records read from disk in name order
        manifest = ((name, part["files"]) for name, part in self._parts.sorted_items())  # target -> its files
        atomic.write_chunks(self.out_dir / MANIFEST, streamed.indented_mapping(manifest))
        for exporter in self.exporters:
            product = exporter.product()
            targets = (
                Finished(p["name"], p["height"], p["width"], p.get("records", {}).get(exporter.name))
                for _, p in self._parts.sorted_items()
                if product in p["products"]
            )
            exporter.finish(self.out_dir, targets)

    def outputs(self) -> list[AnyPath]:
        """The output folders and dataset files of the chosen formats."""
        dataset_files = [self.out_dir / "classes.json", self.out_dir / MANIFEST]
        return [self.out_dir / path for e in self.exporters for path in e.outputs()] + dataset_files

    def __enter__(self) -> FolderWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:  # an interrupted run leaves the previous dataset files as they were
            self.close()

    # -- internals ------------------------------------------------------------------------
    def _products(self) -> list[str]:
        """What a part must have been written with to count for this writer."""
        return [exporter.product() for exporter in self.exporters]

    def _kept_outputs(self, name: str, stem: str, made_from: dict[str, Any] | None) -> dict[str, list[str]]:
        """Product -> files of the formats target ``name`` already has, complete, under ``stem``,
        from an earlier run made from the same file and inputs (``made_from``, as a labelling run
        records it): written again they would be the same bytes. A changed target keeps nothing."""
        part = self._parts.get(name)
        if part is None or part["stem"] != stem or not isinstance(part.get("outputs"), dict):
            return {}
        if part.get("made_from") != made_from:
            return {}
        return {
            product: list(paths)
            for product, paths in part["outputs"].items()
            if product in part["products"] and all((self.out_dir / p).is_file() for p in paths)
        }

    def _outputs_by_product(
        self, files: Mapping[str, bytes], image_files: list[str], kept: dict[str, list[str]]
    ) -> dict[str, list[str]]:
        """Product -> the files of one target that belong to it (kept ones included)."""
        written = [*files, *image_files]
        out: dict[str, list[str]] = {}
        for exporter in self.exporters:
            product = exporter.product()
            out[product] = kept.get(product) or [p for p in written if self._belongs(exporter, p)]
        return out

    @staticmethod
    def _belongs(exporter: Exporter, path: str) -> bool:
        """Whether ``path`` lies in one of ``exporter``'s output folders or files."""
        return any(path == o or path.startswith(o.rstrip("/") + "/") for o in exporter.outputs())

    def _part_path(self, rel: str) -> AnyPath:
        return self._parts_dir / f"{names.digest(rel)[:20]}.json"

    def _open_folder(self) -> None:
        if self.out_dir.exists() and not self.out_dir.is_dir():
            raise SansaError(f"{self.out_dir}: exists and is not a folder")
        self._parts_dir.mkdir(parents=True, exist_ok=True)
        atomic.remove_temporaries(self.out_dir)
        config_path = self.out_dir / STATE_DIR / "writer.json"
        known = json.loads(config_path.read_text(encoding="utf-8"))["labels"] if config_path.is_file() else None
        if known == self.labels:
            return
        if known is not None and (any(self._parts_dir.glob("*.json")) or shards.list_shards(self._shards_dir)):
            raise SansaError(
                f"{self.out_dir}: holds results for classes {known}, not {self.labels}; "
                "start over with overwrite=True, or use another output folder"
            )
        atomic.write_json(config_path, {"labels": self.labels})  # a new folder, or one with no results yet

    def _load_parts(self) -> tuple[shards.PackedRecords, SpilledMapping[str]]:
        """The records of earlier runs: the shards', oldest first, then the files of their own; a
        damaged one (a disk fault, a hand edit) is removed and listed in :attr:`damaged`: its
        target counts as not done (a shard's other records are kept, in a new shard). With them,
        the collision key of each recorded stem -> its target's name."""
        parts, stems = self._load_shards()
        self._loose = set()
        paths: list[AnyPath] = sorted(self._parts_dir.glob("*.json"), key=str)
        for path, data in zip(paths, fs.read_many(paths), strict=True):  # on a store: many requests in flight
            try:
                if isinstance(data, Exception):
                    raise data
                part = json.loads(data.decode("utf-8"))
                _record(part)  # every field a record needs is there
                if path != self._part_path(part["name"]) or not isinstance(part.get("products"), list):
                    raise ValueError("record of another name")
            except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):
                self.damaged.append(path)
                path.unlink(missing_ok=True)
                continue
            parts[part["name"]] = part
            stems[names.collision_key(part["stem"])] = part["name"]
            self._loose.add(part["name"])
        return parts, stems

    def _load_shards(self) -> tuple[shards.PackedRecords, SpilledMapping[str]]:
        """The records of every shard, oldest first (a later record of a name replaces an earlier
        one), and their stems' collision keys."""
        parts, stems = shards.PackedRecords(), _stem_table()
        paths = shards.list_shards(self._shards_dir)
        for start in range(0, len(paths), SHARDS_READ_AT_ONCE):  # memory: a window of shards' bytes
            window = paths[start : start + SHARDS_READ_AT_ONCE]
            for path, data in zip(window, fs.read_many(window), strict=True):
                good, bad = _good_records(data)
                if bad:  # kept without the damaged lines; their targets are redone
                    self.damaged += [path] * bad
                    if good:
                        shards.write_shard(self._shards_dir, good)
                    shards.remove([path])
                parts.update_many((part["name"], part) for part in good)
                stems.update_many((names.collision_key(part["stem"]), part["name"]) for part in good)
        return parts, stems


SHARDS_READ_AT_ONCE = 64  # shards fetched at once on opening (many requests in flight on a store)


def _good_records(data: bytes | Exception) -> tuple[list[dict], int]:
    """The well-formed records of a shard's bytes, and how many were damaged."""
    if isinstance(data, Exception):
        return [], 1
    good, bad = [], 0
    for part in shards.decode(data):
        try:
            if isinstance(part, Exception):
                raise part
            _record(part)  # every field a record needs is there
            if not isinstance(part.get("products"), list):
                raise ValueError("no products")
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            bad += 1
            continue
        good.append(part)
    return good, bad


def _stem_table() -> SpilledMapping[str]:
    return SpilledMapping(str, str)


def _check_labels(labels: list[str]) -> None:
    if not labels:
        raise SansaError("labels: no class to write")
    if len(set(labels)) != len(labels):
        raise SansaError(f"labels: class names repeat: {labels}")


def _record(part: dict) -> TargetRecord:
    return TargetRecord(
        name=str(part["name"]),
        stem=str(part["stem"]),
        size=(int(part["height"]), int(part["width"])),
        files=list(part["files"]),
        pixels=dict(part["pixels"]),
        objects=dict(part["objects"] if "objects" in part else part["instances"]),  # "instances": before objects
        made_from=part.get("made_from"),
    )
