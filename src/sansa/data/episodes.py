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
from typing import Any

import numpy as np

from sansa.atomic import write_text
from sansa.data.episode import Episode, FewShotDataset, Sampling, image_of
from sansa.errors import SansaError

FORMAT = "sansa-episodes/1"
_MAX_REDRAWS = 1000  # an episode drawn again this often in a row (unusable keys) is an error


@dataclass(frozen=True)
class EpisodeList:
    """Episodes plus what they were drawn from (saved together)."""

    dataset: str
    shots: int
    seed: int
    episodes: tuple[Episode, ...]

    def to_json(self) -> dict[str, Any]:
        """The JSON document (see the module docstring)."""
        return {
            "format": FORMAT,
            "dataset": self.dataset,
            "shots": self.shots,
            "seed": self.seed,
            "episodes": [
                {"class_id": e.class_id, "query": e.query, "supports": list(e.supports)} for e in self.episodes
            ],
        }


def sample_episodes(dataset: FewShotDataset, shots: int, count: int | None = None, seed: int = 0) -> list[Episode]:
    """Draw ``count`` episodes of ``shots`` supports each, following the dataset's :class:`Sampling`.

    The authors' rules (``datasets/*.py`` of ClaudiaCuttano/SANSA; HSNet for PASCAL-5i):

    - a key is drawn with the dataset's :func:`key_weights` (default: an image uniformly, then
      one of its objects uniformly);
    - supports are drawn **with replacement** among the class's keys whose image is not the
      query's: the same support can appear twice in an episode. Datasets with
      ``distinct_supports = True`` (Pascal-Part) also exclude images already drawn;
    - an episode with a key the dataset rejects (``dataset.usable(key)`` false, e.g. a PACO
      object box that crops to nothing) is drawn again whole, as the authors' retry loop does.

    Args:
        dataset: the split/fold to draw from.
        shots: supports per episode.
        count: number of episodes (default: the benchmark's, ``dataset.episodes``; for
            ``every_image`` sampling, one per query).
        seed: the only source of randomness.

    Raises:
        SansaError: ``shots`` < 1, or a class has no image besides the query (the authors' loop
            would never end), or too few distinct images for distinct supports.
    """
    if shots < 1:
        raise SansaError(f"shots: must be at least 1, got {shots}")
    rng = np.random.default_rng(seed)
    sampling = Sampling(getattr(dataset, "sampling", Sampling.RANDOM))
    count = getattr(dataset, "episodes", None) if count is None else count
    classes = dataset.class_ids()
    if not classes:
        raise SansaError(f"{dataset.name}: no class has enough images for {shots}-shot episodes")
    pools = _Pools(dataset)
    if sampling in (Sampling.EVERY_IMAGE, Sampling.CYCLE_IMAGES):
        pairs = (
            dataset.queries()
            if hasattr(dataset, "queries")
            else [(k, c) for c in classes for k in dataset.images_of(c)]
        )
        if not (sampling is Sampling.EVERY_IMAGE and count is None):
            pairs = [pairs[i % len(pairs)] for i in range(_count(count, dataset))]
        return [Episode(c, q, _supports(pools, c, q, shots, rng)) for q, c in pairs]
    episodes = []
    for i in range(_count(count, dataset)):
        for _ in range(_MAX_REDRAWS):
            class_id = (
                classes[i % len(classes)] if sampling is Sampling.CYCLE_CLASSES else classes[rng.integers(len(classes))]
            )
            query = _pick(pools, class_id, rng, exclude=set())
            episode = Episode(class_id, query, _supports(pools, class_id, query, shots, rng))
            if _usable(dataset, episode):
                break
        else:
            raise SansaError(f"{dataset.name}: {_MAX_REDRAWS} draws of episode {i} in a row had an unusable image")
        episodes.append(episode)
    return episodes


def _usable(dataset: FewShotDataset, episode: Episode) -> bool:
    usable = getattr(dataset, "usable", None)
    return usable is None or all(usable(k) for k in (episode.query, *episode.supports))


def _count(count: int | None, dataset: FewShotDataset) -> int:
    if count is None:
        raise SansaError(f"{dataset.name}: give the number of episodes")
    if count < 1:
        raise SansaError(f"episodes: must be at least 1, got {count}")
    return count


def key_weights(dataset: FewShotDataset, class_id: int) -> np.ndarray:
    """``float64 [N]``: relative chance of each of ``dataset.images_of(class_id)`` being drawn.

    The dataset's own ``key_weights(class_id)`` if it has one, else an image uniformly and then
    one of its objects uniformly (keys ``image#object``; plain image keys are uniform).
    """
    own = getattr(dataset, "key_weights", None)
    if own is not None:
        return np.asarray(own(class_id), dtype=np.float64)
    images = [image_of(k) for k in dataset.images_of(class_id)]
    objects: dict[str, int] = {}
    for image in images:
        objects[image] = objects.get(image, 0) + 1
    return np.array([1.0 / objects[image] for image in images])


class _Pools:
    """Per class: its keys, their images and their :func:`key_weights` (computed once)."""

    def __init__(self, dataset: FewShotDataset) -> None:
        self.dataset = dataset
        self._pools: dict[int, tuple[list[str], np.ndarray, np.ndarray]] = {}

    def __call__(self, class_id: int) -> tuple[list[str], np.ndarray, np.ndarray]:
        if class_id not in self._pools:
            keys = list(self.dataset.images_of(class_id))
            images = np.array([image_of(k) for k in keys], dtype=object)
            self._pools[class_id] = (keys, images, key_weights(self.dataset, class_id))
        return self._pools[class_id]


def _pick(pools: _Pools, class_id: int, rng: np.random.Generator, exclude: set[str]) -> str:
    """A key drawn with :func:`key_weights`, among those whose image is not in ``exclude``."""
    keys, images, weights = pools(class_id)
    if exclude:
        weights = weights * ~np.isin(images, list(exclude))
    total = weights.sum()
    if total <= 0:
        dataset = pools.dataset
        raise SansaError(
            f"{dataset.name}: class {dataset.class_name(class_id)!r} has no support image besides the query"
        )
    return keys[int(rng.choice(len(keys), p=weights / total))]


def _supports(pools: _Pools, class_id: int, query: str, shots: int, rng: np.random.Generator) -> tuple[str, ...]:
    """``shots`` keys of other images than the query's: with replacement, or distinct images
    when ``dataset.distinct_supports`` (then :class:`SansaError` if there are too few)."""
    dataset, used = pools.dataset, {image_of(query)}
    if getattr(dataset, "distinct_supports", False):
        available = len({image_of(k) for k in dataset.images_of(class_id)} - used)
        if available < shots:
            name = dataset.class_name(class_id)
            raise SansaError(
                f"{dataset.name}: class {name!r} has {available} support images besides the query, {shots} needed"
            )
        supports = []
        for _ in range(shots):
            supports.append(_pick(pools, class_id, rng, exclude=used))
            used.add(image_of(supports[-1]))
        return tuple(supports)
    return tuple(_pick(pools, class_id, rng, exclude=used) for _ in range(shots))


def save_episodes(episodes: EpisodeList, path: str | os.PathLike[str]) -> Path:
    """Write an episode list as JSON, atomically (temp file in the same folder, then rename)."""
    path = Path(path)
    write_text(path, json.dumps(episodes.to_json(), indent=1) + "\n")
    return path


def load_episodes(path: str | os.PathLike[str]) -> EpisodeList:
    """Read an episode list written by :func:`save_episodes` (or by another implementation)."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise SansaError(f"{path}: no such file") from None
    except (OSError, ValueError) as err:
        raise SansaError(f"{path}: not a readable episode list ({err})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise SansaError(f'{path}: not an episode list (expected "format": "{FORMAT}")')
    try:
        episodes = tuple(
            Episode(int(e["class_id"]), str(e["query"]), tuple(map(str, e["supports"]))) for e in doc["episodes"]
        )
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
