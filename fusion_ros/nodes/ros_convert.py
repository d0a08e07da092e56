"""ROS message construction for the fusion node: Image from arrays, Detection2DArray from Detections,
DiagnosticArray from node_core statuses, QoS profiles from parameters.

vision_msgs is imported lazily (only ``detections_msg`` needs it), so the rest works where only the
PyPI ROS wheels are installed.
"""
from __future__ import annotations

import array

import numpy as np
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from ..image_conversions import array_to_image_fields

_LEVELS = {0: DiagnosticStatus.OK, 1: DiagnosticStatus.WARN, 2: DiagnosticStatus.ERROR, 3: DiagnosticStatus.STALE}


def stamp_to_ns(stamp) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def ns_to_stamp(ns: int) -> Time:
    return Time(sec=int(ns // 1_000_000_000), nanosec=int(ns % 1_000_000_000))


def make_header(stamp_ns: int, frame_id: str) -> Header:
    return Header(stamp=ns_to_stamp(stamp_ns), frame_id=frame_id)


def image_msg(image: np.ndarray, encoding: str, header: Header) -> Image:
    """sensor_msgs/Image of ``image`` (dtype must match ``encoding``), little-endian, unpadded."""
    fields = array_to_image_fields(image, encoding)
    msg = Image(header=header, height=fields["height"], width=fields["width"], encoding=fields["encoding"],
                is_bigendian=fields["is_bigendian"], step=fields["step"])
    msg.data = array.array("B", fields["data"])  # array.array is the field's native type: no per-byte checks
    return msg


def detections_msg(detections, class_names, header: Header):
    """vision_msgs/Detection2DArray (4.x layout) from engine Detections (xyxy boxes in RGB pixels).

    bbox.center.position is the box centre, size_x/size_y its width/height; one hypothesis per detection
    with class_id = the class *name* and its score. Detection.id stays empty (no tracking here).
    """
    from vision_msgs.msg import (
        BoundingBox2D,
        Detection2D,
        Detection2DArray,
        ObjectHypothesis,
        ObjectHypothesisWithPose,
        Point2D,
        Pose2D,
    )

    out = Detection2DArray(header=header)
    boxes = np.asarray(detections.boxes, dtype=np.float64).reshape(-1, 4)
    for (x1, y1, x2, y2), score, label in zip(boxes, detections.scores, detections.labels):
        label = int(label)
        name = class_names[label] if 0 <= label < len(class_names) else str(label)
        hypothesis = ObjectHypothesisWithPose(hypothesis=ObjectHypothesis(class_id=name, score=float(score)))
        bbox = BoundingBox2D(
            center=Pose2D(position=Point2D(x=float((x1 + x2) / 2.0), y=float((y1 + y2) / 2.0)), theta=0.0),
            size_x=float(x2 - x1),
            size_y=float(y2 - y1),
        )
        out.detections.append(Detection2D(header=header, results=[hypothesis], bbox=bbox))
    return out


def diagnostic_array(statuses, stamp, hardware_id: str) -> DiagnosticArray:
    """DiagnosticArray from node_core.Status objects."""
    msg = DiagnosticArray()
    msg.header.stamp = stamp
    for status in statuses:
        msg.status.append(
            DiagnosticStatus(
                level=_LEVELS[int(status.level)],
                name=status.name,
                message=status.message,
                hardware_id=hardware_id,
                values=[KeyValue(key=str(k), value=str(v)) for k, v in status.values],
            )
        )
    return msg


def qos_profile(reliability: str, depth: int) -> QoSProfile:
    """Keep-last QoS with the given reliability ('best_effort' | 'reliable'), volatile durability."""
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=int(depth),
        reliability=ReliabilityPolicy.BEST_EFFORT if reliability == "best_effort" else ReliabilityPolicy.RELIABLE,
    )
