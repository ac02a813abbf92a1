"""``labelstudio``: ``labelstudio/tasks.json`` + ``config.xml``, Label Studio tasks with one
region per object, as predictions (see :mod:`sansa.export.labelstudio`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from sansa.errors import SansaError
from sansa.export import labelstudio
from sansa.export.exporter import Encoded, Exporter, Finished, Target


class LabelStudioExporter(Exporter):
    """Label Studio tasks: brush, polygon, rectangle or keypoint regions."""

    name = "labelstudio"
    uses_objects = True

    def check(self) -> None:
        control = self.settings.labelstudio_control
        if control not in labelstudio.CONTROLS:
            known = ", ".join(labelstudio.CONTROLS)
            raise SansaError(f"labelstudio_control: unknown value {control!r} (known: {known})")

    def product(self) -> str:
        return f"labelstudio:{self.settings.labelstudio_control}:{self.settings.unit}"

    def encode(self, target: Target) -> Encoded:
        control = self.settings.labelstudio_control
        return Encoded(record=labelstudio.object_results(target.name, target.objects, control))

    def finish(self, out_dir: Path, targets: Sequence[Finished]) -> None:
        labelstudio.write_dataset(
            out_dir / labelstudio.FOLDER,
            self.labels,
            [(t.name, t.record) for t in targets],
            model_version=self.settings.model_version,
            control=self.settings.labelstudio_control,
            annotations=self.settings.labelstudio_annotations,
        )

    def outputs(self) -> list[str]:
        return [labelstudio.FOLDER]


EXPORTER = LabelStudioExporter
