"""Reading images and masks from paths, PIL images and arrays.

Everything the model sees goes through :func:`load_image` (RGB ``uint8 [H, W, 3]``, EXIF
orientation applied) and :func:`load_mask` (``bool [H, W]``). Errors are one-line
:class:`~sansa.errors.ImageError` messages naming the file or argument.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from sansa.errors import ImageError

ImageLike = str | os.PathLike | Image.Image | np.ndarray

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def describe(source: Any, name: str = "image") -> str:
    """A short human name for an image source, used in error messages."""
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    if isinstance(source, np.ndarray):
        return f"{name} (array {tuple(source.shape)} {source.dtype})"
    return f"{name} ({type(source).__name__})"


def open_image_file(path: str | os.PathLike) -> Image.Image:
    """Open an image file fully (so corrupt files fail here) with EXIF orientation applied."""
    path = Path(path)
    if not path.exists():
        raise ImageError(f"{path}: no such file")
    if path.is_dir():
        raise ImageError(f"{path}: is a folder, not an image")
    try:
        with Image.open(path) as img:
            img.load()
            return ImageOps.exif_transpose(img)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ImageError(f"{path}: not a readable image ({err.__class__.__name__}: {err})") from None


def _sixteen_bit_to_uint8(array: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(array.astype(np.float64) / 257.0), 0, 255).astype(np.uint8)


def _pil_to_rgb_array(img: Image.Image) -> np.ndarray:
    if img.mode in _SIXTEEN_BIT_MODES:
        gray = _sixteen_bit_to_uint8(np.asarray(img))
        return np.repeat(gray[:, :, None], 3, axis=2)
    if img.mode == "F":
        raise ImageError("floating-point images are not supported; save the image as 8- or 16-bit")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        # Transparent pixels keep their colour: alpha is not part of what SANSA sees.
        img = img.convert("RGBA")
    return np.array(img.convert("RGB"), dtype=np.uint8)  # a writable copy (torch warns on read-only arrays)


def _array_to_rgb(array: np.ndarray, label: str) -> np.ndarray:
    if array.dtype == np.uint16:
        array = _sixteen_bit_to_uint8(array)
    if array.dtype != np.uint8:
        raise ImageError(f"{label}: expected a uint8 (or uint16) array, got {array.dtype}")
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    elif array.ndim == 3 and array.shape[2] in (3, 4):
        array = array[:, :, :3]
    elif array.ndim == 3 and array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    else:
        raise ImageError(f"{label}: expected an array of shape [H, W, 3], got {tuple(array.shape)}")
    if array.shape[0] < 1 or array.shape[1] < 1:
        raise ImageError(f"{label}: image is empty")
    return np.ascontiguousarray(array)


def load_image(source: ImageLike, name: str = "image") -> np.ndarray:
    """Read an image as RGB ``uint8 [H, W, 3]``.

    Args:
        source: a file path, a PIL image or an array ``[H, W, 3]`` / ``[H, W]`` / ``[H, W, 4]``
            of ``uint8`` (``uint16`` is scaled to 8 bits). Grayscale is replicated to RGB,
            alpha is dropped, EXIF orientation of files and PIL images is applied.
        name: what to call the argument in error messages.
    """
    if isinstance(source, (str, os.PathLike)):
        return _pil_to_rgb_array(open_image_file(source))
    if isinstance(source, Image.Image):
        return _pil_to_rgb_array(ImageOps.exif_transpose(source))
    if isinstance(source, np.ndarray):
        return _array_to_rgb(source, describe(source, name))
    if hasattr(source, "numpy"):  # a torch tensor [H, W, 3]
        return _array_to_rgb(source.detach().cpu().numpy(), describe(source, name))
    raise ImageError(f"{name}: expected a path, PIL image or array, got {type(source).__name__}")


def _pil_to_mask(img: Image.Image) -> np.ndarray:
    if img.mode in ("RGBA", "LA") and np.asarray(img.getchannel("A")).min() < 255:
        return np.asarray(img.getchannel("A")) > 0
    if img.mode == "P":
        return np.asarray(img) > 0  # palette index 0 is background
    array = np.asarray(img)
    return array.any(axis=2) if array.ndim == 3 else array > 0


def load_mask(source: Any, name: str = "mask") -> np.ndarray:
    """Read a binary mask as ``bool [H, W]``: every non-zero pixel is foreground.

    Args:
        source: a file path (PNG: grayscale, palette index, RGB or alpha), a PIL image, or an
            array / tensor ``[H, W]`` of any dtype.
    """
    if isinstance(source, (str, os.PathLike)):
        return _pil_to_mask(open_image_file(source))
    if isinstance(source, Image.Image):
        return _pil_to_mask(source)
    if hasattr(source, "detach"):
        source = source.detach().cpu().numpy()
    array = np.asarray(source)
    if array.ndim == 3 and array.shape[2] in (1, 3, 4):
        array = array.any(axis=2)
    if array.ndim != 2:
        raise ImageError(f"{describe(source, name)}: expected a mask of shape [H, W]")
    return array.astype(bool)


def list_images(folder: str | os.PathLike) -> list[Path]:
    """The image files directly inside ``folder``, sorted by name."""
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
