"""Build a TensorRT engine from an exported ONNX graph (on the target machine: engines are not portable).

    fusion-build-engine model.onnx [--out model.engine] [--fp16 | --int8 --calib-dir DIR]
                        [--workspace-mb 2048] [--timing-cache FILE]
                        [--min-shape 1x320x256 --opt-shape 1x640x512 --max-shape 4x1024x768]   (dynamic ONNX)

Shapes are [BATCHx]WIDTHxHEIGHT. A dynamic ONNX built without shapes gets a static engine at the export's
input size, batch 1 (fastest). TensorRT 10 vs >= 11 (chosen from tensorrt.__version__, see
fusion_ros.engine.tensorrt_backend.plan_build):

* 10.x: --fp16 -> BuilderFlag.FP16; --int8 -> BuilderFlag.INT8 (+FP16) with an entropy calibrator fed
  with real pairs from --calib-dir (sub-folders thermal|ir and rgb|vi with matching file stems), run through
  the same pre-processing as inference.
* >= 11: strongly typed only. --fp16 converts the ONNX to float16 first (`convert_float_to_float16`
  below, ONNX Runtime's converter: weights and activations fp16, graph I/O and normalisation layers kept
  float32), then builds it.
  --int8 is refused with the ModelOpt (explicit Q/DQ) route.

The engine gets a sidecar (model.engine.json): the ONNX sidecar plus TensorRT version, GPU name and
compute capability, precision, profile, ONNX and engine sha256. The runtime refuses an engine whose
sidecar does not match the running TensorRT/GPU/ONNX.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import re
import sys
import time
from pathlib import Path

import numpy as np

from fusion_ros.engine.base import INPUT_NAMES, EngineError
from fusion_ros.engine.cuda_runtime import CudaRuntime, DeviceBuffer
from fusion_ros.engine.sidecar import (
    ENGINE_FORMAT,
    ONNX_FORMAT,
    read_sidecar,
    sha256_file,
    verify_sha256,
    write_sidecar,
)
from fusion_ros.engine.tensorrt_backend import BuildPlan, current_runtime, import_tensorrt, plan_build

THERMAL_DIRS = ("thermal", "ir", "lwir", "infrared")
RGB_DIRS = ("rgb", "vi", "visible", "color")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
# ops computed in float32 inside an fp16 graph (mean/variance over many values overflow or lose precision)
KEEP_FP32_OPS = frozenset({"InstanceNormalization", "GroupNormalization", "LayerNormalization"})


# ------------------------------------------------------------------------------------------ shapes
def parse_shape(text: str) -> tuple[int, int, int]:
    """'[B x]W x H' -> (batch, height, width)."""
    parts = [p for p in re.split(r"[x,]", text.lower().strip()) if p]
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"shape must be [BATCHx]WIDTHxHEIGHT, got {text!r}") from None
    if len(values) == 2:
        values = [1, *values]
    if len(values) != 3 or min(values) < 1:
        raise argparse.ArgumentTypeError(f"shape must be [BATCHx]WIDTHxHEIGHT with positive values, got {text!r}")
    batch, width, height = values
    return batch, height, width


def resolve_profile(
    sidecar: dict, min_shape=None, opt_shape=None, max_shape=None
) -> dict[str, tuple[int, int, int]]:
    """min/opt/max (batch, height, width) for the build; the ONNX's own fixed shape when it has one."""
    height, width = (int(v) for v in sidecar["input_size"])
    given = [s for s in (min_shape, opt_shape, max_shape) if s is not None]
    if not sidecar.get("dynamic"):
        if given:
            raise EngineError(
                f"{sidecar.get('onnx_file')} was exported with a fixed {width}x{height} input: shapes cannot be "
                "chosen at build time; re-export with fusion-export --dynamic"
            )
        batch = sidecar["inputs"][0]["shape"][0]
        shape = (int(batch) if isinstance(batch, int) else 1, height, width)
        return {"min": shape, "opt": shape, "max": shape}
    opt = opt_shape or min_shape or max_shape or (1, height, width)
    low, high = min_shape or opt, max_shape or opt
    if not all(a <= b <= c for a, b, c in zip(low, opt, high)):
        raise EngineError(f"need min <= opt <= max in every dimension, got min={low} opt={opt} max={high}")
    limits = sidecar.get("dynamic_range") or {}
    for key, index in (("batch", 0), ("height", 1), ("width", 2)):
        lo, hi = limits.get(key, (1, 1 << 30))
        if low[index] < lo or high[index] > hi:
            raise EngineError(f"{key} range {low[index]}..{high[index]} is outside the export's {lo}..{hi}")
    return {"min": tuple(low), "opt": tuple(opt), "max": tuple(high)}


# ------------------------------------------------------------------------------ fp16 conversion
def convert_float_to_float16(model, keep_fp32_ops=KEEP_FP32_OPS):
    """A float16 copy of an ONNX ModelProto for TensorRT >= 11 strongly typed builds, made by ONNX Runtime's
    converter (onnxruntime.transformers.float16): weights and activations float16, `keep_fp32_ops` (and
    the ops ONNX Runtime keeps by default) in float32 between Casts, graph inputs/outputs float32 (Casts at
    the boundary) so callers and the engine runtime do not change. The result is sorted topologically (the
    converter appends its boundary Casts; TensorRT's parser reads nodes in order) and checked."""
    import onnx
    from onnxruntime.transformers import float16
    from onnxruntime.transformers.onnx_model import OnnxModel

    converted = OnnxModel(float16.convert_float_to_float16(
        model, keep_io_types=True, op_block_list=float16.DEFAULT_OP_BLOCK_LIST + sorted(keep_fp32_ops)))
    converted.topological_sort()
    model = onnx.shape_inference.infer_shapes(converted.model, strict_mode=True)
    onnx.checker.check_model(model)
    return model


# ---------------------------------------------------------------------------------- calibration
def find_calibration_pairs(calib_dir: str | Path) -> list[tuple[Path, Path]]:
    """(thermal, rgb) files with matching stems from sub-folders thermal|ir|... and rgb|vi|... of calib_dir."""
    root = Path(calib_dir)
    if not root.is_dir():
        raise EngineError(f"calibration folder not found: {root}")

    def subdir(names):
        for name in names:
            if (root / name).is_dir():
                return root / name
        return None

    thermal_dir, rgb_dir = subdir(THERMAL_DIRS), subdir(RGB_DIRS)
    if thermal_dir is None or rgb_dir is None:
        raise EngineError(
            f"calibration folder {root} needs a thermal sub-folder ({'|'.join(THERMAL_DIRS)}) and an RGB one "
            f"({'|'.join(RGB_DIRS)}) holding images with matching names"
        )

    def images(folder: Path) -> dict[str, Path]:
        return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}

    thermal, rgb = images(thermal_dir), images(rgb_dir)
    pairs = [(thermal[s], rgb[s]) for s in sorted(set(thermal) & set(rgb))]
    if not pairs:
        raise EngineError(f"no image pairs with matching names in {thermal_dir} and {rgb_dir}")
    return pairs


def load_calibration_batch(
    pairs: list[tuple[Path, Path]], input_size: tuple[int, int], thermal_range=None, limit: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Read and pre-process pairs exactly as inference does -> (N,1,H,W), (N,3,H,W) float32."""
    import cv2

    from fusion_ros.preprocess import Preprocessor

    prep = Preprocessor(input_size, thermal_range=thermal_range)
    thermals, rgbs = [], []
    for thermal_path, rgb_path in pairs[:limit]:
        thermal = cv2.imread(str(thermal_path), cv2.IMREAD_UNCHANGED)
        rgb = cv2.imread(str(rgb_path), cv2.IMREAD_UNCHANGED)
        if thermal is None or rgb is None:
            raise EngineError(f"cannot read calibration pair {thermal_path} / {rgb_path}")
        if thermal.ndim == 3:  # grey stored as 3/4 channels
            thermal = cv2.cvtColor(thermal[:, :, :3], cv2.COLOR_BGR2GRAY)
        if rgb.ndim == 2:
            rgb = cv2.cvtColor(rgb, cv2.COLOR_GRAY2RGB)
        else:
            rgb = cv2.cvtColor(rgb[:, :, :3], cv2.COLOR_BGR2RGB)
        if rgb.dtype != np.uint8:
            rgb = (rgb / 257).astype(np.uint8) if rgb.dtype == np.uint16 else rgb.astype(np.uint8)
        pair = prep(thermal, rgb)
        thermals.append(pair.thermal)
        rgbs.append(pair.rgb)
    return np.stack(thermals), np.stack(rgbs)


def make_calibrator(trt, thermal: np.ndarray, rgb: np.ndarray, batch_size: int, cache_path: Path | None):
    """A TensorRT 10 IInt8EntropyCalibrator2 over pre-processed pairs (device buffers from libcudart)."""
    cuda = CudaRuntime()

    class _Calibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.index = 0
            self.buffers = {"thermal": DeviceBuffer(cuda), "rgb": DeviceBuffer(cuda)}

        def get_batch_size(self):
            return batch_size

        def get_batch(self, names):
            if self.index + batch_size > len(thermal):
                return None
            data = {"thermal": thermal, "rgb": rgb}
            host = [np.ascontiguousarray(data[n][self.index : self.index + batch_size], np.float32) for n in names]
            pointers = [self.buffers[n].upload(h, 0) for n, h in zip(names, host)]
            cuda.synchronize(0)  # the default stream: the copies are done before TensorRT reads them
            self.index += batch_size
            return pointers

        def free(self):
            """Release the device copies once the build has read them."""
            for buffer in self.buffers.values():
                buffer.free()

        def read_calibration_cache(self):
            if cache_path is not None and cache_path.is_file():
                return cache_path.read_bytes()
            return None

        def write_calibration_cache(self, cache):
            if cache_path is not None:
                cache_path.write_bytes(bytes(cache))

    return _Calibrator()


# ---------------------------------------------------------------------------------------- build
def _parser_errors(parser) -> str:
    return "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors)) or "no details"


def build_engine(
    onnx_path: str | Path,
    out_path: str | Path | None = None,
    *,
    precision: str = "fp32",
    workspace_mb: int | None = None,
    timing_cache: str | Path | None = None,
    min_shape=None,
    opt_shape=None,
    max_shape=None,
    calib_dir: str | Path | None = None,
    calib_count: int = 64,
    calib_batch: int = 1,
    calib_cache: str | Path | None = None,
) -> Path:
    onnx_path = Path(onnx_path)
    sidecar = read_sidecar(onnx_path, ONNX_FORMAT)
    onnx_sha = verify_sha256(onnx_path, sidecar.get("onnx_sha256"), "ONNX file")
    out_path = Path(out_path) if out_path else onnx_path.with_suffix(".engine")
    profile_shapes = resolve_profile(sidecar, min_shape, opt_shape, max_shape)
    trt = import_tensorrt()
    plan: BuildPlan = plan_build(trt.__version__, precision)
    if plan.calibrate_int8 and calib_dir is None:
        raise EngineError("--int8 needs --calib-dir with real thermal/RGB pairs (TensorRT 10 calibration)")
    runtime = current_runtime(trt)
    started = time.perf_counter()

    build_source = onnx_path
    if plan.convert_onnx_fp16:
        import onnx

        build_source = out_path.with_name(out_path.stem + ".fp16.onnx")
        onnx.save(convert_float_to_float16(onnx.load(str(onnx_path))), str(build_source))

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if plan.strongly_typed and hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)  # ignored (always on) in 11
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(build_source)):
        raise EngineError(f"TensorRT's ONNX parser rejected {build_source}: {_parser_errors(parser)}")

    config = builder.create_builder_config()
    if workspace_mb:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
    for flag in plan.builder_flags:
        config.set_flag(getattr(trt.BuilderFlag, flag))
    channels = {"thermal": 1, "rgb": 3}
    if sidecar.get("dynamic"):
        profile = builder.create_optimization_profile()
        for name in INPUT_NAMES:
            b_h_w = [profile_shapes[k] for k in ("min", "opt", "max")]
            profile.set_shape(name, *[(b, channels[name], h, w) for b, h, w in b_h_w])
        config.add_optimization_profile(profile)
    calibration = calibrator = None
    if plan.calibrate_int8:
        pairs = find_calibration_pairs(calib_dir)
        _, height, width = profile_shapes["opt"]
        thermal, rgb = load_calibration_batch(pairs, (height, width), sidecar.get("thermal_range"), calib_count)
        batch = max(1, min(int(calib_batch), len(thermal)))
        calibrator = make_calibrator(trt, thermal, rgb, batch, Path(calib_cache) if calib_cache else None)
        config.int8_calibrator = calibrator
        if sidecar.get("dynamic"):
            calib_profile = builder.create_optimization_profile()
            for name in INPUT_NAMES:
                shape = (batch, channels[name], height, width)
                calib_profile.set_shape(name, shape, shape, shape)
            config.set_calibration_profile(calib_profile)
        calibration = {"dir": str(calib_dir), "pairs": int(len(thermal)), "batch": batch}
    cache = None
    if timing_cache:
        timing_cache = Path(timing_cache)
        cache = config.create_timing_cache(timing_cache.read_bytes() if timing_cache.is_file() else b"")
        config.set_timing_cache(cache, ignore_mismatch=False)

    try:
        serialized = builder.build_serialized_network(network, config)
    finally:  # the calibration copies are device memory: freed whether or not the build succeeded
        if calibrator is not None:
            calibrator.free()
    if serialized is None:
        raise EngineError(f"TensorRT failed to build an engine from {build_source} (see the TensorRT log above)")
    tmp = out_path.with_name(out_path.name + ".partial")
    tmp.write_bytes(bytes(serialized))
    tmp.replace(out_path)
    if cache is not None:
        timing_cache.write_bytes(bytes(config.get_timing_cache().serialize()))

    engine_sidecar = dict(sidecar)
    engine_sidecar["format"] = ENGINE_FORMAT
    engine_sidecar["engine_file"] = out_path.name
    low, opt, high = (profile_shapes[k] for k in ("min", "opt", "max"))
    dims = [d if a == b else name for name, a, b, d in zip(("batch", "height", "width"), low, high, opt)]
    engine_sidecar["inputs"] = [  # shapes as the ENGINE accepts them (static where min == max)
        dict(entry, shape=[dims[0], channels[entry["name"]], dims[1], dims[2]]) for entry in sidecar["inputs"]
    ]
    engine_sidecar["input_size"] = [opt[1], opt[2]]
    engine_sidecar["dynamic"] = low[1:] != high[1:]
    engine_sidecar["tensorrt"] = {
        "trt_version": runtime.trt_version,
        "gpu_name": runtime.gpu_name,
        "compute_capability": runtime.compute_capability,
        "precision": precision,
        "typing": "strong" if plan.strongly_typed else "weak",
        "builder_flags": list(plan.builder_flags),
        "onnx_file": onnx_path.name,
        "onnx_sha256": onnx_sha,
        "built_from": None if build_source == onnx_path else {
            "file": build_source.name, "sha256": sha256_file(build_source),
        },
        "engine_sha256": sha256_file(out_path),
        "profile": {k: list(v) for k, v in profile_shapes.items()},
        "workspace_mb": workspace_mb,
        "timing_cache": str(timing_cache) if timing_cache else None,
        "calibration": calibration,
        "build_seconds": round(time.perf_counter() - started, 1),
        "build_date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    write_sidecar(out_path, engine_sidecar)
    return out_path


def compare_with_onnxruntime(engine_path: str | Path, onnx_path: str | Path, seed: int = 0) -> dict[str, float]:
    """Max-abs-diff per output of the built engine vs ONNX Runtime (CPU, fp32) on random inputs."""
    import onnxruntime as ort

    from fusion_ros.engine.tensorrt_backend import TensorRTEngine

    engine = TensorRTEngine(engine_path)
    height, width = engine.input_size
    rng = np.random.default_rng(seed)
    thermal = rng.random((1, 1, height, width), dtype=np.float32)
    rgb = rng.random((1, 3, height, width), dtype=np.float32)
    got = engine.run_raw(thermal, rgb)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    names = list(got)
    ref = dict(zip(names, session.run(names, {"thermal": thermal, "rgb": rgb})))
    engine.close()
    return {name: float(np.max(np.abs(got[name] - ref[name]))) for name in names}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fusion-build-engine", description=__doc__.split("\n\n")[0])
    parser.add_argument("onnx", help="ONNX file written by fusion-export (its .onnx.json sidecar beside it)")
    parser.add_argument("--out", "-o", help="engine path (default: beside the ONNX, .engine)")
    precision = parser.add_mutually_exclusive_group()
    precision.add_argument("--fp16", action="store_true", help="half precision")
    precision.add_argument("--int8", action="store_true", help="INT8 (TensorRT 10: calibrated on --calib-dir)")
    parser.add_argument("--calib-dir", help="folder with thermal|ir and rgb|vi sub-folders of matching images")
    parser.add_argument("--calib-count", type=int, default=64, help="calibration pairs to use (default 64)")
    parser.add_argument("--calib-batch", type=int, default=1)
    parser.add_argument("--calib-cache", help="calibration cache file (read if present, written after)")
    parser.add_argument("--workspace-mb", type=int, help="builder workspace memory pool limit in MiB")
    parser.add_argument("--timing-cache", help="timing cache file (read if present, updated after the build)")
    parser.add_argument("--min-shape", "--min", type=parse_shape, help="[BATCHx]WIDTHxHEIGHT (dynamic ONNX)")
    parser.add_argument("--opt-shape", "--opt", type=parse_shape, help="[BATCHx]WIDTHxHEIGHT (dynamic ONNX)")
    parser.add_argument("--max-shape", "--max", type=parse_shape, help="[BATCHx]WIDTHxHEIGHT (dynamic ONNX)")
    parser.add_argument("--check", action="store_true",
                        help="after the build, report max-abs-diff per output vs ONNX Runtime CPU")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    precision = "fp16" if args.fp16 else "int8" if args.int8 else "fp32"
    try:
        path = build_engine(
            args.onnx, args.out, precision=precision, workspace_mb=args.workspace_mb,
            timing_cache=args.timing_cache, min_shape=args.min_shape, opt_shape=args.opt_shape,
            max_shape=args.max_shape, calib_dir=args.calib_dir, calib_count=args.calib_count,
            calib_batch=args.calib_batch, calib_cache=args.calib_cache,
        )
    except EngineError as exc:
        print(f"fusion-build-engine: FAILED: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {path} and {path.name}.json")
    if args.check:
        for name, diff in compare_with_onnxruntime(path, args.onnx).items():
            print(f"  vs onnxruntime {name:<11} max-abs-diff {diff:.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
