"""``sansa eval``'s run: a benchmark's folds evaluated into a results folder, resumable.

Each fold gets ``<out>/fold<F>/``: ``config.json`` (what the run is; another run is refused in
the same folder), ``episodes.json`` (the episode list, or the ``episode_file`` given),
``scores.jsonl`` (one line per finished episode: an interrupted run resumes from it),
``results.json`` and ``results.md``. Several folds also get ``summary.json`` and ``summary.md``:
the mean of the folds' mIoU and FB-IoU, the paper's number.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from sansa.atomic import write_text
from sansa.data import build_dataset, load_episodes, save_episodes
from sansa.data.benchmarks import SPECS, as_benchmark
from sansa.data.episode import FewShotDataset
from sansa.data.episodes import check_episodes, episode_list
from sansa.errors import SansaError
from sansa.evaluation.episodes import EpisodeScore, Segmenter, evaluate
from sansa.images import max_pixels
from sansa.vocab import PromptType, ScribbleStyle

PROTOCOL = "authors/1"  # the authors' evaluation protocol as released (see README, Benchmarks)
# (parameter, smallest value)
MINIMUMS = (("size", 16), ("shots", 1), ("episodes", 1), ("seed", 0), ("workers", 0))


@dataclass(frozen=True)
class RunConfig:
    """What one fold's run is; saved as ``config.json`` and checked on resume.

    Attributes:
        benchmark, data, fold: the test split (a :func:`sansa.data.build_dataset` name and folder).
        shots: supports per episode; prompt, scribble: how supports are prompted.
        episodes: episodes per fold (``None``: the benchmark's number); seed: the episode list's
            and the prompts' seed.
        size: the side images are squashed to (``None``: the benchmark's).
        workers: threads loading episodes ahead (results do not depend on it).
        model: how the model was chosen (recorded, and must match to resume).
        protocol: folders of runs made under an older protocol are not resumed.
    """

    benchmark: str
    data: str
    fold: int = 0
    shots: int = 1
    prompt: str = PromptType.MASK.value
    scribble: str = ScribbleStyle.AUTHORS.value
    episodes: int | None = None
    seed: int = 0
    size: int | None = None
    workers: int = 2
    model: dict[str, Any] = field(default_factory=dict)
    protocol: str = PROTOCOL

    def with_fold(self, fold: int) -> RunConfig:
        return replace(self, fold=fold)

    def identity(self) -> dict[str, Any]:
        """The fields that must match for a run to be resumed (not ``workers``: results do not depend on it)."""
        doc = asdict(self)
        doc.pop("workers")
        return doc

    def default_out(self) -> Path:
        """``runs/eval/<benchmark>-<K>shot-<prompt>[-light]``."""
        light = (
            "-light" if self.prompt == PromptType.SCRIBBLE.value and self.scribble == ScribbleStyle.LIGHT.value else ""
        )
        return Path(f"runs/eval/{self.benchmark}-{self.shots}shot-{self.prompt}{light}")


@dataclass(frozen=True)
class EvalRun:
    """What :func:`run` wrote.

    Attributes:
        out: the results folder; config: the run (its first fold's).
        folds: each fold's results, as its ``fold<F>/results.json``.
        summary: the mean over the folds (``summary.json``), ``None`` for one fold.
    """

    out: Path
    config: RunConfig
    folds: list[dict[str, Any]]
    summary: dict[str, Any] | None = None


def run(
    benchmark: str,
    data: str | os.PathLike[str],
    load_segmenter: Callable[[], Segmenter | Any],
    *,
    out: str | os.PathLike[str] | None = None,
    fold: int | str | None = None,
    episode_file: str | os.PathLike[str] | None = None,
    model: Mapping[str, Any] | None = None,
    on_fold: Callable[[dict[str, Any], Path], None] | None = None,
    **options: Any,
) -> EvalRun:
    """Evaluate a benchmark's fold (or ``fold="all"``: every fold, and their mean) into ``out``.

    Every argument and the data are checked, and each fold's folder is claimed, before
    ``load_segmenter`` is called (loading a model is slow). Run it again to resume.

    Args:
        benchmark: a benchmark name (``coco20i``, ``fss1000``, ..., ``folder``).
        data: the data folder (for ``folder``: the folder itself).
        load_segmenter: makes the model (a :class:`~sansa.predictor.SansaPredictor` or a
            :class:`Segmenter`), called once.
        out: the results folder (default: :meth:`RunConfig.default_out`).
        fold: a fold number, ``"all"``, or ``None`` (fold 0).
        episode_file: evaluate this saved episode list (one fold's) instead of sampling one.
        model: how the model was chosen, recorded in ``config.json`` (a resumed run must match).
        on_fold: called with each fold's results and folder as the fold ends.
        options: :class:`RunConfig` fields (``shots``, ``prompt``, ``scribble``, ``episodes``,
            ``seed``, ``size``, ``workers``); those not given keep its defaults.

    Returns:
        The folds' results and, for several folds, their summary (as written in ``out``).
    """
    spec = SPECS[as_benchmark(benchmark)]
    _check_options(options, episode_file)
    folds = parse_folds(fold, spec.folds)
    if episode_file is not None and len(folds) > 1:
        raise SansaError("episode_file: holds one fold's episodes; give one fold")
    base = RunConfig(as_benchmark(benchmark).value, str(data), folds[0], model=dict(model or {}), **options)
    out_dir = Path(out) if out is not None else base.default_out()
    datasets = {}
    for number in folds:  # refuse bad data or a folder of another run before the (slow) model load
        datasets[number] = build_dataset(base.benchmark, Path(data), number, "test", base.shots)
        (out_dir / f"fold{number}").mkdir(parents=True, exist_ok=True)
        check_config(out_dir / f"fold{number}" / "config.json", base.with_fold(number))
    segmenter = load_segmenter()
    results = []
    for number in folds:
        folder = out_dir / f"fold{number}"
        result = run_fold(base.with_fold(number), segmenter, folder, episode_file, datasets.pop(number))
        results.append(result)
        if on_fold is not None:
            on_fold(result, folder)
    summary = summarize_folds(results, out_dir) if len(folds) > 1 else None
    return EvalRun(out_dir, base, results, summary)


def _check_options(options: Mapping[str, Any], episode_file: str | os.PathLike[str] | None) -> None:
    """Numbers in range, a size under the pixel limit, an episode file that exists."""
    for name, minimum in MINIMUMS:
        value = options.get(name)
        if value is not None and value < minimum:
            raise SansaError(f"{name} {value}: must be at least {minimum}")
    size = options.get("size")
    if size is not None and size * size > max_pixels():
        raise SansaError(
            f"size {size}: {size}x{size} is over the pixel limit of {max_pixels()} (raise it with max_pixels=N)"
        )
    if episode_file is not None and not Path(episode_file).is_file():
        raise SansaError(
            f"episode_file {episode_file}: no such file (leave it out to make a new episode list in the results folder)"
        )


def parse_folds(value: int | str | None, count: int) -> list[int]:
    """The folds asked for: ``None`` -> ``[0]``, ``"all"`` -> every fold, a number -> that fold."""
    if value is None:
        return [0]
    if str(value).lower() == "all":
        return list(range(count))
    try:
        fold = int(value)
    except ValueError:
        raise SansaError(f"fold: expected a number or 'all', got {value!r}") from None
    if not 0 <= fold < count:
        raise SansaError(f"fold: this benchmark has folds 0..{count - 1}, got {fold}")
    return [fold]


def run_fold(
    config: RunConfig,
    segmenter: Segmenter | Any,
    out: Path,
    episode_file: str | os.PathLike[str] | None = None,
    dataset: FewShotDataset | None = None,
) -> dict[str, Any]:
    """Evaluate one fold into ``out``: config, episodes, scores (resumable), results JSON + Markdown.

    ``dataset``: the fold's reader if already built (else built from ``config``).
    """
    if dataset is None:
        dataset = build_dataset(config.benchmark, Path(config.data), config.fold, "test", config.shots)
    out.mkdir(parents=True, exist_ok=True)
    check_config(out / "config.json", config)
    episodes_path = Path(episode_file) if episode_file else out / "episodes.json"
    if episodes_path.exists():
        episodes = load_episodes(episodes_path)
        if episodes.shots != config.shots:
            raise SansaError(f"{episodes_path}: has {episodes.shots}-shot episodes, shots is {config.shots}")
    else:
        episodes = episode_list(dataset, config.shots, config.episodes, config.seed)
        save_episodes(episodes, episodes_path)
    check_episodes(episodes.episodes, config.shots, str(episodes_path))
    scores_path = out / "scores.jsonl"
    previous = read_scores(scores_path)
    size = config.size or getattr(dataset, "image_size", None)
    with open(scores_path, "a") as log:

        def append(score: EpisodeScore) -> None:
            log.write(json.dumps(score.to_json()) + "\n")
            log.flush()

        result = evaluate(
            dataset,
            episodes.episodes,
            segmenter,
            prompt=config.prompt,
            image_size=size,
            seed=config.seed,
            scribble=config.scribble,
            workers=config.workers,
            previous=previous,
            on_score=append,
        )
    doc = {"config": {**asdict(config), "image_size": size, "episode_file": str(episodes_path)}, **result.to_json()}
    write_text(out / "results.json", json.dumps(doc, indent=1) + "\n")
    write_text(out / "results.md", fold_markdown(doc))
    return doc


def check_config(path: Path, config: RunConfig) -> None:
    """Write ``config.json``, or refuse a folder whose ``config.json`` is another run's."""
    if path.exists():
        saved = json.loads(path.read_text())
        saved.pop("workers", None)
        if saved != config.identity():
            raise SansaError(f"out {path}: this folder holds a different run; give another folder or delete it")
    else:
        write_text(path, json.dumps(asdict(config), indent=1) + "\n")


def read_scores(path: Path) -> list[EpisodeScore]:
    """Scores of finished episodes; a line cut short by an interruption is ignored."""
    if not path.exists():
        return []
    scores = []
    for line in path.read_text().splitlines():
        try:
            scores.append(EpisodeScore.from_json(json.loads(line)))
        except (ValueError, KeyError, TypeError):
            continue
    return scores


def summarize_folds(results: list[dict[str, Any]], out: Path) -> dict[str, Any]:
    """The paper's number for a multi-fold benchmark: the mean of the folds' mIoU (and FB-IoU)."""
    summary = {
        "config": {k: v for k, v in results[0]["config"].items() if k not in ("fold", "episode_file")},
        "folds": [
            {"fold": r["config"]["fold"], "miou": r["miou"], "fb_iou": r["fb_iou"], "episodes": r["episodes"]}
            for r in results
        ],
        "miou": round(sum(r["miou"] for r in results) / len(results), 3),
        "fb_iou": round(sum(r["fb_iou"] for r in results) / len(results), 3),
        "seconds": round(sum(r["timing"]["seconds"] for r in results), 3),
    }
    write_text(out / "summary.json", json.dumps(summary, indent=1) + "\n")
    rows = "".join(
        f"| {f['fold']} | {f['miou']:.1f} | {f['fb_iou']:.1f} | {f['episodes']} |\n" for f in summary["folds"]
    )
    cfg = summary["config"]
    text = (
        f"# {cfg['benchmark']} {cfg['shots']}-shot, {cfg['prompt']} prompts\n\n"
        f"| fold | mIoU | FB-IoU | episodes |\n|---|---|---|---|\n{rows}"
        f"| **mean** | **{summary['miou']:.1f}** | **{summary['fb_iou']:.1f}** | |\n"
    )
    write_text(out / "summary.md", text)
    return summary


def fold_markdown(doc: dict[str, Any]) -> str:
    """A short Markdown report of one fold: headline numbers, then per-class IoU."""
    cfg, timing = doc["config"], doc["timing"]
    classes = "".join(f"| {c['id']} | {c['name']} | {c['iou']:.1f} | {c['episodes']} |\n" for c in doc["classes"])
    return (
        f"# {doc['dataset']}: {cfg['shots']}-shot, {cfg['prompt']} prompts\n\n"
        f"| mIoU | FB-IoU | episodes | seconds |\n|---|---|---|---|\n"
        f"| {doc['miou']:.1f} | {doc['fb_iou']:.1f} | {doc['episodes']} | {timing['seconds']:.1f} |\n\n"
        f"Images squashed to {cfg['image_size']}x{cfg['image_size']}; seed {cfg['seed']}; "
        f"episodes: `{cfg['episode_file']}`.\n\n"
        f"| class | name | IoU | episodes |\n|---|---|---|---|\n{classes}"
    )
