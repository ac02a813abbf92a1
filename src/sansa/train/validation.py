"""The validation pass after each epoch: ``sansa eval``'s own loop, split over the ranks.

Every rank evaluates the episodes ``rank, rank + W, ...`` of one seeded list (the others are
handed to :func:`sansa.evaluation.evaluate` as already-scored zeros, so each episode keeps its
index and hence its prompt seed); the per-class intersections and unions are then summed over
ranks, which gives exactly the numbers of a single-process evaluation.
"""

from __future__ import annotations

import torch

from sansa.data import build_dataset, sample_episodes
from sansa.evaluation import EpisodeScore, evaluate
from sansa.metrics import IoUAccumulator
from sansa.model.sansa import SansaModel
from sansa.predictor import SansaPredictor
from sansa.train.config import ValSpec
from sansa.train.distributed import DistContext, all_reduce_sum


def validate(model: SansaModel, spec: ValSpec, ctx: DistContext) -> dict[str, float]:
    """mIoU and FB-IoU (percent) of ``model`` on ``spec``'s episodes, reduced over ranks."""

    dataset = build_dataset(spec.benchmark, spec.root, spec.fold or 0, "test", spec.shots)
    episodes = sample_episodes(dataset, spec.shots, spec.episodes, spec.seed)
    others = [
        EpisodeScore(i, e.class_id, (0, 0), (0, 0)) for i, e in enumerate(episodes) if i % ctx.world_size != ctx.rank
    ]
    result = evaluate(
        dataset,
        episodes,
        SansaPredictor(model, device=ctx.device),
        prompt=spec.prompt,
        seed=spec.seed,
        previous=others,
        progress=ctx.is_main,
    )
    sums = torch.stack([torch.from_numpy(result.metric.intersection), torch.from_numpy(result.metric.union)])
    sums = sums.to(ctx.device)
    all_reduce_sum(sums, ctx)
    total = IoUAccumulator(result.metric.class_ids)
    total.intersection, total.union = sums[0].cpu().numpy(), sums[1].cpu().numpy()
    return {"miou": 100 * total.miou(), "fb_iou": 100 * total.fb_iou()}
