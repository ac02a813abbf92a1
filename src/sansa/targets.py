"""Target discovery and what a target file was (for resuming), for local paths and fsspec URLs alike.

Targets are sorted by name: their path relative to the deepest folder holding them all, POSIX form
(for URLs, relative to the deepest URL folder). File access itself is :mod:`sansa.fs`.
"""

from __future__ import annotations

import glob
import hashlib
import os
import posixpath
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sansa import fs
from sansa.errors import SansaError
from sansa.images import IMAGE_SUFFIXES


@dataclass(frozen=True)
class Target:
    """One target image of a run; its name and output stem are resolved once, at discovery.

    Attributes:
        path: the file (absolute).
        name: its path relative to the run's image root, POSIX form (COCO ``file_name``).
        stem: its output stem (``masks/<stem>_<label>.png``, ...), unique within the run.
    """

    path: str
    name: str
    stem: str = ""


def find_targets(
    inputs: Sequence[str], recursive: bool, exclude: Any = None, stats: dict[str, dict[str, int]] | None = None
) -> tuple[list[Target], Any]:
    """The target images named by ``inputs``, sorted by name, and the folder names are relative to.

    Args:
        inputs: folders (their images; hidden files and folders skipped), globs (``**`` recurses),
            image files, or list files (one path a line, relative to the list file; ``#`` comments).
        recursive: look in sub-folders of folders too.
        exclude: a folder whose files are never targets (the output folder; a ``Path`` or ``UPath``).
        stats: filled with ``{url: file_stat(url)}`` of URL targets whose listing told their size and
            time (no request per target when resuming; see :func:`unchanged`).

    Returns:
        Unique targets (stems not yet assigned), and the deepest folder holding them all: a
        ``Path``, or a URL string for URL targets (``s3://bucket/photos``; see :mod:`sansa.fs`).
    """
    if any(fs.is_url(item) for item in inputs):  # s3://, gs://, ...: names relative to a URL folder
        urls, url_root = find_url_targets(list(inputs), recursive, exclude=exclude, stats=stats)
        targets = [Target(url, relative_name(url, url_root)) for url in urls]
        return sorted(targets, key=lambda t: t.name), url_root
    found: dict[Path, None] = {}
    skip = exclude.resolve() if isinstance(exclude, Path) else None
    for item in inputs:
        path = Path(item).expanduser()
        if glob.has_magic(item):
            matches = [Path(p) for p in sorted(glob.glob(os.path.expanduser(item), recursive=True))]
            paths = [p for p in matches if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
        elif path.is_dir():
            pattern = path.rglob("*") if recursive else path.iterdir()
            paths = sorted(
                p
                for p in pattern
                if p.suffix.lower() in IMAGE_SUFFIXES
                and p.is_file()
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
        elif path.is_file():
            paths = [path] if path.suffix.lower() in IMAGE_SUFFIXES else _read_list(path)
        else:
            raise SansaError(f"targets {item}: no such file or folder")
        paths = [p for p in paths if skip is None or not p.resolve().is_relative_to(skip)]
        if not paths:
            raise SansaError(f"targets {item}: no images ({', '.join(IMAGE_SUFFIXES)}) found")
        found.update((p.resolve(), None) for p in paths)
    root = Path(os.path.commonpath([p.parent for p in found]))
    targets = [Target(str(p), p.relative_to(root).as_posix()) for p in found]
    return sorted(targets, key=lambda t: t.name), root


def _read_list(path: Path) -> list[Path]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise SansaError(f"targets {path}: not a readable list of paths ({err.__class__.__name__})") from None
    entries = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    return [p if p.is_absolute() else path.parent / p for p in map(Path, entries)]


# -- what a file was ------------------------------------------------------------------------------
def file_stat(path: str | os.PathLike[str]) -> dict[str, int] | None:
    """``{"bytes", "mtime_ns"}`` of a file (or URL), or ``None`` when it cannot be read."""
    if fs.is_url(path):
        return fs.stat(str(path))
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return {"bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def file_sha256(path: str | os.PathLike[str]) -> str | None:
    """The file's SHA-256 (hex), or ``None`` when it cannot be read."""
    digest = hashlib.sha256()
    try:
        with fs.open_binary(str(path)) if fs.is_url(path) else open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return None
    return digest.hexdigest()


def fingerprint(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """What a target file is: size, modification time and content hash (``None``: unreadable)."""
    stat = file_stat(path)
    sha = file_sha256(path) if stat is not None else None
    return {**stat, "sha256": sha} if stat is not None and sha is not None else None


def unchanged(
    path: str | os.PathLike[str], recorded: dict[str, Any] | None, stat: dict[str, int] | None = None
) -> bool:
    """Whether the file is still what ``recorded`` (a :func:`fingerprint`) says: the same size and
    time, or, when only the time moved, the same content. ``stat``: its :func:`file_stat` if known
    (from a listing), else asked for."""
    if not recorded:
        return False
    stat = stat or file_stat(path)
    if stat is None or stat["bytes"] != recorded.get("bytes"):
        return False
    return stat["mtime_ns"] == recorded.get("mtime_ns") or file_sha256(path) == recorded.get("sha256")


# -- targets at fsspec URLs ----------------------------------------------------------------------
def find_url_targets(
    inputs: list[str], recursive: bool, exclude: Any = None, stats: dict[str, dict[str, int]] | None = None
) -> tuple[list[str], str]:
    """Target images named by URLs (folders, globs, image files, list files), like the local
    :func:`find_targets`.

    Args:
        exclude: a URL folder (or ``UPath``) whose files are never targets (the output folder).
        stats: filled with each listed target's ``{"bytes", "mtime_ns"}`` (see :func:`find_targets`).

    Returns:
        Unique target URLs in input order, and the deepest URL folder holding them all (their
        names are relative to it).
    """
    found: dict[str, None] = {}
    for item in inputs:
        if not fs.is_url(item):
            raise SansaError(f"targets {item}: local paths and URLs cannot be mixed")
        store, path = fs.filesystem(item)
        infos: dict[str, dict[str, Any]] = {}  # path -> what its listing told (size, time)
        if any(ch in path for ch in "*?["):
            infos = store.glob(path, detail=True)
            paths = sorted(p for p, info in infos.items() if _is_image(p, IMAGE_SUFFIXES) and _is_file(info))
        elif store.isdir(path):
            infos = store.find(path, detail=True) if recursive else {i["name"]: i for i in store.ls(path, detail=True)}
            paths = sorted(p for p, info in infos.items() if is_listed_target(p, info, path))
        elif store.isfile(path):
            paths = [path] if _is_image(path, IMAGE_SUFFIXES) else _read_url_list(store, path, item)
        else:
            raise SansaError(f"targets {item}: no such file or folder")
        skip = str(exclude).rstrip("/") + "/" if fs.is_url(exclude) else None
        paths = [p for p in paths if skip is None or not store.unstrip_protocol(p).startswith(skip)]
        if not paths:
            raise SansaError(f"targets {item}: no images ({', '.join(IMAGE_SUFFIXES)}) found")
        found.update((store.unstrip_protocol(p), None) for p in paths)
        if stats is not None:  # what the listing told: no request per target when resuming
            stats.update((store.unstrip_protocol(p), fs.listed_stat(infos[p])) for p in paths if p in infos)
    targets = list(found)
    return targets, common_folder(targets)


def common_folder(urls: list[str]) -> str:
    """The deepest URL folder holding every URL of one scheme (``s3://b/x/1.png``, ``s3://b/x/y/2.png``
    -> ``s3://b/x``)."""
    schemes = {url.split("://", 1)[0] for url in urls}
    if len(schemes) != 1:
        raise SansaError(f"targets: URLs of several schemes ({', '.join(sorted(schemes))})")
    scheme = schemes.pop()
    paths = [url.split("://", 1)[1] for url in urls]
    return f"{scheme}://{posixpath.commonpath([posixpath.dirname(p) for p in paths])}"


def relative_name(url: str, root: str) -> str:
    """``url`` relative to the URL folder ``root`` when under it, else the URL itself."""
    prefix = root.rstrip("/") + "/"
    return url[len(prefix) :] if url.startswith(prefix) else url


def _read_url_list(store: Any, path: str, item: str) -> list[str]:
    try:
        lines = store.cat_file(path).decode("utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise SansaError(f"targets {item}: not a readable list of paths ({err.__class__.__name__})") from None
    entries = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    folder = posixpath.dirname(path)
    return [
        store._strip_protocol(e) if fs.is_url(e) else posixpath.normpath(posixpath.join(folder, e)) for e in entries
    ]


def is_listed_target(path: str, info: dict[str, Any], folder: str) -> bool:
    """Whether ``path``, listed by a store (``info``: fsspec's entry) under folder ``folder``, is a
    target: an image file, neither hidden nor in a hidden folder below ``folder``."""
    return _is_image(path, IMAGE_SUFFIXES) and not _hidden(path, folder) and _is_file(info)


def _is_file(info: dict[str, Any]) -> bool:
    return info.get("type", "file") == "file"


def _is_image(path: str, suffixes: tuple[str, ...]) -> bool:
    return posixpath.splitext(path)[1].lower() in suffixes


def _hidden(path: str, folder: str) -> bool:
    prefix = folder.rstrip("/") + "/"  # a listing's paths lie under its folder (relpath: 0.5 ms a path)
    rel = path[len(prefix) :] if path.startswith(prefix) else posixpath.relpath(path, folder)
    return any(part.startswith(".") for part in rel.split("/"))
