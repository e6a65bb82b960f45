// bench/session_1206d/ew_probe.cu - A/B of elementwise and row-sum kernel shapes on the device (not part of the
// library): f32 GELU forward / gradient over 64M values and a sum over the last dim of [16384, 768], each variant
// timed with CUDA events over 50 calls, median of 7. Build and run: nvcc -O3 -arch=sm_90a ew_probe.cu -o ew && ./ew
#include <cstdio>
#include <cstdint>
#include <algorithm>
#include <cuda_runtime.h>
#include "../probe_timing.cuh"
#define CK(x) do { cudaError_t e = (x); if (e) { printf("%s:%d %s\n", __FILE__, __LINE__, cudaGetErrorString(e)); return 1; } } while (0)
__device__ __forceinline__ float gelu(float v) { return 0.5f * v * (1.0f + erff(v * 0.70710678118654752f)); }
__device__ __forceinline__ float gelu_d(float v) { return 0.5f * (1.0f + erff(v * 0.70710678118654752f)) + v * 0.3989422804f * expf(-0.5f * v * v); }
__device__ __forceinline__ float4 g4(float4 v) { v.x = gelu(v.x); v.y = gelu(v.y); v.z = gelu(v.z); v.w = gelu(v.w); return v; }
// V0: the library's: grid-stride over float4, two in flight, grid capped at 32 blocks an SM
__global__ void v0(const float4 *x, float4 *y, int64_t n4) {
    int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x, st = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = t; i < n4; i += 2 * st) {
        float4 v = x[i], u = i + st < n4 ? x[i + st] : make_float4(0, 0, 0, 0);
        y[i] = g4(v);
        if (i + st < n4) y[i + st] = g4(u);
    }
}
// V1: one pass, no grid stride: each thread U float4 at stride blockDim (coalesced), all loads first
template <int U> __global__ void v1(const float4 *x, float4 *y, int64_t n4) {
    int64_t b = (int64_t)blockIdx.x * blockDim.x * U + threadIdx.x;
    float4 r[U];
#pragma unroll
    for (int k = 0; k < U; k++) if (b + k * blockDim.x < n4) r[k] = x[b + k * blockDim.x];
#pragma unroll
    for (int k = 0; k < U; k++) if (b + k * blockDim.x < n4) y[b + k * blockDim.x] = g4(r[k]);
}
// V2: grid-stride with U in flight, all loads first
template <int U> __global__ void v2(const float4 *x, float4 *y, int64_t n4) {
    int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x, st = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = t; i < n4; i += U * st) {
        float4 r[U];
#pragma unroll
        for (int k = 0; k < U; k++) if (i + k * st < n4) r[k] = __ldcs(x + i + k * st);
#pragma unroll
        for (int k = 0; k < U; k++) if (i + k * st < n4) __stcs(y + i + k * st, g4(r[k]));
    }
}
// gradient: gx = g * gelu'(x)
__global__ void w0(const float4 *g, const float4 *s, float4 *gx, int64_t n4) {
    int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x, st = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = t; i < n4; i += 2 * st) {
        int two = i + st < n4;
        float4 gv = g[i], sv = s[i], gu = two ? g[i + st] : make_float4(0, 0, 0, 0), su = two ? s[i + st] : make_float4(0, 0, 0, 0);
        gv.x *= gelu_d(sv.x); gv.y *= gelu_d(sv.y); gv.z *= gelu_d(sv.z); gv.w *= gelu_d(sv.w);
        gx[i] = gv;
        if (two) { gu.x *= gelu_d(su.x); gu.y *= gelu_d(su.y); gu.z *= gelu_d(su.z); gu.w *= gelu_d(su.w); gx[i + st] = gu; }
    }
}
template <int U> __global__ void w1(const float4 *g, const float4 *s, float4 *gx, int64_t n4) {
    int64_t b = (int64_t)blockIdx.x * blockDim.x * U + threadIdx.x;
    float4 a[U], c[U];
#pragma unroll
    for (int k = 0; k < U; k++) if (b + k * blockDim.x < n4) { a[k] = g[b + k * blockDim.x]; c[k] = s[b + k * blockDim.x]; }
#pragma unroll
    for (int k = 0; k < U; k++) if (b + k * blockDim.x < n4) {
        float4 v = a[k], q = c[k];
        v.x *= gelu_d(q.x); v.y *= gelu_d(q.y); v.z *= gelu_d(q.z); v.w *= gelu_d(q.w);
        gx[b + k * blockDim.x] = v;
    }
}
// row sums of [rows, len]: R0 the library's (block of 128 per row, scalar loads, block reduce)
__global__ void r0(const float *x, int64_t outer, int64_t len, float *y) {
    __shared__ float sh[33];
    for (int64_t o = blockIdx.x; o < outer; o += gridDim.x) {
        float acc = 0;
        for (int64_t i = threadIdx.x; i < len; i += blockDim.x) acc += x[o * len + i];
        for (int k = 16; k > 0; k >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, k);
        int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
        if (lane == 0) sh[w] = acc;
        __syncthreads();
        if (w == 0) { acc = lane < nw ? sh[lane] : 0; for (int k = 16; k > 0; k >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, k); if (lane == 0) sh[32] = acc; }
        __syncthreads();
        if (threadIdx.x == 0) y[o] = sh[32];
        __syncthreads();
    }
}
// R1: a warp per row, float4 loads, U of them in flight per lane (len4 = len / 4)
template <int U> __global__ void r1(const float4 *x, int64_t outer, int64_t len4, float *y) {
    int64_t o = (int64_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    int lane = threadIdx.x & 31;
    if (o >= outer) return;
    const float4 *p = x + o * len4;
    float acc = 0;
    for (int64_t i = lane; i < len4; i += 32 * U) {
        float4 r[U];
#pragma unroll
        for (int k = 0; k < U; k++) r[k] = i + 32 * k < len4 ? p[i + 32 * k] : make_float4(0, 0, 0, 0);
#pragma unroll
        for (int k = 0; k < U; k++) acc += (r[k].x + r[k].y) + (r[k].z + r[k].w);
    }
    for (int k = 16; k > 0; k >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, k);
    if (lane == 0) y[o] = acc;
}
int main() {
    int sms; cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0);
    const int64_t n = (int64_t)1 << 26, n4 = n / 4;
    float *x, *y, *g, *s;
    CK(cudaMalloc(&x, n * 4)); CK(cudaMalloc(&y, n * 4)); CK(cudaMalloc(&g, n * 4)); CK(cudaMalloc(&s, n * 4));
    fill<<<1024, 256>>>(x, n, 1); fill<<<1024, 256>>>(g, n, 2); fill<<<1024, 256>>>(s, n, 3);
    auto rep = [&](const char *nm, float ms, double bytes) { printf("%-34s %.4f ms  %.0f GB/s\n", nm, ms, bytes / ms / 1e6); };
    unsigned gcap = sms * 32, gfull = (unsigned)((n4 + 255) / 256);
    rep("copy (cudaMemcpy d2d)", timeit([&] { cudaMemcpyAsync(y, x, n * 4, cudaMemcpyDeviceToDevice); }), 8.0 * n);
    rep("gelu v0 library", timeit([&] { v0<<<std::min(gcap, gfull), 256>>>((float4 *)x, (float4 *)y, n4); }), 8.0 * n);
    rep("gelu v1<2> one pass 256", timeit([&] { v1<2><<<(unsigned)((n4 + 511) / 512), 256>>>((float4 *)x, (float4 *)y, n4); }), 8.0 * n);
    rep("gelu v1<4> one pass 256", timeit([&] { v1<4><<<(unsigned)((n4 + 1023) / 1024), 256>>>((float4 *)x, (float4 *)y, n4); }), 8.0 * n);
    rep("gelu v1<4> one pass 128", timeit([&] { v1<4><<<(unsigned)((n4 + 511) / 512), 128>>>((float4 *)x, (float4 *)y, n4); }), 8.0 * n);
    rep("gelu v1<8> one pass 128", timeit([&] { v1<8><<<(unsigned)((n4 + 1023) / 1024), 128>>>((float4 *)x, (float4 *)y, n4); }), 8.0 * n);
    rep("gelu v2<4> stride cs 8/SM", timeit([&] { v2<4><<<sms * 8, 256>>>((float4 *)x, (float4 *)y, n4); }), 8.0 * n);
    rep("gelu v2<4> stride cs 16/SM", timeit([&] { v2<4><<<sms * 16, 256>>>((float4 *)x, (float4 *)y, n4); }), 8.0 * n);
    rep("gelu v2<2> stride cs 32/SM", timeit([&] { v2<2><<<sms * 32, 256>>>((float4 *)x, (float4 *)y, n4); }), 8.0 * n);
    rep("gelu' w0 library", timeit([&] { w0<<<std::min(gcap, gfull), 256>>>((float4 *)g, (float4 *)s, (float4 *)y, n4); }), 12.0 * n);
    rep("gelu' w1<2> one pass 256", timeit([&] { w1<2><<<(unsigned)((n4 + 511) / 512), 256>>>((float4 *)g, (float4 *)s, (float4 *)y, n4); }), 12.0 * n);
    rep("gelu' w1<4> one pass 128", timeit([&] { w1<4><<<(unsigned)((n4 + 511) / 512), 128>>>((float4 *)g, (float4 *)s, (float4 *)y, n4); }), 12.0 * n);
    const int64_t rows[2][2] = {{16384, 768}, {32768, 1024}};
    for (auto &rc : rows) {
        int64_t R = rc[0], L = rc[1];
        char nm[64];
        snprintf(nm, sizeof nm, "sum r0 library %lldx%lld", (long long)R, (long long)L);
        rep(nm, timeit([&] { r0<<<(unsigned)std::min<int64_t>(R, sms * 64), 128>>>(x, R, L, y); }), 4.0 * R * L);
        snprintf(nm, sizeof nm, "sum r1<2> warp/row 256 %lldx%lld", (long long)R, (long long)L);
        rep(nm, timeit([&] { r1<2><<<(unsigned)((R + 7) / 8), 256>>>((float4 *)x, R, L / 4, y); }), 4.0 * R * L);
        snprintf(nm, sizeof nm, "sum r1<4> warp/row 256 %lldx%lld", (long long)R, (long long)L);
        rep(nm, timeit([&] { r1<4><<<(unsigned)((R + 7) / 8), 256>>>((float4 *)x, R, L / 4, y); }), 4.0 * R * L);
        snprintf(nm, sizeof nm, "sum r1<8> warp/row 128 %lldx%lld", (long long)R, (long long)L);
        rep(nm, timeit([&] { r1<8><<<(unsigned)((R + 3) / 4), 128>>>((float4 *)x, R, L / 4, y); }), 4.0 * R * L);
    }
    CK(cudaDeviceSynchronize());
    return 0;
}
