"""Model files: a FusedPerceptionNet's weights with everything needed to rebuild and use it.

A model file is a torch.save'd dict:
    format: "fusion_ros.model/1"
    model_config: ModelConfig.to_dict()
    state_dict: the network's weights
    det_classes / seg_classes: class names (in head output order)
    input_size: [height, width] the model was trained for / exports at by default
    thermal_range: [low, high] 16-bit counts mapped to 0..1 (see image_conversions.thermal_to_float)
    segmentation_labels: what the segmentation head was trained on (fusion_ros.segmentation_labels; files
        without it read as "unknown")
    info: free-form provenance (training config, metrics, date)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from .image_conversions import THERMAL_RANGE_CENTIKELVIN
from .model import FusedPerceptionNet, ModelConfig
from .paths import DEFAULT_MODEL, PACKAGE_ROOT
from .segmentation_labels import NONE, UNKNOWN, checked

FORMAT = "fusion_ros.model/1"
# the synthetic-scene model (the generator's six classes): for the tests and benchmarks on generated scenes
SYNTHETIC_MODEL = PACKAGE_ROOT / "models" / "synthetic.pt"


@dataclass
class ModelMeta:
    det_classes: list[str]
    seg_classes: list[str]
    input_size: tuple[int, int] = (512, 640)
    thermal_range: tuple[float, float] = THERMAL_RANGE_CENTIKELVIN
    info: dict = field(default_factory=dict)
    segmentation_labels: str = UNKNOWN  # real | synthetic | none | unknown (fusion_ros.segmentation_labels)


def save_model(path: str | Path, model: FusedPerceptionNet, meta: ModelMeta) -> None:
    """Write atomically (temp file + rename) so a crash never leaves a half-written model."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "model_config": model.cfg.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "det_classes": list(meta.det_classes),
        "seg_classes": list(meta.seg_classes),
        "input_size": list(meta.input_size),
        "thermal_range": list(meta.thermal_range),
        "segmentation_labels": checked(meta.segmentation_labels, str(path)),
        "info": meta.info,
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


def load_model(path: str | Path | None = None, device: str = "cpu") -> tuple[FusedPerceptionNet, ModelMeta]:
    """Load a model file (default: the bundled model). Errors name the file and what is wrong."""
    path = Path(path) if path is not None else DEFAULT_MODEL
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    try:
        payload = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # torch raises many types for truncated/corrupt files
        raise ValueError(f"cannot read model file {path}: {exc}") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path} is not a fusion_ros model file (expected format {FORMAT})")
    cfg = ModelConfig.from_dict(payload["model_config"])
    meta = ModelMeta(
        det_classes=list(payload["det_classes"]),
        seg_classes=list(payload["seg_classes"]),
        input_size=tuple(payload["input_size"]),
        thermal_range=tuple(payload["thermal_range"]),
        info=payload.get("info", {}),
        segmentation_labels=checked(payload.get("segmentation_labels"), str(path)),
    )
    if len(meta.det_classes) != cfg.num_det_classes or len(meta.seg_classes) != cfg.num_seg_classes:
        raise ValueError(f"{path}: class lists do not match the model's heads")
    model = FusedPerceptionNet(cfg)
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        raise ValueError(f"{path}: weights do not fit the model config: {exc}") from exc
    return model.to(device).eval(), meta


def save_untrained_model(path: str | Path, input_size: tuple[int, int] = (512, 640), seed: int = 0) -> Path:
    """A randomly initialised default-size model with the package's classes.

    For timing (compute does not depend on the weights) and for tests that need a real model file.
    """
    from .classes import load_classes

    torch.manual_seed(seed)
    classes = load_classes()
    meta = ModelMeta(list(classes.detection.names), list(classes.segmentation.names), input_size=tuple(input_size),
                     info={"version": "untrained (random weights)"}, segmentation_labels=NONE)
    save_model(path, FusedPerceptionNet(ModelConfig()), meta)
    return Path(path)
