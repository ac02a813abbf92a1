"""The predictor: references encoded once, several classes per target, batches of targets."""

from __future__ import annotations

import numpy as np
import pytest

from sansa.errors import SansaError
from sansa.records import Prediction, Segmentation


def _image(seed: int, height: int = 48, width: int = 64) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.fixture()
def two_class_predictor(tiny_predictor):
    mask = np.zeros((48, 64), bool)
    mask[10:30, 12:40] = True
    tiny_predictor.add_reference(_image(1), mask=mask, label="cat")
    tiny_predictor.add_reference(_image(2), box=[5, 5, 30, 40], label="dog")
    tiny_predictor.add_reference(_image(3), points=[[20, 20], [50, 10]], labels=[1, 0], label="dog")
    return tiny_predictor


def test_multi_class_pass_equals_single_class_runs(two_class_predictor):
    targets = [_image(10), _image(11, 40, 30)]
    segmentations = two_class_predictor.segment_batch(targets)
    for target, segmentation in zip(targets, segmentations, strict=True):
        assert segmentation.labels == ["cat", "dog"]
        assert segmentation.size == target.shape[:2]
        for label in ("cat", "dog"):
            single = two_class_predictor.predict(target, label=label)
            np.testing.assert_allclose(segmentation.predictions[label].logits, single.logits, atol=1e-5)
            assert segmentation.predictions[label].score == pytest.approx(single.score, abs=1e-5)


def test_segment_many_streams_in_batches_and_keeps_order(two_class_predictor):
    targets = [_image(20 + i, 32 + 4 * i, 40) for i in range(5)]
    streamed = list(two_class_predictor.segment_many(targets, batch_size=2))
    assert [s.size for s in streamed] == [t.shape[:2] for t in targets]
    one_by_one = [two_class_predictor.segment(t) for t in targets]
    for a, b in zip(streamed, one_by_one, strict=True):
        np.testing.assert_allclose(a.predictions["dog"].logits, b.predictions["dog"].logits, atol=1e-5)


@pytest.mark.parametrize(
    "cat, dog, expected",
    [
        # logits per pixel (1 x 3 image): background, cat only, both with dog stronger
        ([[-1.0, 2.0, 1.0]], [[-3.0, -1.0, 4.0]], [[0, 1, 2]]),
        ([[0.5, -0.5, 3.0]], [[0.4, -0.2, 3.0]], [[1, 0, 1]]),  # ties go to the first class
    ],
)
def test_label_map_resolves_overlaps_by_highest_logit(cat, dog, expected):
    seg = Segmentation.from_predictions([Prediction(np.array(cat), 0.9, "cat"), Prediction(np.array(dog), 0.8, "dog")])
    assert seg.label_map.tolist() == expected
    assert seg.mask("dog").tolist() == (np.array(expected) == 2).tolist()


def test_predict_needs_a_label_when_there_are_several_classes(two_class_predictor):
    with pytest.raises(SansaError, match="name one"):
        two_class_predictor.predict(_image(5))


def test_segment_without_references_is_a_clear_error(tiny_predictor):
    with pytest.raises(SansaError, match="no reference"):
        tiny_predictor.segment(_image(5))


@pytest.mark.parametrize("budget", [1 << 17, 1])  # all equal-length classes in one call / one class a call
def test_classes_batched_through_memory_attention_equal_single_class_runs(tiny_predictor, monkeypatch, budget):
    import sansa.predictor

    monkeypatch.setattr(sansa.predictor, "ATTENTION_BUDGET", budget)
    for i, label in enumerate(["a", "b", "c"]):  # equal memory lengths: stacked into one batch
        tiny_predictor.add_reference(_image(30 + i), box=[4 + i, 6, 40, 30 + i], label=label)
    tiny_predictor.add_reference(_image(40), points=[[12, 20]], label="c")  # c now longer: its own group
    tiny_predictor.add_reference(_image(41), points=[[30, 20]], label="d")
    targets = [_image(50), _image(51, 30, 50)]
    segmentations = tiny_predictor.segment_batch(targets)
    assert segmentations[0].labels == ["a", "b", "c", "d"]
    for target, segmentation in zip(targets, segmentations, strict=True):
        for label in segmentation.labels:
            single = tiny_predictor.predict(target, label=label)
            np.testing.assert_allclose(segmentation.predictions[label].logits, single.logits, atol=1e-5)


def test_stacked_memories_repeat_per_target():
    import torch

    from sansa.model.memory import MemoryTokens

    memories = [MemoryTokens(torch.full((3, 1, 2), float(c)), torch.zeros(3, 1, 2), 1) for c in range(2)]
    memory, _ = MemoryTokens.stack(memories).batch(4)  # 2 classes x 2 targets, class-major
    assert memory[0, :, 0].tolist() == [0.0, 0.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="different lengths"):
        MemoryTokens.stack([memories[0], MemoryTokens(torch.zeros(4, 1, 2), torch.zeros(4, 1, 2), 1)])
