"""``yolo``: an Ultralytics segmentation dataset in ``yolo/``: ``images/``, ``labels/<flat>.txt``
(one polygon line per object, see :mod:`sansa.export.yolo`) and ``data.yaml``.

``<flat>``: the stem with its sub-folders joined by ``+`` (supervision reads no sub-folders).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from sansa import atomic
from sansa.export import dataset, yolo
from sansa.export.exporter import Encoded, Exporter, Finished, Target

if TYPE_CHECKING:
    from sansa.fs import AnyPath


class YoloExporter(Exporter):
    """YOLO polygons: one line per object; whole classes one line per hole-free piece."""

    name = "yolo"
    uses_objects = True

    def product(self) -> str:
        return f"yolo:images-{self.settings.dataset_images.value}:{self.settings.unit}"

    def encode(self, target: Target) -> Encoded:
        flat = dataset.flat_stem(target.stem)
        if target.whole_classes:
            lines = yolo.label_lines(target.label_map, self.labels)
        else:
            lines = yolo.object_lines(target.objects, self.labels)
        return Encoded(
            files={f"yolo/labels/{flat}.txt": "".join(line + "\n" for line in lines).encode()},
            images=[f"yolo/images/{dataset.image_name(flat, target.source)}"],
        )

    def finish(self, out_dir: AnyPath, targets: Iterable[Finished]) -> None:
        atomic.write_text(out_dir / "yolo" / "data.yaml", yolo.data_yaml(self.labels))

    def outputs(self) -> list[str]:
        return ["yolo"]


EXPORTER = YoloExporter
