"""The ROS-free half of the fusion node: parameter schema + validation, the latest-pair worker slot,
input / rate / latency statistics and the diagnostics they turn into.

Nothing here imports rclpy, so all of it is unit-tested without ROS (test/test_node_core.py); the node
(fusion_ros/nodes/fusion_node.py) only wires these pieces to subscriptions, publishers and timers.
"""
from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

import cv2
import numpy as np

from .image_conversions import (
    COLOR_ENCODINGS,
    DEFAULT_MAX_PIXELS,
    THERMAL_ENCODINGS,
    ImageConversionError,
    check_color_array,
    check_pixel_limit,
    compressed_image_size,
    compressed_to_array,
    fixed_thermal_range,
    image_to_array,
    thermal_to_float,
    to_rgb8,
)
from .postprocess import POSTPROCESS_LIMITS, PostprocessConfig, postprocess_problem
from .registration import Registration
from .topics import RGB_TOPIC, THERMAL_TOPIC

# ----------------------------------------------------------------------------------------- constants
BACKENDS = ("auto", "onnxruntime", "torch", "tensorrt")
RELIABILITIES = ("best_effort", "reliable")
TRANSPORTS = ("raw", "compressed")
THERMAL_MODES = ("fixed", "auto")
REGISTRATION_MODES = ("identity", "homography", "planar")
BORDERS = ("constant", "replicate")
DYNAMIC_PARAMS = ("score_threshold", "nms_iou", "max_detections")  # applied to the running engine

# diagnostic levels (same values as diagnostic_msgs/DiagnosticStatus)
OK, WARN, ERROR, STALE = 0, 1, 2, 3
LEVEL_NAMES = {OK: "OK", WARN: "WARN", ERROR: "ERROR", STALE: "STALE"}

_IDENTITY_3X3 = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]


class ParamError(ValueError):
    """One or more parameters with invalid values; the message lists every problem found."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("invalid parameters: " + "; ".join(self.problems))


# ------------------------------------------------------------------------------------------- checks
def _one_of(options):
    def check(value):
        return None if value in options else f"must be one of {', '.join(options)}, got '{value}'"

    return check


def _in_range(low=None, high=None, low_open=False, high_open=False):
    def check(value):
        if not math.isfinite(value):
            return f"must be a finite number, got {value}"
        if low is not None and (value <= low if low_open else value < low):
            return f"must be {'>' if low_open else '>='} {low}, got {value}"
        if high is not None and (value >= high if high_open else value > high):
            return f"must be {'<' if high_open else '<='} {high}, got {value}"
        return None

    return check


def _length(n):
    def check(value):
        if len(value) != n:
            return f"needs exactly {n} numbers, got {len(value)}"
        if not all(math.isfinite(v) for v in value):
            return f"contains NaN or inf: {list(value)}"
        return None

    return check


def _topic(value):
    if not value or any(c.isspace() for c in value) or value.endswith("/"):
        return f"must be a non-empty topic name without spaces or a trailing '/', got '{value}'"
    return None


def _frame_id(value):
    if not value or any(c.isspace() for c in value):
        return f"must be a non-empty frame id without spaces, got '{value}'"
    return None


# ------------------------------------------------------------------------------------------- schema
@dataclass(frozen=True)
class ParamSpec:
    """One node parameter: its name, default (which also fixes its ROS type), a description for the
    ParameterDescriptor and a check returning an error reason (or None)."""

    name: str
    default: Any
    description: str
    constraints: str = ""
    check: Callable[[Any], str | None] | None = None
    dynamic: bool = False  # may change while the node is configured (applied at once)

    @property
    def kind(self) -> str:
        """'bool' | 'int' | 'double' | 'string' | 'double_array' (the ROS parameter type)."""
        value = self.default
        if isinstance(value, bool):
            return "bool"
        if isinstance(value, int):
            return "int"
        if isinstance(value, float):
            return "double"
        if isinstance(value, str):
            return "string"
        if isinstance(value, list) and all(isinstance(v, float) for v in value):
            return "double_array"
        raise TypeError(f"unsupported default for {self.name}: {value!r}")


def _postprocess_spec(name: str, description: str) -> ParamSpec:
    """A post-processing parameter: default and limits are PostprocessConfig's (defined once, there)."""
    low, high = POSTPROCESS_LIMITS[name]
    return ParamSpec(name, getattr(PostprocessConfig(), name), description, f"[{low}, {high}]",
                     lambda value: postprocess_problem(name, value), dynamic=True)


PARAMS: tuple[ParamSpec, ...] = (
    ParamSpec("lifecycle", True,
              "true: a managed lifecycle node that waits for configure/activate transitions; false: "
              "configures and activates itself at start (plain node)"),
    # topics
    ParamSpec("thermal_topic", THERMAL_TOPIC, "thermal image topic (relative names follow the namespace; "
              "connect a camera by remapping it, e.g. the launch files' thermal_topic argument)", check=_topic),
    ParamSpec("rgb_topic", RGB_TOPIC, "RGB image topic (remap like thermal_topic)", check=_topic),
    ParamSpec("thermal_transport", "raw", "thermal transport: raw (sensor_msgs/Image) or compressed "
              "(sensor_msgs/CompressedImage on <thermal_topic>/compressed, PNG for 16-bit)",
              "raw|compressed", _one_of(TRANSPORTS)),
    ParamSpec("rgb_transport", "raw", "RGB transport: raw or compressed (<rgb_topic>/compressed)",
              "raw|compressed", _one_of(TRANSPORTS)),
    ParamSpec("max_image_pixels", DEFAULT_MAX_PIXELS, "largest input image accepted, in pixels (width*height), "
              "checked on the declared size before decoding (Image width/height, PNG/JPEG header); bigger "
              "images are rejected [too_large]. Default 4096*4096 = 16777216, above any vehicle camera",
              "[1, 1073741824]", _in_range(1, 1 << 30)),
    # engine
    ParamSpec("model_path", "", "model file (.pt), ONNX export (.onnx + .onnx.json) or TensorRT engine "
              "(.engine + .engine.json); empty: the bundled fusion_ros/models/default.pt"),
    ParamSpec("backend", "auto", "inference backend; auto picks tensorrt > onnxruntime > torch among the "
              "artifacts found beside model_path", "auto|onnxruntime|torch|tensorrt", _one_of(BACKENDS)),
    ParamSpec("device", "auto", "compute device; auto: cuda when the backend can use a GPU here",
              "auto|cpu|cuda", _one_of(("auto", "cpu", "cuda"))),
    ParamSpec("num_threads", 0, "CPU threads for the engine (torch intra-op / onnxruntime intra-op); "
              "0: the library default", ">= 0", _in_range(0, 256)),
    ParamSpec("onnxruntime.allow_spinning", False, "backend onnxruntime only: let its threads busy-wait between frames: a "
              "little lower engine latency on an otherwise idle machine, but it takes CPU from everything else "
              "(the node's own publishing included)"),
    ParamSpec("input_height", 0, "network input height in pixels; 0: the model's own size", "0 or >= 32",
              lambda v: None if v == 0 or 32 <= v <= 8192 else f"must be 0 or in [32, 8192], got {v}"),
    ParamSpec("input_width", 0, "network input width in pixels; 0: the model's own size", "0 or >= 32",
              lambda v: None if v == 0 or 32 <= v <= 8192 else f"must be 0 or in [32, 8192], got {v}"),
    ParamSpec("classes_file", "", "class list YAML (names + colours for overlays); empty: the package's "
              "config/classes.yaml. Detection class ids come from the model itself"),
    _postprocess_spec("score_threshold", "minimum detection score (runtime-updatable)"),
    _postprocess_spec("nms_iou", "IoU above which same-class boxes are suppressed (runtime-updatable)"),
    _postprocess_spec("max_detections", "detections kept per frame after NMS (runtime-updatable)"),
    # QoS
    ParamSpec("input_qos.reliability", "best_effort", "input subscriptions' reliability (best_effort "
              "matches both kinds of camera publishers)", "best_effort|reliable", _one_of(RELIABILITIES)),
    ParamSpec("input_qos.depth", 1, "input subscriptions' history depth (keep last)", "[1, 100]",
              _in_range(1, 100)),
    ParamSpec("output_qos.reliability", "reliable", "output publishers' reliability (reliable publishers "
              "serve best_effort and reliable subscribers alike)", "best_effort|reliable",
              _one_of(RELIABILITIES)),
    ParamSpec("output_qos.depth", 1, "output publishers' history depth (keep last)", "[1, 100]",
              _in_range(1, 100)),
    # synchronisation
    ParamSpec("sync.slop", 0.05, "maximum stamp difference (s) between the thermal and RGB frame of a pair",
              "[0, 10]", _in_range(0.0, 10.0)),
    ParamSpec("sync.queue_size", 5, "frames held per input while looking for a partner", "[1, 1000]",
              _in_range(1, 1000)),
    ParamSpec("sync.inter_message_lower_bound", 0.0, "minimum stamp gap (s) on each input (e.g. 0.02 for "
              "30 Hz cameras): lets a pair be emitted before the next frame arrives (lower latency); 0 off",
              "[0, 10]", _in_range(0.0, 10.0)),
    ParamSpec("sync.reset_on_jump_back", 1.0, "a stamp this many seconds older than the last one on its input "
              "resets the synchroniser (a bag loop or simulator reset); 0 never resets", "[0, 3600]",
              _in_range(0.0, 3600.0)),
    # thermal normalisation
    ParamSpec("thermal.mode", "fixed", "thermal normalisation: fixed (a temperature keeps its grey level) or "
              "auto (per-frame 1st..99th percentile, for uncalibrated cameras)", "fixed|auto",
              _one_of(THERMAL_MODES)),
    ParamSpec("thermal.low", 0.0, "fixed mode: value mapped to 0, in the encoding's units (8-bit counts, "
              "16-bit counts, 32FC1 kelvin); low = high = 0: the model's 16-bit range / encoding default"),
    ParamSpec("thermal.high", 0.0, "fixed mode: value mapped to 1 (see thermal.low)"),
    # registration
    ParamSpec("registration.mode", "identity", "IR->RGB registration: identity (already registered; thermal "
              "is resized to the RGB frame), homography (registration.homography) or planar (intrinsics, "
              "rotation, translation, plane distance)", "identity|homography|planar",
              _one_of(REGISTRATION_MODES)),
    ParamSpec("registration.homography", list(_IDENTITY_3X3), "3x3 thermal-pixel -> RGB-pixel homography, "
              "row-major (9 numbers)", "9 numbers, invertible", _length(9)),
    ParamSpec("registration.intrinsics_ir", list(_IDENTITY_3X3), "planar: thermal camera matrix K_ir, "
              "row-major", "9 numbers", _length(9)),
    ParamSpec("registration.intrinsics_rgb", list(_IDENTITY_3X3), "planar: RGB camera matrix K_rgb, row-major",
              "9 numbers", _length(9)),
    ParamSpec("registration.rotation", list(_IDENTITY_3X3), "planar: rotation R (X_rgb = R X_ir + t), "
              "row-major", "9 numbers, a rotation", _length(9)),
    ParamSpec("registration.translation", [0.0, 0.0, 0.0], "planar: translation t (same unit as "
              "plane_distance)", "3 numbers", _length(3)),
    ParamSpec("registration.plane_distance", 10.0, "planar: distance of the scene plane from the thermal "
              "camera", "> 0", _in_range(0.0, None, low_open=True)),
    ParamSpec("registration.thermal_width", 0, "width (pixels) of the thermal image the registration was "
              "calibrated for; required (> 0) for homography and planar, optional for identity (0: any). A "
              "thermal image of another size is rejected [thermal_size], never fused with this homography",
              "0 or [1, 65535]", _in_range(0, 65535)),
    ParamSpec("registration.thermal_height", 0, "height (pixels) of the calibrated thermal image (see "
              "registration.thermal_width)", "0 or [1, 65535]", _in_range(0, 65535)),
    ParamSpec("registration.border", "constant", "RGB pixels outside the thermal view: constant (0) or "
              "replicate (edge pixels)", "constant|replicate", _one_of(BORDERS)),
    ParamSpec("registration.max_aspect_mismatch", 0.02, "identity mode: largest relative difference of the "
              "thermal and RGB aspect ratios accepted (other pairs are rejected as unregistrable)", "[0, 1]",
              _in_range(0.0, 1.0)),
    # outputs
    ParamSpec("default_frame_id", "rgb_camera_optical_frame", "frame_id of the outputs when the RGB message "
              "has an empty one", check=_frame_id),
    ParamSpec("publish_fused", True, "publish fused/image (bgr8)"),
    ParamSpec("publish_detections", True, "publish detections (vision_msgs/Detection2DArray)"),
    ParamSpec("publish_segmentation", False, "publish segmentation/mask (mono8 class ids); off by default: the "
              "bundled model's segmentation output has never seen a real label"),
    ParamSpec("publish_segmentation_color", False, "publish segmentation/color (bgr8 class colours)"),
    ParamSpec("publish_detection_image", False, "publish detections/image (bgr8 fused image with boxes)"),
    # diagnostics
    ParamSpec("diagnostics.period", 1.0, "seconds between /diagnostics messages", "[0.05, 60]",
              _in_range(0.05, 60.0)),
    ParamSpec("diagnostics.silent_timeout", 2.0, "an input silent for longer (s) is reported WARN",
              "[0.1, 3600]", _in_range(0.1, 3600.0)),
    ParamSpec("diagnostics.no_output_timeout", 3.0, "inputs arriving but no pair published for longer (s) is "
              "reported WARN on the synchronizer status, naming the dominant drop reason (stamp skew beyond "
              "sync.slop, size mismatch, zero / duplicate stamps ...)", "[0.1, 3600]", _in_range(0.1, 3600.0)),
    ParamSpec("diagnostics.engine_error_threshold", 3, "consecutive engine failures reported ERROR",
              "[1, 1000]", _in_range(1, 1000)),
    ParamSpec("log_throttle", 5.0, "seconds between repeated log lines of one kind (bad input, engine "
              "failure)", "[0, 3600]", _in_range(0.0, 3600.0)),
)
PARAM_SPECS: dict[str, ParamSpec] = {spec.name: spec for spec in PARAMS}


def coerce(spec: ParamSpec, value):
    """A parameter value in the spec's type, or raise TypeError with the reason. Integers are accepted for
    doubles (``-p score_threshold:=1`` arrives as an integer), nothing else is converted."""
    kind = spec.kind
    if kind == "bool":
        if isinstance(value, bool):
            return value
    elif kind == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            return int(value)
    elif kind == "double":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif kind == "string":
        if isinstance(value, str):
            return value
    elif kind == "double_array":
        if isinstance(value, (list, tuple, np.ndarray)) and all(
            isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) for v in value
        ):
            return [float(v) for v in value]
    raise TypeError(f"must be of type {kind}, got {type(value).__name__} {value!r}")


def check_value(name: str, value) -> tuple[Any, str | None]:
    """(coerced value, None) or (value, reason) for one parameter."""
    spec = PARAM_SPECS.get(name)
    if spec is None:
        return value, "unknown parameter"
    try:
        value = coerce(spec, value)
    except TypeError as exc:
        return value, str(exc)
    if spec.check is not None:
        reason = spec.check(value)
        if reason:
            return value, reason
    return value, None


def cli_parameter_overrides(argv: list[str]) -> dict:
    """``-p NAME:=VALUE`` / ``--param NAME:=VALUE`` of the ``--ros-args`` sections of ``argv``, values parsed
    as rcl does (YAML). Node-scoped forms (``node:name:=value``) are left out."""
    import yaml

    out, in_ros, i = {}, False, 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--ros-args":
            in_ros = True
        elif arg == "--":
            in_ros = False
        elif in_ros and arg in ("-p", "--param") and i + 1 < len(argv):
            name, sep, text = argv[i + 1].partition(":=")
            if sep and ":" not in name:
                try:
                    out[name] = yaml.safe_load(text)
                except yaml.YAMLError:
                    out[name] = text
            i += 1
        i += 1
    return out


def dropped_cli_parameters(argv: list[str], overrides: dict) -> list[str]:
    """Warnings for ``-p`` values that rcl dropped: layered over a params file that sets the same parameter
    with another type (``-p score_threshold:=abc`` over ``score_threshold: 0.4``), rcl silently keeps the
    file's value. ``overrides``: name -> the value the node actually received."""
    problems = []
    for name, wanted in cli_parameter_overrides(argv).items():
        if name not in overrides:
            continue
        got = overrides[name]
        same = got == wanted and type(got) is type(wanted)
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (got, wanted))
        if same or (numeric and float(got) == float(wanted)):
            continue
        problems.append(f"-p {name}:={wanted!r} was dropped by rcl (its type does not match the params file's "
                        f"value, which is kept: {got!r}); give it with the file's type")
    return problems


@dataclass(frozen=True)
class NodeConfig:
    """Validated parameters (names as in PARAMS, dots kept) plus objects derived from them."""

    values: dict
    registration: Registration

    def __getitem__(self, name: str):
        return self.values[name]

    @property
    def input_size(self) -> tuple[int, int] | None:
        h, w = self.values["input_height"], self.values["input_width"]
        return (h, w) if h and w else None

    @property
    def thermal_size(self) -> tuple[int, int] | None:
        """(width, height) of the thermal image the registration is calibrated for, or None (any size)."""
        w, h = self.values["registration.thermal_width"], self.values["registration.thermal_height"]
        return (w, h) if w and h else None

    @property
    def device(self) -> str | None:
        device = self.values["device"]
        return None if device == "auto" else device

    @property
    def thermal_range(self) -> tuple[float, float] | None:
        """The configured fixed thermal range (thermal.low, thermal.high), or None (both 0: the defaults of
        image_conversions.fixed_thermal_range)."""
        low, high = self.values["thermal.low"], self.values["thermal.high"]
        return None if low == 0.0 and high == 0.0 else (low, high)

    @property
    def postprocess(self) -> PostprocessConfig:
        return PostprocessConfig(**{name: self.values[name] for name in DYNAMIC_PARAMS})


def registration_config(values: dict) -> dict | None:
    mode = values["registration.mode"]
    border = values["registration.border"]
    if mode == "identity":
        return {"border": border}
    if mode == "homography":
        return {"homography": values["registration.homography"], "border": border}
    return {
        "intrinsics_ir": values["registration.intrinsics_ir"],
        "intrinsics_rgb": values["registration.intrinsics_rgb"],
        "rotation": values["registration.rotation"],
        "translation": values["registration.translation"],
        "plane_distance": values["registration.plane_distance"],
        "border": border,
    }


def validate_params(raw: dict) -> NodeConfig:
    """Check every parameter (missing ones take their default) and the combinations; raise ParamError
    listing all problems, each as 'name: reason'."""
    problems: list[str] = []
    values: dict = {}
    for spec in PARAMS:
        value, reason = check_value(spec.name, raw.get(spec.name, spec.default))
        if reason:
            problems.append(f"{spec.name}: {reason}")
        values[spec.name] = value
    unknown = sorted(set(raw) - set(PARAM_SPECS))
    if unknown:
        problems.append(f"unknown parameter(s) {', '.join(unknown)}")
    if not problems:
        if (values["input_height"] == 0) != (values["input_width"] == 0):
            problems.append("input_height/input_width: set both (> 0) or neither (0 = the model's size), "
                            f"got {values['input_height']}x{values['input_width']}")
        low, high = values["thermal.low"], values["thermal.high"]
        if values["thermal.mode"] == "fixed" and not (low == 0.0 and high == 0.0):
            if not (math.isfinite(low) and math.isfinite(high) and high > low):
                problems.append(f"thermal.low/thermal.high: need finite low < high, got {low} .. {high}")
        if values["thermal_topic"] == values["rgb_topic"] and values["thermal_transport"] == values["rgb_transport"]:
            problems.append(f"thermal_topic and rgb_topic are the same topic '{values['thermal_topic']}'")
    registration = Registration(None)
    if not problems:
        try:
            registration = Registration.from_config(registration_config(values))
        except ValueError as exc:
            problems.append(f"registration.{values['registration.mode']}: {exc}")
    if not any(p.startswith(("registration.thermal_", "registration.mode")) for p in problems):
        tw, th = values["registration.thermal_width"], values["registration.thermal_height"]
        if (tw == 0) != (th == 0):
            problems.append(f"registration.thermal_width/thermal_height: set both or neither, got {tw}x{th}")
        elif tw == 0 and values["registration.mode"] != "identity":
            problems.append(
                f"registration.thermal_width/thermal_height: registration.mode {values['registration.mode']} "
                "maps thermal pixels, so it holds for one thermal resolution only: set the width and height of "
                "the thermal image it was calibrated for")
    if problems:
        raise ParamError(problems)
    return NodeConfig(values, registration)


def check_runtime_update(name: str, value, configured: bool) -> tuple[Any, str | None]:
    """Whether a parameter may take ``value`` now: (coerced value, None) or (value, reason)."""
    value, reason = check_value(name, value)
    if reason:
        return value, f"{name}: {reason}"
    spec = PARAM_SPECS[name]
    if configured and not spec.dynamic:
        return value, (f"{name} is read when the node is configured; deactivate and clean up the node, set "
                       f"it, then configure again (runtime-updatable: {', '.join(DYNAMIC_PARAMS)})")
    return value, None


# ----------------------------------------------------------------------------------- input decoding
@dataclass
class Frame:
    """One decoded input message, as queued in the synchroniser."""

    array: np.ndarray | None  # decoded image (None for compressed data until the worker decodes it)
    encoding: str
    frame_id: str
    stamp_ns: int
    arrival: float  # time.monotonic() at the callback
    compressed: tuple[str, Any] | None = None  # (format, data) of a CompressedImage


def decode_image(msg, role: str, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> tuple[np.ndarray, str]:
    """An Image-like message -> (array view, encoding); ImageConversionError names what is wrong. The
    declared width*height is checked against ``max_pixels`` first (ImageTooLarge)."""
    allowed = THERMAL_ENCODINGS if role == "thermal" else COLOR_ENCODINGS
    if msg.encoding not in allowed:
        raise ImageConversionError(
            f"{role} encoding '{msg.encoding}' is not supported (use one of {', '.join(allowed)})"
        )
    return image_to_array(msg, max_pixels), msg.encoding


def check_compressed_size(fmt: str, data, max_pixels: int | None) -> None:
    """ImageTooLarge when a CompressedImage's PNG/JPEG header declares more than ``max_pixels`` pixels
    (cheap: reads the header only; data that is not PNG/JPEG is left for the decoder to reject)."""
    header = compressed_image_size(data)
    if header is not None:
        container, width, height = header
        check_pixel_limit(width, height, max_pixels, f"compressed {container} ('{fmt}', {len(data)} bytes)")


def decode_compressed(fmt: str, data, role: str, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> tuple[np.ndarray, str]:
    array, encoding = compressed_to_array(fmt, data, max_pixels)
    if role == "thermal" and encoding not in ("mono8", "mono16"):
        raise ImageConversionError(
            f"compressed thermal '{fmt}' decodes to {encoding}; send a single-channel 8/16-bit PNG"
        )
    return array, encoding


def classify_error(message: str) -> str:
    """Short reason key (for diagnostics counters) of an input conversion error message."""
    text = message.lower()
    if "exceeds the pixel limit" in text:
        return "too_large"
    if "nan/inf" in text:
        return "nan"
    if "encoding" in text or "layout" in text:
        return "encoding"
    if "empty" in text or "no data" in text:
        return "empty"
    if "decode" in text:
        return "decode"
    if "step" in text or "bytes" in text:
        return "size"
    return "invalid"


def check_thermal_size(thermal_hw: tuple[int, int], calibrated_wh: tuple[int, int] | None,
                       mode: str) -> str | None:
    """Reason a thermal frame does not match the size its registration was calibrated for, or None."""
    if calibrated_wh is None:
        return None
    width, height = calibrated_wh
    if tuple(thermal_hw) == (height, width):
        return None
    return (f"thermal image is {thermal_hw[1]}x{thermal_hw[0]} (WxH) but registration ({mode}) is calibrated for "
            f"{width}x{height} (registration.thermal_width/thermal_height): not fused with a homography made for "
            "another resolution; recalibrate for this resolution or set the camera back")


def check_pair_geometry(thermal_hw: tuple[int, int], rgb_hw: tuple[int, int], identity: bool,
                        max_aspect_mismatch: float) -> str | None:
    """Reason a thermal/RGB pair cannot be registered, or None. A homography maps any thermal size onto
    the RGB grid (check_thermal_size binds it to its calibrated size); identity registration only resizes,
    so the aspect ratios must agree."""
    if not identity:
        return None
    if thermal_hw == rgb_hw:
        return None
    thermal_aspect = thermal_hw[1] / thermal_hw[0]
    rgb_aspect = rgb_hw[1] / rgb_hw[0]
    mismatch = abs(thermal_aspect - rgb_aspect) / rgb_aspect
    if mismatch > max_aspect_mismatch:
        return (f"thermal {thermal_hw[1]}x{thermal_hw[0]} and RGB {rgb_hw[1]}x{rgb_hw[0]} (WxH) differ in aspect "
                f"ratio by {mismatch:.1%} and registration.mode is identity: set registration.homography (or "
                f"planar) for this camera pair, or raise registration.max_aspect_mismatch")
    return None


# ------------------------------------------------------------------ pairing and pair preparation
# The node's input path, as functions shared with the offline bag evaluator (fusion_ros.bag.evaluate),
# so a bag replayed offline is paired, normalised and rejected exactly as the live node does it.
THERMAL_INDEX, RGB_INDEX = 0, 1
ROLES = ("thermal", "rgb")


@dataclass
class OfferOutcome:
    """What offering one frame to the synchroniser did."""

    pairs: list  # (thermal Frame, rgb Frame) sets completed by this frame, oldest first
    reset_back_s: float | None = None  # seconds the stamp jumped back when that reset the synchroniser
    rejected: tuple[str, str] | None = None  # (reason key, message) when the stamp was not newer


def offer_frame(sync, last_stamps: list, index: int, frame: Frame, reset_on_jump_back: float) -> OfferOutcome:
    """Feed ``frame`` (input ``index``) to ``sync``. ``last_stamps`` (one slot per input, updated in place)
    holds the last accepted stamp of each input. A stamp more than ``reset_on_jump_back`` seconds older
    than the last one (a bag loop, a simulator reset) resets the synchroniser first (0: never); a stamp
    not newer than the last accepted one is rejected ('duplicate' / 'out_of_order') and also counted in
    the synchroniser's statistics."""
    last = last_stamps[index]
    reset = None
    if last is not None and reset_on_jump_back > 0 and last - frame.stamp_ns > reset_on_jump_back * 1e9:
        reset = (last - frame.stamp_ns) * 1e-9
        sync.reset()
        for i in range(len(last_stamps)):
            last_stamps[i] = None
        last = None
    if last is not None and frame.stamp_ns <= last:
        if frame.stamp_ns == last:
            kind, what = "duplicate", "repeats the previous message's stamp"
        else:
            older_ms = (last - frame.stamp_ns) * 1e-6
            kind, what = "out_of_order", f"is {older_ms:.1f} ms older than the previous message"
        sync.add_ns(index, frame.stamp_ns, frame)  # counted there too (sync stats)
        return OfferOutcome([], reset, (kind, f"stamp {frame.stamp_ns * 1e-9:.6f} {what}; dropped"))
    last_stamps[index] = frame.stamp_ns
    return OfferOutcome(sync.add_ns(index, frame.stamp_ns, frame), reset, None)


def decode_frame(frame: Frame, role: str, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> tuple[np.ndarray, str]:
    """A queued frame -> (array, encoding): compressed data is decoded now (its header's size checked against
    ``max_pixels`` first), raw frames are already arrays."""
    if frame.compressed is not None:
        fmt, data = frame.compressed
        return decode_compressed(fmt, data, role, max_pixels)
    return frame.array, frame.encoding


class PairRejected(Exception):
    """A pair the node drops before the engine: ``index`` (THERMAL_INDEX / RGB_INDEX) is the input it is
    counted against, ``reason`` the diagnostics key, the message says why."""

    def __init__(self, index: int, reason: str, message: str):
        super().__init__(message)
        self.index, self.reason, self.message = index, reason, message


def prepare_inputs(cfg: NodeConfig, model_thermal_range, thermal_frame: Frame,
                   color_frame: Frame) -> tuple[np.ndarray, np.ndarray, str]:
    """A synchronised pair -> (thermal float32 H×W in 0..1, colour frame as received, its encoding): the
    engine's inputs (the engine reorders colour at the network size), or PairRejected: undecodable data, a
    pair the configured registration cannot map, bad thermal values, an unusable colour frame."""
    decoded = []
    for index, frame in ((THERMAL_INDEX, thermal_frame), (RGB_INDEX, color_frame)):
        try:
            decoded.append(decode_frame(frame, ROLES[index], cfg["max_image_pixels"]))
        except ImageConversionError as exc:
            raise PairRejected(index, classify_error(str(exc)), str(exc)) from None
    (thermal, t_enc), (color, c_enc) = decoded
    reason = check_thermal_size(thermal.shape[:2], cfg.thermal_size, cfg["registration.mode"])
    if reason:
        raise PairRejected(THERMAL_INDEX, "thermal_size", reason)
    reason = check_pair_geometry(thermal.shape[:2], color.shape[:2], cfg.registration.is_identity,
                                 cfg["registration.max_aspect_mismatch"])
    if reason:
        raise PairRejected(THERMAL_INDEX, "size_mismatch", reason)
    try:
        low, high = fixed_thermal_range(t_enc, cfg.thermal_range, model_thermal_range)
        thermal_unit = thermal_to_float(thermal, t_enc, cfg["thermal.mode"], low, high)
    except (ImageConversionError, ValueError) as exc:
        raise PairRejected(THERMAL_INDEX, classify_error(str(exc)), str(exc)) from None
    try:
        check_color_array(color, c_enc)
    except ImageConversionError as exc:
        raise PairRejected(RGB_INDEX, "encoding", str(exc)) from None
    return thermal_unit, color, c_enc


def prepare_pair(cfg: NodeConfig, model_thermal_range, thermal_frame: Frame,
                 rgb_frame: Frame) -> tuple[np.ndarray, np.ndarray]:
    """``prepare_inputs`` with the colour frame as uint8 RGB, for the offline tools that keep or draw it."""
    thermal_unit, color, encoding = prepare_inputs(cfg, model_thermal_range, thermal_frame, rgb_frame)
    return thermal_unit, to_rgb8(color, encoding)


def engine_options(cfg: NodeConfig) -> dict:
    """create_engine keyword options from the node's parameters: post-processing, registration, size, and
    the CPU options only when set (the engine refuses an option its backend does not use)."""
    options = {"postprocess": cfg.postprocess, "registration": cfg.registration}
    if cfg.input_size:
        options["input_size"] = cfg.input_size
    if cfg["num_threads"] > 0:
        options["num_threads"] = cfg["num_threads"]
    if cfg["onnxruntime.allow_spinning"]:
        options["allow_spinning"] = True
    return options


def make_synchronizer(cfg: NodeConfig):
    """The node's ApproximateTime synchroniser (thermal = input 0, RGB = input 1) for these parameters."""
    from .sync import ApproximateTimeSynchronizer

    return ApproximateTimeSynchronizer(
        2, queue_size=cfg["sync.queue_size"], slop=cfg["sync.slop"],
        inter_message_lower_bounds=cfg["sync.inter_message_lower_bound"],
    )


# ------------------------------------------------------------------------------- latest-pair worker slot
class LatestSlot:
    """A one-item hand-off from the executor thread to the worker: ``put`` replaces an item the worker has
    not taken yet (counted in ``dropped``), ``take`` waits for the next one."""

    def __init__(self):
        self._cond = threading.Condition()
        self._item = None
        self._has_item = False
        self._closed = False
        self.dropped = 0

    def put(self, item) -> None:
        """Offer ``item``, replacing (dropping) one the worker has not taken yet."""
        with self._cond:
            if self._closed:
                raise RuntimeError("slot is closed")
            if self._has_item:
                self.dropped += 1
            self._item, self._has_item = item, True
            self._cond.notify()

    def take(self, timeout: float | None = None):
        """The waiting item (removing it), or None after ``timeout`` seconds or once closed."""
        with self._cond:
            if not self._has_item and not self._closed:
                self._cond.wait(timeout)
            if not self._has_item:
                return None
            item, self._item, self._has_item = self._item, None, False
            return item

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._item, self._has_item = None, False
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed


# ------------------------------------------------------------------------------------------ statistics
class RateMeter:
    """Events per second over a sliding time window (times from time.monotonic())."""

    def __init__(self, window: float = 5.0, max_events: int = 10000):
        self.window = float(window)
        self._times: deque = deque(maxlen=max_events)
        self._lock = threading.Lock()
        self.count = 0

    def tick(self, now: float) -> None:
        with self._lock:
            self._times.append(now)
            self.count += 1

    def rate(self, now: float) -> float:
        with self._lock:
            times = self._times
            while times and times[0] < now - self.window:
                times.popleft()
            if len(times) < 2:
                return 0.0
            # (n - 1) intervals from the first event in the window; measured up to now, not to the last
            # event, so the rate of a stream that stopped decays instead of freezing
            span = now - times[0]
            return (len(times) - 1) / span if span > 0 else 0.0


class LatencyStats:
    """Bounded window of samples (milliseconds) with percentiles."""

    def __init__(self, maxlen: int = 1000):
        self._samples: deque = deque(maxlen=maxlen)
        self._lock = threading.Lock()
        self.count = 0
        self.total = 0.0

    def add(self, value_ms: float) -> None:
        with self._lock:
            self._samples.append(float(value_ms))
            self.count += 1
            self.total += float(value_ms)

    def percentile(self, q: float) -> float:
        with self._lock:
            samples = list(self._samples)
        if not samples:
            return float("nan")
        return float(np.percentile(samples, q))

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else float("nan")

    def summary(self) -> dict:
        return {"p50": self.percentile(50), "p95": self.percentile(95), "count": self.count}


@dataclass
class InputMonitor:
    """Arrival statistics and rejected messages of one input topic."""

    name: str
    rate: RateMeter = field(default_factory=RateMeter)
    received: int = 0
    last_arrival: float | None = None
    bad: dict = field(default_factory=dict)  # reason -> count
    last_error: str = ""

    def on_receive(self, now: float) -> None:
        self.received += 1
        self.last_arrival = now
        self.rate.tick(now)

    def on_bad(self, reason: str, message: str) -> None:
        self.bad[reason] = self.bad.get(reason, 0) + 1
        self.last_error = message

    @property
    def bad_total(self) -> int:
        return sum(self.bad.values())

    def silent_for(self, now: float, since: float) -> float:
        """Seconds since the last message (or since ``since``, e.g. activation, if none came yet)."""
        return now - (self.last_arrival if self.last_arrival is not None else since)


class LogThrottle:
    """At most one log line per key per ``period`` seconds; reports how many were suppressed."""

    def __init__(self, period: float):
        self.period = float(period)
        self._last: dict = {}
        self._suppressed: dict = {}

    def allow(self, key, now: float | None = None) -> tuple[bool, int]:
        """(log now?, lines suppressed since the last one logged for this key)."""
        now = time.monotonic() if now is None else now
        last = self._last.get(key)
        if last is not None and now - last < self.period:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return False, 0
        self._last[key] = now
        return True, self._suppressed.pop(key, 0)


@dataclass
class EngineMonitor:
    """Engine results and failures, and the per-stage latencies of the node around it."""

    engine_ms: LatencyStats = field(default_factory=LatencyStats)  # engine.infer wall time
    overhead_ms: LatencyStats = field(default_factory=LatencyStats)  # node work except engine.infer
    total_ms: LatencyStats = field(default_factory=LatencyStats)  # pair complete -> outputs published
    queue_ms: LatencyStats = field(default_factory=LatencyStats)  # pair complete -> worker took it
    prepare_ms: LatencyStats = field(default_factory=LatencyStats)  # overhead part: decode + normalise inputs
    publish_ms: LatencyStats = field(default_factory=LatencyStats)  # overhead part: build + publish outputs
    processed: int = 0
    failures: int = 0
    consecutive_failures: int = 0
    last_error: str = ""
    rate: RateMeter = field(default_factory=RateMeter)

    def on_success(self, now: float, engine_ms: float, total_ms: float, queue_ms: float, prepare_ms: float,
                   publish_ms: float) -> None:
        self.processed += 1
        self.consecutive_failures = 0
        self.rate.tick(now)
        self.engine_ms.add(engine_ms)
        self.total_ms.add(total_ms)
        self.queue_ms.add(queue_ms)
        self.prepare_ms.add(prepare_ms)
        self.publish_ms.add(publish_ms)
        self.overhead_ms.add(max(total_ms - engine_ms - queue_ms, 0.0))

    def on_failure(self, message: str) -> None:
        self.failures += 1
        self.consecutive_failures += 1
        self.last_error = message


# ---------------------------------------------------------------------------------------- diagnostics
@dataclass
class Status:
    """One diagnostic_msgs/DiagnosticStatus, ROS-free."""

    level: int
    name: str
    message: str
    values: list[tuple[str, str]] = field(default_factory=list)


def _fmt(value) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.3f}"
    return str(value)


def input_status(prefix: str, monitor: InputMonitor, sync_index: int, sync_stats, now: float, since: float,
                 silent_timeout: float, active: bool) -> Status:
    silent = monitor.silent_for(now, since)
    values = [
        ("rate_hz", _fmt(monitor.rate.rate(now))),
        ("received", _fmt(monitor.received)),
        ("silent_s", _fmt(silent)),
        ("rejected", _fmt(monitor.bad_total)),
    ]
    values += [(f"rejected.{reason}", _fmt(count)) for reason, count in sorted(monitor.bad.items())]
    if sync_stats is not None:
        values += [
            ("out_of_order", _fmt(sync_stats.out_of_order[sync_index])),
            ("duplicate_stamps", _fmt(sync_stats.duplicates[sync_index])),
            ("sync_dropped", _fmt(sync_stats.dropped[sync_index])),
        ]
    if monitor.last_error:
        values.append(("last_error", monitor.last_error))
    if not active:
        return Status(OK, f"{prefix}: {monitor.name} input", "node not active", values)
    if silent > silent_timeout:
        never = monitor.last_arrival is None
        what = "no message received" if never else "no message"
        return Status(WARN, f"{prefix}: {monitor.name} input",
                      f"{monitor.name} topic silent: {what} for {silent:.1f} s (> {silent_timeout:g} s)", values)
    message = f"{monitor.rate.rate(now):.1f} Hz"
    if monitor.bad_total:
        message += f", {monitor.bad_total} rejected"
    return Status(OK, f"{prefix}: {monitor.name} input", message, values)


class DropTracker:
    """Why inputs arrive but nothing is published: rejections (per input and reason) and unpaired
    synchroniser drops counted since the last published pair. Thread-safe (executor + worker)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._counts: dict = {}
        self._messages: dict = {}
        self._sync_base: int | None = None

    def note(self, key: str, message: str) -> None:
        """One dropped frame/pair of kind ``key`` (e.g. 'thermal size_mismatch'), ``message`` says why."""
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + 1
            self._messages[key] = message

    def clear(self, sync_dropped_total: int | None = None) -> None:
        """A pair was published: start counting afresh (``sync_dropped_total``: the synchroniser's count now)."""
        with self._lock:
            self._counts.clear()
            self._messages.clear()
            self._sync_base = sync_dropped_total

    def dominant(self, sync_dropped_total: int, skew_text: str | None) -> str:
        """The most frequent drop reason since the last published pair, as a message. Unpaired synchroniser
        drops are described by ``skew_text`` (the stamp offset between the inputs) when it is given."""
        with self._lock:
            counts = dict(self._counts)
            messages = dict(self._messages)
            if self._sync_base is None or sync_dropped_total < self._sync_base:
                self._sync_base = 0
            unpaired = sync_dropped_total - self._sync_base
        if unpaired > 0:
            counts["sync"] = unpaired
            messages["sync"] = skew_text or "sync: no partner within slop (stamps of the two inputs differ)"
        if not counts:
            return skew_text or "no pair formed yet (waiting for frames with matching stamps)"
        key = max(counts, key=lambda k: counts[k])
        if key == "sync":
            return f"{messages[key]} ({counts[key]} frames dropped unpaired)"
        return f"{key}: {messages[key]} ({counts[key]} dropped)"


def skew_description(last_stamps: list, slop: float) -> str | None:
    """'sync: thermal 2.0 s behind rgb, slop 0.05 s' when the newest stamps of the two inputs are further
    apart than ``slop`` (no pair can form), else None. ``last_stamps``: [thermal ns, rgb ns] (None unknown)."""
    thermal, rgb = last_stamps[THERMAL_INDEX], last_stamps[RGB_INDEX]
    if thermal is None or rgb is None:
        return None
    offset = (rgb - thermal) * 1e-9
    if abs(offset) <= slop:
        return None
    behind, ahead = ("thermal", "rgb") if offset > 0 else ("rgb", "thermal")
    return f"sync: {behind} {abs(offset):.3g} s behind {ahead}, slop {slop:g} s"


def output_stall(now: float, last_output: float | None, since: float, inputs: list[InputMonitor],
                 timeout: float) -> float | None:
    """Seconds without a published pair while inputs arrive (both inputs heard within ``timeout``), when
    that is longer than ``timeout``; else None."""
    quiet = now - (last_output if last_output is not None and last_output > since else since)
    if quiet <= timeout:
        return None
    if not all(m.last_arrival is not None and now - m.last_arrival <= timeout for m in inputs):
        return None  # an input is silent: its own status says so
    return quiet


def sync_status(prefix: str, sync_stats, pair_rate: float, slot: LatestSlot | None,
                stall: str | None = None, resets: int = 0) -> Status:
    skews = list(sync_stats.recent_skews) if sync_stats is not None else []
    values = [
        ("pair_rate_hz", _fmt(pair_rate)),
        ("pairs", _fmt(sync_stats.sets if sync_stats else 0)),
        ("skew_mean_ms", _fmt(sync_stats.mean_skew * 1e3 if sync_stats else 0.0)),
        ("skew_max_ms", _fmt(sync_stats.max_skew * 1e3 if sync_stats else 0.0)),
        ("skew_p95_ms", _fmt(float(np.percentile(skews, 95)) * 1e3 if skews else 0.0)),
        ("worker_dropped_pairs", _fmt(slot.dropped if slot else 0)),
        ("resets_on_jump_back", _fmt(resets)),
    ]
    if sync_stats is not None:
        for i, name in enumerate(("thermal", "rgb")):
            values.append((f"{name}_unpaired_dropped", _fmt(sync_stats.dropped[i])))
    if stall:
        values.append(("no_output_reason", stall))
        return Status(WARN, f"{prefix}: synchronizer", stall, values)
    message = f"{pair_rate:.1f} pairs/s"
    if slot is not None and slot.dropped:
        message += f", {slot.dropped} pairs dropped (engine busy)"
    return Status(OK, f"{prefix}: synchronizer", message, values)


def engine_status(prefix: str, monitor: EngineMonitor, backend: str, error_threshold: int, now: float,
                  state: str, configure_error: str = "") -> Status:
    values = [
        ("state", state),
        ("backend", backend or "-"),
        ("processed", _fmt(monitor.processed)),
        ("output_rate_hz", _fmt(monitor.rate.rate(now))),
        ("engine_ms_p50", _fmt(monitor.engine_ms.percentile(50))),
        ("engine_ms_p95", _fmt(monitor.engine_ms.percentile(95))),
        ("node_overhead_ms_p50", _fmt(monitor.overhead_ms.percentile(50))),
        ("node_overhead_ms_p95", _fmt(monitor.overhead_ms.percentile(95))),
        ("node_overhead.prepare_ms_p50", _fmt(monitor.prepare_ms.percentile(50))),
        ("node_overhead.publish_ms_p50", _fmt(monitor.publish_ms.percentile(50))),
        ("node_overhead.publish_ms_p95", _fmt(monitor.publish_ms.percentile(95))),
        ("queue_wait_ms_p50", _fmt(monitor.queue_ms.percentile(50))),
        ("pair_to_publish_ms_p50", _fmt(monitor.total_ms.percentile(50))),
        ("pair_to_publish_ms_p95", _fmt(monitor.total_ms.percentile(95))),
        ("failures", _fmt(monitor.failures)),
        ("consecutive_failures", _fmt(monitor.consecutive_failures)),
    ]
    if monitor.last_error:
        values.append(("last_error", monitor.last_error))
    name = f"{prefix}: engine"
    if configure_error:
        values.append(("configure_error", configure_error))
        return Status(ERROR, name, f"configure failed: {configure_error}", values)
    if monitor.consecutive_failures >= error_threshold:
        return Status(ERROR, name, f"{monitor.consecutive_failures} consecutive engine failures: "
                      f"{monitor.last_error}", values)
    if state != "active":
        return Status(OK, name, f"{state}", values)
    p50 = monitor.engine_ms.percentile(50)
    message = f"{backend}, {p50:.1f} ms p50" if not math.isnan(p50) else f"{backend}, no frames yet"
    return Status(OK, name, message, values)


# ------------------------------------------------------------------------------------------- overlays
def class_colors(model_names, class_config=None) -> np.ndarray:
    """(K, 3) uint8 RGB colours for the model's class names: from the class file where the name is
    listed, else a fixed golden-ratio palette (so a model with other classes still renders)."""
    known = {}
    if class_config is not None:
        known = {name: color for name, color in zip(class_config.names, class_config.colors)}
    colors = np.zeros((len(model_names), 3), np.uint8)
    for i, name in enumerate(model_names):
        if name in known:
            colors[i] = known[name]
        else:
            hue = int((i * 0.618033988749895 % 1.0) * 180)
            hsv = np.array([[[hue, 200, 230]]], np.uint8)
            colors[i] = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0]
    return colors


def colorize_mask(mask: np.ndarray, colors_rgb: np.ndarray) -> np.ndarray:
    """(H, W) class ids -> (H, W, 3) uint8 BGR colour image (ids beyond the palette render black)."""
    palette = np.zeros((256, 3), np.uint8)
    palette[: len(colors_rgb)] = np.asarray(colors_rgb, np.uint8)[:, ::-1]
    return palette[mask]


def render_detections(image_bgr: np.ndarray, detections, names, colors_rgb: np.ndarray) -> np.ndarray:
    """A copy of ``image_bgr`` with the boxes, class names and scores drawn."""
    out = np.ascontiguousarray(image_bgr).copy()
    for box, score, label in zip(detections.boxes, detections.scores, detections.labels):
        label = int(label)
        x1, y1, x2, y2 = (int(round(float(v))) for v in box)
        rgb = colors_rgb[label] if 0 <= label < len(colors_rgb) else (255, 255, 255)
        color = (int(rgb[2]), int(rgb[1]), int(rgb[0]))
        cv2.rectangle(out, (x1, y1), (x2, y2), color, 2)
        name = names[label] if 0 <= label < len(names) else str(label)
        cv2.putText(out, f"{name} {float(score):.2f}", (x1, max(y1 - 3, 10)), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                    color, 1, cv2.LINE_AA)
    return out
