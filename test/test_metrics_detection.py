"""Detection mAP via faster-coco-eval: values derivable by hand under COCO's 101-point interpolation."""
import json
import math

import cv2
import numpy as np
import pytest

from fusion_ros.metrics import evaluate_detections, plot_pr_curves

CLASSES = ("person", "car", "bus")
NO_PRED = (np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64))


def gt(boxes, labels):
    return np.asarray(boxes, float).reshape(-1, 4), np.asarray(labels, np.int64)


def pred(boxes, scores, labels):
    return np.asarray(boxes, float).reshape(-1, 4), np.asarray(scores, float), np.asarray(labels, np.int64)


def test_perfect_predictions_score_one():
    truth = [gt([[10, 10, 50, 80], [100, 40, 220, 120]], [0, 1]), gt([[5, 5, 40, 40]], [2])]
    preds = [pred(b, np.linspace(0.9, 0.5, len(b)), lab) for b, lab in truth]
    r = evaluate_detections(preds, truth, CLASSES)
    assert r.map50 == pytest.approx(1.0) and r.map50_95 == pytest.approx(1.0)
    assert r.ap50 == pytest.approx({c: 1.0 for c in CLASSES})
    assert r.num_gt == {"person": 1, "car": 1, "bus": 1}
    assert r.num_images == 2
    assert r.recall_thresholds.shape == (101,)
    np.testing.assert_allclose(r.pr_curves["car"], 1.0)


def test_iou_0625_passes_three_of_ten_thresholds():
    # GT 130×50, prediction shifted 30 px: IoU = 100·50 / (160·50) = 0.625 -> matched at 0.50, 0.55, 0.60 only
    r = evaluate_detections([pred([[30, 0, 160, 50]], [0.9], [0])], [gt([[0, 0, 130, 50]], [0])], CLASSES[:1])
    assert r.map50 == pytest.approx(1.0)
    assert r.map50_95 == pytest.approx(3 / 10)


def test_higher_scored_false_positive_halves_ap():
    # ranked: FP (0.9), TP (0.8) -> recall [0, 1], precision [0, 1/2]; interpolated precision is 1/2 at
    # every one of the 101 recall points -> AP = 0.5
    truth = [gt([[0, 0, 20, 20]], [0])]
    preds = [pred([[50, 50, 70, 70], [0, 0, 20, 20]], [0.9, 0.8], [0, 0])]
    r = evaluate_detections(preds, truth, CLASSES[:1])
    assert r.ap50["person"] == pytest.approx(0.5)
    np.testing.assert_allclose(r.pr_curves["person"], 0.5)


def test_101_point_interpolation_by_hand():
    # two GTs; ranked TP (0.9), FP (0.8), TP (0.7): recall [.5, .5, 1], precision [1, .5, 2/3]
    # interpolated: 1 for recall 0.00..0.50 (51 points), 2/3 for 0.51..1.00 (50 points)
    truth = [gt([[0, 0, 20, 20], [40, 0, 60, 20]], [0, 0])]
    preds = [pred([[0, 0, 20, 20], [100, 100, 120, 120], [40, 0, 60, 20]], [0.9, 0.8, 0.7], [0, 0, 0])]
    r = evaluate_detections(preds, truth, CLASSES[:1])
    assert r.ap50["person"] == pytest.approx((51 * 1.0 + 50 * 2 / 3) / 101)


def test_class_without_ground_truth_is_nan_and_excluded():
    truth = [gt([[0, 0, 20, 20], [30, 30, 60, 60]], [0, 1])]
    # perfect person, missed car, and a "bus" false positive where no bus exists
    preds = [pred([[0, 0, 20, 20], [70, 70, 90, 90]], [0.9, 0.95], [0, 2])]
    r = evaluate_detections(preds, truth, CLASSES)
    assert r.ap50["person"] == pytest.approx(1.0)
    assert r.ap50["car"] == 0.0
    assert math.isnan(r.ap50["bus"]) and math.isnan(r.ap50_95["bus"])
    assert np.isnan(r.pr_curves["bus"]).all()
    assert r.map50 == pytest.approx(0.5)
    d = r.to_dict()
    json.dumps(d, allow_nan=False)
    assert d["per_class"]["bus"] == {"AP50": None, "AP50_95": None, "num_gt": 0}
    assert d["mAP50"] == pytest.approx(0.5)


def test_images_without_predictions():
    truth = [gt([[0, 0, 20, 20]], [0]), gt([[0, 0, 30, 30]], [0]), gt([], [])]
    preds = [pred([[0, 0, 20, 20]], [0.9], [0]), NO_PRED, NO_PRED]
    # recall reaches 1/2 at precision 1, nothing beyond: 51 of 101 points
    assert evaluate_detections(preds, truth, CLASSES[:1]).map50 == pytest.approx(51 / 101)
    assert evaluate_detections([NO_PRED] * 3, truth, CLASSES[:1]).map50 == 0.0


def test_max_detections_per_image():
    truth = [gt([[0, 0, 20, 20], [40, 0, 60, 20]], [0, 0])]
    preds = [pred([[0, 0, 20, 20], [40, 0, 60, 20]], [0.9, 0.8], [0, 0])]
    assert evaluate_detections(preds, truth, CLASSES[:1]).map50 == pytest.approx(1.0)
    assert evaluate_detections(preds, truth, CLASSES[:1], max_detections=1).map50 == pytest.approx(51 / 101)


def test_evaluator_is_silent(capfd):
    evaluate_detections([pred([[0, 0, 20, 20]], [0.9], [0])], [gt([[0, 0, 20, 20]], [0])], CLASSES)
    out, err = capfd.readouterr()
    assert out == "" and err == ""


@pytest.mark.parametrize(
    "preds, truth, match",
    [
        ([], [], "no images"),
        ([NO_PRED, NO_PRED], [gt([], []), gt([], [])], "no boxes"),
        ([NO_PRED], [gt([], []), gt([], [])], "1 prediction entries but 2"),
        ([NO_PRED], [gt([[0, 0, 5, 5]], [3])], r"\[0, 3\)"),
        ([pred([[0, 0, 5, 5]], [0.5], [0])], [gt([[5, 0, 0, 5]], [0])], "x2 >= x1"),
        ([pred([[0, 0, 5, 5]], [np.nan], [0])], [gt([[0, 0, 5, 5]], [0])], "NaN"),
        ([pred([[0, 0, 5, 5]], [0.5, 0.4], [0])], [gt([[0, 0, 5, 5]], [0])], "expected 1 scores"),
        ([NO_PRED], [(np.zeros((1, 4)), np.array([0.0]))], "integers"),
    ],
)
def test_invalid_inputs_raise(preds, truth, match):
    with pytest.raises(ValueError, match=match):
        evaluate_detections(preds, truth, CLASSES)


def test_pr_plot_is_a_png(tmp_path):
    truth = [gt([[0, 0, 20, 20], [40, 0, 60, 20]], [0, 1])]
    preds = [pred([[0, 0, 20, 20], [100, 100, 120, 120], [40, 0, 60, 20]], [0.9, 0.8, 0.7], [0, 1, 1])]
    report = evaluate_detections(preds, truth, CLASSES)
    out = plot_pr_curves(report, tmp_path / "plots" / "pr.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = cv2.imread(str(out))
    assert img is not None and img.shape[0] > 100 and img.shape[1] > 100
