"""Hostile or careless arguments to ``segment``, ``eval`` and ``train``, hostile model files, and prompt
caps: each refused in one line (exit 2) before anything is written. CLI cases run the real ``sansa``
entry point in a subprocess.
"""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from hostile import one_line_error, sansa
from PIL import Image

from sansa.errors import PromptError, SansaError
from sansa.records import MAX_POINTS, MAX_SCRIBBLE_INPUT, MAX_SCRIBBLE_POINTS, Prompt

GOLDEN = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "golden_v1"
TINY = ["--backbone", "test_tiny", "--random-weights", "--device", "cpu"]

# (case, Prompt.create arguments, message or None when accepted)
PROMPTS = [
    ("points at the cap", {"points": [[1, 1]] * MAX_POINTS}, None),
    ("one point over the cap", {"points": [[1, 1]] * (MAX_POINTS + 1)}, f"points: 257 given, at most {MAX_POINTS}"),
    ("20000 points (held the model lock 36 s)", {"points": np.ones((20000, 2))}, "points: 20000 given"),
    ("20000 points as strokes of one point", {"points": [np.ones((1, 2))] * 20000}, "points: 20000 given"),
    ("labels for too many points", {"points": [[1, 1]] * 300, "labels": [1] * 300}, "points: 300 given"),
    ("scribble at the input cap, thinned", {"scribble": np.ones((MAX_SCRIBBLE_INPUT, 2))}, None),
    ("scribble over the input cap", {"scribble": np.ones((MAX_SCRIBBLE_INPUT + 1, 2))}, "scribble: 65537 given"),
    (
        "many strokes adding up over the cap",
        {"scribble": [np.ones((40000, 2)), np.ones((40000, 2))]},
        "scribble: 80000 given",
    ),
    ("a million-stroke list", {"scribble": [[[1, 1]]] * 1_000_000}, "scribble: 1000000 given"),
    ("infinite coordinates", {"points": [[1, float("inf")]]}, "coordinates must be finite"),
    ("NaN box", {"box": [0, 0, float("nan"), 4]}, "box: expected four numbers"),
]


@pytest.mark.parametrize("case, kwargs, message", PROMPTS, ids=[p[0] for p in PROMPTS])
def test_prompts_have_sane_caps(case, kwargs, message):
    if message is None:
        prompt = Prompt.create(**kwargs)
        assert prompt.scribble is None or len(prompt.scribble) == MAX_SCRIBBLE_POINTS
        return
    with pytest.raises(PromptError, match=message) as caught:
        Prompt.create(**kwargs)
    assert "\n" not in str(caught.value)


@pytest.fixture()
def folder(tmp_path) -> Path:
    """ref.png (64 x 48), targets/t.png, a malicious adapter and checkpoint; runs from ``tmp_path``."""
    pixels = np.full((48, 64, 3), 120, np.uint8)
    Image.fromarray(pixels).save(tmp_path / "ref.png")
    (tmp_path / "targets").mkdir()
    Image.fromarray(pixels).save(tmp_path / "targets" / "t.png")
    marker = tmp_path / "PWNED"

    class Evil:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    import torch

    torch.save({"model": Evil()}, tmp_path / "evil_adapter.pth")  # torch's zip format
    with open(tmp_path / "evil_plain.pth", "wb") as handle:  # a bare pickle, protocol 4
        pickle.dump({"model": Evil()}, handle, protocol=4)
    with open(tmp_path / "evil_text.pth", "wb") as handle:  # protocol 0: a text pickle
        pickle.dump(Evil(), handle, protocol=0)
    (tmp_path / "episodes.json").write_text("{}")
    return tmp_path


def many_points(count: int) -> str:
    return ";".join(f"{i % 60 + 1},{i % 40 + 1}" for i in range(count))


def golden(name: str) -> str:
    path = GOLDEN / name
    if not path.exists():
        pytest.skip(f"golden fixtures not found at {GOLDEN}")
    return str(path)


SEG = ["segment", "ref.png", "--targets", "targets", "--out", "out"]
GOLDEN_MODEL = [
    *SEG,
    "--box",
    "1,1,9,9",
    "--sam2-checkpoint",
    "{golden}/sam2_checkpoint.pt",
    "--backbone",
    "{golden}/sam2_config.yaml",
]
# (argv, message): refused in one line, exit 2, no output folder, nothing executed
REFUSED = [
    ([*SEG, "--points", many_points(300), *TINY], "points: 300 given, at most 256 per reference"),
    (
        [
            *SEG,
            "--box",
            "1,1,9,9",
            "--random-weights",
            "--sam2-checkpoint",
            "{golden}/sam2_checkpoint.pt",
            "--backbone",
            "test_tiny",
        ],
        "--random-weights cannot be combined with --sam2-checkpoint",
    ),
    (
        [*SEG, "--box", "1,1,9,9", "--random-weights", "--model", "sansa-universal"],
        "--random-weights cannot be combined with --model",
    ),
    (
        [*GOLDEN_MODEL, "--adapter", "evil_adapter.pth"],
        "evil_adapter.pth: holds a pickled posix.system",
    ),
    (
        [*GOLDEN_MODEL, "--adapter", "evil_plain.pth"],
        "evil_plain.pth: holds a pickled posix.system",
    ),
    (
        [*SEG, "--box", "1,1,9,9", "--sam2-checkpoint", "evil_text.pth", "--backbone", "{golden}/sam2_config.yaml"],
        "evil_text.pth: holds a pickled posix.system",
    ),
    (["eval", "--benchmark", "folder", "--data", ".", "--size", "-5", *TINY], "--size -5: must be at least 16"),
    (["eval", "--benchmark", "folder", "--data", ".", "--size", "0", *TINY], "--size 0: must be at least 16"),
    (
        ["eval", "--benchmark", "folder", "--data", ".", "--size", "100000", *TINY],
        "--size 100000: 100000x100000 is over the pixel limit",
    ),
    (["eval", "--benchmark", "folder", "--data", ".", "--shots", "0", *TINY], "--shots 0: must be at least 1"),
    (["eval", "--benchmark", "folder", "--data", ".", "--episodes", "-1", *TINY], "--episodes -1: must be at least 1"),
    (["eval", "--benchmark", "folder", "--data", ".", "--workers", "-2", *TINY], "--workers -2: must be at least 0"),
    (["eval", "--benchmark", "folder", "--data", ".", "--seed", "-1", *TINY], "--seed -1: must be at least 0"),
    (
        ["eval", "--benchmark", "folder", "--data", ".", "--episode-file", "missing.json", *TINY],
        "--episode-file missing.json: no such file",
    ),
    (
        ["eval", "--benchmark", "folder", "--data", ".", "--episode-file", "targets", *TINY],
        "--episode-file targets: no such file",
    ),
    (
        [
            "eval",
            "--benchmark",
            "folder",
            "--data",
            ".",
            "--random-weights",
            "--backbone",
            "test_tiny",
            "--adapter",
            "evil_adapter.pth",
        ],
        "--random-weights cannot be combined with --adapter",
    ),
    (
        [
            "eval",
            "--benchmark",
            "folder",
            "--data",
            ".",
            "--random-weights",
            "--sam2-checkpoint",
            "x.pt",
            "--adapter",
            "y.pth",
        ],
        "--random-weights cannot be combined with --sam2-checkpoint and --adapter",
    ),
    (["train", "--set", "bogus_key=3"], "--set bogus_key=3: unknown option 'bogus_key' (known: adapter_stages"),
    (["train", "--set", "val.bogus=3"], "unknown option 'val.bogus' (known: benchmark, episodes"),
    (["train", "--set", "=3"], "--set '=3': expected KEY=VALUE"),
    (["serve", "ref.png", *TINY], "ref.png: is a file; give the folder of images to serve"),
]


@pytest.mark.parametrize("argv, message", REFUSED, ids=[f"{a[0]} {m[:45]}" for a, m in REFUSED])
def test_refused_in_one_line_before_anything_is_written(folder, argv, message):
    argv = [a.replace("{golden}", str(Path(golden("sam2_checkpoint.pt")).parent)) for a in argv]
    result = sansa(*argv, cwd=folder, timeout=300)
    assert message in one_line_error(result, argv[0])
    written = [p for p in (folder / "out").rglob("*") if ".sansa" not in p.parts]  # .sansa: the run's own lock
    assert written == [] and not (folder / "runs").exists()
    assert not (folder / "PWNED").exists()  # no pickled code ran


def test_a_malicious_checkpoint_is_refused_by_the_library_too(folder):
    from sansa.model.checkpoint import read_checkpoint

    for name in ("evil_adapter.pth", "evil_plain.pth", "evil_text.pth"):
        with pytest.raises(SansaError, match=rf"{name}: holds a pickled posix\.system, which sansa does not load"):
            read_checkpoint(folder / name, "adapter checkpoint")
    assert not (folder / "PWNED").exists()


def test_an_honest_checkpoint_still_loads(tmp_path):
    import torch

    from sansa.model.checkpoint import read_checkpoint

    torch.save({"model": {"w": torch.ones(2)}, "epoch": 3}, tmp_path / "ok.pth")
    assert read_checkpoint(tmp_path / "ok.pth", "adapter checkpoint")["epoch"] == 3
    buffer = io.BytesIO()
    pickle.dump({"w": [1, 2]}, buffer)  # a plain pickle of plain data is not a PyTorch checkpoint, not "pickled code"
    (tmp_path / "plain.pth").write_bytes(buffer.getvalue())
    with pytest.raises(SansaError, match="not a PyTorch checkpoint"):
        read_checkpoint(tmp_path / "plain.pth", "adapter checkpoint")
