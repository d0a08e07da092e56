"""TensorRT: everything that can be checked without TensorRT (version paths, sidecar checks, fp16
conversion, calibration data, errors, and the engine's bindings against stand-ins of libcudart and the
TensorRT runtime); the real build + inference test needs a GPU and skips otherwise."""
import ctypes
import sys
import types

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from fusion_ros.checkpoint import ModelMeta, save_model
from fusion_ros.engine import BackendUnavailableError, EngineError, EngineMismatchError, create_engine, cuda_runtime
from fusion_ros.engine.base import OUTPUT_NAMES
from fusion_ros.engine.sidecar import ENGINE_FORMAT, read_sidecar, sha256_file, write_sidecar
from fusion_ros.engine.tensorrt_backend import (
    RuntimeInfo,
    check_engine_sidecar,
    import_tensorrt,
    parse_trt_version,
    plan_build,
    same_trt_version,
)
from fusion_ros.model import FusedPerceptionNet, ModelConfig
from training import build_engine as be
from training.export import export_onnx

H, W = 64, 80


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("trt")
    torch.manual_seed(0)
    save_model(root / "m.pt", FusedPerceptionNet(ModelConfig()), ModelMeta([f"d{i}" for i in range(6)],
               [f"s{i}" for i in range(10)], input_size=(H, W)))
    fixed = export_onnx(root / "m.pt", root / "fixed.onnx", exporter="torchscript").onnx_path
    dynamic = export_onnx(root / "m.pt", root / "dyn.onnx", dynamic=True, exporter="torchscript").onnx_path
    return {"fixed": fixed, "dynamic": dynamic, "root": root}


# ------------------------------------------------------------------------------------ version paths
def test_parse_and_compare_versions():
    assert parse_trt_version("10.3.0.30") == (10, 3, 0, 30)
    assert parse_trt_version("11.0.0") == (11, 0, 0)
    with pytest.raises(ValueError):
        parse_trt_version("unknown")
    assert same_trt_version("10.3.0.30", "10.3.0.30") and same_trt_version("10.3.0", "10.3.0.30")
    assert not same_trt_version("10.3.0.30", "10.7.0.23") and not same_trt_version("10.3.0", "11.0.0")


@pytest.mark.parametrize(
    "version,precision,strong,flags,convert,calibrate",
    [
        ("10.3.0.30", "fp32", False, (), False, False),
        ("10.3.0.30", "fp16", False, ("FP16",), False, False),
        ("10.13.2.6", "int8", False, ("INT8", "FP16"), False, True),
        ("11.0.0.1", "fp32", True, (), False, False),
        ("11.4.1", "fp16", True, (), True, False),
    ],
)
def test_build_path_follows_the_tensorrt_version(version, precision, strong, flags, convert, calibrate):
    plan = plan_build(version, precision)
    assert (plan.strongly_typed, plan.builder_flags, plan.convert_onnx_fp16, plan.calibrate_int8) == (
        strong, flags, convert, calibrate,
    )


def test_build_path_refusals():
    with pytest.raises(EngineError, match="ModelOpt"):
        plan_build("11.0.0", "int8")
    with pytest.raises(BackendUnavailableError, match=">= 10"):
        plan_build("8.6.1", "fp16")
    with pytest.raises(EngineError, match="precision"):
        plan_build("10.3.0", "fp8")
    with pytest.raises(EngineError, match="version"):
        plan_build("garbage", "fp32")


# ----------------------------------------------------------------------------------- sidecar checks
def _engine_files(tmp_path, onnx_bytes=b"onnx graph"):
    onnx_path = tmp_path / "m.onnx"
    onnx_path.write_bytes(onnx_bytes)
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"serialized engine")
    sidecar = {
        "format": ENGINE_FORMAT,
        "tensorrt": {
            "trt_version": "10.3.0.30", "gpu_name": "Orin", "compute_capability": "8.7", "precision": "fp16",
            "onnx_file": "m.onnx", "onnx_sha256": sha256_file(onnx_path), "engine_sha256": sha256_file(engine),
        },
    }
    return engine, onnx_path, sidecar


def test_engine_sidecar_match_and_mismatch(tmp_path):
    engine, onnx_path, sidecar = _engine_files(tmp_path)
    here = RuntimeInfo("10.3.0.30", "Orin", "8.7")
    check_engine_sidecar(sidecar, here, engine)  # matches: no error
    for runtime, message in [
        (RuntimeInfo("10.7.0.23", "Orin", "8.7"), "built with TensorRT 10.3.0.30, running TensorRT 10.7.0.23"),
        (RuntimeInfo("10.3.0.30", "NVIDIA H100 80GB HBM3", "9.0"), "compute capability 8.7, this GPU is 9.0"),
        (RuntimeInfo("10.3.0.30", "Orin NX", "8.7"), "built on GPU 'Orin'"),
    ]:
        with pytest.raises(EngineMismatchError, match="rebuild") as info:
            check_engine_sidecar(sidecar, runtime, engine)
        assert message in str(info.value) and "m.engine" in str(info.value)
    onnx_path.write_bytes(b"re-exported graph")  # the ONNX changed after the build
    with pytest.raises(EngineMismatchError, match="m.onnx changed since the build"):
        check_engine_sidecar(sidecar, here, engine)
    onnx_path.unlink()  # no ONNX beside the engine: nothing to compare, the engine stands alone
    check_engine_sidecar(sidecar, here, engine)
    with pytest.raises(EngineMismatchError, match="no 'tensorrt' block"):
        check_engine_sidecar({"format": ENGINE_FORMAT}, here, engine)


# ---------------------------------------------------------------------------- missing TensorRT
def test_missing_tensorrt_module_is_a_clear_error(monkeypatch, exported, tmp_path):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # makes `import tensorrt` raise ImportError
    with pytest.raises(BackendUnavailableError, match="'tensorrt' Python package") as info:
        import_tensorrt()
    assert "onnxruntime" in str(info.value) and "torch" in str(info.value)
    with pytest.raises(BackendUnavailableError, match="'tensorrt' Python package"):
        create_engine(exported["fixed"], backend="tensorrt")
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"x")
    with pytest.raises(BackendUnavailableError, match="'tensorrt' Python package"):
        create_engine(engine, device="cuda")
    assert be.main([str(exported["fixed"]), "--out", str(tmp_path / "x.engine")]) == 1


# ------------------------------------------------------------------------------ build-time logic
def test_parse_shape_and_profiles(exported):
    assert be.parse_shape("640x512") == (1, 512, 640)
    assert be.parse_shape("4x1024x768") == (4, 768, 1024)
    fixed, dynamic = read_sidecar(exported["fixed"]), read_sidecar(exported["dynamic"])
    assert be.resolve_profile(fixed) == {"min": (1, H, W), "opt": (1, H, W), "max": (1, H, W)}
    with pytest.raises(EngineError, match="--dynamic"):
        be.resolve_profile(fixed, opt_shape=(1, 128, 160))
    assert be.resolve_profile(dynamic)["max"] == (1, H, W)  # no shapes: static at the export size
    profile = be.resolve_profile(dynamic, (1, 64, 64), (1, 512, 640), (4, 768, 1024))
    assert profile == {"min": (1, 64, 64), "opt": (1, 512, 640), "max": (4, 768, 1024)}
    with pytest.raises(EngineError, match="min <= opt <= max"):
        be.resolve_profile(dynamic, (2, 64, 64), (1, 512, 640), (4, 768, 1024))


@pytest.mark.parametrize("which", ["fixed", "dynamic"])
def test_fp16_conversion_for_strongly_typed_builds(exported, which):
    path = exported[which]
    converted = be.convert_float_to_float16(onnx.load(str(path)))
    graph = converted.graph
    float32 = onnx.TensorProto.FLOAT
    assert all(v.type.tensor_type.elem_type == float32 for v in list(graph.input) + list(graph.output))
    fp32_ops = [n for n in graph.node if n.op_type in be.KEEP_FP32_OPS]
    assert any(n.op_type == "InstanceNormalization" for n in fp32_ops)
    kept = {name for n in fp32_ops for name in n.input}  # their weights stay float32, their activation is cast
    assert not [i.name for i in graph.initializer if i.data_type == float32 and i.name not in kept]
    produced_by = {out: n for n in graph.node for out in n.output}
    assert all(produced_by[n.input[0]].op_type == "Cast" for n in fp32_ops)
    out = exported["root"] / f"{which}.fp16.onnx"
    onnx.save(converted, str(out))
    rng = np.random.default_rng(0)
    feed = {"thermal": rng.random((1, 1, H, W), dtype=np.float32), "rgb": rng.random((1, 3, H, W), dtype=np.float32)}
    ref = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(list(OUTPUT_NAMES), feed)
    got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(list(OUTPUT_NAMES), feed)
    for name, a, b in zip(OUTPUT_NAMES, ref, got):
        assert b.dtype == np.float32
        assert np.abs(a - b).max() <= 5e-3 * max(1.0, np.abs(a).max()), name


def test_calibration_pairs_are_preprocessed_like_inference(tmp_path):
    (tmp_path / "ir").mkdir()
    (tmp_path / "vi").mkdir()
    rng = np.random.default_rng(0)
    for name in ("a", "b", "c"):
        cv2.imwrite(str(tmp_path / "ir" / f"{name}.png"), rng.integers(26000, 34000, (48, 60), dtype=np.uint16))
        cv2.imwrite(str(tmp_path / "vi" / f"{name}.png"), rng.integers(0, 256, (96, 120, 3), dtype=np.uint8))
    cv2.imwrite(str(tmp_path / "ir" / "unpaired.png"), np.zeros((8, 8), np.uint8))
    pairs = be.find_calibration_pairs(tmp_path)
    assert [p[0].stem for p in pairs] == ["a", "b", "c"]
    thermal, rgb = be.load_calibration_batch(pairs, (H, W), (25315.0, 35315.0), limit=2)
    assert thermal.shape == (2, 1, H, W) and rgb.shape == (2, 3, H, W)
    assert thermal.dtype == rgb.dtype == np.float32 and 0 <= thermal.min() and thermal.max() <= 1
    with pytest.raises(EngineError, match="thermal sub-folder"):
        be.find_calibration_pairs(tmp_path / "ir")


# ------------------------------------------------------------------------------- real TensorRT/GPU
def _trt_or_skip():
    try:
        import tensorrt
    except ImportError as exc:
        pytest.skip(f"TensorRT not installed ({exc}): build/inference on a real engine not tested here")
    if not torch.cuda.is_available():
        pytest.skip("TensorRT is installed but torch sees no CUDA GPU")
    return tensorrt


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_real_engine_build_and_inference(exported, tmp_path, precision):
    _trt_or_skip()
    out = tmp_path / f"m_{precision}.engine"
    path = be.build_engine(exported["dynamic"], out, precision=precision, workspace_mb=512)
    sidecar = read_sidecar(path, ENGINE_FORMAT)
    assert sidecar["tensorrt"]["engine_sha256"] == sha256_file(path)
    trt_engine = create_engine(path, backend="tensorrt")
    ort_engine = create_engine(exported["dynamic"], backend="onnxruntime", device="cpu")
    rng = np.random.default_rng(0)
    thermal, rgb = rng.random((1, 1, H, W), dtype=np.float32), rng.random((1, 3, H, W), dtype=np.float32)
    got, ref = trt_engine.run_raw(thermal, rgb), ort_engine.run_raw(thermal, rgb)
    tol = 1e-3 if precision == "fp32" else 5e-2
    for name in OUTPUT_NAMES:
        assert np.abs(got[name] - ref[name]).max() <= tol * max(1.0, np.abs(ref[name]).max()), name
    write_sidecar(path, dict(sidecar, tensorrt=dict(sidecar["tensorrt"], trt_version="9.9.9")))
    with pytest.raises(EngineMismatchError, match="rebuild"):
        create_engine(path, backend="tensorrt")


# ------------------------------------------------------- the build flow against a recording fake TRT
def _fake_tensorrt(version: str):
    """A stand-in `tensorrt` module that records the builder calls (TRT 11 has no FP16/INT8 flags)."""
    calls = {"flags": [], "pools": [], "profiles": [], "parsed": None, "network_flags": None}
    major = int(version.split(".")[0])

    class BuilderFlag:
        TF32 = "TF32"

    if major < 11:
        BuilderFlag.FP16, BuilderFlag.INT8 = "FP16", "INT8"

    class Profile:
        def __init__(self):
            self.shapes = {}
            calls["profiles"].append(self.shapes)

        def set_shape(self, name, low, opt, high):
            self.shapes[name] = (low, opt, high)

    class Cache:
        def serialize(self):
            return b"timing-cache"

    class Config:
        int8_calibrator = None

        def set_flag(self, flag):
            calls["flags"].append(flag)

        def set_memory_pool_limit(self, pool, size):
            calls["pools"].append((pool, size))

        def add_optimization_profile(self, profile):
            calls["profile_added"] = True

        def set_calibration_profile(self, profile):
            calls["calibration_profile"] = profile.shapes

        def create_timing_cache(self, data):
            calls["timing_cache_in"] = data
            return Cache()

        def set_timing_cache(self, cache, ignore_mismatch):
            pass

        def get_timing_cache(self):
            return Cache()

    class Builder:
        def __init__(self, logger):
            pass

        def create_network(self, flags):
            calls["network_flags"] = flags
            return object()

        def create_builder_config(self):
            calls["config"] = Config()
            return calls["config"]

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            return b"serialized-engine"

    class OnnxParser:
        num_errors = 0

        def __init__(self, network, logger):
            pass

        def parse_from_file(self, path):
            calls["parsed"] = path
            return True

    class Logger:
        WARNING = 2

        def __init__(self, severity):
            pass

    class Calibrator:
        def __init__(self):
            pass

    fake = types.SimpleNamespace(
        __version__=version, Logger=Logger, Builder=Builder, OnnxParser=OnnxParser, BuilderFlag=BuilderFlag,
        MemoryPoolType=types.SimpleNamespace(WORKSPACE="WORKSPACE"),
        NetworkDefinitionCreationFlag=types.SimpleNamespace(STRONGLY_TYPED=0), IInt8EntropyCalibrator2=Calibrator,
    )
    return fake, calls


@pytest.mark.parametrize("version", ["10.3.0.30", "11.4.1"])
def test_fp16_build_flow_per_tensorrt_version(exported, tmp_path, monkeypatch, version):
    fake, calls = _fake_tensorrt(version)
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    runtime = RuntimeInfo(version, "Orin", "8.7")
    monkeypatch.setattr(be, "current_runtime", lambda trt: runtime)
    out, cache = tmp_path / "m.engine", tmp_path / "timing.cache"
    path = be.build_engine(
        exported["dynamic"], out, precision="fp16", workspace_mb=256, timing_cache=cache,
        min_shape=(1, 64, 64), opt_shape=(1, H, W), max_shape=(2, 128, 160),
    )
    assert path == out and out.read_bytes() == b"serialized-engine" and cache.read_bytes() == b"timing-cache"
    assert calls["pools"] == [("WORKSPACE", 256 << 20)]
    assert calls["profiles"][0]["rgb"] == ((1, 3, 64, 64), (1, 3, H, W), (2, 3, 128, 160))
    sidecar = read_sidecar(out, ENGINE_FORMAT)
    block = sidecar["tensorrt"]
    if version.startswith("10"):
        assert calls["flags"] == ["FP16"] and calls["network_flags"] == 0 and block["typing"] == "weak"
        assert calls["parsed"] == str(exported["dynamic"]) and block["built_from"] is None
    else:
        assert calls["flags"] == [] and calls["network_flags"] == 1 and block["typing"] == "strong"
        assert calls["parsed"].endswith(".fp16.onnx") and block["built_from"]["file"] == "m.fp16.onnx"
    assert block["trt_version"] == version and block["gpu_name"] == "Orin" and block["precision"] == "fp16"
    assert block["engine_sha256"] == sha256_file(out)
    assert block["onnx_sha256"] == sha256_file(exported["dynamic"]) and block["onnx_file"] == "dyn.onnx"
    assert sidecar["inputs"][0]["shape"] == ["batch", 1, "height", "width"] and sidecar["input_size"] == [H, W]
    check_engine_sidecar(sidecar, runtime, out, exported["dynamic"])  # the fresh engine matches
    static = be.build_engine(exported["dynamic"], tmp_path / "static.engine")  # no shapes: static, batch 1
    assert read_sidecar(static, ENGINE_FORMAT)["inputs"][1]["shape"] == [1, 3, H, W]


def test_int8_build_flow_on_tensorrt_10(exported, standin_cudart, tmp_path, monkeypatch):
    fake, calls = _fake_tensorrt("10.3.0.30")
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    monkeypatch.setattr(cuda_runtime, "cudart_candidates", lambda: [str(standin_cudart[0])])
    monkeypatch.setattr(be, "current_runtime", lambda trt: RuntimeInfo("10.3.0.30", "Orin", "8.7"))
    with pytest.raises(EngineError, match="--calib-dir"):
        be.build_engine(exported["dynamic"], tmp_path / "x.engine", precision="int8")
    (tmp_path / "thermal").mkdir()
    (tmp_path / "rgb").mkdir()
    for name in ("a", "b"):
        cv2.imwrite(str(tmp_path / "thermal" / f"{name}.png"), np.full((32, 40), 30000, np.uint16))
        cv2.imwrite(str(tmp_path / "rgb" / f"{name}.png"), np.full((32, 40, 3), 128, np.uint8))
    out = be.build_engine(exported["dynamic"], tmp_path / "q.engine", precision="int8", calib_dir=tmp_path)
    assert calls["flags"] == ["INT8", "FP16"]
    calibrator = calls["config"].int8_calibrator
    assert calibrator is not None and calibrator.get_batch_size() == 1
    first = calibrator.get_batch(["thermal", "rgb"])  # device addresses (stand-in: host memory) of pair 0
    thermal = _device_view(first[0], (1, 1, H, W))
    assert thermal.min() == thermal.max() == pytest.approx((30000 - 25315) / 10000)
    assert calibrator.get_batch(["thermal", "rgb"]) is not None and calibrator.get_batch(["thermal", "rgb"]) is None
    calibrator.free()
    assert calls["calibration_profile"]["thermal"][1] == (1, 1, H, W)
    assert read_sidecar(out, ENGINE_FORMAT)["tensorrt"]["calibration"]["pairs"] == 2


# --------------------------------------------- inference bindings: stand-in libcudart + stand-in runtime
def _device_view(address, shape):
    """A float32 array over stand-in "device" memory (host memory the stand-in libcudart handed out)."""
    return np.frombuffer((ctypes.c_float * int(np.prod(shape))).from_address(address), np.float32).reshape(shape)


def _add_fake_runtime(fake, onnx_path, profile_hw):
    """Give the fake `tensorrt` an inference runtime whose engine is the real ONNX graph, run by ONNX
    Runtime on the memory the stand-in libcudart hands out as device memory (host memory)."""
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    inputs = [i.name for i in session.get_inputs()]
    names = inputs + [o.name for o in session.get_outputs()]
    calls = {"executions": 0, "names": names}

    class Context:
        def __init__(self):
            self.shapes, self.addresses, self.outputs = {}, {}, None

        def set_input_shape(self, name, shape):
            self.shapes[name], self.outputs = tuple(shape), None
            return tuple(shape[-2:]) == profile_hw  # the optimization profile covers this one size

        def get_tensor_shape(self, name):  # output shapes follow the bound input shapes, as in TensorRT
            if self.outputs is None:
                feed = {n: np.zeros(self.shapes[n], np.float32) for n in inputs}
                self.outputs = {n: v.shape for n, v in zip(names[len(inputs):], session.run(None, feed))}
            return self.outputs[name]

        def set_tensor_address(self, name, address):
            self.addresses[name] = address

        def execute_async_v3(self, stream):
            calls["executions"] += 1
            calls["stream"] = stream
            feed = {n: _device_view(self.addresses[n], self.shapes[n]).copy() for n in inputs}
            for name, value in zip(names[len(inputs):], session.run(None, feed)):
                _device_view(self.addresses[name], value.shape)[...] = value
            return True

    class CudaEngine:
        num_io_tensors = len(names)
        get_tensor_name = staticmethod(lambda i: names[i])
        get_tensor_mode = staticmethod(lambda name: "in" if name in inputs else "out")
        get_tensor_dtype = staticmethod(lambda name: "float")
        create_execution_context = staticmethod(Context)

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, data):
            return CudaEngine() if data == b"serialized-engine" else None

    fake.Runtime, fake.nptype = Runtime, lambda dtype: np.float32
    fake.TensorIOMode = types.SimpleNamespace(INPUT="in", OUTPUT="out")
    return calls


def test_tensorrt_engine_bindings_equal_onnxruntime(exported, standin_cudart, tmp_path, monkeypatch):
    """TensorRTEngine end to end without torch's CUDA: its raw outputs and its Perception must equal ONNX
    Runtime's bit for bit (same graph), so shapes, dtypes, addresses and copies are all bound right."""
    lib_path, lib = standin_cudart
    live_before = lib.standin_live()
    version = "10.3.0.30"
    fake, _ = _fake_tensorrt(version)
    calls = _add_fake_runtime(fake, exported["dynamic"], (H, W))
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    monkeypatch.setattr(cuda_runtime, "cudart_candidates", lambda: [str(lib_path)])
    engine_path = be.build_engine(exported["dynamic"], tmp_path / "m.engine", min_shape=(1, H, W),
                                  opt_shape=(1, H, W), max_shape=(2, H, W))  # sidecar records the stand-in GPU
    assert read_sidecar(engine_path, ENGINE_FORMAT)["tensorrt"]["gpu_name"] == "Stand-in GPU"

    trt_engine = create_engine(engine_path, backend="tensorrt")
    ort_engine = create_engine(exported["dynamic"], backend="onnxruntime", device="cpu")
    rng = np.random.default_rng(0)
    thermal, rgb = rng.random((2, 1, H, W), dtype=np.float32), rng.random((2, 3, H, W), dtype=np.float32)
    got, ref = trt_engine.run_raw(thermal, rgb), ort_engine.run_raw(thermal, rgb)
    for name in OUTPUT_NAMES:
        assert got[name].dtype == np.float32
        np.testing.assert_array_equal(got[name], ref[name], err_msg=name)
    assert calls["executions"] == 1 and calls["stream"] != 0
    frame_t = (rng.random((H, W)) * 65535).astype(np.uint16)
    frame_c = (rng.random((H, W, 3)) * 255).astype(np.uint8)
    a, b = trt_engine.infer(frame_t, frame_c), ort_engine.infer(frame_t, frame_c)
    np.testing.assert_array_equal(a.fused, b.fused)
    np.testing.assert_array_equal(a.detections.boxes, b.detections.boxes)
    np.testing.assert_array_equal(a.segmentation, b.segmentation)
    with pytest.raises(EngineError, match="outside the engine's optimization profile"):
        trt_engine.run_raw(np.zeros((1, 1, 32, 40), np.float32), np.zeros((1, 3, 32, 40), np.float32))
    live = lib.standin_live() - live_before
    assert live == len(calls["names"]), "one device buffer per I/O tensor, reused across calls"
    trt_engine.close()
    assert lib.standin_live() == live_before, "closing the engine frees every device buffer"
