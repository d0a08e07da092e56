"""Segmentation confusion matrix: hand-computed IoUs, ignore_index, streaming, validation."""
import warnings

import numpy as np
import pytest

from fusion_ros.metrics import ConfusionMatrix

TARGET = np.array([[0, 0, 1], [1, 2, 2]])
PRED = np.array([[0, 1, 1], [1, 2, 0]])


def test_hand_computed_ious():
    cm = ConfusionMatrix(3)
    cm.update(PRED, TARGET)
    np.testing.assert_array_equal(cm.matrix, [[1, 1, 0], [0, 2, 0], [1, 0, 1]])
    # class 0: TP 1, FP 1 (a 2 read as 0), FN 1; class 1: TP 2, FP 1, FN 0; class 2: TP 1, FP 0, FN 1
    np.testing.assert_allclose(cm.iou_per_class(), [1 / 3, 2 / 3, 1 / 2])
    assert cm.miou() == pytest.approx(0.5)
    assert cm.pixel_accuracy() == pytest.approx(4 / 6)


def test_absent_class_is_nan_and_excluded_but_predicted_only_class_counts():
    cm = ConfusionMatrix(5)
    cm.update(PRED, TARGET)
    iou = cm.iou_per_class()
    assert np.isnan(iou[3]) and np.isnan(iou[4])
    assert cm.miou() == pytest.approx(0.5)
    cm.update(np.array([3]), np.array([0]))  # class 3 only predicted: IoU 0, now part of the mean
    iou = cm.iou_per_class()
    assert iou[3] == 0.0
    assert cm.miou() == pytest.approx(np.mean([1 / 4, 2 / 3, 1 / 2, 0.0]))


def test_ignore_index_skips_pixels():
    target = np.array([[0, 255, 1], [255, 1, 1]], np.uint8)
    pred = np.array([[0, 1, 1], [7, 0, 1]], np.uint8)  # predictions under ignored pixels are not checked
    cm = ConfusionMatrix(2, ignore_index=255)
    cm.update(pred, target)
    np.testing.assert_array_equal(cm.matrix, [[1, 0], [1, 2]])
    np.testing.assert_allclose(cm.iou_per_class(), [1 / 2, 2 / 3])
    assert cm.pixel_accuracy() == pytest.approx(3 / 4)


def test_streaming_equals_one_update():
    rng = np.random.default_rng(0)
    preds = rng.integers(0, 4, (3, 8, 9))
    targets = rng.integers(0, 4, (3, 8, 9))
    streamed, whole = ConfusionMatrix(4), ConfusionMatrix(4)
    for p, t in zip(preds, targets):
        streamed.update(p, t)
    whole.update(preds, targets)
    np.testing.assert_array_equal(streamed.matrix, whole.matrix)
    assert streamed.matrix.sum() == preds.size


def test_empty_matrix_is_nan_without_warnings():
    cm = ConfusionMatrix(3, ignore_index=255)
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        cm.update(np.zeros((2, 2), np.int64), np.full((2, 2), 255))
        assert np.isnan(cm.iou_per_class()).all()
        assert np.isnan(cm.miou())
        assert np.isnan(cm.pixel_accuracy())


@pytest.mark.parametrize(
    "pred, target, match",
    [
        (np.zeros((2, 3), int), np.zeros((3, 2), int), "same shape"),
        (np.zeros((2, 2), float), np.zeros((2, 2), int), "integer"),
        (np.full((2, 2), 3), np.zeros((2, 2), int), "outside"),
        (np.zeros((2, 2), int), np.full((2, 2), -1), "outside"),
    ],
)
def test_invalid_updates_raise(pred, target, match):
    with pytest.raises(ValueError, match=match):
        ConfusionMatrix(3).update(pred, target)
