"""sensor_msgs/Image and CompressedImage <-> numpy, and the one owner of image encodings, thermal scaling
and colour order.

Every consumer (the node, the bag evaluator, the engine's pre-processing, training) reads encodings, maps
thermal values to 0..1 and reorders colour channels through these functions, so a frame is converted the
same way everywhere and only once.

cv_bridge for ROS 2 is not on PyPI, so this is the project's own small replacement. It is duck-typed on
any object with ``height, width, encoding, is_bigendian, step, data`` (an rclpy message, a rosbags
message, a SimpleNamespace), so the live node and the offline bag evaluator decode frames identically.
No rclpy import here: the module must load where ROS is absent (training, CI without the wheels).
"""
from __future__ import annotations

import os
import sys
import tempfile
import threading
from pathlib import Path

import cv2
import numpy as np


class ImageConversionError(ValueError):
    """An image message that cannot be read as (or an array that cannot be written as) the given encoding."""


class ImageTooLarge(ImageConversionError):
    """An image whose declared size exceeds the pixel limit: rejected before anything is decoded or copied."""


# Default limit on the pixels of one input image, checked on the declared size before decoding: 4096x4096
# (16.8 Mpx) holds every automotive / thermal camera in use (a 4K UHD frame is 8.3 Mpx) and caps one decoded
# bgr8 frame at 48 MiB, where a lying 389 KB PNG header (20000x20000) would otherwise cost gigabytes.
DEFAULT_MAX_PIXELS = 4096 * 4096
_PIXEL_LIMIT_TEXT = "exceeds the pixel limit"


def check_pixel_limit(width: int, height: int, max_pixels: int | None, what: str = "image") -> None:
    """ImageTooLarge when ``width * height`` is over ``max_pixels`` (None or 0: no limit)."""
    if max_pixels and int(width) * int(height) > int(max_pixels):
        raise ImageTooLarge(
            f"{what} declares {int(width)}x{int(height)} (WxH) = {int(width) * int(height)} pixels, which "
            f"{_PIXEL_LIMIT_TEXT} of {int(max_pixels)} (parameter max_image_pixels); not decoded"
        )


_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def compressed_image_size(data) -> tuple[str, int, int] | None:
    """(container, width, height) read from a PNG (IHDR) or JPEG (SOFn) header without decoding anything,
    or None when ``data`` is neither or its header is cut short. ``data``: bytes-like (a uint8 array)."""
    head = memoryview(np.frombuffer(data, dtype=np.uint8) if not isinstance(data, (bytes, bytearray)) else data)
    n = len(head)
    if n >= 24 and bytes(head[:8]) == _PNG_SIGNATURE and bytes(head[12:16]) == b"IHDR":
        return "png", int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    if n < 4 or head[0] != 0xFF or head[1] != 0xD8:
        return None
    pos = 2
    while pos + 4 <= n:
        if head[pos] != 0xFF:
            return None
        marker = head[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            pos += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image / start of scan before any frame header
            return None
        length = int.from_bytes(head[pos + 2:pos + 4], "big")
        if marker in _JPEG_SOF:
            if pos + 9 > n:
                return None
            height = int.from_bytes(head[pos + 5:pos + 7], "big")
            width = int.from_bytes(head[pos + 7:pos + 9], "big")
            return "jpeg", width, height
        if length < 2:
            return None
        pos += 2 + length
    return None


# encoding -> (element dtype, channels). 8UC1/8UC3/16UC1 are the generic OpenCV names drivers also use;
# 8UC3 carries no colour order, so it is read as bgr8 like cv_bridge does.
_ENCODINGS: dict[str, tuple[np.dtype, int]] = {
    "mono8": (np.dtype(np.uint8), 1),
    "8UC1": (np.dtype(np.uint8), 1),
    "mono16": (np.dtype(np.uint16), 1),
    "16UC1": (np.dtype(np.uint16), 1),
    "32FC1": (np.dtype(np.float32), 1),
    "bgr8": (np.dtype(np.uint8), 3),
    "rgb8": (np.dtype(np.uint8), 3),
    "8UC3": (np.dtype(np.uint8), 3),
    "bgra8": (np.dtype(np.uint8), 4),
    "rgba8": (np.dtype(np.uint8), 4),
}
THERMAL_ENCODINGS = ("mono8", "8UC1", "mono16", "16UC1", "32FC1")
COLOR_ENCODINGS = ("bgr8", "rgb8", "8UC3", "bgra8", "rgba8", "mono8", "8UC1")
SIXTEEN_BIT_ENCODINGS = ("mono16", "16UC1")

# -20 degC .. +80 degC in TLinear centikelvin (kelvin x 100): the default fixed range of 16-bit thermal
# frames and the range the models are trained with (their 16-bit thermal_range, checkpoint.ModelMeta).
THERMAL_RANGE_CENTIKELVIN = (25315.0, 35315.0)
# Default fixed normalisation range per thermal element type, in the encoding's own units:
# 8-bit counts; 16-bit centikelvin; 32FC1 kelvin (the same span).
_FIXED_RANGE = {
    np.dtype(np.uint8): (0.0, 255.0),
    np.dtype(np.uint16): THERMAL_RANGE_CENTIKELVIN,
    np.dtype(np.float32): tuple(v / 100.0 for v in THERMAL_RANGE_CENTIKELVIN),
}
# colour encoding -> cv2 conversion to RGB (rgb8 needs none); 8UC3 carries no order: read as bgr8
_TO_RGB = {"mono8": cv2.COLOR_GRAY2RGB, "8UC1": cv2.COLOR_GRAY2RGB, "bgr8": cv2.COLOR_BGR2RGB,
           "8UC3": cv2.COLOR_BGR2RGB, "bgra8": cv2.COLOR_BGRA2RGB, "rgba8": cv2.COLOR_RGBA2RGB}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_COMPRESSED_DEPTH_HEADER = 12  # image_transport's compressedDepth ConfigHeader: int32 format + 2 float32


def _spec(encoding: str) -> tuple[np.dtype, int]:
    try:
        return _ENCODINGS[encoding]
    except KeyError:
        raise ImageConversionError(
            f"unsupported image encoding '{encoding}' (supported: {', '.join(_ENCODINGS)})"
        ) from None


def image_to_array(msg, max_pixels: int | None = None) -> np.ndarray:
    """Decode an Image-like message into H×W (one channel) or H×W×C numpy array.

    ``max_pixels``: ImageTooLarge when width*height is over it, checked before anything is read or copied.

    The result is a view on ``msg.data`` whenever possible (row padding is skipped via strides, not
    copied), so it may be read-only and shares memory with the message: copy before writing into it.
    Byte-swapped 16/32-bit data, and rows whose step is not a multiple of the element size, are copied
    into a native contiguous array (one copy), because OpenCV rejects both.
    """
    encoding = msg.encoding
    dtype, channels = _spec(encoding)
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise ImageConversionError(f"empty {encoding} image: height={height} width={width}")
    check_pixel_limit(width, height, max_pixels, f"{encoding} image")
    row_bytes = width * channels * dtype.itemsize
    if step < row_bytes:
        raise ImageConversionError(
            f"{encoding} image step {step} is smaller than width*bytes_per_pixel = "
            f"{width}*{channels * dtype.itemsize} = {row_bytes}"
        )
    data = msg.data
    try:
        raw = np.frombuffer(data, dtype=np.uint8)
    except (TypeError, ValueError):  # a plain list of ints (e.g. a hand-built message)
        raw = np.asarray(data, dtype=np.uint8).reshape(-1)
    if raw.size < step * height:
        raise ImageConversionError(
            f"{encoding} image {width}x{height} with step {step} needs {step * height} bytes, "
            f"data has {raw.size}"
        )
    stored = dtype.newbyteorder(">" if msg.is_bigendian else "<") if dtype.itemsize > 1 else dtype
    pixel_bytes = channels * dtype.itemsize
    if channels == 1:
        shape, strides = (height, width), (step, pixel_bytes)
    else:
        shape, strides = (height, width, channels), (step, pixel_bytes, dtype.itemsize)
    view = np.ndarray(shape, dtype=stored, buffer=raw, strides=strides)
    if not stored.isnative or not view.flags.aligned:
        return view.astype(dtype)  # a fresh, aligned, native-order contiguous copy
    return view


def array_to_image_fields(array: np.ndarray, encoding: str) -> dict:
    """The Image fields (less header) for publishing ``array``: ``Image(header=h, **fields)``.

    The dtype must already match the encoding (uint8 / uint16 / float32): silently casting would hide
    scaling bugs. Data is written little-endian and unpadded.
    """
    dtype, channels = _spec(encoding)
    array = np.asarray(array)
    if array.dtype != dtype:
        raise ImageConversionError(f"encoding '{encoding}' needs a {dtype} array, got {array.dtype}")
    if channels == 1 and array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    expected = "H×W" if channels == 1 else f"H×W×{channels}"
    if array.ndim != (2 if channels == 1 else 3) or (channels > 1 and array.shape[2] != channels):
        raise ImageConversionError(
            f"encoding '{encoding}' needs an {expected} array, got shape {array.shape}"
        )
    height, width = array.shape[:2]
    if height == 0 or width == 0:
        raise ImageConversionError(f"cannot publish an empty {encoding} image of shape {array.shape}")
    little = np.ascontiguousarray(array, dtype=dtype.newbyteorder("<") if dtype.itemsize > 1 else dtype)
    return {
        "height": height,
        "width": width,
        "encoding": encoding,
        "is_bigendian": 0,
        "step": width * channels * dtype.itemsize,
        "data": little.tobytes(),
    }


def thermal_to_float(
    array: np.ndarray, encoding: str, mode: str = "fixed", low: float | None = None, high: float | None = None
) -> np.ndarray:
    """Thermal frame -> float32 H×W in 0..1, the engine's IR input.

    ``low``/``high`` are in the encoding's own units: 8-bit counts (default 0..255), 16-bit TLinear
    centikelvin counts (default 25315..35315, i.e. -20..+80 degC) and, for 32FC1, kelvin (default
    253.15..353.15 K; pass e.g. low=-20, high=80 for a driver that publishes degC). A fixed range keeps
    a given temperature at the same grey level in every frame, which the network relies on; "auto"
    stretches the 1st..99th percentile per frame instead (for uncalibrated cameras), ignoring low/high.
    Values outside the range are clipped. A flat frame in "auto" mode maps to 0.
    """
    if encoding not in THERMAL_ENCODINGS:
        raise ImageConversionError(
            f"thermal encoding must be one of {', '.join(THERMAL_ENCODINGS)}, got '{encoding}'"
        )
    dtype, _ = _spec(encoding)
    array = np.asarray(array)
    if array.ndim != 2:
        raise ImageConversionError(f"thermal image must be H×W, got shape {array.shape}")
    if array.dtype != dtype:
        raise ImageConversionError(f"thermal encoding '{encoding}' needs a {dtype} array, got {array.dtype}")
    if array.size == 0:
        raise ImageConversionError(f"empty thermal image of shape {array.shape}")
    if dtype.kind == "f":
        bad = int(np.count_nonzero(~np.isfinite(array)))
        if bad:
            raise ImageConversionError(f"32FC1 thermal image has {bad} NaN/inf pixels of {array.size}")
    if mode == "fixed":
        default_low, default_high = _FIXED_RANGE[dtype]
        lo = default_low if low is None else float(low)
        hi = default_high if high is None else float(high)
        if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
            raise ValueError(f"thermal fixed range needs finite low < high, got low={lo} high={hi}")
    elif mode == "auto":
        lo, hi = (float(v) for v in np.percentile(array, (1.0, 99.0)))
        hi = max(hi, lo + (1e-6 if dtype.kind == "f" else 1.0))
    else:
        raise ValueError(f"thermal normalisation mode must be 'fixed' or 'auto', got '{mode}'")
    out = array.astype(np.float32)
    out -= np.float32(lo)
    out *= np.float32(1.0 / (hi - lo))
    return np.clip(out, 0.0, 1.0, out=out)


def fixed_thermal_range(encoding: str, configured: tuple[float, float] | None = None,
                        model_range: tuple[float, float] | None = None) -> tuple[float, float]:
    """The fixed-mode (low, high) of a thermal frame, in the encoding's units: ``configured`` when given,
    else the model's 16-bit range for 16-bit frames, else the encoding's default."""
    if configured is not None:
        return (float(configured[0]), float(configured[1]))
    if encoding in SIXTEEN_BIT_ENCODINGS and model_range is not None:
        return (float(model_range[0]), float(model_range[1]))
    return _FIXED_RANGE[_spec(encoding)[0]]


def check_color_array(array, encoding: str) -> np.ndarray:
    """``array`` as a colour frame of ``encoding`` (uint8, H×W or H×W×channels), or ImageConversionError."""
    if encoding not in COLOR_ENCODINGS:
        raise ImageConversionError(
            f"colour encoding must be one of {', '.join(COLOR_ENCODINGS)}, got '{encoding}'"
        )
    _, channels = _spec(encoding)
    array = np.asarray(array)
    if array.dtype != np.uint8:
        raise ImageConversionError(f"colour encoding '{encoding}' needs a uint8 array, got {array.dtype}")
    expected = (2, ()) if channels == 1 else (3, (channels,))
    if (array.ndim, array.shape[2:]) != expected or array.size == 0:
        layout = "H×W" if channels == 1 else f"H×W×{channels}"
        raise ImageConversionError(f"'{encoding}' image must be a non-empty {layout} array, got shape {array.shape}")
    return array


def to_rgb8(array: np.ndarray, encoding: str) -> np.ndarray:
    """A colour or mono frame -> contiguous H×W×3 uint8 RGB."""
    array = check_color_array(array, encoding)
    if encoding == "rgb8":
        return np.ascontiguousarray(array)
    return cv2.cvtColor(array, _TO_RGB[encoding])  # ~40x faster than numpy channel slicing at 640x512


def color_to_rgb_float(array: np.ndarray, encoding: str) -> np.ndarray:
    """Colour (or mono) frame -> contiguous float32 H×W×3 RGB in 0..1, the engine's visible input."""
    out = to_rgb8(array, encoding).astype(np.float32)
    out *= np.float32(1.0 / 255.0)
    return out


# libpng and libjpeg print their own complaints about bad data straight to the process's stderr ("libpng
# error: IDAT: CRC error", "Corrupt JPEG data: ..."), and OpenCV adds "[ WARN:0@...] ... imdecode" lines: two
# unthrottled lines per bad frame in a node's log. Decoding therefore runs with file descriptor 2 pointed
# at a scratch file; what the libraries wrote there goes into the ImageConversionError message instead,
# and anything else written to stderr meanwhile (another thread's log line) is passed on unchanged.
_DECODER_LINES = ("libpng ", "libjpeg", "corrupt jpeg data", "premature end of jpeg", "[ warn:", "[error:",
                  "[ info:", "invalid sos parameters", "bogus marker", "not a jpeg file", "unsupported marker")
_capture_lock = threading.Lock()
_capture_file = None


def _is_decoder_line(line: str) -> bool:
    low = line.strip().lower()
    return low.startswith(_DECODER_LINES) or ("jpeg" in low and "corrupt" in low)


def _imdecode_quietly(buf: np.ndarray):
    """cv2.imdecode with the decoders' own stderr output captured: (image or None, [decoder lines])."""
    global _capture_file
    with _capture_lock:
        try:
            if _capture_file is None:
                _capture_file = tempfile.TemporaryFile()
            for stream in (sys.stderr, sys.__stderr__):
                if stream is not None:
                    stream.flush()
            saved = os.dup(2)
        except (OSError, ValueError):  # no usable stderr (closed, exotic embedding): decode as is
            return cv2.imdecode(buf, cv2.IMREAD_UNCHANGED), []
        try:
            os.dup2(_capture_file.fileno(), 2)
            try:
                image = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
            finally:
                os.dup2(saved, 2)
                os.close(saved)
        finally:
            _capture_file.seek(0)
            captured = _capture_file.read()
            _capture_file.seek(0)
            _capture_file.truncate()
    if not captured:
        return image, []
    text = captured.decode("utf-8", "replace")
    ours, others = [], []
    for line in text.splitlines(keepends=True):
        (ours if _is_decoder_line(line) else others).append(line)
    if others:
        try:
            os.write(2, "".join(others).encode("utf-8", "replace"))
        except OSError:
            pass
    return image, [line.strip() for line in ours if line.strip()]


def compressed_to_array(format: str, data, max_pixels: int | None = None) -> tuple[np.ndarray, str]:  # noqa: A002
    """Decode a CompressedImage (``format``, ``data``) -> (array, encoding of the array).

    Only PNG and JPEG data (image_transport's compressed formats, whatever ``format`` claims) are decoded;
    their header's declared size is checked against ``max_pixels`` first (ImageTooLarge), so a small file
    declaring a huge image costs nothing.

    OpenCV decides the layout: colour JPEG/PNG come back as bgr8 (bgra8 with alpha), grey ones as mono8,
    16-bit PNG stays uint16 (mono16), so radiometric thermal survives PNG transport. image_transport's
    "compressedDepth" 16UC1 format (a 12-byte header before the PNG) is accepted too.
    """
    buf = np.frombuffer(bytes(data) if isinstance(data, list) else data, dtype=np.uint8)
    fmt = format.lower()
    if "compresseddepth" in fmt:
        if fmt.startswith("32fc1"):
            raise ImageConversionError(
                f"compressedDepth 32FC1 (quantised inverse depth) is not supported: '{format}'"
            )
        if buf[_COMPRESSED_DEPTH_HEADER:_COMPRESSED_DEPTH_HEADER + 8].tobytes() != _PNG_SIGNATURE:
            raise ImageConversionError(
                f"'{format}' data of {buf.size} bytes has no PNG after its 12-byte header"
            )
        buf = buf[_COMPRESSED_DEPTH_HEADER:]
    if buf.size == 0:
        raise ImageConversionError(f"compressed image ('{format}') has no data")
    header = compressed_image_size(buf)
    if header is None:
        raise ImageConversionError(
            f"cannot decode compressed image ('{format}', {buf.size} bytes): no complete PNG or JPEG header"
        )
    container, width, height = header
    if width <= 0 or height <= 0:
        raise ImageConversionError(f"cannot decode compressed image ('{format}', {buf.size} bytes): "
                                   f"{container} header declares an empty {width}x{height} image")
    check_pixel_limit(width, height, max_pixels, f"compressed {container} ('{format}', {buf.size} bytes)")
    try:
        image, complaints = _imdecode_quietly(buf)
    except cv2.error as exc:
        raise ImageConversionError(
            f"cannot decode compressed image ('{format}', {buf.size} bytes): {exc}"
        ) from None
    if image is None:
        why = f": {'; '.join(complaints)}" if complaints else ""
        raise ImageConversionError(f"cannot decode compressed image ('{format}', {buf.size} bytes){why}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    by_layout = {
        (np.dtype(np.uint8), 1): "mono8",
        (np.dtype(np.uint16), 1): "mono16",
        (np.dtype(np.uint8), 3): "bgr8",
        (np.dtype(np.uint8), 4): "bgra8",
    }
    key = (image.dtype, 1 if image.ndim == 2 else image.shape[2])
    if key not in by_layout:
        raise ImageConversionError(
            f"decoded '{format}' image has unsupported layout dtype={image.dtype} shape={image.shape}"
        )
    return image, by_layout[key]



def read_image_file(path, what: str = "image") -> np.ndarray:
    """An image file as cv2.imread(IMREAD_UNCHANGED) reads it, without the decoders' own lines on stderr.

    ImageConversionError (a ValueError) naming the file when it cannot be read or decoded, or when the
    decoder reports damage (a truncated JPEG decodes to a grey-filled image that is not the scene)."""
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError as exc:
        raise ImageConversionError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if data.size == 0:
        raise ImageConversionError(f"cannot read {what} {path}: the file is empty")
    try:
        image, complaints = _imdecode_quietly(data)
    except cv2.error as exc:
        raise ImageConversionError(f"cannot decode {what} {path}: {exc}") from None
    said = f" ({'; '.join(complaints)})" if complaints else ""
    if image is None:
        raise ImageConversionError(f"cannot decode {what} {path}: not a complete image file OpenCV reads{said}")
    if complaints:
        raise ImageConversionError(f"{what} {path} is damaged{said}")
    return image
