"""Evaluate a model on a folder of labelled, registered thermal/visible pairs (e.g. ../shared/data/msrs_det).

    fusion-eval-pairs DIR [--model PATH] [--backend auto|onnxruntime|torch|tensorrt] [--device auto|cpu|cuda]
                      [--labels auto|yolo|voc|coco] [--label-file COCO_JSON] [--variant NAME]
                      [--yolo-classes a,b,c] [--class-map RAW=NAME ...] [--unknown-classes error|ignore]
                      [--missing-labels error|empty] [--unpaired error|skip] [--invalid-boxes drop|error]
                      [--split all|train|heldout|val] [--block 16] [--gap 1] [--val-fraction 0.2]
                      [--heldout-fraction 0.1] [--subset NAME=REGEX ...] [--limit N]
                      [--score-threshold 0.05] [--default-threshold T] [--input-size HxW] [--threads N] [--samples 4]
                      [--error-samples 12] [--fusion-samples 10] [--out DIR] [--overwrite] [--quiet]

The folder is read by fusion_ros.labelled_pairs (layouts, label formats, class mapping and box checks
there). Class names are mapped into the model's own class list (``engine.info.det_classes``), so labels
named like the model's classes need no options; ``--class-map People=person`` renames, ``--class-map Lamp=``
drops. ``--split`` picks the pairs: ``all`` (default) or the train / heldout / val part of the contiguous
block split (``block_split``; the same options give the same pairs as the trainer's ``kind: pairs``).
``--subset day='D$'`` (repeatable) adds metrics for the pairs whose name matches the regex.

Every pair goes through the engine as the node runs it (``create_engine`` + ``Engine.infer``: the same
pre-processing, network and NMS); IR and visible images are read as they are on disk (8-bit counts, or
16-bit with the model's thermal range; registered pairs, no warp). A pair the node would reject (IR and
visible aspect ratios further apart than its registration.max_aspect_mismatch) or an unreadable image is
counted as failed, named in metrics.json and in a warning, and not scored.

Scoring: detections are kept down to ``--score-threshold`` (0.05, as the trainer's validation) for COCO
mAP@0.5 and @0.5:0.95 (fusion_ros.metrics.evaluate_detections, at most the node's max_detections per
image); separately, the operating point at the node's default ``score_threshold`` (``--default-threshold``
overrides it): boxes per labelled object, precision and recall at IoU 0.5 (greedy, score-ordered,
per class). NMS is greedy in score order, so the boxes at or above the default threshold are the ones the
node would output at that threshold (unless the per-image caps bind).

Outputs in --out (default ./pairs_eval):
  metrics.json   dataset (format, classes, boxes, split, dropped boxes), model, counts, latency p50/p95/p99
                 per stage (read, engine.pre/infer/post from the Perception timings, engine, total), mAP
                 overall and per class, the operating point, the same per subset, the errors at the operating
                 point (counted by kind, the first 200 of each listed with pair and box), fusion metrics (mean
                 over a sample of pairs), warnings
  errors.png     what went wrong at the operating point: the most confident false positives and missed labels
                 on both cameras, each with its kind (fusion_ros.detection_errors; counted and listed in metrics.json)
  report.md      the numbers plus samples.png (IR | RGB with labels | fused | detections | segmentation, the
                 last only for a segmentation head trained on labels: fusion_ros.segmentation_labels),
                 pr_curve.png and latency.png
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

from . import segmentation_labels as seg_labels
from .detection_errors import MATCH_IOU, detection_errors, error_tile, match_at_threshold, save_gallery
from .labelled_pairs import (
    LabelledPairsError,
    block_split,
    load_pair_images,
    parse_subset,
    read_labelled_pairs,
    subsets as match_subsets,
)
from .node_params import load_node_params, registration_overrides
from .registration import Registration
from .summary import fmt_num as _num, fusion_summary, fusion_table, json_safe as _json_safe, latency_stats as _stats
from .summary import latency_table, prepare_output_dir

SPLITS = ("all", "train", "heldout", "val")
OUTPUT_FILES = ("metrics.json", "report.md", "samples.png", "errors.png", "pr_curve.png", "latency.png")
LISTED_ERRORS = 200  # errors of each kind listed in metrics.json (all are counted)
SAMPLE_COLUMNS = (("ir", "IR"), ("rgb", "RGB + labels"), ("fused", "fused"), ("detections", "detections"),
                  ("segmentation", "segmentation"))
LABEL_COLOR = (0, 255, 0)  # BGR: ground-truth boxes in samples.png


class PairsEvalError(ValueError):
    """A folder, model or option that stops the evaluation (the message says what to change)."""


@dataclass
class PairsEvalOptions:
    root: str
    out: str = "pairs_eval"
    model: str | None = None
    backend: str = "auto"
    device: str | None = None
    labels: str = "auto"
    label_file: str | None = None
    variant: str | None = None
    yolo_classes: list | None = None
    class_map: dict = field(default_factory=dict)
    unknown_classes: str = "error"
    missing_labels: str = "error"
    unpaired: str = "error"
    invalid_boxes: str = "drop"
    split: str = "all"
    block: int = 16
    gap: int = 1
    val_fraction: float = 0.2
    heldout_fraction: float = 0.1
    subsets: dict = field(default_factory=dict)  # name -> regex
    limit: int | None = None
    score_threshold: float = 0.05  # mAP
    default_threshold: float | None = None  # operating point; None: the node's score_threshold default
    input_size: tuple | None = None  # (height, width) the network runs at; None: the model's own
    threads: int = 0
    registration: str | None = None  # params file whose registration.* maps the ir/ frames onto vi/
    samples: int = 4
    error_samples: int = 12  # of each: the most confident false positives, missed labels spread over the pairs
    fusion_samples: int = 10
    overwrite: bool = False
    progress: bool = True


# ------------------------------------------------------------------------------------------- metrics
def operating_point(predictions, ground_truth, class_names, threshold: float, iou: float = MATCH_IOU) -> dict:
    """Boxes at or above ``threshold`` against the labels: per class and overall, boxes, labelled objects,
    boxes per object, true positives (``detection_errors.match_at_threshold``: greedy, score-ordered, one
    label per box, IoU >= ``iou``), precision and recall. predictions[i] = (boxes, scores, labels),
    ground_truth[i] = (boxes, labels)."""
    k = len(class_names)
    boxes_n, gt_n, tp_n = np.zeros(k, np.int64), np.zeros(k, np.int64), np.zeros(k, np.int64)
    for prediction, truth in zip(predictions, ground_truth):
        labels, truth_labels = np.asarray(prediction[2], np.int64), np.asarray(truth[1], np.int64)
        match = match_at_threshold(prediction, truth, threshold, iou)
        np.add.at(boxes_n, labels[match.kept], 1)
        np.add.at(gt_n, truth_labels, 1)
        np.add.at(tp_n, truth_labels[match.matched], 1)

    def entry(boxes: int, gt: int, tp: int) -> dict:
        return {"boxes": int(boxes), "labelled": int(gt), "true_positives": int(tp),
                "boxes_per_object": boxes / gt if gt else None, "precision": tp / boxes if boxes else None,
                "recall": tp / gt if gt else None}

    return {"score_threshold": float(threshold), "iou": iou,
            **entry(boxes_n.sum(), gt_n.sum(), tp_n.sum()),
            "per_class": {n: entry(boxes_n[c], gt_n[c], tp_n[c]) for c, n in enumerate(class_names)}}


def detection_metrics(predictions, ground_truth, class_names, default_threshold: float, max_detections: int):
    """(dict for metrics.json, DetectionReport or None): COCO mAP (None with ``skipped`` when the labels hold
    no box) plus the operating point at ``default_threshold``."""
    from .metrics import evaluate_detections

    out: dict = {"images": len(ground_truth), "labelled_objects": int(sum(len(g[1]) for g in ground_truth)),
                 "mAP50": None, "mAP50_95": None}
    report = None
    if ground_truth:
        try:
            report = evaluate_detections(predictions, ground_truth, class_names, max_detections=max_detections)
            out.update(report.to_dict())
        except ValueError as exc:
            out["skipped"] = str(exc)
    else:
        out["skipped"] = "no images"
    out["at_default_threshold"] = operating_point(predictions, ground_truth, class_names, default_threshold)
    return out, report


# --------------------------------------------------------------------------------------------- run
def open_engine(model: str | None, backend: str, device: str | None, threads: int, input_size, error: type[Exception],
                **engine_opts):
    """(engine, model path) as the --model / --backend / --device / --threads / --input-size options ask
    (add_engine_arguments); the bundled model by default. A model that cannot be loaded raises ``error``."""
    from .engine import EngineError, create_engine
    from .paths import DEFAULT_MODEL

    model_path = Path(model).expanduser() if model else DEFAULT_MODEL
    if input_size:
        engine_opts["input_size"] = tuple(int(v) for v in input_size)
    if threads > 0:
        engine_opts["num_threads"] = threads
    try:
        engine = create_engine(model_path, backend=backend or "auto", device=device, **engine_opts)
    except (EngineError, ValueError, OSError, ImportError, RuntimeError) as exc:
        raise error(f"cannot load the engine: {exc}") from None
    return engine, model_path


def select_pairs(names: list[str], opts, root: Path, error: type[Exception]) -> tuple[list[str], dict]:
    """(the names of ``opts.split``, what metrics.json says of the split): ``all``, or one part of
    ``block_split`` with ``opts``' block, gap and fractions (add_split_arguments). An empty part or
    impossible block options raise ``error`` naming ``root``."""
    split_info: dict = {"name": opts.split}
    if opts.split == "all":
        return names, split_info
    block = {"val_fraction": opts.val_fraction, "heldout_fraction": opts.heldout_fraction, "block": opts.block,
             "gap": opts.gap}
    try:
        parts = block_split(names, **block)
    except ValueError as exc:
        raise error(f"{root}: {exc}") from None
    split_info.update(block, counts={k: len(v) for k, v in parts.items()})
    if not parts[opts.split]:
        raise error(f"split {opts.split!r} of {root} is empty ({len(names)} pairs)")
    return parts[opts.split], split_info


def spread(names: list[str], limit: int | None) -> list[str]:
    """At most ``limit`` names spread evenly over ``names`` (so every part of the selection is represented)."""
    if not limit or limit >= len(names):
        return names
    idx = np.unique(np.linspace(0, len(names) - 1, limit).round().astype(int))
    return [names[i] for i in idx]


def ir_view(ir: np.ndarray, hw, thermal_range, registration=None) -> np.ndarray:
    """The IR frame as uint8 on the visible grid (for pictures and fusion metrics), registered as the engine
    does (``registration``: a fusion_ros.registration.Registration; None: the frames are registered, resize)."""
    if ir.dtype == np.uint16:
        lo, hi = (float(v) for v in thermal_range)
        ir = np.clip((ir.astype(np.float32) - lo) / max(hi - lo, 1e-6) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    h, w = (int(v) for v in hw)
    return (registration or Registration(None)).warp_thermal(ir, (w, h))


def _draw_labels(image_bgr: np.ndarray, boxes, labels, names) -> np.ndarray:
    out = image_bgr.copy()
    for box, label in zip(boxes, labels):
        x1, y1, x2, y2 = (int(round(float(v))) for v in box)
        cv2.rectangle(out, (x1, y1), (x2, y2), LABEL_COLOR, 2)
        cv2.putText(out, names[int(label)], (x1, max(y1 - 3, 10)), cv2.FONT_HERSHEY_SIMPLEX, 0.4, LABEL_COLOR, 1,
                    cv2.LINE_AA)
    return out


def evaluate_pairs(opts: PairsEvalOptions) -> dict:
    """Run the evaluation described by ``opts``; writes --out and returns the metrics dict."""
    from . import node_core as core

    if opts.split not in SPLITS:
        raise PairsEvalError(f"--split must be one of {', '.join(SPLITS)}, got {opts.split!r}")
    if opts.limit is not None and opts.limit < 1:
        raise PairsEvalError(f"--limit must be >= 1, got {opts.limit}")
    if opts.error_samples < 0:
        raise PairsEvalError(f"--error-samples must be >= 0, got {opts.error_samples}")
    if not 0.0 <= opts.score_threshold <= 1.0:
        raise PairsEvalError(f"--score-threshold must be in [0, 1], got {opts.score_threshold}")
    node = core.validate_params({})  # the node's defaults: threshold, NMS IoU, detections per frame
    default_threshold = float(node["score_threshold"] if opts.default_threshold is None else opts.default_threshold)
    if not 0.0 <= default_threshold <= 1.0:
        raise PairsEvalError(f"--default-threshold must be in [0, 1], got {default_threshold}")
    if opts.score_threshold > default_threshold:
        raise PairsEvalError(f"--score-threshold ({opts.score_threshold}) must not exceed the default threshold "
                             f"({default_threshold}): the operating point is counted from the same detections")
    max_detections = int(node["max_detections"])
    root = Path(opts.root).expanduser()
    if not root.exists():
        raise PairsEvalError(f"{root} does not exist (expected a folder with ir/, vi/ and labels)")

    registration = node  # the node's default registration: identity
    if opts.registration:
        try:
            registration = load_node_params(None, registration_overrides(opts.registration), None, None, None)
        except core.ParamError as exc:
            raise PairsEvalError(f"--registration {opts.registration}: {exc}") from None
    engine, model_path = open_engine(opts.model, opts.backend, opts.device, opts.threads, opts.input_size,
                                     PairsEvalError, registration=registration.registration,
                                     postprocess=replace(node.postprocess, score_threshold=opts.score_threshold))
    try:
        return _evaluate(opts, engine, model_path, root, default_threshold, max_detections, registration)
    finally:
        engine.close()


def _evaluate(opts: PairsEvalOptions, engine, model_path: Path, root: Path, default_threshold: float,
              max_detections: int, registration) -> dict:
    from . import node_core as core
    from .classes import load_classes
    from .engine import Detections, InputError

    det_names = tuple(engine.det_classes)
    seg_names = tuple(engine.seg_classes)
    segmentation_trained = seg_labels.trained(engine.info.segmentation_labels)  # else no panel, no mask computed
    try:
        folder = read_labelled_pairs(
            root, det_names, labels=opts.labels, variant=opts.variant, class_map=opts.class_map,
            unknown=opts.unknown_classes, missing=opts.missing_labels, unpaired=opts.unpaired,
            invalid=opts.invalid_boxes, label_file=opts.label_file, yolo_classes=opts.yolo_classes)
    except LabelledPairsError as exc:
        raise PairsEvalError(str(exc)) from None
    warnings = list(folder.warnings)
    names, split_info = select_pairs(folder.names, opts, root, PairsEvalError)
    selected = spread(names, opts.limit)
    subset_names = match_subsets(selected, opts.subsets)
    for key, members in subset_names.items():
        if not members:
            warnings.append(f"subset {key} ({opts.subsets[key]}) matches none of the {len(selected)} evaluated pairs")
    pairs = folder.select(selected)
    out = prepare_output_dir(Path(opts.out), OUTPUT_FILES, opts.overwrite, PairsEvalError)

    try:
        class_config = load_classes(None)
        det_colors = core.class_colors(det_names, class_config.detection)
        seg_colors = core.class_colors(seg_names, class_config.segmentation)
    except (OSError, ValueError):
        det_colors, seg_colors = core.class_colors(det_names), core.class_colors(seg_names)
    thermal_range = engine.info.thermal_range
    timings: dict[str, list[float]] = {k: [] for k in ("read", "engine.pre", "engine.infer", "engine.post", "engine",
                                                        "total")}
    n = len(pairs)
    sample_at = set(np.linspace(0, n - 1, min(opts.samples, n)).round().astype(int).tolist()) if opts.samples > 0 else set()
    fusion_at = set(np.linspace(0, n - 1, min(opts.fusion_samples, n)).round().astype(int).tolist()) \
        if opts.fusion_samples > 0 else set()
    predictions: dict[str, tuple] = {}
    failed: dict[str, str] = {}
    samples: list[dict] = []
    fusion_rows: list[dict] = []

    from .progress import progress

    started = time.perf_counter()
    for index, pair in enumerate(progress(pairs, desc=f"eval {root.name}", unit="pair", disable=not opts.progress)):
        t0 = time.perf_counter()
        try:
            ir, rgb = load_pair_images(pair)
        except ValueError as exc:
            failed[pair.name] = str(exc)
            continue
        # a pair the node would reject (sizes the registration is not calibrated for; identity registration
        # and another aspect ratio) is counted as failed, not scored stretched
        problem = core.pair_size_problem(registration, ir.shape[:2], rgb.shape[:2])
        if problem:
            failed[pair.name] = f"the node would reject this pair: {problem[2]}"
            continue
        t1 = time.perf_counter()
        try:
            result = engine.infer(ir, rgb, segmentation=segmentation_trained)
        except InputError as exc:
            failed[pair.name] = f"engine input: {exc}"
            continue
        except Exception as exc:  # count and continue, as the node does
            failed[pair.name] = f"{type(exc).__name__}: {exc}"
            continue
        t2 = time.perf_counter()
        dets = result.detections
        predictions[pair.name] = (np.asarray(dets.boxes, np.float64).reshape(-1, 4),
                                  np.asarray(dets.scores, np.float64), np.asarray(dets.labels, np.int64))
        timings["read"].append((t1 - t0) * 1e3)
        for key in ("pre", "infer", "post"):
            timings[f"engine.{key}"].append(float(result.timings.get(key, float("nan"))))
        timings["engine"].append((t2 - t1) * 1e3)
        timings["total"].append((t2 - t0) * 1e3)
        if index in fusion_at or index in sample_at:
            ir_8bit = ir_view(ir, rgb.shape[:2], thermal_range, registration.registration)
        if index in fusion_at:
            from .metrics import fusion_metrics

            try:
                fusion_rows.append(fusion_metrics(cv2.cvtColor(result.fused, cv2.COLOR_RGB2GRAY), ir_8bit,
                                                  cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)))
            except ValueError as exc:
                if f"fusion metrics skipped: {exc}" not in warnings:
                    warnings.append(f"fusion metrics skipped: {exc}")
        if index in sample_at:
            keep = dets.scores >= default_threshold
            shown = Detections(dets.boxes[keep], dets.scores[keep], dets.labels[keep])
            fused_bgr = cv2.cvtColor(result.fused, cv2.COLOR_RGB2BGR)
            samples.append({
                "caption": f"{pair.name}: {len(shown)} detections >= {default_threshold:g}, {len(pair.labels)} labelled",
                "ir": ir_8bit, "rgb": _draw_labels(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), pair.boxes, pair.labels,
                                                  det_names),
                "fused": fused_bgr, "detections": core.render_detections(fused_bgr, shown, det_names, det_colors),
                "segmentation": None if result.segmentation is None else core.colorize_mask(result.segmentation,
                                                                                             seg_colors)})
    wall_s = time.perf_counter() - started
    if failed:
        first = next(iter(failed.items()))
        warnings.append(f"{len(failed)} pairs could not be evaluated (their labels are not scored); first: "
                        f"{first[0]}: {first[1]}")
    if not predictions:
        raise PairsEvalError(f"no pair of {root} could be evaluated ({len(failed)} failed; first: "
                             f"{next(iter(failed.values()), 'none selected')})")

    by_name = {p.name: p for p in pairs}
    done = [name for name in selected if name in predictions]

    def truth(names_):
        return [(by_name[x].boxes.astype(np.float64), by_name[x].labels) for x in names_]

    def score(names_):
        return detection_metrics([predictions[x] for x in names_], truth(names_), det_names, default_threshold,
                                 max_detections)

    detection, report = score(done)
    errors = detection_errors([predictions[x] for x in done], truth(done), done, det_names, default_threshold)
    if detection.get("skipped"):
        warnings.append(f"mAP not computed: {detection['skipped']}")
    subset_metrics = {}
    for key, members in subset_names.items():
        members = [x for x in members if x in predictions]
        entry = {"pattern": opts.subsets[key], "pairs": len(members)}
        if members:
            entry["detection"] = score(members)[0]
        subset_metrics[key] = entry

    counts = folder.counts
    metrics = {
        "dataset": {
            "root": str(root), "format": folder.format, "labels": str(folder.source), "variant": folder.variant,
            "class_map": opts.class_map, "pairs_found": len(folder), "boxes_found": counts["boxes"],
            "boxes_per_class_found": counts["boxes_per_class"],
            "dropped": {k: counts[k] for k in ("invalid_boxes", "unknown_class_boxes", "mapped_away_boxes",
                                               "crowd_boxes", "unpaired_skipped", "orphan_labels")},
            "clipped_boxes": counts["clipped_boxes"], "missing_labels": counts["missing_labels"],
            "split": split_info, "limit": opts.limit,
        },
        "model": {"path": str(model_path), "backend": engine.backend, "input_size": list(engine.input_size),
                  "det_classes": list(det_names), "seg_classes": list(seg_names),
                  "segmentation_labels": engine.info.segmentation_labels,
                  "fallback": list(getattr(engine, "fallback_reasons", []))},
        "config": {"score_threshold_map": opts.score_threshold, "default_score_threshold": default_threshold,
                   "nms_iou": engine.postprocess_config.nms_iou, "max_detections": max_detections},
        "pairs": {"selected": len(selected), "evaluated": len(done), "failed": len(failed),
                  "failed_names": sorted(failed)[:20],
                  "without_labels": int(sum(1 for x in done if not len(by_name[x].labels))),
                  "labelled_objects": int(sum(len(by_name[x].labels) for x in done)),
                  "labelled_per_class": folder.boxes_per_class([by_name[x] for x in done])},
        "latency_ms": {k: _stats(v) for k, v in timings.items()},
        "throughput": {"wall_s": wall_s, "pairs_per_s": len(done) / wall_s if wall_s > 0 else None},
        "detection": detection,
        "errors": {**errors, "false_positives": errors["false_positives"][:LISTED_ERRORS],
                   "missed": errors["missed"][:LISTED_ERRORS]},
        "subsets": subset_metrics,
        "fusion_metrics": fusion_summary(fusion_rows),
        "warnings": warnings,
    }
    metrics = _json_safe(metrics)

    from .bag import report as report_mod

    pictures = {}
    if samples:
        pictures["samples"] = report_mod.save_sample_grid(
            samples, out / "samples.png", columns=report_mod.sample_columns(segmentation_trained, SAMPLE_COLUMNS))
    tiles = _error_tiles(errors, by_name, opts.error_samples, thermal_range, registration.registration)
    if tiles:
        save_gallery(tiles, out / "errors.png")
        pictures["errors"] = out / "errors.png"
    if report is not None:
        from .metrics import plot_pr_curves

        pictures["pr_curve"] = plot_pr_curves(report, out / "pr_curve.png")
    if timings["total"]:
        pictures["latency"] = report_mod.save_latency_histogram(timings, out / "latency.png")
    metrics["pictures"] = {k: Path(v).name for k, v in pictures.items()}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    write_report(metrics, out / "report.md")
    return metrics


def _error_tiles(errors: dict, by_name: dict, count: int, thermal_range, registration) -> list:
    """Gallery tiles: the ``count`` most confident false positives, then ``count`` missed labels spread over
    the pairs; the pairs' images read again (they are not kept during the run)."""
    missed = errors["missed"]
    chosen = errors["false_positives"][:count] + [
        missed[i] for i in sorted(set(np.linspace(0, len(missed) - 1, min(count, len(missed))).round().astype(int)))]
    tiles, images = [], {}
    for entry in chosen:
        pair = by_name[entry["pair"]]
        if entry["pair"] not in images:
            ir, rgb = load_pair_images(pair)
            ir_8bit = ir_view(ir, rgb.shape[:2], thermal_range, registration)
            images[entry["pair"]] = (cv2.cvtColor(ir_8bit, cv2.COLOR_GRAY2BGR) if ir_8bit.ndim == 2 else ir_8bit,
                                     cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        if "score" in entry:
            caption = f"{entry['pair']}: {entry['class']} {entry['score']:.2f}, {entry['kind']}"
        else:
            caption = f"{entry['pair']}: missed {entry['class']}, {entry['kind']}"
        tiles.append(error_tile(*images[entry["pair"]], pair.boxes.tolist(), entry["box"], caption))
    return tiles


# ------------------------------------------------------------------------------------------ report
def write_report(metrics: dict, path: str | Path) -> Path:
    """report.md from the metrics dict, linking the PNGs beside it."""
    path = Path(path)
    m = metrics
    d, det = m["dataset"], m["detection"]
    split = d["split"]
    split_text = "all pairs" if split["name"] == "all" else (
        f"the **{split['name']}** split (blocks of {split['block']}, gap {split['gap']}, val {split['val_fraction']}, "
        f"heldout {split['heldout_fraction']}: {split['counts']})")
    lines = [f"# Labelled-pairs evaluation: {Path(d['root']).name}", "",
             f"- folder: `{d['root']}`, {d['format'].upper()} labels `{d['labels']}`"
             + (f" (variant {d['variant']})" if d.get("variant") else "") + f"; {d['pairs_found']} pairs, "
             f"{d['boxes_found']} boxes ("
             + ", ".join(f"{k} {v}" for k, v in d["boxes_per_class_found"].items() if v) + ")",
             f"- evaluated: **{m['pairs']['evaluated']}** pairs of {split_text}"
             + (f", limited to {d['limit']}" if d.get("limit") else "")
             + f"; {m['pairs']['labelled_objects']} labelled objects; {m['pairs']['failed']} failed",
             f"- model: `{m['model']['path']}` on **{m['model']['backend']}**, network input "
             f"{m['model']['input_size'][1]}x{m['model']['input_size'][0]} (WxH), classes "
             f"{', '.join(m['model']['det_classes'])}"
             + ("" if seg_labels.trained(m["model"]["segmentation_labels"])
                else f"; segmentation not shown: {seg_labels.not_shown_reason(m['model']['segmentation_labels'])}"),
             f"- scoring: detections down to score {m['config']['score_threshold_map']} for mAP (at most "
             f"{m['config']['max_detections']} per image, NMS IoU {m['config']['nms_iou']}); operating point at the "
             f"node's threshold {m['config']['default_score_threshold']}", ""]
    dropped = {k: v for k, v in d["dropped"].items() if v}
    if dropped or d.get("clipped_boxes") or d.get("missing_labels"):
        lines += [f"Label checks: dropped {dropped or 'nothing'}; {d.get('clipped_boxes', 0)} boxes clipped to the "
                  f"image; {d.get('missing_labels', 0)} pairs without labels read as empty.", ""]

    lines += ["## Detection", ""]
    rows = [("all", m["pairs"]["evaluated"], det)] + [
        (k, s["pairs"], s.get("detection")) for k, s in m["subsets"].items()]
    lines += ["| pairs | n | labelled | mAP@0.5 | mAP@0.5:0.95 | boxes / object | precision | recall |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, count, entry in rows:
        if entry is None:
            lines.append(f"| {name} | 0 | 0 | n/a | n/a | n/a | n/a | n/a |")
            continue
        op = entry["at_default_threshold"]
        label = name if name == "all" else f"{name} (`{m['subsets'][name]['pattern']}`)"
        lines.append(f"| {label} | {count} | {entry['labelled_objects']} | {_num(entry['mAP50'])} | "
                     f"{_num(entry['mAP50_95'])} | {_num(op['boxes_per_object'], 2)} | {_num(op['precision'])} | "
                     f"{_num(op['recall'])} |")
    lines += ["", f"boxes / object, precision, recall: detections at score >= {m['config']['default_score_threshold']}, "
              "matched at IoU 0.5.", ""]
    if det.get("per_class"):
        op = det["at_default_threshold"]["per_class"]
        lines += ["| class | AP@0.5 | AP@0.5:0.95 | labelled | boxes / object | precision | recall |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for name, c in det["per_class"].items():
            o = op[name]
            lines.append(f"| {name} | {_num(c['AP50'])} | {_num(c['AP50_95'])} | {c['num_gt']} | "
                         f"{_num(o['boxes_per_object'], 2)} | {_num(o['precision'])} | {_num(o['recall'])} |")
        lines.append("")
    elif det.get("skipped"):
        lines += [f"mAP not computed: {det['skipped']}", ""]
    lines += _error_lines(m)
    if "pr_curve" in m.get("pictures", {}):
        lines += [f"![PR curves]({m['pictures']['pr_curve']})", ""]

    lines += latency_table(m["latency_ms"], "Latency (ms per pair, this machine)")
    lines += ["", "read: both images from disk; engine: `infer()` (pre / infer / post inside); total: both. "
              f"{_num(m['throughput']['pairs_per_s'], 2)} pairs/s overall.", ""]
    if "latency" in m.get("pictures", {}):
        lines += [f"![latency]({m['pictures']['latency']})", ""]

    lines += fusion_table(m["fusion_metrics"], "pairs (fused vs IR and visible luminance)")
    if "samples" in m.get("pictures", {}):
        lines += ["## Sample pairs", "", "Green: labelled boxes; detections at the node's threshold.", "",
                  f"![samples]({m['pictures']['samples']})", ""]
    if m.get("warnings"):
        lines += ["## Warnings", ""] + [f"- {w}" for w in m["warnings"]] + [""]
    path.write_text("\n".join(lines))
    return path


def _error_lines(m: dict) -> list[str]:
    """The errors section: counts by kind (fusion_ros.detection_errors) and the gallery."""
    counts = m["errors"]["counts"]
    kinds = lambda c: ", ".join(f"{k} {v}" for k, v in c.items() if k != "total")  # noqa: E731
    lines = ["## Errors at the operating point", "",
             f"At score >= {m['errors']['score_threshold']:g}, IoU {m['errors']['iou']:g} "
             "(kinds: fusion_ros/detection_errors.py):", "",
             f"- false positives: **{counts['false_positives']['total']}** ({kinds(counts['false_positives'])}); "
             "`background` is a false alarm or an object the labels leave out",
             f"- missed labels: **{counts['missed']['total']}** ({kinds(counts['missed'])})", ""]
    if "errors" in m.get("pictures", {}):
        lines += ["The most confident false positives, then missed labels spread over the pairs: IR | visible, "
                  "labels green, the box in question red.", "", f"![errors]({m['pictures']['errors']})", ""]
    return lines


# -------------------------------------------------------------------------------------------- CLI
def _class_map_item(text: str) -> tuple[str, str | None]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected RAW=NAME (or RAW= to drop), got {text!r}")
    raw, name = (s.strip() for s in text.split("=", 1))
    if not raw:
        raise argparse.ArgumentTypeError(f"empty class name in {text!r}")
    return raw, (name or None)


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH like 512x640, got {text!r}") from None
    return h, w


def _subset_item(text: str) -> tuple[str, str]:
    try:
        return parse_subset(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_engine_arguments(p: argparse.ArgumentParser) -> None:
    """--model, --backend, --device, --input-size, --threads: the options open_engine takes."""
    p.add_argument("--model", help="model (.pt), ONNX export or TensorRT engine; default: the bundled model")
    p.add_argument("--backend", default="auto", choices=("auto", "onnxruntime", "torch", "tensorrt"))
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--input-size", type=_size, metavar="HxW",
                   help="network input size (dynamic models only; default: the model's own, as the node)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for the engine (0: library default)")


def add_split_arguments(p: argparse.ArgumentParser) -> None:
    """--split and the block options, with the trainer's ``kind: pairs`` defaults (the same options give
    the same pairs there)."""
    p.add_argument("--split", choices=SPLITS, default="all",
                   help="all pairs (default) or one part of the contiguous block split")
    p.add_argument("--block", type=int, default=16, help="names per split block (default 16)")
    p.add_argument("--gap", type=int, default=1, help="names left out at split borders (default 1)")
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--heldout-fraction", type=float, default=0.1)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fusion-eval-pairs",
        description="Run a model over a folder of labelled, registered IR/visible pairs; write metrics.json "
                    "(mAP overall, per class and per subset, operating point, latency) and report.md with pictures.")
    p.add_argument("root", metavar="DIR", help="folder with ir/, vi/ and labels (YOLO txt, VOC xml or COCO json)")
    add_engine_arguments(p)
    p.add_argument("--labels", default="auto", choices=("auto", "yolo", "voc", "coco"), help="label format")
    p.add_argument("--label-file", metavar="COCO_JSON", help="COCO json (default: the only one in labels/ or DIR)")
    p.add_argument("--variant", help="labels/<variant>/ subfolder (default: fusion when present, else labels/)")
    p.add_argument("--yolo-classes", metavar="A,B,C", help="YOLO class names by id when there is no classes.txt")
    p.add_argument("--class-map", action="append", type=_class_map_item, default=[], metavar="RAW=NAME",
                   help="rename a label class to a model class (RAW= drops it); repeatable")
    p.add_argument("--unknown-classes", choices=("error", "ignore"), default="error",
                   help="label classes the model does not have: error (default) or drop their boxes")
    p.add_argument("--missing-labels", choices=("error", "empty"), default="error",
                   help="a pair without a label file: error (default) or an image without objects")
    p.add_argument("--unpaired", choices=("error", "skip"), default="error")
    p.add_argument("--invalid-boxes", choices=("drop", "error"), default="drop",
                   help="empty / non-finite / outside-the-image boxes: drop and count (default) or error")
    add_split_arguments(p)
    p.add_argument("--subset", action="append", type=_subset_item, default=[], metavar="NAME=REGEX",
                   help="also score the pairs whose name matches REGEX (re.search), e.g. day='D$'; repeatable")
    p.add_argument("--limit", type=int, help="evaluate N pairs spread evenly over the selection")
    p.add_argument("--score-threshold", type=float, default=0.05,
                   help="lowest detection score kept for mAP (default 0.05, as the trainer's validation)")
    p.add_argument("--default-threshold", type=float,
                   help="operating-point threshold (default: the node's score_threshold default)")
    p.add_argument("--registration", metavar="FILE", help="params file with the registration.* that maps the ir/ "
                   "images onto the vi/ ones (fusion-calibrate's output); default: the pairs are registered")
    p.add_argument("--samples", type=int, default=4, help="pairs in samples.png (default 4)")
    p.add_argument("--error-samples", type=int, default=12,
                   help="most confident false positives and missed labels each in errors.png (default 12; 0: none)")
    p.add_argument("--fusion-samples", type=int, default=10, help="pairs the fusion metrics average (default 10)")
    p.add_argument("--out", default="pairs_eval", help="output folder (default ./pairs_eval)")
    p.add_argument("--overwrite", action="store_true", help="replace the results of a previous run in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def options_from_args(args: argparse.Namespace) -> PairsEvalOptions:
    return PairsEvalOptions(
        root=args.root, out=args.out, model=args.model, backend=args.backend,
        device=None if args.device == "auto" else args.device, labels=args.labels, label_file=args.label_file,
        variant=args.variant,
        yolo_classes=[s.strip() for s in args.yolo_classes.split(",")] if args.yolo_classes else None,
        class_map=dict(args.class_map), unknown_classes=args.unknown_classes, missing_labels=args.missing_labels,
        unpaired=args.unpaired, invalid_boxes=args.invalid_boxes, split=args.split, block=args.block, gap=args.gap,
        val_fraction=args.val_fraction, heldout_fraction=args.heldout_fraction, subsets=dict(args.subset),
        limit=args.limit, score_threshold=args.score_threshold, default_threshold=args.default_threshold,
        input_size=args.input_size, threads=args.threads, registration=args.registration, samples=args.samples,
        error_samples=args.error_samples, fusion_samples=args.fusion_samples,
        overwrite=args.overwrite, progress=not args.quiet)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        metrics = evaluate_pairs(options_from_args(args))
    except (PairsEvalError, LabelledPairsError) as exc:
        print(f"fusion-eval-pairs: error: {exc}", file=sys.stderr)
        return 2
    det = metrics["detection"]
    lat = metrics["latency_ms"]["total"]
    parts = [f"{metrics['pairs']['evaluated']} pairs evaluated (backend {metrics['model']['backend']})",
             f"mAP50 {_num(det['mAP50'])}, mAP50:95 {_num(det['mAP50_95'])}"]
    parts += [f"{k} mAP50 {_num((s.get('detection') or {}).get('mAP50'))}" for k, s in metrics["subsets"].items()]
    parts.append(f"total latency p50 {_num(lat.get('p50'), 1)} ms")
    print("fusion-eval-pairs: " + ", ".join(parts) + f"; report: {Path(args.out) / 'report.md'}")
    for text in metrics["warnings"]:
        print(f"  warning: {text}", file=sys.stderr)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
