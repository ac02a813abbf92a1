"""Training checkpoints: adapter tensors under the authors' keys, plus what is needed to resume.

A checkpoint is the authors' layout, so their loader (and :func:`sansa.model.checkpoint.read_adapter_checkpoint`)
reads it::

    {"model": {"sam.image_encoder.trunk.blocks.<i>.adapter.<...>": tensor, ...},   # adapters only
     "sansa": {"format": "sansa-train/1", "backbone": ..., "adapter_stages": [...], "channel_factor": ...,
               "config": {...}, "step": ..., "epoch": ..., "frozen_sha256": ...},
     "optimizer": ..., "lr_scheduler": ...}                                          # resumable files only

``out/last.pth`` (resumable, rewritten every ``save_every`` steps) and ``out/epoch_<e>.pth``
(adapters and metadata only) are written atomically. Before any save,
:class:`FrozenGuard` proves that nothing but the adapters changed since training began.
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sansa.atomic import write_bytes
from sansa.errors import CheckpointError
from sansa.model.adapters import adapter_state_dict, is_adapter_key
from sansa.model.checkpoint import load_adapter_weights, read_adapter_checkpoint, read_checkpoint
from sansa.model.sansa import SansaModel
from sansa.train.config import in_current_words

FORMAT = "sansa-train/1"
LAST = "last.pth"


def frozen_digest(model: torch.nn.Module) -> str:
    """SHA-256 over every non-adapter tensor of ``model`` (names, shapes, dtypes and bytes)."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        if is_adapter_key(name):
            continue
        data = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(data.shape)}:{data.dtype}".encode())
        digest.update(data.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


class FrozenGuard:
    """Remembers the frozen part of a model and proves, on demand, that it is untouched.

    Checks: every non-adapter parameter has ``requires_grad=False`` and no gradient, the optimiser
    holds adapter parameters only, and the non-adapter tensors hash to what they did at the start.
    """

    def __init__(self, model: SansaModel) -> None:
        self.model: SansaModel = model
        self.digest: str = frozen_digest(model)

    def check(self, optimizer: torch.optim.Optimizer | None = None) -> str:
        """Raise ``RuntimeError`` if anything but the adapters changed or could; returns the digest."""
        names = {id(p): n for n, p in self.model.named_parameters()}
        for name, param in self.model.named_parameters():
            if not is_adapter_key(name) and (param.requires_grad or param.grad is not None):
                raise RuntimeError(f"frozen parameter {name} is trainable or has a gradient")
        if optimizer is not None:
            for group in optimizer.param_groups:
                for param in group["params"]:
                    if not is_adapter_key(names.get(id(param), "")):
                        raise RuntimeError(f"the optimiser holds a non-adapter parameter {names.get(id(param))}")
        now = frozen_digest(self.model)
        if now != self.digest:
            raise RuntimeError("the frozen SAM2 weights changed during training (only adapters may change)")
        return now


@dataclass(frozen=True)
class TrainState:
    """What a resumable checkpoint restores: the next step to run (global) and the epoch it is in."""

    step: int
    epoch: int


def metadata(model: SansaModel, config: dict[str, Any], step: int, epoch: int, digest: str) -> dict[str, Any]:
    """The ``"sansa"`` entry: base model, adapter layout, resolved config, progress."""
    return {
        "format": FORMAT,
        "backbone": config.get("backbone"),
        "sam2_checkpoint": config.get("sam2_checkpoint"),
        "adapter_stages": list(model.adapter_stages),
        "channel_factor": model.channel_factor,
        "config": config,
        "step": step,
        "epoch": epoch,
        "frozen_sha256": digest,
    }


def save_checkpoint(
    path: str | os.PathLike[str],
    model: SansaModel,
    meta: dict[str, Any],
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
) -> Path:
    """Write adapters + metadata (+ optimiser and schedule for a resumable file), atomically."""
    path = Path(path)
    payload: dict[str, Any] = {
        "model": {k: v.detach().cpu().clone() for k, v in adapter_state_dict(model).items()},
        "sansa": meta,
    }
    if optimizer is not None:
        payload["optimizer"] = optimizer.state_dict()
    if scheduler is not None:
        payload["lr_scheduler"] = scheduler.state_dict()
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    write_bytes(path, buffer.getvalue())
    return path


def load_resume(
    path: str | os.PathLike[str],
    model: SansaModel,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    training_fields: dict[str, Any],
) -> TrainState:
    """Restore adapters, optimiser and schedule from a resumable checkpoint of the same run.

    Raises:
        CheckpointError: the file is not a resumable ``sansa train`` checkpoint, or was made
            with different training settings (``training_fields`` of the config).
    """

    what = "training checkpoint"
    obj = read_checkpoint(path, what)
    meta = obj.get("sansa")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or "optimizer" not in obj:
        raise CheckpointError(f"{what} {path}: not a resumable `sansa train` checkpoint")
    saved = in_current_words({k: v for k, v in meta["config"].items() if k in training_fields})
    changed = sorted(k for k in training_fields if saved.get(k) != training_fields[k])
    if changed:
        key = changed[0]
        raise CheckpointError(
            f"{what} {path}: was trained with {key}={saved.get(key)!r}, not {training_fields[key]!r}; "
            "resume with the same settings or choose another out=DIR"
        )
    load_adapter_weights(model, read_adapter_checkpoint(path), path)
    optimizer.load_state_dict(obj["optimizer"])
    scheduler.load_state_dict(obj["lr_scheduler"])
    return TrainState(int(meta["step"]), int(meta["epoch"]))
