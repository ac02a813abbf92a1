"""``FolderWriter``: writes every output format of many targets into one folder, resumably.

Layout of ``out_dir`` (``<stem>``: the target's path relative to the image root, sub-folders
kept, suffix dropped; ``<label>``: the class name made file-name safe)::

    masks/<stem>_<label>.png     binary PNG per class (png)
    labels/<stem>.png            palette PNG, pixel = class id (indexed)
    overlays/<stem>.jpg          image + coloured classes + legend (overlay)
    yolo/labels/<flat>.txt       polygons (yolo), with yolo/data.yaml and yolo/images/<flat>.<ext>
                                 (<flat>: the stem, sub-folders joined with "+")
    annotations.json             COCO dataset (coco), or with coco_layout="dataset":
    coco/annotations/instances_default.json + coco/images/<stem>.<ext>
    labelstudio/tasks.json       Label Studio tasks with brush RLE regions, and config.xml (labelstudio)
    classes.json                 class id -> name and palette colour
    .sansa/parts/<hash>.json     what was written for each target (for resuming and COCO)

Each file is written atomically; a target's part file is written last, so a target counts as
done only when all its outputs are complete. Dataset files (``annotations.json``,
``yolo/data.yaml``, ``classes.json``) are assembled from the part files at :meth:`close`, in name
order: a run killed and restarted gives the same bytes as a run never interrupted.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sansa import atomic, fs
from sansa.errors import SansaError
from sansa.export import coco, dataset, labelstudio, names, render, yolo
from sansa.export.formats import CocoLayout, ImageMode, OutputFormat, parse_choice, parse_formats
from sansa.export.palette import classes_table
from sansa.export.shapes import components

STATE_DIR = ".sansa"
MAX_INDEXED_CLASSES = 255  # class ids of an 8-bit palette PNG


@dataclass
class TargetRecord:
    """What was written for one target.

    Attributes:
        name: the target's name (relative to its image root, POSIX form).
        stem: its output stem.
        size: ``(H, W)``.
        files: output files, relative to the out folder.
        pixels: pixels per class.
        instances: connected parts per class.
        made_from: what the result was made from (the caller's provenance record), or ``None``.
    """

    name: str
    stem: str
    size: tuple[int, int]
    files: list[str] = field(default_factory=list)
    pixels: dict[str, int] = field(default_factory=dict)
    instances: dict[str, int] = field(default_factory=dict)
    made_from: dict | None = None


class FolderWriter:
    """Writes segmentations of many targets into ``out_dir`` in the chosen formats.

    Args:
        out_dir: the output folder (created). Re-opening a folder resumes it; its classes must
            be the same.
        labels: class names; class id ``i + 1`` is ``labels[i]`` (0 is background).
        formats: :class:`OutputFormat` values or their names.
        coco_instances: one COCO annotation per connected part instead of one per class.
        coco_polygons: COCO polygons instead of RLE.
        coco_layout: ``"file"`` (``annotations.json``) or ``"dataset"`` (``coco/annotations/
            instances_default.json`` + ``coco/images/``, as datumaro and CVAT import).
        dataset_images: how ``yolo/images/`` and ``coco/images/`` get the targets' images from
            their files (``source`` of :meth:`write`): ``"copy"`` or ``"link"`` (hard links).
        prepare: check the folder's classes, remove a killed run's temporaries, drop damaged
            records and load the records of earlier runs. ``False`` in a worker process writing
            into a folder that one driver prepared (and that assembles the dataset files).

    Use as a context manager: dataset files are written when the block ends without an error.
    Targets are named by the caller (a name resolved once, e.g. relative to an image root).
    """

    def __init__(
        self,
        out_dir: Path,
        labels: list[str],
        formats: Sequence[OutputFormat | str],
        *,
        coco_instances: bool = False,
        coco_polygons: bool = False,
        coco_layout: CocoLayout | str = CocoLayout.FILE,
        dataset_images: ImageMode | str = ImageMode.COPY,
        prepare: bool = True,
    ) -> None:
        self.out_dir = fs.as_path(out_dir)  # a Path, or a UPath for a URL (see sansa.fs)
        self.labels = list(labels)
        self.formats = parse_formats(formats)
        self.coco_instances = coco_instances
        self.coco_polygons = coco_polygons
        self.coco_layout = parse_choice(CocoLayout, coco_layout, "coco_layout")
        self.dataset_images = parse_choice(ImageMode, dataset_images, "dataset_images")
        _check_labels(self.labels, self.formats)
        self._tokens = names.label_tokens(self.labels)
        self._parts_dir = self.out_dir / STATE_DIR / "parts"
        self.damaged: list[Path] = []  # unreadable records dropped on opening (their targets are redone)
        self._parts: dict[str, dict] = {}
        if prepare:
            self._open_folder()
            self._parts = self._load_parts()
        self._stems = {part["stem"]: name for name, part in self._parts.items()}

    # -- per target -----------------------------------------------------------------------
    def is_done(self, name: str) -> bool:
        """Whether every output this writer would make for target ``name`` is already complete."""
        part = self._parts.get(name)
        if part is None or not set(self._products()) <= set(part["products"]):
            return False
        return all((self.out_dir / f).is_file() for f in part["files"])

    def record(self, name: str) -> TargetRecord | None:
        """What was written for target ``name`` (this run or an earlier one), or ``None``."""
        part = self._parts.get(name)
        return _record(part) if part is not None else None

    def names(self) -> list[str]:
        """Every target with a record (this run or an earlier one), sorted."""
        return sorted(self._parts)

    def reload(self) -> None:
        """Re-read the records from disk (after other processes wrote targets)."""
        self._parts = self._load_parts()
        self._stems = {part["stem"]: name for name, part in self._parts.items()}

    def stem_for(self, name: str) -> str:
        """The output stem of target ``name``: its earlier one, else its name made file-name safe
        (with a short hash of the name when another target already has that stem)."""
        known = self._parts.get(name)
        if known is not None:
            return known["stem"]
        stem = names.safe_stem(name)
        return stem if self._stems.get(stem, name) == name else names.disambiguate(stem, name)

    def claim_stem(self, name: str) -> str:
        """:meth:`stem_for`, reserved for ``name`` (so the next clashing name gets another one)."""
        stem = self.stem_for(name)
        self._stems.setdefault(stem, name)
        return stem

    def write(
        self,
        name: str,
        image: np.ndarray,
        label_map: np.ndarray,
        labels: Sequence[str],
        scores: Mapping[str, float],
        *,
        stem: str | None = None,
        made_from: dict | None = None,
        source: str | Path | None = None,
    ) -> TargetRecord:
        """Write one target in every format, each file atomically, then its record (marks it done).

        Args:
            name: the target's name (relative to its image root, POSIX form).
            image: the target, RGB ``uint8 [H, W, 3]`` (for overlays).
            label_map: ``uint16 [H, W]``: 0 background, ``i + 1`` = ``labels[i]``.
            labels: the label map's classes; must be this writer's labels.
            scores: per class, the decoder's IoU estimate (COCO ``score``).
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
        files = self._encode(stem, image, label_map)
        source = Path(source) if source is not None and Path(source).is_file() else None
        image_files = self._dataset_image_files(stem, source)
        part: dict = {
            "name": name,
            "stem": stem,
            "height": int(label_map.shape[0]),
            "width": int(label_map.shape[1]),
            "labels": self.labels,
            "products": self._products(),
        }
        if image_files:
            part["image_name"] = dataset.image_name(stem, source)
        if OutputFormat.COCO in self.formats:
            part["coco"] = coco.target_annotations(
                label_map,
                self.labels,
                {k: float(v) for k, v in scores.items()},
                self.coco_instances,
                self.coco_polygons,
            )
        if OutputFormat.LABELSTUDIO in self.formats:
            part["labelstudio"] = labelstudio.target_results(name, label_map, self.labels, scores)
        for path, data in files.items():
            atomic.write_bytes(self.out_dir / path, data)
        for path in image_files:
            dataset.place_image(self.out_dir / path, source, image, self.dataset_images)
        part["files"] = list(files) + image_files
        part["pixels"] = {label: int(np.count_nonzero(label_map == i)) for i, label in enumerate(self.labels, 1)}
        part["instances"] = {
            label: len(components(label_map == i)) if part["pixels"][label] else 0
            for i, label in enumerate(self.labels, 1)
        }
        if made_from is not None:
            part["made_from"] = made_from
        atomic.write_json(self._part_path(name), part, indent=None)  # last: marks the target done
        self._parts[name] = part
        self._stems[stem] = name
        return _record(part)

    def _encode(self, stem: str, image: np.ndarray, label_map: np.ndarray) -> dict[str, bytes]:
        """Every per-target file's bytes, by path relative to the out folder."""
        files: dict[str, bytes] = {}
        if OutputFormat.PNG in self.formats:
            for class_id, token in enumerate(self._tokens, start=1):
                files[f"masks/{stem}_{token}.png"] = render.binary_png(label_map == class_id)
        if OutputFormat.INDEXED in self.formats:
            files[f"labels/{stem}.png"] = render.indexed_png(label_map, len(self.labels))
        if OutputFormat.OVERLAY in self.formats:
            files[f"overlays/{stem}.jpg"] = render.overlay_jpeg(image, label_map, self.labels)
        if OutputFormat.YOLO in self.formats:
            lines = yolo.label_lines(label_map, self.labels)
            files[f"yolo/labels/{dataset.flat_stem(stem)}.txt"] = "".join(line + "\n" for line in lines).encode()
        return files

    # -- dataset --------------------------------------------------------------------------
    def close(self) -> None:
        """Write the dataset files (``classes.json``, and ``annotations.json``/``yolo/data.yaml``)."""
        atomic.write_json(self.out_dir / "classes.json", classes_table(self.labels))
        if OutputFormat.COCO in self.formats:
            coco_product = self._coco_product()
            in_dataset = self.coco_layout is CocoLayout.DATASET
            targets = [
                {
                    "file_name": p["image_name"] if in_dataset else p["name"],
                    "width": p["width"],
                    "height": p["height"],
                    "annotations": p["coco"],
                }
                for _, p in sorted(self._parts.items())
                if coco_product in p["products"]
            ]
            atomic.write_json(self.out_dir / self._coco_file(), coco.assemble(self.labels, targets), indent=None)
        if OutputFormat.YOLO in self.formats:
            atomic.write_text(self.out_dir / "yolo" / "data.yaml", yolo.data_yaml(self.labels))
        if OutputFormat.LABELSTUDIO in self.formats:
            targets = [(p["name"], p["labelstudio"]) for _, p in sorted(self._parts.items()) if "labelstudio" in p]
            labelstudio.write_dataset(self.out_dir / labelstudio.FOLDER, self.labels, targets)

    def outputs(self) -> list[Path]:
        """The output folders and dataset files of the chosen formats."""
        coco_path = "annotations.json" if self.coco_layout is CocoLayout.FILE else "coco"
        paths = {
            OutputFormat.PNG: "masks",
            OutputFormat.INDEXED: "labels",
            OutputFormat.OVERLAY: "overlays",
            OutputFormat.YOLO: "yolo",
            OutputFormat.COCO: coco_path,
            OutputFormat.LABELSTUDIO: labelstudio.FOLDER,
        }
        return [self.out_dir / paths[f] for f in self.formats] + [self.out_dir / "classes.json"]

    def __enter__(self) -> FolderWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:  # an interrupted run leaves the previous dataset files as they were
            self.close()

    # -- internals ------------------------------------------------------------------------
    def _products(self) -> list[str]:
        """What a part must have been written with to count for this writer."""
        products = {
            OutputFormat.COCO: self._coco_product(),
            OutputFormat.YOLO: f"yolo:images-{self.dataset_images.value}",
        }
        return [products.get(f, f.value) for f in self.formats]

    def _coco_product(self) -> str:
        kind = "polygons" if self.coco_polygons else "rle"
        unit = "instances" if self.coco_instances else "classes"
        layout = "" if self.coco_layout is CocoLayout.FILE else f":dataset-{self.dataset_images.value}"
        return f"coco:{kind}:{unit}{layout}"

    def _coco_file(self) -> str:
        return "annotations.json" if self.coco_layout is CocoLayout.FILE else "coco/annotations/instances_default.json"

    def _dataset_image_files(self, stem: str, source: Path | None) -> list[str]:
        """The dataset folders' image files of one target (relative to the out folder)."""
        files = []
        if OutputFormat.YOLO in self.formats:
            files.append(f"yolo/images/{dataset.image_name(dataset.flat_stem(stem), source)}")
        if OutputFormat.COCO in self.formats and self.coco_layout is CocoLayout.DATASET:
            files.append(f"coco/images/{dataset.image_name(stem, source)}")
        return files

    def _part_path(self, rel: str) -> Path:
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
        if known is not None and any(self._parts_dir.glob("*.json")):
            raise SansaError(
                f"{self.out_dir}: holds results for classes {known}, not {self.labels}; "
                "start over with --overwrite, or use another output folder"
            )
        atomic.write_json(config_path, {"labels": self.labels})  # a new folder, or one with no results yet

    def _load_parts(self) -> dict[str, dict]:
        """The records of earlier runs; a damaged one (a disk fault, a hand edit) is removed and
        listed in :attr:`damaged`: its target counts as not done."""
        parts = {}
        for path in sorted(self._parts_dir.glob("*.json")):
            try:
                part = json.loads(path.read_text(encoding="utf-8"))
                _record(part)  # every field a record needs is there
                if path != self._part_path(part["name"]) or not isinstance(part.get("products"), list):
                    raise ValueError("record of another name")
            except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):
                self.damaged.append(path)
                path.unlink(missing_ok=True)
                continue
            parts[part["name"]] = part
        return parts


def _check_labels(labels: list[str], formats: tuple[OutputFormat, ...]) -> None:
    if not labels:
        raise SansaError("labels: no class to write")
    if len(set(labels)) != len(labels):
        raise SansaError(f"labels: class names repeat: {labels}")
    if OutputFormat.INDEXED in formats and len(labels) > MAX_INDEXED_CLASSES:
        raise SansaError(f"format indexed: holds at most {MAX_INDEXED_CLASSES} classes, got {len(labels)}")


def _record(part: dict) -> TargetRecord:
    return TargetRecord(
        name=str(part["name"]),
        stem=str(part["stem"]),
        size=(int(part["height"]), int(part["width"])),
        files=list(part["files"]),
        pixels=dict(part["pixels"]),
        instances=dict(part["instances"]),
        made_from=part.get("made_from"),
    )
