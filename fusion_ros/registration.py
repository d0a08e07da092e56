"""IR -> RGB registration: warp the thermal frame into the RGB camera's pixel grid before the engine.

The fusion network assumes pixel-aligned inputs. Thermal and RGB cameras sit side by side, so the
thermal image is mapped by a 3×3 homography (exact for a planar scene or a pure rotation, a good
approximation for distant scenes). The node and the bag evaluator both build it from the same config.
"""
from __future__ import annotations

import cv2
import numpy as np

_HOMOGRAPHY_KEYS = {"homography"}
_PLANAR_KEYS = {"intrinsics_ir", "intrinsics_rgb", "rotation", "translation", "plane_distance"}
_BORDERS = {"constant": cv2.BORDER_CONSTANT, "replicate": cv2.BORDER_REPLICATE}


def _matrix(value, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """Validated float64 array; any layout with the right element count is read row-major, because ROS
    parameters hold only flat arrays (a 3×3 arrives as 9 numbers) and stereoCalibrate's t is 3×1."""
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"registration '{name}' must be numeric with shape {shape}, got {value!r}") from None
    if array.size == int(np.prod(shape)):
        array = array.reshape(shape)
    if array.shape != shape:
        raise ValueError(f"registration '{name}' must have shape {shape}, got {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"registration '{name}' contains NaN or inf: {array.tolist()}")
    return array


def _check_invertible(matrix: np.ndarray, name: str) -> None:
    # scale-free test: a homography is defined up to scale, so compare singular values, not det
    singular = np.linalg.svd(matrix, compute_uv=False)
    if singular[-1] <= 1e-12 * singular[0]:
        raise ValueError(f"registration '{name}' is singular (not invertible): {matrix.tolist()}")


def planar_homography(
    intrinsics_ir, intrinsics_rgb, rotation, translation, plane_distance: float
) -> np.ndarray:
    """Homography induced by the plane Z_ir = d in front of the IR camera.

    Convention (that of cv2.stereoCalibrate with the IR camera first): a point X_ir in IR camera
    coordinates is X_rgb = R·X_ir + t in RGB coordinates; t and d in the same unit. Points on the plane
    satisfy nᵀX_ir / d = 1 with n = (0, 0, 1), so X_rgb = (R + t·nᵀ/d)·X_ir and
    H = K_rgb (R + t nᵀ/d) K_ir⁻¹. (Texts writing R − t nᵀ/d put the plane at nᵀX = −d.)
    """
    k_ir = _matrix(intrinsics_ir, "intrinsics_ir", (3, 3))
    k_rgb = _matrix(intrinsics_rgb, "intrinsics_rgb", (3, 3))
    r = _matrix(rotation, "rotation", (3, 3))
    t = _matrix(translation, "translation", (3,))
    _check_invertible(k_ir, "intrinsics_ir")
    _check_invertible(k_rgb, "intrinsics_rgb")
    if not np.allclose(r @ r.T, np.eye(3), atol=1e-3) or np.linalg.det(r) < 0:
        raise ValueError(
            f"registration 'rotation' must be a proper rotation matrix (RᵀR = I, det +1), got {r.tolist()}"
        )
    try:
        d = float(plane_distance)
    except (TypeError, ValueError):
        raise ValueError(f"registration 'plane_distance' must be a number, got {plane_distance!r}") from None
    if not (np.isfinite(d) and d > 0):
        raise ValueError(f"registration 'plane_distance' must be finite and > 0, got {d}")
    normal = np.array([0.0, 0.0, 1.0])
    return k_rgb @ (r + np.outer(t, normal) / d) @ np.linalg.inv(k_ir)


class Registration:
    """A thermal -> RGB pixel mapping: identity (frames already registered) or a homography.

    ``border`` sets what fills RGB pixels outside the thermal field of view: "constant" (0, the default:
    no invented data; warp the normalised 0..1 frame so 0 means "coldest", and warp after any "auto"
    normalisation so the fill does not skew the percentiles) or "replicate" (smears the edge pixels).
    """

    def __init__(self, homography: np.ndarray | None = None, border: str = "constant"):
        if border not in _BORDERS:
            raise ValueError(f"registration 'border' must be one of {sorted(_BORDERS)}, got {border!r}")
        self.border = border
        if homography is None:
            self.homography = None
            return
        h = _matrix(homography, "homography", (3, 3))
        _check_invertible(h, "homography")
        self.homography = h / h[2, 2] if h[2, 2] != 0 else h

    @classmethod
    def from_config(cls, config: dict | None) -> Registration:
        """From a config dict: ``{"homography": 3×3}`` (thermal pixel -> RGB pixel), or the planar keys
        ``intrinsics_ir, intrinsics_rgb, rotation, translation, plane_distance`` (see planar_homography),
        or nothing/empty for identity; an optional ``border`` with any of them."""
        config = dict(config or {})
        border = config.pop("border", "constant")
        keys = set(config)
        if not keys:
            return cls(None, border)
        if keys == _HOMOGRAPHY_KEYS:
            return cls(config["homography"], border)
        if keys == _PLANAR_KEYS:
            return cls(planar_homography(**config), border)
        raise ValueError(
            f"registration config must have either 'homography' or all of {sorted(_PLANAR_KEYS)} "
            f"(plus optional 'border'), got keys {sorted(keys)}"
        )

    @property
    def is_identity(self) -> bool:
        return self.homography is None

    def warp_thermal(self, thermal: np.ndarray, out_size: tuple[int, int]) -> np.ndarray:
        """Thermal frame -> the RGB grid of ``out_size = (width, height)``, bilinear.

        Identity returns the input itself when the size already matches and resizes it otherwise.
        """
        width, height = (int(v) for v in out_size)
        if width <= 0 or height <= 0:
            raise ValueError(f"out_size must be a positive (width, height), got {out_size}")
        thermal = np.asarray(thermal)
        if thermal.ndim != 2 or thermal.size == 0:
            raise ValueError(f"thermal frame must be a non-empty H×W array, got shape {thermal.shape}")
        if self.homography is None:
            if thermal.shape == (height, width):
                return thermal
            return cv2.resize(thermal, (width, height), interpolation=cv2.INTER_LINEAR)
        return cv2.warpPerspective(
            thermal,
            self.homography,
            (width, height),
            flags=cv2.INTER_LINEAR,
            borderMode=_BORDERS[self.border],
            borderValue=0,
        )
