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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
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
from sansa.labeling.batches import Batch, fixed_batches
from sansa.labeling.job import ExportOptions, Job, ReferenceEntry, prompt_to_dict
from sansa.labeling.pipeline import Outcome
from sansa.targets import Target, file_sha256, find_targets, unchanged

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
class Plan:
    """A prepared run: the folder is locked and checked, and what is left to do is known.

    Attributes:
        targets: every target, sorted by name, stems assigned.
        root: the folder target names are relative to.
        batches: the fixed batches with something to write (``batch.write``).
        skipped: names of targets an earlier run finished (with the same inputs).
        inputs: what results are made from (references, model); ``inputs_digest`` is in each record.
        writer: the driver's :class:`FolderWriter` (records of earlier runs loaded).
    """

    job: Job
    labels: list[str]
    targets: list[Target]
    root: Path
    batches: list[Batch]
    skipped: list[str]
    references: list[LoadedReference]
    inputs: dict[str, Any]
    inputs_digest: str
    writer: FolderWriter
    lock: out_folder.FolderLock
    started: float = field(default_factory=time.time)

    @property
    def out(self) -> AnyPath:
        return self.job.out_dir

    def close(self) -> None:
        """Release the output folder."""
        self.lock.release()


@dataclass
class RunResult:
    """What a finished run did: counts, records of every finished target, the files it wrote."""

    out: AnyPath
    labels: list[str]
    targets: list[Target]
    root: Path
    outcome: Outcome
    records: list[TargetRecord]
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
    """Check the job, read the references, find the targets, lock and check the output folder, and
    work out what is left to do. Nothing is written before every check has passed.

    Raises:
        SansaError: one line: bad input, a folder in use, or one holding results of other inputs.
    """
    notes = notes or _print_note
    job.check()
    references = load_references(job)
    stats: dict[str, dict[str, int]] = {}  # size and time of URL targets, from their listing
    targets, root = find_targets(job.targets, job.recursive, exclude=job.out_dir, stats=stats)
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
        out_folder.check_inputs(job.out_dir, inputs, has_results=bool(writer.names()))
        digest = out_folder.inputs_digest(inputs)
        targets = [Target(t.path, t.name, writer.claim_stem(t.name)) for t in targets]
        done = _done_flags(writer, targets, digest, stats)
        batch_size = job.batch_size or _default_batch_size(job)
        batches = [
            Batch(index, batch, [not d for d in done[index * batch_size : index * batch_size + len(batch)]])
            for index, batch in fixed_batches(targets, batch_size)
        ]
    except BaseException:
        lock.release()
        raise
    return Plan(
        job,
        job.labels,
        targets,
        root,
        [b for b in batches if any(b.write)],
        [t.name for t, d in zip(targets, done, strict=True) if d],
        references,
        inputs,
        digest,
        writer,
        lock,
    )


STAT_THREADS = 32  # requests in flight asking a store whether targets changed


def _done_flags(
    writer: FolderWriter, targets: Sequence[Target], digest: str, stats: dict[str, dict[str, int]]
) -> list[bool]:
    """:func:`_is_done` of each target (``stats``: sizes and times known from the listing); for
    targets on a store whose listing did not tell, many requests in flight."""

    if not targets or not fs.is_url(targets[0].path) or all(t.path in stats for t in targets):
        return [_is_done(writer, t, digest, stats.get(t.path)) for t in targets]

    with ThreadPoolExecutor(STAT_THREADS, "sansa-stat") as pool:
        return list(pool.map(lambda t: _is_done(writer, t, digest, stats.get(t.path)), targets))


def _is_done(writer: FolderWriter, target: Target, digest: str, stat: dict[str, int] | None = None) -> bool:
    """Finished by an earlier run from the same inputs, and the target file unchanged since."""
    record = writer.record(target.name)
    if record is None or not writer.is_done(target.name):
        return False
    made_from = record.made_from or {}
    return made_from.get("inputs") == digest and unchanged(target.path, made_from.get("target"), stat)


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


def tally(outcomes: Iterable[Outcome], plan: Plan) -> Outcome:
    """Add up the batches' outcomes (in any order) under one progress line (images/s, ETA; in a
    terminal); ``seconds`` is wall time, from the first batch to the last (also across actors)."""
    from tqdm import tqdm

    started, outcome = time.time(), Outcome()
    total = sum(sum(b.write) for b in plan.batches)
    with tqdm(total=total, unit="img", desc="segment", disable=None, file=sys.stderr) as progress:
        for batch_outcome in outcomes:
            outcome.add(batch_outcome)
            progress.update(len(batch_outcome.written) + len(batch_outcome.failures))
    outcome.seconds = time.time() - started
    return outcome


# -- driver: finalise ------------------------------------------------------------------------------
def finalise(
    plan: Plan,
    outcome: Outcome,
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
    outcome.written.sort()  # lanes and actors finish batches in any order; targets are sorted by name
    if reload:
        writer.reload()
    finish_dataset(writer, outcome.failures)
    seconds = time.time() - plan.started
    _save_run(plan, outcome, references, reference_files, device, precision, seconds)
    records = [r for r in (writer.record(t.name) for t in plan.targets) if r is not None]
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
    outcome: Outcome,
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
