"""``sansa train``: train SANSA adapters from a YAML config, on one CPU or many GPUs (torchrun)."""

from __future__ import annotations

import argparse
import os
import sys

from sansa.cli import choices, given
from sansa.vocab import Device, PromptType

EXAMPLES = """examples:
  sansa train configs/train/coco20i_fold0.yaml --sam2-checkpoint sam2_hiera_large.pt --set data.0.root=data
  torchrun --nproc_per_node 8 -m sansa train configs/train/promptable.yaml --out runs/promptable
  sansa train --set data='[{benchmark: folder, root: my_data}]' --backbone test_tiny --epochs 1 --batch-size 2

A config holds the fields of sansa.train.TrainConfig (see configs/train/); --set KEY=VALUE
overrides any of them (dotted keys, YAML values: --set lr=2e-4 --set val.episodes=100).
Run the same command again to resume: OUT/last.pth is picked up and the run continues exactly.
Outputs in OUT: config.yaml, last.pth (resumable), epoch_<e>.pth (adapters for
`sansa segment --adapter`), tensorboard/ (loss, lr, throughput, validation mIoU).
"""

# flag -> TrainConfig field; every flag defaults to None so only what the user set is passed on
FLAGS = {
    "out": "out",
    "sam2_checkpoint": "sam2_checkpoint",
    "backbone": "backbone",
    "epochs": "epochs",
    "batch_size": "batch_size",
    "lr": "lr",
    "prompt": "prompt",
    "shots": "shots",
    "targets": "targets",
    "seed": "seed",
    "workers": "num_workers",
    "device": "device",
}


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train adapters (episodic, resumable, data parallel under torchrun)",
        description="Train SANSA's adapters on few-shot episodes; SAM2 stays frozen.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("config", nargs="?", metavar="CONFIG.yaml", help="training config (fields of TrainConfig)")
    parser.add_argument("--out", metavar="DIR", help="run folder; resumes from DIR/last.pth (default: runs/train)")
    parser.add_argument("--sam2-checkpoint", metavar="FILE", help="Meta's SAM2 release-1.0 checkpoint (.pt)")
    parser.add_argument("--backbone", metavar="NAME|YAML", help="hiera_large (default), ..., test_tiny")
    parser.add_argument("--epochs", type=int, metavar="N", help="epochs (default: 5)")
    parser.add_argument("--batch-size", type=int, metavar="B", help="global batch of episodes per step (default: 32)")
    parser.add_argument("--lr", type=float, help="AdamW learning rate (default: 1e-4)")
    parser.add_argument(
        "--prompt",
        **choices(PromptType),
        help="how references are prompted: one kind (default: mask), or mixed: each reference one of "
        "the four kinds, drawn uniformly (the promptable model; formerly multi)",
    )
    parser.add_argument("--shots", type=int, metavar="K", help="prompted references per episode (default: 1)")
    parser.add_argument("--targets", type=int, metavar="J", help="targets per episode, fed back as memory (default: 1)")
    parser.add_argument("--seed", type=int, help="the run's seed (default: 0)")
    parser.add_argument("--workers", type=int, metavar="N", help="data-loader processes per GPU (default: 4)")
    parser.add_argument("--device", **choices(Device), help="where to train (default: auto)")
    parser.add_argument(
        "--set",
        dest="overrides",  # load_config's parameter: its errors name it, printed as --set
        action="append",
        metavar="KEY=VALUE",
        help="override any config field (repeatable)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from sansa.train import load_config, train

    values = {FLAGS[name]: value for name, value in given(args, *FLAGS).items()}
    _check_set_keys(args.overrides or ())
    config = load_config(args.config, args.overrides or (), **values)
    result = train(config)
    if result.checkpoint is not None and os.environ.get("RANK", "0") == "0":
        print(f"step {result.step}: {result.checkpoint}", file=sys.stderr)
    return 0


def _check_set_keys(overrides: list[str] | tuple[str, ...]) -> None:
    """``--set KEY=VALUE`` with an unknown top-level KEY: one line naming the flag and the key."""
    from dataclasses import fields

    from sansa.errors import SansaError
    from sansa.train.config import TrainConfig, parse_override

    known = sorted(f.name for f in fields(TrainConfig))
    for text in overrides:
        key = parse_override(text)[0][0]
        if key not in known:
            raise SansaError(f"--set {text}: unknown option {key!r} (known: {', '.join(known)})")
