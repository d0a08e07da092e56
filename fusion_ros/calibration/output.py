"""What a calibration leaves behind: the node's parameter file and a picture for a person to judge it.

The parameter file is in the ROS params format the node reads with ``--params-file`` (``/**:
ros__parameters:``, the keys of config/fusion.yaml), holding only the registration; rcl layers several
params files, so it goes beside the vehicle's own one.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ..pairs_eval import spread
from .scene import unit_range


def registration_params(homography: np.ndarray, thermal_wh: tuple[int, int], rgb_wh: tuple[int, int]) -> dict:
    """The node's registration parameters for a thermal pixel -> RGB pixel homography, bound to the camera
    sizes it was calibrated for (the node rejects frames of other sizes instead of misregistering them)."""
    h = np.asarray(homography, dtype=np.float64)
    return {
        "registration.mode": "homography",
        "registration.homography": [float(v) for v in (h / h[2, 2]).ravel()],
        "registration.thermal_width": int(thermal_wh[0]),
        "registration.thermal_height": int(thermal_wh[1]),
        "registration.rgb_width": int(rgb_wh[0]),
        "registration.rgb_height": int(rgb_wh[1]),
    }


def _yaml_float(value: float) -> str:
    """repr, with a '.' in the mantissa: YAML 1.1 readers (PyYAML) take '1e-05' for a string."""
    text = repr(float(value))
    mantissa, e, exponent = text.partition("e")
    if e and "." not in mantissa:
        text = f"{mantissa}.0e{exponent}"
    return text


def _yaml_value(value) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_yaml_float(v) for v in value) + "]"
    return str(value)


def write_params_file(path: str | Path, params: dict, comments: list[str]) -> Path:
    """``params`` (name -> value) as a ROS params file for every node (``/**``), ``comments`` on top."""
    path = Path(path)
    lines = [f"# {line}" for line in comments]
    lines += ["/**:", "  ros__parameters:"]
    lines += [f"    {name}: {_yaml_value(value)}" for name, value in params.items()]
    if path.parent != Path(""):
        path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


# ------------------------------------------------------------------------------------------ check image
BEFORE_COLOUR = (0, 160, 255)  # BGR
AFTER_COLOUR = (255, 0, 255)
CHECK_WIDTH = 1600  # the picture is shrunk to this width at most


def thermal_edges(thermal: np.ndarray) -> np.ndarray:
    """Outline pixels (uint8 0/255) of a thermal frame: Canny with thresholds from its own gradients."""
    gray = cv2.GaussianBlur((unit_range(thermal) * 255).astype(np.uint8), (0, 0), 1.5)
    gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0)
    gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1)
    magnitude = np.abs(gx) + np.abs(gy)
    low, high = np.percentile(magnitude, (85, 95))
    return cv2.Canny(gray, float(low), float(max(high, low + 1)))


def _panel(rgb: np.ndarray, edges: np.ndarray, colour, label: str) -> np.ndarray:
    panel = (cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR) * 0.55).astype(np.uint8)
    panel[edges > 0] = colour
    scale = max(rgb.shape[1] / 640.0, 0.5)
    cv2.putText(panel, label, (int(10 * scale), int(30 * scale)), cv2.FONT_HERSHEY_SIMPLEX, 0.8 * scale,
                (255, 255, 255), max(1, int(2 * scale)), cv2.LINE_AA)
    return panel


def write_check_image(path: str | Path, thermal_frames, rgb_frames, homography: np.ndarray, count: int = 3) -> Path:
    """Thermal outlines over the RGB image for ``count`` frames spread over the sequence: left as the node
    would fuse them without registration (thermal stretched onto the RGB frame), right with ``homography``."""
    height, width = rgb_frames[0].shape[:2]
    rows = []
    for i in spread(range(len(rgb_frames)), count):
        edges = thermal_edges(thermal_frames[i])
        stretched = cv2.resize(edges, (width, height), interpolation=cv2.INTER_NEAREST)
        warped = cv2.warpPerspective(edges, homography, (width, height), flags=cv2.INTER_NEAREST)
        rows.append(np.hstack([_panel(rgb_frames[i], stretched, BEFORE_COLOUR, "before: thermal stretched"),
                               _panel(rgb_frames[i], warped, AFTER_COLOUR, "after: calibrated homography")]))
    image = np.vstack(rows)
    if image.shape[1] > CHECK_WIDTH:
        image = cv2.resize(image, (CHECK_WIDTH, round(image.shape[0] * CHECK_WIDTH / image.shape[1])),
                           interpolation=cv2.INTER_AREA)
    path = Path(path)
    if path.parent != Path(""):
        path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), image):
        raise OSError(f"cannot write {path}")
    return path
