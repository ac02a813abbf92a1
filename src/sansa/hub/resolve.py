"""From a model name to local files: ``resolve_pretrained("sansa-universal")``."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from sansa.errors import DownloadError
from sansa.hub.cache import HubSettings, Manifest, check_cached_adapter, prepare_cache_dir
from sansa.hub.fetch import download_adapter, fetch_sam2
from sansa.hub.registry import DEFAULT_MODEL, Availability, PretrainedModel, get_model

log: logging.Logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ResolvedModel:
    """The local files of a released model, ready for ``SansaPredictor.from_checkpoint``.

    Attributes:
        name: the registry name.
        backbone: the SAM2 variant (``hiera_large``) or config the files fit.
        sam2_checkpoint: Meta's SAM2 release-1.0 checkpoint.
        adapter_checkpoint: the adapter file; ``None`` for plain SAM2.
    """

    name: str
    backbone: str
    sam2_checkpoint: Path
    adapter_checkpoint: Path | None


def resolve_pretrained(
    name: str = DEFAULT_MODEL,
    cache_dir: str | os.PathLike[str] | None = None,
    offline: bool | None = None,
    *,
    models: Mapping[str, PretrainedModel] | None = None,
    settings: HubSettings | None = None,
) -> ResolvedModel:
    """Local paths of a released model's files, downloading what is not cached yet.

    Args:
        name: a registered model (``sansa models list``).
        cache_dir: the adapter cache (default ``$SANSA_CACHE`` or ``$HF_HOME/sansa``).
        offline: never use the network (default: ``SANSA_OFFLINE`` or ``HF_HUB_OFFLINE`` set).
        models: the registry to look ``name`` up in (default: the released models).
        settings: all download settings at once (tests, mirrors); ``cache_dir`` and
            ``offline`` still override it when given.

    Raises:
        SansaError: unknown name.
        DownloadError: a file is missing offline, a download failed, a cached file is corrupt
            offline, or the model is one to download by hand.
    """
    model = get_model(name, models)
    settings = _settings(settings, cache_dir, offline)
    if model.availability is Availability.MANUAL:
        raise DownloadError(manual_instructions(model))
    if model.adapter is not None and not settings.offline and not settings.adapter_path(model.adapter).is_file():
        prepare_cache_dir(settings.cache_dir)  # an adapter cache that cannot be written: said before SAM2 downloads
    sam2 = fetch_sam2(model.sam2, settings, model.name)
    adapter = cached_or_download_adapter(model, settings) if model.adapter is not None else None
    return ResolvedModel(model.name, model.backbone, sam2, adapter)


def _settings(
    settings: HubSettings | None, cache_dir: str | os.PathLike[str] | None, offline: bool | None
) -> HubSettings:
    if settings is None:
        return HubSettings.from_env(cache_dir, offline)
    if cache_dir is not None:
        settings = dataclasses.replace(settings, cache_dir=Path(cache_dir))
    if offline is not None:
        settings = dataclasses.replace(settings, offline=bool(offline))
    return settings


def cached_or_download_adapter(model: PretrainedModel, settings: HubSettings) -> Path:
    """The checked cached adapter of ``model``, downloaded first if missing (or corrupt, online)."""
    file = model.adapter
    assert file is not None
    path = settings.adapter_path(file)
    if path.is_file():
        problem = check_cached_adapter(path, file, Manifest(settings.cache_dir))
        if problem is None:
            return path
        if settings.offline:
            raise DownloadError(
                f"{model.name}: cached adapter {path} is corrupt ({problem}) and offline mode is on; delete it "
                f"and run `sansa models download {model.name}` online"
            )
        log.warning("%s: cached adapter %s is corrupt (%s); downloading it again", model.name, path, problem)
    elif settings.offline:
        raise DownloadError(
            f"{model.name}: adapter {file.filename} is not cached and offline mode is on; run "
            f"`sansa models download {model.name}` online, or download it from {file.page} and save it as {path}"
        )
    return download_adapter(file, settings, model.name)


def manual_instructions(model: PretrainedModel) -> str:
    """One line telling how to get and use a model that is downloaded by hand."""
    assert model.adapter is not None
    base = model.sam2.repo_id.split("/")[-1]  # the plain-SAM2 entry's name, e.g. sam2-hiera-large
    return (
        f"{model.name}: an archive of adapter files that sansa does not download; get it from "
        f"{model.adapter.page}, unpack it, and pass sam2_checkpoint=FILE (`sansa models path {base}`) "
        f"and adapter=ADAPTER.pth"
    )


@dataclass(frozen=True)
class CacheStatus:
    """What of a model is on disk (no hashing, no network)."""

    sam2: Path | None
    adapter: Path | None
    needs_adapter: bool
    manual: bool

    @property
    def complete(self) -> bool:
        return self.sam2 is not None and (self.adapter is not None or not self.needs_adapter)

    def __str__(self) -> str:
        if self.manual:
            return "manual"
        if self.complete:
            return "yes"
        return "sam2 only" if self.sam2 is not None else "no"


def cache_status(model: PretrainedModel, settings: HubSettings) -> CacheStatus:
    """Which of ``model``'s files are cached."""
    from huggingface_hub import try_to_load_from_cache

    placed = settings.cache_dir / model.sam2.filename
    if placed.is_file():
        sam2: Path | None = placed
    else:
        found = try_to_load_from_cache(
            model.sam2.repo_id, model.sam2.filename, cache_dir=settings.hf_cache_dir, revision=model.sam2.revision
        )
        sam2 = Path(found) if isinstance(found, str) else None
    manual = model.availability is Availability.MANUAL
    adapter = None
    if model.adapter is not None and not manual and settings.adapter_path(model.adapter).is_file():
        adapter = settings.adapter_path(model.adapter)
    return CacheStatus(sam2, adapter, needs_adapter=model.adapter is not None, manual=manual)
