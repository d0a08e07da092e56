"""Models against a baseline in ONE process, their calls alternated: a throughput ratio free of the drift
between processes that engine_bench.py's fresh-process rounds see on a shared 2-core machine.

    python benchmarks/engine_ab.py MODEL.onnx [MODEL2.onnx ...] --baseline OLD.onnx [--backend onnxruntime]
           [--threads 2] [--frame 640x480] [--calls 250]

Each model (its sidecar beside it) is loaded with fusion_ros.engine.create_engine and fed the same synthetic
frame pair (uint16 thermal, uint8 RGB) through Engine.infer, pre- and post-processing included; after 10
warm-up calls per engine the engines take turns, one call each, `--calls` times. Prints the median ms per call,
pairs/s and each model's throughput over the baseline's.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from fusion_ros.engine import create_engine


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+")
    parser.add_argument("--baseline", required=True)
    parser.add_argument("--backend", default="onnxruntime")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--frame", default="640x480", help="WIDTHxHEIGHT of the camera frames")
    parser.add_argument("--calls", type=int, default=250)
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.frame.lower().split("x"))
    paths = [*args.models, args.baseline]
    engines = [create_engine(path, backend=args.backend, num_threads=args.threads) for path in paths]
    rng = np.random.default_rng(0)
    thermal = rng.integers(25000, 36000, (height, width), dtype=np.uint16)
    rgb = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    for engine in engines:
        for _ in range(10):
            engine.infer(thermal, rgb)
    seconds: list[list[float]] = [[] for _ in engines]
    for _ in range(args.calls):
        for engine, times in zip(engines, seconds):
            start = time.perf_counter()
            engine.infer(thermal, rgb)
            times.append(time.perf_counter() - start)
    medians = [statistics.median(times) for times in seconds]
    print(f"| model | backend | frame | median ms per call | pairs/s | vs baseline |\n|---|---|---|---:|---:|---:|")
    for index, (path, engine, median) in enumerate(zip(paths, engines, medians)):
        ratio = "" if index == len(paths) - 1 else f"{medians[-1] / median:.3f}x"  # the last is the baseline
        print(f"| {path} | {engine.backend} | {args.frame} | {1e3 * median:.1f} | {1 / median:.2f} | {ratio} |")


if __name__ == "__main__":
    main()
