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
from functools import cached_property
from typing import Callable, Mapping

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


def _vif_kernel(scale: int) -> np.ndarray:
    n = 2 ** (_VIF_SCALES - scale + 1) + 1
    return _gaussian_kernel(n, n / 5.0)


def _sobel(img: np.ndarray, sobel_x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Edge strength and orientation (atan(Sy/Sx), π/2 where Sx = 0), zero-padded like conv2 'same'."""
    sx = cv2.filter2D(img, cv2.CV_64F, sobel_x, borderType=cv2.BORDER_CONSTANT)
    sy = cv2.filter2D(img, cv2.CV_64F, _SOBEL_Y, borderType=cv2.BORDER_CONSTANT)
    strength = np.sqrt(sx * sx + sy * sy)
    vertical = sx == 0
    angle = np.where(vertical, np.pi / 2, np.arctan(sy / np.where(vertical, 1.0, sx)))
    return strength, angle


class _Image:
    """One validated grey image (float64) and what the pairwise metrics need of it alone, computed on
    first use: a source's statistics serve every fused image scored against it, a fused image's serve
    both sources."""

    def __init__(self, img: np.ndarray, convention: Convention):
        self.img = img
        self.convention = convention

    @cached_property
    def levels(self) -> np.ndarray:
        return _levels(self.img)

    @cached_property
    def centered(self) -> tuple[np.ndarray, float]:
        """(img - mean, sum of squares): the parts of a correlation that are the image's own."""
        c = self.img - self.img.mean()
        return c, float((c * c).sum())

    @cached_property
    def ssim_moments(self) -> tuple[np.ndarray, np.ndarray]:
        """Windowed mean and (normalised) variance."""
        w = self.convention.ssim_window
        mu = _filter_valid(self.img, w.kernel)
        return mu, w.cov_norm * (_filter_valid(self.img * self.img, w.kernel) - mu * mu)

    @cached_property
    def sobel(self) -> tuple[np.ndarray, np.ndarray]:
        return _sobel(self.img, self.convention.sobel_x)

    @cached_property
    def vif_scales(self) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Per scale: the image at that scale, its windowed mean and (clamped) variance. The global mean
        is removed first: VIF uses only (co)variances, and E[x²] - E[x]² then rounds less in flat regions."""
        img = self.img - self.img.mean()
        out = []
        for scale in range(1, _VIF_SCALES + 1):
            k = _vif_kernel(scale)
            if scale > 1:
                img = _filter_valid(img, k)[::2, ::2]
            mu = _filter_valid(img, k)
            out.append((img, mu, np.maximum(_filter_valid(img * img, k) - mu * mu, 0.0)))
        return out

    @cached_property
    def vif_information(self) -> float:
        """VIF's denominator for this image as the reference: the information it holds."""
        return sum(float(np.log10(1.0 + np.where(s1 < _VIF_EPS, 0.0, s1) / _VIF_NOISE_VAR).sum())
                   for _, _, s1 in self.vif_scales)


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


def _mutual_information(a: _Image, b: _Image) -> float:
    joint = np.bincount(a.levels * _LEVELS + b.levels, minlength=_LEVELS * _LEVELS)
    joint = joint.reshape(_LEVELS, _LEVELS) / a.img.size
    pa = joint.sum(axis=1)
    pb = joint.sum(axis=0)
    ia, ib = np.nonzero(joint)
    pj = joint[ia, ib]
    return float(max(0.0, (pj * a.convention.mi_log(pj / (pa[ia] * pb[ib]))).sum()))


def _correlation(a: _Image, b: np.ndarray, undefined: float) -> float:
    """Pearson correlation; `undefined` where either image has no variance."""
    a0, a_ss = a.centered
    b0 = b - b.mean()
    den = math.sqrt(a_ss * float((b0 * b0).sum()))
    return float((a0 * b0).sum()) / den if den > 0.0 else undefined


def _scd(fused: _Image, ir: _Image, vi: _Image) -> float:
    undefined = fused.convention.undefined
    return _correlation(ir, fused.img - vi.img, undefined) + _correlation(vi, fused.img - ir.img, undefined)


def _ssim(a: _Image, b: _Image) -> float:
    window = a.convention.ssim_window
    (mu_a, var_a), (mu_b, var_b) = a.ssim_moments, b.ssim_moments
    mu_ab = mu_a * mu_b
    cov = window.cov_norm * (_filter_valid(a.img * b.img, window.kernel) - mu_ab)
    c1, c2 = window.c1, window.c2
    ssim_map = ((2 * mu_ab + c1) * (2 * cov + c2)) / ((mu_a * mu_a + mu_b * mu_b + c1) * (var_a + var_b + c2))
    return float(ssim_map.mean())


def _vifp(ref: _Image, dist: _Image) -> float:
    num = 0.0
    for scale, ((r, mu1, s1), (d, mu2, s2)) in enumerate(zip(ref.vif_scales, dist.vif_scales), start=1):
        s12 = _filter_valid(r * d, _vif_kernel(scale)) - mu1 * mu2
        g = s12 / (s1 + _VIF_EPS)
        # vifp_mscale.m sets the gain g to 0 where either variance is below eps or g < 0 (and then changes
        # sv² there); a position with g = 0 adds log10(1) = 0, so only the others are summed.
        kept = (g > 0) & (s1 >= _VIF_EPS) & (s2 >= _VIF_EPS)
        g, s1_kept = g[kept], s1[kept]
        sv = np.maximum(s2[kept] - g * s12[kept], _VIF_EPS)
        num += float(np.log10(1.0 + g * g * s1_kept / (sv + _VIF_NOISE_VAR)).sum())
    den = ref.vif_information
    return num / den if den > 0.0 else ref.convention.vif_flat_reference


def _edge_preservation(src: _Image, fused: _Image) -> np.ndarray:
    """Q^{SF}: how well each source edge survives in the fused image (strength × orientation terms)."""
    (g_src, a_src), (g_fused, a_fused) = src.sobel, fused.sobel
    g_hi = np.maximum(g_src, g_fused)
    g_ratio = np.divide(np.minimum(g_src, g_fused), g_hi, out=np.zeros_like(g_hi), where=g_hi > 0)
    if src.convention.qabf_equal_strength_ratio_is_fused:
        g_ratio = np.where(g_src == g_fused, g_fused, g_ratio)
    a_rel = 1.0 - np.abs(a_src - a_fused) / (np.pi / 2)
    q_g = _QABF_TG / (1.0 + np.exp(_QABF_KG * (g_ratio - _QABF_DG)))
    q_a = _QABF_TA / (1.0 + np.exp(_QABF_KA * (a_rel - _QABF_DA)))
    return q_g * q_a


def _qabf(fused: _Image, ir: _Image, vi: _Image) -> float:
    w_ir, w_vi = ir.sobel[0] ** _QABF_L, vi.sobel[0] ** _QABF_L
    den = float((w_ir + w_vi).sum())
    if den == 0.0:
        return fused.convention.undefined
    num = (_edge_preservation(ir, fused) * w_ir + _edge_preservation(vi, fused) * w_vi).sum()
    return float(num / den)


def _images(names_images: dict[str, object], convention, min_size: int = 1) -> list[_Image]:
    conv = convention_named(convention)
    return [_Image(img, conv) for img in _as_images(names_images, min_size)]


def mutual_information(a, b, convention: str | Convention = "project") -> float:
    """MI(a, b) from the 256×256 joint grey histogram, in bits (project) or nats (cddfuse); the fusion
    score is MI(F,IR) + MI(F,VI)."""
    return _mutual_information(*_images({"a": a, "b": b}, convention))


def scd(fused, ir, vi, convention: str | Convention = "project") -> float:
    """SCD: corr(IR, F − VI) + corr(VI, F − IR), how much of each source the fused image adds to the other
    (2 for F = IR + VI − c). A term without variance is 0 (project) or NaN (cddfuse)."""
    return _scd(*_images({"fused": fused, "ir": ir, "vi": vi}, convention))


def ssim(a, b, convention: str | Convention = "project") -> float:
    """SSIM (project: 11×11 Gaussian σ=1.5, L=255; cddfuse: 7×7 uniform, sample covariance, L=2), mean over
    the 'valid' windows; the fusion score is SSIM(F,IR) + SSIM(F,VI)."""
    return _ssim(*_images({"a": a, "b": b}, convention, convention_named(convention).ssim_window.size))


def vifp(reference, distorted, convention: str | Convention = "project") -> float:
    """Multiscale pixel-domain VIF of `distorted` w.r.t. `reference` (1 for identical non-flat images).

    The fusion score is VIFp(IR,F) + VIFp(VI,F). A flat reference gives 0.0 (project: no information to
    keep) or 1.0 (cddfuse).
    """
    return _vifp(*_images({"reference": reference, "distorted": distorted}, convention, _VIF_MIN_SIZE))


def qabf(fused, ir, vi, convention: str | Convention = "project") -> float:
    """Qabf: edge-strength-weighted share of source edges preserved in the fused image (≈0.975 at best).

    Sources without any edges give 0.0 (project) or NaN (cddfuse).
    """
    return _qabf(*_images({"fused": fused, "ir": ir, "vi": vi}, convention, 2))


# ----------------------------------------------------------------------------- all at once


def fusion_metrics_of_many(fused_images: Mapping[str, object], ir, vi,
                           convention: str | Convention = "project") -> dict[str, dict[str, float]]:
    """fusion_metrics for several fused images of one pair: {name: metrics}. What the metrics need of the
    two sources is computed once for all of them (about half the work of scoring one image)."""
    conv = convention_named(convention)
    if not fused_images or {"ir", "vi"} & set(fused_images):
        raise ValueError(f"name one or more fused images other than 'ir' and 'vi', got {list(fused_images)}")
    *fused, a, b = _images({**fused_images, "ir": ir, "vi": vi}, conv, conv.min_size)
    out = {}
    for name, f in zip(fused_images, fused):
        out[name] = {
            "EN": _entropy(f.img),
            "SD": float(np.std(f.img)),
            "SF": _spatial_frequency(f.img),
            "AG": conv.average_gradient(f.img),
            "MI": _mutual_information(f, a) + _mutual_information(f, b),
            "SCD": _scd(f, a, b),
            "VIF": _vifp(a, f) + _vifp(b, f),
            "Qabf": _qabf(f, a, b),
            "SSIM": _ssim(f, a) + _ssim(f, b),
        }
    return out


def fusion_metrics(fused, ir, vi, convention: str | Convention = "project") -> dict[str, float]:
    """All nine metrics for one fused grey image and its two grey sources, under one convention.

    Keys (METRIC_KEYS): EN, SD, SF, AG (of F), MI = MI(F,IR)+MI(F,VI), SCD, VIF = VIFp(IR,F)+VIFp(VI,F),
    Qabf, SSIM = SSIM(F,IR)+SSIM(F,VI). Images must be at least 41×41. Colour images go through
    ``grey_image`` first.
    """
    return fusion_metrics_of_many({"fused": fused}, ir, vi, convention)["fused"]
