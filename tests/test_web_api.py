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
    token = {"X-Sansa-Token": app.state.token}  # the per-launch token every API call carries
    with serve_in_thread(app) as url, httpx.Client(base_url=url, headers=token, timeout=30) as http:
        http.app_service = app.state.service
        yield http


@pytest.fixture()
def sid(client) -> str:
    session = client.post("/api/sessions").json()["session_id"]
    assert client.post(f"/api/sessions/{session}/classes", json={"name": "shape"}).status_code == 201
    return session


def add_box(client, sid: str, image: str = "im0.png", label: str = "shape") -> dict:
    response = client.put(
        f"/api/sessions/{sid}/references", json={"image": image, "label": label, "prompt": {"box": BOX}}
    )
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
        (f"im{i}.png", SIZE[1], SIZE[0]) for i in range(4)
    ]  # not link.png, which points out of the folder
    assert [s["name"] for s in listing["skipped"]] == ["broken.png"]


def test_serves_image_and_thumbnail(client, folder):
    assert client.get("/api/images/im1.png").content == (folder / "im1.png").read_bytes()
    thumb = client.get("/api/images/im1.png/thumb", params={"max_side": 32})
    assert thumb.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(thumb.content)).size == (32, 24)


@pytest.mark.parametrize(
    ("path", "status", "words"),
    [
        ("/api/images/..%2Fsecret.png", 400, "plain file name"),
        ("/api/images/%2E%2E%2F%2E%2E%2Fetc%2Fpasswd", 400, "plain file name"),
        ("/api/images/%2Fetc%2Fpasswd", 400, "plain file name"),
        ("/api/images/..%5Csecret.png", 400, "plain file name"),
        ("/api/images/link.png", 404, "no such image"),  # a symlink out of the folder
        ("/api/images/notes.txt", 415, "not an image file"),
        ("/api/images/missing.png", 404, "no such image"),
        ("/api/images/..%2Fsecret.png/thumb", 400, "plain file name"),
        ("/api/images/link.png/thumb", 404, "no such image"),
    ],
)
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
    second = client.put(
        f"/api/sessions/{sid}/references",
        json={"image": "im0.png", "label": "shape", "prompt": {"points": [[20, 15], [2, 2]], "point_labels": [1, 0]}},
    ).json()
    assert second["id"] == first["id"] and second["prompt_type"] == "point"
    mask = np.zeros(SIZE, dtype=bool)
    mask[8:30, 10:40] = True
    third = client.put(
        f"/api/sessions/{sid}/references",
        json={"image": "im0.png", "label": "shape", "prompt": {"mask_png": png_b64(mask)}},
    ).json()
    assert third["prompt_type"] == "mask" and third["area"] == mask.sum() and third["score"] is None
    assert len(client.get(f"/api/sessions/{sid}").json()["references"]) == 1


def test_several_classes_share_one_target_encoding(client, sid):
    client.post(f"/api/sessions/{sid}/classes", json={"name": "other", "color": "#00ff00"})
    add_box(client, sid)
    client.put(
        f"/api/sessions/{sid}/references",
        json={"image": "im1.png", "label": "other", "prompt": {"scribble": [[[12, 10], [30, 20]], [[5, 40]]]}},
    )
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
    assert targets == 3  # im1, im2, im3: im0 is a reference; im2's other classes stay predicted (a fix is per class)
    assert client.get(f"/api/sessions/{sid}").json()["fixes"] == {"im2.png": ["shape"]}


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
    assert sorted(i["file_name"] for i in coco["images"]) == ["im0.png", "im1.png", "im2.png", "im3.png"]


def test_export_defaults_to_the_export_modules_formats(client, sid):
    from sansa.export import DEFAULT_FORMATS, OutputFormat

    add_box(client, sid)
    propagate(client, sid)
    with zipfile.ZipFile(io.BytesIO(client.get(f"/api/sessions/{sid}/export").content)) as archive:
        folders = {name.split("/")[0] for name in archive.namelist()}
    expected = {
        OutputFormat.PNG: "masks",
        OutputFormat.COCO: "annotations.json",
        OutputFormat.OVERLAY: "overlays",
        OutputFormat.YOLO: "yolo",
        OutputFormat.INDEXED: "labels",
    }
    assert folders == {expected[f] for f in DEFAULT_FORMATS} | {"classes.json", "images.json", "manifest.json"}


# -- rejections ---------------------------------------------------------------------------------
MASK_WRONG_SIZE = png_b64(np.ones((10, 10), dtype=bool))
MASK_FULL = png_b64(np.ones(SIZE, dtype=bool))


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        (
            {"image": "im0.png", "label": "shape", "prompt": {"box": [10, 8, 400, 30]}},
            400,
            "box: (400, 30) lies outside",
        ),
        ({"image": "im0.png", "label": "shape", "prompt": {"box": [30, 8, 10, 30]}}, 400, "is empty"),
        ({"image": "im0.png", "label": "shape", "prompt": {"box": [1, 2]}}, 422, "prompt.box"),
        ({"image": "im0.png", "label": "shape", "prompt": {}}, 400, "give a mask, points, a box or a scribble"),
        (
            {"image": "im0.png", "label": "shape", "prompt": {"points": [[5, 5]], "point_labels": [1, 0]}},
            400,
            "2 labels for 1 points",
        ),
        ({"image": "im0.png", "label": "shape", "prompt": {"mask_png": MASK_WRONG_SIZE}}, 400, "does not match"),
        ({"image": "im0.png", "label": "shape", "prompt": {"mask_png": "%%%"}}, 400, "not valid base64"),
        (
            {"image": "im0.png", "label": "shape", "prompt": {"mask_png": base64.b64encode(b"text").decode()}},
            415,
            "not a readable PNG",
        ),
        (
            {"image": "im0.png", "label": "shape", "prompt": {"mask_png": MASK_FULL, "box": BOX}},
            400,
            "cannot be combined",
        ),
        ({"image": "im0.png", "label": "nope", "prompt": {"box": BOX}}, 404, "class 'nope': no such class"),
        ({"image": "gone.png", "label": "shape", "prompt": {"box": BOX}}, 404, "no such image"),
        ({"image": "../secret.png", "label": "shape", "prompt": {"box": BOX}}, 400, "plain file name"),
        ({"image": "broken.png", "label": "shape", "prompt": {"box": BOX}}, 400, "not a readable image"),
    ],
)
def test_bad_references_are_one_line_errors(client, sid, body, status, words):
    response = client.put(f"/api/sessions/{sid}/references", json=body)
    assert response.status_code == status
    detail = response.json()["detail"]
    assert words in detail and "\n" not in detail


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "words"),
    [
        ("GET", "/api/sessions/unknown", {}, 404, "session 'unknown': unknown"),
        ("GET", "/api/sessions/{sid}/targets/im1.png", {}, 409, "no reference yet"),
        ("POST", "/api/sessions/{sid}/propagate", {}, 409, "no reference yet"),
        ("GET", "/api/sessions/{sid}/export", {}, 409, "no reference yet"),
        ("POST", "/api/sessions/{sid}/classes", {"json": {"name": "shape"}}, 409, "already exists"),
        ("POST", "/api/sessions/{sid}/classes", {"json": {"name": "  "}}, 422, "class name is empty"),
        ("POST", "/api/sessions/{sid}/classes", {"json": {"name": "x", "color": "red"}}, 422, "color"),
        ("DELETE", "/api/sessions/{sid}/references/nope", {}, 404, "no such reference"),
        ("DELETE", "/api/sessions/{sid}/classes/nope", {}, 404, "no such class"),
    ],
)
def test_session_errors(client, sid, method, path, kwargs, status, words):
    response = client.request(method, path.format(sid=sid), **kwargs)
    assert response.status_code == status
    assert words in response.json()["detail"]


@pytest.mark.parametrize(
    ("params", "status", "words"),
    [
        ({}, 409, "propagate to all first"),
        ({"formats": ["coco", "bogus"]}, 400, "unknown format 'bogus'"),
    ],
)
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


# -- sessions on disk ---------------------------------------------------------------------------
@pytest.fixture()
def fresh(tiny_model, tmp_path):
    """A folder of 4 images and a way to (re)start a server on it: ``with fresh() as http: ...``."""
    from contextlib import contextmanager

    from sansa import SansaPredictor
    from sansa.objects import ObjectOptions

    for i in range(4):
        write_image(tmp_path / f"im{i}.png", i)
    # Every predicted pixel kept: on these 48x64 noise images the tiny random model's classes are
    # specks, which the default min_area would drop from the label map (tests/test_objects.py pins that).
    keep_specks = ObjectOptions(min_area=1)

    @contextmanager
    def server():
        app = create_app(SansaPredictor(tiny_model, device="cpu", objects=keep_specks), tmp_path)
        token = {"X-Sansa-Token": app.state.token}  # a new token at each start, as `sansa serve` makes
        with serve_in_thread(app) as url, httpx.Client(base_url=url, headers=token, timeout=30) as http:
            yield http

    server.folder = tmp_path
    return server


def build_session(http) -> tuple[str, dict]:
    """Two classes, a box and a mask reference, propagated, one target accepted and one rejected."""
    sid = http.get("/api/sessions/current").json()["session_id"]
    for name in ("shape", "other"):
        assert http.post(f"/api/sessions/{sid}/classes", json={"name": name}).status_code == 201
    add_box(http, sid)
    mask = np.zeros(SIZE, dtype=bool)
    mask[20:40, 5:25] = True
    assert (
        http.put(
            f"/api/sessions/{sid}/references",
            json={"image": "im1.png", "label": "other", "prompt": {"mask_png": png_b64(mask)}},
        ).status_code
        == 200
    )
    assert propagate(http, sid)["state"] == "done"
    for name, state in (("im2.png", "accepted"), ("im3.png", "rejected")):
        assert http.put(f"/api/sessions/{sid}/review/{name}", json={"state": state}).status_code == 200
    return sid, http.get(f"/api/sessions/{sid}").json()


def test_a_server_restart_resumes_the_last_session(fresh):
    with fresh() as http:
        sid, before = build_session(http)
    assert (fresh.folder / ".sansa" / "web" / "sessions" / sid / "session.json").is_file()
    with fresh() as http:
        after = http.get("/api/sessions/current").json()
        export = http.get(f"/api/sessions/{sid}/export", params={"formats": ["png"]})
    assert after == before  # classes, colours, references and prompts, reviews, version, all propagated
    assert after["propagated"] == after["targets"] == 2 and after["reviews"] == {
        "im2.png": "accepted",
        "im3.png": "rejected",
    }
    assert [r["prompt"] and r["prompt"]["box"] for r in after["references"]] == [BOX, None]
    assert export.status_code == 200  # the results came back: no need to propagate again


def test_new_session_starts_fresh_and_is_resumed_next(fresh):
    with fresh() as http:
        old, _ = build_session(http)
        new = http.post("/api/sessions").json()
        assert new["classes"] == new["references"] == [] and new["session_id"] != old
    with fresh() as http:
        assert http.get("/api/sessions/current").json()["session_id"] == new["session_id"]
        assert len(http.get(f"/api/sessions/{old}").json()["references"]) == 2  # the old one is kept


def test_other_clients_cannot_evict_a_session(client, sid):
    ref = add_box(client, sid)
    for _ in range(20):  # more than the sessions kept in memory
        client.post("/api/sessions")
    state = client.get(f"/api/sessions/{sid}").json()
    assert [r["id"] for r in state["references"]] == [ref["id"]]
    assert client.get(f"/api/sessions/{sid}/targets/im1.png").status_code == 200


@pytest.mark.parametrize(
    "steps",
    [
        ["+a", "-shape", "+b", "+c"],  # deleting the first class must not give b and c one colour
        ["-shape", "+a", "+b", "-a", "+c", "+d"],
        ["+a", "+b", "-a", "-b", "+c", "+d", "+e"],
    ],
)
def test_class_colours_stay_distinct(client, sid, steps):
    for step in steps:
        if step[0] == "+":
            assert client.post(f"/api/sessions/{sid}/classes", json={"name": step[1:]}).status_code == 201
        else:
            assert client.delete(f"/api/sessions/{sid}/classes/{step[1:]}").status_code == 200
    colors = [c["color"] for c in client.get(f"/api/sessions/{sid}").json()["classes"]]
    assert len(set(colors)) == len(colors)


def test_renaming_a_class_encodes_nothing_and_keeps_its_predictions(client, sid, monkeypatch):
    from sansa import SansaPredictor

    add_box(client, sid)
    before = client.get(f"/api/sessions/{sid}/targets/im2.png").json()["classes"]
    calls = []
    encode = SansaPredictor.encode
    monkeypatch.setattr(SansaPredictor, "encode", lambda self, *a, **k: calls.append(1) or encode(self, *a, **k))
    assert client.patch(f"/api/sessions/{sid}/classes/shape", json={"name": "fruit"}).status_code == 200
    assert calls == []  # no image encoded again (a 12-Mpx reference took 10 s)
    after = client.get(f"/api/sessions/{sid}/targets/im2.png").json()["classes"]
    assert [(c["label"], c["area"], c["score"]) for c in after] == [("fruit", c["area"], c["score"]) for c in before]


def test_rename_and_recolour_a_class(client, sid):
    add_box(client, sid)
    client.post(f"/api/sessions/{sid}/classes", json={"name": "other", "color": "#00ff00"})
    propagate(client, sid)
    renamed = client.patch(f"/api/sessions/{sid}/classes/shape", json={"name": "fruit", "color": "#123456"})
    assert renamed.json() == {"name": "fruit", "color": "#123456"}
    state = client.get(f"/api/sessions/{sid}").json()
    assert [c["name"] for c in state["classes"]] == ["fruit", "other"]
    assert [r["label"] for r in state["references"]] == ["fruit"] and state["propagated"] == 3
    clash = client.patch(f"/api/sessions/{sid}/classes/fruit", json={"color": "#00FF00"})
    assert clash.status_code == 409 and "colour of class 'other'" in clash.json()["detail"]
    taken = client.patch(f"/api/sessions/{sid}/classes/fruit", json={"name": "other"})
    assert taken.status_code == 409 and "already exists" in taken.json()["detail"]
    with zipfile.ZipFile(io.BytesIO(client.get(f"/api/sessions/{sid}/export").content)) as archive:
        table = json.loads(archive.read("classes.json"))
    assert [(c["name"], c["color"]) for c in table[1:]] == [("fruit", [0x12, 0x34, 0x56]), ("other", [0, 255, 0])]


def export_files(http, sid: str, formats: list[str]) -> dict[str, bytes]:
    """Export in the background, polling progress, then download the zip; its files by name."""
    status = http.post(f"/api/sessions/{sid}/exports", json={"formats": formats})
    assert status.status_code == 202, status.text
    seen = [status.json()]
    while seen[-1]["state"] == "running":
        time.sleep(0.05)
        seen.append(http.get(f"/api/sessions/{sid}/exports/{seen[0]['id']}").json())
    assert seen[-1]["state"] == "done" and seen[-1]["done"] == seen[-1]["total"], seen[-1]
    assert all(0 <= s["done"] <= s["total"] for s in seen)
    response = http.get(seen[-1]["download"])
    assert response.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def test_export_has_every_image_with_a_mask_and_says_where_it_comes_from(fresh):
    with fresh() as http:
        sid, _ = build_session(http)
        promoted = http.post(f"/api/sessions/{sid}/references/promote", json={"image": "im2.png", "label": "shape"})
        files = export_files(http, sid, ["coco", "png"])
    records = {r["file_name"]: r for r in json.loads(files["images.json"])}
    assert {n: r["source"] for n, r in records.items()} == {
        "im0.png": "reference",
        "im1.png": "reference",
        "im2.png": "corrected",
    }  # im3 was rejected
    coco = json.loads(files["annotations.json"])
    ids = {i["id"]: i["file_name"] for i in coco["images"]}
    assert sorted(ids.values()) == ["im0.png", "im1.png", "im2.png"]
    other_id = next(c["id"] for c in coco["categories"] if c["name"] == "other")
    for ann in coco["annotations"]:
        accepted = ids[ann["image_id"]] == "im2.png" and ann["category_id"] == other_id
        assert (ann.get("score", 1.0) == 1.0) != accepted  # hand-made, but for im2's class not fixed
    assert records["im2.png"]["classes"]["other"]["pixels"] > 0  # a fix is per class: "other" stays accepted
    mask = np.asarray(Image.open(io.BytesIO(files["masks/im1_other.png"]))) > 0
    assert mask.sum() == 20 * 20 and mask[20:40, 5:25].all()  # the user's own mask, as drawn
    corrected = np.asarray(Image.open(io.BytesIO(files["masks/im2_shape.png"]))) > 0
    assert corrected.sum() == promoted.json()["area"] > 0


def test_export_options_reach_the_writer(fresh):
    with fresh() as http:
        sid, _ = build_session(http)
        default = export_files(http, sid, ["coco", "yolo"])
        dataset = http.post(
            f"/api/sessions/{sid}/exports", json={"formats": ["coco"], "coco_layout": "dataset", "coco_polygons": True}
        ).json()
        while dataset["state"] == "running":
            time.sleep(0.05)
            dataset = http.get(f"/api/sessions/{sid}/exports/{dataset['id']}").json()
        with zipfile.ZipFile(io.BytesIO(http.get(dataset["download"]).content)) as archive:
            names = set(archive.namelist())
            coco = json.loads(archive.read("coco/annotations/instances_default.json"))
    assert "annotations.json" in default and "yolo/data.yaml" in default
    assert {"coco/images/im0.png", "coco/images/im2.png"} <= names and "annotations.json" not in names
    assert all(isinstance(a["segmentation"], list) for a in coco["annotations"])  # polygons


def test_export_keeps_accepted_predictions_as_accepted(fresh):
    with fresh() as http:
        sid, _ = build_session(http)
        accepted = http.get(f"/api/sessions/{sid}/review").json()
        files = export_files(http, sid, ["coco"])
    assert accepted["counts"] == {"unreviewed": 0, "accepted": 1, "rejected": 1, "fixed": 0}
    records = {r["file_name"]: r for r in json.loads(files["images.json"])}
    assert records["im2.png"]["source"] == "accepted" and records["im2.png"]["review"] == "accepted"
    assert "im3.png" not in records


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "words"),
    [
        ("GET", "/api/sessions/{sid}/exports/nope", None, 404, "no such export"),
        ("GET", "/api/sessions/{sid}/exports/nope/download", None, 404, "no such export"),
        ("POST", "/api/sessions/{sid}/exports", {"formats": ["bogus"]}, 400, "unknown format 'bogus'"),
        ("POST", "/api/sessions/{sid}/exports", {"coco_layout": "flat"}, 400, "coco_layout: unknown value 'flat'"),
        ("POST", "/api/sessions/{sid}/exports", {}, 409, "no reference yet"),
        ("PUT", "/api/sessions/{sid}/review/im1.png", {"state": "maybe"}, 422, "state"),
        ("PUT", "/api/sessions/{sid}/review/gone.png", {"state": "accepted"}, 404, "no such image"),
        ("PATCH", "/api/sessions/{sid}/classes/nope", {"name": "x"}, 404, "no such class"),
        ("PATCH", "/api/sessions/{sid}/classes/shape", {"name": " "}, 422, "class name is empty"),
    ],
)
def test_review_and_export_errors(client, sid, method, path, body, status, words):
    response = client.request(method, path.format(sid=sid), json=body)
    assert response.status_code == status, response.text
    assert words in response.json()["detail"]


def test_reviewing_a_reference_is_refused(client, sid):
    add_box(client, sid)
    response = client.put(f"/api/sessions/{sid}/review/im0.png", json={"state": "accepted"})
    assert response.status_code == 409 and "is a reference" in response.json()["detail"]


def test_a_folder_that_cannot_hold_sessions_saves_them_in_the_cache(tiny_model, tmp_path, monkeypatch):
    from sansa import SansaPredictor

    folder = tmp_path / "photos"
    folder.mkdir()
    write_image(folder / "im0.png", 0)
    (folder / ".sansa").write_text("a file where the folder would be")  # fails for root too
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    app = create_app(SansaPredictor(tiny_model, device="cpu"), folder)
    with (
        serve_in_thread(app) as url,
        httpx.Client(base_url=url, timeout=30, headers={"X-Sansa-Token": app.state.token}) as http,
    ):
        state = http.get("/api/sessions/current").json()
        assert http.post(f"/api/sessions/{state['session_id']}/classes", json={"name": "shape"}).status_code == 201
    assert "cannot be written; sessions are saved in" in state["notes"][0]
    saved = list((tmp_path / "cache" / "sansa" / "web").glob("*/sessions/*/session.json"))
    assert [json.loads(p.read_text())["classes"][0]["name"] for p in saved] == ["shape"]


def test_thumbnails_are_made_in_the_background_from_the_start(client):
    folder = client.app_service.folder
    deadline = time.monotonic() + 10
    while len(folder._thumbs) < 4 * 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    made = {(name, side) for name, _, side in folder._thumbs}
    assert made >= {(f"im{i}.png", side) for i in range(4) for side in (160, 320)}


def test_favicon(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 200 and response.headers["content-type"] == "image/x-icon"
    assert Image.open(io.BytesIO(response.content)).format == "ICO"


# -- uploads ------------------------------------------------------------------------------------
def png_bytes(size=(8, 6)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (10, 200, 10)).save(out, format="PNG")
    return out.getvalue()


@pytest.mark.parametrize(
    ("filename", "data", "status", "words"),
    [
        ("new.png", png_bytes(), 201, ""),
        ("im0.png", png_bytes(), 409, "already in the folder"),
        ("big.png", png_bytes((400, 400)) + b"\0" * 5000, 413, "over the limit"),
        ("notes.txt", b"hello", 415, "not an image file name"),
        ("fake.png", b"hello", 415, "not a readable image"),
        ("../up.png", png_bytes(), 400, "plain file name"),
        (".hidden.png", png_bytes(), 400, "plain file name"),
    ],
)
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
    command = [sys.executable, "-m", "sansa", "serve", str(folder), "--port", str(port)]
    command += ["--backbone", "test_tiny", "--random-weights", "--device", "cpu"]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        ready = server.stdout.readline()  # printed only once the socket is bound: the address with the token
        assert ready.startswith(f"sansa serve: http://127.0.0.1:{port}/?token="), ready + server.stdout.read()
        url = ready.split()[2]
        info = httpx.get(url.replace("/?", "/api/info?"), timeout=10).json()
        assert info["model"] == "test_tiny (random weights)" and info["device"] == "cpu"
        assert httpx.get(f"http://127.0.0.1:{port}/api/info", timeout=10).status_code == 401  # no token
    finally:
        server.terminate()
        output = server.communicate(timeout=20)[0]
    assert "Traceback" not in output, output


# (edits sent, pixels of the mask after them): strokes and polygons applied to the mask the server holds
EDITS = [
    ([{"op": "fill", "points": [[10, 10], [30, 10], [30, 20], [10, 20]]}], 21 * 11),
    (
        [
            {"op": "fill", "points": [[10, 10], [30, 10], [30, 20], [10, 20]]},
            {"op": "cut", "points": [[10, 10], [20, 10], [20, 20], [10, 20]]},
        ],
        10 * 11,
    ),
    ([{"op": "paint", "points": [[5, 30], [45, 30]], "width": 5}], None),  # a 40-pixel stroke, 5 wide
    ([{"op": "fill", "points": [[-20, -20], [100, -20], [100, 100], [-20, 100]]}], SIZE[0] * SIZE[1]),  # clipped
]


@pytest.mark.parametrize(("edits", "pixels"), EDITS)
def test_a_mask_is_edited_by_strokes_sent_as_edits(client, sid, edits, pixels):
    body = {"image": "im1.png", "label": "shape", "prompt": {"edits": edits}}
    out = client.put(f"/api/sessions/{sid}/references", json=body)
    assert out.status_code == 200, out.text
    area = out.json()["area"]
    if pixels is None:  # round ends: between the rectangle and the rectangle plus a disc
        assert 40 * 5 <= area <= 40 * 5 + 30
    else:
        assert area == pixels
    assert out.json()["prompt_type"] == "mask" and out.json()["prompt"] is None  # kept as a mask PNG


def test_edits_apply_to_the_current_mask_and_bad_edits_are_one_line_errors(client, sid):
    url = f"/api/sessions/{sid}/references"

    def put(prompt: dict, image: str = "im1.png"):
        return client.put(url, json={"image": image, "label": "shape", "prompt": prompt})

    square = [[10, 10], [30, 10], [30, 20], [10, 20]]
    assert put({"edits": [{"op": "fill", "points": square}]}).json()["area"] == 21 * 11
    erased = put({"edits": [{"op": "erase", "points": [[5, 15], [35, 15]], "width": 3}]}).json()["area"]
    assert 21 * 11 - 21 * 4 <= erased <= 21 * 11 - 21 * 3  # a 3-wide line across it, from the square it held
    add_box(client, sid, "im0.png")
    for prompt, image, status, words in (
        ({"edits": [{"op": "fill", "points": square}], "box": BOX}, "im1.png", 400, "send the changes alone"),
        ({"edits": [{"op": "paint", "points": [[1, 1]]}]}, "im1.png", 400, "needs its width"),
        ({"edits": [{"op": "fill", "points": square}]}, "im0.png", 409, "not a mask prompt"),
        (
            {"edits": [{"op": "cut", "points": [[0, 0], [64, 0], [64, 48], [0, 48]]}]},
            "im1.png",
            400,
            "nothing of the mask",
        ),
        ({"edits": [{"op": "smudge", "points": square}]}, "im1.png", 422, "prompt.edits.0.op"),
    ):
        response = put(prompt, image)
        assert response.status_code == status and words in response.json()["detail"], response.text
    assert put({"edits": []}).json()["area"] == erased  # nothing changed by the refusals


def test_a_mask_edited_stroke_by_stroke_segments_as_the_same_mask_sent_whole(client):
    """Strokes are saved at once and encoded when a target is segmented next: the targets come out
    exactly as when every edit was encoded at once (the same mask sent as a PNG, in the same order)."""

    def session() -> str:
        sid = client.post("/api/sessions").json()["session_id"]
        client.post(f"/api/sessions/{sid}/classes", json={"name": "shape"})
        return sid

    def put(sid: str, image: str, prompt: dict) -> dict:
        response = client.put(
            f"/api/sessions/{sid}/references", json={"image": image, "label": "shape", "prompt": prompt}
        )
        assert response.status_code == 200, response.text
        return response.json()

    edited = session()
    put(edited, "im1.png", {"edits": [{"op": "fill", "points": [[8, 6], [44, 6], [44, 32], [8, 32]]}]})
    add_box(client, edited, "im0.png")
    erased = put(edited, "im1.png", {"edits": [{"op": "erase", "points": [[4, 20], [50, 22]], "width": 4}]})
    put(edited, "im1.png", {"edits": [{"op": "paint", "points": [[20, 36], [30, 40]], "width": 3}]})
    assert erased["prompt_type"] == "mask" and erased["score"] is None
    mask = client.app_service.session(edited).slot_of("im1.png", "shape").mask.copy()
    whole = session()
    add_box(client, whole, "im0.png")
    assert put(whole, "im1.png", {"mask_png": png_b64(mask)})["area"] == int(mask.sum())
    for target in ("im2.png", "im3.png"):
        a, b = (client.get(f"/api/sessions/{s}/targets/{target}").json() for s in (edited, whole))
        assert a["classes"] == b["classes"] and a["overlay_png"] == b["overlay_png"]


def test_a_mask_sent_as_polygons_and_read_back_as_polygons(client, sid):
    """The polygon tool's prompt: rings filled and holes cut, in order; a mask's outlines read back
    (tolerance 0) rasterise to exactly its pixels."""
    from sansa.web import polygons
    from sansa.web.schema import PolygonRing

    url = f"/api/sessions/{sid}/references"
    rings = [
        {"points": [[5, 5], [40, 5], [40, 30], [5, 30]]},
        {"points": [[10, 10], [20, 10], [20, 20], [10, 20]], "hole": True},
        {"points": [[14, 14], [16, 14], [16, 16]]},  # a part inside the hole
    ]
    out = client.put(url, json={"image": "im1.png", "label": "shape", "prompt": {"polygons": rings}})
    assert out.status_code == 200, out.text
    expected = polygons.rasterise([PolygonRing(**r) for r in rings], SIZE)
    assert out.json()["area"] == int(expected.sum()) == 36 * 26 - 11 * 11 + 6 and out.json()["prompt_type"] == "mask"
    read = client.get(f"/api/sessions/{sid}/references/{out.json()['id']}/polygons", params={"tolerance": 0})
    back = [PolygonRing(**r) for r in read.json()["rings"]]
    assert [r.hole for r in back] == [False, True, False]
    assert np.array_equal(polygons.rasterise(back, SIZE), expected)
    for prompt, status, words in (
        ({"polygons": rings, "mask_png": png_b64(expected)}, 400, "not both"),
        ({"polygons": [{"points": [[-9, -9], [-5, -9], [-5, -5]]}]}, 400, "cover no pixel"),
        ({"polygons": [{"points": [[1, 1], [2, 2]]}]}, 422, "prompt.polygons.0.points"),
    ):
        response = client.put(url, json={"image": "im1.png", "label": "shape", "prompt": prompt})
        assert response.status_code == status and words in response.json()["detail"], response.text
    missing = client.get(f"/api/sessions/{sid}/references/nope/polygons")
    assert missing.status_code == 404 and "nope" in missing.json()["detail"]


def test_undo_puts_a_reference_back_as_before_its_last_change_also_after_a_restart(client, sid, tiny_model, folder):
    from sansa import SansaPredictor

    url = f"/api/sessions/{sid}/references"
    body = {"image": "im1.png", "label": "shape"}
    square = np.zeros(SIZE, dtype=bool)
    square[10:30, 10:40] = True
    add_box(client, sid, "im1.png")
    client.put(url, json={**body, "prompt": {"mask_png": png_b64(square)}})
    client.put(url, json={**body, "prompt": {"edits": [{"op": "fill", "points": [[0, 0], [5, 0], [5, 5]]}]}})
    dropped = client.put(f"{url}?undo=1", json={**body, "prompt": {"mask_png": png_b64(square)}})  # the page's undo
    assert dropped.status_code == 200, dropped.text

    app = create_app(SansaPredictor(tiny_model, device="cpu"), folder)  # a restart: read back from disk
    with serve_in_thread(app) as address, httpx.Client(base_url=address, headers=client.headers) as http:
        revision = http.get(f"/api/sessions/{sid}").json()["revision"]

        def undo(revision: int | None = None) -> httpx.Response:
            headers = {} if revision is None else {"X-Sansa-Revision": str(revision)}
            return http.post(f"{url}/undo", json=body, headers=headers)

        stale = undo(revision - 1)
        assert stale.status_code == 409 and stale.json()["stale"]
        first = undo(revision)
        assert first.status_code == 200, first.text
        (ref,) = [r for r in first.json()["references"] if r["image"] == "im1.png"]
        assert ref["prompt_type"] == "box" and ref["prompt"]["box"] == BOX  # the dropped step is not undone
        second = undo().json()
        assert [r for r in second["references"] if r["image"] == "im1.png"] == []
        none_left = undo()
        assert none_left.status_code == 409 and "left to undo" in none_left.json()["detail"]


def test_damaged_undo_steps_in_session_json_are_left_out_with_one_note(client, sid):
    """A hand-edited ``session.json``: undo steps of the wrong form (a path as id, no image, a
    reference that is not one) are dropped, said once; the well-formed one stays undoable."""
    store = client.app_service.store
    path = store.root / "sessions" / sid / "session.json"
    record = json.loads(path.read_text())
    good = {"id": "0a1b2c", "image": "im1.png", "label": "shape", "fixed": False, "before": None}
    record["history"] = [good, {**good, "id": "../../x"}, {**good, "image": None}, {**good, "before": {"id": 1}}]
    path.write_text(json.dumps(record))
    loaded, notes = store.load(sid)
    assert loaded["history"] == [good]
    assert len(notes) == 1 and "damaged undo steps were left out" in notes[0]


def test_undo_steps_follow_a_renamed_class(client, sid):
    url = f"/api/sessions/{sid}/references"
    add_box(client, sid, "im2.png")
    square = np.zeros(SIZE, dtype=bool)
    square[2:9, 2:9] = True
    body = {"image": "im2.png", "label": "shape", "prompt": {"mask_png": png_b64(square)}}
    assert client.put(url, json=body).status_code == 200
    assert client.patch(f"/api/sessions/{sid}/classes/shape", json={"name": "form"}).status_code == 200
    undone = client.post(f"{url}/undo", json={"image": "im2.png", "label": "form"})
    assert undone.status_code == 200, undone.text
    (ref,) = [r for r in undone.json()["references"] if r["image"] == "im2.png"]
    assert (ref["label"], ref["prompt_type"]) == ("form", "box")
