"""Images inside dataset folders (``yolo/images/``, ``coco/images/``): copies or links of the targets.

Training tools read a dataset folder as a whole: Ultralytics finds ``labels/<stem>.txt`` by
replacing ``images`` with ``labels`` in each image path, datumaro and CVAT look for the COCO
``file_name`` under ``images/``. So each target's image is put at ``images/<stem><suffix>``:
a copy of its file (the default: the folder stands alone), or a hard link to it
(:attr:`ImageMode.LINK`: no extra disk space; a copy where the file system cannot link, e.g.
across disks). Symbolic links are not used: datumaro refuses images that resolve outside the
dataset folder. A target known only as pixels (no file found) is written as a PNG.

YOLO folders are flat (supervision reads no sub-folders of ``images/``): a stem's sub-folders
are joined with ``+``, a character no stem contains (``sub/img`` -> ``sub+img``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from sansa import atomic
from sansa.export.formats import ImageMode

if TYPE_CHECKING:
    from sansa.fs import AnyPath

#: Suffixes every consumer reads (Ultralytics' ``IMG_FORMATS`` minus rare ones); others become PNG.
DATASET_SUFFIXES = frozenset({".bmp", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp"})


def flat_stem(stem: str) -> str:
    """``sub/img`` -> ``sub+img``: unique, as stems never contain ``+``."""
    return stem.replace("/", "+")


def image_name(stem: str, source: Path | None) -> str:
    """``<stem><suffix>`` of the dataset's copy: the source's suffix when consumers read it, else ``.png``."""
    suffix = source.suffix.lower() if source is not None else ""
    return stem + (suffix if suffix in DATASET_SUFFIXES else ".png")


def place_image(dest: AnyPath, source: Path | None, image: np.ndarray, mode: ImageMode) -> None:
    """Put a target's image at ``dest`` atomically.

    Args:
        dest: where (its suffix from :func:`image_name`).
        source: the target's file, or ``None`` (then ``image``, RGB ``uint8 [H, W, 3]``, is
            written as PNG).
        mode: copy the file or hard-link it (a system that refuses the link gets a copy).
    """
    if source is None or source.suffix.lower() != dest.suffix:
        atomic.write_bytes(dest, atomic.encode_image(image, "PNG"))
        return
    if not isinstance(dest, Path):  # a UPath (object store, see sansa.fs): the file's bytes, whole
        atomic.write_bytes(dest, source.read_bytes())
        return
    atomic.copy_file(source, dest, link=mode is ImageMode.LINK)
