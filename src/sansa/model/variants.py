"""Named SAM2 backbones SANSA is built on, as plain Python.

The four SAM2 release-1.0 models (configs ``sam2_hiera_{t,s,b+,l}.yaml``, checkpoints
``sam2_hiera_{tiny,small,base_plus,large}.pt`` of July 2024) differ only in their Hiera trunk.
``test_tiny`` is a random-weight miniature for tests (the structure of ``hiera_tiny``, a
32-wide trunk of 5 blocks, two memory-attention layers, 256x256 input so that a CPU runs it in
tens of milliseconds; its tensors have the shapes of the golden fixtures' model).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Sam2Variant:
    """The numbers that differ between SAM2 release-1.0 models.

    Attributes:
        name: registry name.
        embed_dim, num_heads, stages, global_att_blocks, window_spec,
        window_pos_embed_bkg_spatial_size: the Hiera trunk (``stages`` = blocks per stage).
        memory_attention_layers, memory_attention_ffn: depth and feed-forward width.
        hf_repo, checkpoint_file: where the released weights live (Hugging Face hub).
    """

    name: str
    embed_dim: int
    num_heads: int
    stages: tuple[int, ...]
    global_att_blocks: tuple[int, ...]
    window_spec: tuple[int, ...] = (8, 4, 14, 7)
    window_pos_embed_bkg_spatial_size: tuple[int, int] = (14, 14)
    memory_attention_layers: int = 4
    memory_attention_ffn: int = 2048
    image_size: int = 1024
    hf_repo: str | None = None
    checkpoint_file: str | None = None
    sam2_config: str | None = None

    @property
    def backbone_channel_list(self) -> list[int]:
        """Trunk output widths, deepest first (as SAM2's FPN neck wants them)."""
        return [self.embed_dim * 2**i for i in reversed(range(len(self.stages)))]


def _release(
    size: str,
    short: str,
    embed_dim: int,
    num_heads: int,
    stages: tuple[int, ...],
    global_att_blocks: tuple[int, ...],
    **rest: Any,
) -> Sam2Variant:
    """A SAM2 release-1.0 model: its Hugging Face repo, checkpoint and sam2 config follow from its
    ``size`` (``base_plus``) and ``short`` name (``b+``); the rest are :class:`Sam2Variant`'s numbers."""
    return Sam2Variant(
        f"hiera_{size}",
        embed_dim,
        num_heads,
        stages,
        global_att_blocks,
        hf_repo=f"facebook/sam2-hiera-{size.replace('_', '-')}",
        checkpoint_file=f"sam2_hiera_{size}.pt",
        sam2_config=f"configs/sam2/sam2_hiera_{short}.yaml",
        **rest,
    )


# (size, short name): the four release-1.0 models, smallest first
RELEASES = (("tiny", "t"), ("small", "s"), ("base_plus", "b+"), ("large", "l"))

VARIANTS: dict[str, Sam2Variant] = {
    v.name: v
    for v in (
        _release("tiny", "t", 96, 1, (1, 2, 7, 2), (5, 7, 9), window_pos_embed_bkg_spatial_size=(7, 7)),
        _release("small", "s", 96, 1, (1, 2, 11, 2), (7, 10, 13), window_pos_embed_bkg_spatial_size=(7, 7)),
        _release("base_plus", "b+", 112, 2, (2, 3, 16, 3), (12, 16, 20)),
        _release(
            "large",
            "l",
            144,
            2,
            (2, 6, 36, 4),
            (23, 33, 43),
            window_spec=(8, 4, 16, 8),
            window_pos_embed_bkg_spatial_size=(7, 7),
        ),
        Sam2Variant(
            "test_tiny",
            32,
            1,
            (1, 1, 2, 1),
            (3,),
            window_pos_embed_bkg_spatial_size=(7, 7),
            memory_attention_layers=2,
            memory_attention_ffn=512,
            image_size=256,
        ),
    )
}

# "large" and "l" -> "hiera_large", ...
ALIASES = {alias: f"hiera_{size}" for size, short in RELEASES for alias in (size, short)}


def get_variant(name: str) -> Sam2Variant:
    """Look a variant up by name or alias (``"hiera_large"``, ``"large"``, ``"l"``)."""
    key = ALIASES.get(name, name)
    if key not in VARIANTS:
        raise KeyError(name)
    return VARIANTS[key]
