"""Predictions that outlive Label Studio's wait: one queue of tasks per project and model version.

Label Studio sends every selected task in one ``/predict`` call and gives up after
``ML_TIMEOUT_PREDICT`` (100 s by default), storing nothing when it does. So a ``/predict`` call
queues its tasks in the project's :class:`Job`, ahead of earlier calls' (the newest caller waits,
the rest of an earlier batch is posted anyway), and waits at most ``answer_within`` seconds: the
tasks done by then are answered, the others are marked :attr:`Job.deliver` and the worker
posts each through Label Studio's API (``POST /api/predictions`` with the job's
``model_version``) when it is done. A job whose model version is no longer the project's (the
references changed) is cancelled: its queued tasks are dropped, nothing of it is posted.

A failed task (its image missing, unreadable, ...) gets no prediction at all, so Label Studio
asks for it again next time; its cause is kept in :attr:`Job.failures` (and logged, named).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

log: logging.Logger = logging.getLogger("sansa.labelstudio")

PROGRESS_EVERY_S = 10.0


@dataclass
class Outcome:
    """One task's prediction (``result``, ``score``, ``model_version``), or why it has none."""

    prediction: dict[str, Any] | None = None
    error: str | None = None


@dataclass
class Job:
    """The predictions of one project at one model version.

    Attributes:
        project: Label Studio's project id.
        version: the ``model_version`` every prediction of the job carries.
        tasks: task id -> the task as Label Studio sent it (while queued or running).
        pending: task ids waiting for the worker, in order: the newest call's first.
        outcomes: task id -> its outcome, until answered or posted.
        deliver: tasks whose ``/predict`` has answered without them: posted when done.
        failures: task id -> the one-line cause of its last failure.
        cancelled: set when the project's references changed; nothing more is computed or posted.
        called: when a ``/predict`` call last queued tasks (the worker serves the newest first).
    """

    project: int
    version: str
    tasks: dict[int, dict[str, Any]] = field(default_factory=dict)
    pending: deque[int] = field(default_factory=deque)
    running: int | None = None
    outcomes: dict[int, Outcome] = field(default_factory=dict)
    deliver: set[int] = field(default_factory=set)
    failures: dict[int, str] = field(default_factory=dict)
    cancelled: bool = False
    done: int = 0
    total: int = 0
    started: float = field(default_factory=time.monotonic)
    called: float = field(default_factory=time.monotonic)
    reported: float = field(default_factory=time.monotonic)

    def queue(self, tasks: list[tuple[int, dict[str, Any]]]) -> None:
        """Queue one ``/predict`` call's ``(task id, task)`` pairs ahead of earlier calls' tasks.

        The newest call goes first: its caller (often an annotator opening one task) waits for
        it, while the rest of an earlier large batch is posted when done anyway. A task already
        queued moves forward; one running, or done and not yet answered, is left; a failed one
        is retried.
        """
        first: dict[int, None] = {}  # ordered, without repeats
        for task_id, task in tasks:
            if task_id == self.running or task_id in first:
                continue
            if task_id not in self.tasks:  # not queued yet
                outcome = self.outcomes.get(task_id)
                if outcome is not None and outcome.error is None:
                    continue
                self.outcomes.pop(task_id, None)
                self.tasks[task_id] = task
                self.total += 1
            first[task_id] = None
        if first:
            self.called = time.monotonic()
            self.pending = deque([*first, *(i for i in self.pending if i not in first)])

    def finished(self, task_id: int) -> bool:
        """Whether the task's outcome is known."""
        return task_id in self.outcomes

    def take(self, task_id: int) -> list[dict[str, Any]]:
        """The task's answer for ``/predict``: ``[prediction]`` if done, ``[]`` if failed or not
        done yet (then it is posted when done). The outcome is forgotten once answered."""
        outcome = self.outcomes.get(task_id)
        if outcome is None:
            self.deliver.add(task_id)
            return []
        if outcome.error is not None:
            return []
        del self.outcomes[task_id]
        return [outcome.prediction] if outcome.prediction is not None else []

    def cancel(self) -> int:
        """Drop the queued tasks; returns how many were dropped."""
        dropped = len(self.pending)
        self.pending.clear()
        self.deliver.clear()
        self.cancelled = True
        return dropped

    def record(self, task_id: int, outcome: Outcome) -> bool:
        """Keep a finished task's outcome; returns whether it must be posted through the API now."""
        self.tasks.pop(task_id, None)
        self.running = None
        self.done += 1
        if outcome.error is not None:
            self.failures[task_id] = outcome.error
        else:
            self.failures.pop(task_id, None)
        post = task_id in self.deliver and outcome.error is None and not self.cancelled
        self.deliver.discard(task_id)
        if not post:
            self.outcomes[task_id] = outcome
        return post

    def report(self, force: bool = False) -> None:
        """Log the progress (at most every :data:`PROGRESS_EVERY_S`, or when forced)."""
        now = time.monotonic()
        if not force and now - self.reported < PROGRESS_EVERY_S:
            return
        self.reported = now
        rate = self.done / max(now - self.started, 1e-6)
        failed = f", {len(self.failures)} failed (tasks {_ids(self.failures)})" if self.failures else ""
        log.info(
            "project %s, %s: %d of %d tasks predicted%s, %.2f tasks/s, %d queued",
            self.project,
            self.version,
            self.done,
            self.total,
            failed,
            rate,
            len(self.pending),
        )


def _ids(failures: dict[int, str], shown: int = 20) -> str:
    ids = sorted(failures)
    more = f" and {len(ids) - shown} more" if len(ids) > shown else ""
    return ", ".join(str(i) for i in ids[:shown]) + more
