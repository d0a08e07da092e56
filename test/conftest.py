"""Shared test set-up: private ROS logs and DDS domain, deterministic small torch."""
import ctypes
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

# Before any rclpy import: keep ROS logs out of ~/.ros and keep parallel runs off each other's DDS traffic.
os.environ.setdefault("ROS_LOG_DIR", tempfile.mkdtemp(prefix="fusion_ros_test_logs_"))
os.environ.setdefault("ROS_DOMAIN_ID", str(100 + os.getpid() % 100))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def standin_cudart(tmp_path_factory):
    """(path, CDLL) of test/data/standin_cudart.c compiled here: libcudart's entry points over host memory,
    so the TensorRT backend's CUDA layer runs without a GPU (test_cuda_runtime, test_tensorrt_logic)."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler: the stand-in CUDA runtime cannot be built, so the ctypes layer is not exercised")
    lib_path = tmp_path_factory.mktemp("cudart") / "libcudart_standin.so"
    source = Path(__file__).parent / "data" / "standin_cudart.c"
    subprocess.run([compiler, "-shared", "-fPIC", "-O1", "-o", str(lib_path), str(source)], check=True)
    lib = ctypes.CDLL(str(lib_path))
    lib.standin_live.restype = ctypes.c_longlong
    return lib_path, lib
