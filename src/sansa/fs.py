"""Paths that may be fsspec URLs: targets and output folders on object stores.

A *URL* here is anything with a ``scheme://`` (``s3://bucket/photos``, ``gs://...``,
``memory://...``, ``file:///data``); everything else is a local path and goes through
:mod:`pathlib` unchanged. URLs need ``fsspec`` and the scheme's package (``s3fs`` for ``s3://``,
``gcsfs`` for ``gs://``); ``pip install 'sansa-segment[scale]'`` brings fsspec and s3fs.

Credentials and endpoints come from the usual places of each filesystem (for S3:
``AWS_ACCESS_KEY_ID``, ``AWS_ENDPOINT_URL_S3``, ``~/.aws``), on the driver and on every worker.

Writes are atomic: on object stores one ``PUT`` makes the whole object appear at once; on other
filesystems (``file://``, ``sftp://``) a temporary beside the destination is moved into place.
"""

from __future__ import annotations

import datetime
import importlib
import os
import posixpath
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sansa.errors import ImageError, OutputError, SansaError

if TYPE_CHECKING:
    from typing import IO, TypeAlias

    from fsspec import AbstractFileSystem
    from upath import UPath

    # A folder or file sansa writes to: a local Path, or a UPath for a URL (see as_path).
    AnyPath: TypeAlias = "Path | UPath"

# Stores where an object is written whole by one request (no temporary needed, none left behind).
OBJECT_STORES = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "oss", "memory"})
# Leftover temporaries of interrupted atomic writes end in this (see :mod:`sansa.atomic`).
TEMP_SUFFIX = ".sansa-tmp"
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def is_url(path: Any) -> bool:
    """Whether ``path`` is an fsspec URL (``scheme://...``) rather than a local path."""
    if isinstance(path, Path):
        return False
    return bool(_URL.match(os.fspath(path) if isinstance(path, os.PathLike) else str(path)))


def as_path(path: str | os.PathLike[str] | AnyPath) -> AnyPath:
    """A local :class:`~pathlib.Path`, or a ``UPath`` (pathlib API over fsspec) for a URL."""
    if not isinstance(path, (str, os.PathLike)):  # already a UPath
        return path
    if not is_url(path):
        return Path(path).expanduser()
    _need("upath", "universal_pathlib", str(path))
    from upath import UPath

    try:
        return UPath(str(path), use_listings_cache=False)  # other processes write there too
    except (ImportError, ValueError) as err:
        raise SansaError(f"{path}: {_reason(err)}") from None


def filesystem(url: str) -> tuple[AbstractFileSystem, str]:
    """``(fs, path)``: the fsspec filesystem of ``url`` and the path within it."""
    fsspec = _need("fsspec", "fsspec", url)
    try:
        return fsspec.core.url_to_fs(url, use_listings_cache=False)
    except (ImportError, ValueError) as err:
        raise SansaError(f"{url}: {_reason(err)}") from None


def is_object_store(path: UPath) -> bool:
    """Whether ``path`` lives on an object store (whole-object writes, no real folders)."""
    protocols = path.fs.protocol
    return bool(OBJECT_STORES & set([protocols] if isinstance(protocols, str) else protocols))


# A request to a store that fails for a reason that may pass (a connection refused or reset, a
# timeout, a 5xx answer) is tried again after 0.5, 1 and 2 s; other errors are raised at once.
RETRY_DELAYS_S = (0.5, 1.0, 2.0)
_PERMANENT = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError, FileExistsError)


def write_bytes(path: UPath, data: bytes) -> None:
    """Write ``data`` to a URL path atomically (see the module docstring), retrying transient errors.

    Raises:
        OutputError: one line naming the URL and the cause (no permission, no such bucket, the store
            does not answer), without a traceback or memory addresses.
    """
    try:
        retrying(lambda: _write(path, data))
    except Exception as err:  # s3fs and botocore raise more than OSError (a store gone: EndpointConnectionError)
        if isinstance(err, SansaError):
            raise
        raise OutputError(f"{path}: cannot write ({describe(err)})") from None


def put_file(path: UPath, local: Path) -> None:
    """Upload the local file ``local`` to the URL path ``path`` atomically (as :func:`write_bytes`;
    a large file in parts, never whole in memory), retrying transient errors.

    Raises:
        OutputError: one line naming the URL and the cause.
    """
    store, target = path.fs, path.path

    def put() -> None:
        if is_object_store(path):
            store.put_file(str(local), target, **_upload_parts(store, local))
            return
        parent, name = posixpath.split(target)
        store.makedirs(parent, exist_ok=True)
        tmp = posixpath.join(parent, f".{name}.{os.getpid()}{TEMP_SUFFIX}")
        store.put_file(str(local), tmp)
        store.mv(tmp, target)

    try:
        retrying(put)
    except Exception as err:
        if isinstance(err, SansaError):
            raise
        raise OutputError(f"{path}: cannot write ({describe(err)})") from None


UPLOAD_PART = 8 << 20  # bytes of each part uploading a large file to S3 (S3's least part: 5 MiB) ...
UPLOAD_PARTS_AT_ONCE = 2  # ... and parts in flight (s3fs's default: 10, read into memory together)
S3_MAX_PARTS = 10_000


def _upload_parts(store: Any, local: Path) -> dict[str, int]:
    """s3fs reads a file under 100 MiB whole into memory for one PUT (larger ones ten parts of 50 MiB
    at a time): :data:`UPLOAD_PARTS_AT_ONCE` parts of :data:`UPLOAD_PART` keep a dataset file's
    upload to a few MiB of memory (one multipart upload, which appears whole on completion, as a
    PUT does)."""
    if not hasattr(store, "_call_s3"):
        return {}
    part = max(UPLOAD_PART, -(-local.stat().st_size // S3_MAX_PARTS))
    return {"chunksize": part, "max_concurrency": UPLOAD_PARTS_AT_ONCE}


def retrying(call: Any, delays: tuple[float, ...] | None = None) -> Any:
    """``call()``, tried again after each of ``delays`` (default :data:`RETRY_DELAYS_S`) while it
    fails with a transient error."""

    for delay in (*(RETRY_DELAYS_S if delays is None else delays), None):
        try:
            return call()
        except Exception as err:
            if delay is None or isinstance(err, (_PERMANENT, SansaError)) or not _transient(err):
                raise
            time.sleep(delay)
    return None


def _transient(err: Exception) -> bool:
    """A connection refused, reset or timed out, or a server error (5xx, throttling)."""
    if isinstance(err, (ConnectionError, TimeoutError)):
        return True
    names = {type(e).__name__ for e in _chain(err)}
    if names & {"EndpointConnectionError", "ConnectionClosedError", "ReadTimeoutError", "ConnectTimeoutError"}:
        return True
    text = " ".join(str(e) for e in _chain(err))
    return any(word in text for word in ("SlowDown", "ServiceUnavailable", "InternalError", "503", "500"))


def _chain(err: BaseException) -> list[BaseException]:
    """``err`` and the errors it was raised from (``__cause__``, else ``__context__``)."""
    chain: list[BaseException] = []
    current: BaseException | None = err
    while current is not None and all(current is not seen for seen in chain):
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def describe(err: BaseException) -> str:
    """``Type: first line`` of an error, without memory addresses (``<_io.BytesIO object at 0x..>``)."""
    return f"{type(err).__name__}: {_first_line(err)}"


def _write(path: UPath, data: bytes) -> None:
    fs, target = path.fs, path.path
    if is_object_store(path):
        fs.pipe_file(target, data)
        return
    parent, name = posixpath.split(target)
    fs.makedirs(parent, exist_ok=True)
    tmp = posixpath.join(parent, f".{name}.{os.getpid()}{TEMP_SUFFIX}")
    try:
        fs.pipe_file(tmp, data)
        fs.mv(tmp, target)
    except BaseException:
        if fs.exists(tmp):
            fs.rm_file(tmp)
        raise


def read_many(paths: Sequence[Any], chunk: int = 10_000) -> list[bytes | Exception]:
    """The bytes of many files (all local ``Path`` s or all ``UPath`` s of one store), an exception in
    place of each unreadable one. On a store they are fetched concurrently (fsspec's ``cat`` of a
    list: many requests in flight), ``chunk`` files at a time, not one request after the other."""
    if not paths or isinstance(paths[0], Path):
        return [_read_local(path) for path in paths]
    store, found = paths[0].fs, []
    for start in range(0, len(paths), chunk):
        keys = [path.path for path in paths[start : start + chunk]]
        got = retrying(lambda keys=keys: store.cat(keys, on_error="return"))
        found += [got.get(key, FileNotFoundError(key)) for key in keys]
    return found


def _read_local(path: Path) -> bytes | Exception:
    try:
        return path.read_bytes()
    except OSError as err:
        return err


def read_bytes(url: str) -> bytes:
    """The whole file at ``url``.

    Raises:
        ImageError: one line naming the URL, when it is missing or cannot be read.
    """
    fs, path = filesystem(url)
    try:
        return retrying(lambda: fs.cat_file(path))
    except FileNotFoundError:
        raise ImageError(f"{url}: no such file") from None
    except Exception as err:  # botocore's errors are not all OSErrors
        raise ImageError(f"{url}: cannot be read ({describe(err)})") from None


def stat(url: str) -> dict[str, int] | None:
    """``{"bytes", "mtime_ns"}`` of the file at ``url`` (like ``os.stat``), or ``None`` when it
    cannot be read. Stores without a modification time give ``mtime_ns`` 0."""
    fs, path = filesystem(url)
    try:
        info = fs.info(path)
    except (OSError, ValueError):
        return None
    if info.get("type") == "directory":
        return None
    return listed_stat(info)


def listed_stat(info: dict[str, Any]) -> dict[str, int]:
    """``{"bytes", "mtime_ns"}`` of an fsspec file info (as a listing or ``info`` gives it). Times
    are whole seconds: an S3 listing tells milliseconds where a ``HEAD`` tells seconds, and both
    must agree (a resume trusts the listing instead of one request per target)."""
    return {"bytes": int(info.get("size") or 0), "mtime_ns": _mtime_ns(info) // 10**9 * 10**9}


def open_binary(url: str) -> IO[bytes]:
    """The file at ``url`` opened for reading bytes (a context manager)."""
    fs, path = filesystem(url)
    return fs.open(path, "rb")


def _mtime_ns(info: dict[str, Any]) -> int:

    value = next((info[k] for k in ("LastModified", "mtime", "last_modified", "updated", "created") if k in info), 0)
    if isinstance(value, datetime.datetime):
        return int(value.timestamp() * 1e9)
    if isinstance(value, str):
        try:
            return int(datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1e9)
        except ValueError:
            return 0
    return int(float(value) * 1e9) if value else 0


def _first_line(err: BaseException) -> str:
    text = (str(err).strip().splitlines() or [err.__class__.__name__])[0]
    return re.sub(r" at 0x[0-9a-fA-F]+", "", text)


def _need(module: str, package: str, url: str):

    try:
        return importlib.import_module(module)
    except ImportError:
        raise SansaError(f"{url}: URLs need {package}: pip install 'sansa-segment[scale]'") from None


def _reason(err: Exception) -> str:
    text = str(err).splitlines()[0] if str(err) else err.__class__.__name__
    return f"unsupported or unavailable filesystem ({text})"
