"""``indexed``: ``labels/<stem>.png``, one palette PNG per image, pixel = class id (0 background)."""

from __future__ import annotations

from sansa.errors import SansaError
from sansa.export import render
from sansa.export.exporter import Encoded, Exporter, Target

MAX_INDEXED_CLASSES = 255  # class ids of an 8-bit palette PNG


class IndexedExporter(Exporter):
    """The label map as a palette PNG (semantic: one id per class)."""

    name = "indexed"

    def check(self) -> None:
        if len(self.labels) > MAX_INDEXED_CLASSES:
            raise SansaError(f"format indexed: holds at most {MAX_INDEXED_CLASSES} classes, got {len(self.labels)}")

    def encode(self, target: Target) -> Encoded:
        return Encoded(files={f"labels/{target.stem}.png": render.indexed_png(target.label_map, len(self.labels))})

    def outputs(self) -> list[str]:
        return ["labels"]


EXPORTER = IndexedExporter
