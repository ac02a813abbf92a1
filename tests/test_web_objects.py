"""The web app's objects over HTTP (a real uvicorn server, the tiny model): listed per image, deleted,
merged, split and reviewed one by one, kept across a restart, refused on a stale revision, and exported
exactly as listed (pycocotools reads one annotation per object, with the listed areas and boxes).

The target's prediction is stubbed with known objects (the tiny model's weights are random): two
squares of one class, an object in two pieces (split by an occluder) and an object of another class.
"""

from __future__ import annotations

import base64
import io
import json
from contextlib import contextmanager

import numpy as np
import pytest
from PIL import Image
from test_web_api import add_box, export_files, propagate, write_image

from sansa.web.session import ObjectInfo, TargetResult

httpx = pytest.importorskip("httpx")
pytestmark = pytest.mark.slow

SIZE = (48, 64)  # H, W (test_web_api's images)
STUB = [  # the stubbed objects of im1.png: class, rows, columns (pieces)
    ("shape", [(slice(2, 12), slice(2, 12))]),  # 100 px
    ("shape", [(slice(2, 12), slice(20, 30))]),  # 100 px
    ("shape", [(slice(30, 40), slice(2, 9)), (slice(30, 40), slice(20, 27))]),  # 140 px, two pieces
    ("other", [(slice(20, 28), slice(40, 60))]),  # 160 px
]


def stub_objects(labels: list[str]) -> tuple[np.ndarray, np.ndarray, list[ObjectInfo]]:
    """``STUB`` as a label map, an object map and the objects' records."""
    label_map = np.zeros(SIZE, dtype=np.uint16)
    object_map = np.zeros(SIZE, dtype=np.uint16)
    for k, (label, pieces) in enumerate(STUB, start=1):
        for rows, cols in pieces:
            label_map[rows, cols] = labels.index(label) + 1
            object_map[rows, cols] = k
    return label_map, object_map, [ObjectInfo(label, 0.5 + 0.1 * k) for k, (label, _) in enumerate(STUB)]


@pytest.fixture()
def served(tiny_model, tmp_path):
    """``with served() as (http, service): ...``: a server on 4 images (restartable on the same folder)."""
    from sansa import SansaPredictor
    from sansa.web.app import create_app, serve_in_thread

    for i in range(4):
        write_image(tmp_path / f"im{i}.png", i)

    @contextmanager
    def server():
        app = create_app(SansaPredictor(tiny_model, device="cpu"), tmp_path)
        token = {"X-Sansa-Token": app.state.token}
        with serve_in_thread(app) as url, httpx.Client(base_url=url, headers=token, timeout=30) as http:
            yield http, app.state.service

    return server


def stubbed_session(http, service) -> str:
    """Classes ``shape`` and ``other``, a box reference on im0, im1's prediction stubbed, all propagated."""
    sid = http.get("/api/sessions/current").json()["session_id"]
    for name in ("shape", "other"):
        assert http.post(f"/api/sessions/{sid}/classes", json={"name": name}).status_code == 201
    add_box(http, sid)
    session = service.session(sid)
    labels = list(session.classes)
    label_map, object_map, infos = stub_objects(labels)
    scores = {"shape": 0.7, "other": 0.6}
    session.results["im1.png"] = TargetResult.pack(session.version, label_map, labels, scores, object_map, infos)
    service.save_result(session, "im1.png").result()  # on disk too, as propagation saves it
    assert propagate(http, sid)["state"] == "done"  # the others; im1's stub is current
    return sid


def target(http, sid: str, name: str = "im1.png") -> dict:
    response = http.get(f"/api/sessions/{sid}/targets/{name}")
    assert response.status_code == 200, response.text
    return response.json()


def edit(http, sid: str, body: dict, name: str = "im1.png") -> httpx.Response:
    revision = http.get(f"/api/sessions/{sid}").json()["revision"]
    return http.post(
        f"/api/sessions/{sid}/targets/{name}/objects", json=body, headers={"X-Sansa-Revision": str(revision)}
    )


def listed(out: dict) -> list[tuple[str, int]]:
    return [(o["label"], o["area"]) for o in out["objects"]]


def id_map(out: dict) -> np.ndarray:
    """The object ids of an answer's ``object_map_png`` (red + 256 * green)."""
    png = base64.b64decode(out["object_map_png"].split(",", 1)[1])
    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1]


def coco_objects(files: dict[str, bytes], name: str) -> list[tuple[str, int]]:
    """``(class, area)`` of each COCO annotation of image ``name``, checked against its RLE mask."""
    from pycocotools import mask as mask_utils

    coco = json.loads(files["annotations.json"])
    image_id = next(i["id"] for i in coco["images"] if i["file_name"] == name)
    names = {c["id"]: c["name"] for c in coco["categories"]}
    found = []
    for ann in coco["annotations"]:
        if ann["image_id"] == image_id:
            mask = mask_utils.decode(ann["segmentation"])
            assert int(mask.sum()) == ann["area"]
            ys, xs = np.nonzero(mask)
            assert ann["bbox"] == [xs.min(), ys.min(), xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()]
            found.append((names[ann["category_id"]], ann["area"]))
    return found


def test_objects_are_listed_edited_and_exported_as_listed(served):
    with served() as (http, service):
        sid = stubbed_session(http, service)
        out = target(http, sid)
        assert listed(out) == [("shape", 100), ("shape", 100), ("shape", 140), ("other", 160)]
        boxes = [[2, 2, 12, 12], [20, 2, 30, 12], [2, 30, 27, 40], [40, 20, 60, 28]]
        assert [o["box"] for o in out["objects"]] == boxes
        assert np.bincount(id_map(out).ravel()).tolist() == [3072 - 500, 100, 100, 140, 160]

        deleted = edit(http, sid, {"op": "delete", "ids": [2]})
        assert deleted.status_code == 200, deleted.text
        assert listed(deleted.json()) == [("shape", 100), ("shape", 140), ("other", 160)]
        assert deleted.json()["edited"] and deleted.headers["X-Sansa-Revision"]

        merged = edit(http, sid, {"op": "merge", "ids": [1, 2]}).json()
        assert listed(merged) == [("shape", 240), ("other", 160)]
        assert merged["objects"][0]["score"] == pytest.approx(0.7)  # the higher of the two

        across = edit(http, sid, {"op": "merge", "ids": [1, 2]})
        assert across.status_code == 409 and "only objects of one class merge" in across.json()["detail"]

        split = edit(http, sid, {"op": "split", "ids": [1], "point": [23, 35]}).json()  # on the far piece
        areas = [area for _, area in listed(split)]
        assert len(areas) == 3 and areas[0] + areas[2] == 240 and split["objects"][2]["label"] == "shape"
        assert id_map(split)[35, 23] == 3  # the part clicked is the new object

        rejected = edit(http, sid, {"op": "reject", "ids": [2]}).json()
        assert rejected["objects"][1]["state"] == "rejected"
        assert {c["label"]: c["area"] for c in rejected["classes"]}["other"] == 0  # not in what is exported
        shown = [(o["label"], o["area"]) for o in rejected["objects"] if o["state"] != "rejected"]

        files = export_files(http, sid, ["coco", "instances", "png"])
    assert sorted(coco_objects(files, "im1.png")) == sorted(shown)
    instances = np.asarray(Image.open(io.BytesIO(files["instances/im1.png"])))
    assert sorted(np.bincount(instances.ravel())[1:].tolist()) == sorted(a for _, a in shown)
    record = next(r for r in json.loads(files["images.json"]) if r["file_name"] == "im1.png")
    assert record["classes"]["shape"]["objects"] == 2 and "other" not in record["classes"]


def test_edits_survive_a_restart_and_stale_or_bad_edits_are_refused(served):
    with served() as (http, service):
        sid = stubbed_session(http, service)
        assert edit(http, sid, {"op": "delete", "ids": [4]}).status_code == 200
        old = http.get(f"/api/sessions/{sid}").json()["revision"] - 1
        stale = http.post(
            f"/api/sessions/{sid}/targets/im1.png/objects",
            json={"op": "delete", "ids": [1]},
            headers={"X-Sansa-Revision": str(old)},
        )
        assert stale.status_code == 409 and stale.json()["stale"]
        for body, status, words in [
            ({"op": "delete", "ids": [9]}, 404, "objects [9]: the image has objects 1 to 3"),
            ({"op": "merge", "ids": [1]}, 400, "merge: select two or more"),
            ({"op": "split", "ids": [1]}, 400, "split: select one object and click"),
            ({"op": "split", "ids": [1], "point": [60, 47]}, 400, "is not on object 1"),
            ({"op": "explode", "ids": [1]}, 422, "op"),
        ]:
            answer = edit(http, sid, body)
            assert (answer.status_code, words in answer.json()["detail"]) == (status, True), answer.text
        reference = edit(http, sid, {"op": "delete", "ids": [1]}, name="im0.png")
        assert reference.status_code == 409 and "is a reference" in reference.json()["detail"]
        before = listed(target(http, sid))
    with served() as (http, service):
        assert listed(target(http, sid)) == before == [("shape", 100), ("shape", 100), ("shape", 140)]
        assert edit(http, sid, {"op": "reset"}).status_code == 200
        assert len(target(http, sid)["objects"]) == 4  # back to the prediction


def test_object_options_pass_only_what_the_user_set(served):
    with served() as (http, service):
        sid = http.get("/api/sessions/current").json()["session_id"]
        version = http.get(f"/api/sessions/{sid}").json()["version"]
        state = http.put(f"/api/sessions/{sid}/objects/options", json={"min_area": 5, "max_objects": None})
        assert state.status_code == 200 and state.json()["object_options"] == {"min_area": 5}
        assert state.json()["version"] == version + 1  # the results are out of date
        options = service.session(sid).predictor.objects
        assert (options.min_area, options.max_objects) == (5, 100)  # the rest: the library's defaults
        bad = http.put(f"/api/sessions/{sid}/objects/options", json={"overlap": 2})
        assert bad.status_code == 422 and "overlap" in bad.json()["detail"]
    with served() as (http, service):
        assert http.get(f"/api/sessions/{sid}").json()["object_options"] == {"min_area": 5}
        assert service.session(sid).predictor.objects.min_area == 5
