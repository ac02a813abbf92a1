"""Labelling on Ray against one process: per-target time, bytes per task, the driver's share.

Runs the same job (random-weight model, random images, one box reference) three ways into fresh
folders: one process (``run(job)``), then Ray with 1 and 2 CPU actors (``run(job, "ray")``) on a
local Ray instance started here (its start-up is not counted; each run's actor start-up is).
Prints a Markdown table (paste it into the README) with ratios measured in the same run, the
bytes a task ships against the references' memory shipped once, and the driver's share of wall
time (prepare, reference encoding, dataset files: everything but the actors' map phase).

    python benchmarks/scale.py                              # Hiera-T, 24 targets of 480x640
    python benchmarks/scale.py --backbone test_tiny --targets 8
    python benchmarks/scale.py --gpus-per-actor 1 --actors 1 2   # on a GPU machine

Needs ``pip install 'sansa-segment[scale]'``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_HW = (480, 640)


def make_data(folder: Path, count: int) -> tuple[Path, Path]:
    """``ref.jpg`` and ``targets/t000.jpg ...``: smooth random scenes (JPEG, as photos are)."""
    rng = np.random.default_rng(0)
    (folder / "targets").mkdir(parents=True)
    for index in range(count + 1):
        base = rng.normal(120, 30, (IMAGE_HW[0] // 16, IMAGE_HW[1] // 16, 3)).clip(0, 255).astype(np.uint8)
        image = Image.fromarray(base).resize(IMAGE_HW[::-1], Image.BILINEAR)
        image.save(folder / ("ref.jpg" if index == 0 else f"targets/t{index - 1:03d}.jpg"), quality=90)
    return folder / "ref.jpg", folder / "targets"


def make_job(reference: Path, targets: Path, out: Path, backbone: str, batch_size: int | None):
    from sansa.labeling.job import ExportOptions, Job, ModelSpec, ReferenceEntry
    from sansa.records import Prompt

    entry = ReferenceEntry(str(reference), "thing", Prompt.create(box=[100, 80, 400, 360]))
    return Job(
        references=[entry],
        targets=[str(targets)],
        out=str(out),
        batch_size=batch_size,
        export=ExportOptions(formats=("png", "coco", "overlay")),
        model=ModelSpec(backbone=backbone, random_weights=True, device="cpu"),
    )


def timed_local(job) -> dict:
    from sansa import labeling

    started = time.perf_counter()
    result = labeling.run(job, notes=lambda _: None)
    wall = time.perf_counter() - started
    return {"wall": wall, "map": result.outcome.seconds, "written": len(result.outcome.written)}


def timed_ray(job, actors: int, gpus: float) -> dict:
    """``run_ray``'s steps, each timed: the driver's steps against the actors' map phase."""
    from sansa import labeling
    from sansa.labeling import engine
    from sansa.labeling.ray import RayOptions, label_batches

    options = RayOptions(actors=actors, gpus_per_actor=gpus)
    started = time.perf_counter()
    plan = engine.prepare(job, lambda _: None)
    try:
        predictor = job.model.load("cpu")
        references = engine.encode_references(predictor, plan)
        files = engine.save_reference_pictures(plan, references)
        outcome = labeling.Outcome()
        map_started = time.perf_counter()
        for batch_outcome in label_batches(job, plan.batches, plan.inputs_digest, references, options):
            outcome.add(batch_outcome)
        map_seconds = time.perf_counter() - map_started
        engine.finalise(plan, outcome, references, files, options.device, reload=True)
    finally:
        plan.close()
    wall = time.perf_counter() - started
    return {
        "wall": wall,
        "map": map_seconds,
        "driver": wall - map_seconds,
        "written": len(outcome.written),
        "task_bytes": _task_bytes(plan.batches),
        "memory_bytes": _memory_bytes(references),
    }


def _task_bytes(batches) -> float:
    """Mean bytes of what one task ships per fixed batch: its JSON row (paths, names, stems)."""
    return float(np.mean([len(json.dumps(b.to_dict()).encode()) for b in batches]))


def _memory_bytes(references) -> int:
    """Bytes of the references' memory as put in the object store, once."""
    import ray

    from sansa.labeling.ray import shippable

    return len(ray.cloudpickle.dumps([shippable(r) for r in references]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="hiera_tiny")
    parser.add_argument("--targets", type=int, default=24)
    parser.add_argument("--actors", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--gpus-per-actor", type=float, default=0.0)
    parser.add_argument("--batch-size", type=int, default=None)
    args = parser.parse_args()

    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        reference, targets = make_data(Path(tmp), args.targets)
        local = timed_local(make_job(reference, targets, Path(tmp) / "local", args.backbone, args.batch_size))
        for actors in args.actors:
            job = make_job(reference, targets, Path(tmp) / f"ray{actors}", args.backbone, args.batch_size)
            rows.append((actors, timed_ray(job, actors, args.gpus_per_actor)))
    ray.shutdown()

    n = args.targets
    device = "GPU" if args.gpus_per_actor else "CPU"
    print(
        f"{args.backbone}, random weights, {n} targets of {IMAGE_HW[1]}x{IMAGE_HW[0]}, {os.cpu_count()} cores, "
        f"{device} actors\n"
    )
    print(
        "| run | wall s | per target s | vs one process | driver share | bytes per task | references' memory (once) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    single = local["wall"] / n
    print(f"| one process | {local['wall']:.1f} | {single:.2f} | 1.00x | 100% | - | - |")
    for actors, r in rows:
        per = r["wall"] / n
        print(
            f"| Ray, {actors} actor{'s' if actors > 1 else ''} | {r['wall']:.1f} | {per:.2f} | {single / per:.2f}x | "
            f"{r['driver'] / r['wall']:.0%} | {r['task_bytes']:.0f} | {r['memory_bytes'] / 1e6:.1f} MB |"
        )
    print("\nper target = wall / targets, actor start-up included; driver share = wall outside the actors' map phase")


if __name__ == "__main__":
    main()
