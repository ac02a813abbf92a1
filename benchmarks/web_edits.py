"""How long ``sansa serve`` takes to save an edit of a large image, to rename a class and to export.

A real server (random-weight model, CPU) on a temporary folder with one 4000x3000 photo-like image
and ``--small`` 640x480 ones; each case is the wall time of its API request(s), as the page sends them:

* stroke (PNG): the whole 12-Mpx mask as a PNG (what the page sent before strokes were sent as edits)
* stroke (edits): one brush stroke (200 points, 60 px wide) as an edit of the mask the server holds
* lasso (edits): one lasso polygon (400 points, a quarter of the image) as an edit
* polygon: the mask sent as one 400-vertex polygon (``prompt.polygons``, the polygon tool)
* the next target overlay: a stroke, then the 640x480 target the page shows asks for its overlay
  (the edited reference's memory is encoded then: a stroke's save leaves it for later)
* undo: the server puts the reference back as before its last stroke (``POST .../references/undo``)
* rename: renaming the class of that 12-Mpx reference (nothing is encoded again)
* export 12 Mpx: the default formats of the large reference image alone
* export N: the default formats of N small targets, propagated first (export time only)

    python benchmarks/web_edits.py                      # test_tiny, 400 small images
    python benchmarks/web_edits.py --backbone hiera_tiny --small 40

Prints a Markdown table (median of ``--repeat`` runs; the machine's load average beside it).
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

LARGE_WH = (4000, 3000)
SMALL_WH = (640, 480)


def photo(width: int, height: int, seed: int) -> Image.Image:
    """A smooth random image with a bright disc (something to segment); cheap to make at 12 Mpx."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (height // 50 + 1, width // 50 + 1, 3), dtype=np.uint8)
    img = Image.fromarray(small).resize((width, height), Image.Resampling.BILINEAR)
    return img


def mask_png(mask: np.ndarray) -> str:
    out = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8) * 255).save(out, "PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()


def timed(call) -> float:
    start = time.perf_counter()
    response = call()
    elapsed = time.perf_counter() - start
    if response.status_code >= 300:
        raise SystemExit(f"{response.request.method} {response.request.url}: {response.status_code} {response.text}")
    return elapsed


def export_seconds(http, sid: str) -> float:
    start = time.perf_counter()
    status = http.post(f"/api/sessions/{sid}/exports", json={}).json()
    while status["state"] == "running":
        time.sleep(0.05)
        status = http.get(f"/api/sessions/{sid}/exports/{status['id']}").json()
    if status["state"] != "done":
        raise SystemExit(f"export: {status}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", default="test_tiny")
    parser.add_argument("--small", type=int, default=400, help="640x480 targets to export (0: skip)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    import httpx
    import torch

    from sansa import SansaPredictor
    from sansa.model.build import build_sansa
    from sansa.web.app import create_app, serve_in_thread

    torch.manual_seed(0)
    predictor = SansaPredictor(build_sansa(args.backbone), device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        photo(*LARGE_WH, seed=0).save(folder / "large.jpg", quality=90)
        photo(*SMALL_WH, seed=1).save(folder / "target.jpg", quality=90)
        rows = []
        app = create_app(predictor, folder)
        with (
            serve_in_thread(app) as url,
            httpx.Client(base_url=url, headers={"X-Sansa-Token": app.state.token}, timeout=600) as http,
        ):
            sid = http.post("/api/sessions").json()["session_id"]
            http.post(f"/api/sessions/{sid}/classes", json={"name": "object"})
            width, height = LARGE_WH
            mask = np.zeros((height, width), dtype=bool)
            mask[1000:2000, 1500:2500] = True

            def put(prompt: dict) -> float:
                body = {"image": "large.jpg", "label": "object", "prompt": prompt}
                return timed(lambda: http.put(f"/api/sessions/{sid}/references", json=body))

            put({"mask_png": mask_png(mask)})  # the reference, encoded once
            xs = np.linspace(1200, 2800, 200)
            stroke = [[float(x), float(1500 + 200 * np.sin(x / 200))] for x in xs]
            angles = np.linspace(0, 2 * np.pi, 400, endpoint=False)
            polygon = [[2000 + 1000 * np.cos(a), 1500 + 750 * np.sin(a)] for a in angles]
            paint = {"edits": [{"op": "paint", "points": stroke, "width": 60}]}

            def stroke_then_target() -> float:
                put(paint)
                return timed(lambda: http.get(f"/api/sessions/{sid}/targets/target.jpg", params={"max_side": 320}))

            def undo() -> float:
                put(paint)
                body = {"image": "large.jpg", "label": "object"}
                return timed(lambda: http.post(f"/api/sessions/{sid}/references/undo", json=body))

            timed(lambda: http.get(f"/api/sessions/{sid}/targets/target.jpg", params={"max_side": 320}))  # encoded
            cases = {
                "stroke (PNG of the whole mask)": lambda: put({"mask_png": mask_png(mask)}),
                "stroke (edits)": lambda: put(paint),
                "lasso (edits)": lambda: put({"edits": [{"op": "fill", "points": polygon}]}),
                "polygon (400 vertices)": lambda: put({"polygons": [{"points": polygon}]}),
                "the next target overlay after a stroke": stroke_then_target,
                "undo a stroke": undo,
            }
            for name, case in cases.items():
                rows.append((name, statistics.median(case() for _ in range(args.repeat))))
            names = iter(f"object{i}" for i in range(1, 100))
            state = {"name": "object"}

            def rename() -> float:
                new = next(names)
                seconds = timed(lambda: http.patch(f"/api/sessions/{sid}/classes/{state['name']}", json={"name": new}))
                state["name"] = new
                return seconds

            rows.append(("rename a class (12-Mpx reference)", statistics.median(rename() for _ in range(args.repeat))))
            http.put(f"/api/sessions/{sid}/review/target.jpg", json={"state": "rejected"})  # left out
            rows.append(("export, 12-Mpx reference alone", export_seconds(http, sid)))
        if args.small:
            rows += small_export(predictor, args.small)
    load = os.getloadavg()[0]
    print(f"{args.backbone}, CPU ({os.cpu_count()} cores), load average {load:.1f} during the run\n")
    print("| case | seconds |\n|---|---:|")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.3f} |")


def small_export(predictor, count: int) -> list[tuple[str, float]]:
    """Propagate ``count`` small targets from one box reference, then time their export."""
    import httpx

    from sansa.web.app import create_app, serve_in_thread

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for i in range(count + 1):
            photo(*SMALL_WH, seed=i + 1).save(folder / f"im{i:04d}.jpg", quality=90)
        app = create_app(predictor, folder)
        with (
            serve_in_thread(app) as url,
            httpx.Client(base_url=url, headers={"X-Sansa-Token": app.state.token}, timeout=600) as http,
        ):
            sid = http.post("/api/sessions").json()["session_id"]
            http.post(f"/api/sessions/{sid}/classes", json={"name": "object"})
            body = {"image": "im0000.jpg", "label": "object", "prompt": {"box": [200, 150, 440, 330]}}
            http.put(f"/api/sessions/{sid}/references", json=body)
            start = time.perf_counter()
            status = http.post(f"/api/sessions/{sid}/propagate").json()
            while status["state"] == "running":
                time.sleep(0.2)
                status = http.get(f"/api/sessions/{sid}/propagate").json()
            propagated = time.perf_counter() - start
            return [(f"propagate {count} targets", propagated), (f"export {count} targets", export_seconds(http, sid))]


if __name__ == "__main__":
    main()
