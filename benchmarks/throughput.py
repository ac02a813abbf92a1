"""Per-target time of SANSA's predictor against the authors' pipeline, on random weights.

The authors' pipeline treats every (references + target) episode as its own pseudo-video: the
references are encoded, decoded and written to memory again for every target. ``sansa`` encodes
references once, reuses their memory, and decodes every class from one encoding of the target.

    python benchmarks/throughput.py                         # Hiera-T and Hiera-L, 16 targets
    python benchmarks/throughput.py --backbones test_tiny --targets 4

Prints a Markdown table (paste it into the README) with ratios measured in the same run.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import torch

from sansa import SansaPredictor
from sansa.model.build import build_sansa
from sansa.model.sansa import SansaModel

IMAGE_HW = (480, 640)


def _images(count: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (*IMAGE_HW, 3), dtype=np.uint8) for _ in range(count)]


def _box() -> list[float]:
    return [100.0, 80.0, 400.0, 360.0]


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def authors_pipeline(model: SansaModel, predictor: SansaPredictor, refs: list[np.ndarray],
                     targets: list[np.ndarray]) -> None:
    """One pseudo-video per target: references encoded and written to memory every time."""
    transform = predictor.transform
    for target in targets:
        frames = torch.stack([transform.image(im) for im in [*refs, target]])
        prompts = [{"point_inputs": transform.point_prompt(_prompt(), *IMAGE_HW)} for _ in refs]
        with torch.inference_mode():
            model(frames, prompts, num_references=len(refs))


def _prompt():
    from sansa.records import Prompt

    return Prompt.create(box=_box())


def ours(predictor: SansaPredictor, refs: list[np.ndarray], targets: list[np.ndarray], labels: list[str],
         batch_size: int | None) -> None:
    """References encoded once (per class), targets in batches, all classes from one encoding."""
    predictor.reset()
    for i, ref in enumerate(refs):
        predictor.add_reference(ref, box=_box(), label=labels[i % len(labels)])
    for _ in predictor.segment_many(targets, batch_size=batch_size):
        pass


def component_times(model: SansaModel, predictor: SansaPredictor, image: np.ndarray,
                    repeats: int = 3) -> tuple[float, float]:
    """Seconds for the image encoder on one image, and for memory attention of one target (1-shot)."""
    predictor.reset()
    predictor.add_reference(image, box=_box())
    memory = predictor.memory("object")
    batch = predictor.transform.image(image)[None]
    with torch.inference_mode():
        encoder = min(_timed(lambda: model.encode_images(batch)) for _ in range(repeats))
        feats = model.encode_images(batch)
        curr = feats.top.flatten(2).permute(2, 0, 1)
        pos = feats.top_pos.flatten(2).permute(2, 0, 1)
        mem, mem_pos = memory.batch(1)
        attention = min(
            _timed(lambda: model.sam.memory_attention(curr=[curr], curr_pos=[pos], memory=mem, memory_pos=mem_pos,
                                                      num_obj_ptr_tokens=memory.num_obj_ptr_tokens))
            for _ in range(repeats)
        )
    return encoder, attention


def bench(backbone: str, num_targets: int, baseline_targets: int, batch_size: int | None) -> list[str]:
    """Per-target seconds of each workload, as Markdown rows.

    The authors' pipeline costs the same for every target (nothing is amortised), so it may be
    timed on fewer targets (``baseline_targets``). Four single-class passes cost four times the
    1-shot single-class run (same work, other references), so that run is timed once.
    """
    torch.manual_seed(0)
    model = build_sansa(backbone)
    predictor = SansaPredictor(model, device="cpu")
    targets = _images(num_targets, seed=1)
    refs5 = _images(5, seed=2)
    encoder, attention = component_times(model, predictor, targets[0])
    ours(predictor, refs5[:1], targets[:1], ["object"], 1)  # warm-up
    rows, single_class = [], 0.0
    for shots in (1, 5):
        refs = refs5[:shots]
        base = _timed(lambda: authors_pipeline(model, predictor, refs, targets[:baseline_targets]))  # noqa: B023
        base /= baseline_targets
        mine = _timed(lambda: ours(predictor, refs, targets, ["object"], batch_size)) / num_targets  # noqa: B023
        single_class = single_class or mine
        rows.append(f"| {backbone} | {shots}-shot, 1 class | {base:.2f} s (authors' pipeline) | {mine:.2f} s | "
                    f"{base / mine:.2f}x faster |")
    joint = _timed(lambda: ours(predictor, refs5[:4], targets, ["a", "b", "c", "d"], batch_size)) / num_targets
    rows.append(f"| {backbone} | 1-shot, 4 classes | {4 * single_class:.2f} s (4 single-class passes) | "
                f"{joint:.2f} s | {100 * joint / (4 * single_class):.0f}% of the time |")
    rows.append(f"| {backbone} | image encoder alone (1 image) | | {encoder:.2f} s | |")
    rows.append(f"| {backbone} | memory attention alone (1 target, 1-shot) | | {attention:.2f} s | |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbones", nargs="+", default=["hiera_tiny", "hiera_large"])
    parser.add_argument("--targets", type=int, default=16)
    parser.add_argument("--baseline-targets", type=int, default=None,
                        help="time the authors' pipeline on this many of the targets (default: all)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="targets encoded together (default: the predictor's, 1 on the CPU, 4 on a GPU)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    baseline = args.baseline_targets or args.targets
    print(f"CPU, {torch.get_num_threads()} threads, torch {torch.__version__}, {args.targets} targets of "
          f"{IMAGE_HW[1]}x{IMAGE_HW[0]} (authors' pipeline timed on {baseline}), batch {args.batch_size or 'default'}, "
          "per-target seconds (references included)\n")
    print("| backbone | workload | baseline | sansa | ratio |")
    print("|---|---|---|---|---|")
    for backbone in args.backbones:
        for row in bench(backbone, args.targets, args.baseline_targets or args.targets, args.batch_size):
            print(row, flush=True)


if __name__ == "__main__":
    main()
