"""Image-fusion quality metrics with the infrared/visible fusion literature's definitions, under two conventions.

Every image is a 2-D grey image on the 0..255 scale: uint8, or any integer/float dtype whose values lie
in [0, 255]. A float image in 0..1 must be scaled by 255 first (it would pass validation but give
meaningless EN/MI/SSIM), and a colour image is compared through its grey conversion (``grey_image``).
Published tables disagree on several definitions, so every function that differs takes a
``convention`` and every number written by the project names the one it used:

``project`` (the default; MATLAB-like, chosen to match VIFB, Zhang et al. 2020):
- EN: Shannon entropy (bits) of the 256-level histogram; float images are rounded to integer levels.
- SD: population standard deviation (ddof=0).
- SF: sqrt(RF² + CF²), RF/CF the mean squared horizontal/vertical first differences.
- AG: mean over the (M-1)×(N-1) grid of sqrt((ΔxF² + ΔyF²) / 2), forward differences.
- MI: MI(F,IR) + MI(F,VI), 256×256 joint histograms, log2 (bits).
- SCD: corr(IR, F − VI) + corr(VI, F − IR) (Aslantas & Bendes 2015, sum of the correlations of
  differences); a term whose images have no variance (F − VI constant: F is IR plus a constant) is 0.
- VIF: VIFp(IR,F) + VIFp(VI,F), the multiscale pixel-domain VIF of Sheikh & Bovik (vifp_mscale.m: four
  scales, Gaussian windows N = 17, 9, 5, 3 with σ = N/5, noise variance 2), sources as references. A
  reference without any local variance carries no information and scores 0.0 instead of 0/0.
- Qabf: Xydeas–Petrović edge preservation with 3×3 Sobel, zero-padded borders, Tg=0.9994, kg=-15,
  Dg=0.5, Ta=0.9879, ka=-22, Da=0.8, L=1. Its maximum (F = IR = VI) is
  Tg·Ta/((1+e^-7.5)(1+e^-4.4)) ≈ 0.975, not 1. The strength ratio is min(g,gF)/max(g,gF). Sources
  without any edge give 0.0.
- SSIM: Wang et al. 2004 (ssim_index.m): 11×11 Gaussian σ=1.5, K1=0.01, K2=0.03, L=255, mean over the
  'valid' window positions (no padding, no downsampling); fusion score SSIM(F,IR) + SSIM(F,VI).
- grey: OpenCV's 8-bit BGR2GRAY (fixed point) of the 8-bit colour image.

``cddfuse`` (the evaluator of CDDFuse, Zhao et al. CVPR 2023, utils/Evaluator.py + test_IVF.py, whose
numbers many papers print; the same as ``project`` where not listed):
- grey: OpenCV's BGR2GRAY of the 8-bit image converted to float32, rounded to integers.
- AG: mean of sqrt((gx² + gy²) / 2) over the whole image, gx/gy central differences (one-sided at the
  borders: numpy.gradient).
- MI: natural log (nats, scikit-learn's mutual_info_score), summed over both sources.
- SCD: a term without variance is undefined (NaN), as there.
- VIF: the same VIFF; a reference without local variance scores 1.0 (their NaN → 1 rule).
- Qabf: Sobel by true convolution (scipy convolve2d: the x kernel flipped, so Sx has the other sign,
  which changes the orientation term wherever one image's Sx is exactly 0), and where the source and
  fused strengths are equal the "ratio" is the fused strength (their code). No source edge: NaN.
- SSIM: scikit-image 0.19's structural_similarity on float images without a data range, which took the
  float dtype's range 2: 7×7 uniform window, sample covariance (×49/48), K1=0.01, K2=0.03, L=2, mean
  over the positions 3 pixels away from the border; fusion score SSIM(F,IR) + SSIM(F,VI).

Both conventions need images of at least 41×41 for VIF (four scales of 'valid' filtering); SSIM needs
11×11 (project) or 7×7 (cddfuse).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np

_LEVELS = 256
_VIF_SCALES = 4
_VIF_NOISE_VAR = 2.0
_VIF_EPS = 1e-10
_VIF_MIN_SIZE = 41
_QABF_TG, _QABF_KG, _QABF_DG = 0.9994, -15.0, 0.5
_QABF_TA, _QABF_KA, _QABF_DA = 0.9879, -22.0, 0.8
_QABF_L = 1.0
_SOBEL_X = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=np.float64)  # as a correlation kernel
_SOBEL_Y = _SOBEL_X.T.copy()
METRIC_KEYS = ("EN", "SD", "SF", "AG", "MI", "SCD", "VIF", "Qabf", "SSIM")


def _gaussian_kernel(size: int, sigma: float) -> np.ndarray:
    """Normalised 1-D Gaussian; its outer product is MATLAB's fspecial('gaussian', size, sigma)."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    k = np.exp(-(x**2) / (2.0 * sigma**2))
    return k / k.sum()


@dataclass(frozen=True)
class SsimWindow:
    """How SSIM averages: a separable window (1-D, sums to 1), the covariance normalisation and L."""

    kernel: np.ndarray
    cov_norm: float
    data_range: float

    @property
    def size(self) -> int:
        return len(self.kernel)

    @property
    def c1(self) -> float:
        return (0.01 * self.data_range) ** 2

    @property
    def c2(self) -> float:
        return (0.03 * self.data_range) ** 2


def _grey_fixed_point(bgr: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)


def _grey_float_rounded(bgr: np.ndarray) -> np.ndarray:
    return np.round(cv2.cvtColor(bgr.astype(np.float32), cv2.COLOR_BGR2GRAY))


def _forward_difference_gradient(img: np.ndarray) -> float:
    dx = img[:-1, 1:] - img[:-1, :-1]
    dy = img[1:, :-1] - img[:-1, :-1]
    return float(np.mean(np.sqrt((dx**2 + dy**2) / 2.0)))


def _central_difference_gradient(img: np.ndarray) -> float:
    gy, gx = np.gradient(img)
    return float(np.mean(np.sqrt((gx**2 + gy**2) / 2.0)))


@dataclass(frozen=True)
class Convention:
    """One set of metric definitions (see the module docstring); CONVENTIONS holds the two there are."""

    name: str
    summary: str  # one line for reports
    grey: Callable[[np.ndarray], np.ndarray]  # 8-bit BGR -> grey 0..255
    average_gradient: Callable[[np.ndarray], float]
    mi_log: Callable[[np.ndarray], np.ndarray]
    mi_unit: str
    ssim_window: SsimWindow
    vif_flat_reference: float  # VIF of a reference without local variance
    sobel_x: np.ndarray  # correlation kernel of Qabf's horizontal Sobel
    qabf_equal_strength_ratio_is_fused: bool
    undefined: float  # SCD term without variance, Qabf without source edges

    @property
    def min_size(self) -> int:
        return max(_VIF_MIN_SIZE, self.ssim_window.size)


PROJECT = Convention(
    name="project",
    summary="MATLAB-like (VIFB): MI in bits, SSIM 11x11 Gaussian with L=255, AG by forward differences, "
            "grey by OpenCV's 8-bit BGR2GRAY",
    grey=_grey_fixed_point, average_gradient=_forward_difference_gradient, mi_log=np.log2, mi_unit="bits",
    ssim_window=SsimWindow(_gaussian_kernel(11, 1.5), cov_norm=1.0, data_range=255.0),
    vif_flat_reference=0.0, sobel_x=_SOBEL_X, qabf_equal_strength_ratio_is_fused=False, undefined=0.0)
CDDFUSE = Convention(
    name="cddfuse",
    summary="CDDFuse's evaluator (the one behind many published tables): MI in nats, SSIM by scikit-image "
            "0.19 on float images (7x7 uniform, L=2), AG by central differences, grey by float BGR2GRAY rounded",
    grey=_grey_float_rounded, average_gradient=_central_difference_gradient, mi_log=np.log, mi_unit="nats",
    ssim_window=SsimWindow(np.full(7, 1.0 / 7.0), cov_norm=49.0 / 48.0, data_range=2.0),
    vif_flat_reference=1.0, sobel_x=-_SOBEL_X, qabf_equal_strength_ratio_is_fused=True, undefined=math.nan)
CONVENTIONS = {c.name: c for c in (PROJECT, CDDFUSE)}


def convention_named(name: str | Convention) -> Convention:
    """The Convention of that name (a Convention passes through); ValueError naming the known ones."""
    if isinstance(name, Convention):
        return name
    try:
        return CONVENTIONS[name]
    except KeyError:
        raise ValueError(f"unknown metric convention {name!r}: use one of {', '.join(CONVENTIONS)}") from None


def grey_image(image, convention: str | Convention = "project") -> np.ndarray:
    """The grey image a convention scores: an 8-bit BGR colour image converted its way; an 8-bit grey
    image as it is (both conversions keep grey stored as three equal channels unchanged)."""
    arr = np.asarray(image)
    if arr.dtype != np.uint8 or not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 3)):
        raise ValueError(f"grey_image takes an 8-bit grey or BGR image, got {arr.dtype} {arr.shape}")
    return arr if arr.ndim == 2 else convention_named(convention).grey(arr)


def _as_image(image, name: str, min_size: int = 1) -> np.ndarray:
    """Validate one grey image and return it as float64."""
    arr = np.asarray(image)
    if arr.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D grey image, got shape {arr.shape}; convert colour images to grey/Y first"
        )
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise ValueError(f"{name} must have an integer or float dtype, got {arr.dtype}")
    if min(arr.shape) < min_size:
        raise ValueError(f"{name} must be at least {min_size}×{min_size} pixels for this metric, got {arr.shape}")
    out = arr.astype(np.float64)
    if not np.isfinite(out).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    lo, hi = out.min(), out.max()
    if lo < 0.0 or hi > 255.0:
        raise ValueError(f"{name} must be on the 0..255 scale, got values in [{lo:g}, {hi:g}]")
    return out


def _as_images(names_images: dict[str, object], min_size: int = 1) -> list[np.ndarray]:
    """Validate several images that must share one shape."""
    arrays = [_as_image(img, name, min_size) for name, img in names_images.items()]
    shapes = {name: a.shape for name, a in zip(names_images, arrays)}
    if len(set(shapes.values())) > 1:
        raise ValueError(f"images must have the same shape, got {shapes}")
    return arrays


def _levels(img: np.ndarray) -> np.ndarray:
    """Integer grey levels 0..255 for histogram-based metrics."""
    return np.rint(img).astype(np.intp).ravel()


def _filter_valid(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Separable filtering keeping only positions where the window fits (MATLAB filter2 'valid')."""
    r = len(kernel) // 2
    full = cv2.sepFilter2D(img, cv2.CV_64F, kernel, kernel, borderType=cv2.BORDER_REFLECT)
    return full[r : img.shape[0] - r, r : img.shape[1] - r]


# ----------------------------------------------------------------------------- single-image metrics


def _entropy(img: np.ndarray) -> float:
    p = np.bincount(_levels(img), minlength=_LEVELS) / img.size
    p = p[p > 0]
    return float((p * np.log2(1.0 / p)).sum())


def _spatial_frequency(img: np.ndarray) -> float:
    rf = np.mean(np.diff(img, axis=1) ** 2)
    cf = np.mean(np.diff(img, axis=0) ** 2)
    return float(np.sqrt(rf + cf))


def entropy(image) -> float:
    """EN: entropy in bits of the 256-level grey histogram (0 for a constant image, 8 at most)."""
    return _entropy(_as_image(image, "image"))


def standard_deviation(image) -> float:
    """SD: population standard deviation of the grey values (contrast)."""
    return float(np.std(_as_image(image, "image")))


def spatial_frequency(image) -> float:
    """SF: sqrt(RF² + CF²) with RF, CF the mean squared horizontal and vertical first differences."""
    return _spatial_frequency(_as_image(image, "image", min_size=2))


def average_gradient(image, convention: str | Convention = "project") -> float:
    """AG (sharpness): mean of sqrt((Δx² + Δy²)/2); project: forward differences on the (M-1)×(N-1) grid,
    cddfuse: central differences over the whole image."""
    return convention_named(convention).average_gradient(_as_image(image, "image", min_size=2))


# ----------------------------------------------------------------------------- pairwise metrics


def _mutual_information(a: np.ndarray, b: np.ndarray, log=np.log2) -> float:
    joint = np.bincount(_levels(a) * _LEVELS + _levels(b), minlength=_LEVELS * _LEVELS)
    joint = joint.reshape(_LEVELS, _LEVELS) / a.size
    pa = joint.sum(axis=1)
    pb = joint.sum(axis=0)
    ia, ib = np.nonzero(joint)
    pj = joint[ia, ib]
    return float(max(0.0, (pj * log(pj / (pa[ia] * pb[ib]))).sum()))


def _correlation(a: np.ndarray, b: np.ndarray, undefined: float) -> float:
    """Pearson correlation; `undefined` where either image has no variance."""
    a0, b0 = a - a.mean(), b - b.mean()
    den = math.sqrt(float((a0 * a0).sum()) * float((b0 * b0).sum()))
    return float((a0 * b0).sum()) / den if den > 0.0 else undefined


def _scd(fused: np.ndarray, ir: np.ndarray, vi: np.ndarray, undefined: float) -> float:
    return _correlation(ir, fused - vi, undefined) + _correlation(vi, fused - ir, undefined)


def _ssim(a: np.ndarray, b: np.ndarray, window: SsimWindow) -> float:
    k = window.kernel
    mu_a, mu_b = _filter_valid(a, k), _filter_valid(b, k)
    mu_aa, mu_bb, mu_ab = mu_a * mu_a, mu_b * mu_b, mu_a * mu_b
    var_a = window.cov_norm * (_filter_valid(a * a, k) - mu_aa)
    var_b = window.cov_norm * (_filter_valid(b * b, k) - mu_bb)
    cov = window.cov_norm * (_filter_valid(a * b, k) - mu_ab)
    c1, c2 = window.c1, window.c2
    ssim_map = ((2 * mu_ab + c1) * (2 * cov + c2)) / ((mu_aa + mu_bb + c1) * (var_a + var_b + c2))
    return float(ssim_map.mean())


def _vifp(ref: np.ndarray, dist: np.ndarray, flat_reference: float = 0.0) -> float:
    # VIF uses only (co)variances, so removing the global means changes nothing but the rounding error
    # of E[x²] - E[x]² in flat regions.
    ref = ref - ref.mean()
    dist = dist - dist.mean()
    num = den = 0.0
    for scale in range(1, _VIF_SCALES + 1):
        n = 2 ** (_VIF_SCALES - scale + 1) + 1
        k = _gaussian_kernel(n, n / 5.0)
        if scale > 1:
            ref = _filter_valid(ref, k)[::2, ::2]
            dist = _filter_valid(dist, k)[::2, ::2]
        mu1, mu2 = _filter_valid(ref, k), _filter_valid(dist, k)
        s1 = np.maximum(_filter_valid(ref * ref, k) - mu1 * mu1, 0.0)
        s2 = np.maximum(_filter_valid(dist * dist, k) - mu2 * mu2, 0.0)
        s12 = _filter_valid(ref * dist, k) - mu1 * mu2
        # Same sequence of special cases as vifp_mscale.m.
        g = s12 / (s1 + _VIF_EPS)
        sv = s2 - g * s12
        flat_ref = s1 < _VIF_EPS
        g[flat_ref] = 0.0
        sv[flat_ref] = s2[flat_ref]
        s1[flat_ref] = 0.0
        flat_dist = s2 < _VIF_EPS
        g[flat_dist] = 0.0
        sv[flat_dist] = 0.0
        neg = g < 0
        sv[neg] = s2[neg]
        g[neg] = 0.0
        sv = np.maximum(sv, _VIF_EPS)
        num += float(np.log10(1.0 + g * g * s1 / (sv + _VIF_NOISE_VAR)).sum())
        den += float(np.log10(1.0 + s1 / _VIF_NOISE_VAR).sum())
    return num / den if den > 0.0 else flat_reference


def mutual_information(a, b, convention: str | Convention = "project") -> float:
    """MI(a, b) from the 256×256 joint grey histogram, in bits (project) or nats (cddfuse); the fusion
    score is MI(F,IR) + MI(F,VI)."""
    return _mutual_information(*_as_images({"a": a, "b": b}), log=convention_named(convention).mi_log)


def scd(fused, ir, vi, convention: str | Convention = "project") -> float:
    """SCD: corr(IR, F − VI) + corr(VI, F − IR), how much of each source the fused image adds to the other
    (2 for F = IR + VI − c). A term without variance is 0 (project) or NaN (cddfuse)."""
    f, a, b = _as_images({"fused": fused, "ir": ir, "vi": vi})
    return _scd(f, a, b, convention_named(convention).undefined)


def ssim(a, b, convention: str | Convention = "project") -> float:
    """SSIM (project: 11×11 Gaussian σ=1.5, L=255; cddfuse: 7×7 uniform, sample covariance, L=2), mean over
    the 'valid' windows; the fusion score is SSIM(F,IR) + SSIM(F,VI)."""
    window = convention_named(convention).ssim_window
    return _ssim(*_as_images({"a": a, "b": b}, min_size=window.size), window)


def vifp(reference, distorted, convention: str | Convention = "project") -> float:
    """Multiscale pixel-domain VIF of `distorted` w.r.t. `reference` (1 for identical non-flat images).

    The fusion score is VIFp(IR,F) + VIFp(VI,F). A flat reference gives 0.0 (project: no information to
    keep) or 1.0 (cddfuse).
    """
    ref, dist = _as_images({"reference": reference, "distorted": distorted}, min_size=_VIF_MIN_SIZE)
    return _vifp(ref, dist, convention_named(convention).vif_flat_reference)


# ----------------------------------------------------------------------------- Qabf


def _sobel(img: np.ndarray, sobel_x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Edge strength and orientation (atan(Sy/Sx), π/2 where Sx = 0), zero-padded like conv2 'same'."""
    sx = cv2.filter2D(img, cv2.CV_64F, sobel_x, borderType=cv2.BORDER_CONSTANT)
    sy = cv2.filter2D(img, cv2.CV_64F, _SOBEL_Y, borderType=cv2.BORDER_CONSTANT)
    strength = np.sqrt(sx * sx + sy * sy)
    vertical = sx == 0
    angle = np.where(vertical, np.pi / 2, np.arctan(sy / np.where(vertical, 1.0, sx)))
    return strength, angle


def _edge_preservation(g_src, a_src, g_fused, a_fused, equal_ratio_is_fused: bool) -> np.ndarray:
    """Q^{SF}: how well each source edge survives in the fused image (strength × orientation terms)."""
    g_hi = np.maximum(g_src, g_fused)
    g_ratio = np.divide(np.minimum(g_src, g_fused), g_hi, out=np.zeros_like(g_hi), where=g_hi > 0)
    if equal_ratio_is_fused:
        g_ratio = np.where(g_src == g_fused, g_fused, g_ratio)
    a_rel = 1.0 - np.abs(a_src - a_fused) / (np.pi / 2)
    q_g = _QABF_TG / (1.0 + np.exp(_QABF_KG * (g_ratio - _QABF_DG)))
    q_a = _QABF_TA / (1.0 + np.exp(_QABF_KA * (a_rel - _QABF_DA)))
    return q_g * q_a


def _qabf(fused: np.ndarray, ir: np.ndarray, vi: np.ndarray, convention: Convention) -> float:
    g_f, a_f = _sobel(fused, convention.sobel_x)
    g_ir, a_ir = _sobel(ir, convention.sobel_x)
    g_vi, a_vi = _sobel(vi, convention.sobel_x)
    w_ir, w_vi = g_ir**_QABF_L, g_vi**_QABF_L
    den = float((w_ir + w_vi).sum())
    if den == 0.0:
        return convention.undefined
    quirk = convention.qabf_equal_strength_ratio_is_fused
    num = (_edge_preservation(g_ir, a_ir, g_f, a_f, quirk) * w_ir
           + _edge_preservation(g_vi, a_vi, g_f, a_f, quirk) * w_vi).sum()
    return float(num / den)


def qabf(fused, ir, vi, convention: str | Convention = "project") -> float:
    """Qabf: edge-strength-weighted share of source edges preserved in the fused image (≈0.975 at best).

    Sources without any edges give 0.0 (project) or NaN (cddfuse).
    """
    return _qabf(*_as_images({"fused": fused, "ir": ir, "vi": vi}, min_size=2), convention_named(convention))


# ----------------------------------------------------------------------------- all at once


def fusion_metrics(fused, ir, vi, convention: str | Convention = "project") -> dict[str, float]:
    """All nine metrics for one fused grey image and its two grey sources, under one convention.

    Keys (METRIC_KEYS): EN, SD, SF, AG (of F), MI = MI(F,IR)+MI(F,VI), SCD, VIF = VIFp(IR,F)+VIFp(VI,F),
    Qabf, SSIM = SSIM(F,IR)+SSIM(F,VI). Images must be at least 41×41. Colour images go through
    ``grey_image`` first.
    """
    conv = convention_named(convention)
    f, a, b = _as_images({"fused": fused, "ir": ir, "vi": vi}, min_size=conv.min_size)
    return {
        "EN": _entropy(f),
        "SD": float(np.std(f)),
        "SF": _spatial_frequency(f),
        "AG": conv.average_gradient(f),
        "MI": _mutual_information(f, a, conv.mi_log) + _mutual_information(f, b, conv.mi_log),
        "SCD": _scd(f, a, b, conv.undefined),
        "VIF": _vifp(a, f, conv.vif_flat_reference) + _vifp(b, f, conv.vif_flat_reference),
        "Qabf": _qabf(f, a, b, conv),
        "SSIM": _ssim(f, a, conv.ssim_window) + _ssim(f, b, conv.ssim_window),
    }
