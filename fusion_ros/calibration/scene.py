"""Thermal -> RGB homography from scene content, summed over many frames of a recording.

Thermal and visible images share object outlines but not their brightness, contrast or even the sign of an
edge (a warm car is bright in thermal and may be dark in RGB). Both are therefore compared through the
orientation of their gradients: the doubled angle (cos 2θ, sin 2θ), blind to polarity, weighted by
|∇|² / (|∇|² + ε²) so flat, noisy areas count little (a normalised gradient field). The match of a
homography H (thermal pixel -> RGB pixel) is the cosine between the thermal features warped by H and the RGB
features, summed over all frames: one homography explains every frame, while the clutter that is only in
one modality does not line up from frame to frame.

1. Search: every similarity (scale over the ``fov_ratio`` prior, rotation, every translation by FFT
   correlation) on a coarse grid, for all frames, for each half of the frames on its own, and for a null:
   the same frames with the RGB mirrored left-right (a road scene that no longer corresponds).
2. Refinement: inverse-compositional Gauss-Newton on the summed feature difference, similarity -> affine
   -> full homography, coarse to fine, from the best search candidates.
3. Checks (``SceneCalibration``): the match must clearly beat the null, the two halves of the recording,
   fitted on their own from their own search, must put the thermal corners at the same RGB pixels, and
   most frames must agree on their own. Otherwise ``CalibrationRefused`` says why: a confident wrong
   homography is worse than none.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import cv2
import numpy as np

from ..preprocess import resize_homography

EDGE_FLOOR = 2.0  # ε of the normalised gradient field, in units of the frame's median gradient
FEATURE_SIGMA = 1.0  # Gaussian blur (working pixels) before the gradient
MASK_MARGIN = 5  # working pixels dropped inside the thermal frame's border (blur + gradient stencil)
SEARCH_WIDTH = 160  # RGB width (pixels) of the coarse grid the similarity search runs on
FINEST_WIDTH = 400  # no finer working grid than this: precision comes from many frames, not from resolution
SCALE_STEP = 1.05  # ratio of neighbouring scales in the search
ROTATION_STEP_DEG = 2.0
SEARCH_CANDIDATES = 2  # best distinct search results refined per frame set
ROBUST = 2.0  # Cauchy weights, in units of the RMS residual: clutter seen by one camera only pulls little
MIN_GAIN = 0.02  # floor of the fitted thermal-to-RGB feature gain (see refine)
DAMPING = 0.1  # Levenberg-Marquardt damping of the Gauss-Newton steps
MIN_STEP = 1.0 / 16  # a step that worsens the match is halved down to this, then refinement stops
STRUCTURE_MIN = 3.2  # frames with less (see structure(); noise alone gives ~2) in either image are left out
MIN_OVERLAP = 0.4  # share of the smaller image that must overlap in the search


class CalibrationRefused(Exception):
    """The frames cannot tell the registration (the message says why); no homography is given.
    ``calibration``: the evidence gathered before refusing, when it got that far."""

    def __init__(self, message: str, calibration: "SceneCalibration | None" = None):
        super().__init__(message)
        self.calibration = calibration


@dataclass(frozen=True)
class SceneOptions:
    """What the search assumes and what the checks require.

    fov_ratio: thermal horizontal field of view / RGB horizontal field of view, searched range (1: the thermal
        frame spans the RGB frame's width). max_rotation_deg: the cameras' roll difference searched.
    min_frames: frames with structure in both images needed. max_halves_px: largest disagreement (RGB pixels at
        the thermal corners, for a 640 px wide RGB frame; scaled with the width) of the two halves' fits accepted. min_null_ratio: how much better than the
        mirrored null the match must be. min_agreeing: share of frames that must agree on their own.
        max_regional_px: largest median (over the regions of the view) of each region's own shift beyond the fit
        accepted (RGB pixels at 640 px width): where the cameras' images follow no one homography (lens distortion,
        parallax) the fit is a compromise that misplaces parts of the view, and its corners can be far off.
    """

    fov_ratio: tuple[float, float] = (0.5, 1.25)
    max_rotation_deg: float = 4.0
    min_frames: int = 6
    max_halves_px: float = 5.0
    min_null_ratio: float = 1.5
    min_agreeing: float = 0.5
    max_regional_px: float = 0.4


@dataclass
class SceneCalibration:
    """A homography found from scene content and the evidence for it."""

    homography: np.ndarray  # thermal pixel -> RGB pixel, H[2, 2] = 1
    thermal_wh: tuple[int, int]
    rgb_wh: tuple[int, int]
    halves_px: float  # largest corner distance (RGB pixels) among the fits of all frames and of each half
    frames: int  # frames used (with structure in both images)
    frames_agreeing: int  # frames whose own best alignment is within AGREE_PX of the joint one
    match: float  # feature cosine of the joint fit at the search grid
    null: float  # the same for the mirrored null
    regional_px: float  # median over the view's regions of each one's own best shift beyond the fit (RGB pixels)
    seconds: float

    @property
    def null_ratio(self) -> float:
        return self.match / max(self.null, 1e-6)

    @property
    def confidence(self) -> float:
        """The share of frames that agree with the joint fit on their own."""
        return self.frames_agreeing / self.frames

    def problems(self, options: SceneOptions) -> list[str]:
        """Why these results cannot be trusted (empty: they can)."""
        found = []
        need = max(options.min_frames, math.ceil(options.min_agreeing * self.frames))
        if self.frames_agreeing < need:
            found.append(f"only {self.frames_agreeing} of {self.frames} frames agree on their own with the joint fit "
                         f"(need {need}): the thermal and RGB frames do not show the same scenes, or too little of them")
        if self.null_ratio < options.min_null_ratio:
            found.append(f"the match is only {self.null_ratio:.1f}x what the same frames give with the RGB image "
                         f"mirrored (need {options.min_null_ratio}): no correspondence beyond generic road layout")
        limit = options.max_halves_px * self.rgb_wh[0] / 640.0
        if self.halves_px > limit:
            found.append(f"the two halves of the frames, fitted apart, put the thermal corners {self.halves_px:.1f} px "
                         f"apart (limit {limit:.1f}): too little structure, or structure only in part of the view; "
                         "record more varied scenes, or use a target")
        limit = options.max_regional_px * self.rgb_wh[0] / 640.0
        if self.regional_px > limit:
            found.append(f"the regions of the view, each aligned on its own, sit a median {self.regional_px:.1f} px "
                         f"from the best homography (limit {limit:.1f}): the cameras' images are not related by one "
                         "homography (lens distortion or parallax), so any homography misplaces parts of the view; "
                         "calibrate with a target, or accept the compromise with --max-regional")
        return found


AGREE_PX = 3.0  # a frame agrees when its own translation optimum is this close (RGB pixels)
AGREE_WINDOW = 12  # working pixels searched around the joint fit for a frame's own optimum
REGION_GRID = (3, 4)  # rows x columns of regions whose own shift beyond the fit is measured
REGION_RADIUS_PX = 6.0  # RGB pixels searched around the fit for a region's own optimum
REGION_MIN_VALID = 0.5  # share of a region inside the thermal frame for it to count


# ------------------------------------------------------------------------------------------- features
def luminance(rgb: np.ndarray) -> np.ndarray:
    """An RGB (or grey) uint8 frame as float32 luminance 0..1."""
    if rgb.ndim == 2:
        return rgb.astype(np.float32) / 255.0
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0


def unit_range(image: np.ndarray) -> np.ndarray:
    """A thermal frame of any dtype as float32 0..1 over its 0.5..99.5 percentiles (only edges matter here)."""
    image = image.astype(np.float32)
    low, high = np.percentile(image[::2, ::2], (0.5, 99.5))
    if high <= low:
        return np.zeros_like(image)
    return np.clip((image - low) / (high - low), 0.0, 1.0).astype(np.float32)


def orientation_features(image: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """(2, H, W): gradient orientation as the doubled angle (cos 2θ, sin 2θ), weighted by |∇|²/(|∇|² + ε²) with
    ε = EDGE_FLOOR x the frame's median gradient; zero outside ``valid``."""
    blurred = cv2.GaussianBlur(image, (0, 0), FEATURE_SIGMA)
    gx = cv2.Sobel(blurred, cv2.CV_32F, 1, 0, ksize=3, scale=0.125)
    gy = cv2.Sobel(blurred, cv2.CV_32F, 0, 1, ksize=3, scale=0.125)
    m2 = gx * gx + gy * gy
    sample = m2[::3, ::3] if valid is None else m2[valid][::5]
    eps2 = (EDGE_FLOOR ** 2) * float(np.median(sample)) + 1e-12 if sample.size else 1.0
    denom = m2 + eps2
    features = np.stack([(gx * gx - gy * gy) / denom, 2.0 * gx * gy / denom])
    if valid is not None:
        features *= valid
    return features


def structure(image: np.ndarray) -> float:
    """How much edge structure a frame has: the 95th percentile gradient over the median one (noise alone
    gives about 2; a scene with outlines far more)."""
    small = cv2.resize(image, (160, max(8, round(160 * image.shape[0] / image.shape[1]))),
                       interpolation=cv2.INTER_AREA)
    blurred = cv2.GaussianBlur(small, (0, 0), FEATURE_SIGMA)
    gx = cv2.Sobel(blurred, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(blurred, cv2.CV_32F, 0, 1, ksize=3)
    magnitude = np.sqrt(gx * gx + gy * gy)
    median = float(np.median(magnitude))
    return float(np.percentile(magnitude, 95)) / median if median > 0 else 0.0


# ------------------------------------------------------------------------------------------- geometry
def local_scale(h: np.ndarray, x: float, y: float) -> float:
    """Linear scale (square root of the Jacobian determinant) of a homography at (x, y)."""
    w = h[2, 0] * x + h[2, 1] * y + h[2, 2]
    u = h[0, 0] * x + h[0, 1] * y + h[0, 2]
    v = h[1, 0] * x + h[1, 1] * y + h[1, 2]
    jac = np.array([[h[0, 0] * w - u * h[2, 0], h[0, 1] * w - u * h[2, 1]],
                    [h[1, 0] * w - v * h[2, 0], h[1, 1] * w - v * h[2, 1]]]) / (w * w)
    return math.sqrt(abs(np.linalg.det(jac)))


def corners(size_wh: tuple[int, int]) -> np.ndarray:
    w, h = size_wh
    return np.array([[0.0, 0.0], [w - 1.0, 0.0], [w - 1.0, h - 1.0], [0.0, h - 1.0]])


def project(h: np.ndarray, points: np.ndarray) -> np.ndarray:
    mapped = np.c_[points, np.ones(len(points))] @ h.T
    return mapped[:, :2] / mapped[:, 2:3]


def corner_distance(a: np.ndarray, b: np.ndarray, thermal_wh: tuple[int, int]) -> float:
    """Largest distance (RGB pixels) between where two thermal -> RGB homographies put the thermal corners."""
    c = corners(thermal_wh)
    return float(np.linalg.norm(project(a, c) - project(b, c), axis=1).max())


def _normalised(h: np.ndarray) -> np.ndarray:
    return h / h[2, 2]


# ---------------------------------------------------------------------------------------- image stacks
def _erode(mask: np.ndarray, pixels: int) -> np.ndarray:
    kernel = np.ones((2 * pixels + 1, 2 * pixels + 1), np.uint8)
    return cv2.erode(mask, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0)


class ThermalStack:
    """The thermal frames at successive halvings (area averaging), warped onto working grids without aliasing."""

    def __init__(self, frames: list[np.ndarray]):
        self.size_wh = (frames[0].shape[1], frames[0].shape[0])
        self.levels = [frames]
        self.to_level = [np.eye(3)]  # full-resolution pixel -> level pixel
        while min(self.levels[-1][0].shape) > 32:
            h, w = self.levels[-1][0].shape
            small = [cv2.resize(f, ((w + 1) // 2, (h + 1) // 2), interpolation=cv2.INTER_AREA) for f in self.levels[-1]]
            self.to_level.append(resize_homography(frames[0].shape, small[0].shape))
            self.levels.append(small)

    def features(self, h_work: np.ndarray, size_wh: tuple[int, int], frames) -> tuple[np.ndarray, np.ndarray]:
        """Features (F, 2, h, w) of ``frames`` warped onto a working grid of ``size_wh`` by ``h_work`` (thermal
        pixel -> working pixel), and the mask (h, w) of working pixels inside the thermal frame."""
        centre = ((self.size_wh[0] - 1) / 2.0, (self.size_wh[1] - 1) / 2.0)
        shrink = local_scale(h_work, *centre)
        k = 0
        while k + 1 < len(self.levels) and shrink * 2 ** (k + 1) <= 1.0 + 1e-6:
            k += 1
        work_to_level = self.to_level[k] @ np.linalg.inv(h_work)
        level = self.levels[k]
        inside = cv2.warpPerspective(np.ones_like(level[0], dtype=np.uint8), work_to_level, size_wh,
                                     flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP, borderValue=0)
        valid = _erode(inside, MASK_MARGIN).astype(bool)
        out = np.empty((len(frames), 2, size_wh[1], size_wh[0]), np.float32)
        for i, f in enumerate(frames):
            warped = cv2.warpPerspective(level[f], work_to_level, size_wh, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                         borderMode=cv2.BORDER_REPLICATE)
            out[i] = orientation_features(warped, valid)
        return out, valid


@dataclass
class RgbLevel:
    """The RGB frames on one working grid: features, their gradients and the summed structure tensor."""

    scale: float  # working pixel per RGB pixel
    size_wh: tuple[int, int]
    to_work: np.ndarray  # RGB pixel -> working pixel
    features: np.ndarray  # (F, 2, h, w)
    grad_x: np.ndarray  # (F, 2, h, w)
    grad_y: np.ndarray

    @classmethod
    def build(cls, grays: list[np.ndarray], scale: float) -> "RgbLevel":
        h0, w0 = grays[0].shape
        w, h = max(16, round(w0 * scale)), max(16, round(h0 * scale))
        features = np.stack([orientation_features(cv2.resize(g, (w, h), interpolation=cv2.INTER_AREA)
                                                  if (w, h) != (w0, h0) else g) for g in grays])
        grad_x, grad_y = np.empty_like(features), np.empty_like(features)
        for f in range(features.shape[0]):
            for c in range(2):
                grad_x[f, c] = cv2.Sobel(features[f, c], cv2.CV_32F, 1, 0, ksize=3, scale=0.125)
                grad_y[f, c] = cv2.Sobel(features[f, c], cv2.CV_32F, 0, 1, ksize=3, scale=0.125)
        return cls(scale, (w, h), resize_homography((h0, w0), (h, w)), features, grad_x, grad_y)


def cosine(thermal: np.ndarray, rgb: np.ndarray, valid: np.ndarray) -> float:
    """Cosine between thermal and RGB features (F, 2, h, w) over the valid pixels."""
    rgb = rgb * valid
    num = float(np.einsum("fchw,fchw->", thermal, rgb))
    return num / math.sqrt(float(np.einsum("fchw,fchw->", thermal, thermal)) * float(np.einsum("fchw,fchw->", rgb, rgb))
                           + 1e-20)


# ------------------------------------------------------------------------------------------ refinement
def _basis(kind: str) -> np.ndarray:
    """Columns: the motion's parameters in terms of the homography's 8 (normalised coordinates)."""
    if kind == "translation":
        basis = np.zeros((8, 2))
        basis[2, 0] = basis[5, 1] = 1.0
    elif kind == "similarity":
        basis = np.zeros((8, 4))
        basis[0, 0] = basis[4, 0] = 1.0
        basis[1, 1], basis[3, 1] = -1.0, 1.0
        basis[2, 2] = basis[5, 3] = 1.0
    elif kind == "affine":
        basis = np.eye(8)[:, :6]
    else:
        basis = np.eye(8)
    return basis


def refine(thermal: ThermalStack, rgb: RgbLevel, frames: list[int], h_init: np.ndarray, kind: str,
           iterations: int = 20, tolerance: float = 0.02) -> tuple[np.ndarray, float]:
    """Inverse-compositional Gauss-Newton on the feature difference summed over ``frames`` (RGB features are
    the template, thermal ones are warped), for a ``kind`` of motion, with Cauchy weights (scale ROBUST) so
    clutter seen by one camera only pulls little. ``h_init``: thermal pixel -> RGB pixel. Returns (H, cosine
    at H). Stops when no thermal corner moves more than ``tolerance`` working pixels."""
    w, h = rgb.size_wh
    cx, cy, radius = (w - 1) / 2.0, (h - 1) / 2.0, max(w, h) / 2.0
    count = len(frames)
    grad_x = rgb.grad_x[frames].reshape(count, 2, -1)
    grad_y = rgb.grad_y[frames].reshape(count, 2, -1)
    # only pixels where some RGB feature changes can move the fit: the rest are left out of the sums
    energy = np.einsum("fcn,fcn->n", grad_x, grad_x) + np.einsum("fcn,fcn->n", grad_y, grad_y)
    pixels = np.flatnonzero(energy > 0.05 * energy.mean())
    grad_x, grad_y = grad_x[:, :, pixels], grad_y[:, :, pixels]
    template = rgb.features[frames].reshape(count, 2, -1)[:, :, pixels]
    px, py = (pixels % w - cx) / radius, (pixels // w - cy) / radius
    zero, one = np.zeros_like(px), np.ones_like(px)
    basis = _basis(kind)
    jac_x = np.stack([px, py, one, zero, zero, zero, -px * px, -px * py], 1) @ basis * radius
    jac_y = np.stack([zero, zero, zero, px, py, one, -px * py, -py * py], 1) @ basis * radius
    normalise = np.array([[1 / radius, 0, -cx / radius], [0, 1 / radius, -cy / radius], [0, 0, 1.0]])
    thermal_corners = corners(thermal.size_wh)

    def step_to(h_from, p, fraction):
        increment = np.array([[1 + p[0], p[1], p[2]], [p[3], 1 + p[4], p[5]], [p[6], p[7], 1.0]])
        increment = np.linalg.inv(normalise) @ (np.eye(3) + fraction * (increment - np.eye(3))) @ normalise
        return _normalised(np.linalg.inv(np.linalg.inv(h_from) @ np.linalg.inv(increment)))

    h_work = rgb.to_work @ h_init
    best = None  # (cosine, h_work, step p) of the last accepted estimate
    fraction = 1.0
    for _ in range(iterations):
        warped, valid = thermal.features(h_work, rgb.size_wh, frames)
        inside = valid.ravel()[pixels]
        warped = warped.reshape(count, 2, -1)[:, :, pixels] * inside
        masked = template * inside
        score = float(np.einsum("fcn,fcn->", warped, masked)) / math.sqrt(
            float(np.einsum("fcn,fcn->", warped, warped)) * float(np.einsum("fcn,fcn->", masked, masked)) + 1e-20)
        if best is not None and score < best[0]:
            # the step made the match worse: retry a shorter one from the last accepted estimate
            fraction /= 2.0
            if fraction < MIN_STEP:
                h_work = best[1]
                break
            h_work = step_to(best[1], best[2], fraction)
            continue
        # thermal features are a weak copy of the RGB ones (gain < 1): fit the gain, or every step falls short
        gain = max(float(np.einsum("fcn,fcn->", warped, masked)) / max(float(np.einsum("fcn,fcn->", masked, masked)),
                                                                          1e-12), MIN_GAIN)
        error = warped - gain * masked
        spread = float(np.einsum("fcn,fcn->", error, error)) / max(float(inside.sum()) * count, 1.0)
        weight = 1.0 / (1.0 + np.einsum("fcn,fcn->fn", error, error) / (ROBUST ** 2 * spread + 1e-12))
        resid = error / gain
        wx, wy = grad_x * weight[:, None], grad_y * weight[:, None]
        axx = np.einsum("fcn,fcn->n", wx, grad_x) * inside
        axy = np.einsum("fcn,fcn->n", wx, grad_y) * inside
        ayy = np.einsum("fcn,fcn->n", wy, grad_y) * inside
        hess = (jac_x.T @ (axx[:, None] * jac_x) + jac_x.T @ (axy[:, None] * jac_y)
                + jac_y.T @ (axy[:, None] * jac_x) + jac_y.T @ (ayy[:, None] * jac_y))
        grad = jac_x.T @ np.einsum("fcn,fcn->n", wx, resid) + jac_y.T @ np.einsum("fcn,fcn->n", wy, resid)
        damping = DAMPING * np.diag(np.diag(hess)) + 1e-9 * np.trace(hess) * np.eye(len(hess))
        p = basis @ np.linalg.solve(hess + damping, grad)
        best = (score, h_work, p)
        fraction = min(1.0, fraction * 2.0)
        new_h_work = step_to(h_work, p, fraction)
        move = np.abs(project(new_h_work, thermal_corners) - project(h_work, thermal_corners)).max()
        if move < tolerance:
            break
        h_work = new_h_work
    warped, valid = thermal.features(h_work, rgb.size_wh, frames)
    return _normalised(np.linalg.inv(rgb.to_work) @ h_work), cosine(warped, rgb.features[frames], valid)


# --------------------------------------------------------------------------------------- global search
@dataclass
class _Job:
    name: str
    frames: list[int]
    rgb: RgbLevel


def _spectra(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """OpenCV DFTs (packed, real: ..., fh, fw) of real images (..., h, w), zero-padded to ``size``."""
    fh, fw = size
    flat = images.reshape(-1, *images.shape[-2:])
    out = np.empty((len(flat), fh, fw), np.float32)
    padded = np.zeros((fh, fw), np.float32)
    for i, image in enumerate(flat):
        padded[: image.shape[0], : image.shape[1]] = image
        out[i] = cv2.dft(padded)
    return out.reshape(*images.shape[:-2], fh, fw)


def _correlation(rgb_spectra, thermal_spectra) -> np.ndarray:
    """sum_i corr(thermal_i, rgb_i)(t) = sum_i sum_x thermal_i(x) rgb_i(x + t), from packed spectra."""
    total = None
    for rgb, thermal in zip(rgb_spectra, thermal_spectra):
        product = cv2.mulSpectrums(rgb, thermal, 0, conjB=True)
        total = product if total is None else cv2.add(total, product)
    return cv2.idft(total, flags=cv2.DFT_REAL_OUTPUT | cv2.DFT_SCALE)


def similarity_search(thermal: ThermalStack, jobs: list[_Job], scales, angles_deg) -> dict[str, list[tuple[float, np.ndarray]]]:
    """Every similarity: ``scales`` (thermal pixel size in RGB pixels) x ``angles_deg`` x every translation (FFT
    correlation), on the jobs' grid (all jobs share one). Per job: [(cosine, H thermal -> RGB)], best first,
    the best translation of each scale and angle."""
    level = jobs[0].rgb
    w, h = level.size_wh
    tw, th = thermal.size_wh
    centre = np.array([(tw - 1) / 2.0, (th - 1) / 2.0])
    frame_corners = corners(thermal.size_wh) - centre
    boxes = []
    for scale in scales:
        for angle in angles_deg:
            a = math.radians(angle)
            linear = scale * level.scale * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
            turned = frame_corners @ linear.T
            bw = int(math.ceil(np.ptp(turned[:, 0]))) + 3
            bh = int(math.ceil(np.ptp(turned[:, 1]))) + 3
            box = np.eye(3)
            box[:2, :2] = linear
            box[:2, 2] = np.array([(bw - 1) / 2.0, (bh - 1) / 2.0]) - linear @ centre
            boxes.append((box, bw, bh))
    size = (cv2.getOptimalDFTSize(h + max(b[2] for b in boxes)), cv2.getOptimalDFTSize(w + max(b[1] for b in boxes)))
    fh, fw = size
    all_frames = sorted(set().union(*(job.frames for job in jobs)))
    row = {f: i for i, f in enumerate(all_frames)}
    spectra = {}
    for job in jobs:
        if id(job.rgb) not in spectra:
            spectra[id(job.rgb)] = _spectra(job.rgb.features[all_frames], size)
    energy_rgb = {job.name: _spectra((job.rgb.features[job.frames] ** 2).sum((0, 1)), size) for job in jobs}
    rgb_area = _spectra(np.ones((h, w), np.float32), size)
    found: dict[str, list[tuple[float, np.ndarray]]] = {job.name: [] for job in jobs}
    for box, bw, bh in boxes:
        feats, valid = thermal.features(box, (bw, bh), all_frames)
        spec = _spectra(feats, size)
        valid_spec = _spectra(valid.astype(np.float32), size)
        overlap = _correlation([rgb_area], [valid_spec])
        too_small = overlap < MIN_OVERLAP * min(float(valid.sum()), float(w * h))
        thermal_energy = (feats ** 2).sum(1)
        for job in jobs:
            rows = [row[f] for f in job.frames]
            num = _correlation(spectra[id(job.rgb)][rows].reshape(-1, fh, fw), spec[rows].reshape(-1, fh, fw))
            e_thermal = _correlation([rgb_area], [_spectra(thermal_energy[rows].sum(0), size)])
            e_rgb = _correlation([energy_rgb[job.name]], [valid_spec])
            score = num / np.sqrt(np.maximum(e_thermal * e_rgb, 1e-12))
            score[too_small] = -1.0
            iy, ix = divmod(int(np.argmax(score)), fw)
            shift = np.eye(3)
            shift[:2, 2] = [ix if ix <= fw - bw else ix - fw, iy if iy <= fh - bh else iy - fh]
            found[job.name].append((float(score[iy, ix]), _normalised(np.linalg.inv(level.to_work) @ shift @ box)))
    for name in found:
        found[name].sort(key=lambda item: -item[0])
    return found


def _distinct(candidates, thermal_wh, count: int, min_px: float) -> list[np.ndarray]:
    picked: list[np.ndarray] = []
    for _, h in candidates:
        if all(corner_distance(h, other, thermal_wh) > min_px for other in picked):
            picked.append(h)
            if len(picked) == count:
                break
    return picked


# ---------------------------------------------------------------------------------------------- driver
def _refinement_scales(rgb_width: int, search_scale: float, thermal_scale: float) -> list[float]:
    """Working scales after the search grid: doubling up to the finest useful one, which is no finer than
    the thermal frame's own pixels (``thermal_scale``: its pixel size in RGB pixels), the RGB frame, or
    FINEST_WIDTH. At least one, for the full homography."""
    finest = min(1.0, 1.0 / max(thermal_scale, 1e-6), FINEST_WIDTH / rgb_width)
    scales = []
    current = search_scale
    while current < finest * 0.99:
        current = min(current * 2.0, finest)
        scales.append(current)
    return scales or [search_scale]


def _fit(thermal: ThermalStack, search: list[tuple[float, np.ndarray]], coarse: RgbLevel, finer: list[RgbLevel],
         frames: list[int]) -> tuple[np.ndarray, float]:
    """From the best distinct search results: similarity then affine on the search grid, the best one then a
    full homography on each finer grid. Returns (H, cosine on the search grid after the affine fit)."""
    best = None
    for h in _distinct(search, thermal.size_wh, SEARCH_CANDIDATES, min_px=4.0 / coarse.scale):
        h, _ = refine(thermal, coarse, frames, h, "similarity")
        h, score = refine(thermal, coarse, frames, h, "affine")
        if best is None or score > best[1]:
            best = (h, score)
    h, score = best
    for level in finer:
        h, _ = refine(thermal, level, frames, h, "projective", iterations=30)
    return h, score


def calibrate_scene(thermal_frames: list[np.ndarray], rgb_frames: list[np.ndarray],
                    options: SceneOptions = SceneOptions()) -> SceneCalibration:
    """The thermal -> RGB homography of a camera pair from registered-in-time frame pairs (thermal frames of
    one size, any dtype; RGB frames uint8 H x W x 3 of one size), or CalibrationRefused."""
    start = time.perf_counter()
    if len(thermal_frames) != len(rgb_frames):
        raise ValueError(f"{len(thermal_frames)} thermal frames but {len(rgb_frames)} RGB frames")
    thermal_units = [unit_range(t) for t in thermal_frames]
    grays = [luminance(c) for c in rgb_frames]
    keep = [i for i in range(len(grays)) if structure(thermal_units[i]) > STRUCTURE_MIN and structure(grays[i]) > STRUCTURE_MIN]
    if len(keep) < options.min_frames:
        raise CalibrationRefused(
            f"only {len(keep)} of {len(grays)} frame pairs show edges in both images (need {options.min_frames}): "
            "record a drive past buildings, vehicles, poles (not open sky or fog)")
    thermal = ThermalStack([thermal_units[i] for i in keep])
    grays = [grays[i] for i in keep]
    rgb_w = grays[0].shape[1]
    coarse = RgbLevel.build(grays, min(1.0, SEARCH_WIDTH / rgb_w))
    mirrored = RgbLevel.build([np.ascontiguousarray(g[:, ::-1]) for g in grays], coarse.scale)
    frames = list(range(len(grays)))
    half = len(frames) // 2
    jobs = [_Job("all", frames, coarse), _Job("first", frames[:half], coarse),
            _Job("second", frames[half:], coarse), _Job("null", frames, mirrored)]
    base = rgb_w / thermal.size_wh[0]
    low, high = options.fov_ratio
    count = max(1, int(math.ceil(math.log(high / low) / math.log(SCALE_STEP)))) + 1
    scales = base * np.geomspace(low, high, count)
    steps = int(math.floor(options.max_rotation_deg / ROTATION_STEP_DEG))
    angles = ROTATION_STEP_DEG * np.arange(-steps, steps + 1)
    search = similarity_search(thermal, jobs, scales, angles)
    thermal_scale = local_scale(search["all"][0][1], (thermal.size_wh[0] - 1) / 2, (thermal.size_wh[1] - 1) / 2)
    finer = [RgbLevel.build(grays, s) for s in _refinement_scales(rgb_w, coarse.scale, thermal_scale)]
    fits = {}
    for name, subset in (("all", frames), ("first", frames[:half]), ("second", frames[half:])):
        fits[name] = _fit(thermal, search[name], coarse, finer, subset)
    null_h = _distinct(search["null"], thermal.size_wh, 1, 0.0)[0]
    null_h, _ = refine(thermal, mirrored, frames, null_h, "similarity")
    _, null_score = refine(thermal, mirrored, frames, null_h, "affine")
    homography, match = fits["all"]
    halves = max(corner_distance(fits[a][0], fits[b][0], thermal.size_wh)
                 for a, b in (("first", "second"), ("all", "first"), ("all", "second")))
    agreeing = _agreeing_frames(thermal, finer[-1], homography, frames)
    regional = _regional_shift(thermal, finer[-1], homography, frames)
    result = SceneCalibration(homography, thermal.size_wh, (rgb_w, grays[0].shape[0]), halves, len(frames), agreeing, match, null_score,
                              regional, time.perf_counter() - start)
    problems = result.problems(options)
    if problems:
        raise CalibrationRefused("; ".join(problems), result)
    return result


def _agreeing_frames(thermal: ThermalStack, level: RgbLevel, h: np.ndarray, frames: list[int]) -> int:
    """Frames whose own best translation of the fitted thermal features (FFT correlation within
    AGREE_WINDOW working pixels) is within AGREE_PX of the joint fit. A frame whose thermal does not
    correspond peaks anywhere in the window."""
    warped, valid = thermal.features(level.to_work @ h, level.size_wh, frames)
    w, h_ = level.size_wh
    size = (cv2.getOptimalDFTSize(h_ + AGREE_WINDOW), cv2.getOptimalDFTSize(w + AGREE_WINDOW))
    thermal_spectra = _spectra(warped, size)
    rgb_spectra = _spectra(level.features[frames] * valid, size)
    corr = np.stack([_correlation(rgb_spectra[i], thermal_spectra[i]) for i in range(len(frames))])
    shifts = np.arange(-AGREE_WINDOW, AGREE_WINDOW + 1)
    window = corr[:, shifts[:, None] % size[0], shifts[None, :] % size[1]]
    agree = 0
    for f in range(len(frames)):
        iy, ix = np.unravel_index(int(np.argmax(window[f])), window[f].shape)
        if math.hypot(shifts[ix], shifts[iy]) / level.scale <= AGREE_PX:
            agree += 1
    return agree


def _regional_shift(thermal: ThermalStack, level: RgbLevel, h: np.ndarray, frames: list[int]) -> float:
    """The median over a REGION_GRID of regions of how far (RGB pixels) each region's own best shift of the
    fitted thermal features, summed over all frames, lies from the fit (sub-pixel, by a parabola through the
    peak). About 0.01-0.07 px on frames rendered from the RGB ones; 1-2 px on msrs_det pairs, whose
    registration no homography follows (docs/calibration.md)."""
    warped, valid = thermal.features(level.to_work @ h, level.size_wh, frames)
    rgb = level.features[frames] * valid
    radius = max(1, math.ceil(REGION_RADIUS_PX * level.scale))
    width, height = level.size_wh
    ys = np.linspace(radius, height - radius, REGION_GRID[0] + 1).astype(int)
    xs = np.linspace(radius, width - radius, REGION_GRID[1] + 1).astype(int)
    shifts = []
    for y0, y1 in zip(ys[:-1], ys[1:]):
        for x0, x1 in zip(xs[:-1], xs[1:]):
            if valid[y0:y1, x0:x1].mean() < REGION_MIN_VALID:
                continue
            score = np.zeros((2 * radius + 1, 2 * radius + 1), np.float64)
            for f in range(len(frames)):
                for c in range(2):
                    score += cv2.matchTemplate(rgb[f, c, y0 - radius:y1 + radius, x0 - radius:x1 + radius],
                                               np.ascontiguousarray(warped[f, c, y0:y1, x0:x1]), cv2.TM_CCORR)
            iy, ix = np.unravel_index(int(np.argmax(score)), score.shape)
            dy = iy + _parabola_offset(score[:, ix], iy) - radius
            dx = ix + _parabola_offset(score[iy], ix) - radius
            shifts.append(math.hypot(dx, dy) / level.scale)
    return float(np.median(shifts)) if shifts else 0.0


def _parabola_offset(line: np.ndarray, peak: int) -> float:
    """Sub-sample offset of the peak of ``line`` from the parabola through it and its two neighbours (0 at an
    end of the line)."""
    if peak == 0 or peak == len(line) - 1:
        return 0.0
    before, at, after = line[peak - 1:peak + 2]
    curvature = before - 2.0 * at + after
    return float(0.5 * (before - after) / curvature) if curvature < 0 else 0.0
