"""The node's parameters outside a running node: a params file and overrides -> a validated NodeConfig, as
``ros2 run fusion_ros fusion_node --ros-args --params-file F -p k:=v`` would configure it. Used by the bag
evaluator and the trainer's bag cache (so both pair frames as the configured node does)."""
from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from . import node_core as core


def load_node_params(params_file: str | None, overrides: dict, model: str | None, backend: str | None,
                     device: str | None) -> core.NodeConfig:
    """The node's validated parameters: defaults <- params file (ros__parameters of any node entry,
    as `ros2 run --params-file` reads them) <- overrides <- model/backend/device. ParamError names what is
    wrong (an unreadable file too)."""
    raw = read_params_file(params_file) if params_file else {}
    raw.update(overrides)
    if model is not None:
        raw["model_path"] = str(model)
    if backend is not None:
        raw["backend"] = backend
    if device is not None:
        raw["device"] = device
    return core.validate_params(raw)


def read_params_file(params_file: str | Path) -> dict:
    """The parameters (dotted names -> raw values) of a ROS params file: the ros__parameters of every node
    entry, as `ros2 run --params-file` reads them. ParamError when it cannot be read."""
    try:
        data = yaml.safe_load(Path(params_file).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise core.ParamError([f"cannot read params file {params_file}: {exc}"]) from None
    raw: dict = {}
    for entry in data.values() if isinstance(data, dict) else []:
        if isinstance(entry, dict) and isinstance(entry.get("ros__parameters"), dict):
            raw.update(_flatten(entry["ros__parameters"]))
    return raw


def registration_overrides(params_file: str | Path) -> dict:
    """The registration.* parameters of a params file (e.g. fusion-calibrate's), to layer over other settings;
    ParamError when it sets none."""
    found = {k: v for k, v in read_params_file(params_file).items() if k.startswith("registration.")}
    if not found:
        raise core.ParamError([f"{params_file} sets no registration.* parameter (expected fusion-calibrate's "
                               "output: registration.mode, registration.homography, registration.thermal_width/height)"])
    return found


def _flatten(params: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


def parse_param(text: str) -> tuple[str, object]:
    """A command line's ``NAME=VALUE`` (argparse type): the value read as YAML, as ``-p`` does for the node."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got '{text}'")
    name, value = text.split("=", 1)
    try:
        parsed = yaml.safe_load(value) if value != "" else ""
    except yaml.YAMLError:
        parsed = value
    return name.strip(), parsed
