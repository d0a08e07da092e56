"""The main job on the embedded default: the real node and the bag evaluator on a sample drive.

    fusion-demo [--out demo_out] [--seconds 6] [--rate 0.25] [--backend auto]

1. Writes a sample drive (a deterministic rosbag2 of 16-bit thermal + RGB at unequal rates, with
   ground truth) unless it is there already.
2. Live: starts the fusion node (its own process, real DDS) with the bundled model, plays the bag into
   it with the project's player and records what the node publishes (fused images, detections, masks,
   overlay) into an mcap bag, measuring end-to-end latency and drops.
3. Offline: replays the same bag through the node's pairing and engine path and writes metrics.json,
   an annotated bag and report.md with pictures (fusion-eval-bag).
4. Real cameras, where labelled real pairs are on disk (`--real-pairs`, default ../shared/data/msrs_det
   beside the checkout): scores the validation blocks by day and by night and writes their report
   with pictures (fusion-eval-pairs).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from .bag.evaluate import main as evaluate_bag_cli
from .pairs_eval import main as evaluate_pairs_cli
from . import topics
from .checkpoint import DEFAULT_MODEL
from .child_process import interrupt
from .paths import config_path

THERMAL, RGB = topics.absolute(topics.THERMAL_TOPIC), topics.absolute(topics.RGB_TOPIC)
REAL_PAIRS = Path("../shared/data/msrs_det")  # MSRS road pairs with boxes, where the project's shared data is
NODE_OUTPUTS = [topics.absolute(t) for t in (topics.FUSED_TOPIC, topics.DETECTIONS_TOPIC, topics.SEGMENTATION_TOPIC,
                                               topics.DETECTION_IMAGE_TOPIC)]
# What the demo writes under --out (the README names each; test/test_packaging.py holds the two together).
SAMPLE_BAG, LIVE_SUMMARY, RECORDING, EVAL_DIR, REAL_PAIRS_DIR = (
    "sample_drive", "live.json", "node_outputs", "eval", "real_pairs")
OUTPUTS = (SAMPLE_BAG, LIVE_SUMMARY, RECORDING, EVAL_DIR, REAL_PAIRS_DIR)


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    print("$", " ".join(cmd), flush=True)
    return subprocess.run(cmd, check=True, **kwargs)


def live_replay(bag: Path, out: Path, model: str, backend: str, rate: float) -> dict:
    """The node in its own process, the player feeding it, the node's outputs recorded."""
    env = dict(os.environ)
    env.setdefault("ROS_DOMAIN_ID", str(40 + os.getpid() % 50))
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    env.setdefault("ROS_LOG_DIR", tempfile.mkdtemp(prefix="fusion_demo_logs_"))
    env.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(config_path("fastdds_large_images.xml")))
    node_cmd = [
        sys.executable, "-m", "fusion_ros.nodes.fusion_node", "--ros-args",
        "--params-file", str(config_path("fusion.yaml")),
        "-p", "lifecycle:=false", "-p", f"model_path:={model}", "-p", f"backend:={backend}",
        "-p", f"thermal_topic:={THERMAL}", "-p", f"rgb_topic:={RGB}", "-p", "publish_detection_image:=true",
        "-p", "use_sim_time:=true",
    ]
    print("$", " ".join(node_cmd), flush=True)
    recording = out / RECORDING
    shutil.rmtree(recording, ignore_errors=True)  # the demo's own output of a previous run (bag writers never overwrite)
    node = subprocess.Popen(node_cmd, env=env)
    try:
        summary = out / LIVE_SUMMARY
        run([sys.executable, "-m", "fusion_ros.nodes.bag_player", str(bag), "--rate", str(rate),
             "--topics", THERMAL, RGB, "--wait-for-subscribers", "120", "--measure", *NODE_OUTPUTS,
             "--measure-out", str(summary), "--record", str(recording), "--linger", "5"], env=env)
        if node.poll() is not None:
            raise RuntimeError(f"the fusion node exited early (code {node.returncode})")
        return json.loads(summary.read_text())
    finally:
        interrupt(node, timeout=20)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("demo_out"))
    parser.add_argument("--seconds", type=float, default=6.0, help="length of the sample drive")
    parser.add_argument("--rate", type=float, default=0.25,
                        help="playback rate for the live node (a 2-core CPU runs ~5 pairs/s)")
    parser.add_argument("--model", default=str(DEFAULT_MODEL))
    parser.add_argument("--backend", default="auto", choices=["auto", "onnxruntime", "torch", "tensorrt"])
    parser.add_argument("--no-live", action="store_true", help="skip the live node (offline evaluation only)")
    parser.add_argument("--real-pairs", type=Path, default=REAL_PAIRS,
                        help="labelled real IR/visible pairs to score too, when the folder exists (default %(default)s)")
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.rate <= 0:
        parser.error("--seconds and --rate must be positive")
    args.out.mkdir(parents=True, exist_ok=True)

    bag = args.out / SAMPLE_BAG
    if not bag.exists():
        run([sys.executable, "-m", "fusion_ros.bag.sample", str(bag), "--seconds", str(args.seconds),
             "--height", "512", "--width", "640", "--seed", "7"])
    live = None if args.no_live else live_replay(bag, args.out, args.model, args.backend, args.rate)
    if live is not None:
        print(f"live node: {json.dumps(live, default=str)[:1500]}")
        print(f"  node outputs recorded in {args.out / RECORDING} (mcap: open in Foxglove)")
    backend = [] if args.backend == "auto" else ["--backend", args.backend]
    rc = evaluate_bag_cli([str(bag), "--out", str(args.out / EVAL_DIR), "--model", args.model, "--overwrite", *backend])
    if rc != 0:
        return rc
    if not args.real_pairs.is_dir():
        print(f"real pairs: {args.real_pairs} not found, skipped (pass --real-pairs DIR to score labelled real pairs)")
        return 0
    return evaluate_pairs_cli([str(args.real_pairs), "--split", "val", "--subset", "day=D$", "--subset", "night=N$",
                               "--out", str(args.out / REAL_PAIRS_DIR), "--model", args.model, "--overwrite", *backend])


if __name__ == "__main__":
    sys.exit(main())
