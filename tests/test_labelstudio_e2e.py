"""End to end against real Label Studios: the pinned 1.21.0 and the newest (each started once per session).

The README's flow: a BrushLabels project of five images, two with hand-made annotations of two
classes, the sansa ML backend (tiny random model, in this process on a loopback port, with a shared
secret, Label Studio's address fixed at start-up) connected, predictions requested through Label
Studio: each other task must get one brush region per object, whose union per class is sansa's own
mask for that image. Editing a reference must change ``model_version``. The ``labelstudio`` export
format must import into Label Studio and convert with ``label-studio-converter``. A Chromium
screenshot shows a prediction in Label Studio's editor.

Where it breaks for real users (tests below): a wrong token, a missing image then restored, images
in S3 cloud storage (moto's server on loopback), 200+ tasks past Label Studio's ``ML_TIMEOUT_PREDICT``,
an interactive click, and the security cases (Host check, ``/setup`` naming another host, a crafted
brush RLE, malformed ``/predict`` calls).
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import logging
import os
import subprocess
import time
import urllib.parse
from pathlib import Path

import numpy as np
import pytest
from labelstudio_server import PREDICT_TIMEOUT_S, label_studio  # noqa: F401 (the session fixture)
from PIL import Image

from sansa.export import brush_rle as rle
from sansa.records import ObjectOptions

SIZE = (96, 72)  # W, H
CLASSES = ("fruit", "leaf")
REFERENCE_TASKS = (0, 1)
SECRET = "test-shared-secret"
CONFIG = """<View>
  <Image name="image" value="$image" zoom="true"/>
  <BrushLabels name="tag" toName="image">
    <Label value="fruit" background="#e6194b"/>
    <Label value="leaf" background="#3cb44b"/>
  </BrushLabels>
</View>"""
CHROMIUM = Path("/usr/bin/chromium")
OUTPUT = Path(__file__).parent / "_output" / "labelstudio"
DOCS_SCREENSHOT = Path(__file__).parents[1] / "docs" / "images" / "labelstudio.png"


def scene(index: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """A table with one red fruit (disc) and one green leaf (ellipse); returns the image and the class masks."""
    width, height = SIZE
    rng = np.random.default_rng(index)
    yy, xx = np.mgrid[0:height, 0:width]
    fx, fy, r = 25 + 8 * index, 36 + (index % 3) * 4, 13 + index % 3
    lx, ly = 70 - 4 * index, 24 + 6 * (index % 2)
    fruit = (xx - fx) ** 2 + (yy - fy) ** 2 <= r * r
    leaf = ((xx - lx) / 16.0) ** 2 + ((yy - ly) / 8.0) ** 2 <= 1
    leaf &= ~fruit
    image = np.full((height, width, 3), (225, 205, 170), dtype=np.uint8)
    image = (image + rng.integers(-6, 7, image.shape)).clip(0, 255).astype(np.uint8)
    image[fruit] = (200, 30, 40)
    image[leaf] = (70, 150, 60)
    return image, {"fruit": fruit, "leaf": leaf}


def png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def brush_result(mask: np.ndarray, label: str) -> dict:
    height, width = mask.shape
    return {
        "from_name": "tag",
        "to_name": "image",
        "type": "brushlabels",
        "original_width": width,
        "original_height": height,
        "image_rotation": 0,
        "value": {"format": "rle", "rle": rle.encode(mask), "brushlabels": [label]},
    }


@contextlib.contextmanager
def running_backend(label_studio, tiny_model, token: str | None = None, **options):  # noqa: F811
    """The sansa ML backend (tiny random model) on a loopback port, guarded by ``SECRET``, with Label
    Studio's address fixed (and the token Label Studio's /setup sends, unless ``token`` is given)."""
    from sansa.labelstudio import LabelStudio, SansaBackend
    from sansa.labelstudio.backend import BackendOptions
    from sansa.labelstudio.server import create_app
    from sansa.web.app import serve_in_thread

    remote = LabelStudio(label_studio.url, token)
    backend = SansaBackend(tiny_model, remote, device="cpu", model_name="test_tiny", options=BackendOptions(**options))
    with serve_in_thread(create_app(backend, SECRET)) as url:
        yield url, backend


#: the README flow's --min-area: the tiny random model's masks are noisy (about 110 parts of 16+ pixels
#: per image, which Label Studio's editor is slow to draw); 64 leaves about 14
MIN_AREA = 64
OBJECTS = ObjectOptions(min_area=MIN_AREA)


@pytest.fixture(scope="module")
def backend_url(label_studio, tiny_model):  # noqa: F811
    with running_backend(label_studio, tiny_model, objects=OBJECTS) as (url, _):
        yield url


def make_project(client, title: str, images: dict[str, np.ndarray], config: str = CONFIG) -> tuple[int, list[dict]]:
    """A project with ``images`` uploaded; its tasks in the order of ``images``."""
    created = client.post("/api/projects", json={"title": title, "label_config": config})
    assert created.status_code == 201, created.text
    project_id = created.json()["id"]
    names = list(images)
    for start in range(0, len(names), 50):  # Django takes at most 100 files per request
        files = {name: (name, png_bytes(images[name]), "image/png") for name in names[start : start + 50]}
        imported = client.post(f"/api/projects/{project_id}/import", files=files)
        assert imported.status_code == 201, imported.text
    tasks = client.get("/api/tasks", params={"project": project_id, "page_size": 1000}).json()["tasks"]
    order = {name: i for i, name in enumerate(images)}
    tasks = sorted(tasks, key=lambda t: order[next(n for n in images if t["data"]["image"].endswith(n))])
    assert len(tasks) == len(images)
    return project_id, tasks


def annotate(client, task_id: int, masks: dict[str, np.ndarray]) -> int:
    answer = client.post(
        f"/api/tasks/{task_id}/annotations", json={"result": [brush_result(m, label) for label, m in masks.items()]}
    )
    assert answer.status_code == 201, answer.text
    return answer.json()["id"]


def connect(client, project_id: int, url: str, interactive: bool = False):
    """Connect the backend to the project as the README says (Basic auth with the secret); the raw answer."""
    return client.post(
        "/api/ml",
        json={
            "url": url,
            "project": project_id,
            "title": "sansa",
            "is_interactive": interactive,
            "auth_method": "BASIC_AUTH",
            "basic_auth_user": "labelstudio",
            "basic_auth_pass": SECRET,
        },
    )


@pytest.fixture(scope="module")
def project(label_studio, backend_url):  # noqa: F811
    """A BrushLabels project: 5 uploaded images, tasks 0 and 1 annotated (both classes), backend connected."""
    client = label_studio.client()
    scenes = [scene(i) for i in range(5)]
    project_id, tasks = make_project(client, "sansa e2e", {f"scene_{i}.png": img for i, (img, _) in enumerate(scenes)})
    annotations = {index: annotate(client, tasks[index]["id"], scenes[index][1]) for index in REFERENCE_TASKS}
    connected = connect(client, project_id, backend_url)
    assert connected.status_code == 201, connected.text
    yield {
        "id": project_id,
        "tasks": tasks,
        "scenes": scenes,
        "annotations": annotations,
        "client": client,
        "ml": connected.json()["id"],
    }
    client.close()


def retrieve_predictions(client, project_id: int) -> None:
    answer = client.post(
        "/api/dm/actions",
        params={"id": "retrieve_tasks_predictions", "project": project_id},
        json={"selectedItems": {"all": True, "excluded": []}},
    )
    assert answer.status_code == 200, answer.text


def predictions_of(client, task_id: int) -> list[dict]:
    return client.get(f"/api/tasks/{task_id}").json()["predictions"]


def class_masks(prediction: dict) -> dict[str, np.ndarray]:
    """Per class, the union of the prediction's brush regions; regions never overlap."""
    masks: dict[str, np.ndarray] = {}
    for region in prediction["result"]:
        assert region["type"] == "brushlabels" and region["from_name"] == "tag" and region["to_name"] == "image"
        (label,) = region["value"]["brushlabels"]
        mask = rle.decode(region["value"]["rle"], region["original_height"], region["original_width"])
        assert mask.any()
        if label in masks:
            assert not (masks[label] & mask).any(), f"{label}: two regions share pixels"
            masks[label] = masks[label] | mask
        else:
            masks[label] = mask
    return masks


def own_masks(
    tiny_model, scenes, references: dict[int, dict[str, np.ndarray]], objects: ObjectOptions | None = None
) -> list:
    """sansa's own segmentation of every scene from the same references, added in the backend's order,
    split into objects with ``objects`` (default: the defaults, as the backend's)."""
    from sansa import SansaPredictor

    predictor = SansaPredictor(tiny_model, device="cpu")
    for index, masks in references.items():
        for label in CLASSES:
            predictor.add_reference(scenes[index][0], mask=masks[label], label=label)
    return [predictor.segment(image, objects=objects or ObjectOptions()) for image, _ in scenes]


def test_backend_predictions_equal_sansa_masks(project, tiny_model):
    """Every unannotated task gets one brush region per object; per class they decode to sansa's own mask
    (its objects of at least the backend's --min-area)."""
    client = project["client"]
    retrieve_predictions(client, project["id"])
    references = {i: project["scenes"][i][1] for i in REFERENCE_TASKS}
    expected = own_masks(tiny_model, project["scenes"], references, OBJECTS)
    found_regions = 0
    versions = set()
    for index, task in enumerate(project["tasks"]):
        if index in REFERENCE_TASKS:
            continue
        predictions = predictions_of(client, task["id"])
        assert len(predictions) == 1, f"task {index}: {len(predictions)} predictions"
        prediction = predictions[0]
        versions.add(prediction["model_version"])
        assert prediction["model_version"].startswith("sansa-")
        assert 0.0 <= prediction["score"] <= 1.0
        seen = class_masks(prediction)
        wanted = {label: large_objects(expected[index], label, OBJECTS) for label in CLASSES}
        wanted = {label: mask for label, mask in wanted.items() if mask.any()}
        assert set(seen) == set(wanted), f"task {index}: classes {sorted(seen)}, sansa finds {sorted(wanted)}"
        for label, mask in seen.items():
            assert np.array_equal(mask, wanted[label]), f"task {index} {label}: masks differ"
        found_regions += len(prediction["result"])
    assert found_regions > 0, "the tiny model found nothing anywhere: the comparison proved nothing"
    assert len(versions) == 1


def large_objects(segmentation, label: str, options: ObjectOptions | None = None) -> np.ndarray:
    """The class's pixels in objects of at least ``options``' min_area pixels (what the backend writes)."""
    from sansa.labelstudio.results import objects_of

    out = np.zeros(segmentation.size, dtype=bool)
    for obj in objects_of(segmentation):
        if obj.label == label and obj.area >= (options or ObjectOptions()).area_floor(*segmentation.size):
            out |= obj.mask
    return out


def test_changing_a_reference_changes_model_version(project, backend_url):
    """Editing an annotation (a webhook from Label Studio) gives a new model_version and fresh predictions."""
    import httpx

    client = project["client"]
    target = project["tasks"][4]["id"]
    before = predictions_of(client, target)
    if not before:
        retrieve_predictions(client, project["id"])
        before = predictions_of(client, target)
    old_version = before[0]["model_version"]
    mask = project["scenes"][0][1]["fruit"].copy()
    mask[:, : mask.shape[1] // 2] = False  # half the fruit: a different reference
    result = [brush_result(mask, "fruit"), brush_result(project["scenes"][0][1]["leaf"], "leaf")]
    answer = client.patch(f"/api/annotations/{project['annotations'][0]}", json={"result": result})
    assert answer.status_code == 200, answer.text
    # Label Studio's webhook has already told the backend (before any new prediction is asked for)
    versions_now = httpx.get(
        f"{backend_url}/versions", params={"project": project["id"]}, auth=("labelstudio", SECRET)
    ).json()["versions"]
    assert versions_now and versions_now[0] != old_version
    retrieve_predictions(client, project["id"])
    versions = {p["model_version"] for p in predictions_of(client, target)}
    assert old_version in versions and len(versions) == 2, versions
    assert client.get(f"/api/ml/{project['ml']}").json()["model_version"] not in ("", old_version)


def test_backend_refuses_calls_without_the_secret(backend_url):
    """/setup and /predict need the shared secret; /health does not; nothing is learnt from a refused call."""
    import httpx

    assert httpx.get(f"{backend_url}/health").json()["status"] == "UP"
    for path in ("/setup", "/predict"):
        answer = httpx.post(f"{backend_url}{path}", json={"project": "1.1", "tasks": [], "schema": CONFIG})
        assert answer.status_code == 401 and "secret" in answer.json()["error"]
    wrong = httpx.post(f"{backend_url}/setup", json={"project": "1.1"}, auth=("x", "wrong"))
    assert wrong.status_code == 401


def test_labelstudio_export_imports_and_converts(label_studio, tmp_path):  # noqa: F811
    """The README's local-files recipe: `sansa segment --format labelstudio --labelstudio-root <Label
    Studio's document root>` on a folder under that root, the folder added as the project's Local Files
    storage: every imported task's image comes back through Label Studio with 200 and the file's bytes;
    the tasks hold predictions (with the model version, one region per object) whose masks per class
    equal the PNG masks of the same run; accepted as annotations, Label Studio's converter turns them
    into one PNG per region, each equal to its region (pixel for pixel)."""
    from sansa.cli import main
    from sansa.export.names import safe_stem

    document_root = label_studio.data_dir / "files"  # the server's LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT
    folder = document_root / f"photos-{tmp_path.name}"
    folder.mkdir()
    files = ["scene 0.png", "写真 #1.png", "café é.png"]  # spaces, CJK, "#", accents: URL-quoted in the task
    for i, file in enumerate(files):
        Image.fromarray(scene(i)[0]).save(folder / file)
    reference = tmp_path / "reference"
    reference.mkdir()
    Image.fromarray(scene(3)[0]).save(reference / "ref.png")
    for label in CLASSES:
        Image.fromarray(scene(3)[1][label].astype(np.uint8) * 255).save(reference / f"{label}.png")
    (reference / "refs.json").write_text(
        json.dumps({"references": [{"image": "ref.png", "mask": f"{label}.png", "label": label} for label in CLASSES]})
    )
    out = tmp_path / "out"
    argv = ["segment", "--references", str(reference / "refs.json"), "--targets", str(folder), "--out", str(out)]
    argv += ["--format", "png", "labelstudio", "--labelstudio-root", str(document_root)]
    assert main([*argv, "--backbone", "test_tiny", "--random-weights", "--device", "cpu"]) == 0
    tasks = json.loads((out / "labelstudio" / "tasks.json").read_text())
    config = (out / "labelstudio" / "config.xml").read_text()
    client = label_studio.client()
    project_id = client.post("/api/projects", json={"title": "sansa export", "label_config": config}).json()["id"]
    storage = client.post(
        "/api/storages/localfiles",
        json={"project": project_id, "title": "photos", "path": str(folder), "use_blob_urls": True},
    )
    assert storage.status_code == 201, storage.text
    answer = client.post(f"/api/projects/{project_id}/import", json=tasks)
    assert answer.status_code == 201, answer.text
    export = {"exportType": "JSON", "download_all_tasks": "true"}
    imported = client.get(f"/api/projects/{project_id}/export", params=export).json()
    quoted = folder.name
    assert sorted(t["data"]["image"] for t in imported) == sorted(
        f"/data/local-files/?d={quoted}/{urllib.parse.quote(file)}" for file in files
    )
    for task in imported:  # every image through Label Studio
        fetched = client.get(task["data"]["image"])
        name = urllib.parse.unquote(task["data"]["image"].rsplit("/", 1)[1])
        assert fetched.status_code == 200 and fetched.content == (folder / name).read_bytes(), task["data"]["image"]
    regions, pixels = 0, []
    for task in imported:
        assert task["annotations"] == [], "imported tasks must stay unlabelled (predictions only)"
        (prediction,) = predictions_of(client, task["id"])  # the export lists only their ids
        assert prediction["model_version"].startswith("sansa-")
        stem = safe_stem(urllib.parse.unquote(task["data"]["image"].rsplit("/", 1)[1]))
        assert stem in ("scene 0", "写真 #1", "café é")  # the names as written
        masks = class_masks({"result": [dict(r, from_name="tag", to_name="image") for r in prediction["result"]]})
        for label in CLASSES:
            png = np.asarray(Image.open(out / "masks" / f"{stem}_{label}.png")) > 0
            assert np.array_equal(masks.get(label, np.zeros_like(png)), png), f"{stem} {label}: differs from the PNG"
        for region in prediction["result"]:
            mask = rle.decode(region["value"]["rle"], region["original_height"], region["original_width"])
            regions += 1
            pixels.append(mask.tobytes())
    assert regions > 0, "the tiny model found nothing: the comparison proved nothing"
    accepted = client.post(
        "/api/dm/actions",
        params={"id": "predictions_to_annotations", "project": project_id},
        json={"selectedItems": {"all": True, "excluded": []}},
    )
    assert accepted.status_code == 200, accepted.text
    export_file = tmp_path / "export.json"
    export_file.write_text(json.dumps(client.get(f"/api/projects/{project_id}/export", params=export).json()))
    (tmp_path / "config.xml").write_text(config)
    (tmp_path / "png").mkdir()
    script = (
        "import sys\ntry: from label_studio_sdk.converter import Converter\n"
        "except ImportError: from label_studio_converter.converter import Converter\n"
        "Converter(sys.argv[1], '.').convert(sys.argv[2], sys.argv[3], 'BRUSH_TO_PNG', is_dir=False)"
    )
    converted = subprocess.run(
        [str(label_studio.python), "-c", script, str(tmp_path / "config.xml"), str(export_file), str(tmp_path / "png")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )
    assert converted.returncode == 0, converted.stderr[-2000:]
    pngs = sorted((tmp_path / "png").glob("*.png"))
    assert len(pngs) == regions, [p.name for p in pngs]
    converted_pixels = sorted((np.asarray(Image.open(p)) > 0).tobytes() for p in pngs)  # each region's mask, exactly
    assert converted_pixels == sorted(pixels), "Label Studio's converter's PNGs differ from sansa's regions"


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing (apt-get install chromium)")
def test_screenshot_of_a_prediction_in_label_studio(project, label_studio):  # noqa: F811
    """Label Studio's editor shows sansa's prediction on an unannotated task (screenshot looked at by a person)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    client = project["client"]
    task = project["tasks"][3]
    if not predictions_of(client, task["id"]):
        retrieve_predictions(client, project["id"])
    OUTPUT.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--proxy-server=http://127.0.0.1:9",
                "--proxy-bypass-list=127.0.0.1;localhost",
            ],
        )
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(f"{label_studio.url}/user/login/")
        page.fill("input[name=email]", label_studio.username)
        page.fill("input[name=password]", label_studio.password)
        page.click("button[type=submit]")
        page.wait_for_url(lambda url: "/user/login" not in url, timeout=60_000)
        page.goto(f"{label_studio.url}/projects/{project['id']}/data?task={task['id']}")
        page.wait_for_selector("canvas", timeout=60_000)
        page.wait_for_timeout(3000)
        path = OUTPUT / "prediction.png"
        page.screenshot(path=path)
        browser.close()
    assert path.stat().st_size > 10_000
    if os.environ.get("SANSA_UPDATE_SCREENSHOTS"):
        DOCS_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        DOCS_SCREENSHOT.write_bytes(path.read_bytes())


def test_basic_auth_header_shape():
    """The header Label Studio sends (requests' HTTPBasicAuth) is what the server checks."""
    from sansa.labelstudio.server import _authorized

    header = "Basic " + base64.b64encode(f"labelstudio:{SECRET}".encode()).decode()
    assert _authorized(header, SECRET) and not _authorized(header, SECRET + "x")


# -- where it breaks for real users -------------------------------------------------------
def test_wrong_token_fails_the_connection(label_studio, tiny_model, caplog):  # noqa: F811
    """A backend started with a wrong token: Label Studio refuses the connection (no "Connected" model
    that then stores nothing); the backend's log says why."""
    client = label_studio.client()
    project_id, _ = make_project(client, "wrong token", {"scene_0.png": scene(0)[0]})
    with caplog.at_level(logging.WARNING, logger="sansa.labelstudio"):
        with running_backend(label_studio, tiny_model, token="not-the-token") as (url, _):
            answer = connect(client, project_id, url)
    assert answer.status_code == 400 and "/setup" in answer.text, answer.text
    assert f"/api/projects/{project_id}: answered 401 Unauthorized (check the API token)" in caplog.text
    assert client.get("/api/ml", params={"project": project_id}).json() == []


def test_missing_image_gets_no_prediction_until_restored(label_studio, tiny_model, caplog):  # noqa: F811
    """A task whose image is gone gets no prediction (never an empty one marked with the version), is
    named in the backend's log and /failures; once the file is back, Retrieve Predictions predicts it."""
    client = label_studio.client()
    images = {f"missing_{i}.png": scene(i)[0] for i in range(3)}
    project_id, tasks = make_project(client, "missing image", images)
    annotate(client, tasks[0]["id"], scene(0)[1])
    stored = label_studio.data_dir / "media" / tasks[2]["data"]["image"].removeprefix("/data/")
    assert stored.is_file(), stored
    hidden = stored.with_name(stored.name + ".away")
    with running_backend(label_studio, tiny_model) as (url, backend):
        assert connect(client, project_id, url).status_code == 201
        stored.rename(hidden)
        with caplog.at_level(logging.WARNING, logger="sansa.labelstudio"):
            retrieve_predictions(client, project_id)
        assert len(predictions_of(client, tasks[1]["id"])) == 1
        assert predictions_of(client, tasks[2]["id"]) == []
        missing = "missing_2.png: answered"  # Label Studio 1.21 answers 500 for a lost upload
        assert f"task {tasks[2]['id']}: " in caplog.text and missing in caplog.text
        failures = httpx_get(url, "/failures", project=project_id)["failures"]
        assert list(failures) == [str(tasks[2]["id"])] and missing in failures[str(tasks[2]["id"])]
        hidden.rename(stored)
        retrieve_predictions(client, project_id)
        (prediction,) = predictions_of(client, tasks[2]["id"])
        assert prediction["model_version"] == predictions_of(client, tasks[1]["id"])[0]["model_version"]
        assert len(predictions_of(client, tasks[1]["id"])) == 1  # not predicted twice


def httpx_get(url: str, path: str, **params) -> dict:
    import httpx

    return httpx.get(f"{url}{path}", params=params, auth=("labelstudio", SECRET), timeout=60).json()


@pytest.mark.slow
def test_cloud_storage_images_resolve_through_label_studio(label_studio, tiny_model, s3_server):  # noqa: F811
    """Tasks imported from an S3 storage (moto's server) hold s3:// URIs: the backend resolves them through
    Label Studio's presign endpoint (the token stays with Label Studio across its redirect to S3) and
    every other task gets sansa's masks of its image."""
    import fsspec

    client = label_studio.client()
    bucket = s3_server.bucket(f"sansa-ls-{label_studio.version.replace('.', '-')}")
    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    scenes = [scene(i) for i in range(3)]
    for i, (image, _) in enumerate(scenes):
        fs.pipe(f"{bucket.removeprefix('s3://')}/scene_{i}.png", png_bytes(image))
    created = client.post("/api/projects", json={"title": "cloud storage", "label_config": CONFIG})
    project_id = created.json()["id"]
    storage = client.post(
        "/api/storages/s3",
        json={
            "project": project_id,
            "title": "moto",
            "bucket": bucket.removeprefix("s3://"),
            "regex_filter": r".*\.png",
            "use_blob_urls": True,
            "presign": True,
            "s3_endpoint": s3_server.endpoint,
            "aws_access_key_id": "testing",
            "aws_secret_access_key": "testing",
            "region_name": "us-east-1",
        },
    )
    assert storage.status_code == 201, storage.text
    synced = client.post(f"/api/storages/s3/{storage.json()['id']}/sync")
    assert synced.status_code in (200, 201), synced.text
    export = {"exportType": "JSON", "download_all_tasks": "true"}  # the tasks as stored (the task list resolves URIs)
    tasks = wait_for(lambda: client.get(f"/api/projects/{project_id}/export", params=export).json(), 3, 120)
    tasks = sorted(tasks, key=lambda t: t["data"]["image"])
    assert [t["data"]["image"] for t in tasks] == [f"{bucket}/scene_{i}.png" for i in range(3)]
    annotate(client, tasks[0]["id"], scenes[0][1])
    with running_backend(label_studio, tiny_model) as (url, _):
        assert connect(client, project_id, url).status_code == 201
        retrieve_predictions(client, project_id)
    expected = own_masks(tiny_model, scenes, {0: scenes[0][1]})
    for index in (1, 2):
        (prediction,) = predictions_of(client, tasks[index]["id"])
        seen = class_masks(prediction)
        for label in CLASSES:
            want = large_objects(expected[index], label)
            assert np.array_equal(seen.get(label, np.zeros_like(want)), want), f"task {index} {label}"


def wait_for(read, count: int, seconds: float):
    """``read()`` once it returns ``count`` items (polled), else fail naming what it returned."""
    deadline = time.monotonic() + seconds
    while True:
        items = read()
        if len(items) >= count or time.monotonic() > deadline:
            assert len(items) >= count, f"{len(items)} of {count} after {seconds} s"
            return items
        time.sleep(1)


@pytest.mark.slow
def test_large_batch_answers_within_label_studios_wait(label_studio, tiny_model, caplog):  # noqa: F811
    """210 tasks with Label Studio waiting only PREDICT_TIMEOUT_S for /predict: the backend answers in
    time with what is done, posts the rest through the API with the model version (progress in its
    log), and /setup and /health answer while it works. Every task ends with exactly one prediction."""
    import httpx

    client = label_studio.client()
    count = 210
    images = {f"many_{i:03d}.png": scene(i % 5)[0] for i in range(count)}
    project_id, tasks = make_project(client, "large batch", images)
    annotate(client, tasks[0]["id"], scene(0)[1])
    with caplog.at_level(logging.INFO, logger="sansa.labelstudio"):
        with running_backend(label_studio, tiny_model, answer_within=PREDICT_TIMEOUT_S / 3) as (url, backend):
            assert connect(client, project_id, url).status_code == 201
            retrieve_predictions(client, project_id)
            busy = not backend.wait_idle(0)
            health = httpx.get(f"{url}/health", timeout=10)
            setup = httpx.post(
                f"{url}/setup", json={"project": f"{project_id}.1", "schema": CONFIG}, auth=("x", SECRET), timeout=10
            )
            assert health.status_code == 200 and setup.status_code == 200, setup.text
            assert busy, "every task was done within the wait: the test proved nothing"
            assert backend.wait_idle(1800)
    version = setup.json()["model_version"]
    predicted = client.get("/api/predictions", params={"project": project_id}).json()
    predicted = predicted if isinstance(predicted, list) else predicted["results"]
    per_task: dict[int, list[str]] = {}
    for prediction in predicted:
        per_task.setdefault(prediction["task"], []).append(prediction["model_version"])
    assert per_task == {t["id"]: [version] for t in tasks}  # Retrieve Predictions includes the annotated task
    assert "tasks predicted" in caplog.text and "posted to Label Studio when done" in caplog.text


def test_interactive_click_returns_the_clicked_object(label_studio, tiny_model):  # noqa: F811
    """Label Studio's smart keypoint on the open task: the first region is SAM2's mask for that click on
    this image (as sansa's predictor decodes it), then the class's other objects, through Label Studio's
    interactive-annotating call."""
    from sansa import SansaPredictor

    config = CONFIG.replace(
        "</View>",
        '  <KeyPointLabels name="click" toName="image" smart="true">\n'
        '    <Label value="fruit" smart="true"/><Label value="leaf" smart="true"/>\n'
        "  </KeyPointLabels>\n</View>",
    )
    client = label_studio.client()
    project_id, tasks = make_project(client, "interactive", {f"click_{i}.png": scene(i)[0] for i in range(2)}, config)
    annotate(client, tasks[0]["id"], scene(0)[1])
    image = scene(1)[0]
    height, width = image.shape[:2]
    x, y = 33, 40  # inside task 1's fruit
    click = {
        "type": "keypointlabels",
        "from_name": "click",
        "to_name": "image",
        "origin": "manual",
        "is_positive": True,
        "original_width": width,
        "original_height": height,
        "value": {"x": 100.0 * x / width, "y": 100.0 * y / height, "width": 0.5, "keypointlabels": ["fruit"]},
    }
    with running_backend(label_studio, tiny_model) as (url, _):
        ml = connect(client, project_id, url, interactive=True)
        assert ml.status_code == 201, ml.text
        answer = client.post(
            f"/api/ml/{ml.json()['id']}/interactive-annotating",
            json={"task": tasks[1]["id"], "context": {"result": [click]}},
        )
    assert answer.status_code == 200 and "errors" not in answer.json(), answer.text
    regions = answer.json()["data"]["result"]
    expected = SansaPredictor(tiny_model, device="cpu").add_reference(image, points=[[x, y]], label="fruit").mask
    first = regions[0]
    assert first["from_name"] == "tag" and first["value"]["brushlabels"] == ["fruit"]
    assert np.array_equal(rle.decode(first["value"]["rle"], height, width), expected)
    assert all(r["value"]["brushlabels"] == ["fruit"] for r in regions)


def test_security_cases_against_a_real_label_studio(label_studio, tiny_model, caplog):  # noqa: F811
    """With a real Label Studio connected: a request naming another Host is refused; a /setup naming
    another Label Studio (and token) sends nothing there; an annotation with a crafted brush RLE (a
    header claiming 4 billion values) is left out without harm; malformed /predict calls get one-line 400s."""
    import http.server
    import threading

    import httpx

    seen: list[str] = []

    class Recorder(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            seen.append(self.path)
            self.send_error(404)

        def log_message(self, *args):
            pass

    recorder = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=recorder.serve_forever, daemon=True).start()
    client = label_studio.client()
    project_id, tasks = make_project(client, "security", {f"sec_{i}.png": scene(i)[0] for i in range(3)})
    annotate(client, tasks[0]["id"], scene(0)[1])
    bomb = brush_result(scene(1)[1]["fruit"], "fruit")
    bomb["value"]["rle"] = [255, 255, 255, 255, 57, 27, 252, 127, 241, 128, 0]
    answer = client.post(f"/api/tasks/{tasks[1]['id']}/annotations", json={"result": [bomb]})
    assert answer.status_code == 201, answer.text
    try:
        with running_backend(label_studio, tiny_model) as (url, _):
            rebinding = httpx.post(f"{url}/setup", json={"project": "1.1"}, headers={"Host": "attacker.example"})
            assert rebinding.status_code == 403
            elsewhere = f"http://127.0.0.1:{recorder.server_address[1]}"
            body = {"project": f"{project_id}.1", "schema": CONFIG, "hostname": elsewhere, "access_token": "x"}
            named = httpx.post(f"{url}/setup", json=body, auth=("x", SECRET), timeout=60)
            assert named.status_code == 502 and "API token is unknown" in named.json()["error"]
            assert connect(client, project_id, url).status_code == 201
            with caplog.at_level(logging.WARNING, logger="sansa.labelstudio"):
                retrieve_predictions(client, project_id)
            assert len(predictions_of(client, tasks[2]["id"])) == 1
            assert "rle: holds 4294967295 values" in caplog.text
            for task in ({"id": "abc"}, {"id": 1, "data": ["x"]}, {"id": 1, "annotations": [{"id": "zz"}]}):
                bad = httpx.post(
                    f"{url}/predict", json={"project": f"{project_id}.1", "tasks": [task]}, auth=("x", SECRET)
                )
                assert bad.status_code == 400 and list(bad.json()) == ["error"], bad.text
    finally:
        recorder.shutdown()
    assert seen == [], f"the backend called the /setup-named host: {seen}"
