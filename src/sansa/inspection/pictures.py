"""The pictures of an inspection: the per-image PCA grid (PNG), and the objects' 3D scatter as a
static PNG (matplotlib) and as a self-contained interactive HTML page (no network needed).

Images are RGB ``uint8 [H, W, 3]``; PCA maps ``uint8 [h, w, 3]`` (one per image, one colour scale
for all); scatter coordinates ``float [N, 3]`` (components 1-3 of the objects' features).
"""

from __future__ import annotations

import html
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from sansa.drawing import overlay
from sansa.drawing.palette import class_color, palette_array

TILE_HEIGHT = 160  # pixels of each tile of the PCA grid
HEADER = 22  # pixels of the grid's title row
REFERENCE_MARKER, TARGET_MARKER = "*", "o"
PAGE = Path(__file__).with_name("scatter.html")  # the interactive scatter's page; data goes in at __DATA__


@dataclass(frozen=True)
class ScatterPanel:
    """One 3D scatter: the objects' first three components under one kind of feature.

    Attributes:
        title: e.g. ``"after the adapters"``.
        points: ``float [N, 3]``.
        explained: ``[3]`` share of variance of each component.
    """

    title: str
    points: np.ndarray
    explained: np.ndarray


def _tile(image: np.ndarray, height: int) -> Image.Image:
    """``image`` scaled to ``height`` pixels tall (its aspect kept); feature cells stay sharp."""
    source = Image.fromarray(image)
    width = max(1, round(image.shape[1] * height / image.shape[0])) if image.shape[0] > 64 else None
    resample = Image.Resampling.BILINEAR if image.shape[0] > 64 else Image.Resampling.NEAREST
    return source.resize((width or height, height), resample)


def pca_grid(
    images: Sequence[np.ndarray],
    label_maps: Sequence[np.ndarray],
    labels: Sequence[str],
    maps: Sequence[tuple[str, np.ndarray]],
    names: Sequence[str],
    tile_height: int = TILE_HEIGHT,
) -> np.ndarray:
    """One row per image: the image with its mask (references) or prediction (targets) tinted, then
    each kind of PCA map, scaled to the image's aspect.

    Args:
        images: ``B`` RGB images.
        label_maps: ``uint16 [H, W]`` per image (``i + 1`` = ``labels[i]``).
        labels: the classes.
        maps: ``(column title, uint8 [B, h, w, 3])`` per kind of feature.
        names: each row's caption.

    Returns:
        RGB ``uint8 [HEADER + B * tile_height, W, 3]``.
    """
    colors = palette_array(len(labels))
    rows = []
    for b, image in enumerate(images):
        tiled = _tile(overlay(image, label_maps[b], list(labels), legend=False, colors=colors), tile_height)
        cells = [tiled] + [_tile(m[b], tile_height).resize(tiled.size, Image.Resampling.NEAREST) for _, m in maps]
        rows.append(cells)
    widths = [max(row[c].width for row in rows) for c in range(len(rows[0]))] if rows else [tile_height]
    canvas = Image.new("RGB", (sum(widths) + 4 * len(widths), HEADER + tile_height * len(rows)), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    titles = ["image and mask", *(title for title, _ in maps)]
    x_positions = np.cumsum([0, *[w + 4 for w in widths]])[:-1]
    for x, title in zip(x_positions, titles, strict=True):
        draw.text((int(x) + 3, 5), title, fill=(0, 0, 0))
    for r, (row, name) in enumerate(zip(rows, names, strict=True)):
        y = HEADER + r * tile_height
        for x, cell in zip(x_positions, row, strict=True):
            canvas.paste(cell, (int(x), y))
        draw.text((4, y + 3), name, fill=(255, 255, 255), stroke_width=2, stroke_fill=(0, 0, 0))
    return np.asarray(canvas)


def scatter_png(
    panels: Sequence[ScatterPanel], labels: Sequence[str], classes: Sequence[str], is_reference: Sequence[bool]
) -> bytes:
    """The objects' 3D scatter, one panel per kind of feature side by side, as PNG bytes.

    Args:
        panels: one :class:`ScatterPanel` each.
        labels: each point's class; ``classes``: all classes, in colour order.
        is_reference: references are drawn as large stars with a black edge.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5.2 * len(panels), 5.0), dpi=80)
    FigureCanvasAgg(figure)
    refs = np.asarray(is_reference, dtype=bool)
    for p, panel in enumerate(panels, start=1):
        axes = figure.add_subplot(1, len(panels), p, projection="3d")
        for class_id, label in enumerate(classes, start=1):
            color = np.asarray(class_color(class_id)) / 255.0
            of_class = np.asarray([lab == label for lab in labels], dtype=bool)
            for chosen, marker, size in (
                (of_class & ~refs, TARGET_MARKER, 28),
                (of_class & refs, REFERENCE_MARKER, 220),
            ):
                if chosen.any():
                    xyz = panel.points[chosen]
                    axes.scatter(
                        *xyz.T,
                        c=[color],
                        marker=marker,
                        s=size,
                        edgecolors="black",
                        linewidths=0.6,
                        depthshade=False,
                        label=f"{label} ({'references' if marker == REFERENCE_MARKER else 'targets'})",
                    )
        axes.set_title(panel.title, fontsize=10)
        for setter, index in ((axes.set_xlabel, 0), (axes.set_ylabel, 1), (axes.set_zlabel, 2)):
            setter(f"PC{index + 1} ({panel.explained[index]:.0%})", fontsize=8)
        axes.tick_params(labelsize=6)
    handles, names = figure.axes[0].get_legend_handles_labels()
    figure.legend(handles, names, loc="lower center", ncol=min(4, max(1, len(names))), fontsize=8, frameon=False)
    figure.subplots_adjust(left=0.02, right=0.98, top=0.93, bottom=0.14, wspace=0.08)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def scatter_html(
    panels: Sequence[ScatterPanel],
    labels: Sequence[str],
    classes: Sequence[str],
    is_reference: Sequence[bool],
    captions: Sequence[str],
    title: str = "SANSA: objects in feature space",
) -> str:
    """A self-contained page (inline data and script, no network) of rotatable 3D scatters.

    Drag to rotate (all panels together), hover a point for its image, class and margin.
    ``captions``: each point's hover text.
    """
    data = {
        "classes": [
            {"name": c, "color": "#{:02x}{:02x}{:02x}".format(*class_color(i))} for i, c in enumerate(classes, start=1)
        ],
        "labels": [list(classes).index(label) for label in labels],
        "references": [bool(r) for r in is_reference],
        "captions": list(captions),
        "panels": [
            {
                "title": p.title,
                "points": np.round(np.asarray(p.points, dtype=np.float64), 5).tolist(),
                "axes": [f"PC{i + 1} ({p.explained[i]:.0%})" for i in range(3)],
            }
            for p in panels
        ],
    }
    # no "<", ">" or "&" in the inline JSON: no class name can close the script element
    payload = json.dumps(data, ensure_ascii=True)
    payload = payload.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return PAGE.read_text(encoding="utf-8").replace("__TITLE__", html.escape(title)).replace("__DATA__", payload)
