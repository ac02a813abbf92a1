"""Propagating a session's references to every target of the folder, and exporting the results.

Propagation runs in a background thread, one target at a time, taking the service lock per
target so the page stays responsive. Results are kept as label maps tagged with the session
version they were made at; when references change, they go stale and are redone on the next run
(targets whose result is current are skipped, so a re-run after an interruption resumes).
"""

from __future__ import annotations

import os
import tempfile
import threading
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from sansa.errors import SansaError
from sansa.records import Prediction, Segmentation
from sansa.web.errors import Conflict
from sansa.web.schema import JobState, PropagateStatus
from sansa.web.service import SansaService, Session, TargetResult


class PropagationJob:
    """Segments ``targets`` with the session's current references, in a daemon thread."""

    def __init__(self, service: SansaService, session: Session, targets: Sequence[str]) -> None:
        self.service, self.session, self.targets = service, session, list(targets)
        self.version = session.version
        self.state = JobState.RUNNING
        self.done = 0
        self.error: str | None = None
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
        return PropagateStatus(state=self.state, done=self.done, total=len(self.targets), version=self.version,
                               error=self.error)

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
            seg = self.service.segment(self.session, name)
            self.session.results[name] = TargetResult.of(self.version, seg)


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


def current_results(service: SansaService, session: Session) -> dict[str, TargetResult]:
    """The propagated results, all current; :class:`Conflict` if any target lacks one."""
    targets = service.targets(session)
    results = {name: session.results.get(name) for name in targets}
    missing = [name for name, r in results.items() if r is None or r.version != session.version]
    if not session.predictor.labels:
        raise Conflict("no reference yet: mark an object on a reference image first")
    if missing:
        raise Conflict(f"export: {len(missing)} of {len(targets)} targets are not propagated with the current "
                       "references; propagate to all first")
    return results  # type: ignore[return-value]


def export_zip(service: SansaService, session: Session, formats: Sequence[str] | None = None) -> Path:
    """Write the propagated results with :class:`sansa.export.FolderWriter` and zip them.

    Args:
        formats: :class:`sansa.export.OutputFormat` names (default: ``sansa.export.DEFAULT_FORMATS``).

    Returns:
        The path of a temporary ``.zip`` file; the caller deletes it.
    """
    from sansa.export import DEFAULT_FORMATS, FolderWriter, parse_formats
    from sansa.export.writer import STATE_DIR

    chosen = parse_formats(formats if formats is not None else DEFAULT_FORMATS)
    results = current_results(service, session)
    labels = session.predictor.labels
    fd, zip_path = tempfile.mkstemp(prefix="sansa-export-", suffix=".zip")
    os.close(fd)
    with tempfile.TemporaryDirectory(prefix="sansa-export-") as out:
        with FolderWriter(Path(out), labels, chosen) as writer:
            for name, result in results.items():
                writer.write(_segmentation(result, labels, name), service.folder.load(name), name)
        with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(Path(out).rglob("*")):
                if path.is_file() and STATE_DIR not in path.relative_to(out).parts:
                    archive.write(path, path.relative_to(out).as_posix())
    return Path(zip_path)


def _segmentation(result: TargetResult, labels: list[str], name: str) -> Segmentation:
    """A :class:`Segmentation` from a stored label map (logits are +1 on each class's pixels, -1 elsewhere)."""
    label_map = result.label_map
    predictions = []
    for index, label in enumerate(labels, start=1):
        logits = np.where(label_map == index, 1.0, -1.0).astype(np.float32)
        predictions.append(Prediction(logits, result.scores.get(label, 0.0), label))
    return Segmentation({p.label: p for p in predictions}, list(labels), label_map, name)
