"""Build a SANSA model and load its weights: a SAM2 checkpoint plus an adapter file."""

from __future__ import annotations

import os

from sansa.model.build import build_sansa, resolve_backbone
from sansa.model.checkpoint import (
    infer_adapter_layout,
    load_adapter_weights,
    load_sam2_checkpoint,
    read_adapter_checkpoint,
)
from sansa.model.sansa import SansaModel


def load_sansa(
    sam2_checkpoint: str | os.PathLike,
    adapter_checkpoint: str | os.PathLike | None,
    model: str | os.PathLike = "hiera_large",
) -> SansaModel:
    """A SANSA model with Meta's SAM2 weights and (optionally) trained adapters, in eval mode.

    The adapter file's stages and channel factor are inferred from its tensor shapes and
    checked against the backbone; any mismatch is a :class:`~sansa.errors.CheckpointError`.
    """
    if adapter_checkpoint is None:
        sansa = build_sansa(model)
    else:
        weights = read_adapter_checkpoint(adapter_checkpoint)
        sam, stage_sizes, name = resolve_backbone(model)
        layout = infer_adapter_layout(weights, sam.image_encoder.trunk, stage_sizes, adapter_checkpoint, name)
        sansa = SansaModel(sam, stage_sizes, layout.stages, layout.channel_factor)
        load_adapter_weights(sansa, weights, adapter_checkpoint)
    load_sam2_checkpoint(sansa, sam2_checkpoint)
    return sansa.eval()
