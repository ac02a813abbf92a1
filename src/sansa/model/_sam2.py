"""Meta's ``sam2`` modules, imported with their import-time Hydra initialisation contained.

``import sam2`` initialises Hydra's global config store (``initialize_config_module``), which
breaks host programs that use Hydra themselves. Every ``sam2`` import in this package goes
through this module, which undoes that initialisation when it was not there before.
"""

from __future__ import annotations

from hydra.core.global_hydra import GlobalHydra

_hydra_was_initialised = GlobalHydra.instance().is_initialized()

import sam2  # noqa: E402,F401  (initialises Hydra on first import)
from sam2.modeling.backbones.hieradet import Hiera, MultiScaleBlock  # noqa: E402
from sam2.modeling.backbones.image_encoder import FpnNeck, ImageEncoder  # noqa: E402
from sam2.modeling.memory_attention import MemoryAttention, MemoryAttentionLayer  # noqa: E402
from sam2.modeling.memory_encoder import CXBlock, Fuser, MaskDownSampler, MemoryEncoder  # noqa: E402
from sam2.modeling.position_encoding import PositionEmbeddingSine  # noqa: E402
from sam2.modeling.sam.transformer import RoPEAttention  # noqa: E402
from sam2.modeling.sam2_base import SAM2Base  # noqa: E402
from sam2.utils import amg  # noqa: E402

if not _hydra_was_initialised and GlobalHydra.instance().is_initialized():
    GlobalHydra.instance().clear()

__all__ = [
    "CXBlock",
    "FpnNeck",
    "Fuser",
    "Hiera",
    "ImageEncoder",
    "MaskDownSampler",
    "MemoryAttention",
    "MemoryAttentionLayer",
    "MemoryEncoder",
    "MultiScaleBlock",
    "PositionEmbeddingSine",
    "RoPEAttention",
    "SAM2Base",
    "amg",
]
