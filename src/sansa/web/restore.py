"""A web session read back from disk (after a restart, or once dropped from memory to bound it).

Its references are encoded again from their saved prompts or masks and its results read back;
what is damaged is treated as missing and said once in the session's notes
(:func:`restore_session`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sansa.errors import SansaError
from sansa.objects import ObjectOptions
from sansa.records import Prompt
from sansa.web import render
from sansa.web.schema import PromptIn, ReviewState, Source
from sansa.web.session import Session, Slot, TargetResult
from sansa.web.store import DamagedFile, is_reference

if TYPE_CHECKING:
    from sansa.web.service import SansaService


def restore_session(service: SansaService, sid: str) -> Session:
    """Session ``sid`` from disk: its references are encoded again, its results read back.

    What is damaged on disk is treated as missing and said once in the session's notes (then
    ``session.json`` is rewritten without it): a reference that cannot be restored, a result
    whose file is damaged (that image is redone), an acceptance whose saved map is gone.
    Raises :class:`~sansa.web.store.DamagedFile` when ``session.json`` itself cannot be read.
    """
    record, notes = service.store.load(sid)
    session = Session(
        sid,
        service.predictor.sibling(),
        version=record["version"],
        classes={c["name"]: c["color"] for c in record["classes"]},
        reviews={k: ReviewState(v) for k, v in record["reviews"].items()},
        revision=record.get("revision", 0),
        fixes=record.get("fixes", {}),
        trash=record.get("trash", []),
        history=record.get("history", []),
    )
    try:
        session.predictor.objects = ObjectOptions.create(**record.get("object_options", {}))
        session.object_options = dict(record.get("object_options", {}))
    except (SansaError, TypeError):
        notes.append("session.json: its object options are damaged; the defaults are used")
    lost = False  # a reference not restored now (its image unreadable): kept on disk for the next try
    for ref in record["references"]:
        if not is_reference(ref):
            notes.append(f"session.json: a damaged reference was left out ({str(ref)[:80]})")
            session.changed()
            continue
        try:
            restore_reference(service, session, ref)
        except (SansaError, OSError, ValueError, TypeError) as err:
            (notes if isinstance(err, DamagedFile) else session.notes).append(
                f"reference {ref['image']} ({ref['label']}): not restored: {err}"
            )
            lost = lost or not isinstance(err, DamagedFile)
            session.changed()  # the results were made with references that are gone
    shapes = service.image_shapes()
    results, damaged = service.store.load_maps(sid, "results", shapes)
    accepted, _ = service.store.load_maps(sid, "accepted", shapes)  # a damaged one: its review is undone
    edited, damaged_edits = service.store.load_maps(sid, "objects", shapes)  # a damaged one: back to the prediction
    session.edited = {m.name: TargetResult.from_stored(m) for m in edited}
    damaged += damaged_edits
    session.results = {m.name: TargetResult.from_stored(m) for m in results}
    session.accepted = {
        m.name: TargetResult.from_stored(m) for m in accepted if session.reviews.get(m.name) == ReviewState.ACCEPTED
    }
    for name in [n for n, s in session.reviews.items() if s == ReviewState.ACCEPTED and n not in session.accepted]:
        del session.reviews[name]  # what was accepted is gone: never export another prediction in its place
        notes.append(f"{name}: its accepted prediction is missing; review it again")
    session.notes.extend([*notes, *damaged])
    if notes and not lost:  # said once: the next restore reads a clean session.json (damaged maps
        service.save(session)  # are set aside); a reference not restored now is kept for the next try
    return session


def restore_reference(service: SansaService, session: Session, ref: dict[str, Any]) -> None:
    """Encode the saved reference ``ref`` (a ``session.json`` entry) again into ``session``.

    Raises:
        DamagedFile: its saved mask cannot be read (set aside). SansaError, OSError, ValueError:
            its image is unreadable or its class is gone (the reference stays on disk).
    """
    image, label, prompt = ref["image"], ref["label"], ref.get("prompt")
    if label not in session.classes:
        raise ValueError(f"class {label!r} is not in the session")
    pixels = service.folder.load(image)
    if prompt is None:
        try:
            mask = service.store.load_mask(session.id, ref["id"])
            if mask.shape != pixels.shape[:2]:
                raise SansaError(f"{mask.shape[1]}x{mask.shape[0]}, its image {pixels.shape[1]}x{pixels.shape[0]}")
            record = Prompt.create(mask=mask)
        except (SansaError, OSError) as err:  # never to be read: set aside, the reference dropped
            service.store.set_aside_mask(session.id, ref["id"])
            raise DamagedFile(f"its saved mask is damaged ({err})") from None
    else:
        record = render.page_prompt(PromptIn(**prompt), pixels.shape[:2], service.folder.max_upload_bytes)
    reference = session.predictor.add_reference(pixels, prompt=record, label=label, name=image)
    session.slots[ref["id"]] = Slot(ref["id"], image, reference, Source(ref.get("source", "reference")), prompt)
