/* bench/session_1207e/layout_probe.cu - the TF32 conv's two weight layouts at 512x512x3x3 (f32), timed with CUDA
   events: FPROP's [O][kk][C] (k_conv_weight_fprop as in nn_cuda.cu, and one block per o with float4 reads) and
   DGRAD's [C*kk][O] (k_transpose as in nn_cuda.cu, 32 x 32 tiles, and 64 x 64 tiles), against a device-to-device
   memcpy of the same bytes. Each variant's output is compared with the first. Build:
   nvcc -O3 -gencode arch=compute_90a,code=sm_90a bench/session_1207e/layout_probe.cu -o layout_probe */
#include <cstdio>
#include <cstdint>
#include <cstring>
#include <vector>
#include <cuda_runtime.h>

#define CK(x) do { cudaError_t e_ = (x); if (e_ != cudaSuccess) { printf("%s:%d %s\n", __FILE__, __LINE__, cudaGetErrorString(e_)); return 1; } } while (0)

__device__ __forceinline__ float rnd(float v) {   /* TF32 rounding as nn_cuda.cu's tf32_round (nearest, ties away) */
    uint32_t u = __float_as_uint(v);
    if ((u & 0x7f800000u) != 0x7f800000u) u = (u + 0x1000u) & 0xffffe000u;
    return __uint_as_float(u);
}
/* nn_cuda.cu's k_transpose (f32) */
__global__ void tr32(const float *__restrict__ src, float *__restrict__ dst, int R, int S) {
    __shared__ float tile[32][33];
    const int s0 = blockIdx.x * 32, r0 = blockIdx.y * 32;
    for (int y = threadIdx.y; y < 32; y += 8) { int r = r0 + y, s = s0 + threadIdx.x; if (r < R && s < S) tile[y][threadIdx.x] = rnd(src[(int64_t)r * S + s]); }
    __syncthreads();
    for (int y = threadIdx.y; y < 32; y += 8) { int s = s0 + y, r = r0 + threadIdx.x; if (s < S && r < R) dst[(int64_t)s * R + r] = tile[threadIdx.x][y]; }
}
/* 64 x 64 tiles, block (32, 8): 16 elements a thread, all loads issued before the barrier */
__global__ void tr64(const float *__restrict__ src, float *__restrict__ dst, int R, int S) {
    __shared__ float tile[64][65];
    const int s0 = blockIdx.x * 64, r0 = blockIdx.y * 64, tx = threadIdx.x, ty = threadIdx.y;
    float v[16];
#pragma unroll
    for (int k = 0; k < 16; k++) { int y = ty + 8 * (k >> 1), x = tx + 32 * (k & 1), r = r0 + y, s = s0 + x; v[k] = r < R && s < S ? src[(int64_t)r * S + s] : 0.f; }
#pragma unroll
    for (int k = 0; k < 16; k++) tile[ty + 8 * (k >> 1)][tx + 32 * (k & 1)] = rnd(v[k]);
    __syncthreads();
#pragma unroll
    for (int k = 0; k < 16; k++) { int y = ty + 8 * (k >> 1), x = tx + 32 * (k & 1), s = s0 + y, r = r0 + x; if (s < S && r < R) dst[(int64_t)s * R + r] = tile[x][y]; }
}
/* nn_cuda.cu's k_conv_weight_fprop (f32: 128-channel slices) */
__global__ void wf_old(const float *__restrict__ w, float *__restrict__ d, int C, int kk) {
    extern __shared__ float wsl[];
    const int SL = 128, o = blockIdx.y, c0 = blockIdx.x * SL, nc = min(SL, C - c0);
    const float *src = w + ((int64_t)o * C + c0) * kk;
    for (int t = threadIdx.x; t < nc * kk; t += blockDim.x) wsl[t] = rnd(src[t]);
    __syncthreads();
    for (int t = threadIdx.x; t < nc * kk; t += blockDim.x) { int tap = t / nc, cl = t - tap * nc; d[((int64_t)o * kk + tap) * C + c0 + cl] = wsl[cl * kk + tap]; }
}
/* one block per o (the whole C * kk row in shared memory), float4 reads and writes where C % 4 == 0 */
__global__ void wf_row(const float *__restrict__ w, float *__restrict__ d, int C, int kk) {
    extern __shared__ float4 wrow4[];
    float *wrow = (float *)wrow4;
    const int o = blockIdx.x, n = C * kk;
    const float4 *src = (const float4 *)(w + (int64_t)o * n);
    for (int t = threadIdx.x; t < n / 4; t += blockDim.x) { float4 v = src[t]; v.x = rnd(v.x); v.y = rnd(v.y); v.z = rnd(v.z); v.w = rnd(v.w); wrow4[t] = v; }
    __syncthreads();
    float4 *dst = (float4 *)(d + (int64_t)o * n);
    const int C4 = C / 4;
    for (int t = threadIdx.x; t < n / 4; t += blockDim.x) {
        int tap = t / C4, c = 4 * (t - tap * C4);
        dst[t] = make_float4(wrow[c * kk + tap], wrow[(c + 1) * kk + tap], wrow[(c + 2) * kk + tap], wrow[(c + 3) * kk + tap]);
    }
}

int main() {
    const int O = 512, C = 512, kk = 9, n = O * C * kk, reps = 200;
    float *w, *a, *b;
    CK(cudaMalloc(&w, n * 4)); CK(cudaMalloc(&a, n * 4)); CK(cudaMalloc(&b, n * 4));
    std::vector<float> h(n);
    for (int i = 0; i < n; i++) h[i] = (float)((i * 2654435761u) % 1000003) / 1000003.f - 0.5f;
    CK(cudaMemcpy(w, h.data(), n * 4, cudaMemcpyHostToDevice));
    cudaEvent_t e0, e1; cudaEventCreate(&e0); cudaEventCreate(&e1);
    std::vector<float> ref(n), got(n);
    auto check = [&](const char *name) { cudaMemcpy(got.data(), b, n * 4, cudaMemcpyDeviceToHost); int bad = memcmp(ref.data(), got.data(), n * 4) != 0; if (bad) printf("  %s differs from the reference\n", name); return bad; };
    for (int v = 0; v < 5; v++) {
        const char *name[] = {"memcpy_d2d", "fprop_slices128 (nn_cuda.cu)", "fprop_row_float4", "dgrad_transpose32 (nn_cuda.cu)", "dgrad_transpose64"};
        auto launch = [&](float *dst) {
            switch (v) {
            case 0: cudaMemcpyAsync(dst, w, n * 4, cudaMemcpyDeviceToDevice); break;
            case 1: wf_old<<<dim3((C + 127) / 128, O), 256, 128 * kk * 4>>>(w, dst, C, kk); break;
            case 2: wf_row<<<O, 256, C * kk * 4>>>(w, dst, C, kk); break;
            case 3: tr32<<<dim3((C * kk + 31) / 32, (O + 31) / 32), dim3(32, 8)>>>(w, dst, O, C * kk); break;
            case 4: tr64<<<dim3((C * kk + 63) / 64, (O + 63) / 64), dim3(32, 8)>>>(w, dst, O, C * kk); break;
            }
        };
        launch(v == 1 || v == 3 ? a : b);
        CK(cudaDeviceSynchronize());
        if (v == 1 || v == 3) cudaMemcpy(ref.data(), a, n * 4, cudaMemcpyDeviceToHost);
        if (v == 1 || v == 3) { launch(b); cudaDeviceSynchronize(); }
        if (v == 2 || v == 4) check(name[v]);
        float best = 1e9f;
        for (int r = 0; r < 5; r++) {
            cudaEventRecord(e0);
            for (int i = 0; i < reps; i++) launch(b);
            cudaEventRecord(e1); cudaEventSynchronize(e1);
            float ms; cudaEventElapsedTime(&ms, e0, e1); ms /= reps; if (ms < best) best = ms;
        }
        CK(cudaGetLastError());
        printf("%-32s %8.2f us  %6.0f GB/s (read + write)\n", name[v], best * 1e3f, 2.0 * n * 4 / (best * 1e-3) / 1e9);
    }
    return 0;
}
