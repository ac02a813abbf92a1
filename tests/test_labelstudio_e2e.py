"""End to end against a real Label Studio (``.venv-labelstudio``, started once per session).

A BrushLabels project of five images: two get hand-made annotations of two classes, the sansa
ML backend (tiny random model, in this process on a loopback port, with a shared secret) is
connected, predictions are requested through Label Studio, and each of the other tasks must
get brush masks equal to sansa's own masks for that image. Editing a reference must change
``model_version``. The ``labelstudio`` export format must import into Label Studio and convert
with ``label-studio-converter``. A Chromium screenshot shows a prediction in Label Studio's editor.
"""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from labelstudio_server import PYTHON, label_studio  # noqa: F401 (the session fixture)
from PIL import Image

from sansa.export import brush_rle as rle

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


@pytest.fixture(scope="module")
def backend_url(tiny_model):
    """The sansa ML backend (tiny random model) on a loopback port, guarded by ``SECRET``."""
    from sansa.labelstudio import LabelStudio, SansaBackend
    from sansa.labelstudio.server import create_app
    from sansa.web.app import serve_in_thread

    backend = SansaBackend(tiny_model, LabelStudio(), device="cpu", model_name="test_tiny")
    with serve_in_thread(create_app(backend, SECRET)) as url:
        yield url


@pytest.fixture(scope="module")
def project(label_studio, backend_url):  # noqa: F811
    """A BrushLabels project: 5 uploaded images, tasks 0 and 1 annotated (both classes), backend connected."""
    client = label_studio.client()
    created = client.post("/api/projects", json={"title": "sansa e2e", "label_config": CONFIG})
    assert created.status_code == 201, created.text
    project_id = created.json()["id"]
    scenes = [scene(i) for i in range(5)]
    files = {f"scene_{i}.png": (f"scene_{i}.png", png_bytes(img), "image/png") for i, (img, _) in enumerate(scenes)}
    imported = client.post(f"/api/projects/{project_id}/import", files=files)
    assert imported.status_code == 201, imported.text
    tasks = client.get("/api/tasks", params={"project": project_id, "page_size": 100}).json()["tasks"]
    tasks = sorted(tasks, key=lambda t: t["data"]["image"].rsplit("scene_", 1)[1])  # scene order
    assert len(tasks) == 5
    annotations = {}
    for index in REFERENCE_TASKS:
        result = [brush_result(scenes[index][1][label], label) for label in CLASSES]
        answer = client.post(f"/api/tasks/{tasks[index]['id']}/annotations", json={"result": result})
        assert answer.status_code == 201, answer.text
        annotations[index] = answer.json()["id"]
    connected = client.post(
        "/api/ml",
        json={
            "url": backend_url,
            "project": project_id,
            "title": "sansa",
            "is_interactive": False,
            "auth_method": "BASIC_AUTH",
            "basic_auth_user": "labelstudio",
            "basic_auth_pass": SECRET,
        },
    )
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


def own_masks(tiny_model, scenes, references: dict[int, dict[str, np.ndarray]]) -> list:
    """sansa's own segmentation of every scene from the same references, added in the backend's order."""
    from sansa import SansaPredictor

    predictor = SansaPredictor(tiny_model, device="cpu")
    for index, masks in references.items():
        for label in CLASSES:
            predictor.add_reference(scenes[index][0], mask=masks[label], label=label)
    return [predictor.segment(image) for image, _ in scenes]


def test_backend_predictions_equal_sansa_masks(project, tiny_model):
    """Every unannotated task gets one brush region per class sansa finds, decoding to sansa's own mask."""
    client = project["client"]
    retrieve_predictions(client, project["id"])
    expected = own_masks(tiny_model, project["scenes"], {i: project["scenes"][i][1] for i in REFERENCE_TASKS})
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
        seen = {}
        for region in prediction["result"]:
            assert region["type"] == "brushlabels" and region["from_name"] == "tag" and region["to_name"] == "image"
            (label,) = region["value"]["brushlabels"]
            assert label in CLASSES and label not in seen
            seen[label] = rle.decode(region["value"]["rle"], region["original_height"], region["original_width"])
        segmentation = expected[index]
        wanted = {label for label in CLASSES if segmentation.mask(label).any()}
        assert set(seen) == wanted, f"task {index}: classes {sorted(seen)}, sansa finds {sorted(wanted)}"
        for label, mask in seen.items():
            assert np.array_equal(mask, segmentation.mask(label)), f"task {index} {label}: masks differ"
        found_regions += len(seen)
    assert found_regions > 0, "the tiny model found nothing anywhere: the comparison proved nothing"
    assert len(versions) == 1


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
    """`sansa segment --format labelstudio` output imports into Label Studio with masks equal to the PNG
    masks of the same run, and label-studio-converter turns Label Studio's export of it into PNGs without error."""
    from sansa.cli import main
    from sansa.export.names import safe_stem

    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(scene(i)[0]).save(folder / f"scene {i}.png")  # a space: URL-quoted in the task
    reference = tmp_path / "reference"
    reference.mkdir()
    Image.fromarray(scene(3)[0]).save(reference / "ref.png")
    for label in CLASSES:
        Image.fromarray(scene(3)[1][label].astype(np.uint8) * 255).save(reference / f"{label}.png")
    (reference / "refs.json").write_text(
        json.dumps({"references": [{"image": "ref.png", "mask": f"{label}.png", "label": label} for label in CLASSES]})
    )
    out = tmp_path / "out"
    assert (
        main(
            [
                "segment",
                "--references",
                str(reference / "refs.json"),
                "--targets",
                str(folder),
                "--out",
                str(out),
                "--format",
                "png",
                "labelstudio",
                "--backbone",
                "test_tiny",
                "--random-weights",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    tasks = json.loads((out / "labelstudio" / "tasks.json").read_text())
    config = (out / "labelstudio" / "config.xml").read_text()
    client = label_studio.client()
    project_id = client.post("/api/projects", json={"title": "sansa export", "label_config": config}).json()["id"]
    answer = client.post(f"/api/projects/{project_id}/import", json=tasks)
    assert answer.status_code == 201, answer.text
    imported = client.get(
        f"/api/projects/{project_id}/export", params={"exportType": "JSON", "download_all_tasks": "true"}
    ).json()
    assert sorted(t["data"]["image"] for t in imported) == [f"/data/local-files/?d=scene%20{i}.png" for i in range(3)]
    regions, pixels = 0, []
    for task in imported:
        stem = safe_stem(task["data"]["image"].rsplit("=", 1)[1].replace("%20", " "))
        (annotation,) = task["annotations"]
        labels = [r["value"]["brushlabels"][0] for r in annotation["result"]]
        assert len(labels) == len(set(labels)) and set(labels) <= set(CLASSES)
        for label in CLASSES:
            png = np.asarray(Image.open(out / "masks" / f"{stem}_{label}.png")) > 0
            region = next((r for r in annotation["result"] if r["value"]["brushlabels"] == [label]), None)
            if region is None:
                assert not png.any(), f"{stem} {label}: in the PNG, not in Label Studio"
                continue
            mask = rle.decode(region["value"]["rle"], region["original_height"], region["original_width"])
            assert np.array_equal(mask, png), f"{stem} {label}: Label Studio's mask differs from the PNG"
            regions += 1
            pixels.append(int(png.sum()))
    assert regions > 0, "the tiny model found nothing: the comparison proved nothing"
    export_file = tmp_path / "export.json"
    export_file.write_text(json.dumps(imported))
    (tmp_path / "config.xml").write_text(config)
    (tmp_path / "png").mkdir()
    script = (
        "import sys; from label_studio_converter.converter import Converter; "
        "Converter(sys.argv[1], '.').convert(sys.argv[2], sys.argv[3], 'BRUSH_TO_PNG', is_dir=False)"
    )
    converted = subprocess.run(
        [str(PYTHON), "-c", script, str(tmp_path / "config.xml"), str(export_file), str(tmp_path / "png")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )
    assert converted.returncode == 0, converted.stderr[-2000:]
    pngs = sorted((tmp_path / "png").glob("*.png"))
    assert len(pngs) == regions, [p.name for p in pngs]
    converted_pixels = sorted(int((np.asarray(Image.open(p)) > 0).sum()) for p in pngs)
    assert converted_pixels == sorted(pixels), "label-studio-converter's PNGs differ from sansa's masks"


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
