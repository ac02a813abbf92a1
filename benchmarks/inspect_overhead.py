"""What ``sansa inspect`` costs beyond encoding: the share of its time that is not the model.

For ``N`` copies of the example targets (random weights), times in one process:

- ``segment``: encoding and segmenting the targets (what ``sansa segment`` does anyway);
- ``inspect``: :func:`sansa.inspection.inspect_features` without the plain SAM2 pass, which encodes
  and segments the same targets once and adds the PCA maps, pooling and the summary;
- ``save``: drawing and writing the five files.

    python benchmarks/inspect_overhead.py                          # test_tiny, 10 and 40 targets
    python benchmarks/inspect_overhead.py --backbone hiera_tiny --targets 10

Prints a Markdown table; take the ratios (the machine's load changes absolute times).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def measure(backbone: str, count: int) -> tuple[float, float, float]:
    """Seconds of segmenting, of inspecting and of saving ``count`` targets."""
    from sansa import SansaPredictor
    from sansa.inspection import inspect_features

    examples = REPO / "examples"
    targets = [str(p) for p in sorted((examples / "targets").glob("*.jpg"))]
    targets = (targets * (count // len(targets) + 1))[:count]
    predictor = SansaPredictor.from_checkpoint(None, model=backbone, device="cpu")
    predictor.add_reference(examples / "reference.png", mask=examples / "reference_mask.png", label="disc")
    predictor.add_reference(examples / "reference.png", box=[140, 82, 208, 150], label="block")
    start = time.perf_counter()
    list(predictor.segment_many(targets))
    segment = time.perf_counter() - start
    start = time.perf_counter()
    inspection = inspect_features(predictor, targets, reference_images=[examples / "reference.png"] * 2, plain=False)
    inspect = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        inspection.save(out)
        save = time.perf_counter() - start
    return segment, inspect, save


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="test_tiny")
    parser.add_argument("--targets", type=int, nargs="+", default=[10, 40])
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f}, backbone {args.backbone}, CPU")
    print("| targets | segment s | inspect s | inspect / segment | save s |")
    print("|---:|---:|---:|---:|---:|")
    for count in args.targets:
        segment, inspect, save = measure(args.backbone, count)
        print(f"| {count} | {segment:.1f} | {inspect:.1f} | {inspect / segment:.2f} | {save:.1f} |")


if __name__ == "__main__":
    main()
