"""The evaluation scribble reproduces the authors' generator token for token.

Reference numbers: computed once from the authors' own ``get_scribble_mask`` /
``build_prompt_inputs`` (ClaudiaCuttano/SANSA@3377265, ``util/promptable_utils.py``, fetched to
/tmp, never committed) on the masks of ``minidata.SCRIBBLE_MASKS``, with::

    for seed in range(40):
        np.random.seed(seed); torch.manual_seed(seed)
        tokens = get_scribble_mask(torch.from_numpy(mask)[None, None].float(), training=False).sum()

(their ``util.commons`` and ``einops`` imports stubbed; torch 2.14.1, numpy 2.4.6, Pillow 13.0.0).
``TOKENS`` holds seeds 0-9 of those runs; ``SEED7`` their ``build_prompt_inputs(mask, "scribble",
False)`` for seed 7: (token count, sum of x, sum of y). Medians over all 40 seeds: 7598, 3442,
478, 2202.5 and 12 tokens.
"""

from __future__ import annotations

import numpy as np
import pytest
from minidata import SCRIBBLE_MASKS

from sansa.data.prompts import sample_prompt
from sansa.data.scribble import authors_scribble, evaluation_preset, stroke_count
from sansa.vocab import PromptType

TOKENS = {
    "large ellipse 640": [8908, 9920, 6244, 10871, 9384, 6458, 7631, 8481, 8514, 7754],
    "box 200x120 at 518": [4466, 4918, 3289, 3750, 4749, 2571, 4493, 4154, 3720, 4048],
    "thin bar 6 px at 640": [627, 402, 386, 599, 597, 463, 846, 293, 939, 1010],
    "two blobs at 518": [2977, 2609, 1865, 1973, 2934, 2178, 1905, 1870, 2389, 2577],
    "12-pixel speck at 518": [12, 12, 12, 12, 12, 12, 12, 10, 12, 12],
}
SEED7 = {
    "large ellipse 640": (8481, 2965741, 2550625),
    "box 200x120 at 518": (4154, 1017913, 1097033),
    "thin bar 6 px at 640": (293, 109742, 88648),
    "two blobs at 518": (1870, 304803, 262008),
    "12-pixel speck at 518": (10, 2512, 2511),
}


@pytest.fixture(scope="module")
def masks():
    return {name: make() for name, make in SCRIBBLE_MASKS.items()}


@pytest.mark.parametrize("name", list(TOKENS))
def test_token_counts_and_coverage_match_the_authors(masks, name):
    mask = masks[name]
    scribbles = [authors_scribble(mask, seed) for seed in range(10)]
    counts = [len(s) for s in scribbles]
    assert counts == TOKENS[name]
    area = int(mask.sum())
    assert np.median(counts) == np.median(TOKENS[name])
    assert np.mean(counts) / area == pytest.approx(np.mean(TOKENS[name]) / area, abs=0)  # coverage
    for s in scribbles:  # every token is a mask pixel, listed once, in row-major order
        xy = s.astype(int)
        assert mask[xy[:, 1], xy[:, 0]].all()
        order = xy[:, 1] * mask.shape[1] + xy[:, 0]
        assert (np.diff(order) > 0).all()


@pytest.mark.parametrize("name", list(SEED7))
def test_same_tokens_as_the_authors(masks, name):
    xy = authors_scribble(masks[name], 7)
    assert (len(xy), int(xy[:, 0].sum()), int(xy[:, 1].sum())) == SEED7[name]


@pytest.mark.parametrize(("area", "strokes"), [(1, 1), (2, 2), (5, 3), (10, 5), (19, 9), (10**6, 9)])
def test_stroke_count_fixed_by_random_321(area, strokes):
    assert stroke_count(area) == strokes
    assert evaluation_preset() == "rand_curve"  # brushes 3-9 px, head speed 0-20


def test_empty_mask_gives_the_click_at_the_origin():
    assert authors_scribble(np.zeros((8, 8), bool), 0).tolist() == [[0.0, 0.0]]


def test_sample_prompt_keeps_every_token():
    mask = SCRIBBLE_MASKS["box 200x120 at 518"]()
    rng_seed = int(np.random.default_rng(3).integers(2**31))
    prompt = sample_prompt(mask, "scribble", np.random.default_rng(3), scribble="authors")
    assert prompt.type is PromptType.SCRIBBLE
    assert np.array_equal(prompt.scribble, authors_scribble(mask, rng_seed))
    assert len(prompt.scribble) > 1000  # not thinned to the light scribble's 64
    light = sample_prompt(mask, "scribble", np.random.default_rng(3), scribble="light")
    assert len(light.scribble) <= 64
