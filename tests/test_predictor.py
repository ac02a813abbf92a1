"""The predictor: references encoded once, several classes per target, batches of targets."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from sansa.errors import SansaError
from sansa.objects import ObjectOptions
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
    segmentations = two_class_predictor.segment_batch(targets, keep_logits=True)
    for target, segmentation in zip(targets, segmentations, strict=True):
        assert segmentation.labels == ["cat", "dog"]
        assert segmentation.size == target.shape[:2]
        for label in ("cat", "dog"):
            single = two_class_predictor.predict(target, label=label)
            np.testing.assert_allclose(segmentation.predictions[label].logits, single.logits, atol=1e-5)
            assert segmentation.predictions[label].score == pytest.approx(single.score, abs=1e-5)


def test_segment_many_streams_in_batches_and_keeps_order(two_class_predictor):
    targets = [_image(20 + i, 32 + 4 * i, 40) for i in range(5)]
    streamed = list(two_class_predictor.segment_many(targets, batch_size=2, keep_logits=True))
    assert [s.size for s in streamed] == [t.shape[:2] for t in targets]
    one_by_one = [two_class_predictor.segment(t, keep_logits=True) for t in targets]
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
    segmentations = tiny_predictor.segment_batch(targets, keep_logits=True)
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


def test_segment_finds_objects_that_tile_each_class(two_class_predictor):
    """Each class's pixels are exactly its objects' union, no pixel in two objects; the only
    change objects make to the label map is dropping specks under min_area."""
    target = _image(12, 64, 80)
    plain = two_class_predictor.segment(target, objects=False, keep_logits=True)
    options = ObjectOptions(min_area=8, points_per_class=3)
    seg = two_class_predictor.segment(target, objects=options)
    assert plain.objects == [] and seg.objects
    assert [o.label for o in seg.objects] == sorted((o.label for o in seg.objects), key=seg.labels.index)
    owners = np.zeros(seg.size, dtype=int)
    for o in seg.objects:
        assert o.mask.shape == seg.size and o.mask.dtype == bool and o.area >= 8
        owners += o.mask
        assert (seg.label_map[o.mask] == seg.labels.index(o.label) + 1).all()
    assert owners.max() == 1 and ((owners > 0) == (seg.label_map > 0)).all()
    dropped = seg.label_map != plain.label_map
    assert (seg.label_map[dropped] == 0).all()
    for class_id in (1, 2):  # dropped: pieces under min_area touching no pixel the class kept
        count, pieces = cv2.connectedComponents(
            (dropped & (plain.label_map == class_id)).astype(np.uint8), connectivity=4
        )
        kept = np.pad(seg.label_map == class_id, 1)
        for piece in range(1, count):
            ys, xs = np.nonzero(pieces == piece)
            assert len(ys) < 8
            assert not any(kept[ys + 1 + dy, xs + 1 + dx].any() for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0)))
    resolved = Segmentation.from_predictions(list(plain.predictions.values()))
    assert plain.label_map.tolist() == resolved.label_map.tolist()
    assert seg.predictions["cat"].logits is None and seg.predictions["cat"].mask.dtype == bool
    assert plain.predictions["cat"].logits.dtype == np.float32


def test_segment_many_skips_bad_targets_in_order_with_distinct_names(two_class_predictor, tmp_path, caplog):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    targets = [_image(1), str(broken), _image(2), _image(3)]
    with pytest.raises(SansaError, match="broken.png"):
        list(two_class_predictor.segment_many(targets, objects=False))
    results = list(two_class_predictor.segment_many(targets, batch_size=2, on_error="skip", objects=False))
    assert [type(r).__name__ for r in results] == ["Segmentation", "FailedTarget", "Segmentation", "Segmentation"]
    assert [r.name for r in results] == ["target 0", str(broken), "target 2", "target 3"]
    assert "broken.png" in results[1].error and "broken.png" in caplog.text


def test_predictor_repr_names_backbone_device_and_classes(two_class_predictor):
    assert repr(two_class_predictor) == (
        "SansaPredictor(backbone=test_tiny, adapters=[2, 3], device=cpu, precision=fp32, references=3, "
        "classes={'cat': 1, 'dog': 2})"
    )
