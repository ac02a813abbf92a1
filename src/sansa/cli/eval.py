"""``sansa eval``: the paper's few-shot benchmarks, resumable, with a results JSON and Markdown."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from sansa.cli import choices, given
from sansa.cli.common import MODEL_HELP, add_model_options

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
    """Parse, then :func:`sansa.evaluation.run`; one line per fold, and the mean of several."""
    from sansa.cli.common import load_predictor
    from sansa.evaluation import run as evaluate_run
    from sansa.labeling.job import ModelSpec

    model = given(args, "model", "sam2_checkpoint", "adapter", "backbone", "random_weights")
    ModelSpec(**given(args, "model", "sam2_checkpoint", "adapter", "random_weights"))  # refuses ignored files
    done = evaluate_run(
        args.benchmark,
        args.data,
        lambda: load_predictor(args),
        model=model,
        on_fold=_print_fold,
        **given(
            args, "out", "fold", "episode_file", "shots", "prompt", "scribble", "episodes", "seed", "size", "workers"
        ),
    )
    if done.summary is not None:
        print(
            f"{done.config.benchmark} {done.config.shots}-shot, mean of {len(done.folds)} folds: "
            f"mIoU {done.summary['miou']:.1f}  FB-IoU {done.summary['fb_iou']:.1f} -> {done.out / 'summary.md'}"
        )
    sys.stdout.flush()
    return 0


def _print_fold(result: dict[str, Any], folder: Path) -> None:
    print(
        f"{result['dataset']}: mIoU {result['miou']:.1f}  FB-IoU {result['fb_iou']:.1f}  "
        f"({result['episodes']} episodes) -> {folder}",
        flush=True,
    )
