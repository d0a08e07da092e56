"""Post-processing of the network's raw outputs, in one place for every backend.

FCOS decode (points + l,t,r,b distances -> boxes, score = sqrt(sigmoid(cls) * sigmoid(centerness))),
class-aware non-maximum suppression and the segmentation argmax. numpy only (no torchvision): the node,
the bag evaluator and the trainer's validation all call these functions, so their results agree.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .model import fcos_points


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


def box_area(boxes: np.ndarray) -> np.ndarray:
    return np.clip(boxes[..., 2] - boxes[..., 0], 0, None) * np.clip(boxes[..., 3] - boxes[..., 1], 0, None)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of (N, 4) and (M, 4) xyxy boxes -> (N, M)."""
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(bottom_right - top_left, 0, None), axis=-1)
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy NMS: indices of kept boxes, highest score first. Ties keep the lower index (stable)."""
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        best = order[0]
        keep.append(best)
        if order.size == 1:
            break
        ious = box_iou(boxes[best : best + 1], boxes[order[1:]])[0]
        order = order[1:][ious <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def batched_nms(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Class-aware NMS: boxes of different classes never suppress each other (coordinate-offset trick)."""
    if boxes.size == 0:
        return np.zeros(0, dtype=np.int64)
    offsets = labels.astype(np.float64)[:, None] * (float(boxes.max()) + 1.0)
    return nms(boxes + offsets, scores, iou_threshold)


@lru_cache(maxsize=16)
def _points(height: int, width: int) -> np.ndarray:
    return fcos_points(height, width)[0].numpy()


def decode_detections(
    cls_logits: np.ndarray,
    box_ltrb: np.ndarray,
    centerness: np.ndarray,
    image_size: tuple[int, int],
    score_threshold: float = 0.4,
    nms_iou: float = 0.6,
    max_detections: int = 100,
    pre_nms_top_k: int = 1000,
) -> Detections:
    """Raw head outputs of ONE image ((N, K), (N, 4), (N, 1)) -> final detections.

    `image_size` is (height, width) of the network input; boxes are clipped to it.
    """
    height, width = image_size
    points = _points(height, width)
    if cls_logits.shape[0] != points.shape[0]:
        raise ValueError(
            f"head outputs have {cls_logits.shape[0]} locations, a {height}x{width} input has {points.shape[0]}"
        )
    scores = np.sqrt(_sigmoid(cls_logits) * _sigmoid(centerness))  # (N, K)
    point_idx, labels = np.nonzero(scores > score_threshold)
    if point_idx.size == 0:
        return Detections.empty()
    cand_scores = scores[point_idx, labels]
    if cand_scores.size > pre_nms_top_k:
        top = np.argpartition(-cand_scores, pre_nms_top_k - 1)[:pre_nms_top_k]
        point_idx, labels, cand_scores = point_idx[top], labels[top], cand_scores[top]
    ltrb = box_ltrb[point_idx]
    centres = points[point_idx]
    boxes = np.concatenate([centres - ltrb[:, :2], centres + ltrb[:, 2:]], axis=1)
    boxes[:, 0::2] = boxes[:, 0::2].clip(0, width)
    boxes[:, 1::2] = boxes[:, 1::2].clip(0, height)
    valid = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    boxes, cand_scores, labels = boxes[valid], cand_scores[valid], labels[valid]
    keep = batched_nms(boxes, cand_scores, labels, nms_iou)[:max_detections]
    return Detections(
        boxes[keep].astype(np.float32), cand_scores[keep].astype(np.float32), labels[keep].astype(np.int64)
    )


def segmentation_mask(seg_logits: np.ndarray) -> np.ndarray:
    """(C, H, W) logits -> (H, W) uint8 class ids."""
    return np.argmax(seg_logits, axis=0).astype(np.uint8)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (np.tanh(0.5 * x) + 1.0)  # overflow-free logistic
