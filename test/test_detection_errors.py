"""fusion_ros/detection_errors.py on hand-made boxes: the matching the operating point counts with, each
kind of false positive and missed label, and the gallery's tiles.

    bash scripts/with_ros_env.sh .venv/bin/python -m pytest -q test/test_detection_errors.py
"""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from fusion_ros.detection_errors import box_iou, detection_errors, error_tile, match_at_threshold, save_gallery

NAMES = ("person", "car")


def prediction(*boxes):
    """(boxes, scores, labels) from (x1, y1, x2, y2, score, label) tuples."""
    rows = np.array(boxes, float).reshape(-1, 6)
    return rows[:, :4], rows[:, 4], rows[:, 5].astype(np.int64)


def truth(*boxes):
    rows = np.array(boxes, float).reshape(-1, 5)
    return rows[:, :4], rows[:, 4].astype(np.int64)


def test_box_iou():
    a = np.array([[0, 0, 10, 10], [0, 0, 0, 0]], float)
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]], float)
    assert box_iou(a, b) == pytest.approx(np.array([[1.0, 50 / 150, 0.0], [0.0, 0.0, 0.0]]))


def test_matching_is_greedy_in_score_order_within_a_class():
    gt = truth((0, 0, 10, 10, 0), (0, 0, 10, 12, 0), (0, 0, 10, 10, 1))
    # the 0.9 box overlaps both person labels; it takes the one it overlaps most, the 0.8 box the other;
    # the car box of score 0.3 is below the threshold and takes nothing
    pred = prediction((0, 0, 10, 12, 0.8, 0), (0, 0, 10, 10, 0.9, 0), (0, 0, 10, 10, 0.3, 1))
    m = match_at_threshold(pred, gt, 0.4)
    assert m.kept.tolist() == [1, 0] and m.taken.tolist() == [0, 1] and m.matched.tolist() == [True, True, False]


def test_every_kind():
    gt = truth((0, 0, 10, 10, 0),          # person: found twice (one duplicate)
               (100, 0, 110, 20, 0),       # person: found with a shifted box (localization)
               (200, 0, 240, 20, 1),       # car: found as a person (class)
               (300, 0, 310, 10, 0),       # person: only a box of score 0.2 (low score)
               (400, 0, 410, 10, 0),       # person: nothing near it (not found)
               (500, 0, 520, 20, 0), (502, 0, 522, 20, 0))  # two persons, one box: the second is "shared"
    pred = prediction((0, 0, 10, 10, 0.9, 0), (0, 0, 10, 11, 0.8, 0),
                      (104, 0, 114, 20, 0.7, 0),
                      (200, 0, 240, 20, 0.6, 0),
                      (300, 0, 310, 10, 0.2, 0),
                      (600, 0, 610, 10, 0.5, 1),   # a car where no label is (background)
                      (501, 0, 521, 20, 0.95, 0))
    e = detection_errors([pred], [gt], ["img"], NAMES, threshold=0.4)
    fps = [(x["class"], x["score"], x["kind"]) for x in e["false_positives"]]
    assert fps == [("person", 0.8, "duplicate"), ("person", 0.7, "localization"), ("person", 0.6, "class"),
                   ("car", 0.5, "background")]
    missed = [(x["box"][0], x["kind"]) for x in e["missed"]]
    assert missed == [(100.0, "localization"), (200.0, "class"), (300.0, "low score"), (400.0, "not found"),
                      (502.0, "shared")]
    assert e["missed"][2]["best_score"] == pytest.approx(0.2) and e["missed"][3]["best_score"] == 0.0
    assert e["counts"] == {"false_positives": {"total": 4, "duplicate": 1, "localization": 1, "class": 1,
                                               "background": 1},
                           "missed": {"total": 5, "shared": 1, "low score": 1, "localization": 1, "class": 1,
                                      "not found": 1}}
    assert all(x["pair"] == "img" for x in e["false_positives"] + e["missed"])


def test_images_without_boxes_or_labels():
    empty_pred, empty_gt = prediction(), truth()
    e = detection_errors([empty_pred, prediction((0, 0, 5, 5, 0.9, 1))], [truth((0, 0, 5, 5, 0)), empty_gt],
                         ["a", "b"], NAMES, threshold=0.4)
    assert [(x["pair"], x["kind"]) for x in e["missed"]] == [("a", "not found")]
    assert [(x["pair"], x["kind"], x["best_iou"]) for x in e["false_positives"]] == [("b", "background", 0.0)]


def test_tiles_and_gallery(tmp_path):
    ir = np.zeros((120, 160, 3), np.uint8)
    vis = np.full((120, 160, 3), 90, np.uint8)
    # a box in the corner (its crop cut by the image's edge) beside a label; one far away stays out of the crop
    tile = error_tile(ir, vis, [(120, 80, 140, 110), (0, 0, 20, 20)], (150, 100, 159, 119), "corner box")
    assert tile.shape == (160, 320, 3)
    for half in (tile[16:, :160], tile[16:, 160:]):  # below the caption: IR, then visible
        red = (half[..., 2] == 255) & (half[..., 1] == 0)
        green = (half[..., 1] == 255) & (half[..., 2] == 0)
        assert red.any() and green.any()
        assert green.nonzero()[1].max() < red.nonzero()[1].min()  # the label left of the box, as in the image
    save_gallery([tile] * 5, tmp_path / "g.png", columns=4)
    assert cv2.imread(str(tmp_path / "g.png")).shape == (320, 1280, 3)
    assert (cv2.imread(str(tmp_path / "g.png"))[160:, 320:] == 0).all()  # the padding of the second row
