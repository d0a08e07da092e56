"""Post-processing of the network's raw outputs, in one place for every backend.

FCOS decode (points + l,t,r,b distances -> boxes, score = sqrt(sigmoid(cls) * sigmoid(centerness))),
class-aware non-maximum suppression (OpenCV) and the segmentation argmax. numpy and OpenCV only, no torch:
a vehicle running ONNX Runtime or TensorRT never loads it. The node, the bag evaluator and the trainer's
validation all call these functions, so their results agree.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, fields

import cv2
import numpy as np

from .head_points import head_points


# (low, high) of every post-processing setting, inclusive; the node's parameters are checked against these
POSTPROCESS_LIMITS = {"score_threshold": (0.0, 1.0), "nms_iou": (0.0, 1.0), "max_detections": (1, 10000),
                      "pre_nms_top_k": (1, 100000)}


def postprocess_problem(name: str, value) -> str | None:
    """Why ``value`` cannot be the post-processing setting ``name``, or None."""
    low, high = POSTPROCESS_LIMITS[name]
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return f"must be a number, got {type(value).__name__} {value!r}"
    if isinstance(low, int) and value != int(value):
        return f"must be a whole number, got {value}"
    if not math.isfinite(value):
        return f"must be a finite number, got {value}"
    if value < low:
        return f"must be >= {low}, got {value}"
    if value > high:
        return f"must be <= {high}, got {value}"
    return None


@dataclass(frozen=True)
class PostprocessConfig:
    """Detection post-processing settings, checked when made. The node, every engine and the evaluators
    pass this one object around; these are the only defaults (config/fusion.yaml repeats them)."""

    score_threshold: float = 0.4  # minimum detection score
    nms_iou: float = 0.6  # IoU above which a same-class box is suppressed
    max_detections: int = 100  # kept per image after NMS
    pre_nms_top_k: int = 1000  # best-scoring candidates that enter NMS

    def __post_init__(self):
        problems = [f"{f.name} {reason}" for f in fields(self)
                    if (reason := postprocess_problem(f.name, getattr(self, f.name)))]
        if problems:
            raise ValueError("post-processing settings: " + "; ".join(problems))
        for f in fields(self):  # normalised types: ROS parameters may hand over 100.0 for an int
            cast = int if f.type == "int" else float
            object.__setattr__(self, f.name, cast(getattr(self, f.name)))


@dataclass
class Detections:
    """Detections of one image: boxes x1, y1, x2, y2 in input pixels, scores in [0, 1], class indices."""

    boxes: np.ndarray  # (N, 4) float32
    scores: np.ndarray  # (N,) float32
    labels: np.ndarray  # (N,) int64

    def __len__(self) -> int:
        return len(self.scores)

    @classmethod
    def empty(cls) -> "Detections":
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))


def batched_nms(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Class-aware greedy NMS (OpenCV's ``NMSBoxesBatched``): indices of the kept boxes, highest score
    first, ties in index order. A box is suppressed by a higher-scoring box of its class with IoU above
    ``iou_threshold``; boxes of different classes never suppress each other. Boxes scoring 0 are dropped
    (OpenCV keeps scores above a threshold that must be >= 0; decoded detections always score above 0)."""
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    boxes = np.asarray(boxes, dtype=np.float64)
    # OpenCV separates classes by shifting each by class * (largest coordinate + 1), which only works
    # for coordinates >= 0: move the boxes there first (IoU does not change under a translation)
    corner = boxes[:, :2].min()
    xywh = np.concatenate([boxes[:, :2] - min(corner, 0.0), boxes[:, 2:] - boxes[:, :2]], axis=1)
    scores = np.asarray(scores, dtype=np.float32)
    keep = cv2.dnn.NMSBoxesBatched(xywh, scores, np.asarray(labels, dtype=np.int32), 0.0, float(iou_threshold))
    return np.asarray(keep, dtype=np.int64).reshape(-1)


def decode_detections(
    cls_logits: np.ndarray,
    box_ltrb: np.ndarray,
    centerness: np.ndarray,
    image_size: tuple[int, int],
    config: PostprocessConfig = PostprocessConfig(),
) -> Detections:
    """Raw head outputs of ONE image ((N, K), (N, 4), (N, 1)) -> final detections.

    `image_size` is (height, width) of the network input; boxes are clipped to it.
    """
    height, width = image_size
    points, _ = head_points(height, width)
    if cls_logits.shape[0] != points.shape[0]:
        raise ValueError(
            f"head outputs have {cls_logits.shape[0]} locations, a {height}x{width} input has {points.shape[0]}"
        )
    scores = np.sqrt(_sigmoid(cls_logits) * _sigmoid(centerness))  # (N, K)
    point_idx, labels = np.nonzero(scores > config.score_threshold)
    if point_idx.size == 0:
        return Detections.empty()
    cand_scores = scores[point_idx, labels]
    top_k = config.pre_nms_top_k
    if cand_scores.size > top_k:
        top = np.argpartition(-cand_scores, top_k - 1)[:top_k]
        point_idx, labels, cand_scores = point_idx[top], labels[top], cand_scores[top]
    ltrb = box_ltrb[point_idx]
    centres = points[point_idx]
    boxes = np.concatenate([centres - ltrb[:, :2], centres + ltrb[:, 2:]], axis=1)
    boxes[:, 0::2] = boxes[:, 0::2].clip(0, width)
    boxes[:, 1::2] = boxes[:, 1::2].clip(0, height)
    valid = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    boxes, cand_scores, labels = boxes[valid], cand_scores[valid], labels[valid]
    keep = batched_nms(boxes, cand_scores, labels, config.nms_iou)[: config.max_detections]
    return Detections(
        boxes[keep].astype(np.float32), cand_scores[keep].astype(np.float32), labels[keep].astype(np.int64)
    )


def segmentation_mask(seg_logits: np.ndarray) -> np.ndarray:
    """(C, H, W) logits -> (H, W) uint8 class ids."""
    return np.argmax(seg_logits, axis=0).astype(np.uint8)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (np.tanh(0.5 * x) + 1.0)  # overflow-free logistic
