"""JSON sidecars: what an exported ONNX graph or a built TensorRT engine is, written next to it.

    model.onnx        + model.onnx.json     (format fusion_ros.onnx/1, written by fusion-export)
    model.engine      + model.engine.json   (format fusion_ros.tensorrt/1, written by fusion-build-engine)

An ONNX sidecar records the input names/shapes/dtypes, the normalisation, class names, output layout,
model version, ONNX sha256, opset, torch version and export date. An engine sidecar is the ONNX sidecar
of the graph it was built from plus a "tensorrt" block (TensorRT version, GPU, precision, hashes), so an
engine is usable on its own. The sha256 in a sidecar must match the file beside it: that catches a
truncated copy, a corrupt download and a sidecar that belongs to another export.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from ..segmentation_labels import checked
from .base import INPUT_NAMES, OUTPUT_NAMES, ModelFileError, ModelInfo, SidecarError

ONNX_FORMAT = "fusion_ros.onnx/1"
ENGINE_FORMAT = "fusion_ros.tensorrt/1"
_REQUIRED = ("det_classes", "seg_classes", "input_size", "thermal_range", "inputs", "outputs")


def sidecar_path(artifact: str | Path) -> Path:
    artifact = Path(artifact)
    return artifact.with_name(artifact.name + ".json")


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def relative_path(path: str | Path, folder: str | Path) -> str:
    """``path`` relative to ``folder`` (POSIX separators): what a sidecar or metrics file records of another
    file, so that a copied folder still finds it, on any machine (an absolute path points nowhere there)."""
    return Path(os.path.relpath(Path(path).resolve(), Path(folder).resolve())).as_posix()


def source_model_path(artifact: str | Path, data: dict) -> Path | None:
    """The model file a sidecar's ``source_model`` names, resolved against the artifact's folder (sidecars
    written before paths were relative hold an absolute one, which this leaves as it is), or None."""
    name = (data.get("source_model") or {}).get("file")
    return Path(artifact).parent / name if name else None


def write_json_atomic(path: str | Path, data: dict) -> Path:
    path = Path(path)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)
    return path


def write_sidecar(artifact: str | Path, data: dict) -> Path:
    return write_json_atomic(sidecar_path(artifact), data)


def read_sidecar(artifact: str | Path, expected_format: str | None = None) -> dict:
    """Read and sanity-check the sidecar of `artifact` (SidecarError naming both files otherwise)."""
    artifact = Path(artifact)
    path = sidecar_path(artifact)
    tool = "fusion-build-engine" if expected_format == ENGINE_FORMAT else "fusion-export"
    if not path.is_file():
        raise SidecarError(
            f"sidecar {path} for {artifact} is missing: it carries the class names, input size and "
            f"normalisation; re-create both files with {tool} (they are written together)"
        )
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SidecarError(f"sidecar {path} is not readable JSON ({exc}); re-create it with {tool}") from None
    if not isinstance(data, dict):
        raise SidecarError(f"sidecar {path} must hold a JSON object; re-create it with {tool}")
    if expected_format is not None and data.get("format") != expected_format:
        raise SidecarError(
            f"sidecar {path} has format {data.get('format')!r}, expected {expected_format!r}: "
            f"is {artifact.name} the right kind of file? re-create it with {tool}"
        )
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise SidecarError(f"sidecar {path} lacks {', '.join(missing)}; re-create it with {tool}")
    return data


def verify_sha256(artifact: str | Path, expected: str | None, what: str = "file") -> str:
    """sha256 of `artifact`, which must equal `expected` (ModelFileError for a missing file)."""
    artifact = Path(artifact)
    if not artifact.is_file():
        raise ModelFileError(f"{what} not found: {artifact}")
    actual = sha256_file(artifact)
    if expected is None:
        raise SidecarError(f"sidecar {sidecar_path(artifact)} records no sha256 for {artifact}")
    if actual != expected:
        raise SidecarError(
            f"{artifact} does not match its sidecar {sidecar_path(artifact).name}: sha256 {actual[:16]}… "
            f"!= recorded {expected[:16]}… (truncated/corrupted copy, or a sidecar of another export); "
            "copy both files again or re-export"
        )
    return actual


def model_info_from_sidecar(data: dict, source: str | Path) -> ModelInfo:
    try:
        inputs = {entry["name"]: entry for entry in data["inputs"]}
        if set(inputs) != set(INPUT_NAMES):
            raise KeyError(f"inputs {sorted(inputs)} != {list(INPUT_NAMES)}")
        outputs = {entry["name"] for entry in data["outputs"]}
        if not set(OUTPUT_NAMES) <= outputs:
            raise KeyError(f"outputs {sorted(outputs)} lack some of {list(OUTPUT_NAMES)}")
        shape = inputs["rgb"]["shape"]
        fixed_batch = shape[0] if isinstance(shape[0], int) else None
        dynamic = not all(isinstance(v, int) for v in shape[2:])
        return ModelInfo(
            det_classes=tuple(str(c) for c in data["det_classes"]),
            seg_classes=tuple(str(c) for c in data["seg_classes"]),
            input_size=(int(data["input_size"][0]), int(data["input_size"][1])),
            thermal_range=(float(data["thermal_range"][0]), float(data["thermal_range"][1])),
            dynamic=dynamic,
            fixed_batch=fixed_batch,
            model_version=str(data.get("model_version", "")),
            source=str(source),
            chroma=str((data.get("model_config") or {}).get("chroma", "visible")),
            fusion_head=str(((data.get("model_config") or {}).get("fusion") or {}).get("output", "affine")),
            segmentation_labels=checked(data.get("segmentation_labels"), str(sidecar_path(source))),
        )
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise SidecarError(f"sidecar {sidecar_path(source)} is malformed ({exc}); re-export") from None
