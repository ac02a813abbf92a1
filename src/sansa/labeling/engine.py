"""Running a labelling job: prepare (driver), process batches (anywhere), finalise (driver).

The steps, as :func:`run` does them on one process, and as a distributed runner (Ray) splits
them between a driver and workers::

    plan = prepare(job)                                  # driver: checks, discovery, lock, resume
    predictor = job.model.load()
    references = encode_references(predictor, plan)      # driver: the references' memory, once
    save_reference_pictures(plan, references)
    for batch in plan.batches:                           # anywhere, in any order, on any process
        outcome += process_batch(predictor, writer_for(job, worker=True), batch, plan.inputs_digest)
    result = finalise(plan, outcome, references, device)  # driver: dataset files, failures, run.json
    plan.close()                                         # releases the folder lock

A worker needs only the :class:`~sansa.labeling.job.Job` (JSON), the batches (JSON), the
inputs digest (a string) and a predictor holding the references (``predictor.add_encoded``).
Every target's files and record are written atomically, the record last; a killed run resumes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sansa import atomic, drawing, fs
from sansa._version import __version__
from sansa.errors import OutputError, PromptError, SansaError
from sansa.export import render
from sansa.export.names import safe_stem, safe_token
from sansa.export.writer import FolderWriter, TargetRecord
from sansa.fs import describe
from sansa.images import load_image, load_image_and_bytes
from sansa.labeling import folder as out_folder
from sansa.labeling import pipeline
from sansa.labeling.batches import Batch
from sansa.labeling.job import ExportOptions, Job, ReferenceEntry, prompt_to_dict
from sansa.labeling.pipeline import Outcome, RunOutcome
from sansa.labeling.plan import Plan, Records, form_batches
from sansa.listing import stream_targets
from sansa.targets import Target, file_sha256

if TYPE_CHECKING:
    from sansa.fs import AnyPath
    from sansa.predictor import SansaPredictor
    from sansa.records import Prompt, Reference

Notes = Callable[[str], None]


@dataclass
class LoadedReference:
    """A reference entry with its image read (once): ``pixels`` RGB ``uint8 [H, W, 3]``."""

    entry: ReferenceEntry
    pixels: np.ndarray
    sha256: str


@dataclass
class RunResult:
    """What a finished run did: counts, records of every finished target, the files it wrote.

    ``targets``, ``records`` and the names in ``outcome`` are kept on disk (:mod:`sansa.spill`) and
    read when asked for: a run of a million targets returns a few MB.
    """

    out: AnyPath
    labels: list[str]
    targets: Sequence[Target]
    root: Path
    outcome: RunOutcome
    records: Sequence[TargetRecord]
    outputs: list[AnyPath]
    seconds: float

    @property
    def exit_code(self) -> int:
        """0: every target done; 1: some failed."""
        return 1 if self.outcome.failures else 0


# -- driver: prepare ----------------------------------------------------------------------------
def load_references(job: Job) -> list[LoadedReference]:
    """Read each reference image once, check its prompt lies inside it (one-line errors naming it)."""

    loaded = []
    for entry in job.references:
        try:
            if fs.is_url(entry.image):
                pixels, sha256 = load_image(entry.image, "reference"), file_sha256(entry.image) or ""
            else:  # one read: the pixels and the hash of the same bytes
                pixels, data = load_image_and_bytes(entry.image)
                sha256 = hashlib.sha256(data).hexdigest()
            entry.prompt.check_fits(*pixels.shape[:2])
        except PromptError as err:
            raise SansaError(f"{entry.source} ({entry.image}): {err}") from None
        except SansaError as err:
            raise SansaError(f"{entry.source}: {err}") from None
        loaded.append(LoadedReference(entry, pixels, sha256))
    return loaded


def inputs_record(job: Job, references: Sequence[LoadedReference]) -> dict[str, Any]:
    """What every result of the job is made from: each reference (class, prompt, image), the model
    and the object options set."""

    refs = [
        {
            "label": r.entry.label,
            "image": r.entry.image,
            "image_sha256": r.sha256,
            "prompt_sha256": _prompt_digest(r.entry.prompt),
        }
        for r in references
    ]
    objects = job.objects.changed()  # defaults unrecorded: folders of earlier versions still resume
    return {"references": refs, "model": job.model.identity(), **({"objects": objects} if objects else {})}


def _prompt_digest(prompt: Prompt) -> str:
    """SHA-256 of what the model reads of ``prompt``: the strokes as drawn are left out (only the
    reference picture draws them; ``scribble`` holds them joined and thinned), as in folders
    written before the prompt kept them."""
    values = {key: value for key, value in prompt_to_dict(prompt).items() if key != "strokes"}
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()


def writer_for(job: Job, worker: bool = False) -> FolderWriter:
    """The job's :class:`FolderWriter`; ``worker=True`` in a process writing into a prepared folder."""
    export = job.export
    return FolderWriter(job.out_dir, job.labels, export.parsed_formats(), **export.writer_options(), prepare=not worker)


def prepare(job: Job, notes: Notes | None = None, command: str = "") -> Plan:
    """Check the job, read the references, start the target listing, lock and check the output
    folder. Nothing is written before every check has passed (an input without images included:
    the listing's first page is read here). What is left to do is worked out as the listing
    arrives (:meth:`Plan.stream`; :attr:`Plan.batches` reads it whole).

    Raises:
        SansaError: one line: bad input, a folder in use, or one holding results of other inputs.
    """
    notes = notes or _print_note
    job.check()
    references = load_references(job)
    listing = stream_targets(job.targets, job.recursive, exclude=job.out_dir)
    inputs = inputs_record(job, references)
    lock = out_folder.FolderLock(job.out_dir, command).acquire()
    try:
        if job.overwrite:
            out_folder.clear_results(job.out_dir)
        writer = writer_for(job)
        if writer.damaged:
            notes(
                f"{len(writer.damaged)} damaged record(s) in {job.out_dir / '.sansa' / 'parts'} removed; "
                "their targets are done again"
            )
        out_folder.check_inputs(job.out_dir, inputs, has_results=writer.record_count() > 0)
        digest = out_folder.inputs_digest(inputs)
        batch_size = job.batch_size or _default_batch_size(job)
    except BaseException:
        lock.release()
        raise
    plan = Plan(job, job.labels, listing.root, references, inputs, digest, writer, lock)
    plan.pending = form_batches(plan, listing.pages, batch_size)
    return plan


def _default_batch_size(job: Job) -> int:
    from sansa.devices import resolve_device
    from sansa.predictor import ACCELERATOR_BATCH_SIZE

    return 1 if resolve_device(job.model.device or "auto").type == "cpu" else ACCELERATOR_BATCH_SIZE


# -- driver: references ----------------------------------------------------------------------------
def encode_references(predictor: SansaPredictor, plan: Plan) -> list[Reference]:
    """Encode every reference into ``predictor``'s memory; returns the :class:`~sansa.records.Reference`
    records (their ``memory`` can be handed to other predictors with ``add_encoded``)."""
    references = []
    for loaded in plan.references:
        entry = loaded.entry
        try:
            references.append(
                predictor.add_reference(loaded.pixels, label=entry.label, name=entry.image, prompt=entry.prompt)
            )
        except SansaError as err:
            raise SansaError(f"{entry.source}: {err}") from None
    return references


def save_reference_pictures(plan: Plan, references: Sequence[Reference]) -> list[dict[str, str]]:
    """``references/NN_<label>_<image>_mask.png`` and ``.jpg`` (the image with the mask and prompt):
    what SANSA understood of each reference. Returns their paths relative to the out folder."""

    saved = []
    for index, (loaded, reference) in enumerate(zip(plan.references, references, strict=True), start=1):
        stem = f"{index:02d}_{safe_token(reference.label)}_{safe_stem(Path(loaded.entry.image).name)}"
        label_map = reference.mask.astype(np.uint16) * (plan.labels.index(reference.label) + 1)  # its colour
        picture = drawing.overlay(loaded.pixels, label_map, plan.labels, legend=False)
        prompt = reference.prompt
        drawing.draw_prompt(picture, prompt.points, prompt.labels, prompt.box)
        for stroke in prompt.strokes:
            drawing.draw_prompt(picture, scribble=stroke)
        folder = plan.out / "references"
        atomic.write_bytes(folder / f"{stem}_mask.png", render.binary_png(reference.mask))
        atomic.write_bytes(folder / f"{stem}.jpg", atomic.encode_image(picture, "JPEG", quality=render.JPEG_QUALITY))
        saved.append({"mask": f"references/{stem}_mask.png", "picture": f"references/{stem}.jpg"})
    return saved


# -- anywhere: one batch -------------------------------------------------------------------------
def process_batch(predictor: SansaPredictor, writer: FolderWriter, batch: Batch, inputs_digest: str) -> Outcome:
    """Segment one fixed batch and write its unfinished targets (files, then each target's record).

    Every readable member is encoded, finished or not, so a result never depends on where an
    earlier run stopped. An unreadable target is a failure entry, never an exception.

    Args:
        predictor: holds the job's references (in the job's order).
        writer: the job's writer (:func:`writer_for`).
        batch: from :attr:`Plan.batches`.
        inputs_digest: :attr:`Plan.inputs_digest`, kept in each record.
    """
    started = time.time()
    read = pipeline.read_batch(predictor.transform, batch)
    outcome = Outcome(failures=read.failures)
    for member, segmentation in pipeline.segment_members(predictor, read):
        if member.write:
            pipeline.write_member(writer, member, segmentation, inputs_digest)
            outcome.written.append(member.target.name)
    outcome.seconds = time.time() - started
    return outcome


def tally(outcomes: Iterable[Outcome], plan: Plan) -> RunOutcome:
    """Add up the batches' outcomes (in any order) under one progress line (images/s, ETA; in a
    terminal; its total grows while the listing arrives); ``seconds`` is wall time, from the first
    batch to the last (also across actors). ``skipped`` is every target found done (the listing
    has ended once ``outcomes`` has)."""
    from tqdm import tqdm

    started, outcome = time.time(), RunOutcome()
    with tqdm(total=plan.to_write, unit="img", desc="segment", disable=None, file=sys.stderr) as progress:
        for batch_outcome in outcomes:
            outcome.add(batch_outcome)
            progress.total = plan.to_write  # grows while the listing arrives
            progress.update(len(batch_outcome.written) + len(batch_outcome.failures))
    outcome.seconds = time.time() - started
    outcome.skipped = plan.skipped
    return outcome


# -- driver: finalise ------------------------------------------------------------------------------
def finalise(
    plan: Plan,
    outcome: RunOutcome,
    references: Sequence[Reference],
    reference_files: Sequence[dict[str, str]],
    device: str,
    reload: bool = False,
    precision: str = "fp32",
) -> RunResult:
    """Assemble the dataset files from every target's record, then ``failures.txt/json`` and ``run.json``.

    Args:
        device: where the targets ran, and ``precision`` in what arithmetic (both for ``run.json``).
        reload: re-read the records from disk first (when other processes wrote the targets).
    """
    writer = plan.writer
    if reload:
        writer.reload()
    finish_dataset(writer, outcome.failures)
    seconds = time.time() - plan.started
    _save_run(plan, outcome, references, reference_files, device, precision, seconds)
    records = Records(writer, plan.targets)
    outputs = [*writer.outputs(), plan.out / "references", plan.out / "run.json"]
    if outcome.failures:
        outputs.append(plan.out / "failures.txt")
    return RunResult(plan.out, plan.labels, plan.targets, plan.root, outcome, records, outputs, seconds)


def finish_dataset(writer: FolderWriter, failures: Sequence[dict[str, str]]) -> None:
    """``classes.json``, ``annotations.json``, ``yolo/data.yaml`` from the records, and the failures
    (``failures.txt``: ``path: error`` lines; ``failures.json``), or no failure files when none."""

    writer.close()
    out = writer.out_dir
    failures = sorted(failures, key=lambda f: (f.get("target") or f["path"], f["path"]))  # any finishing order
    if failures:
        atomic.write_json(out / "failures.json", list(failures))
        atomic.write_text(out / "failures.txt", "".join(f"{f['path']}: {f['error']}\n" for f in failures))
    else:  # a previous run's failures no longer hold
        for name in ("failures.json", "failures.txt"):
            (out / name).unlink(missing_ok=True)


def _save_run(
    plan: Plan,
    outcome: RunOutcome,
    references: Sequence[Reference],
    reference_files: Sequence[dict[str, str]],
    device: str,
    precision: str,
    seconds: float,
) -> None:
    """``run.json``: what ran (options, model, references, targets, outcome)."""

    refs = [
        {"image": loaded.entry.image, "label": ref.label, "prompt": ref.prompt.type.value, "score": ref.score, **files}
        for loaded, ref, files in zip(plan.references, references, reference_files, strict=True)
    ]
    atomic.write_json(
        plan.out / "run.json",
        {
            "sansa": __version__,
            "command": "segment",
            "options": plan.job.options,
            "device": device,
            "precision": precision,
            "labels": plan.labels,
            "references": refs,
            "formats": list(plan.writer.formats),
            "targets": {
                "root": str(plan.root),
                "count": len(plan.targets),
                "written": len(outcome.written),
                "already_done": len(outcome.skipped),
                "failed": len(outcome.failures),
            },
            "seconds": round(seconds, 2),
            "segmenting_seconds": round(outcome.seconds, 2),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
    )


@contextlib.contextmanager
def output_errors(out: AnyPath) -> Iterator[None]:
    """Any file-system error of the output folder (read-only, full, gone) as one line naming the path."""
    try:
        yield
    except Exception as err:
        if isinstance(err, SansaError) or not (isinstance(err, OSError) or _store_error(err)):
            raise
        if not isinstance(out, Path):  # a URL: the store's own message, one line
            raise OutputError(f"{out}: the object store failed ({describe(err)}); run again to resume") from None
        if not isinstance(err, OSError):  # targets on a store, the output local
            raise SansaError(f"targets: the object store failed ({describe(err)}); run again to resume") from None
        path = Path(err.filename) if err.filename else out
        inside = path.resolve().is_relative_to(out.resolve())
        raise OutputError.of(path, err, "cannot write" if inside else "cannot read") from None


def _store_error(err: BaseException) -> bool:
    """An error of an object-store client (botocore, aiohttp, s3fs, gcsfs, adlfs), which need not be an OSError."""
    module = type(err).__module__.split(".")[0]
    return module in ("botocore", "aiobotocore", "aiohttp", "s3fs", "gcsfs", "adlfs", "fsspec")


@dataclass(frozen=True)
class Segmented:
    """A target segmented elsewhere (the web app's session), ready to be written like a run's.

    Attributes:
        name: the target's name (POSIX, relative to its folder).
        image: RGB ``uint8 [H, W, 3]``.
        label_map: ``uint16 [H, W]``: 0 background, ``i + 1`` = the export's ``labels[i]``.
        scores: per class, the score written to COCO (1.0 for hand-made masks).
        source: the image file, for the ``yolo/`` and ``coco/`` dataset folders.
        objects: the objects to write (see :meth:`sansa.export.FolderWriter.write`); empty: one per class.
    """

    name: str
    image: np.ndarray
    label_map: np.ndarray
    scores: dict[str, float]
    source: Path | None = None
    objects: Sequence[Any] = ()


def export_results(
    out: Path,
    labels: Sequence[str],
    export: ExportOptions,
    results: Iterable[Segmented],
    *,
    failures: Sequence[dict[str, str]] = (),
    on_written: Callable[[Segmented, TargetRecord], None] | None = None,
) -> list[TargetRecord]:
    """Write already segmented targets into ``out`` the way a run does (the web app's export):
    the same writer, the same dataset files (``classes.json``, ``annotations.json``, ``yolo/``),
    the same ``failures.txt/json``.

    Args:
        export: :class:`~sansa.labeling.job.ExportOptions`.
        results: one per target, read lazily (one image in memory at a time).
        failures: ``{"path", "error"}`` of targets that could not be segmented.
        on_written: called after each target's files and record are written (progress, extras).
    """
    writer = FolderWriter(out, list(labels), export.parsed_formats(), **export.writer_options())
    records = []
    for result in results:
        record = writer.write(
            result.name,
            result.image,
            result.label_map,
            labels,
            result.scores,
            objects=result.objects,
            source=result.source,
        )
        records.append(record)
        if on_written is not None:
            on_written(result, record)
    finish_dataset(writer, failures)
    return records


def _print_note(note: str) -> None:
    print(f"sansa: {note}", file=sys.stderr)
