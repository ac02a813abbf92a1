"""The predictor service behind the web app: one model, per-session references, cached encodings.

All sessions share one :class:`~sansa.model.sansa.SansaModel` (it is stateless); each session has
its own :class:`~sansa.predictor.SansaPredictor` holding that session's references. Every model
call runs under one lock, so requests and the background propagation take turns on the model.
A target's image encoding is cached (least recently used first out), so a prompt change only
re-runs memory attention and the decoder on the targets shown. Reading and resizing a target
(:meth:`SansaService.prepare`) needs no lock, so propagation does it ahead on other threads, and
propagated results are saved behind it on one saver thread (:meth:`SansaService.save_result`).

Every change of a session is saved at once to the folder's ``.sansa/web/`` (:mod:`sansa.web.store`);
a session not in memory (after a restart, or dropped to bound memory) is read back from there
(:mod:`sansa.web.restore`).
"""

from __future__ import annotations

import dataclasses
import threading
import uuid
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from sansa.drawing.palette import class_color
from sansa.errors import SansaError
from sansa.model.sansa import ImageFeatures
from sansa.objects import ObjectOptions
from sansa.predictor import SansaPredictor
from sansa.records import Prompt, PromptType, Reference, Segmentation
from sansa.web import history, polygons, render, restore, results, strokes
from sansa.web.errors import Conflict, NotFound, Stale, WebError
from sansa.web.folder import ImageFolder
from sansa.web.schema import (
    ClassInfo,
    DeletedClass,
    PolygonsOut,
    PromptIn,
    ReferenceOut,
    ReferenceRequest,
    ReviewState,
    SessionState,
    Source,
)
from sansa.web.session import Session, Slot, TargetResult
from sansa.web.store import DamagedFile, SessionStore

__all__ = ["Prepared", "SansaService", "Session", "Slot", "TargetResult"]
TRASH_LIMIT = 20  # deleted classes kept restorable per session


@dataclass(frozen=True)
class Prepared:
    """A target read, decoded and resized for the image encoder (:meth:`SansaService.prepare`).

    Attributes:
        name: the image's name in the folder.
        version: the file's :meth:`ImageFolder.version` when it was read.
        pixels: RGB ``uint8 [H, W, 3]``.
        inputs: the encoder's input, ``float32 [3, S, S]`` (``predictor.transform.image(pixels)``).
    """

    name: str
    version: int
    pixels: np.ndarray
    inputs: torch.Tensor


class SansaService:
    """Sessions over one predictor's model and one image folder.

    Args:
        predictor: the loaded predictor (its model and device are shared by all sessions).
        folder: the served folder (sessions are saved in its ``.sansa/web/``).
        cache_size: target image encodings kept (each is ~20 MB for Hiera-L at 1024).
        max_sessions: sessions kept in memory; beyond this the least recently used idle one is
            dropped from memory (it stays on disk and comes back when asked for).
    """

    def __init__(
        self, predictor: SansaPredictor, folder: ImageFolder, cache_size: int = 32, max_sessions: int = 16
    ) -> None:
        self.predictor: SansaPredictor = predictor
        self.folder: ImageFolder = folder
        self.store: SessionStore = SessionStore(folder.root)
        self.lock: threading.RLock = threading.RLock()
        self._features: OrderedDict[tuple[str, int], ImageFeatures] = OrderedDict()
        self._cache_size = cache_size
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._max_sessions = max_sessions
        self._saver = ThreadPoolExecutor(1, "sansa-save")  # results files, first in first out

    # -- sessions -----------------------------------------------------------------------
    def create_session(self) -> Session:
        """A new, empty session; it becomes the one ``sansa serve`` resumes."""
        with self.lock:
            session = Session(uuid.uuid4().hex, self.predictor.sibling())
            if self.store.note:
                session.notes.append(self.store.note)
            self._keep(session)
            self.save(session)
            self.store.set_current(session.id)
            return session

    def current_session(self) -> Session:
        """The session last started or used on this folder (read back from disk), else a new one."""
        with self.lock:
            sid = self.store.current()
            if sid is None:
                return self.create_session()
            try:
                return self.session(sid)
            except NotFound as err:
                session = self.create_session()
                session.notes.append(f"{err}; started a new one")
                return session

    def session(self, session_id: str) -> Session:
        """Session ``session_id``, read back from disk when it is not in memory."""
        with self.lock:
            if session_id not in self._sessions:
                if not self.store.exists(session_id):
                    raise NotFound(f"session {session_id!r}: unknown; reload the page")
                try:
                    restored = restore.restore_session(self, session_id)
                except (OSError, DamagedFile) as err:
                    raise NotFound(f"the saved session {session_id} could not be read ({err})") from None
                self._keep(restored)
            self._sessions.move_to_end(session_id)
            return self._sessions[session_id]

    def state(self, session: Session) -> SessionState:
        with self.lock:
            classes = [ClassInfo(name=n, color=c) for n, c in session.classes.items()]
            refs = [self._reference_out(session, slot) for slot in session.slots.values()]
            targets = self.targets(session)
            propagated = sum(1 for n in targets if self.current_result(session, n) is not None)
            return SessionState(
                session_id=session.id,
                version=session.version,
                revision=session.revision,
                fixes={k: list(v) for k, v in session.fixes.items() if v},
                trash=[_deleted_class(entry) for entry in session.trash],
                classes=classes,
                references=refs,
                reviews=dict(session.reviews),
                targets=len(targets),
                propagated=propagated,
                notes=list(session.notes),
                object_options=dict(session.object_options),
            )

    def save(self, session: Session) -> None:
        """Write ``session.json`` (classes, references and prompts, reviews, fixes, deleted classes,
        version); every save is a change, so it moves the session's revision."""
        session.revision += 1
        record = {
            "format": 1,
            "id": session.id,
            "version": session.version,
            "revision": session.revision,
            "classes": [{"name": n, "color": c} for n, c in session.classes.items()],
            "references": [s.record() for s in session.slots.values()],
            "reviews": {k: v.value for k, v in session.reviews.items()},
            "fixes": session.fixes,
            "trash": session.trash,
            "history": session.history,
            "object_options": session.object_options,
        }
        self.store.save(session.id, record)

    def expect(self, session: Session, revision: int | None) -> None:
        """Refuse a change made on an older revision of the session (another tab changed it since).

        Raises:
            Stale: ``revision`` is not the session's current one (``None``: not checked).
        """
        if revision is not None and revision != session.revision:
            raise Stale(
                f"this session was changed in another tab or window (revision {session.revision}, "
                f"this page had {revision}): showing the current state"
            )

    def save_result(self, session: Session, name: str) -> Future[None]:
        """Save target ``name``'s result (as it is now) on the saver thread: compressing and writing
        overlap the model's next target. One thread, first in first out, so the file ends as the
        last result handed in (a renamed class's after the propagated one). Callers bound how many
        they leave waiting; an error (full disk) is raised by the future's ``result()``."""
        return self._saver.submit(self._save_result, session.id, name, session.results[name])

    def _save_result(self, sid: str, name: str, result: TargetResult) -> None:
        self.store.save_map(sid, "results", result.stored(name))

    # -- classes ------------------------------------------------------------------------
    def add_class(self, session: Session, name: str, color: str | None = None) -> ClassInfo:
        with self.lock:
            if name in session.classes:
                raise Conflict(f"class {name!r}: already exists")
            color = self._check_color(session, color.lower(), name) if color else self._free_color(session)
            session.classes[name] = color
            session.changed()
            self.save(session)
            return ClassInfo(name=name, color=color)

    def update_class(self, session: Session, name: str, new_name: str | None, color: str | None) -> ClassInfo:
        """Rename and/or recolour class ``name``; its references, results and reviews follow."""
        with self.lock:
            self._require_class(session, name)
            if new_name is not None and new_name != name and new_name in session.classes:
                raise Conflict(f"class {new_name!r}: already exists")
            if color is not None:
                session.classes[name] = self._check_color(session, color.lower(), name)
            if new_name is not None and new_name != name:
                self.encode_pending(session)  # the predictor's order of references stays the edits' order
                self._rename(session, name, new_name)
                name = new_name
            self.save(session)
            return ClassInfo(name=name, color=session.classes[name])

    def remove_class(self, session: Session, name: str) -> None:
        """Delete class ``name`` with its references and fixes, into the session's trash (saved:
        :meth:`restore_class` brings it back, also after a restart); the oldest of more than
        ``TRASH_LIMIT`` deleted classes is dropped for good."""
        with self.lock:
            self._require_class(session, name)
            slots = [s for s in session.slots.values() if s.reference.label == name]
            session.trash.append(
                {
                    "id": uuid.uuid4().hex[:12],
                    "name": name,
                    "color": session.classes[name],
                    "position": list(session.classes).index(name),
                    "references": [s.record() for s in slots],
                    "fixes": sorted(image for image, labels in session.fixes.items() if name in labels),
                }
            )
            for slot in slots:
                self._drop_slot(session, slot, keep_mask=True)
            for labels in session.fixes.values():
                if name in labels:
                    labels.remove(name)
            del session.classes[name]
            while len(session.trash) > TRASH_LIMIT:
                for ref in session.trash.pop(0)["references"]:
                    self.store.remove_mask(session.id, ref["id"])
            session.changed()
            self.save(session)

    def restore_class(self, session: Session, trash_id: str) -> None:
        """Bring back a deleted class (:meth:`remove_class`) with its references and fixes.

        Raises:
            NotFound: no such deleted class. Conflict: a class of that name exists again.
        """
        with self.lock:
            entry = next((e for e in session.trash if e["id"] == trash_id), None)
            if entry is None:
                raise NotFound(f"deleted class {trash_id!r}: not in this session's trash")
            name = entry["name"]
            if name in session.classes:
                raise Conflict(f"class {name!r}: exists again; rename it before restoring the deleted one")
            used = {c.lower() for c in session.classes.values()}
            color = entry["color"] if entry["color"].lower() not in used else self._free_color(session)
            self.encode_pending(session)
            order = list(session.classes.items())
            order.insert(min(entry["position"], len(order)), (name, color))
            session.classes = dict(order)
            for ref in entry["references"]:
                try:
                    restore.restore_reference(self, session, ref)
                except (SansaError, OSError, ValueError) as err:
                    session.notes.append(f"reference {ref['image']} ({name}): not restored: {err}")
            for image in entry["fixes"]:
                session.fixes.setdefault(image, []).append(name)
            session.trash.remove(entry)
            session.changed()
            self.save(session)

    def set_object_options(self, session: Session, given: dict[str, Any]) -> None:
        """How the session splits classes into objects: ``given`` (what the user set; the rest are
        :class:`~sansa.objects.ObjectOptions`' defaults) replaces the earlier choice. The targets'
        results become out of date (propagate again); edited objects stay as they were left.

        Raises:
            SansaError: an unknown option or a value out of range (one line naming it).
        """
        with self.lock:
            options = ObjectOptions.create(**given)
            session.object_options = {k: v for k, v in given.items() if v is not None}
            session.predictor.objects = options
            session.changed()
            self.save(session)

    # -- references ---------------------------------------------------------------------
    def put_reference(self, session: Session, request: ReferenceRequest, undoing: int = 0) -> ReferenceOut:
        """Mark ``request.image`` for ``request.label``, replacing that image's earlier prompt for the class
        (undoable: :meth:`undo`; ``undoing``: this change is the page's own undo of that many changes,
        see :func:`sansa.web.history.remembered`)."""
        with self.lock, history.remembered(self.store, session, request.image, request.label, undoing):
            self._require_class(session, request.label)
            size = self.folder.load(request.image).shape[:2]
            if request.prompt.edits is not None:
                prompt = self._edited(session, request, size)
            else:
                prompt = render.page_prompt(request.prompt, size, self.folder.max_upload_bytes)
            is_mask = any(
                v is not None for v in (request.prompt.mask_png, request.prompt.edits, request.prompt.polygons)
            )
            stored = None if is_mask else request.prompt.model_dump(exclude_none=True)
            fixed = request.label in session.fixes.get(request.image, [])
            source = Source.CORRECTED if fixed else Source.REFERENCE
            return self._set_reference(session, request.image, request.label, prompt, source, stored)

    def _edited(self, session: Session, request: ReferenceRequest, size: tuple[int, int]) -> Prompt:
        """The mask prompt of ``request.prompt.edits`` applied to the class's current mask on the image."""
        if any(v is not None for k, v in request.prompt if k != "edits"):
            raise WebError("prompt.edits: send the changes alone (no mask_png, points, box or scribble with them)")
        old = session.slot_of(request.image, request.label)
        if old is not None and old.pending is None and old.reference.prompt.mask is None:
            raise Conflict(f"image {request.image!r}: its {request.label!r} reference is not a mask prompt")
        base = old.mask if old is not None else np.zeros(size, dtype=bool)
        mask = strokes.apply(base, request.prompt.edits or [])
        if not mask.any():
            raise WebError("prompt.edits: nothing of the mask is left; remove the reference instead")
        return Prompt.create(mask=mask)

    def promote(self, session: Session, image: str, label: str) -> ReferenceOut:
        """Make a target a reference of ``label``, its current prediction as the mask prompt (to be corrected)."""
        with self.lock, history.remembered(self.store, session, image, label):
            self._require_class(session, label)
            if results.is_reference(session, image) or session.slot_of(image, label) is not None:
                raise Conflict(f"image {image!r}: is already a reference of {label!r}; edit its mask instead")
            composed = results.shown(self, session, image)
            mask = composed.label_map == composed.labels.index(label) + 1
            if not mask.any():
                raise Conflict(
                    f"image {image!r}: nothing of class {label!r} is predicted there; mark it with a prompt instead"
                )
            fixed = session.fixes.setdefault(image, [])
            if label not in fixed:
                fixed.append(label)
            return self._set_reference(session, image, label, Prompt.create(mask=mask), Source.CORRECTED, None)

    def remove_reference(self, session: Session, reference_id: str, keep_fix: bool = False, undoing: int = 0) -> None:
        """Forget a reference. A fixed class's mask erased to nothing keeps the fix (``keep_fix``: the
        class is empty on that image); otherwise the image is a plain target again for that class.
        Undoable (:meth:`undo`); ``undoing``: this is the page's own undo of that many changes
        (:func:`sansa.web.history.remembered`)."""
        with self.lock:
            if reference_id not in session.slots:
                raise NotFound(f"reference {reference_id!r}: no such reference in this session")
            slot = session.slots[reference_id]
            with history.remembered(self.store, session, slot.image, slot.label, undoing):
                history.set_fixed(
                    session, slot.image, slot.label, keep_fix and slot.label in session.fixes.get(slot.image, [])
                )
                self._drop_slot(session, slot)
                session.changed()
                self.save(session)

    def undo(self, session: Session, image: str, label: str) -> None:
        """Put ``image``'s reference of ``label`` back as it was before its last saved change (also
        after a reload or a restart): its prompt or mask, its source and whether it was fixed.

        Raises:
            Conflict: nothing of that image and class is left to undo.
        """
        with self.lock:
            self._require_class(session, label)
            entry = history.last_step(session, image, label)
            if entry is None:
                raise Conflict(f"image {image!r}: no change of class {label!r} left to undo")
            session.history.remove(entry)
            try:
                history.set_fixed(session, image, label, entry["fixed"])
                before = entry["before"]
                if before is None:
                    slot = session.slot_of(image, label)
                    if slot is not None:
                        self._drop_slot(session, slot)
                    session.changed()
                    self.save(session)
                else:
                    size = self.folder.load(image).shape[:2]
                    if before["prompt"] is None:
                        prompt = Prompt.create(mask=self.store.load_mask(session.id, entry["id"]))
                    else:
                        prompt = render.page_prompt(PromptIn(**before["prompt"]), size, self.folder.max_upload_bytes)
                    self._set_reference(session, image, label, prompt, Source(before["source"]), before["prompt"])
            except BaseException:
                session.history.append(entry)
                raise
            self.store.remove_mask(session.id, entry["id"])

    def polygons(self, session: Session, reference_id: str, tolerance: float | None = None) -> PolygonsOut:
        """Reference ``reference_id``'s mask as rings (:func:`sansa.web.polygons.rings`), vertices at
        most ``tolerance`` pixels off its edge (default: that module's)."""
        with self.lock:
            if reference_id not in session.slots:
                raise NotFound(f"reference {reference_id!r}: no such reference in this session")
            mask = session.slots[reference_id].mask
        options = {} if tolerance is None else {"tolerance": tolerance}
        return PolygonsOut(rings=polygons.rings(mask, **options))

    # -- review -------------------------------------------------------------------------
    def review(self, session: Session, name: str, state: ReviewState | None) -> None:
        """Accept (the prediction is kept as it is now), reject, or undo the decision on target ``name``."""
        with self.lock:
            self.folder.path(name)
            if name in session.reference_images() or session.fixed(name):
                raise Conflict(f"image {name!r}: is a reference (or fixed): its own masks are exported")
            if state == ReviewState.ACCEPTED:
                session.accepted[name] = self.result(session, name)
                self.store.save_map(session.id, "accepted", session.accepted[name].stored(name))
            else:
                session.accepted.pop(name, None)
                self.store.remove_map(session.id, "accepted", name)
            if state is None:
                session.reviews.pop(name, None)
            else:
                session.reviews[name] = state
            self.save(session)

    # -- targets ------------------------------------------------------------------------
    def segment(
        self, session: Session, name: str, size: tuple[int, int] | None = None, prepared: Prepared | None = None
    ) -> Segmentation:
        """Every class of the session in image ``name``, at ``size`` ``(H, W)`` (default: the image's).

        Reuses the cached encoding of the image; only memory attention and the decoder run.
        ``prepared``: the image already read and resized (:meth:`prepare`), encoded when not cached.
        """
        with self.lock:
            if not session.predictor.labels:
                raise Conflict("no reference yet: mark an object on a reference image first")
            self.encode_pending(session)
            feats = self.features(name, prepared)
            if size is None:
                size = (prepared.pixels if prepared is not None else self.folder.load(name)).shape[:2]
            return session.predictor.segment_encoded(feats, [size], [name])[0]

    def current_result(self, session: Session, name: str) -> TargetResult | None:
        """The propagated result of ``name`` if it was made with the current references."""
        result = session.results.get(name)
        return result if result is not None and result.version == session.version else None

    def result(self, session: Session, name: str, max_side: int | None = None) -> TargetResult:
        """The label map and objects of target ``name`` for the session's current references: the
        propagated result when it is current, else a fresh one (at most ``max_side`` on its longer side)."""
        result = self.current_result(session, name)
        if result is not None:
            return result
        height, width = self.folder.load(name).shape[:2]
        if max_side is not None and max(height, width) > max_side:
            scale = max_side / max(height, width)
            height, width = max(1, round(height * scale)), max(1, round(width * scale))
        return TargetResult.of(session.version, self.segment(session, name, (height, width)))

    def prepare(self, name: str) -> Prepared:
        """Image ``name`` read, decoded and resized for the encoder; needs no lock (the folder's
        caches have their own), so propagation runs it on reader threads while the model works.

        Raises:
            ImageError: the file is not a readable image. WebError: no such image.
        """
        version = self.folder.version(name)
        pixels = self.folder.load(name)
        return Prepared(name, version, pixels, self.predictor.transform.image(pixels))

    def features(self, name: str, prepared: Prepared | None = None) -> ImageFeatures:
        """The image encoder's output for image ``name`` (cached while the file is unchanged),
        encoded from ``prepared`` (:meth:`prepare`) when given and not cached."""
        with self.lock:
            key = (name, prepared.version if prepared is not None else self.folder.version(name))
            if key not in self._features:
                prepared = prepared or self.prepare(name)
                self._features[key] = self.predictor.encode_inputs(prepared.inputs[None])
                while len(self._features) > self._cache_size:
                    self._features.popitem(last=False)
            self._features.move_to_end(key)
            return self._features[key]

    def targets(self, session: Session) -> list[str]:
        """The folder's images that are not reference examples of this session (fixed targets are:
        their classes not fixed stay predicted)."""
        references = {s.image for s in session.slots.values() if s.source == Source.REFERENCE}
        return [name for name in self.folder.names() if name not in references]

    # -- internals ----------------------------------------------------------------------
    def _keep(self, session: Session) -> None:
        self._sessions[session.id] = session
        idle = [sid for sid, s in self._sessions.items() if not s.busy() and sid != session.id]
        while len(self._sessions) > self._max_sessions and idle:
            del self._sessions[idle.pop(0)]  # saved on disk: read back when asked for

    def image_shapes(self) -> dict[str, tuple[int, int]]:
        """``(H, W)`` of every image of the folder as shown (EXIF rotation applied), from the headers."""
        return {info.name: (info.height, info.width) for info in self.folder.list().images}

    def _require_class(self, session: Session, name: str) -> None:
        if name not in session.classes:
            known = ", ".join(session.classes) or "none"
            raise NotFound(f"class {name!r}: no such class (known: {known}); add it first")

    def _free_color(self, session: Session) -> str:
        """The first palette colour no live class has (so deleting a class never makes two alike)."""
        used = {c.lower() for c in session.classes.values()}
        class_id = 1
        while (color := _hex(class_color(class_id))) in used:
            class_id += 1
        return color

    def _check_color(self, session: Session, color: str, name: str) -> str:
        owner = next((n for n, c in session.classes.items() if c.lower() == color and n != name), None)
        if owner is not None:
            raise Conflict(f"color {color}: already the colour of class {owner!r}; choose another")
        return color

    def _rename(self, session: Session, old: str, new: str) -> None:
        """Rename a class: its references keep their encoded memory under the new name (nothing is
        encoded again), so the propagated and accepted results stay current with their labels renamed."""
        for slot in [s for s in session.slots.values() if s.reference.label == old]:
            reference = session.predictor.remove_reference(session.index_of(slot))
            slot.reference = session.predictor.add_encoded(dataclasses.replace(reference, label=new))
        session.classes = {new if n == old else n: c for n, c in session.classes.items()}
        session.fixes = {image: [new if x == old else x for x in labels] for image, labels in session.fixes.items()}
        history.rename(session, old, new)
        saves = []
        for kind, maps in (("results", session.results), ("accepted", session.accepted), ("objects", session.edited)):
            for name, result in list(maps.items()):
                if old in result.labels:
                    maps[name] = result.renamed(old, new)
                    if kind == "results":  # after a propagation's pending save of the same file
                        saves.append(self.save_result(session, name))
                    else:
                        self.store.save_map(session.id, kind, maps[name].stored(name))
        for save in saves:
            save.result()

    def encode_pending(self, session: Session) -> None:
        """Encode the masks saved but not yet encoded (:attr:`Slot.pending`), in the order they were
        made: the session's memory is then what encoding each edit at once would have made."""
        with self.lock:
            for slot in list(session.slots.values()):
                if slot.pending is not None:
                    reference = self._encode(session, slot.image, slot.label, slot.pending)
                    session.predictor.remove_reference(session.index_of(slot))
                    slot.reference, slot.pending = reference, None

    def _encode(self, session: Session, image: str, label: str, prompt: Prompt) -> Reference:
        """A reference of ``image`` for ``label`` added to the session's predictor (at its end)."""
        features = self.features(image)  # cached: a reference edited again is not encoded again
        pixels = self.folder.load(image)
        return session.predictor.add_reference(pixels, prompt=prompt, label=label, name=image, features=features)

    def _set_reference(
        self, session: Session, image: str, label: str, prompt: Prompt, source: Source, stored: dict[str, Any] | None
    ) -> ReferenceOut:
        """Set ``image``'s reference of ``label``. A mask replacing a reference's earlier prompt is
        encoded later (:meth:`encode_pending`, before a target is segmented): a stroke on a 12-Mpx
        image costs applying it and saving the mask, not the decoder and memory encoder."""
        old = session.slot_of(image, label)
        if old is not None and prompt.mask is not None:
            del session.slots[old.id]  # to the end, as a slot set again (restores read them in this order)
            slot = dataclasses.replace(old, source=source, prompt=None, pending=prompt)
        else:
            self.encode_pending(session)
            reference = self._encode(session, image, label, prompt)
            if old is not None:  # dropped only once the new prompt is accepted
                self._drop_slot(session, old)
            slot = Slot(old.id if old else uuid.uuid4().hex[:12], image, reference, source, stored)
        session.slots[slot.id] = slot
        if stored is None:
            self.store.save_mask(session.id, slot.id, slot.mask)
        if source == Source.CORRECTED:  # per class: the image's other classes stay accepted
            if session.reviews.get(image) == ReviewState.REJECTED:
                del session.reviews[image]
        elif session.reviews.pop(image, None) is not None:
            session.accepted.pop(image, None)
            self.store.remove_map(session.id, "accepted", image)
        session.changed()
        self.save(session)
        return self._reference_out(session, slot)

    def _drop_slot(self, session: Session, slot: Slot, keep_mask: bool = False) -> None:
        session.predictor.remove_reference(session.index_of(slot))
        del session.slots[slot.id]
        if not keep_mask:  # a deleted class's masks stay for its restore
            self.store.remove_mask(session.id, slot.id)

    def _reference_out(self, session: Session, slot: Slot) -> ReferenceOut:
        ref = slot.reference
        color = session.classes.get(ref.label, "#ffffff")
        pending = slot.pending is not None
        return ReferenceOut(
            id=slot.id,
            image=slot.image,
            label=ref.label,
            source=slot.source,
            prompt=PromptIn(**slot.prompt) if slot.prompt else None,
            prompt_type=PromptType.MASK if pending else ref.prompt.type,
            score=None if pending else ref.score,
            area=int(slot.mask.sum()),
            mask_png=render.data_url(render.mask_png(slot.mask, color)),
        )


def _deleted_class(entry: dict[str, Any]) -> DeletedClass:
    refs = entry["references"]
    fixed = sum(1 for r in refs if r.get("source") == Source.CORRECTED.value)
    return DeletedClass(id=entry["id"], name=entry["name"], color=entry["color"], references=len(refs), fixed=fixed)


def _hex(rgb: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)
