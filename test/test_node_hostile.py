"""The faults a hostile test of the running node found (issues 13 and 21), each reproduced on a real node
process on real rclpy / Fast DDS: oversized images, a thermal camera switching resolution under a calibrated
homography, inputs that arrive but never pair, stamp jumps from two clocks on one topic, undecodable PNGs,
signals while streaming and during shutdown, and (a lifecycle node, configured by the tests) a corrupt
ONNX file beside its model.

Run with the vision_msgs workspace sourced:
    bash scripts/with_ros_env.sh .venv/bin/python -m pytest -q test/test_node_hostile.py
"""
from __future__ import annotations

import re
import signal
import struct
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="rclpy (ROS 2 wheels) not installed")

from test_node_integration import (  # noqa: E402  (helpers shared with the main integration test)
    BASE_NS,
    PERIOD_NS,
    Client,
    NodeProcess,
    _diag_values,
    _node_env,
    make_image,
    rgb_frame,
    stamp_ns,
    thermal_frame,
)

from fusion_ros.node_core.params import PARAM_SPECS  # noqa: E402
from fusion_ros.topics import RGB_TOPIC, THERMAL_TOPIC  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
H, W = 128, 160
NS = "/hostile"
NAME = "fusion_hostile"
NODE = f"{NS}/{NAME}"
STREAM_NS, STREAM_NAME = "/streaming", "fusion_streaming"
MODELS_NS, MODELS_NAME = "/models", "fusion_models"  # lifecycle node: the tests configure it
MODELS_NODE = f"{MODELS_NS}/{MODELS_NAME}"
WARN, OK, ERROR = b"\x01", b"\x00", b"\x02"


def _skew_seconds(text: str) -> float | None:
    """The skew in 'sync: thermal X s behind rgb' when X is about the 2 s the feed applies. The node reports
    the newest stamps it has seen of each input, so under load (one input's callbacks a frame or two behind
    the other's) X is a frame period or two off 2 s."""
    values = [float(v) for v in re.findall(r"sync: thermal ([0-9.]+) s behind rgb", text)]
    close = [v for v in values if 1.7 <= v <= 2.3]
    return close[-1] if close else None


LOG_THROTTLE_S = PARAM_SPECS["log_throttle"].default  # the hostile node keeps the default


def _wait_out_log_throttle(proc, text: str) -> None:
    """Sleep until LOG_THROTTLE_S has passed since the last log line containing ``text`` (its ROS wall-clock
    stamp), so the next such warning is not suppressed by a window an earlier test opened."""
    stamps = [float(m) for m in re.findall(r"\[(\d+\.\d+)\] \[[^\]]*\]: [^\n]*" + re.escape(text), proc.log())]
    if stamps:
        time.sleep(max(0.0, stamps[-1] + LOG_THROTTLE_S + 0.2 - time.time()))


def _status(name: str) -> str:
    return f"{NODE}: {name}"


def _png16(array: np.ndarray) -> bytes:
    import cv2

    ok, data = cv2.imencode(".png", array)
    assert ok
    return data.tobytes()


def _huge_png(width: int = 20000, height: int = 20000) -> bytes:
    """A real, decodable 1-bit grey PNG of width x height zeros: ~50 KB that OpenCV would decode into a
    width*height byte image (400 MB here)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    row = bytes(1 + (width + 7) // 8)  # filter byte 0 + packed bits
    packer = zlib.compressobj(9)
    parts = [packer.compress(row * 1000) for _ in range(height // 1000)]
    parts.append(packer.compress(row * (height % 1000)))
    parts.append(packer.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b"")


def _compressed(data: bytes, fmt: str, stamp: int):
    from sensor_msgs.msg import CompressedImage

    msg = CompressedImage(format=fmt)
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(int(stamp), 1_000_000_000)
    msg.header.frame_id = "thermal_optical"
    msg.data = data
    return msg


class Feed:
    """Compressed 16-bit PNG thermal + raw bgr8 RGB into the hostile node (its thermal_transport is
    compressed), with a stamp clock the tests move."""

    def __init__(self, client: Client):
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CompressedImage

        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.thermal = client.node.create_publisher(CompressedImage, f"{NS}/{THERMAL_TOPIC}/compressed", qos)
        self.rgb = client.publisher(f"{NS}/{RGB_TOPIC}")
        self.rng = np.random.default_rng(0)
        self.t = BASE_NS

    def next_stamp(self) -> int:
        self.t += PERIOD_NS
        return self.t

    def send(self, thermal_stamp: int | None = None, rgb_stamp: int | None = None, thermal_png: bytes | None = None,
             rgb_msg=None, rgb: np.ndarray | None = None, gap: float = 0.07) -> int:
        stamp = self.next_stamp()
        t_stamp = stamp if thermal_stamp is None else thermal_stamp
        c_stamp = stamp if rgb_stamp is None else rgb_stamp
        png = thermal_png if thermal_png is not None else _png16(thermal_frame(self.rng))
        self.thermal.publish(_compressed(png, "mono16; png compressed", t_stamp))
        rgb = rgb_frame(self.rng) if rgb is None else rgb
        self.rgb.publish(rgb_msg if rgb_msg is not None else make_image(rgb, "bgr8", c_stamp, "rgb"))
        time.sleep(gap)
        return c_stamp

    def good_pairs(self, client: Client, count: int = 6, timeout: float = 15.0) -> set:
        """Send ``count`` good pairs; the stamps that came out as fused images (waits for at least one)."""
        start = time.monotonic()
        sent = {self.send() for _ in range(count)}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = {stamp_ns(m.header) for m in client.outputs_since("fused", start)} & sent
            if got:
                return got
            self.send()
        return set()


# ------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def domain() -> int:
    import os

    return 60 + os.getpid() % 40


@pytest.fixture(scope="module")
def tmp(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("node_hostile")


@pytest.fixture(scope="module")
def nodes(tmp, domain):
    """Both node processes start at once (their start-up overlaps)."""
    from fusion_ros.checkpoint import save_untrained_model

    model = save_untrained_model(tmp / "random.pt", input_size=(H, W))
    env = _node_env(domain, tmp / "ros_log")
    broken = _model_with_a_truncated_onnx(tmp / "broken_export")
    common = ["--params-file", str(ROOT / "config" / "fusion.yaml"), "-p", f"model_path:={model}",
              "-p", "backend:=torch", "-p", "num_threads:=1", "-p", "lifecycle:=false",
              "-p", "diagnostics.period:=0.25"]
    procs = {
        NAME: NodeProcess(tmp, NAME, [
            "-r", f"__ns:={NS}", *common,
            "-p", "thermal_transport:=compressed",
            # a calibrated homography (a 2 px shift) for a 160x128 thermal and a 160x128 RGB camera
            "-p", "registration.mode:=homography",
            "-p", "registration.homography:=[1.0, 0.0, 2.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]",
            "-p", f"registration.thermal_width:={W}", "-p", f"registration.thermal_height:={H}",
            "-p", f"registration.rgb_width:={W}", "-p", f"registration.rgb_height:={H}",
            "-p", "diagnostics.no_output_timeout:=1.0",
            "-p", "nms_iou:=abc",  # dropped by rcl (a string over the params file's double): the node says so
            "-p", "diagnostics.silent_timeout:=3.0",
            # log_throttle stays at its default 5 s (the jump-back warning must honour it)
        ], env),
        STREAM_NAME: NodeProcess(tmp, STREAM_NAME, ["-r", f"__ns:={STREAM_NS}", *common], env),
        MODELS_NAME: NodeProcess(tmp, MODELS_NAME, [
            "-r", f"__ns:={MODELS_NS}", "--params-file", str(ROOT / "config" / "fusion.yaml"),
            "-p", f"model_path:={broken}", "-p", "backend:=auto", "-p", "num_threads:=1",
            "-p", "diagnostics.period:=0.25"], env),
    }
    yield procs
    for proc in procs.values():
        proc.stop()


def _model_with_a_truncated_onnx(folder: Path) -> Path:
    """A random-weight model.pt with its real export beside it, the .onnx then cut to half (a bad copy)."""
    from fusion_ros.checkpoint import save_untrained_model
    from training.export import export_onnx

    model = save_untrained_model(folder / "model.pt", input_size=(H, W))
    onnx = export_onnx(model, exporter="torchscript").onnx_path
    onnx.write_bytes(onnx.read_bytes()[: onnx.stat().st_size // 2])
    return model


@pytest.fixture(scope="module")
def models_node(nodes, client):
    """The lifecycle node on the model with the truncated ONNX, up and unconfigured."""
    proc = nodes[MODELS_NAME]
    assert proc.wait_log("waiting for configure/activate", 90.0), proc.log()
    return proc


@pytest.fixture(scope="module")
def client(domain):
    client = Client(domain)
    client.subscribe_outputs(NS)
    yield client
    client.close()


@pytest.fixture(scope="module")
def hostile(nodes, client):
    proc = nodes[NAME]
    feed = Feed(client)
    deadline = time.monotonic() + 60.0
    while time.monotonic() < deadline and not (
            feed.thermal.get_subscription_count() and feed.rgb.get_subscription_count()):
        assert proc.alive(), proc.log()
        time.sleep(0.1)
    assert feed.thermal.get_subscription_count() and feed.rgb.get_subscription_count(), proc.log()
    assert feed.good_pairs(client), f"no output from good pairs; log:\n{proc.log()[-3000:]}"
    return proc, feed


def _wait_values(client: Client, name: str, predicate, timeout: float = 10.0, since: float = 0.0):
    status = client.wait_status(_status(name), lambda s: predicate(_diag_values(s), s), timeout, since)
    assert status is not None, f"no '{name}' status on /diagnostics"
    return status


# ---------------------------------------------------------------------------------------------- tests
def test_huge_declared_images_are_rejected_before_decoding(hostile, client):
    """Fault 1: a 50 KB PNG declaring 20000x20000 pixels (400 MB decoded) and a raw Image declaring
    5000x5000 are rejected on their declared size, counted, and the node keeps its pace."""
    proc, feed = hostile
    huge = _huge_png()
    assert len(huge) < 200_000
    liar = make_image(np.zeros((2, 2), np.uint8), "mono8", 0, height=5000, width=5000, step=5000)
    for _ in range(3):
        stamp = feed.next_stamp()
        liar.header.stamp.sec, liar.header.stamp.nanosec = divmod(stamp, 1_000_000_000)
        feed.send(thermal_stamp=stamp, thermal_png=huge, rgb_msg=liar)
    status = _wait_values(client, "thermal input", lambda v, s: int(v.get("rejected.too_large", 0)) >= 3)
    values = _diag_values(status)
    assert int(values.get("rejected.too_large", 0)) >= 3, values
    assert "20000x20000" in values["last_error"] and "max_image_pixels" in values["last_error"]
    rgb = _diag_values(_wait_values(client, "rgb input", lambda v, s: int(v.get("rejected.too_large", 0)) >= 3))
    assert int(rgb["rejected.too_large"]) >= 3, rgb
    assert "rejected [too_large]" in proc.log()
    started = time.monotonic()
    assert feed.good_pairs(client), proc.log()[-3000:]
    assert time.monotonic() - started < 15.0
    rss_kb = _peak_rss_kb(proc)
    assert rss_kb < 3_000_000, f"node peak RSS {rss_kb / 1e6:.1f} GB"


def test_a_cli_parameter_dropped_by_rcl_is_reported(hostile):
    """rcl silently keeps the params file's nms_iou when `-p nms_iou:=abc` is layered over it."""
    proc, _ = hostile
    assert "-p nms_iou:='abc' was dropped by rcl" in proc.log()


def test_a_run_time_parameter_of_the_wrong_type_is_logged_naming_it(hostile, client):
    """Issue 21 item 6: `score_threshold` set to 'abc' at run time got only rclpy's "Wrong parameter type,
    expected '3' got '4'" back, and no node log line named the parameter or the types."""
    proc, _ = hostile
    before = client.get_parameter(NODE, "score_threshold")
    result = client.set_parameter(NODE, "score_threshold", "abc")
    assert not result.successful, result
    assert proc.wait_log("rejected parameter change: score_threshold must be of type double, got string 'abc'",
                         5.0), proc.log()[-2000:]
    assert client.get_parameter(NODE, "score_threshold") == before


def _peak_rss_kb(proc: NodeProcess) -> int:
    """VmHWM of the node (the ROS wheels' bootstrapper may re-exec it: read the process that runs)."""
    text = Path(f"/proc/{proc.proc.pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", text).group(1))


@pytest.mark.parametrize("camera", ["thermal", "rgb"])
def test_a_camera_resolution_change_is_rejected_not_fused_with_the_old_homography(hostile, client, camera):
    """Issue 13 fault 6 (thermal) and issue 21 item 2 (RGB): the homography is calibrated for a 160x128
    thermal and a 160x128 RGB image; a 320x256 frame of either camera is rejected with a clear reason (and,
    when it is all that arrives, /diagnostics names it as why nothing is published)."""
    proc, feed = hostile
    start = time.monotonic()
    sent = set()
    end = time.monotonic() + 2.0
    while time.monotonic() < end:
        if camera == "thermal":
            sent.add(feed.send(thermal_png=_png16(np.full((2 * H, 2 * W), 29000, np.uint16))))
        else:
            sent.add(feed.send(rgb=np.zeros((2 * H, 2 * W, 3), np.uint8)))
    reason = f"{camera}_size"
    status = _wait_values(client, f"{camera} input", lambda v, s: int(v.get(f"rejected.{reason}", 0)) >= 5,
                          since=start)
    assert (f"{camera} image is 320x256 (WxH) but registration (homography) is calibrated for 160x128"
            in _diag_values(status)["last_error"]), _diag_values(status)
    assert not {stamp_ns(m.header) for m in client.outputs_since("fused", start)} & sent
    sync = client.wait_status(_status("synchronizer"), lambda s: s.level == WARN, 8.0, since=start)
    assert sync is not None and sync.level == WARN and f"{camera} {reason}" in sync.message, sync
    assert f"rejected [{reason}]" in proc.log()
    assert feed.good_pairs(client), proc.log()[-3000:]


def test_no_output_with_inputs_arriving_goes_warn_naming_the_reason(hostile, client):
    """Fault 2: thermal stamped 2 s behind RGB, both at ~14 Hz: nothing pairs; /diagnostics says why.
    Then all-zero stamps (one pair, then duplicates). Good pairs bring the status back to OK."""
    proc, feed = hostile
    start = time.monotonic()
    end = start + 2.5
    while time.monotonic() < end:
        stamp = feed.next_stamp()
        feed.send(thermal_stamp=stamp - 2_000_000_000, rgb_stamp=stamp)
    sync = client.wait_status(_status("synchronizer"), lambda s: s.level == WARN, 8.0, since=start)
    assert sync is not None and sync.level == WARN, sync
    assert "no output for" in sync.message and _skew_seconds(sync.message) is not None, sync.message
    assert "slop 0.05 s" in sync.message, sync.message
    assert _skew_seconds(proc.log()) is not None, proc.log()[-3000:]  # one log line too

    feed.t += 3_000_000_000  # past the skewed stamps, then good pairs: OK again
    assert feed.good_pairs(client)
    back = time.monotonic()
    ok = client.wait_status(_status("synchronizer"), lambda s: s.level == OK, 8.0, since=back)
    assert ok is not None and ok.level == OK, ok

    zero_start = time.monotonic()
    end = zero_start + 2.5
    while time.monotonic() < end:
        feed.send(thermal_stamp=0, rgb_stamp=0)
    sync = client.wait_status(_status("synchronizer"),
                              lambda s: s.level == WARN and "duplicate" in s.message, 8.0, since=zero_start)
    assert sync is not None and sync.level == WARN and "duplicate: stamp 0.000000" in sync.message, sync
    feed.t += 10_000_000_000
    assert feed.good_pairs(client)


def test_stamp_jump_back_warning_honours_log_throttle(hostile, client):
    """Fault 5a: two clocks on one topic (stamps alternating 10 s apart) reset the synchroniser on every
    other message; the warning is logged at most once per input per log_throttle (5 s), resets counted."""
    proc, feed = hostile
    _wait_out_log_throttle(proc, "stamp jumped back")  # an earlier test's jump back may still hold the window
    before = proc.log().count("stamp jumped back")
    feed.t += 60_000_000_000
    start = time.monotonic()
    for i in range(30):
        stamp = feed.next_stamp()
        other = stamp - 10_000_000_000 if i % 2 else stamp
        feed.send(thermal_stamp=other, rgb_stamp=stamp, gap=0.04)
    status = _wait_values(client, "synchronizer", lambda v, s: int(v.get("resets_on_jump_back", 0)) >= 10,
                          since=start)
    assert int(_diag_values(status)["resets_on_jump_back"]) >= 10
    logged = proc.log().count("stamp jumped back") - before
    assert 1 <= logged <= 2, f"{logged} jump-back warnings in ~1.5 s with log_throttle 5 s"
    feed.t += 20_000_000_000
    assert feed.good_pairs(client)


def test_undecodable_png_leaves_no_decoder_lines_in_the_log(hostile, client):
    """Fault 5b: libpng / OpenCV wrote two unthrottled stderr lines per undecodable PNG."""
    proc, feed = hostile
    good = bytearray(_png16(thermal_frame(np.random.default_rng(5))))
    good[60:80] = bytes(20)  # inside IDAT: a CRC error
    start = time.monotonic()
    for _ in range(8):
        feed.send(thermal_png=bytes(good))
    status = _wait_values(client, "thermal input", lambda v, s: int(v.get("rejected.decode", 0)) >= 8, since=start)
    assert int(_diag_values(status)["rejected.decode"]) >= 8
    lines = proc.log().splitlines()
    stray = [line for line in lines if line.startswith(("libpng", "[ WARN:", "Corrupt JPEG"))]
    assert not stray, stray
    decode_lines = [line for line in lines if "rejected [decode]" in line]
    assert 1 <= len(decode_lines) <= 2, decode_lines  # throttled (log_throttle 5 s)
    assert "libpng error: " in decode_lines[0]  # the library's reason, routed into our line


def test_a_truncated_onnx_file_is_a_loud_fallback_not_a_silent_one(models_node, client):
    """Issue 21 item 1: backend auto over a model whose ONNX export was cut in half ran the torch model with
    an INFO line, a bare stderr line and diagnostics OK. It still runs the same weights (the sidecar's
    sha256 ties them to the export), but says so: a WARN node log line naming why, and the engine status
    WARN naming the backend, the model file and the skipped backend for as long as it runs."""
    since = time.monotonic()
    assert client.lifecycle(MODELS_NODE, "configure"), models_node.log()[-3000:]
    try:
        status = client.wait_status(f"{MODELS_NODE}: engine", lambda s: s.level == WARN, 10.0, since)
        values = _diag_values(status)
        assert status.level == WARN and status.message.startswith("inactive, fallback torch-cpu"), status.message
        assert values["backend"] == "torch-cpu" and values["model"].endswith("broken_export/model.pt"), values
        assert "onnxruntime" in values["fallback"] and "does not match its sidecar" in values["fallback"], values
        log = models_node.log()
        assert re.search(r"^\[WARN\] .*configured: torch-cpu on .*model\.pt .*FALLBACK: backend auto skipped "
                         r"onnxruntime: ", log, re.M), log[-3000:]
        skipped = [line for line in log.splitlines() if "auto backend: skipping onnxruntime" in line]
        assert skipped and all(line.startswith("[WARN]") for line in skipped), skipped  # node lines, not bare
    finally:
        assert client.lifecycle(MODELS_NODE, "cleanup")


def test_publishing_an_untrained_segmentation_head_needs_the_override(models_node, client):
    """Issue 21 item 8: publish_segmentation:=true published the output of a head that never saw a label.
    Configure now fails naming why (the model file says what the head was trained on) and the node stays
    unconfigured; allow_segmentation_without_real_labels:=true publishes it, with a warning."""
    for name, value in (("publish_segmentation", True), ("allow_segmentation_without_real_labels", False)):
        assert client.set_parameter(MODELS_NODE, name, value).successful
    try:
        since = time.monotonic()
        assert not client.lifecycle(MODELS_NODE, "configure")
        assert client.state(MODELS_NODE) == "unconfigured"
        status = client.wait_status(f"{MODELS_NODE}: engine", lambda s: s.level == ERROR, 10.0, since)
        assert status.level == ERROR and "configure failed: publish_segmentation: the model's segmentation head was "\
            "trained on no segmentation labels" in status.message, status.message
        assert "allow_segmentation_without_real_labels" in status.message
        assert client.set_parameter(MODELS_NODE, "allow_segmentation_without_real_labels", True).successful
        assert client.lifecycle(MODELS_NODE, "configure"), models_node.log()[-3000:]
        assert re.search(r"^\[WARN\] .*publishing segmentation from a head that was trained on no segmentation "
                         r"labels", models_node.log(), re.M)
        assert client.lifecycle(MODELS_NODE, "cleanup")
    finally:
        for name in ("publish_segmentation", "allow_segmentation_without_real_labels"):
            client.set_parameter(MODELS_NODE, name, False)


def _raw_sender(client: Client, ns: str):
    rng = np.random.default_rng(7)
    thermal, rgb = client.publisher(f"{ns}/{THERMAL_TOPIC}"), client.publisher(f"{ns}/{RGB_TOPIC}")
    clock = [BASE_NS + 100 * 10**9]

    def send():
        clock[0] += PERIOD_NS
        thermal.publish(make_image(thermal_frame(rng), "mono16", clock[0]))
        rgb.publish(make_image(rgb_frame(rng), "bgr8", clock[0], "rgb"))
        time.sleep(0.05)

    return send


def _stream(send, stop: threading.Event) -> None:
    while not stop.is_set():
        send()


def _assert_clean_exit(proc: NodeProcess, rc: int) -> None:
    log = proc.log()
    assert rc == 0, f"exit code {rc}; log:\n{log[-3000:]}"
    for bad in ("Traceback", "[ERROR]", "engine failure", "terminate called", "KeyboardInterrupt",
                "context is invalid"):
        assert bad not in log, f"'{bad}' in the log:\n{log[-3000:]}"


def _signal_while_streaming(client: Client, proc: NodeProcess, ns: str, send, signals: list[tuple[float, int]]) -> int:
    """Stream pairs with ``send()``, wait for outputs, then send ``signals`` ((delay s, signum), ...) to the
    node; its exit code."""
    stop = threading.Event()
    streamer = threading.Thread(target=_stream, args=(send, stop), daemon=True)
    received = []
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    sub = client.node.create_subscription(Image, f"{ns}/fused/image", received.append,
                                          QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
    streamer.start()
    try:
        deadline = time.monotonic() + 60.0
        while time.monotonic() < deadline and len(received) < 5:
            assert proc.alive(), proc.log()
            time.sleep(0.05)
        assert len(received) >= 5, f"node never streamed; log:\n{proc.log()[-3000:]}"
        for delay, signum in signals:
            time.sleep(delay)
            if proc.alive():
                proc.proc.send_signal(signum)
        try:
            return proc.proc.wait(30.0)
        except Exception:
            proc.proc.kill()
            raise
    finally:
        stop.set()
        streamer.join(5.0)
        client.node.destroy_subscription(sub)


def test_sigterm_then_sigint_while_streaming_exits_zero_without_errors(nodes, client):
    """Faults 3 and 4: shutting down while the worker publishes, with a second signal 50 ms later."""
    proc = nodes[STREAM_NAME]
    rc = _signal_while_streaming(client, proc, STREAM_NS, _raw_sender(client, STREAM_NS),
                                 [(0.0, signal.SIGTERM), (0.05, signal.SIGINT)])
    _assert_clean_exit(proc, rc)


def test_impatient_double_ctrl_c_exits_zero_without_errors(nodes, hostile, client):
    """Fault 3: SIGINT, SIGINT again 20 ms later and a third 150 ms later (an impatient Ctrl-C)."""
    proc, feed = hostile
    feed.t += 100 * 10**9
    rc = _signal_while_streaming(client, proc, NS, lambda: feed.send(gap=0.05),
                                 [(0.0, signal.SIGINT), (0.02, signal.SIGINT), (0.15, signal.SIGINT)])
    _assert_clean_exit(proc, rc)
