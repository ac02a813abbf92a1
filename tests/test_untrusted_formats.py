"""Only raster formats are decoded: a PostScript/EPS/PDF (or any other non-raster) file is refused in
one line by sansa.images, whatever its name, and nothing is handed to an external interpreter.

Every reader goes through sansa.images (the library, the benchmarks' readers, the web thumbnail,
Label Studio image URLs, a labelling job's mask); each is tried here with a fake ``gs`` first on
PATH that records whether it ran. CLI cases through the real ``sansa`` entry point in a subprocess.
"""

from __future__ import annotations

import base64
import http.server
import io
import json
import threading
from pathlib import Path

import numpy as np
import pytest
from hostile import dos_eps, eps, fake_ghostscript, one_line_error, sansa
from PIL import Image

from sansa.data.common import load_rgb, read_label_png
from sansa.errors import ImageError
from sansa.images import (
    RASTER_FORMATS,
    UnsupportedFormat,
    load_image,
    load_mask,
    open_image_file,
    open_lazily,
    read_size,
)

MODEL = ["--backbone", "test_tiny", "--random-weights", "--device", "cpu"]


def raster(fmt: str, **save) -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.full((6, 8, 3), 120, np.uint8)).save(out, fmt, **save)
    return out.getvalue()


def mpo() -> bytes:
    """A two-frame MPO (the multi-picture JPEG many cameras write)."""
    out = io.BytesIO()
    first, second = (Image.fromarray(np.full((6, 8, 3), v, np.uint8)) for v in (120, 30))
    first.save(out, "MPO", save_all=True, append_images=[second])
    return out.getvalue()


# (file name as the attacker names it, its bytes, the format the one-line refusal names)
REFUSED = [
    ("photo.png", lambda: eps(), "a PostScript/EPS file"),
    ("photo.jpg", lambda: b"%!PS-Adobe-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n", "a PostScript/EPS file"),
    ("dos-eps.png", dos_eps, "a PostScript/EPS file"),
    ("exploit.tif", lambda: eps(b"(%pipefail) (w) file"), "a PostScript/EPS file"),  # the -dSAFER escapes' kind
    ("scan.png", lambda: b"%PDF-1.7\n1 0 obj << >> endobj\n%%EOF\n", "a PDF file"),
    ("drawing.png", lambda: b"\xd7\xcd\xc6\x9a\x00\x00" + b"\0" * 40, "a WMF file"),
    ("sky.png", lambda: b"SIMPLE  =                    T" + b" " * 50, "a FITS file"),
    ("layers.png", lambda: raster("PSD") if "PSD" in Image.SAVE else b"8BPS\0\1" + b"\0" * 40, "a PSD file"),
    ("icon.png", lambda: raster("ICO"), "an ICO file"),
    ("picture.webp", lambda: raster("PCX"), "a PCX file"),
]


@pytest.fixture()
def no_gs(tmp_path, monkeypatch) -> Path:
    """A fake Ghostscript first on PATH (and Pillow's cached lookup cleared); yields its marker file."""
    from PIL import EpsImagePlugin

    bin_dir, marker = fake_ghostscript(tmp_path)
    monkeypatch.setenv("PATH", f"{bin_dir}:{__import__('os').environ['PATH']}")
    monkeypatch.setattr(EpsImagePlugin, "gs_binary", None)
    yield marker
    assert not marker.exists(), "Ghostscript ran"


@pytest.mark.parametrize("name, make, kind", REFUSED, ids=[r[0] + "-" + r[2][2:] for r in REFUSED])
def test_a_non_raster_file_is_refused_by_every_reader_in_one_line(tmp_path, no_gs, name, make, kind):
    path = tmp_path / name
    path.write_bytes(make())
    readers = [read_size, load_image, load_mask, open_image_file, open_lazily, load_rgb, read_label_png]
    for read in readers:
        with pytest.raises(ImageError) as caught:
            read(path)
        message = str(caught.value)
        assert message.startswith(f"{path}: {kind}, not a raster image"), (read.__name__, message)
        assert "\n" not in message and "refused" in message
        assert isinstance(caught.value, UnsupportedFormat)
    with pytest.raises(UnsupportedFormat, match=f"^upload: {kind}"):  # bytes (web uploads, URLs)
        open_image_file(path.read_bytes(), "upload")


# (name, bytes): the raster formats sansa reads, whatever the name says (a GIF called .png is a GIF)
ACCEPTED = [
    ("a.png", lambda: raster("PNG")),
    ("a.jpg", lambda: raster("JPEG")),
    ("camera.jpg", mpo),
    ("a.bmp", lambda: raster("BMP")),
    ("a.tif", lambda: raster("TIFF", compression="tiff_lzw")),
    ("a.webp", lambda: raster("WEBP")),
    ("gif-named.png", lambda: raster("GIF")),
]


@pytest.mark.parametrize("name, make", ACCEPTED, ids=[a[0] for a in ACCEPTED])
def test_raster_formats_are_read(tmp_path, name, make):
    path = tmp_path / name
    path.write_bytes(make())
    assert load_image(path).shape == (6, 8, 3) and read_size(path) == (8, 6)
    assert load_rgb(path).shape == (6, 8, 3)


def test_the_allow_list_is_raster_only():
    assert set(RASTER_FORMATS) == {"PNG", "JPEG", "BMP", "TIFF", "WEBP", "GIF"}
    assert not {"EPS", "PDF", "WMF", "FITS", "GRIB", "BUFR", "HDF5"} & set(RASTER_FORMATS)


def test_an_unknown_file_stays_not_a_readable_image(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("hello")
    with pytest.raises(ImageError, match=r"notes\.png: not a readable image \(not one of PNG, JPEG") as caught:
        load_image(path)
    assert not isinstance(caught.value, UnsupportedFormat)


def test_a_labelling_jobs_mask_goes_through_the_allow_list(no_gs):
    from sansa.labeling.job import prompt_from_dict

    good = prompt_from_dict({"mask_png": base64.b64encode(raster("PNG")).decode()})
    assert good.mask is not None and good.mask.shape == (6, 8)
    with pytest.raises(UnsupportedFormat, match="^mask_png: a PostScript/EPS file"):
        prompt_from_dict({"mask_png": base64.b64encode(eps()).decode()})


@pytest.fixture()
def served_bytes():
    """A loopback HTTP server answering every GET with ``served[path]``."""
    served: dict[str, bytes] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(served[self.path])

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", served
    server.shutdown()


@pytest.mark.parametrize("make, kind", [(eps, "PostScript/EPS"), (dos_eps, "PostScript/EPS")])
def test_a_label_studio_image_url_goes_through_the_allow_list(no_gs, served_bytes, make, kind):
    from sansa.labelstudio.remote import LabelStudio

    url, served = served_bytes
    served["/data/upload/1/photo.png"] = make()
    served["/data/upload/1/good.png"] = raster("PNG")
    remote = LabelStudio(url, "token")
    assert remote.image("/data/upload/1/good.png").shape == (6, 8, 3)
    with pytest.raises(UnsupportedFormat, match=f"^/data/upload/1/photo.png: a {kind} file") as caught:
        remote.image("/data/upload/1/photo.png")
    assert "\n" not in str(caught.value)


# ---- the CLI, through the real entry point (a fake gs first on PATH) ----------------------------


@pytest.fixture()
def folder(tmp_path) -> Path:
    """ref.png (a real PNG), photo.png (an EPS), targets/: a.png and two PostScript files."""
    (tmp_path / "ref.png").write_bytes(raster("PNG"))
    (tmp_path / "photo.png").write_bytes(eps())
    targets = tmp_path / "targets"
    targets.mkdir()
    (targets / "a.png").write_bytes(raster("PNG"))
    (targets / "b.png").write_bytes(eps())
    (targets / "c.jpg").write_bytes(dos_eps())
    return tmp_path


@pytest.mark.slow
def test_segment_refuses_postscript_and_never_runs_ghostscript(folder):
    bin_dir, marker = fake_ghostscript(folder)
    env = {"PATH": f"{bin_dir}:{__import__('os').environ['PATH']}"}
    argv = ["photo.png", "--box", "1,1,5,4", "--targets", "targets", "--out", "refused", *MODEL]
    result = sansa("segment", *argv, cwd=folder, env=env)
    assert "photo.png: a PostScript/EPS file, not a raster image" in one_line_error(result, "segment")
    assert not (folder / "refused").exists()
    result = sansa(
        "segment", "ref.png", "--box", "1,1,5,4", "--targets", "targets", "--out", "out", *MODEL, cwd=folder, env=env
    )
    assert result.returncode == 1, result.stderr  # 1: some targets failed; the run finished
    failures = {f["target"]: f["error"] for f in json.loads((folder / "out" / "failures.json").read_text())}
    assert sorted(failures) == ["b.png", "c.jpg"]
    assert all("a PostScript/EPS file, not a raster image" in error for error in failures.values())
    assert not marker.exists(), "Ghostscript ran"
