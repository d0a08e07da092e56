import numpy as np
import pytest
import torch

from fusion_ros.model import fcos_points
from fusion_ros.postprocess import batched_nms, box_iou, decode_detections, nms, segmentation_mask


def test_box_iou_hand_values():
    a = np.array([[0, 0, 10, 10]], np.float32)
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 5, 5]], np.float32)
    np.testing.assert_allclose(box_iou(a, b)[0], [1.0, 50 / 150, 0.0, 25 / 100])


def test_nms_suppresses_overlaps_keeps_order():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30], [0, 0, 10, 9]], np.float32)
    scores = np.array([0.9, 0.95, 0.5, 0.3], np.float32)
    # box1 (0.95) suppresses box0 (IoU 9/11) and box3 (IoU 81/101 > 0.5); box2 is separate
    assert nms(boxes, scores, 0.5).tolist() == [1, 2]
    # with a high threshold nothing is suppressed, order by score
    assert nms(boxes, scores, 0.95).tolist() == [1, 0, 2, 3]


def test_batched_nms_is_class_aware():
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10]], np.float32)
    scores = np.array([0.9, 0.8, 0.7], np.float32)
    labels = np.array([0, 1, 0])
    assert sorted(batched_nms(boxes, scores, labels, 0.5).tolist()) == [0, 1]
    assert batched_nms(np.zeros((0, 4), np.float32), np.zeros(0), np.zeros(0, int), 0.5).size == 0


def _raw_for(height, width, num_classes, objects):
    """Raw head outputs that encode `objects` = [(x1, y1, x2, y2, class, logit)] at their nearest P3 point."""
    points, strides = fcos_points(height, width)
    points = points.numpy()
    n = len(points)
    cls = np.full((n, num_classes), -10.0, np.float32)
    ltrb = np.ones((n, 4), np.float32)
    ctr = np.full((n, 1), 10.0, np.float32)
    for x1, y1, x2, y2, label, logit in objects:
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        idx = int(np.argmin(np.hypot(points[:, 0] - cx, points[:, 1] - cy) + (strides.numpy() != 8) * 1e6))
        px, py = points[idx]
        cls[idx, label] = logit
        ltrb[idx] = [px - x1, py - y1, x2 - px, y2 - py]
    return cls, ltrb, ctr


def test_decode_detections_recovers_boxes():
    objects = [(16, 16, 48, 40, 2, 5.0), (70, 60, 100, 90, 0, 3.0)]
    cls, ltrb, ctr = _raw_for(128, 128, 4, objects)
    dets = decode_detections(cls, ltrb, ctr, (128, 128), score_threshold=0.5)
    assert len(dets) == 2
    np.testing.assert_allclose(dets.boxes, [[16, 16, 48, 40], [70, 60, 100, 90]], atol=1e-4)
    assert dets.labels.tolist() == [2, 0]
    expected = np.sqrt(1 / (1 + np.exp(-np.array([5.0, 3.0]))) * (1 / (1 + np.exp(-10.0))))
    np.testing.assert_allclose(dets.scores, expected, rtol=1e-5)


def test_decode_detections_clips_thresholds_and_caps():
    cls, ltrb, ctr = _raw_for(64, 64, 2, [(-10, -5, 30, 30, 1, 4.0), (40, 40, 60, 60, 0, -2.0)])
    dets = decode_detections(cls, ltrb, ctr, (64, 64), score_threshold=0.5)
    assert len(dets) == 1  # the low-logit object is under the threshold
    np.testing.assert_allclose(dets.boxes[0], [0, 0, 30, 30], atol=1e-4)  # clipped to the image
    many = decode_detections(np.full_like(cls, 5.0), ltrb, ctr, (64, 64), score_threshold=0.1, max_detections=7)
    assert len(many) == 7
    assert decode_detections(cls, ltrb, ctr, (64, 64), score_threshold=0.995).boxes.shape == (0, 4)


def test_decode_detections_rejects_wrong_size():
    cls, ltrb, ctr = _raw_for(64, 64, 2, [])
    with pytest.raises(ValueError, match="locations"):
        decode_detections(cls, ltrb, ctr, (96, 64))


def test_segmentation_mask_argmax():
    logits = np.zeros((3, 2, 2), np.float32)
    logits[2, 0, 0] = 1
    logits[1, 1, 1] = 1
    assert segmentation_mask(logits).tolist() == [[2, 0], [0, 1]]
    assert segmentation_mask(logits).dtype == np.uint8


def test_points_match_model_output():
    from fusion_ros.model import FusedPerceptionNet, ModelConfig

    model = FusedPerceptionNet(ModelConfig()).eval()
    with torch.inference_mode():
        out = model(torch.rand(1, 1, 45, 70), torch.rand(1, 3, 45, 70))
    assert out.cls_logits.shape[1] == fcos_points(45, 70)[0].shape[0]
