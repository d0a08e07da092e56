"""Offline evaluation of the fused-perception node on a rosbag2 recording.

    fusion-eval-bag BAG [--thermal-topic /thermal/image_raw] [--rgb-topic /rgb/image_raw] [--model PATH]
                    [--backend auto|onnxruntime|torch|tensorrt] [--gt-detections TOPIC | --gt-file coco.json]
                    [--gt-segmentation TOPIC] [--out DIR] [--max-pairs N] [--params-file fusion.yaml] [-p k=v]

The bag is streamed once in log-time order (never loaded whole). Every thermal / RGB message goes through
the node's own input path (fusion_ros.node_core): ``decode_image`` (encoding check, numpy view),
``offer_frame`` (out-of-order / duplicate stamps rejected, a jump back resets the synchroniser) into the
node's ApproximateTime synchroniser built from the same parameters (``make_synchronizer``), then
``prepare_pair`` (registration check, thermal normalisation, RGB conversion) and the engine built with
``engine_options`` — so the numbers describe what the node does on that data. Unlike the live node, every
pair is processed (no pair is replaced while the engine is busy): this measures accuracy and per-stage
cost; drops under real transport and load are measured by replaying the bag (fusion-play-bag --measure).

Outputs in --out (default ./bag_eval):
  metrics.json   inputs seen / paired / dropped per topic, sync skew, latency p50/p95/p99 per stage, fusion
                 metrics (mean over a sample of frames), mAP@0.5 and @0.5:0.95 overall and per class when
                 ground truth exists (matched by the RGB stamp), mIoU when ground-truth masks exist
  annotated/     an mcap rosbag2 with /fused/image (bgr8), /detections (Detection2DArray),
                 /segmentation/mask (mono8) and /detections/image (bgr8 overlay) -- the topics the node
                 publishes in the root namespace (fusion_ros/topics.py) --, stamped
                 with the RGB stamps and logged at the RGB log times (open it in Foxglove)
  report.md      the numbers plus samples.png (IR | RGB | fused | detections | segmentation),
                 pr_curve.png and latency.png

Ground truth: ``--gt-detections`` (vision_msgs/Detection2DArray, class_id = class name, header stamp =
the RGB frame's) or ``--gt-file`` (COCO JSON whose images carry ``stamp_ns``, or ``stamp`` {sec, nanosec},
or ``timestamp`` seconds; categories matched to the model's classes by name); ``--gt-segmentation``
(mono8 class ids; remapped by name when the bag's custom_data lists its segmentation classes). By default
the sample-bag topics are used when the bag has them.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import yaml

from .. import node_core as core
from .. import topics
from ..image_conversions import ImageConversionError, image_to_array
from .reader import (
    COMPRESSED_IMAGE,
    DETECTION2D_ARRAY,
    IMAGE,
    IMAGE_TYPES,
    BagError,
    BagReader,
    BagWriter,
    detections_from_message,
    detections_message,
    image_message,
    recover_truncated_mcap,
    segmentation_lut,
    stamp_of,
    truncated_mcap,
)
from ..summary import json_safe as _json_safe, latency_stats as _stats, prepare_output_dir

THERMAL, RGB = core.THERMAL_INDEX, core.RGB_INDEX
DEFAULT_THERMAL_TOPIC = topics.absolute(topics.THERMAL_TOPIC)  # the node's inputs, recorded in the root namespace
DEFAULT_RGB_TOPIC = topics.absolute(topics.RGB_TOPIC)
DEFAULT_GT_DETECTIONS = "/ground_truth/detections"
DEFAULT_GT_SEGMENTATION = "/ground_truth/segmentation"
OUTPUT_TOPICS = {
    "fused": topics.absolute(topics.FUSED_TOPIC),
    "detections": topics.absolute(topics.DETECTIONS_TOPIC),
    "mask": topics.absolute(topics.SEGMENTATION_TOPIC),
    "overlay": topics.absolute(topics.DETECTION_IMAGE_TOPIC),
}
OUTPUT_BAG = "annotated"
OUTPUT_FILES = ("metrics.json", "report.md", "samples.png", "pr_curve.png", "latency.png", OUTPUT_BAG)
IGNORE = 255  # segmentation ground truth: pixels of classes the model does not have
GT_WINDOW_NS = 5_000_000_000  # a prediction or ground truth waits this long (log time) for its partner
MAX_PENDING_MASKS = 32


@dataclass
class EvalOptions:
    bag: str
    out: str = "bag_eval"
    thermal_topic: str = DEFAULT_THERMAL_TOPIC
    rgb_topic: str = DEFAULT_RGB_TOPIC
    model: str | None = None
    backend: str | None = None
    device: str | None = None
    params_file: str | None = None
    params: dict = field(default_factory=dict)  # node parameter overrides
    gt_detections: str | None = None  # None: the default topic when the bag has it
    gt_file: str | None = None
    gt_segmentation: str | None = None
    no_gt: bool = False
    max_pairs: int | None = None
    samples: int = 4
    fusion_samples: int = 20
    write_bag: bool = True
    overlay: bool = True
    overwrite: bool = False
    allow_truncated: bool = False
    progress: bool = True


# ------------------------------------------------------------------------------------------ helpers
def load_node_params(params_file: str | None, overrides: dict, model: str | None, backend: str | None,
                     device: str | None) -> core.NodeConfig:
    """The node's validated parameters: defaults <- params file (ros__parameters of any node entry,
    as `ros2 run --params-file` reads them) <- overrides <- --model/--backend/--device."""
    raw: dict = {}
    if params_file:
        try:
            data = yaml.safe_load(Path(params_file).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise BagError(f"cannot read params file {params_file}: {exc}") from None
        for entry in data.values() if isinstance(data, dict) else []:
            if isinstance(entry, dict) and isinstance(entry.get("ros__parameters"), dict):
                raw.update(_flatten(entry["ros__parameters"]))
    raw.update(overrides)
    if model is not None:
        raw["model_path"] = str(model)
    if backend is not None:
        raw["backend"] = backend
    if device is not None:
        raw["device"] = device
    try:
        return core.validate_params(raw)
    except core.ParamError as exc:
        raise BagError(str(exc)) from None


def _flatten(params: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


def parse_param(text: str) -> tuple[str, object]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got '{text}'")
    name, value = text.split("=", 1)
    try:
        parsed = yaml.safe_load(value) if value != "" else ""
    except yaml.YAMLError:
        parsed = value
    return name.strip(), parsed


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


@dataclass
class BagFrame(core.Frame):
    """The node's Frame plus where it sits in the bag."""

    log_ns: int = 0
    decode_ms: float = 0.0  # read + deserialize + decode of its message


@dataclass
class InputCounts:
    topic: str
    msgtype: str
    messages: int = 0
    decoded: int = 0
    paired: int = 0  # frames of pairs handed to the engine
    rejected: dict = field(default_factory=dict)

    def reject(self, reason: str) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + 1


# --------------------------------------------------------------------------------------- evaluator
class BagEvaluator:
    def __init__(self, opts: EvalOptions):
        self.opts = opts
        self.warnings: list[str] = []
        self.timings: dict[str, list[float]] = {k: [] for k in (
            "read", "decode", "prepare", "engine.pre", "engine.infer", "engine.post", "engine", "outputs", "total")}

    def warn(self, text: str) -> None:
        if text not in self.warnings:
            self.warnings.append(text)

    # ------------------------------------------------------------------------------------ set-up
    def _prepare_out(self) -> Path:
        return prepare_output_dir(Path(self.opts.out), OUTPUT_FILES, self.opts.overwrite, BagError)

    def run(self) -> dict:
        opts = self.opts
        cfg = load_node_params(opts.params_file, opts.params, opts.model, opts.backend, opts.device)
        if opts.gt_file and opts.gt_detections:
            raise BagError("give either --gt-detections or --gt-file, not both")
        if opts.max_pairs is not None and opts.max_pairs < 1:
            raise BagError(f"--max-pairs must be >= 1, got {opts.max_pairs}")
        self.recovery = None
        try:
            reader = BagReader(opts.bag)
        except BagError as exc:
            cut = truncated_mcap(Path(opts.bag))
            if cut is None:
                raise
            if not opts.allow_truncated:
                raise BagError(f"{exc} (pass --allow-truncated to evaluate it up to its last complete chunk)"
                               if "--allow-truncated" not in str(exc) else str(exc)) from None
            # a recording cut off before its footer: rewrite its complete records (every complete chunk)
            # beside the results, closed properly, and evaluate that copy; removed when done
            self._prepare_out()
            self.recovery = recover_truncated_mcap(cut, Path(opts.out) / f".recovered_{cut.name}")
            self.warn(self.recovery.describe())
            try:
                reader = BagReader(self.recovery.recovered)
            except BagError:
                self.recovery.recovered.unlink(missing_ok=True)
                raise
        try:
            return self._run(reader, cfg)
        finally:
            reader.close()
            if self.recovery is not None:
                self.recovery.recovered.unlink(missing_ok=True)

    def _run(self, reader: BagReader, cfg: core.NodeConfig) -> dict:
        opts = self.opts
        if reader.message_count == 0:
            raise BagError(f"{reader.path} is empty: no messages (topics: {reader.describe_topics()})")
        topics = {THERMAL: reader.require(opts.thermal_topic, IMAGE_TYPES, "thermal"),
                  RGB: reader.require(opts.rgb_topic, IMAGE_TYPES, "RGB")}
        if opts.thermal_topic == opts.rgb_topic:
            raise BagError(f"thermal and RGB topic are the same ('{opts.thermal_topic}')")
        gt_det_topic = gt_seg_topic = None
        if not opts.no_gt:
            if opts.gt_detections:
                reader.require(opts.gt_detections, (DETECTION2D_ARRAY,), "ground-truth detections")
                gt_det_topic = opts.gt_detections
            elif not opts.gt_file and reader.topics.get(DEFAULT_GT_DETECTIONS, None) is not None \
                    and reader.topics[DEFAULT_GT_DETECTIONS].msgtype == DETECTION2D_ARRAY:
                gt_det_topic = DEFAULT_GT_DETECTIONS
            if opts.gt_segmentation:
                reader.require(opts.gt_segmentation, (IMAGE,), "ground-truth segmentation")
                gt_seg_topic = opts.gt_segmentation
            elif reader.topics.get(DEFAULT_GT_SEGMENTATION) is not None \
                    and reader.topics[DEFAULT_GT_SEGMENTATION].msgtype == IMAGE:
                gt_seg_topic = DEFAULT_GT_SEGMENTATION
        used = [opts.thermal_topic, opts.rgb_topic] + [t for t in (gt_det_topic, gt_seg_topic) if t]
        ignored = reader.ignored_topics(used)
        for name, info in ignored.items():
            if "unknown" in info["reason"]:
                self.warn(f"topic {name} ({info['type']}, {info['count']} msgs) ignored: {info['reason']}")

        out = self._prepare_out()
        from ..checkpoint import DEFAULT_MODEL
        from ..classes import load_classes
        from ..engine import EngineError, InputError, create_engine

        model_path = Path(cfg["model_path"]) if cfg["model_path"] else DEFAULT_MODEL
        try:
            classes = load_classes(cfg["classes_file"] or None)
            engine = create_engine(model_path, backend=cfg["backend"], device=cfg.device, **core.engine_options(cfg))
        except (EngineError, ValueError, OSError, ImportError, RuntimeError) as exc:
            raise BagError(f"cannot load the engine: {exc}") from None
        det_names, seg_names = tuple(engine.det_classes), tuple(engine.seg_classes)
        det_colors = core.class_colors(det_names, classes.detection)
        seg_colors = core.class_colors(seg_names, classes.segmentation)
        thermal_range = engine.info.thermal_range

        # ground truth
        det_pairs: list[tuple] = []  # (prediction, ground truth) per matched frame
        unknown_gt: dict = {}
        det_index = {n: i for i, n in enumerate(det_names)}

        def det_match(stamp, pred, gt):
            det_pairs.append((pred, gt))

        det_matcher = StampMatcher(det_match)
        coco = None
        if opts.gt_file and not opts.no_gt:
            coco, unknown = load_coco_ground_truth(opts.gt_file, det_names)
            for name, n in unknown.items():
                unknown_gt[name] = unknown_gt.get(name, 0) + n
            coco_seen: set = set()
        confusion = None
        seg_lut = None
        if gt_seg_topic:
            from ..metrics import ConfusionMatrix

            confusion = ConfusionMatrix(len(seg_names), ignore_index=IGNORE)
            seg_lut = self._segmentation_lut(reader, seg_names)
        seg_counts = {"size_mismatch": 0, "unknown_class_pixels": 0, "bad_message": 0}

        def seg_match(stamp, pred_mask, gt_mask):
            if gt_mask.shape != pred_mask.shape:
                seg_counts["size_mismatch"] += 1
                return
            target = seg_lut[gt_mask]
            seg_counts["unknown_class_pixels"] += int(np.count_nonzero((target == IGNORE) & (gt_mask != IGNORE)))
            confusion.update(pred_mask, target)

        seg_matcher = StampMatcher(seg_match, max_pending=MAX_PENDING_MASKS)

        # output bag
        writer = None
        if opts.write_bag:
            writer = BagWriter(out / OUTPUT_BAG, storage="mcap", custom_data={
                "fusion_ros.source_bag": str(Path(opts.bag).resolve()),
                "fusion_ros.model": str(model_path), "fusion_ros.backend": engine.backend,
                "fusion_ros.detection_classes": json.dumps(det_names),
                "fusion_ros.segmentation_classes": json.dumps(seg_names)})
            writer.add_topic(OUTPUT_TOPICS["fused"], IMAGE)
            writer.add_topic(OUTPUT_TOPICS["detections"], DETECTION2D_ARRAY)
            writer.add_topic(OUTPUT_TOPICS["mask"], IMAGE)
            if opts.overlay:
                writer.add_topic(OUTPUT_TOPICS["overlay"], IMAGE)

        # synchroniser and counters: the node's
        sync = core.make_synchronizer(cfg)
        last_stamps = [None, None]
        jump = cfg["sync.reset_on_jump_back"]
        counts = {THERMAL: InputCounts(opts.thermal_topic, topics[THERMAL].msgtype),
                  RGB: InputCounts(opts.rgb_topic, topics[RGB].msgtype)}
        topic_index = {opts.thermal_topic: THERMAL, opts.rgb_topic: RGB}
        pair_stats = {"paired": 0, "processed": 0, "rejected": {}, "engine_failures": 0, "sync_resets": 0,
                      "stopped_at_max_pairs": False}
        skews_ms: list[float] = []
        last_engine_error = ""

        est_pairs = min(topics[THERMAL].count, topics[RGB].count)
        if opts.max_pairs:
            est_pairs = min(est_pairs, opts.max_pairs)
        # sample frames spread over the bag (up to 90 % of the expected pairs: drops make the end uncertain)
        sample_at = sorted({int(round(v)) for v in np.linspace(0, 0.9 * max(est_pairs - 1, 0), opts.samples)}) \
            if opts.samples > 0 else []
        fusion_every = max(1, est_pairs // max(opts.fusion_samples, 1))
        samples: list[dict] = []
        fusion_rows: list[dict] = []

        def process(thermal_frame: BagFrame, rgb_frame: BagFrame) -> None:
            nonlocal last_engine_error
            pair_stats["paired"] += 1
            skews_ms.append(abs(thermal_frame.stamp_ns - rgb_frame.stamp_ns) * 1e-6)
            t0 = time.perf_counter()
            try:
                thermal_unit, rgb8 = core.prepare_pair(cfg, thermal_range, thermal_frame, rgb_frame)
            except core.PairRejected as exc:
                counts[exc.index].reject(exc.reason)
                pair_stats["rejected"][exc.reason] = pair_stats["rejected"].get(exc.reason, 0) + 1
                self.warn(f"{core.ROLES[exc.index]} frames rejected [{exc.reason}]: {exc.message}")
                return
            t1 = time.perf_counter()
            try:
                result = engine.infer(thermal_unit, rgb8)
            except InputError as exc:
                counts[THERMAL].reject("engine_input")
                pair_stats["rejected"]["engine_input"] = pair_stats["rejected"].get("engine_input", 0) + 1
                self.warn(f"pairs rejected by the engine: {exc}")
                return
            except Exception as exc:  # the node counts and continues; so do we
                pair_stats["engine_failures"] += 1
                last_engine_error = f"{type(exc).__name__}: {exc}"
                return
            t2 = time.perf_counter()
            index = pair_stats["processed"]
            pair_stats["processed"] += 1
            counts[THERMAL].paired += 1
            counts[RGB].paired += 1
            stamp, frame_id = rgb_frame.stamp_ns, rgb_frame.frame_id or cfg["default_frame_id"]
            dets = result.detections
            fused_bgr = cv2.cvtColor(result.fused, cv2.COLOR_RGB2BGR)
            overlay = None
            if writer is not None or index in sample_at:
                overlay = core.render_detections(fused_bgr, dets, det_names, det_colors)
            if writer is not None:
                names = [det_names[int(k)] if 0 <= int(k) < len(det_names) else str(int(k)) for k in dets.labels]
                log_ns = rgb_frame.log_ns
                writer.write(OUTPUT_TOPICS["fused"], log_ns, image_message(fused_bgr, "bgr8", stamp, frame_id))
                writer.write(OUTPUT_TOPICS["detections"], log_ns,
                             detections_message(dets.boxes, dets.scores, names, stamp, frame_id))
                writer.write(OUTPUT_TOPICS["mask"], log_ns,
                             image_message(result.segmentation, "mono8", stamp, frame_id))
                if opts.overlay:
                    writer.write(OUTPUT_TOPICS["overlay"], log_ns, image_message(overlay, "bgr8", stamp, frame_id))
            t3 = time.perf_counter()
            for key in ("pre", "infer", "post"):
                self.timings[f"engine.{key}"].append(float(result.timings.get(key, float("nan"))))
            self.timings["prepare"].append((t1 - t0) * 1e3)
            self.timings["engine"].append((t2 - t1) * 1e3)
            self.timings["outputs"].append((t3 - t2) * 1e3)
            self.timings["total"].append((t3 - t0) * 1e3 + thermal_frame.decode_ms + rgb_frame.decode_ms)

            pred = (np.asarray(dets.boxes, np.float64).reshape(-1, 4), np.asarray(dets.scores, np.float64),
                    np.asarray(dets.labels, np.int64))
            if gt_det_topic:
                det_matcher.add_pred(stamp, pred, rgb_frame.log_ns)
            elif coco is not None:
                if stamp in coco:
                    det_pairs.append((pred, coco[stamp]))
                    coco_seen.add(stamp)
                else:
                    det_matcher.pred_unmatched += 1
            if confusion is not None:
                seg_matcher.add_pred(stamp, result.segmentation, rgb_frame.log_ns)

            ir_view = None
            if index % fusion_every == 0 and len(fusion_rows) < opts.fusion_samples or index in sample_at:
                ir_view = self._thermal_on_rgb(cfg, thermal_unit, rgb8.shape[:2])
            if index % fusion_every == 0 and len(fusion_rows) < opts.fusion_samples:
                from ..metrics import fusion_metrics

                try:
                    fusion_rows.append(fusion_metrics(cv2.cvtColor(result.fused, cv2.COLOR_RGB2GRAY),
                                                      ir_view, cv2.cvtColor(rgb8, cv2.COLOR_RGB2GRAY)))
                except ValueError as exc:
                    self.warn(f"fusion metrics skipped: {exc}")
            if index in sample_at:
                samples.append({
                    "stamp_ns": stamp, "t_s": (stamp - reader.start_ns) * 1e-9, "ir": ir_view,
                    "rgb": cv2.cvtColor(rgb8, cv2.COLOR_RGB2BGR),
                    "fused": fused_bgr, "detections": overlay,
                    "segmentation": core.colorize_mask(result.segmentation, seg_colors),
                    "num_detections": len(dets)})

        # ----------------------------------------------------------------------------- the stream
        from tqdm import tqdm

        stream_topics = used
        total = sum(reader.topics[t].count for t in stream_topics)
        bar = tqdm(total=total, desc=f"eval {Path(opts.bag).name}", unit="msg", disable=not opts.progress)
        read_error = None
        started = time.perf_counter()
        stream = reader.messages(stream_topics)
        try:
            while True:
                t_read = time.perf_counter()
                try:
                    item = next(stream)
                except StopIteration:
                    break
                except BagError as exc:
                    if not opts.allow_truncated:
                        raise BagError(f"{exc} (pass --allow-truncated to evaluate what was read before it)") from None
                    read_error = str(exc)
                    self.warn(f"reading stopped early: {exc}")
                    break
                read_ms = (time.perf_counter() - t_read) * 1e3
                bar.update(1)
                msg = item.msg
                index = topic_index.get(item.topic)
                if index is not None:
                    self.timings["read"].append(read_ms)
                    counted = counts[index]
                    counted.messages += 1
                    t_dec = time.perf_counter()
                    frame = self._frame(item, index, counted, cfg["max_image_pixels"])
                    if frame is None:
                        continue
                    frame.decode_ms = read_ms + (time.perf_counter() - t_dec) * 1e3
                    self.timings["decode"].append((time.perf_counter() - t_dec) * 1e3)
                    outcome = core.offer_frame(sync, last_stamps, index, frame, jump)
                    if outcome.reset_back_s is not None:
                        pair_stats["sync_resets"] += 1
                        self.warn(f"stamps jumped back (by {outcome.reset_back_s:.2f} s on {counted.topic}): "
                                  "synchronizer reset, as the node does")
                    if outcome.rejected is not None:
                        counted.reject(outcome.rejected[0])
                        self.warn(f"{counted.topic}: stamps not increasing ({outcome.rejected[0]}) -> frames dropped, "
                                  "counted")
                    for thermal_frame, rgb_frame in outcome.pairs:
                        process(thermal_frame, rgb_frame)
                        if opts.max_pairs and pair_stats["processed"] >= opts.max_pairs:
                            pair_stats["stopped_at_max_pairs"] = True
                            break
                    if pair_stats["stopped_at_max_pairs"]:
                        break
                elif item.topic == gt_det_topic:
                    try:
                        boxes, names, _ = detections_from_message(msg)
                    except Exception as exc:  # a foreign layout: say so once, count
                        self.warn(f"{gt_det_topic}: cannot read ground truth ({exc})")
                        continue
                    labels = []
                    keep = []
                    for i, name in enumerate(names):
                        label = det_index.get(name)
                        if label is None and name.isdigit() and int(name) < len(det_names):
                            label = int(name)
                        if label is None:
                            unknown_gt[name] = unknown_gt.get(name, 0) + 1
                            continue
                        keep.append(i)
                        labels.append(label)
                    gt = (boxes[keep].reshape(-1, 4), np.asarray(labels, np.int64))
                    det_matcher.add_gt(stamp_of(msg.header), gt, item.log_ns)
                elif item.topic == gt_seg_topic:
                    try:
                        mask = image_to_array(msg)
                        if mask.dtype != np.uint8 or mask.ndim != 2:
                            raise ImageConversionError(f"expected a mono8 label image, got {msg.encoding}")
                    except ImageConversionError as exc:
                        seg_counts["bad_message"] += 1
                        self.warn(f"{gt_seg_topic}: ground-truth mask skipped ({exc})")
                        continue
                    seg_matcher.add_gt(stamp_of(msg.header), np.array(mask), item.log_ns)
        finally:
            stream.close()
            bar.close()
            if writer is not None:
                writer.close()
        wall_s = time.perf_counter() - started
        read_counts = {opts.thermal_topic: counts[THERMAL].messages, opts.rgb_topic: counts[RGB].messages}
        short = {}
        if not pair_stats["stopped_at_max_pairs"] and read_error is None:
            for topic, seen in read_counts.items():
                if seen != reader.topics[topic].count:
                    short[topic] = {"metadata": reader.topics[topic].count, "read": seen}
                    self.warn(f"{topic}: the bag's metadata lists {reader.topics[topic].count} messages but "
                              f"{seen} could be read: the storage file is damaged (messages lost)")
        det_matcher.finish()
        seg_matcher.finish()
        engine.close()

        if pair_stats["processed"] == 0:
            details = "; ".join(
                f"{c.topic}: {c.messages} msgs, rejected {c.rejected or 0}" for c in counts.values())
            extra = f"; last engine error: {last_engine_error}" if last_engine_error else ""
            raise BagError(f"no thermal/RGB pair could be evaluated in {reader.path} ({pair_stats['paired']} pairs "
                           f"formed; {details}; sync dropped {list(sync.stats.dropped)}){extra}")
        if pair_stats["engine_failures"]:
            self.warn(f"{pair_stats['engine_failures']} engine failures (last: {last_engine_error})")

        # ------------------------------------------------------------------------------ metrics
        stats = sync.stats
        pending = sync.pending()
        inputs = {}
        for index, name in ((THERMAL, "thermal"), (RGB, "rgb")):
            c = counts[index]
            dropped = {"sync_unpaired": int(stats.dropped[index]), "out_of_order": int(stats.out_of_order[index]),
                       "duplicate": int(stats.duplicates[index]), "pending_at_end": int(pending[index])}
            rejected_decode = {k: v for k, v in c.rejected.items() if k not in ("out_of_order", "duplicate")}
            inputs[name] = {
                "topic": c.topic, "type": c.msgtype, "messages_in_bag": reader.topics[c.topic].count,
                "seen": c.messages, "decoded": c.decoded, "paired": c.paired,
                "rejected": rejected_decode, "dropped": dropped,
                "dropped_total": sum(dropped.values()) + sum(rejected_decode.values()),
            }
        metrics = {
            "bag": {"path": str(self.recovery.source if self.recovery else reader.path), "storage": reader.storage, "duration_s": reader.duration_s,
                    "message_count": reader.message_count,
                    "topics": {t.name: {"type": t.msgtype, "count": t.count} for t in reader.topics.values()}},
            "model": {"path": str(model_path), "backend": engine.backend, "input_size": list(engine.input_size),
                      "det_classes": list(det_names), "seg_classes": list(seg_names)},
            "config": {k: cfg[k] for k in ("sync.slop", "sync.queue_size", "sync.inter_message_lower_bound",
                                           "sync.reset_on_jump_back", "thermal.mode", "registration.mode",
                                           "score_threshold", "nms_iou", "max_detections")},
            "inputs": inputs,
            "pairs": pair_stats,
            "sync_skew_ms": _stats(skews_ms),
            "latency_ms": {k: _stats(v) for k, v in self.timings.items()},
            "throughput": {
                "wall_s": wall_s, "pairs_per_s": pair_stats["processed"] / wall_s if wall_s > 0 else None,
                "bag_pairs_per_s": pair_stats["processed"] / reader.duration_s if reader.duration_s else None},
            "fusion_metrics": {"frames": len(fusion_rows),
                               "mean": {k: float(np.mean([r[k] for r in fusion_rows])) for k in fusion_rows[0]}
                               if fusion_rows else {}},
            "detection": None,
            "segmentation": None,
            "ground_truth": {"detections": gt_det_topic or (opts.gt_file if coco is not None else None),
                             "segmentation": gt_seg_topic},
            "ignored_topics": ignored,
            "read_error": read_error,
            "recovered": None if self.recovery is None else {
                "source": str(self.recovery.source), "source_bytes": self.recovery.source_bytes,
                "kept_bytes": self.recovery.kept_bytes, "chunks": self.recovery.chunks,
                "note": self.recovery.describe()},
            "count_mismatch": short,
            "warnings": self.warnings,
        }
        report = None
        if gt_det_topic or coco is not None:
            matched = det_matcher.summary()
            if coco is not None:
                matched["frames_matched"] = len(det_pairs)
                matched["gt_frames_without_processed_pair"] = len(set(coco) - coco_seen)
            det = {**matched, "unknown_gt_classes": unknown_gt}
            if unknown_gt:
                self.warn(f"ground-truth classes the model does not have were skipped: {unknown_gt}")
            try:
                from ..metrics import evaluate_detections

                report = evaluate_detections([p for p, _ in det_pairs], [g for _, g in det_pairs], det_names,
                                             max_detections=max(cfg["max_detections"], 1))
                det.update(report.to_dict())
            except ValueError as exc:
                det["skipped"] = str(exc)
                self.warn(f"mAP not computed: {exc}")
            metrics["detection"] = det
        if confusion is not None:
            if seg_counts["size_mismatch"]:
                self.warn(f"{seg_counts['size_mismatch']} ground-truth masks differ in size from the RGB frame: skipped")
            if seg_counts["unknown_class_pixels"]:
                self.warn(f"{seg_counts['unknown_class_pixels']} ground-truth mask pixels carry class ids the model "
                          "does not have: ignored in mIoU")
            iou = confusion.iou_per_class()
            metrics["segmentation"] = {
                "frames": seg_matcher.matched - seg_counts["size_mismatch"], **seg_matcher.summary(),
                "mIoU": confusion.miou(), "pixel_accuracy": confusion.pixel_accuracy(),
                "iou_per_class": {n: float(v) for n, v in zip(seg_names, iou)}, "skipped": seg_counts}
        if writer is not None:
            metrics["outputs"] = {"bag": str(out / OUTPUT_BAG), "topics": {t: writer.counts.get(t, 0)
                                                                          for t in OUTPUT_TOPICS.values()
                                                                          if t in writer.counts}}
        metrics = _json_safe(metrics)

        from . import report as report_mod

        pictures = {}
        if samples:
            pictures["samples"] = report_mod.save_sample_grid(samples, out / "samples.png")
        if report is not None:
            from ..metrics import plot_pr_curves

            pictures["pr_curve"] = plot_pr_curves(report, out / "pr_curve.png")
        if self.timings["total"]:
            pictures["latency"] = report_mod.save_latency_histogram(self.timings, out / "latency.png")
        metrics["pictures"] = {k: str(Path(v).name) for k, v in pictures.items()}
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=False))
        report_mod.write_report(metrics, out / "report.md")
        return metrics

    # ------------------------------------------------------------------------------------ pieces
    def _frame(self, item, index: int, counted: InputCounts, max_pixels: int) -> BagFrame | None:
        """A bag message -> the node's Frame (decode_image / compressed pass-through), or None (counted)."""
        msg = item.msg
        role = core.ROLES[index]
        stamp = stamp_of(msg.header)
        if item.msgtype == COMPRESSED_IMAGE:
            if len(msg.data) == 0:
                counted.reject("empty")
                self.warn(f"{counted.topic}: compressed image without data skipped")
                return None
            counted.decoded += 1
            return BagFrame(None, "", msg.header.frame_id, stamp, 0.0, compressed=(msg.format, msg.data),
                            log_ns=item.log_ns)
        try:
            array, encoding = core.decode_image(msg, role, max_pixels)
        except ImageConversionError as exc:
            reason = core.classify_error(str(exc))
            counted.reject(reason)
            self.warn(f"{counted.topic}: frames skipped [{reason}]: {exc}")
            return None
        counted.decoded += 1
        return BagFrame(array, encoding, msg.header.frame_id, stamp, 0.0, log_ns=item.log_ns)

    @staticmethod
    def _thermal_on_rgb(cfg: core.NodeConfig, thermal_unit: np.ndarray, rgb_hw) -> np.ndarray:
        """The normalised thermal frame on the RGB grid (as the engine registers it), uint8."""
        h, w = (int(v) for v in rgb_hw)
        warped = cfg.registration.warp_thermal(thermal_unit, (w, h))
        return np.clip(warped * 255.0 + 0.5, 0, 255).astype(np.uint8)

    def _segmentation_lut(self, reader: BagReader, seg_names) -> np.ndarray:
        lut, missing = segmentation_lut(reader, seg_names, IGNORE)
        if missing:
            self.warn(f"segmentation ground-truth classes not in the model (ignored): {missing}")
        return lut


# ---------------------------------------------------------------------------------------------- main
def evaluate_bag(bag, out="bag_eval", **kwargs) -> dict:
    """Python entry point: ``evaluate_bag(path, out=dir, model=..., params={...})`` -> the metrics dict."""
    return BagEvaluator(EvalOptions(bag=str(bag), out=str(out), **kwargs)).run()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fusion-eval-bag",
        description="Replay a rosbag2 through the fusion node's pairing, pre/post-processing and engine; write "
                    "metrics.json, an annotated mcap bag and report.md with pictures.")
    p.add_argument("bag", help="rosbag2 folder (or one .mcap / .db3 file)")
    p.add_argument("--thermal-topic", default=DEFAULT_THERMAL_TOPIC)
    p.add_argument("--rgb-topic", default=DEFAULT_RGB_TOPIC)
    p.add_argument("--model", help="model (.pt), ONNX export or TensorRT engine; default: the node's model_path "
                   "parameter, else the bundled model")
    p.add_argument("--backend", choices=core.BACKENDS, help="default: the node's backend parameter (auto)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"))
    gt = p.add_mutually_exclusive_group()
    gt.add_argument("--gt-detections", metavar="TOPIC", help=f"Detection2DArray ground truth (default: "
                    f"{DEFAULT_GT_DETECTIONS} when present)")
    gt.add_argument("--gt-file", metavar="COCO_JSON", help="COCO ground truth whose images carry stamp_ns")
    p.add_argument("--gt-segmentation", metavar="TOPIC", help=f"mono8 label images (default: "
                   f"{DEFAULT_GT_SEGMENTATION} when present)")
    p.add_argument("--no-gt", action="store_true", help="ignore ground truth even if the bag has it")
    p.add_argument("--out", default="bag_eval", help="output folder (default ./bag_eval)")
    p.add_argument("--overwrite", action="store_true", help="replace the results of a previous run in --out")
    p.add_argument("--max-pairs", type=int, help="stop after this many evaluated pairs")
    p.add_argument("--params-file", help="the node's parameter YAML (e.g. config/fusion.yaml): sync, thermal, "
                   "registration and threshold settings are taken from it")
    p.add_argument("-p", "--param", action="append", type=parse_param, default=[], metavar="NAME=VALUE",
                   help="one node parameter, e.g. -p sync.slop=0.03 -p input_height=256 (repeatable)")
    p.add_argument("--samples", type=int, default=4, help="sample frames in samples.png (default 4)")
    p.add_argument("--fusion-samples", type=int, default=20, help="frames the fusion metrics average (default 20)")
    p.add_argument("--no-output-bag", action="store_true", help="skip the annotated bag")
    p.add_argument("--no-overlay", action="store_true", help="annotated bag without /detections/image")
    p.add_argument("--allow-truncated", action="store_true", help="a bag whose storage fails part-way: evaluate "
                   "what was read before the failure (reported) instead of stopping with an error; an mcap cut "
                   "off mid-recording (no footer) is recovered up to its last complete chunk (reported)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    opts = EvalOptions(
        bag=args.bag, out=args.out, thermal_topic=args.thermal_topic, rgb_topic=args.rgb_topic, model=args.model,
        backend=args.backend, device=args.device, params_file=args.params_file, params=dict(args.param),
        gt_detections=args.gt_detections, gt_file=args.gt_file, gt_segmentation=args.gt_segmentation,
        no_gt=args.no_gt, max_pairs=args.max_pairs, samples=args.samples, fusion_samples=args.fusion_samples,
        write_bag=not args.no_output_bag, overlay=not args.no_overlay, overwrite=args.overwrite,
        allow_truncated=args.allow_truncated, progress=not args.quiet)
    try:
        metrics = BagEvaluator(opts).run()
    except BagError as exc:
        print(f"fusion-eval-bag: error: {exc}", file=sys.stderr)
        return 2
    det = metrics.get("detection") or {}
    seg = metrics.get("segmentation") or {}
    lat = metrics["latency_ms"]["total"]
    print(f"fusion-eval-bag: {metrics['pairs']['processed']} pairs evaluated "
          f"(backend {metrics['model']['backend']}), total latency p50 {lat.get('p50', float('nan')):.1f} ms"
          + (f", mAP50 {det['mAP50']:.3f}, mAP50:95 {det['mAP50_95']:.3f}" if det.get("mAP50") is not None else "")
          + (f", mIoU {seg['mIoU']:.3f}" if seg.get("mIoU") is not None else "")
          + f"; report: {Path(args.out) / 'report.md'}")
    for text in metrics["warnings"]:
        print(f"  warning: {text}", file=sys.stderr)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
