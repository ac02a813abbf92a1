"""How close the model runs to the machine: FLOPs counted, times measured, against matmul's rate.

1. This machine's dense matmul rate (``N x N @ N x N``, GFLOP/s) in fp32, and in bf16/fp16 where
   the device has them natively (see :func:`sansa.devices.resolve_precision`).
2. Per backbone (random weights, one 1024x1024 image): the image encoder's and memory
   attention's FLOPs (``torch.utils.flop_counter.FlopCounterMode``: matmuls, convolutions and
   attention; a multiply-add is 2 FLOPs), memory attention for K = 1 and K = 5 references;
   their measured times (min of ``--repeats``), the rate reached and its fraction of matmul's.

    python benchmarks/roofline.py                                   # Hiera-T and Hiera-L, CPU
    python benchmarks/roofline.py --backbones test_tiny --repeats 1 --matmul-size 256

Prints Markdown tables (paste into the README's "How close to the hardware").
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from sansa import SansaPredictor
from sansa.devices import autocast, resolve_device, resolve_precision
from sansa.errors import SansaError
from sansa.model.build import build_sansa

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def _best(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Min wall seconds of ``fn()`` over ``repeats`` runs, after one warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return min(times)


def native_precisions(device: torch.device) -> list[str]:
    """``fp32`` and whichever of bf16/fp16 the device runs natively."""
    found = ["fp32"]
    for name in ("bf16", "fp16"):
        try:
            resolve_precision(name, device)
        except SansaError:
            continue
        found.append(name)
    return found


def matmul_rate(device: torch.device, precision: str, size: int, repeats: int) -> float:
    """GFLOP/s of one ``size x size`` matmul in ``precision`` (``2 size^3`` FLOPs)."""
    a = torch.randn(size, size, device=device, dtype=DTYPES[precision])
    b = torch.randn(size, size, device=device, dtype=DTYPES[precision])
    return 2 * size**3 / _best(lambda: a @ b, device, repeats) / 1e9


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of ``fn()`` by torch's ``FlopCounterMode``, with attention run by its math backend:
    the CPU's fused attention kernel is not one the counter knows, so it would count 0 for it."""
    counter = FlopCounterMode(display=False)
    with sdpa_kernel(SDPBackend.MATH), counter:
        fn()
    return counter.get_total_flops()


def model_parts(backbone: str, device: torch.device, precisions: list[str], repeats: int) -> list[dict]:
    """FLOPs and best seconds of the image encoder (in each precision) and of memory attention
    (fp32, as the predictor runs it; K = 1 and 5 references)."""
    torch.manual_seed(0)
    model = build_sansa(backbone)
    predictor = SansaPredictor(model, device=device)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (1024, 1024, 3), dtype=np.uint8) for _ in range(6)]
    for label, count in (("K1", 1), ("K5", 5)):
        for image in images[1 : 1 + count]:
            predictor.add_reference(image, box=[100, 100, 600, 700], label=label)
    batch = predictor.transform.image(images[0])[None].to(device)
    parts = []
    with torch.inference_mode():
        for precision in precisions:
            with autocast(device, None if precision == "fp32" else DTYPES[precision]):
                encode = lambda: model.encode_images(batch)  # noqa: E731
                parts.append(
                    {
                        "part": "image encoder",
                        "precision": precision,
                        "flops": count_flops(encode),
                        "seconds": _best(encode, device, repeats),
                    }
                )
        feats = model.encode_images(batch)
        curr = feats.top.flatten(2).permute(2, 0, 1)
        pos = feats.top_pos.flatten(2).permute(2, 0, 1)
        for label in ("K1", "K5"):
            memory = predictor.memory(label)
            mem, mem_pos = memory.batch(1)

            def attend(mem=mem, mem_pos=mem_pos, memory=memory) -> torch.Tensor:
                return model.sam.memory_attention(
                    curr=[curr],
                    curr_pos=[pos],
                    memory=mem,
                    memory_pos=mem_pos,
                    num_obj_ptr_tokens=memory.num_obj_ptr_tokens,
                )

            parts.append(
                {
                    "part": f"memory attention, K = {label[1]}",
                    "precision": "fp32",
                    "flops": count_flops(attend),
                    "seconds": _best(attend, device, repeats),
                }
            )
    return parts


def _describe(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU, {torch.get_num_threads()} threads"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbones", nargs="+", default=["hiera_tiny", "hiera_large"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--matmul-size", type=int, default=2048)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    precisions = native_precisions(device)
    print(
        f"{_describe(device)}, torch {torch.__version__}; {args.matmul_size}x{args.matmul_size} matmul, "
        f"min of {args.repeats}\n"
    )
    print("| precision | matmul GFLOP/s |")
    print("|---|---|")
    rates = {}
    for precision in precisions:
        rates[precision] = matmul_rate(device, precision, args.matmul_size, args.repeats)
        print(f"| {precision} | {rates[precision]:.4g} |", flush=True)
    print("\nimage encoder (1 image, 1024x1024) and memory attention (1 target; fp32 as the predictor runs it)\n")
    print("| backbone | part | precision | GFLOP | seconds | GFLOP/s | of matmul's rate |")
    print("|---|---|---|---|---|---|---|")
    for backbone in args.backbones:
        for part in model_parts(backbone, device, precisions, args.repeats):
            rate = part["flops"] / part["seconds"] / 1e9
            print(
                f"| {backbone} | {part['part']} | {part['precision']} | {part['flops'] / 1e9:.1f} | "
                f"{part['seconds']:.3f} | {rate:.3g} | {100 * rate / rates[part['precision']]:.0f}% |",
                flush=True,
            )


if __name__ == "__main__":
    main()
