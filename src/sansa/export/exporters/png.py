"""``png``: ``masks/<stem>_<label>.png``, one binary PNG per class per image (255 = the class)."""

from __future__ import annotations

from sansa.export import names, render
from sansa.export.exporter import Encoded, Exporter, ExportSettings, Target


class PngExporter(Exporter):
    """A binary mask per class (semantic: objects of a class share its mask)."""

    name = "png"

    def __init__(self, settings: ExportSettings) -> None:
        super().__init__(settings)
        self.tokens: list[str] = names.label_tokens(self.labels)

    def encode(self, target: Target) -> Encoded:
        files = {
            f"masks/{target.stem}_{token}.png": render.binary_png(target.label_map == class_id)
            for class_id, token in enumerate(self.tokens, start=1)
        }
        return Encoded(files=files)

    def outputs(self) -> list[str]:
        return ["masks"]


EXPORTER = PngExporter
