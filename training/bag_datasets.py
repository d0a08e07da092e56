"""``data: kind: bag``: rosbag2 recordings as training data (training/retrain.py retrains a deployed model
from them). Pairs are extracted ONCE per bag into a cache folder in our layout (fusion_ros/dataset_layout.py)
and read from there every epoch, through training/datasets.py's reader.

kind: bag (rosbag2 recordings; retraining a deployed model from them: training/retrain.py)
- Pairs: the bag is streamed through the node's own input path (``fusion_ros.bag.pairing.synced_pairs``:
  node_core's decode, ApproximateTime synchroniser and ``prepare_pair``), configured by ``node:
  {params_file: config/fusion.yaml, params: {sync.slop: 0.05, registration.mode: homography, ...}}``
  (the node's parameters: sync, thermal normalisation and registration as on the vehicle). Topics:
  ``topics: {thermal: /thermal/image_raw, rgb: /rgb/image_raw, gt_detections: auto, gt_segmentation:
  auto}`` (``auto``: /ground_truth/detections and /ground_truth/segmentation when the bag has them;
  a topic name: required; ``null``: not used). ``min_interval_s`` keeps at most one pair per that many
  seconds (neighbouring frames at 20-30 Hz are near-duplicates); ``max_pairs_per_bag`` stops early.
- Cache: every kept pair is written once, in our layout, to ``<cache_dir>/<bag name>-<key>/``: ``ir/``
  16-bit PNG of the node-normalised thermal frame (0..1 x 65535, so it is read with thermal_range
  [0, 65535] whatever the camera) already registered onto the RGB grid, ``vi/`` the RGB frame,
  ``labels/`` VOC XML, ``masks/`` class-id PNGs, ``meta.json``, and ``cache.json`` (written last: the
  cache is complete; it lists the frames, the label sources, the pseudo-label thresholds and what the
  reader dropped). ``cache_dir`` defaults to $FUSION_ROS_CACHE/bag_pairs, else
  ~/.cache/fusion_ros/bag_pairs. The key is a hash of the bag's path and its files' sizes and mtimes,
  the topics, the node parameters used, the thermal range, the class lists, class_map /
  unknown_classes / ignore_ids, min_interval_s / max_pairs_per_bag and the pseudo-label settings with
  the pseudo-label model's sha256: the cache is rebuilt when any of them changes (a new key, a new
  folder; old ones can be deleted freely), when cache.json is missing (an interrupted build leaves only
  a ``.partial-PID`` folder) or with ``rebuild_cache: true``. Training epochs read the PNGs, never
  the bag. ``height``/``width``/``resize`` apply when reading, as for the other kinds.
- Labels, per kind of label: ground truth where the bag has the topic, matched to the RGB frame by
  header stamp (Detection2DArray, class_id = class name (``class_map`` renames first) or index; mono8
  masks, remapped by name when the bag's custom_data lists ``fusion_ros.segmentation_classes``). A pair
  without a ground-truth detections message is left out (no boxes would be a wrong label); a pair
  without a mask gets an all-255 (ignored) mask. Where a kind has no ground-truth topic and
  ``pseudo_labels:`` is set, the current model labels the frames (pseudo-labels, see below); else
  there are no labels of that kind (zero boxes / no mask: the fusion loss still trains, and
  training/retrain.py then switches the task loss with no labels off).
- Pseudo-labels: ``pseudo_labels: {model: PATH, score_threshold: 0.5, class_thresholds: {name: s},
  class_balanced: true, max_per_class: 500, min_per_class: 0, min_score: 0.3, seg_confidence: 0.7,
  backend: auto}``. Boxes: the model's detections (the node's NMS) at or above their class threshold;
  with class_balanced the threshold of a class with more than max_per_class boxes in the bag is raised
  to keep only its top max_per_class (a frequent class cannot swamp rare ones), and that of a class
  with fewer than min_per_class is lowered, not below min_score. Masks: the argmax where its softmax
  probability is >= seg_confidence, else 255 (ignored by the loss). They are made once, when the
  cache is built (the thresholds and per-class counts are in cache.json). Risk: confirmation bias --
  the model is trained on its own outputs, so its mistakes (missed rare or thermal-only objects,
  confident false positives) come back as labels and are reinforced; low-confidence objects become
  "background". Mitigations here: high thresholds, the class balance, ignored (not guessed) pixels,
  labels from the frozen starting model (not refreshed from the model being trained), the fusion loss
  needs no labels at all, and training/retrain.py scores old and new model on a separate held-out
  recording with ground truth before anyone deploys. Prefer ground truth (even a few labelled
  minutes) where possible.
- Splits by time: the frames of each bag are cut into blocks of ``split: {block_seconds: 10}`` from
  its first frame; ``val_fraction`` and ``heldout_fraction`` of the blocks (at least one each), spread
  evenly over the recording, are val and heldout, the rest train; a frame within ``gap_seconds`` (1) of
  a frame of a higher split (val > heldout > train) is left out. So no validation or upper-level frame
  has a near-duplicate neighbour in training (a hash split of a 20 Hz stream would put consecutive,
  almost identical frames on both sides and overstate validation scores). A bag too short for three
  blocks is an error naming block_seconds. There is no test split: hold out a whole recording.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from fusion_ros.classes import ClassConfig
from fusion_ros.dataset_layout import read_voc_xml
from fusion_ros.segmentation_labels import NONE, REAL, SYNTHETIC, checked, combined
from training.datasets import ReadOptions, RealPairs, dataset_classes, resize_mode, split_fractions
from training.records import DatasetLayoutError, Record
from training.samples import NO_LABEL

BAG_CACHE_FORMAT = "fusion_ros.bag_cache/1"
BAG_THERMAL_SCALE = 65535  # ir/ in a bag cache: the node-normalised thermal (0..1) x 65535, 16-bit PNG
BAG_TOPIC_DEFAULTS = {"thermal": "/thermal/image_raw", "rgb": "/rgb/image_raw", "gt_detections": "auto",
                      "gt_segmentation": "auto"}
BAG_GT_DEFAULTS = {"gt_detections": "/ground_truth/detections", "gt_segmentation": "/ground_truth/segmentation"}
BAG_SPLIT_DEFAULTS = {"block_seconds": 10.0, "gap_seconds": 1.0}
PSEUDO_DEFAULTS = {
    "model": None,  # None: the bundled model (training.retrain sets the base model)
    "backend": "auto",
    "device": None,
    "score_threshold": 0.5,  # a detection becomes a pseudo-box at this score or above ...
    "class_thresholds": {},  # ... or at its class's own threshold ({name: score})
    "class_balanced": True,  # cap / floor per class (below)
    "max_per_class": 500,  # per bag: a class with more boxes keeps its top-scoring ones (threshold raised)
    "min_per_class": 0,  # per bag: a class with fewer boxes gets its threshold lowered (down to min_score)
    "min_score": 0.3,
    "seg_confidence": 0.7,  # segmentation: argmax where its softmax probability >= this, else 255 (ignore)
}
_PSEUDO_KEYS = set(PSEUDO_DEFAULTS)
_BAG_STOP_AFTER_NS = 2_000_000_000  # after max_pairs: read this much more log time for their ground truth


def default_bag_cache_dir() -> Path:
    """Where bag caches live unless ``data.cache_dir`` says otherwise: $FUSION_ROS_CACHE/bag_pairs, else
    $XDG_CACHE_HOME/fusion_ros/bag_pairs, else ~/.cache/fusion_ros/bag_pairs."""
    import os

    if os.environ.get("FUSION_ROS_CACHE"):
        return Path(os.environ["FUSION_ROS_CACHE"]).expanduser() / "bag_pairs"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "fusion_ros" / "bag_pairs"


@dataclass
class BagCache:
    """One bag's extracted pairs: ``folder`` (our layout) and its ``cache.json`` (``info``)."""

    bag: Path
    folder: Path
    info: dict

    @property
    def labels(self) -> dict:  # {"detections": "gt"|"pseudo"|"none", "segmentation": ...}
        return self.info["labels"]


def bag_paths(cfg: dict) -> list[Path]:
    """data.root of a bag dataset: one bag (folder or .mcap/.db3 file) or a list of them."""
    from fusion_ros.bag.reader import BagError

    root = cfg.get("root")
    roots = [root] if isinstance(root, (str, Path)) else list(root or [])
    if not roots:
        raise ValueError("data.root is required for kind 'bag': a rosbag2 folder (or .mcap/.db3 file) or a list "
                         "of them")
    paths = [Path(r).expanduser() for r in roots]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise BagError(f"bag not found: {', '.join(missing)}")
    return paths


def _pseudo_settings(cfg: dict) -> dict | None:
    raw = cfg.get("pseudo_labels")
    if raw in (None, False):
        return None
    if raw is True:
        raw = {}
    if not isinstance(raw, dict):
        raise ValueError(f"data.pseudo_labels must be a mapping (or null to disable), got {raw!r}")
    unknown = set(raw) - _PSEUDO_KEYS
    if unknown:
        raise ValueError(f"data.pseudo_labels: unknown key(s) {sorted(unknown)} (known: {sorted(_PSEUDO_KEYS)})")
    p = {**PSEUDO_DEFAULTS, **raw}
    for key in ("score_threshold", "min_score", "seg_confidence"):
        if not 0.0 <= float(p[key]) <= 1.0:
            raise ValueError(f"data.pseudo_labels.{key} must be in [0, 1], got {p[key]}")
        p[key] = float(p[key])
    for name, thr in (p["class_thresholds"] or {}).items():
        if not 0.0 <= float(thr) <= 1.0:
            raise ValueError(f"data.pseudo_labels.class_thresholds.{name} must be in [0, 1], got {thr}")
    p["class_thresholds"] = {str(k): float(v) for k, v in (p["class_thresholds"] or {}).items()}
    for key in ("max_per_class", "min_per_class"):
        if p[key] is not None and int(p[key]) < 0:
            raise ValueError(f"data.pseudo_labels.{key} must be >= 0 or null, got {p[key]}")
    from fusion_ros.checkpoint import DEFAULT_MODEL

    model = Path(p["model"]).expanduser() if p["model"] else DEFAULT_MODEL
    if not model.is_file():
        raise FileNotFoundError(f"data.pseudo_labels.model: model file not found: {model}"
                                + ("" if p["model"] else " (the bundled model; set pseudo_labels.model)"))
    p["model"] = str(model.resolve())
    return p


def _bag_settings(cfg: dict, thermal_range, classes: ClassConfig) -> dict:
    """The validated settings a bag cache depends on (everything in its key) plus run-only options."""
    from fusion_ros.node_params import load_node_params

    topics = {**BAG_TOPIC_DEFAULTS, **(cfg.get("topics") or {})}
    unknown = set(topics) - set(BAG_TOPIC_DEFAULTS)
    if unknown:
        raise ValueError(f"data.topics: unknown key(s) {sorted(unknown)} (known: {sorted(BAG_TOPIC_DEFAULTS)})")
    if not topics["thermal"] or not topics["rgb"] or topics["thermal"] == topics["rgb"]:
        raise ValueError(f"data.topics: thermal and rgb must be two different topics, got {topics}")
    node = cfg.get("node") or {}
    node_cfg = load_node_params(node.get("params_file"), dict(node.get("params") or {}), None, None, None)
    node_keys = [k for k in node_cfg.values if k.startswith(("sync.", "thermal.", "registration."))
                 or k in ("input_height", "input_width", "nms_iou", "max_detections")]
    split = {**BAG_SPLIT_DEFAULTS, **(cfg.get("split") or {})}
    if not float(split["block_seconds"]) > 0 or float(split["gap_seconds"]) < 0:
        raise ValueError(f"data.split: block_seconds must be > 0 and gap_seconds >= 0, got {split}")
    unknown_classes = cfg.get("unknown_classes", "error")
    if unknown_classes not in ("error", "ignore"):
        raise ValueError(f"data.unknown_classes must be 'error' or 'ignore', got {unknown_classes!r}")
    max_pairs = cfg.get("max_pairs_per_bag")
    if max_pairs is not None and int(max_pairs) < 1:
        raise ValueError(f"data.max_pairs_per_bag must be >= 1 or null, got {max_pairs}")
    return {
        "topics": topics,
        "node_cfg": node_cfg,
        "node": {k: node_cfg[k] for k in sorted(node_keys)},
        "thermal_range": [float(v) for v in thermal_range],
        "det_classes": list(classes.detection.names),
        "seg_classes": list(classes.segmentation.names),
        "class_map": cfg.get("class_map") or {},
        "unknown_classes": unknown_classes,
        "ignore_ids": sorted(int(i) for i in cfg.get("ignore_ids") or ()),
        "min_interval_s": float(cfg.get("min_interval_s", 0.0) or 0.0),
        "max_pairs": None if max_pairs is None else int(max_pairs),
        "pseudo": _pseudo_settings(cfg),
        "split": {k: float(v) for k, v in split.items()},
        "cache_dir": Path(cfg["cache_dir"]).expanduser() if cfg.get("cache_dir") else default_bag_cache_dir(),
        "rebuild": bool(cfg.get("rebuild_cache", False)),
        "progress": bool(cfg.get("progress", True)),
    }


def _file_identity(path: Path) -> list:
    """(name, size, mtime) of a bag's files: a re-recorded or edited bag gets a new cache."""
    files = [path] if path.is_file() else sorted(p for p in path.iterdir() if p.is_file())
    return [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in files]


def _cache_key(bag: Path, s: dict) -> tuple[str, dict]:
    from fusion_ros.engine.sidecar import sha256_file

    fields = {
        "format": BAG_CACHE_FORMAT,
        "bag": str(bag.resolve()),
        "files": _file_identity(bag),
        **{k: s[k] for k in ("topics", "node", "thermal_range", "det_classes", "seg_classes", "class_map",
                             "unknown_classes", "ignore_ids", "min_interval_s", "max_pairs")},
        "pseudo": None if s["pseudo"] is None else {**s["pseudo"], "model_sha256": sha256_file(s["pseudo"]["model"])},
    }
    text = json.dumps(fields, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16], fields


def bag_caches(cfg: dict, thermal_range, classes=None) -> list[BagCache]:
    """The cache of every bag in data.root, built where missing or stale (see the module docstring)."""
    class_config = dataset_classes(cfg, "bag", classes)
    s = _bag_settings(cfg, thermal_range, class_config)
    caches = []
    for bag in bag_paths(cfg):
        key, fields = _cache_key(bag, s)
        stem = bag.stem if bag.is_file() else bag.name
        folder = s["cache_dir"] / f"{stem}-{key}"
        info_path = folder / "cache.json"
        info = None
        if info_path.is_file() and not s["rebuild"]:
            try:
                info = json.loads(info_path.read_text())
            except ValueError:
                info = None
            if info is not None and (info.get("format") != BAG_CACHE_FORMAT or info.get("key") != key):
                info = None
        if info is None:
            info = _build_bag_cache(bag, folder, key, fields, s, class_config)
        caches.append(BagCache(bag, folder, info))
    return caches


def _resolve_gt_topic(reader, role: str, value, types) -> str | None:
    if value in (None, False, "", "none"):
        return None
    if value == "auto":
        meta = reader.topics.get(BAG_GT_DEFAULTS[role])
        return meta.name if meta is not None and meta.msgtype in types and meta.count else None
    reader.require(str(value), types, role.replace("gt_", "ground-truth "))
    return str(value)


def _bag_seg_lut(reader, s: dict) -> tuple[np.ndarray, str]:
    """GT mask ids of the bag -> our segmentation ids (by name when the bag lists its classes), 255 = none."""
    from fusion_ros.bag.reader import segmentation_lut

    lut, missing = segmentation_lut(reader, s["seg_classes"], NO_LABEL)
    how = "ids as recorded" if missing is None else "remapped by name from the bag's fusion_ros.segmentation_classes"
    for i in s["ignore_ids"]:
        lut[i] = NO_LABEL
    return lut, how


class _PseudoLabeler:
    """Detections and confident segmentation of the pseudo-label model on one registered pair."""

    def __init__(self, p: dict, s: dict):
        from fusion_ros import node_core as core
        from fusion_ros.engine import create_engine

        self.p = p
        thresholds = [p["score_threshold"], *p["class_thresholds"].values()]
        if p["class_balanced"] and p["min_per_class"]:
            thresholds.append(p["min_score"])
        self.floor = min(thresholds)
        options = {**core.engine_options(s["node_cfg"]), "registration": None}  # pairs arrive registered
        options["postprocess"] = replace(options["postprocess"], score_threshold=self.floor)
        self.engine = create_engine(p["model"], backend=p["backend"], device=p["device"], **options)
        det_index = {n: i for i, n in enumerate(s["det_classes"])}
        self.det_lut = np.array([det_index.get(n, -1) for n in self.engine.det_classes], np.int64)
        seg_index = {n: i for i, n in enumerate(s["seg_classes"])}
        self.seg_lut = np.array([seg_index.get(n, NO_LABEL) for n in self.engine.seg_classes] + [NO_LABEL] * 256,
                                np.uint8)[:256]
        self.seg_lut[NO_LABEL] = NO_LABEL
        model_range = tuple(float(v) for v in self.engine.info.thermal_range)
        self.range_note = None
        if s["node_cfg"]["thermal.mode"] == "fixed" and s["node_cfg"]["thermal.low"] == s["node_cfg"]["thermal.high"] \
                and model_range != tuple(s["thermal_range"]):
            self.range_note = (f"the pseudo-label model was trained with thermal_range {list(model_range)}, the "
                               f"training data is normalised with {s['thermal_range']}: its labels may suffer")

    def __call__(self, thermal_on_rgb: np.ndarray, rgb: np.ndarray):
        from fusion_ros.postprocess import decode_detections
        from fusion_ros.preprocess import mask_to_size, scale_boxes

        pair = self.engine.preprocessor(thermal_on_rgb, rgb)
        out = self.engine.run_raw(pair.thermal[None], pair.rgb[None])
        net = self.engine.input_size
        dets = decode_detections(out["cls_logits"][0], out["box_ltrb"][0], out["centerness"][0], net,
                                 self.engine.postprocess_config)  # scores down to self.floor
        labels = self.det_lut[dets.labels] if len(dets) else np.zeros(0, np.int64)
        keep = labels >= 0
        boxes = scale_boxes(dets.boxes, net, pair.rgb_size)[keep]
        logits = out["seg_logits"][0].astype(np.float32)
        logits = logits - logits.max(axis=0, keepdims=True)
        prob = np.exp(logits)
        prob /= prob.sum(axis=0, keepdims=True)
        mask = self.seg_lut[np.argmax(prob, axis=0)]
        mask[prob.max(axis=0) < self.p["seg_confidence"]] = NO_LABEL
        return boxes, dets.scores[keep], labels[keep], mask_to_size(mask, pair.rgb_size)

    def close(self) -> None:
        self.engine.close()


def pseudo_class_thresholds(scores_per_class: dict[int, np.ndarray], class_names, p: dict) -> dict[str, float]:
    """Per-class score thresholds of the pseudo-labels: the class's own threshold (class_thresholds, else
    score_threshold); with class_balanced, raised for a class with more than max_per_class boxes above it
    (its top max_per_class are kept: a frequent class cannot swamp the rest) and lowered, not below
    min_score, for a class with fewer than min_per_class (so rare classes get some labels)."""
    out = {}
    for c, name in enumerate(class_names):
        thr = p["class_thresholds"].get(name, p["score_threshold"])
        scores = np.sort(np.asarray(scores_per_class.get(c, ()), np.float64))[::-1]
        if p["class_balanced"]:
            above = int(np.count_nonzero(scores >= thr))
            cap, floor_n = p["max_per_class"], p["min_per_class"] or 0
            if cap is not None and above > cap:
                thr = float(scores[cap - 1]) if cap > 0 else float("inf")
            elif above < floor_n:
                candidates = scores[scores >= p["min_score"]]
                if len(candidates):
                    thr = min(thr, float(candidates[min(floor_n, len(candidates)) - 1]))
        out[name] = float(thr)
    return out


def _build_bag_cache(bag: Path, folder: Path, key: str, fields: dict, s: dict, classes: ClassConfig) -> dict:
    """Extract a bag's pairs (and labels) into `folder` (written to a temporary folder, then renamed)."""
    import datetime as _dt
    import os
    import shutil

    from fusion_ros.progress import progress

    from fusion_ros.bag.pairing import PairStreamStats, SyncedPair, synced_pairs
    from fusion_ros.bag.reader import (DETECTION2D_ARRAY, IMAGE, IMAGE_TYPES, BagError, BagReader,
                                       detections_from_message, stamp_of)
    from fusion_ros.dataset_layout import IR_DIR, LABEL_DIR, MASK_DIR, VI_DIR, clip_box, write_meta, write_voc_xml
    from fusion_ros.image_conversions import ImageConversionError, image_to_array

    topics = s["topics"]
    det_names, seg_names = s["det_classes"], s["seg_classes"]
    with BagReader(bag) as reader:
        if reader.message_count == 0:
            raise BagError(f"{bag} is empty: no messages (topics: {reader.describe_topics()})")
        reader.require(topics["thermal"], IMAGE_TYPES, "thermal")
        reader.require(topics["rgb"], IMAGE_TYPES, "RGB")
        gt_det = _resolve_gt_topic(reader, "gt_detections", topics["gt_detections"], (DETECTION2D_ARRAY,))
        gt_seg = _resolve_gt_topic(reader, "gt_segmentation", topics["gt_segmentation"], (IMAGE,))
        # per label kind: ground truth where the bag has it, else pseudo-labels when configured, else none
        det_src = "gt" if gt_det else ("pseudo" if s["pseudo"] else "none")
        seg_src = "gt" if gt_seg else ("pseudo" if s["pseudo"] else "none")
        seg_lut, seg_how = _bag_seg_lut(reader, s)
        labeler = _PseudoLabeler(s["pseudo"], s) if "pseudo" in (det_src, seg_src) else None
        # what the cache's masks are (fusion_ros.segmentation_labels): a bag fusion-make-sample-bag generated
        # holds generated labels; pseudo-labels are what the labelling model's head had learnt
        seg_labels = {"gt": SYNTHETIC if "fusion_ros.sample" in reader.custom_data else REAL, "none": NONE,
                      "pseudo": labeler.engine.info.segmentation_labels if labeler else NONE}[seg_src]
        tmp = folder.with_name(f"{folder.name}.partial-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        for d in (IR_DIR, VI_DIR, LABEL_DIR, MASK_DIR):
            (tmp / d).mkdir(parents=True)
        png = [cv2.IMWRITE_PNG_COMPRESSION, 1]
        registration = s["node_cfg"].registration
        samples: dict[int, dict] = {}  # rgb stamp -> sample entry
        gt_boxes: dict[int, tuple] = {}  # stamp -> (boxes, labels): small, kept in memory
        gt_masks: dict[int, tuple] = {}  # stamp -> shape; the mask itself is written to masks/ at once
        pseudo: dict[int, tuple] = {}
        warnings: list[str] = []
        counts = {"skipped_min_interval": 0, "gt_unknown_classes": {}, "gt_mask_unknown_pixels": 0,
                  "gt_mask_bad": 0}
        stats = PairStreamStats()
        gt_read = 0
        last_kept, stop_log = None, None
        start_ns = reader.start_ns
        total = sum(reader.topics[t].count for t in {topics["thermal"], topics["rgb"], gt_det, gt_seg} if t)
        bar = progress(total=total, desc=f"cache {bag.name}", unit="msg", disable=not s["progress"])
        try:
            stream = synced_pairs(reader, s["node_cfg"], topics["thermal"], topics["rgb"], s["thermal_range"],
                                  [t for t in (gt_det, gt_seg) if t], stats)
            for item in stream:
                if not isinstance(item, SyncedPair):
                    gt_read += 1
                if gt_read + stats.messages[0] + stats.messages[1] - bar.n >= 50:
                    bar.update(gt_read + stats.messages[0] + stats.messages[1] - bar.n)
                if not isinstance(item, SyncedPair):  # ground truth, matched to the RGB frame by its stamp
                    if stop_log is not None and item.log_ns > stop_log:
                        break
                    stamp = stamp_of(item.msg.header)
                    if item.topic == gt_det:
                        gt_boxes[stamp] = _gt_detections(detections_from_message(item.msg), det_names, s, counts,
                                                         f"{bag}: {gt_det} at stamp {stamp}")
                        continue
                    try:
                        mask = image_to_array(item.msg)
                        if mask.dtype != np.uint8 or mask.ndim != 2:
                            raise ImageConversionError(f"expected a mono8 label image, got {item.msg.encoding}")
                    except ImageConversionError as exc:
                        counts["gt_mask_bad"] += 1
                        if f"{gt_seg}: masks skipped ({exc})" not in warnings:
                            warnings.append(f"{gt_seg}: masks skipped ({exc})")
                        continue
                    target = seg_lut[mask]
                    counts["gt_mask_unknown_pixels"] += int(np.count_nonzero((target == NO_LABEL) & (mask != NO_LABEL)))
                    cv2.imwrite(str(tmp / MASK_DIR / f"{stamp}.png"), target, png)
                    gt_masks[stamp] = target.shape
                    continue
                if stop_log is not None:
                    continue
                if last_kept is not None and (item.stamp_ns - last_kept) < s["min_interval_s"] * 1e9:
                    counts["skipped_min_interval"] += 1
                    continue
                last_kept = item.stamp_ns
                h, w = item.rgb.shape[:2]
                thermal = np.ascontiguousarray(registration.warp_thermal(item.thermal, (w, h)), np.float32)
                name = str(item.stamp_ns)
                ir16 = np.round(np.clip(thermal, 0.0, 1.0) * BAG_THERMAL_SCALE).astype(np.uint16)
                cv2.imwrite(str(tmp / IR_DIR / f"{name}.png"), ir16, png)
                cv2.imwrite(str(tmp / VI_DIR / f"{name}.png"), cv2.cvtColor(item.rgb, cv2.COLOR_RGB2BGR), png)
                samples[item.stamp_ns] = {"name": name, "stamp_ns": item.stamp_ns,
                                          "t_s": round((item.stamp_ns - start_ns) * 1e-9, 6), "size": [h, w]}
                if labeler is not None:
                    boxes, scores, labels, mask = labeler(thermal, item.rgb)
                    pseudo[item.stamp_ns] = (boxes, scores, labels)
                    if seg_src == "pseudo":
                        cv2.imwrite(str(tmp / MASK_DIR / f"{name}.png"), mask, png)
                if s["max_pairs"] and len(samples) >= s["max_pairs"]:
                    stop_log = item.log_ns + _BAG_STOP_AFTER_NS  # read a little more: the frame's ground truth
            bar.update(max(0, gt_read + stats.messages[0] + stats.messages[1] - bar.n))
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        finally:
            bar.close()
            if labeler is not None:
                labeler.close()
        if labeler is not None and labeler.range_note:
            warnings.append(labeler.range_note)

        # ------------------------------------------------------------------------------------ labels
        thresholds, pseudo_counts = None, None
        if det_src == "pseudo":
            by_class: dict[int, list] = {}
            for _, scores, labels in pseudo.values():
                for score, label in zip(scores, labels):
                    by_class.setdefault(int(label), []).append(float(score))
            thresholds = pseudo_class_thresholds(by_class, det_names, s["pseudo"])
            pseudo_counts = {n: 0 for n in det_names}
        dropped_no_gt = 0
        for stamp, entry in list(samples.items()):
            name = entry["name"]
            h, w = entry["size"]
            if det_src == "gt" and stamp not in gt_boxes:  # no ground truth: "no boxes" would be a wrong label
                dropped_no_gt += 1
                for d in (IR_DIR, VI_DIR, MASK_DIR):
                    (tmp / d / f"{name}.png").unlink(missing_ok=True)
                del samples[stamp]
                continue
            if det_src != "none":
                if det_src == "gt":
                    boxes, labels = gt_boxes[stamp]
                else:
                    boxes, scores, labels = pseudo[stamp]
                    keep = scores >= np.array([thresholds[det_names[int(c)]] for c in labels], np.float64)
                    boxes, labels = boxes[keep], labels[keep]
                    for c in labels:
                        pseudo_counts[det_names[int(c)]] += 1
                clipped = [clip_box(box, w, h)[0] for box in np.asarray(boxes, np.float64).reshape(-1, 4)]
                kept = [i for i, box in enumerate(clipped) if box is not None]  # no area in the frame: no label
                write_voc_xml(tmp / LABEL_DIR / f"{name}.xml", name, w, h, [clipped[i] for i in kept],
                              np.asarray(labels).reshape(-1)[kept], det_names)
                entry["boxes"] = len(kept)
            has_mask = seg_src == "pseudo" or (seg_src == "gt" and tuple(gt_masks.get(stamp, ())) == (h, w))
            if seg_src == "gt" and stamp in gt_masks and not has_mask:
                counts["gt_mask_bad"] += 1
                warnings.append(f"{gt_seg}: masks of another size than the RGB frame were skipped")
            entry["mask"] = bool(has_mask)
        for p in (tmp / MASK_DIR).glob("*.png"):  # ground-truth masks of frames that were not paired / kept
            if int(p.stem) not in samples or not samples[int(p.stem)]["mask"]:
                p.unlink()
        if not samples:
            shutil.rmtree(tmp, ignore_errors=True)
            raise BagError(
                f"no thermal/RGB pair could be extracted from {bag} ({stats.messages[0]} thermal, {stats.messages[1]} "
                f"RGB messages; {stats.pairs_formed} pairs formed; dropped {stats.rejected or 'none'}"
                + (f"; last: {stats.last_reject}" if stats.last_reject else "")
                + (f"; {dropped_no_gt} pairs had no ground-truth detections" if dropped_no_gt else "") + ")")
        if dropped_no_gt:
            warnings.append(f"{dropped_no_gt} pairs without a ground-truth detections message were left out")
        if counts["gt_unknown_classes"]:
            warnings.append(f"ground-truth classes not in the class list were skipped: {counts['gt_unknown_classes']}")
        ordered = [samples[k] for k in sorted(samples)]
        info = {
            "format": BAG_CACHE_FORMAT, "key": key, "key_fields": fields, "bag": str(bag.resolve()),
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "labels": {"detections": det_src, "segmentation": seg_src},
            "segmentation_labels": seg_labels,
            "gt_topics": {"detections": gt_det, "segmentation": gt_seg},
            "segmentation_gt": seg_how if gt_seg else None,
            "pseudo": None if labeler is None else {
                "model": s["pseudo"]["model"], "class_thresholds": thresholds, "boxes_per_class": pseudo_counts,
                "seg_confidence": s["pseudo"]["seg_confidence"] if seg_src == "pseudo" else None},
            "thermal": f"node-normalised 0..1 x {BAG_THERMAL_SCALE}, registered onto the RGB grid",
            "stats": {"thermal_messages": stats.messages[0], "rgb_messages": stats.messages[1],
                      "pairs_formed": stats.pairs_formed, "pairs_prepared": stats.pairs_prepared,
                      "pairs_kept": len(ordered), "rejected": stats.rejected, "sync_resets": stats.sync_resets,
                      "without_gt": dropped_no_gt, **counts},
            "warnings": warnings,
            "samples": ordered,
        }
        write_meta(tmp, {"generator": "fusion_ros bag cache", "source_bag": str(bag.resolve()),
                         "thermal_format": f"node-normalised thermal x {BAG_THERMAL_SCALE} (read with thermal_range "
                                           f"[0, {BAG_THERMAL_SCALE}])",
                         "detection_classes": det_names, "segmentation_classes": seg_names,
                         "samples": {e["name"]: bag.name for e in ordered}})
        (tmp / "cache.json").write_text(json.dumps(info, indent=1, default=str))  # last: marks it complete
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    for text in warnings:
        print(f"bag cache {folder.name}: warning: {text}")
    return info


def _gt_detections(parsed, det_names, s: dict, counts: dict, where: str) -> tuple[np.ndarray, np.ndarray]:
    """A Detection2DArray's (boxes, class_ids, scores) -> (boxes, label indices) by the bag evaluator's class
    mapping after ``class_map``; an unknown name is an error unless unknown_classes: ignore (then counted)."""
    from fusion_ros.bag.ground_truth import class_labels

    boxes, names, _ = parsed
    unknown = counts["gt_unknown_classes"] if s["unknown_classes"] == "ignore" else None
    try:
        keep, labels = class_labels(names, det_names, s["class_map"], unknown, where)
    except ValueError as exc:
        raise ValueError(f"{exc}; map it with data.class_map or set data.unknown_classes: ignore") from None
    return boxes[keep].reshape(-1, 4), np.asarray(labels, np.int64)


def time_block_split(stamps_ns, block_seconds: float, gap_seconds: float, heldout_fraction: float,
                     val_fraction: float, what: str = "bag") -> list[str | None]:
    """Split one recording by time (see the module docstring): the timeline is cut into blocks of
    ``block_seconds``; ``val_fraction`` / ``heldout_fraction`` of the (non-empty) blocks, spread evenly
    over the recording, go to val / heldout, the rest to train; a frame closer than ``gap_seconds`` to a
    frame of a split of higher rank (val > heldout > train) is left out (None)."""
    stamps = np.asarray(stamps_ns, np.int64)
    if not len(stamps):
        return []
    block_ns = int(round(block_seconds * 1e9))
    blocks = (stamps - stamps.min()) // block_ns
    occupied = np.unique(blocks)
    n = len(occupied)
    want = {"val": val_fraction, "heldout": heldout_fraction}
    counts = {k: (max(1, int(round(f * n))) if f > 0 else 0) for k, f in want.items()}
    if n - counts["val"] - counts["heldout"] < 1:
        raise DatasetLayoutError(
            f"{what} spans {n} block(s) of data.split.block_seconds = {block_seconds:g} s: too few for train, heldout "
            f"and val blocks (need {counts['val'] + counts['heldout'] + 1}); lower block_seconds or record longer")
    assign = ["train"] * n
    for split, offset in (("val", 0.75), ("heldout", 0.25)):
        for k in range(counts[split]):
            pos = min(int((k + offset) * n / counts[split]), n - 1)
            for d in sorted(range(-n, n), key=abs):  # the nearest block still free
                if 0 <= pos + d < n and assign[pos + d] == "train":
                    assign[pos + d] = split
                    break
    of_block = dict(zip(occupied.tolist(), assign))
    splits = [of_block[int(b)] for b in blocks]
    gap_ns = int(round(gap_seconds * 1e9))
    rank = {"train": 0, "heldout": 1, "val": 2}
    out: list[str | None] = list(splits)
    if gap_ns > 0:
        for higher in ("heldout", "val"):
            ref = np.sort(stamps[[sp == higher for sp in splits]])
            if not len(ref):
                continue
            for i, (t, sp) in enumerate(zip(stamps, splits)):
                if rank[sp] >= rank[higher]:
                    continue
                j = np.searchsorted(ref, t)
                near = min(abs(int(ref[j]) - int(t)) if j < len(ref) else 1 << 62,
                           abs(int(t) - int(ref[j - 1])) if j > 0 else 1 << 62)
                if near < gap_ns:
                    out[i] = None
    return out


class BagPairs(RealPairs):
    """Pairs of one split of one or more bag caches. A frame without a mask in a dataset where others
    have one gets an all-ignore (255) mask, so batches keep their segmentation targets."""

    def __init__(self, records: list[Record], opts: ReadOptions, root: Path, caches: list[BagCache],
                 any_masks: bool):
        super().__init__(records, opts, "bag", root)
        self.caches, self.any_masks = caches, any_masks

    @property
    def segmentation_labels(self) -> str:
        """What the caches' masks are, together (caches written before the record: unknown)."""
        return combined(checked(cache.info.get("segmentation_labels"), str(cache.folder)) for cache in self.caches)

    def __getitem__(self, index: int) -> dict:
        sample = super().__getitem__(index)
        if sample["mask"] is None and self.any_masks:
            import torch

            sample["mask"] = torch.full(tuple(sample["rgb"].shape[-2:]), NO_LABEL, dtype=torch.int64)
        return sample


def build_bag_dataset(cfg: dict, split: str, thermal_range, classes=None) -> BagPairs:
    """One split of a ``kind: bag`` dataset (module docstring): caches built or reused, split by time."""
    if split not in ("train", "heldout", "val"):
        raise ValueError(f"kind 'bag' has the splits train, heldout and val (by time), not {split!r}; evaluate on "
                         "a separate recording instead (python -m training.retrain --heldout-bag)")
    resize = resize_mode(cfg)
    heldout_fraction, val_fraction = split_fractions(cfg)
    class_config = dataset_classes(cfg, "bag", classes)
    caches = bag_caches(cfg, thermal_range, class_config)
    split_cfg = {**BAG_SPLIT_DEFAULTS, **(cfg.get("split") or {})}
    records: list[Record] = []
    any_masks = False
    names = list(class_config.detection.names)
    for cache in caches:
        samples = cache.info["samples"]
        any_masks |= any(e.get("mask") for e in samples)
        assign = time_block_split([e["stamp_ns"] for e in samples], float(split_cfg["block_seconds"]),
                                  float(split_cfg["gap_seconds"]), heldout_fraction, val_fraction, str(cache.bag))
        stem = cache.folder.name.rsplit("-", 1)[0]
        for entry, which in zip(samples, assign):
            if which != split:
                continue
            name = entry["name"]
            r = Record(f"{stem}@{entry['t_s']:.3f}s", cache.folder / "ir" / f"{name}.png",
                       cache.folder / "vi" / f"{name}.png",
                       cache.folder / "masks" / f"{name}.png" if entry.get("mask") else None)
            xml = cache.folder / "labels" / f"{name}.xml"
            if xml.is_file():
                r.boxes, r.labels = read_voc_xml(xml, names)
            records.append(r)
    if not records:
        raise DatasetLayoutError(f"split {split!r} of the bags {[str(c.bag) for c in caches]} is empty; lower "
                                 "data.split.block_seconds or change heldout_fraction/val_fraction")
    opts = ReadOptions(cfg.get("height"), cfg.get("width"), resize, (0.0, float(BAG_THERMAL_SCALE)), len(class_config.segmentation), None)
    return BagPairs(records, opts, caches[0].folder, caches, any_masks)
