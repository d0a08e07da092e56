"""Image-fusion quality metrics with the infrared/visible fusion literature's definitions.

Every image is a 2-D grey image on the 0..255 scale: uint8, or any integer/float dtype whose values lie
in [0, 255]. A float image in 0..1 must be scaled by 255 first (it would pass validation but give
meaningless EN/MI/SSIM), and a colour fused image is compared through its luminance Y (the channel the
fusion network produces) or its grey conversion. Conventions, chosen to match VIFB (Zhang et al., 2020)
and the TarDAL / SeAFusion / CDDFuse evaluation code so numbers are comparable with published tables:

- EN: Shannon entropy (bits) of the 256-level histogram; float images are rounded to integer levels.
- SD: population standard deviation (ddof=0).
- SF: sqrt(RF² + CF²), RF/CF the mean squared horizontal/vertical first differences.
- AG: mean over the (M-1)×(N-1) grid of sqrt((ΔxF² + ΔyF²) / 2), forward differences.
- MI: MI(F,IR) + MI(F,VI), 256×256 joint histograms, log2 (bits). Some Python code (sklearn's
  mutual_info_score) reports nats; ours is bits, like the MATLAB benchmarks.
- VIF: VIFp(IR,F) + VIFp(VI,F), the multiscale pixel-domain VIF of Sheikh & Bovik (vifp_mscale.m: four
  scales, Gaussian windows N = 17, 9, 5, 3 with σ = N/5, noise variance 2), sources as references. A
  reference without any local variance carries no information and scores 0.0 instead of 0/0.
- Qabf: Xydeas–Petrović edge preservation with 3×3 Sobel, zero-padded borders (MATLAB conv2 'same', as in
  the reference code), Tg=0.9994, kg=-15, Dg=0.5, Ta=0.9879, ka=-22, Da=0.8, L=1. Its maximum (F = IR = VI)
  is Tg·Ta/((1+e^-7.5)(1+e^-4.4)) ≈ 0.975, not 1. The strength ratio is min(g,gF)/max(g,gF) (the
  reference code sets it to gF instead of 1 where g == gF, a bug that only matters for identical edges).
- SSIM: Wang et al. 2004 (ssim_index.m): 11×11 Gaussian σ=1.5, K1=0.01, K2=0.03, L=255, mean over the
  'valid' window positions (no padding, no downsampling); fusion score SSIM(F,IR) + SSIM(F,VI).

SSIM needs images of at least 11×11 and VIF at least 41×41 (four scales of 'valid' filtering).
"""
from __future__ import annotations

import cv2
import numpy as np

_LEVELS = 256
_SSIM_WINDOW, _SSIM_SIGMA = 11, 1.5
_SSIM_C1, _SSIM_C2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
_VIF_SCALES = 4
_VIF_NOISE_VAR = 2.0
_VIF_EPS = 1e-10
_VIF_MIN_SIZE = 41
_QABF_TG, _QABF_KG, _QABF_DG = 0.9994, -15.0, 0.5
_QABF_TA, _QABF_KA, _QABF_DA = 0.9879, -22.0, 0.8
_QABF_L = 1.0
_SOBEL_X = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=np.float64)
_SOBEL_Y = _SOBEL_X.T.copy()


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


def _gaussian_kernel(size: int, sigma: float) -> np.ndarray:
    """Normalised 1-D Gaussian; its outer product is MATLAB's fspecial('gaussian', size, sigma)."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    k = np.exp(-(x**2) / (2.0 * sigma**2))
    return k / k.sum()


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


def _average_gradient(img: np.ndarray) -> float:
    dx = img[:-1, 1:] - img[:-1, :-1]
    dy = img[1:, :-1] - img[:-1, :-1]
    return float(np.mean(np.sqrt((dx**2 + dy**2) / 2.0)))


def entropy(image) -> float:
    """EN: entropy in bits of the 256-level grey histogram (0 for a constant image, 8 at most)."""
    return _entropy(_as_image(image, "image"))


def standard_deviation(image) -> float:
    """SD: population standard deviation of the grey values (contrast)."""
    return float(np.std(_as_image(image, "image")))


def spatial_frequency(image) -> float:
    """SF: sqrt(RF² + CF²) with RF, CF the mean squared horizontal and vertical first differences."""
    return _spatial_frequency(_as_image(image, "image", min_size=2))


def average_gradient(image) -> float:
    """AG: mean of sqrt((Δx² + Δy²)/2) over the (M-1)×(N-1) forward-difference grid (sharpness)."""
    return _average_gradient(_as_image(image, "image", min_size=2))


# ----------------------------------------------------------------------------- pairwise metrics


def _mutual_information(a: np.ndarray, b: np.ndarray) -> float:
    joint = np.bincount(_levels(a) * _LEVELS + _levels(b), minlength=_LEVELS * _LEVELS)
    joint = joint.reshape(_LEVELS, _LEVELS) / a.size
    pa = joint.sum(axis=1)
    pb = joint.sum(axis=0)
    ia, ib = np.nonzero(joint)
    pj = joint[ia, ib]
    return float(max(0.0, (pj * np.log2(pj / (pa[ia] * pb[ib]))).sum()))


def _ssim(a: np.ndarray, b: np.ndarray) -> float:
    k = _gaussian_kernel(_SSIM_WINDOW, _SSIM_SIGMA)
    mu_a, mu_b = _filter_valid(a, k), _filter_valid(b, k)
    mu_aa, mu_bb, mu_ab = mu_a * mu_a, mu_b * mu_b, mu_a * mu_b
    var_a = _filter_valid(a * a, k) - mu_aa
    var_b = _filter_valid(b * b, k) - mu_bb
    cov = _filter_valid(a * b, k) - mu_ab
    ssim_map = ((2 * mu_ab + _SSIM_C1) * (2 * cov + _SSIM_C2)) / (
        (mu_aa + mu_bb + _SSIM_C1) * (var_a + var_b + _SSIM_C2)
    )
    return float(ssim_map.mean())


def _vifp(ref: np.ndarray, dist: np.ndarray) -> float:
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
    return num / den if den > 0.0 else 0.0


def mutual_information(a, b) -> float:
    """MI(a, b) in bits from the 256×256 joint grey histogram; the fusion score is MI(F,IR) + MI(F,VI)."""
    return _mutual_information(*_as_images({"a": a, "b": b}))


def ssim(a, b) -> float:
    """SSIM (Wang et al. 2004, 11×11 Gaussian σ=1.5, 'valid'); the fusion score is SSIM(F,IR) + SSIM(F,VI)."""
    return _ssim(*_as_images({"a": a, "b": b}, min_size=_SSIM_WINDOW))


def vifp(reference, distorted) -> float:
    """Multiscale pixel-domain VIF of `distorted` w.r.t. `reference` (1 for identical non-flat images).

    The fusion score is VIFp(IR,F) + VIFp(VI,F). A flat reference gives 0.0 (no information to keep).
    """
    return _vifp(*_as_images({"reference": reference, "distorted": distorted}, min_size=_VIF_MIN_SIZE))


# ----------------------------------------------------------------------------- Qabf


def _sobel(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Edge strength and orientation (atan(Sy/Sx), π/2 where Sx = 0), zero-padded like conv2 'same'."""
    sx = cv2.filter2D(img, cv2.CV_64F, _SOBEL_X, borderType=cv2.BORDER_CONSTANT)
    sy = cv2.filter2D(img, cv2.CV_64F, _SOBEL_Y, borderType=cv2.BORDER_CONSTANT)
    strength = np.sqrt(sx * sx + sy * sy)
    vertical = sx == 0
    angle = np.where(vertical, np.pi / 2, np.arctan(sy / np.where(vertical, 1.0, sx)))
    return strength, angle


def _edge_preservation(g_src, a_src, g_fused, a_fused) -> np.ndarray:
    """Q^{SF}: how well each source edge survives in the fused image (strength × orientation terms)."""
    g_hi = np.maximum(g_src, g_fused)
    g_ratio = np.divide(np.minimum(g_src, g_fused), g_hi, out=np.zeros_like(g_hi), where=g_hi > 0)
    a_rel = 1.0 - np.abs(a_src - a_fused) / (np.pi / 2)
    q_g = _QABF_TG / (1.0 + np.exp(_QABF_KG * (g_ratio - _QABF_DG)))
    q_a = _QABF_TA / (1.0 + np.exp(_QABF_KA * (a_rel - _QABF_DA)))
    return q_g * q_a


def _qabf(fused: np.ndarray, ir: np.ndarray, vi: np.ndarray) -> float:
    g_f, a_f = _sobel(fused)
    g_ir, a_ir = _sobel(ir)
    g_vi, a_vi = _sobel(vi)
    w_ir, w_vi = g_ir**_QABF_L, g_vi**_QABF_L
    den = float((w_ir + w_vi).sum())
    if den == 0.0:
        return 0.0
    num = (_edge_preservation(g_ir, a_ir, g_f, a_f) * w_ir + _edge_preservation(g_vi, a_vi, g_f, a_f) * w_vi).sum()
    return float(num / den)


def qabf(fused, ir, vi) -> float:
    """Qabf: edge-strength-weighted share of source edges preserved in the fused image (≈0.975 at best).

    Sources without any edges give 0.0.
    """
    return _qabf(*_as_images({"fused": fused, "ir": ir, "vi": vi}, min_size=2))


# ----------------------------------------------------------------------------- all at once


def fusion_metrics(fused, ir, vi) -> dict[str, float]:
    """All eight metrics for one fused image and its two sources (see the module docstring).

    Keys: EN, SD, SF, AG (of F), MI = MI(F,IR)+MI(F,VI), VIF = VIFp(IR,F)+VIFp(VI,F), Qabf,
    SSIM = SSIM(F,IR)+SSIM(F,VI). Images must be at least 41×41.
    """
    f, a, b = _as_images({"fused": fused, "ir": ir, "vi": vi}, min_size=_VIF_MIN_SIZE)
    return {
        "EN": _entropy(f),
        "SD": float(np.std(f)),
        "SF": _spatial_frequency(f),
        "AG": _average_gradient(f),
        "MI": _mutual_information(f, a) + _mutual_information(f, b),
        "VIF": _vifp(a, f) + _vifp(b, f),
        "Qabf": _qabf(f, a, b),
        "SSIM": _ssim(f, a) + _ssim(f, b),
    }
