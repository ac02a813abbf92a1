"""Atomic file writes, for the files sansa writes itself: a temporary file in the destination's
folder, then ``os.replace``.

A run killed at any moment leaves either the old file or the new one at the final path, never
half a file. Leftover temporaries end in :data:`TEMP_SUFFIX` and are removed by the next run.
Files get the permissions the user's umask gives new files (``0644`` under umask ``022``), as
``open()`` would. A write that fails (read-only folder, full disk) raises :class:`OutputError`, one
line naming the path, and leaves the old file and no temporary.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sansa import fs
from sansa.errors import OutputError, SansaError
from sansa.fs import TEMP_SUFFIX

if TYPE_CHECKING:  # kept light: the CLI imports this module before any command runs
    import numpy as np
    from PIL import Image

    from sansa.fs import AnyPath


def write_bytes(path: AnyPath, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, creating its folder (``path`` may be a ``UPath``: see
    :mod:`sansa.fs`).

    Raises:
        OutputError: the folder or file cannot be written; the old file (if any) is kept.
    """
    if not isinstance(path, (str, os.PathLike)):  # a UPath
        return fs.write_bytes(path, data)
    with _replacing(Path(path)) as (fd, _):
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), 0o666 & ~current_umask())  # mkstemp makes 0600
            handle.write(data)


def write_chunks(path: AnyPath, chunks: Iterable[bytes]) -> None:
    """Write the concatenation of ``chunks`` to ``path`` atomically without holding it in memory
    (a large dataset file): locally a temporary beside ``path``; for a ``UPath`` a local temporary
    file, then one upload (:func:`sansa.fs.put_file`).

    Raises:
        OutputError: the folder or file cannot be written; the old file (if any) is kept.
    """
    if isinstance(path, (str, os.PathLike)):
        with _replacing(Path(path)) as (fd, _):
            with os.fdopen(fd, "wb") as handle:
                os.fchmod(handle.fileno(), 0o666 & ~current_umask())
                handle.writelines(chunks)
        return
    with tempfile.TemporaryDirectory(prefix="sansa-upload-") as folder:
        local = Path(folder) / "upload"
        with open(local, "wb") as handle:
            handle.writelines(chunks)
        fs.put_file(path, local)


def copy_file(source: Path, path: Path, link: bool = False) -> None:
    """Put a copy of ``source`` at ``path`` atomically (with the umask's permissions), or with
    ``link`` a hard link to it where the file system allows (else a copy).

    Raises:
        OutputError: ``path`` cannot be written; the old file (if any) is kept.
    """
    with _replacing(Path(path)) as (fd, tmp):
        os.close(fd)
        if not (link and _hard_link(Path(source), Path(tmp))):
            shutil.copyfile(source, tmp)
            os.chmod(tmp, 0o666 & ~current_umask())


@contextlib.contextmanager
def _replacing(path: Path) -> Iterator[tuple[int, str]]:
    """A new temporary file beside ``path`` (open descriptor, name) that the block fills; it then
    replaces ``path`` in one rename. On any error it is removed and ``path`` is left as it was
    (file-system errors as :class:`OutputError` naming ``path``)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    except OSError as err:
        raise OutputError.of(path, err) from None
    try:
        yield fd, tmp
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError) and not isinstance(err, SansaError):
            raise OutputError.of(path, err) from None
        raise


def _hard_link(source: Path, tmp: Path) -> bool:
    """Make ``tmp`` a hard link of ``source``; ``False`` where the file system refuses."""
    tmp.unlink()
    try:
        os.link(source, tmp)
    except (OSError, NotImplementedError):
        return False
    return True


def current_umask() -> int:
    """The process's umask, read without changing it where the system allows (Linux)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


_UMASK_LOCK = threading.Lock()


def write_text(path: AnyPath, text: str) -> None:
    """Write UTF-8 text atomically."""
    write_bytes(path, text.encode("utf-8"))


def write_json(path: AnyPath, value: Any, indent: int | None = 2) -> None:
    """Write JSON atomically (keys in insertion order, so equal values give equal bytes)."""
    write_text(path, json.dumps(value, indent=indent, ensure_ascii=False) + "\n")


def encode_image(image: Image.Image | np.ndarray, fmt: str, **options: Any) -> bytes:
    """Encode an image (PIL or ``uint8`` array) to ``PNG``/``JPEG`` bytes."""
    from PIL import Image

    if not isinstance(image, Image.Image):
        image = Image.fromarray(image)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def remove_temporaries(folder: AnyPath) -> int:
    """Delete temporaries a killed run left under ``folder``; returns how many."""
    count = 0
    if not isinstance(folder, (str, os.PathLike)):  # a UPath
        if fs.is_object_store(folder):  # whole-object writes leave no temporaries
            return 0
    if folder.is_dir():
        for path in folder.rglob(f"*{TEMP_SUFFIX}"):
            path.unlink(missing_ok=True)
            count += 1
    return count
