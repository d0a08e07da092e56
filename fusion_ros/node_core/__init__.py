"""The ROS-free half of the fusion node, one module per concern:

    params      parameter schema, defaults, checks, NodeConfig, the engine options they give
    pairing     message -> Frame, ApproximateTime pairing, pair checks and preparation, the latest-pair slot
    monitoring  input / pair / engine statistics, drop reasons, diagnostics statuses
    overlays    class colours, segmentation colours, detections drawn on the fused image

Nothing here imports rclpy, so all of it is unit-tested without ROS (test/test_node_core.py); the node
(fusion_ros/nodes/fusion_node.py) only wires these pieces to subscriptions, publishers and timers, and the
offline tools (fusion_ros/bag, pairs_eval, training's bag datasets) use the same input path. The names below
are what the node and those tools use.
"""
from .monitoring import (
    ERROR,
    OK,
    WARN,
    DropTracker,
    EngineMonitor,
    InputMonitor,
    LatencyStats,
    LogThrottle,
    RateMeter,
    Status,
    engine_status,
    input_status,
    output_stall,
    skew_description,
    sync_status,
)
from .overlays import class_colors, colorize_mask, render_detections
from .pairing import (
    RGB_INDEX,
    ROLES,
    THERMAL_INDEX,
    Frame,
    LatestSlot,
    PairRejected,
    check_compressed_size,
    check_pair_geometry,
    classify_error,
    decode_compressed,
    decode_image,
    make_synchronizer,
    offer_frame,
    pair_size_problem,
    prepare_inputs,
    prepare_pair,
)
from .params import (
    BACKENDS,
    DYNAMIC_PARAMS,
    PARAM_SPECS,
    PARAMS,
    NodeConfig,
    ParamError,
    check_runtime_update,
    check_value,
    cli_parameter_overrides,
    coerce,
    dropped_cli_parameters,
    engine_options,
    segmentation_publish_problem,
    validate_params,
)

__all__ = [
    "BACKENDS", "DYNAMIC_PARAMS", "ERROR", "OK", "PARAMS", "PARAM_SPECS", "RGB_INDEX", "ROLES", "THERMAL_INDEX",
    "WARN", "DropTracker", "EngineMonitor", "Frame", "InputMonitor", "LatencyStats", "LatestSlot", "LogThrottle",
    "NodeConfig", "PairRejected", "ParamError", "RateMeter", "Status", "check_compressed_size",
    "check_pair_geometry", "check_runtime_update", "check_value", "class_colors", "classify_error",
    "cli_parameter_overrides", "coerce", "colorize_mask", "decode_compressed", "decode_image",
    "dropped_cli_parameters", "engine_options", "engine_status", "input_status", "make_synchronizer",
    "offer_frame", "output_stall", "pair_size_problem", "prepare_inputs", "prepare_pair", "render_detections",
    "segmentation_publish_problem", "skew_description", "sync_status", "validate_params",
]
