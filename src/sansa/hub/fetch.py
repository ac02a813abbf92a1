"""Getting one file: SAM2 from the Hugging Face hub, adapters from Google Drive.

Both clients are well kept and do the hard parts: ``huggingface_hub.hf_hub_download`` (its
cache, ``HF_TOKEN``, ``HF_ENDPOINT``, ``HF_HUB_OFFLINE``) and ``gdown.download`` (Drive's
confirmation pages, resumable ``.part`` files, retries). Every failure becomes one
:class:`~sansa.errors.DownloadError` line saying which file, from where, and exactly where to
put it by hand instead.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import socket
import urllib.parse
import urllib.request
from pathlib import Path

from sansa.errors import DownloadError
from sansa.hub.cache import HubSettings, Manifest, download_problem, prepare_cache_dir
from sansa.hub.registry import DriveFile, HubFile

log: logging.Logger = logging.getLogger(__name__)
ALTERNATIVE = (
    "or load files you have: SansaPredictor.from_checkpoint(SAM2_FILE, ADAPTER_FILE, model=BACKBONE) "
    "in Python, --sam2-checkpoint FILE --adapter FILE on the command line"
)
CONNECT_TIMEOUT = 5.0  # seconds to open a connection before giving up on the host (no retries)


def unreachable(url: str, timeout: float = CONNECT_TIMEOUT) -> str | None:
    """Why ``url``'s host (or the proxy for it) cannot be connected to, or ``None`` when it can.

    One TCP connection, no retries: a machine offline, a closed port or a host that does not
    resolve answers within ``timeout`` instead of after the download clients' retry rounds.
    """
    parts = urllib.parse.urlsplit(url)
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(parts.hostname or ""):
        parts = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname or "", port), timeout=timeout).close()
    except OSError as err:
        return f"cannot connect to {parts.hostname}:{port}: {one_line(err)}"
    return None


def _offline_hint(what: str, problem: str) -> str:
    return (
        f"{what} ({problem}); offline, only cached files can be used (from_pretrained(..., offline=True) "
        "or SANSA_OFFLINE=1)"
    )


def one_line(err: BaseException, limit: int = 200) -> str:
    """An exception's message on one line, shortened (clients' messages span paragraphs)."""
    text = re.sub(r"\s+", " ", str(err)).strip() or type(err).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _sam2_manual(file: HubFile, settings: HubSettings) -> str:
    return (
        f"download {file.url(settings.hf_endpoint or 'https://huggingface.co')} and save it as "
        f"{settings.cache_dir / file.filename}, {ALTERNATIVE}"
    )


def _adapter_manual(file: DriveFile, settings: HubSettings) -> str:
    return f"download it from {file.page} and save it as {settings.adapter_path(file)}, {ALTERNATIVE}"


def fetch_sam2(file: HubFile, settings: HubSettings, model: str) -> Path:
    """The SAM2 checkpoint: placed by hand in the cache folder, else in the hub cache, else downloaded.

    The hub cache is asked first without the network, so a cached file costs no request (release
    1.0 weights do not change) and works offline.

    Raises:
        DownloadError: not cached and offline, or the download failed.
    """
    placed = settings.cache_dir / file.filename
    if placed.is_file():
        return placed
    from huggingface_hub import hf_hub_download
    from huggingface_hub.utils import LocalEntryNotFoundError

    def download(local_files_only: bool = False) -> Path:
        return Path(
            hf_hub_download(
                file.repo_id,
                file.filename,
                revision=file.revision,
                cache_dir=settings.hf_cache_dir,
                endpoint=settings.hf_endpoint,
                local_files_only=local_files_only,
            )
        )

    try:
        return download(local_files_only=True)
    except LocalEntryNotFoundError:
        if settings.offline:
            raise DownloadError(
                f"{model}: SAM2 checkpoint {file.filename} is not cached and offline mode is on; run "
                f"`sansa models download {model}` online, or {_sam2_manual(file, settings)}"
            ) from None
    endpoint = settings.hf_endpoint or os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
    problem = unreachable(endpoint)
    if problem is not None:
        raise DownloadError(
            _offline_hint(
                f"{model}: SAM2 checkpoint {file.filename} is not cached and the Hugging Face hub cannot be reached",
                problem,
            )
            + f"; {_sam2_manual(file, settings)}"
        )
    try:
        return download()
    except Exception as err:  # whatever the hub client raises becomes the one-line answer;
        # its generic "cannot locate the file" error carries the precise HTTP error as its cause
        raise DownloadError(
            f"{model}: could not download SAM2 checkpoint {file.filename} from the Hugging Face hub repo "
            f"{file.repo_id} ({one_line(err.__cause__ or err)}); {_sam2_manual(file, settings)}"
        ) from None


def download_adapter(file: DriveFile, settings: HubSettings, model: str) -> Path:
    """Download an adapter, check it, then move it into the cache atomically and record its sha256.

    gdown writes ``<name>.download<random>.part`` beside the target and resumes it after an
    interruption; the checked file only appears at its final path through ``os.replace``.

    Raises:
        DownloadError: the transfer failed or the file is not the expected adapter file.
    """
    import gdown

    final = settings.adapter_path(file)
    staging = final.with_name(final.name + ".download")
    url = settings.adapter_url(file)
    prepare_cache_dir(final.parent)
    problem = unreachable(url)
    if problem is not None:
        raise DownloadError(
            _offline_hint(f"{model}: adapter {file.filename} is not cached and {url} cannot be reached", problem)
            + f"; {_adapter_manual(file, settings)}"
        )
    try:
        staging.unlink(missing_ok=True)  # gdown would take a leftover complete file as done
        sha256 = _gdown(url, staging, settings)
    except (OSError, gdown.exceptions.DownloadError) as err:
        raise DownloadError(
            f"{model}: could not download adapter {file.filename} from {url} ({one_line(err)}); "
            f"{_adapter_manual(file, settings)}"
        ) from None
    problem = download_problem(staging, file, sha256)
    if problem is not None:
        staging.unlink(missing_ok=True)
        raise DownloadError(
            f"{model}: the file downloaded from {url} is not the expected SANSA adapter file ({problem}); "
            f"{_adapter_manual(file, settings)}"
        )
    try:
        os.replace(staging, final)
    except OSError as err:
        raise DownloadError(f"{final}: cannot write the adapter ({err.strerror or err})") from None
    Manifest(settings.cache_dir).record(file.filename, sha256, final.stat().st_size, source=url)
    return final


def _gdown(url: str, output: Path, settings: HubSettings) -> str:
    """``gdown.download`` resuming any partial file; returns the sha256 of the whole file."""
    import gdown

    try:
        return _gdown_once(url, output, settings)
    except gdown.exceptions.DownloadError as err:
        # A server that ignores Range makes a kept partial file useless: start over, once.
        if "byte range" not in str(err):
            raise
        log.warning("%s: the server cannot resume %s; downloading it again from the start", url, output.name)
        for part in output.parent.glob(f"{output.name}*.part"):
            part.unlink()
        return _gdown_once(url, output, settings)


def _gdown_once(url: str, output: Path, settings: HubSettings) -> str:
    import gdown

    hasher = hashlib.sha256()  # gdown also feeds it the bytes of a resumed partial file
    gdown.download(
        url=url,
        output=str(output),
        quiet=not settings.progress,
        resume=True,
        hasher=hasher,
        retries=settings.retries,
        timeout=60,
    )
    return hasher.hexdigest()
