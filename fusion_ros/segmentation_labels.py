"""What a model's segmentation head was trained on: the ``segmentation_labels`` of its model file and of its
ONNX / TensorRT sidecars, written by training (training/train.py) and read by the engines (ModelInfo).

    real       per-pixel labels of real camera images (e.g. MSRS, FMB, MFNet masks; a recorded bag's labels)
    synthetic  per-pixel labels of generated scenes only (fusion_ros.synthetic, fusion-make-sample-bag)
    none       no per-pixel labels: the head only drifted with the shared backbone; its masks are noise
    unknown    not recorded (a file written before the field existed), or learnt from such a model's own
               pseudo-labels: taken as untrained

The node publishes a segmentation only from a head trained on real labels, unless
``allow_segmentation_without_real_labels`` is set; the evaluators draw the segmentation panel and score mIoU
only for a head trained on labels (real or synthetic). Torch-free: the engines import it.
"""
from __future__ import annotations

from typing import Iterable

REAL, SYNTHETIC, NONE, UNKNOWN = "real", "synthetic", "none", "unknown"
VALUES = (REAL, SYNTHETIC, NONE, UNKNOWN)
_RANK = {NONE: 0, UNKNOWN: 1, SYNTHETIC: 2, REAL: 3}
DESCRIPTIONS = {
    REAL: "was trained on real camera labels",
    SYNTHETIC: "was trained on generated scenes only, never on real camera labels",
    NONE: "was trained on no segmentation labels: its masks are noise",
    UNKNOWN: "does not record what it was trained on (a model file from before that record): taken as untrained",
}


def checked(value, where: str) -> str:
    """``value`` as recorded (absent: UNKNOWN); ValueError naming ``where`` for anything else."""
    if value is None:
        return UNKNOWN
    if value not in VALUES:
        raise ValueError(f"{where}: segmentation_labels must be one of {', '.join(VALUES)}, got {value!r}")
    return value


def trained(value: str) -> bool:
    """Whether the head learnt from labels of any kind (its masks mean something on data like its labels')."""
    return value in (REAL, SYNTHETIC)


def combined(values: Iterable[str]) -> str:
    """What a head trained on the labels of all ``values`` (datasets, the model it started from) was trained on:
    the most real of them."""
    return max(values, key=_RANK.__getitem__, default=NONE)


def not_shown_reason(value: str) -> str:
    """The evaluators' note for a head not trained on labels: why its segmentation is left out."""
    return (f"the model's segmentation head {DESCRIPTIONS[value]} (segmentation_labels: {value}): its masks are "
            "neither drawn nor scored")
