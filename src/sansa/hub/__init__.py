"""Released models by name, downloaded once and cached.

    from sansa.hub import resolve_pretrained
    files = resolve_pretrained("sansa-universal")   # .sam2_checkpoint, .adapter_checkpoint, .backbone

SAM2 base weights come from the Hugging Face hub (its cache, ``HF_TOKEN``, ``HF_ENDPOINT``);
adapter files from the authors' Google Drive into ``$SANSA_CACHE`` or ``$HF_HOME/sansa``.
Offline (``offline=True``, ``SANSA_OFFLINE=1`` or ``HF_HUB_OFFLINE=1``) only cached files are
used. Importing this package touches neither the disk nor the network.
"""

from sansa.hub.cache import HubSettings, default_cache_dir
from sansa.hub.registry import (
    DEFAULT_MODEL,
    MODELS,
    Availability,
    DriveFile,
    HubFile,
    PretrainedModel,
    Score,
    get_model,
)
from sansa.hub.resolve import CacheStatus, ResolvedModel, cache_status, resolve_pretrained

__all__ = [
    "DEFAULT_MODEL",
    "MODELS",
    "Availability",
    "CacheStatus",
    "DriveFile",
    "HubFile",
    "HubSettings",
    "PretrainedModel",
    "ResolvedModel",
    "Score",
    "cache_status",
    "default_cache_dir",
    "get_model",
    "resolve_pretrained",
]
