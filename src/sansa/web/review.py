"""The review list: every target and every corrected target of a session, with its decision and score.

States: ``unreviewed``, ``accepted``, ``rejected``, ``fixed`` (a target corrected into a reference).
A target's score is the lowest decoder score among the classes found in it (``None`` before it is
propagated with the current references; ``0.0`` when nothing was found).
"""

from __future__ import annotations

from sansa.web.schema import ReviewItem, ReviewList, Source, TargetClass
from sansa.web.service import SansaService
from sansa.web.session import Session, TargetResult

STATES = ("unreviewed", "accepted", "rejected", "fixed")


def review_list(service: SansaService, session: Session) -> ReviewList:
    with service.lock:
        corrected = {s.image for s in session.slots.values() if s.source == Source.CORRECTED}
        references = session.reference_images()
        items = []
        for name in service.folder.names():
            if name in corrected:
                items.append(ReviewItem(name=name, state="fixed", score=None))
            elif name not in references:
                state = session.reviews.get(name)
                result = session.accepted.get(name) or service.current_result(session, name)
                items.append(_item(name, state.value if state else "unreviewed", result))
    counts = {state: sum(1 for i in items if i.state == state) for state in STATES}
    return ReviewList(items=items, counts=counts)


def _item(name: str, state: str, result: TargetResult | None) -> ReviewItem:
    if result is None:
        return ReviewItem(name=name, state=state, score=None)
    label_map = result.label_map
    classes = [
        TargetClass(label=label, score=result.scores.get(label, 0.0), area=int((label_map == i).sum()))
        for i, label in enumerate(result.labels, start=1)
    ]
    found = [c.score for c in classes if c.area > 0]
    return ReviewItem(name=name, state=state, score=min(found) if found else 0.0, classes=classes)
