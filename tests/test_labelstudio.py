"""The Label Studio ML backend without Label Studio: brush RLE, configs, results, backend state, HTTP, CLI.

(The run against a real Label Studio is tests/test_labelstudio_e2e.py.)
"""

from __future__ import annotations

import base64

import numpy as np
import pytest

from sansa.errors import RemoteError, SansaError
from sansa.export import brush_rle as rle
from sansa.labelstudio import LabelStudio, SansaBackend, parse_config
from sansa.labelstudio.backend import BackendOptions
from sansa.labelstudio.results import annotation_prompts, control_results, segmentation_results
from sansa.records import ObjectOptions, Prediction, Segmentation, SegmentedObject

BRUSH = """<View><Image name="img" value="$photo"/>
<BrushLabels name="brush" toName="img"><Label value="cat"/><Label value="dog"/></BrushLabels></View>"""
INTERACTIVE = """<View><Image name="img" value="$photo"/>
<BrushLabels name="brush" toName="img"><Label value="cat"/></BrushLabels>
<KeyPointLabels name="click" toName="img" smart="true"><Label value="cat" smart="true"/></KeyPointLabels>
<RectangleLabels name="drag" toName="img" smart="true"><Label value="cat"/></RectangleLabels></View>"""
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
        ([0, 0, 0, 8, 57, 27, 252, 127, 241, 128, 0], (2, 2), "holds 8 values, not the image's H x W x 4 = 16"),
        ([0, 0, 0, 8, 57], (1, 2), "ends before"),
        (["x"], (1, 1), "byte values"),
    ],
)
def test_brush_rle_bad_input_is_one_line(data, size, message):
    with pytest.raises(SansaError, match=message):
        rle.decode(data, *size)


def test_brush_rle_header_is_bounded_before_allocating():
    """A header claiming 4 billion values on a 2x2 image is refused before anything is allocated."""
    import tracemalloc

    crafted = [255, 255, 255, 255, 57, 27, 252, 127, 241, 128, 0]  # count = 2**32 - 1
    tracemalloc.start()
    try:
        with pytest.raises(SansaError, match="not the image's H x W x 4 = 16"):
            rle.decode(crafted, 2, 2)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, f"decoding a crafted header allocated {peak} bytes"


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


@pytest.mark.parametrize(
    "result, error",
    [
        (
            {"from_name": "box", "type": "rectanglelabels", "value": {"x": 1, "y": 2, "rectanglelabels": ["cat"]}},
            "KeyError",
        ),
        ({"from_name": "box", "type": "rectanglelabels", "value": ["cat"]}, "AttributeError"),
        (
            {"from_name": "kp", "type": "keypointlabels", "value": {"x": "a", "y": 1, "keypointlabels": ["bird"]}},
            "ValueError",
        ),
        ({"from_name": "kp", "type": "keypointlabels", "value": {"x": 1, "y": 1, "keypointlabels": 5}}, "TypeError"),
        (
            {
                "from_name": "poly",
                "type": "polygonlabels",
                "value": {"points": [[0, 0], [5]], "polygonlabels": ["dog"]},
            },
            "ValueError",
        ),
    ],
    ids=["rectangle-without-width", "value-a-list", "keypoint-x-text", "labels-a-number", "ragged-polygon"],
)
def test_malformed_annotation_results_are_one_line(result, error):
    """A hand-made or foreign result Label Studio stored as sent: one line naming the result, never a bare
    exception (the backend then leaves that annotation out instead of failing every task)."""
    with pytest.raises(SansaError, match=rf"^result r9: not a readable {result['type']} region \({error}"):
        annotation_prompts([{**result, "id": "r9"}], parse_config(MIXED), 40, 20)


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


def _segmentation(label_map: np.ndarray, labels: list[str], objects=()) -> Segmentation:
    predictions = {
        label: Prediction(np.where(label_map == i, 1.0, -1.0), 0.5, label) for i, label in enumerate(labels, 1)
    }
    return Segmentation(predictions, labels, label_map.astype(np.uint16), "t", list(objects))


@pytest.mark.parametrize("xml, kind", [(BRUSH, "brushlabels"), (MIXED, "rectanglelabels")])
def test_one_region_per_object_in_the_controls_type(xml, kind):
    """Two separate parts of one class (no objects filled in): two regions, each decoding to its part."""
    config = parse_config(xml)
    first, second = _mask(20, 40, (4, 2, 14, 10)), _mask(20, 40, (30, 12, 36, 18))
    results, score = segmentation_results(_segmentation((first | second).astype(np.uint16), ["cat"]), config)
    assert score == 0.5 and len(results) == 2
    assert all(r["type"] == kind and r["value"][kind] == ["cat"] and r["score"] == 0.5 for r in results)
    if kind == "brushlabels":
        masks = [rle.decode(r["value"]["rle"], 20, 40) for r in results]
        assert np.array_equal(masks[0], first) and np.array_equal(masks[1], second)
    else:
        boxes = [[r["value"][k] for k in ("x", "y", "width", "height")] for r in results]
        assert boxes == [[10.0, 10.0, 25.0, 40.0], [75.0, 60.0, 15.0, 30.0]]
    empty = SegmentedObject("cat", np.zeros((3, 3), bool), np.zeros(4, np.float32), 0.5)
    assert control_results("t", [empty], config.control_for("cat")) == []


@pytest.mark.parametrize(
    "areas, min_area, max_objects, kept",
    [
        ((30, 12, 4), 16, 100, [30]),  # under min_area: no region
        ((30, 20, 18), 1, 2, [30, 20]),  # the cap keeps the best-scoring
        ((30, 20, 18), 1, 100, [30, 20, 18]),
    ],
)
def test_objects_min_area_and_cap(areas, min_area, max_objects, kept):
    """Segmentation.objects (touching objects stay apart): one region each, small ones out, at most the cap."""
    config = parse_config(BRUSH)
    label_map = np.zeros((10, 40), np.uint16)
    objects, x = [], 0
    for index, area in enumerate(areas):
        mask = np.zeros((10, 40), bool)
        mask.flat[np.ravel_multi_index(np.unravel_index(np.arange(area), (10, 4)), (10, 40)) + x] = True
        label_map[mask] = 1
        objects.append(SegmentedObject("cat", mask, np.array([x, 0, x + 4, 10], np.float32), 0.9 - index / 10))
        x += 4  # touching: one connected part, still separate objects
    options = ObjectOptions(min_area=min_area, max_objects=max_objects)
    results, _ = segmentation_results(_segmentation(label_map, ["cat"], objects), config, options)
    assert [int(rle.decode(r["value"]["rle"], 10, 40).sum()) for r in results] == kept


def test_polygon_and_keypoint_results():
    config = parse_config(MIXED)
    mask = _mask(10, 10, (0, 0, 5, 5))
    (polygon,) = control_results(
        "t", [SegmentedObject("dog", mask, np.array([0, 0, 5, 5], np.float32), 0.5)], config.control_for("dog")
    )
    points = np.array(polygon["value"]["points"])
    assert polygon["type"] == "polygonlabels" and 0.0 <= points.min() and points.max() <= 50.0
    (back,) = annotation_prompts([polygon], config, 10, 10)  # the backend reads its own polygons back exactly
    assert np.array_equal(back.prompt.mask, mask)
    (point,) = control_results(
        "t", [SegmentedObject("bird", mask, np.array([0, 0, 5, 5], np.float32), 0.5)], config.control_for("bird")
    )
    assert (point["value"]["x"], point["value"]["y"]) == (25.0, 25.0)


def test_smart_tools_are_prompts_not_outputs():
    """A class with a brush and a smart keypoint tool is written as brush; the smart clicks are no reference."""
    config = parse_config(INTERACTIVE)
    assert config.control_for("cat").type == "brushlabels"
    click = {
        "from_name": "click",
        "to_name": "img",
        "type": "keypointlabels",
        "value": {"x": 50, "y": 50, "keypointlabels": ["cat"]},
    }
    assert annotation_prompts([click], config, 10, 10) == []


class FakeLabelStudio(LabelStudio):
    """Images, tasks and stored predictions in dicts; records what was fetched and posted."""

    def __init__(self, images: dict[str, np.ndarray], tasks: dict[int, dict]) -> None:
        super().__init__("http://127.0.0.1:1", "token")
        self.images, self.tasks, self.fetched = images, tasks, []
        self.stored: dict[int, list[dict]] = {}  # task id -> predictions (each with an "id")
        self.deleted: list[int] = []

    def check(self, project: int) -> None:
        pass

    def image(self, source: str, task_id: int | None = None) -> np.ndarray:
        self.fetched.append(source)
        if source not in self.images:
            raise SansaError(f"{source}: no such image")
        return self.images[source]

    def post_prediction(self, task_id: int, prediction: dict) -> None:
        ids = [p["id"] for stored in self.stored.values() for p in stored]
        self.stored.setdefault(task_id, []).append({**prediction, "id": max(ids, default=0) + 1})

    def predictions(self, task_id: int) -> list[dict]:
        return list(self.stored.get(task_id, []))

    def delete_prediction(self, prediction_id: int) -> None:
        self.deleted.append(prediction_id)
        for stored in self.stored.values():
            stored[:] = [p for p in stored if p["id"] != prediction_id]

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
    answers = backend.predict([fake.tasks[2], fake.tasks[3]], "1.1700000000")
    assert len(answers) == 2 and all(len(a) == 1 and a[0]["model_version"] == version for a in answers)
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


def test_backend_without_references_or_with_broken_images(tiny_model, fake, caplog):
    """No annotation: no prediction at all, and the log says why. A missing image: no prediction (never
    an empty one marked with the version), the task named in /failures, the others go on; once the image
    is back, the same request predicts it."""
    import logging

    fake.tasks[1]["annotations"] = []
    backend = SansaBackend(tiny_model, fake, device="cpu")
    backend.setup("1.1", BRUSH)
    with caplog.at_level(logging.WARNING, logger="sansa.labelstudio"):
        assert backend.predict([fake.tasks[2]], "1.1") == [[]]
    assert "project 1: 1 tasks get no prediction: the project has no submitted annotation yet" in caplog.text
    fake.tasks[1]["annotations"] = [_brush_annotation(11, _mask(32, 48, (5, 5, 20, 20)))]
    broken = {"id": 9, "data": {"photo": "/data/upload/1/missing.png"}}
    answers = backend.predict([broken, fake.tasks[1], fake.tasks[3]], "1.1")
    assert answers[0] == [] and [len(a) for a in answers[1:]] == [1, 1]
    assert list(backend.failures(1)) == [9] and "missing.png: no such image" in backend.failures(1)[9]
    fake.images["/data/upload/1/missing.png"] = fake.images["/data/upload/1/0.png"]
    (again,) = backend.predict([broken], "1.1")
    assert len(again) == 1 and again[0]["model_version"] == backend.model_version(1) and backend.failures(1) == {}


def test_malformed_annotation_is_left_out_and_the_others_predict(tiny_model, fake, caplog):
    """An annotation with an unreadable region (a rectangle without its size, from an import script) is
    left out with a line in the log; the other references still predict every task."""
    import logging

    fake.tasks[2]["annotations"] = [
        {"id": 12, "result": [{"id": "r9", "from_name": "brush", "type": "brushlabels", "value": ["cat"]}]}
    ]
    backend = SansaBackend(tiny_model, fake, device="cpu")
    version = backend.setup("1.1", BRUSH)
    with caplog.at_level(logging.WARNING, logger="sansa.labelstudio"):
        (answer,) = backend.predict([fake.tasks[3]], "1.1")
    assert len(answer) == 1 and answer[0]["model_version"] == version and backend.failures(1) == {}
    assert [r.label for r in backend.projects[1].predictor.references] == ["cat"]  # annotation 11's
    assert "annotation 12 of task 2 left out: result r9: not a readable brushlabels region" in caplog.text


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
    missing = client.get("/failures", headers=auth)
    assert missing.status_code == 400 and missing.json() == {"error": "project: missing from the query string"}


# -- CLI ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args, message",
    [
        (["--host", "0.0.0.0"], "needs a shared secret"),
        (["--port", "70000"], "not a port number"),
        (["--local-files-root", "/no/such/folder"], "not a folder"),
        ([], "--label-studio-url: Label Studio's address is needed"),
        (["--label-studio-url", "ftp://x"], "expected http://HOST:PORT"),
        (["--label-studio-url", "http://x", "--answer-within", "0"], "--answer-within: must be more than 0"),
        (["--label-studio-url", "http://x", "--allow-host", "a b"], "--allow-host 'a b'"),
    ],
)
def test_cli_refuses_unsafe_or_wrong_options_in_one_line(args, message, monkeypatch, capsys):
    """Checked before the model loads: exit 2 and one line naming the option, no traceback."""
    from sansa.cli import main

    monkeypatch.delenv("SANSA_LABEL_STUDIO_SECRET", raising=False)
    monkeypatch.delenv("LABEL_STUDIO_URL", raising=False)
    assert main(["label-studio", *args, "--backbone", "test_tiny", "--random-weights"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


# -- the labelstudio export format --------------------------------------------------------
def test_export_paths_relative_to_label_studios_document_root(tmp_path):
    """labelstudio_root: each task's ?d= path is its file relative to Label Studio's document root (the
    local-files recipe); a file outside the root, or a root that is no folder, is one line."""
    import json

    from PIL import Image

    from sansa.export import FolderWriter

    root = tmp_path / "root"
    (root / "photos" / "sub").mkdir(parents=True)
    label_map = np.zeros((4, 4), np.uint16)
    label_map[:2, :2] = 1
    image = np.zeros((4, 4, 3), np.uint8)
    for path in (root / "photos" / "sub" / "a b.png", tmp_path / "x.png"):
        Image.fromarray(image).save(path)
    with FolderWriter(tmp_path / "out", ["cat"], ["labelstudio"], labelstudio_root=root) as writer:
        writer.write("sub/a b.png", image, label_map, ["cat"], {"cat": 0.9}, source=root / "photos" / "sub" / "a b.png")
    tasks = json.loads((tmp_path / "out" / "labelstudio" / "tasks.json").read_text())
    assert [t["data"]["image"] for t in tasks] == ["/data/local-files/?d=photos/sub/a%20b.png"]
    with pytest.raises(SansaError, match="not under labelstudio_root"):
        with FolderWriter(tmp_path / "out2", ["cat"], ["labelstudio"], labelstudio_root=root) as writer:
            writer.write("x.png", image, label_map, ["cat"], {}, source=tmp_path / "x.png")
    with pytest.raises(SansaError, match="is not a folder"):
        FolderWriter(tmp_path / "out3", ["cat"], ["labelstudio"], labelstudio_root=tmp_path / "nope")


def test_export_format_writes_tasks_and_config(tmp_path):
    """tasks.json: one task per image (URL-quoted local-files path), one brush region per class present
    (a result without objects), decoding to the label map, as a prediction with a model version (the
    tasks stay unlabelled); config.xml fits the results, odd class names included; reruns give equal bytes."""
    import json

    from sansa._version import __version__
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
    assert all("annotations" not in t and len(t["predictions"]) == 1 for t in tasks)
    assert tasks[0]["predictions"][0] == {"model_version": f"sansa-{__version__}", "score": 0.0, "result": []}
    config = parse_config((tmp_path / "first" / "labelstudio" / "config.xml").read_text())
    assert config.labels == labels and config.image_key == "image"
    regions = tasks[1]["predictions"][0]["result"]
    assert tasks[1]["predictions"][0]["score"] == pytest.approx(0.7)
    assert [(r["from_name"], r["to_name"], r["value"]["brushlabels"], r["score"]) for r in regions] == [
        ("label", "image", [labels[0]], 0.9),
        ("label", "image", ["dog"], 0.5),
    ]
    for class_id, region in enumerate(regions, start=1):
        assert np.array_equal(rle.decode(region["value"]["rle"], 6, 8), label_map == class_id)
    prompts = annotation_prompts(regions, config, 6, 8)  # the backend reads what the export writes
    assert [p.label for p in prompts] == labels


def test_setup_fails_when_label_studio_refuses_or_is_unreachable(tiny_model, http_servers):
    """A wrong token or a dead address fails /setup (Label Studio shows the connection as failed, with the
    reason); no token at all too. Nothing is half-connected."""
    (ls_url, _, _), _ = http_servers
    cases = [
        (LabelStudio("http://127.0.0.1:9", "token"), "cannot be reached"),
        (LabelStudio(ls_url + "/private", "wrong"), "answered 401 .*check the API token"),
        (LabelStudio(ls_url), "API token is unknown"),
    ]
    for remote, message in cases:
        backend = SansaBackend(tiny_model, remote, device="cpu")
        with pytest.raises(RemoteError, match=message):
            backend.setup("4.1", BRUSH)
        assert not backend.projects[4].synced


def test_cli_serves_the_backend(tmp_path):
    """`sansa label-studio` starts on the given loopback port, says what current Label Studio needs
    (ML_BLOCK_LOCAL_IP, SSRF_PROTECTION_ENABLED), answers /health, wants the secret, and fails /setup
    in one line while Label Studio cannot be reached."""
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
            "--label-studio-url",
            "http://127.0.0.1:9",
            "--label-studio-token",
            "t0ken",
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
        url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 300
        while True:
            assert process.poll() is None, process.stdout.read()
            assert time.monotonic() < deadline, "the backend did not start in 300 s"
            try:
                health = httpx.get(f"{url}/health", timeout=2)
                break
            except httpx.HTTPError:
                time.sleep(0.3)
        assert health.json()["status"] == "UP"
        body = {"project": "1.1", "schema": BRUSH}
        assert httpx.post(f"{url}/setup", json=body).status_code == 401
        answer = httpx.post(f"{url}/setup", json=body, auth=("x", "from-env"))
        assert answer.status_code == 502 and "127.0.0.1:9/api/projects/1: cannot be reached" in answer.json()["error"]
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)
    assert "ML_BLOCK_LOCAL_IP=false" in output and "SSRF_PROTECTION_ENABLED=false" in output
    assert "Traceback" not in output


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
    with pytest.raises(RemoteError, match=r"private/c.png: answered 401 .*check the API token"):
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


# -- security -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "headers, status",
    [
        ({"Host": "attacker.example:80"}, 403),  # DNS rebinding: another name for this address
        ({"Origin": "http://attacker.example"}, 403),  # another site's page
        ({"Origin": "null"}, 403),
        ({}, 200),  # Label Studio's own server-side call
    ],
)
def test_host_and_origin_are_checked(tiny_model, fake, headers, status):
    """As `sansa serve`: a request naming another host or coming from another site is refused (403),
    before anything is learnt; no secret is set, so only these checks stand in the way."""
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from sansa.labelstudio.server import create_app

    backend = SansaBackend(tiny_model, fake, device="cpu")
    client = TestClient(create_app(backend), base_url="http://127.0.0.1:80")
    answer = client.post("/setup", json={"project": "1.1", "schema": BRUSH}, headers=headers)
    assert answer.status_code == status, answer.text
    assert (1 in backend.projects) == (status == 200)


def test_setup_cannot_send_the_token_elsewhere(http_servers):
    """/setup's hostname never changes where the token goes; a token /setup sends goes to the start-up address only."""
    (ls_url, ls_seen, _), (other_url, other_seen, _) = http_servers
    remote = LabelStudio(ls_url, "good")
    remote.learn(other_url, "other-token")
    assert remote.url == ls_url and remote.token == "good"
    remote.image("/private/a.png")
    learning = LabelStudio(ls_url)
    learning.learn(other_url, "theirs")  # a /setup naming another Label Studio: its token is not taken
    assert learning.token is None
    learning.learn(ls_url + "/", "good")  # Label Studio's own /setup
    learning.image("/private/b.png")
    assert ls_seen == ["Token good", "Token good"] and other_seen == []


@pytest.fixture()
def redirecting_server(http_servers):
    """A Label Studio whose /redirect answers 302 to the other server (as a presign answer does);
    /login answers an HTML page (a proxy's or login page) with 200."""
    import http.server
    import threading

    (_, _, _), (other_url, _, _) = http_servers
    seen: list[tuple[str, str | None]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            seen.append((self.path, self.headers.get("Authorization")))
            if self.path.startswith("/login") or self.path.startswith("/api/"):
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.end_headers()
                self.wfile.write(b"<html>Please log in</html>")
                return
            self.send_response(302)
            self.send_header("Location", f"{other_url}/public/b.png")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()


def test_token_never_follows_a_redirect_to_another_host(http_servers, redirecting_server):
    """Label Studio's 302 to another host is followed without the token; the image still arrives."""
    (_, _, _), (_, other_seen, _) = http_servers
    url, seen = redirecting_server
    assert LabelStudio(url, "good").image("/redirect/a.png").shape == (4, 6, 3)
    assert seen == [("/redirect/a.png", "Token good")] and other_seen == [None]


def test_non_json_label_studio_is_a_one_line_502(tiny_model, redirecting_server):
    """A login or proxy page where Label Studio's API should be: /setup answers 502 with one line."""
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from sansa.labelstudio.server import create_app

    url, _ = redirecting_server
    client = TestClient(create_app(SansaBackend(tiny_model, LabelStudio(url, "good"), device="cpu")))
    answer = client.post("/setup", json={"project": "1.1", "schema": BRUSH})
    assert answer.status_code == 502 and "not JSON" in answer.json()["error"] and "\n" not in answer.json()["error"]


@pytest.mark.parametrize(
    "task, message",
    [
        ({"id": "abc", "data": {}}, "task id must be a non-negative integer, got 'abc'"),
        ({"id": None, "data": {}}, "got None"),
        ({"id": 3, "data": ["x"]}, "data must be an object"),
        ({"id": 3, "data": {}, "annotations": [{"id": "zz", "result": []}]}, "annotation id must be"),
        ({"id": 3, "data": {}, "annotations": {"id": 1}}, "annotations must be a list"),
    ],
)
def test_predict_refuses_bad_tasks_in_one_line(tiny_model, fake, task, message):
    """Bad task ids, data as a list, bad annotation ids: 400 with one line, the backend unchanged."""
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from sansa.labelstudio.server import create_app

    backend = SansaBackend(tiny_model, fake, device="cpu")
    client = TestClient(create_app(backend))
    version = client.post("/setup", json={"project": "1.1", "schema": BRUSH}).json()["model_version"]
    answer = client.post("/predict", json={"project": "1.1", "tasks": [task]})
    assert answer.status_code == 400 and message in answer.json()["error"], answer.text
    assert backend.model_version(1) == version
    assert client.post("/predict", content=b"[1, 2]").status_code == 400


def test_click_whose_labels_are_not_a_list_is_one_line():
    """Interactive mode: a click whose labels are not a list is a 400's one line, not an internal error."""
    from sansa.labelstudio.interactive import clicked_prompt

    click = {"type": "keypointlabels", "value": {"x": 10, "y": 10, "keypointlabels": 5}}
    with pytest.raises(SansaError, match="context: no click or box with a class of the config"):
        clicked_prompt({"result": [click]}, parse_config(INTERACTIVE), 10, 10)


# -- large batches, interactive mode, options --------------------------------------------
def test_late_tasks_are_posted_with_the_version(tiny_model, fake):
    """With no time to wait, /predict answers at once; every task is then posted through the API
    with the model version, and a new reference cancels what is still queued of the old version."""
    import threading

    backend = SansaBackend(tiny_model, fake, device="cpu", options=BackendOptions(answer_within=0.001))
    version = backend.setup("1.1", BRUSH)
    with backend._model:  # the worker cannot start before the answer
        answers = backend.predict([fake.tasks[2], fake.tasks[3]], "1.1")
        assert answers == [[], []]
        done = threading.Event()
        threading.Thread(target=lambda: (backend.setup("1.1", BRUSH), done.set()), daemon=True).start()
        assert done.wait(10), "/setup waited behind the predictions"
    assert backend.wait_idle(120)
    assert {t: [p["model_version"] for p in ps] for t, ps in fake.stored.items()} == {2: [version], 3: [version]}

    fake.stored.clear()
    with backend._model:
        backend.predict([fake.tasks[2], fake.tasks[3]], "1.1")  # queued, none started
        fake.tasks[2]["annotations"] = [_brush_annotation(12, _mask(32, 48, (0, 0, 8, 8)), "dog")]
        backend.webhook({"action": "ANNOTATION_CREATED", "project": {"id": 1}, "task": {"id": 2}})
    assert backend.wait_idle(120)
    old = [p for ps in fake.stored.values() for p in ps if p["model_version"] == version]
    assert old == [], "work of the old version was posted after the references changed"


@pytest.mark.parametrize(
    ("calls", "done", "pending"),
    [
        ([[1, 2, 3], [4]], {}, [4, 1, 2, 3]),  # one task opened behind a batch goes first
        ([[1, 2, 3], [3, 1]], {}, [3, 1, 2]),  # queued tasks move forward, in the call's order
        ([[1, 2, 3], "start", [1, 4]], {}, [4, 2, 3]),  # the running task (1) is not queued again
        ([[1, 1, 2]], {}, [1, 2]),  # repeats in one call count once
        ([[1, 2]], {1: None, 2: "unreadable"}, [2]),  # done: left to be answered; failed: retried
    ],
)
def test_newest_predict_call_goes_first(calls, done, pending):
    """An annotator opening one task waits behind nobody: each /predict call's tasks go ahead of
    the earlier calls' (whose late tasks are posted when done anyway). "start": the worker takes one."""
    from sansa.labelstudio.jobs import Job, Outcome

    job = Job(1, "v")
    for task_id, error in done.items():
        job.outcomes[task_id] = Outcome(prediction=None if error else {}, error=error)
    for call in calls:
        if call == "start":
            job.running = job.pending.popleft()
        else:
            job.queue([(i, {"id": i}) for i in call])
    assert list(job.pending) == pending
    assert set(job.tasks) == set(pending) | ({job.running} if job.running else set())


@pytest.mark.parametrize("project", ["1.1", "2.1"])
def test_single_task_is_predicted_before_a_queued_batch(tiny_model, fake, project):
    """The worker serves the newest call first, in the same project or another: a task opened
    while a batch is queued is predicted next, and the batch's tasks are still all posted."""
    rng = np.random.default_rng(1)
    for i in range(4, 8):
        fake.images[f"/data/upload/1/new{i}.png"] = rng.integers(0, 255, (32, 48, 3), dtype=np.uint8)
        fake.tasks[i] = {"id": i, "data": {"photo": f"/data/upload/1/new{i}.png"}, "annotations": []}
    backend = SansaBackend(tiny_model, fake, device="cpu", options=BackendOptions(answer_within=0.001))
    backend.setup("1.1", BRUSH)
    backend.setup(project, BRUSH)
    with backend._model:  # the worker holds task 2 until the single task is queued
        assert backend.predict([fake.tasks[i] for i in (2, 3, 4, 5, 6)], "1.1") == [[]] * 5
        assert backend.predict([fake.tasks[7]], project) == [[]]
    assert backend.wait_idle(120)
    task_of = {task["data"]["photo"]: task["id"] for task in fake.tasks.values()}
    predicted = [task_of[source] for source in fake.fetched if task_of[source] != 1]  # task 1: the reference
    assert predicted == [2, 7, 3, 4, 5, 6]
    assert sorted(fake.stored) == [2, 3, 4, 5, 6, 7]


def test_skip_annotated_and_delete_old_versions(tiny_model, fake):
    """skip_annotated: an annotated task gets no prediction. delete_old: a task's older sansa predictions go."""
    options = BackendOptions(skip_annotated=True, delete_old=True)
    backend = SansaBackend(tiny_model, fake, device="cpu", options=options)
    version = backend.setup("1.1", BRUSH)
    fake.stored[3] = [{"id": 7, "model_version": "sansa-000000000000"}, {"id": 8, "model_version": "mine-1"}]
    answers = backend.predict([fake.tasks[1], fake.tasks[3]], "1.1")
    assert answers[0] == [] and answers[1][0]["model_version"] == version
    assert backend.wait_idle(60) and fake.deleted == [7]


def test_interactive_click_returns_the_clicked_object_first(tiny_model):
    """A smart keypoint on the open task: the first region is SAM2's mask for that click on this image
    (as SansaPredictor.add_reference decodes it), then other objects of the class; all in the brush."""
    from sansa import SansaPredictor

    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, (32, 48, 3), dtype=np.uint8)
    images = {"/data/upload/1/0.png": image, "/data/upload/1/1.png": image[::-1].copy()}
    tasks = {1: {"id": 1, "data": {"photo": "/data/upload/1/1.png"}, "annotations": []}}
    tasks[1]["annotations"] = [_brush_annotation(11, _mask(32, 48, (5, 5, 20, 20)))]
    fake = FakeLabelStudio(images, tasks)
    backend = SansaBackend(tiny_model, fake, device="cpu", options=BackendOptions(objects=ObjectOptions(min_area=1)))
    backend.setup("1.1", INTERACTIVE)
    click = {
        "type": "keypointlabels",
        "from_name": "click",
        "to_name": "img",
        "is_positive": True,
        "value": {"x": 25.0, "y": 50.0, "keypointlabels": ["cat"]},
    }
    task = {"id": 2, "data": {"photo": "/data/upload/1/0.png"}}
    (prediction,) = backend.predict([task], "1.1", context={"result": [click]})
    expected = SansaPredictor(tiny_model, device="cpu").add_reference(image, points=[[12.0, 16.0]], label="cat").mask
    first = prediction["result"][0]
    assert first["from_name"] == "brush" and first["value"]["brushlabels"] == ["cat"]
    assert np.array_equal(rle.decode(first["value"]["rle"], 32, 48), expected)
    assert all(r["type"] == "brushlabels" for r in prediction["result"])
    masks = [rle.decode(r["value"]["rle"], 32, 48) for r in prediction["result"]]
    assert not any((a & b).any() for i, a in enumerate(masks) for b in masks[i + 1 :]), "regions overlap"


# -- object options: the same as sansa segment's, one region per object -------------------
#: SAM's candidate filters off: the tiny random model's candidates then become objects
NO_FILTERS = {"pred_iou": 0.0, "stability": 0.0, "min_inside": 0.0}


@pytest.mark.parametrize(
    "changed, options",
    [
        (None, ObjectOptions()),
        ("min_area", ObjectOptions(min_area=200)),
        ("max_objects", ObjectOptions(max_objects=1)),
        ("points_per_class", ObjectOptions(points_per_class=1, **NO_FILTERS)),
        ("overlap", ObjectOptions(overlap=0.95, **NO_FILTERS)),
    ],
)
def test_backend_prediction_is_one_region_per_object_of_its_options(tiny_model, changed, options):
    """The backend splits each class with its ObjectOptions, as ``sansa segment`` does: the prediction's
    regions are exactly the ``labelstudio`` export's regions of the predictor's own objects made with
    those options (one region each, none under min_area, at most max_objects per class), disjoint."""
    import dataclasses

    from PIL import Image

    from sansa import SansaPredictor
    from sansa.export.labelstudio import object_results

    blocks = np.random.default_rng(1).integers(0, 255, (6, 8, 3), dtype=np.uint8)
    image = np.array(Image.fromarray(blocks).resize((64, 48), Image.NEAREST))
    reference = _mask(48, 64, (4, 4, 20, 20))
    tasks = {1: {"id": 1, "data": {"photo": "/data/upload/1/0.png"}, "annotations": [_brush_annotation(11, reference)]}}
    tasks[2] = {"id": 2, "data": {"photo": "/data/upload/1/1.png"}, "annotations": []}
    fake = FakeLabelStudio({"/data/upload/1/0.png": image, "/data/upload/1/1.png": image[::-1].copy()}, tasks)
    backend = SansaBackend(tiny_model, fake, device="cpu", options=BackendOptions(objects=options))
    backend.setup("1.1", BRUSH)
    (prediction,) = backend.predict([tasks[2]], "1.1")[0]

    own = SansaPredictor(tiny_model, device="cpu")
    own.add_reference(image, mask=reference, label="cat")

    def regions(objects: ObjectOptions) -> list[dict]:
        found = own.segment(image[::-1].copy(), name="task 2", objects=objects).objects
        kept = sorted((o for o in found if o.area >= objects.area_floor(48, 64)), key=lambda o: -o.score)
        return object_results("task 2", kept[: objects.max_objects], "brush", from_name="brush", to_name="img")

    assert prediction["result"] == regions(options)
    if changed is not None:  # else the row could not tell whether the backend passed the option on
        assert regions(options) != regions(dataclasses.replace(options, **{changed: getattr(ObjectOptions(), changed)}))
    masks = [rle.decode(r["value"]["rle"], 48, 64) for r in prediction["result"]]
    assert masks and all(m.sum() >= options.area_floor(48, 64) for m in masks)
    assert len(masks) <= options.max_objects
    assert not any((a & b).any() for i, a in enumerate(masks) for b in masks[i + 1 :]), "regions overlap"


@pytest.mark.parametrize(
    "flags, env, expected",
    [
        ([], {}, ObjectOptions()),
        (["--min-area", "50", "--object-points", "2"], {}, ObjectOptions(min_area=50, points_per_class=2)),
        ([], {"SANSA_MAX_OBJECTS": "7", "SANSA_OBJECT_OVERLAP": "0.5"}, ObjectOptions(max_objects=7, overlap=0.5)),
        (
            ["--object-overlap", "0.6"],
            {"SANSA_OBJECT_OVERLAP": "0.9", "SANSA_MIN_AREA": ""},
            ObjectOptions(overlap=0.6),
        ),
    ],
    ids=["none", "flags", "environment", "a-flag-beats-its-variable"],
)
def test_cli_passes_only_the_object_options_set(monkeypatch, flags, env, expected):
    """``sansa label-studio``'s object options: the flags, else their SANSA_* variables; the rest the library's."""
    from sansa.cli import build_parser
    from sansa.cli.labelstudio import backend_options

    for name in ("SANSA_MIN_AREA", "SANSA_MAX_OBJECTS", "SANSA_OBJECT_POINTS", "SANSA_OBJECT_OVERLAP"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    options = backend_options(build_parser().parse_args(["label-studio", *flags]))
    assert options.objects == expected
    assert options == BackendOptions(objects=expected)


@pytest.mark.parametrize(
    "args, env, message",
    [
        (["--max-objects", "-1"], {}, "--max-objects: must be a whole number >= 0, got -1"),
        ([], {"SANSA_MIN_AREA": "lots"}, "$SANSA_MIN_AREA: expected int, got 'lots'"),
    ],
)
def test_cli_refuses_bad_object_options_in_one_line(args, env, message, monkeypatch, capsys):
    from sansa.cli import main

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("LABEL_STUDIO_URL", "http://127.0.0.1:1")
    assert main(["label-studio", *args, "--backbone", "test_tiny", "--random-weights"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
