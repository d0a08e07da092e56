"""Start-up time and peak memory of the ONNX Runtime path (a script, not a test).

    bash scripts/with_ros_env.sh .venv/bin/python benchmarks/startup_bench.py [--rounds 3] [--compare OLD_CHECKOUT]

Two measurements, each in fresh processes with the bundled model's ONNX export (fusion_ros/models/
default.onnx, 640x512, onnxruntime on the CPU with its default threads):

  * engine: a Python process that imports fusion_ros.engine, creates the ONNX Runtime engine and runs one
    640x512 pair: seconds from process start to engine ready and to the first result, its peak RSS
    (ru_maxrss) and whether torch got imported;
  * node: the real node (``python -m fusion_ros.nodes.fusion_node``, plain mode, backend onnxruntime, a
    private DDS domain): seconds from process start to its "active:" log line (engine loaded, subscribed),
    its peak RSS then (VmHWM) and whether libtorch is mapped into it.

``--compare DIR`` measures the package in DIR too (e.g. the commit before a change, exported with
``git archive``), in alternating rounds, so the ratios come from one run on one machine. Medians of the rounds.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from fusion_ros.child_process import interrupt

HERE = Path(__file__).resolve()


def child() -> None:
    """Runs in the measured process: engine ready, first result, peak RSS."""
    import resource

    import fusion_ros
    from fusion_ros.engine import create_engine

    model = Path(fusion_ros.__file__).parent / "models" / "default.onnx"  # found the same way in every checkout
    engine = create_engine(model, backend="onnxruntime", device="cpu")
    ready = time.monotonic()
    rng = np.random.default_rng(0)
    thermal = rng.integers(26000, 34000, (512, 640), dtype=np.uint16)
    rgb = rng.integers(0, 256, (512, 640, 3), dtype=np.uint8)
    started = time.monotonic()
    engine.infer(thermal, rgb)
    first = ready + time.monotonic() - started  # the input generation is not part of start-up
    print(json.dumps({"ready": ready, "first": first, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                      / 1024.0, "torch": "torch" in sys.modules}))


def measure_engine(source: Path) -> dict:
    from checkouts import checkout_env

    start = time.monotonic()
    proc = subprocess.run([sys.executable, str(HERE), "--child"], cwd=source, env=checkout_env(source),
                          capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"engine start-up in {source} failed:\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"ready_s": out["ready"] - start, "first_s": out["first"] - start, "peak_rss_mb": out["peak_rss_mb"],
            "torch": out["torch"]}


def _proc_status(pid: int, key: str) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def measure_node(source: Path, domain: int) -> dict:
    from checkouts import checkout_env

    model = source / "fusion_ros" / "models" / "default.onnx"
    env = checkout_env(source)
    with tempfile.TemporaryDirectory() as logs:
        env.update(ROS_DOMAIN_ID=str(domain), ROS_LOG_DIR=logs, PYTHONUNBUFFERED="1",
                   RCUTILS_LOGGING_BUFFERED_STREAM="0")
        start = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "fusion_ros.nodes.fusion_node", "--ros-args", "-p",
                                 "lifecycle:=false", "-p", f"model_path:={model}", "-p", "backend:=onnxruntime"],
                                cwd=source, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        lines = []
        try:
            for line in proc.stdout:
                lines.append(line)
                if "active:" in line:
                    active = time.monotonic() - start
                    break
            else:
                raise RuntimeError(f"the node in {source} exited before it was active:\n{''.join(lines)[-3000:]}")
            peak = _proc_status(proc.pid, "VmHWM:")
            with open(f"/proc/{proc.pid}/maps") as f:
                torch = "libtorch" in f.read()
        finally:
            interrupt(proc, timeout=30)
    return {"active_s": active, "peak_rss_mb": peak, "torch": torch}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--compare", nargs="*", default=[], help="other checkouts to measure in the same run")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child()
        return
    from checkouts import sources

    checkouts = sources(args.compare)
    engine = {label: [] for label, _ in checkouts}
    node = {label: [] for label, _ in checkouts}
    domain = 100 + os.getpid() % 100
    for _ in range(args.rounds):
        for label, source in checkouts:
            engine[label].append(measure_engine(source))
            node[label].append(measure_node(source, domain))

    def med(rows, key):
        return float(np.median([r[key] for r in rows]))

    first = checkouts[0][0]
    print(f"bundled model, ONNX Runtime CPU, 640x512; medians of {args.rounds} rounds\n")
    print("| checkout | engine ready s | first result s | engine peak RSS MB | torch imported | node active s "
          "| node peak RSS MB | libtorch in node |\n|---|---:|---:|---:|---|---:|---:|---|")
    for label, _ in checkouts:
        e, n = engine[label], node[label]
        print(f"| {label} | {med(e, 'ready_s'):.2f} | {med(e, 'first_s'):.2f} | {med(e, 'peak_rss_mb'):.0f} | "
              f"{'yes' if e[0]['torch'] else 'no'} | {med(n, 'active_s'):.2f} | {med(n, 'peak_rss_mb'):.0f} | "
              f"{'yes' if n[0]['torch'] else 'no'} |")
    if len(checkouts) > 1:
        e0, n0 = engine[first], node[first]
        e1, n1 = engine[checkouts[-1][0]], node[checkouts[-1][0]]
        print(f"\n{checkouts[-1][0]} vs {first}: first result {med(e0, 'first_s') / med(e1, 'first_s'):.2f}x sooner, "
              f"engine peak RSS {med(e0, 'peak_rss_mb') / med(e1, 'peak_rss_mb'):.2f}x lower, node active "
              f"{med(n0, 'active_s') / med(n1, 'active_s'):.2f}x sooner, node peak RSS "
              f"{med(n0, 'peak_rss_mb') / med(n1, 'peak_rss_mb'):.2f}x lower")


if __name__ == "__main__":
    main()
