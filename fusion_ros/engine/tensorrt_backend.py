"""TensorRT backend (runtime) and the version logic shared with the builder (training/build_engine.py).

Kept thin on purpose: deserialize, bind named tensors (set_input_shape / set_tensor_address) to device
buffers, execute_async_v3 on a CUDA stream; buffers and stream come from libcudart over ctypes
(`cuda_runtime.py`), so a vehicle on this path never imports torch. Written to the TensorRT >= 10
name-based Python API, which TensorRT 11 keeps for inference. Builds differ between 10 and 11 (see `plan_build`):

* TensorRT 10.x (what JetPack 6 ships): weakly typed network; --fp16 sets BuilderFlag.FP16, --int8 sets
  BuilderFlag.INT8 (+FP16 fallback) with an entropy calibrator over real image pairs.
* TensorRT >= 11: the precision builder flags and implicit INT8 calibration are gone, networks are
  always strongly typed: --fp16 builds from an FP16-converted ONNX (I/O kept float32); INT8 needs an ONNX
  with explicit Q/DQ nodes (NVIDIA ModelOpt), built as is.

An engine only runs on the TensorRT version and GPU model it was built with: its sidecar records both
(plus the ONNX sha256) and `check_engine_sidecar` refuses a mismatch with a "rebuild" message.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .base import (
    FUSION_MAP_OUTPUT,
    INPUT_NAMES,
    OUTPUT_NAMES,
    BackendUnavailableError,
    Engine,
    EngineError,
    EngineMismatchError,
    InputError,
    ModelFileError,
)
from .cuda_runtime import CudaRuntime, DeviceBuffer
from .sidecar import ENGINE_FORMAT, model_info_from_sidecar, read_sidecar, sha256_file, verify_sha256

MIN_TRT_MAJOR = 10
STRONG_TYPING_MAJOR = 11  # TensorRT 11 removed BuilderFlag.FP16/INT8 and the INT8 calibrator
PRECISIONS = ("fp32", "fp16", "int8")
ENGINE_SUFFIXES = (".engine", ".plan", ".trt")


def import_tensorrt():
    """`import tensorrt`, or a BackendUnavailableError that says what to install / use instead."""
    try:
        import tensorrt
    except ImportError as exc:
        raise BackendUnavailableError(
            f"the TensorRT backend needs the 'tensorrt' Python package ({exc}); install TensorRT >= "
            f"{MIN_TRT_MAJOR} (pip install tensorrt, or JetPack's python3-libnvinfer on Jetson), or use "
            "backend='onnxruntime' (the .onnx) or backend='torch' (the .pt) instead"
        ) from None
    return tensorrt


def parse_trt_version(version: str) -> tuple[int, ...]:
    """'10.3.0.30' -> (10, 3, 0, 30); ValueError for anything that does not start with a number."""
    parts = re.findall(r"\d+", str(version).split("+")[0])
    if not parts or not re.match(r"^\s*\d", str(version)):
        raise ValueError(f"not a TensorRT version string: {version!r}")
    return tuple(int(p) for p in parts)


def same_trt_version(built: str, running: str) -> bool:
    a, b = parse_trt_version(built), parse_trt_version(running)
    n = min(len(a), len(b), 4)
    return len(a) >= 3 and len(b) >= 3 and a[:n] == b[:n]


# -------------------------------------------------------------------------------------------- plan
@dataclass(frozen=True)
class BuildPlan:
    trt_version: str
    precision: str  # fp32 / fp16 / int8
    strongly_typed: bool  # network creation: strongly typed (TRT >= 11 always)
    builder_flags: tuple[str, ...]  # names in trt.BuilderFlag to set (TRT 10 only)
    convert_onnx_fp16: bool  # build from an FP16-converted copy of the ONNX (TRT >= 11 --fp16)
    calibrate_int8: bool  # attach an INT8 entropy calibrator (TRT 10 --int8)


def plan_build(trt_version: str, precision: str = "fp32") -> BuildPlan:
    """Which API path builds `precision` on TensorRT `trt_version` (pure logic: tested without TRT)."""
    if precision not in PRECISIONS:
        raise EngineError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    try:
        major = parse_trt_version(trt_version)[0]
    except ValueError as exc:
        raise EngineError(str(exc)) from None
    if major < MIN_TRT_MAJOR:
        raise BackendUnavailableError(
            f"TensorRT {trt_version} is too old: fusion_ros needs TensorRT >= {MIN_TRT_MAJOR} (name-based "
            "tensor API, execute_async_v3); upgrade, or use backend='onnxruntime'"
        )
    if major < STRONG_TYPING_MAJOR:
        flags = {"fp32": (), "fp16": ("FP16",), "int8": ("INT8", "FP16")}[precision]
        return BuildPlan(trt_version, precision, False, flags, False, precision == "int8")
    if precision == "int8":
        raise EngineError(
            f"TensorRT {trt_version} (>= {STRONG_TYPING_MAJOR}) removed implicit INT8 calibration "
            "(BuilderFlag.INT8, int8_calibrator): quantize the ONNX to explicit Q/DQ nodes with NVIDIA ModelOpt "
            "(python -m modelopt.onnx.quantization) and build that ONNX without --int8, or use --fp16"
        )
    return BuildPlan(trt_version, precision, True, (), precision == "fp16", False)


# ------------------------------------------------------------------------------------ runtime info
@dataclass(frozen=True)
class RuntimeInfo:
    trt_version: str
    gpu_name: str
    compute_capability: str  # "8.7"


def current_runtime(trt_module=None, device_index: int = 0, cuda: CudaRuntime | None = None) -> RuntimeInfo:
    """The running TensorRT version and GPU (name and compute capability from libcudart)."""
    trt = trt_module or import_tensorrt()
    cuda = cuda or CudaRuntime()
    if cuda.device_count() <= device_index:
        raise BackendUnavailableError(
            f"the TensorRT backend needs a CUDA GPU (the CUDA runtime sees {cuda.device_count()} usable devices: "
            "no GPU, or no driver that fits this CUDA runtime); use backend='onnxruntime' or 'torch' with device='cpu'"
        )
    return RuntimeInfo(str(trt.__version__), cuda.device_name(device_index), cuda.compute_capability(device_index))


def check_engine_sidecar(
    sidecar: dict, runtime: RuntimeInfo, engine_path: str | Path, onnx_path: str | Path | None = None
) -> None:
    """Refuse an engine built for another TensorRT, GPU or ONNX (EngineMismatchError: rebuild it)."""
    engine_path = Path(engine_path)
    block = sidecar.get("tensorrt")
    if not isinstance(block, dict):
        raise EngineMismatchError(f"sidecar of {engine_path} has no 'tensorrt' block: rebuild with fusion-build-engine")
    rebuild = f"rebuild it on this machine: fusion-build-engine {block.get('onnx_file') or 'MODEL.onnx'}"
    problems = []
    built_trt = str(block.get("trt_version", "?"))
    try:
        if not same_trt_version(built_trt, runtime.trt_version):
            problems.append(f"built with TensorRT {built_trt}, running TensorRT {runtime.trt_version}")
    except ValueError:
        problems.append(f"unreadable TensorRT version {built_trt!r} in the sidecar")
    if str(block.get("compute_capability")) != runtime.compute_capability:
        problems.append(
            f"built for compute capability {block.get('compute_capability')}, this GPU is {runtime.compute_capability}"
        )
    if str(block.get("gpu_name")) != runtime.gpu_name:
        problems.append(f"built on GPU '{block.get('gpu_name')}', this GPU is '{runtime.gpu_name}'")
    if onnx_path is None and block.get("onnx_file"):
        candidate = engine_path.parent / str(block["onnx_file"])
        onnx_path = candidate if candidate.is_file() else None
    if onnx_path is not None and Path(onnx_path).is_file():
        actual = sha256_file(onnx_path)
        if actual != block.get("onnx_sha256"):
            recorded = str(block.get("onnx_sha256"))[:12]
            problems.append(f"{Path(onnx_path).name} changed since the build (sha256 {actual[:12]}… != {recorded}…)")
    if problems:
        raise EngineMismatchError(f"TensorRT engine {engine_path} does not fit: {'; '.join(problems)}; {rebuild}")


# ----------------------------------------------------------------------------------------- runtime
class TensorRTEngine(Engine):
    backend = "tensorrt"

    def __init__(self, engine_path: str | Path, device: str = "cuda", *, check_compat: bool = True, **options):
        path = Path(engine_path)
        if not path.is_file():
            raise ModelFileError(f"TensorRT engine not found: {path} (build one with fusion-build-engine MODEL.onnx)")
        if device not in ("cuda", "cuda:0", None):
            raise BackendUnavailableError(f"the TensorRT backend runs on device='cuda' only, got {device!r}")
        trt = import_tensorrt()
        sidecar = read_sidecar(path, ENGINE_FORMAT)
        verify_sha256(path, (sidecar.get("tensorrt") or {}).get("engine_sha256"), "TensorRT engine")
        cuda = CudaRuntime()
        runtime_info = current_runtime(trt, cuda=cuda)
        if check_compat:
            check_engine_sidecar(sidecar, runtime_info, path)
        super().__init__(model_info_from_sidecar(sidecar, path), **options)
        self._trt = trt
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self.engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            raise ModelFileError(f"TensorRT could not deserialize {path} (see its log above); rebuild the engine")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        if set(inputs) != set(INPUT_NAMES) or not set(OUTPUT_NAMES) <= set(names):
            raise ModelFileError(
                f"{path} has I/O tensors {names}; expected inputs {INPUT_NAMES}, outputs {OUTPUT_NAMES}"
            )
        self._dtypes = {n: np.dtype(trt.nptype(self.engine.get_tensor_dtype(n))) for n in names}
        self._outputs = [n for n in names if n not in inputs]
        self.has_fusion_map = FUSION_MAP_OUTPUT in self._outputs
        self._cuda = cuda
        self._buffers = {n: DeviceBuffer(cuda) for n in names}
        self._stream = cuda.create_stream()
        self.sidecar = sidecar
        self.backend = f"tensorrt-{sidecar['tensorrt'].get('precision', 'fp32')}"

    def _run(self, thermal: np.ndarray, rgb: np.ndarray) -> dict[str, np.ndarray]:
        hold = []  # host arrays the queued copies read from or write to, alive until the synchronize
        for name, array in (("thermal", thermal), ("rgb", rgb)):
            host = np.ascontiguousarray(array, dtype=self._dtypes[name])
            if not self.context.set_input_shape(name, host.shape):
                raise InputError(
                    f"{self.info.source}: input {name} shape {host.shape} is outside the engine's "
                    "optimization profile (rebuild with --min/--opt/--max shapes that cover it)"
                )
            self.context.set_tensor_address(name, self._buffers[name].upload(host, self._stream))
            hold.append(host)
        outputs = {}
        for name in self._outputs:
            outputs[name] = np.empty(tuple(self.context.get_tensor_shape(name)), dtype=self._dtypes[name])
            self.context.set_tensor_address(name, self._buffers[name].reserve(outputs[name].nbytes))
        if not self.context.execute_async_v3(self._stream):
            raise EngineError(f"TensorRT execute_async_v3 failed for {self.info.source} (see the TensorRT log)")
        wanted = OUTPUT_NAMES + ((FUSION_MAP_OUTPUT,) if self.has_fusion_map else ())
        for name in wanted:
            self._buffers[name].download(outputs[name], self._stream)
        self._cuda.synchronize(self._stream)
        return {name: outputs[name].astype(np.float32, copy=False) for name in wanted}

    def close(self) -> None:
        """Release the context and engine before the device memory they were bound to."""
        self.context = None
        self.engine = None
        if getattr(self, "_buffers", None):
            for buffer in self._buffers.values():
                buffer.free()
            self._buffers = {}
        if getattr(self, "_stream", 0):
            self._cuda.destroy_stream(self._stream)
            self._stream = 0
