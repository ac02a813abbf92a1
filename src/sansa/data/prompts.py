"""Prompts generated from ground-truth masks: points, box, scribble (and the mask itself).

Used by promptable evaluation (one seeded generator per episode) and by training. All
coordinates are pixels of the mask's image, ``x`` = column, ``y`` = row, no half-pixel offset.

Protocol (SANSA paper, section 5 of the project notes):

- **points**: ``min(20, area)`` distinct random foreground pixels (training draws 1-20: pass
  ``num_points=int(rng.integers(1, 21))``).
- **box**: the boxes of the connected components, merged in one pass as the authors'
  ``get_bounding_boxes``; the largest wins. A box is ``[x0, y0, x1, y1]`` with exclusive ends
  (``x1 = last column + 1``).
- **scribble**, two styles (:class:`ScribbleStyle`):

  - ``authors`` (the evaluation default, :mod:`sansa.data.scribble`): the authors' evaluation
    generator, brushes 3-9 px, every scribble pixel a point token (thousands on a large object);
  - ``light`` (for interactive use and training): 1-20 one-pixel random free-form strokes
    (random walks with bounded speed and turning, as in "Free-Form Image Inpainting"), each
    started on a foreground pixel and kept where it lies on the mask, thinned by
    :class:`~sansa.records.Prompt` to at most 64 points.

An empty mask has no prompt: :func:`sample_prompt` raises :class:`~sansa.errors.PromptError`
rather than inventing a click at ``(0, 0)``. Evaluation follows the authors instead and
prompts an empty support with :func:`empty_prompt`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict

import numpy as np
from scipy import ndimage

from sansa.data.scribble import authors_scribble
from sansa.errors import PromptError
from sansa.records import Prompt
from sansa.vocab import PromptType, ScribbleStyle

MAX_POINTS = 20
MAX_STROKES = 20


# Stroke shape (the reference's "rand_curve" / "rand_curve_small" presets, chosen 50/50).
class _WalkPreset(TypedDict):
    vertices: tuple[int, int]
    max_speed: float
    accel: tuple[float, float]
    init_speed: float


_STROKE_PRESETS: tuple[_WalkPreset, ...] = (
    {"vertices": (10, 30), "max_speed": 20.0, "accel": (15.0, 0.5), "init_speed": 6.0},
    {"vertices": (6, 22), "max_speed": 12.0, "accel": (8.0, 0.5), "init_speed": 3.0},
)


def sample_prompt(
    mask: np.ndarray,
    kind: PromptType | str,
    rng: np.random.Generator,
    num_points: int | None = None,
    num_strokes: int | None = None,
    scribble: ScribbleStyle | str = ScribbleStyle.LIGHT,
) -> Prompt:
    """A prompt of ``kind`` generated from a ground-truth mask.

    Args:
        mask: ``bool [H, W]``, the object's pixels (must not be empty).
        kind: ``mask``, ``point``, ``box`` or ``scribble``.
        rng: the random generator (seed it per episode for reproducible prompts).
        num_points: clicks for ``point`` (default ``min(20, area)``; clipped to the area).
        num_strokes: strokes for a ``light`` scribble (default: random in ``1..min(20, area)``).
        scribble: the scribble generator: ``light`` or ``authors`` (evaluation passes ``authors``;
            its points are kept whole, not thinned).

    Returns:
        A validated :class:`~sansa.records.Prompt` in the mask's pixel coordinates.

    Raises:
        PromptError: the mask is empty, or ``kind`` is unknown.
    """
    kind = _prompt_type(kind)
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise PromptError(f"mask: expected shape [H, W], got {mask.shape}")
    if not mask.any():
        raise PromptError(f"mask: is empty, so no {kind.value} prompt can be generated from it")
    if kind is PromptType.MASK:
        return Prompt.create(mask=mask.copy())
    if kind is PromptType.POINT:
        return Prompt.create(points=sample_points(mask, rng, num_points))
    if kind is PromptType.BOX:
        return Prompt.create(box=largest_box(mask))
    if ScribbleStyle(scribble) is ScribbleStyle.AUTHORS:
        return Prompt(scribble=authors_scribble(mask, int(rng.integers(2**31))))
    return Prompt.create(scribble=sample_scribble(mask, rng, num_strokes))


@dataclass(frozen=True)
class EmptyMaskPrompt(Prompt):
    """A mask prompt that may be empty (the authors prompt an empty support with its empty mask)."""

    def check_fits(self, height: int, width: int) -> None:
        if self.mask is None or self.mask.shape != (height, width):
            super().check_fits(height, width)


def empty_prompt(kind: PromptType | str, height: int, width: int) -> Prompt:
    """The authors' prompt for an empty support mask (``util/promptable_utils.py``).

    ``mask``: the empty mask itself; ``point`` and ``scribble``: one positive click at
    ``(0, 0)``; ``box``: the zero box ``[0, 0, 0, 0]``.
    """
    kind = _prompt_type(kind)
    if kind is PromptType.MASK:
        return EmptyMaskPrompt(mask=np.zeros((height, width), dtype=bool))
    if kind is PromptType.BOX:
        return Prompt(box=np.zeros(4, dtype=np.float32))
    origin = np.zeros((1, 2), dtype=np.float32)
    if kind is PromptType.POINT:
        return Prompt(points=origin, labels=np.ones(1, dtype=np.int32))
    return Prompt(scribble=origin)


def _prompt_type(kind: PromptType | str) -> PromptType:
    try:
        parsed = PromptType(kind)
    except ValueError:
        parsed = None
    if parsed not in PromptType.kinds():
        choices = ", ".join(PromptType.kinds())
        raise PromptError(f"prompt kind: expected one of {choices}")
    return parsed


def sample_points(mask: np.ndarray, rng: np.random.Generator, num_points: int | None = None) -> np.ndarray:
    """``float32 [P, 2]`` distinct random foreground pixels ``(x, y)``, ``P = min(num_points, area)``."""
    ys, xs = np.nonzero(mask)
    count = min(MAX_POINTS if num_points is None else int(num_points), len(xs))
    if count < 1:
        raise PromptError(f"num_points: must be at least 1, got {num_points}")
    pick = rng.choice(len(xs), size=count, replace=False)
    return np.stack([xs[pick], ys[pick]], axis=1).astype(np.float32)


def component_boxes(mask: np.ndarray) -> list[list[int]]:
    """Tight boxes ``[x0, y0, x1, y1]`` (exclusive ends) of the mask's connected components."""
    labelled, _ = ndimage.label(mask)
    return [[s[1].start, s[0].start, s[1].stop, s[0].stop] for s in ndimage.find_objects(labelled)]


def largest_box(mask: np.ndarray) -> np.ndarray:
    """``float32 [4]``: the largest box after one merging pass over the component boxes.

    As the authors' ``get_bounding_boxes`` (``util/promptable_utils.py``): components in label
    order (raster order of their first pixel); each box is merged into the first already-kept
    box it overlaps, else kept; kept boxes are not re-checked against each other. The largest
    kept box (first on ties) wins. An empty mask gives ``[0, 0, 0, 0]``.
    """
    kept: list[list[int]] = []
    for box in component_boxes(mask):
        for i, other in enumerate(kept):
            if _overlap(box, other):
                kept[i] = [min(box[0], other[0]), min(box[1], other[1]), max(box[2], other[2]), max(box[3], other[3])]
                break
        else:
            kept.append(box)
    if not kept:
        return np.zeros(4, dtype=np.float32)
    best = max(kept, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))
    return np.asarray(best, dtype=np.float32)


def _overlap(a: list[int], b: list[int]) -> bool:
    return not (a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1])


def sample_scribble(mask: np.ndarray, rng: np.random.Generator, num_strokes: int | None = None) -> list[np.ndarray]:
    """Random free-form strokes clipped to the mask.

    Returns:
        One ``float32 [P_i, 2]`` array of ``(x, y)`` points per stroke, in drawing order; every
        point lies on the mask (the first point of each stroke is a foreground pixel).
    """
    area = int(mask.sum())
    if num_strokes is None:
        num_strokes = int(rng.integers(1, min(MAX_STROKES, area) + 1))
    starts = sample_points(mask, rng, max(1, min(num_strokes, area)))
    preset = _STROKE_PRESETS[int(rng.integers(len(_STROKE_PRESETS)))]
    strokes = []
    for start in starts:
        path = _densify(_random_walk(start, rng, **preset))
        strokes.append(_clip_to_mask(path, mask))
    return [s for s in strokes if len(s)]


def _random_walk(
    start: np.ndarray,
    rng: np.random.Generator,
    vertices: tuple[int, int],
    max_speed: float,
    accel: tuple[float, float],
    init_speed: float,
) -> np.ndarray:
    """Control points ``float [V, 2]`` of a stroke: a walk whose speed and heading drift randomly."""
    count = int(rng.integers(*vertices))
    angle = rng.uniform(0, 2 * np.pi)
    speed = rng.uniform(0, init_speed)
    points = [np.asarray(start, dtype=np.float64)]
    for _ in range(count):
        speed = float(np.clip(speed + rng.uniform(-accel[0], accel[0]), 0, max_speed))
        angle += rng.uniform(-accel[1], accel[1])
        points.append(points[-1] + speed * np.array([np.cos(angle), np.sin(angle)]))
    return np.stack(points)


def _densify(control: np.ndarray) -> np.ndarray:
    """Points every ~1 pixel along the polyline through ``control`` ``[V, 2]``."""
    pieces = [control[:1]]
    for a, b in zip(control[:-1], control[1:], strict=True):
        steps = max(1, int(np.ceil(np.abs(b - a).max())))
        t = np.arange(1, steps + 1)[:, None] / steps
        pieces.append(a + t * (b - a))
    return np.concatenate(pieces)


def _clip_to_mask(path: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The rounded path pixels that lie on the mask, without consecutive repeats, as ``float32 [P, 2]``."""
    xy = np.rint(path).astype(np.int64)
    height, width = mask.shape
    inside = (xy[:, 0] >= 0) & (xy[:, 0] < width) & (xy[:, 1] >= 0) & (xy[:, 1] < height)
    xy = xy[inside]
    xy = xy[mask[xy[:, 1], xy[:, 0]]]
    if len(xy) > 1:
        keep = np.ones(len(xy), dtype=bool)
        keep[1:] = (np.diff(xy, axis=0) != 0).any(axis=1)
        xy = xy[keep]
    return xy.astype(np.float32)
