"""AdaptFormer adapters added from outside to the blocks of SAM2's Hiera trunk.

In an adapted block, after the attention residual ``x``::

    x = x + mlp(norm2(x)) + adapter(x)        adapter(x) = 0.1 * up(relu(down(layer_norm(x))))

``sam2``'s block code is not edited: a pre-hook on ``block.norm2`` keeps the residual stream
``x`` it reads, and a forward hook on the block adds ``adapter(x)`` to the block's output, in
the same order of additions as the authors' code (the residual is kept per thread, and so is
:func:`adapters_bypassed`, so threads may run the same model at once: the labelling run's model
lanes, a plain-SAM2 view beside them). The adapter is registered as
``block.adapter``, so its state-dict keys are the authors'
(``sam.image_encoder.trunk.blocks.<i>.adapter.{adapter_layer_norm_before,down_proj,up_proj}.*``).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from sansa.model._sam2 import Hiera, MultiScaleBlock

ADAPTER_SCALE = 0.1
_RESIDUALS = threading.local()  # per thread: id(block.norm2) -> the residual stream it read
_BYPASSED = threading.local()  # per thread: ids of the adapters adapters_bypassed turned off here


class Adapter(nn.Module):
    """Pre-norm bottleneck MLP: ``[..., width] -> [..., width]``.

    Args:
        width: the block's output width.
        bottleneck: the hidden width.
        scale: factor on the output (0.1 in SANSA).

    The up-projection starts at zero (weight and bias), so a fresh adapter adds exactly 0.
    ``enabled`` (a plain attribute, not in the state dict) turns it off for every thread;
    :func:`adapters_bypassed` turns it off for the calling thread only.
    """

    def __init__(self, width: int, bottleneck: int, scale: float = ADAPTER_SCALE) -> None:
        super().__init__()
        self.scale: float = scale
        self.enabled: bool = True
        self.adapter_layer_norm_before: nn.LayerNorm = nn.LayerNorm(width)
        self.down_proj: nn.Linear = nn.Linear(width, bottleneck)
        self.up_proj: nn.Linear = nn.Linear(bottleneck, width)
        with torch.no_grad():
            nn.init.kaiming_uniform_(self.down_proj.weight, a=math.sqrt(5))
            nn.init.zeros_(self.down_proj.bias)
            nn.init.zeros_(self.up_proj.weight)
            nn.init.zeros_(self.up_proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.up_proj(torch.relu(self.down_proj(self.adapter_layer_norm_before(x))))
        return x * self.scale


def block_stages(stages: Sequence[int]) -> list[int]:
    """0-based stage index of every block, for a trunk with ``stages`` blocks per stage."""
    return [stage for stage, count in enumerate(stages) for _ in range(count)]


def bottleneck_width(block_input_width: int, channel_factor: float) -> int:
    """The authors' rule: ``int(input width * factor)``; a stage's first block gets half."""
    return int(block_input_width * channel_factor)


def _keep_residual(norm2: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
    if not hasattr(_RESIDUALS, "kept"):
        _RESIDUALS.kept = {}
    _RESIDUALS.kept[id(norm2)] = args[0]


def _add_adapter(block: MultiScaleBlock, args: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor:
    residual = _RESIDUALS.kept.pop(id(block.norm2))
    if not block.adapter.enabled or id(block.adapter) in _bypassed_here():
        return output
    return output + block.adapter(residual)


def inject_adapters(
    trunk: Hiera, stage_sizes: Sequence[int], stages: Iterable[int], channel_factor: float
) -> list[int]:
    """Give every block of the chosen stages an :class:`Adapter`.

    Args:
        trunk: a ``sam2`` Hiera trunk (``trunk.blocks``).
        stage_sizes: blocks per stage of that trunk, e.g. ``(2, 6, 36, 4)`` for Hiera-L.
        stages: 0-based stages to adapt (SANSA: ``(2, 3)``).
        channel_factor: bottleneck width as a fraction of the block's input width.

    Returns:
        The indices of the adapted blocks.
    """
    chosen = set(stages)
    stage_of = block_stages(stage_sizes)
    if len(stage_of) != len(trunk.blocks):
        raise ValueError(f"stage sizes {tuple(stage_sizes)} do not add up to {len(trunk.blocks)} blocks")
    if not chosen <= set(range(len(stage_sizes))):
        raise ValueError(f"adapter stages {sorted(chosen)} outside 0..{len(stage_sizes) - 1}")
    adapted = []
    for index, block in enumerate(trunk.blocks):
        if stage_of[index] not in chosen:
            continue
        block.adapter = Adapter(block.dim_out, bottleneck_width(block.dim, channel_factor))
        block.norm2.register_forward_pre_hook(_keep_residual)
        block.register_forward_hook(_add_adapter)
        adapted.append(index)
    return adapted


@contextmanager
def adapters_bypassed(model: nn.Module) -> Iterator[nn.Module]:
    """Run ``model`` as plain SAM2 inside the ``with`` block: every :class:`Adapter` adds nothing.

    Only for the calling thread: other threads running the same model meanwhile keep its adapters.
    Parameters, state-dict keys, hooks and each adapter's ``enabled`` stay as they are; the
    adapters count again on leaving, also after an error.
    """
    bypassed = _bypassed_here()
    added = {id(m) for m in model.modules() if isinstance(m, Adapter)} - bypassed
    bypassed |= added
    try:
        yield model
    finally:
        bypassed -= added


def _bypassed_here() -> set[int]:
    """The ids of the adapters bypassed on this thread (a set of its own)."""
    if not hasattr(_BYPASSED, "ids"):
        _BYPASSED.ids = set()
    return _BYPASSED.ids


def has_adapters(model: nn.Module) -> bool:
    """Whether ``model`` holds any :class:`Adapter`."""
    return any(isinstance(m, Adapter) for m in model.modules())


def is_adapter_key(key: str) -> bool:
    """Whether a state-dict key belongs to an adapter."""
    return ".adapter." in key


def adapter_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Only the adapter tensors of ``model``, under their full keys."""
    return {k: v for k, v in model.state_dict().items() if is_adapter_key(k)}


def freeze_all_but_adapters(model: nn.Module) -> list[str]:
    """Set ``requires_grad`` on adapter parameters only; returns the trainable names."""
    trainable = []
    for name, param in model.named_parameters():
        param.requires_grad_(is_adapter_key(name))
        if param.requires_grad:
            trainable.append(name)
    return trainable
