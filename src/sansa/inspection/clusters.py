"""How well each class's objects cluster in feature space, and which targets sit nearer another class.

Objects are compared by cosine similarity of their pooled features (memory attention compares
features by dot products; the cosine ignores their overall scale). Every class has a prototype:
the mean of its references' normalised features (of all its objects when it has no reference).

- A target's *margin* is its similarity to its own class's prototype minus its similarity to the
  nearest other class's prototype. Below 0 it sits nearer another class's references than its
  own: review those first.
- A class's *silhouette* is the mean silhouette of its objects (cosine distance, as
  ``sklearn.metrics.silhouette_score``): near 1 tight and apart, near 0 on a border, below 0 mixed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class TargetMargin:
    """One predicted object's place between its class and the nearest other.

    Attributes:
        index: its row among the objects.
        image: its image's name.
        label: the class it was predicted as.
        nearest: the other class whose prototype is most similar (``None`` with one class).
        margin: ``similarity(own prototype) - similarity(nearest's prototype)``; ``None`` with one class.
    """

    index: int
    image: str
    label: str
    nearest: str | None
    margin: float | None


@dataclass(frozen=True)
class ClassSummary:
    """One class's objects in feature space.

    Attributes:
        label: the class.
        references: its reference objects.
        targets: its predicted objects.
        silhouette: mean silhouette of its objects (``None`` unless there are 2+ classes).
        nearest: the other class whose prototype is most similar to its own.
        confused: its targets with a negative margin, lowest first.
    """

    label: str
    references: int
    targets: int
    silhouette: float | None
    nearest: str | None
    confused: list[TargetMargin] = field(default_factory=list)


def normalised(features: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    rows = np.asarray(features, dtype=np.float64)
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)


def prototypes(unit: np.ndarray, labels: Sequence[str], is_reference: Sequence[bool]) -> dict[str, np.ndarray]:
    """Each class's unit prototype: its references' mean (all its objects' when it has none)."""
    labels_arr, refs = np.asarray(labels, dtype=object), np.asarray(is_reference, dtype=bool)
    out = {}
    for label in dict.fromkeys(labels):
        members = labels_arr == label
        chosen = members & refs if (members & refs).any() else members
        out[label] = normalised(unit[chosen].mean(axis=0, keepdims=True))[0]
    return out


def silhouettes(unit: np.ndarray, labels: Sequence[str]) -> np.ndarray:
    """``float64 [N]`` silhouette of every row (cosine distance; 0 for a class of one, as sklearn)."""
    classes = list(dict.fromkeys(labels))
    member = np.asarray([[label == c for c in classes] for label in labels], dtype=np.float64)  # [N, K]
    own = member.argmax(axis=1)
    distance = np.clip(1.0 - unit @ unit.T, 0.0, 2.0)
    sums, sizes = distance @ member, member.sum(axis=0)  # [N, K], [K]
    rows = np.arange(len(unit))
    own_size = sizes[own]
    a = sums[rows, own] / np.maximum(own_size - 1, 1)
    others = sums / sizes
    others[rows, own] = np.inf
    b = others.min(axis=1)
    scores = (b - a) / np.maximum(np.maximum(a, b), 1e-12)
    return np.where(own_size > 1, scores, 0.0)


def target_margins(
    unit: np.ndarray, labels: Sequence[str], is_reference: Sequence[bool], images: Sequence[str]
) -> list[TargetMargin]:
    """The margin of every target object (see the module), in row order."""
    protos = prototypes(unit, labels, is_reference)
    out = []
    for i, (label, ref) in enumerate(zip(labels, is_reference, strict=True)):
        if ref:
            continue
        others = {other: float(unit[i] @ p) for other, p in protos.items() if other != label}
        if not others:
            out.append(TargetMargin(i, images[i], label, None, None))
            continue
        nearest = max(others, key=lambda name: others[name])
        out.append(TargetMargin(i, images[i], label, nearest, float(unit[i] @ protos[label]) - others[nearest]))
    return out


def summarize(
    features: np.ndarray, labels: Sequence[str], is_reference: Sequence[bool], images: Sequence[str]
) -> tuple[list[ClassSummary], list[TargetMargin]]:
    """Per-class summaries and every target's margin.

    Args:
        features: ``[N, C]`` one pooled feature per object.
        labels: each object's class.
        is_reference: whether each object is a reference.
        images: each object's image name.
    """
    unit = normalised(features)
    classes = list(dict.fromkeys(labels))
    labels_arr, refs = np.asarray(labels, dtype=object), np.asarray(is_reference, dtype=bool)
    scores = silhouettes(unit, labels) if len(classes) > 1 else None
    protos = prototypes(unit, labels, is_reference)
    margins = target_margins(unit, labels, is_reference, images)
    summaries = []
    for label in classes:
        members = labels_arr == label
        others = {other: float(protos[label] @ p) for other, p in protos.items() if other != label}
        confused = sorted(
            (m for m in margins if m.label == label and m.margin is not None and m.margin < 0),
            key=lambda m: m.margin if m.margin is not None else 0.0,
        )
        summaries.append(
            ClassSummary(
                label=label,
                references=int((members & refs).sum()),
                targets=int((members & ~refs).sum()),
                silhouette=None if scores is None else float(scores[members].mean()),
                nearest=max(others, key=lambda name: others[name]) if others else None,
                confused=confused,
            )
        )
    return summaries, margins
