"""SANSA's memory bank: references written into SAM2's memory as a pseudo-video.

Frames ``0 .. K-1`` are the references, frame ``K`` the target. Spatial memory: frame 0 (the
conditioning frame, temporal index ``num_maskmem - 1``), then the references 1..6 frames before
the target (temporal index ``distance - 1``) oldest first; older ones are dropped. Object
pointers: frame 0's, then frames ``K-1, K-2, ... >= 1``, at most ``max_obj_ptrs`` in all, each
split into ``C / mem_dim`` tokens with zero position encoding. With ``K = 1`` this is SAM2's own
video behaviour.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass
class MemoryEntry:
    """One frame written to memory.

    Attributes:
        features: ``[1, mem_dim, h, w]`` memory-encoder features (``h = w = S/16``).
        pos: ``[1, mem_dim, h, w]`` their position encoding.
        obj_ptr: ``[1, C]`` the object pointer (``C`` = 256).
    """

    features: torch.Tensor
    pos: torch.Tensor
    obj_ptr: torch.Tensor

    def to(self, device: torch.device | str) -> MemoryEntry:
        return MemoryEntry(self.features.to(device), self.pos.to(device), self.obj_ptr.to(device))


@dataclass
class MemoryTokens:
    """The memory a target attends to, assembled once and reused for every target.

    Attributes:
        memory: ``[M, 1, mem_dim]`` spatial tokens then object-pointer tokens.
        pos: ``[M, 1, mem_dim]`` their position (and temporal) encodings.
        num_obj_ptr_tokens: how many of the last tokens are object pointers (no RoPE).
    """

    memory: torch.Tensor
    pos: torch.Tensor
    num_obj_ptr_tokens: int

    def __len__(self) -> int:
        """``M``, the number of memory tokens."""
        return self.memory.shape[0]

    def batch(self, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``memory`` and ``pos`` for a batch of ``size`` targets, ``[M, size, mem_dim]``.

        A single memory is expanded (no copy); ``C`` stacked memories (see :meth:`stack`) are
        each repeated for ``size / C`` consecutive targets.
        """
        count = self.memory.shape[1]
        if count == 1:
            return self.memory.expand(-1, size, -1), self.pos.expand(-1, size, -1)
        if size % count:
            raise ValueError(f"a batch of {size} targets does not divide among {count} stacked memories")
        repeats = size // count
        return self.memory.repeat_interleave(repeats, dim=1), self.pos.repeat_interleave(repeats, dim=1)

    @staticmethod
    def stack(memories: Sequence[MemoryTokens]) -> MemoryTokens:
        """Memories of equal length (e.g. several classes) side by side: ``[M, C, mem_dim]``."""
        if len(memories) == 1:
            return memories[0]
        lengths = {(len(m), m.num_obj_ptr_tokens) for m in memories}
        if len(lengths) != 1:
            raise ValueError(f"cannot stack memories of different lengths {sorted(lengths)}")
        return MemoryTokens(
            torch.cat([m.memory for m in memories], dim=1),
            torch.cat([m.pos for m in memories], dim=1),
            memories[0].num_obj_ptr_tokens,
        )


def spatial_memory_order(num_frames: int, num_maskmem: int) -> list[tuple[int, int]]:
    """``(frame, temporal index)`` of the frames in spatial memory, in attention order."""
    first = max(1, num_frames - (num_maskmem - 1))
    return [(0, num_maskmem - 1)] + [(k, num_frames - k - 1) for k in range(first, num_frames)]


def pointer_order(num_frames: int, max_obj_ptrs: int) -> list[int]:
    """Frames whose object pointers the target reads, in order."""
    limit = min(num_frames + 1, max_obj_ptrs)
    return [0] + [num_frames - d for d in range(1, limit) if num_frames - d >= 1]


def assemble_memory(entries: Sequence[MemoryEntry], tpos_enc: torch.Tensor, max_obj_ptrs: int) -> MemoryTokens:
    """Concatenate the references' memories in SANSA's pseudo-video order.

    Args:
        entries: the references' memory entries, in the order they were added (``K >= 1``).
        tpos_enc: SAM2's ``maskmem_tpos_enc`` ``[num_maskmem, 1, 1, mem_dim]``.
        max_obj_ptrs: SAM2's ``max_obj_ptrs_in_encoder`` (16).
    """
    if not entries:
        raise ValueError("no reference in memory")
    num_maskmem, mem_dim = tpos_enc.shape[0], tpos_enc.shape[-1]
    memory, pos = [], []
    for frame, t_index in spatial_memory_order(len(entries), num_maskmem):
        entry = entries[frame]
        memory.append(entry.features.flatten(2).permute(2, 0, 1))
        pos.append(entry.pos.flatten(2).permute(2, 0, 1) + tpos_enc[t_index])
    pointers = torch.stack([entries[f].obj_ptr for f in pointer_order(len(entries), max_obj_ptrs)], dim=0)
    n, batch, channels = pointers.shape
    if mem_dim < channels:  # split each pointer into channels / mem_dim tokens
        pointers = pointers.reshape(n, batch, channels // mem_dim, mem_dim).permute(0, 2, 1, 3).flatten(0, 1)
    memory.append(pointers)
    pos.append(pointers.new_zeros(pointers.shape))
    return MemoryTokens(torch.cat(memory, dim=0), torch.cat(pos, dim=0), pointers.shape[0])
