"""``runtime="onnxruntime"``: the image encoder under ONNX Runtime on the CPU.

What must hold: the golden fixtures pass through it at the fixtures' tolerance; the encoder is
exported once per set of weights and reused (a changed model gets its own file, a failed export
leaves no file); every misuse is one line naming the option; and a folder labelled with one
runtime is never silently continued with the other (its results would differ in the last bits).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from sansa import SansaPredictor
from sansa.errors import SansaError
from sansa.model import onnx_encoder
from sansa.model.onnx_encoder import OnnxImageEncoder, exported_encoder, resolve_runtime
from tests.conftest import REPO, golden_path
from tests.scenes import scene, write_reference
from tests.test_golden import MAX_TOLERANCE, MEAN_TOLERANCE, _cases, run_case

pytest.importorskip("onnxruntime", reason="pip install 'sansa-segment[onnx]'")


@pytest.fixture(scope="module")
def onnx_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.fixture(scope="module")
def golden_onnx_predictor(onnx_cache):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SANSA_CACHE", str(onnx_cache))
        yield SansaPredictor.from_checkpoint(golden_path("sam2_checkpoint.pt"), golden_path("sansa_adapter.pth"),
                                             model=golden_path("sam2_config.yaml"), device="cpu",
                                             runtime="onnxruntime")


@pytest.mark.parametrize("index", range(6))
def test_golden_cases_match_through_onnxruntime(golden_onnx_predictor, index):
    case = _cases()[index]
    diffs = run_case(golden_onnx_predictor, case)
    print(f"\n{case['name']} (onnxruntime): worst mean {max(d[1] for d in diffs):.2e}, "
          f"worst max {max(d[2] for d in diffs):.2e}")
    for name, mean, largest in diffs:
        assert mean <= MEAN_TOLERANCE, f"{case['name']} {name}: mean diff {mean:.3e}"
        assert largest <= MAX_TOLERANCE, f"{case['name']} {name}: max diff {largest:.3e}"


def test_encoder_features_equal_pytorch_to_float_rounding(tiny_model, tmp_path):
    encoder = OnnxImageEncoder(tiny_model, cache_dir=tmp_path)
    images = torch.randn(2, 3, tiny_model.image_size, tiny_model.image_size, generator=torch.Generator().manual_seed(0))
    got = encoder(images)
    with torch.inference_mode():
        want = tiny_model.encode_images(images)
    assert len(got) == 2
    for a, b in zip([*got.high_res, got.top, got.top_pos], [*want.high_res, want.top, want.top_pos], strict=True):
        assert a.shape == b.shape and a.dtype == torch.float32
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-4)


def test_exported_once_per_weights(tiny_model, tmp_path, monkeypatch):
    first = exported_encoder(tiny_model, tmp_path)
    exports = []
    monkeypatch.setattr(onnx_encoder, "_export", lambda model, path: exports.append(path))
    assert exported_encoder(tiny_model, tmp_path) == first  # cached: not exported again
    assert exports == []
    changed = _copy_with_changed_adapter(tiny_model)
    monkeypatch.undo()
    second = exported_encoder(changed, tmp_path)
    assert second != first and second.is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([first.name, second.name])


def test_failed_export_leaves_no_file(tiny_model, tmp_path, monkeypatch):
    def interrupted(model, path):
        path.write_bytes(b"half an onnx file")
        raise KeyboardInterrupt

    monkeypatch.setattr(onnx_encoder, "_export", interrupted)
    with pytest.raises(KeyboardInterrupt):
        exported_encoder(tiny_model, tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("runtime", "device", "precision", "message"), [
    ("tensorrt", "cpu", "fp32", "runtime: unknown runtime 'tensorrt'; choose one of torch, onnxruntime"),
    ("onnxruntime", "cuda", "fp32", "runtime: onnxruntime runs the encoder on the CPU, not cuda "
                                    "(use --device cpu, or --runtime torch)"),
    ("onnxruntime", "cpu", "bf16", "runtime: onnxruntime runs fp32 only, not bf16 (use --precision fp32)"),
])
def test_misuse_is_one_line_naming_the_option(runtime, device, precision, message):
    with pytest.raises(SansaError) as caught:
        resolve_runtime(runtime, torch.device(device), precision)
    assert str(caught.value) == message


@pytest.mark.parametrize(("runtime", "expected"), [(None, "torch"), ("torch", "torch"), ("ONNXRuntime", "onnxruntime")])
def test_accepted_runtimes(runtime, expected):
    assert resolve_runtime(runtime, torch.device("cpu"), "fp32") == expected


def test_missing_onnxruntime_says_how_to_install(monkeypatch, tiny_model):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if not installed
    expected = r"^runtime: onnxruntime is not installed: pip install 'sansa-segment\[onnx\]'$"
    with pytest.raises(SansaError, match=expected):
        SansaPredictor(tiny_model, device="cpu", runtime="onnxruntime")


def test_unwritable_cache_is_one_line(tiny_model, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(SansaError, match=r"^runtime: cannot write the exported encoder in .*file.*set SANSA_CACHE"):
        exported_encoder(tiny_model, blocker / "onnx")


def test_sibling_shares_the_session(tiny_model, tmp_path, monkeypatch):
    monkeypatch.setenv("SANSA_CACHE", str(tmp_path))
    predictor = SansaPredictor(tiny_model, device="cpu", runtime="onnxruntime")
    predictor.add_reference(scene(0), box=[10, 8, 40, 30], label="square")
    sibling = predictor.sibling()
    assert sibling._onnx_encoder is predictor._onnx_encoder
    assert sibling.references == [] and sibling.runtime == "onnxruntime"
    assert len(predictor.references) == 1


def _segment(folder: Path, out: str, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "SANSA_CACHE": str(folder / "cache")}
    command = [sys.executable, "-m", "sansa", "segment", "ref.png", "--mask", "ref_mask.png",
               "--targets", "targets", "--out", out, "--backbone", "test_tiny", "--random-weights",
               "--device", "cpu", "--format", "png", *extra]
    return subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=600)


def test_cli_runtime_labels_a_folder_and_a_resume_with_the_other_runtime_is_refused(tmp_path):
    from PIL import Image

    write_reference(tmp_path)
    (tmp_path / "targets").mkdir()
    for i in range(3):
        Image.fromarray(scene(i + 1)).save(tmp_path / "targets" / f"t{i}.png")
    done = _segment(tmp_path, "out", "--runtime", "onnxruntime")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "Warning" not in done.stderr
    masks = sorted(p.name for p in (tmp_path / "out" / "masks").iterdir())
    assert masks == ["t0_object.png", "t1_object.png", "t2_object.png"]
    before = {p: p.read_bytes() for p in (tmp_path / "out" / "masks").iterdir()}
    refused = _segment(tmp_path, "out")  # same folder, PyTorch's encoder: results would mix
    assert refused.returncode == 2
    assert len(refused.stderr.strip().splitlines()) == 1 and "--overwrite" in refused.stderr
    assert {p: p.read_bytes() for p in (tmp_path / "out" / "masks").iterdir()} == before  # nothing touched
    torch_run = _segment(tmp_path, "out-torch")
    assert torch_run.returncode == 0, torch_run.stderr
    for name in masks:  # the same masks but for pixels whose logit sits within float rounding of 0
        a = np.asarray(Image.open(tmp_path / "out" / "masks" / name)) > 0
        b = np.asarray(Image.open(tmp_path / "out-torch" / "masks" / name)) > 0
        assert (a != b).mean() < 1e-3


def _copy_with_changed_adapter(model):
    import copy

    changed = copy.deepcopy(model)
    with torch.no_grad():
        next(p for n, p in changed.named_parameters() if "adapter" in n).add_(1.0)
    return changed
