"""The evaluation scribble: the authors' generator, every scribble pixel a point token.

Behaviour of the authors' evaluation scribbles (``util/promptable_utils.py`` of
ClaudiaCuttano/SANSA, after VRP-SAM and "Free-Form Image Inpainting"), reimplemented:

- the stroke preset and the stroke count are fixed by ``random.Random(321)``: the
  ``rand_curve`` preset and ``randint(1, min(20, area))`` strokes (9 on any mask of 19+ pixels);
- each stroke starts on a random foreground pixel (``torch.randperm`` over the mask's pixels in
  row-major order; the start's ``y`` is ``index / width`` as a float, as theirs), has 10-29
  vertices, a brush 3-9 px wide, a head speed 0-20 px per vertex that drifts by +-15 and a
  heading that drifts by +-0.5 rad (``x += speed sin(angle)``, ``y += speed cos(angle)``);
- then every stroke is moved by an integer velocity (``|N(0, 3)|`` px in a random direction)
  and half its vertices jittered by ``-3..2`` px; the moved strokes are drawn (PIL lines of the
  brush width plus discs of radius ``width // 2 - 1`` at the vertices);
- the scribble is the drawn pixels that lie on the mask; **every pixel is a positive point
  token**, ``(x, y)`` in row-major order (median ~6100 tokens on a large object at 640 px);
  none left (the strokes moved off the mask) gives the click ``(0, 0)``, as theirs.

Randomness: one ``numpy.random.RandomState(seed)`` for the strokes and one
``torch.Generator`` seeded with ``seed`` for the start pixels, drawn in the authors' order,
so ``np.random.seed(s); torch.manual_seed(s)`` before their ``get_scribble_mask`` draws the
same scribble as ``authors_scribble(mask, s)``.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

PRESETS = ("rand_curve", "rand_curve_small")
_EVAL_SEED = 321  # the authors fix the preset and the stroke count with random.Random(321)
RAND_CURVE: dict[str, Any] = {
    "vertices": (10, 30),  # randint bounds: 10..29 vertices after the start
    "max_speed": 20.0,
    "accel": (15.0, 0.5),  # speed, heading
    "brush": (3, 10),  # randint bounds: 3..9 px
    "move_ratio": 0.5,
    "max_move": 3,  # randint(-3, 3): -3..2 px
    "init_speed": 6.0,  # the line's velocity: |N(0, init_speed / 2)|
}


def stroke_count(area: int) -> int:
    """The authors' evaluation stroke count for a mask of ``area`` pixels (9 once ``area >= 19``)."""
    return random.Random(_EVAL_SEED).randint(1, min(20, area))


def evaluation_preset() -> str:
    """``rand_curve``: what ``random.Random(321)`` picks from the two presets at 50/50."""
    return random.Random(_EVAL_SEED).choices(PRESETS, weights=[0.5, 0.5], k=1)[0]


def authors_scribble(mask: np.ndarray, seed: int) -> np.ndarray:
    """The authors' evaluation scribble on ``mask``: ``float32 [P, 2]`` point tokens ``(x, y)``.

    Args:
        mask: ``bool [H, W]`` (an empty mask gives the click ``(0, 0)``).
        seed: seeds the strokes (``RandomState``) and the start pixels (``torch.Generator``).
    """
    mask = np.asarray(mask, dtype=bool)
    height, width = mask.shape
    area = int(mask.sum())
    if area == 0:
        return np.zeros((1, 2), dtype=np.float32)
    assert evaluation_preset() == "rand_curve"
    state = np.random.RandomState(seed % 2**32)
    starts = _start_points(mask, stroke_count(area), seed)
    strokes = [_stroke(start, state) for start in starts]
    moved = [_move(xs, ys, velocity, state) for xs, ys, velocity, _ in strokes]
    canvas = Image.new("1", (width, height), 1)
    for (xs, ys), (_, _, _, brush) in zip(moved, strokes, strict=True):
        _draw(canvas, xs, ys, brush)
    drawn = ~np.asarray(canvas) & mask
    ys_, xs_ = np.nonzero(drawn)
    if len(xs_) == 0:
        return np.zeros((1, 2), dtype=np.float32)
    return np.stack([xs_, ys_], axis=1).astype(np.float32)


def _start_points(mask: np.ndarray, count: int, seed: int) -> np.ndarray:
    """``float32 [n, 2]`` random foreground pixels: ``x`` = column, ``y`` = flat index / width."""
    import torch

    flat = np.flatnonzero(mask.reshape(-1))
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(flat), generator=generator)[:count].numpy()
    index = torch.from_numpy(flat[order])
    width = mask.shape[1]
    x = (index % width).float()
    y = torch.div(index, width)  # true division: a fractional row, as the authors' code
    return torch.stack([x, y.float()], dim=1).numpy()


def _stroke(start: np.ndarray, state: np.random.RandomState) -> tuple[np.ndarray, np.ndarray, tuple[Any, ...], int]:
    """Control points ``xs, ys`` (float64 ``[V + 1]``), the line's velocity and the brush width."""
    p = RAND_CURVE
    brush = int(state.randint(*p["brush"]))
    vertices = state.randint(*p["vertices"])
    angle = state.uniform(0, 2 * np.pi)
    speed = state.uniform(0, p["max_speed"])
    xs, ys = [start[0]], [start[1]]
    x, y = start[0], start[1]
    for _ in range(vertices):
        speed += state.uniform(-p["accel"][0], p["accel"][0])
        angle += state.uniform(-p["accel"][1], p["accel"][1])
        speed = np.clip(speed, 0, p["max_speed"])
        x, y = x + speed * np.sin(angle), y + speed * np.cos(angle)
        xs.append(x)
        ys.append(y)
    velocity = (abs(state.normal(0, p["init_speed"] / 2)), state.uniform(0, 2 * np.pi))
    return np.array(xs), np.array(ys), velocity, brush


def _move(
    xs: np.ndarray, ys: np.ndarray, velocity: tuple[Any, ...], state: np.random.RandomState
) -> tuple[np.ndarray, np.ndarray]:
    """The stroke shifted by its (integer) velocity, half its vertices jittered."""
    p = RAND_CURVE
    speed, angle = velocity
    xs = xs + int(speed * np.cos(angle))
    ys = ys + int(speed * np.sin(angle))
    chosen = np.arange(len(xs))
    state.shuffle(chosen)
    for i in chosen[: int(len(xs) * p["move_ratio"])]:
        xs[i] += state.randint(-p["max_move"], p["max_move"])
        ys[i] += state.randint(-p["max_move"], p["max_move"])
    return xs, ys


def _draw(canvas: Image.Image, xs: np.ndarray, ys: np.ndarray, brush: int) -> None:
    """Lines of width ``brush`` between consecutive vertices, discs at the vertices (fill 0)."""
    draw = ImageDraw.Draw(canvas)
    radius = brush // 2 - 1
    for i in range(1, len(xs)):
        draw.line((xs[i - 1], ys[i - 1], xs[i], ys[i]), fill=0, width=brush)
    for x, y in zip(xs, ys, strict=True):
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=0)
