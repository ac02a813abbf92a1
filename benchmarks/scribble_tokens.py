"""Cost of the authors' evaluation scribble (every scribble pixel a point token) per support.

Each token count runs in its own process (so peak memory is its own): the reference image is
encoded once, then the prompt encoder + mask decoder run on a scribble of N point tokens; the
decode time and the process's peak memory are printed (N = 1, a single click, is the baseline).
SAM2's prompt encoder and mask decoder are the same for every backbone, so the decoder's
share does not depend on ``--backbone``.

    python benchmarks/scribble_tokens.py                          # hiera_tiny, random weights, CPU
    python benchmarks/scribble_tokens.py --device cuda --backbone hiera_large
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

TOKENS = (1, 64, 1000, 6100, 11000)


def measure(tokens: int, backbone: str, device: str) -> dict:
    import numpy as np
    import torch

    from sansa import SansaPredictor
    from sansa.model.build import build_sansa
    from sansa.records import Prompt

    predictor = SansaPredictor(build_sansa(backbone), device=device)
    image = np.random.default_rng(0).integers(0, 256, (640, 640, 3), dtype=np.uint8)
    xy = np.random.default_rng(1).uniform(100, 540, (tokens, 2)).astype(np.float32)
    with torch.inference_mode():
        feats = predictor.encode([image])
        predictor._decode_reference(feats, Prompt(scribble=xy[:1]), 640, 640)  # warm-up
        if device.startswith("cuda"):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        for _ in range(3):
            predictor._decode_reference(feats, Prompt(scribble=xy), 640, 640)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / 3
    peak = (
        torch.cuda.max_memory_allocated()
        if device.startswith("cuda")
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    )
    return {"tokens": tokens, "seconds": seconds, "peak_mib": peak / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="hiera_tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(measure(args.one, args.backbone, args.device)))
        return
    rows = []
    for tokens in TOKENS:
        out = subprocess.run(
            [sys.executable, __file__, "--one", str(tokens), "--backbone", args.backbone, "--device", args.device],
            capture_output=True,
            text=True,
            check=True,
        )
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    base = rows[0]
    print(f"| point tokens | decode s | peak MiB | extra MiB |  ({args.backbone}, {args.device})")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['tokens']} | {r['seconds']:.3f} | {r['peak_mib']:.0f} | {r['peak_mib'] - base['peak_mib']:+.0f} |")


if __name__ == "__main__":
    main()
