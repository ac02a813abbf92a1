"""The benchmarks by name: their readers, folds, resolution and published SANSA numbers."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sansa.data import coco, fss, lvis, parts, pascal
from sansa.data.common import DatasetError, Split
from sansa.data.episode import FewShotDataset
from sansa.data.folder import FolderDataset


class Benchmark(str, enum.Enum):
    """Benchmarks ``sansa eval`` knows (``folder`` = any folder of images with masks)."""

    COCO20I = "coco20i"
    LVIS92I = "lvis92i"
    FSS1000 = "fss1000"
    PASCAL5I = "pascal5i"
    PASCAL_PART = "pascalpart"
    PACO_PART = "pacopart"
    FOLDER = "folder"


@dataclass(frozen=True)
class BenchmarkSpec:
    """What the protocol fixes for a benchmark.

    Attributes:
        folds: number of folds (1 = a fixed split).
        image_size: the side ``S`` every image is squashed to before the model; scored there.
        published: SANSA's published mIoU (Hiera-L, mask prompts) per shot count, where known.
    """

    folds: int
    image_size: int
    published: dict[int, float]


SPECS: dict[Benchmark, BenchmarkSpec] = {
    Benchmark.COCO20I: BenchmarkSpec(4, 640, {1: 60.2, 5: 64.3}),
    Benchmark.LVIS92I: BenchmarkSpec(10, 640, {1: 48.8, 5: 53.9}),
    Benchmark.FSS1000: BenchmarkSpec(1, 518, {1: 91.4, 5: 92.1}),
    Benchmark.PASCAL5I: BenchmarkSpec(4, 518, {}),
    Benchmark.PASCAL_PART: BenchmarkSpec(4, 518, {}),
    Benchmark.PACO_PART: BenchmarkSpec(4, 640, {}),
    Benchmark.FOLDER: BenchmarkSpec(1, 640, {}),
}


def as_benchmark(name: Benchmark | str) -> Benchmark:
    try:
        return Benchmark(str(getattr(name, "value", name)).lower().replace("-", "").replace("_", ""))
    except ValueError:
        known = ", ".join(b.value for b in Benchmark)
        raise DatasetError(f"benchmark: unknown {name!r} (known: {known})") from None


def build_dataset(
    benchmark: Benchmark | str, root: str | Path, fold: int = 0, split: Split | str = "test", shots: int = 1
) -> FewShotDataset:
    """The reader of one benchmark fold and split.

    Args:
        benchmark: e.g. ``coco20i`` (see :class:`Benchmark`).
        root: the data folder holding ``COCO2014/``, ``LVIS/``, ``FSS-1000/``, ``VOC2012/``,
            ``Pascal-Part/``, ``PACO-Part/`` (for ``folder``: the folder itself).
        fold: the held-out fold (0-based).
        split: ``test`` (= ``val``: the fold's classes) or ``train`` (the other classes).
        shots: classes with no more than ``shots`` images cannot form an episode and are left out.
    """

    benchmark = as_benchmark(benchmark)
    folds = SPECS[benchmark].folds
    if not 0 <= fold < folds:
        raise DatasetError(f"fold: {benchmark.value} has folds 0..{folds - 1}, got {fold}")
    readers: dict[Benchmark, Callable[..., FewShotDataset]] = {
        Benchmark.COCO20I: coco.Coco20i,
        Benchmark.LVIS92I: lvis.Lvis92i,
        Benchmark.FSS1000: fss.Fss1000,
        Benchmark.PASCAL5I: pascal.Pascal5i,
        Benchmark.PASCAL_PART: parts.PascalPart,
        Benchmark.PACO_PART: parts.PacoPart,
        Benchmark.FOLDER: FolderDataset,
    }
    return readers[benchmark](root, fold, split, shots)
