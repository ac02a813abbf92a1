"""Principal components of image features, fitted jointly over many images.

Features are rows ``float [N, C]``; a :class:`Projection` maps them to ``[N, k]``. Per-image maps
are the first three components of every stride-16 feature cell as RGB, scaled by one range for all
images so that a colour means the same in each of them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_FIT_ROWS = 65_536  # rows the components are fitted on (drawn evenly at random beyond this)
RANGE_PERCENTILES = (1.0, 99.0)  # each component's colour range, robust to a few extreme cells


@dataclass(frozen=True)
class Projection:
    """The first ``k`` principal components of a set of features.

    Attributes:
        mean: ``float64 [C]`` subtracted first.
        components: ``float64 [k, C]`` unit rows, largest variance first; each one's sign is
            fixed so that its largest-magnitude entry is positive (so results repeat exactly).
        explained: ``float64 [k]`` share of the total variance each component carries.
    """

    mean: np.ndarray
    components: np.ndarray
    explained: np.ndarray

    def __call__(self, features: np.ndarray) -> np.ndarray:
        """``[N, C]`` -> ``float32 [N, k]``."""
        return ((np.asarray(features, dtype=np.float64) - self.mean) @ self.components.T).astype(np.float32)


def fit_pca(features: np.ndarray, k: int = 3, seed: int = 0, max_rows: int = MAX_FIT_ROWS) -> Projection:
    """Fit ``k`` components to ``features`` ``[N, C]`` (an eigen-decomposition of the ``C x C`` covariance).

    Beyond ``max_rows`` rows, ``max_rows`` of them drawn with ``seed`` are used. With fewer than
    ``k`` directions of variance (e.g. two objects) the extra components carry no variance.
    """
    rows = np.asarray(features, dtype=np.float64)
    if rows.ndim != 2 or len(rows) == 0:
        raise ValueError(f"fit_pca: expected features [N, C] with N > 0, got shape {rows.shape}")
    if len(rows) > max_rows:
        rows = rows[np.sort(np.random.default_rng(seed).choice(len(rows), max_rows, replace=False))]
    mean = rows.mean(axis=0)
    centred = rows - mean
    values, vectors = np.linalg.eigh(centred.T @ centred)
    order = np.argsort(values)[::-1][:k]
    components = vectors[:, order].T
    signs = np.sign(components[np.arange(len(components)), np.abs(components).argmax(axis=1)])
    components = components * np.where(signs == 0, 1.0, signs)[:, None]
    total = max(float(values.clip(min=0).sum()), 1e-12)
    if len(components) < k:  # fewer channels than components
        components = np.vstack([components, np.zeros((k - len(components), rows.shape[1]))])
    explained = np.zeros(k)
    explained[: len(order)] = values[order].clip(min=0) / total
    return Projection(mean, components, explained)


def color_range(projected: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-component ``(low, high)`` ``[k]`` of projected rows ``[N, k]`` (robust percentiles)."""
    low, high = np.percentile(projected, RANGE_PERCENTILES, axis=0)
    return low, np.maximum(high, low + 1e-6)


def to_rgb(projected: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Projected values ``[..., 3]`` -> ``uint8 [..., 3]`` colours, ``low..high`` spread over 0..255."""
    scaled = (np.asarray(projected, dtype=np.float64) - low) / (high - low)
    return (scaled.clip(0.0, 1.0) * 255.0).round().astype(np.uint8)


def feature_maps(tops: np.ndarray, seed: int = 0) -> tuple[np.ndarray, Projection]:
    """The joint PCA picture of ``B`` images' stride-16 features.

    Args:
        tops: ``float [B, C, h, w]`` (:attr:`sansa.model.sansa.ImageFeatures.top` of each image).
        seed: draws the rows the components are fitted on, when there are many.

    Returns:
        ``uint8 [B, h, w, 3]``: components 1-3 of every cell as RGB, one colour scale for all
        images; and the :class:`Projection` (fitted on every cell of every image).
    """
    batch, channels, height, width = tops.shape
    rows = np.asarray(tops, dtype=np.float32).transpose(0, 2, 3, 1).reshape(-1, channels)
    projection = fit_pca(rows, 3, seed)
    projected = projection(rows)
    low, high = color_range(projected)
    return to_rgb(projected, low, high).reshape(batch, height, width, 3), projection
