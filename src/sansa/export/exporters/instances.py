"""``instances``: ``instances/<stem>.png``, a 16-bit PNG whose pixels are object ids (0 background,
``1..N`` the image's objects in order), and ``instances.json``, what each id is.

``instances.json``::

    {"classes": ["cat", "dog"],
     "images": [{"name": "a.jpg", "file": "instances/a.png", "width": 640, "height": 480,
                 "objects": [{"id": 1, "class": "cat", "class_id": 1, "score": 0.93,
                              "box": [x0, y0, x1, y1], "area": 5120}, ...]}, ...]}

``box`` is in pixel edges (exclusive ends, as :class:`~sansa.records.SegmentedObject`),
``class_id`` as in the indexed PNGs (``labels[i]`` is ``i + 1``). Read an image's objects back
with ``ids == object["id"]`` on the PNG (Pillow opens it as mode ``I;16`` or ``I``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from sansa import atomic
from sansa.errors import SansaError
from sansa.export import streamed
from sansa.export.exporter import Encoded, Exporter, Finished, Target

if TYPE_CHECKING:
    from sansa.fs import AnyPath

FOLDER, INDEX = "instances", "instances.json"
MAX_OBJECTS = 65_535  # ids of a 16-bit PNG


class InstancesExporter(Exporter):
    """An object-id PNG per image and one JSON index."""

    name = "instances"
    uses_objects = True

    def encode(self, target: Target) -> Encoded:
        if len(target.objects) > MAX_OBJECTS:
            raise SansaError(f"{target.name}: {len(target.objects)} objects, an instances PNG holds {MAX_OBJECTS}")
        ids = np.zeros(target.size, dtype=np.uint16)
        rows = []
        for object_id, obj in enumerate(target.objects, start=1):
            ids[obj.mask] = object_id
            rows.append(
                {
                    "id": object_id,
                    "class": obj.label,
                    "class_id": self.labels.index(obj.label) + 1,
                    "score": round(float(obj.score), 4),
                    "box": [round(float(v), 2) for v in np.asarray(obj.box).tolist()],
                    "area": obj.area,
                }
            )
        path = f"{FOLDER}/{target.stem}.png"
        png = atomic.encode_image(Image.fromarray(ids), "PNG")
        return Encoded(files={path: png}, record={"file": path, "objects": rows})

    def finish(self, out_dir: AnyPath, targets: Iterable[Finished]) -> None:
        images = (
            {"name": t.name, "file": t.record["file"], "width": t.width, "height": t.height, **t.record}
            for t in targets
        )
        fields = [("classes", self.labels), ("images", streamed.Items(images))]
        atomic.write_chunks(out_dir / INDEX, streamed.compact_object(fields))  # one target at a time

    def outputs(self) -> list[str]:
        return [FOLDER, INDEX]


EXPORTER = InstancesExporter
