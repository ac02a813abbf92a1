"""Editing in the page as a CVAT user expects: per-class show/hide, a mask opacity slider, a brush
sized in image pixels, and a fixed mask that a click never silently replaces (Chromium)."""

from __future__ import annotations

import pytest
from test_web_browser import (
    SCENES,
    SLOW_BROWSER_TESTS,
    drag,
    mark_box,
    open_image,
    propagate_all,
    server_state,
    status_ref,
    to_screen,
    view,
    wait_ready,
    wait_saved,
)

pytestmark = SLOW_BROWSER_TESTS


def canvas_pixel(page, x: float, y: float) -> list[int]:
    """The RGBA the editor's canvas shows at image pixel ``(x, y)``."""
    page.wait_for_timeout(100)  # the next animation frame has drawn
    v = view(page)
    return page.evaluate(
        """([x, y]) => { const c = document.getElementById('canvas'); const d = window.devicePixelRatio || 1;
            return [...c.getContext('2d').getImageData(Math.round(x * d), Math.round(y * d), 1, 1).data]; }""",
        [v["ox"] + x * v["scale"], v["oy"] + y * v["scale"]],
    )


def test_a_class_can_be_hidden_and_the_masks_opacity_set(page):
    mark_box(page)
    inside = (95, 105)  # in the reference box, on the fruit
    shown = canvas_pixel(page, *inside)
    page.locator(".class-item[data-name='object'] .eye").click()  # hide "object"
    hidden = canvas_pixel(page, *inside)
    assert hidden != shown
    page.reload()
    wait_ready(page)
    assert page.locator(".class-item[data-name='object'] .eye.off").count() == 1  # remembered
    open_image(page, "scene_0.png")
    assert canvas_pixel(page, *inside) == hidden
    page.locator(".class-item[data-name='object'] .eye").click()  # shown again
    assert canvas_pixel(page, *inside) == shown
    page.locator("#opacity").fill("0")  # no mask at all: the photo itself
    assert canvas_pixel(page, *inside) == hidden
    page.locator("#opacity").fill("20")
    faint = canvas_pixel(page, *inside)
    assert faint not in (shown, hidden)
    assert server_state(page)["references"][0]["area"] > 0  # hiding and opacity changed nothing marked


def test_the_brush_size_is_in_image_pixels_whatever_the_zoom(page):
    open_image(page, "scene_0.png")
    page.keyboard.press("m")
    size = page.locator("#brush-size").inner_text()
    assert size.endswith(" px")
    drag(page, (40, 200), (200, 200))
    status_ref(page, "object: mask prompt")
    wait_saved(page)
    fitted = server_state(page)["references"][0]["area"]
    page.keyboard.press("Delete")
    wait_saved(page)
    page.mouse.move(*to_screen(page, 120, 200))
    page.mouse.wheel(0, -500)  # zoomed in about 2x or more
    page.wait_for_function("JSON.parse(document.getElementById('canvas').dataset.view).zoom > 1.8")
    assert page.locator("#brush-size").inner_text() == size  # the same brush
    drag(page, (80, 200), (160, 200))  # half the length, on screen as long or longer
    wait_saved(page)
    zoomed = server_state(page)["references"][0]["area"]
    diameter = int(size.split()[0])
    assert zoomed == pytest.approx(fitted / 2 + 0.39 * diameter**2, rel=0.2)  # the same width (round caps: pi d^2 / 4)


def test_a_click_in_fix_mode_never_drops_the_fixed_mask(page):
    mark_box(page)
    propagate_all(page, SCENES - 1)
    page.locator(".card[data-name='scene_2.png']").hover()
    page.locator(".card[data-name='scene_2.png'] .promote").click()
    status_ref(page, "object: mask prompt")
    wait_saved(page)
    before = next(r for r in server_state(page)["references"] if r["image"] == "scene_2.png")
    for tool, act in (("p", lambda: page.mouse.click(*to_screen(page, 100, 100))), ("b", None)):
        page.keyboard.press(tool)
        act() if act else drag(page, (30, 30), (150, 150))
        page.wait_for_selector(".toast")
        assert "This is a fixed mask" in page.locator(".toast").last.inner_text()
        status_ref(page, "object: mask prompt")
    wait_saved(page)
    after = next(r for r in server_state(page)["references"] if r["image"] == "scene_2.png")
    assert (after["prompt_type"], after["area"], after["source"]) == ("mask", before["area"], "corrected")
