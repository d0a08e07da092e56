"""The node's parameters: schema, defaults, checks and the validated configuration.

Every parameter is declared here once (name, default, description, check); the node declares them from
this list, config/fusion.yaml repeats them for users (test_node_core keeps the two equal) and the
offline tools (bag evaluator, pairs evaluation, bag retraining) read a NodeConfig, so they run with the
node's settings.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..engine.base import FUSED_RESOLUTIONS
from ..image_conversions import DEFAULT_MAX_PIXELS
from ..postprocess import POSTPROCESS_LIMITS, PostprocessConfig, postprocess_problem
from .. import segmentation_labels as seg_labels
from ..registration import Registration
from ..topics import RGB_TOPIC, THERMAL_TOPIC

BACKENDS = ("auto", "onnxruntime", "torch", "tensorrt")
RELIABILITIES = ("best_effort", "reliable")
TRANSPORTS = ("raw", "compressed")
THERMAL_MODES = ("fixed", "auto")
REGISTRATION_MODES = ("identity", "homography", "planar")
BORDERS = ("constant", "replicate")
DYNAMIC_PARAMS = ("score_threshold", "nms_iou", "max_detections")  # applied to the running engine

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
              "artifacts found beside model_path, past one that cannot run with a WARN (log and /diagnostics); "
              "a named backend refuses instead", "auto|onnxruntime|torch|tensorrt", _one_of(BACKENDS)),
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
    ParamSpec("fused_resolution", "camera", "size of fused/image and its overlay: camera (the RGB camera's: "
              "the fusion network's per-pixel decisions applied to the full-resolution frames) or network "
              "(the network input size: less to publish; detections stay in camera pixels)", "camera|network",
              _one_of(FUSED_RESOLUTIONS)),
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
    ParamSpec("registration.rgb_width", 0, "width (pixels) of the RGB image the registration was calibrated "
              "for; required (> 0) for homography and planar (the homography maps onto that pixel grid), optional "
              "for identity (0: any). An RGB image of another size is rejected [rgb_size]", "0 or [1, 65535]",
              _in_range(0, 65535)),
    ParamSpec("registration.rgb_height", 0, "height (pixels) of the calibrated RGB image (see "
              "registration.rgb_width)", "0 or [1, 65535]", _in_range(0, 65535)),
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
    ParamSpec("publish_segmentation", False, "publish segmentation/mask (mono8 class ids); needs a model whose "
              "segmentation head was trained on real camera labels (its model file says), else configure fails "
              "(see allow_segmentation_without_real_labels); the bundled model's never saw a real label"),
    ParamSpec("publish_segmentation_color", False, "publish segmentation/color (bgr8 class colours); same condition"),
    ParamSpec("allow_segmentation_without_real_labels", False, "publish the segmentation topics from a head not "
              "trained on real camera labels (generated scenes only, no labels, or not recorded) anyway, with a "
              "warning; false: configure fails instead"),
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

    def calibrated_size(self, camera: str) -> tuple[int, int] | None:
        """(width, height) of the ``camera`` ('thermal' or 'rgb') image the registration is calibrated for, or
        None (any size)."""
        w, h = self.values[f"registration.{camera}_width"], self.values[f"registration.{camera}_height"]
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
    mode = values["registration.mode"]
    for camera in ("thermal", "rgb"):  # a homography maps one thermal pixel grid onto one RGB pixel grid
        names = f"registration.{camera}_width/{camera}_height"
        if any(p.startswith((f"registration.{camera}_", "registration.mode")) for p in problems):
            continue
        w, h = values[f"registration.{camera}_width"], values[f"registration.{camera}_height"]
        if (w == 0) != (h == 0):
            problems.append(f"{names}: set both or neither, got {w}x{h}")
        elif w == 0 and mode != "identity":
            problems.append(
                f"{names}: registration.mode {mode} maps thermal pixels onto RGB pixels, so it holds for one "
                f"{camera} resolution only: set the width and height of the {camera} image it was calibrated for")
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


def segmentation_publish_problem(cfg: NodeConfig, labels: str) -> str | None:
    """Why the configured segmentation topics may not be published from a head trained on ``labels`` (the
    model's segmentation_labels), or None: only a head trained on real camera labels publishes by default."""
    topics = [name for name in ("publish_segmentation", "publish_segmentation_color") if cfg[name]]
    if not topics or labels == seg_labels.REAL or cfg["allow_segmentation_without_real_labels"]:
        return None
    return (f"{' and '.join(topics)}: the model's segmentation head {seg_labels.DESCRIPTIONS[labels]} "
            f"(segmentation_labels: {labels}); publish no segmentation, use a model trained on real segmentation "
            "labels, or set allow_segmentation_without_real_labels: true to publish it anyway")


def engine_options(cfg: NodeConfig) -> dict:
    """create_engine keyword options from the node's parameters: post-processing, registration, size, and
    the CPU options only when set (the engine refuses an option its backend does not use)."""
    options = {"postprocess": cfg.postprocess, "registration": cfg.registration,
               "fused_resolution": cfg["fused_resolution"]}
    if cfg.input_size:
        options["input_size"] = cfg.input_size
    if cfg["num_threads"] > 0:
        options["num_threads"] = cfg["num_threads"]
    if cfg["onnxruntime.allow_spinning"]:
        options["allow_spinning"] = True
    return options
