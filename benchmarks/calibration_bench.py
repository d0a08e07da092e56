"""Calibration benchmark: does fusion-calibrate recover known thermal -> RGB homographies, and refuse when it cannot?

    python benchmarks/calibration_bench.py scene [--data ../shared/data/msrs_det] [--part check] [--warps 3]
    python benchmarks/calibration_bench.py target [--trials 10] [--boards 12]
    python benchmarks/calibration_bench.py field [--blocks 2 4 7]

`scene`: the folder's pairs, sorted by name, are cut into blocks of --length consecutive pairs (a driving
sequence); even blocks are `dev` (tuned on), odd ones `check` (measured only). Each block is calibrated --warps
times, its thermal frames re-rendered as a misaligned camera (fusion_ros/calibration/warped_rig.py: rotation
+-3 deg, scale +-5 %, shift +-30 px, perspective +-5e-5, a central 80 % view; every second warp at 320x240),
and once with the thermal frames of another block (other scenes: must be refused). Errors are the largest
distance at the four thermal corners (RGB pixels) from the true homography; `vs unwarped` compares with the same
block calibrated without a warp (what the warp test asks: is the warp undone, whatever the pairs' own
registration error). --rig-registration FILE (a fusion-calibrate output, e.g. fitted on the dev blocks' frames)
adds errors against that registration instead of the identity: the truth when the folder's pairs are not
pixel-aligned themselves (for msrs_det they are not, docs/calibration.md). --standin replaces the thermal
frames with ones rendered from the RGB frames (warped_rig.thermal_standin): exactly registered, so the errors are the method's own.
`target`: rendered checkerboards seen through the same kind of warps. `field`: how the pairs' own registration
departs from pixel alignment, region by region, by the calibration's features and by mutual information.
Writes results.json and results.md into --out and prints the table.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fusion_ros.calibration.scene import (  # noqa: E402
    CalibrationRefused, calibrate_scene, corner_distance, luminance, orientation_features, unit_range)
from fusion_ros.calibration.target import Target, calibrate_target  # noqa: E402
from fusion_ros.calibration.warped_rig import WarpRange, make_rig, render_board, thermal_standin  # noqa: E402
from fusion_ros.labelled_pairs import IR_DIRS, VI_DIRS, LabelledPair, find_subdir, image_files, load_pair_images, natural_key  # noqa: E402
from fusion_ros.node_params import registration_overrides  # noqa: E402

SMALL_THERMAL = (320, 240)
SUCCESS_PX = 2.0
WRONG_PX = 5.0


def markdown_table(rows: list[dict], columns: list[str]) -> str:
    def fmt(v):
        return f"{v:.2f}" if isinstance(v, float) else ("" if v is None else str(v))

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def read_blocks(root: Path, length: int, standin: bool = False) -> list[list[tuple[str, np.ndarray, np.ndarray]]]:
    """Blocks of ``length`` consecutive pairs (name, thermal, RGB); ``standin``: the thermal frames rendered from
    the RGB ones instead (exactly registered)."""
    ir_files = image_files(find_subdir(root, IR_DIRS))
    vi_files = image_files(find_subdir(root, VI_DIRS))
    names = sorted(set(ir_files) & set(vi_files), key=natural_key)
    blocks = []
    for start in range(0, len(names) - length + 1, length):
        block = []
        for name in names[start:start + length]:
            ir, rgb = load_pair_images(LabelledPair(name, ir_files[name], vi_files[name]))
            if standin:
                ir = thermal_standin(rgb, np.random.default_rng(len(block) + start))
            block.append((name, ir, rgb))
        blocks.append(block)
    return blocks


def run_one(block, thermal_source, rig) -> dict:
    """Calibrate one rig sequence; the record of what came out."""
    thermal = [rig.thermal(ir) for _, ir, _ in thermal_source]
    rgb = [c for _, _, c in block]
    start = time.perf_counter()
    try:
        result, refused = calibrate_scene(thermal, rgb), None
    except CalibrationRefused as exc:
        result, refused = exc.calibration, str(exc)
    record = {"seconds": time.perf_counter() - start, "refused": refused,
              "thermal": f"{rig.thermal_wh[0]}x{rig.thermal_wh[1]}"}
    if result is not None:
        record.update(residual=result.halves_px, regional=result.regional_px,
                      agree=f"{result.frames_agreeing}/{result.frames}",
                      null_ratio=result.null_ratio, homography=result.homography.tolist(),
                      error=corner_distance(result.homography, rig.truth, rig.thermal_wh))
    return record


def rig_homography(params_file: str, rgb_wh: tuple[int, int]) -> np.ndarray:
    """The homography of a fusion-calibrate file (registered thermal pixel -> RGB pixel) for frames of rgb_wh."""
    params = registration_overrides(params_file)
    size = (params.get("registration.thermal_width"), params.get("registration.thermal_height"))
    if size != rgb_wh:
        raise SystemExit(f"{params_file} registers {size[0]}x{size[1]} thermal frames, the folder's are {rgb_wh[0]}x{rgb_wh[1]}")
    return np.array(params["registration.homography"], float).reshape(3, 3)


def scene_bench(args) -> dict:
    blocks = read_blocks(Path(args.data), args.length, args.standin)
    indices = [k for k in range(len(blocks)) if args.part == "all" or (k % 2 == (0 if args.part == "dev" else 1))]
    rgb_wh = (blocks[0][0][2].shape[1], blocks[0][0][2].shape[0])
    rig_registration = rig_homography(args.rig_registration, rgb_wh) if args.rig_registration else None
    records = []
    for k in indices:
        block = blocks[k]
        label = f"{block[0][0]}..{block[-1][0]}"
        unwarped = make_rig(np.random.default_rng([args.seed, k]), rgb_wh, ranges=WarpRange(0, 0, 0, 0))
        reference = run_one(block, block, unwarped)
        residual_registration = None
        if reference["refused"] is None:
            residual_registration = np.array(reference["homography"]) @ np.linalg.inv(unwarped.truth)
        for j in range(args.warps):
            rig = make_rig(np.random.default_rng([args.seed, k, j]), rgb_wh,
                           thermal_wh=SMALL_THERMAL if j % 2 else None)
            record = {"block": label, "kind": "warped", **run_one(block, block, rig)}
            for key, registration in (("error_vs_unwarped", residual_registration), ("error_vs_rig", rig_registration)):
                if registration is not None and record.get("homography") is not None:
                    record[key] = corner_distance(np.array(record["homography"]), registration @ rig.truth,
                                                  rig.thermal_wh)
            records.append(record)
            print(_line(record), flush=True)
        other = indices[(indices.index(k) + 2) % len(indices)] if len(indices) > 2 else (k + 2) % len(blocks)
        rig = make_rig(np.random.default_rng([args.seed, k, 99]), rgb_wh,
                       thermal_wh=SMALL_THERMAL if k % 2 else None)
        record = {"block": label, "kind": f"other scenes ({blocks[other][0][0]}..)", **run_one(block, blocks[other], rig)}
        records.append(record)
        print(_line(record), flush=True)
    return {"records": records, "summary": summarise(records), "part": args.part, "data": str(args.data),
            "thermal": "stand-in rendered from RGB" if args.standin else "real",
            "blocks": [f"{blocks[k][0][0]}..{blocks[k][-1][0]}" for k in indices]}


def _line(record: dict) -> str:
    shown = {k: (round(v, 2) if isinstance(v, float) else v) for k, v in record.items() if k != "homography"}
    return json.dumps(shown)


def summarise(records: list[dict]) -> list[dict]:
    warped = [r for r in records if r["kind"] == "warped"]
    other = [r for r in records if r["kind"] != "warped"]
    accepted = [r for r in warped if r["refused"] is None]
    rows = []
    for name, key in (("vs the pairs as registered", "error"), ("vs the block calibrated unwarped", "error_vs_unwarped"),
                      ("vs the rig's registration (--rig-registration)", "error_vs_rig")):
        errors = [r[key] for r in accepted if r.get(key) is not None]
        if not errors and key == "error_vs_rig":
            continue
        rows.append({
            "truth": name, "sequences": len(warped), "reported": len(accepted),
            f"<= {SUCCESS_PX:g} px": f"{sum(e <= SUCCESS_PX for e in errors)} ({sum(e <= SUCCESS_PX for e in errors) / max(len(warped), 1):.0%})",
            "median error": float(np.median(errors)) if errors else None,
            "max error reported": float(max(errors)) if errors else None,
            f"reported > {WRONG_PX:g} px": sum(e > WRONG_PX for e in errors),
            "other-scene sequences refused": f"{sum(r['refused'] is not None for r in other)}/{len(other)}",
            "s per sequence (median)": float(np.median([r["seconds"] for r in records])),
        })
    return rows


def target_bench(args) -> dict:
    target = Target("chessboard", 9, 6)
    records = []
    for trial in range(args.trials):
        rng = np.random.default_rng([args.seed, trial])
        rig = make_rig(rng, (640, 480), thermal_wh=SMALL_THERMAL if trial % 2 else None)
        boards = [render_board(rng, (640, 480), target.cols, target.rows) for _ in range(args.boards)]
        start = time.perf_counter()
        try:
            result = calibrate_target([rig.thermal(t) for t, _ in boards], [c for _, c in boards], target)
            record = {"error": corner_distance(result.homography, rig.truth, rig.thermal_wh), "rms": result.rms_px,
                      "frames": result.frames, "refused": None}
        except CalibrationRefused as exc:
            record = {"refused": str(exc)}
        record.update(trial=trial, thermal=f"{rig.thermal_wh[0]}x{rig.thermal_wh[1]}",
                      seconds=time.perf_counter() - start)
        records.append(record)
        print(_line(record), flush=True)
    errors = [r["error"] for r in records if r["refused"] is None]
    summary = [{"trials": len(records), "refused": len(records) - len(errors),
                "median error": float(np.median(errors)) if errors else None,
                "max error": float(max(errors)) if errors else None,
                "<= 0.5 px": f"{sum(e <= 0.5 for e in errors)}/{len(records)}",
                "s per trial (median)": float(np.median([r["seconds"] for r in records]))}]
    return {"records": records, "summary": summary}


def mutual_information(a: np.ndarray, b: np.ndarray, bins: int = 24) -> float:
    """Mutual information (nats) of two images with values in 0..1."""
    joint = np.bincount((np.clip(a, 0, 0.9999) * bins).astype(int).ravel() * bins
                        + (np.clip(b, 0, 0.9999) * bins).astype(int).ravel(), minlength=bins * bins)
    joint = joint.reshape(bins, bins) / joint.sum()
    outer = joint.sum(1, keepdims=True) @ joint.sum(0, keepdims=True)
    seen = joint > 0
    return float((joint[seen] * np.log(joint[seen] / outer[seen])).sum())


def field_bench(args) -> dict:
    """How the pairs' own registration departs from pixel alignment, region by region: the shift (RGB pixel =
    thermal pixel + shift) that best aligns each region over a block's frames, by the calibration's gradient
    orientation features and, independently, by mutual information of the blurred intensities."""
    blocks = read_blocks(Path(args.data), args.length)
    rows = []
    for k in args.blocks:
        block = blocks[k]
        thermal = [unit_range(ir) for _, ir, _ in block]
        gray = [luminance(c) for _, _, c in block]
        feats_t, feats_r = [orientation_features(t) for t in thermal], [orientation_features(g) for g in gray]
        blur_t = [cv2.GaussianBlur(t, (0, 0), 1.0) for t in thermal]
        blur_r = [unit_range(cv2.GaussianBlur(g, (0, 0), 1.0)) for g in gray]
        height, width = gray[0].shape
        r = args.radius
        ys = np.linspace(r, height - r, args.grid[0] + 1).astype(int)
        xs = np.linspace(r, width - r, args.grid[1] + 1).astype(int)
        for gy in range(args.grid[0]):
            for gx in range(args.grid[1]):
                y0, y1, x0, x1 = ys[gy], ys[gy + 1], xs[gx], xs[gx + 1]
                best = {"features": (-np.inf, 0, 0), "MI": (-np.inf, 0, 0)}
                for dy in range(-r, r + 1):
                    for dx in range(-r, r + 1):
                        feature = sum(float((ft[:, y0:y1, x0:x1] * fr[:, y0 + dy:y1 + dy, x0 + dx:x1 + dx]).sum())
                                      for ft, fr in zip(feats_t, feats_r))
                        mi = sum(mutual_information(bt[y0:y1, x0:x1], br[y0 + dy:y1 + dy, x0 + dx:x1 + dx])
                                 for bt, br in zip(blur_t, blur_r))
                        for key, value in (("features", feature), ("MI", mi)):
                            if value > best[key][0]:
                                best[key] = (value, dx, dy)
                rows.append({"block": f"{block[0][0]}..{block[-1][0]}", "region centre (x, y)":
                             f"({(x0 + x1) // 2}, {(y0 + y1) // 2})",
                             "shift by features": f"({best['features'][1]:+d}, {best['features'][2]:+d})",
                             "shift by MI": f"({best['MI'][1]:+d}, {best['MI'][2]:+d})"})
                print(json.dumps(rows[-1]), flush=True)
    return {"records": rows, "summary": rows}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="mode", required=True)
    scene = sub.add_parser("scene")
    scene.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "msrs_det"))
    scene.add_argument("--part", choices=("dev", "check", "all"), default="check")
    scene.add_argument("--length", type=int, default=24, help="pairs per sequence (default 24)")
    scene.add_argument("--warps", type=int, default=4, help="warped rigs per sequence (default 4)")
    scene.add_argument("--rig-registration", metavar="FILE", help="fusion-calibrate output for the folder's own "
                       "thermal -> RGB registration (default: the pairs are pixel-aligned)")
    scene.add_argument("--standin", action="store_true", help="thermal frames rendered from the RGB ones (exactly "
                       "registered: the method's own precision) instead of the real ones")
    target = sub.add_parser("target")
    target.add_argument("--trials", type=int, default=10)
    target.add_argument("--boards", type=int, default=12, help="board poses per trial (default 12)")
    field = sub.add_parser("field")
    field.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "msrs_det"))
    field.add_argument("--length", type=int, default=24)
    field.add_argument("--blocks", type=int, nargs="+", default=[2, 4, 7], help="block indices (default 2 4 7)")
    field.add_argument("--grid", type=int, nargs=2, default=[3, 4], metavar=("ROWS", "COLS"))
    field.add_argument("--radius", type=int, default=6, help="largest shift tried, pixels (default 6)")
    for sp in (scene, target, field):
        sp.add_argument("--seed", type=int, default=0)
        sp.add_argument("--out", default="bench_out/calibration")
    args = p.parse_args(argv)
    result = {"scene": scene_bench, "target": target_bench, "field": field_bench}[args.mode](args)
    out = Path(args.out) / args.mode
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps({"args": vars(args), **result}, indent=1))
    table = markdown_table(result["summary"], list(result["summary"][0]))
    (out / "results.md").write_text(table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
