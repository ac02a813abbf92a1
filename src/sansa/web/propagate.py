"""Propagating a session's references to every target of the folder (exports: :mod:`sansa.web.exporting`).

Propagation runs in a background thread, one target at a time, taking the service lock per
target so the page stays responsive. Results are kept (and saved to the session's folder) as label
maps tagged with the session version they were made at; when references change, they go stale and
are redone on the next run (targets whose result is current are skipped, so a re-run resumes).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from tqdm import tqdm

from sansa.errors import ImageError, SansaError
from sansa.web.errors import Conflict
from sansa.web.schema import JobState, PropagateStatus, SkippedImage
from sansa.web.service import SansaService, Session, TargetResult


class PropagationJob:
    """Segments ``targets`` with the session's current references, in a daemon thread."""

    def __init__(self, service: SansaService, session: Session, targets: Sequence[str]) -> None:
        self.service, self.session, self.targets = service, session, list(targets)
        self.version = session.version
        self.state = JobState.RUNNING
        self.done = 0
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
        return PropagateStatus(state=self.state, done=self.done, total=len(self.targets), version=self.version,
                               error=self.error, failed=failed)

    def _run(self) -> None:
        try:
            for name in tqdm(self.targets, desc="propagate", unit="image", leave=False):
                if self._stop.is_set() or self.session.version != self.version:
                    self.state = JobState.CANCELLED
                    return
                self._segment(name)
                self.done += 1
            self.state = JobState.DONE
        except SansaError as err:
            self.error, self.state = str(err), JobState.FAILED
        except Exception as err:  # a background thread must report, never die silently
            self.error, self.state = f"{type(err).__name__}: {err}", JobState.FAILED

    def _segment(self, name: str) -> None:
        current = self.session.results.get(name)
        if current is not None and current.version == self.version:
            return
        with self.service.lock:
            if self.session.version != self.version:
                return
            try:
                seg = self.service.segment(self.session, name)
            except ImageError as err:  # a truncated or too large target: listed, as in `sansa segment`
                self.failed[name] = str(err)
                return
            self.session.results[name] = TargetResult.of(self.version, seg)
            self.service.save_result(self.session, name)


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
