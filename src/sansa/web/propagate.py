"""Propagating a session's references to every target of the folder (exports: :mod:`sansa.web.exporting`).

Propagation runs in a background thread, pipelined as ``sansa segment`` is
(:mod:`sansa.labeling.pipeline`'s building blocks)::

    reader threads (no lock)       job thread (service lock, per target)   saver thread (no lock)
    read, decode, resize           encode (unless cached), segment         save result i-1, i-2
    targets i+1, i+2               target i                                (first in first out)

The service lock is taken per target, for the model only, so the page's requests take turns
with it and stay responsive. Memory stays bounded: at most ``PREFETCH + 1`` prepared targets
(pixels and encoder input) and ``BEHIND`` results waiting to be saved. Results are kept (and
saved to the session's folder) as label maps tagged with the session version they were made at;
when references change, they go stale and are redone on the next run (targets whose result is
current are skipped, so a re-run resumes). The job ends (done, cancelled or failed) only once its
results are saved; a save error (full disk) fails it with that error.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import Future

from tqdm import tqdm

from sansa.errors import ImageError, SansaError
from sansa.labeling.pipeline import WriteBehind, read_ahead
from sansa.web.errors import Conflict
from sansa.web.schema import JobState, PropagateStatus, SkippedImage
from sansa.web.service import Prepared, SansaService, Session, TargetResult

PREFETCH = 2  # targets read and resized ahead of the model
BEHIND = 2  # results waiting for the saver thread
READERS = 2


class PropagationJob:
    """Segments ``targets`` with the session's current references, in a daemon thread."""

    def __init__(
        self,
        service: SansaService,
        session: Session,
        targets: Sequence[str],
        prefetch: int = PREFETCH,
        behind: int = BEHIND,
    ) -> None:
        self.service: SansaService = service
        self.session: Session = session
        self.targets: list[str] = list(targets)
        self.version: int = session.version
        self.prefetch: int = prefetch
        self.behind: int = behind
        self.state: JobState = JobState.RUNNING
        self.done: int = 0
        self.error: str | None = None
        self.failed: dict[str, str] = {}  # target -> why it could not be read (the others go on)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"sansa-propagate-{session.id[:8]}", daemon=True)

    def start(self) -> PropagationJob:
        self._thread.start()
        return self

    def cancel(self) -> None:
        self._stop.set()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def status(self) -> PropagateStatus:
        failed = [SkippedImage(name=name, reason=reason) for name, reason in self.failed.items()]
        return PropagateStatus(
            state=self.state,
            done=self.done,
            total=len(self.targets),
            version=self.version,
            error=self.error,
            failed=failed,
        )

    def _run(self) -> None:
        saves: WriteBehind[str] = WriteBehind(self.behind)
        try:
            state = self._segment_all(saves)
            saves.drain()  # also when cancelled: what was segmented is saved
            self.state = state
        except SansaError as err:
            self.error, self.state = str(err), JobState.FAILED
        except Exception as err:  # a background thread must report, never die silently
            self.error, self.state = f"{type(err).__name__}: {err}", JobState.FAILED

    def _segment_all(self, saves: WriteBehind[str]) -> JobState:
        """Every target in order, read ahead; returns ``DONE``, or ``CANCELLED`` at the first
        target after a cancel or a change of the session's references."""
        reads = read_ahead(self._prepare, self.targets, self.prefetch, READERS)
        try:
            for name, read in tqdm(reads, desc="propagate", unit="image", total=len(self.targets), leave=False):
                if self._stop.is_set() or self.session.version != self.version:
                    return JobState.CANCELLED
                save = self._segment(name, read)
                saves.add(name, [save] if save is not None else [])
                self.done += 1
            return JobState.DONE
        finally:
            reads.close()  # drops the reads not started, waits for the running ones

    def _current(self, name: str) -> bool:
        current = self.session.results.get(name)
        return current is not None and current.version == self.version

    def _prepare(self, name: str) -> Prepared | ImageError | None:
        """On a reader thread: target ``name`` read and resized, ``None`` when its result is
        current (skipped), or the :class:`ImageError` that makes it a failure entry."""
        if self._current(name) or self._stop.is_set():
            return None
        try:
            return self.service.prepare(name)
        except ImageError as err:
            return err

    def _segment(self, name: str, read: Future[Prepared | ImageError | None]) -> Future[None] | None:
        """Segment target ``name`` from its read (waited for outside the lock) under the service
        lock; returns the pending save of its result, ``None`` when nothing was made."""
        prepared = read.result()
        if isinstance(prepared, ImageError):  # a truncated or too large target: listed, as in `sansa segment`
            self.failed[name] = str(prepared)
            return None
        if prepared is None or self._current(name):
            return None
        with self.service.lock:
            if self.session.version != self.version:
                return None
            seg = self.service.segment(self.session, name, prepared=prepared)
            self.session.results[name] = TargetResult.of(self.version, seg)
            return self.service.save_result(self.session, name)


def start(service: SansaService, session: Session) -> PropagateStatus:
    """Start (or keep running) the propagation of the session's current references."""
    with service.lock:
        job = session.job
        if job is not None and job.state == JobState.RUNNING:
            if job.version == session.version:
                return job.status()
            job.cancel()
        if not session.predictor.labels:
            raise Conflict("no reference yet: mark an object on a reference image first")
        session.job = PropagationJob(service, session, service.targets(session)).start()
        return session.job.status()


def status(session: Session) -> PropagateStatus:
    if session.job is not None:
        return session.job.status()
    return PropagateStatus(state=JobState.IDLE, done=0, total=0, version=session.version)
