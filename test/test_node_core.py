"""The ROS-free half of the fusion node: parameters, the latest-pair slot, statistics, diagnostics.

No rclpy here: these run wherever numpy/opencv/yaml do.
"""
from __future__ import annotations

import re
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml

from fusion_ros import node_core as core
from fusion_ros.image_conversions import ImageConversionError, thermal_to_float
from fusion_ros.postprocess import Detections, PostprocessConfig
from fusion_ros.sync import SyncStats

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "config" / "fusion.yaml"


# ------------------------------------------------------------------------------------------ parameters
def test_defaults_are_valid():
    cfg = core.validate_params({})
    assert cfg["score_threshold"] == 0.4 and cfg["backend"] == "auto"
    assert cfg.registration.is_identity and cfg.input_size is None and cfg.device is None


def test_every_spec_default_passes_its_own_check():
    for spec in core.PARAMS:
        value, reason = core.check_value(spec.name, spec.default)
        assert reason is None, (spec.name, reason)
        assert spec.description


def _yaml_params() -> dict:
    raw = yaml.safe_load(CONFIG.read_text())
    assert list(raw) == ["/**"], "config/fusion.yaml must hold one '/**' block"
    return raw["/**"]["ros__parameters"]


def test_config_yaml_lists_every_parameter_with_its_default():
    params = _yaml_params()
    assert set(params) == set(core.PARAM_SPECS), (
        f"missing: {sorted(set(core.PARAM_SPECS) - set(params))}, "
        f"unknown: {sorted(set(params) - set(core.PARAM_SPECS))}"
    )
    cfg = core.validate_params(params)
    for spec in core.PARAMS:
        assert cfg[spec.name] == spec.default, f"{spec.name}: yaml {params[spec.name]!r} != default {spec.default!r}"
        # the YAML type must be the ROS type the node declares (1 is an integer, 1.0 a double)
        assert type(params[spec.name]) is type(spec.default), spec.name
        if spec.kind == "double_array":
            assert all(isinstance(v, float) for v in params[spec.name]), spec.name


def test_config_yaml_comments_every_parameter():
    """Each parameter line sits in a group of parameter lines that starts right after a comment."""
    lines = CONFIG.read_text().splitlines()
    key_line = re.compile(r"^    ([A-Za-z_][\w.]*):")
    seen = set()
    for i, line in enumerate(lines):
        match = key_line.match(line)
        if not match or match.group(1) == "ros__parameters":
            continue
        j = i - 1
        while j >= 0 and key_line.match(lines[j]):
            j -= 1
        assert j >= 0 and lines[j].strip().startswith("#"), f"parameter '{match.group(1)}' has no comment above it"
        seen.add(match.group(1))
    assert seen == set(core.PARAM_SPECS)


@pytest.mark.parametrize(
    "overrides, expected",
    [
        ({"score_threshold": 2.0}, "score_threshold: must be <= 1.0, got 2.0"),
        ({"nms_iou": -0.1}, "nms_iou: must be >= 0.0"),
        ({"backend": "tpu"}, "backend: must be one of auto, onnxruntime, torch, tensorrt, got 'tpu'"),
        ({"score_threshold": "high"}, "score_threshold: must be of type double, got str"),
        ({"input_qos.reliability": "sometimes"}, "input_qos.reliability: must be one of best_effort, reliable"),
        ({"input_qos.depth": 0}, "input_qos.depth: must be >= 1"),
        ({"sync.slop": float("nan")}, "sync.slop: must be a finite number"),
        ({"input_height": 256}, "input_height/input_width: set both"),
        ({"input_width": 8}, "input_width: must be 0 or in [32, 8192]"),
        ({"thermal.low": 300.0, "thermal.high": 250.0}, "thermal.low/thermal.high: need finite low < high"),
        ({"thermal.mode": "percentile"}, "thermal.mode: must be one of fixed, auto"),
        ({"registration.mode": "homography", "registration.homography": [0.0] * 9}, "singular"),
        ({"registration.homography": [1.0, 0.0, 0.0]}, "registration.homography: needs exactly 9 numbers"),
        ({"registration.mode": "planar", "registration.rotation": [2.0, 0, 0, 0, 1, 0, 0, 0, 1]}, "rotation"),
        ({"registration.plane_distance": 0.0}, "registration.plane_distance: must be > 0.0"),
        ({"rgb_topic": "thermal/image_raw"}, "same topic"),
        ({"thermal_topic": "bad topic"}, "thermal_topic: must be a non-empty topic name"),
        ({"default_frame_id": ""}, "default_frame_id: must be a non-empty frame id"),
        ({"diagnostics.period": 0.0}, "diagnostics.period: must be >= 0.05"),
        ({"max_detections": 0}, "max_detections: must be >= 1"),
        ({"lifecycle": 1}, "lifecycle: must be of type bool"),
        ({"scor_threshold": 0.5}, "unknown parameter(s) scor_threshold"),
    ],
)
def test_bad_values_are_reported_with_the_reason(overrides, expected):
    with pytest.raises(core.ParamError) as info:
        core.validate_params(overrides)
    assert expected in str(info.value)
    assert str(info.value).startswith("invalid parameters: ")


def test_all_problems_are_listed_at_once():
    with pytest.raises(core.ParamError) as info:
        core.validate_params({"score_threshold": 2.0, "backend": "tpu", "sync.queue_size": -1})
    assert len(info.value.problems) == 3


CALIBRATED_640 = {"registration.thermal_width": 320, "registration.thermal_height": 256,
                  "registration.rgb_width": 640, "registration.rgb_height": 512}
# per camera: its calibrated (height, width) in CALIBRATED_640, and a resolution it may be switched to
CAMERA_SIZES = {"thermal": ((256, 320), (512, 640)), "rgb": ((512, 640), (1024, 1280))}


def _camera_frame(camera: str, hw: tuple[int, int], stamp: int) -> core.Frame:
    if camera == "thermal":
        return core.Frame(np.full(hw, 29000, np.uint16), "mono16", "t", stamp, 0.0)
    return core.Frame(np.zeros((*hw, 3), np.uint8), "bgr8", "c", stamp, 0.0)


@pytest.mark.parametrize("camera", ["thermal", "rgb"])
def test_registration_is_bound_to_the_calibrated_camera_sizes(camera):
    """A homography maps one thermal pixel grid onto one RGB pixel grid: a frame of another size from either
    camera is rejected. Issue 13 fault 6 (thermal); issue 21 item 2: an RGB camera switched from 640x512 to
    1280x1024 kept being fused with the homography calibrated for 640x512, without a word."""
    h = [2.0, 0.0, 0.0, 0.0, 2.0, 0.0, 0.0, 0.0, 1.0]  # 320x256 thermal -> 640x512 RGB
    other = {k: v for k, v in CALIBRATED_640.items() if not k.startswith(f"registration.{camera}_")}
    with pytest.raises(core.ParamError, match=f"holds for one {camera} resolution only"):
        core.validate_params({"registration.mode": "homography", "registration.homography": h, **other})
    with pytest.raises(core.ParamError, match=f"registration.{camera}_width/{camera}_height: set both or neither"):
        core.validate_params({f"registration.{camera}_width": 320})
    cfg = core.validate_params({"registration.mode": "homography", "registration.homography": h, **CALIBRATED_640})
    frames = {name: _camera_frame(name, CAMERA_SIZES[name][0], 1) for name in ("thermal", "rgb")}
    thermal_unit, rgb8 = core.prepare_pair(cfg, None, frames["thermal"], frames["rgb"])
    assert thermal_unit.shape == (256, 320) and rgb8.shape == (512, 640, 3)
    # the node's own path keeps the camera frame as it came; the engine reorders it at the network size
    thermal_node, color, encoding = core.prepare_inputs(cfg, None, frames["thermal"], frames["rgb"])
    assert color is frames["rgb"].array and encoding == "bgr8"
    np.testing.assert_array_equal(thermal_node, thermal_unit)
    (height, width), (switched_h, switched_w) = CAMERA_SIZES[camera]
    frames[camera] = _camera_frame(camera, (switched_h, switched_w), 2)
    with pytest.raises(core.PairRejected) as info:
        core.prepare_inputs(cfg, None, frames["thermal"], frames["rgb"])
    assert info.value.reason == f"{camera}_size"
    assert info.value.index == (core.THERMAL_INDEX if camera == "thermal" else core.RGB_INDEX)
    assert (f"{camera} image is {switched_w}x{switched_h} (WxH) but registration (homography) is calibrated for "
            f"{width}x{height}") in info.value.message
    # identity may be bound too (optional)
    bound = core.validate_params({f"registration.{camera}_width": width, f"registration.{camera}_height": height})
    with pytest.raises(core.PairRejected, match=f"calibrated for {width}x{height}"):
        core.prepare_pair(bound, None, frames["thermal"], frames["rgb"])
    assert core.validate_params({}).calibrated_size(camera) is None


def test_segmentation_topics_need_a_head_trained_on_real_labels():
    """Issue 21 item 8: publish_segmentation:=true published the bundled model's untrained segmentation output.
    Only a head trained on real camera labels publishes unless the override is set."""
    off = core.validate_params({})
    assert all(core.segmentation_publish_problem(off, labels) is None for labels in ("real", "none", "unknown"))
    mask = core.validate_params({"publish_segmentation": True})
    assert core.segmentation_publish_problem(mask, "real") is None
    for labels, why in (("none", "was trained on no segmentation labels"), ("unknown", "does not record what"),
                        ("synthetic", "was trained on generated scenes only")):
        problem = core.segmentation_publish_problem(mask, labels)
        assert problem.startswith(f"publish_segmentation: the model's segmentation head {why}"), problem
        assert f"(segmentation_labels: {labels})" in problem and "allow_segmentation_without_real_labels" in problem
    colour = core.validate_params({"publish_segmentation_color": True})
    assert core.segmentation_publish_problem(colour, "none").startswith("publish_segmentation_color: ")
    allowed = core.validate_params({"publish_segmentation": True, "allow_segmentation_without_real_labels": True})
    assert core.segmentation_publish_problem(allowed, "none") is None


def test_cli_parameters_dropped_by_rcl_are_found():
    """Issue 13 item 8: `-p score_threshold:=abc` over a params file is dropped silently by rcl."""
    argv = ["fusion_node", "--ros-args", "--params-file", "f.yaml", "-p", "score_threshold:=abc", "-p",
            "nms_iou:=1", "--param", "backend:=torch", "-p", "other_node:x:=1", "--", "-p", "not_ros:=2"]
    assert core.cli_parameter_overrides(argv) == {"score_threshold": "abc", "nms_iou": 1, "backend": "torch"}
    problems = core.dropped_cli_parameters(argv, {"score_threshold": 0.3, "nms_iou": 1.0, "backend": "torch"})
    assert problems == ["-p score_threshold:='abc' was dropped by rcl (its type does not match the params file's "
                        "value, which is kept: 0.3); give it with the file's type"]


def test_integers_are_accepted_for_doubles_but_nothing_else_is_converted():
    cfg = core.validate_params({"score_threshold": 1, "registration.homography": [1, 0, 0, 0, 1, 0, 0, 0, 1]})
    assert cfg["score_threshold"] == 1.0 and isinstance(cfg["score_threshold"], float)
    assert all(isinstance(v, float) for v in cfg["registration.homography"])
    assert core.check_value("num_threads", 2.0)[1] == "must be of type int, got float 2.0"
    assert core.check_value("num_threads", True)[1] is not None  # a bool is not an integer here
    assert core.check_value("score_threshold", False)[1] is not None


def test_registration_modes_build_the_homography():
    h = [1.0, 0.0, 12.0, 0.0, 1.0, -4.0, 0.0, 0.0, 1.0]
    cfg = core.validate_params({"registration.mode": "homography", "registration.homography": h,
                                "registration.thermal_width": 640, "registration.thermal_height": 512,
                                "registration.rgb_width": 640, "registration.rgb_height": 512})
    assert not cfg.registration.is_identity and cfg.calibrated_size("thermal") == (640, 512)
    np.testing.assert_allclose(cfg.registration.homography, np.array(h).reshape(3, 3))
    k = [500.0, 0.0, 320.0, 0.0, 500.0, 256.0, 0.0, 0.0, 1.0]
    planar = core.validate_params({"registration.mode": "planar", "registration.intrinsics_ir": k,
                                   "registration.intrinsics_rgb": k, "registration.translation": [0.1, 0.0, 0.0],
                                   "registration.plane_distance": 20.0,
                                   "registration.thermal_width": 640, "registration.thermal_height": 512,
                                   "registration.rgb_width": 640, "registration.rgb_height": 512})
    # a 10 cm baseline at 20 m and f = 500 px: a 2.5 px horizontal shift
    np.testing.assert_allclose(planar.registration.homography[0, 2], 2.5, atol=1e-9)
    # identity keeps the border setting
    assert core.validate_params({"registration.border": "replicate"}).registration.border == "replicate"


def test_thermal_range_and_postprocess_from_parameters():
    cfg = core.validate_params({})
    assert cfg.thermal_range is None  # thermal.low = thermal.high = 0: image_conversions' defaults
    assert core.validate_params({"thermal.low": -20.0, "thermal.high": 80.0}).thermal_range == (-20.0, 80.0)
    assert cfg.postprocess == PostprocessConfig()
    custom = core.validate_params({"score_threshold": 0.25, "nms_iou": 0.5, "max_detections": 7}).postprocess
    assert custom == PostprocessConfig(score_threshold=0.25, nms_iou=0.5, max_detections=7)


def test_config_yaml_repeats_the_postprocess_defaults():
    params = _yaml_params()
    for name in core.DYNAMIC_PARAMS:
        assert params[name] == getattr(PostprocessConfig(), name), name


def test_runtime_updates():
    assert core.check_runtime_update("score_threshold", 0.5, configured=True) == (0.5, None)
    assert core.check_runtime_update("nms_iou", 1, configured=True) == (1.0, None)
    value, reason = core.check_runtime_update("score_threshold", 1.5, configured=True)
    assert reason == "score_threshold: must be <= 1.0, got 1.5"
    _, reason = core.check_runtime_update("backend", "torch", configured=True)
    assert "read when the node is configured" in reason
    assert core.check_runtime_update("backend", "torch", configured=False) == ("torch", None)
    _, reason = core.check_runtime_update("backend", "tpu", configured=False)
    assert "must be one of" in reason
    assert set(core.DYNAMIC_PARAMS) == {s.name for s in core.PARAMS if s.dynamic}


# ---------------------------------------------------------------------------------------- decoding
def _msg(array, encoding, **kw):
    array = np.ascontiguousarray(array)
    h, w = array.shape[:2]
    fields = dict(height=h, width=w, encoding=encoding, is_bigendian=0, step=array.nbytes // max(h, 1),
                  data=array.tobytes())
    fields.update(kw)
    return SimpleNamespace(**fields)


def test_decode_image_checks_the_role():
    thermal = np.arange(12, dtype=np.uint16).reshape(3, 4)
    array, encoding = core.decode_image(_msg(thermal, "mono16"), "thermal")
    np.testing.assert_array_equal(array, thermal)
    with pytest.raises(ImageConversionError, match="thermal encoding 'bgr8' is not supported"):
        core.decode_image(_msg(np.zeros((3, 4, 3), np.uint8), "bgr8"), "thermal")
    with pytest.raises(ImageConversionError, match="rgb encoding '16UC1' is not supported"):
        core.decode_image(_msg(thermal, "16UC1"), "rgb")


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda: core.decode_image(_msg(np.zeros((2, 2), np.uint8), "yuv422"), "thermal"), "encoding"),
        (lambda: core.decode_image(_msg(np.zeros((2, 2), np.uint16), "mono16", height=0, width=0, data=b""),
                                   "thermal"), "empty"),
        (lambda: core.decode_image(_msg(np.zeros((2, 2), np.uint16), "mono16", height=4), "thermal"), "size"),
        (lambda: core.decode_image(_msg(np.zeros((2, 2), np.uint16), "mono16", step=2), "thermal"), "size"),
        (lambda: thermal_to_float(np.full((2, 2), np.nan, np.float32), "32FC1"), "nan"),
        (lambda: core.decode_compressed("jpeg", b"not a jpeg", "rgb"), "decode"),
    ],
)
def test_errors_are_classified(make, reason):
    with pytest.raises(ImageConversionError) as info:
        make()
    assert core.classify_error(str(info.value)) == reason


def _lying_png(width: int, height: int) -> bytes:
    import struct
    import zlib

    import cv2

    _, png = cv2.imencode(".png", np.zeros((8, 8), np.uint16))
    data = bytearray(png.tobytes())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)
    return bytes(data)


def test_pixel_limit_rejects_declared_sizes_before_decoding():
    """Issue 13 fault 1: a 20000x20000 PNG header or a huge raw Image is rejected [too_large], undecoded."""
    cfg = core.validate_params({})
    assert cfg["max_image_pixels"] == 4096 * 4096
    with pytest.raises(ImageConversionError) as info:
        core.decode_image(_msg(np.zeros((2, 2), np.uint8), "mono8", height=5000, width=5000, step=5000),
                          "thermal", cfg["max_image_pixels"])
    assert core.classify_error(str(info.value)) == "too_large"
    assert "max_image_pixels" in str(info.value)
    lying = _lying_png(20000, 20000)
    with pytest.raises(ImageConversionError) as info:
        core.check_compressed_size("png", lying, cfg["max_image_pixels"])
    assert core.classify_error(str(info.value)) == "too_large"
    core.check_compressed_size("png", b"garbage", cfg["max_image_pixels"])  # left for the decoder
    thermal = core.Frame(None, "", "t", 1, 0.0, compressed=("mono16; png", lying))
    rgb = core.Frame(np.zeros((8, 8, 3), np.uint8), "bgr8", "c", 1, 0.0)
    with pytest.raises(core.PairRejected) as rejected:
        core.prepare_pair(cfg, None, thermal, rgb)
    assert rejected.value.index == core.THERMAL_INDEX and rejected.value.reason == "too_large"
    small = core.validate_params({"max_image_pixels": 63})
    ok = core.Frame(np.zeros((8, 8), np.uint16), "mono16", "t", 1, 0.0)
    with pytest.raises(core.PairRejected, match="exceeds the pixel limit of 63"):
        core.prepare_pair(small, None, ok, core.Frame(None, "", "c", 1, 0.0, compressed=("png", _lying_png(8, 8))))
    with pytest.raises(core.ParamError, match="max_image_pixels"):
        core.validate_params({"max_image_pixels": 0})


def test_pair_geometry():
    assert core.check_pair_geometry((512, 640), (512, 640), True, 0.02) is None
    assert core.check_pair_geometry((256, 320), (1024, 1280), True, 0.02) is None  # same aspect: resized
    reason = core.check_pair_geometry((512, 640), (1080, 1920), True, 0.02)
    assert "aspect ratio" in reason and "registration.homography" in reason
    assert core.check_pair_geometry((512, 640), (1080, 1920), False, 0.02) is None  # a homography maps any size


# ------------------------------------------------------------------------------------- latest-pair slot
def test_slot_keeps_only_the_latest_item():
    slot = core.LatestSlot()
    assert slot.take(timeout=0.01) is None
    for item in "abc":
        slot.put(item)
    assert slot.dropped == 2  # a and b were replaced before the worker took them
    assert slot.take(timeout=0) == "c" and slot.take(timeout=0) is None
    slot.put("d")
    assert slot.dropped == 2 and slot.take(timeout=0) == "d"  # the slot was empty: no drop


def test_slot_close_wakes_a_waiting_worker():
    slot = core.LatestSlot()
    got = []
    worker = threading.Thread(target=lambda: got.append(slot.take(timeout=10.0)))
    worker.start()
    time.sleep(0.05)
    started = time.monotonic()
    slot.close()
    worker.join(2.0)
    assert not worker.is_alive() and got == [None] and time.monotonic() - started < 1.0
    with pytest.raises(RuntimeError):
        slot.put("x")


def test_slot_with_a_slow_consumer_accounts_for_every_item():
    slot = core.LatestSlot()
    consumed = []

    def consume():
        while True:
            item = slot.take(timeout=0.5)
            if item is None:
                if slot.closed:
                    return
                continue
            consumed.append(item)
            if item == 299:
                return
            time.sleep(0.002)  # a slow engine

    worker = threading.Thread(target=consume)
    worker.start()
    for i in range(300):
        slot.put(i)
        if i % 50 == 0:
            time.sleep(0.01)
    worker.join(5.0)
    slot.close()
    assert consumed == sorted(consumed) and consumed[-1] == 299, "the newest item must always be processed"
    assert len(consumed) + slot.dropped == 300
    assert slot.dropped > 0


# ------------------------------------------------------------------------------------------ statistics
def test_rate_meter():
    meter = core.RateMeter(window=5.0)
    for i in range(31):
        meter.tick(100.0 + i * 0.1)
    assert meter.rate(103.0) == pytest.approx(10.0, rel=0.01)
    assert meter.rate(106.0) < 10.0  # decays once the stream stops
    assert meter.rate(120.0) == 0.0 and meter.count == 31


def test_latency_stats():
    stats = core.LatencyStats(maxlen=100)
    assert np.isnan(stats.percentile(50))
    for v in range(1, 201):
        stats.add(float(v))
    assert stats.count == 200 and stats.percentile(50) == pytest.approx(150.5)  # the window holds 101..200
    assert stats.percentile(95) == pytest.approx(195.05)
    assert stats.mean == pytest.approx(100.5)


def test_log_throttle():
    throttle = core.LogThrottle(period=5.0)
    assert throttle.allow("a", now=0.0) == (True, 0)
    assert throttle.allow("a", now=1.0) == (False, 0)
    assert throttle.allow("a", now=2.0) == (False, 0)
    assert throttle.allow("b", now=2.0) == (True, 0)  # keys are independent
    assert throttle.allow("a", now=5.5) == (True, 2)  # reports what it suppressed
    assert core.LogThrottle(0.0).allow("a", now=0.0) == (True, 0)


def test_input_status_warns_on_silence():
    monitor = core.InputMonitor("thermal")
    stats = SyncStats.zeros(2)
    status = core.input_status("/n", monitor, 0, stats, now=10.0, since=5.0, silent_timeout=2.0, active=True)
    assert status.level == core.WARN and "no message received" in status.message and "thermal" in status.message
    for i in range(20):
        monitor.on_receive(10.0 + i * 0.1)
    monitor.on_bad("nan", "32FC1 thermal image has 3 NaN/inf pixels")
    status = core.input_status("/n", monitor, 0, stats, now=12.0, since=5.0, silent_timeout=2.0, active=True)
    values = dict(status.values)
    assert status.level == core.OK and status.name == "/n: thermal input"
    assert values["rejected.nan"] == "1" and values["received"] == "20" and float(values["rate_hz"]) > 5
    status = core.input_status("/n", monitor, 0, stats, now=15.0, since=5.0, silent_timeout=2.0, active=True)
    assert status.level == core.WARN and "silent" in status.message
    inactive = core.input_status("/n", monitor, 0, stats, now=99.0, since=5.0, silent_timeout=2.0, active=False)
    assert inactive.level == core.OK


def test_engine_status_levels():
    monitor = core.EngineMonitor()
    assert core.engine_status("/n", monitor, "torch-cpu", 3, 0.0, "active").level == core.OK
    monitor.on_success(1.0, engine_ms=20.0, total_ms=30.0, queue_ms=4.0, prepare_ms=1.5, publish_ms=4.0)
    status = core.engine_status("/n", monitor, "torch-cpu", 3, 1.0, "active")
    values = dict(status.values)
    assert values["engine_ms_p50"] == "20.000" and values["node_overhead_ms_p50"] == "6.000"
    assert values["node_overhead.prepare_ms_p50"] == "1.500" and values["node_overhead.publish_ms_p50"] == "4.000"
    assert "20.0 ms p50" in status.message
    for _ in range(3):
        monitor.on_failure("RuntimeError: out of memory")
    status = core.engine_status("/n", monitor, "torch-cpu", 3, 2.0, "active")
    assert status.level == core.ERROR and "3 consecutive" in status.message and "out of memory" in status.message
    monitor.on_success(3.0, 20.0, 30.0, 4.0, 1.5, 4.0)
    assert core.engine_status("/n", monitor, "torch-cpu", 3, 3.0, "active").level == core.OK
    assert dict(core.engine_status("/n", monitor, "", 3, 3.0, "active").values)["failures"] == "3"
    failed = core.engine_status("/n", core.EngineMonitor(), "", 3, 0.0, "unconfigured", "invalid parameters: x")
    assert failed.level == core.ERROR and failed.message == "configure failed: invalid parameters: x"
    # issue 21 item 1: an engine that auto put on a fallback backend runs, but not what was deployed: WARN
    skipped = ["onnxruntime: model.onnx does not match its sidecar"]
    fallback = core.engine_status("/n", monitor, "torch-cpu", 3, 3.0, "active", model="/m/model.pt", fallback=skipped)
    assert fallback.level == core.WARN and fallback.message.startswith("fallback torch-cpu (skipped onnxruntime: ")
    assert dict(fallback.values)["model"] == "/m/model.pt" and dict(fallback.values)["fallback"] == skipped[0]
    assert core.engine_status("/n", monitor, "torch-cpu", 3, 3.0, "inactive", fallback=skipped).level == core.WARN


def test_sync_status_reports_skew_and_drops():
    stats = SyncStats.zeros(2)
    stats.record_set([1_000_000_000, 1_004_000_000])
    stats.dropped[0] = 2
    slot = core.LatestSlot()
    slot.put(1)
    slot.put(2)
    status = core.sync_status("/n", stats, 9.5, slot)
    values = dict(status.values)
    assert values["skew_max_ms"] == "4.000" and values["worker_dropped_pairs"] == "1"
    assert values["thermal_unpaired_dropped"] == "2" and "1 pairs dropped" in status.message


# ------------------------------------------------------------------------------------------- overlays
def test_no_output_names_the_dominant_drop_reason():
    """Issue 13 fault 2: inputs arrive, nothing is published: say why."""
    slop = 0.05
    assert core.skew_description([10_000_000_000, 12_000_000_000], slop) == \
        "sync: thermal 2 s behind rgb, slop 0.05 s"
    assert core.skew_description([12_500_000_000, 12_000_000_000], slop) == \
        "sync: rgb 0.5 s behind thermal, slop 0.05 s"
    assert core.skew_description([12_010_000_000, 12_000_000_000], slop) is None
    assert core.skew_description([None, 12_000_000_000], slop) is None

    drops = core.DropTracker()
    drops.clear(sync_dropped_total=3)
    text = core.skew_description([10_000_000_000, 12_000_000_000], slop)
    assert drops.dominant(3 + 40, text) == "sync: thermal 2 s behind rgb, slop 0.05 s (40 frames dropped unpaired)"
    for _ in range(5):
        drops.note("thermal size_mismatch", "thermal 320x256 and RGB 640x360 differ in aspect ratio")
    drops.note("rgb duplicate", "stamp 0.000000 repeats the previous message's stamp; dropped")
    assert drops.dominant(3, None) == ("thermal size_mismatch: thermal 320x256 and RGB 640x360 differ in aspect "
                                       "ratio (5 dropped)")
    for _ in range(9):
        drops.note("rgb duplicate", "stamp 0.000000 repeats the previous message's stamp; dropped")
    assert drops.dominant(3, None).startswith("rgb duplicate: stamp 0.000000 repeats")
    drops.clear(sync_dropped_total=50)
    assert drops.dominant(50, None).startswith("no pair formed yet")

    inputs = [core.InputMonitor("thermal"), core.InputMonitor("rgb")]
    assert core.output_stall(10.0, None, 0.0, inputs, 3.0) is None  # nothing arrives: the inputs warn instead
    for m in inputs:
        m.on_receive(9.9)
    assert core.output_stall(10.0, None, 0.0, inputs, 3.0) == 10.0
    assert core.output_stall(10.0, 8.0, 0.0, inputs, 3.0) is None  # published 2 s ago
    assert core.output_stall(10.0, None, 8.0, inputs, 3.0) is None  # activated 2 s ago
    status = core.sync_status("/n", SyncStats.zeros(2), 0.0, None, stall="no output for 4.0 s: sync: x")
    assert status.level == core.WARN and status.message == "no output for 4.0 s: sync: x"
    assert core.sync_status("/n", SyncStats.zeros(2), 0.0, None).level == core.OK


def test_overlays():
    class_file = SimpleNamespace(names=("person",), colors=np.array([[220, 20, 60]]))
    colors = core.class_colors(["person", "zebra"], class_file)
    assert colors.tolist()[0] == [220, 20, 60] and colors[1].any()
    mask = np.array([[0, 1], [1, 0]], np.uint8)
    bgr = core.colorize_mask(mask, colors)
    assert bgr.shape == (2, 2, 3) and bgr[0, 1].tolist() == colors[1][::-1].tolist()
    assert bgr[0, 0].tolist() == [60, 20, 220]
    image = np.zeros((40, 50, 3), np.uint8)
    dets = Detections(np.array([[5, 5, 30, 30]], np.float32), np.array([0.9], np.float32), np.array([0]))
    out = core.render_detections(image, dets, ["person", "zebra"], colors)
    assert out.any() and not image.any()
    # boxes in a frame twice the image's size (a fused image at the network size) are drawn scaled down
    half = core.render_detections(image, dets, ["person", "zebra"], colors, frame_size=(2 * image.shape[0],
                                                                                        2 * image.shape[1]))
    assert half[2:16, 2:16].any() and not half[16:, 16:].any()


def test_engine_options_carry_only_what_is_set():
    defaults = {spec.name: spec.default for spec in core.PARAMS}
    options = core.engine_options(core.validate_params(defaults))
    # every backend takes these; no CPU option a backend could refuse
    assert set(options) == {"postprocess", "registration", "fused_resolution"}
    assert options["postprocess"] == PostprocessConfig() and options["fused_resolution"] == "camera"
    options = core.engine_options(core.validate_params({**defaults, "num_threads": 1,
                                                        "onnxruntime.allow_spinning": True}))
    assert options["allow_spinning"] is True and options["num_threads"] == 1
