"""Where model files are cached, the download settings, and checking cached adapter files.

* SAM2 checkpoints live in the Hugging Face hub cache (``$HF_HUB_CACHE``, by default
  ``~/.cache/huggingface/hub``), managed by ``huggingface_hub``.
* Adapter files live beside it, in ``$SANSA_CACHE`` or ``$HF_HOME/sansa`` (by default
  ``~/.cache/huggingface/sansa``), named by model (``sansa-universal.pth``). A small
  ``manifest.json`` there records each file's size and sha256 after its first successful
  download (or first use, for a file placed by hand), so later corruption is detected.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sansa.atomic import write_text
from sansa.errors import CheckpointError, DownloadError
from sansa.hub.registry import DriveFile

DEFAULT_GDRIVE_URL = "https://drive.google.com/uc?id={id}"
MANIFEST = "manifest.json"
_TRUE = {"1", "true", "yes", "on"}


def default_cache_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """``$SANSA_CACHE``, else ``$HF_HOME/sansa`` (``$HF_HOME`` defaulting as Hugging Face does)."""
    if environ.get("SANSA_CACHE"):
        return Path(environ["SANSA_CACHE"]).expanduser()
    hf_home = environ.get("HF_HOME") or os.path.join(
        environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "huggingface"
    )
    return Path(hf_home).expanduser() / "sansa"


def offline_from_env(environ: Mapping[str, str] = os.environ) -> bool:
    """``SANSA_OFFLINE=1`` or ``HF_HUB_OFFLINE=1`` (Hugging Face's own switch)."""
    return any(environ.get(k, "").strip().lower() in _TRUE for k in ("SANSA_OFFLINE", "HF_HUB_OFFLINE"))


def prepare_cache_dir(folder: Path) -> None:
    """Create the adapter cache ``folder`` and check it can be written, before anything is downloaded.

    Raises:
        DownloadError: one line naming the folder (a file, inside a file, read-only, ...).
    """
    hint = "set SANSA_CACHE or cache_dir=DIR to a folder you can write"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise DownloadError(f"{folder}: the adapter cache is not a folder (a file is in its place); {hint}") from None
    except OSError as err:
        raise DownloadError(f"{folder}: cannot write the adapter cache ({err.strerror or err}); {hint}") from None
    probe = folder / f".sansa-write-probe-{os.getpid()}"
    try:
        probe.touch()
        probe.unlink()
    except OSError as err:
        raise DownloadError(f"{folder}: cannot write the adapter cache ({err.strerror or err}); {hint}") from None


@dataclass(frozen=True)
class HubSettings:
    """Where files go and come from.

    Attributes:
        cache_dir: the adapter cache (also where a hand-placed SAM2 checkpoint is looked for).
        hf_cache_dir: the Hugging Face hub cache; ``None`` is ``huggingface_hub``'s own
            (``$HF_HUB_CACHE``).
        hf_endpoint: the hub's address; ``None`` is ``$HF_ENDPOINT`` or huggingface.co.
        gdrive_url: the adapter download address, with ``{id}`` for the Drive file id
            (``$SANSA_GDRIVE_URL``; a mirror, or a local server in tests).
        offline: use cached files only, never the network.
        progress: show progress bars (on stderr).
        retries: extra attempts (resuming) after a dropped adapter transfer.
    """

    cache_dir: Path
    hf_cache_dir: Path | None = None
    hf_endpoint: str | None = None
    gdrive_url: str = DEFAULT_GDRIVE_URL
    offline: bool = False
    progress: bool = True
    retries: int = 2

    def __post_init__(self) -> None:
        # accept str paths too (frozen: set through object)
        object.__setattr__(self, "cache_dir", Path(self.cache_dir).expanduser())
        if self.hf_cache_dir is not None:
            object.__setattr__(self, "hf_cache_dir", Path(self.hf_cache_dir).expanduser())

    @classmethod
    def from_env(
        cls,
        cache_dir: str | os.PathLike[str] | None = None,
        offline: bool | None = None,
        environ: Mapping[str, str] = os.environ,
        **overrides: Any,
    ) -> HubSettings:
        """Settings from the arguments given, else the environment, else the defaults.

        Environment: ``SANSA_CACHE``, ``HF_HOME``, ``SANSA_OFFLINE``, ``HF_HUB_OFFLINE``,
        ``SANSA_GDRIVE_URL``, ``HF_HUB_CACHE``, ``HF_ENDPOINT``.
        """
        hf_cache = environ.get("HF_HUB_CACHE")  # read now, not when huggingface_hub was imported
        found = {
            "cache_dir": Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir(environ),
            "offline": offline_from_env(environ) if offline is None else bool(offline),
            "gdrive_url": environ.get("SANSA_GDRIVE_URL") or DEFAULT_GDRIVE_URL,
            "hf_cache_dir": Path(hf_cache).expanduser() if hf_cache else None,
            "hf_endpoint": environ.get("HF_ENDPOINT") or None,
        }
        return cls(**{**found, **{k: v for k, v in overrides.items() if v is not None}})

    def adapter_path(self, file: DriveFile) -> Path:
        """Where an adapter is cached (and where to place it by hand)."""
        return self.cache_dir / file.filename

    def adapter_url(self, file: DriveFile) -> str:
        """Where an adapter is downloaded from."""
        return self.gdrive_url.format(id=file.file_id)


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class Manifest:
    """``manifest.json`` of a cache folder: ``{filename: {"sha256", "size", "source"}}``."""

    def __init__(self, folder: Path) -> None:
        self.path: Path = folder / MANIFEST

    def read(self) -> dict[str, dict[str, Any]]:
        """The entries; an unreadable manifest counts as empty (entries are re-recorded on use)."""
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        files = data.get("files") if isinstance(data, dict) else None
        return files if isinstance(files, dict) else {}

    def get(self, filename: str) -> dict[str, Any] | None:
        entry = self.read().get(filename)
        return entry if isinstance(entry, dict) else None

    def record(self, filename: str, sha256: str, size: int, source: str) -> None:
        """Add or replace one entry (written atomically; a cache that cannot be written, say a
        read-only one holding files placed by hand, is used without its record)."""
        files = self.read()
        files[filename] = {"sha256": sha256, "size": size, "source": source}
        try:
            write_text(self.path, json.dumps({"version": 1, "files": files}, indent=1, sort_keys=True))
        except OSError as err:
            logging.getLogger(__name__).warning("%s: not recorded (%s)", self.path, err)


def content_problem(path: Path, expected: DriveFile, sha256: str, size: int) -> str | None:
    """Why a file's content is not the registry's (``None`` if it fits or nothing is expected)."""
    if expected.size is not None and size != expected.size:
        return f"size {size} bytes, expected {expected.size}"
    if expected.sha256 is not None and sha256 != expected.sha256.lower():
        return f"sha256 {sha256[:12]}..., expected {expected.sha256[:12]}..."
    return None


def adapter_problem(path: Path) -> str | None:
    """Why a file is not a SANSA adapter file (``None`` if it is one)."""
    from sansa.model.checkpoint import read_adapter_checkpoint

    try:
        read_adapter_checkpoint(path)
    except CheckpointError as err:
        return str(err).removeprefix(f"adapter checkpoint {path}: ")
    return None


def check_cached_adapter(path: Path, file: DriveFile, manifest: Manifest) -> str | None:
    """Why the cached adapter at ``path`` cannot be trusted (``None`` when it is fine).

    A file with a manifest entry must still have the size and sha256 recorded there; a file
    without one (placed by hand) must fit the registry and be a real adapter file, and is then
    recorded.
    """
    size = path.stat().st_size
    entry = manifest.get(file.filename)
    if entry is not None and entry.get("size") != size:
        return f"its size changed from {entry.get('size')} to {size} bytes since it was downloaded"
    sha256 = sha256_of(path)
    if entry is not None:
        return None if entry.get("sha256") == sha256 else "its sha256 changed since it was downloaded"
    problem = content_problem(path, file, sha256, size) or adapter_problem(path)
    if problem is None:
        manifest.record(file.filename, sha256, size, source=f"placed by hand at {path}")
    return problem


def download_problem(path: Path, file: DriveFile, sha256: str) -> str | None:
    """Why a freshly downloaded adapter file must not be published (``None`` if it is fine)."""
    return content_problem(path, file, sha256, path.stat().st_size) or adapter_problem(path)
