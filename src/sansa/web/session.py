"""What one page builds: a session's classes, references, results and review decisions (records only;
:class:`sansa.web.service.SansaService` changes them and saves them)."""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from sansa.predictor import SansaPredictor
from sansa.records import Prompt, Reference, Segmentation
from sansa.web.schema import JobState, ReviewState, Source
from sansa.web.store import StoredMap

if TYPE_CHECKING:
    from sansa.web.exporting import ExportJob
    from sansa.web.propagate import PropagationJob


@dataclass
class Slot:
    """One reference of a session: an image of the folder marked for one class.

    ``prompt`` is the page's clicks/box/scribble as sent (``None`` for a mask prompt, whose mask
    is saved as a PNG); ``source`` says whether it was marked as a reference or corrected from a
    target's prediction. ``pending``: a mask prompt saved but not yet encoded into memory (a mask
    edited stroke by stroke is encoded once, when a target is segmented next); meanwhile
    ``reference`` is the last one encoded, which holds the slot's place in the predictor.
    """

    id: str
    image: str
    reference: Reference
    source: Source = Source.REFERENCE
    prompt: dict[str, Any] | None = None
    pending: Prompt | None = None

    @property
    def label(self) -> str:
        return self.reference.label

    def record(self) -> dict[str, Any]:
        """The reference as ``session.json`` keeps it (a mask prompt's mask is ``masks/<id>.png``)."""
        return {
            "id": self.id,
            "image": self.image,
            "label": self.label,
            "source": self.source.value,
            "prompt": self.prompt,
        }

    @property
    def mask(self) -> np.ndarray:
        """``bool [H, W]``: the reference's mask as the user left it (the pending one, if any)."""
        return self.pending.mask if self.pending is not None and self.pending.mask is not None else self.reference.mask


@dataclass(frozen=True)
class ObjectInfo:
    """One object of a target's object map: its class, score and review decision.

    Attributes:
        label: its class.
        score: the decoder's IoU estimate (1.0 for hand-made masks).
        state: ``None`` (not reviewed), ``"accepted"`` or ``"rejected"`` (left out of the export).
    """

    label: str
    score: float
    state: str | None = None


@dataclass(frozen=True)
class TargetResult:
    """A target's label map and objects, made at session ``version``; kept compressed (a whole
    folder of ``uint16`` maps would not fit in memory, their zlib streams do).

    ``objects[k - 1]`` is object ``k`` of :attr:`object_map` (``uint16 [H, W]``, 0: no object);
    ``object_packed`` is ``None`` for a result made without objects (a class is then one object).
    """

    version: int
    labels: list[str]
    scores: dict[str, float]
    shape: tuple[int, int]
    packed: bytes
    objects: tuple[ObjectInfo, ...] = ()
    object_packed: bytes | None = None

    @classmethod
    def of(cls, version: int, seg: Segmentation) -> TargetResult:
        scores = {label: p.score for label, p in seg.predictions.items()}
        object_map = np.zeros(seg.label_map.shape, dtype=np.uint16)
        for k, obj in enumerate(seg.objects, start=1):
            object_map[obj.mask] = k
        infos = [ObjectInfo(obj.label, float(obj.score)) for obj in seg.objects]
        return cls.pack(version, seg.label_map, list(seg.labels), scores, object_map, infos)

    @classmethod
    def pack(
        cls,
        version: int,
        label_map: np.ndarray,
        labels: list[str],
        scores: dict[str, float],
        object_map: np.ndarray | None = None,
        objects: Sequence[ObjectInfo] = (),
    ) -> TargetResult:
        """From a ``uint16 [H, W]`` label map (0 background, ``i + 1`` = ``labels[i]``) and,
        optionally, its ``uint16 [H, W]`` object map (``k`` = ``objects[k - 1]``)."""
        packed = zlib.compress(np.ascontiguousarray(label_map, dtype=np.uint16).tobytes(), 1)
        shape = (int(label_map.shape[0]), int(label_map.shape[1]))
        if object_map is None:
            return cls(version, list(labels), dict(scores), shape, packed)
        object_packed = zlib.compress(np.ascontiguousarray(object_map, dtype=np.uint16).tobytes(), 1)
        return cls(version, list(labels), dict(scores), shape, packed, tuple(objects), object_packed)

    @classmethod
    def from_stored(cls, stored: StoredMap) -> TargetResult:
        infos = [ObjectInfo(o["label"], o["score"], o.get("state")) for o in stored.objects]
        return cls.pack(stored.version, stored.label_map, stored.labels, stored.scores, stored.object_map, infos)

    @property
    def label_map(self) -> np.ndarray:
        """``uint16 [H, W]``: 0 background, ``i + 1`` = ``labels[i]``."""
        return np.frombuffer(zlib.decompress(self.packed), dtype=np.uint16).reshape(self.shape)

    @property
    def object_map(self) -> np.ndarray | None:
        """``uint16 [H, W]``: 0 no object, ``k`` = ``objects[k - 1]``; ``None``: made without objects."""
        if self.object_packed is None:
            return None
        return np.frombuffer(zlib.decompress(self.object_packed), dtype=np.uint16).reshape(self.shape)

    def stored(self, name: str) -> StoredMap:
        objects = [{"label": o.label, "score": o.score, "state": o.state} for o in self.objects]
        return StoredMap(name, self.version, self.labels, self.scores, self.label_map, self.object_map, objects)

    def renamed(self, old: str, new: str) -> TargetResult:
        return dataclasses.replace(
            self,
            labels=[new if x == old else x for x in self.labels],
            scores={new if k == old else k: v for k, v in self.scores.items()},
            objects=tuple(dataclasses.replace(o, label=new) if o.label == old else o for o in self.objects),
        )


@dataclass
class Session:
    """What one page has built: classes, references, propagated results and review decisions.

    ``version`` moves whenever references or classes change (results of an older version are
    stale); accepted predictions are kept as they were when accepted. ``revision`` moves with every
    saved change of any kind: a page's change made on an older revision is refused (another tab
    changed the session meanwhile). ``edited``: per target, its objects as the user edited them
    (deleted, merged, split, reviewed one by one), kept as they were like an accepted map.
    ``object_options``: the :class:`~sansa.objects.ObjectOptions` the user set (the rest default).
    ``fixes``: per target, the classes the user fixed on it (their
    masks are the slots of that image and class; a fixed class without a slot was erased: empty).
    ``trash``: deleted classes with their references, as saved, newest last (restorable).
    ``history``: undo steps, newest last: per change of a reference, the image, class, whether the
    class was fixed there and the reference before (``None``: none; a mask's kept as ``masks/<id>.png``).
    """

    id: str
    predictor: SansaPredictor
    classes: dict[str, str] = field(default_factory=dict)  # name -> #rrggbb, in page order
    slots: dict[str, Slot] = field(default_factory=dict)
    version: int = 0
    results: dict[str, TargetResult] = field(default_factory=dict)
    reviews: dict[str, ReviewState] = field(default_factory=dict)
    accepted: dict[str, TargetResult] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    revision: int = 0
    fixes: dict[str, list[str]] = field(default_factory=dict)
    trash: list[dict[str, Any]] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    edited: dict[str, TargetResult] = field(default_factory=dict)
    object_options: dict[str, Any] = field(default_factory=dict)
    job: PropagationJob | None = None
    export: ExportJob | None = None

    def colors(self, labels: list[str]) -> list[str]:
        return [self.classes.get(label, "#ffffff") for label in labels]

    def reference_images(self) -> set[str]:
        return {slot.image for slot in self.slots.values()}

    def slot_of(self, image: str, label: str) -> Slot | None:
        return next((s for s in self.slots.values() if s.image == image and s.reference.label == label), None)

    def index_of(self, slot: Slot) -> int:
        """The position of ``slot``'s reference in the predictor."""
        return next(i for i, r in enumerate(self.predictor.references) if r is slot.reference)

    def fixed(self, image: str) -> bool:
        """Whether the user fixed a class of target ``image`` (it is no longer a plain target)."""
        return bool(self.fixes.get(image))

    def changed(self) -> None:
        self.version += 1

    def busy(self) -> bool:
        return any(job is not None and job.state == JobState.RUNNING for job in (self.job, self.export))
