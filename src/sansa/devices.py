"""Choosing a torch device: ``auto`` prefers CUDA, then Apple's MPS, then the CPU."""

from __future__ import annotations

import torch

from sansa.errors import SansaError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


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
        raise SansaError(f"device: {device!r} asked for but no CUDA GPU is available (try --device cpu)")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise SansaError("device: 'mps' asked for but Apple's MPS is not available (try --device cpu)")
    try:
        return torch.device(name)
    except RuntimeError:
        raise SansaError(f"device: unknown device {device!r}; choose one of {', '.join(DEVICE_CHOICES)}") from None
