"""The labelling driver at scale: start-up, resume and finish time and memory against a local S3 server.

A moto S3 server runs in a process of its own (loopback) holding N tiny PNG targets (8x8) under
``s3://bench-N/photos/``; they are put into its backend directly before it starts serving, since
putting 100,000 objects through its HTTP API runs at a few hundred a second here. The driver's
steps of a `sansa segment --ray` run with COCO output into ``s3://bench-N/labels`` are timed (no
model, no Ray: the blocks' records are written as the actors' shards would be, one shard of
``BLOCK_TARGETS`` records per block, straight from a record the real writer made):

* first block: ``engine.prepare`` on a fresh output, then the first block of batches formed from
  the streamed listing (what the Ray run hands the actors first),
* listing: the rest of the listing, every batch formed and dropped (as the actors take them),
* resume: ``engine.prepare`` again once every target is done, and the whole listing (the record
  shards, one object per block; sizes and times of the targets come with the listing),
* finish: every target accounted for against the blocks' outcomes (``ray.account_for_every_target``),
  then ``engine.finish_dataset`` (``manifest.json`` and ``annotations.json`` streamed from the
  records, a target at a time),

with the requests each made to the store (the stub shard writes not counted), the time waiting for
them, the driver's resident memory after each step and its peak so far (each size runs in a
fresh driver process, torch imported first as ``sansa segment`` does) and the size of its
temporary files (:mod:`sansa.spill`). Prints a Markdown table, then the growth per target from the
smallest size to the largest::

    python benchmarks/driver_scale.py --targets 25000 200000

Needs ``pip install 'sansa-segment[scale]' moto[server]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from pathlib import Path

import numpy as np

SERVER = """
import sys, io, datetime, logging, threading
import numpy as np
from PIL import Image
from moto.core import DEFAULT_ACCOUNT_ID
from moto.s3.models import s3_backends
from moto.server import ThreadedMotoServer

port, folder, counts = int(sys.argv[1]), sys.argv[2], [int(n) for n in sys.argv[3:]]
logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
buffer = io.BytesIO()
Image.fromarray(np.full((8, 8, 3), 128, np.uint8)).save(buffer, format="PNG")
backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
for count in counts:  # straight into the backend: no HTTP request per object
    backend.create_bucket(f"bench-{count}", "us-east-1")
    for i in range(count):
        backend.put_object(f"bench-{count}", f"photos/t{i:07d}.png", buffer.getvalue())
    times = [  # each object's time as its listing tells it (whole seconds), for the stub records
        datetime.datetime.fromisoformat(key.last_modified_ISO8601.replace("Z", "+00:00")).timestamp()
        for key in (backend.get_object(f"bench-{count}", f"photos/t{i:07d}.png") for i in range(count))
    ]
    np.save(f"{folder}/times-{count}.npy", np.array(times, np.float64).astype(np.int64))
print(len(buffer.getvalue()), flush=True)
server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
server.start()
print("ready", flush=True)
threading.Event().wait()
"""


def start_s3(counts: list[int], folder: str) -> subprocess.Popen:
    """moto's S3 server in a process of its own, holding the targets of each size (its work and
    memory are not the driver's); ``AWS_*`` variables point this process's clients at it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    started = time.perf_counter()
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(port), folder, *map(str, counts)], stdout=subprocess.PIPE, text=True
    )
    size = server.stdout.readline().strip() if server.stdout is not None else ""
    os.environ["BENCH_TARGET_BYTES"] = size
    if server.stdout is None or server.stdout.readline().strip() != "ready":
        server.kill()
        raise RuntimeError("moto server did not start")
    print(f"moto server: {sum(counts):,} targets put into its backend in {time.perf_counter() - started:.0f} s")
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ENDPOINT_URL_S3=f"http://127.0.0.1:{port}",
    )
    return server


def timed(step) -> tuple[object, float, float, float]:
    """``(result, seconds, the process's peak RSS so far in MiB, its RSS after in MiB)``."""
    started = time.perf_counter()
    result = step()
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    with open("/proc/self/statm", encoding="ascii") as statm:
        current = int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    return result, seconds, peak, current


def spilled_mib() -> float:
    """MiB in the driver's temporary SQLite files (sansa.spill), open now: SQLite removes their
    names when it opens them, so they are found through the process's open files."""
    total = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if "etilqs_" in os.readlink(f"/proc/self/fd/{fd}"):
                total += os.fstat(int(fd)).st_size
        except OSError:
            continue
    return total / 2**20


def one_size(count: int, folder: str) -> dict[str, tuple[float, float, float, int, float, float]]:
    """The steps of one size, in this process (a fresh driver for each size: its own peak RSS)."""
    from sansa.export import shards
    from sansa.labeling import engine
    from sansa.labeling.job import ExportOptions, Job, ModelSpec, ReferenceEntry
    from sansa.labeling.pipeline import RunOutcome
    from sansa.labeling.ray import BLOCK_TARGETS, account_for_every_target
    from sansa.records import Prompt

    targets = f"s3://bench-{count}/photos"
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
    times = np.load(f"{folder}/times-{count}.npy")  # the targets' times, as their listing tells them
    size = int(os.environ["BENCH_TARGET_BYTES"])

    def listed(name: str) -> dict[str, int]:
        return {"bytes": size, "mtime_ns": int(times[int(name[1:8])]) * 10**9}

    rows = {"imports, reference (before the run)": (0.0, *timed(lambda: None)[2:], 0, 0.0, 0.0)}

    def first_block():
        plan = engine.prepare(job)
        stream = plan.stream()
        return plan, stream, list(islice(stream, BLOCK_TARGETS))

    (plan, stream, block), rows["first block (prepare + first block formed)"] = _step(first_block)

    outcome = RunOutcome()  # the driver's tally of the blocks' outcomes (names on disk)

    def rest_of_listing(stream, block):
        blocks = [block]
        while more := list(islice(stream, BLOCK_TARGETS)):
            blocks.append(more)
            if len(blocks) > 8:  # as the actors take them: written out, then dropped
                outcome.add(_write_records(plan, blocks.pop(0), listed, shards))
        for left in blocks:
            outcome.add(_write_records(plan, left, listed, shards))
        return plan.to_write

    written, rows["rest of the listing (every batch formed)"] = _step(lambda: rest_of_listing(stream, block))
    assert written == count, written
    plan.close()
    stream = block = None  # noqa: F841 (the batches handed out are the actors' now)

    def resume():
        again = engine.prepare(job)
        assert not list(again.stream()) and len(again.skipped) == count, len(again.skipped)
        return again

    plan, rows["resume (prepare + whole listing, all done)"] = _step(resume)

    def finish():
        outcome.skipped = plan.skipped
        account_for_every_target(outcome, plan.targets)  # as a Ray run does: every target accounted for
        assert not outcome.failures and len(outcome.written) == count
        engine.finish_dataset(plan.writer, outcome.failures)

    _, rows["finish (every target accounted for, manifest, annotations.json)"] = _step(finish)
    plan.close()
    return rows


TEMPLATE: dict[str, object] = {}


def _template() -> dict:
    """A target's record as the real writer makes it (COCO, an 8x8 target with a square), once."""
    if not TEMPLATE:
        from sansa.export.writer import FolderWriter

        with tempfile.TemporaryDirectory() as folder:
            writer = FolderWriter(Path(folder), ["thing"], ["coco"])
            label_map = np.zeros((8, 8), np.uint16)
            label_map[2:6, 2:6] = 1
            writer.write("t.png", np.zeros((8, 8, 3), np.uint8), label_map, ["thing"], {"thing": 0.9}, stem="t")
            TEMPLATE.update(json.loads(next((Path(folder) / ".sansa" / "parts").glob("*.json")).read_text()))
    return dict(TEMPLATE)


def _write_records(plan, batches, listed, shards):
    """What an actor leaves for a block: one shard of its targets' records (made from the listing);
    returns the block's outcome as the actor sends it back."""
    from sansa.labeling.pipeline import Outcome

    parts = []
    for batch in batches:
        target = batch.targets[0]
        source = {**listed(target.name), "sha256": "stub"}  # as fingerprint() gives
        made_from = {"target": source, "inputs": plan.inputs_digest}
        parts.append({**_template(), "name": target.name, "stem": target.stem, "made_from": made_from})
    WRITES.append(POOL.submit(shards.write_shard, plan.writer._shards_dir, parts))
    SHARDS["count"] += 1
    if len(WRITES) > 32:
        WRITES.pop(0).result()
    return Outcome(written=[part["name"] for part in parts])


POOL = ThreadPoolExecutor(16)
WRITES: list = []
SHARDS = {"count": 0}  # the stub actors' PUTs (one a block), not counted as the driver's requests


def _step(step) -> tuple[object, tuple[float, float, float, int, float, float]]:
    before, waited, puts = REQUESTS["count"], REQUESTS["waiting_s"], SHARDS["count"]
    result, seconds, peak, held = timed(step)
    for write in WRITES:
        write.result()
    WRITES.clear()
    requests = REQUESTS["count"] - before - (SHARDS["count"] - puts)
    return result, (seconds, peak, held, requests, REQUESTS["waiting_s"] - waited, spilled_mib())


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


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            return next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, nargs="+", default=[1000, 2000, 4000])
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # a child: one size
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        import sansa.devices  # noqa: F401 (torch: imported before any step is timed, as a run does)

        count_requests()
        print(json.dumps(one_size(args.one, args.folder)))
        return
    with tempfile.TemporaryDirectory() as folder:
        server = start_s3(args.targets, folder)
        loads, results = [], {}
        try:
            for count in args.targets:
                child = [sys.executable, __file__, "--one", str(count), "--folder", folder]
                answer = subprocess.run(child, check=True, stdout=subprocess.PIPE, text=True).stdout
                results[count] = json.loads(answer.strip().splitlines()[-1])
                loads.append(f"{os.getloadavg()[0]:.1f}")
        finally:
            server.terminate()
            server.wait(timeout=60)
    print(f"{cpu_model()}, {os.cpu_count()} cores; load average after each size: {', '.join(loads)}")
    print("| step | " + " | ".join(f"{n:,} targets" for n in results) + " |")
    print("|---|" + "---:|" * len(results))
    for step in next(iter(results.values())):
        cells = [
            f"{r[step][0]:.1f} s ({r[step][4]:.1f} s waiting for {r[step][3]:,} requests), "
            f"RSS {r[step][2]:.0f} MiB (peak {r[step][1]:.0f}), temporary files {r[step][5]:.0f} MiB"
            for r in results.values()
        ]
        print(f"| {step} | " + " | ".join(cells) + " |")
    if len(results) > 1:  # growth from the smallest size to the largest, per target
        (small, first), (large, last) = min(results.items()), max(results.items())
        steps, span = list(first), large - small

        def per_target(step: str, column: int, scale: float) -> float:
            return (last[step][column] - first[step][column]) * scale / span

        growth = "; ".join(
            f"{step.split(' (')[0]}: RSS after {per_target(step, 2, 2**20):.0f} B, "
            f"{per_target(step, 3, 1000):.1f} requests per 1,000 targets"
            for step in steps[1:]
        )
        print(f"\nGrowth from {small:,} to {large:,} targets, per target: {growth}; ", end="")
        print(f"the driver's peak RSS {per_target(steps[-1], 1, 2**20):.0f} B")


if __name__ == "__main__":
    main()
