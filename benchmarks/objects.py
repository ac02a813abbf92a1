"""What objects add to a target's time: ``segment(objects=False)`` against ``segment()`` (default
object options), in one run.

For each backbone and class count, the references are encoded once; then every target (1024x768,
in memory) is segmented without and with objects, alternately, ``--repeats`` times; the table gives
the median CPU seconds of each (this process's, at the predictor's one intra-op thread: on a
shared machine other jobs' load changes wall-clock times far more than objects do) and their
ratio, the wall-clock ratio too, and the decoder clicks and objects per target.
Objects cost decoder calls (clicks inside each class's mask, on the target's existing features)
and their assembly at the target's size.

Random weights (speed does not depend on them) would give noise class masks, which no user sees
and which make the assembly's work unlike a photo's. So each target's class masks are stubbed
with its true ones: every class is ``OBJECTS_PER_CLASS`` ellipses, two of them touching, drawn on
the target; the model still runs memory attention and the decoder for every class (their time
counts), and its logits are then replaced by the true masks' (+10 inside, -10 outside). The
clicks inside those masks are decoded on the target's real (random-weight) features.

    python benchmarks/objects.py                                   # the README table: hiera_tiny, hiera_large
    python benchmarks/objects.py --backbone test_tiny --targets 1 --repeats 1   # a quick check

It prints the CPU model, its flags and the load average first: on a busy machine only the ratio
(measured in the same run, interleaved) means much.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent))
from planning import CLASS_COLOURS, IMAGE_SIZE, machine  # noqa: E402  (a sibling script)

from sansa import SansaPredictor  # noqa: E402
from sansa.model.build import build_sansa  # noqa: E402
from sansa.model.sansa import MASK_LOGIT_BIAS, MASK_LOGIT_SCALE, Decoded  # noqa: E402

OBJECTS_PER_CLASS = 3


def scene(rng: np.random.Generator, classes: int) -> tuple[np.ndarray, np.ndarray]:
    """A 1024x768 RGB picture on a noisy background with ``OBJECTS_PER_CLASS`` ellipses per class
    (the first two touching), and its label map (``uint16 [H, W]``, ``c + 1`` = class ``c``)."""
    width, height = IMAGE_SIZE
    background = rng.integers(90, 170, (height // 8, width // 8, 3), dtype=np.uint8)
    image = Image.fromarray(background).resize(IMAGE_SIZE, Image.BILINEAR)
    labels = Image.new("I;16", IMAGE_SIZE)
    draw, draw_labels = ImageDraw.Draw(image), ImageDraw.Draw(labels)
    for c, colour in enumerate(CLASS_COLOURS[:classes]):
        boxes = []
        for k in range(OBJECTS_PER_CLASS):
            w, h = int(rng.integers(80, 160)), int(rng.integers(70, 140))
            if k == 1:  # touching the first, on its right
                x, y = boxes[0][2] - 10, boxes[0][1]
            else:
                x, y = int(rng.integers(0, width - 2 * w)), int(rng.integers(0, height - h))
            boxes.append([x, y, x + w, y + h])
            draw.ellipse(boxes[-1], fill=colour)
            draw_labels.ellipse(boxes[-1], fill=c + 1)
    return np.array(image), np.array(labels, dtype=np.uint16)


def stub_class_masks(predictor: SansaPredictor) -> list[np.ndarray]:
    """Make ``predictor``'s class logits the true masks' (see the module docstring): returns the
    list whose first item is the label map of the target segmented next."""
    truth: list[np.ndarray] = []
    model = predictor.model
    decode_targets = model.decode_targets
    grid = model.image_size // 4

    def with_true_masks(feats, memory, *dtypes) -> Decoded:  # type: ignore[no-untyped-def]
        out = decode_targets(feats, memory, *dtypes)  # the real work, timed
        classes = len(out.iou)  # one target at a time: the batch is the classes
        onehot = torch.stack([torch.from_numpy(truth[0] == c + 1) for c in range(classes)])[:, None].float()
        low = F.interpolate(onehot, (grid, grid), mode="bilinear", align_corners=False, antialias=True)
        logits = (low > 0.5).float() * MASK_LOGIT_SCALE + MASK_LOGIT_BIAS
        return dataclasses.replace(out, low_res_logits=logits.to(out.low_res_logits))

    model.decode_targets = with_true_masks  # type: ignore[method-assign]
    return truth


def count_prompts(predictor: SansaPredictor) -> list[int]:
    """Count the clicks ``predictor`` decodes for objects: returns the list they are appended to."""
    counts: list[int] = []
    decode_points = predictor.model.decode_points

    def counted(feats, point_coords, point_labels, multimask=True):  # type: ignore[no-untyped-def]
        counts.append(len(point_coords))
        return decode_points(feats, point_coords, point_labels, multimask)

    predictor.model.decode_points = counted  # type: ignore[method-assign]
    return counts


def predictor_for(
    backbone: str, classes: int
) -> tuple[SansaPredictor, list[np.ndarray], list[tuple[np.ndarray, np.ndarray]]]:
    """A seeded random-weight predictor with one mask reference per class, its truth slot, and 8 targets."""
    torch.manual_seed(0)
    predictor = SansaPredictor(build_sansa(backbone), device="cpu")
    rng = np.random.default_rng(0)
    image, label_map = scene(rng, classes)
    for c in range(classes):
        predictor.add_reference(image, mask=label_map == c + 1, label=f"class{c}")
    truth = stub_class_masks(predictor)
    return predictor, truth, [scene(rng, classes) for _ in range(8)]


def timed(
    predictor: SansaPredictor, truth: list[np.ndarray], target: tuple[np.ndarray, np.ndarray], objects: bool
) -> tuple[float, float, int]:
    """Segment one target: its process CPU seconds, wall seconds and object count."""
    truth[:] = [target[1]]
    cpu, wall = time.process_time(), time.perf_counter()
    segmentation = predictor.segment(target[0], objects=objects)
    return time.process_time() - cpu, time.perf_counter() - wall, len(segmentation.objects)


def row(backbone: str, classes: int, targets: int, repeats: int) -> str:
    """A markdown row: backbone, classes, CPU seconds without and with objects and their ratio, the
    wall-clock ratio, decoder clicks and objects per target."""
    predictor, truth, scenes = predictor_for(backbone, classes)
    timed(predictor, truth, scenes[0], True)  # warm-up
    prompts = count_prompts(predictor)
    plain: list[tuple[float, float, int]] = []
    with_objects: list[tuple[float, float, int]] = []
    for _ in range(repeats):
        for target in scenes[:targets]:
            plain.append(timed(predictor, truth, target, False))
            with_objects.append(timed(predictor, truth, target, True))
    cpu_a, cpu_b = (statistics.median(t[0] for t in runs) for runs in (plain, with_objects))
    wall_a, wall_b = (statistics.median(t[1] for t in runs) for runs in (plain, with_objects))
    clicks = sum(prompts) / len(with_objects)
    found = statistics.mean(t[2] for t in with_objects)
    return (
        f"| {backbone} | {classes} | {cpu_a:.3f} | {cpu_b:.3f} | {cpu_b / cpu_a:.3f} | {wall_b / wall_a:.3f} "
        f"| {clicks:.1f} | {found:.1f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", nargs="+", default=["hiera_tiny", "hiera_large"])
    parser.add_argument("--classes", nargs="+", type=int, default=[1, 3])
    parser.add_argument("--targets", type=int, default=4, help="targets per row (at most 8)")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    print(machine(), flush=True)
    print(
        "| backbone | classes | CPU s/target | CPU s/target with objects | ratio | wall-clock ratio "
        "| clicks/target | objects/target |"
    )
    print("|---|---|---|---|---|---|---|---|", flush=True)
    for backbone in args.backbone:
        for classes in args.classes:
            print(row(backbone, classes, min(args.targets, 8), args.repeats), flush=True)
    print(machine().split("; ")[-1], flush=True)  # the load average at the end too


if __name__ == "__main__":
    main()
