"""Objects of each class: SAM2's mask decoder prompted inside a class's mask, then assembled.

For one target, every class's pixels (``label_map == i + 1``) are split into objects:

1. **Seeds**: distance-transform peaks of the class mask (the centres of its widest parts, one per
   blob, several along a region of touching objects), on the decoder's ``G x G`` grid
   (``G = S / 4``, the squashed model view), at most ``points_per_class`` per class.
2. **Decoding**: each seed is a single-click prompt on the target's existing features
   (:meth:`sansa.model.sansa.SansaModel.decode_points`), three candidate masks per click, in
   batches over the seeds of all classes. Nothing is encoded again.
3. **Selection** (on the ``G x G`` logits): the decoder's IoU estimate and the stability score
   (SAM's automatic mask generator's filters, ``sam2.utils.amg``), then candidates lying mostly
   inside their class's mask, then duplicates removed (mask NMS), at most ``max_objects`` a class.
4. **Assembly** (at the target's size): each candidate is clipped to its class's pixels; where two
   claim a pixel the one of higher logit wins; objects under ``min_area`` are dissolved. Class
   pixels no object claims join the object of their class they touch most, or, touching none,
   become an object of their own when at least ``min_area`` (smaller specks become background).
   So a class's pixels are exactly the union of its objects and no pixel has two.

Coordinates: model coordinates ``0..S`` for prompts; grid cells of ``G x G`` for selection; image
pixels for objects (boxes ``x0, y0, x1, y1`` in pixel edges, exclusive end).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torchvision.ops import batched_nms

from sansa.model._sam2 import amg
from sansa.records import ObjectOptions, SegmentedObject
from sansa.transforms import ModelTransform

# Prompts decoded in one call: bounds the decoder's [N, C, 256, 256] upscaling activations.
POINTS_PER_BATCH = 32
STABILITY_OFFSET = 1.0  # SAM's stability score: IoU of the masks at logit thresholds -1 and +1

__all__ = ["Decoder", "ObjectOptions", "find_objects"]

# A decoder over one target: model coordinates [N, 2] -> logits [N, M, G, G] and IoU estimates [N, M].
Decoder = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def find_objects(
    decode: Decoder,
    label_map: np.ndarray,
    labels: Sequence[str],
    class_scores: Sequence[float],
    options: ObjectOptions,
    input_size: int,
) -> tuple[list[SegmentedObject], np.ndarray]:
    """The objects of every class of one target.

    Args:
        decode: the decoder on this target's features (see :data:`Decoder`).
        label_map: ``uint16 [H, W]``, 0 background, ``i + 1`` = ``labels[i]``.
        labels: the classes.
        class_scores: each class's score, given to objects no prompt produced.
        options: see :class:`ObjectOptions`.
        input_size: the model's input side ``S`` (prompts are in ``0..S``; the grid is ``S / 4``).

    Returns:
        The objects, class by class in ``labels`` order, largest first, and the label map with
        the class specks no object took (under ``min_area``) set to background.
    """
    height, width = label_map.shape
    grid = input_size // 4
    min_area = options.area_floor(height, width)
    fractions = class_fractions(label_map, len(labels), grid)
    points, classes = seed_points(fractions, options.points_per_class, min_area * grid * grid / (height * width))
    data = decode_candidates(decode, points * (input_size / grid) - 0.5, classes, options)
    data = select(data, fractions, options)
    return assemble(data, label_map, labels, class_scores, min_area, options.max_objects)


# -- seeds -----------------------------------------------------------------------------------------
def class_fractions(label_map: np.ndarray, num_classes: int, grid: int) -> torch.Tensor:
    """``float32 [C, G, G]``: the share of each grid cell each class covers (the squashed model view)."""
    ids = torch.from_numpy(label_map.astype(np.int64))
    onehot = torch.stack([ids == c for c in range(1, num_classes + 1)]).float()
    return F.adaptive_avg_pool2d(onehot, (grid, grid))


def seed_points(fractions: torch.Tensor, per_class: int, min_cells: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompts inside each class's mask: distance-transform peaks, widest first, none inside the
    inscribed disc of one already taken, at most ``per_class`` per class; regions smaller than
    ``min_cells`` grid cells get none.

    Returns:
        ``float32 [N, 2]`` grid coordinates ``(x, y)`` of cell centres (cell ``i`` spans ``i .. i + 1``),
        and ``int64 [N]`` each point's class index.
    """
    points, classes = [], []
    for c, fraction in enumerate(fractions.numpy()):
        inside = fraction >= 0.5
        if per_class == 0 or not inside.any():
            continue
        xy = _peaks(inside, per_class, min_cells)
        points.append(xy)
        classes.append(np.full(len(xy), c, dtype=np.int64))
    if not points:
        return torch.zeros(0, 2), torch.zeros(0, dtype=torch.int64)
    return torch.from_numpy(np.concatenate(points)).float(), torch.from_numpy(np.concatenate(classes))


def _peaks(inside: np.ndarray, limit: int, min_cells: float) -> np.ndarray:
    distance = ndimage.distance_transform_edt(inside)
    regions, count = ndimage.label(inside)
    sizes = np.bincount(regions.ravel(), minlength=count + 1)
    peak = inside & (distance == ndimage.maximum_filter(distance, size=3)) & (sizes[regions] >= min_cells)
    ys, xs = np.nonzero(peak)
    radius = distance[ys, xs]
    chosen: list[tuple[float, float, float]] = []
    for i in np.argsort(-radius, kind="stable"):
        if len(chosen) == limit:
            break
        x, y, r = float(xs[i]), float(ys[i]), float(radius[i])
        if all(np.hypot(x - cx, y - cy) >= max(r, cr) for cx, cy, cr in chosen):
            chosen.append((x, y, r))
    return np.asarray([(x + 0.5, y + 0.5) for x, y, _ in chosen], dtype=np.float32).reshape(-1, 2)


# -- candidates and selection ----------------------------------------------------------------------
def decode_candidates(
    decode: Decoder, points: torch.Tensor, classes: torch.Tensor, options: ObjectOptions
) -> amg.MaskData:
    """Decode the prompts (model coordinates ``[N, 2]``) in batches and keep the candidate masks
    that pass SAM's automatic mask generator's quality filters (its ``_process_batch``): the
    decoder's IoU estimate above ``pred_iou``, the stability score at least ``stability``.

    Returns:
        ``MaskData`` with ``logits [K, G, G]``, ``masks`` (``logits > 0``), ``iou_preds [K]``,
        ``stability_score [K]``, ``boxes [K, 4]`` (grid cells, inclusive), ``points [K, 2]``,
        ``classes [K]``.
    """
    data = amg.MaskData()
    for batch_points, batch_classes in amg.batch_iterator(POINTS_PER_BATCH, points, classes):
        logits, iou = decode(batch_points)
        per_point = logits.shape[1]
        batch = amg.MaskData(
            logits=logits.flatten(0, 1),
            iou_preds=iou.flatten(0, 1),
            points=batch_points.repeat_interleave(per_point, dim=0),
            classes=batch_classes.repeat_interleave(per_point, dim=0),
        )
        if options.pred_iou > 0:
            batch.filter(batch["iou_preds"] > options.pred_iou)
        batch["stability_score"] = amg.calculate_stability_score(batch["logits"], 0.0, STABILITY_OFFSET)
        if options.stability > 0:
            batch.filter(batch["stability_score"] >= options.stability)
        batch["masks"] = batch["logits"] > 0
        batch["boxes"] = amg.batched_mask_to_box(batch["masks"])
        data.cat(batch)
    return data


def select(data: amg.MaskData, fractions: torch.Tensor | None, options: ObjectOptions) -> amg.MaskData:
    """Candidates lying mostly inside their class's mask (``fractions`` ``[C, G, G]``; ``None``
    skips this filter), without duplicates (mask NMS at ``overlap``, per class, highest IoU
    estimate first), at most ``max_objects`` per class, in decreasing IoU estimate."""
    if not data.items() or len(data["iou_preds"]) == 0:
        return data
    masks = data["masks"].flatten(1).float()
    if fractions is not None:
        inside = (masks * fractions.flatten(1)[data["classes"]]).sum(1) / masks.sum(1).clamp(min=1)
        data.filter(inside >= options.min_inside)
    data.filter(mask_nms(data["masks"], data["iou_preds"], data["classes"], options.overlap))
    rank = torch.zeros_like(data["classes"])
    for c in data["classes"].unique():
        where = data["classes"] == c
        rank[where] = torch.arange(int(where.sum()))
    data.filter(rank < options.max_objects)
    return data


def box_nms(data: amg.MaskData, overlap: float) -> amg.MaskData:
    """SAM's automatic mask generator's duplicate removal (box NMS over all candidates, as in its
    ``_process_crop``), for comparing with it."""
    data.filter(batched_nms(data["boxes"].float(), data["iou_preds"], torch.zeros_like(data["classes"]), overlap))
    return data


def mask_nms(masks: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor, overlap: float) -> torch.Tensor:
    """Greedy NMS on masks: indices of the kept masks, highest score first; a mask whose IoU with
    a kept mask of its group exceeds ``overlap`` is dropped.

    Args:
        masks: ``bool [K, G, G]``; scores: ``[K]``; groups: ``int [K]`` (masks of different groups
        never suppress each other).
    """
    order = torch.argsort(scores, descending=True, stable=True)
    flat = masks[order].flatten(1).float()
    area = flat.sum(1)
    inter = flat @ flat.T
    iou = inter / (area[:, None] + area[None, :] - inter).clamp(min=1)
    clash = (iou > overlap) & (groups[order][:, None] == groups[order][None, :])
    suppressed = torch.zeros(len(order), dtype=torch.bool)
    keep = []
    for i in range(len(order)):
        if not suppressed[i]:
            keep.append(i)
            suppressed |= clash[i]
    return order[torch.as_tensor(keep, dtype=torch.int64)]


# -- assembly --------------------------------------------------------------------------------------
def assemble(
    data: amg.MaskData,
    label_map: np.ndarray,
    labels: Sequence[str],
    class_scores: Sequence[float],
    min_area: int,
    max_objects: int,
) -> tuple[list[SegmentedObject], np.ndarray]:
    """Turn the selected candidates into disjoint objects that cover each class exactly (see the
    module's step 4). Returns the objects and the label map (specks set to background)."""
    label_map = label_map.copy()
    owner, owner_class, scores = _claim(data, label_map)
    areas = np.bincount(owner.ravel(), minlength=len(owner_class))
    owner[(areas < min_area)[owner] & (owner > 0)] = 0
    owner_class, scores = list(owner_class), list(scores)
    for c in range(len(labels)):
        _settle_leftovers(owner, owner_class, scores, label_map, c, min_area, class_scores[c])
    _cap(owner, np.asarray(owner_class), label_map, max_objects)
    return _records(owner, owner_class, scores, labels), label_map


def _claim(data: amg.MaskData, label_map: np.ndarray) -> tuple[np.ndarray, list[int], list[float]]:
    """``int32 [H, W]`` object ids (0 none; candidate ``k`` is ``k + 1``) of the candidates clipped to
    their classes, the highest logit winning a contested pixel; with each id's class and score."""
    height, width = label_map.shape
    owner = np.zeros((height, width), dtype=np.int32)
    best = np.full((height, width), -np.inf, dtype=np.float32)
    owner_class, scores = [-1], [0.0]
    if data.items() and len(data["iou_preds"]):
        for k, (logits, c) in enumerate(zip(data["logits"], data["classes"].tolist(), strict=True), start=1):
            upsampled = ModelTransform.logits_to_image(logits[None, None], height, width)[0].numpy()
            claim = (upsampled > 0) & (label_map == c + 1) & (upsampled > best)
            owner[claim], best[claim] = k, upsampled[claim]
            owner_class.append(c)
            scores.append(float(data["iou_preds"][k - 1]))
    return owner, owner_class, scores


def _settle_leftovers(
    owner: np.ndarray,
    owner_class: list[int],
    scores: list[float],
    label_map: np.ndarray,
    c: int,
    min_area: int,
    class_score: float,
) -> None:
    """Class ``c``'s unclaimed pixels, by 4-connected piece: join the object of class ``c`` they
    share the longest border with; else a new object when at least ``min_area``; else background."""
    free = (label_map == c + 1) & (owner == 0)
    if not free.any():
        return
    count, pieces = cv2.connectedComponents(free.astype(np.uint8), connectivity=4)
    same_class = np.asarray(owner_class) == c
    target = _most_touched(pieces, owner, same_class, count)
    sizes = np.bincount(pieces.ravel(), minlength=count)
    for piece in range(1, count):
        if target[piece] == 0 and sizes[piece] >= min_area:
            target[piece] = len(owner_class)
            owner_class.append(c)
            scores.append(float(class_score))
    inside = pieces > 0
    owner[inside] = target[pieces[inside]]
    label_map[inside & (owner == 0)] = 0


def _most_touched(pieces: np.ndarray, owner: np.ndarray, eligible: np.ndarray, count: int) -> np.ndarray:
    """For each piece id (``0 .. count - 1``), the eligible object id it shares the most
    4-neighbour pixel pairs with (0: none)."""
    pairs = []
    for a, b in (
        (pieces[:, :-1], owner[:, 1:]),
        (pieces[:, 1:], owner[:, :-1]),
        (pieces[:-1], owner[1:]),
        (pieces[1:], owner[:-1]),
    ):
        touching = (a > 0) & eligible[b]
        pairs.append(a[touching].astype(np.int64) * len(eligible) + b[touching])
    codes, counts = np.unique(np.concatenate(pairs), return_counts=True)
    target = np.zeros(count, dtype=np.int32)
    piece_ids, object_ids = codes // len(eligible), codes % len(eligible)
    for i in np.lexsort((object_ids, -counts)):  # most pairs first; ties: the lowest id
        if target[piece_ids[i]] == 0:
            target[piece_ids[i]] = object_ids[i]
    return target


def _cap(owner: np.ndarray, owner_class: np.ndarray, label_map: np.ndarray, max_objects: int) -> None:
    """Objects of a class beyond its ``max_objects`` largest become background."""
    areas = np.bincount(owner.ravel(), minlength=len(owner_class))
    dropped = np.zeros(len(owner_class), dtype=bool)
    for c in np.unique(owner_class[1:]):
        ids = np.nonzero((owner_class == c) & (areas > 0))[0]
        if len(ids) > max_objects:
            dropped[ids[np.argsort(-areas[ids], kind="stable")[max_objects:]]] = True
    if dropped.any():
        gone = dropped[owner]
        owner[gone], label_map[gone] = 0, 0


def _records(owner: np.ndarray, owner_class: list[int], scores: list[float], labels: Sequence[str]) -> list:
    """One :class:`SegmentedObject` per id still owning pixels, class by class, largest first."""
    areas = np.bincount(owner.ravel(), minlength=len(owner_class))
    slices = ndimage.find_objects(owner)
    ids = sorted((i for i in range(1, len(owner_class)) if areas[i] > 0), key=lambda i: (owner_class[i], -areas[i], i))
    objects = []
    for i in ids:
        rows, cols = slices[i - 1]
        mask = np.zeros(owner.shape, dtype=bool)
        mask[rows, cols] = owner[rows, cols] == i
        box = np.asarray([cols.start, rows.start, cols.stop, rows.stop], dtype=np.float32)
        objects.append(SegmentedObject(labels[owner_class[i]], mask, box, scores[i]))
    return objects
