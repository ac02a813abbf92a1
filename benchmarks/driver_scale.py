"""The labelling driver at scale: start-up, resume and finish time and memory against a local S3 server.

Puts N tiny PNG targets (8x8) on a moto S3 server started here (loopback), then times the driver's
steps of a `sansa segment` run with COCO output into ``s3://.../labels`` (no model: a stub writes
each target's record with a fixed label map, as an actor would):

* start-up: ``engine.prepare`` on a fresh output (target listing, fingerprints, batches),
* resume: ``engine.prepare`` again once every target is done (reading every record back),
* finish: ``engine.finish_dataset`` (``annotations.json`` assembled from the records),

and the peak of Python allocations in each (tracemalloc). Prints a Markdown table; run it at
several N to see how each step grows::

    python benchmarks/driver_scale.py --targets 1000 2000 4000

Needs ``pip install 'sansa-segment[scale]' moto[server]``.
"""

from __future__ import annotations

import argparse
import io
import os
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor

import numpy as np


def start_s3() -> object:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ENDPOINT_URL_S3=f"http://{host}:{port}",
    )
    return server


def put_targets(bucket: str, count: int) -> str:
    """``count`` 8x8 PNGs under ``s3://bucket/photos/``, written many at a time."""
    import fsspec
    from PIL import Image

    store = fsspec.filesystem("s3", skip_instance_cache=True)
    store.mkdir(bucket)
    buffer = io.BytesIO()
    Image.fromarray(np.full((8, 8, 3), 128, np.uint8)).save(buffer, format="PNG")
    store.pipe({f"{bucket}/photos/t{i:07d}.png": buffer.getvalue() for i in range(count)})
    return f"s3://{bucket}/photos"


def timed(step) -> tuple[object, float, float]:
    """``(result, seconds, peak MiB of Python allocations)``."""
    tracemalloc.start()
    started = time.perf_counter()
    result = step()
    seconds = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return result, seconds, peak


def one_size(count: int) -> dict[str, tuple[float, float]]:
    from sansa.labeling import engine, pipeline
    from sansa.labeling.job import ExportOptions, Job, ModelSpec, ReferenceEntry
    from sansa.records import Prompt

    targets = put_targets(f"bench-{count}", count)
    reference = os.path.join(os.path.dirname(__file__), "..", "examples")
    image = next(os.path.join(reference, f) for f in sorted(os.listdir(reference)) if f.endswith((".jpg", ".png")))
    job = Job(
        references=[ReferenceEntry(image, "thing", Prompt.create(box=[1, 1, 20, 20]))],
        targets=[targets],
        out=f"s3://bench-{count}/labels",
        export=ExportOptions(formats=("coco",)),
        model=ModelSpec(backbone="test_tiny", random_weights=True, device="cpu"),
        batch_size=1,
    )
    rows = {}
    plan, rows["start-up (prepare)"] = _step(lambda: engine.prepare(job))
    label_map = np.zeros((8, 8), np.uint16)
    label_map[2:6, 2:6] = 1

    def stub(batch) -> None:  # what an actor writes for a target, without a model
        member = pipeline.read_batch(_Transform(), batch).members[0]
        segmentation = _Segmentation(label_map)
        pipeline.write_member(plan.writer, member, segmentation, plan.inputs_digest)

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(stub, plan.batches))
    plan.close()
    plan, rows["resume (prepare, all done)"] = _step(lambda: engine.prepare(job))
    assert not plan.batches and len(plan.skipped) == count
    _, rows["finish (annotations.json)"] = _step(lambda: engine.finish_dataset(plan.writer, []))
    plan.close()
    return rows


def _step(step) -> tuple[object, tuple[float, float]]:
    result, seconds, peak = timed(step)
    return result, (seconds, peak)


class _Transform:
    def image(self, image: np.ndarray) -> None:
        return None


class _Segmentation:
    def __init__(self, label_map: np.ndarray) -> None:
        self.label_map, self.labels = label_map, ["thing"]
        self.predictions = {"thing": type("P", (), {"score": 0.9})()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, nargs="+", default=[1000, 2000, 4000])
    args = parser.parse_args()
    server = start_s3()
    try:
        results = {count: one_size(count) for count in args.targets}
    finally:
        server.stop()
    print(f"moto S3 on loopback, load average {os.getloadavg()[0]:.1f}")
    print("| step | " + " | ".join(f"{n} targets" for n in results) + " |")
    print("|---|" + "---:|" * len(results))
    for step in next(iter(results.values())):
        cells = [f"{r[step][0]:.1f} s, {r[step][1]:.0f} MiB" for r in results.values()]
        print(f"| {step} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
