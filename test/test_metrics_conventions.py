"""The fusion metrics' two conventions (project, cddfuse) and SCD: values worked out by hand on tiny images,
and the fast filters against straightforward formulations of the same definitions."""
import math

import cv2
import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from fusion_ros.metrics import (CONVENTIONS, METRIC_KEYS, average_gradient, entropy, fusion_metrics, grey_image,
                                mutual_information, qabf, scd, ssim, vifp)
from fusion_ros.metrics.fusion import _filter_valid, _gaussian_kernel, _sobel

QABF_MAX = 0.9994 / (1 + math.exp(-15 * 0.5)) * 0.9879 / (1 + math.exp(-22 * 0.2))
H3 = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], np.float64)  # CDDFuse's x kernel, used by convolution
H1 = np.array([[1, 2, 1], [0, 0, 0], [-1, -2, -1]], np.float64)  # its y kernel


@pytest.fixture(scope="module")
def pair():
    """Two unrelated smooth integer textures (64×72, 0..255), like decoded 8-bit images."""
    rng = np.random.default_rng(3)
    out = []
    for _ in range(2):
        img = cv2.GaussianBlur(rng.uniform(0, 255, (64, 72)), (0, 0), 2.0)
        out.append(np.rint((img - img.min()) / (img.max() - img.min()) * 255.0))
    return out


def correlate_valid(img, kernel2d):
    """Plain 'valid' correlation: every window times the kernel, summed (scipy's convolve2d 'valid' of the
    kernel rotated by 180 degrees)."""
    return np.einsum("ijkl,kl->ij", sliding_window_view(img, kernel2d.shape), kernel2d)


def convolve_same_zero_padded(img, kernel2d):
    """conv2(img, kernel, 'same') written out: zero padding, the kernel flipped."""
    padded = np.pad(img, 1)
    return correlate_valid(padded, kernel2d[::-1, ::-1])


def ssim_by_windows(a, b, weights, cov_norm, data_range):
    """SSIM as its definition reads: per 'valid' window weighted means, (co)variances, then the mean."""
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    values = []
    for wa, wb in zip(sliding_window_view(a, weights.shape).reshape(-1, weights.size),
                      sliding_window_view(b, weights.shape).reshape(-1, weights.size)):
        w = weights.ravel()
        ma, mb = (w * wa).sum(), (w * wb).sum()
        va, vb = cov_norm * (w * (wa - ma) ** 2).sum(), cov_norm * (w * (wb - mb) ** 2).sum()
        cov = cov_norm * (w * (wa - ma) * (wb - mb)).sum()
        values.append((2 * ma * mb + c1) * (2 * cov + c2) / ((ma * ma + mb * mb + c1) * (va + vb + c2)))
    return float(np.mean(values))


# --------------------------------------------------------------------------- fast == straightforward


def test_separable_filter_is_plain_valid_correlation():
    rng = np.random.default_rng(0)
    img = rng.uniform(0, 255, (23, 31))
    for kernel in (_gaussian_kernel(11, 1.5), np.full(7, 1 / 7), _gaussian_kernel(17, 3.4), rng.uniform(0, 1, 5)):
        np.testing.assert_allclose(_filter_valid(img, kernel), correlate_valid(img, np.outer(kernel, kernel)),
                                   rtol=0, atol=1e-9)


def test_sobel_is_zero_padded_convolution_of_each_conventions_kernels():
    img = np.random.default_rng(1).integers(0, 256, (9, 12)).astype(np.float64)
    # cddfuse: Sx, Sy = conv2(img, h3 / h1, 'same') as its evaluator computes them
    sx, sy = convolve_same_zero_padded(img, H3), convolve_same_zero_padded(img, H1)
    strength, angle = _sobel(img, CONVENTIONS["cddfuse"].sobel_x)
    np.testing.assert_allclose(strength, np.hypot(sx, sy), atol=1e-9)
    np.testing.assert_allclose(angle, np.where(sx == 0, np.pi / 2, np.arctan(sy / np.where(sx == 0, 1, sx))),
                               atol=1e-12)
    # project: the same strengths, Sx with the other sign (a correlation with h3)
    strength_p, angle_p = _sobel(img, CONVENTIONS["project"].sobel_x)
    np.testing.assert_allclose(strength_p, strength, atol=1e-9)
    np.testing.assert_allclose(angle_p, np.where(sx == 0, np.pi / 2, -angle), atol=1e-12)


@pytest.mark.parametrize("name, weights, cov_norm, data_range", [
    ("project", np.outer(_gaussian_kernel(11, 1.5), _gaussian_kernel(11, 1.5)), 1.0, 255.0),
    ("cddfuse", np.full((7, 7), 1 / 49), 49 / 48, 2.0),
])
def test_ssim_equals_the_per_window_definition(name, weights, cov_norm, data_range):
    rng = np.random.default_rng(2)
    a = rng.integers(0, 256, (15, 17)).astype(np.float64)
    b = np.clip(a + rng.normal(0, 20, a.shape), 0, 255).round()
    assert ssim(a, b, name) == pytest.approx(ssim_by_windows(a, b, weights, cov_norm, data_range), rel=1e-10)


def test_mutual_information_equals_counting_pairs():
    rng = np.random.default_rng(4)
    a = rng.integers(0, 6, (20, 30))
    b = np.where(rng.uniform(size=a.shape) < 0.7, a, rng.integers(0, 6, a.shape))
    pairs, counts = np.unique(np.stack([a.ravel(), b.ravel()]), axis=1, return_counts=True)
    pj = counts / a.size
    pa = {v: np.mean(a == v) for v in np.unique(a)}
    pb = {v: np.mean(b == v) for v in np.unique(b)}
    nats = sum(p * math.log(p / (pa[x] * pb[y])) for (x, y), p in zip(pairs.T, pj))
    assert mutual_information(a, b, "cddfuse") == pytest.approx(nats, rel=1e-12)
    assert mutual_information(a, b, "project") == pytest.approx(nats / math.log(2), rel=1e-12)


def test_cddfuse_average_gradient_equals_its_written_out_differences():
    img = np.random.default_rng(5).integers(0, 256, (7, 9)).astype(np.float64)
    gx, gy = np.zeros_like(img), np.zeros_like(img)
    gx[:, 0], gx[:, -1] = img[:, 1] - img[:, 0], img[:, -1] - img[:, -2]
    gx[:, 1:-1] = (img[:, 2:] - img[:, :-2]) / 2
    gy[0], gy[-1] = img[1] - img[0], img[-1] - img[-2]
    gy[1:-1] = (img[2:] - img[:-2]) / 2
    assert average_gradient(img, "cddfuse") == pytest.approx(np.mean(np.sqrt((gx**2 + gy**2) / 2)), rel=1e-12)


# --------------------------------------------------------------------------- by hand


def test_scd_by_hand():
    a = np.tile([[20.0, 20.0, 120.0, 120.0]], (4, 1))  # two orthogonal two-level patterns
    b = np.tile([[20.0, 120.0, 20.0, 120.0]], (4, 1))
    for name in CONVENTIONS:
        # F - B = A - 40 and F - A = B - 40: each source is fully present in what F adds to the other
        assert scd(a + b - 40, a, b, name) == pytest.approx(2.0)
        # average: corr(A, (A-B)/2): A-B = 100·[0,-1,1,0], deviations of A ±50 -> 1/sqrt(2) per term
        assert scd((a + b) / 2, a, b, name) == pytest.approx(math.sqrt(2))
    # F = A: F - A = 0 has no variance; project counts that term 0, cddfuse's evaluator gives NaN
    assert scd(a, a, b, "project") == pytest.approx(1 / math.sqrt(2))
    assert math.isnan(scd(a, a, b, "cddfuse"))


def test_mutual_information_of_a_one_bit_image_in_both_units():
    a = np.tile([[0, 0, 200, 200]], (4, 1)).astype(np.uint8)
    assert mutual_information(a, a, "project") == pytest.approx(1.0)  # bits
    assert mutual_information(a, a, "cddfuse") == pytest.approx(math.log(2))  # nats
    independent = np.tile([[0, 9, 0, 9]], (4, 1))
    assert mutual_information(a, independent, "cddfuse") == pytest.approx(0.0, abs=1e-15)


def test_average_gradient_by_hand():
    img = np.array([[0, 1], [3, 7]], np.uint8)
    # central differences degrade to one-sided ones on a 2×2 image: gx rows (1, 1), (4, 4); gy cols (3, 3), (6, 6)
    by_hand = (math.sqrt((1 + 9) / 2) + math.sqrt((1 + 36) / 2) + math.sqrt((16 + 9) / 2) + math.sqrt((16 + 36) / 2)) / 4
    assert average_gradient(img, "cddfuse") == pytest.approx(by_hand)
    assert average_gradient(img, "project") == pytest.approx(math.sqrt((1 + 9) / 2))
    i, j = np.mgrid[0:6, 0:5]
    ramp = 3.0 * j + 4.0 * i  # the same gradient everywhere: both conventions agree
    assert average_gradient(ramp, "cddfuse") == pytest.approx(5 / math.sqrt(2))


def test_cddfuse_ssim_constants_use_the_float_range_two(pair):
    a, b = np.full((12, 12), 100.0), np.full((12, 12), 50.0)
    c1 = (0.01 * 2) ** 2  # L = 2: the float dtype's range that scikit-image 0.19 assumed
    assert ssim(a, b, "cddfuse") == pytest.approx((2 * 100 * 50 + c1) / (100**2 + 50**2 + c1))
    assert ssim(pair[0], pair[0], "cddfuse") == pytest.approx(1.0)
    with pytest.raises(ValueError, match="at least 7"):
        ssim(np.zeros((6, 9)), np.zeros((6, 9)), "cddfuse")


def test_flat_and_edgeless_sources_follow_each_convention(pair):
    flat = np.full((48, 48), 30.0)
    assert vifp(flat, pair[0][:48, :48], "project") == 0.0
    assert vifp(flat, pair[0][:48, :48], "cddfuse") == 1.0  # their NaN -> 1 rule
    zeros = np.zeros((8, 8))
    assert qabf(zeros, zeros, zeros, "project") == 0.0
    assert math.isnan(qabf(zeros, zeros, zeros, "cddfuse"))


def test_qabf_conventions_differ_by_the_sobel_sign_and_the_equal_strength_rule(pair):
    a, b = pair
    # fine noise: no fused edge exactly as strong as a source edge, where the equal-strength rule would act
    fused = (a + b) / 2 + np.random.default_rng(6).uniform(0, 0.5, a.shape)
    # Sx of the other sign is what mirroring the images left-right gives (up to summation order)
    mirrored = qabf(fused[:, ::-1], a[:, ::-1], b[:, ::-1], "project")
    assert qabf(fused, a, b, "cddfuse") == pytest.approx(mirrored, rel=1e-9)
    assert qabf(fused, a, b, "cddfuse") != pytest.approx(qabf(fused, a, b, "project"), rel=1e-6)
    # identical images: cddfuse takes the fused strength itself (>= 1 on integer images) as the ratio,
    # which lifts Q_g above the ratio-1 value; the orientation term stays at its maximum
    assert qabf(a, a, a, "project") == pytest.approx(QABF_MAX, abs=1e-9)
    assert QABF_MAX < qabf(a, a, a, "cddfuse") <= 0.9994 * 0.9879 / (1 + math.exp(-22 * 0.2))


def test_grey_image_per_convention():
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4)
    for name in CONVENTIONS:
        assert grey_image(grey, name) is grey
        assert np.array_equal(grey_image(cv2.merge([grey] * 3), name), grey)  # 3 equal channels
    bgr = np.array([[[236, 122, 117]]], np.uint8)
    # 0.114·236 + 0.587·122 + 0.299·117 = 133.501 -> 134
    assert grey_image(bgr, "cddfuse")[0, 0] == 134
    assert np.array_equal(grey_image(bgr, "project"), cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))
    with pytest.raises(ValueError, match="8-bit grey or BGR"):
        grey_image(np.zeros((4, 4, 3), np.float32))


def test_fusion_metrics_per_convention(pair):
    a, b = pair
    fused = np.rint((a + b) / 2)
    for name in CONVENTIONS:
        m = fusion_metrics(fused, a, b, name)
        assert tuple(m) == METRIC_KEYS
        assert m["MI"] == pytest.approx(mutual_information(fused, a, name) + mutual_information(fused, b, name))
        assert m["SSIM"] == pytest.approx(ssim(fused, a, name) + ssim(fused, b, name))
        assert m["EN"] == entropy(fused)
    with pytest.raises(ValueError, match="unknown metric convention 'matlab'"):
        fusion_metrics(fused, a, b, "matlab")
