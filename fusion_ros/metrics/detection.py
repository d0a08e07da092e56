"""Detection mAP through faster-coco-eval (COCO's 'bbox' protocol), plus precision-recall plots.

The AP integration is COCO's, not ours: 101-point interpolated precision, IoU thresholds 0.50:0.05:0.95,
greedy score-ordered matching, area range 'all', at most `max_detections` detections per image (COCO: 100).
Boxes are xyxy float pixels with continuous area (x2-x1)·(y2-y1), no +1, like COCO. Category id = label + 1.
A class without ground truth has AP NaN and is left out of the means, as COCO does (its false positives do
not count anywhere).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from faster_coco_eval import COCO, COCOeval_faster


def _quiet(*_args, **_kwargs) -> None:
    """Print function handed to the evaluator so it stays silent."""


@dataclass(frozen=True)
class DetectionReport:
    """COCO bbox results. Per-class dicts are keyed by class name; NaN marks a class without ground truth."""

    class_names: tuple[str, ...]
    num_images: int
    map50: float  # mean over classes with ground truth of AP@0.5
    map50_95: float  # COCO's headline AP@[0.5:0.95]
    ap50: dict[str, float]
    ap50_95: dict[str, float]
    num_gt: dict[str, int]
    recall_thresholds: np.ndarray  # (101,) COCO recall grid 0, 0.01, ..., 1
    pr_curves: dict[str, np.ndarray]  # interpolated precision at IoU 0.5 on recall_thresholds (NaN: no GT)

    def to_dict(self) -> dict:
        """JSON-ready summary (no curves); NaN becomes None so strict JSON writers accept it."""

        def num(x: float) -> float | None:
            return None if np.isnan(x) else float(x)

        return {
            "num_images": self.num_images,
            "mAP50": num(self.map50),
            "mAP50_95": num(self.map50_95),
            "per_class": {
                name: {"AP50": num(self.ap50[name]), "AP50_95": num(self.ap50_95[name]), "num_gt": self.num_gt[name]}
                for name in self.class_names
            },
        }


def _boxes(boxes, where: str) -> np.ndarray:
    b = np.asarray(boxes, dtype=np.float64)
    if b.size == 0:
        return b.reshape(0, 4)
    if b.ndim != 2 or b.shape[1] != 4:
        raise ValueError(f"{where}: boxes must be N×4 (x1, y1, x2, y2), got shape {b.shape}")
    if not np.isfinite(b).all():
        raise ValueError(f"{where}: boxes contain NaN or infinite values")
    if (b[:, 2] < b[:, 0]).any() or (b[:, 3] < b[:, 1]).any():
        raise ValueError(f"{where}: boxes must be xyxy with x2 >= x1 and y2 >= y1")
    return b


def _labels(labels, n: int, num_classes: int, where: str) -> np.ndarray:
    lab = np.asarray(labels)
    if lab.size == 0 and n == 0:
        return np.zeros(0, dtype=np.int64)
    if lab.shape != (n,):
        raise ValueError(f"{where}: expected {n} labels, got shape {lab.shape}")
    if not np.issubdtype(lab.dtype, np.integer):
        raise ValueError(f"{where}: labels must be integers, got {lab.dtype}")
    if (lab < 0).any() or (lab >= num_classes).any():
        raise ValueError(f"{where}: labels must lie in [0, {num_classes}), got {lab.min()}..{lab.max()}")
    return lab.astype(np.int64)


def _scores(scores, n: int, where: str) -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64)
    if s.size == 0 and n == 0:
        return s.reshape(0)
    if s.shape != (n,):
        raise ValueError(f"{where}: expected {n} scores, got shape {s.shape}")
    if not np.isfinite(s).all():
        raise ValueError(f"{where}: scores contain NaN or infinite values")
    return s


def _xywh(b: np.ndarray) -> list[float]:
    return [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])]


def evaluate_detections(
    predictions: Sequence[tuple],
    ground_truth: Sequence[tuple],
    class_names: Sequence[str],
    max_detections: int = 100,
) -> DetectionReport:
    """COCO bbox evaluation of per-image detections.

    predictions[i] = (boxes N×4 xyxy, scores N, labels N int in [0, K)); ground_truth[i] = (boxes M×4, labels M),
    both for the same image i. Images without predictions or without objects are fine; ValueError when there
    are no images, no ground-truth box at all (mAP undefined) or malformed inputs.
    """
    class_names = tuple(str(n) for n in class_names)
    k = len(class_names)
    if k == 0:
        raise ValueError("class_names must name at least one class")
    if len(predictions) != len(ground_truth):
        raise ValueError(f"{len(predictions)} prediction entries but {len(ground_truth)} ground-truth entries")
    if len(ground_truth) == 0:
        raise ValueError("nothing to evaluate: no images")
    if max_detections < 1:
        raise ValueError("max_detections must be >= 1")

    gt_anns, dt_anns = [], []
    num_gt = np.zeros(k, dtype=np.int64)
    for i, (pred, gt) in enumerate(zip(predictions, ground_truth)):
        image_id = i + 1
        gt_boxes, gt_labels = gt
        gb = _boxes(gt_boxes, f"ground_truth[{i}]")
        gl = _labels(gt_labels, len(gb), k, f"ground_truth[{i}]")
        np.add.at(num_gt, gl, 1)
        for box, label in zip(gb, gl):
            xywh = _xywh(box)
            gt_anns.append({
                "id": len(gt_anns) + 1,
                "image_id": image_id,
                "category_id": int(label) + 1,
                "bbox": xywh,
                "area": xywh[2] * xywh[3],
                "iscrowd": 0,
            })
        pred_boxes, pred_scores, pred_labels = pred
        pb = _boxes(pred_boxes, f"predictions[{i}]")
        ps = _scores(pred_scores, len(pb), f"predictions[{i}]")
        pl = _labels(pred_labels, len(pb), k, f"predictions[{i}]")
        for box, score, label in zip(pb, ps, pl):
            dt_anns.append(
                {"image_id": image_id, "category_id": int(label) + 1, "bbox": _xywh(box), "score": float(score)}
            )
    if not gt_anns:
        raise ValueError("nothing to evaluate: the ground truth has no boxes, so mAP is undefined")

    coco_gt = COCO(
        {
            "images": [{"id": i + 1} for i in range(len(ground_truth))],
            "annotations": gt_anns,
            "categories": [{"id": c + 1, "name": name} for c, name in enumerate(class_names)],
        },
        print_function=_quiet,
    )
    coco_dt = coco_gt.loadRes(dt_anns)
    coco_dt.print_function = _quiet
    evaluator = COCOeval_faster(coco_gt, coco_dt, iouType="bbox", print_function=_quiet)
    evaluator.params.maxDets = [int(max_detections)]
    evaluator.evaluate()
    evaluator.accumulate()

    # precision: [IoU thresholds T, recall thresholds R, classes K, area ranges A, max dets M]; -1 = no GT.
    precision = np.asarray(evaluator.eval["precision"], dtype=np.float64)[:, :, :, 0, -1]
    precision = np.where(precision < 0, np.nan, precision)
    iou50 = int(np.flatnonzero(np.isclose(evaluator.params.iouThrs, 0.5))[0])
    has_gt = num_gt > 0
    ap50 = np.full(k, np.nan)
    ap50_95 = np.full(k, np.nan)
    ap50[has_gt] = precision[iou50][:, has_gt].mean(axis=0)
    ap50_95[has_gt] = precision[:, :, has_gt].mean(axis=(0, 1))

    return DetectionReport(
        class_names=class_names,
        num_images=len(ground_truth),
        map50=float(ap50[has_gt].mean()),
        map50_95=float(ap50_95[has_gt].mean()),
        ap50={n: float(v) for n, v in zip(class_names, ap50)},
        ap50_95={n: float(v) for n, v in zip(class_names, ap50_95)},
        num_gt={n: int(v) for n, v in zip(class_names, num_gt)},
        recall_thresholds=np.asarray(evaluator.params.recThrs, dtype=np.float64).copy(),
        pr_curves={n: precision[iou50, :, c].copy() for c, n in enumerate(class_names)},
    )


def plot_pr_curves(report: DetectionReport, path: str | Path) -> Path:
    """Write a PNG of the per-class precision-recall curves at IoU 0.5 (classes without GT are skipped)."""
    # Imported here so that evaluating does not pay for matplotlib; Figure + Agg canvas avoids pyplot's
    # global state and any interactive backend.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(6.4, 4.8), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for name in report.class_names:
        curve = report.pr_curves[name]
        if np.isnan(curve).all():
            continue
        ax.plot(report.recall_thresholds, curve, label=f"{name} (AP50 {report.ap50[name]:.3f})")
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.05)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision (interpolated)")
    ax.set_title(f"PR at IoU 0.5 — mAP50 {report.map50:.3f}, mAP50:95 {report.map50_95:.3f}")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower left", fontsize="small")
    fig.savefig(path, format="png")
    return path
