"""Where the detection head's outputs sit in the input image: the FCOS point grid, in numpy.

The head emits one row per location of the stride-8/16/32 feature maps, row-major per level. Decoding
boxes needs each location's centre; the runtime (post-processing on ONNX Runtime / TensorRT) must get it
without importing torch, so the grid is computed here and the torch model code wraps it.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

FPN_STRIDES = (8, 16, 32)


@lru_cache(maxsize=16)
def head_points(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Centres (N, 2) x, y in pixels and the stride (N,) of every head location, in head output order.

    Each stride-2 stage of the backbone (3x3 conv, padding 1) rounds up: a 45-pixel side gives 23, 12, 6, 3.
    The arrays are cached and read-only: copy before writing.
    """
    points, strides = [], []
    h, w = height, width
    for stride in (2, 4) + FPN_STRIDES:
        h, w = (h + 1) // 2, (w + 1) // 2
        if stride not in FPN_STRIDES:
            continue
        grid_y, grid_x = np.meshgrid((np.arange(h) + 0.5) * stride, (np.arange(w) + 0.5) * stride, indexing="ij")
        points.append(np.stack([grid_x.reshape(-1), grid_y.reshape(-1)], axis=1))
        strides.append(np.full(h * w, float(stride)))
    out = np.concatenate(points).astype(np.float32), np.concatenate(strides).astype(np.float32)
    for array in out:
        array.flags.writeable = False
    return out
