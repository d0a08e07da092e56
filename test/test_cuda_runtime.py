"""The TensorRT backend's CUDA layer: libcudart over ctypes (fusion_ros/engine/cuda_runtime.py).

No GPU here, so the layer runs against test/data/standin_cudart.c (conftest's standin_cudart): the same
entry points over host memory, compiled on the spot. That exercises for real what can go wrong on the
Python side: ctypes signatures, pointers, sizes, copy directions, error codes, buffer reuse and release.
The TensorRT engine's bindings on top of it: test_tensorrt_logic. On a machine with a GPU the last test
runs the layer against the real libcudart.
"""
import types

import numpy as np
import pytest

from fusion_ros.engine import BackendUnavailableError, EngineError, _cuda_gpu_problem
from fusion_ros.engine import cuda_runtime as cr
from fusion_ros.engine.tensorrt_backend import current_runtime


def test_missing_library_is_a_clear_error():
    with pytest.raises(BackendUnavailableError, match="CUDA runtime library.*libcudart.so.99.*onnxruntime"):
        cr.load_cudart(["/nonexistent/libcudart.so.99"])


def test_device_queries_and_copies(standin_cudart):
    lib_path, lib = standin_cudart
    cuda = cr.CudaRuntime(cr.load_cudart([str(lib_path)]))
    live_before = lib.standin_live()
    assert cuda.device_count() == 1
    assert cuda.device_name(0) == "Stand-in GPU" and cuda.compute_capability(0) == "8.7"
    stream = cuda.create_stream()
    buffer = cr.DeviceBuffer(cuda)
    src = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    first = buffer.upload(src, stream)
    back = np.zeros_like(src)
    buffer.download(back, stream)
    cuda.synchronize(stream)
    np.testing.assert_array_equal(back, src)
    assert buffer.upload(src[:1].copy(), stream) == first, "a smaller input reuses the allocation"
    assert buffer.upload(np.zeros(100, np.float32), stream) != 0 and buffer.nbytes == 400
    assert lib.standin_live() - live_before == 1
    with pytest.raises(ValueError, match="C-contiguous"):
        buffer.upload(src.transpose(2, 1, 0), stream)
    with pytest.raises(ValueError, match="at most 400 bytes"):
        buffer.download(np.zeros(101, np.float32), stream)
    buffer.free()
    assert lib.standin_live() == live_before and buffer.nbytes == 0
    with pytest.raises(EngineError, match=r"cudaMalloc\(2199023255552\) failed: error 2 \(out of memory\)"):
        buffer.reserve(2 << 40)
    cuda.destroy_stream(stream)


def test_no_device_is_a_clear_error(standin_cudart):
    lib_path, lib = standin_cudart
    cuda = cr.CudaRuntime(cr.load_cudart([str(lib_path)]))
    lib.standin_set_devices(0)
    try:
        assert cuda.device_count() == 0
        with pytest.raises(BackendUnavailableError, match="needs a CUDA GPU.*0 usable devices"):
            current_runtime(types.SimpleNamespace(__version__="10.3.0.30"), cuda=cuda)
    finally:
        lib.standin_set_devices(1)


def test_real_cuda_runtime_round_trip():
    """On a GPU machine: the same copies through the real libcudart (and the name TensorRT's sidecar records)."""
    try:
        cuda = cr.CudaRuntime()
    except BackendUnavailableError as exc:
        pytest.skip(f"no CUDA runtime library here ({str(exc)[:60]}...): the stand-in tests above cover the layer")
    if cuda.device_count() == 0:
        pytest.skip("libcudart loads but sees no GPU: the stand-in tests above cover the layer")
    stream = cuda.create_stream()
    buffer = cr.DeviceBuffer(cuda)
    src = np.random.default_rng(1).random((1, 3, 480, 640), dtype=np.float32)
    buffer.upload(src, stream)
    back = np.empty_like(src)
    buffer.download(back, stream)
    cuda.synchronize(stream)
    np.testing.assert_array_equal(back, src)
    assert cuda.device_name(0) and cuda.compute_capability(0)[0].isdigit()
    buffer.free()
    cuda.destroy_stream(stream)


def test_a_library_that_is_not_libcudart_is_a_clear_error():
    libc = cr.load_cudart(["libc.so.6"])  # loads, but exports none of the CUDA entry points
    with pytest.raises(BackendUnavailableError, match="libc.so.6 has no cudaGetDeviceCount: not a CUDA runtime"):
        cr.CudaRuntime(libc)


def test_auto_backend_says_why_tensorrt_cannot_run(standin_cudart, monkeypatch):
    """create_engine(backend="auto") skips a TensorRT engine with this reason (None: it can run)."""
    lib_path, lib = standin_cudart
    monkeypatch.setattr(cr, "cudart_candidates", lambda: ["/nonexistent/libcudart.so.99"])
    assert "CUDA runtime library (libcudart" in _cuda_gpu_problem()
    monkeypatch.setattr(cr, "cudart_candidates", lambda: [str(lib_path)])
    assert _cuda_gpu_problem() is None
    lib.standin_set_devices(0)
    try:
        assert _cuda_gpu_problem() == "no CUDA GPU (the CUDA runtime sees none)"
    finally:
        lib.standin_set_devices(1)
