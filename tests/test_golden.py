"""The authors' computation, pinned by ../shared/fixtures/golden_v1, through the public API.

Tolerances (fixtures README): mean |diff| <= 2e-4 and max |diff| <= 1e-2 on the logits of the
target frame and of every reference prompted by point, box or scribble.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conftest import golden_path

MEAN_TOLERANCE, MAX_TOLERANCE = 2e-4, 1e-2


def _cases() -> list[dict]:
    return torch.load(golden_path("cases.pt"), weights_only=True)


def _add(predictor, image: torch.Tensor, prompt: dict):
    image = image.numpy()
    kind = prompt["type"]
    if kind == "mask":
        return predictor.add_reference(image, mask=prompt["mask"].numpy())
    if kind == "box":
        return predictor.add_reference(image, box=prompt["box"].tolist())
    if kind == "point":
        return predictor.add_reference(image, points=prompt["coords"].tolist(), labels=prompt["labels"].tolist())
    return predictor.add_reference(image, scribble=prompt["coords"].tolist())


def run_case(predictor, case: dict) -> list[tuple[str, float, float]]:
    """Run one case; returns ``(frame, mean diff, max diff)`` for every compared frame."""
    predictor.reset()
    references = [_add(predictor, img, p) for img, p in zip(case["images"][:-1], case["prompts"], strict=True)]
    prediction = predictor.predict(case["images"][-1].numpy())
    expected = case["expected_logits"].numpy()
    frames = [("target", prediction.logits, expected[-1])]
    frames += [
        (f"ref{i}:{p['type']}", r.logits, expected[i])
        for i, (r, p) in enumerate(zip(references, case["prompts"], strict=True))
        if p["type"] != "mask"
    ]
    return [(name, float(np.abs(got - want).mean()), float(np.abs(got - want).max())) for name, got, want in frames]


@pytest.mark.parametrize("index", range(6))
def test_golden_case_matches_reference_computation(golden_predictor, index):
    case = _cases()[index]
    diffs = run_case(golden_predictor, case)
    worst_mean = max(d[1] for d in diffs)
    worst_max = max(d[2] for d in diffs)
    print(
        f"\n{case['name']}: worst mean {worst_mean:.2e}, worst max {worst_max:.2e}  "
        + "  ".join(f"[{n} mean {m:.2e} max {x:.2e}]" for n, m, x in diffs)
    )
    for name, mean, largest in diffs:
        assert mean <= MEAN_TOLERANCE, f"{case['name']} {name}: mean diff {mean:.3e}"
        assert largest <= MAX_TOLERANCE, f"{case['name']} {name}: max diff {largest:.3e}"


def test_golden_target_depends_on_the_reference_prompt(golden_predictor):
    """Guard against a test that cannot fail: moving the reference's box moves the target."""
    case = _cases()[2]  # box_1shot
    expected = case["expected_logits"][-1].numpy()
    golden_predictor.reset()
    moved = dict(case["prompts"][0], box=case["prompts"][0]["box"] * 0.5)
    _add(golden_predictor, case["images"][0], moved)
    logits = golden_predictor.predict(case["images"][-1].numpy()).logits
    assert np.abs(logits - expected).mean() > 10 * MEAN_TOLERANCE


def test_golden_adapter_layout_is_inferred(golden_predictor):
    assert golden_predictor.model.adapter_stages == (2, 3)
    assert golden_predictor.model.channel_factor == pytest.approx(0.3)
