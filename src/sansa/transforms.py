"""The one place that maps images, prompts and masks to model coordinates and back.

SAM2 sees every image squashed (no aspect preservation) to ``S x S`` (``S = 1024``). An image
of size ``H x W`` is mapped by ``x' = x * S / W``, ``y' = y * S / H``; predictions come back
from the decoder's ``S/4 x S/4`` logits by a bilinear resize (``align_corners=False``).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from sansa.records import Prompt

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
BOX_CORNER_LABELS = (2, 3)  # SAM's labels for a box's top-left and bottom-right corners


class ModelTransform:
    """Converts user-space inputs to the model's square input space.

    Args:
        image_size: the model's input side ``S`` (1024 for every released SAM2).
    """

    def __init__(self, image_size: int = 1024) -> None:
        self.image_size = image_size
        self._mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        self._std = torch.tensor(IMAGENET_STD).view(3, 1, 1)

    def image(self, image: np.ndarray) -> torch.Tensor:
        """RGB ``uint8 [H, W, 3]`` -> normalised ``float32 [3, S, S]``.

        ``/255``, ImageNet mean/std, then a bilinear antialiased resize in float.
        """
        x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float() / 255.0
        x = (x - self._mean) / self._std
        size = (self.image_size, self.image_size)
        return F.interpolate(x[None], size, mode="bilinear", align_corners=False, antialias=True)[0]

    def coords(self, xy: np.ndarray, height: int, width: int) -> torch.Tensor:
        """Pixel ``(x, y)`` of an ``H x W`` image ``[P, 2]`` -> model coordinates ``[P, 2]``."""
        scale = torch.tensor([self.image_size / width, self.image_size / height])
        return torch.as_tensor(xy, dtype=torch.float32) * scale

    def point_prompt(self, prompt: Prompt, height: int, width: int) -> dict[str, torch.Tensor]:
        """Points, box and scribble as SAM point inputs.

        Returns:
            ``point_coords`` ``float32 [1, P, 2]`` in model coordinates and ``point_labels``
            ``int32 [1, P]``: the box corners first (labels 2, 3), then clicks (1/0), then
            scribble points (1).
        """
        parts: list[tuple[np.ndarray, np.ndarray]] = []
        if prompt.box is not None:
            parts.append((prompt.box.reshape(2, 2), np.asarray(BOX_CORNER_LABELS)))
        if prompt.points is not None:
            labels = np.ones(len(prompt.points)) if prompt.labels is None else prompt.labels
            parts.append((prompt.points, labels))
        if prompt.scribble is not None:
            parts.append((prompt.scribble, np.ones(len(prompt.scribble))))
        xy = np.concatenate([p[0] for p in parts]).astype(np.float32)
        labels = np.concatenate([p[1] for p in parts]).astype(np.int32)
        return {
            "point_coords": self.coords(xy, height, width)[None],
            "point_labels": torch.from_numpy(labels)[None],
        }

    def mask(self, mask: np.ndarray) -> torch.Tensor:
        """``bool [H, W]`` -> ``float32 [1, 1, S, S]`` of 0/1 (bilinear resize, then ``> 0``)."""
        m = torch.from_numpy(np.ascontiguousarray(mask)).float()[None, None]
        size = (self.image_size, self.image_size)
        m = F.interpolate(m, size, mode="bilinear", align_corners=False, antialias=True)
        return (m > 0).float()

    @staticmethod
    def logits_to_image(logits: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """Low-resolution logits ``[B, 1, h, w]`` -> ``float32 [B, H, W]`` at the image's size."""
        out = F.interpolate(logits.float(), (height, width), mode="bilinear", align_corners=False)
        return out[:, 0]
