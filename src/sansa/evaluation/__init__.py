"""Few-shot evaluation: the scoring loop (:mod:`sansa.evaluation.episodes`: episodes in, mIoU /
FB-IoU / per-class IoU out) and ``sansa eval``'s resumable run over a benchmark's folds
(:mod:`sansa.evaluation.run`: a results folder with ``config.json``, ``scores.jsonl``,
``results.json`` and Markdown).

Usage (also from a training loop, on the model being trained)::

    predictor = SansaPredictor(model, device="cuda")        # puts the model in eval mode
    result = evaluate(dataset, episodes, predictor, prompt="mask")
    result.miou, result.fb_iou, result.class_iou
"""

from __future__ import annotations

from sansa.evaluation.episodes import EpisodeScore, EvalResult, PredictorSegmenter, Segmenter, evaluate
from sansa.evaluation.run import EvalRun, RunConfig, run, run_fold

__all__ = [
    "EpisodeScore",
    "EvalResult",
    "EvalRun",
    "PredictorSegmenter",
    "RunConfig",
    "Segmenter",
    "evaluate",
    "run",
    "run_fold",
]
