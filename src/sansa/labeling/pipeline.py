"""A pipelined batch loop: reading ahead of the model, writing behind it, on threads.

While the model segments batch ``i``, reader threads read, decode and resize the targets of the
next ``prefetch`` batches, and writer threads encode and write the outputs of earlier batches
(PNG, JPEG, COCO RLE, YOLO polygons, then each target's record). The model sees exactly the tensors
the sequential loop (:func:`~sansa.labeling.engine.process_batch`) gives it, so every output file has
the same bytes; memory is bounded by the queues: at most ``prefetch`` decoded batches ahead and
``behind`` batches of outputs waiting to be written.

A kill at any moment leaves what the sequential loop leaves: finished targets (files, then record)
and unfinished ones without a record, possibly out of order; a resumed run redoes their batches.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from sansa.errors import ImageError
from sansa.export.writer import FolderWriter
from sansa.labeling.targets import Batch, Target, fingerprint

PREFETCH = 2  # batches decoded ahead of the model
BEHIND = 2  # batches of outputs waiting for the writers
THREADS = 2  # readers, and as many writers


@dataclass
class _Read:
    """A batch read ahead: per readable member, its fingerprint, pixels and model input."""

    batch: Batch
    members: list[tuple[Target, bool, dict | None, np.ndarray, Any]]
    failures: list[dict[str, str]]


def _read(transform: Any, batch: Batch) -> _Read:
    from sansa import fs
    from sansa.images import load_image

    load = fs.read_image if batch.targets and fs.is_url(batch.targets[0].path) else load_image
    members, failures = [], []
    for target, write in zip(batch.targets, batch.write, strict=True):
        source = fingerprint(target.path)  # before reading: a later change shows on resume
        try:
            image = load(target.path, "target")
        except ImageError as err:
            if write:
                failures.append({"target": target.name, "path": target.path, "error": str(err)})
            continue
        members.append((target, write, source, image, transform.image(image)))
    return _Read(batch, members, failures)


def pipelined_batches(predictor: Any, writer: FolderWriter, batches: list[Batch], inputs_digest: str,
                      prefetch: int = PREFETCH, behind: int = BEHIND, threads: int = THREADS) -> Iterator[Any]:
    """Process ``batches`` as :func:`process_batch` does, overlapping reading, the model and writing.

    Yields:
        One :class:`~sansa.labeling.engine.Outcome` per batch, in batch order, once its files are written.
    """
    import torch

    from sansa.labeling.engine import Outcome

    with ThreadPoolExecutor(threads, "sansa-read") as readers, ThreadPoolExecutor(threads, "sansa-write") as writers:
        todo = iter(batches)
        reads: collections.deque[Future] = collections.deque()
        writes: collections.deque[tuple[Outcome, list[Future], float]] = collections.deque()

        def read_next() -> None:
            batch = next(todo, None)
            if batch is not None:
                reads.append(readers.submit(_read, predictor.transform, batch))

        def finish_oldest() -> Outcome:
            outcome, futures, started = writes.popleft()
            for future in futures:
                future.result()  # a write error (full disk) surfaces here
            outcome.seconds = time.time() - started
            return outcome

        for _ in range(max(1, prefetch)):
            read_next()
        while reads:
            read = reads.popleft().result()
            read_next()
            started, outcome = time.time(), Outcome(failures=read.failures)
            futures = []
            if read.members:
                feats = predictor.encode_inputs(torch.stack([m[4] for m in read.members]))
                segmentations = predictor.segment_encoded(feats, [m[3].shape[:2] for m in read.members],
                                                          [m[0].name for m in read.members])
                for (target, write, source, image, _), seg in zip(read.members, segmentations, strict=True):
                    if write:
                        scores = {label: p.score for label, p in seg.predictions.items()}
                        futures.append(writers.submit(
                            writer.write, target.name, image, seg.label_map, seg.labels, scores, stem=target.stem,
                            made_from={"target": source, "inputs": inputs_digest}, source=target.path))
                        outcome.written.append(target.name)
            writes.append((outcome, futures, started))
            while len(writes) > max(0, behind):
                yield finish_oldest()
        while writes:
            yield finish_oldest()
