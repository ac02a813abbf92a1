"""Hostile inputs for the security tests: tiny image files whose headers declare huge images, and a
helper to run the real ``sansa`` entry point in a subprocess.

Every bomb is a few hundred bytes: the header declares ``width x height``, the pixel data is missing
or short, so nothing but a header-only check can refuse it cheaply.
"""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

from PIL import Image

SANSA = Path(sys.executable).parent / "sansa"  # the console script of the environment running the tests


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(width: int, height: int) -> bytes:
    """A PNG whose IHDR says ``width x height`` RGB, with 1000 zero bytes of pixel data."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(b"\0" * 1000))
        + _chunk(b"IEND", b"")
    )


def gif_bomb(width: int = 65535, height: int = 65535) -> bytes:
    """A 1 x 1 GIF whose logical screen says ``width x height``."""
    out = io.BytesIO()
    Image.new("RGB", (1, 1)).save(out, "GIF")
    data = bytearray(out.getvalue())
    data[6:10] = struct.pack("<HH", width, height)
    return bytes(data)


def tiff_bomb(width: int, height: int) -> bytes:
    """An uncompressed 8-bit grayscale TIFF declaring ``width x height`` with a 16-byte strip."""
    entries = [
        (256, 4, width),
        (257, 4, height),
        (258, 3, 8),
        (259, 3, 1),
        (262, 3, 1),
        (273, 4, 8 + 2 + 12 * 9 + 4),
        (277, 3, 1),
        (278, 4, height),
        (279, 4, 16),
    ]
    fields = b"".join(
        struct.pack("<HHII", tag, kind, 1, value) if kind == 4 else struct.pack("<HHIHH", tag, kind, 1, value, 0)
        for tag, kind, value in entries
    )
    return b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", len(entries)) + fields + b"\0" * 4 + b"\0" * 16


def webp_bomb() -> bytes:
    """A lossless 1 x 1 WebP whose VP8L header says 16384 x 16384 (the format's largest)."""
    out = io.BytesIO()
    Image.new("RGB", (1, 1)).save(out, "WEBP", lossless=True)
    data = bytearray(out.getvalue())
    data[21:25] = struct.pack("<I", 0x0FFFFFFF)  # 14 bits width-1, 14 bits height-1, no alpha, version 0
    return bytes(data)


def truncated_png(width: int = 64, height: int = 48) -> bytes:
    """A valid PNG of random pixels cut in half: the header reads, the pixels do not."""
    import numpy as np

    out = io.BytesIO()
    pixels = np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(out, "PNG")
    return out.getvalue()[: len(out.getvalue()) // 2]


def eps(body: bytes = b"0 0 moveto 10 10 lineto stroke") -> bytes:
    """A small EPS (PostScript) file: Pillow's EPS plugin would hand it to Ghostscript to rasterise."""
    return b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n" + body + b"\nshowpage\n%%EOF\n"


def dos_eps() -> bytes:
    """The same EPS behind the binary "DOS EPS" header (magic C5D0D3C6, PostScript offset and length)."""
    postscript = eps()
    return struct.pack("<IIIIIIIH", 0xC6D3D0C5, 30, len(postscript), 0, 0, 0, 0, 0xFFFF) + postscript


def fake_ghostscript(folder: Path) -> tuple[Path, Path]:
    """A ``gs`` program in ``folder/bin`` that only records that it ran (in ``folder/gs-ran``).

    Returns ``(bin folder to put first on PATH, the marker file)``; Pillow finds ``gs`` by PATH.
    """
    bin_dir, marker = folder / "bin", folder / "gs-ran"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "gs").write_text(f'#!/bin/sh\necho "$@" >> {marker}\nexit 1\n')
    (bin_dir / "gs").chmod(0o755)
    return bin_dir, marker


def sansa(*args: str, cwd: Path, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the real ``sansa`` console script (this checkout's code first on the path)."""
    src = str(Path(__file__).resolve().parents[1] / "src")
    environ = {key: value for key, value in os.environ.items() if key != "SANSA_MAX_PIXELS"}
    environ["PYTHONPATH"] = os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)
    environ.update(env or {})
    return subprocess.run([str(SANSA), *args], cwd=cwd, env=environ, capture_output=True, text=True, timeout=timeout)


def one_line_error(result: subprocess.CompletedProcess, command: str) -> str:
    """The single stderr line of a refused command (asserting it is one line, exit 2, no traceback)."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"sansa {command}: error: "), result.stderr
    return result.stderr
