"""Reading images and masks from paths, PIL images and arrays.

Everything the model sees goes through :func:`load_image` (RGB ``uint8 [H, W, 3]``, EXIF
orientation applied) and :func:`load_mask` (``bool [H, W]``). Errors are one-line
:class:`~sansa.errors.ImageError` messages naming the file or argument.

Untrusted files: every file is opened here, and its width x height is read from the header and
checked against one pixel limit (:func:`max_pixels`: :func:`set_max_pixels`, else the
``SANSA_MAX_PIXELS`` environment variable, else 64 megapixels) *before* any pixel is decoded, so a
small file declaring a huge image (a decompression bomb) is an :class:`ImageTooLarge` error, never
gigabytes of memory. Importing this module silences PIL's ``DecompressionBombWarning`` (sansa's own
limit, stricter than PIL's, is checked instead); PIL's hard error above twice its limit is turned
into the same one-line error.

Only raster formats are decoded (:data:`RASTER_FORMATS`, whatever the file's name says): Pillow is
never asked to try its other plugins, so a PostScript/EPS file named ``photo.png`` is refused in one
line and never reaches Ghostscript (an external interpreter), nor do PDF, WMF or the stub formats
(FITS, GRIB, HDF5, BUFR) that hand files to other libraries.
"""

from __future__ import annotations

import io
import os
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from sansa import fs
from sansa.errors import ImageError

ImageLike = str | os.PathLike[str] | Image.Image | np.ndarray

DEFAULT_MAX_PIXELS = 64_000_000
MAX_PIXELS_ENV = "SANSA_MAX_PIXELS"
_max_pixels: int | None = None  # set_max_pixels(); None: the environment variable or the default
_UNITS = {"": 1, "k": 1_000, "m": 1_000_000, "g": 1_000_000_000}

warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


class ImageTooLarge(ImageError):
    """An image declares more pixels than :func:`max_pixels` allows (checked before decoding)."""


class UnsupportedFormat(ImageError):
    """A file in a format sansa does not decode (PostScript, EPS, PDF, ...): not in :data:`RASTER_FORMATS`."""


RASTER_FORMATS = ("PNG", "JPEG", "BMP", "TIFF", "WEBP", "GIF")
"""Pillow format names sansa decodes (JPEG includes MPO, the multi-picture JPEG many cameras write)."""
_KNOWN_NAMES = {"EPS": "PostScript/EPS", "PDF": "PDF"}


def parse_pixels(text: str, name: str = "max_pixels") -> int:
    """A pixel count from ``"64000000"``, ``"64_000_000"``, ``"64M"`` or ``"1.5G"`` (k, M, G: powers of 1000)."""
    match = re.fullmatch(r"\s*([0-9][0-9_]*(?:\.[0-9]+)?)\s*([kKmMgG]?)\s*", str(text))
    value = round(float(match.group(1).replace("_", "")) * _UNITS[match.group(2).lower()]) if match else 0
    if value < 1:
        raise ImageError(f"{name}: expected a positive number of pixels (e.g. 64000000 or 64M), got {text!r}")
    return value


def max_pixels() -> int:
    """The largest width x height sansa decodes: :func:`set_max_pixels`, else ``SANSA_MAX_PIXELS``, else 64 Mpx."""
    if _max_pixels is not None:
        return _max_pixels
    text = os.environ.get(MAX_PIXELS_ENV, "").strip()
    return parse_pixels(text, MAX_PIXELS_ENV) if text else DEFAULT_MAX_PIXELS


def set_max_pixels(limit: int | str | None) -> None:
    """Set the pixel limit for this process (``None``: back to ``SANSA_MAX_PIXELS`` or the default)."""
    global _max_pixels
    _max_pixels = None if limit is None else parse_pixels(limit) if isinstance(limit, str) else int(limit)
    if _max_pixels is not None and _max_pixels < 1:
        raise ImageError(f"max_pixels: expected a positive number of pixels, got {limit!r}")


def _megapixels(count: int) -> str:
    if count < 1_000_000:
        return f"{count} pixels"
    return f"{count / 1e6:.1f}".removesuffix(".0") + " megapixels"


def check_pixels(width: int, height: int, label: str) -> None:
    """Raise :class:`ImageTooLarge` if a ``width x height`` image is over :func:`max_pixels`."""
    limit = max_pixels()
    if width * height > limit:
        raise ImageTooLarge(
            f"{label}: {width}x{height} is {_megapixels(width * height)}, over the limit of "
            f"{_megapixels(limit)} (raise it with max_pixels=N or {MAX_PIXELS_ENV})"
        )


def _sniff_format(source: Path | bytes) -> str | None:
    """The name of the format a refused file is in, from its first bytes (no plugin opens it)."""
    try:
        prefix = source[:16] if isinstance(source, bytes) else source.open("rb").read(16)
    except OSError:
        return None
    if prefix.startswith(b"%PDF"):
        return "PDF"
    Image.init()
    for name, (_, accept) in Image.OPEN.items():
        try:
            if name not in RASTER_FORMATS and accept is not None and accept(prefix):
                return _KNOWN_NAMES.get(name, name)
        except Exception:  # noqa: BLE001 - a plugin's check on a short prefix; the format stays unnamed
            continue
    return None


def _refused(source: Path | bytes, label: str) -> ImageError:
    allowed = ", ".join(RASTER_FORMATS)
    kind = _sniff_format(source)
    if kind is None:
        return ImageError(f"{label}: not a readable image (not one of {allowed})")
    article = "an" if kind[0] in "AEIOU" else "a"
    return UnsupportedFormat(f"{label}: {article} {kind} file, not a raster image sansa reads ({allowed}); refused")


def open_lazily(source: str | os.PathLike[str] | bytes, name: str = "image") -> Image.Image:
    """Open an image file (or its bytes) without decoding: header read, format and pixel limit checked.

    For callers that decode in a way of their own (``draft``, raw mode, no EXIF rotation); close it
    (``with``). Only :data:`RASTER_FORMATS` are opened (:class:`UnsupportedFormat` otherwise).
    """
    label = name if isinstance(source, bytes) else str(source)
    return _open_lazily(source if isinstance(source, bytes) else _file(source), label)


def _open_lazily(source: Path | bytes, label: str) -> Image.Image:
    """``Image.open`` (header only, raster formats only) with the pixel limit checked; errors are
    one-line :class:`ImageError`."""
    limit = max_pixels()
    if Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < limit:
        Image.MAX_IMAGE_PIXELS = limit  # the user asked for more than PIL allows: PIL must not refuse first
    try:
        img = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source, formats=RASTER_FORMATS)
    except UnidentifiedImageError:
        raise _refused(source, label) from None
    except Image.DecompressionBombError as err:
        found = re.search(r"\((\d+) pixels\)", str(err))
        pixels = _megapixels(int(found.group(1))) if found else "too many pixels"
        raise ImageTooLarge(
            f"{label}: {pixels}, over the limit of {_megapixels(limit)} (raise it with "
            f"max_pixels=N or {MAX_PIXELS_ENV})"
        ) from None
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageError(f"{label}: not a readable image ({err.__class__.__name__}: {err})") from None
    try:
        check_pixels(*img.size, label)
    except ImageError:
        img.close()
        raise
    return img


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def describe(source: Any, name: str = "image") -> str:
    """A short human name for an image source, used in error messages."""
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    if isinstance(source, np.ndarray):
        return f"{name} (array {tuple(source.shape)} {source.dtype})"
    return f"{name} ({type(source).__name__})"


def _file(path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    try:
        if path.is_dir():
            raise ImageError(f"{path}: is a folder, not an image")
        if not path.exists():
            raise ImageError(f"{path}: no such file")
    except OSError as err:  # a name too long for the file system, a loop of links, ...
        raise ImageError(f"{str(path)[:120]}: cannot be read ({err.strerror or err.__class__.__name__})") from None
    return path


def open_image_file(source: str | os.PathLike[str] | bytes, name: str = "image") -> Image.Image:
    """Open an image file (or its bytes) fully, so corrupt files fail here, with EXIF orientation applied.

    The pixel limit is checked from the header before decoding (:class:`ImageTooLarge`).
    """
    label = name if isinstance(source, bytes) else str(source)
    img = open_lazily(source, name)
    try:
        with img:
            img.load()
            return ImageOps.exif_transpose(img)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise ImageError(f"{label}: not a readable image ({err.__class__.__name__}: {err})") from None


def load_image_and_bytes(path: str | os.PathLike[str]) -> tuple[np.ndarray, bytes]:
    """Read a local image file once: its pixels as :func:`load_image` gives them, and its bytes
    (to hash what was read, without reading the file a second time)."""
    try:
        data = _file(path).read_bytes()
    except OSError as err:
        raise ImageError(f"{path}: cannot be read ({err.strerror or err.__class__.__name__})") from None
    return _pil_to_rgb_array(open_image_file(data, str(path))), data


def read_size(source: str | os.PathLike[str] | bytes, name: str = "image") -> tuple[int, int]:
    """``(width, height)`` of an image file (or its bytes) as shown (EXIF rotation applied), from its header.

    Nothing is decoded; raises :class:`ImageTooLarge` over the pixel limit, :class:`ImageError` if unreadable.
    """
    with open_lazily(source, name) as img:
        width, height = img.size
        try:
            rotated = img.getexif().get(0x0112, 1) in (5, 6, 7, 8)
        except (AttributeError, OSError, SyntaxError, ValueError):
            rotated = False
    return (height, width) if rotated else (width, height)


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
        source: a file path or fsspec URL (``s3://...``; see :mod:`sansa.fs`), a PIL image or an
            array ``[H, W, 3]`` / ``[H, W]`` / ``[H, W, 4]``
            of ``uint8`` (``uint16`` is scaled to 8 bits). Grayscale is replicated to RGB,
            alpha is dropped, EXIF orientation of files and PIL images is applied.
        name: what to call the argument in error messages.
    """
    if isinstance(source, (str, os.PathLike)) and fs.is_url(source):
        return _pil_to_rgb_array(open_image_file(fs.read_bytes(str(source)), str(source)))
    if isinstance(source, (str, os.PathLike)):
        return _pil_to_rgb_array(open_image_file(source))
    if isinstance(source, Image.Image):
        check_pixels(*source.size, describe(source, name))
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
    mask: np.ndarray = np.asarray(array.any(axis=2)) if array.ndim == 3 else array > 0
    return mask


def load_mask(source: Any, name: str = "mask") -> np.ndarray:
    """Read a binary mask as ``bool [H, W]``: every non-zero pixel is foreground.

    Args:
        source: a file path (PNG: grayscale, palette index, RGB or alpha), a PIL image, or an
            array / tensor ``[H, W]`` of any dtype.
    """
    if isinstance(source, (str, os.PathLike)):
        return _pil_to_mask(open_image_file(source))
    if isinstance(source, Image.Image):
        check_pixels(*source.size, describe(source, name))
        return _pil_to_mask(source)
    if hasattr(source, "detach"):
        source = source.detach().cpu().numpy()
    array = np.asarray(source)
    if array.ndim == 3 and array.shape[2] in (1, 3, 4):
        array = np.asarray(array.any(axis=2))
    if array.ndim != 2:
        raise ImageError(f"{describe(source, name)}: expected a mask of shape [H, W]")
    return array.astype(bool)


def list_images(folder: str | os.PathLike[str]) -> list[Path]:
    """The image files directly inside ``folder``, sorted by name."""
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
