"""The review list: every target and every fixed target of a session, with its decision and score.

States: ``unreviewed``, ``accepted``, ``rejected``, ``fixed`` (a class of the target corrected by
hand). A target's score is the lowest decoder score among the predicted classes found in it
(``None`` before it is propagated with the current references; ``0.0`` when nothing was found).
Scores and areas are those of what the image shows (:func:`sansa.web.results.shown`), which is
what the export writes; ``stale`` marks an acceptance made with older references.
"""

from __future__ import annotations

from sansa.web.results import Shown, is_reference, shown_if_current
from sansa.web.schema import ReviewItem, ReviewList, Source, TargetClass
from sansa.web.service import SansaService
from sansa.web.session import Session

STATES = ("unreviewed", "accepted", "rejected", "fixed")


def review_list(service: SansaService, session: Session) -> ReviewList:
    with service.lock:
        items = []
        for name in service.folder.names():
            if is_reference(session, name):
                continue
            composed = shown_if_current(service, session, name)
            review = session.reviews.get(name)
            state = "fixed" if session.fixed(name) else review.value if review else "unreviewed"
            items.append(_item(name, state, composed))
    counts = {state: sum(1 for i in items if i.state == state) for state in STATES}
    return ReviewList(items=items, counts=counts)


def target_classes(composed: Shown) -> list[TargetClass]:
    """The classes of an image's composed masks that it has a score for, with their areas and sources."""
    areas = composed.areas()
    return [
        TargetClass(label=label, score=score, area=areas[label], source=composed.sources[label])
        for label, score in composed.scores.items()
    ]


def _item(name: str, state: str, composed: Shown | None) -> ReviewItem:
    if composed is None:
        return ReviewItem(name=name, state=state, score=None)
    classes = target_classes(composed)
    found = [c.score for c in classes if c.area > 0 and c.source != Source.CORRECTED]
    score = min(found) if found else (None if state == "fixed" else 0.0)
    item = ReviewItem(name=name, state=state, score=score, classes=classes, stale=composed.stale)
    if composed.edited:  # objects reviewed one by one: counted (composing objects costs a pass over the image)
        item.rejected_objects = sum(1 for o in composed.objects if o.state == "rejected")
        item.objects = len(composed.objects) - item.rejected_objects
    return item
