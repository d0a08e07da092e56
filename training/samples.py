"""The trainer's sample: one thermal/RGB pair with its labels as tensors (training/data.py describes the
dict). Every dataset, generated or read from disk, builds its samples here."""
from __future__ import annotations

import numpy as np
import torch

from fusion_ros.image_conversions import thermal_to_float

NO_LABEL = 255  # segmentation target: no label (skipped by the loss)


def to_sample(thermal, rgb, boxes, labels, mask, name, thermal_range) -> dict:
    """numpy pair (thermal uint16/uint8 HxW, rgb uint8 HxWx3 RGB) -> the tensor dict the trainer reads."""
    encoding = "mono16" if thermal.dtype == np.uint16 else "mono8"
    low, high = thermal_range if encoding == "mono16" else (None, None)
    ir = thermal_to_float(thermal, encoding, "fixed", low, high)
    return {
        "thermal": torch.from_numpy(ir)[None],
        "rgb": torch.from_numpy(rgb).permute(2, 0, 1).float().div_(255.0),
        "boxes": torch.as_tensor(np.asarray(boxes, np.float32).reshape(-1, 4)),
        "labels": torch.as_tensor(np.asarray(labels, np.int64).reshape(-1)),
        "mask": None if mask is None else torch.from_numpy(mask.astype(np.int64)),
        "name": name,
    }
