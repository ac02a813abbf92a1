"""``sansa segment`` streams its targets: its peak memory does not grow with their number.

Two fresh processes (the tiny model, 640x480 JPEGs) segment 24 and 72 targets; their peak RSS
(``getrusage`` at exit, see benchmarks/memory.py) may differ by at most ``GROWTH_BOUND``. Keeping
each target's logits (a ``float32`` 640x480 map, 1.2 MiB) would add ~56 MiB over 48 more targets.
Measured here: 8 -> 24 -> 72 targets 951 -> 980 -> 993 MiB: the pipelined loop's queues and
threads fill up over the first ~20 targets (so fewer are not compared), then glibc's per-thread
malloc arenas add a little (with ``MALLOC_ARENA_MAX=1``: 935 -> 932 MiB from 24 to 72).
"""

from __future__ import annotations

import importlib.util
import sys

import pytest

from tests.conftest import REPO

GROWTH_BOUND = 24 * 2**20  # bytes; measured +13 MiB from 24 to 72 targets on this project's machine
FEW, MANY = 24, 72


def _memory_benchmark():
    spec = importlib.util.spec_from_file_location("sansa_memory_benchmark", REPO / "benchmarks" / "memory.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="peak RSS read through getrusage in KiB (Linux)")
def test_segment_peak_memory_is_flat_in_the_number_of_targets(tmp_path):
    memory = _memory_benchmark()
    many = memory.write_images(tmp_path / "many", MANY)
    few = tmp_path / "few"
    few.mkdir()
    for path in many[:FEW]:
        (few / path.name).write_bytes(path.read_bytes())
    peak_few = memory.segment_peak_rss("test_tiny", few, tmp_path / "out_few")
    peak_many = memory.segment_peak_rss("test_tiny", tmp_path / "many", tmp_path / "out_many")
    growth = peak_many - peak_few
    print(
        f"\npeak RSS: {FEW} targets {peak_few / 2**20:.0f} MiB, {MANY} targets {peak_many / 2**20:.0f} MiB, "
        f"growth {growth / 2**20:+.1f} MiB"
    )
    assert len(list((tmp_path / "out_many" / "masks").rglob("*.png"))) == MANY  # every target segmented, written
    assert growth <= GROWTH_BOUND, f"peak RSS grew {growth / 2**20:.1f} MiB from {FEW} to {MANY} targets"


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="peak RSS read from /proc (Linux)")
def test_server_memory_benchmark_propagates_through_the_guarded_api(tmp_path):
    """The benchmark drives a real ``sansa serve`` with its per-launch token, picks an image (not the
    ``.sansa`` folder the server adds) and waits for propagation: a peak is read, and every image but
    the reference has a saved result."""
    memory = _memory_benchmark()
    memory.write_images(tmp_path / "images", 3)
    peak = memory.server_peak_rss("test_tiny", tmp_path / "images", timeout=300)
    assert peak > 100 * 2**20
    saved = [p for p in (tmp_path / "images" / ".sansa" / "web").rglob("*") if p.is_file() and "results" in p.parts]
    assert len(saved) == 2, sorted(map(str, saved))
