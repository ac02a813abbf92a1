"""The object list of the open image in Chromium: listed with class, score and area; a hovered row
highlights its object on the canvas, a click (on the row, or Alt+click on the image) selects it; the
eye hides it on the page only; delete, merge, split and per-object review; and the export writes
exactly the objects the page lists (COCO: one annotation per object with the listed area, and the
instances ids). One server and one browser for the module; the target's prediction is stubbed with
known objects (the tiny model's weights are random), the split is SAM2's decoder on the page's click.

``SANSA_UPDATE_SCREENSHOTS=1`` also refreshes the README's ``docs/images/web-objects.png``.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw
from test_web_browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    REFERENCE_BOX,
    SLOW_BROWSER_TESTS,
    drag,
    make_scene,
    open_image,
    screenshot,
    to_screen,
    wait_ready,
    wait_saved,
)

from sansa.web.session import ObjectInfo, TargetResult

pytestmark = SLOW_BROWSER_TESTS
DOCS_SCREENSHOT = Path(__file__).parents[1] / "docs" / "images" / "web-objects.png"
BOWL = "bowl.png"
FRUITS = [(70, 80, 40), (180, 70, 36), (120, 170, 34), (250, 165, 38)]  # (cx, cy, r) on a 320x240 table


def make_bowl() -> Image.Image:
    """Four red fruits on the table of the browser tests' still lifes."""
    img = make_scene(3).copy()
    draw = ImageDraw.Draw(img)
    for cx, cy, r in FRUITS:
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=(200, 30, 40), outline=(120, 10, 20), width=3)
        draw.ellipse([cx - r // 2, cy - r // 2, cx - r // 5, cy - r // 5], fill=(240, 120, 120))
    return img


def fruit_masks() -> list[np.ndarray]:
    ys, xs = np.mgrid[0:240, 0:320]
    return [(xs - cx) ** 2 + (ys - cy) ** 2 <= r * r for cx, cy, r in FRUITS]


@pytest.fixture(scope="module")
def server(tiny_model, tmp_path_factory):
    """The app on three images (a reference scene, the bowl, another scene): ``(url, service)``."""
    from sansa import SansaPredictor
    from sansa.web.app import create_app, serve_in_thread

    folder = tmp_path_factory.mktemp("objects") / "fruit"
    folder.mkdir()
    make_scene(0).save(folder / "scene_0.png")
    make_bowl().save(folder / BOWL)
    make_scene(2).save(folder / "scene_2.png")
    app = create_app(SansaPredictor(tiny_model, device="cpu"), folder, model_name="test_tiny (random weights)")
    with serve_in_thread(app) as url:
        yield f"{url}/?token={app.state.token}", app.state.service


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture()
def page(server, browser):
    """A new session, a box reference on scene_0, the bowl's prediction stubbed with the four fruits,
    everything propagated, and the bowl open."""
    url, service = server
    page = browser.new_page(viewport={"width": 1440, "height": 860}, accept_downloads=True)
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.goto(url)
    wait_ready(page)
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("#new-session").click()
    page.wait_for_function("document.getElementById('toasts').textContent.includes('New session')")
    open_image(page, "scene_0.png")
    drag(page, REFERENCE_BOX[:2], REFERENCE_BOX[2:])
    wait_saved(page)
    session = service.current_session()
    labels = list(session.classes)
    object_map = np.zeros((240, 320), dtype=np.uint16)
    for k, mask in enumerate(fruit_masks(), start=1):
        object_map[mask] = k
    infos = [ObjectInfo("object", score) for score in (0.93, 0.88, 0.81, 0.62)]
    label_map = (object_map > 0).astype(np.uint16)
    session.results[BOWL] = TargetResult.pack(session.version, label_map, labels, {"object": 0.8}, object_map, infos)
    page.locator("#propagate").click()
    page.wait_for_function("document.getElementById('progress-text').textContent.includes('✓')", timeout=30_000)
    open_image(page, BOWL)
    wait_listed(page, 4)
    yield page
    page.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def wait_listed(page, count: int) -> None:
    page.wait_for_function("n => document.querySelectorAll('.object-item').length === n", arg=count, timeout=20_000)


def rows(page) -> list[dict]:
    """The object list as the page shows it: id, class, area, review state, selected."""
    return page.evaluate(
        """() => [...document.querySelectorAll('.object-item')].map(r => ({id: +r.dataset.id,
            label: r.dataset.label, area: +r.dataset.area, state: r.dataset.state,
            selected: r.classList.contains('selected')}))"""
    )


def canvas_pixel(page, x: float, y: float) -> list[int]:
    """The RGBA the editor's canvas shows at image pixel ``(x, y)`` (after the next frame)."""
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
    box = page.locator("#canvas").bounding_box()
    sx, sy = to_screen(page, x, y)
    return page.evaluate(
        """([x, y]) => { const c = document.getElementById('canvas'); const d = window.devicePixelRatio || 1;
            return [...c.getContext('2d').getImageData(Math.round(x * d), Math.round(y * d), 1, 1).data]; }""",
        [sx - box["x"], sy - box["y"]],
    )


def row(page, object_id: int):
    return page.locator(f".object-item[data-id='{object_id}']")


def test_object_list_hover_select_and_show_hide(page):
    areas = [int(m.sum()) for m in fruit_masks()]
    assert [(r["label"], r["area"]) for r in rows(page)] == [("object", a) for a in areas]
    assert page.locator("#object-count").inner_text() == "4"
    assert row(page, 1).locator(".score").inner_text() == "93%"

    cx, cy, _ = FRUITS[1]
    before = canvas_pixel(page, cx, cy)
    row(page, 2).hover()
    hovered = canvas_pixel(page, cx, cy)
    assert hovered != before and hovered[0] > before[0]  # the object's fill is stronger
    page.mouse.move(5, 5)
    assert canvas_pixel(page, cx, cy) == before

    row(page, 3).click()
    assert [r["id"] for r in rows(page) if r["selected"]] == [3]
    page.keyboard.down("Alt")
    page.mouse.click(*to_screen(page, cx, cy))  # Alt+click on the image selects the object there
    page.keyboard.up("Alt")
    assert [r["id"] for r in rows(page) if r["selected"]] == [2]
    assert page.locator(".thumb[data-name='bowl.png'] .tag").count() == 0  # no reference was drawn

    row(page, 2).locator(".eye").click()  # hidden on the page only
    page.mouse.move(5, 5)  # no row hovered
    hidden = canvas_pixel(page, cx, cy)
    assert hidden != before and hidden[:3] != [255, 255, 255]
    row(page, 2).locator(".eye").click()
    page.mouse.move(5, 5)
    assert canvas_pixel(page, cx, cy) == before
    if os.environ.get("SANSA_UPDATE_SCREENSHOTS"):
        row(page, 4).hover()
        page.screenshot(path=DOCS_SCREENSHOT)
    screenshot(page, "objects.png")


def test_no_object_stays_highlighted_once_the_pointer_leaves_the_list(page):
    """Clicking an object's eye rebuilds the list under the pointer; leaving it ends the hover all
    the same (the rebuilt row never saw the pointer arrive, so it cannot see it leave)."""
    cx, cy, _ = FRUITS[1]
    before = canvas_pixel(page, cx, cy)
    for _ in range(2):  # hide, then show again
        row(page, 2).locator(".eye").click()
        page.mouse.move(5, 5)
    assert canvas_pixel(page, cx, cy) == before
    assert page.locator(".object-item.hover").count() == 0
    row(page, 2).hover()
    assert page.locator(".object-item.hover").count() == 1


def test_delete_merge_split_review_and_export_what_the_page_lists(page, tmp_path):
    row(page, 1).click()
    page.locator("#object-delete").click()
    wait_listed(page, 3)
    assert [r["area"] for r in rows(page)] == [int(m.sum()) for m in fruit_masks()[1:]]

    row(page, 1).click()
    row(page, 3).click(modifiers=["Control"])
    page.locator("#object-merge").click()
    wait_listed(page, 2)
    merged = rows(page)[0]["area"]
    assert merged == int(fruit_masks()[1].sum() + fruit_masks()[3].sum())

    row(page, 1).click()
    page.locator("#object-split").click()
    cx, cy, _ = FRUITS[3]
    page.mouse.click(*to_screen(page, cx, cy))  # the click goes to the split, not to a tool
    wait_listed(page, 3)
    listed = rows(page)
    assert listed[0]["area"] + listed[2]["area"] == merged and listed[2]["selected"]
    assert page.locator(".thumb[data-name='bowl.png'] .tag").count() == 0

    row(page, 2).click()
    page.locator("#object-reject").click()
    page.wait_for_function("document.querySelector(\".object-item[data-id='2']\").dataset.state === 'rejected'")
    row(page, 1).click()
    page.locator("#object-accept").click()
    page.wait_for_function("document.querySelector(\".object-item[data-id='1']\").dataset.state === 'accepted'")
    page.locator("#object-count").wait_for()
    assert page.locator("#object-count").inner_text() == "2"
    shown = sorted((r["label"], r["area"]) for r in rows(page) if r["state"] != "rejected")

    for box in page.locator("#formats input").all():
        box.set_checked(box.get_attribute("value") in ("coco", "instances"))
    with page.expect_download(timeout=60_000) as download:
        page.locator("#export").click()
    archive = tmp_path / "export.zip"
    download.value.save_as(archive)
    with zipfile.ZipFile(archive) as zf:
        coco = json.loads(zf.read("annotations.json"))
        instances = np.asarray(Image.open(io.BytesIO(zf.read("instances/bowl.png"))))
    from pycocotools import mask as mask_utils

    image_id = next(i["id"] for i in coco["images"] if i["file_name"] == BOWL)
    names = {c["id"]: c["name"] for c in coco["categories"]}
    exported = []
    for ann in coco["annotations"]:
        if ann["image_id"] == image_id:
            assert int(mask_utils.decode(ann["segmentation"]).sum()) == ann["area"]
            exported.append((names[ann["category_id"]], ann["area"]))
    assert sorted(exported) == shown  # one annotation per listed object, the listed areas
    assert sorted(np.bincount(instances.ravel())[1:].tolist()) == sorted(area for _, area in shown)
