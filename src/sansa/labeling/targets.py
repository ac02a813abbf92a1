"""Target discovery, fixed batches, and what a target file was (for resuming).

Targets are sorted by name (their path relative to the deepest folder holding them all, POSIX
form) and cut into fixed batches of that sorted list: a batch holds the same targets whatever a
previous run finished, so results never depend on where a run stopped.
"""

from __future__ import annotations

import glob
import hashlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sansa.errors import SansaError


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


@dataclass(frozen=True)
class Batch:
    """A fixed batch: ``targets[i]`` is written only where ``write[i]`` (the others are done, but are
    encoded with the batch all the same, so that every result is computed in the same company)."""

    index: int
    targets: list[Target]
    write: list[bool]

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "targets": [asdict(t) for t in self.targets], "write": list(self.write)}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Batch:
        return cls(values["index"], [Target(**t) for t in values["targets"]], list(values["write"]))


def find_targets(inputs: Sequence[str], recursive: bool, exclude: Any = None) -> tuple[list[Target], Any]:
    """The target images named by ``inputs``, sorted by name, and the folder names are relative to.

    Args:
        inputs: folders (their images; hidden files and folders skipped), globs (``**`` recurses),
            image files, or list files (one path a line, relative to the list file; ``#`` comments).
        recursive: look in sub-folders of folders too.
        exclude: a folder whose files are never targets (the output folder; a ``Path`` or ``UPath``).

    Returns:
        Unique targets (stems not yet assigned), and the deepest folder holding them all: a
        ``Path``, or a URL string for URL targets (``s3://bucket/photos``; see :mod:`sansa.fs`).
    """
    from sansa import fs
    from sansa.images import IMAGE_SUFFIXES

    if any(fs.is_url(item) for item in inputs):  # s3://, gs://, ...: names relative to a URL folder
        urls, url_root = fs.find_targets(list(inputs), recursive, exclude=exclude)
        targets = [Target(url, fs.relative_name(url, url_root)) for url in urls]
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
            paths = sorted(p for p in pattern if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
                           and not any(part.startswith(".") for part in p.relative_to(path).parts))
        elif path.is_file():
            paths = [path] if path.suffix.lower() in IMAGE_SUFFIXES else _read_list(path)
        else:
            raise SansaError(f"--targets {item}: no such file or folder")
        paths = [p for p in paths if skip is None or not p.resolve().is_relative_to(skip)]
        if not paths:
            raise SansaError(f"--targets {item}: no images ({', '.join(IMAGE_SUFFIXES)}) found")
        found.update((p.resolve(), None) for p in paths)
    root = Path(os.path.commonpath([p.parent for p in found]))
    targets = [Target(str(p), p.relative_to(root).as_posix()) for p in found]
    return sorted(targets, key=lambda t: t.name), root


def _read_list(path: Path) -> list[Path]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise SansaError(f"--targets {path}: not a readable list of paths ({err.__class__.__name__})") from None
    entries = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    return [p if p.is_absolute() else path.parent / p for p in map(Path, entries)]


def fixed_batches(targets: Sequence[Target], size: int) -> Iterator[tuple[int, list[Target]]]:
    """``(index, targets)`` of each batch of ``size`` consecutive targets of the sorted list."""
    for index, start in enumerate(range(0, len(targets), size)):
        yield index, list(targets[start:start + size])


# -- what a file was ------------------------------------------------------------------------------
def file_stat(path: str | os.PathLike) -> dict[str, int] | None:
    """``{"bytes", "mtime_ns"}`` of a file (or URL), or ``None`` when it cannot be read."""
    from sansa import fs

    if fs.is_url(path):
        return fs.stat(str(path))
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return {"bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def file_sha256(path: str | os.PathLike) -> str | None:
    """The file's SHA-256 (hex), or ``None`` when it cannot be read."""
    from sansa import fs

    digest = hashlib.sha256()
    try:
        with fs.open_binary(str(path)) if fs.is_url(path) else open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return None
    return digest.hexdigest()


def fingerprint(path: str | os.PathLike) -> dict[str, Any] | None:
    """What a target file is: size, modification time and content hash (``None``: unreadable)."""
    stat = file_stat(path)
    sha = file_sha256(path) if stat is not None else None
    return {**stat, "sha256": sha} if stat is not None and sha is not None else None


def unchanged(path: str | os.PathLike, recorded: dict[str, Any] | None) -> bool:
    """Whether the file is still what ``recorded`` (a :func:`fingerprint`) says: the same size and
    time, or, when only the time moved, the same content."""
    if not recorded:
        return False
    stat = file_stat(path)
    if stat is None or stat["bytes"] != recorded.get("bytes"):
        return False
    return stat["mtime_ns"] == recorded.get("mtime_ns") or file_sha256(path) == recorded.get("sha256")
