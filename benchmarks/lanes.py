"""Throughput of the CPU labelling loop: torch's threads on one target vs one thread per target on lanes.

Segments the same random 480x640 images three ways with one predictor (random weights) and prints
a Markdown table of images/s, measured in one run (ratios are what matter on a busy machine):

* ``all threads, 1 lane``: each model call at torch's default thread count (the old behaviour;
  results depend on that count),
* ``1 thread, 1 lane``: each call pinned to one intra-op thread (results independent of the machine),
* ``1 thread, N lanes``: pinned, N targets at once on N threads (``sansa.labeling.pipeline.lane_batches``).

    python benchmarks/lanes.py                       # Hiera-T, 8 images
    python benchmarks/lanes.py --backbone test_tiny --images 16
"""

from __future__ import annotations

import argparse
import os
import threading
import time

import numpy as np
import torch


def throughput(predictor, images: list[np.ndarray], lanes: int) -> float:
    """Images/s segmenting ``images`` on ``lanes`` threads (image ``i`` on lane ``i % lanes``)."""

    def lane(share: list[np.ndarray]) -> None:
        for image in share:
            predictor.segment(image)

    started = time.perf_counter()
    threads = [threading.Thread(target=lane, args=(images[k::lanes],)) for k in range(lanes)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return len(images) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="hiera_tiny")
    parser.add_argument("--images", type=int, default=8)
    args = parser.parse_args()
    from sansa.labeling.job import ModelSpec

    predictor = ModelSpec(backbone=args.backbone, random_weights=True, device="cpu").load()
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (480, 640, 3), dtype=np.uint8) for _ in range(args.images)]
    predictor.add_reference(images[0], box=[100, 80, 400, 360], label="thing")
    predictor.segment(images[0])  # warm-up
    cores = len(os.sched_getaffinity(0))
    rows = []
    predictor.cpu_threads = None
    rows.append((f"all threads ({torch.get_num_threads()}), 1 lane", throughput(predictor, images, 1)))
    predictor.cpu_threads = 1
    rows.append(("1 thread, 1 lane", throughput(predictor, images, 1)))
    rows.append((f"1 thread, {cores} lanes", throughput(predictor, images, cores)))
    base = rows[0][1]
    print(f"{args.backbone}, {args.images} images of 480x640, {cores} cores, load average {os.getloadavg()[0]:.1f}")
    print("| loop | images/s | vs all threads |\n|---|---:|---:|")
    for name, rate in rows:
        print(f"| {name} | {rate:.3f} | {rate / base:.2f}x |")


if __name__ == "__main__":
    main()
