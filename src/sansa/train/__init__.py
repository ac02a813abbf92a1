"""Training SANSA's adapters: episodic, data parallel under ``torchrun``, exactly resumable.

``from sansa.train import load_config, train``; see :mod:`sansa.train.loop`.
"""

from sansa.train.config import DataSpec, TrainConfig, ValSpec, load_config
from sansa.train.loop import TrainResult, train

__all__ = ["DataSpec", "TrainConfig", "TrainResult", "ValSpec", "load_config", "train"]
