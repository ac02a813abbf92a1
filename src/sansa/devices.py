"""Choosing a torch device (``auto`` prefers CUDA, then Apple's MPS, then the CPU) and a precision."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Collection, Iterator
from contextlib import AbstractContextManager, nullcontext

import torch

from sansa.errors import SansaError
from sansa.vocab import Device, Precision

DEVICE_CHOICES = tuple(device.value for device in Device)


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"``/``None`` -> the best available device; otherwise check the named one exists."""
    if isinstance(device, torch.device):
        return device
    name = (device or "auto").lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SansaError(f"device: {device!r} asked for but no CUDA GPU is available (try device='cpu')")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise SansaError("device: 'mps' asked for but Apple's MPS is not available (try device='cpu')")
    try:
        return torch.device(name)
    except RuntimeError:
        raise SansaError(f"device: unknown device {device!r}; choose one of {', '.join(DEVICE_CHOICES)}") from None


# -- precision ------------------------------------------------------------------------------
PRECISIONS = tuple(precision.value for precision in Precision)
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
# CPU flags (/proc/cpuinfo; "bf16"/"fphp" are Arm's) under which oneDNN runs the format natively.
# Without them autocast still works, but emulated: bf16 then fp16 matmul ran 0.3 and 0.004 times
# the fp32 rate on CPUs tried for this project.
NATIVE_CPU_FLAGS = {"bf16": ("avx512_bf16", "amx_bf16", "bf16"), "fp16": ("avx512_fp16", "amx_fp16", "fphp")}
# CPU flags under which bf16 is not only native but much faster than fp32 (AMX tiles: bf16 matmul
# ran 6.2x the fp32 rate on this project's Xeon), so that ``precision="auto"`` picks it. AVX-512
# bf16 alone gained 1.4-1.8x on the encoder (Zen 4): native, but left to an explicit ``bf16``.
FAST_BF16_CPU_FLAGS = ("amx_bf16",)
#: the parts of the model that :func:`part_dtype` names
MODEL_PARTS = ("encoder", "memory_attention", "decoder")
# The parts that run under autocast at ``bf16``/``fp16``. The encoder is what bf16 is for (~90% of
# the FLOPs); memory attention and the target's decoder each where it kept every target's mask
# within 0.5 points of mask IoU of fp32 (benchmarks/bf16_iou.py on the golden cases and a random
# Hiera-T: memory attention lost at most 0.34 points, the decoder up to 2.66, so it stays fp32).
AUTOCAST_PARTS: tuple[str, ...] = ("encoder", "memory_attention")
# Testing only: space-separated flags used instead of /proc/cpuinfo's (to exercise the refusals and
# the autocast path on any machine).
CPU_FLAGS_ENV = "SANSA_TEST_CPU_FLAGS"


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (``flags``/``Features`` lines of ``/proc/cpuinfo``; empty where unreadable)."""
    override = os.environ.get(CPU_FLAGS_ENV)
    if override is not None:
        return frozenset(override.split())
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    return frozenset(value.split())
    except OSError:
        pass
    return frozenset()


def choose_precision(precision: str | None, device: torch.device) -> str:
    """The precision that runs: ``precision`` itself (lower case; ``None`` is ``fp32``), or for
    ``"auto"``: ``bf16`` where ``device`` computes it natively and fast (a CUDA GPU with bf16, a
    CPU with AMX; :data:`FAST_BF16_CPU_FLAGS`), ``fp32`` elsewhere."""
    name = (precision or "fp32").lower()
    if name != "auto":
        return name
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if device.type == "cpu" and cpu_flags() & set(FAST_BF16_CPU_FLAGS):
        return "bf16"
    return "fp32"


def resolve_precision(precision: str | None, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device`` (``None``: plain fp32); ``"auto"`` as
    :func:`choose_precision` picks.

    ``bf16``/``fp16`` run under ``torch.autocast`` (weights stay fp32). They are refused, with
    one line saying why, where the device has no native support: a CUDA GPU without bf16, or a
    CPU lacking the flags in :data:`NATIVE_CPU_FLAGS`.
    """
    name = choose_precision(precision, device)
    if name not in PRECISIONS:
        raise SansaError(f"precision: unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if name == "fp32":
        return None
    if device.type == "cuda" and name == "bf16" and not torch.cuda.is_bf16_supported():
        raise SansaError(
            f"precision: bf16 asked for but {torch.cuda.get_device_name(device)} has no bf16 "
            "(use precision='fp16' or precision='fp32')"
        )
    if device.type == "cpu":
        needed = NATIVE_CPU_FLAGS[name]
        if not cpu_flags() & set(needed):
            raise SansaError(
                f"precision: {name} on the CPU needs native {name} support, and this CPU lacks the "
                f"flags {' / '.join(needed)} (use precision='fp32' or a GPU)"
            )
    return _DTYPES[name]


def part_dtype(part: str, dtype: torch.dtype | None, parts: Collection[str] = AUTOCAST_PARTS) -> torch.dtype | None:
    """The autocast type of one model part (one of :data:`MODEL_PARTS`): ``dtype`` where ``parts``
    holds it, ``None`` (fp32) elsewhere."""
    if part not in MODEL_PARTS:
        raise ValueError(f"unknown model part {part!r}; one of {', '.join(MODEL_PARTS)}")
    return dtype if part in parts else None


def autocast(device: torch.device, dtype: torch.dtype | None) -> AbstractContextManager[None]:
    """``torch.autocast`` to ``dtype`` on ``device``'s type; a no-op for ``None`` (fp32)."""
    return nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


# -- threads --------------------------------------------------------------------------------
# Intra-op threads of every model call on the CPU. Float sums (matrix products, convolutions) are
# split by thread count, so another count gives other last bits in the logits (and, rarely, another
# mask pixel): at one fixed count a target's result is the same in every process and on every
# machine with the same CPU kind (one-process runs, Ray actors, resumed runs, the web app). The
# labelling run uses the cores for several targets at once instead (``sansa.labeling.pipeline``).
CPU_MODEL_THREADS = 1


@contextlib.contextmanager
def pinned_threads(device: torch.device, threads: int | None = CPU_MODEL_THREADS) -> Iterator[None]:
    """Run the block with ``threads`` intra-op threads on this thread when ``device`` is the CPU
    (restored afterwards); a no-op on GPUs and for ``threads=None`` (torch's current setting)."""
    if device.type != "cpu" or threads is None:
        yield
        return
    before = torch.get_num_threads()
    if before != threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        if before != threads:
            torch.set_num_threads(before)
