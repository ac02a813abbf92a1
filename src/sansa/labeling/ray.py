"""Running a labelling job on Ray Data: the same run as :func:`sansa.labeling.run`, on many processes.

The driver does what only one process may do; workers do the rest::

    driver                                  actors (--actors N|MIN-MAX, --cpus-per-actor C,
    ------                                  --gpus-per-actor G; see ray_cluster.RayOptions)
    prepare: checks, the listing's first   load the model once;
      page, lock                            get the references' memory once (object store)
    encode the references once; ray.put  ->
    Dataset of batches of target paths,  -> map_batches, one call per block (<= BLOCK_TARGETS
      fed a block at a time as the            targets), pipelined as in one process:
      listing arrives (ray_feed; resume:
      finished targets left out)
                                                reader threads  decode + resize batch i+1, i+2
                                                model           segments batch i
                                                writer threads  write batch i-1, i-2 (files,
                                                                then record; atomic)
                                              at the block's end: its records into one shard
    finalise: annotations.json,          <- per batch: written / failed names (no pixels)
      yolo/data.yaml, classes.json,
      failures, run.json (after removing temporaries of actors killed mid-write)

The bytes are those of a one-process run: the same fixed batches of the sorted target list, the
same references' memory (computed once, on the driver), the same writer, the same pipelined loop
(:func:`~sansa.labeling.pipeline.pipelined_batches`; an actor's memory is bounded by its queues).
A task ships only its block's batches (target paths, names, stems). A block whose actor dies is
retried by Ray on a restarted actor (rewriting a target gives the same bytes); an error in a block
(a store that does not answer) is retried by the actor with backoff, then its targets are failure
entries counted against ``max_failures``; an unreadable image is a failure entry; a driver killed
and started again resumes like a one-process run (finished targets are skipped). A CPU actor runs
``C`` lanes (:func:`~sansa.labeling.pipeline.lane_batches`), each model call at one thread, so its
bytes are those of any other process.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sansa import atomic, fs
from sansa.errors import SansaError
from sansa.labeling import engine
from sansa.labeling.batches import Batch
from sansa.labeling.job import Job
from sansa.labeling.pipeline import Outcome, RunOutcome, lane_batches, model_lanes
from sansa.labeling.ray_cluster import RayOptions, connect, import_ray, quiet_ray_data
from sansa.labeling.ray_feed import Feeder, queue_datasource

if TYPE_CHECKING:
    from sansa.export.writer import FolderWriter
    from sansa.predictor import SansaPredictor
    from sansa.records import Reference
    from sansa.targets import Target

# Targets per Ray Data block (at most; small runs get smaller blocks, two per actor): a block is one
# actor call (pipelined through its batches), the unit a dead actor's work is retried in, and its
# records become one shard (sansa.export.shards): a million targets leave ~4,000 record objects.
BLOCK_TARGETS = 256
RETRIES = 3  # further tries of a block's unfinished batches after an error in an actor
BACKOFF_S = 1.0  # seconds before the first retry, doubled before each next one


def run_ray(job: Job, notes: engine.Notes | None = None, command: str = "", **options: Any) -> engine.RunResult:
    """Run ``job`` on Ray (see the module docstring); :func:`sansa.labeling.run` with ``executor="ray"``.

    Args:
        job: a :class:`~sansa.labeling.job.Job`.
        options: :class:`~sansa.labeling.ray_cluster.RayOptions` fields (``address``, ``actors``, ...).

    Returns:
        The :class:`~sansa.labeling.engine.RunResult`, as a one-process run gives it.

    Raises:
        SansaError: one line: no cluster (checked before the output folder is touched), a batch
            that failed in a way that is not a target's, or more than ``max_failures`` targets
            that could not be written.
    """

    ray_options = RayOptions(**options)
    ray_options.check()
    import_ray()
    if job.batch_size is None and ray_options.gpus_per_actor > 0:
        from sansa.predictor import ACCELERATOR_BATCH_SIZE

        job = dataclasses.replace(job, batch_size=ACCELERATOR_BATCH_SIZE)  # the actors' device, not the driver's
    job.check()
    connect(ray_options)
    quiet_ray_data()
    plan = engine.prepare(job, notes, command)
    try:
        predictor = job.model.load("cpu" if ray_options.device == "cpu" else None)
        references = engine.encode_references(predictor, plan)
        reference_files = engine.save_reference_pictures(plan, references)
        outcome = engine.tally(label_batches(job, plan.stream(), plan.inputs_digest, references, ray_options), plan)
        account_for_every_target(outcome, plan.targets)
        atomic.remove_temporaries(plan.out)  # left by an actor killed mid-write; every actor is done now
        return engine.finalise(
            plan,
            outcome,
            references,
            reference_files,
            ray_options.device,
            reload=True,
            # the actors' precision; "auto" on GPU actors resolves there, after what the driver can see
            precision=job.model.resolved_precision("cpu")
            if ray_options.device == "cpu"
            else job.model.precision or "fp32",
        )
    finally:
        plan.close()


def label_batches(
    job: Job, batches: Iterable[Batch], inputs_digest: str, references: Sequence[Reference], options: RayOptions
) -> Iterator[Outcome]:
    """Process ``batches`` on an actor pool; yields each batch's
    :class:`~sansa.labeling.pipeline.Outcome` as it completes (in any order).

    A run of a few blocks is split evenly (every actor gets work); a longer one goes to the actors
    a block of up to :data:`BLOCK_TARGETS` targets at a time while ``batches`` is still being
    listed (:mod:`sansa.labeling.ray_feed`).

    Args:
        job: the job (shipped to each actor once, as JSON).
        batches: :class:`~sansa.labeling.batches.Batch` records with something to write, in order
            (an iterator: pulled as the pool takes blocks, e.g. :meth:`~sansa.labeling.engine.Plan.stream`).
        inputs_digest: kept in each target's record.
        references: the driver's encoded :class:`~sansa.records.Reference` records: their memory
            is put in the object store once and handed to each actor at construction.
        options: the pool (``actors``: fixed or ``(min, max)``), each actor's reservation and the
            error budget (``max_failures``).
    """
    ray = import_ray()
    todo = iter(batches)
    first = next(todo, None)
    if first is None:
        return
    low, high = options.pool
    per_block = max(1, BLOCK_TARGETS // len(first.targets))  # the first batch is a whole one
    short = per_block * 2 * (high or low)  # batches: a run of at most two blocks per actor is split evenly
    ahead = [first, *itertools.islice(todo, short)]  # a short run ends within
    feeder = None
    if len(ahead) <= short:
        rows = [{"batch": _as_json(batch)} for batch in ahead]
        blocks = min(len(rows), max(math.ceil(len(rows) / per_block), 2 * (high or low)))  # every actor gets work
        high = min(high or blocks, blocks)  # never more actors than blocks (a resume with little left)
        dataset = ray.data.from_items(rows, override_num_blocks=blocks)
    else:
        feeder = Feeder(_blocks(itertools.chain(ahead, todo), per_block))
        dataset = ray.data.read_datasource(queue_datasource(feeder.queue), num_cpus=0)
    shipped = ray.put([shippable(reference) for reference in references])
    results = dataset.map_batches(
        LabelActor,
        batch_size=None,
        compute=ray.data.ActorPoolStrategy(min_size=min(low, high or low), max_size=high),  # a block per call
        fn_constructor_kwargs={
            "job": for_workers(job).to_dict(),
            "references": [shipped],
            "inputs_digest": inputs_digest,
            "device": options.device,
            "cpus": options.cpus,
            "on_start": options.on_actor_start,
        },
        num_cpus=options.cpus,
        num_gpus=options.gpus_per_actor or None,
        memory=options.memory_bytes(job.model.backbone or job.model.model),
    )
    try:
        outcomes = (Outcome.from_dict(json.loads(row["outcome"])) for row in results.iter_rows())
        yield from within_budget(outcomes, options.max_failures)
    except ray.exceptions.RayError as err:  # not an unreadable image (a failure entry): the output, the model
        raise SansaError(
            f"a batch failed on Ray ({_cause(err)}); finished targets are kept, run the same command again to resume"
        ) from None
    finally:
        if feeder is not None:
            feeder.close()
    if feeder is not None:
        feeder.check()  # a listing that failed midway: what it listed is done, the rest on resuming


def _as_json(batch: Batch) -> str:
    return json.dumps(batch.to_dict())


def _blocks(batches: Iterator[Batch], size: int) -> Iterator[list[str]]:
    """The rows (JSON batches) of blocks of ``size`` consecutive batches."""
    while block := [_as_json(batch) for batch in itertools.islice(batches, size)]:
        yield block


NOT_WRITTEN = "not written: "


def within_budget(outcomes: Iterable[Outcome], max_failures: int) -> Iterator[Outcome]:
    """``outcomes`` as they come, until more than ``max_failures`` targets could not be written.

    Raises:
        SansaError: one line naming the count and the first such target with its cause.
    """
    errors = 0
    for outcome in outcomes:
        errors += outcome.errors
        if errors > max_failures:
            first = next(f for f in outcome.failures if f["error"].startswith(NOT_WRITTEN))
            raise SansaError(
                f"{errors} target(s) could not be written (more than max_failures={max_failures}): "
                f"{first['target']}: {first['error']}; finished targets are kept, run the same command again to resume"
            )
        yield outcome


class LabelActor:
    """One model replica of the pool: loads the model once, takes the references' memory from the
    object store once, then segments and writes one block of fixed batches per call, reading
    ahead of the model and writing behind it (:func:`~sansa.labeling.pipeline.pipelined_batches`).

    Args:
        job: :meth:`Job.to_dict` of the run.
        references: ``[ObjectRef]`` of the shippable references (wrapped, so Ray hands the
            reference to this constructor and it is fetched here, once).
        inputs_digest: kept in each target's record.
        device: where to run the model.
        cpus: the CPUs it reserves: lanes of batches segmented at once on the CPU.
        on_start: see :attr:`RayOptions.on_actor_start`.
    """

    def __init__(
        self,
        job: dict[str, Any],
        references: list[Any],
        inputs_digest: str,
        device: str,
        cpus: float = 1.0,
        on_start: Callable[[Any], None] | None = None,
    ) -> None:
        import ray

        self.job: Job = Job.from_dict(job)
        self.predictor: SansaPredictor = self.job.load_predictor(device)
        self.lanes: int = model_lanes(self.predictor, max(1, int(cpus)))
        for reference in ray.get(references[0]):
            self.predictor.add_encoded(reference)
        self.writer: FolderWriter = engine.writer_for(self.job, worker=True)
        self.inputs_digest: str = inputs_digest
        if on_start is not None:
            on_start(ray.get_runtime_context().current_actor)

    def __call__(self, rows: dict[str, np.ndarray]) -> dict[str, list[str]]:
        """``rows["batch"]``: a block's JSON batches -> ``{"outcome": [JSON outcome per batch]}``; an
        unreadable target is a failure entry in its batch's outcome, as in one process."""
        batches = [Batch.from_dict(json.loads(str(text))) for text in rows["batch"]]
        outcomes = self.label(batches)
        try:
            self.writer.compact()  # the block's records (and any left from earlier calls) into one shard
        except Exception:  # noqa: BLE001 (they stay files of their own: read on resume, compacted at the end)
            pass
        return {"outcome": [json.dumps(outcome.to_dict()) for outcome in outcomes]}

    def label(self, batches: list[Batch]) -> list[Outcome]:
        """Segment and write ``batches``; after an error (an object store that does not answer), the
        unfinished batches are tried again :data:`RETRIES` times with backoff (rewriting a target
        gives the same bytes), then their targets are failure entries counted in ``errors``."""

        owner = {t.name: b.index for b in batches for t, w in zip(b.targets, b.write, strict=True) if w}
        done: dict[int, Outcome] = {}
        for attempt in range(RETRIES + 1):
            todo = [b for b in batches if b.index not in done]
            try:
                for outcome in lane_batches(self.predictor, self.writer, todo, self.inputs_digest, self.lanes):
                    done[owner[(outcome.written or [f["target"] for f in outcome.failures])[0]]] = outcome
                break
            except Exception as err:  # noqa: BLE001 (any error: retried, then reported per target)
                if attempt < RETRIES:
                    time.sleep(BACKOFF_S * 2**attempt)
                    continue
                cause = _first_line(err) if isinstance(err, SansaError) else f"{type(err).__name__}: {_first_line(err)}"
                error = NOT_WRITTEN + cause
                for batch in todo:
                    if batch.index not in done:
                        done[batch.index] = _failed(batch, error)
        return [done[b.index] for b in batches]


def account_for_every_target(outcome: RunOutcome, targets: Iterable[Target]) -> None:
    """Make every target of ``targets`` that ``outcome`` neither wrote, skipped nor lists as failed
    a failure of this run (``NOT_WRITTEN``; it counts in ``errors``): a block handed out while the
    listing streamed dies with the read task that took it from the queue, and Ray cannot replay it.
    Such a run then ends with its targets listed and exit 1, never as a silent success. Targets
    are checked a thousand at a time (the names are on disk: memory stays flat)."""
    failed = {failure["target"] for failure in outcome.failures}
    lost = []
    for chunk in _chunked(targets, 1000):
        names = [t.name for t in chunk if t.name not in failed]
        accounted = outcome.written.known(names) | outcome.skipped.known(names)
        lost += [t for t in chunk if t.name not in failed and t.name not in accounted]
    outcome.failures += [
        {"target": t.name, "path": t.path, "error": NOT_WRITTEN + "its block was lost with a Ray worker"} for t in lost
    ]
    outcome.errors += len(lost)


def _chunked(items: Iterable[Target], size: int) -> Iterator[list[Target]]:
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def _failed(batch: Batch, error: str) -> Outcome:
    """The outcome of a batch none of whose targets could be written."""
    failures = [
        {"target": t.name, "path": t.path, "error": error} for t, w in zip(batch.targets, batch.write, strict=True) if w
    ]
    return Outcome(failures=failures, errors=len(failures))


def for_workers(job: Job) -> Job:
    """``job`` with its output folder and model files as absolute paths (workers run elsewhere)."""

    def absolute(path: str | None) -> str | None:
        if path is None or fs.is_url(path) or not Path(path).expanduser().exists():
            return path
        return str(Path(path).expanduser().resolve())

    model = dataclasses.replace(
        job.model,
        sam2_checkpoint=absolute(job.model.sam2_checkpoint),
        adapter=absolute(job.model.adapter),
        backbone=absolute(job.model.backbone),
    )
    out = job.out if fs.is_url(job.out) else str(Path(job.out).expanduser().resolve())
    return dataclasses.replace(job, out=out, model=model)


def shippable(reference: Reference) -> Reference:
    """A reference record with what segmenting needs (class, prompt, memory entry on the CPU), not
    its full-size mask and logits."""
    memory = reference.memory.to("cpu") if hasattr(reference.memory, "to") else reference.memory
    empty = np.zeros((0, 0), np.float32)
    return dataclasses.replace(reference, memory=memory, logits=empty, mask=empty.astype(bool))


def _cause(err: BaseException) -> str:
    """The user-facing line of a Ray error: its innermost cause's first line."""
    while (cause := getattr(err, "cause", None)) is not None and cause is not err:
        err = cause
    return f"{type(err).__name__}: {_first_line(err)}"


def _first_line(err: BaseException) -> str:

    text = (str(err).strip().splitlines() or [type(err).__name__])[0]
    return re.sub(r" at 0x[0-9a-fA-F]+", "", text)  # no memory addresses in messages
