"""Plain-Python builders: SAM2 release-1.0 backbones by name, or from a ``sam2`` YAML config.

SANSA always turns SAM2's object-score head off (``pred_obj_scores``, ``pred_obj_scores_mlp``,
``fixed_no_obj_ptr`` = False); everything else is Meta's release-1.0 configuration.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from torch.overrides import TorchFunctionMode

from sansa.errors import SansaError
from sansa.model import _sam2 as s2
from sansa.model.sansa import SansaModel
from sansa.model.variants import VARIANTS, Sam2Variant, get_variant

# The backbone when none is named: SAM2 Hiera-L, the one the released SANSA models adapt.
DEFAULT_BACKBONE = "hiera_large"
DEFAULT_ADAPTER_STAGES = (2, 3)
DEFAULT_CHANNEL_FACTOR = 0.3
_OBJECT_SCORE_FLAGS = ("pred_obj_scores", "pred_obj_scores_mlp", "fixed_no_obj_ptr")


def _rope_attention(**extra) -> s2.RoPEAttention:
    return s2.RoPEAttention(
        rope_theta=10000.0, feat_sizes=[64, 64], embedding_dim=256, num_heads=1, downsample_rate=1, dropout=0.1, **extra
    )


def build_sam2(variant: Sam2Variant) -> s2.SAM2Base:
    """Build a SAM2 release-1.0 model (object-score head off) with random weights."""
    trunk = s2.Hiera(
        embed_dim=variant.embed_dim,
        num_heads=variant.num_heads,
        stages=list(variant.stages),
        global_att_blocks=list(variant.global_att_blocks),
        window_pos_embed_bkg_spatial_size=list(variant.window_pos_embed_bkg_spatial_size),
        window_spec=list(variant.window_spec),
    )
    sine = dict(normalize=True, scale=None, temperature=10000)
    neck = s2.FpnNeck(
        position_encoding=s2.PositionEmbeddingSine(num_pos_feats=256, **sine),
        d_model=256,
        backbone_channel_list=variant.backbone_channel_list,
        fpn_top_down_levels=[2, 3],
        fpn_interp_model="nearest",
    )
    layer = s2.MemoryAttentionLayer(
        activation="relu",
        dim_feedforward=variant.memory_attention_ffn,
        dropout=0.1,
        pos_enc_at_attn=False,
        self_attention=_rope_attention(),
        d_model=256,
        pos_enc_at_cross_attn_keys=True,
        pos_enc_at_cross_attn_queries=False,
        cross_attention=_rope_attention(rope_k_repeat=True, kv_in_dim=64),
    )
    memory_encoder = s2.MemoryEncoder(
        out_dim=64,
        position_encoding=s2.PositionEmbeddingSine(num_pos_feats=64, **sine),
        mask_downsampler=s2.MaskDownSampler(kernel_size=3, stride=2, padding=1),
        fuser=s2.Fuser(
            s2.CXBlock(dim=256, kernel_size=7, padding=3, layer_scale_init_value=1e-6, use_dwconv=True), num_layers=2
        ),
    )
    return s2.SAM2Base(
        image_encoder=s2.ImageEncoder(trunk=trunk, neck=neck, scalp=1),
        memory_attention=s2.MemoryAttention(
            d_model=256, pos_enc_at_input=True, layer=layer, num_layers=variant.memory_attention_layers
        ),
        memory_encoder=memory_encoder,
        num_maskmem=7,
        image_size=variant.image_size,
        sigmoid_scale_for_mem_enc=20.0,
        sigmoid_bias_for_mem_enc=-10.0,
        use_mask_input_as_output_without_sam=True,
        directly_add_no_mem_embed=True,
        use_high_res_features_in_sam=True,
        multimask_output_in_sam=True,
        iou_prediction_use_sigmoid=True,
        use_obj_ptrs_in_encoder=True,
        add_tpos_enc_to_obj_ptrs=False,
        only_obj_ptrs_in_the_past_for_eval=True,
        pred_obj_scores=False,
        pred_obj_scores_mlp=False,
        fixed_no_obj_ptr=False,
        multimask_output_for_tracking=True,
        use_multimask_token_for_obj_ptr=True,
        multimask_min_pt_num=0,
        multimask_max_pt_num=1,
        use_mlp_for_obj_ptr_proj=True,
        compile_image_encoder=False,
    )


def build_sam2_from_config(path: str | os.PathLike[str]) -> tuple[s2.SAM2Base, tuple[int, ...]]:
    """Build SAM2 from a ``sam2`` Hydra-format YAML file (object-score head off).

    Returns:
        The model and its trunk's blocks per stage. Hydra's global state is not touched.
    """
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    path = Path(path)
    if not path.is_file():
        raise SansaError(f"{path}: model config not found")
    try:
        cfg = OmegaConf.load(path)
        model_cfg = cfg.model
        stages = tuple(int(s) for s in model_cfg.image_encoder.trunk.get("stages", (2, 3, 16, 3)))
        for flag in _OBJECT_SCORE_FLAGS:
            model_cfg[flag] = False
        model_cfg["compile_image_encoder"] = False
        return instantiate(model_cfg, _recursive_=True), stages
    except SansaError:
        raise
    except Exception as err:  # OmegaConf/Hydra raise many kinds; the user needs one line
        raise SansaError(f"{path}: not a usable sam2 model config ({type(err).__name__}: {err})") from None


def resolve_backbone(model: str | os.PathLike[str]) -> tuple[s2.SAM2Base, tuple[int, ...], str]:
    """A named variant or a config path -> ``(sam, stage_sizes, name)``."""
    if isinstance(model, str) and not model.endswith((".yaml", ".yml")):
        try:
            variant = get_variant(model)
        except KeyError:
            raise SansaError(
                f"model: unknown backbone {model!r}; choose one of {', '.join(VARIANTS)} or a .yaml config"
            ) from None
        return build_sam2(variant), variant.stages, variant.name
    sam, stages = build_sam2_from_config(model)
    return sam, stages, str(model)


_CONSTRUCTORS = {
    torch.empty,
    torch.zeros,
    torch.ones,
    torch.full,
    torch.rand,
    torch.randn,
    torch.arange,
    torch.tensor,
    torch.eye,
}


class _MetaDevice(TorchFunctionMode):
    """Create parameters on the meta device (no memory, no init cost). ``torch.linspace`` is
    left on the CPU because ``sam2``'s Hiera reads its drop-path rates back with ``.item()``."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func in _CONSTRUCTORS and kwargs.get("device") is None:
            kwargs["device"] = "meta"
        return func(*args, **kwargs)


@contextlib.contextmanager
def _device_context(device: str | torch.device) -> Iterator[None]:
    if str(device) == "meta":
        with _MetaDevice():
            yield
    else:
        yield


def build_sansa(
    model: str | os.PathLike[str] = DEFAULT_BACKBONE,
    adapter_stages: Sequence[int] = DEFAULT_ADAPTER_STAGES,
    channel_factor: float = DEFAULT_CHANNEL_FACTOR,
    device: str | torch.device = "cpu",
) -> SansaModel:
    """Build SANSA with random SAM2 weights and fresh (no-op) adapters, in eval mode.

    Args:
        model: a backbone name (``hiera_tiny``, ``hiera_small``, ``hiera_base_plus``,
            ``hiera_large``, ``test_tiny``) or a path to a ``sam2`` YAML config.
        adapter_stages: 0-based Hiera stages that get adapters.
        channel_factor: adapter bottleneck as a fraction of the block's input width.
        device: where to put it; ``"meta"`` builds shapes only (no weights).
    """
    with _device_context(device):
        sam, stage_sizes, _ = resolve_backbone(model)
        sansa = SansaModel(sam, stage_sizes, adapter_stages, channel_factor)
    if str(device) != "meta":
        sansa.to(device)
    return sansa.eval()
