"""Seeded episode lists, saved as JSON so that any two runs evaluate the same episodes.

The list depends only on the dataset's contents, the shot count, the episode count and the
seed: it is drawn up front from one ``numpy`` generator, never inside data-loader workers (the
reference code's lists changed with the number of workers).

File format (``sansa-episodes/1``)::

    {"format": "sansa-episodes/1", "dataset": "coco20i-fold0-test", "shots": 1, "seed": 0,
     "episodes": [{"class_id": 4, "query": "val2014/COCO_val2014_000000000139.jpg",
                   "supports": ["val2014/COCO_val2014_000000000285.jpg"]}, ...]}
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sansa.atomic import write_text
from sansa.data.episode import Episode, FewShotDataset, Sampling, image_of
from sansa.errors import SansaError

FORMAT = "sansa-episodes/1"


@dataclass(frozen=True)
class EpisodeList:
    """Episodes plus what they were drawn from (saved together)."""

    dataset: str
    shots: int
    seed: int
    episodes: tuple[Episode, ...]

    def to_json(self) -> dict:
        """The JSON document (see the module docstring)."""
        return {
            "format": FORMAT,
            "dataset": self.dataset,
            "shots": self.shots,
            "seed": self.seed,
            "episodes": [{"class_id": e.class_id, "query": e.query, "supports": list(e.supports)}
                         for e in self.episodes],
        }


def sample_episodes(dataset: FewShotDataset, shots: int, count: int | None = None, seed: int = 0) -> list[Episode]:
    """Draw ``count`` episodes of ``shots`` supports each, following the dataset's :class:`Sampling`.

    Args:
        dataset: the split/fold to draw from.
        shots: supports per episode; they are distinct images, none the query's image.
        count: number of episodes (default: the benchmark's, ``dataset.episodes``; for
            ``every_image`` sampling, one per query).
        seed: the only source of randomness.

    Raises:
        SansaError: ``shots`` < 1, or a class has too few images for ``shots`` supports.
    """
    if shots < 1:
        raise SansaError(f"shots: must be at least 1, got {shots}")
    rng = np.random.default_rng(seed)
    sampling = Sampling(getattr(dataset, "sampling", Sampling.RANDOM))
    count = getattr(dataset, "episodes", None) if count is None else count
    classes = dataset.class_ids()
    if not classes:
        raise SansaError(f"{dataset.name}: no class has more than {shots} images")
    queries = _queries(dataset, sampling, classes, count, rng)
    return [Episode(c, q, _supports(dataset, c, q, shots, rng)) for q, c in queries]


def _queries(
    dataset: FewShotDataset, sampling: Sampling, classes: list[int], count: int | None, rng: np.random.Generator
) -> list[tuple[str, int]]:
    """``(query key, class id)`` per episode."""
    if sampling in (Sampling.EVERY_IMAGE, Sampling.CYCLE_IMAGES):
        if hasattr(dataset, "queries"):
            pairs = dataset.queries()
        else:
            pairs = [(k, c) for c in classes for k in dataset.images_of(c)]
        if sampling is Sampling.EVERY_IMAGE and count is None:
            return pairs
        return [pairs[i % len(pairs)] for i in range(_count(count, dataset))]
    out = []
    for i in range(_count(count, dataset)):
        cycle = sampling is Sampling.CYCLE_CLASSES
        class_id = classes[i % len(classes)] if cycle else classes[rng.integers(len(classes))]
        out.append((_pick(dataset.images_of(class_id), rng, exclude=set()), class_id))
    return out


def _count(count: int | None, dataset: FewShotDataset) -> int:
    if count is None:
        raise SansaError(f"{dataset.name}: give the number of episodes")
    if count < 1:
        raise SansaError(f"episodes: must be at least 1, got {count}")
    return count


def _pick(keys: list[str], rng: np.random.Generator, exclude: set[str]) -> str:
    """A random key: an image uniformly (not in ``exclude``), then one of its objects uniformly."""
    groups: dict[str, list[str]] = {}
    for key in keys:
        groups.setdefault(image_of(key), []).append(key)
    images = [i for i in groups if i not in exclude]
    objects = groups[images[rng.integers(len(images))]]
    return objects[rng.integers(len(objects))]


def _supports(
    dataset: FewShotDataset, class_id: int, query: str, shots: int, rng: np.random.Generator
) -> tuple[str, ...]:
    keys = dataset.images_of(class_id)
    used = {image_of(query)}
    available = len({image_of(k) for k in keys} - used)
    if available < shots:
        name = dataset.class_name(class_id)
        raise SansaError(f"{dataset.name}: class {name!r} has {available} support images besides the query, "
                         f"{shots} needed")
    supports = []
    for _ in range(shots):
        key = _pick(keys, rng, exclude=used)
        used.add(image_of(key))
        supports.append(key)
    return tuple(supports)


def save_episodes(episodes: EpisodeList, path: str | os.PathLike) -> Path:
    """Write an episode list as JSON, atomically (temp file in the same folder, then rename)."""
    path = Path(path)
    write_text(path, json.dumps(episodes.to_json(), indent=1) + "\n")
    return path


def load_episodes(path: str | os.PathLike) -> EpisodeList:
    """Read an episode list written by :func:`save_episodes` (or by another implementation)."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise SansaError(f"{path}: no such file") from None
    except (OSError, ValueError) as err:
        raise SansaError(f"{path}: not a readable episode list ({err})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise SansaError(f"{path}: not an episode list (expected \"format\": \"{FORMAT}\")")
    try:
        episodes = tuple(Episode(int(e["class_id"]), str(e["query"]), tuple(map(str, e["supports"])))
                         for e in doc["episodes"])
        return EpisodeList(str(doc["dataset"]), int(doc["shots"]), int(doc["seed"]), episodes)
    except (KeyError, TypeError, ValueError) as err:
        raise SansaError(f"{path}: malformed episode list ({err.__class__.__name__}: {err})") from None


def episode_list(dataset: FewShotDataset, shots: int, count: int | None = None, seed: int = 0) -> EpisodeList:
    """:func:`sample_episodes` wrapped with its provenance, ready to save."""
    return EpisodeList(dataset.name, shots, seed, tuple(sample_episodes(dataset, shots, count, seed)))


def check_episodes(episodes: Sequence[Episode], shots: int, source: str) -> None:
    """Raise :class:`SansaError` unless every episode has ``shots`` supports."""
    for i, episode in enumerate(episodes):
        if len(episode.supports) != shots:
            raise SansaError(f"{source}: episode {i} has {len(episode.supports)} supports, {shots} expected")
