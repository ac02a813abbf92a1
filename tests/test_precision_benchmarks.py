"""The speed benchmarks run end to end on the CPU with the tiny model (their tables, not their times).

``SANSA_TEST_CPU_FLAGS`` plays a CPU without native bf16/fp16, so the same rows come out on any
machine: fp32 measured, the others refused in one line.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO


def _run(script: str, *args: str) -> list[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "SANSA_TEST_CPU_FLAGS": "avx2 fma"}
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / script), *args], env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return [line for line in result.stdout.splitlines() if line.startswith("| ") and "---" not in line]


def _number(cell: str) -> float:
    return float(cell.strip().split()[0])


@pytest.mark.slow
def test_throughput_sweep_on_the_cpu():
    """``--device cpu``: one row per batch size with images/s > 0, and bf16 refused on this 'CPU'."""
    rows = _run(
        "throughput.py",
        "--device",
        "cpu",
        "--backbones",
        "test_tiny",
        "--batch-sizes",
        "1",
        "2",
        "--targets",
        "2",
        "--shots",
        "1",
        "--classes",
        "2",
        "--compile",
        "off",
        "--precisions",
        "fp32",
        "bf16",
    )
    cells = [[c.strip() for c in row.strip("|").split("|")] for row in rows[1:]]
    assert [c[:5] for c in cells[:2]] == [["test_tiny", "fp32", "off", "1-shot", str(b)] for b in (1, 2)]
    assert all(_number(c[5]) > 0 and c[6] == "n/a" for c in cells[:2])
    assert cells[2][1] == "bf16" and "refused: precision: bf16 on the CPU needs native bf16" in cells[2][5]


@pytest.mark.slow
def test_throughput_prints_the_per_target_overhead():
    rows = _run("throughput.py", "--overhead-only", "--backbones", "test_tiny")
    assert len(rows) == 2 and "`predict`, 1 target, 1-shot (batch 1)" in rows[1]
    assert "encoder" in rows[1] and "overhead" in rows[1] and "%" in rows[1]


@pytest.mark.slow
def test_roofline_counts_flops_and_rates():
    rows = _run("roofline.py", "--backbones", "test_tiny", "--repeats", "1", "--matmul-size", "512")
    cells = [[c.strip() for c in row.strip("|").split("|")] for row in rows]
    assert cells[1][0] == "fp32" and _number(cells[1][1]) > 0  # matmul rate; bf16/fp16 absent on this 'CPU'
    parts = [c for c in cells if c[0] == "test_tiny"]
    assert [p[1] for p in parts] == ["image encoder", "memory attention, K = 1", "memory attention, K = 5"]
    flops = [_number(p[3]) for p in parts]
    assert all(f > 0 for f in flops) and flops[2] > flops[1]  # 5 references attend to more memory than 1


def _benchmark_module(script: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(script.removesuffix(".py"), REPO / "benchmarks" / script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_roofline_counts_the_fused_attention_kernel():
    """The CPU's fused attention is invisible to FlopCounterMode; counted on the math path it is QK^T + AV."""
    import torch
    import torch.nn.functional as F

    q = torch.randn(1, 1, 64, 32)
    count = _benchmark_module("roofline.py").count_flops(lambda: F.scaled_dot_product_attention(q, q, q))
    assert count == 2 * (2 * 64 * 64 * 32)


@pytest.mark.slow
def test_cpu_runtimes_compares_the_encoder_under_each_runtime():
    pytest.importorskip("onnxruntime")
    rows = _run("cpu_runtimes.py", "--backbones", "test_tiny", "--repeats", "1")
    cells = [[c.strip() for c in row.strip("|").split("|")] for row in rows[1:]]
    assert [c[1].split()[0] for c in cells] == ["PyTorch", "onnxruntime", "openvino"]
    assert float(cells[1][4]) < 1e-4  # onnxruntime's features equal PyTorch's to float rounding
    assert _number(cells[1][2]) > 0 and _number(cells[1][3].rstrip("x")) > 0


@pytest.mark.slow
def test_planning_benchmark_names_the_machine_and_gives_a_row_per_setting():
    """``benchmarks/planning.py`` on the tiny model: the CPU line first, one row per shots x classes x
    precision, images/s > 0 for fp32, and bf16 refused on a 'CPU' without native bf16."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "SANSA_TEST_CPU_FLAGS": "avx2 fma"}
    command = [sys.executable, str(REPO / "benchmarks" / "planning.py"), "--backbone", "test_tiny", "--targets", "2"]
    command += ["--shots", "1", "--classes", "1", "3"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("CPU: ") and "flags: avx2" in result.stdout.splitlines()[0]
    table = result.stdout[result.stdout.index("| shots |") :].splitlines()[2:]
    settings = [tuple(cell.strip() for cell in row.split("|")[1:4]) for row in table]
    assert settings == [("1", c, p) for c in "13" for p in ("fp32", "bf16")]
    for row in table:
        cells = [cell.strip() for cell in row.split("|")[1:-1]]
        if cells[2] == "fp32":
            assert _number(cells[3]) > 0 and _number(cells[4]) > 0
        else:
            assert cells[3].startswith("refused: precision: bf16 on the CPU needs native bf16 support")


@pytest.mark.slow
def test_bf16_iou_compares_each_part_with_fp32():
    """``bf16_iou.py`` on one golden case and the tiny model: eight rows (memory attention and the
    decoder, each and both, with the encoder in fp32 and in bf16), the all-fp32 row equal to the
    authors' masks (IoU 100), and a verdict per part from its loss."""
    from tests.conftest import golden_path

    folder = golden_path("cases.pt").parent
    args = ("--golden", str(folder), "--cases", "point_1shot", "--backbone", "test_tiny", "--targets", "1")
    rows = [[c.strip() for c in row.strip().strip("|").split("|")] for row in _run("bf16_iou.py", *args)]
    iou = {cells[0]: [_number(c) for c in cells[1:]] for cells in rows if len(cells) == 5 and cells[0] != "in bf16"}
    assert list(iou) == [
        "nothing (fp32)",
        "memory_attention",
        "decoder",
        "memory_attention + decoder",
        "encoder",
        "encoder + memory_attention",
        "encoder + decoder",
        "encoder + memory_attention + decoder",
    ]
    assert iou["nothing (fp32)"] == [100.0] * 4  # golden: the authors' fp32 masks; random: its own fp32 run
    assert all(0 <= value <= 100 for values in iou.values() for value in values)
    verdicts = {cells[0]: cells[-1] for cells in rows if len(cells) == 4 and cells[0] != "part"}
    assert set(verdicts) == {"memory_attention", "decoder"} and set(verdicts.values()) <= {"bf16", "fp32"}
