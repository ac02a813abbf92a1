"""The predictor service behind the web app: one model, per-session references, cached encodings.

All sessions share one :class:`~sansa.model.sansa.SansaModel` (it is stateless); each session has
its own :class:`~sansa.predictor.SansaPredictor` holding that session's references. Every model
call runs under one lock, so requests and the background propagation take turns on the model.
A target's image encoding is cached (least recently used first out), so a prompt change only
re-runs memory attention and the decoder on the targets shown.
"""

from __future__ import annotations

import threading
import uuid
import zlib
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from sansa.export.palette import class_color
from sansa.model.sansa import ImageFeatures
from sansa.predictor import SansaPredictor
from sansa.records import Reference, Segmentation
from sansa.web import render
from sansa.web.errors import Conflict, NotFound
from sansa.web.folder import ImageFolder
from sansa.web.schema import ClassInfo, PromptIn, ReferenceOut, ReferenceRequest, SessionState

if TYPE_CHECKING:
    from sansa.web.propagate import PropagationJob



@dataclass
class Slot:
    """One reference of a session: an image of the folder marked for one class."""

    id: str
    image: str
    reference: Reference


@dataclass(frozen=True)
class TargetResult:
    """A propagated target, made at session ``version``; the label map is kept compressed (a whole
    folder of ``uint16`` maps would not fit in memory, their zlib streams do)."""

    version: int
    labels: list[str]
    scores: dict[str, float]
    shape: tuple[int, int]
    packed: bytes

    @classmethod
    def of(cls, version: int, seg: Segmentation) -> TargetResult:
        scores = {label: p.score for label, p in seg.predictions.items()}
        packed = zlib.compress(np.ascontiguousarray(seg.label_map, dtype=np.uint16).tobytes(), 1)
        return cls(version, list(seg.labels), scores, seg.size, packed)

    @property
    def label_map(self) -> np.ndarray:
        """``uint16 [H, W]``: 0 background, ``i + 1`` = ``labels[i]``."""
        return np.frombuffer(zlib.decompress(self.packed), dtype=np.uint16).reshape(self.shape)


@dataclass
class Session:
    """What one page has built: classes, references, and propagated results."""

    id: str
    predictor: SansaPredictor
    classes: dict[str, str] = field(default_factory=dict)  # name -> #rrggbb
    slots: dict[str, Slot] = field(default_factory=dict)
    version: int = 0
    results: dict[str, TargetResult] = field(default_factory=dict)
    job: PropagationJob | None = None

    def colors(self, labels: list[str]) -> list[str]:
        return [self.classes.get(label, "#ffffff") for label in labels]

    def reference_images(self) -> set[str]:
        return {slot.image for slot in self.slots.values()}

    def changed(self) -> None:
        self.version += 1


class SansaService:
    """Sessions over one predictor's model and one image folder.

    Args:
        predictor: the loaded predictor (its model and device are shared by all sessions).
        folder: the served folder.
        cache_size: target image encodings kept (each is ~20 MB for Hiera-L at 1024).
        max_sessions: sessions kept; the least recently used is dropped beyond this.
    """

    def __init__(self, predictor: SansaPredictor, folder: ImageFolder, cache_size: int = 32,
                 max_sessions: int = 16) -> None:
        self.predictor = predictor
        self.folder = folder
        self.lock = threading.RLock()
        self._features: OrderedDict[tuple[str, int], ImageFeatures] = OrderedDict()
        self._cache_size = cache_size
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._max_sessions = max_sessions

    # -- sessions -----------------------------------------------------------------------
    def create_session(self) -> Session:
        with self.lock:
            session = Session(uuid.uuid4().hex, SansaPredictor(self.predictor.model, device=self.predictor.device))
            self._sessions[session.id] = session
            while len(self._sessions) > self._max_sessions:
                _, dropped = self._sessions.popitem(last=False)
                if dropped.job is not None:
                    dropped.job.cancel()
            return session

    def session(self, session_id: str) -> Session:
        with self.lock:
            if session_id not in self._sessions:
                raise NotFound(f"session {session_id!r}: unknown or expired; reload the page")
            self._sessions.move_to_end(session_id)
            return self._sessions[session_id]

    def state(self, session: Session) -> SessionState:
        classes = [ClassInfo(name=n, color=c) for n, c in session.classes.items()]
        refs = [self._reference_out(session, slot) for slot in session.slots.values()]
        return SessionState(session_id=session.id, version=session.version, classes=classes, references=refs)

    # -- classes ------------------------------------------------------------------------
    def add_class(self, session: Session, name: str, color: str | None = None) -> ClassInfo:
        with self.lock:
            if name in session.classes:
                raise Conflict(f"class {name!r}: already exists")
            # by default the colour of the class id it gets in exports (overlays, indexed PNGs)
            session.classes[name] = color or "#{:02x}{:02x}{:02x}".format(*class_color(len(session.classes) + 1))
            session.changed()
            return ClassInfo(name=name, color=session.classes[name])

    def remove_class(self, session: Session, name: str) -> None:
        with self.lock:
            self._require_class(session, name)
            for slot in [s for s in session.slots.values() if s.reference.label == name]:
                self._drop_slot(session, slot)
            del session.classes[name]
            session.changed()

    # -- references ---------------------------------------------------------------------
    def put_reference(self, session: Session, request: ReferenceRequest) -> ReferenceOut:
        """Mark ``request.image`` for ``request.label``, replacing that image's earlier prompt for the class."""
        with self.lock:
            self._require_class(session, request.label)
            size = self.folder.load(request.image).shape[:2]
            prompt = _prompt_kwargs(request.prompt, size, self.folder.max_upload_bytes)
            return self._set_reference(session, request.image, request.label, prompt)

    def promote(self, session: Session, image: str, label: str) -> ReferenceOut:
        """Make a target a reference of ``label``, its current prediction as the mask prompt (to be corrected)."""
        with self.lock:
            self._require_class(session, label)
            seg = self.segment(session, image)
            mask = seg.mask(label) if label in seg.labels else None
            if mask is None or not mask.any():
                raise Conflict(f"image {image!r}: nothing of class {label!r} is predicted there; "
                               "mark it with a prompt instead")
            return self._set_reference(session, image, label, {"mask": mask})

    def remove_reference(self, session: Session, reference_id: str) -> None:
        with self.lock:
            if reference_id not in session.slots:
                raise NotFound(f"reference {reference_id!r}: no such reference in this session")
            self._drop_slot(session, session.slots[reference_id])
            session.changed()

    # -- targets ------------------------------------------------------------------------
    def segment(self, session: Session, name: str, size: tuple[int, int] | None = None) -> Segmentation:
        """Every class of the session in image ``name``, at ``size`` ``(H, W)`` (default: the image's).

        Reuses the cached encoding of the image; only memory attention and the decoder run.
        """
        with self.lock:
            if not session.predictor.labels:
                raise Conflict("no reference yet: mark an object on a reference image first")
            feats = self.features(name)
            if size is None:
                size = self.folder.load(name).shape[:2]
            return session.predictor.segment_encoded(feats, [size], [name])[0]

    def label_map(self, session: Session, name: str, max_side: int | None = None) -> tuple[np.ndarray, list[str],
                                                                                             dict[str, float]]:
        """The label map of target ``name`` for the session's current references: the propagated
        result when it is current, else a fresh one (at most ``max_side`` on its longer side)."""
        result = session.results.get(name)
        if result is not None and result.version == session.version:
            return result.label_map, result.labels, result.scores
        height, width = self.folder.load(name).shape[:2]
        if max_side is not None and max(height, width) > max_side:
            scale = max_side / max(height, width)
            height, width = max(1, round(height * scale)), max(1, round(width * scale))
        seg = self.segment(session, name, (height, width))
        return seg.label_map, seg.labels, {label: p.score for label, p in seg.predictions.items()}

    def features(self, name: str) -> ImageFeatures:
        """The image encoder's output for image ``name`` (cached while the file is unchanged)."""
        with self.lock:
            key = (name, self.folder.version(name))
            if key not in self._features:
                self._features[key] = self.predictor.encode([self.folder.load(name)])
                while len(self._features) > self._cache_size:
                    self._features.popitem(last=False)
            self._features.move_to_end(key)
            return self._features[key]

    def targets(self, session: Session) -> list[str]:
        """The folder's images that are not references of this session."""
        references = session.reference_images()
        return [name for name in self.folder.names() if name not in references]

    # -- internals ----------------------------------------------------------------------
    def _require_class(self, session: Session, name: str) -> None:
        if name not in session.classes:
            known = ", ".join(session.classes) or "none"
            raise NotFound(f"class {name!r}: no such class (known: {known}); add it first")

    def _set_reference(self, session: Session, image: str, label: str, prompt: dict) -> ReferenceOut:
        old = next((s for s in session.slots.values() if s.image == image and s.reference.label == label), None)
        pixels = self.folder.load(image)
        reference = session.predictor.add_reference(pixels, **prompt, label=label, name=image)
        if old is not None:  # dropped only once the new prompt is accepted
            self._drop_slot(session, old)
        slot = Slot(old.id if old else uuid.uuid4().hex[:12], image, reference)
        session.slots[slot.id] = slot
        session.changed()
        return self._reference_out(session, slot)

    def _drop_slot(self, session: Session, slot: Slot) -> None:
        index = next(i for i, r in enumerate(session.predictor.references) if r is slot.reference)
        session.predictor.remove_reference(index)
        del session.slots[slot.id]

    def _reference_out(self, session: Session, slot: Slot) -> ReferenceOut:
        ref = slot.reference
        color = session.classes.get(ref.label, "#ffffff")
        return ReferenceOut(id=slot.id, image=slot.image, label=ref.label, prompt_type=ref.prompt.type,
                            score=ref.score, area=int(ref.mask.sum()),
                            mask_png=render.data_url(render.mask_png(ref.mask, color)))


def _prompt_kwargs(prompt: PromptIn, size: tuple[int, int], max_bytes: int) -> dict:
    """The page's prompt as :meth:`SansaPredictor.add_reference` keyword arguments."""
    kwargs: dict = {}
    if prompt.mask_png is not None:
        kwargs["mask"] = render.decode_mask_png(prompt.mask_png, size, max_bytes)
    if prompt.points:
        kwargs["points"] = [list(p) for p in prompt.points]
        if prompt.point_labels is not None:
            kwargs["labels"] = prompt.point_labels
    elif prompt.point_labels:
        kwargs["labels"] = prompt.point_labels  # the predictor explains the mistake
    if prompt.box is not None:
        kwargs["box"] = list(prompt.box)
    strokes = [s for s in prompt.scribble or [] if s]
    if strokes:
        kwargs["scribble"] = [np.asarray(s, dtype=np.float32) for s in strokes]
    return kwargs
