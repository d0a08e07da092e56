"""Offline evaluation of the fused-perception node on a rosbag2 recording.

    fusion-eval-bag BAG [--thermal-topic /thermal/image_raw] [--rgb-topic /rgb/image_raw] [--model PATH]
                    [--backend auto|onnxruntime|torch|tensorrt] [--gt-detections TOPIC | --gt-file coco.json]
                    [--gt-segmentation TOPIC] [--out DIR] [--max-pairs N] [--params-file fusion.yaml] [-p k=v]

The bag is streamed once in log-time order (never loaded whole). Every thermal / RGB message goes through
the node's own input path (fusion_ros/bag/pairing.py over fusion_ros.node_core): ``decode_image`` (encoding check, numpy view),
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
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from .. import node_core as core
from .. import segmentation_labels as seg_labels
from .. import topics
from ..image_conversions import ImageConversionError, image_to_array
from ..node_params import load_node_params, parse_param, registration_overrides
from ..summary import fusion_summary, json_safe as _json_safe, latency_stats as _stats, prepare_output_dir
from .ground_truth import StampMatcher, class_labels, load_coco_ground_truth
from .pairing import PairStreamStats, SyncedPair, synced_pairs
from .reader import (
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


# ------------------------------------------------------------------------------------------ scoring
class _GroundTruth:
    """Detection and segmentation ground truth of one run, matched to the predictions by the RGB stamp."""

    def __init__(self, evaluator: "BagEvaluator", reader: BagReader, det_topic: str | None, seg_topic: str | None,
                 det_names, seg_names):
        opts = evaluator.opts
        self.warn, self.det_topic, self.seg_topic = evaluator.warn, det_topic, seg_topic
        self.det_names, self.seg_names = det_names, seg_names
        self.det_pairs: list[tuple] = []  # (prediction, ground truth) per matched frame
        self.unknown: dict = {}  # ground-truth class -> boxes skipped (not a class of the model)
        self.det_matcher = StampMatcher(lambda stamp, pred, gt: self.det_pairs.append((pred, gt)))
        self.coco, self.coco_seen = None, set()
        if opts.gt_file and not opts.no_gt:
            self.coco, unknown = load_coco_ground_truth(opts.gt_file, det_names)
            for name, n in unknown.items():
                self.unknown[name] = self.unknown.get(name, 0) + n
        self.confusion = self.seg_lut = None
        if seg_topic:
            from ..metrics import ConfusionMatrix

            self.confusion = ConfusionMatrix(len(seg_names), ignore_index=IGNORE)
            self.seg_lut, missing = segmentation_lut(reader, seg_names, IGNORE)
            if missing:
                self.warn(f"segmentation ground-truth classes not in the model (ignored): {missing}")
        self.seg_counts = {"size_mismatch": 0, "unknown_class_pixels": 0, "bad_message": 0}
        self.seg_matcher = StampMatcher(self._match_mask, max_pending=MAX_PENDING_MASKS)

    @property
    def scores_detections(self) -> bool:
        return bool(self.det_topic) or self.coco is not None

    def _match_mask(self, stamp, pred_mask, gt_mask) -> None:
        if gt_mask.shape != pred_mask.shape:
            self.seg_counts["size_mismatch"] += 1
            return
        target = self.seg_lut[gt_mask]
        self.seg_counts["unknown_class_pixels"] += int(np.count_nonzero((target == IGNORE) & (gt_mask != IGNORE)))
        self.confusion.update(pred_mask, target)

    def add_message(self, item) -> None:
        """A ground-truth message of the bag (detections or a label image)."""
        msg = item.msg
        if item.topic == self.det_topic:
            try:
                boxes, names, _ = detections_from_message(msg)
            except Exception as exc:  # a foreign layout: say so once, count
                self.warn(f"{self.det_topic}: cannot read ground truth ({exc})")
                return
            keep, labels = class_labels(names, self.det_names, unknown=self.unknown)
            gt = (boxes[keep].reshape(-1, 4), np.asarray(labels, np.int64))
            self.det_matcher.add_gt(stamp_of(msg.header), gt, item.log_ns)
            return
        try:
            mask = image_to_array(msg)
            if mask.dtype != np.uint8 or mask.ndim != 2:
                raise ImageConversionError(f"expected a mono8 label image, got {msg.encoding}")
        except ImageConversionError as exc:
            self.seg_counts["bad_message"] += 1
            self.warn(f"{self.seg_topic}: ground-truth mask skipped ({exc})")
            return
        self.seg_matcher.add_gt(stamp_of(msg.header), np.array(mask), item.log_ns)

    def add_prediction(self, stamp: int, log_ns: int, detections, segmentation) -> None:
        pred = (np.asarray(detections.boxes, np.float64).reshape(-1, 4),
                np.asarray(detections.scores, np.float64), np.asarray(detections.labels, np.int64))
        if self.det_topic:
            self.det_matcher.add_pred(stamp, pred, log_ns)
        elif self.coco is not None:
            if stamp in self.coco:
                self.det_pairs.append((pred, self.coco[stamp]))
                self.coco_seen.add(stamp)
            else:
                self.det_matcher.pred_unmatched += 1
        if self.confusion is not None:
            self.seg_matcher.add_pred(stamp, segmentation, log_ns)

    def finish(self) -> None:
        self.det_matcher.finish()
        self.seg_matcher.finish()

    def detection_metrics(self, max_detections: int):
        """(metrics.json's "detection" entry, the DetectionReport or None)."""
        matched = self.det_matcher.summary()
        if self.coco is not None:
            matched["frames_matched"] = len(self.det_pairs)
            matched["gt_frames_without_processed_pair"] = len(set(self.coco) - self.coco_seen)
        det = {**matched, "unknown_gt_classes": self.unknown}
        if self.unknown:
            self.warn(f"ground-truth classes the model does not have were skipped: {self.unknown}")
        report = None
        try:
            from ..metrics import evaluate_detections

            report = evaluate_detections([p for p, _ in self.det_pairs], [g for _, g in self.det_pairs],
                                         self.det_names, max_detections=max_detections)
            det.update(report.to_dict())
        except ValueError as exc:
            det["skipped"] = str(exc)
            self.warn(f"mAP not computed: {exc}")
        return det, report

    def segmentation_metrics(self) -> dict:
        counts = self.seg_counts
        if counts["size_mismatch"]:
            self.warn(f"{counts['size_mismatch']} ground-truth masks differ in size from the RGB frame: skipped")
        if counts["unknown_class_pixels"]:
            self.warn(f"{counts['unknown_class_pixels']} ground-truth mask pixels carry class ids the model "
                      "does not have: ignored in mIoU")
        iou = self.confusion.iou_per_class()
        return {"frames": self.seg_matcher.matched - counts["size_mismatch"], **self.seg_matcher.summary(),
                "mIoU": self.confusion.miou(), "pixel_accuracy": self.confusion.pixel_accuracy(),
                "iou_per_class": {n: float(v) for n, v in zip(self.seg_names, iou)}, "skipped": counts}


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
        try:
            cfg = load_node_params(opts.params_file, opts.params, opts.model, opts.backend, opts.device)
        except core.ParamError as exc:
            raise BagError(str(exc)) from None
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

    def _ground_truth_topics(self, reader: BagReader) -> tuple[str | None, str | None]:
        """(detections topic, segmentation topic): the ones asked for (required), else the defaults the bag has."""
        opts = self.opts
        if opts.no_gt:
            return None, None
        det = seg = None
        if opts.gt_detections:
            reader.require(opts.gt_detections, (DETECTION2D_ARRAY,), "ground-truth detections")
            det = opts.gt_detections
        elif not opts.gt_file and DEFAULT_GT_DETECTIONS in reader.topics \
                and reader.topics[DEFAULT_GT_DETECTIONS].msgtype == DETECTION2D_ARRAY:
            det = DEFAULT_GT_DETECTIONS
        if opts.gt_segmentation:
            reader.require(opts.gt_segmentation, (IMAGE,), "ground-truth segmentation")
            seg = opts.gt_segmentation
        elif DEFAULT_GT_SEGMENTATION in reader.topics and reader.topics[DEFAULT_GT_SEGMENTATION].msgtype == IMAGE:
            seg = DEFAULT_GT_SEGMENTATION
        return det, seg

    def _output_bag(self, out: Path, model_path: Path) -> BagWriter | None:
        if not self.opts.write_bag:
            return None
        engine = self.engine
        writer = BagWriter(out / OUTPUT_BAG, storage="mcap", custom_data={
            "fusion_ros.source_bag": str(Path(self.opts.bag).resolve()),
            "fusion_ros.model": str(model_path), "fusion_ros.backend": engine.backend,
            "fusion_ros.detection_classes": json.dumps(self.det_names),
            "fusion_ros.segmentation_classes": json.dumps(self.seg_names)})
        for key, msgtype in (("fused", IMAGE), ("detections", DETECTION2D_ARRAY), ("mask", IMAGE)):
            if key != "mask" or self.segmentation_trained:
                writer.add_topic(OUTPUT_TOPICS[key], msgtype)
        if self.opts.overlay:
            writer.add_topic(OUTPUT_TOPICS["overlay"], IMAGE)
        return writer

    def _run(self, reader: BagReader, cfg: core.NodeConfig) -> dict:
        opts = self.opts
        if reader.message_count == 0:
            raise BagError(f"{reader.path} is empty: no messages (topics: {reader.describe_topics()})")
        inputs = {THERMAL: reader.require(opts.thermal_topic, IMAGE_TYPES, "thermal"),
                  RGB: reader.require(opts.rgb_topic, IMAGE_TYPES, "RGB")}
        if opts.thermal_topic == opts.rgb_topic:
            raise BagError(f"thermal and RGB topic are the same ('{opts.thermal_topic}')")
        gt_det_topic, gt_seg_topic = self._ground_truth_topics(reader)
        gt_topics = [t for t in (gt_det_topic, gt_seg_topic) if t]
        ignored = reader.ignored_topics([opts.thermal_topic, opts.rgb_topic, *gt_topics])
        for name, info in ignored.items():
            if "unknown" in info["reason"]:
                self.warn(f"topic {name} ({info['type']}, {info['count']} msgs) ignored: {info['reason']}")

        out = self._prepare_out()
        from ..checkpoint import DEFAULT_MODEL
        from ..classes import load_classes
        from ..engine import EngineError, create_engine

        model_path = Path(cfg["model_path"]) if cfg["model_path"] else DEFAULT_MODEL
        try:
            classes = load_classes(cfg["classes_file"] or None)
            self.engine = create_engine(model_path, backend=cfg["backend"], device=cfg.device,
                                        **core.engine_options(cfg))
        except (EngineError, ValueError, OSError, ImportError, RuntimeError) as exc:
            raise BagError(f"cannot load the engine: {exc}") from None
        engine = self.engine
        self.cfg = cfg
        self.det_names, self.seg_names = tuple(engine.det_classes), tuple(engine.seg_classes)
        self.det_colors = core.class_colors(self.det_names, classes.detection)
        self.seg_colors = core.class_colors(self.seg_names, classes.segmentation)
        # a head that learnt from no labels: its masks are neither drawn, written nor scored (nor computed)
        self.segmentation_trained = seg_labels.trained(engine.info.segmentation_labels)
        if not self.segmentation_trained and gt_seg_topic:
            gt_topics.remove(gt_seg_topic)
            gt_seg_topic = None
        self.truth = _GroundTruth(self, reader, gt_det_topic, gt_seg_topic, self.det_names, self.seg_names)
        self.writer = self._output_bag(out, model_path)
        self.pair_counts = {"paired": 0, "processed": 0, "rejected": {}, "engine_failures": 0, "sync_resets": 0,
                            "stopped_at_max_pairs": False}
        self.engine_rejected = 0  # pairs the engine refused as input (counted against the thermal input)
        self.skews_ms: list[float] = []
        self.last_engine_error = ""

        est_pairs = min(inputs[THERMAL].count, inputs[RGB].count)
        if opts.max_pairs:
            est_pairs = min(est_pairs, opts.max_pairs)
        # sample frames spread over the bag (up to 90 % of the expected pairs: drops make the end uncertain)
        self.sample_at = sorted({int(round(v)) for v in np.linspace(0, 0.9 * max(est_pairs - 1, 0), opts.samples)}) \
            if opts.samples > 0 else []
        self.fusion_every = max(1, est_pairs // max(opts.fusion_samples, 1))
        self.samples: list[dict] = []
        self.fusion_rows: list[dict] = []

        # ----------------------------------------------------------------------------- the stream
        from ..progress import progress

        stats = PairStreamStats()
        stream = synced_pairs(reader, cfg, opts.thermal_topic, opts.rgb_topic, engine.info.thermal_range, gt_topics,
                              stats, self.warn)
        bar = progress(total=sum(reader.topics[t].count for t in (opts.thermal_topic, opts.rgb_topic, *gt_topics)),
                   desc=f"eval {Path(opts.bag).name}", unit="msg", disable=not opts.progress)
        read_error = None
        gt_read = 0
        started = time.perf_counter()
        try:
            while True:
                try:
                    item = next(stream, None)
                except BagError as exc:
                    if not opts.allow_truncated:
                        raise BagError(f"{exc} (pass --allow-truncated to evaluate what was read before it)") from None
                    read_error = str(exc)
                    self.warn(f"reading stopped early: {exc}")
                    break
                if item is None:
                    break
                if not isinstance(item, SyncedPair):
                    gt_read += 1
                    self.truth.add_message(item)
                else:
                    self._evaluate_pair(item, reader.start_ns)
                    if opts.max_pairs and self.pair_counts["processed"] >= opts.max_pairs:
                        self.pair_counts["stopped_at_max_pairs"] = True
                        break
                bar.update(gt_read + sum(stats.messages) - bar.n)
        finally:
            stream.close()
            bar.close()
            if self.writer is not None:
                self.writer.close()
        wall_s = time.perf_counter() - started
        self.timings["read"], self.timings["decode"] = stats.read_ms, stats.decode_ms
        self.pair_counts["paired"] = stats.pairs_formed
        self.pair_counts["sync_resets"] = stats.sync_resets
        for reason, n in stats.pair_rejected.items():
            self.pair_counts["rejected"][reason] = self.pair_counts["rejected"].get(reason, 0) + n
        self._check_counts(reader, stats, read_error)
        self.truth.finish()
        engine.close()
        if self.pair_counts["processed"] == 0:
            details = "; ".join(f"{topic}: {stats.messages[i]} msgs, rejected {stats.rejected_by_input[i] or 0}"
                                for i, topic in ((THERMAL, opts.thermal_topic), (RGB, opts.rgb_topic)))
            extra = f"; last engine error: {self.last_engine_error}" if self.last_engine_error else ""
            raise BagError(f"no thermal/RGB pair could be evaluated in {reader.path} ({stats.pairs_formed} pairs "
                           f"formed; {details}; sync dropped {list(stats.synchronizer.stats.dropped)}){extra}")
        if self.pair_counts["engine_failures"]:
            self.warn(f"{self.pair_counts['engine_failures']} engine failures (last: {self.last_engine_error})")
        metrics = self._metrics(reader, stats, inputs, model_path, wall_s, ignored, read_error)
        return self._write_results(metrics, out)

    def _check_counts(self, reader: BagReader, stats: PairStreamStats, read_error: str | None) -> None:
        """A bag read to its end whose metadata lists more messages than could be read is damaged: say so."""
        self.count_mismatch = {}
        if self.pair_counts["stopped_at_max_pairs"] or read_error is not None:
            return
        for index, topic in ((THERMAL, self.opts.thermal_topic), (RGB, self.opts.rgb_topic)):
            listed, seen = reader.topics[topic].count, stats.messages[index]
            if seen != listed:
                self.count_mismatch[topic] = {"metadata": listed, "read": seen}
                self.warn(f"{topic}: the bag's metadata lists {listed} messages but {seen} could be read: the "
                          "storage file is damaged (messages lost)")

    # ------------------------------------------------------------------------------------ one pair
    def _evaluate_pair(self, pair: SyncedPair, start_ns: int) -> None:
        """Engine, annotated-bag outputs, timings and scores of one prepared pair, as the node runs it."""
        from ..engine import InputError

        self.skews_ms.append(abs(pair.thermal_frame.stamp_ns - pair.stamp_ns) * 1e-6)
        t1 = time.perf_counter()
        try:
            result = self.engine.infer(pair.thermal, pair.rgb, segmentation=self.segmentation_trained)
        except InputError as exc:
            self.engine_rejected += 1
            self.pair_counts["rejected"]["engine_input"] = self.pair_counts["rejected"].get("engine_input", 0) + 1
            self.warn(f"pairs rejected by the engine: {exc}")
            return
        except Exception as exc:  # the node counts and continues; so do we
            self.pair_counts["engine_failures"] += 1
            self.last_engine_error = f"{type(exc).__name__}: {exc}"
            return
        t2 = time.perf_counter()
        index = self.pair_counts["processed"]
        self.pair_counts["processed"] += 1
        fused_bgr = cv2.cvtColor(result.fused, cv2.COLOR_RGB2BGR)
        overlay = None
        if self.writer is not None or index in self.sample_at:
            overlay = core.render_detections(fused_bgr, result.detections, self.det_names, self.det_colors,
                                             result.frame_size)
        if self.writer is not None:
            self._write_outputs(pair, result, fused_bgr, overlay)
        t3 = time.perf_counter()
        for key in ("pre", "infer", "post"):
            self.timings[f"engine.{key}"].append(float(result.timings.get(key, float("nan"))))
        self.timings["prepare"].append(pair.prepare_ms)
        self.timings["engine"].append((t2 - t1) * 1e3)
        self.timings["outputs"].append((t3 - t2) * 1e3)
        self.timings["total"].append(pair.prepare_ms + (t3 - t1) * 1e3 + pair.thermal_frame.decode_ms
                                     + pair.rgb_frame.decode_ms)
        self.truth.add_prediction(pair.stamp_ns, pair.log_ns, result.detections, result.segmentation)
        self._keep_samples(index, pair, result, fused_bgr, overlay, start_ns)

    def _write_outputs(self, pair: SyncedPair, result, fused_bgr, overlay) -> None:
        """The node's published topics for this pair into the annotated bag, at the RGB frame's log time."""
        stamp, log_ns = pair.stamp_ns, pair.log_ns
        frame_id = pair.rgb_frame.frame_id or self.cfg["default_frame_id"]
        dets, names = result.detections, self.det_names
        labels = [names[int(k)] if 0 <= int(k) < len(names) else str(int(k)) for k in dets.labels]
        write = self.writer.write
        write(OUTPUT_TOPICS["fused"], log_ns, image_message(fused_bgr, "bgr8", stamp, frame_id))
        write(OUTPUT_TOPICS["detections"], log_ns, detections_message(dets.boxes, dets.scores, labels, stamp, frame_id))
        if result.segmentation is not None:
            write(OUTPUT_TOPICS["mask"], log_ns, image_message(result.segmentation, "mono8", stamp, frame_id))
        if self.opts.overlay:
            write(OUTPUT_TOPICS["overlay"], log_ns, image_message(overlay, "bgr8", stamp, frame_id))

    def _keep_samples(self, index: int, pair: SyncedPair, result, fused_bgr, overlay, start_ns: int) -> None:
        """Fusion metrics on every ``fusion_every``-th pair and the report's sample frames."""
        scored = index % self.fusion_every == 0 and len(self.fusion_rows) < self.opts.fusion_samples
        sampled = index in self.sample_at
        if not (scored or sampled):
            return
        rgb8 = pair.rgb
        ir_view = self._thermal_on_rgb(self.cfg, pair.thermal, rgb8.shape[:2])
        if scored:
            from ..metrics import fusion_metrics

            try:
                self.fusion_rows.append(fusion_metrics(cv2.cvtColor(result.fused, cv2.COLOR_RGB2GRAY), ir_view,
                                                       cv2.cvtColor(rgb8, cv2.COLOR_RGB2GRAY)))
            except ValueError as exc:
                self.warn(f"fusion metrics skipped: {exc}")
        if sampled:
            self.samples.append({
                "stamp_ns": pair.stamp_ns, "t_s": (pair.stamp_ns - start_ns) * 1e-9, "ir": ir_view,
                "rgb": cv2.cvtColor(rgb8, cv2.COLOR_RGB2BGR), "fused": fused_bgr, "detections": overlay,
                "segmentation": None if result.segmentation is None
                else core.colorize_mask(result.segmentation, self.seg_colors),
                "num_detections": len(result.detections)})

    @staticmethod
    def _thermal_on_rgb(cfg: core.NodeConfig, thermal_unit: np.ndarray, rgb_hw) -> np.ndarray:
        """The normalised thermal frame on the RGB grid (as the engine registers it), uint8."""
        h, w = (int(v) for v in rgb_hw)
        warped = cfg.registration.warp_thermal(thermal_unit, (w, h))
        return np.clip(warped * 255.0 + 0.5, 0, 255).astype(np.uint8)

    # ------------------------------------------------------------------------------------ results
    def _inputs(self, reader: BagReader, stats: PairStreamStats, inputs: dict) -> dict:
        """metrics.json's per-input counts: read, decoded, paired, rejected (by reason) and dropped by the sync."""
        sync_stats, pending = stats.synchronizer.stats, stats.synchronizer.pending()
        out = {}
        for index, name, topic in ((THERMAL, "thermal", self.opts.thermal_topic), (RGB, "rgb", self.opts.rgb_topic)):
            dropped = {"sync_unpaired": int(sync_stats.dropped[index]),
                       "out_of_order": int(sync_stats.out_of_order[index]),
                       "duplicate": int(sync_stats.duplicates[index]), "pending_at_end": int(pending[index])}
            rejected = {k: v for k, v in stats.rejected_by_input[index].items() if k not in ("out_of_order", "duplicate")}
            if index == THERMAL and self.engine_rejected:
                rejected["engine_input"] = self.engine_rejected
            out[name] = {
                "topic": topic, "type": inputs[index].msgtype, "messages_in_bag": reader.topics[topic].count,
                "seen": stats.messages[index], "decoded": stats.decoded[index], "paired": self.pair_counts["processed"],
                "rejected": rejected, "dropped": dropped,
                "dropped_total": sum(dropped.values()) + sum(rejected.values()),
            }
        return out

    def _metrics(self, reader: BagReader, stats: PairStreamStats, inputs: dict, model_path: Path, wall_s: float,
                 ignored: dict, read_error: str | None) -> dict:
        cfg, engine, truth, processed = self.cfg, self.engine, self.truth, self.pair_counts["processed"]
        rows = self.fusion_rows
        metrics = {
            "bag": {"path": str(self.recovery.source if self.recovery else reader.path), "storage": reader.storage,
                    "duration_s": reader.duration_s, "message_count": reader.message_count,
                    "topics": {t.name: {"type": t.msgtype, "count": t.count} for t in reader.topics.values()}},
            "model": {"path": str(model_path), "backend": engine.backend, "input_size": list(engine.input_size),
                      "det_classes": list(self.det_names), "seg_classes": list(self.seg_names),
                      "segmentation_labels": engine.info.segmentation_labels},
            "config": {k: cfg[k] for k in ("sync.slop", "sync.queue_size", "sync.inter_message_lower_bound",
                                           "sync.reset_on_jump_back", "thermal.mode", "registration.mode",
                                           "score_threshold", "nms_iou", "max_detections")},
            "inputs": self._inputs(reader, stats, inputs),
            "pairs": self.pair_counts,
            "sync_skew_ms": _stats(self.skews_ms),
            "latency_ms": {k: _stats(v) for k, v in self.timings.items()},
            "throughput": {
                "wall_s": wall_s, "pairs_per_s": processed / wall_s if wall_s > 0 else None,
                "bag_pairs_per_s": processed / reader.duration_s if reader.duration_s else None},
            "fusion_metrics": fusion_summary(rows),
            "detection": None,
            "segmentation": None,
            "ground_truth": {"detections": truth.det_topic or (self.opts.gt_file if truth.coco is not None else None),
                             "segmentation": truth.seg_topic},
            "ignored_topics": ignored,
            "read_error": read_error,
            "recovered": None if self.recovery is None else {
                "source": str(self.recovery.source), "source_bytes": self.recovery.source_bytes,
                "kept_bytes": self.recovery.kept_bytes, "chunks": self.recovery.chunks,
                "note": self.recovery.describe()},
            "count_mismatch": self.count_mismatch,
            "warnings": self.warnings,
        }
        self.report = None
        if truth.scores_detections:
            metrics["detection"], self.report = truth.detection_metrics(max(cfg["max_detections"], 1))
        if truth.confusion is not None:
            metrics["segmentation"] = truth.segmentation_metrics()
        elif not self.segmentation_trained:
            metrics["segmentation"] = {"not_shown": seg_labels.not_shown_reason(engine.info.segmentation_labels)}
        if self.writer is not None:
            metrics["outputs"] = {"bag": str(Path(self.opts.out) / OUTPUT_BAG),
                                  "topics": {t: self.writer.counts.get(t, 0) for t in OUTPUT_TOPICS.values()
                                             if t in self.writer.counts}}
        return _json_safe(metrics)

    def _write_results(self, metrics: dict, out: Path) -> dict:
        """metrics.json, report.md and its pictures."""
        from . import report as report_mod

        pictures = {}
        if self.samples:
            pictures["samples"] = report_mod.save_sample_grid(self.samples, out / "samples.png",
                                                              report_mod.sample_columns(self.segmentation_trained))
        if self.report is not None:
            from ..metrics import plot_pr_curves

            pictures["pr_curve"] = plot_pr_curves(self.report, out / "pr_curve.png")
        if self.timings["total"]:
            pictures["latency"] = report_mod.save_latency_histogram(self.timings, out / "latency.png")
        metrics["pictures"] = {k: str(Path(v).name) for k, v in pictures.items()}
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=False))
        report_mod.write_report(metrics, out / "report.md")
        return metrics


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
    p.add_argument("--registration", metavar="FILE", help="the registration.* parameters of this params file "
                   "(fusion-calibrate's output) over --params-file's; -p still wins")
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
    params = dict(args.param)
    if args.registration:
        try:
            params = {**registration_overrides(args.registration), **params}
        except core.ParamError as exc:
            print(f"fusion-eval-bag: error: {exc}", file=sys.stderr)
            return 2
    opts = EvalOptions(
        bag=args.bag, out=args.out, thermal_topic=args.thermal_topic, rgb_topic=args.rgb_topic, model=args.model,
        backend=args.backend, device=args.device, params_file=args.params_file, params=params,
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
