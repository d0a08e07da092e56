"""Make a finished run the bundled default model: copy it, export ONNX, write the model card.

    python -m training.ship runs/default [--dest fusion_ros/models] [--table bench_out/real_pairs/table.md]
           [--fusion-table bench_out/fusion_quality/table.md]

The card records where the model came from (config, training command, date, steps) and what it
scores, so a user can see what they deploy: for a run on labelled real pairs (`data: kind: pairs`),
the exported ONNX model as the node runs it, scored by fusion-eval-pairs on the run's val blocks,
overall, by day and by night, plus the comparison table given with --table; for a synthetic run, the
run's last validation and a fresh evaluation on a night+fog hold-out.
"""
from __future__ import annotations

import argparse
import json
import shutil
from datetime import date
from pathlib import Path

import yaml

from fusion_ros.checkpoint import load_model
from fusion_ros.engine.sidecar import relative_path, sha256_file
from fusion_ros.model import count_parameters
from fusion_ros.segmentation_labels import DESCRIPTIONS, REAL
from training.data import NIGHT_FOG_HOLDOUT as HOLDOUT_CONDITIONS
from training.data import night_fog_holdout
from training.export import main as export_main
from training.train import Trainer, scoring_config

CARD = """# Model card: {name}

- **What**: FusedPerceptionNet (fusion net + FCOS detection + segmentation), {params:.2f} M parameters,
  input {width}x{height} thermal (16-bit TLinear counts, {t_low:.0f}..{t_high:.0f} -> 0..1) + RGB.
- **Classes**: detection {det}; segmentation {seg}: {seg_note}
- **Data**: the project's synthetic thermal+RGB generator (fusion_ros/synthetic.py), generated on the
  fly from seed {data_seed}: {train_size} training scenes, {heldout_size} held-out scenes for the upper
  level, conditions {conditions}. {real_data}
- **Training**: bi-level dynamic learning (training/train.py), fusion mode `{fusion_mode}`, fusion target
  `{target}`, fused colour `{chroma}`, aggregation `{aggregation}`, {steps} steps on 2 CPU cores, finished {finished}.
  Command: `python -m training.train --config {config} --out {run}` then `python -m training.ship {run}`.
  {note}
- **Validation at the end of training** ({val_size} scenes, training condition mix):
  mAP@0.5 {val_map50}, mAP@0.5:0.95 {val_map}, mIoU {val_miou}.
- **Night + fog hold-out** ({holdout_size} scenes, {holdout_conditions}, evaluated when shipped):
  mAP@0.5 {ho_map50}, mAP@0.5:0.95 {ho_map}, mIoU {ho_miou}.
- **Files**: `{name}.pt` (torch weights + metadata), `{name}.onnx` + `{name}.onnx.json` (fixed
  {width}x{height}, parity-checked against torch at export).
- **Shipped**: {today}.
"""


def real_data_line(cfg: dict, init_from: dict | None = None) -> str:
    """What the card says about the starting point (init_from: the trainer's path + sha256 record) and
    real images: none, or the unlabelled pairs of data.fusion_pairs."""
    pairs = cfg["data"].get("fusion_pairs")
    start = f"Fine-tuned from `{init_from['path']}` (sha256 {init_from['sha256']}). " if init_from else ""
    if not pairs:
        return start + "No real images were used; expect a domain gap on real cameras."
    return (start + f"Real images: the fusion objective alone also saw the unlabelled `{pairs['kind']}` pairs under "
            f"`{pairs['root']}` (train split; val_fraction {pairs.get('val_fraction', 0.1)} kept out); "
            "detection and segmentation were learnt on generated scenes only.")


def segmentation_note(labels: str) -> str:
    """The card's words on the segmentation head: what it learnt from, as its model files record it."""
    refused = "" if labels == REAL else (" The node refuses to publish its masks unless "
                                         "`allow_segmentation_without_real_labels` is set.")
    return f"its head {DESCRIPTIONS[labels]} (`segmentation_labels: {labels}` in the model files).{refused}"


def _fmt(x) -> str:
    return "n/a" if x is None else f"{x:.3f}"


REAL_CARD = """# Model card: {name}

- **What**: FusedPerceptionNet: the project's fusion net (F, `{fusion_output}` head, {fusion_params:.2f} M parameters) + YOLOX-nano
  detection ({detector}), {params:.2f} M parameters in all; input {width}x{height} thermal + RGB, one graph.
- **Classes**: detection {det}. The graph also has a segmentation output ({seg}): {seg_note}
- **Data**: `{root}` ({variant} labels: boxes of objects seen in either camera), split into contiguous blocks
  of names {split} so that no validation frame has a near-duplicate in training: {counts}.
  {terms}
- **Start**: {start}
- **Training**: training/train.py, fusion mode `{fusion_mode}` ({mode_text}), fusion target `{target}`,
  fused colour `{chroma}`, aggregation `{aggregation}`, {steps} steps, finished {finished}.
  {commands}
  {note}
- **Validation** (`{name}.onnx` in ONNX Runtime, as the node runs it, on the {val_pairs} val pairs; mAP@0.5 over
  {det}; `fusion-eval-pairs {root} --split val --subset day='D$' --subset night='N$'`):
  mAP@0.5 **{map50}** (day {day}, night {night}), mAP@0.5:0.95 {map}; AP@0.5 {per_class}.
  At the node's default score_threshold {threshold}: {boxes_per_object} boxes per labelled object, precision {precision},
  recall {recall}.
{table}{fusion_table}
- **Not validated on**: other cameras, lenses and thermal sensors (one registered camera pair, MSRS/MFNet, 640x480);
  rain, snow, fog; classes other than {det}; segmentation (see above); 16-bit radiometric thermal input (the
  training thermal images are 8-bit).
- **Files**: `{name}.pt` (torch weights + metadata), `{name}.onnx` + `{name}.onnx.json` (fixed {width}x{height},
  parity-checked against torch at export).
- **Shipped**: {today}.
"""

FUSION_MODE_TEXT = {
    "bilevel": "bi-level dynamic learning: the fusion net the upper level, the detector and the pixel critic the "
               "lower level, first-order hypergradients with dynamic task weights",
    "two_stage": "two-stage: the fusion net trained on the fusion loss alone (the warm start), then frozen while "
                 "the detector trains on its output",
}

MSRS_TERMS = ("MSRS (Tang et al., PIAFusion, Information Fusion 2022) from MFNet (Ha et al., IROS 2017): published "
              "for research use, cite both; the box labels (Lele-3/MSRS-detection-label) state no licence. This "
              "model was trained on them: use it for research, or retrain it on data you may use.")


def training_commands(meta, cfg: dict, run: Path) -> str:
    """How the run was made: one training command, or for a soup (training.soup) one per seed and the average."""
    train = f"python -m training.train --config {meta.info.get('config_path')} --fusion-mode " \
            f"{meta.info.get('fusion_mode', 'bilevel')}"
    soup = meta.info.get("soup")
    if not soup:
        return f"Command: `{train} --out {run} --seed {cfg.get('seed', 0)}` then `python -m training.ship {run}`."
    seeds = [s["seed"] for s in soup]
    scores = ", ".join(f"{s['validation']['map50']:.3f}" for s in soup if s.get("validation"))
    return (f"The uniform average of the weights of {len(seeds)} runs of it, seeds {', '.join(map(str, seeds))} "
            f"(training.soup; their own val mAP@0.5 at the end of training {scores}): "
            f"`{train} --out RUN_S --seed S` for each seed, then `python -m training.soup RUN_S... --out {run}` and "
            f"`python -m training.ship {run}`.")


def real_card(args, model, meta, cfg: dict) -> tuple[str, dict]:
    """Card and metrics of a model trained on labelled real pairs: the shipped ONNX file, scored on val."""
    from fusion_ros.labelled_pairs import block_split, read_labelled_pairs
    from fusion_ros.pairs_eval import PairsEvalOptions, evaluate_pairs

    data = cfg["data"]
    split = {**{"block": 16, "gap": 1, "val_fraction": 0.2, "heldout_fraction": 0.1}, **data.get("split", {})}
    metrics = evaluate_pairs(PairsEvalOptions(
        root=data["root"], out=str(args.run / "ship_eval"), model=str(args.dest / f"{args.name}.onnx"),
        backend="onnxruntime", labels=data.get("labels", "auto"), variant=data.get("variant"),
        class_map=data.get("class_map") or {}, split="val", subsets={"day": "D$", "night": "N$"}, overwrite=True,
        **{k: split[k] for k in ("block", "gap", "val_fraction", "heldout_fraction")}))
    # the metrics file lies beside the model: name it relative to that folder, not by this machine's path
    scored = Path(metrics["model"]["path"])
    # the error counts ship; their lists (pair names and boxes, the missed ones copies of the data's labels,
    # which its terms keep out of the repository) stay in the run's ship_eval/metrics.json
    metrics["errors"] = {k: v for k, v in metrics["errors"].items() if k not in ("false_positives", "missed")}
    metrics["model"].update(path=relative_path(scored, args.dest), sha256=sha256_file(scored))
    det = metrics["detection"]
    op = det["at_default_threshold"]
    names = read_labelled_pairs(data["root"], meta.det_classes, labels=data.get("labels", "auto"),
                                variant=data.get("variant")).names
    counts = {k: len(v) for k, v in block_split(names, **{k: split[k] for k in ("block", "gap", "val_fraction",
                                                                                  "heldout_fraction")}).items()}
    init = meta.info.get("detector_init") or {}
    start = (f"the detector from the COCO-pretrained `{init.get('source')}` (YOLOX-nano, Megvii, Apache-2.0), "
             f"COCO classes {init.get('coco_ids')}; the fusion net from scratch." if init else "from scratch.")
    trainer = Trainer(scoring_config(cfg), args.run / "ship_eval")  # the saved weights, as saved
    card = REAL_CARD.format(
        name=args.name, detector=model.cfg.detector, params=count_parameters(model) / 1e6,
        seg_note=segmentation_note(meta.segmentation_labels),
        fusion_output=model.cfg.fusion.output, fusion_params=count_parameters(model.fusion) / 1e6, width=meta.input_size[1], height=meta.input_size[0],
        det=", ".join(meta.det_classes), seg=", ".join(meta.seg_classes), root=data["root"],
        variant=data.get("variant", "default"), split=split, counts=counts, terms=MSRS_TERMS if "msrs" in data["root"] else "",
        start=start, fusion_mode=meta.info.get("fusion_mode", "bilevel"), target=trainer.weights.target,
        mode_text=FUSION_MODE_TEXT.get(meta.info.get("fusion_mode", "bilevel"), "a fixed input image"),
        chroma=model.cfg.chroma, aggregation=trainer.sched.aggregation, steps=meta.info["steps"],
        finished=meta.info["date"], commands=training_commands(meta, cfg, args.run), note=args.note,
        val_pairs=metrics["pairs"]["evaluated"], map50=_fmt(det["mAP50"]), map=_fmt(det["mAP50_95"]),
        day=_fmt(metrics["subsets"]["day"]["detection"]["mAP50"]),
        night=_fmt(metrics["subsets"]["night"]["detection"]["mAP50"]),
        per_class=", ".join(f"{c} {_fmt(v['AP50'])}" for c, v in det["per_class"].items()),
        threshold=metrics["config"]["default_score_threshold"], boxes_per_object=_fmt(op["boxes_per_object"]),
        precision=_fmt(op["precision"]), recall=_fmt(op["recall"]),
        table=f"\nComparison on the same val pairs (benchmarks/real_pairs_compare.py):\n\n{args.table.read_text()}"
        if args.table else "", fusion_table=_fusion_table(args), today=date.today().isoformat())
    return card, {"validation_real_pairs": metrics}


def _fusion_table(args) -> str:
    """The fused image's quality table given with --fusion-table (fusion-eval-fusion's numbers), or nothing."""
    if not args.fusion_table:
        return ""
    return f"\n- **Fused image** (fusion-eval-fusion, at each pair's own resolution):\n\n{args.fusion_table.read_text()}"


def synthetic_card(args, model, meta, cfg: dict) -> tuple[str, dict]:
    """Card and metrics of a model trained on generated scenes: its validation and a night+fog hold-out."""
    trainer = Trainer(scoring_config(cfg), args.run / "ship_eval")  # the saved weights, as saved
    trainer.model.load_state_dict(model.state_dict())
    ho = trainer.evaluate(night_fog_holdout(cfg["data"], args.holdout, meta.thermal_range))
    val = meta.info.get("validation") or {}
    card = CARD.format(
        name=args.name, params=count_parameters(model) / 1e6, height=meta.input_size[0], width=meta.input_size[1],
        t_low=meta.thermal_range[0], t_high=meta.thermal_range[1], det=", ".join(meta.det_classes),
        seg=", ".join(meta.seg_classes), seg_note=segmentation_note(meta.segmentation_labels),
        data_seed=cfg["data"]["seed"], train_size=cfg["data"]["train_size"],
        heldout_size=cfg["data"]["heldout_size"], conditions=cfg["data"].get("condition_weights"),
        real_data=real_data_line(cfg, meta.info.get("init_from")),
        fusion_mode=meta.info.get("fusion_mode", "bilevel"), aggregation=trainer.sched.aggregation,
        target=trainer.weights.target, chroma=model.cfg.chroma,
        steps=meta.info["steps"], finished=meta.info["date"], config=meta.info.get("config_path", "config/train_synthetic.yaml"),
        run=args.run, val_size=cfg["data"]["val_size"], val_map50=_fmt(val.get("map50")), val_map=_fmt(val.get("map50_95")),
        val_miou=_fmt(val.get("miou")), holdout_size=args.holdout, holdout_conditions=HOLDOUT_CONDITIONS,
        ho_map50=_fmt(ho["map50"]), ho_map=_fmt(ho["map50_95"]), ho_miou=_fmt(ho["miou"]), today=date.today().isoformat(), note=args.note,
    )
    return card, {"validation": val, "holdout": ho}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a finished training run folder (holds model.pt)")
    parser.add_argument("--dest", type=Path, default=Path(__file__).resolve().parents[1] / "fusion_ros" / "models")
    parser.add_argument("--name", default="default")
    parser.add_argument("--holdout", type=int, default=48)
    parser.add_argument("--note", default="", help="extra provenance for the card (e.g. how a run was resumed)")
    parser.add_argument("--table", type=Path, default=None,
                        help="a Markdown comparison table to include in the card (real-pair runs)")
    parser.add_argument("--fusion-table", type=Path, default=None,
                        help="a Markdown table of the fused image's quality to include in the card (real-pair runs)")
    args = parser.parse_args(argv)
    source = args.run / "model.pt"
    model, meta = load_model(source)  # refuses unfinished or broken runs
    cfg = meta.info["config"]
    args.dest.mkdir(parents=True, exist_ok=True)
    target = args.dest / f"{args.name}.pt"
    shutil.copyfile(source, target)
    export_main([str(target), "--out", str(args.dest / f"{args.name}.onnx")])
    card, metrics = (real_card if cfg["data"].get("kind") == "pairs" else synthetic_card)(args, model, meta, cfg)
    (args.dest / f"{args.name}.md").write_text(card)
    (args.dest / f"{args.name}.metrics.json").write_text(json.dumps(metrics, indent=2, default=str))
    print(card)
    print(yaml.safe_dump({"shipped": str(target)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
