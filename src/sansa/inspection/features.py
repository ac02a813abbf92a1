"""The features memory matching uses, per image and per object, with and without the adapters.

An image's features are the stride-16 ``top`` map of :meth:`SansaModel.encode_images`
(``[C, h, w]``, ``h = w = S/16``), read after the adapters (what memory attention compares) or
with them bypassed (plain SAM2, :func:`sansa.model.adapters.adapters_bypassed`). SAM2 sees every
image squashed to ``S x S``, so cell ``(i, j)`` covers rows ``i*H/h..(i+1)*H/h`` and columns
``j*W/w..(j+1)*W/w`` of an ``H x W`` image. An object's feature is the mean of the cells under
its mask, each weighted by the share of the cell the mask covers (pixel ``(y, x)`` is in cell
``(y * h // H, x * w // W)``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from sansa.model.adapters import adapters_bypassed, has_adapters
from sansa.predictor import SansaPredictor
from sansa.records import Segmentation

PLAIN, ADAPTED = "plain", "adapted"  # the two feature kinds: SAM2's own, and after the adapters
MAX_OBJECTS_PER_CLASS = 20  # predicted objects of one class in one target that get a point, largest first


@dataclass(frozen=True)
class Region:
    """One object (or class region) whose feature is pooled.

    Attributes:
        image: index of its image among those inspected.
        label: its class.
        mask: ``bool [H, W]`` at its image's size.
        is_reference: a reference's mask (``True``) or a predicted object (``False``).
    """

    image: int
    label: str
    mask: np.ndarray
    is_reference: bool


def encode_tops(
    predictor: SansaPredictor, images: Sequence[np.ndarray], plain: bool = False, batch_size: int | None = None
) -> torch.Tensor:
    """``float32 [B, C, h, w]`` (on the CPU) stride-16 features of RGB ``uint8 [H, W, 3]`` images.

    ``plain``: with the adapters bypassed (plain SAM2). Encodes ``batch_size`` images at a time
    (default: the predictor's).
    """
    size = batch_size or predictor.default_batch_size
    parts = []
    for start in range(0, len(images), size):
        chunk = images[start : start + size]
        if plain:
            with adapters_bypassed(predictor.model):
                parts.append(predictor.encode(chunk).top.float().cpu())
        else:
            parts.append(predictor.encode(chunk).top.float().cpu())
    return torch.cat(parts)


def model_has_adapters(predictor: SansaPredictor) -> bool:
    """Whether switching the adapters off changes anything (it does not for plain SAM2)."""
    return has_adapters(predictor.model)


def target_regions(
    segmentation: Segmentation, image: int, grid: tuple[int, int], max_per_class: int = MAX_OBJECTS_PER_CLASS
) -> list[Region]:
    """The predicted objects of one target: :attr:`Segmentation.objects` when filled, else each
    connected part (8-connected) of each class's pixels of the label map.

    Objects smaller than one feature cell of ``grid`` ``(h, w)`` have no feature of their own and
    are left out, and of each class at most ``max_per_class`` objects, the largest, are kept.
    """
    height, width = segmentation.size
    min_area = max(1, (height * width) // (grid[0] * grid[1]))
    regions = []
    if segmentation.objects:
        for label in segmentation.labels:
            masks = [o.mask for o in segmentation.objects if o.label == label and o.area >= min_area]
            masks.sort(key=lambda m: -int(np.count_nonzero(m)))
            regions += [Region(image, label, m, False) for m in masks[:max_per_class]]
        return regions
    for class_id, label in enumerate(segmentation.labels, start=1):
        pixels = (segmentation.label_map == class_id).astype(np.uint8)
        count, parts, stats, _ = cv2.connectedComponentsWithStats(pixels, connectivity=8)
        areas = stats[1:, cv2.CC_STAT_AREA]
        kept = [int(i) + 1 for i in np.argsort(-areas, kind="stable") if areas[i] >= min_area][:max_per_class]
        regions += [Region(image, label, parts == part, False) for part in kept]
    return regions


def cell_index(size: tuple[int, int], grid: tuple[int, int]) -> np.ndarray:
    """``int64 [H, W]``: the feature cell ``i * w + j`` each pixel of an ``H x W`` image falls in."""
    rows = np.arange(size[0]) * grid[0] // size[0]
    cols = np.arange(size[1]) * grid[1] // size[1]
    return rows[:, None] * grid[1] + cols[None, :]


def pool_regions(tops: torch.Tensor, regions: Sequence[Region]) -> np.ndarray:
    """``float32 [N, C]``: each region's mean feature, each cell weighted by the share of it the
    region's mask covers.

    Args:
        tops: ``[B, C, h, w]`` features of the inspected images.
        regions: ``N`` regions, each on one of those images.
    """
    batch, channels, h, w = tops.shape
    flat = tops.reshape(batch, channels, h * w).numpy().astype(np.float64)
    pooled = np.zeros((len(regions), channels), dtype=np.float32)
    cells: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
    for r, region in enumerate(regions):
        size = region.mask.shape[:2]
        if size not in cells:
            index = cell_index(size, (h, w))
            cells[size] = (index, np.bincount(index.ravel(), minlength=h * w))
        index, cell_area = cells[size]
        share = np.bincount(index[region.mask], minlength=h * w) / np.maximum(cell_area, 1)
        pooled[r] = flat[region.image] @ share / max(share.sum(), 1e-12)
    return pooled
