"""Which parts of the model may run in bf16: the target masks' IoU with fp32's, part by part.

``precision="bf16"`` autocasts the parts in ``sansa.devices.AUTOCAST_PARTS``. This script runs
memory attention and the target's decoder in fp32, each alone in bf16, and both, once with the
image encoder in fp32 and once in bf16 (eight rows), and compares every target's class mask with
fp32's (mask IoU, in points: 100 x IoU), on

1. the golden cases (``--golden``, default ``../shared/fixtures/golden_v1`` beside the repository):
   the authors' fp32 logits are the reference (so the all-fp32 row checks the setup: 100);
2. a real-size random model (``--backbone``, default ``hiera_tiny``; seeded random weights) on
   1024x768 scenes of ``benchmarks/objects.py`` (one mask reference, ``--targets`` targets): its
   all-fp32 row is the reference.

The second table gives each part's loss: the most points any target loses when the part goes to
bf16 alone, and when it joins the encoder in bf16; the verdict is bf16 where both stay within
0.5 points on every target of both sets, fp32 elsewhere. ``AUTOCAST_PARTS`` follows the verdict.
References (their prompt decoding and memory) stay fp32 in every row; the objects' clicks follow
the decoder.

    python benchmarks/bf16_iou.py                                       # the README table
    python benchmarks/bf16_iou.py --backbone test_tiny --targets 1 --cases point_1shot   # a quick check

On a CPU without native bf16 the same autocast runs emulated (inputs rounded to bf16, fp32
accumulation, as native kernels do; much slower): the script says so on its first line.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from objects import scene  # noqa: E402  (a sibling script)
from planning import machine  # noqa: E402

from sansa import SansaPredictor  # noqa: E402
from sansa.devices import CPU_FLAGS_ENV, NATIVE_CPU_FLAGS, cpu_flags  # noqa: E402
from sansa.model.build import build_sansa  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_GOLDEN = REPO.parent / "shared" / "fixtures" / "golden_v1"
# memory attention and the target's decoder: fp32, each alone in bf16, both
HEADS: tuple[tuple[str, ...], ...] = ((), ("memory_attention",), ("decoder",), ("memory_attention", "decoder"))
ROWS = tuple(encoder + heads for encoder in ((), ("encoder",)) for heads in HEADS)
MAX_LOSS_POINTS = 0.5


@dataclass
class Episode:
    """References (image, ``add_reference`` keywords) of one class, a target, and fp32's mask of it
    (``None``: computed here by an fp32 predictor)."""

    name: str
    references: list[tuple[np.ndarray, dict[str, Any]]]
    target: np.ndarray
    expected: np.ndarray | None = None


@dataclass
class Scores:
    """IoU points with fp32 per row (parts in bf16), one per target."""

    points: dict[tuple[str, ...], list[float]] = field(default_factory=dict)

    def add(self, parts: tuple[str, ...], value: float) -> None:
        self.points.setdefault(parts, []).append(value)


def golden_episodes(folder: Path, names: list[str] | None) -> Iterator[Episode]:
    """The golden cases (``cases.pt``): every reference with its prompt, the target, the authors' mask."""
    for case in torch.load(folder / "cases.pt", weights_only=True):
        if names and case["name"] not in names:
            continue
        references = [
            (image.numpy(), _prompt(p)) for image, p in zip(case["images"][:-1], case["prompts"], strict=True)
        ]
        yield Episode(case["name"], references, case["images"][-1].numpy(), case["expected_logits"][-1].numpy() > 0)


def _prompt(prompt: dict[str, Any]) -> dict[str, Any]:
    """A golden prompt as ``add_reference`` keywords."""
    kind = prompt["type"]
    if kind == "mask":
        return {"mask": prompt["mask"].numpy()}
    if kind == "box":
        return {"box": prompt["box"].tolist()}
    if kind == "point":
        return {"points": prompt["coords"].tolist(), "labels": prompt["labels"].tolist()}
    return {"scribble": prompt["coords"].tolist()}


def random_episodes(targets: int) -> Iterator[Episode]:
    """One mask reference (a scene's first class) and ``targets`` scenes of ``benchmarks/objects.py``."""
    rng = np.random.default_rng(0)
    image, labels = scene(rng, 1)
    for index in range(targets):
        yield Episode(f"scene {index}", [(image, {"mask": labels == 1})], scene(rng, 1)[0])


def score(model: torch.nn.Module, episodes: Iterator[Episode]) -> Scores:
    """Every episode's target with each row's parts in bf16 against fp32 (the episode's mask, else
    the all-fp32 row's). References and target are encoded once per encoder precision."""
    predictor = SansaPredictor(model, device="cpu", precision="bf16")
    scores = Scores()
    for episode in episodes:
        masks: dict[tuple[str, ...], np.ndarray] = {}
        for encoder in ((), ("encoder",)):
            predictor.reset()
            predictor.autocast_parts = frozenset(encoder)
            for image, prompt in episode.references:
                predictor.add_reference(image, label="object", **prompt)
            feats = predictor.encode([episode.target])
            for heads in HEADS:
                predictor.autocast_parts = frozenset(encoder + heads)
                size, name = episode.target.shape[:2], episode.name
                masks[encoder + heads] = predictor.segment_encoded(feats, [size], [name], objects=False)[0].mask(
                    "object"
                )
        expected = masks[()] if episode.expected is None else episode.expected
        for parts, got in masks.items():
            scores.add(parts, 100.0 * float((got & expected).sum()) / max(1, int((got | expected).sum())))
        print(
            f"  {episode.name}: " + ", ".join(f"{scores.points[p][-1]:.2f}" for p in ROWS), file=sys.stderr, flush=True
        )
    return scores


def tables(sets: dict[str, Scores]) -> list[str]:
    """The IoU table (a row per set of parts in bf16) and the verdict per part."""
    names = list(sets)
    lines = [
        "| in bf16 | " + " | ".join(f"{n}: worst IoU | {n}: mean IoU" for n in names) + " |",
        "|---|" + "---|---|" * len(names),
    ]
    for parts in ROWS:
        cells = [f"{min(s.points[parts]):.2f} | {np.mean(s.points[parts]):.2f}" for s in sets.values()]
        lines.append(f"| {' + '.join(parts) or 'nothing (fp32)'} | " + " | ".join(cells) + " |")
    lines += ["", "| part | " + " | ".join(f"{n}: loss alone / with the encoder" for n in names) + " | verdict |"]
    lines.append("|---|" + "---|" * len(names) + "---|")
    for (part,) in HEADS[1:3]:
        losses = [(_loss(s, (), (part,)), _loss(s, ("encoder",), ("encoder", part))) for s in sets.values()]
        verdict = "bf16" if max(max(pair) for pair in losses) <= MAX_LOSS_POINTS else "fp32"
        cells = " | ".join(f"{alone:.2f} / {joined:.2f}" for alone, joined in losses)
        lines.append(f"| {part} | {cells} | {verdict} |")
    return lines


def _loss(scores: Scores, before: tuple[str, ...], after: tuple[str, ...]) -> float:
    """The most IoU points any target loses from parts ``before`` in bf16 to parts ``after``."""
    return max(a - b for a, b in zip(scores.points[before], scores.points[after], strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--golden", type=Path, default=DEFAULT_GOLDEN, help="the golden fixtures' folder")
    parser.add_argument("--cases", nargs="*", help="golden cases by name (default: all)")
    parser.add_argument("--backbone", default="hiera_tiny", help="the random model (a real size, or test_tiny)")
    parser.add_argument("--targets", type=int, default=2, help="random-model targets")
    args = parser.parse_args()
    native = bool(cpu_flags() & set(NATIVE_CPU_FLAGS["bf16"]))
    print(machine() + ("" if native else "; bf16 emulated (no native bf16)"), flush=True)
    if not native:
        os.environ[CPU_FLAGS_ENV] = NATIVE_CPU_FLAGS["bf16"][0]  # emulated: the same numerics, slower
    torch.manual_seed(0)
    golden = SansaPredictor.from_checkpoint(
        args.golden / "sam2_checkpoint.pt",
        args.golden / "sansa_adapter.pth",
        model=str(args.golden / "sam2_config.yaml"),
        device="cpu",
    ).model
    sets = {"golden": score(golden, golden_episodes(args.golden, args.cases))}
    torch.manual_seed(0)
    sets[f"random {args.backbone}"] = score(build_sansa(args.backbone), random_episodes(args.targets))
    print("\n".join(tables(sets)))
    print(machine().split("; ")[-1].split(";")[0], flush=True)


if __name__ == "__main__":
    main()
