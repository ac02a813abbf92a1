"""The strict checkpoint loader: the authors' files load, every wrong file is one clear line."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest
import torch

from sansa.errors import CheckpointError
from sansa.model.adapters import adapter_state_dict
from sansa.model.build import build_sansa
from sansa.predictor import SansaPredictor
from tests.conftest import golden_path


def load_sansa(sam2, adapter, model):
    """The model ``SansaPredictor.from_checkpoint`` loads (on the CPU)."""
    return SansaPredictor.from_checkpoint(sam2, adapter, model=model, device="cpu").model


class NotAllowed:
    """A class a malicious checkpoint could pickle (unpickling it could run code)."""


def _golden() -> tuple[Path, Path, Path]:
    return golden_path("sam2_checkpoint.pt"), golden_path("sansa_adapter.pth"), golden_path("sam2_config.yaml")


def _adapter_weights() -> dict[str, torch.Tensor]:
    return torch.load(golden_path("sansa_adapter.pth"), weights_only=True)["model"]


def _write_text(path: Path) -> Path:
    path.write_text("this is not a checkpoint\n")
    return path


def _truncated(path: Path) -> Path:
    data = golden_path("sansa_adapter.pth").read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _save(obj, path: Path) -> Path:
    torch.save(obj, path)
    return path


def _sam2_as_adapter(path: Path) -> Path:
    return _save(torch.load(golden_path("sam2_checkpoint.pt"), weights_only=True), path)


def _other_backbone(path: Path) -> Path:
    torch.manual_seed(0)
    return _save({"model": adapter_state_dict(build_sansa("hiera_tiny"))}, path)


def _half_the_adapters(path: Path) -> Path:
    weights = _adapter_weights()
    keep = {k: v for k, v in weights.items() if ".blocks.3." not in k}  # stage 2 is blocks 2-3
    return _save({"model": keep}, path)


def _pickled_object(path: Path) -> Path:
    return _save({"model": _adapter_weights(), "extra": NotAllowed()}, path)


def _no_tensors(path: Path) -> Path:
    return _save({"epoch": 3}, path)


# (how to make the bad file, which argument it is given as, expected message pattern)
BAD_FILES = [
    (_write_text, "adapter", r"adapter checkpoint .*bad: not a (readable )?PyTorch checkpoint"),
    (_truncated, "adapter", r"adapter checkpoint .*bad: not a readable PyTorch checkpoint \(truncated or corrupt\)"),
    (_sam2_as_adapter, "adapter", r"adapter checkpoint .*bad: is a SAM2 checkpoint, not a SANSA adapter file"),
    (_other_backbone, "adapter", r"adapter checkpoint .*bad: .*trained for another backbone"),
    (_half_the_adapters, "adapter", r"adapter checkpoint .*bad: adapts blocks \[2, 4\], which are not whole stages"),
    (_pickled_object, "adapter", r"adapter checkpoint .*bad: holds a pickled .*NotAllowed.*could run code"),
    (_no_tensors, "adapter", r"adapter checkpoint .*bad: has no 'model' state dict"),
    (_write_text, "sam2", r"SAM2 checkpoint .*bad: not a (readable )?PyTorch checkpoint"),
    (
        lambda p: _save({"model": _adapter_weights()}, p),
        "sam2",
        r"SAM2 checkpoint .*bad: holds SANSA adapter tensors only; pass it as the adapter checkpoint",
    ),
    (
        lambda p: _save({"model": {"image_encoder.trunk.pos_embed": torch.zeros(1)}}, p),
        "sam2",
        r"SAM2 checkpoint .*bad: does not fit this SAM2 model \(missing .*\)",
    ),
]


@pytest.mark.parametrize("make, role, message", BAD_FILES, ids=lambda v: getattr(v, "__name__", str(v)))
def test_bad_checkpoint_is_one_line_naming_the_file(tmp_path, make, role, message):
    sam2, adapter, config = _golden()
    bad = make(tmp_path / "bad")
    args = (sam2, bad) if role == "adapter" else (bad, adapter)
    with pytest.raises(CheckpointError) as info:
        load_sansa(*args, model=config)
    text = str(info.value)
    assert "\n" not in text
    assert re.search(message, text), text


def test_missing_file_is_named(tmp_path):
    sam2, _, config = _golden()
    with pytest.raises(CheckpointError, match=r"adapter checkpoint .*nope\.pth: no such file"):
        load_sansa(sam2, tmp_path / "nope.pth", model=config)


@pytest.mark.parametrize(
    "wrap",
    [
        lambda w: {"model": w},
        lambda w: {"model": {f"module.{k}": v for k, v in w.items()}},
        lambda w: {
            "model": w,
            "optimizer": {"state": {}, "param_groups": [{"lr": 1e-4}]},
            "epoch": 4,
            "args": argparse.Namespace(adaptformer_stages=[2, 3], channel_factor=0.3),
        },
    ],
    ids=["plain", "module-prefix", "with-optimizer-and-args"],
)
def test_authors_adapter_file_variants_load_and_change_the_model(tmp_path, wrap):
    sam2, _, config = _golden()
    path = _save(wrap(_adapter_weights()), tmp_path / "adapter.pth")
    model = load_sansa(sam2, path, model=config)
    assert (model.adapter_stages, model.channel_factor) == ((2, 3), 0.3)
    loaded = adapter_state_dict(model)
    for key, value in _adapter_weights().items():
        assert torch.equal(loaded[key], value.float()), key


def test_sam2_1_checkpoint_is_refused_with_the_release_to_use(tmp_path):
    sam2, adapter, config = _golden()
    weights = torch.load(sam2, weights_only=True)["model"]
    weights["no_obj_embed_spatial"] = torch.zeros(1, 64)
    bad = _save({"model": weights}, tmp_path / "sam2.1_hiera_tiny.pt")
    with pytest.raises(CheckpointError, match="SAM2.1 checkpoint; SANSA uses SAM2 release 1.0"):
        load_sansa(bad, adapter, model=config)


def test_only_the_object_score_tensors_may_go_unused(tmp_path):
    sam2, adapter, config = _golden()
    weights = torch.load(sam2, weights_only=True)["model"]
    assert any(k.startswith("sam_mask_decoder.pred_obj_score_head.") for k in weights)  # loads fine as is
    load_sansa(sam2, adapter, model=config)
    weights["memory_encoder.extra.weight"] = torch.zeros(3)
    bad = _save({"model": weights}, tmp_path / "extra.pt")
    with pytest.raises(CheckpointError, match=r"unexpected memory_encoder\.extra\.weight"):
        load_sansa(bad, adapter, model=config)
