"""Fused-perception engines: one interface, three backends (TensorRT, ONNX Runtime, PyTorch).

    from fusion_ros.engine import PostprocessConfig, create_engine
    engine = create_engine("model.onnx", backend="auto", num_threads=2, postprocess=PostprocessConfig(0.5))
    result = engine.infer(thermal_u16, rgb_u8)      # -> Perception(fused, detections, segmentation, timings)
    engine.set_thresholds(score_threshold=0.5)      # at run time

Artifacts: a model file (.pt, torch), its export (.onnx + .onnx.json, onnxruntime) and an engine built
from that (.engine + .engine.json, tensorrt). Given any of them, "auto" picks the fastest that can run
here: tensorrt (a matching engine beside it, TensorRT importable, a CUDA GPU) > onnxruntime (CUDA EP when
available) > torch (CUDA when available).

Loading an ONNX export with onnxruntime or a TensorRT engine pulls in neither torch nor the model code;
torch is imported only by the torch backend (TensorRT's CUDA buffers and stream come from libcudart).
"""
from __future__ import annotations

import logging
from pathlib import Path

from ..fusion_map import compile_kernels
from ..paths import DEFAULT_MODEL
from ..postprocess import Detections, PostprocessConfig
from .base import (
    FUSED_RESOLUTIONS,
    FUSION_MAP_OUTPUT,
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
    SidecarError,
)

__all__ = [
    "BACKENDS", "FUSED_RESOLUTIONS", "FUSION_MAP_OUTPUT", "INPUT_NAMES", "OUTPUT_NAMES", "BackendUnavailableError", "Detections", "Engine", "EngineError",
    "EngineMismatchError", "InputError", "ModelFileError", "ModelInfo", "Perception", "PostprocessConfig",
    "SidecarError", "create_engine", "resolve_artifacts",
]

BACKENDS = ("tensorrt", "onnxruntime", "torch")
MODEL_SUFFIXES = (".pt", ".pth")
log = logging.getLogger(__name__)


def _torch_sees_cuda() -> bool:
    """Whether torch has a CUDA GPU here (only asked when the torch backend is in play)."""
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def _cuda_gpu_problem() -> str | None:
    """Why a TensorRT engine cannot run here (no CUDA runtime library, no GPU), or None when it can (asked
    only when a TensorRT engine is in play)."""
    from .cuda_runtime import CudaRuntime

    try:
        count = CudaRuntime().device_count()
    except BackendUnavailableError as exc:
        return str(exc)
    return None if count > 0 else "no CUDA GPU (the CUDA runtime sees none)"


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

    from .sidecar import sidecar_path, source_model_path
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
        data = sidecar(path)
        source = source_model_path(path, data)
        if source is not None and _sha_matches(source, data["source_model"].get("sha256")):
            found["torch"] = source
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
        from .tensorrt_backend import TensorRTEngine as engine_class
    elif backend == "onnxruntime":
        from .onnxruntime_backend import OnnxRuntimeEngine as engine_class
    else:
        from .torch_backend import TorchEngine as engine_class
    engine = engine_class(artifact, device=device, **opts)
    if engine.has_fusion_map and engine.fused_resolution == "camera":
        compile_kernels()  # now, not on the first camera frame
    return engine


_COMMON_OPTIONS = {"input_size", "postprocess", "registration", "fused_resolution"}
# the options each backend takes besides the common ones; any other option is an error, never dropped
_BACKEND_OPTIONS = {
    "onnxruntime": {
        "num_threads", "inter_op_threads", "allow_spinning", "use_tensorrt_ep", "trt_cache_dir", "verify_checksum",
        "fp16",
    },
    "torch": {"num_threads", "fp16"},
    "tensorrt": {"check_compat"},
}
_ALL_BACKEND_OPTIONS = set().union(*_BACKEND_OPTIONS.values())


def _check_options(backend: str, opts: dict) -> None:
    ignored = sorted(set(opts) - _COMMON_OPTIONS - _BACKEND_OPTIONS[backend])
    if ignored:
        takes = ", ".join(sorted(_COMMON_OPTIONS | _BACKEND_OPTIONS[backend]))
        raise EngineError(f"engine option(s) {', '.join(ignored)} not used by the {backend} backend (it takes: "
                          f"{takes}); leave them out for {backend}")


def create_engine(
    model: str | Path | None = None,
    backend: str = "auto",
    device: str | None = None,
    **opts,
) -> Engine:
    """Load `model` (.pt / .onnx / .engine; default: the bundled model) with `backend` on `device`.

    backend: "auto" | "tensorrt" | "onnxruntime" | "torch". device: "cpu" | "cuda" | None (auto: cuda when
    the chosen backend can use a GPU here). Other keyword options: input_size=(h, w), postprocess
    (PostprocessConfig), registration (Registration or its config dict), fused_resolution ("camera", the
    default: the fused image at the RGB camera's size; "network": at the network's), and per backend: num_threads /
    inter_op_threads / allow_spinning / use_tensorrt_ep / trt_cache_dir / verify_checksum / fp16 (onnxruntime),
    num_threads / fp16 (torch), check_compat (tensorrt). An option the backend that is to run does not use
    raises EngineError (a ValueError) naming it, with backend="auto" too.
    """
    path = Path(DEFAULT_MODEL if model is None else model)
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

    def device_for(name: str) -> str:
        if device is not None:
            return device
        if name == "tensorrt":
            return "cuda"
        if name == "onnxruntime":
            from .onnxruntime_backend import available_providers

            return "cuda" if "CUDAExecutionProvider" in available_providers() else "cpu"
        return "cuda" if _torch_sees_cuda() else "cpu"

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
        _check_options(backend, opts)
        return _make(backend, found[backend], device_for(backend), opts)

    reasons: list[str] = []
    candidates = [name for name in BACKENDS if name in found]
    for index, name in enumerate(candidates):
        last = index == len(candidates) - 1
        if name == "tensorrt" and not last:
            problem = "device=cpu" if device == "cpu" else _cuda_gpu_problem()
            if problem:
                reasons.append(f"tensorrt: {problem}")
                continue
        _check_options(name, opts)
        try:
            engine = _make(name, found[name], device_for(name), opts)
        except EngineError as exc:  # unavailable, stale/corrupt artifact, ...: fall back, say why
            if last:
                raise
            reasons.append(f"{name}: {exc}")
            log.warning("auto backend: skipping %s for %s: %s", name, path, exc)
            continue
        engine.fallback_reasons = reasons
        return engine
    raise BackendUnavailableError(f"no backend can run {path} here: " + " | ".join(reasons))
