"""Semantic-segmentation confusion matrix with IoU, mIoU and pixel accuracy (streaming over images)."""
from __future__ import annotations

import numpy as np


class ConfusionMatrix:
    """Accumulates a K×K pixel confusion matrix, rows = target class, columns = predicted class.

    Pixels whose target equals `ignore_index` (e.g. 255 for "unlabelled") are skipped; any other value
    outside [0, K) in target or prediction is an error rather than silently dropped.
    """

    def __init__(self, num_classes: int, ignore_index: int | None = None):
        if num_classes < 1:
            raise ValueError("num_classes must be >= 1")
        self.num_classes = int(num_classes)
        self.ignore_index = ignore_index
        self.matrix = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)

    def update(self, pred, target) -> None:
        """Add one batch/image of integer class maps of the same shape."""
        pred = np.asarray(pred)
        target = np.asarray(target)
        if pred.shape != target.shape:
            raise ValueError(f"pred and target must have the same shape, got {pred.shape} and {target.shape}")
        for name, arr in (("pred", pred), ("target", target)):
            if not np.issubdtype(arr.dtype, np.integer):
                raise ValueError(f"{name} must hold integer class ids, got {arr.dtype}")
        pred = pred.ravel().astype(np.int64)
        target = target.ravel().astype(np.int64)
        if self.ignore_index is not None:
            keep = target != self.ignore_index
            pred, target = pred[keep], target[keep]
        k = self.num_classes
        for name, arr in (("pred", pred), ("target", target)):
            if arr.size and (arr.min() < 0 or arr.max() >= k):
                raise ValueError(f"{name} has class ids outside [0, {k}): {arr.min()}..{arr.max()}")
        self.matrix += np.bincount(target * k + pred, minlength=k * k).reshape(k, k)

    def iou_per_class(self) -> np.ndarray:
        """TP / (TP + FP + FN) per class; NaN for a class absent from both target and prediction."""
        tp = np.diag(self.matrix).astype(np.float64)
        union = self.matrix.sum(axis=0) + self.matrix.sum(axis=1) - tp
        return np.divide(tp, union, out=np.full(self.num_classes, np.nan), where=union > 0)

    def miou(self) -> float:
        """Mean IoU over classes present in target or prediction (NaN if nothing was counted)."""
        iou = self.iou_per_class()
        present = ~np.isnan(iou)
        return float(iou[present].mean()) if present.any() else float("nan")

    def pixel_accuracy(self) -> float:
        """Share of counted pixels classified correctly (NaN if nothing was counted)."""
        total = self.matrix.sum()
        return float(np.trace(self.matrix) / total) if total else float("nan")
