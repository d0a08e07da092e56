"""End-to-end latency, node overhead and memory soak of the fusion node (a script, not a test).

    bash scripts/with_ros_env.sh .venv/bin/python benchmarks/node_latency.py [--pairs 10000] [--rate 30]

Starts the node (``python -m fusion_ros.nodes.fusion_node``, plain mode, config/fusion.yaml) in its own
process on a private DDS domain, publishes thermal (mono16) + RGB (bgr8) pairs of generated scenes at
--rate Hz and --width x --height from this process, each stamped with the publish time, and measures:

  * end-to-end latency: RGB publish -> fused/image received here (same machine, same clock), per output;
  * what the node reports on /diagnostics: engine.infer p50/p95, node overhead p50/p95 (everything in the
    worker but engine.infer: decoding, thermal normalisation, message building, publishing) and pair ->
    published p50/p95, plus pairs dropped because the engine was busy (latest-pair-only slot);
  * the node process's RSS, sampled every second, over the whole run (the soak: --pairs pairs).

Prints one JSON object and a Markdown table. With no trained model (fusion_ros/models/default.pt) a
random-weight model of the same architecture is used (same compute, no detections).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


# Fast DDS profile with 16 MB shared-memory segments: with the default transports (and with
# ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST, which leaves only UDP loopback) best-effort 1 MB images are
# mostly lost as fragments on this kind of machine; --fastdds-shm measures the node with this profile.
FASTDDS_SHM_PROFILE = Path(__file__).resolve().parents[1] / "config" / "fastdds_large_images.xml"


def memory_mb(pid: int) -> dict[str, float] | None:
    """VmRSS and its parts (RssAnon: the process's own heap; RssShmem: DDS shared-memory segments it has
    touched, which are shared with the publisher) in MB, from /proc/PID/status."""
    wanted = {"VmRSS:": "rss", "RssAnon:": "anon", "RssShmem:": "shmem"}
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key = line.split(maxsplit=1)[0] if line.strip() else ""
                if key in wanted:
                    out[wanted[key]] = int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return out if "rss" in out else None


def pct(values, q) -> float | None:
    return float(np.percentile(values, q)) if len(values) else None


def make_model(tmp: Path, height: int, width: int) -> Path:
    from fusion_ros.checkpoint import save_untrained_model

    return save_untrained_model(tmp / "random_weights.pt", input_size=(height, width))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=10000, help="pairs to publish (soak length)")
    parser.add_argument("--rate", type=float, default=30.0, help="input rate, Hz")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--model", default="", help="model file (default: the bundled model, else random weights)")
    parser.add_argument("--backend", default="auto", choices=["auto", "onnxruntime", "torch", "tensorrt"])
    parser.add_argument("--num-threads", type=int, default=0, help="engine CPU threads (0: library default)")
    parser.add_argument("--ort-spinning", action="store_true",
                        help="let ONNX Runtime's threads busy-wait between frames (onnxruntime.allow_spinning)")
    parser.add_argument("--input-reliability", default="best_effort", choices=["best_effort", "reliable"],
                        help="the node's input_qos.reliability")
    parser.add_argument("--fastdds-shm", action="store_true",
                        help="run both processes with a Fast DDS profile using 16 MB shared-memory segments")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds excluded from latency statistics")
    parser.add_argument("--json", default="", help="also write the JSON result here")
    args = parser.parse_args(argv)
    if args.pairs < 1 or args.rate <= 0:
        parser.error("--pairs must be >= 1 and --rate > 0")

    tmp = Path(tempfile.mkdtemp(prefix="fusion_bench_"))
    domain = 170 + os.getpid() % 50
    os.environ.update(ROS_DOMAIN_ID=str(domain), ROS_LOG_DIR=str(tmp / "ros_log"))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")  # keep the traffic on this host
    if args.fastdds_shm:
        os.environ["FASTDDS_DEFAULT_PROFILES_FILE"] = str(FASTDDS_SHM_PROFILE)

    from fusion_ros.checkpoint import DEFAULT_MODEL

    model = Path(args.model) if args.model else DEFAULT_MODEL
    model_kind = "given" if args.model else "bundled default.pt"
    if not model.exists():
        model = make_model(tmp, args.height, args.width)
        model_kind = "random weights (default.pt not trained yet)"

    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    from fusion_ros.child_process import interrupt
    from fusion_ros.image_conversions import array_to_image_fields
    from fusion_ros.nodes.spinning import BackgroundSpin
    from fusion_ros.synthetic import SceneGenerator

    # ---------------------------------------------------------------------------- the node process
    env = dict(os.environ, PYTHONUNBUFFERED="1", RCUTILS_COLORIZED_OUTPUT="0")
    log_path = tmp / "node.log"
    node_args = [
        sys.executable, "-m", "fusion_ros.nodes.fusion_node", "--ros-args",
        "--params-file", str(ROOT / "config" / "fusion.yaml"),
        "-p", "lifecycle:=false", "-p", f"model_path:={model}", "-p", f"backend:={args.backend}",
        "-p", f"num_threads:={args.num_threads}", "-p", "diagnostics.period:=1.0",
        "-p", f"input_qos.reliability:={args.input_reliability}",
        "-p", f"onnxruntime.allow_spinning:={str(args.ort_spinning).lower()}",
    ]
    log_file = open(log_path, "w")
    proc = subprocess.Popen(node_args, cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT)

    context = Context()
    rclpy.init(context=context, domain_id=domain)
    node = rclpy.create_node("fusion_bench", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    lock = threading.Lock()
    latencies: list[tuple[float, float]] = []  # (receive monotonic, ms)
    received = {"fused": 0, "detections": 0}
    last_engine: dict = {}
    last_sync: dict = {}
    last_inputs: dict = {"thermal": {}, "rgb": {}}

    def on_fused(msg):
        now_ns = time.time_ns()
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        with lock:
            received["fused"] += 1
            latencies.append((time.monotonic(), (now_ns - stamp) * 1e-6))

    def on_dets(msg):
        with lock:
            received["detections"] += 1

    def on_diag(msg):
        for status in msg.status:
            values = {kv.key: kv.value for kv in status.values}
            if status.name == "/fusion_node: engine":
                last_engine.clear()
                last_engine.update(values)
            elif status.name == "/fusion_node: synchronizer":
                last_sync.clear()
                last_sync.update(values)
            elif status.name in ("/fusion_node: thermal input", "/fusion_node: rgb input"):
                last_inputs[status.name.split(": ")[1].split()[0]] = values

    from vision_msgs.msg import Detection2DArray

    qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
    node.create_subscription(Image, "fused/image", on_fused, qos)
    node.create_subscription(Detection2DArray, "detections", on_dets, qos)
    node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 10)
    from fusion_ros.topics import RGB_TOPIC, THERMAL_TOPIC

    pub_thermal = node.create_publisher(Image, THERMAL_TOPIC, qos)
    pub_rgb = node.create_publisher(Image, RGB_TOPIC, qos)
    spinner = BackgroundSpin(executor)

    # pre-rendered frames (the generator is not what is measured)
    generator = SceneGenerator(7, height=args.height, width=args.width)
    frames = []
    for i in range(4):
        sample = generator.generate(i, condition=("night", "fog", "day", "glare")[i])
        thermal = Image(**array_to_image_fields(sample.thermal, "mono16"))
        thermal.header.frame_id = "thermal_optical"
        rgb = Image(**array_to_image_fields(np.ascontiguousarray(sample.rgb[:, :, ::-1]), "bgr8"))
        rgb.header.frame_id = "rgb_optical"
        frames.append((thermal, rgb))

    memory: list[tuple[float, dict[str, float]]] = []  # (t, memory_mb())
    stop = threading.Event()

    def sample_memory():
        t0 = time.monotonic()
        while not stop.is_set():
            value = memory_mb(proc.pid)
            if value is not None:
                memory.append((time.monotonic() - t0, value))
            stop.wait(1.0)

    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and (pub_thermal.get_subscription_count() == 0 or
                                               pub_rgb.get_subscription_count() == 0):
            if proc.poll() is not None:
                raise RuntimeError(f"node exited with {proc.returncode}:\n{log_path.read_text()}")
            time.sleep(0.1)
        if pub_rgb.get_subscription_count() == 0:
            raise RuntimeError(f"node never subscribed:\n{log_path.read_text()}")
        time.sleep(1.0)  # let the node's publishers match our subscriptions
        sampler = threading.Thread(target=sample_memory, daemon=True)
        sampler.start()

        period = 1.0 / args.rate
        started = time.monotonic()
        late = 0
        for i in range(args.pairs):
            target = started + i * period
            delay = target - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            elif delay < -period:
                late += 1
            thermal, rgb = frames[i % len(frames)]
            stamp = time.time_ns()
            for msg in (thermal, rgb):
                msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, 1_000_000_000)
            pub_thermal.publish(thermal)
            pub_rgb.publish(rgb)
        publish_s = time.monotonic() - started
        time.sleep(2.5)  # drain + one more diagnostics message
        stop.set()
        sampler.join(2.0)
    finally:
        stop.set()
        interrupt(proc, timeout=15)
        log_file.close()
        spinner.stop()
        node.destroy_node()
        rclpy.try_shutdown(context=context)

    with lock:
        measured = [ms for t, ms in latencies if t - started >= args.warmup]
    rss = [(t, m["rss"]) for t, m in memory]
    rss_values = [v for _, v in rss]

    def first_last(part: str) -> list:
        values = [m.get(part) for _, m in memory]
        return [round(values[0], 1), round(values[-1], 1)] if values and None not in values else [None, None]

    half = [(t, v) for t, v in rss if t >= rss[-1][0] / 2] if rss else []
    slope = None
    if len(half) >= 3:
        t, v = np.array(half).T
        slope = float(np.polyfit(t, v, 1)[0] * 60.0)

    def num(key, source):
        try:
            return float(source[key])
        except (KeyError, ValueError):
            return None

    result = {
        "input": {"pairs": args.pairs, "rate_hz": args.rate, "size_wh": [args.width, args.height],
                  "node_input_reliability": args.input_reliability,
                  "ort_spinning": args.ort_spinning,
                  "transport": "Fast DDS SHM 16 MB segments" if args.fastdds_shm else "rmw default",
                  "publish_seconds": round(publish_s, 2), "late_publishes": late},
        "model": str(model), "model_kind": model_kind, "backend": last_engine.get("backend"),
        "cpu_count": os.cpu_count(), "load_avg_1min": os.getloadavg()[0],
        "outputs": {"fused": received["fused"], "detections": received["detections"],
                    "output_rate_hz": round(received["fused"] / publish_s, 2),
                    "processed_fraction": round(received["fused"] / args.pairs, 4),
                    "worker_dropped_pairs": num("worker_dropped_pairs", last_sync),
                    "sync_pairs": num("pairs", last_sync),
                    "received_by_node": {k: num("received", v) for k, v in last_inputs.items()},
                    "unpaired_dropped": {k: num(f"{k}_unpaired_dropped", last_sync) for k in ("thermal", "rgb")}},
        "end_to_end_ms": {"p50": pct(measured, 50), "p95": pct(measured, 95),
                          "max": max(measured) if measured else None, "n": len(measured)},
        "node_reported_ms": {
            "engine_p50": num("engine_ms_p50", last_engine), "engine_p95": num("engine_ms_p95", last_engine),
            "overhead_p50": num("node_overhead_ms_p50", last_engine),
            "overhead_p95": num("node_overhead_ms_p95", last_engine),
            "overhead_prepare_p50": num("node_overhead.prepare_ms_p50", last_engine),
            "overhead_publish_p50": num("node_overhead.publish_ms_p50", last_engine),
            "overhead_publish_p95": num("node_overhead.publish_ms_p95", last_engine),
            "queue_wait_p50": num("queue_wait_ms_p50", last_engine),
            "pair_to_publish_p50": num("pair_to_publish_ms_p50", last_engine),
            "pair_to_publish_p95": num("pair_to_publish_ms_p95", last_engine),
        },
        "rss_mb": {"first": rss_values[0] if rss_values else None,
                   "after_warmup": next((v for t, v in rss if t >= args.warmup), None),
                   "last": rss_values[-1] if rss_values else None,
                   "max": max(rss_values) if rss_values else None, "samples": len(rss_values),
                   "slope_mb_per_min_second_half": slope,
                   "every_10s": [round(v, 1) for t, v in rss[::10]],
                   "anon_first_last": first_last("anon"), "shmem_first_last": first_last("shmem"),
                   "anon_every_10s": [round(m.get("anon", float("nan")), 1) for _, m in memory[::10]]},
        "engine_failures": num("failures", last_engine),
        "node_log_tail": log_path.read_text().splitlines()[-5:],
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")

    def fmt(v, unit=""):
        return "-" if v is None else (f"{v:.1f}{unit}" if isinstance(v, float) else f"{v}{unit}")

    r, e2e, rep, mem = result, result["end_to_end_ms"], result["node_reported_ms"], result["rss_mb"]
    print()
    print(f"| fusion node, {args.width}x{args.height} @ {args.rate:g} Hz, {args.pairs} pairs, {r['backend']}, "
          f"{model_kind}, inputs {args.input_reliability}, {r['input']['transport']}, "
          f"ORT spinning {'on' if args.ort_spinning else 'off'} | value |")
    print("|---|---|")
    rows = [
        ("end-to-end latency p50 / p95 (publish -> fused/image received)",
         f"{fmt(e2e['p50'])} / {fmt(e2e['p95'])} ms"),
        ("engine.infer p50 / p95", f"{fmt(rep['engine_p50'])} / {fmt(rep['engine_p95'])} ms"),
        ("node overhead (all but engine.infer) p50 / p95",
         f"{fmt(rep['overhead_p50'])} / {fmt(rep['overhead_p95'])} ms"),
        ("  of which: inputs decoded + normalised p50; outputs built + published p50 / p95",
         f"{fmt(rep['overhead_prepare_p50'])}; {fmt(rep['overhead_publish_p50'])} / "
         f"{fmt(rep['overhead_publish_p95'])} ms"),
        ("pair complete -> outputs published p50 / p95",
         f"{fmt(rep['pair_to_publish_p50'])} / {fmt(rep['pair_to_publish_p95'])} ms"),
        ("output rate (processed fraction of input pairs)",
         f"{r['outputs']['output_rate_hz']} Hz ({r['outputs']['processed_fraction']:.1%})"),
        ("frames received by the node thermal / rgb (of pairs published)",
         f"{fmt(r['outputs']['received_by_node']['thermal'])} / {fmt(r['outputs']['received_by_node']['rgb'])}"),
        ("pairs formed / dropped by the latest-pair slot (engine busy)",
         f"{fmt(r['outputs']['sync_pairs'])} / {fmt(r['outputs']['worker_dropped_pairs'])}"),
        (f"node RSS at start / after {args.warmup:g} s / last / max",
         f"{fmt(mem['first'])} / {fmt(mem['after_warmup'])} / {fmt(mem['last'])} / {fmt(mem['max'])} MB"),
        ("  of which private (RssAnon) first / last; DDS shared memory (RssShmem) first / last",
         " / ".join(map(fmt, mem["anon_first_last"])) + "; " + " / ".join(map(fmt, mem["shmem_first_last"])) + " MB"),
        ("RSS slope over the second half", fmt(mem["slope_mb_per_min_second_half"], " MB/min")),
        ("CPU cores / 1-min load average", f"{r['cpu_count']} / {r['load_avg_1min']:.2f}"),
    ]
    for name, value in rows:
        print(f"| {name} | {value} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
