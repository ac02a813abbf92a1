"""Prompts generated from masks: points, box, scribble, mask; empty masks refused."""

from __future__ import annotations

import numpy as np
import pytest

from sansa.data.prompts import EmptyMaskPrompt, empty_prompt, largest_box, sample_prompt, sample_scribble
from sansa.errors import PromptError
from sansa.vocab import PromptType


def mask_of(rows: list[str]) -> np.ndarray:
    return np.array([[c == "#" for c in row] for row in rows])


BLOB = mask_of(["........", ".###....", ".###....", "......##", "......##"])


@pytest.mark.parametrize(
    ("mask", "num_points", "expected"),
    [
        (BLOB, None, 10),  # min(20, area = 10)
        (BLOB, 3, 3),
        (BLOB, 50, 10),
        (np.ones((10, 10), bool), None, 20),
        (mask_of(["..#.."]), None, 1),
    ],
)
def test_points_are_distinct_foreground_pixels(mask, num_points, expected):
    prompt = sample_prompt(mask, "point", np.random.default_rng(0), num_points=num_points)
    xy = prompt.points.astype(int)
    assert prompt.type is PromptType.POINT and len(xy) == expected
    assert mask[xy[:, 1], xy[:, 0]].all()
    assert len({tuple(p) for p in xy}) == expected
    assert (prompt.labels == 1).all()


@pytest.mark.parametrize(
    ("rows", "box"),
    [
        (["##..", "##..", "...."], [0, 0, 2, 2]),
        ([".....", ".###.", ".....", "....#"], [1, 1, 4, 2]),  # largest of two separate boxes
        (["###..", "#....", "#.###", "....#"], [0, 0, 5, 4]),  # two L shapes whose boxes overlap merge
        (["###.", "#...", "#.##", "#.#.", "...."], [0, 0, 4, 4]),  # nested component box merges into outer
        # one pass, as the authors' get_bounding_boxes: a later box grows a kept box into another kept
        # box, which is not merged again (merging to a fixed point would give [0, 0, 5, 5]); checked
        # against their function, and on 3000 random 7x9 masks without a difference
        (["##....", "#.##..", ".#.##.", ".#.#.#", ".##..."], [1, 1, 5, 5]),
    ],
)
def test_box_merges_overlapping_components(rows, box):
    assert largest_box(mask_of(rows)).tolist() == box
    assert sample_prompt(mask_of(rows), "box", np.random.default_rng(0)).box.tolist() == box


@pytest.mark.parametrize("seed", range(5))
def test_scribbles_lie_on_the_mask(seed):
    mask = np.zeros((60, 80), dtype=bool)
    mask[10:50, 15:70] = True
    strokes = sample_scribble(mask, np.random.default_rng(seed))
    assert 1 <= len(strokes) <= 20
    for stroke in strokes:
        xy = stroke.astype(int)
        assert mask[xy[:, 1], xy[:, 0]].all()
    prompt = sample_prompt(mask, PromptType.SCRIBBLE, np.random.default_rng(seed), scribble="light")
    assert prompt.type is PromptType.SCRIBBLE and len(prompt.scribble) <= 64


def test_scribble_stroke_count():
    mask = np.ones((30, 30), dtype=bool)
    assert len(sample_scribble(mask, np.random.default_rng(0), num_strokes=4)) == 4


@pytest.mark.parametrize("kind", ["mask", "point", "box", "scribble"])
def test_same_seed_same_prompt(kind):
    a = sample_prompt(BLOB, kind, np.random.default_rng(5))
    b = sample_prompt(BLOB, kind, np.random.default_rng(5))
    for name in ("points", "box", "scribble", "mask"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None and y is None) or np.array_equal(x, y)


@pytest.mark.parametrize("kind", ["mask", "point", "box", "scribble"])
def test_empty_mask_is_refused_not_a_click_at_origin(kind):
    with pytest.raises(PromptError, match="mask: is empty"):
        sample_prompt(np.zeros((4, 4), bool), kind, np.random.default_rng(0))


@pytest.mark.parametrize("kind", ["mixed", "lasso"])
def test_unknown_kind(kind):
    with pytest.raises(PromptError, match="prompt kind"):
        sample_prompt(BLOB, kind, np.random.default_rng(0))


def test_mask_prompt_is_a_copy():
    mask = BLOB.copy()
    prompt = sample_prompt(mask, "mask", np.random.default_rng(0))
    mask[:] = False
    assert prompt.mask.sum() == 10


def test_largest_box_of_an_empty_mask_is_the_zero_box():
    assert largest_box(np.zeros((3, 3), bool)).tolist() == [0, 0, 0, 0]


@pytest.mark.parametrize(
    ("kind", "field", "value"),
    [
        ("mask", "mask", np.zeros((3, 4), bool)),
        ("point", "points", [[0, 0]]),
        ("scribble", "scribble", [[0, 0]]),
        ("box", "box", [0, 0, 0, 0]),
    ],
)
def test_authors_prompt_for_an_empty_support(kind, field, value):
    prompt = empty_prompt(kind, 3, 4)
    assert np.array_equal(getattr(prompt, field), value)
    prompt.check_fits(3, 4)  # the predictor accepts it (an empty mask is refused elsewhere)
    assert isinstance(prompt, EmptyMaskPrompt) == (kind == "mask")
