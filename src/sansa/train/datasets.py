"""Training datasets from the config: benchmark readers, and "every class" without a fold split."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sansa.data import build_dataset
from sansa.data.benchmarks import SPECS, as_benchmark
from sansa.data.episode import FewShotDataset
from sansa.errors import SansaError
from sansa.train.config import DataSpec


class AllClasses:
    """The training splits of every fold of one benchmark as one dataset (no class held out).

    Used when a :class:`DataSpec` has ``fold: null`` (the generalist mix). Class ``c``'s images
    come from the first fold whose training split has it; taking the union over folds keeps every
    class (the reference code's PACO fold ``-1`` silently dropped a quarter of them).
    """

    def __init__(self, parts: Sequence[FewShotDataset], name: str) -> None:
        self.parts: list[FewShotDataset] = list(parts)
        self.name: str = name
        self.image_size: int | None = getattr(self.parts[0], "image_size", None)
        self._owner: dict[int, FewShotDataset] = {}
        for part in self.parts:
            for class_id in part.class_ids():
                self._owner.setdefault(class_id, part)

    def class_ids(self) -> list[int]:
        return sorted(self._owner)

    def class_name(self, class_id: int) -> str:
        return self._owner[class_id].class_name(class_id)

    def images_of(self, class_id: int) -> list[str]:
        return self._owner[class_id].images_of(class_id)

    def load(self, key: str, class_id: int) -> tuple[np.ndarray, np.ndarray]:
        return self._owner[class_id].load(key, class_id)


def build_training_dataset(spec: DataSpec, shots: int) -> FewShotDataset:
    """The training split of ``spec``: the classes outside its fold, or every class (``fold`` None)."""

    if spec.fold is not None:
        return build_dataset(spec.benchmark, spec.root, spec.fold, "train", shots)
    benchmark = as_benchmark(spec.benchmark)
    folds = SPECS[benchmark].folds
    parts = [build_dataset(benchmark, spec.root, fold, "train", shots) for fold in range(folds)]
    if folds == 1:
        return parts[0]
    return AllClasses(parts, f"{benchmark.value}-all-train")


def build_training_datasets(specs: Sequence[DataSpec], shots: int) -> list[FewShotDataset]:
    if not specs:
        raise SansaError("data: give at least one training dataset (benchmark and root)")
    return [build_training_dataset(spec, shots) for spec in specs]
