"""The page's features layer and review sort by margin, in a real Chromium (see test_web_browser.py)."""

from __future__ import annotations

from tests.test_web_browser import (
    SLOW_BROWSER_TESTS,
    drag,
    mark_box,
    open_image,
    screenshot,
    status_ref,
    wait_saved,
)

pytestmark = SLOW_BROWSER_TESTS


def test_features_layer_and_review_by_margin(page):  # noqa: F811
    mark_box(page)  # class "object" on scene_0
    page.locator("#class-name").fill("leaf")
    page.locator("#class-name").press("Enter")
    page.wait_for_selector(".class-item.active[data-name='leaf']")

    open_image(page, "scene_2.png")
    with page.expect_response(lambda r: "/features.png" in r.url) as answer:
        page.locator("#features-layer").check()
    assert answer.value.status == 200 and answer.value.headers["content-type"] == "image/png"
    screenshot(page, "features_layer.png")
    with page.expect_response(lambda r: "/features.png" in r.url and "scene_3.png" in r.url):
        open_image(page, "scene_3.png")  # the layer follows the open image
    with page.expect_response(lambda r: "/features.png" in r.url and "scene_3.png" in r.url):
        page.keyboard.press("b")  # a new reference: the layer's components are fitted again
        drag(page, (150, 150), (300, 230))
    status_ref(page, "leaf: box prompt")
    wait_saved(page)
    page.locator("#features-layer").uncheck()

    page.locator("#review-open").click()  # propagates first
    page.wait_for_selector("#review-bar:not(.hidden)")
    page.wait_for_function("document.getElementById('review-name').textContent.startsWith('scene_')", timeout=30_000)
    with page.expect_response(lambda r: r.url.split("?")[0].endswith("/margins")) as answer:
        page.locator("#review-sort").select_option("margin")
    margins = answer.value.json()["margins"]
    known = {name: m for name, m in margins.items() if m is not None}
    assert known, margins  # two classes, propagated: targets with a class region have a margin
    lowest = min(known, key=known.get)
    page.wait_for_function("n => document.getElementById('review-name').textContent === n", arg=lowest, timeout=10_000)
    assert "margin" in page.locator("#review-score").inner_text()
