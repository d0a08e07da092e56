"""Make a finished run the bundled default model: copy it, export ONNX, write the model card.

    python -m training.ship runs/default [--dest fusion_ros/models]

The card records where the model came from (config, training command, date, steps) and what it
scores (the run's last validation and a fresh evaluation on a night+fog hold-out), so a user can see
what they deploy.
"""
from __future__ import annotations

import argparse
import json
import shutil
from datetime import date
from pathlib import Path

import yaml

from fusion_ros.checkpoint import load_model
from fusion_ros.model import count_parameters
from training.data import NIGHT_FOG_HOLDOUT as HOLDOUT_CONDITIONS
from training.data import night_fog_holdout
from training.export import main as export_main
from training.train import Trainer

CARD = """# Model card: {name}

- **What**: FusedPerceptionNet (fusion net + FCOS detection + segmentation), {params:.2f} M parameters,
  input {width}x{height} thermal (16-bit TLinear counts, {t_low:.0f}..{t_high:.0f} -> 0..1) + RGB.
- **Classes**: detection {det}; segmentation {seg}.
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


def _fmt(x) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a finished training run folder (holds model.pt)")
    parser.add_argument("--dest", type=Path, default=Path(__file__).resolve().parents[1] / "fusion_ros" / "models")
    parser.add_argument("--name", default="default")
    parser.add_argument("--holdout", type=int, default=48)
    parser.add_argument("--note", default="", help="extra provenance for the card (e.g. how a run was resumed)")
    args = parser.parse_args(argv)
    source = args.run / "model.pt"
    model, meta = load_model(source)  # refuses unfinished or broken runs
    cfg = meta.info["config"]
    args.dest.mkdir(parents=True, exist_ok=True)
    target = args.dest / f"{args.name}.pt"
    shutil.copyfile(source, target)
    export_main([str(target), "--out", str(args.dest / f"{args.name}.onnx")])

    trainer = Trainer(cfg, args.run / "ship_eval")
    trainer.model.load_state_dict(model.state_dict())
    ho = trainer.evaluate(night_fog_holdout(cfg["data"], args.holdout, meta.thermal_range))
    val = meta.info.get("validation") or {}
    card = CARD.format(
        name=args.name, params=count_parameters(model) / 1e6, height=meta.input_size[0], width=meta.input_size[1],
        t_low=meta.thermal_range[0], t_high=meta.thermal_range[1], det=", ".join(meta.det_classes),
        seg=", ".join(meta.seg_classes), data_seed=cfg["data"]["seed"], train_size=cfg["data"]["train_size"],
        heldout_size=cfg["data"]["heldout_size"], conditions=cfg["data"].get("condition_weights"),
        real_data=real_data_line(cfg, meta.info.get("init_from")),
        fusion_mode=meta.info.get("fusion_mode", "bilevel"), aggregation=trainer.sched.aggregation,
        target=trainer.weights.target, chroma=model.cfg.chroma,
        steps=meta.info["steps"], finished=meta.info["date"], config=meta.info.get("config_path", "config/train_synthetic.yaml"),
        run=args.run, val_size=cfg["data"]["val_size"], val_map50=_fmt(val.get("map50")), val_map=_fmt(val.get("map50_95")),
        val_miou=_fmt(val.get("miou")), holdout_size=args.holdout, holdout_conditions=HOLDOUT_CONDITIONS,
        ho_map50=_fmt(ho["map50"]), ho_map=_fmt(ho["map50_95"]), ho_miou=_fmt(ho["miou"]), today=date.today().isoformat(), note=args.note,
    )
    (args.dest / f"{args.name}.md").write_text(card)
    (args.dest / f"{args.name}.metrics.json").write_text(json.dumps({"validation": val, "holdout": ho}, indent=2, default=str))
    print(card)
    print(yaml.safe_dump({"shipped": str(target)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
