"""The training loss: sigmoid focal + Dice on mask logits at the episode's ``S x S`` resolution."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torchvision.ops import sigmoid_focal_loss


@dataclass(frozen=True)
class MaskLoss:
    """``focal_weight * focal + dice_weight * dice`` for one or more masks.

    Args:
        alpha, gamma: the focal loss's class balance and focusing (0.25, 2).
        focal_weight, dice_weight: weights of the two terms (1, 1).
    """

    alpha: float = 0.25
    gamma: float = 2.0
    focal_weight: float = 1.0
    dice_weight: float = 1.0

    def __call__(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean over the ``N`` masks.

        Args:
            logits: ``[N, h, w]`` float logits (any size; resized bilinearly to the target's).
            target: ``[N, S, S]`` bool or 0/1 ground truth.

        Returns:
            A scalar (float32, whatever the autocast dtype of ``logits``).
        """
        logits = logits.float()
        if logits.shape[-2:] != target.shape[-2:]:
            logits = F.interpolate(logits[:, None], target.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
        target = target.float()
        focal = sigmoid_focal_loss(logits, target, alpha=self.alpha, gamma=self.gamma).flatten(1).mean(1)
        return (self.focal_weight * focal + self.dice_weight * dice_loss(logits, target)).mean()


def dice_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """``1 - (2 |P n T| + 1) / (|P| + |T| + 1)`` per mask, soft ``P = sigmoid(logits)``.

    Args:
        logits, target: ``[N, H, W]``.

    Returns:
        ``[N]``: 0 for a perfect prediction; an empty target with an empty prediction also gives ~0.
    """
    prob = torch.sigmoid(logits).flatten(1)
    target = target.flatten(1)
    overlap = (prob * target).sum(1)
    return 1 - (2 * overlap + smooth) / (prob.sum(1) + target.sum(1) + smooth)
