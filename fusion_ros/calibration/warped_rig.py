"""Known-answer rigs for testing calibration: registered thermal frames re-rendered as a misaligned camera.

A registered pair (thermal pixel-aligned with RGB) becomes a rig whose answer is known: the thermal camera
is given a random homography W of the RGB view (rotation, scale, shift, mild perspective, about the image
centre), sees the central ``view`` fraction of it (thermal lenses are usually narrower than RGB ones, and a
real camera has no fill), and may have a lower resolution. The true registration (warped-thermal pixel ->
RGB pixel) is then ``inverse(D · C · W)`` with C the crop and D the downscale.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..preprocess import resize_homography
from .scene import corners, project


@dataclass(frozen=True)
class WarpRange:
    """Half-widths of the random warp: rotation (degrees), relative scale, shift (pixels of the RGB frame),
    perspective (the projective terms, per pixel)."""

    rotation_deg: float = 3.0
    scale: float = 0.05
    shift: float = 30.0
    perspective: float = 5e-5


def random_warp(rng: np.random.Generator, size_wh: tuple[int, int], ranges: WarpRange = WarpRange()) -> np.ndarray:
    """A 3×3 homography original pixel -> warped pixel, drawn uniformly within ``ranges``, about the centre of an
    image of ``size_wh``."""
    angle = np.deg2rad(rng.uniform(-ranges.rotation_deg, ranges.rotation_deg))
    scale = 1.0 + rng.uniform(-ranges.scale, ranges.scale)
    core = np.eye(3)
    core[:2, :2] = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    core[:2, 2] = rng.uniform(-ranges.shift, ranges.shift, 2)
    core[2, :2] = rng.uniform(-ranges.perspective, ranges.perspective, 2)
    centre = np.array([(size_wh[0] - 1) / 2.0, (size_wh[1] - 1) / 2.0])
    to_centre, back = np.eye(3), np.eye(3)
    to_centre[:2, 2], back[:2, 2] = -centre, centre
    return back @ core @ to_centre


@dataclass
class WarpedRig:
    """A rig made from registered pairs: how its thermal frames are rendered and the true registration."""

    warp: np.ndarray  # original pixel -> warped-view pixel (W)
    render: np.ndarray  # original pixel -> output thermal pixel before any downscale (C · W)
    view_wh: tuple[int, int]  # the cropped view's size before the downscale
    thermal_wh: tuple[int, int]  # the output thermal size
    truth: np.ndarray  # output thermal pixel -> RGB pixel

    def thermal(self, registered_thermal: np.ndarray) -> np.ndarray:
        """The rig's thermal frame of a registered thermal frame (same dtype)."""
        view = cv2.warpPerspective(registered_thermal, self.render, self.view_wh, flags=cv2.INTER_LINEAR)
        if self.view_wh == self.thermal_wh:
            return view
        return cv2.resize(view, self.thermal_wh, interpolation=cv2.INTER_AREA)


def make_rig(rng: np.random.Generator, rgb_wh: tuple[int, int], view: float = 0.8,
             thermal_wh: tuple[int, int] | None = None, ranges: WarpRange = WarpRange(),
             tries: int = 100) -> WarpedRig:
    """A random rig over RGB frames of ``rgb_wh``: its thermal view is the central ``view`` fraction, warped,
    and resized to ``thermal_wh`` (default: the view's own size). Warps whose view would reach outside the
    registered frame are drawn again (no invented fill)."""
    width, height = rgb_wh
    view_wh = (int(round(width * view)), int(round(height * view)))
    crop = np.eye(3)
    crop[:2, 2] = [-(width - view_wh[0]) / 2.0, -(height - view_wh[1]) / 2.0]
    thermal_wh = tuple(thermal_wh) if thermal_wh else view_wh
    downscale = resize_homography(view_wh[::-1], thermal_wh[::-1])
    for _ in range(tries):
        warp = random_warp(rng, rgb_wh, ranges)
        render = crop @ warp
        seen = project(np.linalg.inv(render), corners(view_wh))
        if seen.min() >= 0 and seen[:, 0].max() <= width - 1 and seen[:, 1].max() <= height - 1:
            truth = np.linalg.inv(downscale @ render)
            return WarpedRig(warp, render, view_wh, thermal_wh, truth / truth[2, 2])
    raise ValueError(f"no warp within {ranges} keeps a {view:.0%} view inside a {width}x{height} frame")


def render_board(rng: np.random.Generator, size_wh: tuple[int, int], cols: int, rows: int,
                 kind: str = "chessboard", supersample: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """A target at a random pose in a frame of ``size_wh``, drawn twice as a registered pair: (thermal uint8,
    RGB uint8 H x W x 3). ``kind`` chessboard: ``cols`` x ``rows`` inner corners; circles: a symmetric grid of
    ``cols`` x ``rows`` dark circles. The thermal one is heated (the dark parts warm, so its polarity is
    inverted), blurrier and noisier, over a dim background."""
    width, height = size_wh
    square = 16 * supersample
    if kind == "chessboard":
        board = np.kron((np.indices((rows + 1, cols + 1)).sum(0) % 2).astype(np.float32),
                        np.ones((square, square), np.float32))
    else:
        board = np.ones(((rows + 1) * square, (cols + 1) * square), np.float32)
        for r in range(rows):
            for c in range(cols):
                cv2.circle(board, ((c + 1) * square, (r + 1) * square), square // 3, 0.0, -1, cv2.LINE_AA)
    margin = square
    board = cv2.copyMakeBorder(board, margin, margin, margin, margin, cv2.BORDER_CONSTANT, value=1.0)
    bh, bw = board.shape
    span = rng.uniform(0.35, 0.6) * width * supersample
    cx, cy = rng.uniform(0.25, 0.75) * width * supersample, rng.uniform(0.25, 0.75) * height * supersample
    half = np.array([span / 2, span / 2 * bh / bw])
    tilt = rng.uniform(-0.15, 0.15, (4, 2)) * half
    target = np.array([[cx - half[0], cy - half[1]], [cx + half[0], cy - half[1]],
                       [cx + half[0], cy + half[1]], [cx - half[0], cy + half[1]]]) + tilt
    source = np.array([[0, 0], [bw, 0], [bw, bh], [0, bh]], np.float32)
    pose = cv2.getPerspectiveTransform(source, target.astype(np.float32))
    big = (width * supersample, height * supersample)
    inside = cv2.warpPerspective(np.ones_like(board), pose, big, flags=cv2.INTER_NEAREST)
    drawn = cv2.warpPerspective(board, pose, big, flags=cv2.INTER_LINEAR)
    drawn = cv2.resize(drawn, size_wh, interpolation=cv2.INTER_AREA)
    inside = cv2.resize(inside, size_wh, interpolation=cv2.INTER_AREA)
    background = cv2.GaussianBlur(rng.uniform(0, 1, (height // 8 + 1, width // 8 + 1)).astype(np.float32), (0, 0), 1)
    background = cv2.resize(background, size_wh, interpolation=cv2.INTER_LINEAR)
    rgb_gray = inside * (0.1 + 0.8 * drawn) + (1 - inside) * (0.2 + 0.5 * background)
    rgb_gray += rng.normal(0, 0.01, rgb_gray.shape)
    rgb = np.repeat(np.clip(rgb_gray * 255 + 0.5, 0, 255).astype(np.uint8)[..., None], 3, axis=2)
    thermal = inside * (0.75 - 0.45 * drawn) + (1 - inside) * (0.2 + 0.15 * background)
    thermal = cv2.GaussianBlur(thermal, (0, 0), 1.2) + rng.normal(0, 0.02, thermal.shape)
    return np.clip(thermal * 255 + 0.5, 0, 255).astype(np.uint8), rgb


def thermal_standin(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A thermal-looking uint8 frame rendered from an RGB one, so it is registered exactly (real pairs carry
    their own registration error): polarity inverted, gamma, a smooth random gain field, blur and noise. It
    measures a calibration's own precision on real scene structure."""
    height, width = rgb.shape[:2]
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    gain = cv2.resize(rng.uniform(0.5, 1.5, (4, 5)).astype(np.float32), (width, height), interpolation=cv2.INTER_CUBIC)
    thermal = cv2.GaussianBlur((1.0 - gray) ** 1.5 * gain, (0, 0), 1.5) + rng.normal(0, 0.02, (height, width))
    return np.clip(thermal * 200.0, 0, 255).astype(np.uint8)
