"""Throughput of the synthetic thermal+RGB generator on one CPU thread (not a test).

    .venv/bin/python benchmarks/synthetic_bench.py [--count 200] [--height 512] [--width 640]

Prints one line: pairs/s over all conditions by wall clock and by this process's CPU time (the
latter is what one core gives when the machine is shared), then the per-condition rate. The target is
>= 50 pairs/s at 640x512 on one core.
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fusion_ros.synthetic import CONDITIONS, SceneGenerator  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200, help="pairs to time (default 200)")
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)
    gen = SceneGenerator(args.seed, args.height, args.width)
    for i in range(5):  # warm-up: noise banks, imports, caches
        gen.generate(10_000_000 + i)
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(args.count):
        gen.generate(i)
    total, cpu = time.perf_counter() - t0, time.process_time() - c0
    per = []
    n = max(1, args.count // 4)
    for cond in CONDITIONS:
        c = time.process_time()
        for i in range(n):
            gen.generate(i, cond)
        per.append(f"{cond} {n / (time.process_time() - c):.0f}")
    print(f"synthetic_bench: {args.width}x{args.height}, {args.count} pairs, 1 thread: "
          f"{args.count / total:.1f} pairs/s wall ({1e3 * total / args.count:.1f} ms/pair), "
          f"{args.count / cpu:.1f} pairs/s of CPU time; per condition (CPU time) pairs/s: " + ", ".join(per))
    return 0


if __name__ == "__main__":
    sys.exit(main())
