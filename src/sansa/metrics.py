"""Few-shot segmentation metrics: :class:`IoUAccumulator` (``update`` per episode, then ``miou``,
``fb_iou``, ``class_iou``).

Protocol (HSNet's, used by every paper of the field): each episode contributes the
intersection and union of the binary query prediction with the ground truth, for the
foreground and for the background, to the sums of its class.

- class IoU ``= sum(I) / max(sum(U), 1)`` (foreground);
- **mIoU** = mean foreground class IoU over the fold's classes; a class never sampled counts 0;
- **FB-IoU** = mean over {background, foreground} of ``sum over classes of I / sum of U``.

Values are fractions in ``[0, 1]``; reports multiply by 100.

Pixels the benchmark ignores (PASCAL-5i's 255 boundaries, HSNet's ``common/evaluation.py``) count
in neither the intersection nor the union, for either class.

Counts are exact integers (``int64``) and the ratios float64: the authors' ``util/metrics.py``
sums in float32 and agrees with these to about 5e-8 (a difference far below the printed 0.1).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np


def intersection_union(
    prediction: np.ndarray, target: np.ndarray, ignore: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``(I, U)`` as ``int64 [2]`` each: index 0 background, 1 foreground.

    Args:
        prediction: ``bool [H, W]``.
        target: ``bool [H, W]`` ground truth at the same size.
        ignore: ``bool [H, W]`` pixels left out of both counts (``None``: none).
    """
    prediction = np.asarray(prediction, dtype=bool)
    target = np.asarray(target, dtype=bool)
    if prediction.shape != target.shape:
        raise ValueError(f"prediction {prediction.shape} and target {target.shape} differ in size")
    if ignore is not None:
        keep = ~np.asarray(ignore, dtype=bool)
        if keep.shape != target.shape:
            raise ValueError(f"ignore {keep.shape} and target {target.shape} differ in size")
        prediction, target = prediction[keep], target[keep]
    fg_i = np.count_nonzero(prediction & target)
    fg_u = np.count_nonzero(prediction | target)
    bg_i = np.count_nonzero(~prediction & ~target)
    bg_u = np.count_nonzero(~prediction | ~target)
    return np.array([bg_i, fg_i], dtype=np.int64), np.array([bg_u, fg_u], dtype=np.int64)


class IoUAccumulator:
    """Per-class sums of background/foreground intersections and unions.

    Args:
        class_ids: the fold's classes (those never updated count 0 in the mIoU).
    """

    def __init__(self, class_ids: Iterable[int]) -> None:
        self.class_ids: list[int] = list(dict.fromkeys(int(c) for c in class_ids))
        self._row = {c: i for i, c in enumerate(self.class_ids)}
        self.reset()

    def reset(self) -> None:
        """Forget every episode."""
        self.intersection: np.ndarray = np.zeros((len(self.class_ids), 2), dtype=np.int64)
        self.union: np.ndarray = np.zeros((len(self.class_ids), 2), dtype=np.int64)
        self.episodes: np.ndarray = np.zeros(len(self.class_ids), dtype=np.int64)

    def update(self, prediction: np.ndarray, target: np.ndarray, class_id: int) -> None:
        """Add one episode: ``bool [H, W]`` prediction and ground truth of class ``class_id``."""
        self.add(class_id, *intersection_union(prediction, target))

    def add(self, class_id: int, intersection: np.ndarray | Sequence[int], union: np.ndarray | Sequence[int]) -> None:
        """Add one episode's ``[background, foreground]`` intersection and union counts."""
        if class_id not in self._row:
            raise KeyError(f"class {class_id} is not one of this fold's classes")
        row = self._row[class_id]
        self.intersection[row] += np.asarray(intersection, dtype=np.int64)
        self.union[row] += np.asarray(union, dtype=np.int64)
        self.episodes[row] += 1

    def class_iou(self) -> dict[int, float]:
        """Foreground IoU of every class (0 for a class never sampled)."""
        iou = self.intersection[:, 1] / np.maximum(self.union[:, 1], 1)
        return {c: float(v) for c, v in zip(self.class_ids, iou, strict=True)}

    def miou(self) -> float:
        """Mean foreground IoU over the classes."""
        return float(np.mean(list(self.class_iou().values()))) if self.class_ids else 0.0

    def fb_iou(self) -> float:
        """Mean over background and foreground of (total intersection / total union)."""
        totals = self.intersection.sum(axis=0) / np.maximum(self.union.sum(axis=0), 1)
        return float(totals.mean())

    def background_iou(self) -> float:
        """Total background intersection / total background union."""
        return float(self.intersection[:, 0].sum() / max(int(self.union[:, 0].sum()), 1))
