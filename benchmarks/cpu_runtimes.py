"""The image encoder on the CPU under PyTorch, ONNX Runtime and OpenVINO, in one run.

Each backbone's adapted image encoder (random weights, seeded; one 1024x1024 image) is exported
to ONNX once; ONNX Runtime runs that file, OpenVINO converts it. Prints each runtime's best time
(min of ``--repeats`` after a warm-up), its speed-up over PyTorch and its largest difference from
PyTorch's features. Needs ``onnx``, ``onnxruntime``, ``openvino`` (not dependencies of sansa;
a runtime that is missing is reported as such):

    pip install onnx onnxruntime openvino      # the first two come with sansa-segment[dev]
    python benchmarks/cpu_runtimes.py                          # Hiera-T and Hiera-L
    python benchmarks/cpu_runtimes.py --backbones test_tiny --repeats 1
"""

from __future__ import annotations

import argparse
import importlib.metadata
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from sansa.model.build import build_sansa
from sansa.model.sansa import SansaModel


class Encoder(nn.Module):
    """``SansaModel.encode_images`` as a module with tensor outputs (what ONNX can hold)."""

    def __init__(self, model: SansaModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        feats = self.model.encode_images(images)
        return (*feats.high_res, feats.top, feats.top_pos)


def _best(fn: Callable[[], object], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def export(encoder: Encoder, example: torch.Tensor, path: Path) -> None:
    """ONNX (opset 17, TorchScript exporter) of ``encoder`` at ``example``'s fixed shape."""
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on sam2's Python conditionals (fixed shapes here)
        torch.onnx.export(
            encoder,
            (example,),
            str(path),
            opset_version=17,
            dynamo=False,
            input_names=["images"],
            output_names=["s0", "s1", "top", "top_pos"],
        )


def onnxruntime_runner(path: Path, threads: int) -> Callable[[np.ndarray], list[np.ndarray]]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3  # errors only: its shape-merge warnings on Hiera's graph are harmless
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {"images": x})


def openvino_runner(path: Path, threads: int) -> Callable[[np.ndarray], list[np.ndarray]]:
    import openvino as ov

    compiled = ov.Core().compile_model(
        str(path), "CPU", {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32"}
    )
    return lambda x: list(compiled(x).values())


RUNTIMES = {"onnxruntime": onnxruntime_runner, "openvino": openvino_runner}


def compare(backbone: str, repeats: int, workdir: Path) -> Iterator[str]:
    """Markdown rows, as measured: PyTorch, then each runtime's time, speed-up and max |difference|."""
    torch.manual_seed(0)
    model = build_sansa(backbone).eval()
    encoder = Encoder(model)
    size = model.image_size
    example = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        expected = [t.numpy() for t in encoder(example)]
        base = _best(lambda: encoder(example), repeats)
    yield f"| {backbone} | PyTorch {torch.__version__} | {base:.2f} s | 1.00x | |"
    path = workdir / f"{backbone}.onnx"
    export(encoder, example, path)
    for name, make in RUNTIMES.items():
        try:
            run = make(path, torch.get_num_threads())
        except ImportError:
            yield f"| {backbone} | {name} | not installed | | |"
            continue
        x = example.numpy()
        seconds = _best(lambda: run(x), repeats)  # noqa: B023
        diff = max(float(np.abs(got - want).max()) for got, want in zip(run(x), expected, strict=True))
        yield f"| {backbone} | {name} {_version(name)} | {seconds:.2f} s | {base / seconds:.2f}x | {diff:.1e} |"


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
    print(
        f"CPU, {torch.get_num_threads()} threads, image encoder on one image at the model's input size, "
        f"min of {args.repeats}\n"
    )
    print("| backbone | runtime | seconds | speed-up over PyTorch | max abs diff from PyTorch |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for backbone in args.backbones:
            for row in compare(backbone, args.repeats, Path(tmp)):
                print(row, flush=True)


if __name__ == "__main__":
    main()
