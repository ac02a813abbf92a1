"""The SANSA model: a stateless ``nn.Module`` over Meta's ``SAM2Base``.

Shapes: ``B`` frames, model input ``S x S`` (1024), ``C = 256`` channels, stride-16 features
``h x w = S/16`` (64 x 64), decoder logits ``S/4 x S/4`` (256 x 256).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sansa.devices import autocast
from sansa.model._sam2 import SAM2Base
from sansa.model.adapters import inject_adapters
from sansa.model.memory import MemoryEntry, MemoryTokens, assemble_memory

MASK_LOGIT_SCALE, MASK_LOGIT_BIAS = 20.0, -10.0  # a binary mask as logits: +10 inside, -10 outside


@dataclass
class ImageFeatures:
    """Image-encoder output for ``B`` frames, ready for the SAM heads.

    Attributes:
        high_res: ``[B, C0, 4h, 4w]`` and ``[B, C1, 2h, 2w]`` (after the decoder's ``conv_s0/s1``).
        top: ``[B, C, h, w]`` stride-16 features.
        top_pos: ``[B, C, h, w]`` their position encoding.
    """

    high_res: list[torch.Tensor]
    top: torch.Tensor
    top_pos: torch.Tensor

    def __len__(self) -> int:
        return self.top.shape[0]

    def __getitem__(self, index: int | slice) -> ImageFeatures:
        """The features of one frame (as a batch of 1) or of a slice of frames."""
        sel = slice(index, index + 1) if isinstance(index, int) else index
        return ImageFeatures([x[sel] for x in self.high_res], self.top[sel], self.top_pos[sel])

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> ImageFeatures:
        """Every tensor moved to ``device`` and/or cast to ``dtype``."""
        return ImageFeatures(
            [x.to(device, dtype) for x in self.high_res], self.top.to(device, dtype), self.top_pos.to(device, dtype)
        )

    @staticmethod
    def cat(parts: Sequence[ImageFeatures]) -> ImageFeatures:
        return ImageFeatures(
            [torch.cat([p.high_res[i] for p in parts]) for i in range(len(parts[0].high_res))],
            torch.cat([p.top for p in parts]),
            torch.cat([p.top_pos for p in parts]),
        )


@dataclass
class Decoded:
    """SAM heads output for ``B`` frames.

    Attributes:
        low_res_logits: ``[B, 1, S/4, S/4]`` the chosen mask's logits.
        high_res_logits: ``[B, 1, S, S]`` the same, upsampled (what memory is written from).
        iou: ``[B]`` the decoder's IoU estimate of the chosen mask.
        obj_ptr: ``[B, C]`` the object pointer.
    """

    low_res_logits: torch.Tensor
    high_res_logits: torch.Tensor
    iou: torch.Tensor
    obj_ptr: torch.Tensor


class SansaModel(nn.Module):
    """SAM2 with adapters in its image encoder, segmenting targets from reference memories.

    Args:
        sam: a ``sam2`` ``SAM2Base`` built with the object-score head off.
        stage_sizes: blocks per Hiera stage of ``sam``'s trunk.
        adapter_stages: 0-based stages that get adapters.
        channel_factor: adapter bottleneck as a fraction of the block's input width.

    The module holds no per-image state: references and targets go in and out as tensors,
    so one model serves any number of predictors, threads of a server, or training ranks.
    """

    def __init__(
        self,
        sam: SAM2Base,
        stage_sizes: Sequence[int],
        adapter_stages: Sequence[int] = (2, 3),
        channel_factor: float = 0.3,
    ) -> None:
        super().__init__()
        if sam.pred_obj_scores:
            raise ValueError("SANSA needs SAM2 built with pred_obj_scores=False")
        self.sam = sam
        self.stage_sizes: tuple[int, ...] = tuple(stage_sizes)
        self.adapter_stages: tuple[int, ...] = tuple(adapter_stages)
        self.channel_factor: float = channel_factor
        inject_adapters(sam.image_encoder.trunk, stage_sizes, adapter_stages, channel_factor)

    @property
    def image_size(self) -> int:
        """The square input side ``S``."""
        return self.sam.image_size

    @property
    def device(self) -> torch.device:
        return self.sam.no_mem_embed.device

    def encode_images(self, images: torch.Tensor) -> ImageFeatures:
        """Run the adapted image encoder.

        Args:
            images: ``[B, 3, S, S]`` normalised images (see :class:`sansa.transforms.ModelTransform`).
        """
        backbone = self.sam.forward_image(images)  # trunk + FPN neck + conv_s0/s1, stride 32 dropped
        feats, pos = backbone["backbone_fpn"], backbone["vision_pos_enc"]
        return ImageFeatures(high_res=list(feats[:-1]), top=feats[-1], top_pos=pos[-1])

    def decode(
        self,
        pix_feat: torch.Tensor,
        feats: ImageFeatures,
        point_inputs: dict[str, Any] | None = None,
        mask_inputs: torch.Tensor | None = None,
        multimask: bool = False,
    ) -> Decoded:
        """SAM prompt encoder + mask decoder on ``pix_feat`` ``[B, C, h, w]``."""
        # sam2 exposes the SAM heads only through this method; it is the one private call we make.
        _, _, ious, low, high, obj_ptr, _ = self.sam._forward_sam_heads(
            backbone_features=pix_feat,
            point_inputs=point_inputs,
            mask_inputs=mask_inputs,
            high_res_features=feats.high_res,
            multimask_output=multimask,
        )
        return Decoded(low, high, ious.max(dim=-1).values, obj_ptr)

    def decode_prompt(self, feats: ImageFeatures, point_inputs: dict[str, torch.Tensor]) -> Decoded:
        """Decode a reference prompted by points / box / scribble (no memory, single mask).

        Args:
            feats: one frame's features.
            point_inputs: ``point_coords`` ``[1, P, 2]`` (model coordinates), ``point_labels`` ``[1, P]``.
        """
        no_mem = self.sam.no_mem_embed.view(1, -1, 1, 1)
        return self.decode(feats.top + no_mem, feats, point_inputs=point_inputs)

    def decode_points(
        self,
        feats: ImageFeatures,
        point_coords: torch.Tensor,
        point_labels: torch.Tensor,
        multimask: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Decode ``N`` prompts at once on one frame's features, without memory: SAM2's image path,
        the call ``SAM2ImagePredictor`` makes (and :meth:`decode_prompt`, one prompt at a time).
        The frame's features are shared by the prompts (the decoder repeats them), never encoded again.

        Args:
            feats: one frame's features (a batch of 1).
            point_coords: ``float32 [N, P, 2]`` model coordinates ``(x, y)`` in ``0..S``.
            point_labels: ``int32 [N, P]`` (1 object, 0 not, 2/3 box corners).
            multimask: three candidate masks per prompt (as for an ambiguous single click) or one.

        Returns:
            ``float32 [N, M, S/4, S/4]`` mask logits and ``[N, M]`` the decoder's IoU estimates,
            ``M = 3`` with ``multimask`` else 1.
        """
        sparse, dense = self.sam.sam_prompt_encoder(points=(point_coords, point_labels), boxes=None, masks=None)
        logits, iou, _, _ = self.sam.sam_mask_decoder(
            image_embeddings=feats.top + self.sam.no_mem_embed.view(1, -1, 1, 1),
            image_pe=self.sam.sam_prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask,
            repeat_image=True,
            high_res_features=feats.high_res,
        )
        return logits.float(), iou.float()

    def decode_mask(self, feats: ImageFeatures, mask: torch.Tensor) -> Decoded:
        """A reference prompted by a mask ``[1, 1, S, S]`` (0/1): the mask is the output.

        The mask becomes ``+10/-10`` logits, downsampled to ``S/4`` (bilinear, antialiased) and
        upsampled back to ``S``; the object pointer comes from the SAM heads given the mask
        through ``mask_downsample``, on the raw stride-16 features.
        """
        logits = mask * MASK_LOGIT_SCALE + MASK_LOGIT_BIAS
        low = F.interpolate(
            logits,
            size=(mask.shape[-2] // 4, mask.shape[-1] // 4),
            mode="bilinear",
            align_corners=False,
            antialias=True,
        )
        high = F.interpolate(low, size=mask.shape[-2:], mode="bilinear", align_corners=False)
        pointer = self.decode(feats.top, feats, mask_inputs=self.sam.mask_downsample(mask))
        return Decoded(low, high, torch.ones_like(pointer.iou), pointer.obj_ptr)

    def encode_memory(self, feats: ImageFeatures, decoded: Decoded) -> MemoryEntry:
        """Write one frame and its mask into memory (``sigmoid(logits) * 20 - 10``)."""
        mask = torch.sigmoid(decoded.high_res_logits)
        if self.sam.sigmoid_scale_for_mem_enc != 1.0:
            mask = mask * self.sam.sigmoid_scale_for_mem_enc
        if self.sam.sigmoid_bias_for_mem_enc != 0.0:
            mask = mask + self.sam.sigmoid_bias_for_mem_enc
        out = self.sam.memory_encoder(feats.top, mask, skip_mask_sigmoid=True)
        return MemoryEntry(out["vision_features"], out["vision_pos_enc"][-1], decoded.obj_ptr)

    def assemble_memory(self, entries: Sequence[MemoryEntry]) -> MemoryTokens:
        """The references' memories in pseudo-video order (see :mod:`sansa.model.memory`)."""
        return assemble_memory(entries, self.sam.maskmem_tpos_enc, self.sam.max_obj_ptrs_in_encoder)

    def decode_targets(
        self,
        feats: ImageFeatures,
        memory: MemoryTokens,
        attention_dtype: torch.dtype | None = None,
        decoder_dtype: torch.dtype | None = None,
    ) -> Decoded:
        """Segment ``B`` targets given the references' memory: memory attention, then the
        decoder with 3 candidate masks, keeping the one of highest predicted IoU.

        Args:
            attention_dtype, decoder_dtype: run memory attention / the decoder under
                ``torch.autocast`` to this type (``None``: fp32); the outputs come back fp32.
        """
        batch, channels, h, w = feats.top.shape
        curr = feats.top.flatten(2).permute(2, 0, 1)
        curr_pos = feats.top_pos.flatten(2).permute(2, 0, 1)
        mem, mem_pos = memory.batch(batch)
        with autocast(feats.top.device, attention_dtype):
            fused = self.sam.memory_attention(
                curr=[curr],
                curr_pos=[curr_pos],
                memory=mem,
                memory_pos=mem_pos,
                num_obj_ptr_tokens=memory.num_obj_ptr_tokens,
            )
        fused = fused.float().permute(1, 2, 0).reshape(batch, channels, h, w)
        with autocast(feats.top.device, decoder_dtype):
            out = self.decode(fused, feats, multimask=True)
        if decoder_dtype is None:
            return out
        return Decoded(out.low_res_logits.float(), out.high_res_logits.float(), out.iou.float(), out.obj_ptr.float())

    def forward(self, images: torch.Tensor, prompts: Sequence[dict[str, Any]], num_references: int) -> list[Decoded]:
        """One episode as a pseudo-video, differentiable (for training).

        Args:
            images: ``[T, 3, S, S]``: ``num_references`` references, then targets.
            prompts: for each reference, ``{"mask": [1, 1, S, S]}`` or ``{"point_inputs": {...}}``.
            num_references: ``K``; every following frame is a target whose prediction is written
                to memory as a pseudo-reference for the next target.

        Returns:
            The decoded output of every frame, in order.
        """
        return self.forward_features(self.encode_images(images), prompts, num_references)

    def forward_features(
        self, feats: ImageFeatures, prompts: Sequence[dict[str, Any]], num_references: int
    ) -> list[Decoded]:
        """:meth:`forward` on frames already encoded (so that a training step can run the image
        encoder once on the frames of many episodes)."""
        entries: list[MemoryEntry] = []
        outputs: list[Decoded] = []
        for t in range(len(feats)):
            frame = feats[t]
            if t < num_references and "mask" in prompts[t]:
                out = self.decode_mask(frame, prompts[t]["mask"])
            elif t < num_references:
                out = self.decode_prompt(frame, prompts[t]["point_inputs"])
            else:
                out = self.decode_targets(frame, self.assemble_memory(entries))
            outputs.append(out)
            if t + 1 < len(feats):
                entries.append(self.encode_memory(frame, out))
        return outputs
