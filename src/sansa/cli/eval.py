"""``sansa eval``: the paper's few-shot benchmarks, resumable, with a results JSON and Markdown."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from sansa.atomic import write_text
from sansa.cli import choices, given
from sansa.cli.common import MODEL_HELP, add_model_options

PROTOCOL = "authors/1"  # the authors' evaluation protocol as released (see README, Benchmarks)

EXAMPLES = (
    """examples:
  sansa eval --benchmark coco20i --fold 0 --data data --sam2-checkpoint sam2_hiera_large.pt --adapter coco0.pth
  sansa eval --benchmark fss1000 --shots 5 --prompt box --data data --model sansa-universal
  sansa eval --benchmark lvis92i --fold all --shots 1 --data data --model sansa-universal
  sansa eval --benchmark folder --data my_data --episodes 50 --backbone test_tiny --random-weights

Run the same command again to resume: finished episodes (OUT/fold<F>/scores.jsonl) are kept.
Data layouts and downloads: README, "Benchmarks: sansa eval".

"""
    + MODEL_HELP
)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from sansa.vocab import PromptType, ScribbleStyle

    parser = subparsers.add_parser(
        "eval",
        help="evaluate on a few-shot benchmark (COCO-20i, LVIS-92i, FSS-1000, ...)",
        description="Evaluate SANSA on a few-shot segmentation benchmark: mIoU, FB-IoU and per-class IoU.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--benchmark",
        required=True,
        metavar="NAME",
        help="coco20i, lvis92i, fss1000, pascal5i, pascalpart, pacopart, or folder",
    )
    parser.add_argument(
        "--data",
        required=True,
        metavar="DIR",
        help="data folder holding COCO2014/, LVIS/, FSS-1000/, ... (for folder: the folder)",
    )
    parser.add_argument(
        "--fold",
        "--folds",
        dest="fold",
        metavar="F|all",
        help="held-out fold, or 'all' to run every fold and average (default: 0)",
    )
    parser.add_argument("--shots", type=int, metavar="K", help="supports per episode (default: 1)")
    parser.add_argument(
        "--prompt",
        **choices(PromptType.kinds()),
        help="how supports are prompted, generated from their masks (default: mask)",
    )
    parser.add_argument(
        "--scribble",
        **choices(ScribbleStyle),
        help="scribble generator: authors (the published protocol, thousands of point tokens "
        "per support) or light (at most 64 points, faster; not comparable to the paper) "
        "(default: authors)",
    )
    parser.add_argument("--episodes", type=int, metavar="N", help="episodes per fold (default: the benchmark's)")
    parser.add_argument("--episode-file", metavar="FILE", help="evaluate this saved episode list (JSON)")
    parser.add_argument("--seed", type=int, help="seed of the episode list and prompts (default: 0)")
    parser.add_argument("--size", type=int, metavar="S", help="image side S (default: the benchmark's, 640 or 518)")
    parser.add_argument("--workers", type=int, metavar="N", help="threads loading episodes ahead (default: 2)")
    parser.add_argument("--out", metavar="DIR", help="results folder (default: runs/eval/<benchmark>-<K>shot-<prompt>)")
    add_model_options(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from sansa.cli.common import load_predictor
    from sansa.data.benchmarks import SPECS, as_benchmark, build_dataset
    from sansa.errors import SansaError

    benchmark = as_benchmark(args.benchmark)
    _check_arguments(args)
    options = given(args, "shots", "prompt", "scribble", "episodes", "seed", "size", "workers")
    folds = _folds(args.fold, SPECS[benchmark].folds)
    if args.episode_file and len(folds) > 1:
        raise SansaError("--episode-file: holds one fold's episodes; give --fold F")
    base = RunConfig(
        benchmark=benchmark.value,
        data=str(args.data),
        fold=folds[0],
        model=given(args, "model", "sam2_checkpoint", "adapter", "backbone", "random_weights"),
        **options,
    )
    light = "-light" if base.prompt == "scribble" and base.scribble == "light" else ""
    out = Path(args.out or f"runs/eval/{benchmark.value}-{base.shots}shot-{base.prompt}{light}")
    datasets = {}
    for fold in folds:  # refuse bad data or a folder of another run before the (slow) model load
        datasets[fold] = build_dataset(benchmark, Path(args.data), fold, "test", base.shots)
        (out / f"fold{fold}").mkdir(parents=True, exist_ok=True)
        _check_config(out / f"fold{fold}" / "config.json", base.with_fold(fold))
    predictor = load_predictor(args)
    results = []
    for fold in folds:
        config = base.with_fold(fold)
        result = run_fold(
            config, predictor, out / f"fold{fold}", episode_file=args.episode_file, dataset=datasets.pop(fold)
        )
        results.append(result)
        print(
            f"{result['dataset']}: mIoU {result['miou']:.1f}  FB-IoU {result['fb_iou']:.1f}  "
            f"({result['episodes']} episodes) -> {out / f'fold{fold}'}"
        )
    if len(folds) > 1:
        summary = summarize_folds(results, out)
        print(
            f"{benchmark.value} {base.shots}-shot, mean of {len(folds)} folds: mIoU {summary['miou']:.1f}  "
            f"FB-IoU {summary['fb_iou']:.1f} -> {out / 'summary.md'}"
        )
    sys.stdout.flush()
    return 0


def _check_arguments(args: argparse.Namespace) -> None:
    """Numbers in range, an episode file that exists, no ignored model file: before anything is written."""
    from sansa.errors import SansaError
    from sansa.images import max_pixels
    from sansa.labeling.job import ModelSpec

    for name, minimum in (("size", 16), ("shots", 1), ("episodes", 1), ("seed", 0), ("workers", 0)):
        value = getattr(args, name)
        if value is not None and value < minimum:
            raise SansaError(f"--{name} {value}: must be at least {minimum}")
    if args.size is not None and args.size * args.size > max_pixels():
        raise SansaError(
            f"--size {args.size}: {args.size}x{args.size} is over the pixel limit of {max_pixels()} (--max-pixels)"
        )
    if args.episode_file is not None and not Path(args.episode_file).is_file():
        raise SansaError(
            f"--episode-file {args.episode_file}: no such file (leave it out to make a new episode "
            "list in the results folder)"
        )
    ModelSpec(**given(args, "model", "sam2_checkpoint", "adapter", "random_weights"))  # refuses ignored files


def _folds(value: str | None, count: int) -> list[int]:
    from sansa.errors import SansaError

    if value is None:
        return [0]
    if value.lower() == "all":
        return list(range(count))
    try:
        fold = int(value)
    except ValueError:
        raise SansaError(f"--fold: expected a number or 'all', got {value!r}") from None
    if not 0 <= fold < count:
        raise SansaError(f"--fold: this benchmark has folds 0..{count - 1}, got {fold}")
    return [fold]


@dataclass(frozen=True)
class RunConfig:
    """What one fold's run is; saved as ``config.json`` and checked on resume."""

    benchmark: str
    data: str
    fold: int = 0
    shots: int = 1
    prompt: str = "mask"
    scribble: str = "authors"
    episodes: int | None = None
    seed: int = 0
    size: int | None = None
    workers: int = 2
    model: dict[str, Any] = field(default_factory=dict)
    protocol: str = PROTOCOL  # folders of runs made under an older protocol are not resumed

    def with_fold(self, fold: int) -> RunConfig:
        return replace(self, fold=fold)

    def identity(self) -> dict[str, Any]:
        """The fields that must match for a run to be resumed (not ``workers``: results do not depend on it)."""
        doc = asdict(self)
        doc.pop("workers")
        return doc


def run_fold(config: RunConfig, predictor, out: Path, episode_file: str | None = None, dataset=None) -> dict[str, Any]:
    """Evaluate one fold into ``out``: config, episodes, scores (resumable), results JSON + Markdown.

    ``dataset``: the fold's reader if already built (else built from ``config``).
    """
    from sansa.data import build_dataset, load_episodes, save_episodes
    from sansa.data.episodes import check_episodes, episode_list
    from sansa.errors import SansaError
    from sansa.evaluation import evaluate

    if dataset is None:
        dataset = build_dataset(config.benchmark, Path(config.data), config.fold, "test", config.shots)
    out.mkdir(parents=True, exist_ok=True)
    _check_config(out / "config.json", config)
    episodes_path = Path(episode_file) if episode_file else out / "episodes.json"
    if episodes_path.exists():
        episodes = load_episodes(episodes_path)
        if episodes.shots != config.shots:
            raise SansaError(f"{episodes_path}: has {episodes.shots}-shot episodes, --shots is {config.shots}")
    else:
        episodes = episode_list(dataset, config.shots, config.episodes, config.seed)
        save_episodes(episodes, episodes_path)
    check_episodes(episodes.episodes, config.shots, str(episodes_path))
    scores_path = out / "scores.jsonl"
    previous = _read_scores(scores_path)
    size = config.size or dataset.image_size
    with open(scores_path, "a") as log:

        def append(score) -> None:
            log.write(json.dumps(score.to_json()) + "\n")
            log.flush()

        result = evaluate(
            dataset,
            episodes.episodes,
            predictor,
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


def _check_config(path: Path, config: RunConfig) -> None:
    from sansa.errors import SansaError

    if path.exists():
        saved = json.loads(path.read_text())
        saved.pop("workers", None)
        if saved != config.identity():
            raise SansaError(f"{path}: this folder holds a different run; give another --out or delete it")
    else:
        write_text(path, json.dumps(asdict(config), indent=1) + "\n")


def _read_scores(path: Path) -> list[Any]:
    """Scores of finished episodes; a line cut short by an interruption is ignored."""
    from sansa.evaluation import EpisodeScore

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
