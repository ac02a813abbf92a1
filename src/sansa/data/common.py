"""Pieces the benchmark readers share: splits, file checks, mask decoding, resizing."""

from __future__ import annotations

import enum
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from sansa.data.pickles import UnsafePickleError, load_pickle
from sansa.errors import SansaError
from sansa.images import ImageError, open_lazily


class DatasetError(SansaError):
    """A benchmark folder is missing a file or has an unexpected layout."""


class Split(str, enum.Enum):
    """Which part of a benchmark: training classes/images, or the held-out fold."""

    TRAIN = "train"
    VAL = "val"
    TEST = "test"


def as_split(split: Split | str) -> Split:
    try:
        return Split(split)
    except ValueError:
        raise DatasetError(f"split: expected train, val or test, got {split!r}") from None


def require(path: Path, hint: str) -> Path:
    """``path`` if it exists, else a :class:`DatasetError` naming it and where to get it."""
    if not path.exists():
        raise DatasetError(f"{path}: not found ({hint})")
    return path


@dataclass(frozen=True)
class Layout:
    """What a split/annotation pickle must hold: said in errors, and checked before it is used."""

    description: str
    holds: Callable[[Any], bool]


def dict_of(values: Callable[[Any], bool]) -> Callable[[Any], bool]:
    """A check: a dict whose every value passes ``values``."""
    return lambda value: isinstance(value, dict) and all(values(v) for v in value.values())


def list_of(items: Callable[[Any], bool]) -> Callable[[Any], bool]:
    """A check: a list (or tuple) whose every item passes ``items``."""
    return lambda value: isinstance(value, (list, tuple)) and all(items(v) for v in value)


def _found(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"a numpy array {tuple(value.shape)} {value.dtype}"
    size = f" of {len(value)} items" if isinstance(value, (list, tuple, dict, set)) else ""
    return f"a {type(value).__name__}{size}" + (" laid out otherwise" if isinstance(value, dict) else "")


def read_pickle(path: Path, hint: str, layout: Layout) -> Any:
    """A split/annotation pickle of the field's standard files, read by the restricted unpickler.

    Only plain data loads (:mod:`sansa.data.pickles`); anything that could run code is a
    :class:`DatasetError` naming the file, raised before any of it is called. Plain data in
    another layout than ``layout`` is a one-line :class:`DatasetError` naming the file and what
    was expected.
    """

    try:
        value = load_pickle(require(path, hint))
    except UnsafePickleError as err:
        raise DatasetError(str(err)) from None
    except OSError as err:
        raise DatasetError(f"{path}: cannot be read ({err.strerror or err})") from None
    if not layout.holds(value):
        raise DatasetError(f"{path}: expected {layout.description}, found {_found(value)} ({hint})")
    return value


def read_json(path: Path, hint: str) -> Any:
    try:
        return json.loads(require(path, hint).read_text())
    except ValueError as err:
        raise DatasetError(f"{path}: not valid JSON ({err})") from None


def read_lines(path: Path, hint: str) -> list[str]:
    """Non-empty stripped lines of a split file."""
    return [line.strip() for line in require(path, hint).read_text().splitlines() if line.strip()]


def open_as_stored(path: Path) -> Image.Image:
    """An image file decoded as the authors' readers see it: ``Image.open``, **no EXIF rotation**.

    Benchmark annotations (label PNGs, polygons, RLE) are in the stored pixel grid, and the
    authors read images with ``Image.open(path).convert('RGB')``; rotating a photo by its EXIF
    tag (as :func:`sansa.images.load_image` does for user images) would misalign it with its
    mask. The pixel limit is checked from the header first; errors are one line naming the file.
    """
    try:
        with open_lazily(path) as img:  # raster formats only; pixel limit (ImageTooLarge) from the header
            img.load()
            return img.copy()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise ImageError(f"{path}: not a readable image ({err.__class__.__name__}: {err})") from None


def load_rgb(path: Path) -> np.ndarray:
    """``uint8 [H, W, 3]``: ``Image.open(path).convert('RGB')`` as the authors (no EXIF rotation)."""
    return np.array(open_as_stored(path).convert("RGB"), dtype=np.uint8)


def read_label_png(path: Path) -> np.ndarray:
    """A label PNG as its raw values ``[H, W]`` (palette indices or grey levels, not colours).

    As the authors (COCO-20i) and HSNet (PASCAL-5i): ``np.array(Image.open(path))``; a mode with
    colours (RGB) is reduced to grey.
    """
    img = open_as_stored(path)
    if img.mode not in ("P", "L", "I", "I;16"):
        img = img.convert("L")
    return np.asarray(img)


def decode_segmentation(segmentation: Any, height: int, width: int) -> np.ndarray:
    """``bool [H, W]`` from a COCO segmentation: polygons ``[[x0, y0, x1, y1, ...], ...]`` or RLE."""
    from pycocotools import mask as mask_utils

    if isinstance(segmentation, np.ndarray):
        return segmentation.astype(bool)
    if isinstance(segmentation, list):  # polygons
        rles = mask_utils.frPyObjects(
            [np.asarray(p, dtype=np.float64).ravel().tolist() for p in segmentation], height, width
        )
        return mask_utils.decode(mask_utils.merge(rles)).astype(bool)
    if isinstance(segmentation, dict):
        rle = dict(segmentation)
        if isinstance(rle.get("counts"), list):  # uncompressed RLE
            rle = mask_utils.frPyObjects(rle, height, width)
        elif isinstance(rle.get("counts"), str):
            rle["counts"] = rle["counts"].encode("ascii")
        return mask_utils.decode(rle).astype(bool)
    raise DatasetError(f"unsupported segmentation type {type(segmentation).__name__}")


def union(masks: list[np.ndarray], height: int, width: int) -> np.ndarray:
    out = np.zeros((height, width), dtype=bool)
    for m in masks:
        out |= m
    return out


def crop(image: np.ndarray, mask: np.ndarray, box: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Both cut to ``box = (x0, y0, x1, y1)`` (exclusive ends, clipped to the image)."""
    height, width = mask.shape
    x0, y0 = max(0, box[0]), max(0, box[1])
    x1, y1 = min(width, max(box[2], x0 + 1)), min(height, max(box[3], y0 + 1))
    return image[y0:y1, x0:x1], mask[y0:y1, x0:x1]


def squash(image: np.ndarray, mask: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Both resized to ``size x size`` without keeping the aspect, as the authors' datasets do.

    The image: PIL bilinear (``torchvision.transforms.Resize`` on a PIL image). The mask: torch
    ``F.interpolate(mode='nearest')``, i.e. output pixel ``i`` takes input pixel
    ``floor(i * in / out)`` (no half-pixel centring, unlike PIL NEAREST).
    """
    img = np.array(Image.fromarray(image).resize((size, size), Image.Resampling.BILINEAR))
    return img, resize_nearest(mask, size)


def resize_nearest(mask: np.ndarray, size: int) -> np.ndarray:
    """``mask [H, W]`` (bool or integer) at ``size x size`` by torch nearest interpolation, same dtype."""
    import torch
    import torch.nn.functional as F

    mask = np.asarray(mask)
    if mask.shape == (size, size):
        return mask.copy()
    values = torch.from_numpy(mask.astype(np.float32))[None, None]
    return F.interpolate(values, size=(size, size), mode="nearest")[0, 0].numpy().astype(mask.dtype)
