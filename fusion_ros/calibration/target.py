"""Thermal -> RGB homography from a calibration target both cameras see: a heated checkerboard or circle grid.

Each frame where both images show the whole target gives its points in thermal and RGB pixels (sub-pixel
corners, or circle centres). One homography is fitted to all points of all frames (RANSAC first, so a
mis-detected frame cannot drag it, then least squares over the inliers). Its evidence: the RMS reprojection
error, and how far apart the fits of the two halves of the frames put the thermal corners (a target held
in one spot says little about the far corners; the halves tell).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import cv2
import numpy as np

from .scene import CalibrationRefused, corner_distance

TARGET_KINDS = ("chessboard", "circles")
RANSAC_PX = 3.0  # a point further than this from the RANSAC fit (RGB pixels) is not used
MAX_RMS_PX = 1.5  # a fit whose inliers miss by more than this is refused: wrong pattern size, blur, motion
MAX_HALVES_PX = 2.0
SUBPIX_WINDOW = 4  # half-size (pixels) of the corner refinement window
SUBPIX_CRITERIA = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 50, 0.001)
MIN_COVERAGE = 0.25  # the target's points, over all frames, must span this share of the thermal frame


@dataclass(frozen=True)
class Target:
    """A planar pattern: ``chessboard`` with cols x rows inner corners, or a symmetric ``circles`` grid of
    cols x rows circles."""

    kind: str
    cols: int
    rows: int

    @classmethod
    def parse(cls, text: str) -> "Target":
        """``chessboard:9x6`` or ``circles:4x11``."""
        match = re.fullmatch(r"\s*(\w+)\s*:\s*(\d+)\s*x\s*(\d+)\s*", text or "")
        if not match or match.group(1) not in TARGET_KINDS:
            raise ValueError(f"target must look like chessboard:9x6 or circles:4x11 ({' or '.join(TARGET_KINDS)}: "
                             f"columns x rows of inner corners / circles), got {text!r}")
        kind, cols, rows = match.group(1), int(match.group(2)), int(match.group(3))
        if min(cols, rows) < 2 or (kind == "chessboard" and min(cols, rows) < 3):
            raise ValueError(f"target {text!r} is too small: a {kind} needs at least "
                             f"{3 if kind == 'chessboard' else 2} points per side")
        if cols == rows:
            raise ValueError(f"target {text!r} is square: its point order is ambiguous under rotation; use a "
                             "pattern with different column and row counts")
        return cls(kind, cols, rows)

    def __str__(self) -> str:
        return f"{self.kind}:{self.cols}x{self.rows}"


def _to_gray8(image: np.ndarray) -> np.ndarray:
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    if image.dtype == np.uint8:
        return image
    image = image.astype(np.float32)
    low, high = np.percentile(image, (0.5, 99.5))
    scaled = np.clip((image - low) / max(high - low, 1e-6), 0.0, 1.0)
    return (scaled * 255.0 + 0.5).astype(np.uint8)


def _upright(points: np.ndarray, target: Target) -> np.ndarray:
    """The points in one order whatever the detector chose: rows of ``cols`` starting at the top-left. A
    detector may return the grid rotated by 180°; the cameras are mounted the same way up, so the first
    point is the one nearer the image's top-left."""
    grid = points.reshape(target.rows, target.cols, 2)
    first, last = grid[0, 0], grid[-1, -1]
    if (last - first).sum() < 0:
        grid = grid[::-1, ::-1]
    return grid.reshape(-1, 2)


def find_target(image: np.ndarray, target: Target) -> np.ndarray | None:
    """The target's points (N, 2) in pixel coordinates, or None. Both polarities are tried: a heated target
    can be dark-on-bright in one camera and bright-on-dark in the other."""
    gray = _to_gray8(image)
    size = (target.cols, target.rows)
    for candidate in (gray, 255 - gray):
        if target.kind == "chessboard":
            found, points = cv2.findChessboardCornersSB(
                candidate, size, flags=cv2.CALIB_CB_NORMALIZE_IMAGE | cv2.CALIB_CB_EXHAUSTIVE | cv2.CALIB_CB_ACCURACY)
        else:
            found, points = cv2.findCirclesGrid(candidate, size, flags=cv2.CALIB_CB_SYMMETRIC_GRID)
        if found and points is not None and len(points) == target.cols * target.rows:
            if target.kind == "chessboard":
                points = cv2.cornerSubPix(candidate, points.astype(np.float32), (SUBPIX_WINDOW, SUBPIX_WINDOW),
                                          (-1, -1), SUBPIX_CRITERIA)
            return _upright(points.reshape(-1, 2).astype(np.float64), target)
    return None


@dataclass
class TargetCalibration:
    homography: np.ndarray  # thermal pixel -> RGB pixel, H[2, 2] = 1
    thermal_wh: tuple[int, int]
    rms_px: float  # reprojection error of the used points (RGB pixels)
    halves_px: float | None  # the halves' fits at the thermal corners; None with fewer than 4 frames
    frames: int  # frames where both cameras showed the target
    points: int  # points used (RANSAC inliers)
    coverage: float  # share of the thermal frame inside the hull of all points


def _fit(thermal_points: np.ndarray, rgb_points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    h, inliers = cv2.findHomography(thermal_points, rgb_points, cv2.RANSAC, RANSAC_PX)
    if h is None:
        raise CalibrationRefused("the target's points fit no homography (are both cameras seeing the same board?)")
    keep = inliers.ravel().astype(bool)
    refined, _ = cv2.findHomography(thermal_points[keep], rgb_points[keep], 0)
    return refined / refined[2, 2], keep


def calibrate_target(thermal_frames: list[np.ndarray], rgb_frames: list[np.ndarray],
                     target: Target) -> TargetCalibration:
    """The homography from the target's points in every frame pair where both cameras show it, or
    CalibrationRefused naming what is missing."""
    pairs = []
    thermal_seen = rgb_seen = 0
    for thermal, rgb in zip(thermal_frames, rgb_frames):
        in_thermal = find_target(thermal, target)
        in_rgb = find_target(rgb, target)
        thermal_seen += in_thermal is not None
        rgb_seen += in_rgb is not None
        if in_thermal is not None and in_rgb is not None:
            pairs.append((in_thermal, in_rgb))
    if len(pairs) < 2:
        raise CalibrationRefused(
            f"the {target} target was found in {thermal_seen} thermal and {rgb_seen} RGB frames of "
            f"{len(thermal_frames)}, in both in {len(pairs)} (need 2, better 10 or more across the view): check the "
            "pattern size (inner corners for a chessboard) and that the target is heated and in focus")
    thermal_wh = (thermal_frames[0].shape[1], thermal_frames[0].shape[0])
    thermal_points = np.concatenate([p[0] for p in pairs])
    rgb_points = np.concatenate([p[1] for p in pairs])
    homography, keep = _fit(thermal_points, rgb_points)
    mapped = cv2.perspectiveTransform(thermal_points[keep][None], homography)[0]
    rms = float(np.sqrt(np.mean(np.sum((mapped - rgb_points[keep]) ** 2, axis=1))))
    if rms > MAX_RMS_PX:
        raise CalibrationRefused(f"the target's points miss the fitted homography by {rms:.2f} px RMS (limit "
                                 f"{MAX_RMS_PX}): blurred or moving target, or frames not taken at the same time")
    halves = None
    if len(pairs) >= 4:
        half = len(pairs) // 2
        fits = [_fit(np.concatenate([p[0] for p in part]), np.concatenate([p[1] for p in part]))[0]
                for part in (pairs[:half], pairs[half:])]
        halves = corner_distance(fits[0], fits[1], thermal_wh)
        if halves > MAX_HALVES_PX:
            raise CalibrationRefused(
                f"the two halves of the target frames disagree by {halves:.1f} px at the thermal corners (limit "
                f"{MAX_HALVES_PX}): show the target all over both views, near the corners too")
    hull = cv2.convexHull(thermal_points.astype(np.float32))
    coverage = float(cv2.contourArea(hull)) / float(thermal_wh[0] * thermal_wh[1])
    if coverage < MIN_COVERAGE:
        raise CalibrationRefused(
            f"the target's points span only {coverage:.0%} of the thermal frame (need {MIN_COVERAGE:.0%}): the "
            "homography would be extrapolated to the corners; move the target over the whole view")
    return TargetCalibration(homography, thermal_wh, rms, halves, len(pairs), int(keep.sum()), coverage)
