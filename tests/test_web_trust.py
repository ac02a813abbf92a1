"""The page can be trusted: what it shows is what the export writes, nothing is destroyed without
asking, the server and the page agree at every step, two tabs never overwrite each other silently,
and a server restart loses nothing. Each test drives Chromium as a user hits the case.
"""

from __future__ import annotations

import json
import re
import socket
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from test_web_browser import (
    CHROMIUM,
    REFERENCE_BOX,
    SCENES,
    SLOW_BROWSER_TESTS,
    browser_page,
    drag,
    export_zip,
    mark_box,
    mask_pixels,
    open_image,
    propagate_all,
    server_state,
    status_ref,
    to_screen,
    wait_for_overlays,
    wait_ready,
    wait_saved,
)

pytestmark = SLOW_BROWSER_TESTS


def api(page, path: str, method: str = "GET") -> dict:
    """``path`` of the current session's API as the server answers it (with the page's token)."""
    return page.evaluate(
        """async ([path, method]) => {
            const headers = {'X-Sansa-Token': document.querySelector('meta[name="sansa-token"]').content};
            const sid = (await (await fetch('/api/sessions/current', {headers})).json()).session_id;
            return (await fetch(`/api/sessions/${sid}${path}`, {method, headers})).json(); }""",
        [path, method],
    )


def card_areas(page, name: str) -> dict[str, int]:
    """The pixels per class the targets grid shows for ``name`` (its score chips' titles)."""
    titles = page.locator(f".card[data-name='{name}'] .score").evaluate_all(
        "cs => cs.map(c => [c.textContent, c.title])"
    )
    return {text.rsplit(" ", 1)[0]: int(title.split(" px")[0].replace(",", "")) for text, title in titles}


def add_class(page, name: str) -> None:
    page.locator("#class-name").fill(name)
    page.locator("#class-name").press("Enter")
    page.wait_for_selector(f".class-item.active[data-name='{name}']")


def lasso(page, points, cut: bool = False) -> None:
    page.keyboard.press("l")
    if cut:
        page.keyboard.down("Shift")
    page.mouse.move(*to_screen(page, *points[0]))
    page.mouse.down()
    for p in points[1:]:
        page.mouse.move(*to_screen(page, *p), steps=2)
    page.mouse.up()
    if cut:
        page.keyboard.up("Shift")


def review_counts(page) -> str:
    return page.locator("#review-counts").inner_text()


# -- what the page shows is what the export writes ----------------------------------------------
def test_an_accepted_target_is_shown_as_exported_and_marked_when_references_change(page, tmp_path):
    mark_box(page)
    page.locator("#review-open").click()  # propagates, then steps through the targets
    page.wait_for_function("document.getElementById('review-name').textContent === 'scene_1.png'", timeout=30_000)
    page.keyboard.press("a")  # accept scene_1 as predicted now
    page.wait_for_function("document.getElementById('review-counts').textContent.includes('1 accepted')")
    page.keyboard.press("Escape")
    open_image(page, "scene_0.png")  # the user changes the reference: another box
    page.keyboard.press("Delete")
    drag(page, (150, 20), (310, 230))
    status_ref(page, "box prompt")
    wait_saved(page)
    card = page.locator(".card[data-name='scene_1.png']")
    page.wait_for_function(
        "() => { const c = document.querySelector(\".card[data-name='scene_1.png']\");"
        " return c.dataset.rev !== '-1' && !c.classList.contains('stale') && c.dataset.outdated === '1'; }",
        timeout=30_000,
    )
    assert "older references" in card.locator(".verdict").get_attribute("title")
    shown = card_areas(page, "scene_1.png")
    archive, _ = export_zip(page, tmp_path, formats=("coco", "png"))
    records = {r["file_name"]: r for r in json.loads(archive.read("images.json"))}
    assert records["scene_1.png"]["source"] == "accepted"
    assert mask_pixels(archive, "masks/scene_1_object.png") == shown["object"] > 0


# -- nothing destroyed without asking ------------------------------------------------------------
def test_deleting_a_class_asks_first_and_is_undone_after_a_reload(page):
    mark_box(page)
    colour = page.locator(".class-item[data-name='object']").get_attribute("data-color")
    page.once("dialog", lambda d: d.dismiss())
    page.locator(".class-item[data-name='object'] .del").click()
    page.wait_for_timeout(300)
    assert page.locator(".class-item[data-name='object']").count() == 1  # "Cancel" keeps everything
    assert len(server_state(page)["references"]) == 1
    page.once("dialog", lambda d: d.accept())
    page.locator(".class-item[data-name='object'] .del").click()
    page.wait_for_selector(".class-item[data-name='object']", state="detached")
    assert server_state(page)["references"] == []
    page.reload()
    wait_ready(page)
    page.locator(".trash-item[data-name='object'] button").click()  # still restorable after a reload
    page.wait_for_selector(f".class-item[data-name='object'][data-color='{colour}']")
    open_image(page, "scene_0.png")
    status_ref(page, "object: box prompt")
    assert server_state(page)["references"][0]["prompt"]["box"] == pytest.approx(list(REFERENCE_BOX), abs=1.0)
    assert page.locator(".trash-item").count() == 0


def test_a_fix_is_per_class_the_other_classes_stay_predicted(page, tmp_path):
    mark_box(page)
    add_class(page, "leaf")
    open_image(page, "scene_1.png")
    page.keyboard.press("p")
    page.mouse.click(*to_screen(page, 160, 120))
    status_ref(page, "leaf: point prompt")
    wait_saved(page)
    propagate_all(page, SCENES - 2)
    wait_for_overlays(page, SCENES - 2)
    target = next(n for n in (f"scene_{i}.png" for i in range(2, SCENES)) if card_areas(page, n).get("leaf", 0) > 0)
    page.keyboard.press("1")  # fix "object" on that target
    page.locator(f".card[data-name='{target}']").hover()
    page.locator(f".card[data-name='{target}'] .promote").click()
    status_ref(page, "object: mask prompt")
    drag(page, (20, 20), (120, 20))
    wait_saved(page)
    shown = api(page, f"/targets/{target}")  # what the editor shows under the fixed class
    leaf = next(c for c in shown["classes"] if c["label"] == "leaf")
    archive, _ = export_zip(page, tmp_path, formats=("coco", "png"))
    records = {r["file_name"]: r for r in json.loads(archive.read("images.json"))}
    assert records[target]["source"] == "corrected"
    assert set(records[target]["classes"]) == {"object", "leaf"}  # leaf is not dropped by fixing object
    stem = Path(target).stem
    assert mask_pixels(archive, f"masks/{stem}_leaf.png") == leaf["area"] > 0
    fixed = next(r for r in server_state(page)["references"] if r["image"] == target)
    assert mask_pixels(archive, f"masks/{stem}_object.png") == fixed["area"]


def test_erasing_a_fixed_mask_and_repainting_it_keeps_server_and_page_in_agreement(page):
    mark_box(page)
    page.locator("#review-open").click()
    page.wait_for_function("document.getElementById('review-name').textContent === 'scene_1.png'", timeout=30_000)
    page.keyboard.press("f")  # fix scene_1: its prediction becomes the mask to correct
    status_ref(page, "object: mask prompt")
    wait_saved(page)
    page.wait_for_function("document.getElementById('review-counts').textContent.includes('1 fixed')")
    lasso(page, [(-5, -5), (330, -5), (330, 250), (-5, 250)], cut=True)  # erase all of it
    status_ref(page, "not a reference")
    wait_saved(page)
    page.wait_for_timeout(500)  # the review counts follow the change
    server = api(page, "/review")
    assert server["counts"]["fixed"] == 1 and "1 fixed" in review_counts(page)
    assert server_state(page)["fixes"] == {"scene_1.png": ["object"]}  # the fix stays: object erased, empty
    page.keyboard.press("m")  # paint it again
    drag(page, (40, 40), (200, 40))
    status_ref(page, "object: mask prompt")
    wait_saved(page)
    refs = [r for r in server_state(page)["references"] if r["image"] == "scene_1.png"]
    assert [r["source"] for r in refs] == ["corrected"]  # not a plain reference
    assert api(page, "/review")["counts"]["fixed"] == 1 and "1 fixed" in review_counts(page)
    assert page.locator(".thumb[data-name='scene_1.png'] .tag").inner_text() == "FIXED"


# -- two tabs, one session -----------------------------------------------------------------------
def test_a_change_made_in_a_stale_tab_is_refused_and_the_tab_shows_the_current_state(page_url):
    with two_tabs(page_url) as (first, second):
        mark_box(first)  # the first tab marks a box
        box = server_state(first)["references"][0]["prompt"]["box"]
        open_image(second, "scene_0.png")  # the second tab still shows the session before it
        second.keyboard.press("b")
        drag(second, (150, 20), (310, 230))
        second.wait_for_selector(".toast.error")
        assert "another tab" in second.locator(".toast.error").first.inner_text()
        assert server_state(second)["references"][0]["prompt"]["box"] == box  # not overwritten
        status_ref(second, "object: box prompt")  # the stale tab now shows the first tab's box
        assert second.evaluate("document.getElementById('save-state').textContent") == "Saved"
        second.keyboard.press("Delete")  # and it can go on from there
        wait_saved(second)
        assert server_state(first)["references"] == []


@contextmanager
def two_tabs(url: str):
    """Two tabs of one Chromium on ``url``, both ready; fails the test on a JavaScript error."""
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        errors: list[str] = []
        tabs = []
        for _ in range(2):
            tab = browser.new_page(viewport={"width": 1440, "height": 860})
            tab.on("pageerror", lambda err: errors.append(str(err)))
            tab.goto(url)
            wait_ready(tab)
            tabs.append(tab)
        yield tabs
        browser.close()
    assert not errors, errors


# -- a restart with a tab open -------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_server_restart_keeps_the_open_tab_working_with_a_banner_meanwhile(tiny_predictor, scene_folder):
    from sansa.web.app import create_app, serve_in_thread

    port = free_port()

    @contextmanager
    def server():
        app = create_app(tiny_predictor, scene_folder, model_name="test_tiny (random weights)")
        with serve_in_thread(app, port=port) as url:
            yield f"{url}/?token={app.state.token}"

    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1440, "height": 860})
        errors: list[str] = []
        page.on("pageerror", lambda err: errors.append(str(err)))
        with server() as url:
            page.goto(url)
            wait_ready(page)
            mark_box(page)
        page.wait_for_selector("#offline:not(.hidden)", timeout=15_000)  # the server is down: the page says so
        assert page.locator("#offline").inner_text() == "Server not reachable, retrying…"
        with server() as again:  # started again on the same folder: the same address, token included
            assert again == url
            page.wait_for_selector("#offline.hidden", state="attached", timeout=15_000)  # gone by itself
            open_image(page, "scene_1.png")
            page.keyboard.press("b")
            drag(page, (20, 20), (120, 120))
            wait_saved(page)
            assert {r["image"] for r in server_state(page)["references"]} == {"scene_0.png", "scene_1.png"}
        browser.close()
    assert not errors, errors
    saved = scene_folder / ".sansa" / "web" / "token"
    assert url.endswith(saved.read_text().strip()) and saved.stat().st_mode & 0o777 == 0o600


# -- the smaller ones ----------------------------------------------------------------------------
def test_label_studio_export_keeps_a_recoloured_class_colour(page, tmp_path):
    page.locator(".class-item[data-name='object'] input[type=color]").fill("#123456")
    page.wait_for_selector(".class-item[data-name='object'][data-color='#123456']")
    mark_box(page)
    propagate_all(page, SCENES - 1)
    archive, _ = export_zip(page, tmp_path, formats=("labelstudio",))
    config = archive.read("labelstudio/config.xml").decode()
    assert re.search(r'<Label value="object" background="#123456"/>', config), config


def test_clicking_an_image_deleted_from_disk_says_so_and_closes_it(page, scene_folder):
    open_image(page, "scene_0.png")
    (scene_folder / "scene_3.png").unlink()
    page.locator(".thumb[data-name='scene_3.png']").click()
    page.wait_for_selector(".toast.error")
    assert page.locator(".toast.error").inner_text() == "scene_3.png: no longer in the folder"
    page.wait_for_selector(".thumb[data-name='scene_3.png']", state="detached")
    assert page.locator("#status-image").inner_text() == "No image open"  # not the previous image


def test_the_wrong_token_page_names_this_servers_address(page_url):
    with browser_page(page_url) as page:
        address = page_url.split("/?token=")[0]
        page.goto(address + "/?token=wrong")
        assert f"{address}/?token=" in page.locator("body").inner_text()


def test_a_too_large_upload_says_its_size_in_human_units(tiny_predictor, scene_folder, tmp_path):
    from PIL import Image

    from sansa.web.app import create_app, serve_in_thread

    app = create_app(tiny_predictor, scene_folder, max_upload_bytes=1024 * 1024)
    noise = np.random.default_rng(0).integers(0, 255, (800, 800, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "big.png")
    with serve_in_thread(app) as url, browser_page(f"{url}/?token={app.state.token}") as page:
        page.locator("#upload").set_input_files(str(tmp_path / "big.png"))
        page.wait_for_selector(".toast.error")
        assert page.locator(".toast.error").inner_text() == "upload 'big.png': over the limit of 1 MiB"
