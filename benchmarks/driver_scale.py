"""The labelling driver at scale: start-up, resume and finish time and memory against a local S3 server.

Puts N tiny PNG targets (8x8) on a moto S3 server started here (loopback), then times the driver's
steps of a `sansa segment --ray` run with COCO output into ``s3://.../labels`` (no model: stub
"actors" write each block's targets through the run's writer, a fixed label map each, and compact
the block's records into one shard at its end, as ``LabelActor`` does):

* start-up: ``engine.prepare`` on a fresh output (target listing, batches),
* resume: ``engine.prepare`` again once every target is done (the listing, and the record shards:
  one object per block; sizes and times of the targets come with the listing),
* finish: ``engine.finish_dataset`` (``manifest.json`` and ``annotations.json`` streamed from the
  records, a target at a time),

with the requests each made to the store and the peak of Python allocations (tracemalloc). Prints
a Markdown table; run it at several N to see how each step grows::

    python benchmarks/driver_scale.py --targets 10000 100000

Needs ``pip install 'sansa-segment[scale]' moto[server]``.
"""

from __future__ import annotations

import argparse
import io
import os
import socket
import subprocess
import sys
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor

import numpy as np


def start_s3() -> subprocess.Popen:
    """moto's S3 server in a process of its own on a free loopback port (its work and memory are not
    the driver's); ``AWS_*`` variables point this process's clients at it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-c", "from moto.server import main; main()", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ENDPOINT_URL_S3=f"http://127.0.0.1:{port}",
    )
    for _ in range(600):  # up within a minute
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return server
        time.sleep(0.1)
    server.kill()
    raise RuntimeError("moto server did not start")


def put_targets(bucket: str, count: int) -> str:
    """``count`` 8x8 PNGs under ``s3://bucket/photos/``, written many at a time."""
    import fsspec
    from PIL import Image

    store = fsspec.filesystem("s3", skip_instance_cache=True)
    store.mkdir(bucket)
    buffer = io.BytesIO()
    Image.fromarray(np.full((8, 8, 3), 128, np.uint8)).save(buffer, format="PNG")
    for start in range(0, count, 10_000):  # many requests in flight, a bounded dict at a time
        store.pipe(
            {f"{bucket}/photos/t{i:07d}.png": buffer.getvalue() for i in range(start, min(count, start + 10_000))}
        )
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


def one_size(count: int) -> dict[str, tuple[float, float, int, float]]:
    from sansa import fs
    from sansa.labeling import engine, pipeline
    from sansa.labeling.job import ExportOptions, Job, ModelSpec, ReferenceEntry
    from sansa.labeling.ray import BLOCK_TARGETS
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
    listed = {i["name"]: fs.listed_stat(i) for i in _store().find(targets, detail=True).values()}
    image = np.zeros((8, 8, 3), np.uint8)

    def actor_block(batches) -> None:  # what an actor writes for a block of targets, without a model
        writer = engine.writer_for(job, worker=True)
        for batch in batches:
            target = batch.targets[0]
            source = {**listed[target.path.removeprefix("s3://")], "sha256": "stub"}  # as fingerprint() gives
            member = pipeline.Member(target, True, source, image, None)
            pipeline.write_member(writer, member, _Segmentation(label_map), plan.inputs_digest)
        writer.compact(minimum=1)  # the block's records: one shard

    blocks = [plan.batches[i : i + BLOCK_TARGETS] for i in range(0, len(plan.batches), BLOCK_TARGETS)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(actor_block, blocks))
    plan.close()
    plan, rows["resume (prepare, all done)"] = _step(lambda: engine.prepare(job))
    assert not plan.batches and len(plan.skipped) == count, (len(plan.batches), len(plan.skipped))
    _, rows["finish (manifest, annotations.json)"] = _step(lambda: engine.finish_dataset(plan.writer, []))
    plan.close()
    return rows


def _store():
    import fsspec

    return fsspec.filesystem("s3", skip_instance_cache=True)


def _step(step) -> tuple[object, tuple[float, float, int, float]]:
    before, waited = REQUESTS["count"], REQUESTS["waiting_s"]
    result, seconds, peak = timed(step)
    return result, (seconds, peak, REQUESTS["count"] - before, REQUESTS["waiting_s"] - waited)


# HTTP requests the driver made to the store, and the time with at least one of them in flight
REQUESTS = {"count": 0, "in_flight": 0, "since": 0.0, "waiting_s": 0.0}


def count_requests() -> None:
    """Count every request botocore sends (the driver's only way to the store) and the time spent
    waiting for answers (all on fsspec's one event-loop thread: no lock needed)."""
    from aiobotocore.endpoint import AioEndpoint

    send = AioEndpoint._send

    async def counted(self, request):
        REQUESTS["count"] += 1
        if REQUESTS["in_flight"] == 0:
            REQUESTS["since"] = time.perf_counter()
        REQUESTS["in_flight"] += 1
        try:
            return await send(self, request)
        finally:
            REQUESTS["in_flight"] -= 1
            if REQUESTS["in_flight"] == 0:
                REQUESTS["waiting_s"] += time.perf_counter() - REQUESTS["since"]

    AioEndpoint._send = counted


class _Transform:
    def image(self, image: np.ndarray) -> None:
        return None


class _Segmentation:
    def __init__(self, label_map: np.ndarray) -> None:
        self.label_map, self.labels, self.objects = label_map, ["thing"], []
        self.predictions = {"thing": type("P", (), {"score": 0.9})()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, nargs="+", default=[1000, 2000, 4000])
    args = parser.parse_args()
    import sansa.devices  # noqa: F401 (torch: imported once before any step is timed)

    server = start_s3()
    count_requests()
    loads = []
    try:
        results = {}
        for count in args.targets:
            results[count] = one_size(count)
            loads.append(f"{os.getloadavg()[0]:.1f}")
    finally:
        server.terminate()
        server.wait(timeout=60)
    print(f"moto S3 server (its own process) on loopback; load average after each size: {', '.join(loads)}")
    print("| step | " + " | ".join(f"{n:,} targets" for n in results) + " |")
    print("|---|" + "---:|" * len(results))
    for step in next(iter(results.values())):
        cells = [
            f"{r[step][0]:.1f} s ({r[step][3]:.1f} s waiting for {r[step][2]:,} requests), {r[step][1]:.0f} MiB"
            for r in results.values()
        ]
        print(f"| {step} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
