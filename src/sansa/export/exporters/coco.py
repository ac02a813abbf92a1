"""``coco``: a COCO dataset, one annotation per object (per class with ``per_class``).

Layouts (:class:`~sansa.export.CocoLayout`): ``annotations.json`` whose ``file_name`` is the
target's name relative to the image folder, or ``coco/annotations/instances_default.json`` with
the images in ``coco/images/`` (datumaro, CVAT). Encoding: :mod:`sansa.export.coco`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from sansa import atomic
from sansa.export import coco, dataset
from sansa.export.exporter import Encoded, Exporter, Finished, Target
from sansa.export.formats import CocoLayout

if TYPE_CHECKING:
    from sansa.fs import AnyPath

FILE = "annotations.json"
DATASET_FILE = "coco/annotations/instances_default.json"


class CocoExporter(Exporter):
    """COCO annotations (RLE or polygons) with ``score``; also a valid COCO results file."""

    name = "coco"
    uses_objects = True

    @property
    def in_dataset(self) -> bool:
        return self.settings.coco_layout is CocoLayout.DATASET

    def product(self) -> str:
        kind = "polygons" if self.settings.coco_polygons else "rle"
        layout = f":dataset-{self.settings.dataset_images.value}" if self.in_dataset else ""
        return f"coco:{kind}:{self.settings.unit}{layout}"

    def encode(self, target: Target) -> Encoded:
        annotations = coco.object_annotations(target.objects, self.labels, self.settings.coco_polygons)
        if not self.in_dataset:
            return Encoded(record={"file_name": target.name, "annotations": annotations})
        image_name = dataset.image_name(target.stem, target.source)
        record = {"file_name": image_name, "annotations": annotations}
        return Encoded(images=[f"coco/images/{image_name}"], record=record)

    def finish(self, out_dir: AnyPath, targets: Iterable[Finished]) -> None:
        images = ({**t.record, "width": t.width, "height": t.height} for t in targets)
        path = out_dir / (DATASET_FILE if self.in_dataset else FILE)
        atomic.write_chunks(path, coco.assemble_chunks(self.labels, images))  # one target at a time

    def outputs(self) -> list[str]:
        return ["coco" if self.in_dataset else FILE]


EXPORTER = CocoExporter
