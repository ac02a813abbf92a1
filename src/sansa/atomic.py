"""Atomic file writes, for the files sansa writes itself: a temporary file in the destination's
folder, then ``os.replace``.

A run killed at any moment leaves either the old file or the new one at the final path, never
half a file. Leftover temporaries end in :data:`TEMP_SUFFIX` and are removed by the next run.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # kept light: the CLI imports this module before any command runs
    import numpy as np
    from PIL import Image

TEMP_SUFFIX = ".sansa-tmp"


def write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, creating its folder (``path`` may be a ``UPath``: see
    :mod:`sansa.fs`)."""
    if not isinstance(path, (str, os.PathLike)):  # a UPath
        from sansa import fs

        return fs.write_bytes(path, data)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str) -> None:
    """Write UTF-8 text atomically."""
    write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, value: Any, indent: int | None = 2) -> None:
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


def remove_temporaries(folder: Path) -> int:
    """Delete temporaries a killed run left under ``folder``; returns how many."""
    count = 0
    if not isinstance(folder, (str, os.PathLike)):  # a UPath
        from sansa import fs

        if fs.is_object_store(folder):  # whole-object writes leave no temporaries
            return 0
    if folder.is_dir():
        for path in folder.rglob(f"*{TEMP_SUFFIX}"):
            path.unlink(missing_ok=True)
            count += 1
    return count
