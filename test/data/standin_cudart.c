/* A host-memory stand-in for the libcudart entry points fusion_ros/engine/cuda_runtime.py calls.
 * Built by test/test_cuda_runtime.py on machines without a GPU, so that the ctypes signatures, the
 * buffer and copy logic and the TensorRT backend's bindings run for real: "device" memory is malloc'd
 * host memory and copies are memcpy. Error codes follow cudaError_t (2 = out of memory,
 * 21 = invalid memcpy direction, 100 = no device). */
#include <stdlib.h>
#include <string.h>

static int standin_devices = 1;
static long long standin_live_allocations = 0;

void standin_set_devices(int n) { standin_devices = n; }
long long standin_live(void) { return standin_live_allocations; }

const char *cudaGetErrorString(int code) {
    switch (code) {
        case 2: return "out of memory";
        case 21: return "invalid copy direction for memcpy";
        case 100: return "no CUDA-capable device is detected";
        default: return "unknown error";
    }
}

int cudaGetDeviceCount(int *count) {
    *count = 0;
    if (standin_devices <= 0) return 100;
    *count = standin_devices;
    return 0;
}

int cudaDeviceGetAttribute(int *value, int attr, int device) {
    if (device >= standin_devices) return 101;
    *value = attr == 75 ? 8 : attr == 76 ? 7 : -1;
    return *value < 0 ? 1 : 0;
}

int cudaGetDeviceProperties_v2(void *props, int device) {
    if (device >= standin_devices) return 101;
    memset(props, 0, 1008);
    strcpy((char *)props, "Stand-in GPU");
    return 0;
}

int cudaMalloc(void **ptr, size_t size) {
    if (size > ((size_t)1 << 40)) return 2;
    *ptr = malloc(size);
    if (*ptr == NULL) return 2;
    standin_live_allocations++;
    return 0;
}

int cudaFree(void *ptr) {
    if (ptr != NULL) standin_live_allocations--;
    free(ptr);
    return 0;
}

int cudaMemcpyAsync(void *dst, const void *src, size_t count, int kind, void *stream) {
    (void)stream;
    if (kind != 1 && kind != 2) return 21;
    memcpy(dst, src, count);
    return 0;
}

static int standin_stream_token;  /* the one stream handed out; NULL is the default stream */
int cudaStreamCreate(void **stream) { *stream = &standin_stream_token; return 0; }
int cudaStreamSynchronize(void *stream) { return stream == NULL || stream == &standin_stream_token ? 0 : 400; }
int cudaStreamDestroy(void *stream) { return stream == &standin_stream_token ? 0 : 400; }
