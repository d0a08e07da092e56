"""Fused-perception engines: one interface, three backends (TensorRT, ONNX Runtime, PyTorch).

    from fusion_ros.engine import create_engine
    engine = create_engine("model.onnx", backend="auto", intra_op_threads=2, score_threshold=0.4)
    result = engine.infer(thermal_u16, rgb_u8)      # -> Perception(fused, detections, segmentation, timings)
    engine.set_thresholds(score_threshold=0.5)      # at run time

Artifacts: a model file (.pt, torch), its export (.onnx + .onnx.json, onnxruntime) and an engine built
from that (.engine + .engine.json, tensorrt). Given any of them, "auto" picks the fastest that can run
here: tensorrt (a matching engine beside it, TensorRT importable, a CUDA GPU) > onnxruntime (CUDA EP when
available) > torch (CUDA when available).
"""
from __future__ import annotations

import logging
from pathlib import Path

from ..postprocess import Detections
from .base import (
    INPUT_NAMES,
    OUTPUT_NAMES,
    BackendUnavailableError,
    Engine,
    EngineError,
    EngineMismatchError,
    InputError,
    ModelFileError,
    ModelInfo,
    Perception,
    PostprocessConfig,
    SidecarError,
)

__all__ = [
    "BACKENDS", "INPUT_NAMES", "OUTPUT_NAMES", "BackendUnavailableError", "Detections", "Engine", "EngineError",
    "EngineMismatchError", "InputError", "ModelFileError", "ModelInfo", "Perception", "PostprocessConfig",
    "SidecarError", "create_engine", "resolve_artifacts",
]

BACKENDS = ("tensorrt", "onnxruntime", "torch")
MODEL_SUFFIXES = (".pt", ".pth")
log = logging.getLogger(__name__)


def _cuda_available() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:  # pragma: no cover - torch is a hard dependency
        return False


def _sha_matches(path: Path, sha: str | None) -> bool:
    from .sidecar import sha256_file

    return bool(sha) and path.is_file() and sha256_file(path) == sha


def resolve_artifacts(path: str | Path) -> dict[str, Path]:
    """The runnable artifacts of one model, per backend, found from any one of them.

    .pt -> itself (torch), a sibling .onnx exported from exactly this file (onnxruntime), a sibling .engine
    built from that ONNX (tensorrt). .onnx -> itself, its sibling .engine, and the .pt recorded in its
    sidecar when that file still exists unchanged. .engine -> itself only.
    """
    import json

    from .sidecar import sidecar_path
    from .tensorrt_backend import ENGINE_SUFFIXES

    path = Path(path)
    suffix = path.suffix.lower()
    found: dict[str, Path] = {}

    def sidecar(p: Path) -> dict:
        try:
            return json.loads(sidecar_path(p).read_text())
        except (OSError, ValueError):
            return {}

    def engine_for(onnx: Path) -> None:
        for ext in ENGINE_SUFFIXES:
            candidate = onnx.with_suffix(ext)
            if candidate.is_file():
                found["tensorrt"] = candidate
                return

    if suffix in ENGINE_SUFFIXES:
        found["tensorrt"] = path
    elif suffix == ".onnx":
        found["onnxruntime"] = path
        engine_for(path)
        source = sidecar(path).get("source_model") or {}
        if source.get("file") and _sha_matches(Path(source["file"]), source.get("sha256")):
            found["torch"] = Path(source["file"])
    elif suffix in MODEL_SUFFIXES:
        found["torch"] = path
        onnx = path.with_suffix(".onnx")
        if onnx.is_file() and path.is_file():
            from .sidecar import sha256_file

            if (sidecar(onnx).get("source_model") or {}).get("sha256") == sha256_file(path):
                found["onnxruntime"] = onnx
                engine_for(onnx)
    else:
        raise ModelFileError(
            f"don't know how to run {path}: expected a model file ({'/'.join(MODEL_SUFFIXES)}), an ONNX export "
            f"(.onnx) or a TensorRT engine ({'/'.join(ENGINE_SUFFIXES)})"
        )
    return found


def _make(backend: str, artifact: Path, device: str, opts: dict) -> Engine:
    if backend == "tensorrt":
        from .tensorrt_backend import TensorRTEngine

        return TensorRTEngine(artifact, device=device, **opts)
    if backend == "onnxruntime":
        from .onnxruntime_backend import OnnxRuntimeEngine

        return OnnxRuntimeEngine(artifact, device=device, **opts)
    from .torch_backend import TorchEngine

    return TorchEngine(artifact, device=device, **opts)


_COMMON_OPTIONS = {
    "input_size", "score_threshold", "nms_iou", "max_detections", "pre_nms_top_k", "thermal_mode",
    "thermal_range", "registration",
}

# options that only one backend understands; dropped silently for the others so callers can pass one
# option set to "auto" (e.g. intra_op_threads for onnxruntime and num_threads for torch)
_BACKEND_OPTIONS = {
    "onnxruntime": {
        "intra_op_threads", "inter_op_threads", "allow_spinning", "use_tensorrt_ep", "trt_cache_dir",
        "verify_checksum", "fp16",
    },
    "torch": {"num_threads", "fp16"},
    "tensorrt": {"check_compat"},
}
_ALL_BACKEND_OPTIONS = set().union(*_BACKEND_OPTIONS.values())


def create_engine(
    model: str | Path | None = None,
    backend: str = "auto",
    device: str | None = None,
    **opts,
) -> Engine:
    """Load `model` (.pt / .onnx / .engine; default: the bundled model) with `backend` on `device`.

    backend: "auto" | "tensorrt" | "onnxruntime" | "torch". device: "cpu" | "cuda" | None (auto: cuda when
    the chosen backend can use a GPU here). Other keyword options: input_size=(h, w), score_threshold,
    nms_iou, max_detections, pre_nms_top_k, thermal_mode ("fixed"/"auto"), thermal_range=(low, high),
    registration (Registration or its config dict), and per backend: intra_op_threads / inter_op_threads /
    allow_spinning / use_tensorrt_ep / fp16 (onnxruntime), num_threads / fp16 (torch), check_compat (tensorrt).
    """
    if model is None:
        from ..checkpoint import DEFAULT_MODEL

        model = DEFAULT_MODEL
    path = Path(model)
    if backend not in ("auto", *BACKENDS):
        raise EngineError(f"unknown backend {backend!r}: use one of auto, {', '.join(BACKENDS)}")
    if device not in (None, "cpu", "cuda"):
        raise EngineError(f"device must be 'cpu', 'cuda' or None (auto), got {device!r}")
    if not path.exists():
        raise ModelFileError(f"model/ONNX/engine file not found: {path}")
    unknown = set(opts) - _ALL_BACKEND_OPTIONS - _COMMON_OPTIONS
    if unknown:
        raise EngineError(f"unknown engine option(s) {sorted(unknown)}")
    found = resolve_artifacts(path)
    cuda = _cuda_available()

    def options_for(name: str) -> dict:
        return {k: v for k, v in opts.items() if k in _COMMON_OPTIONS or k in _BACKEND_OPTIONS[name]}

    def device_for(name: str) -> str:
        if device is not None:
            return device
        if name == "tensorrt":
            return "cuda"
        if name == "onnxruntime":
            from .onnxruntime_backend import available_providers

            return "cuda" if "CUDAExecutionProvider" in available_providers() else "cpu"
        return "cuda" if cuda else "cpu"

    if backend != "auto":
        if backend == "tensorrt":
            from .tensorrt_backend import import_tensorrt

            import_tensorrt()  # the real blocker first: no TensorRT here at all
        if backend not in found:
            hint = {
                "tensorrt": f"build one with: fusion-build-engine {path.with_suffix('.onnx')}",
                "onnxruntime": f"export one with: fusion-export {path.with_suffix('.pt')}",
                "torch": "pass the .pt model file (the ONNX sidecar's source_model is missing or changed)",
            }[backend]
            raise BackendUnavailableError(f"backend '{backend}' has nothing to run for {path}; {hint}")
        return _make(backend, found[backend], device_for(backend), options_for(backend))

    reasons: list[str] = []
    candidates = [name for name in BACKENDS if name in found]
    for index, name in enumerate(candidates):
        last = index == len(candidates) - 1
        if name == "tensorrt" and (device == "cpu" or not cuda) and not last:
            reasons.append(f"tensorrt: {'device=cpu' if device == 'cpu' else 'no CUDA GPU'}")
            continue
        try:
            engine = _make(name, found[name], device_for(name), options_for(name))
        except EngineError as exc:  # unavailable, stale/corrupt artifact, ...: fall back, say why
            if last:
                raise
            reasons.append(f"{name}: {exc}")
            log.warning("auto backend: skipping %s for %s: %s", name, path, exc)
            continue
        engine.fallback_reasons = reasons
        return engine
    raise BackendUnavailableError(f"no backend can run {path} here: " + " | ".join(reasons))
