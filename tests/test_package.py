"""Packaging: importing sansa has no side effects; sam2's Hydra set-up does not leak."""

from __future__ import annotations

import subprocess
import sys

import pytest

PROBES = [
    # (code run in a fresh interpreter, what it must print)
    ("import sys, sansa; print('torch' in sys.modules, 'sam2' in sys.modules)", "False False"),
    ("import sansa; print(sansa.__version__ != '')", "True"),
    (
        "from sansa.model.build import build_sansa\n"
        "from hydra.core.global_hydra import GlobalHydra\n"
        "print(GlobalHydra.instance().is_initialized())",
        "False",
    ),
    (
        "from hydra import initialize_config_module\n"
        "from hydra.core.global_hydra import GlobalHydra\n"
        "initialize_config_module('hydra.conf', version_base='1.2')\n"
        "import sansa.model.build\n"
        "print(GlobalHydra.instance().is_initialized())",
        "True",
    ),  # a host's own Hydra is left alone
]


@pytest.mark.parametrize("code, expected", PROBES)
def test_import_side_effects(code, expected):
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == expected


def test_public_names_resolve_lazily():
    import sansa

    assert sansa.SansaPredictor.__name__ == "SansaPredictor"
    assert callable(sansa.build_sansa)
    with pytest.raises(AttributeError):
        sansa.not_a_name  # noqa: B018


def test_console_script_help_and_version():
    out = subprocess.run([sys.executable, "-m", "sansa", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("sansa ")
    out = subprocess.run([sys.executable, "-m", "sansa", "--help"], capture_output=True, text=True, check=True)
    assert "usage: sansa" in out.stdout


def test_torch_hub_entry_points_load_from_a_checkout(tmp_path, monkeypatch):
    import numpy as np
    import torch

    from sansa.errors import DownloadError
    from tests.conftest import REPO

    predictor = torch.hub.load(str(REPO), "sansa_test_tiny", source="local")
    predictor.add_reference(np.zeros((20, 30, 3), np.uint8), box=[2, 2, 20, 15])
    assert predictor.predict(np.zeros((10, 12, 3), np.uint8)).mask.shape == (10, 12)
    monkeypatch.setenv("SANSA_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(DownloadError, match="sansa-universal: .* not cached and offline mode is on"):
        torch.hub.load(str(REPO), "sansa_universal", source="local", offline=True)


@pytest.mark.parametrize("command", ["segment", "serve", "label-studio", "inspect", "eval", "train", "models"])
def test_every_command_prints_its_help(command):
    """``sansa COMMAND --help`` exits 0 (a bare ``%`` in a help text made argparse raise instead)."""
    out = subprocess.run([sys.executable, "-m", "sansa", command, "--help"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("usage: sansa " + command)
