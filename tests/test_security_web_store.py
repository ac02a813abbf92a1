"""The web app's saved sessions are read as untrusted files: a damaged or tampered file in
``.sansa/web/sessions/<id>/`` is treated as missing (that image is redone), said once in the
session's notes, and never a 500, across restarts. Every case against a real uvicorn on loopback.

A session is made once (a reference on im0.png, propagated to im1..im3, im1 accepted in review);
each case copies the served folder, tampers with one stored file, starts a new server on the copy
(a restart) and loads the page's session.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import time
import tracemalloc
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hostile import eps, png_bomb
from PIL import Image

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

from sansa.web.app import create_app, serve_in_thread  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
TARGETS = ["im1.png", "im2.png", "im3.png"]


def png(value: int, width: int = 64, height: int = 48) -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.full((height, width, 3), value, np.uint8)).save(out, "PNG")
    return out.getvalue()


class Server:
    """A real server on a folder, with the token in every request."""

    def __init__(self, app, url: str) -> None:
        self.app, self.client = app, httpx.Client(base_url=url, timeout=60, headers={"X-Sansa-Token": app.state.token})

    def wait(self, sid: str) -> dict:
        status = self.client.post(f"/api/sessions/{sid}/propagate").json()
        while status["state"] == "running":
            time.sleep(0.05)
            status = self.client.get(f"/api/sessions/{sid}/propagate").json()
        return status


def serve(tiny_model, folder: Path):
    from contextlib import contextmanager

    from sansa import SansaPredictor

    @contextmanager
    def running():
        app = create_app(SansaPredictor(tiny_model, device="cpu"), folder)
        with serve_in_thread(app) as url:
            server = Server(app, url)
            try:
                yield server
            finally:
                server.client.close()

    return running()


@pytest.fixture(scope="module")
def saved(tiny_model, tmp_path_factory) -> tuple[Path, str]:
    """A served folder with one saved session: its path and the session id."""
    root = tmp_path_factory.mktemp("served")
    for i in range(4):
        (root / f"im{i}.png").write_bytes(png(40 + 50 * i))
    with serve(tiny_model, root) as server:
        sid = server.client.post("/api/sessions").json()["session_id"]
        server.client.post(f"/api/sessions/{sid}/classes", json={"name": "thing"})
        mask = np.zeros((48, 64), np.uint8)
        mask[10:30, 10:40] = 255
        out = io.BytesIO()
        Image.fromarray(mask).save(out, "PNG")
        import base64

        prompt = {"mask_png": "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()}
        response = server.client.put(
            f"/api/sessions/{sid}/references", json={"image": "im0.png", "label": "thing", "prompt": prompt}
        )
        assert response.status_code == 200, response.text
        assert server.wait(sid)["state"] == "done"
        assert server.client.put(f"/api/sessions/{sid}/review/im1.png", json={"state": "accepted"}).status_code == 200
        server.app.state.service._saver.submit(lambda: None).result()  # every result written
    return root, sid


def session_dir(root: Path, sid: str) -> Path:
    return root / ".sansa" / "web" / "sessions" / sid


def map_path(root: Path, sid: str, kind: str, name: str) -> Path:
    return session_dir(root, sid) / kind / f"{hashlib.sha1(name.encode()).hexdigest()[:20]}.npz"


def npz(label_map: np.ndarray, meta: object, **extra) -> bytes:
    out = io.BytesIO()
    np.savez_compressed(out, label_map=label_map, meta=np.array(json.dumps(meta)), **extra)
    return out.getvalue()


def with_objects(labels: list[str], object_map: np.ndarray) -> bytes:
    """A stored result with objects of ``labels`` and ``object_map`` beside an empty label map."""
    meta = {**good_meta(), "objects": [{"label": label, "score": 0.5} for label in labels]}
    return npz(np.zeros((48, 64), np.uint16), meta, object_map=object_map)


def good_meta(name: str = "im2.png") -> dict:
    return {"name": name, "version": 2, "labels": ["thing"], "scores": {"thing": 0.5}}


def replace_result(data: Callable[[bytes], bytes]) -> Callable[[Path, str], None]:
    """A tampering that rewrites im2.png's stored result from its current bytes."""

    def tamper(root: Path, sid: str) -> None:
        path = map_path(root, sid, "results", "im2.png")
        path.write_bytes(data(path.read_bytes()))

    return tamper


def big_label_map() -> bytes:
    """778 KB on disk: a 20000 x 20000 uint16 label map of zeros (800 MB decompressed)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("label_map.npy", "w", force_zip64=True) as member:
            header = io.BytesIO()
            np.lib.format.write_array_header_1_0(
                header, {"descr": "<u2", "fortran_order": False, "shape": (20000, 20000)}
            )
            member.write(header.getvalue())
            zeros = bytes(2**22)
            for _ in range(20000 * 20000 * 2 // len(zeros)):
                member.write(zeros)
        meta = io.BytesIO()
        np.save(meta, np.array(json.dumps(good_meta())))
        archive.writestr("meta.npy", meta.getvalue())
    return out.getvalue()


def zip_fields(data: bytes, flags: int = 0, method: int | None = None) -> bytes:
    """A zip with every member's general-purpose ``flags`` set (bit 0: encrypted) or its compression
    ``method`` replaced (99: AES, which zipfile does not implement), in the local and central headers."""
    out = bytearray(data)
    for signature, flag_at, method_at in ((b"PK\x03\x04", 6, 8), (b"PK\x01\x02", 8, 10)):
        at = out.find(signature)
        while at >= 0:
            out[at + flag_at] |= flags
            if method is not None:
                out[at + method_at : at + method_at + 2] = method.to_bytes(2, "little")
            at = out.find(signature, at + 4)
    return bytes(out)


def rewrite_session(change: Callable[[dict], object]) -> Callable[[Path, str], None]:
    def tamper(root: Path, sid: str) -> None:
        path = session_dir(root, sid) / "session.json"
        record = json.loads(path.read_text())
        path.write_text(json.dumps(change(record)))

    return tamper


def set_key(key: str, value: object) -> Callable[[dict], dict]:
    return lambda record: {**record, key: value}


def replace_mask(data: bytes) -> Callable[[Path, str], None]:
    def tamper(root: Path, sid: str) -> None:
        (mask,) = (session_dir(root, sid) / "masks").glob("*.png")
        mask.write_bytes(data)

    return tamper


def damage_accepted(root: Path, sid: str) -> None:
    map_path(root, sid, "accepted", "im1.png").write_bytes(b"not a zip")


# (case, tampering, what the one note says, images left without a current result)
CASES = [
    ("empty result", replace_result(lambda b: b""), "damaged (BadZipFile", ["im2.png"]),
    ("cut result", replace_result(lambda b: b[: len(b) // 2]), "damaged (", ["im2.png"]),
    ("garbage result", replace_result(lambda b: bytes(range(256)) * 8), "damaged (BadZipFile", ["im2.png"]),
    ("scores a list", replace_result(lambda b: npz(np.zeros((48, 64), np.uint16), {**good_meta(), "scores": [1]})),
     "metadata fields of the wrong type", ["im2.png"]),
    ("labels not strings", replace_result(lambda b: npz(np.zeros((48, 64), np.uint16), {**good_meta(), "labels": [1]})),
     "metadata fields of the wrong type", ["im2.png"]),
    ("meta not JSON", replace_result(lambda b: npz(np.zeros((48, 64), np.uint16), "x")),
     "metadata fields of the wrong type", ["im2.png"]),
    ("label map of another shape", replace_result(lambda b: npz(np.zeros((48, 65), np.uint16), good_meta())),
     "expected uint16 (48, 64) for image 'im2.png'", ["im2.png"]),
    ("label map of floats", replace_result(lambda b: npz(np.zeros((48, 64), np.float64), good_meta())),
     "a label map float64 (48, 64)", ["im2.png"]),
    ("label map values past its labels", replace_result(lambda b: npz(np.full((48, 64), 9, np.uint16), good_meta())),
     "label map values above its 1 labels", ["im2.png"]),
    ("a pickled object array", replace_result(lambda b: npz(np.array([{}], dtype=object), good_meta())),
     "an array of object", ["im2.png"]),
    ("result flagged encrypted", replace_result(lambda b: zip_fields(b, flags=1)),
     "damaged (RuntimeError: File 'meta.npy' is encrypted", ["im2.png"]),
    ("result of an unknown compression method", replace_result(lambda b: zip_fields(b, method=99)),
     "damaged (NotImplementedError: That compression method is not supported", ["im2.png"]),
    ("778 KB holding a 20000x20000 map", replace_result(lambda b: big_label_map()),
     "a label map uint16 (20000, 20000), expected uint16 (48, 64)", ["im2.png"]),
    ("object map of floats", replace_result(lambda b: with_objects([], np.zeros((48, 64), np.float32))),
     "an object map float32 (48, 64)", ["im2.png"]),
    ("object ids past its objects", replace_result(lambda b: with_objects(["thing"], np.full((48, 64), 7, np.uint16))),
     "object map values above its 1 objects", ["im2.png"]),
    ("objects of an unknown class", replace_result(lambda b: with_objects(["other"], np.zeros((48, 64), np.uint16))),
     "metadata fields of the wrong type", ["im2.png"]),
    ("accepted map garbage", damage_accepted, "im1.png: its accepted prediction is missing; review it again", []),
    ("reviews a list", rewrite_session(set_key("reviews", ["im1.png"])), "its review decisions are damaged", []),
    ("reviews of unknown states", rewrite_session(set_key("reviews", {"im1.png": "maybe"})),
     "its review decisions are damaged", []),
    ("references not records", rewrite_session(lambda r: {**r, "references": [7]}),
     "session.json: a damaged reference was left out (7)", TARGETS),
    ("mask PNG a 30000x30000 bomb", replace_mask(png_bomb(30000, 30000)), "900 megapixels, over the limit", TARGETS),
    ("mask PNG an EPS", replace_mask(eps()), "a PostScript/EPS file, not a raster image", TARGETS),
    ("mask PNG empty", replace_mask(b""), "not a readable image", TARGETS),
    ("mask PNG of another size", replace_mask(png(255, 65, 48)), "65x48, its image 64x48", TARGETS),
]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("case, tamper, note, redo", CASES, ids=[c[0] for c in CASES])
def test_a_damaged_stored_file_is_treated_as_missing_and_said_once(
    tiny_model, saved, tmp_path, case, tamper, note, redo
):
    original, sid = saved
    root = tmp_path / "served"
    shutil.copytree(original, root)
    tamper(root, sid)
    tracemalloc.start()
    with serve(tiny_model, root) as server:
        response = server.client.get("/api/sessions/current")
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert response.status_code == 200, response.text
        state = response.json()
        assert state["session_id"] == sid  # the user's session, not a new one
        assert [n for n in state["notes"] if note in n] and len(state["notes"]) == 1, state["notes"]
        assert "\n" not in state["notes"][0]
        assert peak < 64 * 2**20, f"{peak} bytes allocated restoring the session"  # nothing decompressed whole
        review = server.client.get(f"/api/sessions/{sid}/review").json()
        assert state["propagated"] == len(TARGETS) - len(redo), (state, review)
        if redo and state["references"]:  # that image is redone: propagation makes it again
            assert server.wait(sid)["state"] == "done"
            assert server.client.get(f"/api/sessions/{sid}").json()["propagated"] == len(TARGETS)
        for name in TARGETS:
            response = server.client.get(f"/api/sessions/{sid}/targets/{name}")  # 409 when no reference is left
            assert response.status_code in (200, 409), response.text
        server.app.state.service._saver.submit(lambda: None).result()
    with serve(tiny_model, root) as server:  # said once: a second restart has nothing to say
        state = server.client.get("/api/sessions/current").json()
        assert state["session_id"] == sid and state["notes"] == [], state["notes"]


@pytest.mark.slow
def test_a_damaged_session_file_starts_a_new_session_with_a_note(tiny_model, saved, tmp_path):
    original, sid = saved
    root = tmp_path / "served"
    shutil.copytree(original, root)
    damaged = ["{", "[]", '{"version": "x", "classes": []}', '{"version": 1, "classes": 3}', '{"version": 1, '
               '"classes": [], "references": {}}', b"\xff\xfe"]  # fmt: skip
    for content in damaged:
        path = session_dir(root, sid) / "session.json"
        path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
        (root / ".sansa" / "web" / "current").write_text(sid + "\n")
        with serve(tiny_model, root) as server:
            response = server.client.get("/api/sessions/current")
            assert response.status_code == 200, response.text
            state = response.json()
            assert state["session_id"] != sid and len(state["notes"]) == 1
            assert state["notes"][0].startswith(f"the saved session {sid} could not be read")
            response = server.client.get(f"/api/sessions/{sid}")  # asked for by id: 404 JSON, never 500
            assert response.status_code == 404 and "could not be read" in response.json()["detail"]


def test_a_postscript_file_in_the_served_folder_is_refused(tiny_model, tmp_path, monkeypatch):
    import os

    from hostile import fake_ghostscript
    from PIL import EpsImagePlugin

    bin_dir, ran = fake_ghostscript(tmp_path)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setattr(EpsImagePlugin, "gs_binary", None)
    root = tmp_path / "served"
    root.mkdir()
    (root / "im0.png").write_bytes(png(90))
    (root / "im1.png").write_bytes(png(140))
    (root / "photo.png").write_bytes(eps())
    with serve(tiny_model, root) as server:
        skipped = {s["name"]: s["reason"] for s in server.client.get("/api/images").json()["skipped"]}
        assert "a PostScript/EPS file, not a raster image" in skipped["photo.png"]
        response = server.client.get("/api/images/photo.png/thumb", params={"max_side": 32})
        assert response.status_code == 400 and "a PostScript/EPS file" in response.json()["detail"]
        response = server.client.post("/api/images", files={"file": ("upload.png", eps())})
        assert response.status_code == 415 and not (root / "upload.png").exists()
        sid = server.client.post("/api/sessions").json()["session_id"]
        server.client.post(f"/api/sessions/{sid}/classes", json={"name": "thing"})
        response = server.client.put(
            f"/api/sessions/{sid}/references",
            json={"image": "photo.png", "label": "thing", "prompt": {"box": [1, 1, 9, 9]}},
        )
        assert response.status_code == 400 and "a PostScript/EPS file" in response.json()["detail"]
        response = server.client.put(
            f"/api/sessions/{sid}/references",
            json={"image": "im0.png", "label": "thing", "prompt": {"box": [4, 4, 40, 30]}},
        )
        assert response.status_code == 200, response.text
        status = server.wait(sid)  # propagation: photo.png is no target (never decoded)
        assert status["state"] == "done" and status["total"] == 1, status
    assert not ran.exists(), "Ghostscript ran"
