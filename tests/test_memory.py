"""``sansa segment`` streams its targets: its peak memory does not grow with their number.

Two fresh processes (the tiny model, 640x480 JPEGs) segment 4 and 40 targets; their peak RSS
(``getrusage`` at exit, see benchmarks/memory.py) may differ by at most ``GROWTH_BOUND``. Keeping
every target's logits (4 ``float32`` maps of 640x480 for the default formats would be ~1.2 MiB
each) would add ~45 MiB over 36 more targets; measured growth here was a few MiB.
"""

from __future__ import annotations

import importlib.util
import sys

import pytest

from tests.conftest import REPO

GROWTH_BOUND = 24 * 2**20  # bytes; measured: ~0-4 MiB for 4 -> 40 targets on this project's machine


def _memory_benchmark():
    spec = importlib.util.spec_from_file_location("sansa_memory_benchmark", REPO / "benchmarks" / "memory.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(sys.platform != "linux", reason="peak RSS read through getrusage in KiB (Linux)")
def test_segment_peak_memory_is_flat_in_the_number_of_targets(tmp_path):
    memory = _memory_benchmark()
    many = memory.write_images(tmp_path / "many", 40)
    few = tmp_path / "few"
    few.mkdir()
    for path in many[:4]:
        (few / path.name).write_bytes(path.read_bytes())
    peak_few = memory.segment_peak_rss("test_tiny", few, tmp_path / "out_few")
    peak_many = memory.segment_peak_rss("test_tiny", tmp_path / "many", tmp_path / "out_many")
    growth = peak_many - peak_few
    print(f"\npeak RSS: 4 targets {peak_few / 2**20:.0f} MiB, 40 targets {peak_many / 2**20:.0f} MiB, "
          f"growth {growth / 2**20:+.1f} MiB")
    assert len(list((tmp_path / "out_many").rglob("*.png"))) >= 40  # every target was segmented and written
    assert growth <= GROWTH_BOUND, f"peak RSS grew {growth / 2**20:.1f} MiB from 4 to 40 targets"
