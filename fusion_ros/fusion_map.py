"""The fused image at the camera's resolution, from the fusion head's coefficient map (torch-free).

The network decides at its input size (640x480 for the bundled model) what to take from each camera: a
map head predicts, at 1/2 of that size, the coefficients (a, b, c) of

    fused Y = clamp(a·IR + b·Y_visible + c, 0, 1)

Those coefficients are smooth, so they can be upsampled to any resolution and applied to the registered
full-resolution frames: the fused image keeps every pixel of detail the cameras have, while only the
detector needs the network size. (Resizing the network-size fused image instead threw that detail away:
on 1024x768 road pairs it came out blurrier than a plain pixel average.) Colour follows the model's own
rule (`model.fused_chroma`): the visible Cb/Cr, block-averaged over the same share of the field of view
as at the network size and faded where the fused pixel is brighter than the visible one.

This is the numpy twin of `model.apply_coefficients` + `model.fused_chroma` + `model.ycbcr_to_rgb`; a
test checks that both give the same image at the network size.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from .image_conversions import to_rgb8
from .preprocess import FUSED_ENCODINGS

CHROMA_BLOCK = 4  # model.fused_chroma's block, in network pixels
_FROM_YCRCB = {"rgb8": cv2.COLOR_YCrCb2RGB, "bgr8": cv2.COLOR_YCrCb2BGR}


def upsample_map(coefficients: np.ndarray, size: tuple[int, int]) -> list[np.ndarray]:
    """(3, h, w) coefficients -> [a, b, c], each (H, W) float32 at size (H, W): bilinear with pixel-centre
    alignment (as the graph's F.interpolate(..., align_corners=False))."""
    height, width = size
    planes = [np.ascontiguousarray(c, dtype=np.float32) for c in coefficients]
    if planes[0].shape == (height, width):
        return planes
    return [cv2.resize(p, (width, height), interpolation=cv2.INTER_LINEAR) for p in planes]


def fuse_luminance(coefficients: np.ndarray, thermal: np.ndarray, vis_y: np.ndarray) -> np.ndarray:
    """fused Y (H, W) float32 in 0..1 from (3, h, w) coefficients, the H×W thermal and visible Y (float32
    0..1, or the visible Y as uint8 0..255: scaled through b, saving a full-size pass)."""
    a, b, fused = upsample_map(coefficients, thermal.shape)
    if vis_y.dtype == np.uint8:
        b *= np.float32(1.0 / 255.0)
        vis_y = vis_y.astype(np.float32)
    cv2.accumulateProduct(a, thermal, fused)  # fused = c + a·IR, in one pass
    cv2.accumulateProduct(b, vis_y, fused)  # ... + b·Y
    return np.clip(fused, 0.0, 1.0, out=fused)


def fused_image(
    coefficients: np.ndarray,
    thermal: np.ndarray,
    color: np.ndarray,
    *,
    color_encoding: str = "rgb8",
    chroma: str = "visible",
    net_size: tuple[int, int],
    encoding: str = "rgb8",
) -> np.ndarray:
    """The fused (H, W, 3) uint8 image at the colour frame's size.

    coefficients: (3, h, w) float32 from the graph's `fusion_map` output; thermal: (H, W) float32 0..1
    registered to the colour frame's grid; color: the H×W[×C] uint8 frame in ``color_encoding``;
    chroma: the model's colour rule ("visible" or "denoised"); net_size: (h, w) the graph ran at (sets the
    colour block); encoding: the output's channel order (rgb8 or bgr8).
    The last steps run in 8 bits (OpenCV's YCrCb -> RGB): a level or two from the float graph.
    """
    if encoding not in FUSED_ENCODINGS:
        raise ValueError(f"the fused image is produced as {' or '.join(FUSED_ENCODINGS)}, not '{encoding}'")
    if chroma not in ("visible", "denoised"):
        raise ValueError(f"chroma must be 'visible' or 'denoised', got {chroma!r}")
    rgb8 = to_rgb8(color, color_encoding)
    height, width = rgb8.shape[:2]
    vis_y8 = cv2.cvtColor(rgb8, cv2.COLOR_RGB2GRAY)
    fused_y = fuse_luminance(coefficients, thermal, vis_y8)
    if chroma == "denoised":
        # block means over the share of the view a CHROMA_BLOCK-pixel block has at the network size;
        # Cb/Cr are linear in RGB, so their block means are the Cb/Cr of the block-mean colour
        small = (math.ceil(net_size[1] / CHROMA_BLOCK), math.ceil(net_size[0] / CHROMA_BLOCK))
        rgb_small = cv2.resize(rgb8, small, interpolation=cv2.INTER_AREA).astype(np.float32)
        vis_small = cv2.cvtColor(rgb_small, cv2.COLOR_RGB2GRAY) / np.float32(255.0)  # Y is linear in RGB too
        fused_small = cv2.resize(fused_y, small, interpolation=cv2.INTER_AREA)
        trust = np.minimum(vis_small / np.maximum(fused_small, np.float32(1e-3)), 1.0)
        offset = _crcb_offset(rgb_small) * trust[:, :, None]
        cr8, cb8 = (cv2.resize(cv2.convertScaleAbs(plane, alpha=255.0, beta=128.0), (width, height),
                               interpolation=cv2.INTER_LINEAR) for plane in cv2.split(offset))
    else:
        cr8, cb8 = cv2.split(cv2.convertScaleAbs(_crcb_offset(rgb8.astype(np.float32)), alpha=255.0, beta=128.0))
    ycrcb = cv2.merge([cv2.convertScaleAbs(fused_y, alpha=255.0), cr8, cb8])
    return cv2.cvtColor(ycrcb, cv2.COLOR_YCrCb2BGR if encoding == "bgr8" else cv2.COLOR_YCrCb2RGB)


def _crcb_offset(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) float32 RGB 0..255 -> (H, W, 2) float32 (Cr - 0.5, Cb - 0.5) in 0..1 units (as
    model.rgb_to_ycbcr)."""
    matrix = np.array([[(1 - 0.299) * 0.713, -0.587 * 0.713, -0.114 * 0.713],
                       [-0.299 * 0.564, -0.587 * 0.564, (1 - 0.114) * 0.564]], dtype=np.float32) / 255.0
    return cv2.transform(rgb, matrix)
