"""The few-shot evaluation loop: episodes in, mIoU / FB-IoU / per-class IoU out.

The authors' protocol (ClaudiaCuttano/SANSA ``datasets/*.py``, ``util/promptable_utils.py``,
``util/metrics.py``): every image is squashed to ``S x S`` (PIL bilinear; masks by torch
nearest interpolation) *before* the model, and the query's prediction is scored at ``S x S``
against the squashed ground truth (PASCAL-5i: boundary pixels left out, as HSNet). Support
prompts are generated from the squashed support masks with one generator per episode, seeded
by ``(seed, episode index)``, so any episode can be re-run on its own; scribbles are the
authors' evaluation scribbles unless ``scribble="light"``. A support whose mask is empty (at
``S x S``) is prompted as the authors do: the empty mask, a click at ``(0, 0)``, or the zero box.

Usage (also from a training loop, on the model being trained)::

    predictor = SansaPredictor(model, device="cuda")        # puts the model in eval mode
    result = evaluate(dataset, episodes, predictor, prompt="mask")
    result.miou, result.fb_iou, result.class_iou
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from sansa.data.common import resize_nearest, squash
from sansa.data.episode import Episode, FewShotDataset
from sansa.data.prompts import empty_prompt, sample_prompt
from sansa.errors import SansaError
from sansa.metrics import IoUAccumulator, intersection_union
from sansa.records import Prompt
from sansa.vocab import PromptType, ScribbleStyle

Reference = tuple[np.ndarray, Prompt]  # (RGB uint8 [S, S, 3], prompt in its pixels)


class Segmenter(Protocol):
    """Anything that segments a query from ``K`` prompted references."""

    def segment(
        self, references: Sequence[Reference], query: np.ndarray, reuse_key: Hashable | None = None
    ) -> np.ndarray:
        """``bool [S, S]`` mask of the references' class in ``query`` (``uint8 [S, S, 3]``).

        ``reuse_key``: equal keys on consecutive calls mean identical references (same images,
        same prompts), so a memory built for the previous call may be reused; ``None`` = never.
        """


class PredictorSegmenter:
    """A :class:`Segmenter` over a :class:`~sansa.predictor.SansaPredictor`.

    The predictor's references are rebuilt for every episode, except when consecutive
    episodes have the same ``reuse_key`` (the same supports with deterministic prompts):
    SANSA never writes targets into memory, so the reference memory is then the same.
    """

    def __init__(self, predictor: Any) -> None:
        self.predictor = predictor
        self._key: Hashable | None = None

    def segment(
        self, references: Sequence[Reference], query: np.ndarray, reuse_key: Hashable | None = None
    ) -> np.ndarray:
        if reuse_key is None or reuse_key != self._key:
            self.predictor.reset()
            self._key = None
            for image, prompt in references:
                self.predictor.add_reference(image, prompt=prompt)
            self._key = reuse_key
        return self.predictor.predict(query).mask


@dataclass(frozen=True)
class EpisodeScore:
    """One evaluated episode: ``[background, foreground]`` intersection and union at ``S x S``."""

    index: int
    class_id: int
    intersection: tuple[int, int]
    union: tuple[int, int]
    empty_supports: int = 0  # supports whose mask was empty at S x S (prompted as the authors do)

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "class_id": self.class_id,
            "intersection": list(self.intersection),
            "union": list(self.union),
            "empty_supports": self.empty_supports,
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> EpisodeScore:
        return cls(
            int(doc["index"]),
            int(doc["class_id"]),
            tuple(doc["intersection"]),
            tuple(doc["union"]),
            int(doc.get("empty_supports", 0)),
        )


@dataclass
class EvalResult:
    """Scores of one evaluation (fractions in ``[0, 1]``)."""

    dataset: str
    class_names: dict[int, str]
    metric: IoUAccumulator
    scores: list[EpisodeScore]
    seconds: float = 0.0
    evaluated: int = 0  # episodes computed in this run (the others were resumed)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def miou(self) -> float:
        return self.metric.miou()

    @property
    def fb_iou(self) -> float:
        return self.metric.fb_iou()

    @property
    def class_iou(self) -> dict[int, float]:
        return self.metric.class_iou()

    def to_json(self) -> dict[str, Any]:
        """Summary numbers in percent, per class with name and episode count."""
        episodes = dict(zip(self.metric.class_ids, self.metric.episodes.tolist(), strict=True))
        return {
            "dataset": self.dataset,
            "episodes": len(self.scores),
            "miou": round(100 * self.miou, 3),
            "fb_iou": round(100 * self.fb_iou, 3),
            "classes": [
                {"id": c, "name": self.class_names[c], "iou": round(100 * v, 3), "episodes": episodes[c]}
                for c, v in self.class_iou.items()
            ],
            "empty_supports": sum(s.empty_supports for s in self.scores),
            "timing": {
                "seconds": round(self.seconds, 3),
                "episodes_evaluated": self.evaluated,
                "seconds_per_episode": round(self.seconds / self.evaluated, 4) if self.evaluated else None,
            },
            **self.extra,
        }


@dataclass
class _Prepared:
    index: int
    episode: Episode
    references: list[Reference]
    query: np.ndarray
    target: np.ndarray
    ignore: np.ndarray | None  # bool [S, S]: pixels left out of the metric (PASCAL-5i boundaries)
    empty: int


def evaluate(
    dataset: FewShotDataset,
    episodes: Sequence[Episode],
    segmenter: Segmenter | Any,
    prompt: PromptType | str = PromptType.MASK,
    image_size: int | None = None,
    seed: int = 0,
    scribble: ScribbleStyle | str = ScribbleStyle.AUTHORS,
    workers: int = 0,
    previous: Iterable[EpisodeScore] = (),
    on_score: Callable[[EpisodeScore], None] | None = None,
    progress: bool = True,
) -> EvalResult:
    """Evaluate a segmenter on episodes of one dataset fold.

    Args:
        dataset: the fold the episodes were drawn from.
        episodes: e.g. :func:`~sansa.data.episodes.sample_episodes`'s list.
        segmenter: a :class:`Segmenter`, or a ``SansaPredictor`` (wrapped in :class:`PredictorSegmenter`).
        prompt: how supports are prompted: ``mask``, ``point``, ``box`` or ``scribble``.
        image_size: ``S`` (default: ``dataset.image_size``).
        seed: seeds the prompts (episode ``i`` uses ``numpy.random.default_rng([seed, i])``).
        scribble: ``authors`` (the published protocol: thousands of point tokens per support)
            or ``light`` (at most 64 points; faster, not the published protocol).
        workers: threads that load and resize episodes ahead of the model (results do not
            depend on it).
        previous: scores of episodes already evaluated (resuming): counted, not recomputed.
        on_score: called with each new :class:`EpisodeScore` (e.g. to append it to a file).
        progress: show a progress bar.

    Returns:
        :class:`EvalResult` with mIoU, FB-IoU, per-class IoU and timing.
    """
    from tqdm.auto import tqdm

    if hasattr(segmenter, "add_reference"):
        segmenter = PredictorSegmenter(segmenter)
    prompt = PromptType(prompt)
    size = image_size or getattr(dataset, "image_size", None)
    if size is None:
        raise SansaError(f"image_size: {dataset.name} has none of its own; give one")
    metric = IoUAccumulator(dataset.class_ids())
    scores = {s.index: s for s in previous if s.index < len(episodes)}
    for s in scores.values():
        metric.add(s.class_id, s.intersection, s.union)
    todo = [i for i in range(len(episodes)) if i not in scores]
    names = {c: dataset.class_name(c) for c in metric.class_ids}
    bar = tqdm(total=len(episodes), initial=len(scores), desc=dataset.name, unit="ep", disable=not progress)
    start = time.perf_counter()
    prepare = _Preparer(dataset, episodes, prompt, size, seed, ScribbleStyle(scribble))
    for item in _prefetch(prepare, todo, workers):
        prediction = _predict(segmenter, item, prompt)
        inter, union = intersection_union(prediction, item.target, item.ignore)
        score = EpisodeScore(
            item.index,
            item.episode.class_id,
            (int(inter[0]), int(inter[1])),
            (int(union[0]), int(union[1])),
            item.empty,
        )
        metric.add(score.class_id, inter, union)
        scores[score.index] = score
        if on_score is not None:
            on_score(score)
        bar.update(1)
        bar.set_postfix(mIoU=f"{100 * metric.miou():.1f}", refresh=False)
    bar.close()
    ordered = [scores[i] for i in sorted(scores)]
    return EvalResult(dataset.name, names, metric, ordered, time.perf_counter() - start, len(todo))


def _predict(segmenter: Segmenter, item: _Prepared, prompt: PromptType) -> np.ndarray:
    size = item.target.shape
    deterministic = prompt in (PromptType.MASK, PromptType.BOX)
    key = (item.episode.class_id, item.episode.supports, prompt.value) if deterministic else None
    mask = np.asarray(segmenter.segment(item.references, item.query, key), dtype=bool)
    if mask.shape != size:
        raise ValueError(f"segmenter returned a {mask.shape} mask for a {size} query")
    return mask


class _Preparer:
    """Loads, squashes and prompts one episode (thread-safe: no shared mutable state)."""

    def __init__(
        self,
        dataset: FewShotDataset,
        episodes: Sequence[Episode],
        prompt: PromptType,
        size: int,
        seed: int,
        scribble: ScribbleStyle,
    ) -> None:
        self.dataset, self.episodes, self.prompt, self.size, self.seed = dataset, episodes, prompt, size, seed
        self.scribble = scribble

    def __call__(self, index: int) -> _Prepared:
        episode = self.episodes[index]
        rng = np.random.default_rng([self.seed, index])
        references, empty = [], 0
        for key in episode.supports:
            image, mask = squash(*self.dataset.load(key, episode.class_id), self.size)
            if mask.any():
                prompt = sample_prompt(mask, self.prompt, rng, scribble=self.scribble)
            else:
                prompt = empty_prompt(self.prompt, *mask.shape)
                empty += 1
            references.append((image, prompt))
        query, target, ignore = self._query(episode)
        return _Prepared(index, episode, references, query, target, ignore, empty)

    def _query(self, episode: Episode) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """The query image and ground truth at ``S x S``, and the pixels the metric ignores."""
        load_with_ignore = getattr(self.dataset, "load_with_ignore", None)
        if load_with_ignore is None:
            return (*squash(*self.dataset.load(episode.query, episode.class_id), self.size), None)
        image, mask, ignore = load_with_ignore(episode.query, episode.class_id)
        return (*squash(image, mask, self.size), resize_nearest(ignore, self.size))


def _prefetch(prepare: Callable[[int], _Prepared], indices: list[int], workers: int) -> Iterator[_Prepared]:
    """``prepare(i)`` for each index, in order, with up to ``2 * workers`` loaded ahead."""
    if workers <= 0:
        yield from map(prepare, indices)
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending: deque[Future] = deque()
        for i in indices:
            pending.append(pool.submit(prepare, i))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
