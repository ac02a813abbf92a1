"""The image encoder on the CPU under PyTorch, ONNX Runtime and OpenVINO, in one run.

Each backbone's adapted image encoder (random weights, seeded; one 1024x1024 image) is exported
to ONNX once, as ``--runtime onnxruntime`` exports it (:mod:`sansa.model.onnx_encoder`); ONNX
Runtime runs that file, OpenVINO converts it. Prints each runtime's best time (min of
``--repeats`` after a warm-up), its speed-up over PyTorch and its largest difference from
PyTorch's features; then a whole ``predict`` (1 target, 1-shot, 640x480) with each
``runtime`` of :class:`~sansa.SansaPredictor`. Needs ``onnx`` and ``onnxruntime``
(``pip install 'sansa-segment[onnx]'``) and ``openvino`` (not a dependency of sansa; a runtime
that is missing is reported as such):

    pip install 'sansa-segment[onnx]' openvino
    python benchmarks/cpu_runtimes.py                          # Hiera-T and Hiera-L
    python benchmarks/cpu_runtimes.py --backbones test_tiny --repeats 1
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

from sansa import SansaPredictor
from sansa.model.build import build_sansa
from sansa.model.onnx_encoder import EncoderGraph, exported_encoder


def _best(fn: Callable[[], object], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def onnxruntime_runner(path: Path, threads: int) -> Callable[[np.ndarray], list[np.ndarray]]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {"images": x})


def openvino_runner(path: Path, threads: int) -> Callable[[np.ndarray], list[np.ndarray]]:
    import openvino as ov

    compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_NUM_THREADS": threads,
                                                          "INFERENCE_PRECISION_HINT": "f32"})
    return lambda x: list(compiled(x).values())


RUNTIMES = {"onnxruntime": onnxruntime_runner, "openvino": openvino_runner}


def compare(backbone: str, repeats: int, workdir: Path) -> Iterator[str]:
    """Markdown rows, as measured: PyTorch, then each runtime's time, speed-up and max |difference|."""
    torch.manual_seed(0)
    model = build_sansa(backbone).eval()
    encoder = EncoderGraph(model)
    size = model.image_size
    example = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        expected = [t.numpy() for t in encoder(example)]
        base = _best(lambda: encoder(example), repeats)
    yield f"| {backbone} | image encoder | PyTorch {torch.__version__} | {base:.2f} s | 1.00x | |"
    path = exported_encoder(model, workdir)
    for name, make in RUNTIMES.items():
        try:
            run = make(path, torch.get_num_threads())
        except ImportError:
            yield f"| {backbone} | image encoder | {name} | not installed | | |"
            continue
        x = example.numpy()
        seconds = _best(lambda: run(x), repeats)  # noqa: B023
        diff = max(float(np.abs(got - want).max()) for got, want in zip(run(x), expected, strict=True))
        yield (f"| {backbone} | image encoder | {name} {_version(name)} | {seconds:.2f} s | "
               f"{base / seconds:.2f}x | {diff:.1e} |")
    yield from compare_predict(model, backbone, repeats, workdir)


def compare_predict(model: torch.nn.Module, backbone: str, repeats: int, workdir: Path) -> Iterator[str]:
    """Rows for a whole ``predict`` (1 target, 1-shot box) under each predictor runtime."""
    rng = np.random.default_rng(0)
    reference, target = (rng.integers(0, 256, (480, 640, 3), dtype=np.uint8) for _ in range(2))
    times, logits = {}, {}
    for runtime in ("torch", "onnxruntime"):
        os.environ["SANSA_CACHE"] = str(workdir)  # the file exported above is found there
        predictor = SansaPredictor(model, device="cpu", runtime=runtime)
        predictor.add_reference(reference, box=[150, 100, 400, 300])
        times[runtime] = _best(lambda: predictor.predict(target), repeats)  # noqa: B023
        logits[runtime] = predictor.predict(target).logits
    diff = float(np.abs(logits["onnxruntime"] - logits["torch"]).max())
    yield f"| {backbone} | `predict`, 1 target | torch | {times['torch']:.2f} s | 1.00x | |"
    yield (f"| {backbone} | `predict`, 1 target | onnxruntime | {times['onnxruntime']:.2f} s | "
           f"{times['torch'] / times['onnxruntime']:.2f}x | {diff:.1e} (logits) |")


def _version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbones", nargs="+", default=["hiera_tiny", "hiera_large"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for every runtime")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"CPU, {torch.get_num_threads()} threads, image encoder on one image at the model's input size, "
          f"min of {args.repeats}\n")
    print("| backbone | what | runtime | seconds | speed-up over PyTorch | max abs diff from PyTorch |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for backbone in args.backbones:
            for row in compare(backbone, args.repeats, Path(tmp)):
                print(row, flush=True)


if __name__ == "__main__":
    main()
