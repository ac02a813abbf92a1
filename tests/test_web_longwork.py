"""Long work in the page (Chromium): propagation can be stopped and says how long is left; export
never propagates silently, shows progress and can be cancelled; review sorts by score and runs
from the keyboard alone."""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import pytest
from PIL import Image
from test_web_browser import (
    SLOW_BROWSER_TESTS,
    browser_page,
    make_scene,
    mark_box,
    server_state,
)

pytestmark = SLOW_BROWSER_TESTS
REVIEW_SCREENSHOT = Path(__file__).parents[1] / "docs" / "images" / "web-review.png"
IMAGES = 24  # enough that a propagation or an export lasts a few seconds on random weights


@pytest.fixture()
def many(tmp_path: Path) -> Path:
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(IMAGES):
        make_scene(i).save(folder / f"scene_{i}.png")
    return folder


@pytest.fixture()
def page(tiny_predictor, many):
    from sansa.web.app import create_app, serve_in_thread

    app = create_app(tiny_predictor, many, model_name="test_tiny (random weights)")
    with serve_in_thread(app) as url, browser_page(f"{url}/?token={app.state.token}") as page:
        yield page


def session_api(page, path: str) -> dict:
    return page.evaluate(
        """async (path) => {
            const headers = {'X-Sansa-Token': document.querySelector('meta[name="sansa-token"]').content};
            const sid = (await (await fetch('/api/sessions/current', {headers})).json()).session_id;
            return (await fetch(`/api/sessions/${sid}${path}`, {headers})).json(); }""",
        path,
    )


def watch(page, element: str) -> None:
    """Record every text ``#element`` shows (read back with ``seen(page)``)."""
    page.evaluate(
        """(id) => { window.__seen = [];
            new MutationObserver(() => window.__seen.push(document.getElementById(id).textContent))
              .observe(document.getElementById(id), {childList: true, characterData: true, subtree: true}); }""",
        element,
    )


def seen(page) -> list[str]:
    return page.evaluate("window.__seen")


def test_propagation_says_how_long_is_left_and_stops(page):
    mark_box(page)
    watch(page, "progress-text")
    page.locator("#propagate").click()
    page.wait_for_function("/~\\d+ (s|min) left/.test(document.getElementById('progress-text').textContent)")
    page.locator("#propagate-stop").click()
    page.wait_for_function(
        "document.getElementById('progress-text').textContent.startsWith('stopped · ')", timeout=30_000
    )
    status = session_api(page, "/propagate")
    assert status["state"] == "cancelled" and 0 < status["done"] < status["total"] == IMAGES - 1
    assert page.locator("#propagate-stop").is_hidden()
    assert any(re.fullmatch(r"\d+ / \d+ images · ~\d+ (s|min) left", text) for text in seen(page))


def test_export_never_propagates_silently_shows_progress_and_cancels(page):
    mark_box(page)
    asked = []
    page.once("dialog", lambda d: (asked.append(d.message), d.dismiss()))
    page.locator("#export").click()  # nothing propagated yet: it says so and asks
    page.wait_for_function("document.getElementById('export-note').textContent.includes('not segmented')")
    stale = f"{IMAGES - 1} of {IMAGES - 1} targets are not segmented with the current references"
    assert asked == [f"{stale}. Propagate them first, then export?"]
    assert page.locator("#export-note").inner_text() == f"{stale}."
    assert server_state(page)["propagated"] == 0  # "no": nothing was propagated behind the user's back

    page.once("dialog", lambda d: d.accept())
    for box in page.locator("#formats input").all():
        box.set_checked(box.get_attribute("value") in ("coco", "png", "overlay"))
    watch(page, "export-note")
    page.locator("#export").click()  # "yes": propagates, then exports, and the user cancels it
    exporting = "document.getElementById('export-note').textContent.startsWith('Exporting…')"
    page.wait_for_function(exporting, timeout=60_000)
    page.locator("#export-cancel").click()
    page.wait_for_function("document.getElementById('export-note').textContent === 'Export cancelled.'")
    assert server_state(page)["propagated"] == IMAGES - 1
    assert any(re.fullmatch(r"Exporting… \d+ / \d+( · ~\d+ (s|min) left)?", text) for text in seen(page))


def test_review_sorts_least_confident_first_and_runs_from_the_keyboard(page):
    mark_box(page)
    page.keyboard.press("v")  # review: propagates first, then shows the first target
    page.wait_for_selector("#review-bar:not(.hidden)")
    page.wait_for_function("document.getElementById('review-name').textContent.startsWith('scene_')", timeout=60_000)
    page.keyboard.press("o")  # least confident first
    if os.environ.get("SANSA_UPDATE_SCREENSHOTS"):  # the README's picture of review, kept small
        page.wait_for_timeout(1500)
        shot = Image.open(io.BytesIO(page.screenshot())).convert("RGB").resize((1200, 717), Image.Resampling.LANCZOS)
        shot.quantize(colors=128, method=Image.Quantize.FASTOCTREE).save(REVIEW_SCREENSHOT, optimize=True)
    scores = {i["name"]: i["score"] for i in session_api(page, "/review")["items"]}
    expected = sorted(scores, key=lambda n: scores[n])
    page.wait_for_function("n => document.getElementById('review-name').textContent === n", arg=expected[0])
    page.keyboard.press("a")  # accept: on to the next least confident
    page.wait_for_function("n => document.getElementById('review-name').textContent === n", arg=expected[1])
    page.keyboard.press("r")
    page.wait_for_function("n => document.getElementById('review-name').textContent === n", arg=expected[2])
    page.keyboard.press("t")  # the next filter: every target
    page.wait_for_function("document.getElementById('review-filter').value === 'all'")
    page.keyboard.press("ArrowLeft")
    page.wait_for_function("n => document.getElementById('review-name').textContent === n", arg=expected[1])
    page.keyboard.press("u")
    page.wait_for_function("document.getElementById('review-state').textContent === 'unreviewed'")
    page.keyboard.press("Escape")
    page.wait_for_selector("#review-bar.hidden", state="attached")
    decisions = session_api(page, "/review")["counts"]
    assert (decisions["accepted"], decisions["rejected"]) == (1, 0)
