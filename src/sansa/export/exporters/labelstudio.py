"""``labelstudio``: ``labelstudio/tasks.json`` + ``config.xml``, Label Studio tasks with one
region per object, as predictions (see :mod:`sansa.export.labelstudio`)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from sansa.errors import SansaError
from sansa.export import labelstudio
from sansa.export.exporter import Encoded, Exporter, Finished, Target

if TYPE_CHECKING:
    from sansa.fs import AnyPath


class LabelStudioExporter(Exporter):
    """Label Studio tasks: brush, polygon, rectangle or keypoint regions."""

    name = "labelstudio"
    uses_objects = True

    def check(self) -> None:
        control = self.settings.labelstudio_control
        if control not in labelstudio.CONTROLS:
            known = ", ".join(labelstudio.CONTROLS)
            raise SansaError(f"labelstudio_control: unknown value {control!r} (known: {known})")
        root = self.settings.labelstudio_root
        if root is not None and not Path(root).is_dir():
            raise SansaError(f"labelstudio_root: {root} is not a folder (Label Studio's local-files document root)")

    def product(self) -> str:
        root = f":{self.settings.labelstudio_root}" if self.settings.labelstudio_root else ""
        return f"labelstudio:{self.settings.labelstudio_control}:{self.settings.unit}{root}"

    def encode(self, target: Target) -> Encoded:
        control = self.settings.labelstudio_control
        results = labelstudio.object_results(target.name, target.objects, control)
        if self.settings.labelstudio_root is None:
            return Encoded(record=results)
        return Encoded(record={"path": self._path_under_root(target), "results": results})

    def _path_under_root(self, target: Target) -> str:
        """The target's file relative to Label Studio's document root (POSIX), as ``?d=`` wants it."""
        if self.settings.labelstudio_root is None:
            raise SansaError("labelstudio_root: not set")
        root = Path(self.settings.labelstudio_root)
        if target.source is None:
            raise SansaError(f"{target.name}: labelstudio_root needs the target's image file")
        relative = os.path.relpath(Path(target.source).resolve(), root)
        if relative.startswith(".."):
            raise SansaError(f"{target.source}: not under labelstudio_root {root} (Label Studio could not serve it)")
        return Path(relative).as_posix()

    def finish(self, out_dir: AnyPath, targets: Iterable[Finished]) -> None:
        labelstudio.write_dataset(
            out_dir / labelstudio.FOLDER,
            self.labels,
            (
                (t.record["path"], t.record["results"]) if isinstance(t.record, dict) else (t.name, t.record)
                for t in targets
            ),
            model_version=self.settings.model_version,
            control=self.settings.labelstudio_control,
            annotations=self.settings.labelstudio_annotations,
        )

    def outputs(self) -> list[str]:
        return [labelstudio.FOLDER]


EXPORTER = LabelStudioExporter
