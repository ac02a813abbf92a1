"""`torchrun --nproc_per_node 2` (gloo, CPU) trains the same adapters as one process with the same global batch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.test_train import Shapes, adapters_of


def write_folder(root: Path) -> Path:
    """The synthetic shapes as a folder dataset (``<class>/images``, ``<class>/masks``)."""
    shapes = Shapes(n=4)
    for class_id in shapes.class_ids():
        name = shapes.class_name(class_id)
        (root / name / "images").mkdir(parents=True)
        (root / name / "masks").mkdir(parents=True)
        for key in shapes.images_of(class_id):
            image, mask = shapes.load(key, class_id)
            stem = key.replace("/", "_")
            Image.fromarray(image).save(root / name / "images" / f"{stem}.png")
            Image.fromarray(mask.astype(np.uint8) * 255).save(root / name / "masks" / f"{stem}.png")
    return root


def _train_args(data: Path, out: Path) -> list[str]:
    return [
        "-m",
        "sansa",
        "train",
        "--backbone",
        "test_tiny",
        "--device",
        "cpu",
        "--batch-size",
        "4",
        "--epochs",
        "1",
        "--lr",
        "1e-3",
        "--workers",
        "0",
        "--out",
        str(out),
        "--set",
        f"data=[{{benchmark: folder, root: {data}}}]",
        "--set",
        "resolution=64",
        "--set",
        "episodes_per_epoch=8",
    ]


@pytest.mark.slow
def test_two_processes_match_one(tmp_path):
    data = write_folder(tmp_path / "shapes")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    single = subprocess.run(
        [sys.executable, *_train_args(data, tmp_path / "one")], env=env, capture_output=True, text=True, timeout=600
    )
    assert single.returncode == 0, single.stderr[-2000:]
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    double = subprocess.run(
        [*launch, *_train_args(data, tmp_path / "two")], env=env, capture_output=True, text=True, timeout=600
    )
    assert double.returncode == 0, double.stderr[-2000:]
    one, two = adapters_of(tmp_path / "one" / "last.pth"), adapters_of(tmp_path / "two" / "last.pth")
    assert torch.load(tmp_path / "two" / "last.pth", weights_only=True)["sansa"]["step"] == 2
    assert one.keys() == two.keys()
    moved = [k for k in one if "up_proj" in k and one[k].abs().sum() > 0]
    assert moved  # the two steps trained something
    for key in one:
        torch.testing.assert_close(two[key], one[key], rtol=1e-4, atol=1e-6)
