"""ONNX Runtime backend: CPU (num_threads: the intra-op pool), CUDA and TensorRT execution providers when
the installed onnxruntime build has them (onnxruntime-gpu)."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from .base import FUSION_MAP_OUTPUT, INPUT_NAMES, OUTPUT_NAMES, BackendUnavailableError, Engine, ModelFileError
from .sidecar import ONNX_FORMAT, model_info_from_sidecar, read_sidecar, verify_sha256

log = logging.getLogger(__name__)


def available_providers() -> list[str]:
    try:
        import onnxruntime as ort
    except ImportError:
        return []
    return list(ort.get_available_providers())


def select_providers(
    device: str, available: list[str], use_tensorrt_ep: bool = False, fp16: bool = False, cache_dir: str | None = None
) -> list:
    """Execution providers for `device`, best first, always ending with the CPU one."""
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device != "cuda":
        raise BackendUnavailableError(f"onnxruntime backend: device must be 'cpu' or 'cuda', got {device!r}")
    if "CUDAExecutionProvider" not in available:
        raise BackendUnavailableError(
            "onnxruntime backend: device='cuda' needs the CUDAExecutionProvider, but this onnxruntime has only "
            f"{available}; install onnxruntime-gpu, or use device='cpu'"
        )
    providers: list = []
    if use_tensorrt_ep and "TensorrtExecutionProvider" in available:
        trt_options = {"trt_fp16_enable": bool(fp16)}
        if cache_dir:
            trt_options.update(trt_engine_cache_enable=True, trt_engine_cache_path=str(cache_dir),
                               trt_timing_cache_enable=True)
        providers.append(("TensorrtExecutionProvider", trt_options))
    providers += ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return providers


class OnnxRuntimeEngine(Engine):
    backend = "onnxruntime"

    def __init__(
        self,
        onnx_path: str | Path,
        device: str = "cpu",
        *,
        num_threads: int | None = None,
        inter_op_threads: int | None = None,
        allow_spinning: bool = False,
        use_tensorrt_ep: bool = False,
        fp16: bool = False,
        trt_cache_dir: str | None = None,
        verify_checksum: bool = True,
        **options,
    ):
        try:
            import onnxruntime as ort
        except ImportError:
            raise BackendUnavailableError(
                "onnxruntime backend needs the 'onnxruntime' package (pip install onnxruntime, or "
                "onnxruntime-gpu for CUDA); use backend='torch' with the .pt model instead"
            ) from None
        path = Path(onnx_path)
        if not path.is_file():
            raise ModelFileError(f"ONNX file not found: {path} (export one with fusion-export MODEL.pt)")
        sidecar = read_sidecar(path, ONNX_FORMAT)
        if verify_checksum:
            verify_sha256(path, sidecar.get("onnx_sha256"), "ONNX file")
        info = model_info_from_sidecar(sidecar, path)
        super().__init__(info, **options)
        session_options = ort.SessionOptions()
        session_options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session_options.log_severity_level = 3
        if num_threads:  # ONNX Runtime's intra-op pool: where the graph's CPU work runs
            session_options.intra_op_num_threads = int(num_threads)
        if inter_op_threads:
            session_options.inter_op_num_threads = int(inter_op_threads)
        # ORT's pool threads busy-wait after each run by default; in a node that runs a frame and then
        # converts and publishes it, that spinning takes the cores the publishing needs. Turn it on for a
        # dedicated, otherwise idle machine.
        for key in ("session.intra_op.allow_spinning", "session.inter_op.allow_spinning"):
            session_options.add_session_config_entry(key, "1" if allow_spinning else "0")
        # the memory-pattern planner keeps a second full set of activation buffers; without it the
        # process holds ~100 MB less at 640x512 for the same speed (measured: RssAnon 421 -> 320 MB,
        # median infer 77.0 -> 74.5 ms on 2 cores); the arena itself stays (off: +45 % latency)
        session_options.enable_mem_pattern = False
        providers = select_providers(device, ort.get_available_providers(), use_tensorrt_ep, fp16, trt_cache_dir)
        try:
            self.session = ort.InferenceSession(str(path), session_options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidProtobuf/... types
            raise ModelFileError(
                f"onnxruntime cannot load {path}: {exc} (truncated or corrupt file? re-export with fusion-export)"
            ) from None
        names = {i.name for i in self.session.get_inputs()}
        outputs = {o.name for o in self.session.get_outputs()}
        if names != set(INPUT_NAMES) or not set(OUTPUT_NAMES) <= outputs:
            raise ModelFileError(
                f"{path} has inputs {sorted(names)} and outputs {sorted(outputs)}; a fusion_ros graph has inputs "
                f"{list(INPUT_NAMES)} and outputs {list(OUTPUT_NAMES)} (export it with fusion-export)"
            )
        active = self.session.get_providers()
        self.providers = active
        kind = "tensorrt" if active[0].startswith("Tensorrt") else "cuda" if active[0].startswith("CUDA") else "cpu"
        self.backend = f"onnxruntime-{kind}"
        self.sidecar = sidecar
        self.has_fusion_map = FUSION_MAP_OUTPUT in outputs
        self._output_names = list(OUTPUT_NAMES) + ([FUSION_MAP_OUTPUT] if self.has_fusion_map else [])

    def _run(self, thermal: np.ndarray, rgb: np.ndarray) -> dict[str, np.ndarray]:
        outputs = self.session.run(self._output_names, {"thermal": thermal, "rgb": rgb})
        return dict(zip(self._output_names, outputs))

    def close(self) -> None:
        self.session = None
