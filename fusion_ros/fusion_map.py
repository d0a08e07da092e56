"""The fused image at the camera's resolution, from the fusion head's coefficient map (torch-free).

The network decides at its input size (640x480 for the bundled model) what to take from each camera: a
map head predicts, at 1/2 of that size, the coefficients (a, b, c) of

    fused Y = clamp(a·IR + b·Y_visible + c, 0, 1)      (or a·max(IR, Y) + b·min(IR, Y) + c: "extremes")

Those coefficients are smooth, so they can be upsampled to any resolution and applied to the registered
full-resolution frames: the fused image keeps every pixel of detail the cameras have, while only the
detector needs the network size. (Resizing the network-size fused image instead threw that detail away:
on 1024x768 road pairs it came out blurrier than a plain pixel average.) Colour follows the model's own
rule (`model.fused_chroma`): the visible Cb/Cr, block-averaged over the same share of the field of view
as at the network size and faded where the fused pixel is brighter than the visible one.

The full-size work is one pass per output (compiled with numba, rows spread over the cores): the
coefficients are interpolated, applied and converted to colour pixel by pixel, where a chain of OpenCV
calls took a dozen memory-bound passes over float planes (docs/fusion.md has the cost). This is the twin
of `model.apply_coefficients` + `model.fused_chroma` + `model.ycbcr_to_rgb`; a test checks that both give
the same image at the network size.
"""
from __future__ import annotations

import functools
import math
import threading

import cv2
import numba
import numpy as np

from .image_conversions import check_color_array, to_rgb8
from .preprocess import FUSED_ENCODINGS, resize_image

CHROMA_BLOCK = 4  # model.fused_chroma's block, in network pixels
MAP_HEADS = ("blend", "affine", "extremes")  # the fusion heads whose coefficient map this applies
_SWAPPED = {"rgb8": False, "bgr8": True}  # the colour orders the kernels read and write (others: via rgb8)
_TO_GREY = {"rgb8": cv2.COLOR_RGB2GRAY, "bgr8": cv2.COLOR_BGR2GRAY}
# numba's workqueue threading layer (its fallback where no OpenMP or TBB runtime is found) runs one parallel
# kernel at a time in a process: callers on several threads (a node's callbacks, an evaluator's workers) take
# turns here instead of aborting it
_kernel_lock = threading.Lock()


class _Scratch(threading.local):
    """Working arrays kept between frames, per thread: allocating them anew each frame costs more than the
    arithmetic (every fresh multi-megabyte array is page-faulted in again)."""

    def __init__(self):
        self.arrays: dict[tuple, np.ndarray] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype) -> np.ndarray:
        key = (name, shape, np.dtype(dtype).str)
        array = self.arrays.get(key)
        if array is None:
            if len(self.arrays) > 16:  # the camera size changed: drop the old size's arrays
                self.arrays.clear()
            array = self.arrays[key] = np.empty(shape, dtype)
        return array


_scratch = _Scratch()


@functools.lru_cache(maxsize=16)
def _source_taps(out_len: int, in_len: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bilinear taps with pixel-centre alignment (F.interpolate(..., align_corners=False), cv2.INTER_LINEAR):
    for each of out_len output pixels the two input pixels and the second one's weight."""
    source = np.maximum((np.arange(out_len) + 0.5) * (in_len / out_len) - 0.5, 0.0)
    first = np.minimum(np.floor(source), in_len - 1).astype(np.intp)
    second = np.minimum(first + 1, in_len - 1)
    return first, second, (source - first).astype(np.float32)


def _widen(maps: np.ndarray, width: int, name: str) -> np.ndarray:
    """(k, h, w) -> (k, h, width): each row interpolated to the image's width (the vertical interpolation
    happens per image row in the kernels, between two of these rows)."""
    wide = _scratch.get(name, (maps.shape[0], maps.shape[1], width), np.float32)
    for plane, target in zip(maps, wide):
        cv2.resize(plane, (width, maps.shape[1]), dst=target, interpolation=cv2.INTER_LINEAR)
    return wide


# The kernels index one image row at a time as a flat 1-D array (what lets LLVM vectorise the inner loop:
# 2-D indexing or a channel index passed as an argument ran 6-9x slower) and swap red and blue with a
# select (`swap`) rather than a channel index.
@numba.njit(inline="always", fastmath=True)
def _fused_y(a0, a1, b0, b1, c0, c1, w, x, ir, vis_y, extremes):
    """clamp(a·IR + b·Y + c, 0, 1) (max/min in place of IR/Y for the extremes head) at column x, each
    coefficient interpolated with weight w between two widened map rows (a0, a1 ...)."""
    a = a0[x] + w * (a1[x] - a0[x])
    b = b0[x] + w * (b1[x] - b0[x])
    c = c0[x] + w * (c1[x] - c0[x])
    if extremes:
        fused = a * max(ir, vis_y) + b * min(ir, vis_y) + c
    else:
        fused = a * ir + b * vis_y + c
    return min(max(fused, np.float32(0.0)), np.float32(1.0))


@numba.njit(inline="always", fastmath=True)
def _to_8bit(value):
    return np.uint8(min(max(value, np.float32(0.0)), np.float32(1.0)) * np.float32(255.0) + np.float32(0.5))


@numba.njit(inline="always", fastmath=True)
def _store_rgb(row, x, swap, luma, cb, cr):
    """model.ycbcr_to_rgb of (luma, Cb - 0.5, Cr - 0.5), rounded into pixel x of a flat 3-channel row
    (red and blue swapped for bgr8)."""
    red = luma + np.float32(1.403) * cr
    green = luma - np.float32(0.714) * cr - np.float32(0.344) * cb
    blue = luma + np.float32(1.773) * cb
    if swap:
        red, blue = blue, red
    row[3 * x] = _to_8bit(red)
    row[3 * x + 1] = _to_8bit(green)
    row[3 * x + 2] = _to_8bit(blue)


@numba.njit(parallel=True, fastmath=True, cache=True)
def _luma_kernel(vis_y8, thermal, wide, rows_a, rows_b, weights, extremes, out):
    """fused Y (H, W) uint8 from the visible Y (uint8) and the thermal frame (float32 0..1)."""
    for y in numba.prange(thermal.shape[0]):
        ra, rb = rows_a[y], rows_b[y]
        a0, a1, b0, b1, c0, c1 = wide[0, ra], wide[0, rb], wide[1, ra], wide[1, rb], wide[2, ra], wide[2, rb]
        w, vis_row, thermal_row, out_row = weights[y], vis_y8[y], thermal[y], out[y]
        for x in range(thermal_row.shape[0]):
            vis_y = np.float32(vis_row[x]) * np.float32(1.0 / 255.0)
            out_row[x] = _to_8bit(_fused_y(a0, a1, b0, b1, c0, c1, w, x, thermal_row[x], vis_y, extremes))


@numba.njit(parallel=True, fastmath=True, cache=True)
def _visible_colour_kernel(color, swap_in, thermal, wide, rows_a, rows_b, weights, extremes, swap_out, out):
    """The fused image with the visible pixel's own Cb/Cr (model chroma "visible"), (H, W, 3) uint8, from a
    3-channel colour frame (swap_in: bgr8)."""
    scale = np.float32(1.0 / 255.0)
    for y in numba.prange(thermal.shape[0]):
        ra, rb = rows_a[y], rows_b[y]
        a0, a1, b0, b1, c0, c1 = wide[0, ra], wide[0, rb], wide[1, ra], wide[1, rb], wide[2, ra], wide[2, rb]
        w, colour_row, thermal_row, out_row = weights[y], color[y].reshape(-1), thermal[y], out[y].reshape(-1)
        for x in range(thermal_row.shape[0]):
            red = np.float32(colour_row[3 * x]) * scale
            green = np.float32(colour_row[3 * x + 1]) * scale
            blue = np.float32(colour_row[3 * x + 2]) * scale
            if swap_in:
                red, blue = blue, red
            vis_y = np.float32(0.299) * red + np.float32(0.587) * green + np.float32(0.114) * blue
            fused = _fused_y(a0, a1, b0, b1, c0, c1, w, x, thermal_row[x], vis_y, extremes)
            _store_rgb(out_row, x, swap_out, fused, (blue - vis_y) * np.float32(0.564),
                       (red - vis_y) * np.float32(0.713))


@numba.njit(parallel=True, fastmath=True, cache=True)
def _block_colour_kernel(fused_y8, wide, rows_a, rows_b, weights, swap_out, out):
    """The fused image from its Y (uint8) and the block colour (model chroma "denoised"): `wide` holds the
    (Cb - 0.5, Cr - 0.5) block map's rows widened to the image's width."""
    scale = np.float32(1.0 / 255.0)
    for y in numba.prange(fused_y8.shape[0]):
        w, luma_row, out_row = weights[y], fused_y8[y], out[y].reshape(-1)
        ra, rb = rows_a[y], rows_b[y]
        cb_a, cb_b, cr_a, cr_b = wide[0, ra], wide[0, rb], wide[1, ra], wide[1, rb]
        for x in range(luma_row.shape[0]):
            _store_rgb(out_row, x, swap_out, np.float32(luma_row[x]) * scale, cb_a[x] + w * (cb_b[x] - cb_a[x]),
                       cr_a[x] + w * (cr_b[x] - cr_a[x]))


@numba.njit(parallel=True, cache=True)
def _block_means(image, out):
    """Means of an (H, W) uint8 image over an out-sized grid of blocks (edges at whole pixels: cv2.INTER_AREA
    for whole-number ratios, within a pixel's share of the block otherwise, where it ran 4x slower)."""
    height, width = image.shape
    rows, cols = out.shape
    for j in numba.prange(rows):
        top, bottom = j * height // rows, max((j + 1) * height // rows, j * height // rows + 1)
        column_sums = np.zeros(width, np.float32)  # the block row summed down its rows: one vectorised pass
        for y in range(top, bottom):
            line = image[y]
            for x in range(width):
                column_sums[x] += np.float32(line[x])
        for i in range(cols):
            left, right = i * width // cols, max((i + 1) * width // cols, i * width // cols + 1)
            out[j, i] = column_sums[left:right].sum() / np.float32((bottom - top) * (right - left))


def _widened(maps: np.ndarray, size: tuple[int, int], name: str) -> tuple[np.ndarray, ...]:
    """(k, h, w) maps -> (rows widened to the image width, and each image row's two map rows + weight)."""
    height, width = size
    maps = np.ascontiguousarray(maps, dtype=np.float32)
    return (_widen(maps, width, name), *_source_taps(height, maps.shape[1]))


def _check_head(head: str) -> None:
    if head not in MAP_HEADS:
        raise ValueError(f"a coefficient map comes from a {', '.join(MAP_HEADS)} head, not {head!r}")


def fuse_luminance(coefficients: np.ndarray, thermal: np.ndarray, vis_y8: np.ndarray, head: str) -> np.ndarray:
    """fused Y (H, W) uint8 from (3, h, w) coefficients, the H×W thermal (float32 0..1) and the visible Y
    (uint8): round(255 · clamp(a·IR + b·Y + c, 0, 1)) with Y in 0..1, or for the "extremes" head with
    max(IR, Y) and min(IR, Y) in place of IR and Y. The result is this thread's scratch array."""
    _check_head(head)
    thermal = np.ascontiguousarray(thermal, dtype=np.float32)
    out = _scratch.get("fused_y8", thermal.shape, np.uint8)
    with _kernel_lock:
        wide, rows_a, rows_b, weights = _widened(coefficients, thermal.shape, "map")
        _luma_kernel(np.ascontiguousarray(vis_y8, dtype=np.uint8), thermal, wide, rows_a, rows_b, weights,
                     head == "extremes", out)
    return out


def fused_image(
    coefficients: np.ndarray,
    thermal: np.ndarray,
    color: np.ndarray,
    *,
    color_encoding: str = "rgb8",
    chroma: str = "visible",
    net_size: tuple[int, int],
    color_net: np.ndarray | None = None,
    encoding: str = "rgb8",
    head: str,
) -> np.ndarray:
    """The fused (H, W, 3) uint8 image at the colour frame's size, a fresh array.

    coefficients: (3, h, w) float32 from the graph's `fusion_map` output; thermal: (H, W) float32 0..1
    registered to the colour frame's grid; color: the H×W[×C] uint8 frame in ``color_encoding``;
    chroma: the model's colour rule ("visible" or "denoised"); net_size: (h, w) the graph ran at (sets the
    colour block); color_net: the colour frame at ``net_size`` where the caller has it (the preprocessor
    does): the "denoised" colour's block means come from it, as in the model, without a pass over the
    full-size frame; encoding: the output's channel order (rgb8 or bgr8); head: the map head's kind
    (model.FusionConfig.output: blend, affine or extremes).
    """
    if encoding not in FUSED_ENCODINGS:
        raise ValueError(f"the fused image is produced as {' or '.join(FUSED_ENCODINGS)}, not '{encoding}'")
    if chroma not in ("visible", "denoised"):
        raise ValueError(f"chroma must be 'visible' or 'denoised', got {chroma!r}")
    _check_head(head)
    if color_encoding not in _SWAPPED:
        color, color_encoding = to_rgb8(color, color_encoding), "rgb8"
    color = check_color_array(color, color_encoding)
    thermal = np.ascontiguousarray(thermal, dtype=np.float32)
    height, width = color.shape[:2]
    out = np.empty((height, width, 3), np.uint8)
    if chroma == "visible":
        with _kernel_lock:
            wide, rows_a, rows_b, weights = _widened(coefficients, (height, width), "map")
            _visible_colour_kernel(np.ascontiguousarray(color), _SWAPPED[color_encoding], thermal, wide, rows_a,
                                   rows_b, weights, head == "extremes", _SWAPPED[encoding], out)
        return out
    vis_y8 = cv2.cvtColor(color, _TO_GREY[color_encoding], dst=_scratch.get("vis_y8", (height, width), np.uint8))
    fused_y8 = fuse_luminance(coefficients, thermal, vis_y8, head)
    # the model's rule at the network size: block means of the colour, faded by mean visible Y / mean fused Y
    # where the fused image is brighter; Cb/Cr and Y are linear in RGB, so their block means come from the
    # block-mean colour
    if color_net is None:
        color_net = resize_image(color, net_size)
    small = (math.ceil(net_size[1] / CHROMA_BLOCK), math.ceil(net_size[0] / CHROMA_BLOCK))
    rgb_small = cv2.resize(to_rgb8(color_net, color_encoding), small, interpolation=cv2.INTER_AREA)
    rgb_small = rgb_small.astype(np.float32)
    vis_small = cv2.cvtColor(rgb_small, cv2.COLOR_RGB2GRAY)
    fused_small = np.empty((small[1], small[0]), np.float32)
    with _kernel_lock:
        _block_means(fused_y8, fused_small)
    trust = np.minimum(vis_small / np.maximum(fused_small, np.float32(0.255)), 1.0)
    cb_cr = (_cb_cr_offset(rgb_small) * trust[:, :, None]).transpose(2, 0, 1)
    with _kernel_lock:
        wide, rows_a, rows_b, weights = _widened(cb_cr, (height, width), "chroma")
        _block_colour_kernel(fused_y8, wide, rows_a, rows_b, weights, _SWAPPED[encoding], out)
    return out


def compile_kernels() -> None:
    """Run every kernel once on a small frame: numba compiles them (about 5 s the first time after an
    install, then ~0.2 s from its cache) before the first camera frame rather than on it."""
    coefficients = np.zeros((3, 2, 2), np.float32)
    thermal, color = np.zeros((8, 8), np.float32), np.zeros((8, 8, 3), np.uint8)
    for chroma in ("visible", "denoised"):
        fused_image(coefficients, thermal, color, chroma=chroma, net_size=(4, 4), head="extremes")


def _cb_cr_offset(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) float32 RGB 0..255 -> (H, W, 2) float32 (Cb - 0.5, Cr - 0.5) in 0..1 units (as
    model.rgb_to_ycbcr)."""
    matrix = np.array([[-0.299 * 0.564, -0.587 * 0.564, (1 - 0.114) * 0.564],
                       [(1 - 0.299) * 0.713, -0.587 * 0.713, -0.114 * 0.713]], dtype=np.float32) / 255.0
    return cv2.transform(rgb, matrix)
