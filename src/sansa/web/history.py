"""Undo steps of a session's references, saved with it: undo survives a reload and a restart.

Every saved change of an image's reference of a class (a prompt, a stroke, polygons, a fix, a
removal) appends a step to ``Session.history``: the image, the class, whether the class was fixed
there, and the reference before the change (``None``: there was none; a mask prompt's mask is kept
as ``masks/<step id>.png``, a hard link to the file the change replaces). Undo
(:meth:`sansa.web.service.SansaService.undo`) takes the newest step of that image and class and puts
the reference back as it was. The page's own undo of an edit not yet saved drops steps instead
(:func:`remembered` with ``undoing``), so the page's history and the server's stay one list.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sansa.web.session import Session
from sansa.web.store import SessionStore

HISTORY_LIMIT = 100  # steps kept per session (the oldest go first, with their masks)


@contextmanager
def remembered(store: SessionStore, session: Session, image: str, label: str, undoing: int = 0) -> Iterator[None]:
    """The change of ``image``'s reference of ``label`` made in the block becomes an undo step (in
    ``session.history`` before the block, so the block's save of the session holds it).

    ``undoing``: the change is the page's undo of its last ``undoing`` changes, so those steps are
    dropped instead. A change that fails leaves the steps as they were.
    """
    if undoing:
        undone = [e for e in session.history if e["image"] == image and e["label"] == label][-undoing:]
        for entry in undone:
            session.history.remove(entry)
        try:
            yield
        except BaseException:
            session.history.extend(undone)
            raise
        for entry in undone:
            store.remove_mask(session.id, entry["id"])
        return
    old = session.slot_of(image, label)
    step: dict[str, Any] = {
        "id": uuid.uuid4().hex[:12],
        "image": image,
        "label": label,
        "fixed": label in session.fixes.get(image, []),
        "before": old.record() if old is not None else None,
    }
    if old is not None and old.prompt is None:
        store.keep_mask(session.id, old.id, step["id"])
    session.history.append(step)
    try:
        yield
    except BaseException:
        session.history.remove(step)
        store.remove_mask(session.id, step["id"])
        raise
    while len(session.history) > HISTORY_LIMIT:
        store.remove_mask(session.id, session.history.pop(0)["id"])


def last_step(session: Session, image: str, label: str) -> dict[str, Any] | None:
    """The newest undo step of ``image``'s reference of ``label``, if any."""
    return next((e for e in reversed(session.history) if e["image"] == image and e["label"] == label), None)


def set_fixed(session: Session, image: str, label: str, fixed: bool) -> None:
    """Mark ``label`` fixed on target ``image`` or not."""
    labels = session.fixes.setdefault(image, [])
    if fixed and label not in labels:
        labels.append(label)
    elif not fixed and label in labels:
        labels.remove(label)
    if not labels:
        del session.fixes[image]


def rename(session: Session, old: str, new: str) -> None:
    """The undo steps of class ``old`` follow it to its new name."""
    for step in session.history:
        if step["label"] == old:
            step["label"] = new
            if step["before"] is not None:
                step["before"]["label"] = new
