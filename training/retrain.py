"""Retrain the deployed model from recorded rosbag2 drives, then show whether the new model is better.

    python -m training.retrain --bags TRAIN_BAG [TRAIN_BAG ...] --heldout-bag HELD_BAG
                               [--config config/retrain_bag.yaml] [--base-model PATH] [--out runs/retrain]
                               [--device cpu|cuda] [--steps N] [--cache-dir DIR] [--rebuild-cache] [--resume]

What it does, in order:
1. Reads the training bags into a ``kind: bag`` dataset (training/bag_datasets.py): pairs formed by the node's
   own synchroniser, thermal normalisation and registration, cached once per bag in our layout (the
   cache folder and when it is rebuilt are documented there), split by time into train / heldout
   (upper level) / val blocks. Labels: ground-truth topics where the bag has them, else pseudo-labels
   of the base model (``data.pseudo_labels``), else none.
2. Trains with the bi-level Trainer (training/train.py) starting from the base model's weights (default
   the bundled model): its architecture, class lists, input size and thermal range are kept, so the
   result drops into the node unchanged. A task with no labels at all (no ground truth, pseudo-labels
   off) gets loss weight 0: the fusion loss still trains, the heads are left as they were.
3. Exports ``model.onnx`` (+ sidecar, parity-checked: training/export.py) and builds ``model.engine``
   with TensorRT where ``tensorrt`` is importable (else it says so: the ONNX is the deployable artifact,
   build the engine on the vehicle with fusion-build-engine).
4. Evaluates the base and the new model on the held-out bag (fusion_ros.bag.evaluate: the node's
   pairing, pre/post-processing and engine; same backend for both) and writes ``comparison.json`` and
   ``comparison.md``: mAP@0.5, mAP@0.5:0.95, mIoU, fusion metrics and latency side by side, and a
   verdict line ("new model better on held-out mAP@0.5 by 0.034 ...").

Outputs in --out: model.pt, model.onnx (+ .onnx.json), model.engine where built, log.jsonl, val.jsonl,
training.png, checkpoint.pt, bag_caches.json (what each bag contributed), eval_base/ and eval_new/
(metrics.json, report.md), comparison.json, comparison.md.

Pseudo-labels and confirmation bias: without ground truth the semantic heads learn from the base
model's own confident outputs. Its mistakes come back as labels and are reinforced (objects it misses
become "background", confident false positives become targets), and a rare class can vanish if a
frequent one dominates. Mitigations: high score thresholds and a per-class cap (``class_balanced``,
``max_per_class``), uncertain segmentation pixels ignored rather than guessed, labels made once by the
frozen base model (never by the model being trained), the label-free fusion loss, and -- the real
safeguard -- the comparison on a held-out recording WITH ground truth before deploying. Label even a
few minutes of your own data when you can; never deploy a pseudo-label retrain on its training loss.
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
from pathlib import Path

import yaml

DEFAULT_CONFIG = "retrain_bag.yaml"
SUMMARY_METRICS = (("mAP50", "mAP@0.5", "detection"), ("mAP50_95", "mAP@0.5:0.95", "detection"),
                   ("mIoU", "mIoU", "segmentation"))


class RetrainError(Exception):
    """Inputs or a stage that cannot go on; the message says what to do."""


# ------------------------------------------------------------------------------------------ set-up
def load_retrain_config(path: str | Path | None) -> dict:
    from fusion_ros.paths import config_path

    path = Path(path) if path else config_path(DEFAULT_CONFIG)
    if not path.is_file():
        raise RetrainError(f"config not found: {path}")
    try:
        cfg = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise RetrainError(f"cannot read config {path}: {exc}") from None
    for section in ("data", "schedule"):
        if not isinstance(cfg.get(section), dict):
            raise RetrainError(f"{path}: missing '{section}:' section")
    if cfg["data"].get("kind", "bag") != "bag":
        raise RetrainError(f"{path}: data.kind must be 'bag' for retraining from bags, got {cfg['data']['kind']!r}")
    cfg["data"]["kind"] = "bag"
    cfg.setdefault("loss", {})
    cfg["_config_path"] = str(path)
    return cfg


def _check_bag(path: Path, topics: dict, role: str) -> dict:
    """Open a bag and require its camera topics now (not after an hour of training); -> its topics."""
    from fusion_ros.bag.reader import IMAGE_TYPES, BagError, BagReader

    if not path.exists():
        raise RetrainError(f"{role} bag not found: {path}")
    try:
        with BagReader(path) as reader:
            if reader.message_count == 0:
                raise RetrainError(f"{role} bag {path} is empty (topics: {reader.describe_topics()})")
            reader.require(topics["thermal"], IMAGE_TYPES, "thermal")
            reader.require(topics["rgb"], IMAGE_TYPES, "RGB")
            return {name: meta.msgtype for name, meta in reader.topics.items()}
    except BagError as exc:
        raise RetrainError(f"{role} bag: {exc}") from None


def _class_file(cfg: dict, meta, out: Path):
    """The class list the trainer uses: the base model's (written to out/classes.yaml when it is not the
    package's), or the config's, which must match the base model's heads."""
    from fusion_ros.classes import load_classes
    from fusion_ros.node_core import class_colors

    if cfg.get("classes"):
        classes = load_classes(cfg["classes"])
        if list(classes.detection.names) != list(meta.det_classes) or \
                list(classes.segmentation.names) != list(meta.seg_classes):
            raise RetrainError(
                f"classes {cfg['classes']} ({list(classes.detection.names)}, {list(classes.segmentation.names)}) "
                "differ "
                f"from the base model's heads ({meta.det_classes}, {meta.seg_classes}); retraining keeps the base "
                "model's classes: set classes: null")
        return cfg["classes"]
    default = load_classes()
    if list(default.detection.names) == list(meta.det_classes) and \
            list(default.segmentation.names) == list(meta.seg_classes):
        return None
    path = out / "classes.yaml"
    doc = {}
    for key, names, known in (("detection", meta.det_classes, default.detection),
                              ("segmentation", meta.seg_classes, default.segmentation)):
        colors = class_colors(names, known)
        doc[key] = [{"name": n, "color": [int(v) for v in c]} for n, c in zip(names, colors)]
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return str(path)


def prepare(cfg: dict, args, base_path: Path, out: Path) -> dict:
    """Fill the trainer config from the command line and the base model (its weights are init_from)."""
    from fusion_ros.checkpoint import load_model

    try:
        base_model, meta = load_model(base_path)
    except (FileNotFoundError, ValueError) as exc:
        raise RetrainError(f"base model: {exc}") from None
    data = cfg["data"]
    data["root"] = [str(Path(b).expanduser()) for b in args.bags]
    if data.get("height") is None or data.get("width") is None:
        data["height"], data["width"] = (int(v) for v in meta.input_size)
    if data.get("thermal_range") is None:
        data["thermal_range"] = [float(v) for v in meta.thermal_range]
    if args.cache_dir:
        data["cache_dir"] = args.cache_dir
    if args.rebuild_cache:
        data["rebuild_cache"] = True
    if args.quiet:
        data["progress"] = False
    pseudo = data.get("pseudo_labels")
    if isinstance(pseudo, dict) and not pseudo.get("model"):
        pseudo["model"] = str(base_path.resolve())
    if args.steps is not None:
        cfg["schedule"]["steps"] = int(args.steps)
    if args.block_seconds is not None:  # short recordings (e.g. sample drives) need shorter split blocks
        data.setdefault("split", {})["block_seconds"] = args.block_seconds
        data["split"]["gap_seconds"] = min(float(data["split"].get("gap_seconds", 1.0)), args.block_seconds / 10)
    model_cfg = base_model.cfg.to_dict()
    model_cfg.pop("num_det_classes", None)
    model_cfg.pop("num_seg_classes", None)
    cfg["model"] = model_cfg
    base_loss = (meta.info.get("config") or {}).get("loss") or {}
    for key in ("target", "detail_threshold"):  # keep pulling the fused image toward what the base produces
        if key in base_loss:
            cfg.setdefault("loss", {}).setdefault(key, base_loss[key])
    cfg["init_from"] = str(base_path.resolve())
    cfg["classes"] = _class_file(cfg, meta, out)
    cfg["retrain"] = {"base_model": str(base_path.resolve()), "bags": data["root"],
                      "heldout_bag": str(Path(args.heldout_bag).resolve()), "config": cfg.pop("_config_path", None)}
    return cfg


def _label_summary(caches) -> dict:
    rows = []
    for c in caches:
        samples = c.info["samples"]
        rows.append({"bag": str(c.bag), "cache": str(c.folder), "pairs": len(samples), "labels": c.labels,
                     "boxes": sum(e.get("boxes", 0) for e in samples),
                     "frames_with_mask": sum(bool(e.get("mask")) for e in samples),
                     "pseudo": c.info.get("pseudo"), "dropped": c.info["stats"].get("rejected"),
                     "warnings": c.info.get("warnings", [])})
    return {"bags": rows,
            "detection_labels": any(r["labels"]["detections"] != "none" for r in rows),
            "segmentation_labels": any(r["labels"]["segmentation"] != "none" for r in rows)}


# ---------------------------------------------------------------------------------- export / engine
def export_and_build(model_path: Path, cfg: dict) -> dict:
    """model.onnx (+ sidecar) and, where tensorrt is importable, model.engine; -> what was made."""
    import importlib.util

    from training.export import ExportError, export_onnx

    ex = cfg.get("export") or {}
    onnx_path = model_path.with_suffix(".onnx")
    try:
        result = export_onnx(model_path, onnx_path, dynamic=bool(ex.get("dynamic", False)),
                             exporter=ex.get("exporter", "dynamo"))
    except ExportError as exc:
        raise RetrainError(f"ONNX export failed: {exc}") from None
    made = {"onnx": str(result.onnx_path), "onnx_sidecar": str(result.sidecar_path),
            "parity_max_abs_diff": result.parity, "engine": None}
    print(f"exported {result.onnx_path} (parity vs torch: max-abs-diff "
          f"{max(result.parity.values()):.2g})")
    if importlib.util.find_spec("tensorrt") is None:
        made["engine_note"] = ("TensorRT is not importable here: no engine built. The ONNX is the deployable "
                               f"artifact; on the vehicle run: fusion-build-engine {onnx_path} --fp16")
        print(f"note: {made['engine_note']}")
        return made
    from fusion_ros.engine.base import EngineError
    from training.build_engine import build_engine

    try:
        engine = build_engine(onnx_path, precision=ex.get("tensorrt_precision", "fp16"))
    except (EngineError, RuntimeError, OSError) as exc:
        made["engine_note"] = f"TensorRT engine build failed ({exc}); the ONNX is the deployable artifact"
        print(f"note: {made['engine_note']}")
        return made
    made["engine"] = str(engine)
    print(f"built TensorRT engine {engine}")
    return made


def _base_artifact(base_path: Path, backend: str, out: Path, cfg: dict) -> Path:
    """The base model file to evaluate with `backend`: its ONNX export when the backend needs one (an
    existing export of exactly this file, else a fresh one in out/base/)."""
    if backend not in ("onnxruntime", "tensorrt"):
        return base_path
    from fusion_ros.engine import resolve_artifacts

    found = resolve_artifacts(base_path)
    if backend in found:
        return found[backend]
    if backend == "tensorrt":
        raise RetrainError(f"evaluation.backend tensorrt: the base model {base_path} has no TensorRT engine "
                           "beside it; build one (fusion-build-engine) or evaluate with onnxruntime")
    from training.export import ExportError, export_onnx

    target = out / "base" / f"{base_path.stem}.pt"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(base_path, target)
    try:
        export_onnx(target, target.with_suffix(".onnx"), exporter=(cfg.get("export") or {}).get("exporter", "dynamo"))
    except ExportError as exc:
        raise RetrainError(f"cannot export the base model for the comparison: {exc}") from None
    return target.with_suffix(".onnx")


# ----------------------------------------------------------------------------------------- compare
def summarize(metrics: dict) -> dict:
    det = metrics.get("detection") or {}
    seg = metrics.get("segmentation") or {}
    lat = metrics["latency_ms"]
    return {
        "model": metrics["model"]["path"], "backend": metrics["model"]["backend"],
        "pairs": metrics["pairs"]["processed"],
        "mAP50": det.get("mAP50"), "mAP50_95": det.get("mAP50_95"), "mIoU": seg.get("mIoU"),
        "fusion": dict(metrics["fusion_metrics"].get("mean") or {}),
        "latency_ms": {"total_p50": lat["total"].get("p50"), "total_p95": lat["total"].get("p95"),
                       "engine_p50": lat["engine"].get("p50"), "engine_p95": lat["engine"].get("p95")},
    }


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def verdict(base: dict, new: dict, tie: float = 0.005) -> tuple[str, bool | None]:
    """The line a user reads first, and whether to deploy (None: no ground truth to decide on). Decided on
    held-out mAP@0.5 (mIoU breaks a tie, or decides when there are no detection labels)."""
    def delta(key):
        b, n = base.get(key), new.get(key)
        return (n - b, n, b) if _num(b) and _num(n) else None

    det, seg = delta("mAP50"), delta("mIoU")
    seg_text = f"; mIoU {seg[0]:+.3f} ({seg[1]:.3f} vs {seg[2]:.3f})" if seg else ""
    if det is None and seg is None:
        return ("no verdict: the held-out bag has no ground truth (detections or segmentation), so accuracy cannot "
                "be compared; only fusion metrics and latency are shown", None)
    key, (d, n, b), rest = ("mAP@0.5", det, seg_text) if det else ("mIoU", seg, "")
    if d > tie:
        return f"new model better on held-out {key} by {d:.3f} ({n:.3f} vs {b:.3f}){rest}: deploy it", True
    if d < -tie:
        return f"new model worse on held-out {key} by {-d:.3f} ({n:.3f} vs {b:.3f}){rest}: keep the base model", False
    line = f"new model on par with the base model on held-out {key} (delta {d:+.3f}: {n:.3f} vs {b:.3f}){rest}"
    if det and seg and seg[0] > tie:
        return line + ": deploy it if segmentation matters to you", True
    return line + ": no accuracy reason to redeploy", False


def compare(base_metrics: dict, new_metrics: dict, heldout: str, tie: float) -> dict:
    base, new = summarize(base_metrics), summarize(new_metrics)
    delta = {}
    for key in ("mAP50", "mAP50_95", "mIoU"):
        delta[key] = new[key] - base[key] if _num(base[key]) and _num(new[key]) else None
    delta["fusion"] = {k: new["fusion"][k] - v for k, v in base["fusion"].items()
                       if _num(v) and _num(new["fusion"].get(k))}
    delta["latency_ms"] = {k: new["latency_ms"][k] - v for k, v in base["latency_ms"].items()
                           if _num(v) and _num(new["latency_ms"].get(k))}
    line, deploy = verdict(base, new, tie)
    return {"heldout_bag": heldout, "base": base, "new": new, "delta": delta, "verdict": line, "deploy": deploy}


def _finite(value):
    """NaN/inf -> None, recursively (strict JSON)."""
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _f(v, digits: int = 3) -> str:
    return f"{v:.{digits}f}" if _num(v) else "n/a"


def _d(v, digits: int = 3) -> str:
    return f"{v:+.{digits}f}" if _num(v) else ""


def comparison_markdown(c: dict, extra: dict) -> str:
    b, n, d = c["base"], c["new"], c["delta"]
    rows = [(label, b[key], n[key], d[key], 3) for key, label, _ in SUMMARY_METRICS]
    for k in sorted(set(b["fusion"]) | set(n["fusion"])):
        rows.append((f"fusion {k}", b["fusion"].get(k), n["fusion"].get(k), d["fusion"].get(k), 3))
    for k, label in (("total_p50", "latency total p50 (ms)"), ("total_p95", "latency total p95 (ms)"),
                     ("engine_p50", "latency engine p50 (ms)"), ("engine_p95", "latency engine p95 (ms)")):
        rows.append((label, b["latency_ms"].get(k), n["latency_ms"].get(k), d["latency_ms"].get(k), 1))
    lines = [
        "# Retrained model vs base model on the held-out bag", "",
        f"**Verdict: {c['verdict']}**", "",
        f"- held-out bag: `{c['heldout_bag']}` ({n['pairs']} pairs evaluated for the new model, {b['pairs']} for "
        "the base)",
        f"- base model: `{b['model']}` ({b['backend']})",
        f"- new model: `{n['model']}` ({n['backend']})",
        f"- training bags: {', '.join(f'`{x}`' for x in extra.get('bags', []))}; labels: "
        f"{extra.get('labels', 'n/a')}",
        f"- deployable artifact: `{extra.get('artifact', 'n/a')}`"
        + (f" ({extra['engine_note']})" if extra.get("engine_note") else ""),
        "", "| metric | base | new | delta |", "| --- | ---: | ---: | ---: |",
    ]
    for label, bv, nv, dv, digits in rows:
        lines.append(f"| {label} | {_f(bv, digits)} | {_f(nv, digits)} | {_d(dv, digits)} |")
    lines += ["", "Full reports: `eval_base/report.md`, `eval_new/report.md`. Latency is the evaluator's per-pair "
              "time on this machine with the backend named above (both models on the same backend).", ""]
    return "\n".join(lines)


def evaluate_both(cfg: dict, args, base_path: Path, new_model: Path, out: Path, artifacts: dict) -> dict:
    from fusion_ros.bag.evaluate import evaluate_bag
    from fusion_ros.bag.reader import BagError

    ev = cfg.get("evaluation") or {}
    backend = args.eval_backend or ev.get("backend", "onnxruntime")
    data = cfg["data"]
    topics = data.get("topics") or {}
    node = data.get("node") or {}
    common = {
        "thermal_topic": topics.get("thermal", "/thermal/image_raw"), "rgb_topic": topics.get("rgb", "/rgb/image_raw"),
        "params_file": node.get("params_file"), "params": dict(node.get("params") or {}),
        "max_pairs": ev.get("max_pairs"), "write_bag": bool(ev.get("write_bag", False)), "overwrite": True,
        "progress": not args.quiet, "device": args.device if args.device == "cuda" else None, "backend": backend,
    }
    for key, name in (("gt_detections", "gt_detections"), ("gt_segmentation", "gt_segmentation")):
        value = topics.get(key, "auto")
        if value not in (None, "auto", False, ""):
            common[name] = value
    if backend == "onnxruntime":
        new_artifact = Path(artifacts["onnx"])
    elif backend == "tensorrt":
        if not artifacts.get("engine"):
            raise RetrainError("evaluation.backend tensorrt: no TensorRT engine was built here")
        new_artifact = Path(artifacts["engine"])
    else:
        new_artifact = new_model
    base_artifact = _base_artifact(base_path, backend, out, cfg)
    results = {}
    for role, model in (("base", base_artifact), ("new", new_artifact)):
        print(f"evaluating the {role} model {model} on {args.heldout_bag} ({backend})")
        try:
            results[role] = evaluate_bag(args.heldout_bag, out=out / f"eval_{role}", model=str(model), **common)
        except BagError as exc:
            raise RetrainError(f"evaluation of the {role} model on the held-out bag failed: {exc}") from None
    return compare(results["base"], results["new"], str(args.heldout_bag), float(ev.get("tie_margin", 0.005)))


# --------------------------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training.retrain",
                                description="Retrain the fused-perception model from rosbag2 recordings, export it "
                                            "and compare it with the base model on a held-out bag.")
    p.add_argument("--bags", nargs="+", required=True, metavar="BAG", help="training bags (folders or .mcap/.db3)")
    p.add_argument("--heldout-bag", required=True, metavar="BAG",
                   help="a separate recording (ideally with ground truth) both models are scored on")
    p.add_argument("--config", help=f"retraining config (default: the package's config/{DEFAULT_CONFIG})")
    p.add_argument("--base-model", help="model to start from and compare with (default: the bundled model)")
    p.add_argument("--out", default="runs/retrain", help="run folder (default runs/retrain)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--steps", type=int, help="bi-level steps (overrides schedule.steps)")
    p.add_argument("--block-seconds", type=float,
                   help="length of the time blocks the bags are split into (overrides data.split.block_seconds; "
                        "the gap around held-out blocks becomes at most a tenth of it). A bag needs 3 blocks.")
    p.add_argument("--cache-dir", help="where the bag caches live (overrides data.cache_dir)")
    p.add_argument("--rebuild-cache", action="store_true", help="re-extract the bags even if a cache exists")
    p.add_argument("--eval-backend", choices=("onnxruntime", "torch", "tensorrt"),
                   help="backend for the comparison (overrides evaluation.backend; the same for both models)")
    p.add_argument("--resume", action="store_true", help="continue the training in --out from its checkpoint")
    p.add_argument("--quiet", action="store_true", help="no progress bars for caching and evaluation")
    return p


def run(args) -> dict:
    from fusion_ros.checkpoint import DEFAULT_MODEL
    from training.bag_datasets import bag_caches
    from training.train import Trainer

    out = Path(args.out)
    base_path = Path(args.base_model).expanduser() if args.base_model else DEFAULT_MODEL
    if not base_path.is_file():
        hint = "" if args.base_model else " (the bundled model is missing: pass --base-model)"
        raise RetrainError(f"base model not found: {base_path}{hint}")
    cfg = load_retrain_config(args.config)
    topics = {"thermal": "/thermal/image_raw", "rgb": "/rgb/image_raw", **(cfg["data"].get("topics") or {})}
    heldout = Path(args.heldout_bag).expanduser()
    train_bags = [Path(b).expanduser() for b in args.bags]
    for bag in train_bags:
        _check_bag(bag, topics, "training")
    held_topics = _check_bag(heldout, topics, "held-out")
    if any(heldout.resolve() == b.resolve() for b in train_bags):
        raise RetrainError(f"the held-out bag {heldout} is also a training bag: the comparison would not measure "
                           "generalisation; hold out a different recording")
    if not any(t in held_topics for t in ("/ground_truth/detections", "/ground_truth/segmentation",
                                          topics.get("gt_detections"), topics.get("gt_segmentation"))):
        print(f"warning: the held-out bag {heldout} has no ground-truth topics: the comparison can show fusion "
              "metrics and latency only, not which model detects better", file=sys.stderr)
    ckpt = out / "checkpoint.pt"
    if ckpt.is_file() and not args.resume:
        raise RetrainError(f"{out} already holds a run; pass --resume to continue it or --out for a new folder")
    if args.resume and not ckpt.is_file():
        raise RetrainError(f"--resume: no checkpoint at {ckpt}")
    cfg = prepare(cfg, args, base_path, out)

    # 1. the bags -> cached pairs (built once; the trainer's splits read the same caches)
    from fusion_ros.classes import load_classes

    classes = load_classes(cfg.get("classes"))
    caches = bag_caches(cfg["data"], cfg["data"]["thermal_range"], classes)
    labels = _label_summary(caches)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bag_caches.json").write_text(json.dumps(labels, indent=1, default=str))
    for row in labels["bags"]:
        print(f"bag {row['bag']}: {row['pairs']} pairs, labels {row['labels']}, {row['boxes']} boxes "
              f"(cache {row['cache']})")
    loss = cfg.setdefault("loss", {})
    if not labels["detection_labels"]:
        loss["detection"] = 0.0
        print("note: no detection labels (no ground truth, pseudo-labels off): detection loss weight set to 0")
    if not labels["segmentation_labels"]:
        loss["segmentation"] = 0.0
        print("note: no segmentation labels: segmentation loss weight set to 0")

    # 2. bi-level training from the base weights (cfg init_from)
    trainer = Trainer(cfg, out, args.device, config_path=cfg["retrain"]["config"])
    if args.resume:
        trainer.load_checkpoint(ckpt)
        print(f"resumed from {ckpt} at step {trainer.step}")
    trainer.fit()
    model_path = out / "model.pt"
    if not model_path.is_file():
        raise RetrainError(f"training did not finish: no {model_path}")

    # 3. export (+ TensorRT where possible)
    artifacts = export_and_build(model_path, cfg)

    # 4. old vs new on the held-out bag
    comparison = evaluate_both(cfg, args, base_path, model_path, out, artifacts)
    comparison["artifacts"] = {"model": str(model_path), **artifacts}
    comparison["training"] = {"bags": labels["bags"], "steps": trainer.step,
                              "validation": getattr(trainer, "last_val", None)}
    comparison = _finite(comparison)
    (out / "comparison.json").write_text(json.dumps(comparison, indent=2, default=str))
    label_text = ", ".join(sorted({f"{k} {v}" for r in labels["bags"] for k, v in r["labels"].items()}))
    (out / "comparison.md").write_text(comparison_markdown(comparison, {
        "bags": [str(b) for b in train_bags], "labels": label_text,
        "artifact": artifacts.get("engine") or artifacts["onnx"], "engine_note": artifacts.get("engine_note")}))
    print(f"\n{comparison['verdict']}\ncomparison: {out / 'comparison.md'}")
    return comparison


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from fusion_ros.bag.reader import BagError
    from training.records import DatasetLayoutError

    try:
        run(args)
    except (RetrainError, BagError, DatasetLayoutError, FileNotFoundError, ValueError) as exc:
        print(f"retrain: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
