"""Drawing on pictures: a segmentation's overlay (classes tinted, objects outlined, a legend)
and a reference's prompt. Used by ``Segmentation.plot()``, the ``overlay`` export, the reference
pictures of a labelling run and the inspection report.

Images are RGB ``uint8 [H, W, 3]``; label maps ``uint16 [H, W]`` (0 background, ``i + 1`` =
``labels[i]``); colours come from :mod:`sansa.drawing.palette`; coordinates are image pixels
``(x, y)``, ``x`` = column.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
from numpy.typing import ArrayLike
from PIL import Image

from sansa.drawing import text as legend_text
from sansa.drawing.palette import palette_array

OVERLAY_ALPHA = 0.45  # weight of the class colour over the image
POSITIVE, NEGATIVE = (0, 230, 0), (255, 40, 40)  # point colours on reference pictures


def overlay(
    image: np.ndarray,
    label_map: np.ndarray,
    labels: list[str],
    legend: bool = True,
    colors: np.ndarray | None = None,
    outlines: Sequence[tuple[int, np.ndarray]] | None = None,
) -> np.ndarray:
    """The image with each class tinted in its colour, outlined, and a legend with pixel coverage.

    Args:
        colors: ``uint8 [len(labels) + 1, 3]``, row ``i`` the colour of class id ``i`` (default:
            :func:`sansa.drawing.palette.palette_array`).
        outlines: ``(class id, bool [H, W] mask)`` of each object to outline in its class's
            colour (touching objects of one class show the line between them); ``None``: each
            class's outline.

    Returns:
        RGB ``uint8 [H, W, 3]``, the size of ``image``.
    """
    colors = palette_array(len(labels)) if colors is None else np.asarray(colors, dtype=np.uint8)
    out = np.array(image, dtype=np.uint8, copy=True)
    foreground = label_map > 0  # only those pixels are blended (a 12-Mpx image is mostly background)
    tint = colors[label_map[foreground]].astype(np.float32)
    blended = (1 - OVERLAY_ALPHA) * out[foreground].astype(np.float32) + OVERLAY_ALPHA * tint
    out[foreground] = blended.round().astype(np.uint8)
    thickness = _thickness(image.shape[:2])
    if outlines is None:
        outlines = [(class_id, label_map == class_id) for class_id in range(1, len(labels) + 1)]
    for class_id, mask in outlines:
        pixels = mask.astype(np.uint8)
        x, y, w, h = cv2.boundingRect(pixels)  # contours of the mask's box only: many objects stay cheap
        if w == 0:
            continue
        crop = np.ascontiguousarray(pixels[y : y + h, x : x + w])
        contours, _ = cv2.findContours(crop, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE, offset=(x, y))
        cv2.drawContours(out, contours, -1, tuple(int(c) for c in colors[class_id]), thickness)
    if legend:
        total = max(label_map.size, 1)
        rows = [
            (f"{name} {np.count_nonzero(label_map == i) / total:.1%}", colors[i])
            for i, name in enumerate(labels, start=1)
        ]
        _draw_legend(out, rows)
    return out


def draw_prompt(
    image: np.ndarray,
    points: ArrayLike | None = None,
    point_labels: ArrayLike | None = None,
    box: ArrayLike | None = None,
    scribble: ArrayLike | None = None,
) -> np.ndarray:
    """Draw a reference prompt in place and return the image: box (white), clicks (green
    positive, red negative), scribble (green line). Coordinates are image pixels ``(x, y)``:
    ``points`` ``[P, 2]`` with ``point_labels`` ``[P]`` (1 positive, 0 negative; default all
    positive), ``box`` ``[4]`` ``x0, y0, x1, y1``, ``scribble`` ``[S, 2]``."""
    thickness = _thickness(image.shape[:2])
    if box is not None:
        x0, y0, x1, y1 = (int(round(float(v))) for v in np.asarray(box).reshape(4))
        cv2.rectangle(image, (x0, y0), (x1, y1), (255, 255, 255), thickness)
    if scribble is not None:
        line = np.round(np.asarray(scribble)).astype(np.int32).reshape(-1, 1, 2)
        cv2.polylines(image, [line], False, POSITIVE, thickness)
    if points is not None:
        clicks = np.round(np.asarray(points)).astype(int).reshape(-1, 2)
        labels = np.ones(len(clicks), dtype=int) if point_labels is None else np.asarray(point_labels).reshape(-1)
        for (x, y), label in zip(clicks, labels, strict=True):
            cv2.circle(image, (int(x), int(y)), 3 * thickness, POSITIVE if label else NEGATIVE, -1)
            cv2.circle(image, (int(x), int(y)), 3 * thickness, (255, 255, 255), 1)
    return image


def _thickness(size: tuple[int, int]) -> int:
    return max(1, round(min(size) / 250))


def _draw_legend(image: np.ndarray, rows: list[tuple[str, np.ndarray]]) -> None:
    """Swatches and names in the top-left corner, on a dark box; names in any script
    (:mod:`sansa.drawing.text`: DejaVu Sans from matplotlib, then fallbacks)."""
    from PIL import ImageDraw

    size = max(10, round(min(image.shape[:2]) / 28))  # text height in pixels
    line_h, pad = round(size * 1.5), max(2, size // 3)
    width = max(legend_text.text_width(name, size) for name, _ in rows)
    box_w, box_h = min(image.shape[1], width + size + 3 * pad), min(image.shape[0], line_h * len(rows) + pad)
    image[:box_h, :box_w] = (image[:box_h, :box_w] * 0.35).astype(np.uint8)
    canvas = Image.fromarray(image[:box_h, :box_w])
    draw = ImageDraw.Draw(canvas)
    for row, (name, color) in enumerate(rows):
        top = pad + row * line_h
        draw.rectangle((pad, top, pad + size - 1, top + size - 1), fill=tuple(int(c) for c in color))
        legend_text.draw_text(draw, (2 * pad + size, top - size // 8), name, size, (255, 255, 255))
    image[:box_h, :box_w] = np.asarray(canvas)
