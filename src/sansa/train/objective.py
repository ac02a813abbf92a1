"""One training step's forward pass: a batch of episodes -> the loss (what DDP wraps)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from sansa.model.sansa import SansaModel
from sansa.train.episodes import EpisodeBatch
from sansa.train.losses import MaskLoss


def set_training_mode(model: SansaModel) -> None:
    """Frozen SAM2 in eval mode, with memory-attention dropout (0.1) active, as the protocol trains.

    On SANSA's path the only modules whose behaviour depends on ``.training`` are the dropouts of
    the memory attention (its layers and its RoPE attention): Hiera's drop-path rate is 0 in
    release 1.0, there is no batch norm, and the mask decoder's training switch concerns
    ``dynamic_multimask_via_stability``, which SANSA's SAM2 leaves off. The adapters have no
    mode-dependent layer.
    """
    model.eval()
    model.sam.memory_attention.train()


@dataclass
class StepOutput:
    """The loss of a batch (mean over its episodes) and the number of supervised masks."""

    loss: torch.Tensor
    masks: int


class EpisodeObjective(nn.Module):
    """``batch -> loss``: the image encoder runs once on every frame of every episode; each
    episode then goes through memory and decoder as a pseudo-video (:meth:`SansaModel.forward_features`).

    The dropout masks of episode ``b`` come from its own seed, so a step computes the same
    thing whatever the number of processes it is split over.

    Args:
        model: the SANSA model (adapters trainable, the rest frozen).
        loss: the mask loss.
        shots: ``K``, references per episode.
    """

    def __init__(self, model: SansaModel, loss: MaskLoss, shots: int) -> None:
        super().__init__()
        self.model = model
        self.loss = loss
        self.shots = shots

    def forward(self, batch: EpisodeBatch) -> StepOutput:
        size, frames = batch.images.shape[:2]
        feats = self.model.encode_images(batch.images.flatten(0, 1))
        losses = []
        masks = 0
        for b in range(size):
            episode = feats[b * frames : (b + 1) * frames]
            with _seeded(batch.seeds[b], batch.images.device):
                outputs = self.model.forward_features(episode, batch.prompts[b], self.shots)
            chosen = batch.supervised[b].nonzero().flatten().tolist()
            logits = torch.cat([outputs[t].low_res_logits[:, 0] for t in chosen])
            # summed over the supervised frames of an episode (as SAM2's training sums over frames)
            losses.append(self.loss(logits, batch.masks[b, chosen]) * len(chosen))
            masks += len(chosen)
        return StepOutput(torch.stack(losses).mean(), masks)


@contextlib.contextmanager
def _seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Run a block with torch's generators seeded, restoring them afterwards."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else [], device_type="cuda"):
        torch.manual_seed(seed % 2**63)
        yield
