"""End-to-end tests of the ``sansa serve`` page in a real Chromium (Playwright, Debian's /usr/bin/chromium).

Screenshots go to ``tests/_output/web/``; ``SANSA_UPDATE_SCREENSHOTS=1`` also refreshes the README's
``docs/images/web.png``.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

CHROMIUM = Path("/usr/bin/chromium")
OUTPUT = Path(__file__).parent / "_output" / "web"
DOCS_SCREENSHOT = Path(__file__).parents[1] / "docs" / "images" / "web.png"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCENES = 6
SCENE_SIZE = (320, 240)  # W, H
REFERENCE_BOX = (40, 50, 150, 160)  # the first fruit of scene 0, [x0, y0, x1, y1]

NEEDS_CHROMIUM = pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing (apt-get install chromium)")
pytestmark = [pytest.mark.browser, NEEDS_CHROMIUM]
SLOW_BROWSER_TESTS = [pytest.mark.browser, pytest.mark.slow, NEEDS_CHROMIUM]  # the other browser modules' marks


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


@contextmanager
def browser_page(url: str) -> Iterator:
    """A Chromium page on ``url``, ready; fails the test if the page raised a JavaScript error."""
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1440, "height": 860}, accept_downloads=True)
        errors: list[str] = []
        page.on("pageerror", lambda err: errors.append(str(err)))
        page.goto(url)
        wait_ready(page)
        yield page
        browser.close()
        assert not errors, f"JavaScript errors on the page: {errors}"


def wait_ready(page) -> None:
    page.wait_for_selector("body[data-ready='1']", timeout=20_000)


def view(page) -> dict:
    """The editor's view of the open image: ``{scale, ox, oy, zoom}`` (canvas = o + image * scale)."""
    page.wait_for_function("document.getElementById('canvas').dataset.view")
    return json.loads(page.locator("#canvas").get_attribute("data-view"))


def to_screen(page, x: float, y: float) -> tuple[float, float]:
    """Image pixel ``(x, y)`` of the open image -> page coordinates, through the editor's current view."""
    box = page.locator("#canvas").bounding_box()
    v = view(page)
    return box["x"] + v["ox"] + x * v["scale"], box["y"] + v["oy"] + y * v["scale"]


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
    settle(page)


def settle(page) -> None:
    """Two animation frames: the layout (the hint banner above the image) and the editor's view settle."""
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")


def wait_for_overlays(page, count: int) -> None:
    page.wait_for_function(
        "n => [...document.querySelectorAll('.card .overlay')].filter(i => i.src.startsWith('data:')).length >= n",
        arg=count,
        timeout=20_000,
    )


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


# -- helpers of the tests below -------------------------------------------------------------------
def status_ref(page, words: str) -> None:
    page.wait_for_function("w => document.getElementById('status-ref').textContent.includes(w)", arg=words)


def wait_saved(page) -> None:
    page.wait_for_function("document.getElementById('save-state').textContent === 'Saved'")


def mark_box(page, image: str = "scene_0.png", box=REFERENCE_BOX) -> None:
    open_image(page, image)
    page.keyboard.press("b")
    drag(page, box[:2], box[2:])
    status_ref(page, "box prompt")
    wait_saved(page)


def propagate_all(page, targets: int) -> None:
    page.locator("#propagate").click()
    page.wait_for_function(
        "n => document.getElementById('progress-text').textContent === `${n} images ✓`", arg=targets, timeout=30_000
    )


def export_zip(page, tmp_path: Path, formats=("coco", "png")) -> tuple[zipfile.ZipFile, list[str]]:
    """Export through the page, recording the export note as it changes; the zip and the notes seen."""
    for box in page.locator("#formats input").all():
        box.set_checked(box.get_attribute("value") in formats)
    page.evaluate("""() => { window.__notes = [];
        new MutationObserver(() => window.__notes.push(document.getElementById('export-note').textContent))
          .observe(document.getElementById('export-note'), {childList: true, characterData: true, subtree: true}); }""")
    page.once("dialog", lambda dialog: dialog.accept())  # "N targets are not segmented...: propagate first?"
    with page.expect_download() as download:
        page.locator("#export").click()
    path = tmp_path / "export.zip"
    download.value.save_as(path)
    page.wait_for_function("document.getElementById('export-note').textContent.startsWith('Exported')")
    return zipfile.ZipFile(path), page.evaluate("window.__notes")


def mask_pixels(archive: zipfile.ZipFile, name: str) -> int:
    return int((np.asarray(Image.open(io.BytesIO(archive.read(name)))) > 0).sum())


def server_state(page) -> dict:
    """The session as the server has it (asked with the page's token)."""
    return page.evaluate("""() => fetch('/api/sessions/current', {headers: {'X-Sansa-Token':
        document.querySelector('meta[name="sansa-token"]').content}}).then(r => r.json())""")


def page_classes(page) -> list[tuple[str, str]]:
    return [
        (item.get_attribute("data-name"), item.get_attribute("data-color"))
        for item in page.locator(".class-item").all()
    ]


# -- nothing the user made is lost ---------------------------------------------------------------
def test_reload_restores_the_session_and_unsaved_edits_warn(page):
    mark_box(page)
    page.locator("#class-name").fill("leaf")
    page.locator("#class-name").press("Enter")
    page.wait_for_selector(".class-item.active[data-name='leaf']")  # the server answered: marks go to leaf
    open_image(page, "scene_1.png")
    page.keyboard.press("p")
    page.mouse.click(*to_screen(page, 160, 120))
    status_ref(page, "leaf: point prompt")
    wait_saved(page)
    propagate_all(page, SCENES - 2)
    classes = page_classes(page)

    page.reload()
    wait_ready(page)
    assert page_classes(page) == classes
    assert page.locator("#progress-text").inner_text() == f"{SCENES - 2} images ✓"  # results came back too
    assert page.locator(".thumb .tag").count() == 2
    open_image(page, "scene_1.png")
    page.keyboard.press("2")
    status_ref(page, "leaf: point prompt")
    page.keyboard.press("1")
    open_image(page, "scene_0.png")
    status_ref(page, "object: box prompt")
    screenshot(page, "reloaded.png")

    # an edit the server did not take: the chip says so, and leaving the page asks first (the
    # beforeunload handler cancels the event; headless Chromium shows no dialog for it)
    leaving = (
        "() => { const e = new Event('beforeunload', {cancelable: true}); dispatchEvent(e); "
        "return e.defaultPrevented; }"
    )
    assert page.evaluate(leaving) is False  # everything saved: leave freely
    page.route("**/api/sessions/*/references", lambda route: route.abort())
    page.keyboard.press("p")
    page.mouse.click(*to_screen(page, 95, 105))
    page.wait_for_function("document.getElementById('save-state').textContent === 'Not saved'")
    assert page.evaluate(leaving) is True


def test_server_restart_restores_the_session(tiny_predictor, scene_folder):
    from sansa.web.app import create_app, serve_in_thread

    @contextmanager
    def server():
        app = create_app(tiny_predictor, scene_folder, model_name="test_tiny (random weights)")
        with serve_in_thread(app) as url:
            yield f"{url}/?token={app.state.token}"

    with server() as url, browser_page(url) as page:
        mark_box(page)
        page.locator(".class-item[data-name='object'] .name").dblclick()
        page.locator(".class-item input.rename").fill("fruit")
        page.locator(".class-item input.rename").press("Enter")
        page.wait_for_selector(".class-item[data-name='fruit']")
        propagate_all(page, SCENES - 1)
        before = server_state(page)
        classes = page_classes(page)
    with server() as url, browser_page(url) as page:  # a new server on the same folder
        assert page_classes(page) == classes == [("fruit", before["classes"][0]["color"])]
        assert page.locator("#progress-text").inner_text() == f"{SCENES - 1} images ✓"
        open_image(page, "scene_0.png")
        status_ref(page, "fruit: box prompt")
        after = server_state(page)
        assert after == before
        wait_for_overlays(page, SCENES - 1)

        page.once("dialog", lambda d: d.accept())
        page.locator("#new-session").click()  # starts fresh; the old session stays on disk
        page.wait_for_function("document.querySelectorAll('.thumb .tag').length === 0")
        page.wait_for_selector(".class-item[data-name='object']")
        assert len(page_classes(page)) == 1 and server_state(page)["session_id"] != before["session_id"]
    assert (scene_folder / ".sansa" / "web" / "sessions" / before["session_id"] / "session.json").is_file()


def test_corrected_target_and_references_are_exported_with_their_hand_made_masks(page, tmp_path):
    mark_box(page)
    reference_area = server_state(page)["references"][0]["area"]
    propagate_all(page, SCENES - 1)
    page.locator(".card[data-name='scene_2.png']").hover()
    page.locator(".card[data-name='scene_2.png'] .promote").click()  # "Fix": start from the prediction
    status_ref(page, "object: mask prompt")
    drag(page, (20, 20), (120, 20))  # the brush adds a stroke
    page.keyboard.press("e")
    drag(page, (200, 200), (300, 200))  # the eraser takes some away
    wait_saved(page)
    corrected = next(r for r in server_state(page)["references"] if r["image"] == "scene_2.png")
    assert corrected["source"] == "corrected"
    assert page.locator(".thumb[data-name='scene_2.png'] .tag").inner_text() == "FIXED"

    archive, notes = export_zip(page, tmp_path)
    assert any(n.startswith("Exporting…") for n in notes), notes  # progress was shown
    assert notes[-1] == f"Exported {SCENES} images ✓"
    records = {r["file_name"]: r["source"] for r in json.loads(archive.read("images.json"))}
    assert records == {
        "scene_0.png": "reference",
        "scene_2.png": "corrected",
        **{f"scene_{i}.png": "predicted" for i in (1, 3, 4, 5)},
    }
    assert mask_pixels(archive, "masks/scene_0_object.png") == reference_area
    assert mask_pixels(archive, "masks/scene_2_object.png") == corrected["area"]
    coco = json.loads(archive.read("annotations.json"))
    by_id = {i["id"]: i["file_name"] for i in coco["images"]}
    assert sorted(by_id.values()) == [f"scene_{i}.png" for i in range(SCENES)]
    hand_made = [a for a in coco["annotations"] if by_id[a["image_id"]] in ("scene_0.png", "scene_2.png")]
    assert len(hand_made) == 2 and all(a.get("score", 1.0) == 1.0 for a in hand_made)


def test_class_delete_and_add_keep_colours_distinct_and_equal_to_classes_json(page, tmp_path):
    page.locator(".class-item[data-name='object']").hover()
    page.locator(".class-item[data-name='object'] .del").click()
    page.wait_for_selector(".class-item", state="detached")
    for name in ("fruit", "leaf", "stem"):
        page.locator("#class-name").fill(name)
        page.locator("#class-name").press("Enter")
        page.wait_for_selector(f".class-item[data-name='{name}']")
    page.locator(".class-item[data-name='stem'] input[type=color]").fill("#123456")  # recolour
    page.wait_for_selector(".class-item[data-name='stem'][data-color='#123456']")
    classes = page_classes(page)
    assert len({color for _, color in classes}) == 3
    page.keyboard.press("1")
    mark_box(page)
    propagate_all(page, SCENES - 1)
    archive, _ = export_zip(page, tmp_path, formats=("png", "indexed"))
    table = json.loads(archive.read("classes.json"))
    assert [(row["name"], "#{:02x}{:02x}{:02x}".format(*row["color"])) for row in table[1:]] == classes
    palette = Image.open(io.BytesIO(archive.read("labels/scene_0.png"))).getpalette()[3:12]
    assert ["#{:02x}{:02x}{:02x}".format(*palette[i : i + 3]) for i in (0, 3, 6)] == [c for _, c in classes]
    screenshot(page, "classes.png")


# -- review and correct ----------------------------------------------------------------------------
def test_zoom_pan_and_fit(page):
    open_image(page, "scene_0.png")
    fitted = view(page)
    box = page.locator("#canvas").bounding_box()
    cursor = to_screen(page, 100, 100)
    page.mouse.move(*cursor)
    page.mouse.wheel(0, -400)  # zoom in about the cursor
    page.wait_for_function("JSON.parse(document.getElementById('canvas').dataset.view).zoom > 1.5")
    zoomed = view(page)
    assert zoomed["scale"] > fitted["scale"] * 1.5
    assert to_screen(page, 100, 100) == pytest.approx(cursor, abs=1.0)  # the point under the cursor stays

    page.keyboard.down(" ")  # Space + drag pans
    page.mouse.move(*cursor)
    page.mouse.down()
    page.mouse.move(cursor[0] + 40, cursor[1] + 25, steps=4)
    page.mouse.up()
    page.keyboard.up(" ")
    panned = view(page)
    assert (panned["ox"] - zoomed["ox"], panned["oy"] - zoomed["oy"]) == pytest.approx((40, 25), abs=1.0)
    page.mouse.move(box["x"] + 300, box["y"] + 300)
    page.mouse.down(button="middle")  # so does the middle button
    page.mouse.move(box["x"] + 280, box["y"] + 310, steps=3)
    page.mouse.up(button="middle")
    assert view(page)["ox"] - panned["ox"] == pytest.approx(-20, abs=1.0)
    assert server_state(page)["references"] == []  # panning marked nothing

    page.keyboard.press("b")  # a box drawn while zoomed lands on the right image pixels
    drag(page, (80, 90), (120, 130))
    status_ref(page, "box prompt")
    wait_saved(page)
    assert server_state(page)["references"][0]["prompt"]["box"] == pytest.approx([80, 90, 120, 130], abs=1.0)
    screenshot(page, "zoomed.png")
    page.locator("#fit").click()
    page.wait_for_function("JSON.parse(document.getElementById('canvas').dataset.view).zoom === 1")
    assert view(page)["scale"] == pytest.approx(fitted["scale"])


def test_redo_beside_undo(page):
    open_image(page, "scene_0.png")
    page.keyboard.press("m")
    drag(page, (60, 60), (200, 80))
    status_ref(page, "object: mask prompt")
    page.keyboard.press("z")
    status_ref(page, "not a reference")
    page.keyboard.press("Control+Shift+Z")
    status_ref(page, "object: mask prompt")
    page.keyboard.press("Control+z")
    status_ref(page, "not a reference")
    page.keyboard.press("Control+y")
    status_ref(page, "object: mask prompt")
    page.locator("#undo").click()
    status_ref(page, "not a reference")
    page.locator("#redo").click()
    status_ref(page, "object: mask prompt")
    drag(page, (60, 150), (200, 150))  # a new edit clears what could be redone
    page.keyboard.press("Control+y")
    wait_saved(page)
    page.keyboard.press("z")
    page.keyboard.press("z")
    status_ref(page, "not a reference")


def test_review_accept_reject_fix(page, tmp_path):
    mark_box(page)
    page.locator("#review-open").click()  # propagates first, then steps through "not reviewed"
    page.wait_for_selector("#review-bar:not(.hidden)")
    page.wait_for_function("document.getElementById('review-name').textContent === 'scene_1.png'", timeout=30_000)
    counts = page.locator("#review-counts")
    assert counts.inner_text() == f"{SCENES - 1} to review · 0 accepted · 0 rejected · 0 fixed"
    page.wait_for_function("JSON.parse(document.getElementById('canvas').dataset.view).zoom === 1")
    screenshot(page, "review.png")

    page.keyboard.press("a")  # accept scene_1
    page.wait_for_function("document.getElementById('review-name').textContent === 'scene_2.png'")
    page.keyboard.press("r")  # reject scene_2
    page.wait_for_function("document.getElementById('review-name').textContent === 'scene_3.png'")
    page.locator("#review-fix").click()  # fix scene_3: its prediction becomes a mask to correct
    status_ref(page, "object: mask prompt")
    drag(page, (20, 20), (100, 20))
    wait_saved(page)
    page.wait_for_function("document.getElementById('review-state').textContent === 'fixed'")
    assert counts.inner_text() == f"{SCENES - 4} to review · 1 accepted · 1 rejected · 1 fixed"
    assert page.locator(".card[data-name='scene_1.png']").get_attribute("data-review") == "accepted"
    assert page.locator(".card[data-name='scene_2.png']").get_attribute("data-review") == "rejected"

    page.locator("#review-filter").select_option("all")
    page.keyboard.press("ArrowLeft")  # back to scene_1: take the acceptance back, then accept again
    page.wait_for_function("document.getElementById('review-name').textContent === 'scene_2.png'")
    page.keyboard.press("ArrowLeft")
    page.wait_for_function("document.getElementById('review-name').textContent === 'scene_1.png'")
    page.keyboard.press("u")
    page.wait_for_function("document.getElementById('review-state').textContent === 'unreviewed'")
    assert counts.inner_text() == f"{SCENES - 3} to review · 0 accepted · 1 rejected · 1 fixed"
    page.keyboard.press("a")
    page.wait_for_function("document.getElementById('review-counts').textContent.includes('1 accepted')")

    page.locator("#review-filter").select_option("rejected")
    page.wait_for_function("document.getElementById('review-name').textContent === 'scene_2.png'")
    assert page.locator("#review-pos").inner_text() == "1 / 1"
    page.locator("#review-filter").select_option("low")  # the random model scores low: all but fixed
    page.keyboard.press("Escape")
    page.wait_for_selector("#review-bar.hidden", state="attached")

    archive, _ = export_zip(page, tmp_path, formats=("coco",))
    records = {r["file_name"]: r["source"] for r in json.loads(archive.read("images.json"))}
    assert records == {
        "scene_0.png": "reference",
        "scene_1.png": "accepted",
        "scene_3.png": "corrected",
        "scene_4.png": "predicted",
        "scene_5.png": "predicted",
    }  # scene_2 rejected: left out
