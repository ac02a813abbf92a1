"""mIoU, FB-IoU and per-class IoU against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from sansa.metrics import IoUAccumulator, intersection_union

T, F = True, False


@pytest.mark.parametrize(
    ("pred", "gt", "inter", "union"),
    [
        ([[T, T], [F, F]], [[T, F], [T, F]], [1, 1], [3, 3]),
        ([[F, F], [F, F]], [[T, F], [T, F]], [2, 0], [4, 2]),  # empty prediction
        ([[F, F], [F, F]], [[F, F], [F, F]], [4, 0], [4, 0]),  # nothing anywhere
        ([[T, T], [T, T]], [[T, T], [T, T]], [0, 4], [0, 4]),
    ],
)
def test_intersection_union(pred, gt, inter, union):
    i, u = intersection_union(np.array(pred), np.array(gt))
    assert i.tolist() == inter and u.tolist() == union


def test_sums_per_class_then_divides():
    m = IoUAccumulator([3, 7])
    m.update(np.array([[T, T], [F, F]]), np.array([[T, F], [T, F]]), 3)  # fg 1/3, bg 1/3
    m.update(np.array([[T, F], [F, F]]), np.array([[T, F], [F, F]]), 3)  # fg 1/1, bg 3/3
    m.update(np.array([[F, F], [F, F]]), np.array([[F, T], [F, F]]), 7)  # fg 0/1, bg 3/4
    assert m.class_iou() == pytest.approx({3: 2 / 4, 7: 0.0})
    assert m.miou() == pytest.approx(0.25)
    assert m.fb_iou() == pytest.approx(((1 + 3 + 3) / (3 + 3 + 4) + (1 + 1 + 0) / (3 + 1 + 1)) / 2)
    assert m.episodes.tolist() == [2, 1]


def test_class_never_sampled_counts_zero():
    m = IoUAccumulator([1, 2, 3, 4])
    m.update(np.ones((2, 2), bool), np.ones((2, 2), bool), 1)
    assert m.miou() == pytest.approx(0.25)
    assert IoUAccumulator([1, 2]).class_iou() == {1: 0.0, 2: 0.0}


def test_empty_predictions():
    m = IoUAccumulator([0])
    gt = np.array([[T, F], [F, F]])
    m.update(np.zeros((2, 2), bool), gt, 0)
    assert m.class_iou() == {0: 0.0}
    assert m.background_iou() == pytest.approx(3 / 4)
    assert m.fb_iou() == pytest.approx((3 / 4 + 0) / 2)


def test_reset_and_unknown_class():
    m = IoUAccumulator([0])
    m.update(np.ones((1, 1), bool), np.ones((1, 1), bool), 0)
    assert m.miou() == 1.0
    m.reset()
    assert m.miou() == 0.0
    with pytest.raises(KeyError, match="class 5"):
        m.update(np.ones((1, 1), bool), np.ones((1, 1), bool), 5)


def test_size_mismatch():
    with pytest.raises(ValueError, match="differ in size"):
        intersection_union(np.ones((2, 2), bool), np.ones((2, 3), bool))
