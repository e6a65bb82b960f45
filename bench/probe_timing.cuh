// bench/probe_timing.cuh - the device probes' shared pieces (not part of the library): fill() writes values in
// [-4, 4) from a hash of the index (erff's slow and fast ranges both), timeit() is the median of 7 runs of 50 calls
// between CUDA events, after 3 warm-up calls.
#pragma once
#include <cstdint>
#include <algorithm>
#include <cuda_runtime.h>
__global__ void fill(float *x, int64_t n, uint32_t seed) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        uint32_t h = (uint32_t)i * 2654435761u ^ seed; h ^= h >> 15; h *= 2246822519u; h ^= h >> 13;
        x[i] = (h >> 8) * (8.0f / 16777216.0f) - 4.0f;
    }
}
template <typename F> static float timeit(F f) {
    cudaEvent_t a, b; cudaEventCreate(&a); cudaEventCreate(&b);
    for (int i = 0; i < 3; i++) f();
    float t[7];
    for (int r = 0; r < 7; r++) {
        cudaEventRecord(a); for (int i = 0; i < 50; i++) f(); cudaEventRecord(b); cudaEventSynchronize(b);
        cudaEventElapsedTime(&t[r], a, b); t[r] /= 50;
    }
    std::sort(t, t + 7); return t[3];
}
