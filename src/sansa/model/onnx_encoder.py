"""The image encoder under ONNX Runtime: the CPU option ``runtime="onnxruntime"``.

On a CPU the image encoder is ~90% of a target's time, and ONNX Runtime ran it 1.5-1.8x faster
than PyTorch here (``benchmarks/cpu_runtimes.py``) with the same features to ~1e-5. Only the image
encoder moves: memory attention and the decoder stay in PyTorch, so the model's state dict,
checkpoints and every other code path are unchanged.

The encoder is exported once per set of weights (TorchScript exporter, opset 17, one image of
``[1, 3, S, S]``) to ``<cache>/onnx/<digest>.onnx``, where the digest covers the encoder's
weights, the image size and the torch version; later runs load that file. A batch runs one image
at a time (on the CPU, batches are no faster).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sansa.errors import SansaError
from sansa.model.sansa import ImageFeatures, SansaModel

RUNTIMES = ("torch", "onnxruntime")
OPSET = 17
EXPORT_FORMAT = 1  # bump when the exported graph's inputs or outputs change
_INSTALL = "pip install 'sansa-segment[onnx]'"


def resolve_runtime(runtime: str | None, device: torch.device, precision: str) -> str:
    """Check ``runtime`` (``torch``, the default, or ``onnxruntime``) fits the device and precision."""
    name = (runtime or "torch").lower()
    if name not in RUNTIMES:
        raise SansaError(f"runtime: unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
    if name == "onnxruntime":
        if device.type != "cpu":
            raise SansaError(f"runtime: onnxruntime runs the encoder on the CPU, not {device.type} "
                             "(use --device cpu, or --runtime torch)")
        if precision != "fp32":
            raise SansaError(f"runtime: onnxruntime runs fp32 only, not {precision} (use --precision fp32)")
        _import_onnxruntime()
    return name


class EncoderGraph(nn.Module):
    """:meth:`SansaModel.encode_images` with tensor outputs, which is what ONNX can hold."""

    def __init__(self, model: SansaModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        feats = self.model.encode_images(images)
        return (*feats.high_res, feats.top, feats.top_pos)


class OnnxImageEncoder:
    """``model.encode_images`` run by an ONNX Runtime session on the CPU.

    Args:
        model: the (CPU, eval) model whose image encoder is exported.
        cache_dir: where exported files are kept (default: ``onnx/`` in sansa's cache,
            ``$SANSA_CACHE`` or ``~/.cache/huggingface/sansa``).
        threads: ONNX Runtime's intra-op threads (default: torch's ``get_num_threads()``).
    """

    def __init__(self, model: SansaModel, cache_dir: str | os.PathLike | None = None,
                 threads: int | None = None) -> None:
        ort = _import_onnxruntime()
        self.path = exported_encoder(model, cache_dir)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.log_severity_level = 3  # errors only: its shape-merge warnings on Hiera's graph are harmless
        self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])

    def __call__(self, images: torch.Tensor) -> ImageFeatures:
        """``[B, 3, S, S]`` normalised images -> their :class:`ImageFeatures` (fp32, CPU)."""
        frames = [self._one(image[None]) for image in images.detach().cpu()]
        return ImageFeatures.cat(frames)

    def _one(self, image: torch.Tensor) -> ImageFeatures:
        outputs = [torch.from_numpy(x) for x in self.session.run(None, {"images": image.numpy()})]
        return ImageFeatures(high_res=outputs[:-2], top=outputs[-2], top_pos=outputs[-1])


def exported_encoder(model: SansaModel, cache_dir: str | os.PathLike | None = None) -> Path:
    """The ONNX file of ``model``'s image encoder, exported now unless already cached."""
    from sansa.hub.cache import default_cache_dir

    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir() / "onnx"
    path = folder / f"image-encoder-{encoder_digest(model)}.onnx"
    if path.is_file():
        return path
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=folder, prefix=".export-", suffix=".onnx")
        os.close(handle)
    except OSError as err:
        raise SansaError(f"runtime: cannot write the exported encoder in {folder} ({err.strerror}); "
                         "set SANSA_CACHE to a writable folder") from None
    try:
        _export(model, Path(temporary))
        os.replace(temporary, path)  # whole or absent: a killed export leaves no half file behind
    finally:
        Path(temporary).unlink(missing_ok=True)
    return path


def encoder_digest(model: SansaModel) -> str:
    """A hex digest of what the exported graph depends on: the model's weights (names, shapes,
    values; the encoder uses the decoder's ``conv_s0/s1`` too, so all of them), the input size,
    torch's version and :data:`EXPORT_FORMAT`."""
    digest = hashlib.sha256(f"{EXPORT_FORMAT}|{model.image_size}|{torch.__version__}|{OPSET}".encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:24]


def _export(model: SansaModel, path: Path) -> None:
    size = model.image_size
    example = torch.zeros(1, 3, size, size)
    graph = EncoderGraph(model).eval()
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on sam2's Python conditionals (fixed shapes here)
        torch.onnx.export(graph, (example,), str(path), opset_version=OPSET, dynamo=False,
                          input_names=["images"])


def _import_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise SansaError(f"runtime: onnxruntime is not installed: {_INSTALL}") from None
    return onnxruntime

