"""One planning number per machine: images/s of a whole `sansa segment` run.

Hiera-L (random weights: speed does not depend on them) on 100 targets of 1024x768 JPEG, 1-shot and
5-shot, 1 and 3 classes, in fp32 and in bf16 (where this machine computes bf16 natively; refused
rows say why). Each row is one run of :func:`sansa.labeling.run` into a fresh folder with the
default formats, as `sansa segment` does: model load, references, every target read, segmented
and written, and the dataset files. ``images/s`` counts that whole wall time; ``loop`` only the
target loop (what a large folder tends to).

    python benchmarks/planning.py                               # the README table (about an hour per CPU row set)
    python benchmarks/planning.py --backbone test_tiny --targets 4   # a quick check

It prints the CPU model, its vector/matrix flags and the load average first: paste the table into
the README's planning table with a row per CPU kind (AVX2 only, AVX-512 with bf16, AMX).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from sansa import labeling
from sansa.devices import cpu_flags, resolve_device, resolve_precision
from sansa.errors import SansaError
from sansa.labeling import ExportOptions, Job, ModelSpec, ReferenceEntry
from sansa.records import Prompt

IMAGE_SIZE = (1024, 768)  # width, height
CLASS_COLOURS = [(200, 40, 40), (40, 160, 60), (50, 70, 200)]
SHOWN_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_tile", "amx_fp16")


def scene(rng: np.random.Generator, classes: int) -> tuple[Image.Image, list[list[float]]]:
    """A 1024x768 picture with one ellipse per class on a noisy background, and each ellipse's box."""
    width, height = IMAGE_SIZE
    background = rng.integers(90, 170, (height // 8, width // 8, 3), dtype=np.uint8)
    image = Image.fromarray(background).resize(IMAGE_SIZE, Image.BILINEAR)
    draw, boxes = ImageDraw.Draw(image), []
    for colour in CLASS_COLOURS[:classes]:
        w, h = rng.integers(120, 320), rng.integers(100, 260)
        x, y = rng.integers(0, width - w), rng.integers(0, height - h)
        draw.ellipse([x, y, x + w, y + h], fill=colour)
        boxes.append([float(x), float(y), float(x + w), float(y + h)])
    return image, boxes


def write_inputs(folder: Path, targets: int, shots: int, classes: int, seed: int = 0) -> list[ReferenceEntry]:
    """``targets/`` of JPEGs, ``refs/`` of ``shots`` references per class; returns the reference entries."""
    rng = np.random.default_rng(seed)
    (folder / "targets").mkdir(parents=True)
    (folder / "refs").mkdir()
    for index in range(targets):
        scene(rng, classes)[0].save(folder / "targets" / f"{index:04d}.jpg", quality=90)
    entries = []
    for shot in range(shots):
        image, boxes = scene(rng, classes)
        path = folder / "refs" / f"ref{shot}.jpg"
        image.save(path, quality=90)
        entries += [ReferenceEntry(str(path), f"class{c}", Prompt.create(box=box)) for c, box in enumerate(boxes)]
    return entries


def timed_run(folder: Path, references: list[ReferenceEntry], backbone: str, precision: str) -> dict[str, float]:
    """One `sansa segment` run into ``folder/out``: whole wall seconds and the target loop's."""
    model = ModelSpec(backbone=backbone, random_weights=True, device="cpu", precision=precision)
    job = Job(
        references=references,
        targets=[str(folder / "targets")],
        out=str(folder / f"out-{precision}"),
        export=ExportOptions(),
        model=model,
    )
    started = time.perf_counter()
    result = labeling.run(job, notes=lambda _: None)
    return {"wall": time.perf_counter() - started, "loop": result.outcome.seconds, "count": len(result.outcome.written)}


def machine() -> str:
    """CPU model, the flags that decide bf16/fp16 speed, threads and load average."""
    model = next((line.split(":", 1)[1].strip() for line in _cpuinfo() if line.startswith("model name")), "")
    flags = " ".join(f for f in SHOWN_FLAGS if f in cpu_flags()) or "none of " + " ".join(SHOWN_FLAGS)
    load = " ".join(f"{v:.1f}" for v in os.getloadavg())
    return (
        f"CPU: {model or platform.processor() or 'unknown'}; flags: {flags}; {torch.get_num_threads()} "
        f"threads; torch {torch.__version__}; load average {load}"
    )


def _cpuinfo() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []


def rows(
    backbone: str, targets: int, shots_list: list[int], classes_list: list[int], precisions: list[str]
) -> list[str]:
    """Markdown rows: shots, classes, precision, images/s end to end, images/s of the loop."""
    out = []
    for shots in shots_list:
        for classes in classes_list:
            with tempfile.TemporaryDirectory() as tmp:
                references = write_inputs(Path(tmp), targets, shots, classes)
                for precision in precisions:
                    try:
                        resolve_precision(precision, resolve_device("cpu"))
                    except SansaError as err:
                        out.append(f"| {shots} | {classes} | {precision} | refused: {err} | |")
                        continue
                    run = timed_run(Path(tmp), references, backbone, precision)
                    out.append(
                        f"| {shots} | {classes} | {precision} | {run['count'] / run['wall']:.3f} "
                        f"| {run['count'] / run['loop']:.3f} |"
                    )
                    print(out[-1], flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="hiera_large")
    parser.add_argument("--targets", type=int, default=100)
    parser.add_argument("--shots", type=int, nargs="+", default=[1, 5])
    parser.add_argument("--classes", type=int, nargs="+", default=[1, 3], choices=[1, 2, 3])
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    args = parser.parse_args()
    print(machine())
    print(f"{args.backbone}, {args.targets} targets of {IMAGE_SIZE[0]}x{IMAGE_SIZE[1]} JPEG, default formats\n")
    table = rows(args.backbone, args.targets, args.shots, args.classes, args.precisions)
    print("\n| shots | classes | precision | images/s (whole run) | images/s (target loop) |")
    print("|---|---|---|---|---|")
    print("\n".join(table))


if __name__ == "__main__":
    main()
