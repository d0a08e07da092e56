"""Fixed fused-luminance rules on real pairs: how the "extremes" head's prior was chosen (docs/fusion.md).

    python benchmarks/fusion_rules.py ../shared/data/ivf_samples/RoadScene ../shared/data/ivf_samples/TNO \
        [--stretch 1.2,1.25 1.15,1.3 ...] [--exclude NAMES.txt] [--out bench_out/fusion_rules]

Every pair is fused as the deployed model fuses it: the rule's coefficient map is computed at the network
size (640x480, model.stretched_max_map at 1/2 of it) and applied at the pair's own size by the engine's
numpy path (fusion_map.fuse_luminance, "extremes" head). Scored under CDDFuse's conventions beside the
pixel average and the pixel maximum; where a folder is one of the sets with a published CDDFuse row
(RoadScene-50, TNO-25) the table counts the metrics each rule beats it on. `--exclude` leaves out the
names listed in a file (e.g. roadscene_all/test50.txt, to check a rule on the pairs no table was read on).
Writes rules.json and rules.md into --out.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fusion_ros.fusion_map import fuse_luminance  # noqa: E402
from fusion_ros.metrics import METRIC_KEYS  # noqa: E402
from fusion_ros.metrics.fusion import fusion_metrics_of_many, grey_image  # noqa: E402
from fusion_ros.model import STRETCH_GLOBAL, STRETCH_LOCAL, stretched_max_map  # noqa: E402
from fusion_ros.progress import progress  # noqa: E402
from fusion_ros.quality_eval import baseline_images, load_references  # noqa: E402

NET = (480, 640)
COUNTED = ("EN", "SD", "SF", "MI", "SCD", "VIF", "Qabf", "SSIM")  # the eight of the published rows


def stretched_max(ir: np.ndarray, vi: np.ndarray, local: float, overall: float) -> np.ndarray:
    """The prior's fused grey (uint8) at the pair's size, computed as the deployed model computes it."""
    small = [torch.from_numpy(cv2.resize(x, NET[::-1], interpolation=cv2.INTER_AREA).astype(np.float32) / 255)[None, None]
             for x in (ir, vi)]
    coefficients = stretched_max_map(*small, stride=2, local=local, overall=overall)[0].numpy()
    return fuse_luminance(coefficients, ir.astype(np.float32) / 255, vi, "extremes").copy()


def score_folder(folder: Path, rules: list[tuple[float, float]], exclude: set[str]) -> tuple[list[str], dict]:
    names = sorted(p.name for p in (folder / "ir").iterdir() if p.stem not in exclude and p.name not in exclude)
    means: dict[str, dict[str, list]] = {}
    for name in progress(names, desc=folder.name, unit="pair"):
        ir = grey_image(cv2.imread(str(folder / "ir" / name), cv2.IMREAD_GRAYSCALE), "cddfuse").astype(np.uint8)
        vi = grey_image(cv2.imread(str(folder / "vi" / name), cv2.IMREAD_COLOR), "cddfuse").astype(np.uint8)
        average, brightest, *_ = baseline_images(ir, vi)
        images = {"pixel average": average, "pixel max": brightest,
                  **{f"stretched max {l:g} / {g:g}": stretched_max(ir, vi, l, g) for l, g in rules}}
        for method, metrics in fusion_metrics_of_many(images, ir, vi, "cddfuse").items():
            for key in METRIC_KEYS:
                means.setdefault(method, {}).setdefault(key, []).append(metrics[key])
    return names, {m: {k: float(np.nanmean(v)) for k, v in per.items()} for m, per in means.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folders", nargs="+", type=Path, help="folders of ir/ + vi/ pairs")
    parser.add_argument("--stretch", nargs="+", default=[f"{STRETCH_LOCAL},{STRETCH_GLOBAL}", "1.15,1.3", "1.2,1.35"],
                        help="local,global contrast factors of each stretched-maximum rule")
    parser.add_argument("--exclude", type=Path, help="a file of pair names to leave out")
    parser.add_argument("--out", type=Path, default=ROOT / "bench_out" / "fusion_rules")
    args = parser.parse_args(argv)
    rules = [tuple(float(v) for v in s.split(",")) for s in args.stretch]
    exclude = set(args.exclude.read_text().split()) if args.exclude else set()
    published = list(load_references()["cddfuse"]["sets"].values())
    args.out.mkdir(parents=True, exist_ok=True)
    results, lines = {}, ["# Fixed fused-luminance rules (CDDFuse's conventions)", ""]
    for folder in args.folders:
        names, means = score_folder(folder, rules, exclude)
        # a published mean compares only with all of its pairs
        entry = next((e for e in published if sorted(e["names"]) == sorted(Path(n).stem for n in names)), None)
        row, decimals = (entry["row"], entry["decimals"]) if entry else (None, None)
        results[str(folder)] = {"pairs": len(names), "means": means, "published": row}
        lines += [f"## {folder} ({len(names)} pairs)", "",
                  "| rule | " + " | ".join(COUNTED) + " | > average | > CDDFuse |", "|---" * (len(COUNTED) + 3) + "|"]
        average = means["pixel average"]
        for method, m in means.items():
            above = sum(m[k] > average[k] for k in COUNTED)
            beats = sum(round(m[k], decimals) > row[k] for k in COUNTED) if row else None
            lines.append(f"| {method} | " + " | ".join(f"{m[k]:.3f}" for k in COUNTED)
                         + f" | {above}/8 | {'-' if beats is None else f'{beats}/8'} |")
        if row:
            lines.append("| CDDFuse (published) | " + " | ".join(f"{row[k]:g}" for k in COUNTED) + " | | |")
        lines.append("")
    (args.out / "rules.json").write_text(json.dumps(results, indent=1))
    (args.out / "rules.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
