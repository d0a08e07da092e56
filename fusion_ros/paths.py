"""Where the package's data files live, in a source checkout, a pip install or a colcon install."""
from __future__ import annotations

import sys
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parent
# the bundled model; here rather than in checkpoint (torch) so the runtime finds it without importing torch
DEFAULT_MODEL = PACKAGE_ROOT / "models" / "default.pt"


def _candidates(sub: str) -> list[Path]:
    return [
        PACKAGE_ROOT.parent / sub,  # source checkout / editable install
        Path(sys.prefix) / "share" / "fusion_ros" / sub,  # pip or colcon install (data_files)
    ]


def data_dir(sub: str) -> Path:
    """Return the first existing `sub` folder (config, launch) of this package."""
    for path in _candidates(sub):
        if path.is_dir():
            return path
    try:  # a sourced ROS workspace that installed us elsewhere
        from ament_index_python.packages import get_package_share_directory

        path = Path(get_package_share_directory("fusion_ros")) / sub
        if path.is_dir():
            return path
    except (ImportError, LookupError):
        pass
    tried = ", ".join(str(p) for p in _candidates(sub))
    raise FileNotFoundError(f"fusion_ros data folder '{sub}' not found (looked in {tried})")


def config_path(name: str) -> Path:
    """Path of a file in the package's config folder, e.g. config_path('classes.yaml')."""
    path = data_dir("config") / name
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    return path
