"""The polygon tool (draw, move, delete and add vertices; holes) and undo after a reload, in
Chromium: what the server saves is the polygon rasterised, and a reload keeps what can be undone."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_web_browser import (
    SCENE_SIZE,
    SLOW_BROWSER_TESTS,
    browser_page,
    drag,
    mark_box,
    open_image,
    status_ref,
    to_screen,
    wait_ready,
    wait_saved,
)

from sansa.web import polygons, render
from sansa.web.schema import PolygonRing

pytestmark = SLOW_BROWSER_TESTS
SIZE = (SCENE_SIZE[1], SCENE_SIZE[0])  # H, W
# vertices (pixel indices) around the red fruit of scene 0 (centre (95, 105), radius 48), and a hole
OCTAGON = [(147, 105), (132, 142), (95, 157), (58, 142), (43, 105), (58, 68), (95, 53), (132, 68)]
HOLE = [(74, 84), (86, 84), (86, 96), (74, 96)]
POLYGON_SCREENSHOT = Path(__file__).parents[1] / "docs" / "images" / "web-polygon.png"


@pytest.fixture()
def page(page_url):
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
    for x, y in OCTAGON:
        click_vertex(page, x, y)
    click_vertex(page, *OCTAGON[0])  # the first vertex again closes it
    status_ref(page, "object: mask prompt")
    rings = saved_polygons(page, 8)
    assert [tuple(p) for p in rings[0]["points"]] == OCTAGON and not rings[0]["hole"]

    drag(page, (132.5, 142.5), (138.5, 148.5))  # move a vertex
    rings = saved_polygons(page, 8)
    assert rings[0]["points"][1] == [138, 148]

    click_vertex(page, 58, 68, button="right")  # delete a vertex
    rings = saved_polygons(page, 7)
    assert [58, 68] not in rings[0]["points"] and rings[0]["points"][5:] == [[95, 53], [132, 68]]

    drag(page, (113.5, 60.8), (113.5, 50.5))  # an edge grabbed: a vertex added there, dragged out
    rings = saved_polygons(page, 8)
    assert rings[0]["points"][5:] == [[95, 53], [113, 50], [132, 68]]

    for x, y in HOLE:  # Shift: a hole
        click_vertex(page, x, y, shift=True)
    page.keyboard.press("Enter")
    page.wait_for_function("JSON.parse(document.getElementById('canvas').dataset.polygons || '[]').length === 2")
    rings = saved_polygons(page, 8)
    assert rings[1]["hole"] and not server_mask(page)[84:97, 74:87].any()
    if os.environ.get("SANSA_UPDATE_SCREENSHOTS"):  # the README's picture, zoomed on the polygon
        page.mouse.move(*to_screen(page, 95, 105))
        for _ in range(3):
            page.mouse.wheel(0, -120)
        page.mouse.move(*to_screen(page, 150, 60))
        page.wait_for_timeout(300)
        shot = Image.open(io.BytesIO(page.screenshot())).convert("RGB")
        small = shot.resize((1200, round(shot.height * 1200 / shot.width)), Image.Resampling.LANCZOS)
        small.quantize(colors=128, method=Image.Quantize.FASTOCTREE).save(POLYGON_SCREENSHOT, optimize=True)

    page.keyboard.press("z")  # undo: the hole is gone again
    page.wait_for_function("JSON.parse(document.getElementById('canvas').dataset.polygons || '[]').length === 1")
    wait_saved(page)
    assert server_mask(page)[84:97, 74:87].all()


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


def test_the_polygon_tool_on_a_target_starts_from_its_prediction(page):
    mark_box(page)
    open_image(page, "scene_1.png")
    page.keyboard.press("g")
    click_vertex(page, 10, 10)  # no mask of the class here yet: its prediction becomes the one to edit
    status_ref(page, "object: mask prompt")
    page.wait_for_function("(document.getElementById('canvas').dataset.polygons || '[]') !== '[]'")
    wait_saved(page)
    state = page.evaluate("""() => fetch('/api/sessions/current', {headers: {'X-Sansa-Token':
        document.querySelector('meta[name="sansa-token"]').content}}).then(r => r.json())""")
    assert state["fixes"] == {"scene_1.png": ["object"]}  # a fixed target, the editor on the polygon tool
    assert page.locator(".tool.active").get_attribute("data-tool") == "polygon"
    rings = [PolygonRing(**r) for r in shown_polygons(page)]
    assert rings == polygons.rings(server_mask(page, "scene_1.png"))
