"""``inspect_features``: what SANSA sees in a set of references and targets, as pictures and numbers.

Typical use::

    predictor = SansaPredictor.from_pretrained()
    predictor.add_reference("ref.jpg", mask="ref_mask.png", label="dog")
    inspection = inspect_features(predictor, ["a.jpg", "b.jpg"], reference_images=["ref.jpg"])
    print(inspection.summary_text())
    inspection.save("inspect/")        # pca_maps.png, objects.png, objects.html, summary.txt/.json

Each target is encoded once: the same features are segmented and inspected. With adapters in the
model, every image is encoded a second time with them bypassed, for the plain SAM2 pictures.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sansa import atomic
from sansa.errors import SansaError
from sansa.images import ImageLike, load_image
from sansa.inspection.clusters import ClassSummary, TargetMargin, summarize
from sansa.inspection.features import (
    ADAPTED,
    PLAIN,
    Region,
    encode_tops,
    model_has_adapters,
    pool_regions,
    target_regions,
)
from sansa.inspection.pca import feature_maps, fit_pca
from sansa.inspection.pictures import ScatterPanel, pca_grid, scatter_html, scatter_png
from sansa.predictor import SansaPredictor
from sansa.records import Segmentation

TITLES = {ADAPTED: "after the adapters (what memory matching uses)", PLAIN: "plain SAM2 (adapters off)"}
COLUMN_TITLES = {ADAPTED: "PCA: after the adapters", PLAIN: "PCA: plain SAM2 (adapters off)"}
SHOWN_CONFUSED = 10  # confused targets listed in the text summary
FILES = ("pca_maps.png", "objects.png", "objects.html", "summary.txt", "summary.json")


@dataclass
class Inspection:
    """The features of references and targets, ready to draw and summarise.

    Images are the references' images (each once, however many references it holds) then the
    targets. ``kinds`` are the feature kinds inspected: ``"adapted"`` always, ``"plain"`` (adapters
    bypassed) when the model has adapters.

    Attributes:
        names: each image's name (its path, when read from a file).
        images: RGB ``uint8 [H, W, 3]`` each.
        label_maps: ``uint16 [H, W]`` each: the references' masks, the targets' predictions.
        reference_images: how many of the images (the first ones) are references' images.
        classes: the classes, in the predictor's order.
        regions: the objects: one per reference, one per predicted object of each target.
        maps: per kind, ``uint8 [B, h, w, 3]`` the joint PCA map of every image.
        points: per kind, ``float32 [N, 3]`` each object's first three components.
        explained: per kind, ``[3]`` the variance share of those components.
        summaries: per kind, one :class:`ClassSummary` per class.
        margins: per kind, every target object's :class:`TargetMargin`.
    """

    names: list[str]
    images: list[np.ndarray]
    label_maps: list[np.ndarray]
    reference_images: int
    classes: list[str]
    regions: list[Region]
    maps: dict[str, np.ndarray]
    points: dict[str, np.ndarray]
    explained: dict[str, np.ndarray]
    summaries: dict[str, list[ClassSummary]]
    margins: dict[str, list[TargetMargin]]

    @property
    def kinds(self) -> list[str]:
        return list(self.maps)

    def image_margins(self, kind: str = ADAPTED) -> dict[str, float]:
        """Each target image's lowest object margin (targets with no object, or one class: left out)."""
        out: dict[str, float] = {}
        for m in self.margins[kind]:
            if m.margin is not None:
                out[m.image] = min(out.get(m.image, m.margin), m.margin)
        return out

    def pca_grid(self) -> np.ndarray:
        """RGB ``uint8`` grid: each image with its mask, then its PCA map per kind (see :func:`pca_grid`)."""
        columns = [(COLUMN_TITLES[kind], self.maps[kind]) for kind in self.kinds]
        captions = [
            f"{'reference' if b < self.reference_images else 'target'}: {Path(name).name}"
            for b, name in enumerate(self.names)
        ]
        return pca_grid(self.images, self.label_maps, self.classes, columns, captions)

    def _panels(self) -> list[ScatterPanel]:
        return [ScatterPanel(TITLES[k], self.points[k], self.explained[k]) for k in self.kinds]

    def _point_labels(self) -> tuple[list[str], list[bool]]:
        return [r.label for r in self.regions], [r.is_reference for r in self.regions]

    def scatter_png(self) -> bytes:
        """The objects' 3D scatter (a panel per kind) as PNG bytes."""
        labels, refs = self._point_labels()
        return scatter_png(self._panels(), labels, self.classes, refs)

    def scatter_html(self) -> str:
        """The same scatter as a self-contained interactive HTML page."""
        labels, refs = self._point_labels()
        margins = {m.index: m for m in self.margins[ADAPTED]}
        captions = []
        for i, region in enumerate(self.regions):
            text = f"{Path(self.names[region.image]).name}: {region.label}"
            text += " (reference)" if region.is_reference else ""
            margin = margins.get(i)
            if margin is not None and margin.margin is not None:
                text += f", margin {margin.margin:+.3f} (nearest other: {margin.nearest})"
            captions.append(text)
        return scatter_html(self._panels(), labels, self.classes, refs, captions)

    def to_dict(self) -> dict[str, Any]:
        """The summary as JSON-ready values (``summary.json``)."""
        return {
            "images": [
                {"name": n, "role": "reference" if b < self.reference_images else "target"}
                for b, n in enumerate(self.names)
            ],
            "objects": [
                {"image": self.names[r.image], "label": r.label, "reference": r.is_reference} for r in self.regions
            ],
            "kinds": {
                kind: {
                    "explained": [round(float(v), 6) for v in self.explained[kind]],
                    "classes": [_summary_dict(s) for s in self.summaries[kind]],
                    "margins": [_margin_dict(m) for m in self.margins[kind]],
                }
                for kind in self.kinds
            },
        }

    def summary_text(self, shown: int = SHOWN_CONFUSED) -> str:
        """Per class: references, targets, silhouette (and plain SAM2's), the nearest class; then the
        (first ``shown``) targets nearer another class's references than their own, lowest margin first."""
        plain = {s.label: s for s in self.summaries.get(PLAIN, [])}
        rows = [("class", "refs", "targets", "silhouette", "plain SAM2", "nearest class")]
        for s in self.summaries[ADAPTED]:
            rows.append(
                (
                    s.label,
                    str(s.references),
                    str(s.targets),
                    _number(s.silhouette),
                    _number(plain[s.label].silhouette) if s.label in plain else "-",
                    s.nearest or "-",
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        lines = [
            "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))
            for row in rows
        ]
        confused = sorted((m for s in self.summaries[ADAPTED] for m in s.confused), key=lambda m: m.margin or 0.0)
        if len(self.classes) < 2:
            lines.append("one class: no margin to another class (silhouette needs two)")
        elif confused:
            lines.append("review first (predicted objects nearer another class's references than their own):")
            lines += [f"  {m.image}: {m.label}, nearer {m.nearest} (margin {m.margin:+.3f})" for m in confused[:shown]]
            if len(confused) > shown:
                lines.append(f"  ... and {len(confused) - shown} more (summary.json lists every margin)")
        else:
            lines.append("every predicted object is nearer its own class's references than any other's")
        return "\n".join(line.rstrip() for line in lines) + "\n"

    def save(self, out: str | os.PathLike[str]) -> list[Path]:
        """Write :data:`FILES` into folder ``out`` (created; each file written atomically)."""
        folder = Path(out)
        contents = {
            "pca_maps.png": atomic.encode_image(self.pca_grid(), "PNG", optimize=True),
            "objects.png": self.scatter_png(),
            "objects.html": self.scatter_html().encode("utf-8"),
            "summary.txt": self.summary_text().encode("utf-8"),
        }
        try:
            folder.mkdir(parents=True, exist_ok=True)
            for name, data in contents.items():
                atomic.write_bytes(folder / name, data)
            atomic.write_json(folder / "summary.json", self.to_dict())
        except OSError as err:
            where = err.filename or folder
            raise SansaError(f"{where}: cannot write the inspection there ({err.strerror or err})") from None
        return [folder / name for name in FILES]


def inspect_features(
    predictor: SansaPredictor,
    targets: Sequence[ImageLike],
    reference_images: Sequence[ImageLike] | None = None,
    segmentations: Sequence[Segmentation] | None = None,
    plain: bool | None = None,
    seed: int = 0,
    batch_size: int | None = None,
) -> Inspection:
    """Encode references and targets, segment the targets, and inspect their features.

    Args:
        predictor: with its references added.
        targets: paths, PIL images or ``uint8 [H, W, 3]`` arrays.
        reference_images: one image per reference of ``predictor`` (in its order); default: each
            reference's ``name`` read as a file (what ``add_reference(path, ...)`` stores).
        segmentations: the targets' segmentations when already made (else made here from the
            same encoding).
        plain: also inspect plain SAM2 features (adapters bypassed); default: when the model has adapters.
        seed: draws the pixels the maps' components are fitted on, when there are very many.
        batch_size: targets encoded together (default: the predictor's).
    """
    references = predictor.references
    if not references:
        raise SansaError("no reference added yet: add references to the predictor first")
    ref_pixels, ref_names, ref_of = _reference_images(references, reference_images)
    target_pixels = [load_image(t, f"target {i}") for i, t in enumerate(targets)]
    target_names = [os.fspath(t) if isinstance(t, (str, os.PathLike)) else f"target {i}" for i, t in enumerate(targets)]
    if segmentations is not None and len(segmentations) != len(target_pixels):
        raise SansaError(f"segmentations: {len(segmentations)} given for {len(target_pixels)} targets")
    tops, made = _encode_and_segment(predictor, target_pixels, target_names, segmentations is None, batch_size)
    segmentations = list(segmentations) if segmentations is not None else made
    classes = predictor.labels
    images = ref_pixels + target_pixels
    ref_tops = encode_tops(predictor, ref_pixels, batch_size=batch_size)
    kinds = {ADAPTED: torch.cat([ref_tops, tops]) if len(tops) else ref_tops}
    if plain if plain is not None else model_has_adapters(predictor):
        kinds[PLAIN] = encode_tops(predictor, images, plain=True, batch_size=batch_size)
    grid = (kinds[ADAPTED].shape[-2], kinds[ADAPTED].shape[-1])
    regions = [Region(ref_of[i], r.label, r.mask, True) for i, r in enumerate(references)]
    for t, seg in enumerate(segmentations):
        regions += target_regions(seg, len(ref_pixels) + t, grid)
    names = ref_names + target_names
    label_maps = _reference_label_maps(references, ref_of, ref_pixels, classes) + [
        _aligned_label_map(seg, classes) for seg in segmentations
    ]
    maps, points, explained, summaries, margins = {}, {}, {}, {}, {}
    object_labels = [r.label for r in regions]
    object_refs = [r.is_reference for r in regions]
    object_images = [names[r.image] for r in regions]
    for kind, kind_tops in kinds.items():
        maps[kind], _ = feature_maps(kind_tops.numpy(), seed)
        pooled = pool_regions(kind_tops, regions)
        projection = fit_pca(pooled, 3, seed)
        points[kind], explained[kind] = projection(pooled), projection.explained
        summaries[kind], margins[kind] = summarize(pooled, object_labels, object_refs, object_images)
    return Inspection(
        names, images, label_maps, len(ref_pixels), classes, regions, maps, points, explained, summaries, margins
    )


def _encode_and_segment(
    predictor: SansaPredictor, pixels: list[np.ndarray], names: list[str], segment: bool, batch_size: int | None
) -> tuple[torch.Tensor, list[Segmentation]]:
    """The targets' ``top`` features ``[T, C, h, w]`` (CPU), and their segmentations from the same encoding."""
    size = batch_size or predictor.default_batch_size
    tops, segmentations = [], []
    for start in range(0, len(pixels), size):
        chunk = pixels[start : start + size]
        feats = predictor.encode(chunk)
        tops.append(feats.top.float().cpu())
        if segment:
            sizes = [p.shape[:2] for p in chunk]
            segmentations += predictor.segment_encoded(feats, sizes, names[start : start + size])
    return (torch.cat(tops) if tops else torch.zeros(0)), segmentations


def _reference_images(
    references: list[Any], given: Sequence[ImageLike] | None
) -> tuple[list[np.ndarray], list[str], list[int]]:
    """Each distinct reference image once (a file named twice is read once), their names, and
    which of them each reference lies on."""
    if given is not None and len(given) != len(references):
        raise SansaError(f"reference_images: {len(given)} given for {len(references)} references")
    sources = list(given) if given is not None else [r.name for r in references]
    pixels: list[np.ndarray] = []
    names: list[str] = []
    index_of: dict[str, int] = {}
    ref_of = []
    for i, (source, reference) in enumerate(zip(sources, references, strict=True)):
        key = os.fspath(source) if isinstance(source, (str, os.PathLike)) else None
        if key is not None and key in index_of:
            ref_of.append(index_of[key])
            continue
        if given is None and (key is None or not Path(key).is_file()):
            raise SansaError(f"reference_images: reference {i} ({reference.name!r}) is not a file; give its image")
        image = load_image(source, f"reference image {i}")
        if image.shape[:2] != reference.size:
            raise SansaError(
                f"reference_images: image {i} is {image.shape[1]}x{image.shape[0]}, its reference mask "
                f"{reference.size[1]}x{reference.size[0]}"
            )
        if key is not None:
            index_of[key] = len(pixels)
        ref_of.append(len(pixels))
        pixels.append(image)
        names.append(key if key is not None else reference.name or f"reference {i}")
    return pixels, names, ref_of


def _reference_label_maps(
    references: list[Any], ref_of: list[int], pixels: list[np.ndarray], classes: list[str]
) -> list[Any]:
    """``uint16 [H, W]`` per reference image: its references' masks (a later one drawn over an earlier one)."""
    maps = [np.zeros(p.shape[:2], dtype=np.uint16) for p in pixels]
    for reference, image in zip(references, ref_of, strict=True):
        maps[image][reference.mask] = classes.index(reference.label) + 1
    return maps


def _aligned_label_map(segmentation: Segmentation, classes: list[str]) -> np.ndarray:
    """A segmentation's label map with ids of ``classes`` (its own labels may be ordered otherwise)."""
    lookup = np.zeros(len(segmentation.labels) + 1, dtype=np.uint16)
    for i, label in enumerate(segmentation.labels, start=1):
        lookup[i] = classes.index(label) + 1 if label in classes else 0
    return lookup[segmentation.label_map]


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:+.2f}"


def _summary_dict(summary: ClassSummary) -> dict[str, Any]:
    return {
        "label": summary.label,
        "references": summary.references,
        "targets": summary.targets,
        "silhouette": None if summary.silhouette is None else round(summary.silhouette, 6),
        "nearest": summary.nearest,
        "confused": [_margin_dict(m) for m in summary.confused],
    }


def _margin_dict(margin: TargetMargin) -> dict[str, Any]:
    value = None if margin.margin is None else round(margin.margin, 6)
    return {"image": margin.image, "label": margin.label, "nearest": margin.nearest, "margin": value}
