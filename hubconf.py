"""``torch.hub`` entry points: ``torch.hub.load("<owner>/sansa", "sansa_universal")``.

Each returns a :class:`sansa.SansaPredictor`. Released weights are downloaded and cached exactly
as ``SansaPredictor.from_pretrained`` does (Hugging Face hub cache for SAM2, ``$SANSA_CACHE`` for
adapters); ``torch.hub`` only brings this code.
"""

import sys
from pathlib import Path

dependencies = ["torch", "torchvision", "sam2", "huggingface_hub", "gdown", "PIL", "numpy"]

# torch.hub puts the repository root on sys.path; the package lives under src/.
_SRC = str(Path(__file__).resolve().parent / "src")
if _SRC not in sys.path:
    sys.path.insert(0, _SRC)


def sansa_universal(device: str = "auto", **kwargs):
    """The promptable SANSA model (Hiera-L): points, box, scribble or mask references."""
    from sansa import SansaPredictor

    return SansaPredictor.from_pretrained("sansa-universal", device=device, **kwargs)


def sansa_generalist(device: str = "auto", **kwargs):
    """The in-context generalist SANSA model (Hiera-L, channel factor 0.8)."""
    from sansa import SansaPredictor

    return SansaPredictor.from_pretrained("sansa-generalist", device=device, **kwargs)


def sansa_test_tiny(device: str = "cpu"):
    """A tiny model with random weights: for trying the API out (its masks mean nothing)."""
    import torch

    from sansa import SansaPredictor, build_sansa

    torch.manual_seed(0)
    return SansaPredictor(build_sansa("test_tiny"), device=device)
