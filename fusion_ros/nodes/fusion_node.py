"""The fused-perception node: thermal + RGB images in, fused image, detections, segmentation and
diagnostics out.

    ros2 run fusion_ros fusion_node --ros-args --params-file config/fusion.yaml [-p lifecycle:=false]
    python -m fusion_ros.nodes.fusion_node --ros-args -p lifecycle:=false -p model_path:=model.pt

A managed (lifecycle) node:
  * configure: validates every parameter (a bad value fails the transition with the reason and the node
    stays unconfigured and alive), loads the engine and the class list, builds the synchroniser;
  * activate: creates the publishers and the (sensor-data QoS) subscriptions, starts the worker thread;
  * deactivate / cleanup / shutdown undo those steps.
With ``lifecycle:=false`` it configures and activates itself at start, like a plain node.

Data flow: each input callback (executor thread) decodes the message into a numpy view, rejects bad
messages (counted, throttled log line) and feeds the ApproximateTime synchroniser; a completed pair goes
into a one-item slot that the worker thread drains, so a pair the engine is too busy for is replaced by
the newest one (counted as a drop) instead of queueing latency. The worker normalises the thermal frame,
runs the engine (which registers IR onto RGB) and publishes the outputs stamped with the pair's RGB stamp
and frame_id. /diagnostics reports rates, drops, skew, latencies and problems every diagnostics.period,
and goes WARN naming the main drop reason when inputs arrive but nothing is published.

SIGINT / SIGTERM (repeated or not) stop the spin loop; the worker and publishers are stopped before rclpy
shuts down, and the process exits 0 (see fusion_ros.nodes.signals).
"""
from __future__ import annotations

import logging
import sys
import threading
import time
import traceback
from pathlib import Path

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import ParameterDescriptor, ParameterType, SetParametersResult
from rclpy.clock import Clock, ClockType
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import CompressedImage, Image

from .. import node_core as core
from .. import segmentation_labels as seg_labels
from .. import topics
from ..image_conversions import ImageConversionError
from ..sync import ApproximateTimeSynchronizer
from . import ros_convert
from .signals import ShutdownOnSignal

NODE_NAME = "fusion_node"
THERMAL, RGB = 0, 1
ROLES = ("thermal", "rgb")
_ROS_TYPES = {
    "bool": ParameterType.PARAMETER_BOOL,
    "int": ParameterType.PARAMETER_INTEGER,
    "double": ParameterType.PARAMETER_DOUBLE,
    "string": ParameterType.PARAMETER_STRING,
    "double_array": ParameterType.PARAMETER_DOUBLE_ARRAY,
}
# parameters every rclpy node may carry besides ours (not reported as unknown)
_FOREIGN_PARAMS = ("use_sim_time", "start_type_description_service", "start_parameter_event_publisher")


class _LibraryLogToNode(logging.Handler):
    """The fusion_ros library's Python log records (e.g. the auto backend skipping a broken ONNX file) as
    lines of the node's log, with its severity, instead of bare lines on stderr."""

    def __init__(self, node_logger):
        super().__init__()
        self._node_logger = node_logger

    def emit(self, record: logging.LogRecord) -> None:
        text = self.format(record)
        if record.levelno >= logging.ERROR:
            self._node_logger.error(text)
        elif record.levelno >= logging.WARNING:
            self._node_logger.warning(text)
        else:
            self._node_logger.info(text)


class _Pair:
    __slots__ = ("thermal", "rgb", "ready")

    def __init__(self, thermal: core.Frame, rgb: core.Frame, ready: float):
        self.thermal, self.rgb, self.ready = thermal, rgb, ready


class FusionNode(LifecycleNode):
    def __init__(self, node_name: str = NODE_NAME, **kwargs):
        super().__init__(node_name, **kwargs)
        self._state = "unconfigured"
        self._configure_error = ""
        self._cfg: core.NodeConfig | None = None
        self._engine = None
        self._det_names: tuple[str, ...] = ()
        self._det_colors = np.zeros((0, 3), np.uint8)
        self._seg_colors = np.zeros((0, 3), np.uint8)
        self._sync: ApproximateTimeSynchronizer | None = None
        self._last_stamp: list[int | None] = [None, None]
        self._subs: list = []
        self._pubs: dict = {}
        self._pub_lock = threading.Lock()
        self._slot: core.LatestSlot | None = None
        self._worker: threading.Thread | None = None
        self._active_since = time.monotonic()
        self._inputs = [core.InputMonitor("thermal"), core.InputMonitor("rgb")]
        self._silent = [False, False]
        self._pair_rate = core.RateMeter()
        self._engine_monitor = core.EngineMonitor()
        self._drops = core.DropTracker()  # why nothing is published (diagnostics.no_output_timeout)
        self._last_output: float | None = None
        self._stalled = False
        self._jump_backs = 0  # synchroniser resets by a stamp jumping back

        self._declare_errors: list[str] = []
        self._declare_all()
        self.add_pre_set_parameters_callback(self._coerce_parameters)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._throttle = core.LogThrottle(self._param_or_default("log_throttle"))
        self._prefix = self.get_fully_qualified_name()

        # /diagnostics is published in every state (a failed configure shows up as an ERROR there), on a
        # steady clock so it keeps ticking with use_sim_time and a paused bag
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._diag_timer = None
        self._start_diagnostics_timer(self._param_or_default("diagnostics.period"))
        self._warn_unknown_overrides()

    def _start_diagnostics_timer(self, period: float) -> None:
        if self._diag_timer is not None:
            if abs(self._diag_period - period) < 1e-9:
                return
            self.destroy_timer(self._diag_timer)
        self._diag_period = period
        self._diag_timer = self.create_timer(period, self._publish_diagnostics,
                                             clock=Clock(clock_type=ClockType.STEADY_TIME))

    # ================================================================================ parameters
    def _declare_all(self) -> None:
        overrides = getattr(self, "_parameter_overrides", {})
        for spec in core.PARAMS:
            descriptor = ParameterDescriptor(
                description=spec.description,
                additional_constraints="; ".join(
                    part for part in (spec.constraints, "runtime-updatable" if spec.dynamic else "") if part),
                type=_ROS_TYPES[spec.kind],
            )
            try:
                self.declare_parameter(spec.name, spec.default, descriptor)
                continue
            except (InvalidParameterTypeException, InvalidParameterValueException):
                pass
            # an override of the wrong ROS type: keep the node alive with the default, then coerce what is
            # safe (an integer for a double, an integer list for a double list) or fail configure
            self.declare_parameter(spec.name, spec.default, descriptor, ignore_override=True)
            override = overrides.get(spec.name)
            raw = override.value if override is not None else None
            try:
                value = core.coerce(spec, raw)
            except TypeError as exc:
                self._declare_errors.append(f"{spec.name}: {exc}")
                continue
            self.set_parameters([Parameter(spec.name, value=value)])

    def _warn_unknown_overrides(self) -> None:
        overrides = getattr(self, "_parameter_overrides", {})
        unknown = sorted(
            name for name in overrides
            if name not in core.PARAM_SPECS and name not in _FOREIGN_PARAMS and not name.startswith("qos_overrides.")
        )
        if unknown:
            self.get_logger().warning(
                f"ignoring unknown parameter(s) {', '.join(unknown)} (typo? see config/fusion.yaml for the list)"
            )

    def warn_dropped_cli_parameters(self, argv: list[str]) -> None:
        """Say so when rcl dropped a ``-p`` layered over a params file (it does that silently)."""
        overrides = {name: p.value for name, p in getattr(self, "_parameter_overrides", {}).items()}
        for problem in core.dropped_cli_parameters(argv, overrides):
            self.get_logger().warning(problem)

    def _param_or_default(self, name: str):
        value, reason = core.check_value(name, self.get_parameter(name).value)
        return core.PARAM_SPECS[name].default if reason else value

    def _gather(self) -> dict:
        return {spec.name: self.get_parameter(spec.name).value for spec in core.PARAMS}

    def _coerce_parameters(self, parameters: list[Parameter]) -> list[Parameter]:
        """Pre-set hook: an integer for a double parameter (``score_threshold:=1``) becomes a double; a value of
        another type is left for rclpy to reject (its reason, "Wrong parameter type, expected '3' got '4'",
        names neither), so the node logs one that names the parameter and both types."""
        out = []
        for param in parameters:
            spec = core.PARAM_SPECS.get(param.name)
            if spec is not None and param.type_ != Parameter.Type.NOT_SET:
                try:
                    value = core.coerce(spec, param.value)
                except TypeError:
                    expected = Parameter.Type(_ROS_TYPES[spec.kind]).name.lower()
                    self.get_logger().warning(
                        f"rejected parameter change: {param.name} must be of type {expected}, got "
                        f"{param.type_.name.lower()} {param.value!r}")
                else:
                    if spec.kind in ("double", "double_array"):
                        param = Parameter(param.name, value=value)
            out.append(param)
        return out

    def _on_set_parameters(self, parameters: list[Parameter]) -> SetParametersResult:
        configured = self._state in ("inactive", "active")
        updates = {}
        for param in parameters:
            if param.name not in core.PARAM_SPECS:
                continue
            value, reason = core.check_runtime_update(param.name, param.value, configured)
            if reason:
                self.get_logger().warning(f"rejected parameter change: {reason}")
                return SetParametersResult(successful=False, reason=reason)
            updates[param.name] = value
        engine = self._engine
        dynamic = {k: v for k, v in updates.items() if k in core.DYNAMIC_PARAMS}
        if engine is not None and dynamic:
            try:
                engine.set_thresholds(**dynamic)
            except ValueError as exc:
                return SetParametersResult(successful=False, reason=str(exc))
            self.get_logger().info(
                "updated " + ", ".join(f"{k}={v}" for k, v in dynamic.items()) + " (from the next frame)"
            )
        return SetParametersResult(successful=True)

    # ================================================================================= lifecycle
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            return self._configure()
        except Exception as exc:  # never let a transition die with a traceback: report and stay unconfigured
            self._fail_configure(f"unexpected {type(exc).__name__}: {exc}")
            self.get_logger().debug(traceback.format_exc())
            self._release_engine()
            return TransitionCallbackReturn.FAILURE

    def _fail_configure(self, reason: str) -> None:
        self._configure_error = reason
        self.get_logger().error(f"configure failed: {reason}")

    def _configure(self) -> TransitionCallbackReturn:
        problems = list(self._declare_errors)  # overrides of the wrong type (their default is in place)
        try:
            cfg = core.validate_params(self._gather())
        except core.ParamError as exc:
            problems += exc.problems
        if problems:
            self._fail_configure(str(core.ParamError(problems)))
            return TransitionCallbackReturn.FAILURE

        from ..classes import load_classes
        from ..engine import EngineError, create_engine
        from ..paths import DEFAULT_MODEL

        try:
            classes = load_classes(cfg["classes_file"] or None)
        except (OSError, ValueError) as exc:
            self._fail_configure(f"classes_file: {exc}")
            return TransitionCallbackReturn.FAILURE

        model = Path(cfg["model_path"]) if cfg["model_path"] else DEFAULT_MODEL
        options = core.engine_options(cfg)
        self.get_logger().info(f"loading {model} (backend {cfg['backend']}, device {cfg['device']}) ...")
        started = time.perf_counter()
        try:
            engine = create_engine(model, backend=cfg["backend"], device=cfg.device, **options)
        except (EngineError, ValueError, OSError, ImportError, RuntimeError) as exc:
            self._fail_configure(f"cannot load the engine: {exc}")
            return TransitionCallbackReturn.FAILURE
        labels = engine.info.segmentation_labels
        problem = core.segmentation_publish_problem(cfg, labels)
        if problem:
            engine.close()
            self._fail_configure(problem)
            return TransitionCallbackReturn.FAILURE
        if labels != seg_labels.REAL and (cfg["publish_segmentation"] or cfg["publish_segmentation_color"]):
            self.get_logger().warning(
                f"publishing segmentation from a head that {seg_labels.DESCRIPTIONS[labels]} "
                "(allow_segmentation_without_real_labels: true)")

        self._engine = engine
        self._cfg = cfg
        self._det_names = tuple(engine.det_classes)
        self._det_colors = core.class_colors(engine.det_classes, classes.detection)
        self._seg_colors = core.class_colors(engine.seg_classes, classes.segmentation)
        self._sync = core.make_synchronizer(cfg)
        self._last_stamp = [None, None]
        self._throttle = core.LogThrottle(cfg["log_throttle"])
        self._start_diagnostics_timer(cfg["diagnostics.period"])
        self._configure_error = ""
        self._state = "inactive"
        h, w = engine.input_size
        summary = (f"configured: {engine.backend} on {engine.info.source} at {w}x{h} (WxH) in "
                   f"{time.perf_counter() - started:.1f} s, {len(self._det_names)} detection classes, registration "
                   f"{cfg['registration.mode']}")
        if engine.fallback_reasons:  # runs, but not what was deployed: say so loudly (and WARN in /diagnostics)
            self.get_logger().warning(
                f"{summary}; FALLBACK: backend auto skipped {' | '.join(engine.fallback_reasons)}; fix that "
                "artifact (or set backend explicitly to refuse instead of falling back)")
        else:
            self.get_logger().info(summary)
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self._activate()
        except Exception as exc:  # e.g. vision_msgs missing: say so, stay inactive
            self.get_logger().error(f"activate failed: {type(exc).__name__}: {exc}")
            self._stop_io()
            return TransitionCallbackReturn.FAILURE
        return super().on_activate(state)

    def _activate(self) -> None:
        cfg = self._cfg
        out_qos = ros_convert.qos_profile(cfg["output_qos.reliability"], cfg["output_qos.depth"])
        in_qos = ros_convert.qos_profile(cfg["input_qos.reliability"], cfg["input_qos.depth"])
        pubs = {}
        if cfg["publish_fused"]:
            pubs["fused"] = self.create_publisher(Image, topics.FUSED_TOPIC, out_qos)
        if cfg["publish_detections"]:
            from vision_msgs.msg import Detection2DArray

            pubs["detections"] = self.create_publisher(Detection2DArray, topics.DETECTIONS_TOPIC, out_qos)
        if cfg["publish_segmentation"]:
            pubs["mask"] = self.create_publisher(Image, topics.SEGMENTATION_TOPIC, out_qos)
        if cfg["publish_segmentation_color"]:
            pubs["seg_color"] = self.create_publisher(Image, topics.SEGMENTATION_COLOR_TOPIC, out_qos)
        if cfg["publish_detection_image"]:
            pubs["det_image"] = self.create_publisher(Image, topics.DETECTION_IMAGE_TOPIC, out_qos)
        with self._pub_lock:
            self._pubs = pubs
        self._slot = core.LatestSlot()
        self._worker = threading.Thread(target=self._work, args=(self._slot,), name="fusion_worker", daemon=True)
        self._worker.start()
        for index, role in enumerate(ROLES):
            topic = cfg[f"{role}_topic"]
            if cfg[f"{role}_transport"] == "compressed":
                sub = self.create_subscription(
                    CompressedImage, f"{topic}/{topics.COMPRESSED_SUFFIX}",
                    lambda msg, i=index: self._on_compressed(i, msg), in_qos)
            else:
                sub = self.create_subscription(Image, topic, lambda msg, i=index: self._on_image(i, msg), in_qos)
            self._subs.append(sub)
        self._active_since = time.monotonic()
        self._drops.clear(self._sync_dropped())
        self._state = "active"
        names = [s.topic_name for s in self._subs]
        self.get_logger().info(f"active: subscribed to {', '.join(names)}; publishing {', '.join(sorted(pubs))}")

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_io()
        self._state = "inactive"
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_io()
        self._release_engine()
        self._state = "unconfigured"
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.teardown()
        self._state = "finalized"
        return super().on_shutdown(state)

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.get_logger().error(f"error while in state '{state.label}': releasing everything, back to unconfigured")
        self.teardown()
        return TransitionCallbackReturn.SUCCESS

    def teardown(self) -> None:
        """Stop subscriptions, the worker and publishers and release the engine (idempotent)."""
        self._stop_io()
        self._release_engine()
        if self._state != "finalized":
            self._state = "unconfigured"

    def _stop_io(self) -> None:
        for sub in self._subs:
            self.destroy_subscription(sub)
        self._subs = []
        if self._slot is not None:
            self._slot.close()
        if self._worker is not None:
            self._worker.join(timeout=30.0)
            if self._worker.is_alive():
                self.get_logger().warning("worker thread still busy after 30 s; continuing without it")
        self._worker, self._slot = None, None
        with self._pub_lock:
            pubs, self._pubs = self._pubs, {}
        for pub in pubs.values():
            self.destroy_publisher(pub)

    def _release_engine(self) -> None:
        engine, self._engine = self._engine, None
        if engine is not None:
            try:
                engine.close()
            except Exception as exc:  # best effort
                self.get_logger().warning(f"engine close failed: {exc}")
        self._sync = None

    @property
    def state(self) -> str:
        return self._state

    def autostart(self) -> bool:
        """Plain-node mode: configure + activate now. False (node alive, unconfigured) if configure fails."""
        if self.trigger_configure() != TransitionCallbackReturn.SUCCESS:
            self.get_logger().error(
                "not starting: fix the problem above, then configure the node through its lifecycle services "
                "(or restart it)"
            )
            return False
        return self.trigger_activate() == TransitionCallbackReturn.SUCCESS

    # ==================================================================================== inputs
    def _sync_dropped(self) -> int:
        sync = self._sync
        return sum(sync.stats.dropped) if sync is not None else 0

    def _reject(self, index: int, reason: str, message: str) -> None:
        monitor = self._inputs[index]
        monitor.on_bad(reason, message)
        self._drops.note(f"{ROLES[index]} {reason}", message)
        allowed, suppressed = self._throttle.allow((index, reason))
        if allowed:
            more = f" ({suppressed} similar since the last report)" if suppressed else ""
            self.get_logger().warning(f"{ROLES[index]} input rejected [{reason}]: {message}{more}")

    def _max_pixels(self) -> int:
        cfg = self._cfg
        return cfg["max_image_pixels"] if cfg is not None else core.PARAM_SPECS["max_image_pixels"].default

    def _on_image(self, index: int, msg: Image) -> None:
        now = time.monotonic()
        self._inputs[index].on_receive(now)
        try:
            array, encoding = core.decode_image(msg, ROLES[index], self._max_pixels())
        except ImageConversionError as exc:
            self._reject(index, core.classify_error(str(exc)), str(exc))
            return
        frame = core.Frame(array, encoding, msg.header.frame_id, ros_convert.stamp_to_ns(msg.header.stamp), now)
        self._offer(index, frame)

    def _on_compressed(self, index: int, msg: CompressedImage) -> None:
        now = time.monotonic()
        self._inputs[index].on_receive(now)
        if len(msg.data) == 0:
            self._reject(index, "empty", f"compressed image ('{msg.format}') has no data")
            return
        try:  # the header's declared size, before the message is queued (decoded later, in the worker)
            core.check_compressed_size(msg.format, msg.data, self._max_pixels())
        except ImageConversionError as exc:
            self._reject(index, core.classify_error(str(exc)), str(exc))
            return
        frame = core.Frame(None, "", msg.header.frame_id, ros_convert.stamp_to_ns(msg.header.stamp), now,
                           compressed=(msg.format, msg.data))
        self._offer(index, frame)

    def _offer(self, index: int, frame: core.Frame) -> None:
        sync, slot, cfg = self._sync, self._slot, self._cfg
        if sync is None or slot is None:
            return
        # the same function pairs frames in the offline bag evaluator (fusion_ros.bag.evaluate)
        outcome = core.offer_frame(sync, self._last_stamp, index, frame, cfg["sync.reset_on_jump_back"])
        if outcome.reset_back_s is not None:
            self._jump_backs += 1
            allowed, suppressed = self._throttle.allow(("jump_back", index))  # honours log_throttle
            if allowed:
                more = f" ({suppressed} more since the last report)" if suppressed else ""
                self.get_logger().warning(
                    f"{ROLES[index]} stamp jumped back {outcome.reset_back_s:.2f} s (bag loop or simulator "
                    f"reset?): resetting the synchronizer{more}"
                )
        if outcome.rejected is not None:
            self._reject(index, *outcome.rejected)
            return
        for thermal, rgb in outcome.pairs:
            now = time.monotonic()
            self._pair_rate.tick(now)
            slot.put(_Pair(thermal, rgb, now))

    # ==================================================================================== worker
    def _work(self, slot: core.LatestSlot) -> None:
        while not slot.closed:
            pair = slot.take(timeout=0.5)
            if pair is None:
                continue
            try:
                self._process(pair)
            except Exception as exc:  # keep the worker alive whatever happens
                if not self.context.ok():  # the context went down first (an outside shutdown): not a failure
                    return
                self._engine_failure(f"unexpected {type(exc).__name__} in the worker: {exc}")

    def _process(self, pair: _Pair) -> None:
        taken, taken_perf = time.monotonic(), time.perf_counter()
        cfg, engine = self._cfg, self._engine
        if cfg is None or engine is None:
            return
        # decode, registration check, thermal normalisation: shared with the bag evaluator
        try:
            thermal_unit, color, color_encoding = core.prepare_inputs(cfg, engine.info.thermal_range, pair.thermal,
                                                                      pair.rgb)
        except core.PairRejected as exc:
            self._reject(exc.index, exc.reason, exc.message)
            return

        from ..engine import InputError

        started = time.perf_counter()
        prepare_ms = (started - taken_perf) * 1e3
        try:
            # colour order is fixed once, at the network size; the fused image comes back ready to publish
            # the class-id mask only when a segmentation topic is published (off by default): ~10 ms a pair
            result = engine.infer(thermal_unit, color, color_encoding=color_encoding, fused_encoding="bgr8",
                                  segmentation=bool({"mask", "seg_color"} & set(self._pubs)))
        except InputError as exc:
            self._reject(THERMAL, "engine_input", str(exc))
            return
        except Exception as exc:
            self._engine_failure(f"{type(exc).__name__}: {exc}")
            return
        finished = time.perf_counter()
        engine_ms = (finished - started) * 1e3

        header = ros_convert.make_header(pair.rgb.stamp_ns, pair.rgb.frame_id or cfg["default_frame_id"])
        with self._pub_lock:
            pubs = self._pubs
            if not pubs:
                return  # deactivated meanwhile
            if "fused" in pubs:
                pubs["fused"].publish(ros_convert.image_msg(result.fused, "bgr8", header))
            if "detections" in pubs:
                pubs["detections"].publish(ros_convert.detections_msg(result.detections, self._det_names, header))
            if "mask" in pubs:
                pubs["mask"].publish(ros_convert.image_msg(result.segmentation, "mono8", header))
            if "seg_color" in pubs:
                color = core.colorize_mask(result.segmentation, self._seg_colors)
                pubs["seg_color"].publish(ros_convert.image_msg(color, "bgr8", header))
            if "det_image" in pubs:
                overlay = core.render_detections(result.fused, result.detections, self._det_names, self._det_colors,
                                                 result.frame_size)
                pubs["det_image"].publish(ros_convert.image_msg(overlay, "bgr8", header))
        done = time.monotonic()
        self._last_output = done
        self._drops.clear(self._sync_dropped())
        publish_ms = (time.perf_counter() - finished) * 1e3
        self._engine_monitor.on_success(done, engine_ms, (done - pair.ready) * 1e3, (taken - pair.ready) * 1e3,
                                        prepare_ms, publish_ms)

    def _engine_failure(self, message: str) -> None:
        self._engine_monitor.on_failure(message)
        self._drops.note("engine failure", message)
        allowed, suppressed = self._throttle.allow(("engine",))
        if allowed:
            more = f" ({suppressed} more since the last report)" if suppressed else ""
            self.get_logger().error(
                f"engine failure #{self._engine_monitor.failures} "
                f"({self._engine_monitor.consecutive_failures} in a row): {message}{more}"
            )

    # =============================================================================== diagnostics
    def _publish_diagnostics(self) -> None:
        try:
            self._diag_pub.publish(
                ros_convert.diagnostic_array(self.diagnostics(), self.get_clock().now().to_msg(), self._prefix)
            )
        except Exception as exc:  # diagnostics must never take the node down
            allowed, _ = self._throttle.allow(("diagnostics",))
            if allowed:
                self.get_logger().warning(f"cannot publish diagnostics: {exc}")

    def diagnostics(self) -> list[core.Status]:
        now = time.monotonic()
        cfg = self._cfg
        active = self._state == "active"
        timeout = cfg["diagnostics.silent_timeout"] if cfg else self._param_or_default("diagnostics.silent_timeout")
        threshold = (cfg["diagnostics.engine_error_threshold"] if cfg
                     else self._param_or_default("diagnostics.engine_error_threshold"))
        sync = self._sync
        stats = sync.stats if sync is not None else None
        statuses = [
            core.input_status(self._prefix, self._inputs[i], i, stats, now, self._active_since, timeout, active)
            for i in (THERMAL, RGB)
        ]
        for i, status in enumerate(statuses):  # one log line when an input goes silent, one when it is back
            silent = status.level == core.WARN
            if silent != self._silent[i]:
                self._silent[i] = silent
                if silent:
                    self.get_logger().warning(status.message)
                else:
                    self.get_logger().info(f"{ROLES[i]} input back: {status.message}")
        stall = None
        if active and cfg is not None:
            quiet = core.output_stall(now, self._last_output, self._active_since, self._inputs,
                                      cfg["diagnostics.no_output_timeout"])
            if quiet is not None:
                reason = self._drops.dominant(self._sync_dropped(),
                                              core.skew_description(list(self._last_stamp), cfg["sync.slop"]))
                stall = f"no output for {quiet:.1f} s while both inputs arrive: {reason}"
        if (stall is not None) != self._stalled:
            self._stalled = stall is not None
            if stall is not None:
                self.get_logger().warning(stall)
            else:
                self.get_logger().info("publishing again")
        statuses.append(core.sync_status(self._prefix, stats, self._pair_rate.rate(now), self._slot, stall,
                                         self._jump_backs))
        engine = self._engine
        statuses.append(core.engine_status(
            self._prefix, self._engine_monitor, engine.backend if engine is not None else "", threshold, now,
            self._state, self._configure_error, model=engine.info.source if engine is not None else "",
            fallback=engine.fallback_reasons if engine is not None else ()))
        return statuses


def main(args=None) -> int:
    stop = ShutdownOnSignal()
    stop.install()  # before anything slow: a Ctrl-C while the model loads must not raise either
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    try:
        node = FusionNode()
    except Exception as exc:  # e.g. a malformed --ros-args; say what, no traceback
        print(f"fusion_node: cannot start: {type(exc).__name__}: {exc}", file=sys.stderr)
        rclpy.try_shutdown()
        return 1
    node.warn_dropped_cli_parameters(list(sys.argv if args is None else args))
    library_log = _LibraryLogToNode(node.get_logger())
    logging.getLogger("fusion_ros").addHandler(library_log)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        if stop.requested:
            pass
        elif not node.get_parameter("lifecycle").value:
            node.autostart()
        else:
            node.get_logger().info("lifecycle mode: waiting for configure/activate (or run with -p lifecycle:=false)")
        # spin_once with a timeout: the Python signal handler only runs between calls, never inside rcl_wait
        while not stop.requested and rclpy.ok():
            executor.spin_once(timeout_sec=0.1)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if stop.requested:
            node.get_logger().info(f"{stop.signal_name}: shutting down")
        node.teardown()  # worker stopped and publishers destroyed while the context is still valid
        logging.getLogger("fusion_ros").removeHandler(library_log)
        executor.shutdown(timeout_sec=1.0)
        node.destroy_node()
        rclpy.try_shutdown()
        stop.ignore_from_now()
    return 0


if __name__ == "__main__":
    sys.exit(main())
