"""Training episodes drawn from the seed alone, and turned into model inputs.

Episode ``i`` of epoch ``e`` is drawn from its own generator, seeded by ``(seed, e, i)``: which
dataset of the mix, which class, which images, which prompt kinds and where the clicks fall never
depend on the number of processes, of data-loader workers, or on where a run was resumed (the
reference code's episode lists changed with the number of workers).

An episode is ``K`` prompted references then ``J`` targets of one class, all distinct images
when the class has enough (else drawn with repetition). Every image is squashed to ``S x S``
(PIL bilinear, masks nearest, as evaluation does) and then mapped to the model's input by
:class:`sansa.transforms.ModelTransform`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from sansa.data.common import squash
from sansa.data.episode import FewShotDataset, image_of
from sansa.data.prompts import MAX_POINTS, sample_prompt
from sansa.errors import SansaError
from sansa.transforms import ModelTransform
from sansa.vocab import PromptType

PROMPT_KINDS = (PromptType.MASK, PromptType.POINT, PromptType.SCRIBBLE, PromptType.BOX)
_MAX_REDRAWS = 20  # an episode whose reference mask vanishes at S x S is drawn again (from the same generator)


@dataclass(frozen=True)
class EpisodeDraw:
    """Which images and prompts make one training episode (no pixels yet).

    Attributes:
        dataset: index of the dataset in the mix.
        class_id: the class.
        keys: ``K`` reference keys then ``J`` target keys.
        seed: the episode's own seed (its prompts and its dropout masks).
    """

    dataset: int
    class_id: int
    keys: tuple[str, ...]
    seed: int


@dataclass
class EpisodeSample:
    """One episode as tensors.

    Attributes:
        images: ``float32 [T, 3, S', S']`` normalised model inputs (``S'`` = the model's side).
        masks: ``bool [T, S, S]`` ground truth of every frame at the loss resolution.
        prompts: ``K`` dicts, ``{"mask": [1, 1, S', S']}`` or ``{"point_inputs": {"point_coords":
            [1, P, 2], "point_labels": [1, P]}}`` (model coordinates).
        supervised: ``bool [T]``: frames the loss is taken on (targets, and references whose mask
            is decoded from points / box / scribble).
        seed: the episode's seed.
    """

    images: torch.Tensor
    masks: torch.Tensor
    prompts: list[dict[str, Any]]
    supervised: torch.Tensor
    seed: int


@dataclass
class EpisodeBatch:
    """``B`` episodes of one step, all with the same ``K``, ``J`` and ``S``.

    Attributes:
        images: ``[B, T, 3, S', S']``; masks ``[B, T, S, S]``; supervised ``[B, T]``;
        prompts: ``B`` lists of ``K`` prompt dicts; seeds: ``B`` episode seeds.
    """

    images: torch.Tensor
    masks: torch.Tensor
    prompts: list[list[dict[str, Any]]]
    supervised: torch.Tensor
    seeds: list[int]

    def __len__(self) -> int:
        return len(self.seeds)

    def to(self, device: torch.device) -> EpisodeBatch:
        """A copy on ``device`` (prompt dicts are copied, never changed in place)."""

        def move(prompt: dict[str, Any]) -> dict[str, Any]:
            return {k: move(v) if isinstance(v, dict) else v.to(device, non_blocking=True) for k, v in prompt.items()}

        return EpisodeBatch(
            self.images.to(device, non_blocking=True),
            self.masks.to(device, non_blocking=True),
            [[move(p) for p in ps] for ps in self.prompts],
            self.supervised.to(device),
            self.seeds,
        )


def collate(samples: Sequence[EpisodeSample]) -> EpisodeBatch:
    """Stack episodes into an :class:`EpisodeBatch`."""
    return EpisodeBatch(
        images=torch.stack([s.images for s in samples]),
        masks=torch.stack([s.masks for s in samples]),
        prompts=[s.prompts for s in samples],
        supervised=torch.stack([s.supervised for s in samples]),
        seeds=[s.seed for s in samples],
    )


class EpisodeSource(torch.utils.data.Dataset[EpisodeSample]):
    """A map-style dataset of training episodes: ``source[(epoch, index)] -> EpisodeSample``.

    Args:
        datasets: the mix (each a :class:`~sansa.data.episode.FewShotDataset` of training classes).
        weights: relative sampling weight of each dataset.
        shots: ``K`` references; targets: ``J`` targets.
        prompt: how references are prompted.
        resolution: ``S``, the side images are squashed to (and the loss resolution).
        image_size: the model's input side.
        seed: the run's seed.
    """

    def __init__(
        self,
        datasets: Sequence[FewShotDataset],
        weights: Sequence[float],
        shots: int,
        targets: int,
        prompt: PromptType | str,
        resolution: int,
        image_size: int,
        seed: int,
    ) -> None:
        if not datasets:
            raise SansaError("data: no training dataset given")
        self.datasets: list[FewShotDataset] = list(datasets)
        self.probabilities: np.ndarray = np.asarray(weights, dtype=np.float64) / float(np.sum(weights))
        self.shots: int = shots
        self.targets: int = targets
        self.prompt: PromptType = PromptType(prompt)
        self.resolution: int = resolution
        self.transform: ModelTransform = ModelTransform(image_size)
        self.seed: int = seed
        self.classes: list[list[int]] = [_usable_classes(d) for d in self.datasets]

    def pairs(self) -> int:
        """Number of (image, class) pairs over the mix (the default epoch length)."""
        return sum(len(d.images_of(c)) for d, cs in zip(self.datasets, self.classes, strict=True) for c in cs)

    def draw(self, epoch: int, index: int, attempt: int = 0) -> tuple[EpisodeDraw, np.random.Generator]:
        """Episode ``index`` of ``epoch`` and its generator (positioned after the draw, for prompts)."""
        rng = np.random.default_rng([self.seed, epoch, index, attempt])
        which = int(rng.choice(len(self.datasets), p=self.probabilities))
        dataset, classes = self.datasets[which], self.classes[which]
        class_id = classes[int(rng.integers(len(classes)))]
        keys = _distinct_images(dataset.images_of(class_id), self.shots + self.targets, rng)
        return EpisodeDraw(which, class_id, keys, int(rng.integers(2**63 - 1))), rng

    def __getitem__(self, item: tuple[int, int]) -> EpisodeSample:
        epoch, index = item
        for attempt in range(_MAX_REDRAWS):
            draw, rng = self.draw(epoch, index, attempt)
            sample = self._load(draw, rng)
            if sample is not None:
                return sample
        raise SansaError(
            f"episode {index} of epoch {epoch}: reference masks keep vanishing at {self.resolution} px; "
            "raise resolution"
        )

    def _load(self, draw: EpisodeDraw, rng: np.random.Generator) -> EpisodeSample | None:
        dataset = self.datasets[draw.dataset]
        images, masks = [], []
        for key in draw.keys:
            rgb, mask = dataset.load(key, draw.class_id)
            rgb, mask = squash(rgb, mask, self.resolution)
            images.append(self.transform.image(np.array(rgb)))  # PIL's arrays are read-only
            masks.append(torch.from_numpy(mask))
        prompts: list[dict[str, Any]] = []
        supervised = [False] * self.shots + [True] * self.targets
        for k in range(self.shots):
            mask = masks[k].numpy()
            if not mask.any():
                return None
            kind = self._kind(rng)
            if kind is PromptType.MASK:
                prompts.append({"mask": self.transform.mask(mask)})
                continue
            num_points = int(rng.integers(1, MAX_POINTS + 1)) if kind is PromptType.POINT else None
            prompt = sample_prompt(mask, kind, rng, num_points=num_points)
            prompts.append({"point_inputs": self.transform.point_prompt(prompt, self.resolution, self.resolution)})
            supervised[k] = True
        return EpisodeSample(torch.stack(images), torch.stack(masks), prompts, torch.tensor(supervised), draw.seed)

    def _kind(self, rng: np.random.Generator) -> PromptType:
        if self.prompt is PromptType.MIXED:
            return PROMPT_KINDS[int(rng.integers(len(PROMPT_KINDS)))]
        return self.prompt


def _usable_classes(dataset: FewShotDataset) -> list[int]:
    """Classes with at least two distinct images (a reference and a target)."""
    classes = [c for c in dataset.class_ids() if len({image_of(k) for k in dataset.images_of(c)}) >= 2]
    if not classes:
        raise SansaError(f"{dataset.name}: no class has two images to train on")
    return classes


def _distinct_images(keys: Sequence[str], count: int, rng: np.random.Generator) -> tuple[str, ...]:
    """``count`` keys of distinct images in random order (with repetition only when too few)."""
    order = [keys[i] for i in rng.permutation(len(keys))]
    picked, seen = [], set()
    for key in order:
        if image_of(key) not in seen:
            seen.add(image_of(key))
            picked.append(key)
        if len(picked) == count:
            return tuple(picked)
    while len(picked) < count:  # fewer distinct images than frames: repeat (never all the same image)
        picked.append(picked[int(rng.integers(len(picked)))])
    return tuple(picked)


@dataclass(frozen=True)
class StepSchedule:
    """Which episodes each rank processes at each step.

    Step ``s`` of an epoch uses the global episodes ``s*B .. s*B + B - 1``; rank ``r`` of ``W``
    takes the ``B/W`` consecutive ones starting at ``s*B + r*B/W``. The global batch is thus the
    same for any number of processes.
    """

    episodes_per_epoch: int
    batch_size: int
    rank: int = 0
    world_size: int = 1

    def __post_init__(self) -> None:
        if self.batch_size % self.world_size:
            raise SansaError(f"batch_size: {self.batch_size} does not split evenly over {self.world_size} processes")
        if self.episodes_per_epoch < self.batch_size:
            raise SansaError(
                f"episodes_per_epoch: {self.episodes_per_epoch} is less than one batch ({self.batch_size})"
            )

    @property
    def steps_per_epoch(self) -> int:
        return self.episodes_per_epoch // self.batch_size

    @property
    def local_batch(self) -> int:
        return self.batch_size // self.world_size

    def batches(self, epoch: int, start_step: int = 0) -> Iterator[list[tuple[int, int]]]:
        """This rank's ``(epoch, index)`` lists for the steps ``start_step ..`` of ``epoch``."""
        for step in range(start_step, self.steps_per_epoch):
            first = step * self.batch_size + self.rank * self.local_batch
            yield [(epoch, first + i) for i in range(self.local_batch)]


class _Batches(torch.utils.data.Sampler):
    """The :class:`StepSchedule` of one epoch as a data-loader batch sampler."""

    def __init__(self, schedule: StepSchedule, epoch: int, start_step: int) -> None:
        self.schedule, self.epoch, self.start_step = schedule, epoch, start_step

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        return self.schedule.batches(self.epoch, self.start_step)

    def __len__(self) -> int:
        return max(0, self.schedule.steps_per_epoch - self.start_step)


def episode_loader(
    source: EpisodeSource,
    schedule: StepSchedule,
    epoch: int,
    start_step: int,
    num_workers: int,
    pin_memory: bool = False,
) -> torch.utils.data.DataLoader[EpisodeSample]:
    """This rank's batches of ``epoch`` from ``start_step`` on (workers only load; they never draw)."""
    return torch.utils.data.DataLoader(
        source,
        batch_sampler=_Batches(schedule, epoch, start_step),
        collate_fn=collate,
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=False,
    )
