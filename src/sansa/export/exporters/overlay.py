"""``overlay``: ``overlays/<stem>.jpg``, the image with its classes tinted, each object outlined,
and a legend (for people to check)."""

from __future__ import annotations

from sansa.export import render
from sansa.export.exporter import Encoded, Exporter, Target


class OverlayExporter(Exporter):
    """Pictures to check: class colours, one outline per object (per class with ``per_class``)."""

    name = "overlay"
    uses_objects = True

    def encode(self, target: Target) -> Encoded:
        outlines = [(self.labels.index(obj.label) + 1, obj.mask) for obj in target.objects]
        jpeg = render.overlay_jpeg(target.image, target.label_map, self.labels, outlines=outlines)
        return Encoded(files={f"overlays/{target.stem}.jpg": jpeg})

    def outputs(self) -> list[str]:
        return ["overlays"]


EXPORTER = OverlayExporter
