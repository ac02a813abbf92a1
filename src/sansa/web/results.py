"""What an image of a session shows: one composition used by the targets grid, the editor, review
and the export, so the screen and the zip can never disagree.

Per image (classes in the page's order, class id ``i + 1`` = the page's ``i``-th class):

============= ====================================================================================
image kind    its label map
============= ====================================================================================
reference     the masks the user marked on it (one per class marked)
target        its edited objects (:mod:`sansa.web.objects`) if edited, else the accepted map (as it
              was when accepted) if accepted, else the current prediction; then each class the user
              *fixed* on it replaced by the fixed mask (per class: the other classes stay predicted
              or accepted). A fixed class whose mask was erased is empty.
============= ====================================================================================

Every image also shows its objects (``object_map``), which agree with its label map
(:func:`reconcile`); objects rejected in review are listed but their pixels are
not in ``label_map`` (the export leaves them out).

An accepted or edited map made with older references than the session's is ``stale``: the page
marks it (the export still writes it, as the user left it).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from sansa.web.schema import ReviewState, Source
from sansa.web.session import ObjectInfo, Session, TargetResult

if TYPE_CHECKING:
    from sansa.web.service import SansaService

REJECTED = "rejected"  # an object's review state: listed, left out of the label map and the export
Layer = tuple[np.ndarray, list[ObjectInfo]]  # an object map (uint16 [H, W], k = objects[k - 1]) and its objects


@dataclass(frozen=True)
class Shown:
    """An image's composed masks.

    Attributes:
        label_map: ``uint16 [H, W]``, 0 background, ``i + 1`` = ``labels[i]`` (the session's classes).
        labels: the session's classes, in the page's order.
        scores: per class present: 1.0 for hand-made masks, the decoder's score for predictions.
        source: where the image's masks come from as a whole (reference, corrected, accepted, predicted).
        sources: per class present, where its mask comes from.
        stale: accepted with references older than the session's current ones.
    """

    label_map: np.ndarray
    labels: list[str]
    scores: dict[str, float]
    source: Source
    sources: dict[str, Source] = field(default_factory=dict)
    stale: bool = False
    version: int = 0
    edited: bool = False
    layer: Callable[[], Layer] | None = field(default=None, repr=False, compare=False)

    @functools.cached_property
    def _layer(self) -> Layer:
        """Made on first use (the review list and the targets grid never need it)."""
        if self.layer is not None:
            return self.layer()
        return reconcile(self.label_map, np.zeros_like(self.label_map), [], self.labels, self.scores)

    @property
    def object_map(self) -> np.ndarray:
        """``uint16 [H, W]``, 0 no object, ``k`` = ``objects[k - 1]`` (rejected ones too)."""
        return self._layer[0]

    @property
    def objects(self) -> list[ObjectInfo]:
        """Each object's class, score and review state."""
        return self._layer[1]

    def areas(self) -> dict[str, int]:
        counts = np.bincount(self.label_map.ravel(), minlength=len(self.labels) + 1)
        return {label: int(counts[i]) for i, label in enumerate(self.labels, start=1)}


def is_reference(session: Session, name: str) -> bool:
    """Whether ``name`` is a reference example (marked as a reference, not a fixed target)."""
    return any(s.image == name and s.source == Source.REFERENCE for s in session.slots.values())


def composable(service: SansaService, session: Session, name: str) -> Source | None:
    """What :func:`shown` with ``fresh=False`` would compose ``name`` from (its whole-image source),
    without composing it; ``None`` when the target has no current result."""
    if is_reference(session, name):
        return Source.REFERENCE
    accepted = session.reviews.get(name) == ReviewState.ACCEPTED and name in session.accepted
    if not accepted and name not in session.edited and service.current_result(session, name) is None:
        return None
    return Source.CORRECTED if session.fixed(name) else Source.ACCEPTED if accepted else Source.PREDICTED


def shown(service: SansaService, session: Session, name: str, max_side: int | None = None) -> Shown:
    """The composed masks of image ``name`` (see the module's table); a target whose prediction is
    not current is segmented now, at most ``max_side`` on its longer side (stored maps and hand-made
    masks keep their full size). Call with ``service.lock`` held."""
    composed = _compose(service, session, name, max_side, fresh=True)
    assert composed is not None  # fresh: always composed
    return composed


def shown_if_current(service: SansaService, session: Session, name: str) -> Shown | None:
    """:func:`shown` from what is stored only: ``None`` for a target not propagated with the current
    references. Call with ``service.lock`` held."""
    return _compose(service, session, name, None, fresh=False)


def _compose(service: SansaService, session: Session, name: str, max_side: int | None, fresh: bool) -> Shown | None:
    labels = list(session.classes)
    if is_reference(session, name):
        return _reference(session, name, labels)
    accepted = session.accepted.get(name) if session.reviews.get(name) == ReviewState.ACCEPTED else None
    edited = session.edited.get(name)
    base = edited or accepted or service.current_result(session, name)
    if base is None and not fresh:
        return None
    base = base or service.result(session, name, max_side)
    label_map, scores = _in_page_order(base, labels)
    source = Source.ACCEPTED if accepted is not None else Source.PREDICTED
    sources = {label: source for label in scores}
    fixed = session.fixes.get(name, [])
    for label in reversed([x for x in labels if x in fixed]):  # the first class on top
        index = labels.index(label) + 1
        label_map[label_map == index] = 0
        slot = session.slot_of(name, label)
        if slot is not None:
            label_map[_resized(slot.mask, label_map.shape)] = index
        scores[label], sources[label] = 1.0, Source.CORRECTED
    layer: Callable[[], Layer] = functools.partial(
        _layer_of, base, label_map, labels, dict(scores), fixed, edited is not None
    )
    if any(o.state == REJECTED for o in base.objects):  # their pixels leave the label map: made now
        made = layer()
        label_map = label_map.copy()
        label_map[np.isin(made[0], [k for k, o in enumerate(made[1], start=1) if o.state == REJECTED])] = 0
        layer = functools.partial(_made, made)
    stale = (edited or accepted) is not None and base.version != session.version
    whole = Source.CORRECTED if fixed else source
    return Shown(label_map, labels, scores, whole, sources, stale, base.version, edited is not None, layer)


def _made(layer: Layer) -> Layer:
    return layer


def _layer_of(
    base: TargetResult,
    label_map: np.ndarray,
    labels: list[str],
    scores: dict[str, float],
    fixed: list[str],
    edited: bool,
) -> Layer:
    """The objects of ``base`` agreeing with the composed ``label_map``. A class fixed by hand is
    one object, as a reference's mask is (score 1.0), until the user splits it (``edited``: the
    objects the user left, clipped to the fixed mask, hand-made too)."""
    object_map, objects = objects_in_page_order(base, labels)
    if not edited:
        object_map, objects = renumber(object_map, objects, [o.label not in fixed for o in objects])
    objects = [dataclasses.replace(o, score=1.0) if o.label in fixed else o for o in objects]
    return reconcile(label_map, object_map, objects, labels, scores)


def _reference(session: Session, name: str, labels: list[str]) -> Shown:
    slots = [s for s in session.slots.values() if s.image == name and s.reference.label in labels]
    label_map = np.zeros(slots[0].mask.shape, dtype=np.uint16)
    for slot in sorted(slots, key=lambda s: -labels.index(s.reference.label)):  # the first class on top
        label_map[slot.mask] = labels.index(slot.reference.label) + 1
    scores = {s.reference.label: 1.0 for s in slots}
    sources = {label: Source.REFERENCE for label in scores}
    return Shown(label_map, labels, scores, Source.REFERENCE, sources, False, session.version)


def _in_page_order(result: TargetResult, labels: list[str]) -> tuple[np.ndarray, dict[str, float]]:
    """``result``'s map with class ids of the page's order (classes no longer in the session: 0)."""
    lookup = np.array([0] + [labels.index(x) + 1 if x in labels else 0 for x in result.labels], dtype=np.uint16)
    return lookup[result.label_map], {k: v for k, v in result.scores.items() if k in labels}


def objects_in_page_order(result: TargetResult, labels: Sequence[str]) -> tuple[np.ndarray, list[ObjectInfo]]:
    """``result``'s object map and objects, objects of classes no longer in ``labels`` left out
    (``zeros`` and ``[]`` for a result made without objects)."""
    object_map = result.object_map
    if object_map is None:
        return np.zeros(result.shape, dtype=np.uint16), []
    keep = [o.label in labels for o in result.objects]
    return renumber(object_map, list(result.objects), keep)


def renumber(
    object_map: np.ndarray, objects: list[ObjectInfo], keep: Sequence[bool]
) -> tuple[np.ndarray, list[ObjectInfo]]:
    """The objects with ``keep`` true, numbered ``1..K`` in their order (the others: background)."""
    lookup = np.zeros(len(objects) + 1, dtype=np.uint16)
    kept = [k for k in range(1, len(objects) + 1) if keep[k - 1]]
    lookup[kept] = np.arange(1, len(kept) + 1, dtype=np.uint16)
    return lookup[object_map], [objects[k - 1] for k in kept]


def reconcile(
    label_map: np.ndarray,
    object_map: np.ndarray,
    objects: list[ObjectInfo],
    labels: Sequence[str],
    scores: dict[str, float],
) -> tuple[np.ndarray, list[ObjectInfo]]:
    """Make the objects agree with ``label_map`` (``uint16 [H, W]``, ``i + 1`` = ``labels[i]``):
    each object clipped to its class's pixels, empty ones dropped, and the pixels of a class no
    object holds one more object of that class (its score: the class's, else 1.0)."""
    classes = np.array([0] + [labels.index(o.label) + 1 for o in objects], dtype=np.uint16)
    object_map = np.where(classes[object_map] == label_map, object_map, 0).astype(np.uint16)
    areas = np.bincount(object_map.ravel(), minlength=len(objects) + 1)
    object_map, objects = renumber(object_map, objects, [bool(a) for a in areas[1:]])
    free = (label_map > 0) & (object_map == 0)
    for class_id in np.unique(label_map[free]).tolist():
        objects.append(ObjectInfo(labels[class_id - 1], float(scores.get(labels[class_id - 1], 1.0))))
        object_map[free & (label_map == class_id)] = len(objects)
    return object_map, objects


def _resized(mask: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``mask`` (``bool [H, W]``) at ``shape`` by nearest neighbour (a fresh prediction may be smaller)."""
    if mask.shape == shape:
        return mask
    rows = (np.arange(shape[0]) * mask.shape[0] // shape[0])[:, None]
    cols = (np.arange(shape[1]) * mask.shape[1] // shape[1])[None, :]
    return mask[rows, cols]
