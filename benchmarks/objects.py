"""What objects add to a target's time: ``segment(objects=False)`` against ``segment()`` (default
object options), in one run.

For each backbone (random weights: speed does not depend on them) and class count, the references
are encoded once; then every target (1024x768, in memory) is segmented without and with objects,
alternately, ``--repeats`` times; the table gives the median seconds of each and their ratio, with
the decoder prompts and objects per target. Objects cost decoder calls (clicks inside each class's
mask, on the target's existing features) and their assembly at the target's size.

    python benchmarks/objects.py                                   # the README table: hiera_tiny, hiera_large
    python benchmarks/objects.py --backbone test_tiny --targets 1 --repeats 1   # a quick check

It prints the CPU model, its flags and the load average first: on a busy machine only the ratio
(measured in the same run, interleaved) means much.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from planning import machine, scene  # noqa: E402  (a sibling script)

from sansa import SansaPredictor  # noqa: E402
from sansa.model.build import build_sansa  # noqa: E402
from sansa.records import ObjectOptions  # noqa: E402


def predictor_for(backbone: str, classes: int) -> tuple[SansaPredictor, list[np.ndarray]]:
    """A seeded random-weight predictor with one box reference per class, and the targets' pixels."""
    torch.manual_seed(0)
    predictor = SansaPredictor(build_sansa(backbone), device="cpu")
    rng = np.random.default_rng(0)
    image, boxes = scene(rng, classes)
    for c, box in enumerate(boxes):
        predictor.add_reference(np.asarray(image), box=box, label=f"class{c}")
    return predictor, [np.asarray(scene(rng, classes)[0]) for _ in range(8)]


def timed(predictor: SansaPredictor, target: np.ndarray, objects: bool) -> tuple[float, int]:
    started = time.perf_counter()
    segmentation = predictor.segment(target, objects=objects)
    return time.perf_counter() - started, len(segmentation.objects)


def row(backbone: str, classes: int, targets: int, repeats: int) -> str:
    """A markdown row: backbone, classes, seconds without and with objects, ratio, prompts, objects."""
    predictor, pixels = predictor_for(backbone, classes)
    timed(predictor, pixels[0], True)  # warm-up
    plain, with_objects, found = [], [], []
    for _ in range(repeats):
        for target in pixels[:targets]:
            plain.append(timed(predictor, target, False)[0])
            seconds, count = timed(predictor, target, True)
            with_objects.append(seconds)
            found.append(count)
    a, b = statistics.median(plain), statistics.median(with_objects)
    prompts = classes * ObjectOptions().points_per_class
    return f"| {backbone} | {classes} | {a:.3f} | {b:.3f} | {b / a:.3f} | <= {prompts} | {statistics.mean(found):.1f} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", nargs="+", default=["hiera_tiny", "hiera_large"])
    parser.add_argument("--classes", nargs="+", type=int, default=[1, 3])
    parser.add_argument("--targets", type=int, default=4, help="targets per row (at most 8)")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    print(machine(), flush=True)
    print("| backbone | classes | s/target | s/target with objects | ratio | prompts | objects/target |")
    print("|---|---|---|---|---|---|---|", flush=True)
    for backbone in args.backbone:
        for classes in args.classes:
            print(row(backbone, classes, min(args.targets, 8), args.repeats), flush=True)
    print(machine().split("; ")[-1], flush=True)  # the load average at the end too


if __name__ == "__main__":
    main()
