"""The Label Studio ML backend without Label Studio: brush RLE, configs, results, backend state, HTTP, CLI.

(The run against a real Label Studio is tests/test_labelstudio_e2e.py.)
"""

from __future__ import annotations

import base64

import numpy as np
import pytest

from sansa.errors import SansaError
from sansa.export import brush_rle as rle
from sansa.labelstudio import LabelStudio, SansaBackend, parse_config
from sansa.labelstudio.results import annotation_prompts, mask_results

BRUSH = """<View><Image name="img" value="$photo"/>
<BrushLabels name="brush" toName="img"><Label value="cat"/><Label value="dog"/></BrushLabels></View>"""
MIXED = """<View><Image name="img" value="$photo"/><Text name="t" value="$text"/>
<RectangleLabels name="box" toName="img"><Label value="cat"/></RectangleLabels>
<PolygonLabels name="poly" toName="img"><Label value="dog"/></PolygonLabels>
<KeyPointLabels name="kp" toName="img"><Label value="bird"/></KeyPointLabels>
<Choices name="c" toName="img"><Choice value="x"/></Choices></View>"""


def _mask(height: int, width: int, *boxes: tuple[int, int, int, int]) -> np.ndarray:
    mask = np.zeros((height, width), dtype=bool)
    for x0, y0, x1, y1 in boxes:
        mask[y0:y1, x0:x1] = True
    return mask


# -- brush RLE ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "mask",
    [
        _mask(1, 1),
        _mask(1, 1, (0, 0, 1, 1)),
        _mask(3, 5, (1, 1, 4, 2)),
        _mask(40, 30, (0, 0, 30, 40)),
        _mask(300, 500, (10, 20, 400, 290), (0, 0, 1, 1)),  # runs longer than a 16-bit field holds
        np.random.default_rng(0).random((17, 23)) > 0.5,
    ],
    ids=["empty-1px", "full-1px", "small", "full", "long-runs", "noise"],
)
def test_brush_rle_round_trip(mask):
    """decode(encode(mask)) is the mask; the header says H*W*4 values of 8 bits."""
    encoded = rle.encode(mask)
    assert all(0 <= v <= 255 for v in encoded)
    assert np.array_equal(rle.decode(encoded, *mask.shape), mask)
    values = rle.decode_values(np.array(encoded, dtype=np.uint8))
    assert values.size == mask.size * 4 and set(np.unique(values)) <= {0, 255}


def test_brush_rle_known_bytes():
    """A 1x2 image, first pixel set: the bytes Label Studio's converter (mask2rle) writes for it."""
    # converter: header 32b count=8, 5b word 7, sizes 2,3,7,15; runs (4 x 255), (4 x 0)
    assert rle.encode(np.array([[True, False]])) == [0, 0, 0, 8, 57, 27, 252, 127, 241, 128, 0]


@pytest.mark.parametrize(
    "data, size, message",
    [
        ([0, 0, 0, 8, 57, 27, 252, 127, 241, 128, 0], (2, 2), "not 2x2x4"),
        ([0, 0, 0, 8, 57], (1, 2), "ends before"),
        (["x"], (1, 1), "byte values"),
    ],
)
def test_brush_rle_bad_input_is_one_line(data, size, message):
    with pytest.raises(SansaError, match=message):
        rle.decode(data, *size)


# -- config -------------------------------------------------------------------------------
def test_config_brush():
    config = parse_config(BRUSH)
    assert (config.image_name, config.image_key, config.labels) == ("img", "photo", ["cat", "dog"])
    assert config.control_for("dog").type == "brushlabels"


def test_config_mixed_controls_keep_order_and_skip_others():
    config = parse_config(MIXED)
    assert [(c.name, c.type) for c in config.controls] == [
        ("box", "rectanglelabels"),
        ("poly", "polygonlabels"),
        ("kp", "keypointlabels"),
    ]
    assert config.labels == ["cat", "dog", "bird"]


@pytest.mark.parametrize(
    "xml, message",
    [
        ("", "empty"),
        ("<View><Image", "not valid XML"),
        (
            '<View><Image name="i" value="$i"/><Choices name="c" toName="i"><Choice value="a"/></Choices></View>',
            "no BrushLabels",
        ),
        (
            '<View><Image name="i" value="i"/><BrushLabels name="b" toName="i"><Label value="a"/></BrushLabels></View>',
            "needs value",
        ),
    ],
)
def test_config_errors_are_one_line(xml, message):
    with pytest.raises(SansaError, match=message):
        parse_config(xml)


# -- results ------------------------------------------------------------------------------
def test_annotation_prompts_from_every_control_type():
    """Rectangle -> box, polygon -> mask, keypoints -> points (percent -> pixels); foreign results ignored."""
    config = parse_config(MIXED)
    results = [
        {
            "from_name": "box",
            "type": "rectanglelabels",
            "value": {"x": 10, "y": 20, "width": 50, "height": 25, "rectanglelabels": ["cat"]},
        },
        {
            "from_name": "poly",
            "type": "polygonlabels",
            "value": {"points": [[0, 0], [50, 0], [50, 50], [0, 50]], "polygonlabels": ["dog"]},
        },
        {"from_name": "kp", "type": "keypointlabels", "value": {"x": 50, "y": 50, "keypointlabels": ["bird"]}},
        {"from_name": "kp", "type": "keypointlabels", "value": {"x": 25, "y": 75, "keypointlabels": ["bird"]}},
        {"from_name": "c", "type": "choices", "value": {"choices": ["x"]}},
        {
            "from_name": "box",
            "type": "rectanglelabels",
            "value": {"x": 0, "y": 0, "width": 5, "height": 5, "rectanglelabels": ["not-a-class"]},
        },
    ]
    prompts = annotation_prompts(results, config, height=40, width=20)
    assert [(p.label, p.prompt.type.value) for p in prompts] == [("dog", "mask"), ("cat", "box"), ("bird", "point")]
    assert prompts[1].prompt.box.tolist() == [2.0, 8.0, 12.0, 18.0]
    assert prompts[2].prompt.points.tolist() == [[10.0, 20.0], [5.0, 30.0]]
    assert prompts[0].prompt.mask[:20, :10].all() and not prompts[0].prompt.mask[25:, 15:].any()


def test_brush_results_of_one_class_merge():
    config = parse_config(BRUSH)
    a, b = _mask(8, 8, (0, 0, 2, 2)), _mask(8, 8, (5, 5, 8, 8))
    results = [
        {
            "from_name": "brush",
            "type": "brushlabels",
            "original_width": 8,
            "original_height": 8,
            "value": {"format": "rle", "rle": rle.encode(m), "brushlabels": ["cat"]},
        }
        for m in (a, b)
    ]
    (prompt,) = annotation_prompts(results, config, 8, 8)
    assert np.array_equal(prompt.prompt.mask, a | b)


def test_brush_of_another_size_is_refused():
    config = parse_config(BRUSH)
    result = {
        "from_name": "brush",
        "type": "brushlabels",
        "original_width": 4,
        "original_height": 4,
        "id": "r1",
        "value": {"format": "rle", "rle": rle.encode(_mask(4, 4, (0, 0, 2, 2))), "brushlabels": ["cat"]},
    }
    with pytest.raises(SansaError, match="r1: brush is 4x4, image 8x8"):
        annotation_prompts([result], config, 8, 8)


@pytest.mark.parametrize("xml, kind", [(BRUSH, "brushlabels"), (MIXED, "rectanglelabels")])
def test_mask_results_in_the_controls_type(xml, kind):
    config = parse_config(xml)
    mask = _mask(20, 40, (4, 2, 14, 10), (30, 12, 36, 18))
    results = mask_results(mask, "cat", config.control_for("cat"), score=0.8)
    assert all(r["type"] == kind and r["value"][kind] == ["cat"] and r["score"] == 0.8 for r in results)
    if kind == "brushlabels":
        (result,) = results
        assert np.array_equal(rle.decode(result["value"]["rle"], 20, 40), mask)
    else:
        boxes = [[r["value"][k] for k in ("x", "y", "width", "height")] for r in results]
        assert boxes == [[10.0, 10.0, 25.0, 40.0], [75.0, 60.0, 15.0, 30.0]]
    assert mask_results(np.zeros((3, 3), bool), "cat", config.control_for("cat")) == []


def test_polygon_and_keypoint_results():
    config = parse_config(MIXED)
    mask = _mask(10, 10, (0, 0, 5, 5))
    (polygon,) = mask_results(mask, "dog", config.control_for("dog"))
    points = np.array(polygon["value"]["points"])
    assert polygon["type"] == "polygonlabels" and 0.0 <= points.min() and points.max() <= 50.0
    (back,) = annotation_prompts([polygon], config, 10, 10)  # the backend reads its own polygons back exactly
    assert np.array_equal(back.prompt.mask, mask)
    (point,) = mask_results(mask, "bird", config.control_for("bird"))
    assert (point["value"]["x"], point["value"]["y"]) == (25.0, 25.0)


# -- backend state (a fake Label Studio) --------------------------------------------------
class FakeLabelStudio(LabelStudio):
    """Images and tasks from dicts; counts what was fetched."""

    def __init__(self, images: dict[str, np.ndarray], tasks: dict[int, dict]) -> None:
        super().__init__("http://127.0.0.1:1", "token")
        self.images, self.tasks, self.fetched = images, tasks, []

    def image(self, source: str) -> np.ndarray:
        self.fetched.append(source)
        if source not in self.images:
            raise SansaError(f"{source}: no such image")
        return self.images[source]

    def annotated_tasks(self, project: int) -> list[dict]:
        return [t for t in self.tasks.values() if t.get("annotations")]

    def task(self, task_id: int) -> dict:
        return self.tasks[task_id]


def _brush_annotation(annotation_id: int, mask: np.ndarray, label: str = "cat") -> dict:
    return {
        "id": annotation_id,
        "result": [
            {
                "from_name": "brush",
                "to_name": "img",
                "type": "brushlabels",
                "original_width": mask.shape[1],
                "original_height": mask.shape[0],
                "value": {"format": "rle", "rle": rle.encode(mask), "brushlabels": [label]},
            }
        ],
    }


@pytest.fixture()
def fake():
    rng = np.random.default_rng(0)
    images = {f"/data/upload/1/{i}.png": rng.integers(0, 255, (32, 48, 3), dtype=np.uint8) for i in range(3)}
    tasks = {i + 1: {"id": i + 1, "data": {"photo": f"/data/upload/1/{i}.png"}, "annotations": []} for i in range(3)}
    tasks[1]["annotations"] = [_brush_annotation(11, _mask(32, 48, (5, 5, 20, 20)))]
    return FakeLabelStudio(images, tasks)


def test_backend_encodes_once_and_updates_on_webhook(tiny_model, fake):
    """References come from annotations, are encoded once, and change (with model_version) on webhooks."""
    backend = SansaBackend(tiny_model, fake, device="cpu", model_name="tiny")
    version = backend.setup("1.1700000000", BRUSH)
    predictions = backend.predict([fake.tasks[2], fake.tasks[3]], "1.1700000000")
    assert len(predictions) == 2 and all(p["model_version"] == version for p in predictions)
    assert fake.fetched.count("/data/upload/1/0.png") == 1  # the reference image, encoded once
    backend.predict([fake.tasks[3]], "1.1700000000")
    assert fake.fetched.count("/data/upload/1/0.png") == 1
    assert backend.setup("1.1700000000", BRUSH) == version  # nothing changed

    fake.tasks[2]["annotations"] = [_brush_annotation(12, _mask(32, 48, (0, 0, 8, 8)), "dog")]
    answer = backend.webhook({"action": "ANNOTATION_CREATED", "project": {"id": 1}, "task": {"id": 2}})
    assert answer["status"] == "ok" and answer["model_version"] != version
    backend.predict([fake.tasks[3]], "1.1700000000")
    assert [r.label for r in backend.projects[1].predictor.references] == ["cat", "dog"]
    assert fake.fetched.count("/data/upload/1/0.png") == 1  # the unchanged reference is not re-encoded

    backend.webhook({"action": "ANNOTATIONS_DELETED", "project": {"id": 1}, "annotations": [{"id": 11}]})
    fake.tasks[1]["annotations"] = []
    backend.webhook({"action": "ANNOTATIONS_DELETED", "project": {"id": 1}, "annotations": [{"id": 11}]})
    backend.predict([fake.tasks[3]], "1.1700000000")
    assert [r.label for r in backend.projects[1].predictor.references] == ["dog"]


def test_backend_without_references_or_with_broken_images(tiny_model, fake):
    """No annotation: no prediction at all; an unreadable task image: an empty prediction, the others go on."""
    fake.tasks[1]["annotations"] = []
    backend = SansaBackend(tiny_model, fake, device="cpu")
    backend.setup("1.1", BRUSH)
    assert backend.predict([fake.tasks[2]], "1.1") == []
    fake.tasks[1]["annotations"] = [_brush_annotation(11, _mask(32, 48, (5, 5, 20, 20)))]
    broken = {"id": 9, "data": {"photo": "/data/upload/1/missing.png"}}
    predictions = backend.predict([broken, fake.tasks[1], fake.tasks[3]], "1.1")
    assert predictions[0]["result"] == [] and len(predictions) == 3


def test_webhook_for_unknown_project_or_action_is_ignored(tiny_model, fake):
    backend = SansaBackend(tiny_model, fake, device="cpu")
    assert backend.webhook({"action": "ANNOTATION_CREATED", "project": {"id": 7}})["status"] == "ignored"
    backend.setup("7.1", BRUSH)
    assert backend.webhook({"action": "TASKS_CREATED", "project": {"id": 7}})["status"] == "ignored"


@pytest.mark.parametrize(
    "payload",
    [
        {"action": "ANNOTATION_CREATED", "project": {"id": 1}, "task": {"id": "1; drop"}},
        {"action": "ANNOTATION_CREATED", "project": {"id": 1}, "task": "x", "annotation": [1]},
        {"action": "ANNOTATIONS_DELETED", "project": {"id": 1}, "annotations": [{"id": None}, "x", {"id": -3}]},
        {"action": "ANNOTATIONS_DELETED", "project": {"id": 1}, "annotations": {"id": 11}},
        {"action": "ANNOTATION_UPDATED", "project": "1.x"},
    ],
)
def test_hostile_webhooks_change_nothing(tiny_model, fake, payload):
    """Malformed events from anyone are ignored: no error, no lost reference, the same model_version."""
    backend = SansaBackend(tiny_model, fake, device="cpu")
    version = backend.setup("1.1", BRUSH)
    assert backend.webhook(payload)["status"] in ("ok", "ignored")
    assert backend.model_version(1) == version and list(backend.projects[1].annotations) == [11]


def test_untrusted_webhook_without_label_studio_changes_nothing(tiny_model):
    """Without an API connection a webhook is used only when it carried the secret."""
    backend = SansaBackend(tiny_model, LabelStudio(), device="cpu")
    backend.setup("3.1", BRUSH)
    version = backend.model_version(3)
    event = {
        "action": "ANNOTATION_CREATED",
        "project": {"id": 3},
        "task": {"id": 1, "data": {"photo": "a.png"}},
        "annotation": _brush_annotation(5, _mask(4, 4, (0, 0, 2, 2))),
    }
    backend.webhook(event, trusted=False)
    assert backend.model_version(3) == version
    backend.webhook(event, trusted=True)
    assert backend.model_version(3) != version


# -- HTTP ---------------------------------------------------------------------------------
def test_server_routes_and_secret(tiny_model, fake):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from sansa.labelstudio.server import create_app

    client = TestClient(create_app(SansaBackend(tiny_model, fake, device="cpu"), secret="s3cret"))
    auth = {"Authorization": "Basic " + base64.b64encode(b"any:s3cret").decode()}
    assert client.get("/health").json()["status"] == "UP"
    assert client.post("/setup", json={"project": "1.1", "schema": BRUSH}).status_code == 401
    assert (
        client.post(
            "/setup", json={"project": "1.1", "schema": BRUSH}, headers={"Authorization": "Basic !!!"}
        ).status_code
        == 401
    )
    version = client.post("/setup", json={"project": "1.1", "schema": BRUSH}, headers=auth).json()["model_version"]
    answer = client.post("/predict", json={"project": "1.1", "tasks": [fake.tasks[2]]}, headers=auth).json()
    assert answer["model_version"] == version and len(answer["results"]) == 1
    bad = client.post("/setup", json={"project": "1.1", "schema": "<View"}, headers=auth)
    assert bad.status_code == 400 and bad.json() == {"error": bad.json()["error"]} and "XML" in bad.json()["error"]
    assert client.post("/predict", json={"project": "1.1", "tasks": "x"}, headers=auth).status_code == 400
    assert client.post("/webhook", json={"action": "X", "project": {"id": 1}}).status_code == 201


# -- CLI ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args, message",
    [
        (["--host", "0.0.0.0"], "needs a shared secret"),
        (["--port", "70000"], "not a port number"),
        (["--local-files-root", "/no/such/folder"], "not a folder"),
    ],
)
def test_cli_refuses_unsafe_or_wrong_options_in_one_line(args, message, monkeypatch, capsys):
    """Checked before the model loads: exit 2 and one line naming the option, no traceback."""
    from sansa.cli import main

    monkeypatch.delenv("SANSA_LABEL_STUDIO_SECRET", raising=False)
    assert main(["label-studio", *args, "--backbone", "test_tiny", "--random-weights"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


# -- the labelstudio export format --------------------------------------------------------
def test_export_format_writes_tasks_and_config(tmp_path):
    """tasks.json: one task per image (URL-quoted local-files path), one brush region per class present,
    decoding to the label map; config.xml fits the results, odd class names included; reruns give equal bytes."""
    import json

    from sansa.export import FolderWriter

    labels = ['cat "big" & <co>', "dog"]
    label_map = np.zeros((6, 8), np.uint16)
    label_map[1:3, 1:4], label_map[4:, 5:] = 1, 2
    outputs = []
    for run in ("first", "second"):
        out = tmp_path / run
        with FolderWriter(out, labels, ["labelstudio"]) as writer:
            writer.write("sub/a b.png", np.zeros((6, 8, 3), np.uint8), label_map, labels, {labels[0]: 0.9, "dog": 0.5})
            writer.write("empty.png", np.zeros((2, 2, 3), np.uint8), np.zeros((2, 2), np.uint16), labels, {})
        outputs.append((out / "labelstudio" / "tasks.json").read_bytes())
    assert outputs[0] == outputs[1]
    tasks = json.loads(outputs[0])
    assert [t["data"]["image"] for t in tasks] == [
        "/data/local-files/?d=empty.png",
        "/data/local-files/?d=sub/a%20b.png",
    ]
    assert tasks[0]["annotations"][0]["result"] == []
    config = parse_config((tmp_path / "first" / "labelstudio" / "config.xml").read_text())
    assert config.labels == labels and config.image_key == "image"
    regions = tasks[1]["annotations"][0]["result"]
    assert [(r["from_name"], r["to_name"], r["value"]["brushlabels"], r["score"]) for r in regions] == [
        ("label", "image", [labels[0]], 0.9),
        ("label", "image", ["dog"], 0.5),
    ]
    for class_id, region in enumerate(regions, start=1):
        assert np.array_equal(rle.decode(region["value"]["rle"], 6, 8), label_map == class_id)
    prompts = annotation_prompts(regions, config, 6, 8)  # the backend reads what the export writes
    assert [p.label for p in prompts] == labels


def test_setup_survives_an_unreachable_label_studio(tiny_model):
    """A refused token or a down API at /setup is a logged warning, not a failed connection: the
    annotations sent with the tasks to predict still become references."""
    backend = SansaBackend(tiny_model, LabelStudio("http://127.0.0.1:9", "token"), device="cpu")
    version = backend.setup("4.1", BRUSH)
    assert version.startswith("sansa-") and not backend.projects[4].synced
    task = {"id": 1, "data": {"photo": "/x.png"}, "annotations": [_brush_annotation(3, _mask(4, 4, (0, 0, 2, 2)))]}
    assert backend.predict([task], "4.1") == []  # its image cannot be read: no reference, no prediction
    assert backend.model_version(4) != version  # but the annotation is known


def test_cli_serves_the_backend(tmp_path):
    """`sansa label-studio` starts on the given loopback port, answers /health, and wants the secret."""
    import os
    import socket
    import subprocess
    import sys
    import time

    import httpx

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "SANSA_LABEL_STUDIO_SECRET": "from-env"}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sansa",
            "label-studio",
            "--port",
            str(port),
            "--backbone",
            "test_tiny",
            "--random-weights",
            "--device",
            "cpu",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 120
        while True:
            assert process.poll() is None, process.stdout.read()
            assert time.monotonic() < deadline, "the backend did not start in 120 s"
            try:
                health = httpx.get(f"{url}/health", timeout=2)
                break
            except httpx.HTTPError:
                time.sleep(0.3)
        assert health.json()["status"] == "UP"
        body = {"project": "1.1", "schema": BRUSH}
        assert httpx.post(f"{url}/setup", json=body).status_code == 401
        answer = httpx.post(f"{url}/setup", json=body, auth=("x", "from-env"))
        assert answer.status_code == 200 and answer.json()["model_version"].startswith("sansa-")
    finally:
        process.terminate()
        process.wait(timeout=30)


# -- reading from Label Studio ------------------------------------------------------------
@pytest.fixture()
def http_servers():
    """Two loopback HTTP servers serving one PNG; each records the Authorization headers it got."""
    import http.server
    import io
    import threading

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.full((4, 6, 3), 200, np.uint8)).save(buffer, format="PNG")
    servers = []
    for _ in range(2):
        seen: list[str | None] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            got = seen

            def do_GET(self):  # noqa: N802 (http.server's name)
                self.got.append(self.headers.get("Authorization"))
                if self.path.startswith("/private") and self.headers.get("Authorization") != "Token good":
                    self.send_error(401, "Unauthorized")
                    return
                self.send_response(200)
                self.end_headers()
                self.wfile.write(buffer.getvalue())

            def log_message(self, *args):
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append((f"http://127.0.0.1:{server.server_address[1]}", seen, server))
    yield servers
    for _, _, server in servers:
        server.shutdown()


def test_token_goes_to_label_studio_only(http_servers):
    """Label Studio paths and URLs get the token; another host's URL never sees it; a refused token is one line."""
    (ls_url, ls_seen, _), (other_url, other_seen, _) = http_servers
    remote = LabelStudio(ls_url, "good")
    assert remote.image("/private/data/upload/1/a.png").shape == (4, 6, 3)
    assert remote.image(f"{other_url}/public/b.png?sig=1").shape == (4, 6, 3)
    assert ls_seen == ["Token good"] and other_seen == [None]
    with pytest.raises(SansaError, match=r"private/c.png: Label Studio answered 401 .*check the API token"):
        LabelStudio(ls_url, "bad").image("/private/c.png")


def test_local_files_read_from_disk_inside_the_root_only(tmp_path, http_servers):
    """--local-files-root: files under it are read from disk; `..` out of it goes to Label Studio instead."""
    from PIL import Image

    (ls_url, ls_seen, _), _ = http_servers
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    Image.fromarray(np.zeros((2, 3, 3), np.uint8)).save(root / "sub" / "x.png")
    Image.fromarray(np.zeros((5, 5, 3), np.uint8)).save(tmp_path / "secret.png")
    remote = LabelStudio(ls_url, "good", local_files_root=root)
    assert remote.image("/data/local-files/?d=sub/x.png").shape == (2, 3, 3) and ls_seen == []
    assert remote.image("/data/local-files/?d=../secret.png").shape == (4, 6, 3)  # Label Studio's answer
    assert len(ls_seen) == 1
