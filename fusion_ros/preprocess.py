"""Engine pre-processing and the mapping of results back to the input image, in one place.

Every consumer (the node, the bag evaluator, benchmarks, every engine backend) goes through these:

    thermal H×W float 0..1          ─► checked (or raw uint8 / uint16 counts: scaled with the model's range)
                                    ─► IR→RGB registration warp, composed with the resize to the net size
    colour H×W×C uint8 (encoding)   ─► resize to the net size ─► 0..1 float RGB, CHW (colour order fixed here,
                                       on the small image: a bgr8 camera frame is never reordered at full size)
    results at the net size         ─► boxes scaled, fused image (rgb8 or bgr8) and mask resized to the input size

Encodings, thermal scaling and colour order are image_conversions' (thermal_to_float, to_rgb8, ...): callers
with other thermal encodings or an "auto" range scale the frame with thermal_to_float first.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .image_conversions import (
    ImageConversionError,
    check_color_array,
    color_to_rgb_float,
    fixed_thermal_range,
    thermal_to_float,
)
from .registration import Registration

# A float thermal frame must already be normalised to 0..1; this much slack absorbs rounding only.
FLOAT_SLACK = 0.05


class PreprocessError(ValueError):
    """An input frame that cannot be turned into network input (wrong shape, dtype, NaN, ...)."""


@dataclass
class PreparedPair:
    thermal: np.ndarray  # (1, H, W) float32 0..1 at the network size, registered to the RGB grid
    rgb: np.ndarray  # (3, H, W) float32 0..1
    rgb_size: tuple[int, int]  # (height, width) of the input RGB image: results are mapped back to it
    color: np.ndarray | None = None  # the input colour frame itself (not a copy), for camera-size fusion
    color_encoding: str = "rgb8"
    thermal_camera: np.ndarray | None = None  # (H, W) float32 0..1 registered to the RGB image's own grid
    color_net: np.ndarray | None = None  # the colour frame at the network size, in color_encoding (uint8)


# ------------------------------------------------------------------------------------------- checks
def check_thermal(thermal) -> np.ndarray:
    if not isinstance(thermal, np.ndarray):
        raise PreprocessError(f"thermal must be a numpy array, got {type(thermal).__name__}")
    if thermal.ndim == 3 and thermal.shape[2] == 1:
        thermal = thermal[:, :, 0]
    if thermal.ndim != 2:
        raise PreprocessError(
            f"thermal must be a single-channel H×W array, got shape {thermal.shape} "
            "(convert a colour-mapped thermal image back to raw counts, or pass one channel)"
        )
    if thermal.size == 0:
        raise PreprocessError(f"thermal image is empty: shape {thermal.shape}")
    if thermal.dtype not in (np.uint8, np.uint16) and thermal.dtype.kind != "f":
        raise PreprocessError(f"thermal must be uint8, uint16 or float (0..1), got {thermal.dtype}")
    return thermal


def check_color(color, encoding: str = "rgb8") -> np.ndarray:
    if not isinstance(color, np.ndarray):
        raise PreprocessError(f"the colour image must be a numpy array, got {type(color).__name__}")
    try:
        return check_color_array(color, encoding)
    except ImageConversionError as exc:
        raise PreprocessError(f"{exc} (convert other layouts with image_conversions first)") from None


def thermal_unit(thermal: np.ndarray, model_range: tuple[float, float] | None = None) -> np.ndarray:
    """The engine's thermal input as float32 0..1: a float frame is taken as already scaled (checked for
    NaN/inf and range, then clipped); raw uint8 / uint16 counts are scaled with the fixed range
    (``model_range`` for 16-bit, the model's training range)."""
    thermal = check_thermal(thermal)
    if thermal.dtype.kind == "f":
        finite = np.isfinite(thermal)
        if not finite.all():
            raise PreprocessError(f"thermal contains {int(thermal.size - finite.sum())} NaN/inf values")
        lo, hi = float(thermal.min()), float(thermal.max())
        if lo < -FLOAT_SLACK or hi > 1.0 + FLOAT_SLACK:
            raise PreprocessError(
                f"float thermal must be normalised to 0..1, got values in [{lo:.4g}, {hi:.4g}] "
                "(pass raw uint16 counts, or normalise with image_conversions.thermal_to_float)"
            )
        return np.clip(thermal, 0.0, 1.0).astype(np.float32, copy=False)
    encoding = "mono8" if thermal.dtype == np.uint8 else "mono16"
    try:
        return thermal_to_float(thermal, encoding, "fixed", *fixed_thermal_range(encoding, None, model_range))
    except (ImageConversionError, ValueError) as exc:
        raise PreprocessError(f"thermal normalisation failed: {exc}") from None


# ---------------------------------------------------------------------------------------- geometry
def resize_homography(from_size: tuple[int, int], to_size: tuple[int, int]) -> np.ndarray:
    """3×3 map from pixel coords of an image of `from_size` (h, w) to a resized copy of `to_size`.

    Pixel-centre aligned like cv2.resize: x' = (x + 0.5)·s − 0.5.
    """
    sy, sx = to_size[0] / from_size[0], to_size[1] / from_size[1]
    return np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]])


def resize_image(image: np.ndarray, size: tuple[int, int], nearest: bool = False) -> np.ndarray:
    """Resize to (height, width): area averaging when shrinking, bilinear when growing."""
    height, width = size
    if image.shape[:2] == (height, width):
        return image
    if nearest:
        interp = cv2.INTER_NEAREST
    elif height <= image.shape[0] and width <= image.shape[1]:
        interp = cv2.INTER_AREA
    else:
        interp = cv2.INTER_LINEAR
    return cv2.resize(image, (width, height), interpolation=interp)


def scale_boxes(boxes: np.ndarray, from_size: tuple[int, int], to_size: tuple[int, int]) -> np.ndarray:
    """xyxy boxes in a (h, w) = from_size image -> the same boxes in a to_size image, clipped to it.

    Box edges scale with the image (x' = x·s): a box covering the whole network input covers the whole
    original image.
    """
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    if boxes.size == 0 or tuple(from_size) == tuple(to_size):
        return boxes.copy()
    sy, sx = to_size[0] / from_size[0], to_size[1] / from_size[1]
    out = boxes * np.array([sx, sy, sx, sy], dtype=np.float32)
    out[:, 0::2] = out[:, 0::2].clip(0, to_size[1])
    out[:, 1::2] = out[:, 1::2].clip(0, to_size[0])
    return out


FUSED_ENCODINGS = ("rgb8", "bgr8")


def fused_to_image(fused_chw: np.ndarray, out_size: tuple[int, int], encoding: str = "rgb8") -> np.ndarray:
    """(3, h, w) float RGB 0..1 -> (H, W, 3) uint8 at out_size (h, w), channels in ``encoding``'s order
    (bgr8 costs nothing extra: the channels are merged in that order)."""
    if encoding not in FUSED_ENCODINGS:
        raise ValueError(f"the fused image is produced as {' or '.join(FUSED_ENCODINGS)}, not '{encoding}'")
    channels = fused_chw[::-1] if encoding == "bgr8" else fused_chw
    hwc = cv2.merge([np.asarray(c, dtype=np.float32) for c in channels])  # CHW -> HWC in one pass
    np.maximum(hwc, 0.0, out=hwc)
    image = cv2.convertScaleAbs(hwc, alpha=255.0)  # x*255, rounded, saturated to 0..255 (~10x numpy)
    return resize_image(image, out_size)


def mask_to_size(mask: np.ndarray, out_size: tuple[int, int]) -> np.ndarray:
    """(h, w) uint8 class ids -> out_size (h, w), nearest neighbour (ids must not be blended)."""
    return resize_image(np.ascontiguousarray(mask, dtype=np.uint8), out_size, nearest=True)


# ------------------------------------------------------------------------------------ preprocessor
class Preprocessor:
    """(thermal, rgb) frames -> network inputs at `input_size` (h, w), registered and normalised.

    The registration homography (thermal pixels -> RGB pixels) is composed with the RGB->network resize,
    so the thermal frame is warped ONCE, straight into the network grid, whatever the camera sizes.
    """

    def __init__(
        self,
        input_size: tuple[int, int],
        thermal_range: tuple[float, float] | None = None,
        registration: Registration | None = None,
    ):
        if thermal_range is not None:
            low, high = (float(v) for v in thermal_range)
            if not (np.isfinite(low) and np.isfinite(high) and high > low):
                raise ValueError(f"thermal_range needs finite low < high, got {thermal_range}")
            thermal_range = (low, high)
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.thermal_range = thermal_range
        self.set_registration(registration)

    def set_registration(self, registration: Registration | dict | None) -> None:
        if isinstance(registration, dict) or registration is None:
            registration = Registration.from_config(registration)
        self.registration = registration
        self._warp_cache: dict[tuple[int, int], Registration] = {}

    def _warper(self, rgb_size: tuple[int, int]) -> Registration:
        warper = self._warp_cache.get(rgb_size)
        if warper is None:
            composed = resize_homography(rgb_size, self.input_size) @ self.registration.homography
            warper = Registration(composed, border=self.registration.border)
            self._warp_cache = {rgb_size: warper}  # one camera pair per node: keep only the latest size
        return warper

    def __call__(self, thermal: np.ndarray, color: np.ndarray, color_encoding: str = "rgb8", *,
                 camera_thermal: bool = False) -> PreparedPair:
        """``camera_thermal``: also register the thermal frame to the RGB image's own grid (for fusing at
        the camera's resolution; at the network size it is the network input itself)."""
        color = check_color(color, color_encoding)
        thermal_net_input = thermal_unit(thermal, self.thermal_range)
        color_size = (int(color.shape[0]), int(color.shape[1]))
        height, width = self.input_size
        if self.registration.is_identity:  # already registered: same field of view, just resize
            thermal_net = resize_image(thermal_net_input, self.input_size)
        else:
            thermal_net = self._warper(color_size).warp_thermal(thermal_net_input, (width, height))
        color_net = resize_image(color, self.input_size)
        rgb_net = color_to_rgb_float(color_net, color_encoding)
        thermal_camera = None
        if camera_thermal and color_size != self.input_size:
            thermal_camera = self.registration.warp_thermal(thermal_net_input, (color_size[1], color_size[0]))
        return PreparedPair(
            thermal=np.ascontiguousarray(thermal_net, dtype=np.float32)[None],
            rgb=np.ascontiguousarray(rgb_net.transpose(2, 0, 1)),
            rgb_size=color_size,
            color=color,
            color_encoding=color_encoding,
            thermal_camera=thermal_camera,
            color_net=color_net,
        )
