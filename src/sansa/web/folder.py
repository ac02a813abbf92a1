"""The one folder the server may read images from (and add uploads to).

Every image is addressed by its plain file name; a name is only ever turned into a path after it
is checked to be an image file directly inside the folder, so ``../`` or absolute paths cannot
reach anything else.
"""

from __future__ import annotations

import builtins
import io
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from sansa.atomic import write_bytes
from sansa.errors import ImageError
from sansa.images import (
    IMAGE_SUFFIXES,
    ImageTooLarge,
    list_images,
    load_image,
    open_image_file,
    open_lazily,
    read_size,
)
from sansa.web.errors import Conflict, NotAnImage, NotFound, TooLarge, WebError, human_size
from sansa.web.schema import ImageInfo, ImageList, SkippedImage

MAX_UPLOAD_BYTES = 32 * 1024 * 1024
MAX_NAME_BYTES = 255  # the longest file name of common file systems (longer: ENAMETOOLONG)
_SAFE_NAME = re.compile(r"^[\w][\w .()+-]*$")  # no separators, no leading dot
THUMB_CACHE_BYTES = 96 * 1024 * 1024


class ImageFolder:
    """The served folder.

    Args:
        root: the folder the user named.
        max_upload_bytes: the largest upload (image or mask) accepted.
        cache_size: decoded images kept in memory (RGB ``uint8 [H, W, 3]``).
    """

    def __init__(
        self, root: str | os.PathLike[str], max_upload_bytes: int = MAX_UPLOAD_BYTES, cache_size: int = 8
    ) -> None:
        self.root: Path = Path(root).resolve()
        if self.root.is_file():
            raise ImageError(f"{root}: is a file; give the folder of images to serve")
        if not self.root.is_dir():
            raise ImageError(f"{root}: no such folder")
        self.max_upload_bytes = max_upload_bytes
        self._pixels: OrderedDict[tuple[str, int], np.ndarray] = OrderedDict()
        self._cache_size = cache_size
        self._sizes: dict[tuple[str, int, int], ImageInfo | SkippedImage] = {}
        self._thumbs: OrderedDict[tuple[str, int, int], bytes] = OrderedDict()
        self._thumb_bytes = 0
        self._lock = threading.Lock()

    def path(self, name: str) -> Path:
        """The path of image ``name``; :class:`WebError` unless it is an image file in the folder."""
        if not name or name != Path(name).name or name in (".", "..") or "\\" in name or "\x00" in name:
            raise WebError(f"image {name!r}: must be a plain file name inside the served folder")
        if len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
            raise WebError(f"image {name[:40]!r}...: name longer than {MAX_NAME_BYTES} bytes")
        path = self.root / name
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            raise NotAnImage(f"image {name!r}: not an image file ({', '.join(IMAGE_SUFFIXES)})")
        if not path.is_file() or path.resolve().parent != self.root:
            raise NotFound(f"image {name!r}: no such image in {self.root}")
        return path

    def list(self) -> ImageList:
        """The folder's images with their sizes; unreadable files are listed as skipped.

        A file's header is read again only when its size or modification time changes.
        """
        images: builtins.list[ImageInfo] = []
        skipped: builtins.list[SkippedImage] = []
        seen = {}
        for path in list_images(self.root):
            if path.resolve().parent != self.root:  # a link to a file elsewhere: never served
                continue
            stat = path.stat()
            key = (path.name, stat.st_mtime_ns, stat.st_size)
            entry = self._sizes.get(key) or _size_entry(path)
            seen[key] = entry
            if isinstance(entry, ImageInfo):
                images.append(entry)
            else:
                skipped.append(entry)
        with self._lock:
            self._sizes = seen
        return ImageList(folder=str(self.root), images=images, skipped=skipped)

    def names(self) -> builtins.list[str]:
        return [info.name for info in self.list().images]

    def load(self, name: str) -> np.ndarray:
        """Image ``name`` as RGB ``uint8 [H, W, 3]`` (EXIF orientation applied), cached while unchanged."""
        path = self.path(name)
        key = (name, path.stat().st_mtime_ns)
        with self._lock:
            if key in self._pixels:
                self._pixels.move_to_end(key)
                return self._pixels[key]
        pixels = load_image(path, name)
        with self._lock:
            self._pixels[key] = pixels
            while len(self._pixels) > self._cache_size:
                self._pixels.popitem(last=False)
        return pixels

    def version(self, name: str) -> int:
        """Changes when the file changes (its modification time)."""
        return self.path(name).stat().st_mtime_ns

    def thumbnail(self, name: str, max_side: int) -> bytes:
        """A JPEG of image ``name`` whose longer side is at most ``max_side`` (kept in memory)."""
        key = (name, self.version(name), max_side)
        with self._lock:
            if key in self._thumbs:
                self._thumbs.move_to_end(key)
                return self._thumbs[key]
        data = _thumbnail(self.path(name), max_side)
        with self._lock:
            self._thumbs[key] = data
            self._thumb_bytes += len(data)
            while self._thumb_bytes > THUMB_CACHE_BYTES and len(self._thumbs) > 1:
                self._thumb_bytes -= len(self._thumbs.popitem(last=False)[1])
        return data

    def warm_thumbnails(self, sides: Sequence[int]) -> threading.Thread:
        """Make the thumbnails of every image in a background thread (the page asks for them at once)."""

        def run() -> None:
            for info in self.list().images:
                for side in sides:
                    try:
                        self.thumbnail(info.name, side)
                    except (WebError, ImageError, OSError, ValueError):
                        break

        thread = threading.Thread(target=run, name="sansa-thumbnails", daemon=True)
        thread.start()
        return thread

    def save_upload(self, filename: str | None, data: bytes) -> ImageInfo:
        """Add an uploaded image to the folder (atomically), refusing to overwrite a file.

        Raises:
            TooLarge: over ``max_upload_bytes``. NotAnImage: wrong suffix or not decodable.
            WebError: an unsafe file name. Conflict: the name is taken.
        """
        if len(data) > self.max_upload_bytes:
            raise TooLarge(
                f"upload {filename!r}: {human_size(len(data))} is over the limit of {human_size(self.max_upload_bytes)}"
            )
        name = Path(filename or "").name
        if len(name.encode()) > MAX_NAME_BYTES:
            raise WebError(f"upload {name[:40]!r}...: name longer than {MAX_NAME_BYTES} bytes")
        if not name or name != filename or not _SAFE_NAME.match(name):
            raise WebError(f"upload {filename!r}: use a plain file name (letters, digits, . _ - + ( ) and spaces)")
        if Path(name).suffix.lower() not in IMAGE_SUFFIXES:
            raise NotAnImage(f"upload {name!r}: not an image file name ({', '.join(IMAGE_SUFFIXES)})")
        try:
            with open_image_file(data, f"upload {name!r}") as img:  # pixel limit checked before decoding
                width, height = img.size
        except ImageTooLarge as err:
            raise TooLarge(str(err)) from None
        except ImageError:
            raise NotAnImage(f"upload {name!r}: the file is not a readable image") from None
        target = self.root / name
        if target.exists():
            raise Conflict(f"upload {name!r}: a file of that name is already in the folder")
        write_bytes(target, data)
        return ImageInfo(name=name, width=width, height=height)


def _size_entry(path: Path) -> ImageInfo | SkippedImage:
    try:
        width, height = read_size(path, path.name)  # header only, pixel limit checked
        return ImageInfo(name=path.name, width=width, height=height)
    except ImageError as err:
        return SkippedImage(name=path.name, reason=str(err).removeprefix(f"{path}: "))


def _thumbnail(path: Path, max_side: int) -> bytes:
    """Decode at a reduced size where the format allows (JPEG draft), upright, as a JPEG."""
    try:
        with open_lazily(path, path.name) as img:  # raster formats only; the pixel limit, from the header
            img.draft("RGB", (max_side, max_side))
            img = ImageOps.exif_transpose(img).convert("RGB")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise ImageError(f"image {path.name!r}: not a readable image ({err})") from None
    img.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
    out = io.BytesIO()
    img.save(out, format="JPEG", quality=85)
    return out.getvalue()
