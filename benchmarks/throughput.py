"""Throughput of SANSA's predictor on random weights: against the authors' pipeline (CPU), the
per-target overhead outside the model, and a sweep of batch size x precision x torch.compile.

The authors' pipeline treats every (references + target) episode as its own pseudo-video: the
references are encoded, decoded and written to memory again for every target. ``sansa`` encodes
references once, reuses their memory, and decodes every class from one encoding of the target.

    python benchmarks/throughput.py                         # Hiera-T and Hiera-L, 16 targets
    python benchmarks/throughput.py --backbones test_tiny --targets 4
    python benchmarks/throughput.py --overhead-only         # predict vs its parts, batch 1
    python benchmarks/throughput.py --device cuda           # the sweep, on a GPU
    python benchmarks/throughput.py --device cpu --backbones test_tiny --batch-sizes 1 2 --targets 4

Without ``--device`` it prints the CPU comparison with the authors' pipeline, then the per-target
overhead rows; with ``--device`` the sweep: images/s for every backbone, batch size, precision,
compile on/off, 1-shot and 5-shot, 4 classes, and the peak GPU memory. Markdown tables (paste
them into the README), ratios measured in the same run.
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


def _timed(fn: Callable[[], object], device: torch.device | str = "cpu") -> float:
    """Wall seconds of ``fn()`` (a CUDA device is synchronised before and after)."""
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def _sync(device: torch.device | str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def authors_pipeline(
    model: SansaModel, predictor: SansaPredictor, refs: list[np.ndarray], targets: list[np.ndarray]
) -> None:
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


def ours(
    predictor: SansaPredictor,
    refs: list[np.ndarray],
    targets: list[np.ndarray],
    labels: list[str],
    batch_size: int | None,
) -> None:
    """References encoded once (per class), targets in batches, all classes from one encoding."""
    predictor.reset()
    for i, ref in enumerate(refs):
        predictor.add_reference(ref, box=_box(), label=labels[i % len(labels)])
    for _ in predictor.segment_many(targets, batch_size=batch_size):
        pass


def component_times(
    model: SansaModel, predictor: SansaPredictor, image: np.ndarray, repeats: int = 3
) -> tuple[float, float]:
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
            _timed(
                lambda: model.sam.memory_attention(
                    curr=[curr],
                    curr_pos=[pos],
                    memory=mem,
                    memory_pos=mem_pos,
                    num_obj_ptr_tokens=memory.num_obj_ptr_tokens,
                )
            )
            for _ in range(repeats)
        )
    return encoder, attention


def overhead_times(
    model: SansaModel, predictor: SansaPredictor, image: np.ndarray, repeats: int = 3
) -> dict[str, float]:
    """Seconds (min of ``repeats``) of ``predict`` on one target (1-shot, batch 1) and of its
    parts measured alone: the image encoder, memory attention and the decoder."""
    predictor.reset()
    predictor.add_reference(image, box=_box())
    memory = predictor.memory("object")
    batch = predictor.transform.image(image)[None].to(predictor.device)
    predictor.predict(image)  # warm-up
    with torch.inference_mode():
        feats = model.encode_images(batch)
        curr = feats.top.flatten(2).permute(2, 0, 1)
        pos = feats.top_pos.flatten(2).permute(2, 0, 1)
        mem, mem_pos = memory.batch(1)

        def attend() -> torch.Tensor:
            return model.sam.memory_attention(
                curr=[curr],
                curr_pos=[pos],
                memory=mem,
                memory_pos=mem_pos,
                num_obj_ptr_tokens=memory.num_obj_ptr_tokens,
            )

        fused = attend().permute(1, 2, 0).reshape(feats.top.shape)
        parts = {
            "encoder": lambda: model.encode_images(batch),
            "attention": attend,
            "decoder": lambda: model.decode(fused, feats, multimask=True),
            "predict": lambda: predictor.predict(image),
        }
        return {name: min(_timed(fn, predictor.device) for _ in range(repeats)) for name, fn in parts.items()}


def overhead_rows(backbone: str, device: str = "cpu", repeats: int = 3) -> list[str]:
    """Markdown rows: ``predict`` at batch 1 against encoder + memory attention + decoder alone."""
    torch.manual_seed(0)
    model = build_sansa(backbone)
    predictor = SansaPredictor(model, device=device)
    t = overhead_times(model, predictor, _images(1, seed=1)[0], repeats)
    parts = t["encoder"] + t["attention"] + t["decoder"]
    gap = t["predict"] - parts
    return [
        f"| {backbone} | `predict`, 1 target, 1-shot (batch 1) | {parts:.2f} s (encoder {t['encoder']:.2f} + "
        f"attention {t['attention']:.2f} + decoder {t['decoder']:.2f}) | {t['predict']:.2f} s | "
        f"overhead {gap:+.2f} s ({100 * gap / parts:+.0f}%) |"
    ]


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
        rows.append(
            f"| {backbone} | {shots}-shot, 1 class | {base:.2f} s (authors' pipeline) | {mine:.2f} s | "
            f"{base / mine:.2f}x faster |"
        )
    joint = _timed(lambda: ours(predictor, refs5[:4], targets, ["a", "b", "c", "d"], batch_size)) / num_targets
    rows.append(
        f"| {backbone} | 1-shot, 4 classes | {4 * single_class:.2f} s (4 single-class passes) | "
        f"{joint:.2f} s | {100 * joint / (4 * single_class):.0f}% of the time |"
    )
    rows.append(f"| {backbone} | image encoder alone (1 image) | | {encoder:.2f} s | |")
    rows.append(f"| {backbone} | memory attention alone (1 target, 1-shot) | | {attention:.2f} s | |")
    return rows


# -- the sweep: batch size x precision x compile ------------------------------------------------
def _compiled(model: SansaModel, enabled: bool) -> None:
    """Swap ``torch.compile`` of the image encoder and memory attention in (or back out)."""
    for name in ("image_encoder", "memory_attention"):
        module = getattr(model.sam, name)
        original = getattr(module, "_orig_mod", module)
        setattr(model.sam, name, torch.compile(original) if enabled else original)


def sweep_rows(
    backbone: str,
    device: str,
    batch_sizes: list[int],
    precisions: list[str],
    compiles: list[bool],
    shots_list: list[int],
    classes: int,
    num_targets: int,
) -> list[str]:
    """Markdown rows of images/s (targets segmented per second, every class) and peak GPU memory.

    Each configuration is warmed up on one batch first (for ``torch.compile``: its compilation),
    then timed over ``num_targets`` targets (at least one full batch).
    """
    from sansa.errors import SansaError

    torch.manual_seed(0)
    model = build_sansa(backbone)
    refs = _images(max(shots_list) * classes, seed=2)
    labels = [f"class {c}" for c in range(classes)]
    rows = []
    for precision in precisions:
        try:
            predictor = SansaPredictor(model, device=device, precision=precision)
        except SansaError as err:
            rows.append(f"| {backbone} | {precision} | | | | refused: {err} | |")
            print(rows[-1], flush=True)
            continue
        for compiled in compiles:
            _compiled(model, compiled)
            for shots in shots_list:
                predictor.reset()
                for i in range(shots * classes):
                    predictor.add_reference(refs[i], box=_box(), label=labels[i % classes])
                for batch in batch_sizes:
                    targets = _images(max(num_targets, batch), seed=1)
                    rows.append(_sweep_row(predictor, targets, batch, backbone, precision, compiled, shots))
                    print(rows[-1], flush=True)
        _compiled(model, False)
    return rows


def _sweep_row(
    predictor: SansaPredictor,
    targets: list[np.ndarray],
    batch: int,
    backbone: str,
    precision: str,
    compiled: bool,
    shots: int,
) -> str:
    device = predictor.device

    def run(images: list[np.ndarray]) -> None:
        for _ in predictor.segment_many(images, batch_size=batch):
            pass

    for _ in range(2 if compiled else 1):
        run(targets[:batch])  # warm-up (and compilation)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    seconds = _timed(lambda: run(targets), device)
    memory = f"{torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB" if device.type == "cuda" else "n/a"
    return (
        f"| {backbone} | {precision} | {'on' if compiled else 'off'} | {shots}-shot | {batch} | "
        f"{len(targets) / seconds:.2f} | {memory} |"
    )


def _device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return f"CPU, {torch.get_num_threads()} threads"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbones", nargs="+", default=["hiera_tiny", "hiera_large"])
    parser.add_argument(
        "--targets", type=int, default=None, help="targets per run (default: 16 for the comparison, 64 for the sweep)"
    )
    parser.add_argument(
        "--baseline-targets",
        type=int,
        default=None,
        help="time the authors' pipeline on this many of the targets (default: all)",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="targets encoded together (default: the predictor's, 1 on the CPU, 4 on a GPU)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--overhead-only", action="store_true", help="only the per-target overhead rows")
    sweep = parser.add_argument_group("the sweep (with --device)")
    sweep.add_argument("--device", help="run the sweep on this device (cuda, cpu, ...)")
    sweep.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 4, 8, 16])
    sweep.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16", "fp16"])
    sweep.add_argument("--compile", nargs="+", default=["off", "on"], choices=["off", "on"])
    sweep.add_argument("--shots", nargs="+", type=int, default=[1, 5])
    sweep.add_argument("--classes", type=int, default=4)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device:
        targets = args.targets or 64
        print(
            f"{_device_name(args.device)}, torch {torch.__version__}, {targets} targets of {IMAGE_HW[1]}x"
            f"{IMAGE_HW[0]} per configuration, {args.classes} classes, images/s (every class segmented)\n"
        )
        print("| backbone | precision | compile | references | batch | images/s | peak GPU memory |")
        print("|---|---|---|---|---|---|---|")
        for backbone in args.backbones:
            sweep_rows(
                backbone,
                args.device,
                args.batch_sizes,
                args.precisions,
                [c == "on" for c in args.compile],
                args.shots,
                args.classes,
                targets,
            )
        return
    targets = args.targets or 16
    baseline = args.baseline_targets or targets
    print(
        f"CPU, {torch.get_num_threads()} threads, torch {torch.__version__}, {targets} targets of "
        f"{IMAGE_HW[1]}x{IMAGE_HW[0]} (authors' pipeline timed on {baseline}), batch {args.batch_size or 'default'}, "
        "per-target seconds (references included)\n"
    )
    print("| backbone | workload | baseline | sansa | ratio |")
    print("|---|---|---|---|---|")
    for backbone in args.backbones:
        rows = [] if args.overhead_only else bench(backbone, targets, baseline, args.batch_size)
        for row in rows + overhead_rows(backbone):
            print(row, flush=True)


if __name__ == "__main__":
    main()
