"""Class lists (names + colours) for detection and segmentation, read from a YAML file."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from .paths import config_path


@dataclass(frozen=True)
class ClassList:
    names: tuple[str, ...]
    colors: np.ndarray  # (K, 3) uint8 RGB

    def __len__(self) -> int:
        return len(self.names)

    def index(self, name: str) -> int:
        return self.names.index(name)


@dataclass(frozen=True)
class ClassConfig:
    detection: ClassList
    segmentation: ClassList


def _class_list(entries, key: str, path: Path) -> ClassList:
    if not entries:
        raise ValueError(f"{path}: '{key}' must list at least one class")
    try:
        names = tuple(str(e["name"]) for e in entries)
        colors = np.array([e["color"] for e in entries], dtype=np.uint8).reshape(len(names), 3)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: every '{key}' entry needs a name and an RGB color ({exc})") from exc
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: duplicate class names in '{key}'")
    return ClassList(names, colors)


def load_classes(path: str | Path | None = None) -> ClassConfig:
    """Load a class file (default: the package's config/classes.yaml)."""
    path = Path(path) if path is not None else config_path("classes.yaml")
    with open(path) as f:
        raw = yaml.safe_load(f) or {}
    return ClassConfig(
        detection=_class_list(raw.get("detection"), "detection", path),
        segmentation=_class_list(raw.get("segmentation"), "segmentation", path),
    )
