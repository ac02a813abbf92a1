"""Masks to small PNGs for the page, and what the page sends (mask PNGs, prompts) back to arrays and records.

Overlays are palette PNGs: index 0 transparent, ``i`` the fill of class ``i`` (translucent),
``C + i`` its outline (opaque). Encoding an index map is much cheaper than an RGBA image, and
the browser draws it straight over the photo.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence

import numpy as np
from PIL import Image

from sansa.atomic import encode_image
from sansa.errors import ImageError
from sansa.images import ImageTooLarge, open_image_file, read_size
from sansa.records import Prompt
from sansa.web import polygons
from sansa.web.errors import NotAnImage, TooLarge, WebError, human_size
from sansa.web.schema import PromptIn

FILL_ALPHA = 120
OUTLINE_ALPHA = 255


def hex_to_rgb(color: str) -> tuple[int, int, int]:
    """``#rrggbb`` -> ``(r, g, b)``."""
    return int(color[1:3], 16), int(color[3:5], 16), int(color[5:7], 16)


def outline(label_map: np.ndarray) -> np.ndarray:
    """``bool [H, W]``: labelled pixels with a 4-neighbour of another label (the edge of each region).

    Computed within the labelled pixels' bounding box only (a small mask on a 12-Mpx image is cheap)."""
    rows, cols = np.flatnonzero(label_map.any(axis=1)), np.flatnonzero(label_map.any(axis=0))
    edge = np.zeros(label_map.shape, dtype=bool)
    if rows.size:
        y0, y1 = max(rows[0] - 1, 0), min(rows[-1] + 2, label_map.shape[0])
        x0, x1 = max(cols[0] - 1, 0), min(cols[-1] + 2, label_map.shape[1])
        edge[y0:y1, x0:x1] = _outline(label_map[y0:y1, x0:x1])
    return edge


def _outline(label_map: np.ndarray) -> np.ndarray:
    padded = np.pad(label_map, 1, mode="edge")
    centre = padded[1:-1, 1:-1]
    edge = np.zeros(label_map.shape, dtype=bool)
    for dy, dx in ((0, 1), (2, 1), (1, 0), (1, 2)):
        edge |= padded[dy : dy + label_map.shape[0], dx : dx + label_map.shape[1]] != centre
    return edge & (label_map > 0)


def overlay_png(label_map: np.ndarray, colors: Sequence[str], max_side: int | None = None) -> bytes:
    """A palette PNG of ``label_map`` (``uint16`` or ``uint8 [H, W]``, 0 background, ``i`` = ``colors[i - 1]``).

    Args:
        max_side: shrink (nearest neighbour) so the longer side is at most this.
    """
    index = downsized(label_map, max_side)
    count = len(colors)
    pixels = index.astype(np.uint8)
    pixels[outline(index)] += count
    img = Image.fromarray(pixels, mode="P")
    rgb = [(0, 0, 0)] + [hex_to_rgb(c) for c in colors] * 2
    img.putpalette([v for c in rgb for v in c])
    img.info["transparency"] = bytes([0] + [FILL_ALPHA] * count + [OUTLINE_ALPHA] * count)
    return to_png(img)


def downsized(index: np.ndarray, max_side: int | None) -> np.ndarray:
    """``index`` (``[H, W]``) shrunk by nearest neighbour so its longer side is at most ``max_side``."""
    if max_side is None or max(index.shape) <= max_side:
        return index
    scale = max_side / max(index.shape)
    height, width = max(1, round(index.shape[0] * scale)), max(1, round(index.shape[1] * scale))
    rows = (np.arange(height) * index.shape[0] // height)[:, None]
    cols = (np.arange(width) * index.shape[1] // width)[None, :]
    return index[rows, cols]


def mask_png(mask: np.ndarray, color: str) -> bytes:
    """A palette PNG of ``bool [H, W]`` ``mask`` in ``color`` (filled and outlined)."""
    return overlay_png(np.ascontiguousarray(mask, dtype=bool).view(np.uint8), [color])  # 0/1, not copied


def to_png(img: Image.Image) -> bytes:
    """PNG bytes, fast to compress (sent to the browser, not stored), keeping palette transparency."""
    return encode_image(img, "PNG", compress_level=1, transparency=img.info.get("transparency"))


def data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def decode_mask_png(value: str, size: tuple[int, int], max_bytes: int) -> np.ndarray:
    """A mask sent by the page: base64 PNG (or ``data:`` URL) -> ``bool [H, W]``.

    Object pixels are those of non-zero alpha where the image has transparency, else non-zero value.

    Args:
        size: ``(H, W)`` the mask must have (the reference image's size).
    """
    payload = value.split(",", 1)[1] if value.startswith("data:") else value
    if len(payload) * 3 // 4 > max_bytes:
        raise TooLarge(f"prompt.mask_png: over the limit of {human_size(max_bytes)}")
    try:
        raw = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise WebError("prompt.mask_png: not valid base64") from None
    try:
        width, height = read_size(raw, "prompt.mask_png")  # header only: the pixel limit and size come first
        if (height, width) != tuple(size):
            raise WebError(f"prompt.mask_png: size {width}x{height} does not match the image ({size[1]}x{size[0]})")
        with open_image_file(raw, "prompt.mask_png") as img:
            if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
                mask = np.asarray(img.convert("RGBA"))[:, :, 3] > 0
            else:
                mask = np.asarray(img.convert("L")) > 0
    except ImageTooLarge as err:
        raise TooLarge(str(err)) from None
    except WebError:
        raise
    except ImageError:
        raise NotAnImage("prompt.mask_png: not a readable PNG image") from None
    if mask.shape != size:
        raise WebError(
            f"prompt.mask_png: size {mask.shape[1]}x{mask.shape[0]} does not match the image ({size[1]}x{size[0]})"
        )
    return mask


def page_prompt(prompt: PromptIn, size: tuple[int, int], max_bytes: int) -> Prompt:
    """The page's prompt as a validated :class:`~sansa.records.Prompt` record (``size``: the image's ``(H, W)``)."""
    strokes = [np.asarray(s, dtype=np.float32) for s in prompt.scribble or [] if s]
    if prompt.polygons is not None and prompt.mask_png is not None:
        raise WebError("prompt: send the mask as mask_png or as polygons, not both")
    mask = decode_mask_png(prompt.mask_png, size, max_bytes) if prompt.mask_png is not None else None
    if prompt.polygons is not None:
        mask = polygons.rasterise(prompt.polygons, size)
        if not mask.any():
            raise WebError("prompt.polygons: they cover no pixel of the image; remove the reference instead")
    return Prompt.create(
        mask=mask,
        points=[list(p) for p in prompt.points] if prompt.points else None,
        labels=prompt.point_labels if prompt.points or prompt.point_labels else None,  # Prompt explains a mistake
        box=list(prompt.box) if prompt.box is not None else None,
        scribble=strokes or None,
    )
