"""Make the tiny example folder: shaded discs and blocks on textured tables (deterministic).

    python examples/make_examples.py          # rewrites examples/reference*.png, targets/, references.yaml

``reference.png`` holds one red disc (``reference_mask.png`` marks it) and one blue block;
``targets/`` holds five photos-like scenes with discs and blocks of other sizes, tints and
backgrounds. ``references.yaml`` defines two classes on the reference: ``disc`` (mask) and
``block`` (box).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

HERE = Path(__file__).resolve().parent
SIZE = (240, 180)  # width, height of every image
BACKGROUNDS = ((150, 110, 70), (90, 120, 70), (170, 165, 150), (70, 80, 95), (185, 150, 105))
DISC, BLOCK = (200, 45, 40), (40, 80, 190)


def texture(rng: np.random.Generator, base: tuple[int, int, int]) -> np.ndarray:
    """A smooth, grainy surface: low-frequency blotches, wood-like streaks, light fall-off."""
    width, height = SIZE
    coarse = rng.normal(0, 1, (height // 30 + 2, width // 30 + 2))
    blotches = np.asarray(Image.fromarray(coarse.astype(np.float32)).resize((width, height), Image.BICUBIC))
    rows = np.sin(np.linspace(0, rng.uniform(8, 20), height))[:, None] * rng.uniform(4, 10)
    ys, xs = np.mgrid[0:height, 0:width]
    light = 1.1 - 0.35 * np.hypot(xs / width - 0.3, ys / height - 0.2)
    grain = rng.normal(0, 2.5, (height, width))
    shade = (blotches * 9 + rows + grain)[:, :, None]
    return np.clip((np.array(base) + shade) * light[:, :, None], 0, 255)


def add_shape(
    canvas: np.ndarray, kind: str, center: tuple[float, float], radius: float, color: tuple[int, int, int]
) -> np.ndarray:
    """Draw a shaded disc or block with a soft shadow; returns its ``bool [H, W]`` mask."""
    height, width = canvas.shape[:2]
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    dx, dy = (xs - center[0]) / radius, (ys - center[1]) / radius
    if kind == "disc":
        inside = dx**2 + dy**2 <= 1.0
        shading = 1.15 - 0.45 * np.hypot(dx + 0.35, dy + 0.35)
    else:
        inside = (np.abs(dx) <= 0.85) & (np.abs(dy) <= 0.85)
        shading = 1.05 - 0.2 * (dx + dy)
    shadow = np.roll(np.roll(inside, int(radius * 0.15), axis=0), int(radius * 0.2), axis=1)
    soft = np.asarray(Image.fromarray((shadow * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(radius / 6)))
    canvas *= 1 - 0.45 * (soft[:, :, None] / 255.0)
    painted = np.clip(np.array(color) * shading[:, :, None], 0, 255)
    canvas[inside] = painted[inside]
    return inside


def scene(seed: int, shapes: list[tuple[str, tuple[float, float], float, float]]) -> tuple[np.ndarray, list]:
    """An image with ``(kind, center, radius, tint)`` shapes; returns it and their masks."""
    rng = np.random.default_rng(seed)
    canvas = texture(rng, BACKGROUNDS[seed % len(BACKGROUNDS)])
    masks = []
    for kind, center, radius, tint in shapes:
        base = np.array(DISC if kind == "disc" else BLOCK, dtype=float)
        masks.append((kind, add_shape(canvas, kind, center, radius, tuple(np.clip(base * tint, 0, 255)))))
    return canvas.round().astype(np.uint8), masks


TARGETS = {
    "table_01": [("disc", (70, 60), 30, 1.0), ("block", (170, 120), 32, 1.0)],
    "table_02": [("disc", (160, 70), 42, 0.9), ("disc", (60, 130), 22, 1.1)],
    "table_03": [("block", (80, 90), 40, 1.1), ("disc", (185, 60), 26, 0.85)],
    "table_04": [("disc", (120, 95), 55, 1.05)],
    "table_05": [("block", (60, 55), 24, 0.9), ("block", (175, 125), 30, 1.0), ("disc", (170, 45), 20, 1.0)],
}
REFERENCES_YAML = """\
# Two classes from one reference image: the disc by its mask, the block by a box (x0, y0, x1, y1).
# Paths are relative to this file. Try:
#   sansa segment --references examples/references.yaml --targets examples/targets --out runs/two
references:
  - image: reference.png
    mask: reference_mask.png
    label: disc
  - image: reference.png
    box: [140, 82, 208, 150]
    label: block
"""


def main() -> None:
    image, masks = scene(7, [("disc", (80, 80), 38, 1.0), ("block", (174, 116), 38, 1.0)])
    Image.fromarray(image).save(HERE / "reference.png", optimize=True)
    disc = masks[0][1]
    Image.fromarray(disc.astype(np.uint8) * 255).save(HERE / "reference_mask.png", optimize=True)
    (HERE / "targets").mkdir(exist_ok=True)
    for index, (name, shapes) in enumerate(TARGETS.items(), start=1):
        image, _ = scene(index, shapes)
        Image.fromarray(image).save(HERE / "targets" / f"{name}.jpg", quality=80)
    (HERE / "references.yaml").write_text(REFERENCES_YAML)


if __name__ == "__main__":
    main()
