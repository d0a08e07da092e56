"""Ground truth for a bag's frames: matched to predictions by stamp, read from a COCO file, and its class
names mapped onto the model's (the one mapping the bag evaluator and the trainer's bag cache share)."""
from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from .reader import BagError

GT_WINDOW_NS = 5_000_000_000  # a prediction or ground truth waits this long (log time) for its partner


def class_labels(names: Sequence[str], det_names: Sequence[str], class_map: Mapping | None = None,
                 unknown: dict | None = None, where: str = "ground truth") -> tuple[list[int], list[int]]:
    """Ground-truth class ids (a Detection2D's class_id: a class name, or an index into ``det_names``) ->
    (positions kept, their label indices). ``class_map`` renames first (a value of None drops the class).
    A name not in ``det_names`` is counted in ``unknown`` (name -> count) when it is given, else a
    ValueError naming ``where``."""
    index = {n: i for i, n in enumerate(det_names)}
    keep, labels = [], []
    for position, raw in enumerate(names):
        name = class_map[raw] if class_map and raw in class_map else raw
        if name is None:
            continue
        label = index.get(name)
        if label is None and name.isdigit() and int(name) < len(det_names):
            label = int(name)
        if label is None:
            if unknown is None:
                raise ValueError(f"{where}: class {raw!r} is not in the class list ({', '.join(det_names)})")
            unknown[raw] = unknown.get(raw, 0) + 1
            continue
        keep.append(position)
        labels.append(label)
    return keep, labels


class StampMatcher:
    """Matches predictions with ground truth of the same stamp, whichever arrives first. Entries wait at
    most ``window_ns`` of log time (and ``max_pending`` entries) for their partner, then count as
    unmatched: memory stays bounded on any bag length."""

    def __init__(self, on_match, window_ns: int = GT_WINDOW_NS, max_pending: int | None = None):
        self.on_match = on_match
        self.window_ns = window_ns
        self.max_pending = max_pending
        self._gt: OrderedDict = OrderedDict()  # stamp -> (log_ns, gt)
        self._pred: OrderedDict = OrderedDict()  # stamp -> (log_ns, pred)
        self.matched = 0
        self.gt_unmatched = 0  # ground truth whose frame was never processed (dropped, unpaired, skipped)
        self.pred_unmatched = 0  # processed frames without ground truth

    def add_gt(self, stamp: int, gt, log_ns: int) -> None:
        self._expire(log_ns)
        pred = self._pred.pop(stamp, None)
        if pred is not None:
            self.matched += 1
            self.on_match(stamp, pred[1], gt)
        elif stamp in self._gt:
            self.gt_unmatched += 1  # a duplicate ground-truth stamp: keep the latest
            self._gt[stamp] = (log_ns, gt)
        else:
            self._gt[stamp] = (log_ns, gt)
            self._bound(self._gt, "gt")

    def add_pred(self, stamp: int, pred, log_ns: int) -> None:
        self._expire(log_ns)
        gt = self._gt.pop(stamp, None)
        if gt is not None:
            self.matched += 1
            self.on_match(stamp, pred, gt[1])
        else:
            self._pred[stamp] = (log_ns, pred)
            self._bound(self._pred, "pred")

    def _bound(self, queue: OrderedDict, kind: str) -> None:
        while self.max_pending is not None and len(queue) > self.max_pending:
            queue.popitem(last=False)
            self._count(kind)

    def _count(self, kind: str, n: int = 1) -> None:
        if kind == "gt":
            self.gt_unmatched += n
        else:
            self.pred_unmatched += n

    def _expire(self, now_ns: int) -> None:
        for queue, kind in ((self._gt, "gt"), (self._pred, "pred")):
            while queue:
                stamp, (log_ns, _) = next(iter(queue.items()))
                if now_ns - log_ns <= self.window_ns:
                    break
                queue.popitem(last=False)
                self._count(kind)

    def finish(self) -> None:
        self._count("gt", len(self._gt))
        self._count("pred", len(self._pred))
        self._gt.clear()
        self._pred.clear()

    def summary(self) -> dict:
        return {"frames_matched": self.matched, "gt_frames_without_processed_pair": self.gt_unmatched,
                "processed_pairs_without_gt": self.pred_unmatched}


def load_coco_ground_truth(path: str, det_classes) -> tuple[dict, dict]:
    """COCO JSON -> ({stamp_ns: (boxes xyxy, labels)}, {unknown category name: boxes})."""
    try:
        data = json.loads(Path(path).read_text())
        images, annotations, categories = data["images"], data.get("annotations", []), data["categories"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BagError(f"cannot read COCO ground truth {path}: {exc}") from None
    names = {c["id"]: str(c["name"]) for c in categories}
    index = {n: i for i, n in enumerate(det_classes)}
    stamps = {}
    for image in images:
        if "stamp_ns" in image:
            stamp = int(image["stamp_ns"])
        elif isinstance(image.get("stamp"), dict):
            stamp = int(image["stamp"]["sec"]) * 1_000_000_000 + int(image["stamp"]["nanosec"])
        elif "timestamp" in image:
            stamp = int(round(float(image["timestamp"]) * 1e9))
        else:
            raise BagError(f"{path}: image id {image.get('id')} has no stamp_ns / stamp / timestamp, so it cannot "
                           "be matched to a bag frame")
        stamps[image["id"]] = stamp
    boxes: dict = {s: ([], []) for s in stamps.values()}
    unknown: dict = {}
    for ann in annotations:
        name = names.get(ann["category_id"], str(ann["category_id"]))
        if name not in index:
            unknown[name] = unknown.get(name, 0) + 1
            continue
        x, y, w, h = (float(v) for v in ann["bbox"])
        entry = boxes[stamps[ann["image_id"]]]
        entry[0].append((x, y, x + w, y + h))
        entry[1].append(index[name])
    return ({s: (np.asarray(b, np.float64).reshape(-1, 4), np.asarray(lab, np.int64)) for s, (b, lab) in boxes.items()},
            unknown)
