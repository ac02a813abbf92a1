"""Targets listed page by page, so that a run starts on the first page of a million-object prefix.

:func:`stream_targets` gives the targets of :func:`sansa.targets.find_targets` (the same names, the
same order, the same root) in pages, each target with what its listing told of it (size and time,
for resuming without a request per target):

* One folder URL on S3 (``s3://bucket/photos/``): ``ListObjectsV2`` pages of up to 1,000 keys,
  which come sorted by the keys' UTF-8 bytes, the order of Python's ``str`` sort, so a page's
  targets are the next ones of the sorted list. The names are relative to the deepest folder
  holding every target, which a listing knows for sure only once it has seen targets of two
  sub-folders (or one directly in the folder): the pages are held back until then (all of them
  when every target lies in one sub-folder). A page out of key order is refused.
* Anything else (local folders, several inputs, globs, list files, other stores): the whole
  list first, as one page. A local folder's walk comes in no order (``os.scandir``), so it must
  be sorted whole; that is a few seconds for a million local files, against ~1,000 LIST requests
  one after another on a store.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sansa import fs
from sansa.errors import SansaError
from sansa.images import IMAGE_SUFFIXES
from sansa.targets import Target, find_targets, is_listed_target, relative_name

Stat = dict[str, int]
Page = list[tuple[Target, Stat | None]]  # targets in name order, each with its listed size and time
PAGE_KEYS = 1000  # keys per LIST request (S3's maximum)


@dataclass
class TargetStream:
    """Targets in pages, in name order.

    Attributes:
        root: the folder names are relative to (a ``Path``, or a URL string), as :func:`find_targets` gives.
        pages: the pages not yet read (each read from the store when asked for).
        streamed: whether pages come as the store lists them (else: pages of the whole list, listed first).
    """

    root: Any
    pages: Iterator[Page]
    streamed: bool


def stream_targets(inputs: Sequence[str], recursive: bool, exclude: Any = None) -> TargetStream:
    """The targets of ``inputs`` (see :func:`sansa.targets.find_targets`) as a :class:`TargetStream`.

    The first pages are read here (at least one; more when the root is not yet known), so an input
    that does not exist or holds no image raises here, before the run touches its output.

    Raises:
        SansaError: one line naming the input, as :func:`find_targets` does.
    """
    streamable = len(inputs) == 1 and fs.is_url(inputs[0]) and not any(ch in inputs[0] for ch in "*?[")
    if streamable:
        store, path = fs.filesystem(inputs[0])
        pages = list_pages(store, path, recursive)
        if pages is not None:
            return _stream_folder(inputs[0], store, path.rstrip("/"), pages, exclude)
    stats: dict[str, Stat] = {}
    targets, root = find_targets(inputs, recursive, exclude=exclude, stats=stats)
    return TargetStream(root, _pages_of(targets, stats), streamed=False)


def _pages_of(targets: list[Target], stats: dict[str, Stat]) -> Iterator[Page]:
    """A whole listing in pages of :data:`PAGE_KEYS` (batches are formed, and what earlier runs
    finished is found, a page at a time)."""
    for start in range(0, len(targets), PAGE_KEYS):
        yield [(t, stats.get(t.path)) for t in targets[start : start + PAGE_KEYS]]


def list_pages(store: Any, path: str, recursive: bool) -> Iterator[list[dict[str, Any]]] | None:
    """The files under folder ``path`` of ``store`` as pages of fsspec-style infos (``name``,
    ``size``, ``LastModified``) in key order, each asked for when the previous one is used up (the
    first one here); ``None`` when the store has no ordered, paged listing (only S3 here) or no
    file lies directly under ``path/`` (not a folder, or one to be told apart by the whole listing).
    """
    if not hasattr(store, "_call_s3"):
        return None
    from fsspec.asyn import sync

    bucket, _, prefix = path.strip("/").partition("/")
    request = {"Bucket": bucket, "Prefix": f"{prefix}/" if prefix else "", "MaxKeys": PAGE_KEYS}
    if not recursive:
        request["Delimiter"] = "/"

    def page(token: str | None) -> dict[str, Any]:
        asked = {**request, **({"ContinuationToken": token} if token else {})}
        return fs.retrying(lambda: sync(store.loop, store._call_s3, "list_objects_v2", **asked))

    def infos(answer: dict[str, Any]) -> list[dict[str, Any]]:
        return [
            {"name": f"{bucket}/{o['Key']}", "type": "file", "size": o["Size"], "LastModified": o["LastModified"]}
            for o in answer.get("Contents", [])
        ]

    first = page(None)
    if not first.get("Contents"):
        return None

    def pages() -> Iterator[list[dict[str, Any]]]:
        answer = first
        while True:
            yield infos(answer)
            token = answer.get("NextContinuationToken")
            if not answer.get("IsTruncated") or not token:
                return
            answer = page(token)

    return pages()


def _stream_folder(
    item: str, store: Any, folder: str, pages: Iterator[list[dict[str, Any]]], exclude: Any
) -> TargetStream:
    """The targets of one folder URL from its listing's ``pages`` (see the module docstring)."""
    skip = str(exclude).rstrip("/") + "/" if fs.is_url(exclude) else None
    last = [""]  # the last key seen: pages must come in key order

    def targets_of(infos: list[dict[str, Any]]) -> list[tuple[str, Stat]]:
        found = []
        for info in infos:
            key = info["name"]
            if key <= last[0]:
                raise SansaError(f"targets {item}: the store listed {key} after {last[0]} (not in key order)")
            last[0] = key
            if not is_listed_target(key, info, folder):
                continue
            url = store.unstrip_protocol(key)
            if skip is None or not url.startswith(skip):
                found.append((url, fs.listed_stat(info)))
        return found

    held: list[tuple[str, Stat]] = []  # listed before the root is known
    common: str | None = None  # the deepest folder holding every target listed so far
    for infos in pages:
        page = targets_of(infos)
        held += page
        for url, _ in page:
            parent = posixpath.dirname(url.split("://", 1)[1])
            common = parent if common is None else posixpath.commonpath([common, parent])
        if common == folder:
            break  # no target can lie outside it: the root is known
    if not held:
        raise SansaError(f"targets {item}: no images ({', '.join(IMAGE_SUFFIXES)}) found")
    scheme = held[0][0].split("://", 1)[0]
    root = f"{scheme}://{common}"

    def named(found: list[tuple[str, Stat]]) -> Page:
        return [(Target(url, relative_name(url, root)), stat) for url, stat in found]

    def rest() -> Iterator[Page]:
        yield named(held)
        held.clear()
        for infos in pages:
            page = targets_of(infos)
            if page:
                yield named(page)

    return TargetStream(root, rest(), streamed=True)
