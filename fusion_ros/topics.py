"""The package's topic names, defined once (the ROS camera convention).

The node subscribes to the relative names ``thermal/image_raw`` and ``rgb/image_raw`` (so they resolve in
its namespace; ``<name>/compressed`` with the compressed transport) and publishes relative outputs. The
cameras of a vehicle are connected by remapping only (launch arguments ``thermal_topic`` / ``rgb_topic``),
never by renaming here. The sample bag, ``fusion-eval-bag``, the annotated output bag, the bag player and
the demo use the same names, absolute (as recorded by a node in the root namespace).
"""
from __future__ import annotations

THERMAL_TOPIC = "thermal/image_raw"
RGB_TOPIC = "rgb/image_raw"
COMPRESSED_SUFFIX = "compressed"  # image_transport's compressed sub-topic

# the node's outputs (relative)
FUSED_TOPIC = "fused/image"
DETECTIONS_TOPIC = "detections"
SEGMENTATION_TOPIC = "segmentation/mask"
SEGMENTATION_COLOR_TOPIC = "segmentation/color"
DETECTION_IMAGE_TOPIC = "detections/image"
OUTPUT_TOPICS = (FUSED_TOPIC, DETECTIONS_TOPIC, SEGMENTATION_TOPIC, SEGMENTATION_COLOR_TOPIC, DETECTION_IMAGE_TOPIC)


def absolute(topic: str, namespace: str = "/") -> str:
    """``topic`` resolved in ``namespace`` ('thermal/image_raw' -> '/thermal/image_raw')."""
    if topic.startswith("/"):
        return topic
    return namespace.rstrip("/") + "/" + topic
