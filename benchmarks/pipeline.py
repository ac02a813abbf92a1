"""The pipelined labelling loop against the sequential one, where I/O dominates.

The tiny random model on large JPEGs (3000x2000): reading, decoding and resizing each target and
encoding its outputs (PNG masks, COCO RLE, a 6-megapixel overlay JPEG) cost more than the model.
Both loops label the same folder in one run; the script checks they wrote the same bytes and prints
the model's busy share of the loop's wall time and images/s for each::

    python benchmarks/pipeline.py                 # 16 targets of 3000x2000
    python benchmarks/pipeline.py --targets 8 --size 1500x1000
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from sansa import labeling
from sansa.labeling import ExportOptions, Job, ModelSpec, ReferenceEntry
from sansa.records import Prompt


def make_targets(folder: Path, count: int, width: int, height: int) -> None:
    """Smooth random JPEGs with a few bright rectangles (compress like photos, not like noise)."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    for index in range(count):
        small = rng.integers(0, 256, (height // 50, width // 50, 3), dtype=np.uint8)
        image = np.asarray(Image.fromarray(small).resize((width, height), Image.BILINEAR)).copy()
        for _ in range(3):
            x, y = rng.integers(0, width - 400), rng.integers(0, height - 300)
            image[y : y + 300, x : x + 400] = rng.integers(150, 256, 3)
        Image.fromarray(image).save(folder / f"img_{index:03d}.jpg", quality=90)


class Busy:
    """Accumulates the time spent inside the model (image encoder, memory attention, decoder)."""

    def __init__(self, predictor: Any) -> None:
        self.seconds = 0.0
        for owner, name in ((predictor.model, "encode_images"), (predictor, "segment_encoded")):
            setattr(owner, name, self._timed(getattr(owner, name)))

    def _timed(self, fn):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start

        return timed


@dataclasses.dataclass(frozen=True)
class Loaded(ModelSpec):
    """A model spec whose ``load`` returns an already built, instrumented predictor."""

    predictor: Any = None

    def load(self, device: str | None = None) -> Any:
        return self.predictor

    def identity(self) -> dict[str, Any]:
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(ModelSpec)}
        return ModelSpec(**fields).identity()


def label(job: Job, pipelined: bool) -> tuple[float, float, int]:
    """``(loop seconds, model seconds, images)`` of one run."""
    spec = ModelSpec(backbone="test_tiny", random_weights=True, device="cpu")
    predictor = spec.load()
    busy = Busy(predictor)
    job = dataclasses.replace(job, model=Loaded(**dataclasses.asdict(spec), predictor=predictor))
    result = labeling.run(job, pipelined=pipelined, notes=print)
    return result.outcome.seconds, busy.seconds, len(result.outcome.written)


def tree(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != "run.json"
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, default=16)
    parser.add_argument("--size", default="3000x2000", help="WIDTHxHEIGHT of the targets")
    args = parser.parse_args()
    width, height = map(int, args.size.split("x"))
    with tempfile.TemporaryDirectory(prefix="sansa-pipeline-") as tmp:
        root = Path(tmp)
        make_targets(root / "targets", args.targets, width, height)
        Image.new("RGB", (width, height), (90, 90, 90)).save(root / "ref.jpg")
        ref = ReferenceEntry(str(root / "ref.jpg"), "thing", Prompt.create(box=[100, 100, 900, 700]))
        rows = []
        for name, pipelined in (("sequential", False), ("pipelined", True)):
            job = Job(
                [ref],
                [str(root / "targets")],
                str(root / name),
                ExportOptions(("png", "coco", "overlay")),
                batch_size=1,
            )
            rows.append((name, *label(job, pipelined)))
        same = tree(root / "sequential") == tree(root / "pipelined")
    print(
        f"\n{args.targets} targets of {width}x{height} JPEG, test_tiny random weights, CPU, batch 1, "
        "formats png coco overlay"
    )
    print("| loop | wall s | model busy | images/s |")
    print("|---|---|---|---|")
    for name, wall, model, images in rows:
        print(f"| {name} | {wall:.1f} | {model / wall:.0%} | {images / wall:.2f} |")
    print(f"speed-up {rows[0][1] / rows[1][1]:.2f}x; identical outputs: {same}")


if __name__ == "__main__":
    main()
