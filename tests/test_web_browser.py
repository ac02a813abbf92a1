"""End-to-end tests of the ``sansa serve`` page in a real Chromium (Playwright, Debian's /usr/bin/chromium).

Screenshots go to ``tests/_output/web/``; ``SANSA_UPDATE_SCREENSHOTS=1`` also refreshes the README's
``docs/images/web.png``.
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

CHROMIUM = Path("/usr/bin/chromium")
OUTPUT = Path(__file__).parent / "_output" / "web"
DOCS_SCREENSHOT = Path(__file__).parents[1] / "docs" / "images" / "web.png"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCENES = 6
SCENE_SIZE = (320, 240)  # W, H
REFERENCE_BOX = (40, 50, 150, 160)  # the first fruit of scene 0, [x0, y0, x1, y1]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing (apt-get install chromium)"),
]


def make_scene(index: int) -> Image.Image:
    """A still life: red fruits and green leaves on a warm table, different in each scene."""
    rng = np.random.default_rng(index)
    width, height = SCENE_SIZE
    ys = np.linspace(0, 1, height)[:, None, None]
    top, bottom = np.array([236, 224, 205]), np.array([178, 140, 104]) - 10 * index
    pixels = (top * (1 - ys) + bottom * ys + rng.normal(0, 4, (height, width, 3))).clip(0, 255).astype(np.uint8)
    pixels = np.broadcast_to(pixels, (height, width, 3)).copy()
    img = Image.fromarray(pixels)
    draw = ImageDraw.Draw(img)
    for _ in range(2 + index % 2):
        cx, cy = rng.integers(70, width - 70), rng.integers(70, height - 60)
        draw.ellipse([cx - 34, cy - 20, cx + 34, cy + 20], fill=(76, 150, 60), outline=(40, 90, 30), width=2)
    fruits = [(95, 105)] if index == 0 else []
    fruits += [(int(rng.integers(60, width - 60)), int(rng.integers(60, height - 60))) for _ in range(1 + index % 3)]
    for cx, cy in fruits:
        r = int(rng.integers(38, 50)) if (cx, cy) != (95, 105) else 48
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=(200, 30, 40), outline=(120, 10, 20), width=3)
        draw.ellipse([cx - r // 2, cy - r // 2, cx - r // 5, cy - r // 5], fill=(240, 120, 120))
    return img


@pytest.fixture()
def scene_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "fruit"
    folder.mkdir()
    for i in range(SCENES):
        make_scene(i).save(folder / f"scene_{i}.png")
    return folder


@pytest.fixture()
def page_url(tiny_predictor, scene_folder):
    from sansa.web.app import create_app, serve_in_thread

    app = create_app(tiny_predictor, scene_folder, model_name="test_tiny (random weights)")
    with serve_in_thread(app) as url:
        yield f"{url}/?token={app.state.token}"  # the address `sansa serve` prints


@pytest.fixture()
def page(page_url):
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1440, "height": 860}, accept_downloads=True)
        errors: list[str] = []
        page.on("pageerror", lambda err: errors.append(str(err)))
        page.goto(page_url)
        page.wait_for_selector("body[data-ready='1']", timeout=20_000)
        yield page
        browser.close()
        assert not errors, f"JavaScript errors on the page: {errors}"


def to_screen(page, x: float, y: float) -> tuple[float, float]:
    """Image pixel ``(x, y)`` of the open image -> page coordinates (the editor fits the image, 16 px margin)."""
    box = page.locator("#canvas").bounding_box()
    width, height = SCENE_SIZE
    scale = min((box["width"] - 32) / width, (box["height"] - 32) / height)
    ox, oy = (box["width"] - width * scale) / 2, (box["height"] - height * scale) / 2
    return box["x"] + ox + x * scale, box["y"] + oy + y * scale


def drag(page, start: tuple[float, float], end: tuple[float, float], button: str = "left") -> None:
    page.mouse.move(*to_screen(page, *start))
    page.mouse.down(button=button)
    for t in np.linspace(0.2, 1.0, 5):
        page.mouse.move(*to_screen(page, start[0] + t * (end[0] - start[0]), start[1] + t * (end[1] - start[1])))
    page.mouse.up(button=button)


def open_image(page, name: str) -> None:
    page.locator(f".thumb[data-name='{name}']").click()
    page.wait_for_selector("#empty.hidden", state="attached")
    page.wait_for_function("n => document.getElementById('status-image').textContent.startsWith(n)", arg=name)


def wait_for_overlays(page, count: int) -> None:
    page.wait_for_function(
        "n => [...document.querySelectorAll('.card .overlay')].filter(i => i.src.startsWith('data:')).length >= n",
        arg=count, timeout=20_000)


def screenshot(page, name: str) -> Path:
    OUTPUT.mkdir(parents=True, exist_ok=True)
    path = OUTPUT / name
    page.screenshot(path=path)
    return path


def test_box_reference_segments_targets_propagates_and_exports_coco(page, tmp_path):
    open_image(page, "scene_0.png")
    drag(page, REFERENCE_BOX[:2], REFERENCE_BOX[2:])
    page.wait_for_function("document.getElementById('status-ref').textContent.includes('box prompt')")
    assert page.locator(".thumb[data-name='scene_0.png'] .tag").inner_text() == "REF"
    wait_for_overlays(page, 4)
    assert page.locator(".card").count() == SCENES - 1  # the reference left the targets
    screenshot(page, "box_reference.png")

    page.locator("#propagate").click()
    page.wait_for_function("document.getElementById('progress-text').textContent.includes('✓')", timeout=30_000)
    assert page.locator("#progress-text").inner_text() == f"{SCENES - 1} images ✓"
    screenshot(page, "propagated.png")

    with page.expect_download() as download:
        page.locator("#export").click()
    archive = tmp_path / "export.zip"
    download.value.save_as(archive)
    with zipfile.ZipFile(archive) as zf:
        names = set(zf.namelist())
        coco = json.loads(zf.read("annotations.json"))
        mask_png = zf.read("masks/scene_1_object.png")
    assert {"annotations.json", "classes.json", "yolo/data.yaml", "yolo/labels/scene_1.txt"} <= names
    assert [c["name"] for c in coco["categories"]] == ["object"]
    assert sorted(i["file_name"] for i in coco["images"]) == [f"scene_{i}.png" for i in range(SCENES)]
    assert all((i["width"], i["height"]) == SCENE_SIZE for i in coco["images"])
    from pycocotools import mask as mask_utils

    for ann in coco["annotations"]:
        decoded = mask_utils.decode(ann["segmentation"])
        assert decoded.shape == SCENE_SIZE[::-1] and int(decoded.sum()) == ann["area"] > 0
    assert Image.open(io.BytesIO(mask_png)).size == SCENE_SIZE


def test_lasso_points_classes_brush_undo_promote_and_help(page):
    open_image(page, "scene_0.png")
    page.keyboard.press("l")  # lasso around the first fruit: a mask prompt
    centre, radius = (95, 105), 50
    angles = np.linspace(0, 2 * np.pi, 24)
    page.mouse.move(*to_screen(page, centre[0] + radius, centre[1]))
    page.mouse.down()
    for a in angles[1:]:
        page.mouse.move(*to_screen(page, centre[0] + radius * np.cos(a), centre[1] + radius * np.sin(a)))
    page.mouse.up()
    page.wait_for_function("document.getElementById('status-ref').textContent.includes('object: mask prompt')")
    wait_for_overlays(page, SCENES - 1)
    shot = screenshot(page, "lasso_reference.png")
    if os.environ.get("SANSA_UPDATE_SCREENSHOTS"):  # the README's picture, kept small
        small = Image.open(shot).convert("RGB").resize((1200, 717), Image.Resampling.LANCZOS)
        small.quantize(colors=128, method=Image.Quantize.FASTOCTREE).save(DOCS_SCREENSHOT, optimize=True)

    page.locator("#class-name").fill("leaf")
    page.locator("#class-name").press("Enter")
    page.wait_for_selector(".class-item.active[data-name='leaf']")
    open_image(page, "scene_1.png")
    page.keyboard.press("p")
    page.mouse.click(*to_screen(page, 160, 120))
    page.mouse.click(*to_screen(page, 20, 20), button="right")
    page.wait_for_function("document.getElementById('status-ref').textContent.includes('leaf: point prompt')")
    page.keyboard.press("m")  # brush: a mask prompt replaces the clicks
    drag(page, (60, 60), (200, 80))
    page.wait_for_function("document.getElementById('status-ref').textContent.includes('leaf: mask prompt')")
    page.keyboard.press("z")  # undo the stroke: back to the clicks
    page.wait_for_function("document.getElementById('status-ref').textContent.includes('leaf: point prompt')")
    wait_for_overlays(page, 4)
    screenshot(page, "two_classes.png")

    page.keyboard.press("1")  # class "object"
    page.wait_for_selector(".class-item.active[data-name='object']")
    page.locator(".card[data-name='scene_2.png']").hover()
    page.locator(".card[data-name='scene_2.png'] .promote").click()
    page.wait_for_function("document.getElementById('status-image').textContent.startsWith('scene_2.png')")
    page.wait_for_function("document.getElementById('status-ref').textContent.includes('object: mask prompt')")
    assert page.locator(".thumb[data-name='scene_2.png'] .tag").count() == 1
    assert page.locator(".card[data-name='scene_2.png']").count() == 0

    page.keyboard.press("?")
    assert page.locator("#help").is_visible()
    screenshot(page, "help.png")
    page.keyboard.press("Escape")
    assert not page.locator("#help").is_visible()
    page.keyboard.press("Delete")  # clear the promoted reference: scene_2 is a target again
    page.wait_for_selector(".card[data-name='scene_2.png']")


def test_upload_an_image_and_delete_a_class(page, scene_folder, tmp_path):
    upload = tmp_path / "new_scene.png"
    make_scene(7).save(upload)
    page.locator("#upload").set_input_files(str(upload))
    page.wait_for_selector(".thumb[data-name='new_scene.png']")
    assert (scene_folder / "new_scene.png").read_bytes() == upload.read_bytes()
    assert page.locator("#image-count").inner_text() == str(SCENES + 1)

    (tmp_path / "notes.txt").write_text("not an image")
    page.locator("#upload").set_input_files(str(tmp_path / "notes.txt"))
    page.wait_for_selector(".toast.error")
    assert "not an image file name" in page.locator(".toast.error").inner_text()

    page.locator(".class-item[data-name='object']").hover()
    page.locator(".class-item[data-name='object'] .del").click()
    page.wait_for_selector(".class-item", state="detached")
    assert page.locator("#status-image").inner_text() == "No image open"
