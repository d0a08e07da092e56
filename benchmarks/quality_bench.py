"""Quality benchmark: does bi-level fusion help perception, and how good is the fused image?

    python benchmarks/quality_bench.py detection [--steps 600 --warmup 100 --warmup-lr 1e-3 --target detail
                                                  --detail-threshold 0.04 --chroma denoised --thermal-skip
                                                  --aggregation random]
    python benchmarks/quality_bench.py holdout RUN [RUN ...]
    python benchmarks/quality_bench.py fusion [--model MODEL.pt ...] [--split-config config/finetune_real_fusion.yaml]

`detection` trains the semantic module with the same budget on five inputs -- IR only, RGB only, the
average of IR and visible luminance, a fusion net trained on the fusion loss then frozen (two-stage),
and the bi-level method -- and scores each on a night+fog-heavy synthetic hold-out (mAP@0.5,
mAP@0.5:0.95, mIoU). It also reports the bi-level phase's mean step time over a fusion-only
(warm-start) step of the same run (a figure that drifts with the machine between the two phases;
benchmarks/train_step_bench.py measures it with the steps interleaved).
`holdout` scores finished runs again on that hold-out, with AP@0.5 per class.
`fusion` scores fused images on the real pairs in ../shared/data/ivf_samples (RoadScene, TNO) with
EN, SD, SF, AG, MI, VIF, Qabf, SSIM, next to average, max, IR + visible detail (the `detail` fusion
target as a fixed rule), IR-only and visible-only fusion; with
--split-config, the pairs that config fine-tuned the fusion net on (data.fusion_pairs) are left out.
Both write JSON and a Markdown table into --out.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fusion_ros.checkpoint import DEFAULT_MODEL, load_model  # noqa: E402
from fusion_ros.metrics import fusion_metrics  # noqa: E402
from fusion_ros.model import CHROMA_MODES, rgb_to_ycbcr  # noqa: E402
from training.bilevel import TaskWeights  # noqa: E402
from training.data import NIGHT_FOG_HOLDOUT as HOLDOUT_CONDITIONS  # noqa: E402
from training.data import night_fog_holdout  # noqa: E402
from training.losses import FUSION_TARGETS, fusion_target  # noqa: E402
from training.train import FUSION_MODES, Trainer, load_config, scoring_config  # noqa: E402

def markdown_table(rows: list[dict], columns: list[str]) -> str:
    def fmt(v):
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


# detection options that set a training-config key (where given): option -> key path in the config
CONFIG_OPTIONS = {
    "target": ("loss", "target"),
    "detail_threshold": ("loss", "detail_threshold"),
    "warmup_lr": ("schedule", "fusion_warmup_lr"),
    "chroma": ("model", "chroma"),
    "aggregation": ("schedule", "aggregation"),
    "thermal_skip": ("model", "fusion", "thermal_skip"),
    "seed": ("seed",),  # initialisation and batch order; the scenes stay the same
}


def detection_benchmark(args) -> None:
    base = load_config(args.config)
    for option, path in CONFIG_OPTIONS.items():
        value = getattr(args, option)
        if value is not None:
            section = base
            for key in path[:-1]:
                section = section.setdefault(key, {})
            section[path[-1]] = value
    base["schedule"].update(steps=args.steps, fusion_warmup_steps=args.warmup, val_every=10**9,
                            checkpoint_every=10**9, lr_warmup_steps=min(100, args.steps // 10))
    base["data"]["crop"] = list(args.crop)
    rows = []
    for mode in args.modes:
        cfg = copy.deepcopy(base)
        cfg["fusion_mode"] = mode
        torch.manual_seed(cfg.get("seed", 0))
        trainer = Trainer(cfg, args.out / mode)
        start = time.perf_counter()
        trainer.fit()
        train_minutes = (time.perf_counter() - start) / 60
        row = {"input": mode, **holdout_row(trainer, args.holdout), "train min": train_minutes}
        if mode == "bilevel":
            warm = [r["seconds"] for r in trainer.history if r["phase"] == "warmup"]
            bilevel = [r["seconds"] for r in trainer.history if r["phase"] in ("lower", "bilevel")]
            row["step cost vs fusion-only"] = float(np.mean(bilevel) / np.mean(warm))
        rows.append(row)
        print(json.dumps(row), flush=True)
    columns = ["input", "mAP@0.5", "mAP@0.5:0.95", "mIoU", "train min", "step cost vs fusion-only"]
    # the settings as the (last) trainer read them: the modes differ only in fusion_mode
    sched = trainer.sched
    setup = (f"{args.steps} steps (+{args.warmup} fusion warm-up at lr {sched.warm_start_lr:g} for learned "
             f"fusion), fusion target {trainer.weights.target} (detail threshold "
             f"{trainer.weights.detail_threshold:g}), fused colour {trainer.model.cfg.chroma}, thermal skip "
             f"{trainer.model.cfg.fusion.thermal_skip}, aggregation {sched.aggregation}, seed {trainer.seed}, "
             f"batch {sched.batch_size}, crops {args.crop[0]}x{args.crop[1]}, hold-out {args.holdout} pairs at "
             f"{base['data']['height']}x{base['data']['width']} ({HOLDOUT_CONDITIONS})")
    write_outputs(args.out, "detection", rows, columns, setup)


def holdout_row(trainer: Trainer, size: int) -> dict:
    result = trainer.evaluate(night_fog_holdout(trainer.cfg["data"], size, trainer.thermal_range))
    return {"mAP@0.5": result["map50"], "mAP@0.5:0.95": result["map50_95"], "mIoU": result["miou"],
            "AP@0.5 per class": result["ap50"]}


def holdout_benchmark(args) -> None:
    """Score finished runs (e.g. earlier `detection` runs, saved before per-class AP was recorded) again
    on the same hold-out, each with the input (fusion_mode) it was trained on."""
    rows = []
    for run in args.runs:
        model, meta = load_model(run / "model.pt")
        trainer = Trainer(scoring_config(meta.info["config"]), args.out / "runs" / run.name)
        trainer.model.load_state_dict(model.state_dict())
        row = {"run": str(run), "input": trainer.fusion_mode, **holdout_row(trainer, args.holdout)}
        row.update({f"AP {name}": ap for name, ap in row["AP@0.5 per class"].items()})
        rows.append(row)
    columns = ["run", "input", "mAP@0.5", "mAP@0.5:0.95", "mIoU"] + [f"AP {n}" for n in trainer.det_classes]
    write_outputs(args.out, "holdout", rows, columns,
                  f"hold-out {args.holdout} pairs ({HOLDOUT_CONDITIONS}), AP@0.5 per class")


def read_pairs(folder: Path):
    """(name, ir uint8 HxW, visible uint8 HxWx3 RGB) for every pair of an ir/ + vi/ folder."""
    for ir_path in sorted((folder / "ir").iterdir()):
        vi_path = folder / "vi" / ir_path.name
        ir = cv2.imread(str(ir_path), cv2.IMREAD_GRAYSCALE)
        vi = cv2.imread(str(vi_path), cv2.IMREAD_COLOR)
        if ir is None or vi is None:
            raise ValueError(f"cannot read the pair {ir_path} / {vi_path}")
        yield ir_path.name, ir, cv2.cvtColor(vi, cv2.COLOR_BGR2RGB)


def unseen_pairs(split_config: Path | None):
    """(root, keep(name)) for the real pairs a fine-tune config trained its fusion net on (its
    data.fusion_pairs folder): keep() is true for the pairs of its val split, which it never saw."""
    if split_config is None:
        return None
    from training.datasets import split_fractions, split_of

    pairs_cfg = load_config(split_config)["data"].get("fusion_pairs")
    if not pairs_cfg:
        raise ValueError(f"{split_config} has no data.fusion_pairs: nothing to keep out")
    heldout_fraction, val_fraction = split_fractions(pairs_cfg)
    salt = str(pairs_cfg.get("split_salt", ""))
    return (Path(pairs_cfg["root"]).resolve(),
            lambda name: split_of(Path(name).stem, heldout_fraction, val_fraction, salt) == "val")


@torch.no_grad()
def fusion_benchmark(args) -> None:
    models = {f"ours: {path}": load_model(path)[0] for path in args.model}
    unseen = unseen_pairs(args.split_config)
    rows = []
    for dataset in ("RoadScene", "TNO"):
        folder = args.samples / dataset
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder} not found (pass --samples)")
        keep = unseen[1] if unseen and folder.resolve() == unseen[0] else (lambda name: True)
        scores: dict[str, list[dict]] = {}
        for name, ir, vi in read_pairs(folder):
            if not keep(name):
                continue
            ir_t = torch.from_numpy(ir).float().div(255)[None, None]
            vi_t = torch.from_numpy(vi).float().div(255).permute(2, 0, 1)[None]
            vis_y = rgb_to_ycbcr(vi_t)[:, :1]
            candidates = {label: model.fuse(ir_t, vi_t)[1] for label, model in models.items()}
            candidates.update({
                "average": 0.5 * (ir_t + vis_y),
                "max": torch.maximum(ir_t, vis_y),
                "IR + visible detail": fusion_target(ir_t, vis_y, None, "detail"),
                "IR only": ir_t,
                "visible only": vis_y,
            })
            ir255, vy255 = ir.astype(np.float64), vis_y[0, 0].numpy() * 255
            for method, img in candidates.items():
                scores.setdefault(method, []).append(fusion_metrics(img[0, 0].numpy() * 255, ir255, vy255))
        for method, per_image in scores.items():
            row = {"data": f"{dataset} ({len(per_image)} pairs)", "method": method}
            row.update({k: float(np.mean([s[k] for s in per_image])) for k in per_image[0]})
            rows.append(row)
    columns = ["data", "method", "EN", "SD", "SF", "AG", "MI", "VIF", "Qabf", "SSIM"]
    kept = f"; pairs {args.split_config} trained on are left out" if unseen else ""
    write_outputs(args.out, "fusion", rows, columns, f"models {', '.join(map(str, args.model))}; means over pairs{kept}")


def write_outputs(out: Path, name: str, rows: list[dict], columns: list[str], setup: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps({"setup": setup, "rows": rows}, indent=2, default=str))
    table = markdown_table(rows, columns)
    (out / f"{name}.md").write_text(f"{setup}\n\n{table}\n")
    print(setup)
    print(table)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    det = sub.add_parser("detection")
    det.add_argument("--config", default=str(ROOT / "config" / "train_synthetic.yaml"))
    det.add_argument("--steps", type=int, default=600)
    det.add_argument("--warmup", type=int, default=100)
    det.add_argument("--target", choices=FUSION_TARGETS, default=None, help="fusion target (loss.target)")
    det.add_argument("--detail-threshold", type=float, default=None,
                     help="soft threshold on the visible detail of the detail target (loss.detail_threshold)")
    det.add_argument("--warmup-lr", type=float, default=None, help="fusion net rate in the warm start")
    det.add_argument("--chroma", choices=CHROMA_MODES, default=None, help="fused image colour (model.chroma)")
    det.add_argument("--aggregation", choices=TaskWeights.MODES, default=None,
                     help="task-weight rule of the bi-level fusion update (schedule.aggregation)")
    det.add_argument("--thermal-skip", action=argparse.BooleanOptionalAction, default=None,
                     help="fusion net outputs a correction to the thermal image (model.fusion.thermal_skip)")
    det.add_argument("--seed", type=int, default=None, help="training seed (config seed); data unchanged")
    det.add_argument("--crop", type=int, nargs=2, default=(256, 320))
    det.add_argument("--holdout", type=int, default=48)
    det.add_argument("--modes", nargs="+", default=list(FUSION_MODES), choices=FUSION_MODES)
    hold = sub.add_parser("holdout")
    hold.add_argument("runs", type=Path, nargs="+", help="finished run folders (each holds model.pt)")
    hold.add_argument("--holdout", type=int, default=48)
    fus = sub.add_parser("fusion")
    fus.add_argument("--model", nargs="+", default=[str(DEFAULT_MODEL)], help="one or more model files")
    fus.add_argument("--split-config", type=Path, default=None,
                     help="a fine-tune config with data.fusion_pairs: score only the pairs it did not train on")
    fus.add_argument("--samples", type=Path, default=ROOT.parent / "shared" / "data" / "ivf_samples")
    for p in (det, hold, fus):
        p.add_argument("--out", type=Path, default=ROOT / "bench_out" / "quality")
    args = parser.parse_args(argv)
    {"detection": detection_benchmark, "holdout": holdout_benchmark, "fusion": fusion_benchmark}[args.what](args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
