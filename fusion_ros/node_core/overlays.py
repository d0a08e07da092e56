"""Pictures the node can publish besides the fused image: class colours, the colourised segmentation
mask and the fused image with the detections drawn (the bag evaluator's report uses them too)."""
from __future__ import annotations

import cv2
import numpy as np

from ..preprocess import scale_boxes


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


def render_detections(image_bgr: np.ndarray, detections, names, colors_rgb: np.ndarray,
                      frame_size: tuple[int, int] | None = None) -> np.ndarray:
    """A copy of ``image_bgr`` with the boxes, class names and scores drawn. ``frame_size``: the (height,
    width) the boxes are in, when the image has another size (a fused image at the network's size)."""
    out = np.ascontiguousarray(image_bgr).copy()
    boxes = detections.boxes
    if frame_size is not None and tuple(frame_size) != out.shape[:2]:
        boxes = scale_boxes(boxes, frame_size, out.shape[:2])
    for box, score, label in zip(boxes, detections.scores, detections.labels):
        label = int(label)
        x1, y1, x2, y2 = (int(round(float(v))) for v in box)
        rgb = colors_rgb[label] if 0 <= label < len(colors_rgb) else (255, 255, 255)
        color = (int(rgb[2]), int(rgb[1]), int(rgb[0]))
        cv2.rectangle(out, (x1, y1), (x2, y2), color, 2)
        name = names[label] if 0 <= label < len(names) else str(label)
        cv2.putText(out, f"{name} {float(score):.2f}", (x1, max(y1 - 3, 10)), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                    color, 1, cv2.LINE_AA)
    return out
