"""The polygon tool (draw, move, delete and add vertices; holes) and undo after a reload, in
Chromium: what the server saves is the polygon rasterised, and a reload keeps what can be undone."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_web_browser import (  # noqa: F401  (page_url, scene_folder: the fixtures)
    CHROMIUM,
    SCENE_SIZE,
    browser_page,
    drag,
    mark_box,
    open_image,
    page_url,
    scene_folder,
    status_ref,
    to_screen,
    wait_ready,
    wait_saved,
)

from sansa.web import polygons, render
from sansa.web.schema import PolygonRing

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing (apt-get install chromium)"),
]
SIZE = (SCENE_SIZE[1], SCENE_SIZE[0])  # H, W
SQUARE = [(60, 60), (180, 60), (180, 170), (60, 170)]  # vertices, pixel indices


@pytest.fixture()
def page(page_url):  # noqa: F811  (the imported fixture)
    with browser_page(page_url) as page:
        yield page


def server_mask(page, image: str = "scene_0.png", label: str = "object") -> np.ndarray:
    """``bool [H, W]``: the class's mask on ``image`` as the server holds it (asked through the API)."""
    state = page.evaluate("""() => fetch('/api/sessions/current', {headers: {'X-Sansa-Token':
        document.querySelector('meta[name="sansa-token"]').content}}).then(r => r.json())""")
    ref = next(r for r in state["references"] if r["image"] == image and r["label"] == label)
    return render.decode_mask_png(ref["mask_png"], SIZE, 1 << 26)


def shown_polygons(page) -> list[dict]:
    """The active class's polygons as the editor shows them (the canvas's data-polygons)."""
    return json.loads(page.locator("#canvas").get_attribute("data-polygons") or "[]")


def click_vertex(page, x: float, y: float, button: str = "left", shift: bool = False) -> None:
    """Click pixel ``(x, y)`` at its centre (a vertex there is the pixel's index)."""
    if shift:
        page.keyboard.down("Shift")
    page.mouse.click(*to_screen(page, x + 0.5, y + 0.5), button=button)
    if shift:
        page.keyboard.up("Shift")


def saved_polygons(page, vertices: int) -> list[dict]:
    """Once saved: the polygons shown (the first one has ``vertices`` vertices), checked against the
    server's mask: it is those polygons rasterised."""
    page.wait_for_function(
        "n => JSON.parse(document.getElementById('canvas').dataset.polygons || '[]')[0]?.points.length === n",
        arg=vertices,
    )
    wait_saved(page)
    rings = shown_polygons(page)
    expected = polygons.rasterise([PolygonRing(**r) for r in rings], SIZE)
    assert np.array_equal(server_mask(page), expected)
    return rings


def test_draw_a_polygon_then_move_delete_and_add_vertices(page):
    open_image(page, "scene_0.png")
    page.keyboard.press("g")
    for x, y in SQUARE:
        click_vertex(page, x, y)
    click_vertex(page, *SQUARE[0])  # the first vertex again closes it
    status_ref(page, "object: mask prompt")
    rings = saved_polygons(page, 4)
    assert [tuple(p) for p in rings[0]["points"]] == SQUARE and not rings[0]["hole"]
    assert server_mask(page).sum() == 121 * 111  # the edges are in

    drag(page, (180.5, 170.5), (220.5, 200.5))  # move a vertex
    rings = saved_polygons(page, 4)
    assert rings[0]["points"][2] == [220, 200]

    click_vertex(page, 180, 60, button="right")  # delete a vertex
    rings = saved_polygons(page, 3)
    assert [tuple(p) for p in rings[0]["points"]] == [(60, 60), (220, 200), (60, 170)]

    drag(page, (60.5, 115.5), (20.5, 115.5))  # an edge grabbed: a vertex added there, dragged out
    rings = saved_polygons(page, 4)
    assert rings[0]["points"][-1] == [20, 115]

    for x, y in [(80, 110), (100, 110), (100, 130), (80, 130)]:  # Shift: a hole
        click_vertex(page, x, y, shift=True)
    page.keyboard.press("Enter")
    page.wait_for_function("JSON.parse(document.getElementById('canvas').dataset.polygons || '[]').length === 2")
    rings = saved_polygons(page, 4)
    assert rings[1]["hole"] and not server_mask(page)[110:131, 80:101].any()

    page.keyboard.press("z")  # undo: the hole is gone again
    page.wait_for_function("JSON.parse(document.getElementById('canvas').dataset.polygons || '[]').length === 1")
    wait_saved(page)
    assert server_mask(page)[110:131, 80:101].all()


def test_a_box_reference_shown_and_edited_as_polygons(page):
    mark_box(page)
    decoded = server_mask(page)
    page.locator("#polygons-layer").check()
    page.wait_for_function("(document.getElementById('canvas').dataset.polygons || '[]') !== '[]'")
    rings = [PolygonRing(**r) for r in shown_polygons(page)]
    assert rings == polygons.rings(decoded)  # the decoded mask's outlines (holes too)
    page.keyboard.press("g")
    first = rings[0].points[0]
    drag(page, (first[0] + 0.5, first[1] + 0.5), (first[0] + 10.5, first[1] + 0.5))
    status_ref(page, "object: mask prompt")  # the box prompt became the polygons' mask
    wait_saved(page)
    expected = polygons.rasterise([PolygonRing(**r) for r in shown_polygons(page)], SIZE)
    assert np.array_equal(server_mask(page), expected)


def test_undo_after_a_reload_brings_back_the_previous_mask(page):
    open_image(page, "scene_0.png")
    page.keyboard.press("m")
    masks = []
    for start, end in [((60, 60), (200, 60)), ((120, 100), (250, 200)), ((40, 200), (280, 210))]:
        drag(page, start, end)
        page.wait_for_timeout(150)  # sent as its own change (the page waits 80 ms for more)
        wait_saved(page)
        masks.append(server_mask(page))
    page.keyboard.press("z")  # the server's undo: exactly the mask it had before
    status_ref(page, f"{int(masks[1].sum()):,} px")
    assert np.array_equal(server_mask(page), masks[1])
    page.reload()
    wait_ready(page)
    open_image(page, "scene_0.png")
    page.keyboard.press("z")  # the page's memory is gone: the server's undo steps are not
    status_ref(page, f"{int(masks[0].sum()):,} px")
    assert np.array_equal(server_mask(page), masks[0])
    page.keyboard.press("z")
    status_ref(page, "not a reference")  # before the first stroke: no reference
    page.keyboard.press("z")
    page.wait_for_selector(".toast:has-text('left to undo')")
