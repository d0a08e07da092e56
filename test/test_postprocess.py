import numpy as np
import pytest
import torch

from fusion_ros.head_points import head_points
from fusion_ros.model import fcos_points
from fusion_ros.postprocess import PostprocessConfig, batched_nms, decode_detections, segmentation_mask


def _reference_nms(boxes, scores, labels, iou_threshold):
    """Plain greedy class-aware NMS: highest score first (ties: lower index), drop same-class boxes with
    IoU above the threshold."""
    boxes = np.asarray(boxes, np.float64)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    keep = []
    for i in np.argsort(-np.asarray(scores, np.float64), kind="stable"):
        suppressed = False
        for k in keep:
            if labels[k] != labels[i]:
                continue
            w = min(boxes[i, 2], boxes[k, 2]) - max(boxes[i, 0], boxes[k, 0])
            h = min(boxes[i, 3], boxes[k, 3]) - max(boxes[i, 1], boxes[k, 1])
            inter = max(w, 0.0) * max(h, 0.0)
            if inter / (area[i] + area[k] - inter) > iou_threshold:
                suppressed = True
                break
        if not suppressed:
            keep.append(int(i))
    return keep


def _random_boxes(rng, n, extent=640.0, max_side=120.0):
    corner = rng.uniform(0, extent, (n, 2))
    return np.concatenate([corner, corner + rng.uniform(1.0, max_side, (n, 2))], axis=1).astype(np.float32)


@pytest.mark.parametrize("num_classes", [1, 3, 80])
@pytest.mark.parametrize("iou", [0.3, 0.6, 0.9])
def test_batched_nms_agrees_with_a_reference_greedy_nms(num_classes, iou):
    rng = np.random.default_rng(num_classes * 100 + int(iou * 10))
    for n in (1, 2, 17, 400):
        boxes = _random_boxes(rng, n, extent=200.0)  # crowded: many overlaps
        scores = rng.random(n).astype(np.float32)
        labels = rng.integers(0, num_classes, n)
        kept = batched_nms(boxes, scores, labels, iou).tolist()
        assert kept == _reference_nms(boxes, scores, labels, iou)
        assert 1 <= len(kept) <= n


def test_batched_nms_edge_cases():
    empty = batched_nms(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64), 0.5)
    assert empty.dtype == np.int64 and empty.shape == (0,)
    # equal scores: the lower index wins, in NMS as in the reference
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [0, 0, 10, 10], [50, 50, 60, 60]], np.float32)
    scores = np.full(4, 0.5, np.float32)
    labels = np.array([0, 0, 1, 0])
    assert batched_nms(boxes, scores, labels, 0.5).tolist() == _reference_nms(boxes, scores, labels, 0.5) == [0, 2, 3]
    # identical boxes of one class: only the best survives, whatever the threshold below 1
    same = np.repeat(boxes[:1], 5, axis=0)
    ranked = np.array([0.1, 0.9, 0.3, 0.9, 0.2], np.float32)
    assert batched_nms(same, ranked, np.zeros(5, int), 0.99).tolist() == [1]
    # boxes left of / above the origin (not produced by decode, which clips) keep classes apart too
    shifted = boxes - 100.0
    assert batched_nms(shifted, scores, labels, 0.5).tolist() == [0, 2, 3]
    # tied scores over random boxes and many classes
    rng = np.random.default_rng(3)
    boxes = _random_boxes(rng, 300, extent=150.0)
    tied = rng.choice([0.5, 0.7, 0.9], 300).astype(np.float32)
    labels = rng.integers(0, 5, 300)
    assert batched_nms(boxes, tied, labels, 0.5).tolist() == _reference_nms(boxes, tied, labels, 0.5)


def _raw_for(height, width, num_classes, objects):
    """Raw head outputs that encode `objects` = [(x1, y1, x2, y2, class, logit)] at their nearest P3 point."""
    points, strides = head_points(height, width)
    n = len(points)
    cls = np.full((n, num_classes), -10.0, np.float32)
    ltrb = np.ones((n, 4), np.float32)
    ctr = np.full((n, 1), 10.0, np.float32)
    for x1, y1, x2, y2, label, logit in objects:
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        idx = int(np.argmin(np.hypot(points[:, 0] - cx, points[:, 1] - cy) + (strides != 8) * 1e6))
        px, py = points[idx]
        cls[idx, label] = logit
        ltrb[idx] = [px - x1, py - y1, x2 - px, y2 - py]
    return cls, ltrb, ctr


def test_decode_detections_recovers_boxes():
    objects = [(16, 16, 48, 40, 2, 5.0), (70, 60, 100, 90, 0, 3.0)]
    cls, ltrb, ctr = _raw_for(128, 128, 4, objects)
    dets = decode_detections(cls, ltrb, ctr, (128, 128), PostprocessConfig(score_threshold=0.5))
    assert len(dets) == 2
    np.testing.assert_allclose(dets.boxes, [[16, 16, 48, 40], [70, 60, 100, 90]], atol=1e-4)
    assert dets.labels.tolist() == [2, 0]
    expected = np.sqrt(1 / (1 + np.exp(-np.array([5.0, 3.0]))) * (1 / (1 + np.exp(-10.0))))
    np.testing.assert_allclose(dets.scores, expected, rtol=1e-5)


def test_decode_detections_clips_thresholds_and_caps():
    cls, ltrb, ctr = _raw_for(64, 64, 2, [(-10, -5, 30, 30, 1, 4.0), (40, 40, 60, 60, 0, -2.0)])
    dets = decode_detections(cls, ltrb, ctr, (64, 64), PostprocessConfig(score_threshold=0.5))
    assert len(dets) == 1  # the low-logit object is under the threshold
    np.testing.assert_allclose(dets.boxes[0], [0, 0, 30, 30], atol=1e-4)  # clipped to the image
    many = decode_detections(np.full_like(cls, 5.0), ltrb, ctr, (64, 64),
                             PostprocessConfig(score_threshold=0.1, max_detections=7))
    assert len(many) == 7
    assert decode_detections(cls, ltrb, ctr, (64, 64), PostprocessConfig(score_threshold=0.995)).boxes.shape == (0, 4)


def test_decode_detections_rejects_wrong_size():
    cls, ltrb, ctr = _raw_for(64, 64, 2, [])
    with pytest.raises(ValueError, match="locations"):
        decode_detections(cls, ltrb, ctr, (96, 64))


def test_postprocess_config_checks_and_normalises():
    assert PostprocessConfig(max_detections=100.0, score_threshold=1) == PostprocessConfig(score_threshold=1.0)
    assert isinstance(PostprocessConfig(max_detections=100.0).max_detections, int)
    for bad, reason in [({"score_threshold": 2}, "score_threshold must be <= 1.0"),
                        ({"max_detections": 0.5}, "max_detections must be a whole number"),
                        ({"nms_iou": "a"}, "nms_iou must be a number"),
                        ({"pre_nms_top_k": 0}, "pre_nms_top_k must be >= 1"),
                        ({"score_threshold": float("nan")}, "finite")]:
        with pytest.raises(ValueError, match=reason):
            PostprocessConfig(**bad)


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
    assert out.cls_logits.shape[1] == head_points(45, 70)[0].shape[0]
    # the model's tensors are the same grid
    for tensor, array in zip(fcos_points(45, 70), head_points(45, 70)):
        np.testing.assert_array_equal(tensor.numpy(), array)
