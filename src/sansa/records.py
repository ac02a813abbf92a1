"""Typed records that flow between the parts: prompts, references and predictions.

Coordinate convention everywhere: pixels of the image the prompt belongs to, ``x`` = column,
``y`` = row, no half-pixel offset (SAM2's prompt encoder adds 0.5 itself). Boxes are
``[x0, y0, x1, y1]``; masks are ``bool [H, W]``.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sansa.atomic import encode_image, write_bytes
from sansa.errors import PromptError, SansaError
from sansa.vocab import PromptType as PromptType  # re-exported: the records' prompts are of these types

DEFAULT_LABEL = "object"
# A scribble longer than this is thinned evenly along its length: the reference code's scribbles
# of thousands of point tokens slow the decoder without telling it more.
MAX_SCRIBBLE_POINTS = 64
# Caps on what one prompt may hold, checked in Prompt.create so the library, the CLI and the web app
# all refuse the same in one line: each click is a token the decoder attends to (20000 clicks held
# the web app's model lock for 36 s), and a scribble is read in full before it is thinned.
MAX_POINTS = 256
MAX_SCRIBBLE_INPUT = 65_536
MIN_AREA_FRACTION = 1e-4  # ObjectOptions' default min_area: 0.01% of the target's pixels ...
MIN_AREA_FLOOR = 16  # ... and at least this many pixels


def _as_xy(value: Any, name: str, limit: int) -> np.ndarray:
    """Points as ``float32 [P, 2]``, at most ``limit``; a list of ``[P_i, 2]`` arrays is concatenated."""
    if hasattr(value, "__len__") and len(value) > limit:  # refuse before converting a huge list
        raise PromptError(f"{name}: {len(value)} given, at most {limit} per reference")
    if isinstance(value, (list, tuple)) and value and isinstance(value[0], np.ndarray) and value[0].ndim == 2:
        value = np.concatenate(value, axis=0)
    try:
        array = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError):
        array = None
    if array is not None and array.ndim == 3:  # several strokes of equal length
        array = array.reshape(-1, array.shape[-1])
    if array is None or array.ndim != 2 or array.shape[1] != 2 or len(array) == 0:
        raise PromptError(f"{name}: expected a non-empty list of [x, y] pairs")
    if len(array) > limit:
        raise PromptError(f"{name}: {len(array)} given, at most {limit} per reference")
    if not np.isfinite(array).all():
        raise PromptError(f"{name}: coordinates must be finite numbers")
    return array


def _as_strokes(value: Any, limit: int) -> tuple[np.ndarray, ...]:
    """A scribble as its strokes, each ``float32 [n, 2]``, at most ``limit`` points in all: one stroke
    (``[[x, y], ...]``, an ``[n, 2]`` array) or several (a list of those, a ``[k, n, 2]`` array)."""
    if hasattr(value, "__len__") and len(value) > limit:  # refuse before converting a huge list
        raise PromptError(f"scribble: {len(value)} given, at most {limit} per reference")
    strokes = tuple(_as_xy(stroke, "scribble", limit) for stroke in (value if _several_strokes(value) else [value]))
    total = sum(len(stroke) for stroke in strokes)
    if total > limit:
        raise PromptError(f"scribble: {total} given, at most {limit} per reference")
    return strokes


def _several_strokes(value: Any) -> bool:
    """Whether ``value`` is a list of strokes rather than one stroke's points."""
    if hasattr(value, "ndim"):  # an array or tensor: [k, n, 2]
        return bool(value.ndim == 3)
    if not isinstance(value, (list, tuple)) or not value:
        return False
    first = value[0]
    if hasattr(first, "ndim"):
        return bool(first.ndim == 2)
    return isinstance(first, (list, tuple)) and len(first) > 0 and isinstance(first[0], (list, tuple, np.ndarray))


def _thin(points: np.ndarray, limit: int) -> np.ndarray:
    if len(points) <= limit:
        return points
    keep = np.round(np.linspace(0, len(points) - 1, limit)).astype(int)
    return points.take(keep, axis=0)


@dataclass(frozen=True)
class Prompt:
    """What the user marked on one reference image.

    Attributes:
        points: ``float32 [P, 2]`` clicks ``(x, y)``, with ``labels`` ``int32 [P]``
            (1 = object, 0 = not the object).
        box: ``float32 [4]`` ``x0, y0, x1, y1``.
        scribble: ``float32 [S, 2]`` points along one or more strokes, all positive: the strokes
            joined and thinned to at most :data:`MAX_SCRIBBLE_POINTS` (what the decoder reads).
        mask: ``bool [H, W]``, the object's pixels; cannot be combined with the others.
        strokes: the scribble as drawn, one ``float32 [n, 2]`` array per stroke, not thinned (to
            draw it); a prompt made with ``scribble`` alone has that as its one stroke.
    """

    points: np.ndarray | None = None
    labels: np.ndarray | None = None
    box: np.ndarray | None = None
    scribble: np.ndarray | None = None
    mask: np.ndarray | None = None
    strokes: tuple[np.ndarray, ...] = ()

    def __post_init__(self) -> None:
        if self.scribble is not None and not self.strokes:
            object.__setattr__(self, "strokes", (self.scribble,))

    @classmethod
    def create(
        cls,
        points: Any = None,
        labels: Any = None,
        box: Any = None,
        scribble: Any = None,
        mask: Any = None,
    ) -> Prompt:
        """Normalise user values (lists, tuples, arrays, tensors) into a validated prompt."""
        if mask is not None:
            if points is not None or box is not None or scribble is not None:
                raise PromptError("mask: a mask prompt cannot be combined with points, box or scribble")
            from sansa.images import load_mask

            return cls(mask=load_mask(mask))
        if points is None and box is None and scribble is None:
            raise PromptError("prompt: give a mask, points, a box or a scribble")
        point_array = label_array = box_array = scribble_array = None
        strokes: tuple[np.ndarray, ...] = ()
        if points is not None:
            point_array = _as_xy(points, "points", MAX_POINTS)
            label_array = _labels(labels, len(point_array))
        elif labels is not None:
            raise PromptError("labels: given without points")
        if box is not None:
            box_array = np.asarray(box, dtype=np.float32).reshape(-1)
            if box_array.shape != (4,) or not np.isfinite(box_array).all():
                raise PromptError("box: expected four numbers [x0, y0, x1, y1]")
            if box_array[2] <= box_array[0] or box_array[3] <= box_array[1]:
                raise PromptError(f"box: {box_array.tolist()} is empty (need x1 > x0 and y1 > y0)")
        if scribble is not None:
            strokes = _as_strokes(scribble, MAX_SCRIBBLE_INPUT)
            scribble_array = _thin(np.concatenate(strokes), MAX_SCRIBBLE_POINTS)
        return cls(points=point_array, labels=label_array, box=box_array, scribble=scribble_array, strokes=strokes)

    @property
    def type(self) -> PromptType:
        """The kind of prompt; ``MIXED`` when several kinds are combined."""
        kinds = [
            kind
            for kind, value in (
                (PromptType.MASK, self.mask),
                (PromptType.POINT, self.points),
                (PromptType.BOX, self.box),
                (PromptType.SCRIBBLE, self.scribble),
            )
            if value is not None
        ]
        return kinds[0] if len(kinds) == 1 else PromptType.MIXED

    def check_fits(self, height: int, width: int) -> None:
        """Raise :class:`PromptError` unless the prompt lies within an ``height x width`` image."""
        if self.mask is not None:
            if self.mask.shape != (height, width):
                raise PromptError(
                    f"mask: size {self.mask.shape[1]}x{self.mask.shape[0]} does not match the image ({width}x{height})"
                )
            if not self.mask.any():
                raise PromptError("mask: is empty (no foreground pixel); mark at least one pixel")
            return
        for name, xy in (("points", self.points), ("scribble", self.scribble)):
            if xy is not None:
                _check_inside(xy, width, height, name)
        if self.box is not None:
            _check_inside(self.box.reshape(2, 2), width, height, "box")


def _labels(labels: Any, count: int) -> np.ndarray:
    if labels is None:
        return np.ones(count, dtype=np.int32)
    array = np.asarray(labels).reshape(-1)
    if array.shape != (count,):
        raise PromptError(f"labels: {array.size} labels for {count} points")
    if not np.isin(array, (0, 1)).all():
        raise PromptError("labels: each label must be 1 (object) or 0 (not the object)")
    return array.astype(np.int32)


def _check_inside(xy: np.ndarray, width: int, height: int, name: str) -> None:
    outside = (xy[:, 0] < 0) | (xy[:, 0] > width) | (xy[:, 1] < 0) | (xy[:, 1] > height)
    if outside.any():
        x, y = xy[np.argmax(outside)].tolist()
        raise PromptError(f"{name}: ({x:g}, {y:g}) lies outside the {width}x{height} image")


@dataclass(eq=False)
class Reference:
    """A reference image encoded into SANSA's memory.

    Attributes:
        label: the class this reference is an example of.
        prompt: what the user marked.
        logits: ``float32 [H, W]`` the reference mask SANSA decoded (for a mask prompt, the
            user's mask as the ``+10/-10`` logits written to memory).
        mask: ``bool [H, W]`` the reference mask: decoded for point/box/scribble prompts, the
            user's own for mask prompts.
        score: the decoder's IoU estimate for a decoded mask, ``None`` for a mask prompt.
        memory: the model's memory entry (tensors), reused for every target.
    """

    label: str
    prompt: Prompt
    logits: np.ndarray
    mask: np.ndarray
    score: float | None
    memory: Any = field(repr=False)
    name: str = ""

    @property
    def size(self) -> tuple[int, int]:
        """``(H, W)`` of the reference image."""
        return self.mask.shape[0], self.mask.shape[1]

    def __repr__(self) -> str:
        score = "None" if self.score is None else f"{self.score:.3f}"
        return (
            f"Reference(label={self.label!r}, name={self.name!r}, prompt={self.prompt.type.value}, "
            f"size={_size(self.mask)}, coverage={_coverage(self.mask)}, score={score})"
        )


@dataclass(eq=False)
class Prediction:
    """SANSA's segmentation of one class in one target image.

    Attributes:
        logits: ``float32 [H, W]`` mask logits at the target's own size, or ``None`` where they
            were not kept (``keep_logits=False``, the default of ``segment*``: 4 bytes a pixel).
        score: the decoder's IoU estimate for the chosen mask (0..1).
        label: the class.
        mask: ``bool [H, W]``, foreground where ``sigmoid(logits) > 0.5`` (the class on its own,
            before overlaps with other classes are resolved); computed from ``logits`` when not given.
    """

    logits: np.ndarray | None
    score: float
    label: str = DEFAULT_LABEL
    mask: np.ndarray = field(default=None, repr=False)  # type: ignore[arg-type]

    def __post_init__(self) -> None:
        if self.mask is None:
            if self.logits is None:
                raise ValueError("Prediction: give logits or mask")
            self.mask = self.logits > 0

    def __repr__(self) -> str:
        return (
            f"Prediction(label={self.label!r}, size={_size(self.mask)}, coverage={_coverage(self.mask)}, "
            f"score={self.score:.3f})"
        )


@dataclass(eq=False)
class SegmentedObject:
    """One object of a class found in a target: its own mask, box and score.

    Attributes:
        label: its class.
        mask: ``bool [H, W]`` at the target's size. Lies inside its class's pixels of
            :attr:`Segmentation.label_map`, and no two objects of one target share a pixel.
        box: ``float32 [4]`` ``x0, y0, x1, y1`` around ``mask`` in pixel edges (a mask whose
            columns run 3..5 has ``x0 = 3, x1 = 6``), as COCO's ``bbox`` ``[x0, y0, x1 - x0, y1 - y0]``.
        score: the decoder's IoU estimate for the object's mask (0..1).
    """

    label: str
    mask: np.ndarray = field(repr=False)
    box: np.ndarray
    score: float

    @property
    def area(self) -> int:
        """Pixels of the object."""
        return int(np.count_nonzero(self.mask))

    def __repr__(self) -> str:
        box = ", ".join(f"{v:g}" for v in np.asarray(self.box).tolist())
        return f"SegmentedObject(label={self.label!r}, box=[{box}], area={self.area}, score={self.score:.3f})"


@dataclass(frozen=True)
class ObjectOptions:
    """How each class's mask is split into objects. The defaults suit ordinary photos.

    Attributes:
        min_area: the smallest object, in pixels of the target; ``None``: 0.01% of the target's
            pixels, at least 16. Smaller pieces join the object they touch, or are dropped.
        max_objects: the most objects per class (the largest are kept; smaller ones are dropped).
        points_per_class: the point density: at most this many decoder prompts per class
            (distance-transform peaks of its mask, widest first). 0 decodes nothing: objects are
            then the class's connected regions.
        overlap: mask IoU above which the lower-scored of two candidates of a class is a duplicate.
        min_inside: the share of a candidate's pixels that must lie in its class's mask.
        pred_iou: the decoder's IoU estimate a candidate needs (SAM's ``pred_iou_thresh``).
        stability: the stability score a candidate needs (SAM's ``stability_score_thresh``).
    """

    min_area: int | None = None
    max_objects: int = 100
    points_per_class: int = 4
    overlap: float = 0.7
    min_inside: float = 0.8
    pred_iou: float = 0.8
    stability: float = 0.95

    def __post_init__(self) -> None:
        for name in ("max_objects", "points_per_class") + (("min_area",) if self.min_area is not None else ()):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise SansaError(f"{name}: must be a whole number >= 0, got {value!r}")
        for name in ("overlap", "min_inside", "pred_iou", "stability"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise SansaError(f"{name}: must be a number from 0 to 1, got {value!r}")

    @classmethod
    def create(cls, **given: Any) -> ObjectOptions:
        """From what a front end's user set (``None`` values are left to the defaults); an
        unknown name is a one-line :class:`SansaError`."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(given) - known)
        if unknown:
            raise SansaError(f"object options: unknown {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        return cls(**{k: v for k, v in given.items() if v is not None})

    def changed(self) -> dict[str, Any]:
        """The options that differ from the defaults (for records of what a run was made with)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v != getattr(ObjectOptions(), k)}

    def area_floor(self, height: int, width: int) -> int:
        """``min_area`` for an ``height x width`` target."""
        if self.min_area is not None:
            return int(self.min_area)
        return max(MIN_AREA_FLOOR, round(MIN_AREA_FRACTION * height * width))


@dataclass(eq=False)
class Segmentation:
    """Every class SANSA knows, segmented in one target image.

    Attributes:
        predictions: one :class:`Prediction` per class, in ``labels`` order. Each is the class
            on its own (masks of different classes may overlap).
        labels: the classes, in the order of their first reference.
        label_map: ``uint16 [H, W]``: 0 = background, ``i + 1`` = ``labels[i]``. Where several
            classes claim a pixel, the one with the highest logit wins.
        name: the target's name (its path, when it was read from a file).
        objects: the objects found, class by class in ``labels`` order (see
            :class:`SegmentedObject`); a class's pixels are exactly the union of its objects.
    """

    predictions: dict[str, Prediction]
    labels: list[str]
    label_map: np.ndarray
    name: str = ""
    objects: list[SegmentedObject] = field(default_factory=list)

    @property
    def size(self) -> tuple[int, int]:
        """``(H, W)`` of the target."""
        return self.label_map.shape[0], self.label_map.shape[1]

    def mask(self, label: str) -> np.ndarray:
        """``bool [H, W]``: the pixels the label map gives to ``label`` (overlaps resolved)."""
        mask: np.ndarray = self.label_map == self.labels.index(label) + 1
        return mask

    def __repr__(self) -> str:
        classes = ", ".join(
            f"{label!r}: {_coverage(self.label_map == i)} score {self.predictions[label].score:.3f}"
            if label in self.predictions
            else f"{label!r}: {_coverage(self.label_map == i)}"
            for i, label in enumerate(self.labels, start=1)
        )
        return (
            f"Segmentation(name={self.name!r}, size={_size(self.label_map)}, classes={{{classes}}}, "
            f"objects={len(self.objects)})"
        )

    def to_supervision(self) -> Any:
        """The objects as a ``supervision.Detections`` (needs the ``supervision`` package).

        Returns:
            ``mask`` ``bool [N, H, W]``, ``xyxy`` ``float32 [N, 4]`` (pixel edges, as
            :attr:`SegmentedObject.box`), ``class_id`` (index into :attr:`labels`), ``confidence``
            (the objects' scores) and ``data["class_name"]``, in :attr:`objects` order. A
            segmentation made without objects gives no detections.
        """
        try:
            import supervision as sv
        except ImportError:
            raise SansaError("to_supervision: needs the supervision package (pip install supervision)") from None
        height, width = self.size
        objects = self.objects
        return sv.Detections(
            xyxy=np.asarray([o.box for o in objects], dtype=np.float32).reshape(-1, 4),
            mask=np.asarray([o.mask for o in objects], dtype=bool).reshape(-1, height, width),
            class_id=np.asarray([self.labels.index(o.label) for o in objects], dtype=int),
            confidence=np.asarray([o.score for o in objects], dtype=np.float32),
            data={"class_name": np.asarray([o.label for o in objects], dtype=str)},
        )

    def plot(self, image: Any = None, legend: bool = True) -> np.ndarray:
        """The target with each class tinted in its colour, each object outlined, and a legend (the
        ``overlay`` export's picture).

        Args:
            image: the target (path, PIL image or ``uint8 [H, W, 3]`` array); default: the file
                :attr:`name` names.

        Returns:
            RGB ``uint8 [H, W, 3]``.
        """
        from sansa.drawing import overlay
        from sansa.images import load_image

        if image is None:
            if not self.name or not os.path.isfile(self.name):
                raise SansaError(f"plot: give the image ({self.name or 'this segmentation'!r} is not a file)")
            image = self.name
        pixels = load_image(image, "image")
        if pixels.shape[:2] != self.size:
            raise SansaError(f"image: {_size(pixels)} does not match the segmentation ({_size(self.label_map)})")
        outlines = [(self.labels.index(o.label) + 1, o.mask) for o in self.objects] or None
        return overlay(pixels, self.label_map, self.labels, legend=legend, outlines=outlines)

    def save(self, path: Any, image: Any = None) -> None:
        """Write :meth:`plot`'s picture to ``path`` (JPEG for ``.jpg``/``.jpeg``, else PNG), atomically."""
        from PIL import Image

        path = Path(path)
        kind = "JPEG" if path.suffix.lower() in (".jpg", ".jpeg") else "PNG"
        write_bytes(path, encode_image(Image.fromarray(self.plot(image)), kind))

    @classmethod
    def from_predictions(cls, predictions: list[Prediction], name: str = "") -> Segmentation:
        """Resolve overlaps per pixel: the foreground class of highest logit wins (the predictions
        must hold their logits). No objects are found here (see ``SansaPredictor.segment``)."""
        if any(p.logits is None for p in predictions):
            raise ValueError("from_predictions: needs predictions with logits (keep_logits=True)")
        logits = np.stack([p.logits for p in predictions])  # type: ignore[misc]  # [C, H, W]
        labels = [p.label for p in predictions]
        return cls({p.label: p for p in predictions}, labels, resolve_label_map(logits), name)


def resolve_label_map(logits: Any) -> np.ndarray:
    """``uint16 [H, W]`` from class logits ``float32 [C, H, W]`` (numpy, or a torch tensor on any
    device): 0 where no class is foreground, else ``1 +`` the index of the class of highest logit
    (the first on a tie)."""
    winner, best = logits.argmax(0), logits.amax(0) if hasattr(logits, "amax") else logits.max(0)
    if hasattr(winner, "cpu"):  # torch
        winner, best = winner.cpu().numpy(), best.cpu().numpy()
    label_map: np.ndarray = (np.asarray(winner) + 1).astype(np.uint16)
    label_map[np.asarray(best) <= 0] = 0
    return label_map


@dataclass(frozen=True)
class FailedTarget:
    """A target that could not be segmented (``segment_many(..., on_error="skip")``).

    Attributes:
        name: the target's name (its path, or ``target <i>``).
        error: why, in one line.
    """

    name: str
    error: str


def _size(array: np.ndarray) -> str:
    """``"480x640"``: ``H x W`` of an image-shaped array."""
    return f"{array.shape[0]}x{array.shape[1]}"


def _coverage(mask: np.ndarray) -> str:
    """The share of ``True`` pixels, ``"12.3%"``."""
    return f"{100.0 * np.count_nonzero(mask) / max(mask.size, 1):.1f}%"
