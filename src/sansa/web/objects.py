"""The objects of an image in the web app: listed, deleted, merged, split and reviewed one by one.

An image's objects are an *object map* (``uint16 [H, W]``: 0 no object, ``k`` = the ``k``-th object)
beside its label map (:mod:`sansa.web.results`), with each object's class, score and review state
(:class:`~sansa.web.session.ObjectInfo`). They always agree: every object lies inside its class's
pixels and a class's pixels are exactly the union of its objects (:func:`sansa.web.results.reconcile`). Objects come
from the prediction (:attr:`sansa.records.Segmentation.objects`); a class without objects (a
hand-made mask, a result of an older version) is one object until edited.

Edits (:func:`edit`) are made on what the image shows and kept per image as the user left them
(``session.edited``, saved in ``.sansa/web/sessions/<id>/objects/``), like an accepted map: new
references mark them stale, never replace them; ``reset`` goes back to the prediction.

========= ===========================================================================================
edit      what it does
========= ===========================================================================================
delete    the objects' pixels become background (left out of every export format)
merge     two or more objects of one class become the first of them (the highest score is kept)
split     the decoder's mask for a click on the object (SAM2, on the cached encoding) cuts it in two;
          where no mask of the click cuts it, the object's connected piece under the click is cut off
accept    the objects are marked accepted (review)
reject    the objects are marked rejected: left out of the export, still listed (``undo`` takes it back)
undo      the objects' review decision is taken back
reset     the image's edits are dropped: it shows its prediction (or accepted map) again
========= ===========================================================================================

Hidden objects (the page's eye per object, like per class) are a view setting of the page only:
the export writes every object that is not deleted or rejected.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image
from scipy import ndimage

from sansa.export.objects import mask_box
from sansa.records import SegmentedObject
from sansa.web import render
from sansa.web.errors import Conflict, NotFound, WebError
from sansa.web.results import REJECTED, Shown, is_reference, renumber, shown
from sansa.web.schema import ObjectEdit, ObjectOut
from sansa.web.session import ObjectInfo, Session, TargetResult

if TYPE_CHECKING:
    from sansa.web.service import SansaService


def object_outs(shown: Shown) -> list[ObjectOut]:
    """The image's objects as the page lists them (ids ``1..K``, boxes in full-size pixels)."""
    areas = np.bincount(shown.object_map.ravel(), minlength=len(shown.objects) + 1)
    slices = ndimage.find_objects(shown.object_map.astype(np.int32), max_label=len(shown.objects))
    outs = []
    for k, (info, where) in enumerate(zip(shown.objects, slices, strict=True), start=1):
        rows, cols = where if where is not None else (slice(0, 0), slice(0, 0))
        outs.append(
            ObjectOut(
                id=k,
                label=info.label,
                score=info.score,
                area=int(areas[k]),
                box=(cols.start, rows.start, cols.stop, rows.stop),
                state=info.state,
            )
        )
    return outs


def id_map_png(object_map: np.ndarray, max_side: int | None) -> bytes:
    """The object map as an RGB PNG the page reads back exactly: red = id % 256, green = id // 256,
    resized (nearest) to at most ``max_side``."""
    ids = render.downsized(object_map, max_side)
    rgb = np.stack([(ids & 255).astype(np.uint8), (ids >> 8).astype(np.uint8), np.zeros_like(ids, np.uint8)], -1)
    return render.to_png(Image.fromarray(rgb))


def to_export(shown: Shown, labels: Sequence[str]) -> list[SegmentedObject]:
    """The objects the export writes (all but the rejected), classes of ``labels`` only."""
    exported = []
    slices = ndimage.find_objects(shown.object_map.astype(np.int32), max_label=len(shown.objects))
    for k, (info, where) in enumerate(zip(shown.objects, slices, strict=True), start=1):
        if info.state == REJECTED or info.label not in labels or where is None:
            continue
        mask = shown.object_map == k
        exported.append(SegmentedObject(info.label, mask, mask_box(mask), info.score))
    return exported


# -- edits -----------------------------------------------------------------------------------------
def edit(service: SansaService, session: Session, name: str, request: ObjectEdit) -> None:
    """Apply ``request`` to the objects image ``name`` shows (see the module's table) and keep the
    result as the image's edited objects (saved). Call with ``service.lock`` held.

    Raises:
        Conflict: a reference image, a deleted object of a fixed class, a merge across classes.
        NotFound: an object id the image does not have.
    """
    if is_reference(session, name):
        raise Conflict(f"image {name!r}: is a reference; its masks are edited with the brush and eraser")
    if request.op == "reset":
        session.edited.pop(name, None)
        service.store.remove_map(session.id, "objects", name)
        return
    composed = shown(service, session, name)
    object_map, objects = composed.object_map.copy(), list(composed.objects)
    ids = _checked_ids(request, objects, session.fixes.get(name, []))
    if request.op == "delete":
        object_map, objects = renumber(object_map, objects, [k not in ids for k in range(1, len(objects) + 1)])
    elif request.op == "merge":
        object_map, objects = _merge(object_map, objects, ids)
    elif request.op == "split":
        object_map, objects = _split(service, session, name, object_map, objects, ids, request.point)
    else:
        state = None if request.op == "undo" else request.op + "ed"
        objects = [dataclasses.replace(o, state=state) if k in ids else o for k, o in enumerate(objects, start=1)]
    classes = np.array([0] + [composed.labels.index(o.label) + 1 for o in objects], dtype=np.uint16)
    result = TargetResult.pack(
        composed.version, classes[object_map], composed.labels, composed.scores, object_map, objects
    )
    session.edited[name] = result
    service.store.save_map(session.id, "objects", result.stored(name))


def _checked_ids(request: ObjectEdit, objects: list[ObjectInfo], fixed: list[str]) -> list[int]:
    ids = list(dict.fromkeys(request.ids))
    unknown = [k for k in ids if not 1 <= k <= len(objects)]
    if unknown:
        raise NotFound(f"objects {unknown}: the image has objects 1 to {len(objects)}; reload to see them")
    if request.op == "merge" and len(ids) < 2:
        raise WebError("merge: select two or more objects of one class")
    if request.op == "split" and (len(ids) != 1 or request.point is None):
        raise WebError("split: select one object and click inside the part to cut off (ids: one id, point: [x, y])")
    if request.op == "delete":
        for k in ids:
            if objects[k - 1].label in fixed:
                raise Conflict(
                    f"object {k}: its class {objects[k - 1].label!r} is fixed on this image; "
                    "erase it with the eraser instead"
                )
    return ids


def _merge(object_map: np.ndarray, objects: list[ObjectInfo], ids: list[int]) -> tuple[np.ndarray, list[ObjectInfo]]:
    first = objects[ids[0] - 1]
    other = next((k for k in ids if objects[k - 1].label != first.label), None)
    if other is not None:
        raise Conflict(
            f"merge: object {ids[0]} is {first.label!r}, object {other} is {objects[other - 1].label!r}; "
            "only objects of one class merge"
        )
    object_map = np.where(np.isin(object_map, ids[1:]), ids[0], object_map).astype(np.uint16)
    objects[ids[0] - 1] = dataclasses.replace(first, score=max(objects[k - 1].score for k in ids))
    return renumber(object_map, objects, [k not in ids[1:] for k in range(1, len(objects) + 1)])


def _split(
    service: SansaService,
    session: Session,
    name: str,
    object_map: np.ndarray,
    objects: list[ObjectInfo],
    ids: list[int],
    point: tuple[float, float] | None,
) -> tuple[np.ndarray, list[ObjectInfo]]:
    """Cut object ``ids[0]`` in two at the click ``point`` (full-size pixels ``(x, y)``)."""
    assert point is not None  # checked by _checked_ids
    k = ids[0]
    height, width = object_map.shape
    x, y = min(max(int(point[0]), 0), width - 1), min(max(int(point[1]), 0), height - 1)
    inside = object_map == k
    if not inside[y, x]:
        raise WebError(f"split: the click ({x}, {y}) is not on object {k}; click inside the part to cut off")
    part = _decoded_part(service, session, name, inside, (x, y))
    if part is not None:
        part = _without_crumbs(inside, part, (x, y))
    else:
        part = _piece_at(inside, (x, y))
    if part is None:
        raise Conflict(f"split: no mask of a click at ({x}, {y}) cuts object {k} in two; click elsewhere on it")
    object_map = object_map.copy()
    object_map[part] = len(objects) + 1
    return object_map, [*objects, dataclasses.replace(objects[k - 1], state=None)]


def _decoded_part(
    service: SansaService, session: Session, name: str, inside: np.ndarray, xy: tuple[int, int]
) -> np.ndarray | None:
    """The part of the object (``bool [H, W]``) the decoder's best mask for a click at ``xy`` cuts
    off (SAM2's three candidates, highest IoU estimate first): the connected piece of the object
    under the mask that holds the click, with the object's pixels it encloses; ``None`` when no
    candidate leaves part of the object over."""
    features = service.features(name)
    masks, iou = session.predictor.decode_click(features, xy, inside.shape)
    for m in np.argsort(-iou, kind="stable"):
        under = inside & masks[m]
        if not under[xy[1], xy[0]]:
            continue
        part = ndimage.binary_fill_holes(_piece_at(under, xy, always=True)) & inside
        if part.sum() < inside.sum():
            return part
    return None


def _without_crumbs(inside: np.ndarray, part: np.ndarray, xy: tuple[int, int]) -> np.ndarray:
    """``part`` with the crumbs it leaves: of the clicked piece of the object, what is not in
    ``part`` stays with the object as its largest 8-connected region only; the rest joins ``part``."""
    piece = _piece_at(inside, xy, always=True)
    assert piece is not None
    left, count = ndimage.label(piece & ~part, structure=np.ones((3, 3)))
    if count > 1:
        largest = 1 + int(np.argmax(np.bincount(left.ravel())[1:]))
        part = part | ((left > 0) & (left != largest))
    return part


def _piece_at(inside: np.ndarray, xy: tuple[int, int], always: bool = False) -> np.ndarray | None:
    """The 8-connected piece of ``inside`` under ``xy``; ``None`` when it is the only one (unless ``always``)."""
    pieces, count = ndimage.label(inside, structure=np.ones((3, 3)))
    return pieces == pieces[xy[1], xy[0]] if count > 1 or always else None
