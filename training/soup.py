"""Average the weights of finished runs of one recipe: a uniform "model soup" (Wortsman et al., ICML 2022).

    python -m training.soup runs/msrs_s0 runs/msrs_s1 runs/msrs_s2 runs/msrs_s3 --out runs/msrs_soup
    python -m training.ship runs/msrs_soup

Why: the runs of one recipe start from the same COCO detector and differ only by seed (data order, crops, the
fusion net's initialisation), so they end in one basin where their average is a model too. It ships without
picking a seed by its val score, and it can beat the seeds: on the 45 MSRS val pairs the four bi-level seeds of
config/train_msrs.yaml score mAP@0.5 0.690-0.759 (mean 0.720) and their average 0.741, above three of the four.
It is no sure gain: the eight two-stage seeds average to 0.695 against their mean 0.717 (docs/training.md).

The runs must agree on everything but the seed (model config, classes, input size, thermal range, fusion mode,
training config); anything else is refused with the reason, as is a run without a finished model.pt. The
output is a run folder whose model.pt is a model file like any other (training.ship and every engine take
it), its info naming each ingredient (path, sha256, seed, its own end-of-training validation).
"""
from __future__ import annotations

import argparse
import sys
from datetime import date
from pathlib import Path

import torch

from fusion_ros.checkpoint import load_model, save_model
from fusion_ros.engine.sidecar import sha256_file


class SoupError(ValueError):
    """Runs that cannot be averaged (the message says which and why)."""


def _recipe(meta) -> dict:
    """What the ingredients must share: all of a run's provenance but its seed and its own results."""
    config = {k: v for k, v in meta.info["config"].items() if k != "seed"}
    return {"config": config, "fusion_mode": meta.info.get("fusion_mode"), "steps": meta.info.get("steps"),
            "det_classes": meta.det_classes, "seg_classes": meta.seg_classes, "input_size": tuple(meta.input_size),
            "thermal_range": tuple(meta.thermal_range), "segmentation_labels": meta.segmentation_labels}


def average_runs(runs: list[Path], out: Path) -> Path:
    """Write out/model.pt, the element-wise mean of the runs' float weights; returns its path."""
    if len(runs) < 2:
        raise SoupError(f"a soup needs at least two runs, got {len(runs)}")
    models, metas = [], []
    for run in runs:
        path = run / "model.pt"
        try:
            model, meta = load_model(path)
        except (FileNotFoundError, ValueError) as exc:
            raise SoupError(f"{run}: no finished model to average ({exc})") from None
        if "config" not in meta.info:
            raise SoupError(f"{path} holds no training config: not a training run's model")
        models.append(model)
        metas.append(meta)
    first = _recipe(metas[0])
    for run, model, meta in zip(runs[1:], models[1:], metas[1:]):
        if model.cfg.to_dict() != models[0].cfg.to_dict():
            raise SoupError(f"{run}: its model config differs from {runs[0]}'s")
        differs = [k for k, v in _recipe(meta).items() if v != first[k]]
        if differs:
            raise SoupError(f"{run}: differs from {runs[0]} in {', '.join(differs)}: only seeds of one recipe "
                            f"average into one model")
    seeds = [meta.info["config"].get("seed") for meta in metas]
    if len(set(seeds)) < len(seeds):
        raise SoupError(f"the runs repeat a seed ({seeds}): the same run twice weighs it double")
    states = [m.state_dict() for m in models]
    averaged = {k: torch.stack([s[k] for s in states]).mean(0) if v.is_floating_point() else v
                for k, v in states[0].items()}
    soup = models[0]
    soup.load_state_dict(averaged)
    meta = metas[0]
    meta.info = {**{k: v for k, v in meta.info.items() if k != "validation"}, "date": date.today().isoformat(),
                 "soup": [{"run": str(run), "sha256": sha256_file(run / "model.pt"), "seed": seed,
                           "validation": m.info.get("validation")} for run, seed, m in zip(runs, seeds, metas)]}
    save_model(out / "model.pt", soup, meta)
    return out / "model.pt"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="finished training run folders (each holds model.pt)")
    parser.add_argument("--out", type=Path, required=True, help="the soup's run folder")
    args = parser.parse_args(argv)
    try:
        path = average_runs(args.runs, args.out)
    except SoupError as exc:
        print(f"training.soup: {exc}", file=sys.stderr)
        return 2
    print(f"training.soup: {len(args.runs)} runs averaged -> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
