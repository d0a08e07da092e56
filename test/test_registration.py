"""IR -> RGB registration: identity, homography warps, the planar stereo formula and config validation."""
import cv2
import numpy as np
import pytest

from fusion_ros.registration import Registration, planar_homography

K_IR = np.array([[400.0, 0, 320], [0, 400.0, 256], [0, 0, 1]])
K_RGB = np.array([[900.0, 0, 640], [0, 900.0, 360], [0, 0, 1]])


def _rotation(rx, ry, rz):
    return cv2.Rodrigues(np.array([rx, ry, rz], dtype=np.float64))[0]


@pytest.mark.parametrize("config", [None, {}, {"border": "replicate"}])
def test_identity_is_exact_and_free(config):
    reg = Registration.from_config(config)
    thermal = np.random.default_rng(0).random((48, 64), dtype=np.float32)
    assert reg.is_identity
    assert reg.warp_thermal(thermal, (64, 48)) is thermal


def test_identity_resizes_when_sizes_differ():
    thermal = np.full((24, 32), 0.25, np.float32)
    out = Registration.from_config({}).warp_thermal(thermal, (64, 48))
    assert out.shape == (48, 64) and out.dtype == np.float32
    np.testing.assert_allclose(out, 0.25)


def test_translation_moves_a_dot():
    thermal = np.zeros((40, 50), np.float32)
    thermal[7, 10] = 1.0  # (x=10, y=7)
    reg = Registration.from_config({"homography": [[1, 0, 5], [0, 1, 3], [0, 0, 1]]})
    out = reg.warp_thermal(thermal, (60, 45))
    assert out.shape == (45, 60)
    assert np.argwhere(out == out.max()).tolist() == [[10, 15]] and out[10, 15] == 1.0
    assert out.sum() == pytest.approx(1.0)


def test_homography_scale_is_irrelevant_and_16bit_is_kept():
    thermal = (np.arange(30 * 40, dtype=np.uint16).reshape(30, 40) * 20)
    h = np.array([[1.1, 0.02, -3], [0.01, 0.95, 2], [1e-4, 0, 1]])
    one = Registration(h).warp_thermal(thermal, (40, 30))
    two = Registration(2.5 * h).warp_thermal(thermal, (40, 30))
    assert one.dtype == np.uint16
    np.testing.assert_array_equal(one, two)


def test_border_modes():
    thermal = np.full((10, 10), 0.5, np.float32)
    shift = {"homography": [[1, 0, 3], [0, 1, 0], [0, 0, 1]]}  # the 3 left columns see no thermal data
    constant = Registration.from_config(shift).warp_thermal(thermal, (10, 10))
    replicate = Registration.from_config({**shift, "border": "replicate"}).warp_thermal(thermal, (10, 10))
    np.testing.assert_array_equal(constant[:, :3], 0.0)
    np.testing.assert_array_equal(replicate, 0.5)


def test_planar_formula_without_baseline_reduces_to_intrinsics():
    h = planar_homography(K_IR, K_RGB, np.eye(3), [0, 0, 0], 10.0)
    np.testing.assert_allclose(h, K_RGB @ np.linalg.inv(K_IR), atol=1e-12)


def test_flat_ros_parameter_arrays_are_accepted():
    flat = {"intrinsics_ir": K_IR.ravel().tolist(), "intrinsics_rgb": K_RGB.ravel().tolist(),
            "rotation": np.eye(3).ravel().tolist(), "translation": [[0.1], [0.0], [0.0]], "plane_distance": 5}
    nested = {**flat, "intrinsics_ir": K_IR, "intrinsics_rgb": K_RGB, "rotation": np.eye(3),
              "translation": [0.1, 0, 0]}
    np.testing.assert_array_equal(Registration.from_config(flat).homography,
                                  Registration.from_config(nested).homography)
    h = Registration.from_config({"homography": [1, 0, 5, 0, 1, 3, 0, 0, 1]}).homography
    np.testing.assert_array_equal(h, [[1, 0, 5], [0, 1, 3], [0, 0, 1]])


def test_planar_formula_matches_projecting_points_on_the_plane():
    # X_rgb = R X_ir + t (cv2.stereoCalibrate with the IR camera first); scene plane Z_ir = 8 m
    r, t, d = _rotation(0.01, -0.03, 0.005), np.array([-0.12, 0.02, 0.01]), 8.0
    config = {"intrinsics_ir": K_IR.tolist(), "intrinsics_rgb": K_RGB.tolist(), "rotation": r.tolist(),
              "translation": t.tolist(), "plane_distance": d}
    reg = Registration.from_config(config)
    ir_pixels = np.array([[0.0, 0.0], [320, 256], [639, 511], [100, 400]])
    rays = np.linalg.inv(K_IR) @ np.vstack([ir_pixels.T, np.ones(len(ir_pixels))])
    points_ir = rays * (d / rays[2])  # back-project onto Z = d
    projected = K_RGB @ (r @ points_ir + t[:, None])
    expected = (projected[:2] / projected[2]).T
    mapped = cv2.perspectiveTransform(ir_pixels[None], reg.homography)[0]
    np.testing.assert_allclose(mapped, expected, atol=1e-9)


GOOD_PLANAR = {"intrinsics_ir": K_IR, "intrinsics_rgb": K_RGB, "rotation": np.eye(3),
               "translation": [0.1, 0, 0], "plane_distance": 5.0}


@pytest.mark.parametrize(
    "config,message",
    [
        ({"homography": [[1, 0, 0], [0, 1, 0], [0, 0, 0]]}, "singular"),
        ({"homography": [[1, 2, 3], [2, 4, 6], [0, 0, 1]]}, "singular"),
        ({"homography": [[1, 0, np.nan], [0, 1, 0], [0, 0, 1]]}, "NaN"),
        ({"homography": [[1, 0, 0], [0, 1, 0]]}, r"shape \(3, 3\)"),
        ({"homography": "identity"}, "numeric"),
        ({"homograpy": np.eye(3).tolist()}, "homograpy"),
        ({"homography": np.eye(3), "plane_distance": 3.0}, "either 'homography'"),
        ({k: v for k, v in GOOD_PLANAR.items() if k != "rotation"}, "got keys"),
        ({**GOOD_PLANAR, "rotation": [0.1, 0.2, 0.3]}, r"'rotation' must have shape \(3, 3\)"),  # Rodrigues
        ({**GOOD_PLANAR, "rotation": 2 * np.eye(3)}, "proper rotation"),
        ({**GOOD_PLANAR, "rotation": np.diag([1.0, 1.0, -1.0])}, "proper rotation"),
        ({**GOOD_PLANAR, "plane_distance": 0.0}, "> 0"),
        ({**GOOD_PLANAR, "intrinsics_ir": np.zeros((3, 3))}, "'intrinsics_ir' is singular"),
        ({**GOOD_PLANAR, "translation": [0.1, 0]}, r"'translation' must have shape \(3,\)"),
        ({"border": "wrap"}, "border"),
    ],
)
def test_bad_configs_raise(config, message):
    with pytest.raises(ValueError, match=message):
        Registration.from_config(config)


def test_bad_warp_arguments():
    reg = Registration.from_config({})
    with pytest.raises(ValueError, match="out_size"):
        reg.warp_thermal(np.zeros((4, 4), np.float32), (0, 4))
    with pytest.raises(ValueError, match="H×W"):
        reg.warp_thermal(np.zeros((4, 4, 3), np.float32), (4, 4))
