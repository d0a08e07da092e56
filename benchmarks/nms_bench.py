"""Class-aware NMS time on spread candidates (a script, not a test).

    .venv/bin/python benchmarks/nms_bench.py [--candidates 1000] [--classes 3] [--compare OLD_CHECKOUT]

``fusion_ros.postprocess.batched_nms`` on N candidate boxes spread over a 640x512 image (20..100 px
sides, random scores and classes, IoU 0.6: what decode hands NMS when a frame has many weak detections;
the decoder caps candidates at pre_nms_top_k = 1000). Median of --repeats calls, after one warm-up call.
``--compare DIR`` also times the package in DIR (e.g. the commit before a change, exported with
``git archive``), in alternating rounds in separate processes, and prints the ratio.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def candidates(n: int, classes: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    corner = rng.uniform(0, [620, 492], (n, 2))
    size = rng.uniform(20, 100, (n, 2))
    boxes = np.concatenate([corner, np.minimum(corner + size, [640, 512])], axis=1).astype(np.float32)
    return boxes, rng.random(n).astype(np.float32), rng.integers(0, classes, n)


def time_nms(n: int, classes: int, repeats: int) -> dict:
    from fusion_ros.postprocess import batched_nms

    boxes, scores, labels = candidates(n, classes)
    kept = len(batched_nms(boxes, scores, labels, 0.6))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        batched_nms(boxes, scores, labels, 0.6)
        times.append((time.perf_counter() - t0) * 1e3)
    return {"median_ms": float(np.median(times)), "p95_ms": float(np.percentile(times, 95)), "kept": kept}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=1000)
    parser.add_argument("--classes", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=50, help="calls per round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per checkout")
    parser.add_argument("--compare", nargs="*", default=[], help="other checkouts to time in the same run")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(time_nms(args.candidates, args.classes, args.repeats)))
        return
    from checkouts import run_json, sources

    measured = {label: [] for label, _ in sources(args.compare)}
    child_args = ["--candidates", str(args.candidates), "--classes", str(args.classes), "--repeats", str(args.repeats)]
    kept = {}
    for _ in range(args.rounds):
        for label, source in sources(args.compare):
            out = run_json(source, Path(__file__).resolve(), child_args)
            measured[label].append(out["median_ms"])
            kept[label] = out["kept"]
    base = float(np.median(next(iter(measured.values()))))
    print(f"{args.candidates} candidates, {args.classes} classes, IoU 0.6; median of {args.rounds} rounds x "
          f"{args.repeats} calls\n")
    print("| checkout | NMS ms (median) | kept boxes | vs first |\n|---|---:|---:|---:|")
    for label, values in measured.items():
        ms = float(np.median(values))
        print(f"| {label} | {ms:.2f} | {kept[label]} | {base / ms:.1f}x |")


if __name__ == "__main__":
    main()
