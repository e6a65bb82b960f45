// bench/session_1207c/gelu_probe.cu - the GELU forward (64M f32) in the one-pass shapes, against a device-to-device
// cudaMemcpy of the same bytes, to find a shape as fast as PyTorch's (0.6-0.8 % ahead of nn.h's U4 x 128 at
// 12-07 10:24). Each variant: CUDA events over 50 calls, median of 7. Not part of the library. Written in stop
// 24, not run (the device refused the start at 10:33 and the budget left was too small to try again).
//   nvcc -O3 -gencode arch=compute_90a,code=sm_90a bench/session_1207c/gelu_probe.cu -o gelu_probe && ./gelu_probe
#include <cstdio>
#include <cstdint>
#include <algorithm>
#include <cuda_runtime.h>
#include "../probe_timing.cuh"
#define CK(x) do { cudaError_t e = (x); if (e) { printf("%s:%d %s\n", __FILE__, __LINE__, cudaGetErrorString(e)); return 1; } } while (0)
__device__ __forceinline__ float gelu(float v) { return 0.5f * v * (1.0f + erff(v * 0.70710678118654752f)); }
__device__ __forceinline__ float4 g4(float4 v) { v.x = gelu(v.x); v.y = gelu(v.y); v.z = gelu(v.z); v.w = gelu(v.w); return v; }
// L 0: plain loads; 1: __ldg (the read-only path); 2: __ldcs / __stcs (streaming)
template <int U, int L> __global__ void v1(const float4 *__restrict__ x, float4 *__restrict__ y, int64_t n4) {
    int64_t b = (int64_t)blockIdx.x * blockDim.x * U + threadIdx.x;
    float4 r[U];
#pragma unroll
    for (int k = 0; k < U; k++) if (b + k * blockDim.x < n4) r[k] = L == 1 ? __ldg(x + b + k * blockDim.x) : L == 2 ? __ldcs(x + b + k * blockDim.x) : x[b + k * blockDim.x];
#pragma unroll
    for (int k = 0; k < U; k++) if (b + k * blockDim.x < n4) { if (L == 2) __stcs(y + b + k * blockDim.x, g4(r[k])); else y[b + k * blockDim.x] = g4(r[k]); }
}
// each thread U consecutive float4 (thread-major, as PyTorch's vectorised loop)
template <int U> __global__ void v3(const float4 *__restrict__ x, float4 *__restrict__ y, int64_t n4) {
    int64_t b = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) * U;
    float4 r[U];
#pragma unroll
    for (int k = 0; k < U; k++) if (b + k < n4) r[k] = x[b + k];
#pragma unroll
    for (int k = 0; k < U; k++) if (b + k < n4) y[b + k] = g4(r[k]);
}
int main() {
    const int64_t n = (int64_t)1 << 26, n4 = n / 4;
    float *x, *y;
    CK(cudaMalloc(&x, n * 4)); CK(cudaMalloc(&y, n * 4));
    fill<<<1024, 256>>>(x, n, 1);
    auto rep = [&](const char *nm, float ms) { printf("%-30s %.4f ms  %.0f GB/s\n", nm, ms, 8.0 * n / ms / 1e6); };
    auto grid = [&](int u, int t) { return (unsigned)((n4 + (int64_t)u * t - 1) / ((int64_t)u * t)); };
    for (int rep_i = 0; rep_i < 2; rep_i++) {
        rep("memcpy d2d", timeit([&] { cudaMemcpyAsync(y, x, n * 4, cudaMemcpyDeviceToDevice); }));
        rep("U4 x 128 (library)", timeit([&] { v1<4, 0><<<grid(4, 128), 128>>>((float4 *)x, (float4 *)y, n4); }));
        rep("U2 x 256", timeit([&] { v1<2, 0><<<grid(2, 256), 256>>>((float4 *)x, (float4 *)y, n4); }));
        rep("U1 x 128", timeit([&] { v1<1, 0><<<grid(1, 128), 128>>>((float4 *)x, (float4 *)y, n4); }));
        rep("U1 x 256", timeit([&] { v1<1, 0><<<grid(1, 256), 256>>>((float4 *)x, (float4 *)y, n4); }));
        rep("U2 x 128", timeit([&] { v1<2, 0><<<grid(2, 128), 128>>>((float4 *)x, (float4 *)y, n4); }));
        rep("U4 x 128 ldg", timeit([&] { v1<4, 1><<<grid(4, 128), 128>>>((float4 *)x, (float4 *)y, n4); }));
        rep("U4 x 128 cs", timeit([&] { v1<4, 2><<<grid(4, 128), 128>>>((float4 *)x, (float4 *)y, n4); }));
        rep("U2 x 256 cs", timeit([&] { v1<2, 2><<<grid(2, 256), 256>>>((float4 *)x, (float4 *)y, n4); }));
        rep("thread-major U2 x 128", timeit([&] { v3<2><<<grid(2, 128), 128>>>((float4 *)x, (float4 *)y, n4); }));
        rep("thread-major U4 x 128", timeit([&] { v3<4><<<grid(4, 128), 128>>>((float4 *)x, (float4 *)y, n4); }));
    }
    CK(cudaDeviceSynchronize());
    return 0;
}
