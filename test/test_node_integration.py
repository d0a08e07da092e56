"""The fusion node on real rclpy / Fast DDS, in separate processes, fed like a vehicle's drivers feed it.

Run with the vision_msgs workspace sourced:
    bash scripts/with_ros_env.sh .venv/bin/python -m pytest -q test/test_node_integration.py

One node process (plain mode, random-weight model, 128x160 frames, default config/fusion.yaml plus a few
overrides) serves most tests; a lifecycle-managed one and one with bad parameters start beside it in
their own namespaces. The trained-model check runs only when fusion_ros/models/default.pt exists.
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
H, W = 128, 160
PERIOD_NS = 66_000_000  # ~15 Hz camera
BASE_NS = 1_000_000_000_000  # stamps far from 0 and from "now": the node must not care
MAIN = "fusion_node"
DEFAULT_FRAME = "rgb_camera_optical_frame"  # default_frame_id in config/fusion.yaml

rclpy = pytest.importorskip("rclpy", reason="rclpy (ROS 2 wheels) not installed")
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.context import Context  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from fusion_ros.child_process import interrupt  # noqa: E402
from fusion_ros.nodes.spinning import BackgroundSpin  # noqa: E402

try:
    from vision_msgs.msg import Detection2DArray
except ImportError as exc:  # pragma: no cover - environment problem, reported clearly
    pytest.fail(
        f"vision_msgs is not importable ({exc}): build it with `make interfaces` and run the tests through "
        "`bash scripts/with_ros_env.sh .venv/bin/python -m pytest ...`", pytrace=False)


# ------------------------------------------------------------------------------------------- helpers
def make_image(array: np.ndarray, encoding: str, stamp_ns: int, frame_id: str = "", bigendian: bool = False,
               pad: int = 0, height=None, width=None, step=None) -> Image:
    array = np.ascontiguousarray(array)
    if bigendian:
        array = array.astype(array.dtype.newbyteorder(">"))
    h, w = array.shape[:2]
    row = array.reshape(h, -1).view(np.uint8).reshape(h, -1) if array.size else np.zeros((h, 0), np.uint8)
    if pad:
        row = np.concatenate([row, np.full((h, pad), 0xAB, np.uint8)], axis=1)
    msg = Image(height=h if height is None else height, width=w if width is None else width, encoding=encoding,
                is_bigendian=int(bigendian), step=row.shape[1] if step is None else step)
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(int(stamp_ns), 1_000_000_000)
    msg.header.frame_id = frame_id
    import array as pyarray

    msg.data = pyarray.array("B", row.tobytes())
    return msg


def stamp_ns(header) -> int:
    return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec


def thermal_frame(rng, h=H, w=W) -> np.ndarray:
    """16-bit TLinear centikelvin: a warm blob on a cool background."""
    frame = rng.normal(29000, 150, (h, w))
    yy, xx = np.mgrid[:h, :w]
    frame += 700 * np.exp(-(((yy - h / 2) / (h / 6)) ** 2 + ((xx - w / 3) / (w / 8)) ** 2))
    return frame.clip(0, 65535).astype(np.uint16)


def rgb_frame(rng, h=H, w=W) -> np.ndarray:
    return rng.integers(0, 255, (h, w, 3), dtype=np.uint8)


def _diag_values(status) -> dict:
    return {kv.key: kv.value for kv in status.values}


def _node_env(domain: int, log_dir: Path) -> dict:
    env = dict(os.environ)
    env.update(
        ROS_DOMAIN_ID=str(domain),
        ROS_LOG_DIR=str(log_dir),
        ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
        PYTHONUNBUFFERED="1",
        RCUTILS_COLORIZED_OUTPUT="0",
        OMP_NUM_THREADS="1",
    )
    return env


class NodeProcess:
    """``python -m fusion_ros.nodes.fusion_node`` in a child process, output to a log file."""

    def __init__(self, tmp: Path, name: str, args: list[str], env: dict):
        self.log_path = tmp / f"{name}.log"
        self._log = open(self.log_path, "w")
        cmd = [sys.executable, "-m", "fusion_ros.nodes.fusion_node", "--ros-args", "-r", f"__node:={name}", *args]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT)

    def log(self) -> str:
        return self.log_path.read_text()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_log(self, text: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log():
                return True
            if not self.alive():
                return text in self.log()
            time.sleep(0.1)
        return False

    def stop(self, timeout: float = 15.0) -> int:
        code = interrupt(self.proc, timeout)
        self._log.close()
        return code


class Client:
    """The test's own ROS node: camera publishers, output subscriptions, service calls."""

    def __init__(self, domain: int):
        self.context = Context()
        rclpy.init(context=self.context, domain_id=domain)
        self.node = rclpy.create_node("fusion_test_client", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.lock = threading.Lock()
        self.outputs: dict[str, list] = {"fused": [], "detections": [], "mask": []}
        self.diagnostics: dict[str, list] = {}
        self.pubs: dict[str, object] = {}
        self.spinner = BackgroundSpin(self.executor)

    def publisher(self, topic: str):
        if topic not in self.pubs:
            qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
            self.pubs[topic] = self.node.create_publisher(Image, topic, qos)
        return self.pubs[topic]

    def subscribe_outputs(self, ns: str = "") -> None:
        qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)

        def keep(key):
            def callback(msg):
                with self.lock:
                    self.outputs[key].append((time.monotonic(), msg))

            return callback

        self.node.create_subscription(Image, f"{ns}/fused/image", keep("fused"), qos)
        self.node.create_subscription(Detection2DArray, f"{ns}/detections", keep("detections"), qos)
        self.node.create_subscription(Image, f"{ns}/segmentation/mask", keep("mask"), qos)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, QoSProfile(depth=50))

    def _on_diag(self, msg: DiagnosticArray) -> None:
        with self.lock:
            for status in msg.status:
                self.diagnostics.setdefault(status.name, []).append((time.monotonic(), status))

    def latest_status(self, name: str, since: float = 0.0):
        with self.lock:
            items = [s for t, s in self.diagnostics.get(name, []) if t >= since]
        return items[-1] if items else None

    def wait_status(self, name: str, predicate, timeout: float, since: float = 0.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.latest_status(name, since)
            if status is not None and predicate(status):
                return status
            time.sleep(0.1)
        return self.latest_status(name, since)

    def outputs_since(self, key: str, since: float) -> list:
        with self.lock:
            return [m for t, m in self.outputs[key] if t >= since]

    def call(self, srv_type, name: str, request, timeout: float = 10.0):
        client = self.node.create_client(srv_type, name)
        try:
            if not client.wait_for_service(timeout_sec=timeout):
                raise AssertionError(f"service {name} not available")
            future = client.call_async(request)
            deadline = time.monotonic() + timeout
            while not future.done() and time.monotonic() < deadline:
                time.sleep(0.02)
            assert future.done(), f"no answer from {name} within {timeout} s"
            return future.result()
        finally:
            self.node.destroy_client(client)

    def set_parameter(self, node: str, name: str, value):
        from rcl_interfaces.srv import SetParameters
        from rclpy.parameter import Parameter

        request = SetParameters.Request(parameters=[Parameter(name, value=value).to_parameter_msg()])
        return self.call(SetParameters, f"{node}/set_parameters", request).results[0]

    def get_parameter(self, node: str, name: str):
        from rcl_interfaces.srv import GetParameters
        from rclpy.parameter import parameter_value_to_python

        response = self.call(GetParameters, f"{node}/get_parameters", GetParameters.Request(names=[name]))
        return parameter_value_to_python(response.values[0])

    def lifecycle(self, node: str, transition: str) -> bool:
        from lifecycle_msgs.msg import Transition
        from lifecycle_msgs.srv import ChangeState

        request = ChangeState.Request(transition=Transition(label=transition))
        return self.call(ChangeState, f"{node}/change_state", request, timeout=30.0).success

    def state(self, node: str) -> str:
        from lifecycle_msgs.srv import GetState

        return self.call(GetState, f"{node}/get_state", GetState.Request()).current_state.label

    def wait_matched(self, topics: list[str], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(self.publisher(t).get_subscription_count() > 0 for t in topics):
                return True
            time.sleep(0.1)
        return False

    def close(self) -> None:
        self.spinner.stop()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


class Camera:
    """Publishes thermal / RGB frames with increasing stamps on the main node's input topics."""

    def __init__(self, client: Client, ns: str = ""):
        self.thermal = client.publisher(f"{ns}/thermal/image_raw")
        self.rgb = client.publisher(f"{ns}/rgb/image_raw")
        self.rng = np.random.default_rng(0)
        self.t = BASE_NS

    def next_stamp(self) -> int:
        self.t += PERIOD_NS
        return self.t

    def pair(self, frame_id: str = "rgb_optical", jitter_ms: float = 0.0, thermal=True, rgb=True,
             gap: float = 0.07) -> int:
        stamp = self.next_stamp()
        if thermal:
            t_stamp = stamp + int(jitter_ms * 1e6)
            self.thermal.publish(make_image(thermal_frame(self.rng), "mono16", t_stamp, "thermal_optical"))
        if rgb:
            self.rgb.publish(make_image(rgb_frame(self.rng), "bgr8", stamp, frame_id))
        time.sleep(gap)
        return stamp


# ------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def domain() -> int:
    return 150 + os.getpid() % 80


@pytest.fixture(scope="module")
def tmp(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("node_integration")


@pytest.fixture(scope="module")
def model_file(tmp) -> Path:
    from fusion_ros.checkpoint import save_untrained_model

    return save_untrained_model(tmp / "random.pt", input_size=(H, W))


@pytest.fixture(scope="module")
def nodes(tmp, domain, model_file):
    """Start every node process at once (their start-up overlaps), stop them at the end."""
    env = _node_env(domain, tmp / "ros_log")
    common = ["-p", f"model_path:={model_file}", "-p", "backend:=torch", "-p", "num_threads:=1"]
    procs = {
        MAIN: NodeProcess(tmp, MAIN, [
            "--params-file", str(ROOT / "config" / "fusion.yaml"), *common,
            "-p", "lifecycle:=false",
            "-p", "score_threshold:=0.01",  # random weights score ~0.07: get some detections
            "-p", "publish_segmentation:=true",  # off by default (the bundled model has no real seg labels) ...
            "-p", "allow_segmentation_without_real_labels:=true",  # ... and refused for this untrained head without
            "-p", "input_qos.depth:=5",
            "-p", "sync.inter_message_lower_bound:=0.03",
            "-p", "diagnostics.period:=0.25",
            "-p", "diagnostics.silent_timeout:=1.0",
            "-p", "log_throttle:=0.0",
        ], env),
        "fusion_bad": NodeProcess(tmp, "fusion_bad", [
            "-r", "__ns:=/bad", *common, "-p", "lifecycle:=false",
            "-p", "score_threshold:=2.0", "-p", "backend:=tpu", "-p", "diagnostics.period:=0.25",
        ], env),
        "fusion_managed": NodeProcess(tmp, "fusion_managed", [
            "-r", "__ns:=/managed", *common, "-p", "backend:=foo",
            "-p", "thermal_transport:=compressed", "-p", "rgb_transport:=compressed",
        ], env),
    }
    yield procs
    for proc in procs.values():
        proc.stop()


@pytest.fixture(scope="module")
def client(domain):
    client = Client(domain)
    client.subscribe_outputs()
    yield client
    client.close()


@pytest.fixture(scope="module")
def main_node(nodes, client):
    proc = nodes[MAIN]
    ok = client.wait_matched(["/thermal/image_raw", "/rgb/image_raw"], timeout=45.0)
    assert ok, f"the node never subscribed to its inputs; its log:\n{proc.log()}"
    return proc


@pytest.fixture(scope="module")
def camera(client):
    return Camera(client)


def _status(name: str) -> str:
    return f"/{MAIN}: {name}"


# ---------------------------------------------------------------------------------------------- tests
def test_pairs_produce_fused_images_and_detections(main_node, client, camera):
    """Jittered stamps, a few dropped frames, some RGB frames with an empty frame_id."""
    start = time.monotonic()
    sent: dict[int, str] = {}
    for i in range(40):
        frame_id = "" if i % 7 == 3 else "rgb_optical"
        drop_thermal, drop_rgb = i in (5, 17, 30), i in (11, 23)
        stamp = camera.pair(frame_id, jitter_ms=float(np.random.default_rng(i).uniform(-8, 8)),
                            thermal=not drop_thermal, rgb=not drop_rgb)
        if not drop_thermal and not drop_rgb:
            sent[stamp] = frame_id or DEFAULT_FRAME
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline and len(client.outputs_since("detections", start)) < 20:
        time.sleep(0.1)
    fused = client.outputs_since("fused", start)
    dets = client.outputs_since("detections", start)
    masks = client.outputs_since("mask", start)
    assert main_node.alive(), main_node.log()
    assert len(fused) >= 20 and len(dets) >= 20 and len(masks) >= 20, (len(fused), len(dets), len(masks))
    for msg in fused + masks:
        stamp = stamp_ns(msg.header)
        assert stamp in sent, f"output stamp {stamp} is not the stamp of a published, paired RGB frame"
        assert msg.header.frame_id == sent[stamp]
        assert (msg.height, msg.width) == (H, W)
    assert {m.encoding for m in fused} == {"bgr8"} and {m.encoding for m in masks} == {"mono8"}
    assert "publishing segmentation from a head that was trained on no segmentation labels" in main_node.log()
    assert any(m.header.frame_id == DEFAULT_FRAME for m in fused), "no output of an empty-frame_id RGB frame"
    fused_img = np.frombuffer(bytes(fused[-1].data), np.uint8).reshape(H, W, 3)
    assert fused_img.std() > 1.0, "fused image is flat"
    from fusion_ros.classes import load_classes

    names = set(load_classes().detection.names)
    n_boxes = 0
    for msg in dets:
        assert stamp_ns(msg.header) in sent and msg.header.frame_id == sent[stamp_ns(msg.header)]
        for det in msg.detections:
            n_boxes += 1
            hyp = det.results[0].hypothesis
            assert hyp.class_id in names and 0.01 <= hyp.score <= 1.0
            cx, cy = det.bbox.center.position.x, det.bbox.center.position.y
            assert 0 <= cx <= W and 0 <= cy <= H and det.bbox.size_x > 0 and det.bbox.size_y > 0
    assert n_boxes > 0, "no detections at score_threshold 0.01"


def test_driver_variants_are_accepted(main_node, client, camera):
    """Encodings, byte order, row padding and frame_ids as real drivers send them all produce outputs."""
    rng = np.random.default_rng(1)
    variants = {
        "mono16 big-endian, padded rows": lambda s: make_image(thermal_frame(rng), "mono16", s, bigendian=True, pad=6),
        "16UC1": lambda s: make_image(thermal_frame(rng), "16UC1", s),
        "mono8": lambda s: make_image((thermal_frame(rng) // 64).astype(np.uint8), "mono8", s, pad=3),
        "32FC1 kelvin": lambda s: make_image(thermal_frame(rng).astype(np.float32) / 100, "32FC1", s),
    }
    opaque = np.full((H, W), 255, np.uint8)
    rgb_variants = {
        "rgb8": lambda s: make_image(rgb_frame(rng), "rgb8", s, "rgb_optical"),
        "bgra8": lambda s: make_image(np.dstack([rgb_frame(rng), opaque]), "bgra8", s, "rgb_optical"),
        "rgba8 padded": lambda s: make_image(np.dstack([rgb_frame(rng), opaque]), "rgba8", s, "rgb_optical", pad=4),
        "mono8": lambda s: make_image(rgb_frame(rng)[:, :, 0], "mono8", s, "rgb_optical"),
    }
    for (t_name, t_make), (c_name, c_make) in zip(variants.items(), rgb_variants.items()):
        start = time.monotonic()
        stamps = []
        for _ in range(3):
            stamp = camera.next_stamp()
            camera.thermal.publish(t_make(stamp))
            camera.rgb.publish(c_make(stamp))
            stamps.append(stamp)
            time.sleep(0.1)
        deadline = time.monotonic() + 5.0
        got = []
        while time.monotonic() < deadline and not got:
            got = [m for m in client.outputs_since("fused", start) if stamp_ns(m.header) in stamps]
            time.sleep(0.05)
        assert got, f"no output for thermal {t_name} + RGB {c_name}; node log:\n{main_node.log()[-3000:]}"


def test_bad_inputs_are_counted_and_node_keeps_working(main_node, client, camera):
    rng = np.random.default_rng(2)
    good_rgb = lambda s: make_image(rgb_frame(rng), "bgr8", s, "rgb_optical")  # noqa: E731
    good_thermal = lambda s: make_image(thermal_frame(rng), "mono16", s)  # noqa: E731
    nan_frame = thermal_frame(rng).astype(np.float32) / 100
    nan_frame[10:20, 10:20] = np.nan
    cases = [
        ("thermal", "encoding", lambda s: make_image(thermal_frame(rng), "yuv422", s)),
        ("thermal", "empty", lambda s: make_image(np.zeros((0, 0), np.uint16), "mono16", s, height=0, width=0)),
        ("thermal", "size", lambda s: make_image(thermal_frame(rng), "mono16", s, height=H * 2)),
        ("thermal", "nan", lambda s: make_image(nan_frame, "32FC1", s)),
        ("thermal", "size_mismatch", lambda s: make_image(thermal_frame(rng, 64, 64), "mono16", s)),
        ("rgb", "encoding", lambda s: make_image(rgb_frame(rng)[:, :, 0], "bayer_rggb8", s)),
    ]
    for role, _, make in cases:
        stamp = camera.next_stamp()
        camera.thermal.publish(make(stamp) if role == "thermal" else good_thermal(stamp))
        camera.rgb.publish(make(stamp) if role == "rgb" else good_rgb(stamp))
        time.sleep(0.15)
    # out-of-order and duplicate stamps on the thermal input
    stamp = camera.next_stamp()
    camera.thermal.publish(good_thermal(stamp))
    time.sleep(0.05)
    camera.thermal.publish(good_thermal(stamp - 30_000_000))  # 30 ms older: out of order
    time.sleep(0.05)
    camera.thermal.publish(good_thermal(stamp))  # same stamp again: duplicate
    time.sleep(0.05)
    camera.rgb.publish(good_rgb(stamp))
    time.sleep(0.1)

    start = time.monotonic()
    good = [camera.pair() for _ in range(8)]
    deadline = time.monotonic() + 6.0
    while time.monotonic() < deadline:
        if {stamp_ns(m.header) for m in client.outputs_since("fused", start)} & set(good):
            break
        time.sleep(0.05)
    assert main_node.alive(), main_node.log()
    assert {stamp_ns(m.header) for m in client.outputs_since("fused", start)} & set(good), \
        "no outputs for good pairs after the bad inputs"

    def counted(status) -> bool:
        v = _diag_values(status)
        return all(int(v.get(f"rejected.{reason}", 0)) >= 1 for reason in
                   ("encoding", "empty", "size", "nan", "size_mismatch", "out_of_order", "duplicate"))

    thermal = client.wait_status(_status("thermal input"), counted, timeout=3.0, since=start)
    assert thermal is not None and counted(thermal), _diag_values(thermal) if thermal else "no diagnostics"
    rgb = client.wait_status(_status("rgb input"), lambda s: int(_diag_values(s).get("rejected.encoding", 0)) >= 1,
                             timeout=3.0, since=start)
    assert int(_diag_values(rgb).get("rejected.encoding", 0)) >= 1, _diag_values(rgb)
    log = main_node.log()
    for text in ("rejected [encoding]", "rejected [nan]", "rejected [size_mismatch]", "rejected [out_of_order]"):
        assert text in log, f"no log line '{text}'"
    assert "Traceback" not in log


def test_diagnostics_report_rates_latency_and_backend(main_node, client, camera):
    start = time.monotonic()
    for _ in range(10):
        camera.pair()
    engine = client.wait_status(_status("engine"), lambda s: s.level == b"\x00" and
                                int(_diag_values(s).get("processed", 0)) > 0, timeout=3.0, since=start)
    values = _diag_values(engine)
    assert values["backend"] == "torch-cpu" and values["state"] == "active"
    assert float(values["engine_ms_p50"]) > 0 and float(values["engine_ms_p95"]) >= float(values["engine_ms_p50"])
    assert float(values["node_overhead_ms_p50"]) >= 0
    sync = client.latest_status(_status("synchronizer"), since=start)
    sv = _diag_values(sync)
    assert int(sv["pairs"]) > 0 and float(sv["skew_max_ms"]) >= 0 and "worker_dropped_pairs" in sv
    thermal = client.latest_status(_status("thermal input"), since=start)
    assert float(_diag_values(thermal)["rate_hz"]) > 0


def test_silent_topic_warns_and_recovers(main_node, client, camera):
    start = time.monotonic()
    for _ in range(25):  # RGB only for ~1.8 s; silent_timeout is 1.0 s
        camera.pair(thermal=False)
    status = client.wait_status(_status("thermal input"), lambda s: s.level == b"\x01", timeout=2.0, since=start)
    assert status is not None and status.level == b"\x01", status
    assert "silent" in status.message and "thermal" in status.message
    rgb = client.latest_status(_status("rgb input"), since=start)
    assert rgb.level == b"\x00", rgb.message
    assert main_node.alive()
    resumed = time.monotonic()
    for _ in range(5):
        camera.pair()
    status = client.wait_status(_status("thermal input"), lambda s: s.level == b"\x00", timeout=2.0, since=resumed)
    assert status.level == b"\x00", status.message


def test_runtime_threshold_update_is_validated(main_node, client):
    node = f"/{MAIN}"
    result = client.set_parameter(node, "score_threshold", 2.0)
    assert not result.successful and "score_threshold" in result.reason and "1.0" in result.reason
    result = client.set_parameter(node, "nms_iou", -0.5)
    assert not result.successful and "nms_iou" in result.reason
    result = client.set_parameter(node, "backend", "onnxruntime")
    assert not result.successful and "configure" in result.reason
    assert client.set_parameter(node, "score_threshold", 0.5).successful
    assert client.set_parameter(node, "nms_iou", 1).successful  # an integer for a double is accepted
    assert client.get_parameter(node, "score_threshold") == 0.5
    assert client.set_parameter(node, "score_threshold", 0.01).successful
    assert main_node.alive()


def test_bad_parameters_fail_configure_without_crashing(nodes, client):
    bad = nodes["fusion_bad"]
    assert bad.wait_log("configure failed", timeout=30.0), bad.log()
    log = bad.log()
    assert "score_threshold: must be <= 1.0, got 2.0" in log
    assert "backend: must be one of" in log and "'tpu'" in log
    assert "Traceback" not in log
    time.sleep(0.5)
    assert bad.alive(), f"node with bad parameters exited:\n{log}"
    status = client.wait_status("/bad/fusion_bad: engine", lambda s: s.level == b"\x02", timeout=5.0)
    assert status is not None and status.level == b"\x02" and "configure failed" in status.message


def test_time_jump_back_resets_the_synchronizer(main_node, client, camera):
    """A bag loop: stamps jump back 10 s; the node resets its synchroniser and keeps producing."""
    camera.t -= 10 * 10**9
    start = time.monotonic()
    stamps = {camera.pair() for _ in range(6)}
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        if {stamp_ns(m.header) for m in client.outputs_since("fused", start)} & stamps:
            break
        time.sleep(0.05)
    assert {stamp_ns(m.header) for m in client.outputs_since("fused", start)} & stamps
    assert "jumped back" in main_node.log()


def _compressed(array: np.ndarray, fmt: str, ext: str, stamp: int, frame_id: str):
    import cv2
    from sensor_msgs.msg import CompressedImage

    ok, data = cv2.imencode(ext, array)
    assert ok
    msg = CompressedImage(format=fmt)
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, 1_000_000_000)
    msg.header.frame_id = frame_id
    msg.data = data.tobytes()
    return msg


def test_lifecycle_transitions_and_compressed_inputs(nodes, client):
    """Managed mode: a bad backend fails configure (stays unconfigured); fixed, it configures/activates.
    This node reads CompressedImage (16-bit PNG thermal, JPEG RGB) on <topic>/compressed."""
    from sensor_msgs.msg import CompressedImage

    proc, node = nodes["fusion_managed"], "/managed/fusion_managed"
    assert client.state(node) == "unconfigured"
    assert client.lifecycle(node, "configure") is False
    assert client.state(node) == "unconfigured" and proc.alive()
    assert "backend: must be one of" in proc.log()
    assert client.set_parameter(node, "backend", "torch").successful  # allowed while unconfigured
    assert client.lifecycle(node, "configure") is True
    assert client.state(node) == "inactive"
    assert client.lifecycle(node, "activate") is True and client.state(node) == "active"
    assert not client.set_parameter(node, "backend", "auto").successful  # read-only while configured

    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    pub_t = client.node.create_publisher(CompressedImage, "/managed/thermal/image_raw/compressed", qos)
    pub_c = client.node.create_publisher(CompressedImage, "/managed/rgb/image_raw/compressed", qos)
    received = []
    sub = client.node.create_subscription(Image, "/managed/fused/image", received.append, qos)
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline and (pub_t.get_subscription_count() == 0 or sub.get_publisher_count() == 0):
        time.sleep(0.05)
    rng = np.random.default_rng(3)
    stamps = []
    for i in range(6):
        stamp = BASE_NS + 5 * 10**12 + i * PERIOD_NS
        stamps.append(stamp)
        pub_t.publish(_compressed(thermal_frame(rng), "mono16; png compressed", ".png", stamp, "th"))
        pub_c.publish(_compressed(rgb_frame(rng), "bgr8; jpeg compressed bgr8", ".jpg", stamp, "cam"))
        time.sleep(0.08)
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline and not received:
        time.sleep(0.05)
    assert received, f"no output from compressed inputs; log:\n{proc.log()[-2000:]}"
    assert stamp_ns(received[0].header) in stamps and received[0].header.frame_id == "cam"
    client.node.destroy_subscription(sub)
    assert client.lifecycle(node, "deactivate") is True and client.state(node) == "inactive"
    assert client.lifecycle(node, "cleanup") is True and client.state(node) == "unconfigured"
    assert client.lifecycle(node, "shutdown") is True and client.state(node) == "finalized"
    assert proc.alive() and "Traceback" not in proc.log()


# the bundled model; FUSION_TEST_TRAINED_MODEL points this check at another trained model file
# the synthetic-scene model: this test runs the node on generated scenes (the default is the real-road model)
TRAINED_MODEL = Path(os.environ.get("FUSION_TEST_TRAINED_MODEL") or ROOT / "fusion_ros" / "models" / "synthetic.pt")


@pytest.mark.skipif(not TRAINED_MODEL.exists(),
                    reason=f"{TRAINED_MODEL} does not exist yet (the bundled model is written when training "
                           "finishes)")
def test_trained_model_finds_generator_objects_at_night(tmp, domain, client):
    import torch

    from fusion_ros.classes import load_classes
    from fusion_ros.synthetic import SceneGenerator
    from training.losses import box_iou_xyxy

    proc = NodeProcess(tmp, "fusion_trained", ["-r", "__ns:=/trained", "-p", "lifecycle:=false",
                                               "-p", f"model_path:={TRAINED_MODEL}", "-p", "backend:=torch",
                                               "-p", "num_threads:=2",
                                               # 1 MB frames: best effort over the UDP loopback (what
                                               # LOCALHOST discovery gives Fast DDS) loses most of them
                                               "-p", "input_qos.reliability:=reliable"],
                       _node_env(domain, tmp / "ros_log"))
    try:
        client.subscribe_outputs("/trained")
        assert client.wait_matched(["/trained/thermal/image_raw", "/trained/rgb/image_raw"], timeout=60.0), proc.log()
        names = load_classes().detection.names
        generator = SceneGenerator(2024, height=512, width=640)
        samples, start = {}, time.monotonic()
        for i in range(6):
            sample = generator.generate(i, condition="night")
            stamp = BASE_NS + 10**12 + i * 10**9
            samples[stamp] = sample
            client.publisher("/trained/thermal/image_raw").publish(make_image(sample.thermal, "mono16", stamp))
            client.publisher("/trained/rgb/image_raw").publish(
                make_image(np.ascontiguousarray(sample.rgb[:, :, ::-1]), "bgr8", stamp, "rgb_optical"))
            time.sleep(1.0)
        deadline = time.monotonic() + 20.0
        got: dict = {}
        while time.monotonic() < deadline:
            got = {stamp_ns(m.header): m for m in client.outputs_since("detections", start)
                   if stamp_ns(m.header) in samples}
            if len(got) >= 5:
                break
            time.sleep(0.2)
        assert got, f"no detections from the trained model; log:\n{proc.log()[-3000:]}"
        matched = total = 0
        for stamp, msg in got.items():
            sample = samples[stamp]
            gt_boxes = np.asarray(sample.boxes, np.float32).reshape(-1, 4)
            gt_labels = [names[int(label)] for label in sample.labels]
            total += len(gt_labels)
            for det in msg.detections:
                c, hyp = det.bbox.center.position, det.results[0].hypothesis
                box = np.array([[c.x - det.bbox.size_x / 2, c.y - det.bbox.size_y / 2,
                                 c.x + det.bbox.size_x / 2, c.y + det.bbox.size_y / 2]], np.float32)
                if len(gt_boxes) == 0:
                    continue
                ious = box_iou_xyxy(torch.from_numpy(box), torch.from_numpy(gt_boxes))[0].tolist()
                if any(iou > 0.5 and gt_labels[j] == hyp.class_id for j, iou in enumerate(ious)):
                    matched += 1
        print(f"trained model: {matched} detections match one of {total} generator boxes in {len(got)} frames")
        assert matched >= 1, f"no detection matched a generator box (IoU > 0.5, same class) in {len(got)} frames"
    finally:
        proc.stop()


def test_node_exits_cleanly_on_sigint(nodes, main_node):
    rc = nodes[MAIN].stop()
    log = nodes[MAIN].log()
    assert rc == 0, f"exit code {rc}; log:\n{log[-3000:]}"
    assert "Traceback" not in log
