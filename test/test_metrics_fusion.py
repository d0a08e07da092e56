"""Fusion metrics: hand-computed values on tiny images, known properties, noise monotonicity."""
import math
import warnings

import cv2
import numpy as np
import pytest

from fusion_ros.metrics import (
    average_gradient,
    entropy,
    fusion_metrics,
    mutual_information,
    qabf,
    scd,
    spatial_frequency,
    ssim,
    standard_deviation,
    vifp,
)

C1, C2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
QABF_MAX = 0.9994 / (1 + math.exp(-15 * 0.5)) * 0.9879 / (1 + math.exp(-22 * 0.2))


@pytest.fixture(scope="module")
def texture():
    """A smooth random texture (64×80, 0..255) so SSIM/VIF/Qabf react to noise gradually."""
    rng = np.random.default_rng(0)
    img = cv2.GaussianBlur(rng.uniform(0, 255, (64, 80)), (0, 0), 2.0)
    return (img - img.min()) / (img.max() - img.min()) * 255.0


def test_entropy_two_levels_is_one_bit():
    img = np.array([[0, 0, 200, 200]] * 4, dtype=np.uint8)
    assert entropy(img) == 1.0
    assert entropy(img.astype(np.float32)) == 1.0


def test_entropy_extremes():
    assert entropy(np.full((5, 7), 9, np.uint8)) == 0.0
    assert entropy(np.arange(256, dtype=np.uint8).reshape(16, 16)) == pytest.approx(8.0)


def test_standard_deviation_is_population_sd():
    # mean 3, squared deviations 9, 1, 1, 9 -> variance 20/4 = 5
    assert standard_deviation(np.array([[0, 2], [4, 6]], np.uint8)) == pytest.approx(math.sqrt(5))


def test_sf_and_ag_of_a_ramp():
    i, j = np.mgrid[0:6, 0:5]
    ramp = (3 * j + 4 * i).astype(np.float64)  # horizontal step 3, vertical step 4
    assert spatial_frequency(ramp) == pytest.approx(5.0)  # sqrt(3² + 4²)
    assert average_gradient(ramp) == pytest.approx(5.0 / math.sqrt(2))  # sqrt((3² + 4²)/2)


def test_sf_and_ag_by_hand():
    img = np.array([[0, 1], [3, 7]], np.uint8)
    # horizontal diffs 1, 4 -> mean square 8.5; vertical diffs 3, 6 -> 22.5
    assert spatial_frequency(img) == pytest.approx(math.sqrt(8.5 + 22.5))
    # one forward-difference cell at (0, 0): dx = 1, dy = 3
    assert average_gradient(img) == pytest.approx(math.sqrt((1 + 9) / 2))


def test_mutual_information_by_hand(texture):
    a = np.array([[0, 0, 9, 9]] * 2, np.uint8)
    b = np.array([[0, 5, 0, 5]] * 2, np.uint8)
    assert mutual_information(a, b) == pytest.approx(0.0, abs=1e-12)  # independent
    assert mutual_information(a, 255 - a) == pytest.approx(1.0)  # a relabelling of a 1-bit image
    assert mutual_information(texture, texture) == pytest.approx(entropy(texture))
    assert mutual_information(np.full_like(texture, 77), texture) == 0.0
    assert mutual_information(texture, texture[::-1]) == pytest.approx(mutual_information(texture[::-1], texture))


def test_fusion_mi_of_identical_images_is_twice_entropy(texture):
    assert fusion_metrics(texture, texture, texture)["MI"] == pytest.approx(2 * entropy(texture))


def test_ssim_properties(texture):
    assert ssim(texture, texture) == pytest.approx(1.0)
    other = np.roll(texture, 5, axis=1)
    assert ssim(texture, other) == pytest.approx(ssim(other, texture))
    # two constants: only the luminance term remains, (2ab + C1) / (a² + b² + C1)
    a, b = np.full((16, 16), 100.0), np.full((16, 16), 50.0)
    assert ssim(a, b) == pytest.approx((2 * 100 * 50 + C1) / (100**2 + 50**2 + C1))


def test_vif_properties(texture):
    assert vifp(texture, texture) == pytest.approx(1.0, abs=1e-6)
    assert vifp(np.full_like(texture, 30.0), texture) == 0.0  # flat reference: nothing to preserve
    assert 0.0 < vifp(texture, np.clip(texture * 0.5 + 60, 0, 255)) < 1.0


def test_qabf_properties(texture):
    # F = IR = VI: every edge kept with strength ratio 1 and equal orientation -> the model's maximum
    assert qabf(texture, texture, texture) == pytest.approx(QABF_MAX, abs=1e-9)
    assert QABF_MAX == pytest.approx(0.97479, abs=1e-5)
    # an all-black fused image keeps no edge: Q_g = Tg/(1 + e^7.5) ≈ 5.5e-4
    assert qabf(np.zeros_like(texture), texture, texture[::-1]) < 1e-3
    assert qabf(np.zeros((8, 8)), np.zeros((8, 8)), np.zeros((8, 8))) == 0.0  # no source edges


def test_fusion_metrics_matches_single_metrics(texture):
    ir = texture
    vi = np.clip(255 - texture * 0.8, 0, 255)
    fused = (ir + vi) / 2
    m = fusion_metrics(fused, ir.astype(np.float32), np.rint(vi).astype(np.uint8))
    vi8 = np.rint(vi).astype(np.uint8)
    assert set(m) == {"EN", "SD", "SF", "AG", "MI", "SCD", "VIF", "Qabf", "SSIM"}
    assert all(isinstance(v, float) for v in m.values())
    assert m["EN"] == pytest.approx(entropy(fused))
    assert m["SD"] == pytest.approx(standard_deviation(fused))
    assert m["SF"] == pytest.approx(spatial_frequency(fused))
    assert m["AG"] == pytest.approx(average_gradient(fused))
    assert m["MI"] == pytest.approx(mutual_information(fused, ir) + mutual_information(fused, vi8))
    assert m["VIF"] == pytest.approx(vifp(ir, fused) + vifp(vi8, fused))
    assert m["SSIM"] == pytest.approx(ssim(fused, ir) + ssim(fused, vi8))
    assert m["Qabf"] == pytest.approx(qabf(fused, ir, vi8))
    assert m["SCD"] == pytest.approx(scd(fused, ir, vi8))


def test_constant_images_are_finite_without_warnings(texture):
    flat = np.full((48, 48), 128, np.uint8)
    black = np.zeros((48, 48), np.uint8)
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        for f, a, b in [(flat, flat, flat), (black, black, black), (flat, texture[:48, :48], black)]:
            m = fusion_metrics(f, a, b)
            assert all(math.isfinite(v) for v in m.values()), m
    m = fusion_metrics(flat, flat, flat)
    assert (m["EN"], m["SD"], m["SF"], m["AG"], m["MI"], m["SCD"], m["VIF"], m["SSIM"]) == (0, 0, 0, 0, 0, 0, 0, 2.0)


def test_more_noise_on_fused_lowers_ssim_vif_qabf(texture):
    rng = np.random.default_rng(1)
    noise = rng.normal(0, 1, texture.shape)
    scores = []
    for sigma in (0, 3, 10, 30):
        fused = np.clip(texture + sigma * noise, 0, 255)
        m = fusion_metrics(fused, texture, texture)
        scores.append((m["SSIM"], m["VIF"], m["Qabf"]))
    for prev, nxt in zip(scores, scores[1:]):
        assert all(n < p for p, n in zip(prev, nxt)), scores


@pytest.mark.parametrize(
    "fused, ir, vi, match",
    [
        (np.zeros((48, 48)), np.zeros((48, 49)), np.zeros((48, 48)), "same shape"),
        (np.zeros((48, 48, 3)), np.zeros((48, 48)), np.zeros((48, 48)), "2-D"),
        (np.full((48, 48), np.nan), np.zeros((48, 48)), np.zeros((48, 48)), "NaN"),
        (np.full((48, 48), 300.0), np.zeros((48, 48)), np.zeros((48, 48)), "0..255"),
        (np.zeros((30, 48)), np.zeros((30, 48)), np.zeros((30, 48)), "at least 41"),
        (np.zeros((48, 48), bool), np.zeros((48, 48)), np.zeros((48, 48)), "dtype"),
    ],
)
def test_invalid_inputs_raise(fused, ir, vi, match):
    with pytest.raises(ValueError, match=match):
        fusion_metrics(fused, ir, vi)


def test_single_metric_validation():
    with pytest.raises(ValueError, match="same shape"):
        ssim(np.zeros((16, 16)), np.zeros((16, 17)))
    with pytest.raises(ValueError, match="at least 11"):
        ssim(np.zeros((10, 16)), np.zeros((10, 16)))
    with pytest.raises(ValueError, match="NaN"):
        entropy(np.array([[1.0, np.inf]]))
