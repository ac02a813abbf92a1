"""The web app's HTTP API against a real uvicorn server on 127.0.0.1 (httpx), with the tiny model."""

from __future__ import annotations

import base64
import io
import json
import os
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

from sansa.web.app import create_app, serve_in_thread  # noqa: E402

SIZE = (48, 64)  # H, W of the test images
BOX = [10, 8, 40, 30]


def write_image(path: Path, seed: int) -> None:
    pixels = np.full((*SIZE, 3), 30 + 20 * seed, dtype=np.uint8)
    pixels[8:30, 10 + seed : 40 + seed] = (200, 40, 40)
    Image.fromarray(pixels).save(path)


def png_b64(mask: np.ndarray) -> str:
    out = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8) * 255).save(out, format="PNG")
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("web")
    images = root / "images"
    images.mkdir()
    for i in range(4):
        write_image(images / f"im{i}.png", i)
    (images / "broken.png").write_bytes(b"not a png")
    (images / "notes.txt").write_text("hello")
    write_image(root / "secret.png", 9)
    (images / "link.png").symlink_to(root / "secret.png")
    return images


@pytest.fixture(scope="module")
def client(tiny_model, folder):
    from sansa import SansaPredictor

    app = create_app(SansaPredictor(tiny_model, device="cpu"), folder, max_upload_bytes=4096, cache_size=2)
    with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=30) as http:
        yield http


@pytest.fixture()
def sid(client) -> str:
    session = client.post("/api/sessions").json()["session_id"]
    assert client.post(f"/api/sessions/{session}/classes", json={"name": "shape"}).status_code == 201
    return session


def add_box(client, sid: str, image: str = "im0.png", label: str = "shape") -> dict:
    response = client.put(f"/api/sessions/{sid}/references",
                          json={"image": image, "label": label, "prompt": {"box": BOX}})
    assert response.status_code == 200, response.text
    return response.json()


def propagate(client, sid: str) -> dict:
    status = client.post(f"/api/sessions/{sid}/propagate").json()
    while status["state"] == "running":
        time.sleep(0.05)
        status = client.get(f"/api/sessions/{sid}/propagate").json()
    return status


def decode_data_url(url: str) -> Image.Image:
    assert url.startswith("data:image/png;base64,")
    return Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))


# -- folder -------------------------------------------------------------------------------------
def test_lists_images_with_sizes_and_skips_unreadable(client, folder):
    listing = client.get("/api/images").json()
    assert listing["folder"] == str(folder.resolve())
    assert [(i["name"], i["width"], i["height"]) for i in listing["images"]] == [
        (f"im{i}.png", SIZE[1], SIZE[0]) for i in range(4)]  # not link.png, which points out of the folder
    assert [s["name"] for s in listing["skipped"]] == ["broken.png"]


def test_serves_image_and_thumbnail(client, folder):
    assert client.get("/api/images/im1.png").content == (folder / "im1.png").read_bytes()
    thumb = client.get("/api/images/im1.png/thumb", params={"max_side": 32})
    assert thumb.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(thumb.content)).size == (32, 24)


@pytest.mark.parametrize(("path", "status", "words"), [
    ("/api/images/..%2Fsecret.png", 400, "plain file name"),
    ("/api/images/%2E%2E%2F%2E%2E%2Fetc%2Fpasswd", 400, "plain file name"),
    ("/api/images/%2Fetc%2Fpasswd", 400, "plain file name"),
    ("/api/images/..%5Csecret.png", 400, "plain file name"),
    ("/api/images/link.png", 404, "no such image"),  # a symlink out of the folder
    ("/api/images/notes.txt", 415, "not an image file"),
    ("/api/images/missing.png", 404, "no such image"),
    ("/api/images/..%2Fsecret.png/thumb", 400, "plain file name"),
    ("/api/images/link.png/thumb", 404, "no such image"),
])
def test_rejects_paths_outside_the_folder_and_non_images(client, path, status, words):
    response = client.get(path)
    assert response.status_code == status
    assert words in response.json()["detail"]


# -- sessions, references, targets --------------------------------------------------------------
def test_box_reference_then_target_overlay(client, sid):
    ref = add_box(client, sid)
    assert (ref["image"], ref["label"], ref["prompt_type"]) == ("im0.png", "shape", "box")
    assert 0 < ref["area"] <= SIZE[0] * SIZE[1] and 0 <= ref["score"] <= 1
    mask = decode_data_url(ref["mask_png"])
    assert mask.size == (SIZE[1], SIZE[0]) and mask.mode == "P"

    target = client.get(f"/api/sessions/{sid}/targets/im1.png", params={"max_side": 32}).json()
    assert [c["label"] for c in target["classes"]] == ["shape"]
    assert decode_data_url(target["overlay_png"]).size == (32, 24)
    png = client.get(f"/api/sessions/{sid}/targets/im1.png/overlay.png")
    assert png.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(png.content)).size == (SIZE[1], SIZE[0])

    state = client.get(f"/api/sessions/{sid}").json()
    assert [r["id"] for r in state["references"]] == [ref["id"]]
    assert state["classes"] == [{"name": "shape", "color": state["classes"][0]["color"]}]


def test_replacing_a_prompt_keeps_one_reference_per_image_and_class(client, sid):
    first = add_box(client, sid)
    second = client.put(f"/api/sessions/{sid}/references", json={
        "image": "im0.png", "label": "shape", "prompt": {"points": [[20, 15], [2, 2]], "point_labels": [1, 0]}}).json()
    assert second["id"] == first["id"] and second["prompt_type"] == "point"
    mask = np.zeros(SIZE, dtype=bool)
    mask[8:30, 10:40] = True
    third = client.put(f"/api/sessions/{sid}/references",
                       json={"image": "im0.png", "label": "shape", "prompt": {"mask_png": png_b64(mask)}}).json()
    assert third["prompt_type"] == "mask" and third["area"] == mask.sum() and third["score"] is None
    assert len(client.get(f"/api/sessions/{sid}").json()["references"]) == 1


def test_several_classes_share_one_target_encoding(client, sid):
    client.post(f"/api/sessions/{sid}/classes", json={"name": "other", "color": "#00ff00"})
    add_box(client, sid)
    client.put(f"/api/sessions/{sid}/references", json={
        "image": "im1.png", "label": "other", "prompt": {"scribble": [[[12, 10], [30, 20]], [[5, 40]]]}})
    target = client.get(f"/api/sessions/{sid}/targets/im2.png").json()
    assert [c["label"] for c in target["classes"]] == ["shape", "other"]
    assert sum(c["area"] for c in target["classes"]) <= SIZE[0] * SIZE[1]


def test_promote_makes_a_target_a_mask_reference(client, sid):
    add_box(client, sid)
    target = client.get(f"/api/sessions/{sid}/targets/im2.png").json()
    response = client.post(f"/api/sessions/{sid}/references/promote", json={"image": "im2.png", "label": "shape"})
    assert target["classes"][0]["area"] > 0  # the seeded tiny model predicts something there
    assert response.json()["prompt_type"] == "mask"
    assert response.json()["area"] == target["classes"][0]["area"]
    targets = client.post(f"/api/sessions/{sid}/propagate").json()["total"]
    assert targets == 2  # im1, im3: im0 and the promoted im2 are references


def test_remove_reference_and_class(client, sid):
    ref = add_box(client, sid)
    state = client.delete(f"/api/sessions/{sid}/references/{ref['id']}").json()
    assert state["references"] == []
    add_box(client, sid)
    state = client.delete(f"/api/sessions/{sid}/classes/shape").json()
    assert state["classes"] == [] and state["references"] == []


def test_propagate_then_export_zip(client, sid):
    add_box(client, sid)
    status = propagate(client, sid)
    assert (status["state"], status["done"], status["total"]) == ("done", 3, 3)
    response = client.get(f"/api/sessions/{sid}/export", params={"formats": ["coco", "png", "yolo"]})
    assert response.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        names = set(archive.namelist())
        coco = json.loads(archive.read("annotations.json"))
    assert {"annotations.json", "classes.json", "masks/im1_shape.png", "yolo/labels/im3.txt"} <= names
    assert not any(n.startswith(".sansa") for n in names)
    assert [c["name"] for c in coco["categories"]] == ["shape"]
    assert sorted(i["file_name"] for i in coco["images"]) == ["im1.png", "im2.png", "im3.png"]


def test_export_defaults_to_the_export_modules_formats(client, sid):
    from sansa.export import DEFAULT_FORMATS, OutputFormat

    add_box(client, sid)
    propagate(client, sid)
    with zipfile.ZipFile(io.BytesIO(client.get(f"/api/sessions/{sid}/export").content)) as archive:
        folders = {name.split("/")[0] for name in archive.namelist()}
    expected = {OutputFormat.PNG: "masks", OutputFormat.COCO: "annotations.json", OutputFormat.OVERLAY: "overlays",
                OutputFormat.YOLO: "yolo", OutputFormat.INDEXED: "labels"}
    assert folders == {expected[f] for f in DEFAULT_FORMATS} | {"classes.json"}


# -- rejections ---------------------------------------------------------------------------------
MASK_WRONG_SIZE = png_b64(np.ones((10, 10), dtype=bool))
MASK_FULL = png_b64(np.ones(SIZE, dtype=bool))


@pytest.mark.parametrize(("body", "status", "words"), [
    ({"image": "im0.png", "label": "shape", "prompt": {"box": [10, 8, 400, 30]}}, 400, "box: (400, 30) lies outside"),
    ({"image": "im0.png", "label": "shape", "prompt": {"box": [30, 8, 10, 30]}}, 400, "is empty"),
    ({"image": "im0.png", "label": "shape", "prompt": {"box": [1, 2]}}, 422, "prompt.box"),
    ({"image": "im0.png", "label": "shape", "prompt": {}}, 400, "give a mask, points, a box or a scribble"),
    ({"image": "im0.png", "label": "shape", "prompt": {"points": [[5, 5]], "point_labels": [1, 0]}}, 400,
     "2 labels for 1 points"),
    ({"image": "im0.png", "label": "shape", "prompt": {"mask_png": MASK_WRONG_SIZE}}, 400, "does not match"),
    ({"image": "im0.png", "label": "shape", "prompt": {"mask_png": "%%%"}}, 400, "not valid base64"),
    ({"image": "im0.png", "label": "shape", "prompt": {"mask_png": base64.b64encode(b"text").decode()}}, 415,
     "not a readable PNG"),
    ({"image": "im0.png", "label": "shape", "prompt": {"mask_png": MASK_FULL, "box": BOX}}, 400,
     "cannot be combined"),
    ({"image": "im0.png", "label": "nope", "prompt": {"box": BOX}}, 404, "class 'nope': no such class"),
    ({"image": "gone.png", "label": "shape", "prompt": {"box": BOX}}, 404, "no such image"),
    ({"image": "../secret.png", "label": "shape", "prompt": {"box": BOX}}, 400, "plain file name"),
    ({"image": "broken.png", "label": "shape", "prompt": {"box": BOX}}, 400, "not a readable image"),
])
def test_bad_references_are_one_line_errors(client, sid, body, status, words):
    response = client.put(f"/api/sessions/{sid}/references", json=body)
    assert response.status_code == status
    detail = response.json()["detail"]
    assert words in detail and "\n" not in detail


@pytest.mark.parametrize(("method", "path", "kwargs", "status", "words"), [
    ("GET", "/api/sessions/unknown", {}, 404, "unknown or expired"),
    ("GET", "/api/sessions/{sid}/targets/im1.png", {}, 409, "no reference yet"),
    ("POST", "/api/sessions/{sid}/propagate", {}, 409, "no reference yet"),
    ("GET", "/api/sessions/{sid}/export", {}, 409, "no reference yet"),
    ("POST", "/api/sessions/{sid}/classes", {"json": {"name": "shape"}}, 409, "already exists"),
    ("POST", "/api/sessions/{sid}/classes", {"json": {"name": "  "}}, 422, "class name is empty"),
    ("POST", "/api/sessions/{sid}/classes", {"json": {"name": "x", "color": "red"}}, 422, "color"),
    ("DELETE", "/api/sessions/{sid}/references/nope", {}, 404, "no such reference"),
    ("DELETE", "/api/sessions/{sid}/classes/nope", {}, 404, "no such class"),
])
def test_session_errors(client, sid, method, path, kwargs, status, words):
    response = client.request(method, path.format(sid=sid), **kwargs)
    assert response.status_code == status
    assert words in response.json()["detail"]


@pytest.mark.parametrize(("params", "status", "words"), [
    ({}, 409, "propagate to all first"),
    ({"formats": ["coco", "bogus"]}, 400, "unknown format 'bogus'"),
])
def test_export_refuses_stale_results_and_unknown_formats(client, sid, params, status, words):
    add_box(client, sid)
    if "formats" in params:
        propagate(client, sid)
    response = client.get(f"/api/sessions/{sid}/export", params=params)
    assert response.status_code == status
    assert words in response.json()["detail"]


def test_changing_references_makes_results_stale(client, sid):
    add_box(client, sid)
    assert propagate(client, sid)["state"] == "done"
    add_box(client, sid, image="im1.png")
    response = client.get(f"/api/sessions/{sid}/export")
    assert response.status_code == 409
    assert "2 of 2 targets are not propagated" in response.json()["detail"]


# -- uploads ------------------------------------------------------------------------------------
def png_bytes(size=(8, 6)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (10, 200, 10)).save(out, format="PNG")
    return out.getvalue()


@pytest.mark.parametrize(("filename", "data", "status", "words"), [
    ("new.png", png_bytes(), 201, ""),
    ("im0.png", png_bytes(), 409, "already in the folder"),
    ("big.png", png_bytes((400, 400)) + b"\0" * 5000, 413, "over the limit"),
    ("notes.txt", b"hello", 415, "not an image file name"),
    ("fake.png", b"hello", 415, "not a readable image"),
    ("../up.png", png_bytes(), 400, "plain file name"),
    (".hidden.png", png_bytes(), 400, "plain file name"),
])
def test_uploads(client, folder, filename, data, status, words):
    response = client.post("/api/images", files={"file": (filename, data, "image/png")})
    assert response.status_code == status, response.text
    if status == 201:
        assert response.json() == {"name": filename, "width": 8, "height": 6}
        assert (folder / filename).read_bytes() == data
        (folder / filename).unlink()
    else:
        assert words in response.json()["detail"]
        assert not (folder.parent / "up.png").exists()


def test_refuses_oversized_request_bodies(client, sid):
    body = {"image": "im0.png", "label": "shape", "prompt": {"mask_png": "A" * 2_000_000}}
    response = client.put(f"/api/sessions/{sid}/references", json=body)
    assert response.status_code == 413
    assert "over the limit" in response.json()["detail"]


def test_openapi_schema_names_the_typed_models(client):
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    typed = {"ReferenceRequest", "ReferenceOut", "PromptIn", "SessionState", "PropagateStatus", "ErrorOut"}
    assert typed <= set(schemas)


def test_page_and_static_assets_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and "<title>SANSA" in page.text
    for asset in ("app.js", "editor.js", "api.js", "app.css"):
        assert client.get(f"/static/{asset}").status_code == 200


# -- the command ----------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cli_missing_folder_is_a_one_line_error(tmp_path):
    from sansa.cli import main

    assert main(["serve", str(tmp_path / "nope"), "--backbone", "test_tiny", "--random-weights"]) == 2


@pytest.mark.slow
def test_sansa_serve_listens_on_loopback(folder):
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "sansa", "serve", str(folder), "--port", str(port),
               "--backbone", "test_tiny", "--random-weights", "--device", "cpu"]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                info = httpx.get(f"http://127.0.0.1:{port}/api/info", timeout=1).json()
                break
            except httpx.TransportError:
                assert server.poll() is None and time.monotonic() < deadline, server.stdout.read()
                time.sleep(0.2)
        assert info["model"] == "test_tiny (random weights)" and info["device"] == "cpu"
    finally:
        server.terminate()
        output = server.communicate(timeout=20)[0]
    assert f"http://127.0.0.1:{port}/" in output
