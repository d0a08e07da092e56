"""The few CUDA runtime calls the TensorRT backend needs, over ctypes: no torch on the inference path.

TensorRT's Python API runs an engine on device addresses and a stream handle but allocates neither.
Rather than importing torch (seconds of start-up, hundreds of MB) or a version-pinned binding package,
this loads libcudart itself (the library TensorRT already depends on) and wraps: device count, name and
compute capability, a stream, device buffers, and host <-> device copies on that stream.
"""
from __future__ import annotations

import ctypes
import glob
import os
import sys
from pathlib import Path

import numpy as np

from .base import BackendUnavailableError, EngineError

# names the loader tries, newest first; then the pip wheels' and the toolkit's folders
CUDART_NAMES = ("libcudart.so", "libcudart.so.13", "libcudart.so.12", "libcudart.so.11.0")
_PIP_PATTERNS = ("nvidia/cuda_runtime/lib/libcudart.so*", "nvidia/cu13/lib/libcudart.so*")
_TOOLKIT_DIRS = ("/usr/local/cuda/lib64", "/usr/local/cuda/targets/aarch64-linux/lib")

MEMCPY_HOST_TO_DEVICE = 1  # cudaMemcpyKind
MEMCPY_DEVICE_TO_HOST = 2
ATTR_CC_MAJOR = 75  # cudaDevAttrComputeCapabilityMajor
ATTR_CC_MINOR = 76
_DEVICE_PROP_BYTES = 8192  # cudaDeviceProp is ~1 KB and starts with `char name[256]`; room to spare


def cudart_candidates() -> list[str]:
    """Where libcudart may be: the plain names (LD_LIBRARY_PATH, ldconfig), pip wheels, the toolkit."""
    found = list(CUDART_NAMES)
    for root in sys.path:
        for pattern in _PIP_PATTERNS:
            found += sorted(glob.glob(os.path.join(root, pattern)), reverse=True)
    for folder in _TOOLKIT_DIRS:
        found += sorted(glob.glob(os.path.join(folder, "libcudart.so*")), reverse=True)
    return found


def load_cudart(candidates=None) -> ctypes.CDLL:
    """The first loadable libcudart, or a BackendUnavailableError listing what was tried."""
    tried = list(candidates if candidates is not None else cudart_candidates())
    for name in tried:
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    raise BackendUnavailableError(
        "the TensorRT backend needs the CUDA runtime library (libcudart; tried "
        f"{', '.join(Path(t).name for t in tried[:6])}{' ...' if len(tried) > 6 else ''}): install the CUDA "
        "runtime that matches TensorRT (JetPack ships it; pip: nvidia-cuda-runtime-cu12) or put its folder on "
        "LD_LIBRARY_PATH, or use backend='onnxruntime'"
    )


class CudaRuntime:
    """One loaded libcudart with typed entry points; every call checks its cudaError_t."""

    def __init__(self, lib: ctypes.CDLL | None = None):
        self.lib = lib or load_cudart()
        c_void_pp = ctypes.POINTER(ctypes.c_void_p)
        signatures = {
            "cudaGetDeviceCount": [ctypes.POINTER(ctypes.c_int)],
            "cudaDeviceGetAttribute": [ctypes.POINTER(ctypes.c_int), ctypes.c_int, ctypes.c_int],
            "cudaMalloc": [c_void_pp, ctypes.c_size_t],
            "cudaFree": [ctypes.c_void_p],
            "cudaMemcpyAsync": [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_void_p],
            "cudaStreamCreate": [c_void_pp],
            "cudaStreamSynchronize": [ctypes.c_void_p],
            "cudaStreamDestroy": [ctypes.c_void_p],
        }
        for name, argtypes in signatures.items():
            fn = self._entry(name)
            fn.argtypes, fn.restype = argtypes, ctypes.c_int
        # CUDA 12 exports the current cudaDeviceProp layout as _v2; either way `name` comes first
        self._get_properties = self._entry("cudaGetDeviceProperties_v2", "cudaGetDeviceProperties")
        self._get_properties.argtypes, self._get_properties.restype = [ctypes.c_void_p, ctypes.c_int], ctypes.c_int
        error_string = self._entry("cudaGetErrorString")
        error_string.argtypes, error_string.restype = [ctypes.c_int], ctypes.c_char_p

    def _entry(self, *names: str):
        """The first of `names` the library exports; a library without any is not a CUDA runtime."""
        for name in names:
            try:
                return getattr(self.lib, name)
            except AttributeError:
                continue
        raise BackendUnavailableError(
            f"{self.lib._name} has no {' / '.join(names)}: not a CUDA runtime library (libcudart) this backend "
            "can use; use backend='onnxruntime'"
        )

    def check(self, code: int, call: str) -> None:
        if code != 0:
            message = (self.lib.cudaGetErrorString(code) or b"?").decode(errors="replace")
            raise EngineError(f"CUDA {call} failed: error {code} ({message})")

    def device_count(self) -> int:
        """0 when no GPU or driver is usable (the runtime reports that as an error code, not as 0)."""
        n = ctypes.c_int(0)
        return n.value if self.lib.cudaGetDeviceCount(ctypes.byref(n)) == 0 else 0

    def device_name(self, index: int = 0) -> str:
        props = ctypes.create_string_buffer(_DEVICE_PROP_BYTES)
        self.check(self._get_properties(props, index), "cudaGetDeviceProperties")
        return props.value.decode(errors="replace")

    def compute_capability(self, index: int = 0) -> str:
        major, minor = ctypes.c_int(), ctypes.c_int()
        self.check(self.lib.cudaDeviceGetAttribute(ctypes.byref(major), ATTR_CC_MAJOR, index), "cudaDeviceGetAttribute")
        self.check(self.lib.cudaDeviceGetAttribute(ctypes.byref(minor), ATTR_CC_MINOR, index), "cudaDeviceGetAttribute")
        return f"{major.value}.{minor.value}"

    def create_stream(self) -> int:
        handle = ctypes.c_void_p()
        self.check(self.lib.cudaStreamCreate(ctypes.byref(handle)), "cudaStreamCreate")
        return handle.value or 0

    def synchronize(self, stream: int) -> None:
        self.check(self.lib.cudaStreamSynchronize(stream), "cudaStreamSynchronize")

    def destroy_stream(self, stream: int) -> None:
        self.check(self.lib.cudaStreamDestroy(stream), "cudaStreamDestroy")


class DeviceBuffer:
    """A device allocation that grows on demand; copies are queued on the caller's stream."""

    def __init__(self, cuda: CudaRuntime):
        self.cuda, self.ptr, self.nbytes = cuda, 0, 0

    def reserve(self, nbytes: int) -> int:
        """Device address of at least `nbytes` (re-allocated only when a larger input arrives)."""
        if nbytes > self.nbytes:
            self.free()
            ptr = ctypes.c_void_p()
            self.cuda.check(self.cuda.lib.cudaMalloc(ctypes.byref(ptr), max(nbytes, 1)), f"cudaMalloc({nbytes})")
            self.ptr, self.nbytes = ptr.value, nbytes
        return self.ptr

    def upload(self, array: np.ndarray, stream: int) -> int:
        """Queue a copy of a C-contiguous host array; the array must live until the stream is synchronized."""
        if not array.flags.c_contiguous:
            raise ValueError("upload needs a C-contiguous array")
        ptr = self.reserve(array.nbytes)
        self.cuda.check(
            self.cuda.lib.cudaMemcpyAsync(ptr, array.ctypes.data, array.nbytes, MEMCPY_HOST_TO_DEVICE, stream),
            "cudaMemcpyAsync (host to device)",
        )
        return ptr

    def download(self, out: np.ndarray, stream: int) -> None:
        """Queue a copy of the buffer's first out.nbytes into `out` (valid after the stream is synchronized)."""
        if not out.flags.c_contiguous or out.nbytes > self.nbytes:
            raise ValueError(f"download needs a C-contiguous array of at most {self.nbytes} bytes")
        self.cuda.check(
            self.cuda.lib.cudaMemcpyAsync(out.ctypes.data, self.ptr, out.nbytes, MEMCPY_DEVICE_TO_HOST, stream),
            "cudaMemcpyAsync (device to host)",
        )

    def free(self) -> None:
        if self.ptr:
            self.cuda.check(self.cuda.lib.cudaFree(self.ptr), "cudaFree")
        self.ptr, self.nbytes = 0, 0
