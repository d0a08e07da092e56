"""``fusion-calibrate``: the thermal -> RGB registration of a camera pair, as a parameter file for the node.

    fusion-calibrate --pairs DIR --out registration.yaml --check check.png       # ir/ + vi/ images
    fusion-calibrate --bag drive --thermal-topic /flir/image_raw --rgb-topic /cam/image_raw --out registration.yaml
    fusion-calibrate --bag target_drive --target chessboard:9x6 --out registration.yaml

Exit status: 0 written; 2 unusable input (named); 3 the frames cannot tell the registration (why is printed,
nothing is written).
"""
from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone

from ..topics import RGB_TOPIC, THERMAL_TOPIC
from .frames import CalibrationInputError, FramePairs, pairs_from_bag, pairs_from_folder
from .output import registration_params, write_check_image, write_params_file
from .scene import CalibrationRefused, SceneOptions, calibrate_scene
from .target import Target, calibrate_target

EXIT_BAD_INPUT = 2
EXIT_REFUSED = 3
PROG = "fusion-calibrate"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG, description="Find the homography that maps the thermal camera's pixels onto the RGB camera's, "
        "from many frames of a drive (scene content) or of a heated target, and write it as node parameters.",
        epilog="Exit status: 0 written; 2 unusable input; 3 the frames cannot tell (nothing written).")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--pairs", metavar="DIR", help="folder with ir/ and vi/ images paired by name (each camera "
                        "at its own resolution)")
    source.add_argument("--bag", metavar="BAG", help="rosbag2 folder or .mcap/.db3 file; pairs come from the node's "
                        "synchroniser, spread evenly over the recording")
    p.add_argument("--thermal-topic", default=THERMAL_TOPIC, help=f"--bag: thermal image topic (default {THERMAL_TOPIC})")
    p.add_argument("--rgb-topic", default=RGB_TOPIC, help=f"--bag: RGB image topic (default {RGB_TOPIC})")
    p.add_argument("--params-file", help="--bag: the node's parameter YAML (its sync settings pair the frames)")
    p.add_argument("--target", metavar="KIND:COLSxROWS", type=_target,
                   help="calibrate from a target both cameras see: chessboard:9x6 (inner corners) or circles:4x11 "
                   "(symmetric grid); default: from scene content")
    p.add_argument("--frames", type=_positive, default=32, help="frame pairs used, spread evenly (default 32)")
    p.add_argument("--fov-ratio", type=float, nargs=2, metavar=("LOW", "HIGH"), default=SceneOptions.fov_ratio,
                   help="scene mode: thermal horizontal field of view / RGB's, range searched (default %(default)s)")
    p.add_argument("--max-rotation", type=float, default=SceneOptions.max_rotation_deg, metavar="DEG",
                   help="scene mode: largest roll between the cameras searched (default %(default)s)")
    p.add_argument("--max-regional", type=float, default=SceneOptions.max_regional_px, metavar="PX",
                   help="largest median shift of the view's regions beyond the fitted homography accepted (RGB "
                        f"pixels at 640 px width; default {SceneOptions.max_regional_px}): larger means the cameras "
                        "follow no one homography")
    p.add_argument("--out", required=True, metavar="FILE", help="parameter file to write (ROS params YAML)")
    p.add_argument("--check", metavar="PNG", help="also write thermal outlines over RGB frames, before and after")
    return p


def _target(text: str) -> Target:
    try:
        return Target.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _read(args) -> FramePairs:
    if args.pairs:
        return pairs_from_folder(args.pairs, args.frames)
    return pairs_from_bag(args.bag, args.thermal_topic, args.rgb_topic, args.frames, args.params_file)


def _calibrate(args, pairs: FramePairs) -> tuple:
    """(homography, lines describing the evidence)."""
    if args.target is not None:
        result = calibrate_target(pairs.thermal, pairs.rgb, args.target)
        halves = "" if result.halves_px is None else f", halves of the frames {result.halves_px:.2f} px apart"
        return result.homography, [
            f"target {args.target} in {result.frames} of {len(pairs.rgb)} frame pairs, {result.points} points "
            f"covering {result.coverage:.0%} of the thermal frame",
            f"residual {result.rms_px:.2f} px RMS (RGB pixels){halves}"]
    options = SceneOptions(fov_ratio=tuple(args.fov_ratio), max_rotation_deg=args.max_rotation,
                           max_regional_px=args.max_regional)
    result = calibrate_scene(pairs.thermal, pairs.rgb, options)
    return result.homography, [
        f"scene content of {result.frames} frame pairs; {result.frames_agreeing} agree on their own",
        f"residual {result.halves_px:.2f} px: the two halves of the frames, fitted apart, put the thermal corners "
        "this far apart (RGB pixels)",
        f"regions of the view, each aligned on its own, a median {result.regional_px:.2f} px from the fit",
        f"confidence {result.confidence:.2f}: match {result.null_ratio:.1f}x the mirrored-scene null, "
        f"{result.seconds:.0f} s"]


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.fov_ratio[0] <= 0 or args.fov_ratio[1] < args.fov_ratio[0]:
        print(f"{PROG}: error: --fov-ratio needs 0 < LOW <= HIGH, got {args.fov_ratio}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if not args.max_regional > 0:  # also NaN
        print(f"{PROG}: error: --max-regional needs a positive number of pixels, got {args.max_regional}",
              file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        pairs = _read(args)
    except CalibrationInputError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    (tw, th), (rw, rh) = pairs.thermal_wh, pairs.rgb_wh
    print(f"{PROG}: {pairs.source}: thermal {tw}x{th}, RGB {rw}x{rh}")
    try:
        homography, evidence = _calibrate(args, pairs)
    except CalibrationRefused as exc:
        print(f"{PROG}: cannot tell the registration: {exc}. Nothing written.", file=sys.stderr)
        return EXIT_REFUSED
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    comments = [f"thermal -> RGB registration by {PROG}, {stamp}", f"from {pairs.source}",
                f"thermal {tw}x{th} -> RGB {rw}x{rh}", *evidence]
    out = write_params_file(args.out, registration_params(homography, pairs.thermal_wh, pairs.rgb_wh), comments)
    for line in evidence:
        print(f"{PROG}: {line}")
    print(f"{PROG}: wrote {out} (use it with --params-file, beside the vehicle's own parameter file)")
    if args.check:
        print(f"{PROG}: wrote {write_check_image(args.check, pairs.thermal, pairs.rgb, homography)}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
