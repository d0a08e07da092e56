"""What a detector got wrong at its operating point, sorted into kinds a person can act on.

mAP says how much is wrong, not what. At the node's score threshold every box is matched to the labels
(greedy in score order, one label per box, IoU >= 0.5, as ``match_at_threshold``), and each error gets a kind:

false positives (a box no label of its class takes)
    ``duplicate``     a label of its class at IoU >= 0.5 that a higher-scoring box already took (NMS let it through)
    ``localization``  a label of its class at IoU 0.1-0.5: the object found, the box misplaced or cut
    ``class``         a label of another class at IoU >= 0.5: the object found, the class wrong
    ``background``    no label near it: a false alarm, or an object the labels leave out (only a look tells which:
                      the error gallery shows the box on both cameras)
missed labels (no box of their class takes them)
    ``shared``        a box of its class at IoU >= 0.5 at or above the threshold took a neighbouring label
    ``low score``     a box of its class at IoU >= 0.5 scored below the threshold (``best_score`` says how far)
    ``localization``  a box of its class at IoU 0.1-0.5 at or above the threshold
    ``class``         a box of another class at IoU >= 0.5 at or above the threshold
    ``not found``     none of those

predictions[i] = (boxes N x 4 xyxy, scores N, labels N) and ground_truth[i] = (boxes M x 4, labels M), as
``fusion_ros.metrics.evaluate_detections`` takes them.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import cv2
import numpy as np

MATCH_IOU = 0.5
NEAR_IOU = 0.1  # below this a box and a label are unrelated
FALSE_POSITIVE_KINDS = ("duplicate", "localization", "class", "background")
MISSED_KINDS = ("shared", "low score", "localization", "class", "not found")
LABEL_COLOR, BOX_COLOR = (0, 255, 0), (0, 0, 255)  # BGR: labels green, the error's box red


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) IoU of xyxy boxes; 0 where a union is empty."""
    tl = np.maximum(a[:, None, :2], b[None, :, :2])
    br = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(br - tl, 0, None), axis=-1)
    area = lambda x: np.clip(x[:, 2] - x[:, 0], 0, None) * np.clip(x[:, 3] - x[:, 1], 0, None)  # noqa: E731
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


@dataclass
class Match:
    """One image at one threshold: ``kept`` indexes the boxes at or above it; ``taken[j]`` is the label the
    kept box j took (-1: none); ``matched[i]`` whether label i was taken; ``overlaps`` the IoU of every box
    (kept or not) with every label."""
    kept: np.ndarray
    taken: np.ndarray
    matched: np.ndarray
    overlaps: np.ndarray


def _arrays(prediction, truth):
    pb, ps, pl = prediction
    gb, gl = truth
    return (np.asarray(pb, np.float64).reshape(-1, 4), np.asarray(ps, np.float64), np.asarray(pl, np.int64),
            np.asarray(gb, np.float64).reshape(-1, 4), np.asarray(gl, np.int64))


def match_at_threshold(prediction, truth, threshold: float, iou: float = MATCH_IOU) -> Match:
    """Greedy matching per class in score order: each box at or above ``threshold`` takes the free label of
    its class it overlaps most, if that IoU is >= ``iou``."""
    pb, ps, pl, gb, gl = _arrays(prediction, truth)
    kept = np.flatnonzero(ps >= threshold)
    kept = kept[np.argsort(-ps[kept], kind="stable")]
    taken = np.full(len(kept), -1, np.int64)
    matched = np.zeros(len(gl), bool)
    overlaps = box_iou(pb, gb)
    for j, p in enumerate(kept):
        row = np.where((gl == pl[p]) & ~matched, overlaps[p], -1.0)
        if len(row) and row.max() >= iou:
            taken[j] = int(np.argmax(row))
            matched[taken[j]] = True
    return Match(kept, taken, matched, overlaps)


def _false_positive_kind(overlap: np.ndarray, same_class: np.ndarray, matched: np.ndarray, iou: float) -> str:
    if np.any(same_class & matched & (overlap >= iou)):
        return "duplicate"
    if np.any(same_class & (overlap >= NEAR_IOU)):
        return "localization"
    if np.any(~same_class & (overlap >= iou)):
        return "class"
    return "background"


def _missed_kind(overlap: np.ndarray, same_class: np.ndarray, above: np.ndarray, iou: float) -> str:
    if np.any(same_class & above & (overlap >= iou)):
        return "shared"
    if np.any(same_class & ~above & (overlap >= iou)):
        return "low score"
    if np.any(same_class & above & (overlap >= NEAR_IOU)):
        return "localization"
    if np.any(~same_class & above & (overlap >= iou)):
        return "class"
    return "not found"


def detection_errors(predictions, ground_truth, names, class_names, threshold: float, iou: float = MATCH_IOU) -> dict:
    """{"false_positives": [...], "missed": [...], "counts": {...}}: every error at ``threshold``, each with
    its image (``names[i]``), class, box, kind and the IoU / score that decided the kind; false positives
    highest score first, missed labels in image order."""
    false_positives, missed = [], []
    for name, prediction, truth in zip(names, predictions, ground_truth):
        pb, ps, pl, gb, gl = _arrays(prediction, truth)
        match = match_at_threshold((pb, ps, pl), (gb, gl), threshold, iou)
        for j, p in enumerate(match.kept):
            if match.taken[j] >= 0:
                continue
            row = match.overlaps[p]
            kind = _false_positive_kind(row, gl == pl[p], match.matched, iou)
            false_positives.append({"pair": name, "class": class_names[pl[p]], "score": float(ps[p]),
                                    "box": pb[p].round(1).tolist(), "kind": kind,
                                    "best_iou": float(row.max()) if len(row) else 0.0})
        for i in np.flatnonzero(~match.matched):
            row, same = match.overlaps[:, i], pl == gl[i]
            kind = _missed_kind(row, same, ps >= threshold, iou)
            near = same & (row >= iou)
            missed.append({"pair": name, "class": class_names[gl[i]], "box": gb[i].round(1).tolist(), "kind": kind,
                           "best_score": float(ps[near].max()) if near.any() else 0.0})
    false_positives.sort(key=lambda e: -e["score"])
    return {"score_threshold": float(threshold), "iou": iou, "false_positives": false_positives, "missed": missed,
            "counts": {"false_positives": _counts(false_positives, FALSE_POSITIVE_KINDS),
                       "missed": _counts(missed, MISSED_KINDS)}}


def _counts(entries: list[dict], kinds: tuple[str, ...]) -> dict:
    by_kind = Counter(e["kind"] for e in entries)
    return {"total": len(entries), **{k: by_kind[k] for k in kinds}}


def error_tile(ir_bgr: np.ndarray, visible_bgr: np.ndarray, labels: list[tuple], box, caption: str,
               size: int = 160) -> np.ndarray:
    """The error's neighbourhood on both cameras side by side (labels green, the box red), captioned."""
    x1, y1, x2, y2 = (float(v) for v in box)
    half = max(x2 - x1, y2 - y1, 48.0)  # a square twice the box, at least 96 px
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    height, width = visible_bgr.shape[:2]
    left, top = int(max(0, cx - half)), int(max(0, cy - half))
    right, bottom = int(min(width, cx + half)), int(min(height, cy + half))
    tiles = []
    for image in (ir_bgr, visible_bgr):
        drawn = image.copy()
        for lx1, ly1, lx2, ly2 in labels:
            cv2.rectangle(drawn, (int(lx1), int(ly1)), (int(lx2), int(ly2)), LABEL_COLOR, 1)
        cv2.rectangle(drawn, (int(x1), int(y1)), (int(x2), int(y2)), BOX_COLOR, 1)
        crop = drawn[top:max(bottom, top + 1), left:max(right, left + 1)]
        tiles.append(cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA))
    tile = np.concatenate(tiles, axis=1)
    cv2.rectangle(tile, (0, 0), (tile.shape[1], 15), (0, 0, 0), -1)
    cv2.putText(tile, caption, (3, 11), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 255), 1, cv2.LINE_AA)
    return tile


def save_gallery(tiles: list[np.ndarray], path, columns: int = 4) -> None:
    """Tiles (all one size) in rows of ``columns``, the last row padded black."""
    blank = np.zeros_like(tiles[0])
    rows = [np.concatenate((tiles[i:i + columns] + [blank] * columns)[:columns], axis=1)
            for i in range(0, len(tiles), columns)]
    if not cv2.imwrite(str(path), np.concatenate(rows, axis=0)):
        raise OSError(f"cannot write {path}")
