"""Exporting a session as a zip, in a background job with progress (like propagation).

Every image of the folder that has a mask is exported, each from the best source it has:

========== =========================================================== =============
source     what                                                        COCO score
========== =========================================================== =============
reference  the masks the user marked (one per class marked on it)      1.0
corrected  a target whose prediction the user corrected ("fix")        1.0
accepted   a prediction accepted in review, as it was when accepted    the decoder's
predicted  the current prediction (targets not reviewed)               the decoder's
========== =========================================================== =============

Targets rejected in review are left out (and listed in the job status). Each image's objects are
written as the page lists them (after deletes, merges and splits), less those rejected one by one;
objects hidden on the page are written (hiding is a view setting). Classes are the page's,
in its order and colours: class id ``i + 1`` is the page's ``i``-th class, and ``classes.json``,
the indexed PNGs' palette and the overlays use the page's colours. ``images.json`` in the zip
says where each image's masks come from (its ``source``), with per-class scores and pixel counts.

The files are written by :class:`sansa.export.FolderWriter` into a temporary folder, then zipped
into a file that is streamed to the browser (never built in memory).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
import uuid
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sansa import atomic
from sansa.errors import SansaError
from sansa.export import DEFAULT_FORMATS, FolderWriter, OutputFormat, parse_formats
from sansa.export import render as export_render
from sansa.export.writer import STATE_DIR, TargetRecord
from sansa.images import open_lazily
from sansa.labeling import ExportOptions, Segmented, export_results
from sansa.records import SegmentedObject
from sansa.web import objects as web_objects
from sansa.web.errors import Conflict, NotFound
from sansa.web.render import hex_to_rgb
from sansa.web.results import composable, is_reference, shown_if_current
from sansa.web.schema import ExportStatus, JobState, ReviewState, Source
from sansa.web.service import SansaService
from sansa.web.session import Session

ZIP_NAME = "sansa-export.zip"
COMPRESSED = (".png", ".jpg", ".jpeg")  # stored in the zip as they are


@dataclass(frozen=True)
class Mapped:
    """One image as the export writes it: its label map in the export's class ids, each class's
    score, and its objects (all but those rejected in review; see :mod:`sansa.web.objects`)."""

    label_map: np.ndarray
    scores: dict[str, float]
    objects: list[SegmentedObject]


@dataclass(frozen=True)
class Item:
    """One image to export: ``mapping()`` gives its label map in the export's class ids and its scores."""

    name: str
    source: Source
    mapping: Callable[[], Mapped]


class ExportJob:
    """Writes a session's export zip in a daemon thread; ``status()`` reports progress."""

    def __init__(
        self,
        service: SansaService,
        session: Session,
        formats: Sequence[str] | None = None,
        options: dict[str, Any] | None = None,
    ) -> None:

        self.formats: tuple[str, ...] = parse_formats(formats if formats is not None else DEFAULT_FORMATS)
        self.options: dict[str, Any] = dict(options or {})
        FolderWriter(Path("."), ["check"], self.formats, **self.options, prepare=False)  # bad options fail here
        self.overlays: bool = OutputFormat.OVERLAY.value in self.formats
        self.service: SansaService = service
        self.session: Session = session
        self.id: str = uuid.uuid4().hex[:12]
        with service.lock:
            self.labels: list[str] = list(session.classes)
            self.colors: list[tuple[int, int, int]] = [hex_to_rgb(session.classes[label]) for label in self.labels]
            planned = plan(service, session, self.labels)
            self.items: list[Item] = planned.items
            self.left_out: list[str] = planned.left_out
            self.failures: list[dict[str, str]] = planned.failures
        self.state: JobState = JobState.RUNNING
        self.done: int = 0
        self.error: str | None = None
        self._stop = threading.Event()
        self.total: int = len(self.items) + 1  # + the zip
        self.folder: Path = Path(tempfile.mkdtemp(prefix="sansa-export-"))
        self.path: Path = self.folder / ZIP_NAME
        self._thread = threading.Thread(target=self._run, name=f"sansa-export-{self.id}", daemon=True)

    def start(self) -> ExportJob:
        self._thread.start()
        return self

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def cancel(self) -> None:
        """Stop before the next image; the job ends ``cancelled`` and its files are removed."""
        self._stop.set()

    def discard(self) -> None:
        """Delete the zip and its folder (a newer export replaces it)."""
        shutil.rmtree(self.folder, ignore_errors=True)

    def status(self) -> ExportStatus:
        done = self.state == JobState.DONE
        download = f"/api/sessions/{self.session.id}/exports/{self.id}/download" if done else None
        return ExportStatus(
            id=self.id,
            state=self.state,
            done=self.done,
            total=self.total,
            images=len(self.items),
            left_out=self.left_out,
            error=self.error,
            download=download,
        )

    def _run(self) -> None:
        try:
            out = self.folder / "files"
            self._write(out)
            if self._stop.is_set():
                raise _Cancelled
            self._zip(out)
            shutil.rmtree(out, ignore_errors=True)
            self.done, self.state = self.total, JobState.DONE
        except _Cancelled:
            self.state = JobState.CANCELLED
            self.discard()
        except SansaError as err:
            self.error, self.state = str(err), JobState.FAILED
        except Exception as err:  # a background thread must report, never die silently
            self.error, self.state = f"{type(err).__name__}: {err}", JobState.FAILED

    def _write(self, out: Path) -> None:
        """The export's files, written by :func:`sansa.labeling.export_results` as a run writes them,
        plus overlays in the page's colours and ``images.json``."""

        records = []
        formats = [f for f in self.formats if f != OutputFormat.OVERLAY.value] or [OutputFormat.PNG.value]
        export = ExportOptions(formats=tuple(formats), **self.options)
        palette = np.array([(0, 0, 0), *self.colors], dtype=np.uint8)
        items = {item.name: item for item in self.items}

        def segmented() -> Iterator[Segmented]:
            for item in self.items:
                if self._stop.is_set():
                    raise _Cancelled
                mapped = item.mapping()
                yield Segmented(
                    item.name,
                    self.service.folder.load(item.name),
                    mapped.label_map,
                    mapped.scores,
                    source=self.service.folder.root / item.name,
                    objects=mapped.objects,
                )

        def written(result: Segmented, record: TargetRecord) -> None:
            if self.overlays:
                jpeg = export_render.overlay_jpeg(result.image, result.label_map, self.labels, colors=palette)
                atomic.write_bytes(out / "overlays" / f"{record.stem}.jpg", jpeg)
            records.append(
                _image_record(
                    items[result.name],
                    result.label_map,
                    self.labels,
                    result.scores,
                    self.session.reviews.get(result.name),
                    record.objects,
                )
            )
            self.done += 1

        export_results(out, self.labels, export, segmented(), failures=self.failures, on_written=written)
        if OutputFormat.PNG.value not in self.formats:  # overlays only: the PNG masks were a vehicle
            shutil.rmtree(out / "masks", ignore_errors=True)
        _recolor(out, self.labels, self.colors)
        atomic.write_json(out / "images.json", records)

    def _zip(self, out: Path) -> None:

        with zipfile.ZipFile(self.path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(out.rglob("*")):
                if path.is_file() and STATE_DIR not in path.relative_to(out).parts:
                    packed = path.suffix.lower() in COMPRESSED  # deflating a PNG or JPEG again gains nothing
                    kind = zipfile.ZIP_STORED if packed else zipfile.ZIP_DEFLATED
                    archive.write(path, path.relative_to(out).as_posix(), compress_type=kind)


class _Cancelled(Exception):
    """The export was cancelled (:meth:`ExportJob.cancel`)."""


@dataclass
class Plan:
    """What to export, image by image in folder order; the targets left out (rejected or unreadable),
    and the unreadable ones as ``failures.txt/json`` rows (``{"path", "error"}``)."""

    items: list[Item]
    left_out: list[str]
    failures: list[dict[str, str]]


def plan(service: SansaService, session: Session, labels: list[str]) -> Plan:
    """What to export (see :class:`Plan`): each image as it shows (:func:`sansa.web.results.shown`).

    Raises:
        Conflict: nothing marked yet, or a target has no result for the current references.
    """
    if not session.slots and not session.fixes:
        raise Conflict("no reference yet: mark an object on a reference image first")
    items, left_out, missing, failures = [], [], [], []
    job = session.job
    unreadable = job.failed if job is not None and job.version == session.version else {}
    for name in service.folder.names():
        reference = is_reference(session, name)
        if not reference and (session.reviews.get(name) == ReviewState.REJECTED or name in unreadable):
            left_out.append(name)
            if name in unreadable:
                failures.append({"path": name, "error": unreadable[name]})
        elif (source := composable(service, session, name)) is not None:
            items.append(Item(name, source, _mapping(service, session, name, labels)))
        else:
            missing.append(name)
    if missing:
        targets = len(service.targets(session))
        raise Conflict(
            f"export: {len(missing)} of {targets} targets are not propagated with the current "
            "references; propagate to all first"
        )
    return Plan(items, left_out, failures)


def start(
    service: SansaService, session: Session, formats: Sequence[str] | None, options: dict[str, Any] | None = None
) -> ExportStatus:
    """Start an export of the session (replacing its previous export's zip); ``options`` go to
    :class:`sansa.export.FolderWriter` (``coco_layout``, ``coco_polygons``, ``per_class``)."""
    job = ExportJob(service, session, formats, options)
    with service.lock:
        previous, session.export = session.export, job
    if previous is not None:
        previous.discard()
    return job.start().status()


def job_of(session: Session, export_id: str) -> ExportJob:
    job = session.export
    if job is None or job.id != export_id:
        raise NotFound(f"export {export_id!r}: no such export in this session (it is replaced by each new one)")
    return job


def _mapping(service: SansaService, session: Session, name: str, labels: list[str]) -> Callable[[], Mapped]:
    """Image ``name``'s composed map in the export's class ids (the page's classes when the export
    started) and its objects, composed when written (one image's map in memory at a time)."""

    def mapping() -> Mapped:
        with service.lock:
            composed = shown_if_current(service, session, name)
        if composed is None:
            raise Conflict(f"export: {name!r} lost its result while exporting (references changed); export again")
        ids = [0] + [labels.index(x) + 1 if x in labels else 0 for x in composed.labels]
        lookup = np.array(ids, dtype=np.uint16)
        scores = {k: v for k, v in composed.scores.items() if k in labels}
        return Mapped(lookup[composed.label_map], scores, web_objects.to_export(composed, labels))

    return mapping


def _image_record(
    item: Item,
    label_map: np.ndarray,
    labels: list[str],
    scores: dict[str, float],
    review: ReviewState | None,
    objects: dict[str, int],
) -> dict:
    classes = {
        label: {"pixels": int(np.count_nonzero(label_map == i)), "score": scores.get(label), "objects": objects[label]}
        for i, label in enumerate(labels, start=1)
    }
    return {
        "file_name": item.name,
        "source": item.source.value,
        "review": review.value if review else None,
        "classes": {k: v for k, v in classes.items() if v["pixels"]},
    }


def _recolor(out: Path, labels: list[str], colors: list[tuple[int, int, int]]) -> None:
    """Give ``classes.json``, the indexed PNGs and Label Studio's config the page's class colours."""
    from sansa.export import labelstudio

    config = out / labelstudio.FOLDER / "config.xml"
    if config.is_file():
        atomic.write_text(config, labelstudio.label_config(labels, colors=colors))
    table_path = out / "classes.json"
    table = json.loads(table_path.read_text())
    for row in table:
        if 1 <= row["id"] <= len(colors):
            row["color"] = list(colors[row["id"] - 1])
    atomic.write_json(table_path, table)
    flat = [v for rgb in [(0, 0, 0), *colors] for v in rgb]
    for path in sorted((out / "labels").glob("*.png")) if (out / "labels").is_dir() else []:
        with open_lazily(path) as img:
            img.load()
        img.putpalette(flat + [0] * (768 - len(flat)))
        atomic.write_bytes(path, atomic.encode_image(img, "PNG"))
