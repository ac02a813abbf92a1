"""``precision``: refusals where the device lacks native support, and bf16/fp16 numerics on the
golden cases (fp32 itself is pinned exactly by tests/test_golden.py).

The CPU's flags come from ``/proc/cpuinfo`` unless ``SANSA_TEST_CPU_FLAGS`` names them, which is
how these tests play a CPU with or without native bf16/fp16 on any machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sansa import SansaPredictor
from sansa.devices import (
    AUTOCAST_PARTS,
    CPU_FLAGS_ENV,
    MODEL_PARTS,
    NATIVE_CPU_FLAGS,
    choose_precision,
    cpu_flags,
    part_dtype,
    resolve_precision,
)
from sansa.errors import SansaError
from tests.conftest import REPO, golden_path
from tests.test_golden import _add, _cases

CPU = torch.device("cpu")


@pytest.mark.parametrize(
    ("flags", "precision", "message"),
    [
        (
            "avx2 fma",
            "bf16",
            "precision: bf16 on the CPU needs native bf16 support, and this CPU lacks the flags "
            "avx512_bf16 / amx_bf16 / bf16 (use precision='fp32' or a GPU)",
        ),
        (
            "avx2 fma avx512_bf16",
            "fp16",
            "precision: fp16 on the CPU needs native fp16 support, and this CPU lacks the "
            "flags avx512_fp16 / amx_fp16 / fphp (use precision='fp32' or a GPU)",
        ),
        ("", "fp8", "precision: unknown precision 'fp8'; choose one of fp32, bf16, fp16, auto"),
    ],
)
def test_refused_with_one_line_naming_the_missing_flags(monkeypatch, tiny_model, flags, precision, message):
    monkeypatch.setenv(CPU_FLAGS_ENV, flags)
    with pytest.raises(SansaError) as caught:
        SansaPredictor(tiny_model, device="cpu", precision=precision)
    assert str(caught.value) == message
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("flags", "precision", "dtype"),
    [
        ("", "fp32", None),
        ("", None, None),
        ("avx512f avx512_bf16", "bf16", torch.bfloat16),
        ("amx_bf16", "BF16", torch.bfloat16),
        ("bf16 asimd", "bf16", torch.bfloat16),  # Arm's Features line
        ("avx512_fp16", "fp16", torch.float16),
    ],
)
def test_accepted_where_native(monkeypatch, flags, precision, dtype):
    monkeypatch.setenv(CPU_FLAGS_ENV, flags)
    assert resolve_precision(precision, CPU) is dtype


@pytest.mark.parametrize(
    ("flags", "chosen"),
    [
        ("avx2 fma", "fp32"),  # no native bf16
        ("avx512f avx512_bf16", "fp32"),  # native but not much faster: left to an explicit bf16
        ("avx512_bf16 amx_bf16 amx_tile", "bf16"),  # AMX: bf16 matmul several times fp32's rate
        ("bf16 asimd", "fp32"),  # Arm
    ],
)
def test_auto_picks_bf16_only_where_it_is_native_and_fast(monkeypatch, tiny_model, flags, chosen):
    """``precision="auto"`` resolves on the CPU from its flags; the predictor says what runs."""
    monkeypatch.setenv(CPU_FLAGS_ENV, flags)
    assert choose_precision("auto", CPU) == chosen
    assert choose_precision("AUTO", CPU) == chosen
    assert SansaPredictor(tiny_model, device="cpu", precision="auto").precision == chosen


@pytest.mark.parametrize(("precision", "chosen"), [(None, "fp32"), ("fp32", "fp32"), ("BF16", "bf16")])
def test_a_named_precision_is_kept_as_named(precision, chosen):
    assert choose_precision(precision, CPU) == chosen


def test_auto_on_an_mps_device_is_fp32():
    assert choose_precision("auto", torch.device("mps")) == "fp32"


def test_cpu_flags_are_read_from_proc_cpuinfo(monkeypatch):
    monkeypatch.delenv(CPU_FLAGS_ENV, raising=False)
    if not Path("/proc/cpuinfo").exists():
        pytest.skip("no /proc/cpuinfo on this system")
    assert cpu_flags(), "no flags line found in /proc/cpuinfo"


def test_fp32_default_leaves_predictions_unchanged(tiny_model):
    """``precision="fp32"`` (the default) is plain fp32: identical logits to a predictor without it."""
    image = np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    logits = []
    for kwargs in ({}, {"precision": "fp32"}):
        predictor = SansaPredictor(tiny_model, device="cpu", **kwargs)
        predictor.add_reference(image, box=[5, 5, 30, 30])
        logits.append(predictor.predict(image).logits)
    assert logits[0].dtype == np.float32
    np.testing.assert_array_equal(logits[0], logits[1])


def _write_inputs(folder: Path) -> None:
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(folder / "ref.png")
    (folder / "targets").mkdir()
    Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(folder / "targets" / "t0.png")


@pytest.mark.parametrize(
    ("precision", "flags", "expected"),
    [
        (
            "fp16",
            "avx2 fma",
            "sansa segment: error: --precision: fp16 on the CPU needs native fp16 support, and this CPU "
            "lacks the flags avx512_fp16 / amx_fp16 / fphp (use --precision fp32 or a GPU)",
        ),
        ("bf16", "avx2 fma", "sansa segment: error: --precision: bf16 on the CPU needs native bf16 support"),
        ("fp8", "", "argument --precision: invalid choice: 'fp8'"),
    ],
)
def test_cli_refuses_in_one_line_and_writes_nothing(tmp_path, precision, flags, expected):
    """``sansa segment --precision``: exit status 2, one line on stderr, no traceback, no outputs."""
    _write_inputs(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), CPU_FLAGS_ENV: flags}
    command = [
        sys.executable,
        "-m",
        "sansa",
        "segment",
        "ref.png",
        "--box",
        "5,5,40,30",
        "--targets",
        "targets",
        "--out",
        "out",
        "--backbone",
        "test_tiny",
        "--random-weights",
        "--device",
        "cpu",
        "--precision",
        precision,
    ]
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert expected in lines[-1]
    assert len(lines) == 1 or lines[0].startswith("usage:")  # argparse prints its usage above the error
    assert not [p for p in (tmp_path / "out").rglob("*") if p.is_file()]


# -- numerics on the golden cases --------------------------------------------------------------
CASES = [1, 4, 5]  # point_1shot, mask_5shot, mixed_3shot: every prompt kind, 1 to 5 shots
MIN_IOU = 0.98


def _native(precision: str) -> bool:
    return bool(cpu_flags() & set(NATIVE_CPU_FLAGS[precision]))


@pytest.fixture(scope="module")
def golden_files():
    return golden_path("sam2_checkpoint.pt"), golden_path("sansa_adapter.pth"), golden_path("sam2_config.yaml")


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
@pytest.mark.parametrize("index", CASES)
def test_low_precision_masks_agree_with_fp32_on_golden_cases(monkeypatch, golden_files, precision, index):
    """The target's mask under autocast has IoU >= 0.98 with the fp32 reference computation's.

    Where the CPU lacks native support the same autocast path runs through the flags override,
    if emulation is tolerable: emulated bf16 is a few times slower than fp32 (run), emulated fp16
    hundreds of times (skipped).
    """
    if not _native(precision):
        if precision == "fp16":
            pytest.skip("this CPU has no native fp16 (emulated fp16 matmul runs ~0.4% of the fp32 rate)")
        monkeypatch.setenv(CPU_FLAGS_ENV, " ".join(NATIVE_CPU_FLAGS[precision]))
    checkpoint, adapter, config = golden_files
    predictor = SansaPredictor.from_checkpoint(checkpoint, adapter, model=config, device="cpu", precision=precision)
    case = _cases()[index]
    for image, prompt in zip(case["images"][:-1], case["prompts"], strict=True):
        _add(predictor, image, prompt)
    logits = predictor.predict(case["images"][-1].numpy()).logits
    expected = case["expected_logits"][-1].numpy()
    got, want = logits > 0, expected > 0
    iou = (got & want).sum() / max(1, (got | want).sum())
    print(
        f"\n{case['name']} {precision}: mask IoU with fp32 {iou:.4f}, mean |logit diff| "
        f"{np.abs(logits - expected).mean():.3e}, max {np.abs(logits - expected).max():.3e}"
    )
    assert logits.dtype == np.float32
    assert iou >= MIN_IOU, f"{case['name']} {precision}: IoU {iou:.4f} with fp32"


def test_web_sessions_and_label_studio_projects_keep_the_precision(monkeypatch, tiny_model, tmp_path):
    """Every per-session (web) and per-project (Label Studio) predictor encodes as the one loaded from
    the command line: ``--precision bf16`` used to fall back to fp32 for their references."""
    from sansa.labelstudio.backend import SansaBackend
    from sansa.web.folder import ImageFolder
    from sansa.web.service import SansaService

    monkeypatch.setenv(CPU_FLAGS_ENV, "avx512_bf16")
    loaded = SansaPredictor(tiny_model, device="cpu", precision="bf16")
    session = SansaService(loaded, ImageFolder(tmp_path)).create_session()
    project = SansaBackend(loaded)._project(1)
    for predictor in (session.predictor, project.predictor):
        assert predictor.precision == "bf16" and predictor.model is loaded.model
        assert predictor is not loaded and predictor.references == []
    loaded.add_reference(scene_image(), box=[4, 4, 30, 20])
    assert session.predictor.references == [] and project.predictor.references == []  # nothing shared


def scene_image():
    return np.full((32, 48, 3), 120, np.uint8)


def _segment(folder: Path, flags: str, *options: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), CPU_FLAGS_ENV: flags}
    command = [sys.executable, "-m", "sansa", "segment", "ref.png", "--box", "5,5,40,30", "--targets", "targets"]
    command += ["--out", "out", "--backbone", "test_tiny", "--random-weights", "--device", "cpu", *options]
    return subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_auto_records_what_ran_and_a_resume_elsewhere_does_not_mix(tmp_path):
    """``--precision auto``: run.json says what ran; a re-run where auto resolves differently (an AMX
    machine after an AVX2 one) refuses the folder in one line instead of mixing bf16 and fp32 labels."""
    import json

    _write_inputs(tmp_path)
    first = _segment(tmp_path, "avx2 fma", "--precision", "auto")
    assert first.returncode == 0, first.stderr
    assert json.loads((tmp_path / "out" / "run.json").read_text())["precision"] == "fp32"
    again = _segment(tmp_path, "avx2 fma", "--precision", "fp32")  # auto was fp32 here: the same results
    assert again.returncode == 0, again.stderr
    elsewhere = _segment(tmp_path, "amx_bf16 amx_tile", "--precision", "auto")
    assert elsewhere.returncode == 2
    assert "another model" in elsewhere.stderr and "Traceback" not in elsewhere.stderr
    fresh = _segment(tmp_path, "amx_bf16 amx_tile", "--precision", "auto", "--overwrite")
    assert fresh.returncode == 0, fresh.stderr
    assert json.loads((tmp_path / "out" / "run.json").read_text())["precision"] == "bf16"


# -- which parts run in bf16 ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("parts", "same_as_fp32"),
    [
        ((), True),  # nothing autocast: exactly fp32 (no part runs low precision unasked)
        (("memory_attention",), False),
        (("decoder",), False),
        (("encoder",), False),
    ],
)
def test_autocast_parts_decide_what_runs_in_bf16(monkeypatch, tiny_model, parts, same_as_fp32):
    """``autocast_parts`` reaches each part: with none the bf16 predictor is exactly fp32; each part
    alone changes the class logits."""
    monkeypatch.setenv(CPU_FLAGS_ENV, "avx512_bf16")
    rng = np.random.default_rng(0)
    image, target = rng.integers(0, 256, (2, 40, 56, 3), dtype=np.uint8)
    results = []
    for precision, chosen in (("fp32", AUTOCAST_PARTS), ("bf16", parts)):
        predictor = SansaPredictor(tiny_model, device="cpu", precision=precision)
        assert predictor.autocast_parts == frozenset(AUTOCAST_PARTS) or precision == "bf16"
        predictor.autocast_parts = frozenset(chosen)
        predictor.add_reference(image, box=[5, 5, 30, 30], label="thing")
        results.append(predictor.segment(target, keep_logits=True))
    fp32, bf16 = (r.predictions["thing"].logits for r in results)
    assert bf16.dtype == np.float32
    assert np.array_equal(fp32, bf16) == same_as_fp32


def test_default_parts_and_unknown_part():
    assert set(AUTOCAST_PARTS) <= set(MODEL_PARTS) and "encoder" in AUTOCAST_PARTS
    assert part_dtype("encoder", torch.bfloat16) is torch.bfloat16
    assert part_dtype("decoder", torch.bfloat16, ("encoder",)) is None
    with pytest.raises(ValueError, match="unknown model part 'neck'"):
        part_dtype("neck", torch.bfloat16)
