"""What every dataset reader of training/ lists: one Record per pair on disk, and the error for a folder
that does not have its kind's layout. A module of their own, so that the readers of single kinds
(labelled_folders, bag_datasets) and the reader of all kinds (datasets) import them without importing
each other."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


class DatasetLayoutError(FileNotFoundError, ValueError):
    """A dataset folder that does not have its kind's layout (a FileNotFoundError and a ValueError)."""


@dataclass
class Record:
    """One pair on disk, with its boxes already parsed (boxes in the visible image's pixels)."""

    name: str
    ir: Path
    vi: Path | None  # None: `ir` is a 4-channel RGB+T file (MFNet)
    mask: Path | None = None
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    labels: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int64))
