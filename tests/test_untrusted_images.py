"""Untrusted image files: one pixel limit, read from the header before decoding, in sansa.images.

Library cases in-process; CLI cases through the real ``sansa`` entry point in a subprocess.
"""

from __future__ import annotations

import io
import json
import re
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hostile import gif_bomb, one_line_error, png_bomb, sansa, tiff_bomb, truncated_png, webp_bomb
from PIL import Image

from sansa import images
from sansa.errors import ImageError
from sansa.images import ImageTooLarge, load_image, load_mask, max_pixels, open_image_file, read_size, set_max_pixels

# in-process, pytest shows every warning; the CLI's silence is checked on its stderr below
pytestmark = pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")

MODEL = ["--backbone", "test_tiny", "--random-weights", "--device", "cpu"]


@pytest.fixture(autouse=True)
def default_limit(monkeypatch):
    """Every test starts (and leaves the process) at the default limit."""
    monkeypatch.delenv("SANSA_MAX_PIXELS", raising=False)
    set_max_pixels(None)
    yield
    set_max_pixels(None)


def small_png(width: int = 64, height: int = 48) -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.full((height, width, 3), 90, np.uint8)).save(out, "PNG")
    return out.getvalue()


# (file name, its bytes, what the message must say): each is refused from its header, nothing decoded
BOMBS = [
    ("png-30000x30000.png", lambda: png_bomb(30000, 30000), "900 megapixels, over the limit of 64 megapixels"),
    ("png-144mpx.png", lambda: png_bomb(12000, 12000), "12000x12000 is 144 megapixels, over the limit"),
    ("png-over-pil-warning.png", lambda: png_bomb(9500, 9500), "9500x9500 is 90.2 megapixels"),
    ("png-just-over.png", lambda: png_bomb(8001, 8000), "8001x8000 is 64 megapixels, over the limit"),
    ("png-tall-strip.png", lambda: png_bomb(1, 2**31 - 1), "over the limit of 64 megapixels"),
    ("gif-65535.gif", gif_bomb, "4294.8 megapixels, over the limit"),
    ("tiff-20000.tif", lambda: tiff_bomb(20000, 20000), "400 megapixels, over the limit"),
    ("webp-16384.webp", webp_bomb, "268.4 megapixels, over the limit"),
]


@pytest.mark.parametrize("name, make, message", BOMBS, ids=[b[0] for b in BOMBS])
def test_a_bomb_is_refused_from_its_header_in_one_line(tmp_path, name, make, message):
    path = tmp_path / name
    path.write_bytes(make())
    tracemalloc.start()
    for read in (read_size, load_image, load_mask, open_image_file):
        with pytest.raises(ImageTooLarge, match=message) as caught:
            read(path)
        assert str(caught.value).startswith(f"{path}: ") and "\n" not in str(caught.value)
        assert "(raise it with max_pixels=N or SANSA_MAX_PIXELS)" in str(caught.value)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 20 * 2**20, f"{peak} bytes allocated while refusing {name}"  # nothing was decoded
    with pytest.raises(ImageTooLarge, match=message):  # the same from bytes (web uploads)
        read_size(path.read_bytes(), "upload")


def test_exactly_at_the_limit_is_accepted_and_one_more_pixel_is_refused(tmp_path):
    path = tmp_path / "edge.png"
    path.write_bytes(small_png(10, 10))
    set_max_pixels(100)
    assert read_size(path) == (10, 10) and load_image(path).shape == (10, 10, 3)
    set_max_pixels(99)
    with pytest.raises(ImageTooLarge, match=r"10x10 is 100 pixels, over the limit of 99 pixels"):
        load_image(path)


# (how the limit is set, the limit that holds)
LIMITS = [
    ("default", {}, None, 64_000_000),
    ("env number", {"SANSA_MAX_PIXELS": "1000"}, None, 1000),
    ("env with unit", {"SANSA_MAX_PIXELS": "1.5M"}, None, 1_500_000),
    ("env with underscores", {"SANSA_MAX_PIXELS": "2_000"}, None, 2000),
    ("library setting wins over env", {"SANSA_MAX_PIXELS": "1000"}, 5000, 5000),
    ("library setting as text", {}, "3k", 3000),
]


@pytest.mark.parametrize("name, env, setting, limit", LIMITS, ids=[c[0] for c in LIMITS])
def test_the_limit_is_a_library_setting_or_environment_variable(monkeypatch, name, env, setting, limit):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    if setting is not None:
        set_max_pixels(setting)
    assert max_pixels() == limit


@pytest.mark.parametrize("value", ["0", "-5", "abc", "1e9", "", " M", "64 megapixels"])
def test_a_malformed_limit_is_a_one_line_error(monkeypatch, value):
    monkeypatch.setenv("SANSA_MAX_PIXELS", value)
    if value.strip():
        shown = re.escape(repr(value.strip()))
        with pytest.raises(ImageError, match=rf"SANSA_MAX_PIXELS: expected a positive number of pixels.*{shown}"):
            max_pixels()
    else:
        assert max_pixels() == images.DEFAULT_MAX_PIXELS  # empty: not set
    with pytest.raises(ImageError, match="max_pixels: expected a positive number"):
        set_max_pixels(value or "0")


def test_a_limit_above_pils_own_is_honoured_and_a_pil_image_is_checked_too(tmp_path):
    path = tmp_path / "large.png"
    path.write_bytes(png_bomb(15000, 15000))  # 225 Mpx: over twice PIL's default limit
    set_max_pixels(300_000_000)
    assert read_size(path) == (15000, 15000)  # PIL did not refuse first (only the header is read)
    set_max_pixels(1000)
    with pytest.raises(ImageTooLarge, match=r"image \(Image\): 64x48 is"):
        load_image(Image.new("RGB", (64, 48)))
    with pytest.raises(ImageTooLarge):
        load_mask(Image.new("L", (64, 48)))


# (file bytes, message): unreadable files stay one-line ImageErrors, not tracebacks
BROKEN = [
    ("header-lies-short.png", lambda: png_bomb(100, 100), "not a readable image"),
    ("truncated.png", truncated_png, "not a readable image"),
    ("empty.png", lambda: b"", "not a readable image"),
    ("text.png", lambda: b"hello", "not a readable image"),
]


@pytest.mark.parametrize("name, make, message", BROKEN, ids=[b[0] for b in BROKEN])
def test_a_broken_file_is_one_line(tmp_path, name, make, message):
    path = tmp_path / name
    path.write_bytes(make())
    with pytest.raises(ImageError, match=message) as caught:
        load_image(path)
    assert "\n" not in str(caught.value)


def test_a_name_too_long_for_the_file_system_is_one_line(tmp_path):
    path = tmp_path / ("x" * 5000 + ".png")
    with pytest.raises(ImageError, match=r"cannot be read \(File name too long\)") as caught:
        load_image(path)
    assert len(str(caught.value)) < 300


# ---- the CLI, through the real entry point ----------------------------------------------------


@pytest.fixture()
def folder(tmp_path) -> Path:
    """ref.png (64 x 48) and targets/: two good images, bombs of every format, a truncated PNG."""
    (tmp_path / "ref.png").write_bytes(small_png())
    targets = tmp_path / "targets"
    targets.mkdir()
    for name in ("a.png", "b.png"):
        (targets / name).write_bytes(small_png())
    (targets / "bomb.png").write_bytes(png_bomb(30000, 30000))
    (targets / "big.png").write_bytes(png_bomb(12000, 12000))
    (targets / "bomb.tif").write_bytes(tiff_bomb(20000, 20000))
    (targets / "bomb.webp").write_bytes(webp_bomb())
    (targets / "cut.png").write_bytes(truncated_png())
    return tmp_path


@pytest.mark.slow
def test_segment_lists_every_bomb_as_a_failure_and_finishes_the_run(folder):
    result = sansa(
        "segment", "ref.png", "--box", "5,5,40,30", "--targets", "targets", "--out", "out", *MODEL, cwd=folder
    )
    assert result.returncode == 1, result.stderr  # 1: some targets failed; the run finished
    assert "Traceback" not in result.stderr and "Warning" not in result.stderr, result.stderr
    out = folder / "out"
    failures = {f["target"]: f["error"] for f in json.loads((out / "failures.json").read_text())}
    assert sorted(failures) == ["big.png", "bomb.png", "bomb.tif", "bomb.webp", "cut.png"]
    assert all(
        "over the limit of 64 megapixels" in failures[n] for n in ("big.png", "bomb.png", "bomb.tif", "bomb.webp")
    )
    assert "not a readable image" in failures["cut.png"]
    assert len(json.loads((out / "annotations.json").read_text())["images"]) == 2  # a.png and b.png


# (argv, extra environment, message): refused in one line, exit 2, before anything is written
CLI_REFUSED = [
    (
        ["segment", "bomb.png", "--box", "5,5,40,30"],
        {},
        "bomb.png: 900 megapixels, over the limit of 64 megapixels (raise it with --max-pixels N or SANSA_MAX_PIXELS)",
    ),
    (
        ["segment", "ref.png", "--box", "5,5,40,30", "--max-pixels", "1000"],
        {},
        "ref.png: 64x48 is 3072 pixels, over the limit of 1000 pixels",
    ),
    (["segment", "ref.png", "--box", "5,5,40,30"], {"SANSA_MAX_PIXELS": "1000"}, "ref.png: 64x48 is"),
    (["segment", "ref.png", "--box", "5,5,40,30", "--max-pixels", "lots"], {}, "--max-pixels: expected a positive"),
    (["segment", "ref.png", "--box", "5,5,40,30", "--max-pixels", "0"], {}, "--max-pixels: expected a positive"),
    (["segment", "ref.png", "--box", "5,5,40,30"], {"SANSA_MAX_PIXELS": "-1"}, "SANSA_MAX_PIXELS: expected"),
    (["serve", "targets", "--max-pixels", "-3"], {}, "--max-pixels: expected a positive"),
    (["eval", "--benchmark", "folder", "--data", ".", "--max-pixels", "x"], {}, "--max-pixels: expected"),
]


@pytest.mark.parametrize(
    "argv, env, message", CLI_REFUSED, ids=[f"{a[0]}-{i}" for i, (a, _, _) in enumerate(CLI_REFUSED)]
)
def test_a_refused_reference_or_limit_is_one_line_exit_2(folder, argv, env, message):
    (folder / "bomb.png").write_bytes(png_bomb(30000, 30000))
    result = (
        sansa(*argv, "--targets", "targets", "--out", "out", *MODEL, env=env, cwd=folder)
        if argv[0] == "segment"
        else sansa(*argv, cwd=folder, env=env)
    )
    err = one_line_error(result, argv[0])
    assert message in err and "Warning" not in err
    assert not (folder / "out").exists()  # refused before anything was written
