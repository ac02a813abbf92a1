"""A pipelined batch loop: reading ahead of the model, writing behind it, on threads.

While the model segments batch ``i``, reader threads read, decode and resize the targets of the
next ``prefetch`` batches, and writer threads encode and write the outputs of earlier batches
(PNG, JPEG, COCO RLE, YOLO polygons, then each target's record). The model sees exactly the tensors
the sequential loop (:func:`~sansa.labeling.engine.process_batch`) gives it, so every output file has
the same bytes; memory is bounded by the queues: at most ``prefetch`` decoded batches ahead and
``behind`` batches of outputs waiting to be written.

On the CPU the model runs each call at a fixed intra-op thread count (``SansaPredictor.cpu_threads``,
so results do not depend on the machine) and the cores are used by *lanes* instead
(:func:`lane_batches`): each lane is a thread running this loop over its share of the batches,
the model shared (no copy of the weights), a lane's batch computed exactly as alone.

A kill at any moment leaves what the sequential loop leaves: finished targets (files, then record)
and unfinished ones without a record, possibly out of order; a resumed run redoes their batches.
"""

from __future__ import annotations

import collections
import functools
import itertools
import os
import queue
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import numpy as np

from sansa.errors import ImageError
from sansa.export.writer import FolderWriter
from sansa.images import load_image
from sansa.labeling.batches import Batch
from sansa.spill import NameSet
from sansa.targets import Target, fingerprint

if TYPE_CHECKING:
    import torch

    from sansa.predictor import SansaPredictor
    from sansa.records import Segmentation
    from sansa.transforms import ModelTransform

PREFETCH = 2  # batches decoded ahead of the model
BEHIND = 2  # batches of outputs waiting for the writers
THREADS = 2  # readers, and as many writers
LANE_MEMORY = 1 << 30  # bytes of free memory asked per model lane (one batch's activations and queues)

T = TypeVar("T")
R = TypeVar("R")
V = TypeVar("V")


@dataclass
class Outcome:
    """What happened to the targets of a run (JSON values; outcomes of batches add up).

    Attributes:
        written: names of targets written by this run.
        skipped: names of targets already done by an earlier run.
        failures: ``{"target", "path", "error"}`` per unreadable target, or per target that could
            not be written (after retries; see ``errors``).
        seconds: spent segmenting and writing targets.
        errors: how many of ``failures`` are targets not written because of an error other than an
            unreadable image (an object store gone, an actor lost); they count against a run's
            error budget (``--max-failures``).
    """

    written: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failures: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    errors: int = 0

    def add(self, other: Outcome) -> Outcome:
        self.written += other.written
        self.skipped += other.skipped
        self.failures += other.failures
        self.seconds += other.seconds
        self.errors += other.errors
        return self

    def to_dict(self) -> dict[str, Any]:
        return {
            "written": self.written,
            "skipped": self.skipped,
            "failures": self.failures,
            "seconds": self.seconds,
            "errors": self.errors,
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Outcome:
        return cls(
            list(values["written"]),
            list(values["skipped"]),
            list(values["failures"]),
            values["seconds"],
            int(values.get("errors", 0)),
        )


@dataclass
class RunOutcome:
    """What happened to every target of a run: its batches' :class:`Outcome` s added up, the names
    kept on disk (:mod:`sansa.spill`), so a run of a million targets holds a few MB of them.

    Attributes:
        written: names of targets written by this run (iterated sorted).
        skipped: names of targets already done by an earlier run (iterated sorted).
        failures: as in :class:`Outcome` (one entry per target that failed).
        seconds: wall time, from the first batch to the last.
        errors: as in :class:`Outcome`.
    """

    written: NameSet = field(default_factory=NameSet)
    skipped: NameSet = field(default_factory=NameSet)
    failures: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    errors: int = 0

    def add(self, other: Outcome) -> RunOutcome:
        """Add a batch's outcome (its ``seconds`` are not wall time: left out)."""
        self.written += other.written
        self.skipped += other.skipped
        self.failures += other.failures
        self.errors += other.errors
        return self


# -- the steps of one batch (also the sequential loop's, engine.process_batch) -----------------------
@dataclass
class Member:
    """A readable target of a batch: its fingerprint (taken before reading), pixels and model input.

    Attributes:
        write: whether its files are to be written (``False``: finished earlier, encoded only
            so the batch is the same as in an uninterrupted run).
        image: RGB ``uint8 [H, W, 3]``.
        inputs: the encoder's input, ``float32 [3, S, S]`` (``predictor.transform.image(image)``).
    """

    target: Target
    write: bool
    source: dict[str, Any] | None
    image: np.ndarray
    inputs: torch.Tensor


@dataclass
class ReadBatch:
    """A batch read: its readable members, and failure entries for its unreadable targets to write."""

    batch: Batch
    members: list[Member]
    failures: list[dict[str, str]]


def read_batch(transform: ModelTransform, batch: Batch) -> ReadBatch:
    """Read, decode and resize ``batch``'s targets (``transform``: the predictor's
    :class:`~sansa.transforms.ModelTransform`); an unreadable target is a failure entry."""
    members: list[Member] = []
    failures: list[dict[str, str]] = []
    for target, write in zip(batch.targets, batch.write, strict=True):
        source = fingerprint(target.path)  # before reading: a later change shows on resume
        try:
            image = load_image(target.path, "target")
        except ImageError as err:
            if write:
                failures.append({"target": target.name, "path": target.path, "error": _without_path(err, target.path)})
            continue
        members.append(Member(target, write, source, image, transform.image(image)))
    return ReadBatch(batch, members, failures)


def _without_path(err: Exception, path: str) -> str:
    """``err``'s message without the leading ``path: `` an image error starts with (failures list
    the path beside it: ``failures.txt`` reads ``path: error``, not ``path: path: error``)."""
    text = str(err)
    return text.removeprefix(f"{path}: ")


def segment_members(predictor: SansaPredictor, read: ReadBatch) -> list[tuple[Member, Segmentation]]:
    """Encode ``read``'s members as one batch and segment every class in each:
    ``(member, Segmentation)`` pairs, in order."""
    if not read.members:
        return []
    import torch

    feats = predictor.encode_inputs(torch.stack([m.inputs for m in read.members]))
    segmentations = predictor.segment_encoded(
        feats, [m.image.shape[:2] for m in read.members], [m.target.name for m in read.members]
    )
    return list(zip(read.members, segmentations, strict=True))


def write_member(writer: FolderWriter, member: Member, segmentation: Segmentation, inputs_digest: str) -> None:
    """Write one target's files, then its record (with what it was made from)."""
    scores = {label: p.score for label, p in segmentation.predictions.items()}
    writer.write(
        member.target.name,
        member.image,
        segmentation.label_map,
        segmentation.labels,
        scores,
        objects=segmentation.objects,
        stem=member.target.stem,
        made_from={"target": member.source, "inputs": inputs_digest},
        source=member.target.path,
    )


def pipelined_batches(
    predictor: SansaPredictor,
    writer: FolderWriter,
    batches: Iterable[Batch],
    inputs_digest: str,
    prefetch: int = PREFETCH,
    behind: int = BEHIND,
    threads: int = THREADS,
) -> Iterator[Outcome]:
    """Process ``batches`` as :func:`process_batch` does, overlapping reading, the model and writing.

    Yields:
        One :class:`~sansa.labeling.pipeline.Outcome` per batch, in batch order, once its files are written.
    """
    with ThreadPoolExecutor(threads, "sansa-write") as writers:
        waiting: WriteBehind[tuple[Outcome, float]] = WriteBehind(behind)
        for _, future in read_ahead(functools.partial(read_batch, predictor.transform), batches, prefetch, threads):
            read = future.result()
            started, outcome = time.time(), Outcome(failures=read.failures)
            futures: list[Future[None]] = []
            for member, segmentation in segment_members(predictor, read):
                if member.write:
                    futures.append(writers.submit(write_member, writer, member, segmentation, inputs_digest))
                    outcome.written.append(member.target.name)
            for done, done_started in waiting.add((outcome, started), futures):
                yield _timed(done, done_started)
        for done, done_started in waiting.drained():
            yield _timed(done, done_started)


def model_lanes(predictor: SansaPredictor, cpus: int | None = None) -> int:
    """Lanes that use ``cpus`` cores (default: this process's) at the predictor's fixed thread count:
    ``cpus // cpu_threads`` on the CPU, at most one per :data:`LANE_MEMORY` of free memory; 1 on a GPU."""
    threads: int | None = predictor.cpu_threads
    if predictor.device.type != "cpu" or not threads:
        return 1
    if cpus is None:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(cpus // threads, _free_memory() // LANE_MEMORY))


def _free_memory() -> int:
    """Bytes of memory available now (Linux, macOS); a large number where unknown."""
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 1 << 40


def lane_batches(
    predictor: SansaPredictor,
    writer: FolderWriter,
    batches: Sequence[Batch] | Iterator[Batch],
    inputs_digest: str,
    lanes: int = 1,
) -> Iterator[Outcome]:
    """:func:`pipelined_batches` on ``lanes`` threads at once: of a list, batch ``i`` on lane
    ``i % lanes``; of an iterator (one safe to pull from several threads, as
    :meth:`~sansa.labeling.engine.Plan.stream` gives), the next batch on the lane that asks first.

    Every batch gets the bytes it gets alone (a model call's result depends on its batch only; the
    predictor pins its intra-op threads). Memory: ``lanes`` times one lane's queues.

    Yields:
        One :class:`Outcome` per batch as lanes finish them (in any order). Closing the generator
        stops the lanes after their current batch; a lane's error is raised here.
    """
    if lanes <= 1 or (isinstance(batches, Sequence) and len(batches) <= 1):
        yield from pipelined_batches(predictor, writer, batches, inputs_digest)
        return
    for label in predictor.labels:  # the memory cache filled once, before threads read it
        predictor.memory(label)
    done: queue.Queue[tuple[str, Any]] = queue.Queue()  # ("outcome", Outcome) | ("error", exc) | ("end", None)
    stop = threading.Event()

    def lane(share: Iterable[Batch]) -> None:
        try:
            for outcome in pipelined_batches(predictor, writer, share, inputs_digest):
                done.put(("outcome", outcome))
                if stop.is_set():
                    break
        except BaseException as err:  # handed to the consumer
            done.put(("error", err))
        finally:
            done.put(("end", None))

    shares: list[Iterable[Batch]] = (
        [batches[k::lanes] for k in range(min(lanes, len(batches)))]
        if isinstance(batches, Sequence)
        else [batches] * lanes
    )
    threads = [
        threading.Thread(target=lane, args=(share,), name=f"sansa-lane-{k}", daemon=True)
        for k, share in enumerate(shares)
    ]
    for thread in threads:
        thread.start()
    try:
        running = len(threads)
        while running:
            kind, value = done.get()
            if kind == "end":
                running -= 1
            elif kind == "error":
                raise value
            else:
                yield value
    finally:
        stop.set()
        for thread in threads:
            thread.join()


def _timed(outcome: Outcome, started: float) -> Outcome:
    outcome.seconds = time.time() - started
    return outcome


# -- building blocks (also used by the web app's propagation) -------------------------------------
def read_ahead(
    read: Callable[[T], R], items: Iterable[T], ahead: int = PREFETCH, threads: int = THREADS
) -> Generator[tuple[T, Future[R]], None, None]:
    """Yield ``(item, future of read(item))`` in the order of ``items``, ``read`` running on
    ``threads`` reader threads for the yielded item and at most ``ahead`` items after it.

    ``items`` is pulled lazily, on the consumer's thread, only as far as the read-ahead reaches.
    Memory stays bounded: at most ``ahead + 1`` results exist that the consumer has not taken.
    Closing the generator early (a cancelled job) drops the reads not started and waits for the
    running ones.
    """
    todo = iter(items)
    pending: collections.deque[tuple[T, Future[R]]] = collections.deque()
    pool = ThreadPoolExecutor(threads, "sansa-read")
    try:

        def submit_next() -> None:
            for item in itertools.islice(todo, 1):
                pending.append((item, pool.submit(read, item)))

        for _ in range(max(1, ahead)):
            submit_next()
        while pending:
            item, future = pending.popleft()
            submit_next()
            yield item, future
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


class WriteBehind(Generic[V]):
    """Writes handed to writer threads, awaited in submission order once more than ``limit``
    items wait, so the producer runs at most ``limit`` items ahead of the slowest write (memory
    bounded by what ``limit`` items hold). A write's error is raised by :meth:`add` or :meth:`drain`.
    """

    def __init__(self, limit: int = BEHIND) -> None:
        self.limit: int = max(0, limit)
        self._waiting: collections.deque[tuple[V, list[Future[None]]]] = collections.deque()

    def add(self, value: V, futures: list[Future[None]]) -> list[V]:
        """Queue ``value`` (what ``futures`` write); returns the values whose writes are done, oldest first."""
        self._waiting.append((value, futures))
        return [self._finish_oldest() for _ in range(len(self._waiting) - self.limit)]

    def drain(self) -> list[V]:
        """Wait for every queued write; returns their values, oldest first."""
        return list(self.drained())

    def drained(self) -> Iterator[Any]:
        """:meth:`drain` one value at a time: an older value is given before a newer write's error."""
        while self._waiting:
            yield self._finish_oldest()

    def _finish_oldest(self) -> V:
        value, futures = self._waiting.popleft()
        for future in futures:
            future.result()  # a write error (full disk) surfaces here
        return value
