"""The node's input path, shared with the offline bag evaluator (fusion_ros.bag) so a bag replayed offline
is decoded, paired, checked and normalised exactly as the live node does it: message -> Frame, the
ApproximateTime synchroniser, the pair checks and preparation, and the latest-pair slot to the worker.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..image_conversions import (
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
from ..sync import ApproximateTimeSynchronizer
from .params import NodeConfig

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


def check_calibrated_size(camera: str, image_hw: tuple[int, int], calibrated_wh: tuple[int, int] | None,
                          mode: str) -> str | None:
    """Reason a ``camera`` ('thermal' / 'rgb') frame does not match the size its registration was calibrated
    for, or None."""
    if calibrated_wh is None:
        return None
    width, height = calibrated_wh
    if tuple(image_hw) == (height, width):
        return None
    return (f"{camera} image is {image_hw[1]}x{image_hw[0]} (WxH) but registration ({mode}) is calibrated for "
            f"{width}x{height} (registration.{camera}_width/{camera}_height): not fused with a homography made "
            "for another resolution; recalibrate for this resolution or set the camera back")


def check_pair_geometry(thermal_hw: tuple[int, int], rgb_hw: tuple[int, int], identity: bool,
                        max_aspect_mismatch: float) -> str | None:
    """Reason a thermal/RGB pair cannot be registered, or None. A homography maps any thermal size onto
    the RGB grid (check_calibrated_size binds it to its calibrated sizes); identity registration only
    resizes, so the aspect ratios must agree."""
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


def pair_size_problem(cfg: NodeConfig, thermal_hw: tuple[int, int], rgb_hw: tuple[int, int]
                      ) -> tuple[int, str, str] | None:
    """(index of the camera at fault, drop reason key, message) when the configured registration cannot map
    a thermal/RGB pair of these sizes (calibrated sizes, identity aspect ratio), else None."""
    for index, camera, hw in ((THERMAL_INDEX, "thermal", thermal_hw), (RGB_INDEX, "rgb", rgb_hw)):
        reason = check_calibrated_size(camera, hw, cfg.calibrated_size(camera), cfg["registration.mode"])
        if reason:
            return index, f"{camera}_size", reason
    reason = check_pair_geometry(thermal_hw, rgb_hw, cfg.registration.is_identity,
                                 cfg["registration.max_aspect_mismatch"])
    return (THERMAL_INDEX, "size_mismatch", reason) if reason else None


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
    problem = pair_size_problem(cfg, thermal.shape[:2], color.shape[:2])
    if problem:
        raise PairRejected(*problem)
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


def make_synchronizer(cfg: NodeConfig):
    """The node's ApproximateTime synchroniser (thermal = input 0, RGB = input 1) for these parameters."""
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
