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

The full-size work is a dozen OpenCV passes into arrays kept between frames (docs/fusion.md has the cost).
This is the numpy twin of `model.apply_coefficients` + `model.fused_chroma` + `model.ycbcr_to_rgb`; a
test checks that both give the same image at the network size.
"""
from __future__ import annotations

import math
import threading

import cv2
import numpy as np

from .image_conversions import to_rgb8
from .preprocess import FUSED_ENCODINGS, resize_image

CHROMA_BLOCK = 4  # model.fused_chroma's block, in network pixels
_FROM_YCRCB = {"rgb8": cv2.COLOR_YCrCb2RGB, "bgr8": cv2.COLOR_YCrCb2BGR}


class _Scratch(threading.local):
    """Full-size working arrays kept between frames, per thread. Allocating them anew each frame costs more
    than the arithmetic: every fresh multi-megabyte array is page-faulted in again (measured: three
    1920x1080 coefficient planes took 4 ms fresh, 1.2 ms into kept arrays)."""

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


def upsample_map(coefficients: np.ndarray, size: tuple[int, int]) -> list[np.ndarray]:
    """(3, h, w) coefficients -> [a, b, c], each (H, W) float32 at size (H, W): bilinear with pixel-centre
    alignment (as the graph's F.interpolate(..., align_corners=False)). The planes are this thread's
    scratch arrays: valid until its next call."""
    height, width = size
    planes = []
    for i, plane in enumerate(coefficients):
        out = _scratch.get(f"map{i}", (height, width), np.float32)
        if plane.shape == (height, width):
            np.copyto(out, plane)
        else:
            cv2.resize(np.ascontiguousarray(plane, dtype=np.float32), (width, height), dst=out,
                       interpolation=cv2.INTER_LINEAR)
        planes.append(out)
    return planes


# (a, b, c) in the units of an 8-bit output from a 0..1 thermal frame and an 8-bit visible Y: scaled on the
# small map, so no full-size pass is spent on units. The "extremes" head's max/min compare both sources in
# one unit: there the visible Y is converted to 0..1 (the pass that converts it to float anyway) and the
# result scaled to 8 bits by the final conversion
_TO_8BIT_UNITS = np.array([255.0, 1.0, 255.0], np.float32)[:, None, None]
MAP_HEADS = ("blend", "affine", "extremes")  # the fusion heads whose coefficient map this applies


def fuse_luminance(coefficients: np.ndarray, thermal: np.ndarray, vis_y8: np.ndarray, head: str) -> np.ndarray:
    """fused Y (H, W) uint8 from (3, h, w) coefficients, the H×W thermal (float32 0..1) and the visible Y
    (uint8): round(255 · clamp(a·IR + b·Y + c, 0, 1)), or for the "extremes" head with max(IR, Y) and
    min(IR, Y) in place of IR and Y. The result is this thread's scratch array."""
    vis_y = _scratch.get("vis_y", thermal.shape, np.float32)
    if head == "extremes":
        a, b, fused = upsample_map(coefficients, thermal.shape)
        np.multiply(vis_y8, np.float32(1.0 / 255.0), out=vis_y)
        first = cv2.max(thermal, vis_y, dst=_scratch.get("brighter", thermal.shape, np.float32))
        second = cv2.min(thermal, vis_y, dst=vis_y)
        scale = 255.0
    else:
        a, b, fused = upsample_map(coefficients * _TO_8BIT_UNITS, thermal.shape)
        np.copyto(vis_y, vis_y8)
        first, second, scale = thermal, vis_y, 1.0
    cv2.accumulateProduct(a, first, fused)  # fused = c + a·IR (or a·max), in one pass
    cv2.accumulateProduct(b, second, fused)  # ... + b·Y (or b·min)
    cv2.threshold(fused, 0.0, 0.0, cv2.THRESH_TOZERO, dst=fused)  # clamp below (a pass 10x cheaper than numpy's)
    # scales, rounds, saturates
    return cv2.convertScaleAbs(fused, dst=_scratch.get("fused_y8", thermal.shape, np.uint8), alpha=scale)


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
    """The fused (H, W, 3) uint8 image at the colour frame's size.

    coefficients: (3, h, w) float32 from the graph's `fusion_map` output; thermal: (H, W) float32 0..1
    registered to the colour frame's grid; color: the H×W[×C] uint8 frame in ``color_encoding``;
    chroma: the model's colour rule ("visible" or "denoised"); net_size: (h, w) the graph ran at (sets the
    colour block); color_net: the colour frame at ``net_size`` where the caller has it (the preprocessor
    does): the "denoised" colour's block means come from it, as in the model, without a pass over the
    full-size frame; encoding: the output's channel order (rgb8 or bgr8); head: the map head's kind
    (model.FusionConfig.output: blend, affine or extremes).
    The last steps run in 8 bits (OpenCV's YCrCb -> RGB): a level or two from the float graph.
    """
    if encoding not in FUSED_ENCODINGS:
        raise ValueError(f"the fused image is produced as {' or '.join(FUSED_ENCODINGS)}, not '{encoding}'")
    if chroma not in ("visible", "denoised"):
        raise ValueError(f"chroma must be 'visible' or 'denoised', got {chroma!r}")
    if head not in MAP_HEADS:
        raise ValueError(f"a coefficient map comes from a {', '.join(MAP_HEADS)} head, not {head!r}")
    rgb8 = to_rgb8(color, color_encoding)
    height, width = rgb8.shape[:2]
    if chroma == "denoised":
        vis_y8 = cv2.cvtColor(rgb8, cv2.COLOR_RGB2GRAY, dst=_scratch.get("vis_y8", (height, width), np.uint8))
        fused_y8 = fuse_luminance(coefficients, thermal, vis_y8, head)
        # the model's rule at the network size: block means of the colour, faded by mean visible Y / mean
        # fused Y where the fused image is brighter; Cb/Cr and Y are linear in RGB, so their block means
        # come from the block-mean colour
        if color_net is None:
            color_net = resize_image(color, net_size)
        small = (math.ceil(net_size[1] / CHROMA_BLOCK), math.ceil(net_size[0] / CHROMA_BLOCK))
        rgb_small = cv2.resize(to_rgb8(color_net, color_encoding), small, interpolation=cv2.INTER_AREA)
        rgb_small = rgb_small.astype(np.float32)
        vis_small = cv2.cvtColor(rgb_small, cv2.COLOR_RGB2GRAY)
        fused_small = cv2.resize(fused_y8, small, interpolation=cv2.INTER_AREA).astype(np.float32)
        trust = np.minimum(vis_small / np.maximum(fused_small, np.float32(0.255)), 1.0)
        small_ycrcb = np.zeros((small[1], small[0], 3), np.uint8)
        small_ycrcb[:, :, 1:] = cv2.convertScaleAbs(_crcb_offset(rgb_small) * trust[:, :, None], alpha=255.0,
                                                    beta=128.0)
        ycrcb = cv2.resize(small_ycrcb, (width, height), dst=_scratch.get("ycrcb", (height, width, 3), np.uint8),
                           interpolation=cv2.INTER_LINEAR)
        ycrcb[:, :, 0] = fused_y8  # (numpy's strided copy: a third of cv2.merge's time here)
    else:
        # OpenCV's Cr/Cb are model.rgb_to_ycbcr's, in 8 bits
        ycrcb = cv2.cvtColor(rgb8, cv2.COLOR_RGB2YCrCb, dst=_scratch.get("ycrcb", (height, width, 3), np.uint8))
        ycrcb[:, :, 0] = fuse_luminance(coefficients, thermal, ycrcb[:, :, 0], head)
    return cv2.cvtColor(ycrcb, _FROM_YCRCB[encoding])


def _crcb_offset(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) float32 RGB 0..255 -> (H, W, 2) float32 (Cr - 0.5, Cb - 0.5) in 0..1 units (as
    model.rgb_to_ycbcr)."""
    matrix = np.array([[(1 - 0.299) * 0.713, -0.587 * 0.713, -0.114 * 0.713],
                       [-0.299 * 0.564, -0.587 * 0.564, (1 - 0.114) * 0.564]], dtype=np.float32) / 255.0
    return cv2.transform(rgb, matrix)
