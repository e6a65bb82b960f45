/* nn_cuda.cu - the CUDA backend of nn.h: kernels, cuBLAS GEMMs, the device-allocator hooks.

   nn.h stays plain C. Built with NN_CUDA it calls the extern "C" nn__cuda_* functions defined here, one per op
   direction, named like the CPU kernel they mirror (grep layer_norm finds both). The caching pool lives in nn.h;
   this file only supplies cudaMalloc/cudaFree behind it.

   - One stream (non-blocking) for every kernel, copy and cuBLAS call; the host waits only where it reads a
     value (device -> host copies, nn_cuda_synchronize).
   - Every CUDA and cuBLAS call goes through NN_CU / NN_CUBLAS, and every launch through NN_LAUNCHED: a failure
     reports the call, file and line through nn_error.
   - Ops compute in f32 as the CPU does (same formulas as nn.h's [ops:*]); f16/bf16 are storage types (cast with
     nn.h's round-to-nearest-even, bit for bit) and GEMM operands (f32 accumulation).
   - Random numbers: Philox4x32-10 exactly as nn_philox4x32 / nn_rng_uniform_at, so dropout masks match the CPU.
   - TF32 is off by default for f32 GEMMs (PyTorch's default for matmul); nn_cuda_set_tf32(1) allows it. f32
     conv2d runs on TF32 by default (PyTorch's torch.backends.cudnn.allow_tf32 is True); nn_cuda_set_conv_tf32(0)
     gives f32-level results (3xTF32, or cuBLAS in f32).
   - NN_CUDA_POISON=1 in the environment fills every fresh device block with 0xFF bytes (NaN for floats), which
     the tests use to catch elements a kernel never writes.
   - Sections: errors/state, dtypes, elementwise, reductions, softmax/norms, group_norm, dropout, GEMM, shape
     copies, AdamW/clipping, conv2d/pools/upsample, index and loss, sdpa (flash attention: its own namespace sdpa_cu). */
#include "nn.h"

#include <cuda_runtime.h>
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#include <cublas_v2.h>
#include <cublasLt.h>
#include <cub/device/device_radix_sort.cuh>   /* stable sorts for the deterministic scatters and topk */
#include <stdint.h>
#include <type_traits>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

/* ------------------------------------------------------------------------------------------ errors, state */

static void nn__cu_fail(cudaError_t e, const char *call, const char *file, int line) {
    nn_error("CUDA error %s (%s) in %s at %s:%d", cudaGetErrorName(e), cudaGetErrorString(e), call, file, line);
}
#define NN_CU(x) do { cudaError_t e_ = (x); if (e_ != cudaSuccess) nn__cu_fail(e_, #x, __FILE__, __LINE__); } while (0)
#define NN_CUBLAS(x) do { cublasStatus_t s_ = (x); if (s_ != CUBLAS_STATUS_SUCCESS) \
    nn_error("cuBLAS error %d (%s) in %s at %s:%d", (int)s_, cublasGetStatusString(s_), #x, __FILE__, __LINE__); } while (0)
#define NN_LAUNCHED() NN_CU(cudaGetLastError())

static struct {
    int init;
    cudaStream_t stream;
    cublasHandle_t blas;
    cublasLtHandle_t lt;       /* cuBLASLt: GEMMs with a bias epilogue (linear) */
    void *lt_ws;               /* its workspace (NN__LT_WS bytes, made on first use, outside the pool) */
    int tf32;
    int conv_ieee;             /* f32 conv2d without TF32 (nn_cuda_set_conv_tf32(0)); 0: TF32, PyTorch's default */
    int sms;
    int poison;
} nn__cu;

static void nn__cu_init(void) {
    int n = 0;
    cudaDeviceProp prop;
    const char *ps;
    if (nn__cu.init) return;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
        cudaGetLastError();
        nn_error("nn cuda: no CUDA device is available (a tensor was asked for on cuda)");
    }
    NN_CU(cudaGetDeviceProperties(&prop, 0));
    nn__cu.sms = prop.multiProcessorCount;
    NN_CU(cudaStreamCreateWithFlags(&nn__cu.stream, cudaStreamNonBlocking));
    NN_CUBLAS(cublasCreate(&nn__cu.blas));
    NN_CUBLAS(cublasSetStream(nn__cu.blas, nn__cu.stream));
    NN_CUBLAS(cublasLtCreate(&nn__cu.lt));
    ps = getenv("NN_CUDA_POISON");
    nn__cu.poison = ps && *ps && *ps != '0';
    nn__cu.init = 1;
}
#define S_ (nn__cu.stream)

/* blocks for a grid-stride loop over n items */
static unsigned nn__grid(int64_t n, int bs) {
    int64_t g = (n + bs - 1) / bs, cap = (int64_t)nn__cu.sms * 32;
    if (g > cap) g = cap;
    return (unsigned)(g < 1 ? 1 : g);
}

extern "C" {

int nn__cuda_available(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) { cudaGetLastError(); return 0; }
    return n > 0;
}

void nn__cuda_synchronize(void) {
    if (!nn__cu.init) return;
    NN_CU(cudaStreamSynchronize(S_));
}

void nn__cuda_set_tf32(int on) { nn__cu.tf32 = on != 0; }
void nn__cuda_set_conv_tf32(int on) { nn__cu.conv_ieee = on == 0; }

void *nn__cuda_malloc(size_t bytes) {
    void *p = NULL;
    cudaError_t e;
    nn__cu_init();
    e = cudaMalloc(&p, bytes);
    if (e == cudaErrorMemoryAllocation) { cudaGetLastError(); return NULL; }
    if (e != cudaSuccess) nn__cu_fail(e, "cudaMalloc", __FILE__, __LINE__);
    if (nn__cu.poison) NN_CU(cudaMemsetAsync(p, 0xff, bytes, S_));
    return p;
}

void nn__cuda_free(void *p) {
    if (!p) return;
    /* blocks go back only on nn_mem_trim / nn_shutdown: wait for the work that may still use them */
    NN_CU(cudaStreamSynchronize(S_));
    NN_CU(cudaFree(p));
}

void nn__cuda_memcpy(void *dst, const void *src, size_t bytes, int kind) {
    static const cudaMemcpyKind k[3] = {cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost, cudaMemcpyDeviceToDevice};
    nn__cu_init();
    if (!bytes) return;
    if (kind < 0 || kind > 2) nn_error("nn__cuda_memcpy: bad kind %d", kind);
    NN_CU(cudaMemcpyAsync(dst, src, bytes, k[kind], S_));
    /* the host reads dst now; a pageable host->device copy has consumed src when the call returns */
    if (kind == 1) NN_CU(cudaStreamSynchronize(S_));
}

} /* extern "C" */

/* ----------------------------------------------------------------------------------- dtypes, conversion */
/* nn.h's [impl:half] conversions, bit for bit */

__device__ __forceinline__ float d_bf16_to_f32(uint16_t h) { return __uint_as_float((uint32_t)h << 16); }
__device__ __forceinline__ uint16_t d_f32_to_bf16(float f) {
    uint32_t u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}
__device__ __forceinline__ float d_half_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
    if (exp == 0x1f) return __uint_as_float(sign | 0x7f800000u | (man << 13));
    if (exp == 0) { float v = (float)man * 5.9604644775390625e-8f; return sign ? -v : v; }
    return __uint_as_float(sign | ((exp + 112) << 23) | (man << 13));
}
__device__ __forceinline__ uint16_t d_f32_to_half(float f) {
    uint32_t u = __float_as_uint(f), sign = (u >> 16) & 0x8000u, a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u);
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);
    if (a < 0x38800000u) {
        float v = __fmul_rn(__uint_as_float(a), 16777216.0f);
        float r = (float)(int32_t)v, d = __fsub_rn(v, r);
        uint32_t m = (uint32_t)r;
        if (d > 0.5f || (d == 0.5f && (m & 1u))) m++;
        return (uint16_t)(sign | m);
    }
    a += 0xfffu + ((a >> 13) & 1u);
    return (uint16_t)(sign | ((a - 0x38000000u) >> 13));
}

__device__ __forceinline__ float d_loadf(const void *p, int dt, int64_t i) {
    switch (dt) {
    case NN_F32: return ((const float *)p)[i];
    case NN_F16: return d_half_to_f32(((const uint16_t *)p)[i]);
    default: return d_bf16_to_f32(((const uint16_t *)p)[i]);
    }
}
__device__ __forceinline__ void d_storef(void *p, int dt, int64_t i, float v) {
    switch (dt) {
    case NN_F32: ((float *)p)[i] = v; break;
    case NN_F16: ((uint16_t *)p)[i] = d_f32_to_half(v); break;
    default: ((uint16_t *)p)[i] = d_f32_to_bf16(v); break;
    }
}
/* nn.h's nn__load / nn__store: through double */
__device__ __forceinline__ double d_load(const void *p, int dt, int64_t i) {
    switch (dt) {
    case NN_F32: return ((const float *)p)[i];
    case NN_F16: return d_half_to_f32(((const uint16_t *)p)[i]);
    case NN_BF16: return d_bf16_to_f32(((const uint16_t *)p)[i]);
    case NN_I32: return ((const int32_t *)p)[i];
    case NN_I64: return (double)((const int64_t *)p)[i];
    default: return ((const uint8_t *)p)[i];
    }
}
__device__ __forceinline__ void d_store(void *p, int dt, int64_t i, double v) {
    switch (dt) {
    case NN_F32: ((float *)p)[i] = (float)v; break;
    case NN_F16: ((uint16_t *)p)[i] = d_f32_to_half((float)v); break;
    case NN_BF16: ((uint16_t *)p)[i] = d_f32_to_bf16((float)v); break;
    case NN_I32: ((int32_t *)p)[i] = (int32_t)v; break;
    case NN_I64: ((int64_t *)p)[i] = (int64_t)v; break;
    case NN_U8: ((uint8_t *)p)[i] = (uint8_t)v; break;
    default: ((uint8_t *)p)[i] = v != 0; break;
    }
}
static int nn__isf(int dt) { return dt == NN_F32 || dt == NN_F16 || dt == NN_BF16; }

__global__ void k_fill(void *p, int dt, int64_t n, double v) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        d_store(p, dt, i, v);
}
__global__ void k_fill_f32(float *p, int64_t n, float v) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) p[i] = v;
}
__global__ void k_cast(const void *x, int sdt, void *y, int ddt, int64_t n, int fast) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        if (fast) d_storef(y, ddt, i, d_loadf(x, sdt, i));
        else d_store(y, ddt, i, d_load(x, sdt, i));
    }
}

/* f32 <-> f16/bf16 (DT), eight elements per step: two float4 against one uint4. The casts of autocast's
   activations and gradients are a large share of a training step's memory traffic; the scalar k_cast
   (a dtype switch per element, 4- and 2-byte accesses) reaches about half the copy bandwidth. */
template <int DT> __device__ __forceinline__ uint16_t d_to16(float v) { return DT == NN_F16 ? d_f32_to_half(v) : d_f32_to_bf16(v); }
template <int DT> __device__ __forceinline__ float d_from16(uint16_t h) { return DT == NN_F16 ? d_half_to_f32(h) : d_bf16_to_f32(h); }
/* four elements 4*i4.. of a DT array (16-byte f32 or 8-byte f16/bf16 accesses), as f32; stores round as nn_cast */
template <int DT> __device__ __forceinline__ float4 d_load_row4(const void *p, int64_t i4) {
    if (DT == NN_F32) return ((const float4 *)p)[i4];
    uint2 v = ((const uint2 *)p)[i4];
    return make_float4(d_from16<DT>((uint16_t)v.x), d_from16<DT>((uint16_t)(v.x >> 16)), d_from16<DT>((uint16_t)v.y),
                       d_from16<DT>((uint16_t)(v.y >> 16)));
}
template <int DT> __device__ __forceinline__ void d_store_row4(void *p, int64_t i4, float4 o) {
    if (DT == NN_F32) ((float4 *)p)[i4] = o;
    else ((uint2 *)p)[i4] = make_uint2(d_to16<DT>(o.x) | (uint32_t)d_to16<DT>(o.y) << 16,
                                       d_to16<DT>(o.z) | (uint32_t)d_to16<DT>(o.w) << 16);
}
/* eight DT values of one 16-byte access as f32, and back (rounded as nn_cast) */
template <int DT> __device__ __forceinline__ void d_unpack8(uint4 v, float r[8]) {
    const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int k = 0; k < 4; k++) { r[2 * k] = d_from16<DT>((uint16_t)w[k]); r[2 * k + 1] = d_from16<DT>((uint16_t)(w[k] >> 16)); }
}
template <int DT> __device__ __forceinline__ uint4 d_pack8(const float r[8]) {
    uint32_t w[4];
#pragma unroll
    for (int k = 0; k < 4; k++) w[k] = d_to16<DT>(r[2 * k]) | (uint32_t)d_to16<DT>(r[2 * k + 1]) << 16;
    return make_uint4(w[0], w[1], w[2], w[3]);
}
template <int DT> __global__ void k_cast_f32_to16(const float4 *__restrict__ x, uint4 *__restrict__ y, int64_t n8) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n8; i += (int64_t)gridDim.x * blockDim.x) {
        float4 a = x[2 * i], b = x[2 * i + 1];
        const float r[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
        y[i] = d_pack8<DT>(r);
    }
}
template <int DT> __global__ void k_cast_16_to_f32(const uint4 *__restrict__ x, float4 *__restrict__ y, int64_t n8) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n8; i += (int64_t)gridDim.x * blockDim.x) {
        float r[8];
        d_unpack8<DT>(x[i], r);
        y[2 * i] = make_float4(r[0], r[1], r[2], r[3]);
        y[2 * i + 1] = make_float4(r[4], r[5], r[6], r[7]);
    }
}

static void nn__fill_f32_dev(float *p, int64_t n, float v) {
    if (n <= 0) return;
    k_fill_f32<<<nn__grid(n, 256), 256, 0, S_>>>(p, n, v);
    NN_LAUNCHED();
}

/* a temporary on the device from nn.h's pool (stream order makes its reuse safe once freed) */
static nn_tensor *nn__tmp(nn_dtype dt, int64_t n) {
    int64_t s = n < 1 ? 1 : n;
    return nn__new(dt, NN_CUDA, 1, &s);
}

extern "C" {

void nn__cuda_fill(nn_tensor *t, double v) {
    nn__cu_init();
    if (!t->numel) return;
    if (t->dtype == NN_F32) { nn__fill_f32_dev((float *)t->data, t->numel, (float)v); return; }
    k_fill<<<nn__grid(t->numel, 256), 256, 0, S_>>>(t->data, t->dtype, t->numel, v);
    NN_LAUNCHED();
}

void nn__cuda_cast(const nn_tensor *x, nn_tensor *y) {
    int64_t n = x->numel, n8 = 0;
    int sd = x->dtype, dd = y->dtype;
    nn__cu_init();
    if (!n) return;
    if (!(((uintptr_t)x->data | (uintptr_t)y->data) & 15) &&
        ((sd == NN_F32 && (dd == NN_BF16 || dd == NN_F16)) || (dd == NN_F32 && (sd == NN_BF16 || sd == NN_F16)))) {
        n8 = n / 8;   /* the vector kernels take whole groups of eight, the scalar one the tail */
        if (n8) {
            unsigned g = nn__grid(n8, 256);
            if (sd == NN_F32 && dd == NN_BF16) k_cast_f32_to16<NN_BF16><<<g, 256, 0, S_>>>((const float4 *)x->data, (uint4 *)y->data, n8);
            else if (sd == NN_F32) k_cast_f32_to16<NN_F16><<<g, 256, 0, S_>>>((const float4 *)x->data, (uint4 *)y->data, n8);
            else if (sd == NN_BF16) k_cast_16_to_f32<NN_BF16><<<g, 256, 0, S_>>>((const uint4 *)x->data, (float4 *)y->data, n8);
            else k_cast_16_to_f32<NN_F16><<<g, 256, 0, S_>>>((const uint4 *)x->data, (float4 *)y->data, n8);
            NN_LAUNCHED();
        }
    }
    if (n - 8 * n8 > 0) {
        size_t so = (size_t)(8 * n8) * nn_dtype_size((nn_dtype)sd), dof = (size_t)(8 * n8) * nn_dtype_size((nn_dtype)dd);
        k_cast<<<nn__grid(n - 8 * n8, 256), 256, 0, S_>>>((const char *)x->data + so, sd, (char *)y->data + dof, dd,
                                                          n - 8 * n8, nn__isf(sd) && nn__isf(dd));
        NN_LAUNCHED();
    }
}

} /* extern "C" */

/* ------------------------------------------------------------------------------------------- elementwise */

enum { B_ADD, B_SUB, B_MUL, B_DIV };
enum { U_ADDS, U_MULS, U_RSUBS, U_EXP, U_LOG, U_SQRT, U_RSQRT, U_ABS, U_POW, U_CLAMP, U_RELU, U_GELU, U_GELU_TANH,
       U_SILU, U_SIGMOID, U_TANH };

#define NN__SQRT_2_OVER_PI_F 0.7978845608028654f
#define NN__GELU_C_F 0.044715f
#define NN__INV_SQRT2_F 0.70710678118654752f

template <int OP> __device__ __forceinline__ float d_binary(float a, float b) {
    return OP == B_ADD ? a + b : OP == B_SUB ? a - b : OP == B_MUL ? a * b : a / b;
}

__device__ __forceinline__ float d_unary(int op, float v, float p0, float p1) {
    switch (op) {
    case U_ADDS: return v + p0;
    case U_MULS: return v * p0;
    case U_RSUBS: return p0 - v;
    case U_EXP: return expf(v);
    case U_LOG: return logf(v);
    case U_SQRT: return sqrtf(v);
    case U_RSQRT: return 1.0f / sqrtf(v);
    case U_ABS: return fabsf(v);
    case U_POW: return powf(v, p0);
    case U_CLAMP: return v < p0 ? p0 : v > p1 ? p1 : v;
    case U_RELU: return v > 0 ? v : 0.0f;
    case U_GELU: return 0.5f * v * (1.0f + erff(v * NN__INV_SQRT2_F));
    case U_GELU_TANH: return 0.5f * v * (1.0f + tanhf(NN__SQRT_2_OVER_PI_F * (v + NN__GELU_C_F * v * v * v)));
    case U_SILU: return v / (1.0f + expf(-v));
    case U_SIGMOID: return 1.0f / (1.0f + expf(-v));
    default: return tanhf(v);
    }
}

/* f'(.) from the saved x or y (v) */
__device__ __forceinline__ float d_unary_grad(int op, float v, float p0, float p1) {
    switch (op) {
    case U_ADDS: return 1.0f;
    case U_MULS: return p0;
    case U_RSUBS: return -1.0f;
    case U_EXP: return v;
    case U_LOG: return 1.0f / v;
    case U_SQRT: return 0.5f / v;
    case U_RSQRT: return -0.5f * v * v * v;
    case U_ABS: return v > 0 ? 1.0f : v < 0 ? -1.0f : 0.0f;
    case U_POW: return p0 == 0 ? 0.0f : p0 * powf(v, p0 - 1.0f);
    case U_CLAMP: return v >= p0 && v <= p1 ? 1.0f : 0.0f;
    case U_RELU: return v > 0 ? 1.0f : 0.0f;
    case U_GELU: return 0.5f * (1.0f + erff(v * NN__INV_SQRT2_F)) + v * 0.3989422804f * expf(-0.5f * v * v);
    case U_GELU_TANH: {
        float t = tanhf(NN__SQRT_2_OVER_PI_F * (v + NN__GELU_C_F * v * v * v));
        return 0.5f * (1.0f + t) + 0.5f * v * (1.0f - t * t) * NN__SQRT_2_OVER_PI_F * (1.0f + 3.0f * NN__GELU_C_F * v * v);
    }
    case U_SILU: { float s = 1.0f / (1.0f + expf(-v)); return s * (1.0f + v * (1.0f - s)); }
    case U_SIGMOID: return v * (1.0f - v);
    default: return 1.0f - v * v;
    }
}

static int nn__al16(const void *p) { return ((uintptr_t)p & 15) == 0; }

/* f32 unary ops and their gradients over 16-byte aligned arrays: one pass, no grid-stride loop. A block of
   UN_THREADS covers UN_UNROLL * UN_THREADS float4, each thread issuing its UN_UNROLL loads (coalesced, blockDim
   apart) before any arithmetic, so that the erff of a GELU never waits between loads; block 0 also takes the n % 4
   tail. Why: the grid-stride form (two loads in flight a thread, 32 blocks an SM) ran GELU at 0.96 of PyTorch
   (bench/session_1206d: ew_probe.cu timed both shapes). Unaligned arrays keep a grid-stride scalar loop.
   The shape, 256 x 1: bench/session_1207c/gelu_probe.cu (H100, 12-07 11:57, CUDA events) ran GELU over 64M
   floats in 0.1790 ms at 256 x 1, 0.1792 at 128 x 1, 0.1799 at 256 x 2 and 0.1801 at 128 x 4, against a
   0.1792 ms device-to-device memcpy of the same bytes; in the library (cuda_bench ew, 12:02) 0.1793 against
   PyTorch's 0.1800-0.1803, where 128 x 4 took 0.1814. */
enum { UN_THREADS = 256, UN_UNROLL = 1 };
static unsigned nn__grid_un(int64_t n4) { int64_t b = (n4 + UN_THREADS * UN_UNROLL - 1) / (UN_THREADS * UN_UNROLL); return (unsigned)(b < 1 ? 1 : b); }
template <int OP> __device__ __forceinline__ float4 d_unary4(float4 v, float p0, float p1) {
    v.x = d_unary(OP, v.x, p0, p1); v.y = d_unary(OP, v.y, p0, p1); v.z = d_unary(OP, v.z, p0, p1); v.w = d_unary(OP, v.w, p0, p1);
    return v;
}
template <int OP> __device__ __forceinline__ float4 d_unary_grad4(float4 g, float4 v, float p0, float p1) {
    g.x *= d_unary_grad(OP, v.x, p0, p1); g.y *= d_unary_grad(OP, v.y, p0, p1);
    g.z *= d_unary_grad(OP, v.z, p0, p1); g.w *= d_unary_grad(OP, v.w, p0, p1);
    return g;
}
/* unary: y = f(x); vec: the one-pass form above (grid nn__grid_un(n / 4), UN_THREADS), else grid-stride scalar */
template <int OP> __global__ void k_unary(const float *__restrict__ x, float *__restrict__ y, int64_t n, float p0, float p1, int vec) {
    if (vec) {
        const int64_t n4 = n / 4, b = (int64_t)blockIdx.x * (UN_THREADS * UN_UNROLL) + threadIdx.x;
        float4 r[UN_UNROLL];
#pragma unroll
        for (int k = 0; k < UN_UNROLL; k++) if (b + k * UN_THREADS < n4) r[k] = ((const float4 *)x)[b + k * UN_THREADS];
#pragma unroll
        for (int k = 0; k < UN_UNROLL; k++) if (b + k * UN_THREADS < n4) ((float4 *)y)[b + k * UN_THREADS] = d_unary4<OP>(r[k], p0, p1);
        if (blockIdx.x == 0 && threadIdx.x < n - 4 * n4) y[4 * n4 + threadIdx.x] = d_unary(OP, x[4 * n4 + threadIdx.x], p0, p1);
        return;
    }
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        y[i] = d_unary(OP, x[i], p0, p1);
}

/* gx = g f'(s) (s the saved x or y, may be NULL); vec and grid as k_unary */
template <int OP> __global__ void k_unary_grad(const float *__restrict__ g, const float *__restrict__ s, float *__restrict__ gx,
                                               int64_t n, float p0, float p1, int vec) {
    if (vec) {
        const int64_t n4 = n / 4, b = (int64_t)blockIdx.x * (UN_THREADS * UN_UNROLL) + threadIdx.x;
        float4 gr[UN_UNROLL], sr[UN_UNROLL];
#pragma unroll
        for (int k = 0; k < UN_UNROLL; k++) {
            const int64_t i = b + k * UN_THREADS;
            if (i < n4) { gr[k] = ((const float4 *)g)[i]; sr[k] = s ? ((const float4 *)s)[i] : make_float4(0, 0, 0, 0); }
        }
#pragma unroll
        for (int k = 0; k < UN_UNROLL; k++) if (b + k * UN_THREADS < n4) ((float4 *)gx)[b + k * UN_THREADS] = d_unary_grad4<OP>(gr[k], sr[k], p0, p1);
        if (blockIdx.x == 0 && threadIdx.x < n - 4 * n4) {
            const int64_t i = 4 * n4 + threadIdx.x;
            gx[i] = g[i] * d_unary_grad(OP, s ? s[i] : 0.0f, p0, p1);
        }
        return;
    }
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        gx[i] = g[i] * d_unary_grad(OP, s ? s[i] : 0.0f, p0, p1);
}

/* broadcasting index map: up to NN_MAX_DIMS dims after merging */
struct nn__bc {
    int nd;
    int64_t shape[NN_MAX_DIMS];
    int64_t sa[NN_MAX_DIMS], sb[NN_MAX_DIMS];
};

/* strides of a contiguous tensor seen from the output shape (0 on broadcast dims) */
static void nn__bstrides(const nn_tensor *t, int nd, const int64_t *oshape, int64_t *st) {
    int64_t s = 1;
    for (int d = nd - 1; d >= 0; d--) {
        int it = t->ndim - nd + d;
        int64_t sz = it >= 0 ? t->shape[it] : 1;
        st[d] = (it < 0 || (sz == 1 && oshape[d] != 1)) ? 0 : s;
        if (it >= 0) s *= sz;
    }
}

/* drop size-1 dims and merge neighbours that are contiguous for both operands */
static nn__bc nn__bc_make(int nd, const int64_t *shape, const int64_t *sa, const int64_t *sb) {
    nn__bc m;
    int k = 0;
    for (int d = 0; d < nd; d++) {
        if (shape[d] == 1) continue;
        if (k > 0 && m.sa[k - 1] == sa[d] * shape[d] && m.sb[k - 1] == (sb ? sb[d] : 0) * shape[d]) {
            m.shape[k - 1] *= shape[d];
            m.sa[k - 1] = sa[d];
            m.sb[k - 1] = sb ? sb[d] : 0;
            continue;
        }
        m.shape[k] = shape[d]; m.sa[k] = sa[d]; m.sb[k] = sb ? sb[d] : 0; k++;
    }
    if (k == 0) { m.shape[0] = 1; m.sa[0] = m.sb[0] = 0; k = 1; }
    m.nd = k;
    return m;
}

template <int OP> __global__ void k_binary_flat(const float *__restrict__ a, const float *__restrict__ b, float *__restrict__ o,
                                                int64_t n, int vec) {
    int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x, st = (int64_t)gridDim.x * blockDim.x, i, n4 = vec ? n / 4 : 0;
    for (i = t; i < n4; i += st) {
        float4 x = ((const float4 *)a)[i], y = ((const float4 *)b)[i];
        x.x = d_binary<OP>(x.x, y.x); x.y = d_binary<OP>(x.y, y.y); x.z = d_binary<OP>(x.z, y.z); x.w = d_binary<OP>(x.w, y.w);
        ((float4 *)o)[i] = x;
    }
    for (i = n4 * 4 + t; i < n; i += st) o[i] = d_binary<OP>(a[i], b[i]);
}

template <int OP> __global__ void k_binary_bc(const float *__restrict__ a, const float *__restrict__ b, float *__restrict__ o,
                                              int64_t n, nn__bc m) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = i, oa = 0, ob = 0;
        for (int d = m.nd - 1; d >= 0; d--) {
            int64_t q = r / m.shape[d], c = r - q * m.shape[d];
            oa += c * m.sa[d]; ob += c * m.sb[d]; r = q;
        }
        o[i] = d_binary<OP>(a[oa], b[ob]);
    }
}

/* out[i] = in[offset(i)], offset from per-dim strides (permute, expand), for any element size */
template <typename T> __global__ void k_gather(const T *__restrict__ in, T *__restrict__ o, int64_t n, nn__bc m) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = i, off = 0;
        for (int d = m.nd - 1; d >= 0; d--) {
            int64_t q = r / m.shape[d];
            off += (r - q * m.shape[d]) * m.sa[d]; r = q;
        }
        o[i] = in[off];
    }
}

static void nn__gather(const void *in, void *o, size_t es, int64_t n, const nn__bc &m) {
    unsigned g = nn__grid(n, 256);
    if (n <= 0) return;
    switch (es) {
    case 1: k_gather<uint8_t><<<g, 256, 0, S_>>>((const uint8_t *)in, (uint8_t *)o, n, m); break;
    case 2: k_gather<uint16_t><<<g, 256, 0, S_>>>((const uint16_t *)in, (uint16_t *)o, n, m); break;
    case 4: k_gather<uint32_t><<<g, 256, 0, S_>>>((const uint32_t *)in, (uint32_t *)o, n, m); break;
    default: k_gather<uint64_t><<<g, 256, 0, S_>>>((const uint64_t *)in, (uint64_t *)o, n, m); break;
    }
    NN_LAUNCHED();
}

/* Mixed-precision forms (an f16/bf16 operand on either side, as autocast produces): every value is read as f32,
   computed in f32 and stored in the output's dtype (RNE, as nn_cast). The dtype switch is uniform across a
   warp, and the kernels are bound by memory, where the 2-byte operands halve the traffic. */
/* Groups of four (vec): one 16-byte (f32) or 8-byte (f16/bf16) access per operand instead of four scalar ones,
   and the broadcast index arithmetic once per group; the launcher checks alignment and divisibility. */
__device__ __forceinline__ void d_load4f(const void *p, int dt, int64_t i, float r[4]) {   /* i % 4 == 0 */
    if (dt == NN_F32) {
        float4 v = ((const float4 *)p)[i >> 2];
        r[0] = v.x; r[1] = v.y; r[2] = v.z; r[3] = v.w;
        return;
    }
    uint2 v = ((const uint2 *)p)[i >> 2];
    uint16_t h[4] = {(uint16_t)(v.x & 0xffffu), (uint16_t)(v.x >> 16), (uint16_t)(v.y & 0xffffu), (uint16_t)(v.y >> 16)};
#pragma unroll
    for (int k = 0; k < 4; k++) r[k] = dt == NN_F16 ? d_half_to_f32(h[k]) : d_bf16_to_f32(h[k]);
}
__device__ __forceinline__ void d_store4f(void *p, int dt, int64_t i, const float r[4]) {  /* i % 4 == 0 */
    if (dt == NN_F32) { ((float4 *)p)[i >> 2] = make_float4(r[0], r[1], r[2], r[3]); return; }
    uint32_t h[4];
#pragma unroll
    for (int k = 0; k < 4; k++) h[k] = dt == NN_F16 ? d_f32_to_half(r[k]) : d_f32_to_bf16(r[k]);
    ((uint2 *)p)[i >> 2] = make_uint2(h[0] | (h[1] << 16), h[2] | (h[3] << 16));
}
/* four elements from offset i with element stride st: a vector (st 1), one value (st 0, a broadcast) or four */
__device__ __forceinline__ void d_load4s(const void *p, int dt, int64_t i, int64_t st, float r[4]) {
    if (st == 1) { d_load4f(p, dt, i, r); return; }
    if (st == 0) { r[0] = r[1] = r[2] = r[3] = d_loadf(p, dt, i); return; }
#pragma unroll
    for (int k = 0; k < 4; k++) r[k] = d_loadf(p, dt, i + k * st);
}
/* p aligned for four-element vectors of dt */
static int nn__al4(const void *p, int dt) { return ((uintptr_t)p & (dt == NN_F32 ? 15u : 7u)) == 0; }

/* vec: n % 4 == 0, the innermost output dim a multiple of 4 (unless flat), pointers nn__al4. o may be a (the
   in-place gradient sum of nn__cuda_add_into: each element is read and written by one thread) */
template <int OP> __global__ void k_binary_mixed(const void *a, int adt, const void *__restrict__ b, int bdt,
                                                 void *o, int odt, int64_t n, nn__bc m, int flat, int vec) {
    int64_t t0 = blockIdx.x * (int64_t)blockDim.x + threadIdx.x, st = (int64_t)gridDim.x * blockDim.x;
    int64_t ia = flat ? 1 : m.sa[m.nd - 1], ib = flat ? 1 : m.sb[m.nd - 1];
    for (int64_t i = vec ? 4 * t0 : t0; i < n; i += vec ? 4 * st : st) {
        int64_t oa = i, ob = i;
        if (!flat) {
            int64_t r = i;
            oa = ob = 0;
            for (int d = m.nd - 1; d >= 0; d--) {
                int64_t q = r / m.shape[d], c = r - q * m.shape[d];
                oa += c * m.sa[d]; ob += c * m.sb[d]; r = q;
            }
        }
        if (vec) {
            float x[4], y[4];
            d_load4s(a, adt, oa, ia, x);
            d_load4s(b, bdt, ob, ib, y);
#pragma unroll
            for (int k = 0; k < 4; k++) x[k] = d_binary<OP>(x[k], y[k]);
            d_store4f(o, odt, i, x);
        } else {
            d_storef(o, odt, i, d_binary<OP>(d_loadf(a, adt, oa), d_loadf(b, bdt, ob)));
        }
    }
}

/* vec: groups of four, then the tail (n % 4) one by one */
template <int OP> __global__ void k_unary_mixed(const void *__restrict__ x, int dt, void *__restrict__ y, int64_t n, float p0,
                                                float p1, int vec) {
    int64_t t0 = blockIdx.x * (int64_t)blockDim.x + threadIdx.x, st = (int64_t)gridDim.x * blockDim.x, n4 = vec ? n / 4 : 0, i;
    for (i = t0; i < n4; i += st) {
        float r[4];
        d_load4f(x, dt, 4 * i, r);
#pragma unroll
        for (int k = 0; k < 4; k++) r[k] = d_unary(OP, r[k], p0, p1);
        d_store4f(y, dt, 4 * i, r);
    }
    for (i = 4 * n4 + t0; i < n; i += st) d_storef(y, dt, i, d_unary(OP, d_loadf(x, dt, i), p0, p1));
}

/* One f16/bf16 dtype DT in and out (autocast's activations, e.g. the GELU of a ViT's MLP and its gradient: 65 M
   bf16 values a call at batch 4, where k_unary_mixed's switch per value and 8-byte accesses ran at ~2.3 TB/s):
   eight values per 16-byte access, the dtype a template argument, the same d_unary / d_unary_grad. The
   launcher runs the mixed kernel on the n % 8 tail. */
template <int OP, int DT> __global__ void k_unary16(const uint4 *__restrict__ x, uint4 *__restrict__ y, int64_t n8, float p0,
                                                    float p1) {
    int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x, st = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = t; i < n8; i += st) {
        float r[8];
        d_unpack8<DT>(x[i], r);
#pragma unroll
        for (int k = 0; k < 8; k++) r[k] = d_unary(OP, r[k], p0, p1);
        y[i] = d_pack8<DT>(r);
    }
}
template <int OP, int DT> __global__ void k_unary_grad16(const uint4 *__restrict__ g, const uint4 *__restrict__ s,
                                                         uint4 *__restrict__ gx, int64_t n8, float p0, float p1) {
    int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x, st = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = t; i < n8; i += st) {
        float r[8], v[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
        d_unpack8<DT>(g[i], r);
        if (s) d_unpack8<DT>(s[i], v);
#pragma unroll
        for (int k = 0; k < 8; k++) r[k] *= d_unary_grad(OP, v[k], p0, p1);
        gx[i] = d_pack8<DT>(r);
    }
}

/* the gradient is f32; the saved x or y may be f16/bf16 */
template <int OP> __global__ void k_unary_grad_mixed(const void *__restrict__ g, int gdt, const void *__restrict__ s, int sdt,
                                                     void *__restrict__ gx, int gxdt, int64_t n, float p0, float p1, int vec) {
    int64_t t0 = blockIdx.x * (int64_t)blockDim.x + threadIdx.x, st = (int64_t)gridDim.x * blockDim.x, n4 = vec ? n / 4 : 0, i;
    for (i = t0; i < n4; i += st) {
        float r[4], v[4] = {0.f, 0.f, 0.f, 0.f};
        d_load4f(g, gdt, 4 * i, r);
        if (s) d_load4f(s, sdt, 4 * i, v);
#pragma unroll
        for (int k = 0; k < 4; k++) r[k] *= d_unary_grad(OP, v[k], p0, p1);
        d_store4f(gx, gxdt, 4 * i, r);
    }
    for (i = 4 * n4 + t0; i < n; i += st)
        d_storef(gx, gxdt, i, d_loadf(g, gdt, i) * d_unary_grad(OP, s ? d_loadf(s, sdt, i) : 0.0f, p0, p1));
}

/* d += s (gradient accumulation); vec and grid as k_unary */
__global__ void k_add_into(float *__restrict__ d, const float *__restrict__ s, int64_t n, int vec) {
    if (vec) {
        const int64_t n4 = n / 4, b = (int64_t)blockIdx.x * (UN_THREADS * UN_UNROLL) + threadIdx.x;
        float4 x[UN_UNROLL], y[UN_UNROLL];
#pragma unroll
        for (int k = 0; k < UN_UNROLL; k++)
            if (b + k * UN_THREADS < n4) { x[k] = ((const float4 *)d)[b + k * UN_THREADS]; y[k] = ((const float4 *)s)[b + k * UN_THREADS]; }
#pragma unroll
        for (int k = 0; k < UN_UNROLL; k++)
            if (b + k * UN_THREADS < n4)
                ((float4 *)d)[b + k * UN_THREADS] = make_float4(x[k].x + y[k].x, x[k].y + y[k].y, x[k].z + y[k].z, x[k].w + y[k].w);
        if (blockIdx.x == 0 && threadIdx.x < n - 4 * n4) d[4 * n4 + threadIdx.x] += s[4 * n4 + threadIdx.x];
        return;
    }
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) d[i] += s[i];
}

extern "C" {

void nn__cuda_binary_fwd(int op, const nn_tensor *a, const nn_tensor *b, nn_tensor *o) {
    int64_t n = o->numel, sa[NN_MAX_DIMS], sb[NN_MAX_DIMS];
    const float *pa = (const float *)a->data, *pb = (const float *)b->data;
    float *po = (float *)o->data;
    unsigned g;
    nn__cu_init();
    if (!n) return;
    if (a->dtype != NN_F32 || b->dtype != NN_F32 || o->dtype != NN_F32) {
        int flat = a->numel == n && b->numel == n;
        nn__bc m;
        if (!flat) {
            nn__bstrides(a, o->ndim, o->shape, sa);
            nn__bstrides(b, o->ndim, o->shape, sb);
            m = nn__bc_make(o->ndim, o->shape, sa, sb);
        } else {
            m.nd = 1; m.shape[0] = n; m.sa[0] = m.sb[0] = 1;
        }
        int vec = n % 4 == 0 && (flat || m.shape[m.nd - 1] % 4 == 0) && nn__al4(a->data, a->dtype) &&
                  nn__al4(b->data, b->dtype) && nn__al4(o->data, o->dtype);
        g = nn__grid(vec ? n / 4 : n, 256);
#define NN__B(OPC) k_binary_mixed<OPC><<<g, 256, 0, S_>>>(a->data, a->dtype, b->data, b->dtype, o->data, o->dtype, n, m, flat, vec)
        switch (op) {
        case B_ADD: NN__B(B_ADD); break;
        case B_SUB: NN__B(B_SUB); break;
        case B_MUL: NN__B(B_MUL); break;
        default: NN__B(B_DIV); break;
        }
#undef NN__B
        NN_LAUNCHED();
        return;
    }
    if (a->numel == n && b->numel == n) {
        int vec = nn__al16(pa) && nn__al16(pb) && nn__al16(po);
        g = nn__grid(vec ? n / 4 + 1 : n, 256);
        switch (op) {
        case B_ADD: k_binary_flat<B_ADD><<<g, 256, 0, S_>>>(pa, pb, po, n, vec); break;
        case B_SUB: k_binary_flat<B_SUB><<<g, 256, 0, S_>>>(pa, pb, po, n, vec); break;
        case B_MUL: k_binary_flat<B_MUL><<<g, 256, 0, S_>>>(pa, pb, po, n, vec); break;
        default: k_binary_flat<B_DIV><<<g, 256, 0, S_>>>(pa, pb, po, n, vec); break;
        }
        NN_LAUNCHED();
        return;
    }
    nn__bstrides(a, o->ndim, o->shape, sa);
    nn__bstrides(b, o->ndim, o->shape, sb);
    nn__bc m = nn__bc_make(o->ndim, o->shape, sa, sb);
    g = nn__grid(n, 256);
    switch (op) {
    case B_ADD: k_binary_bc<B_ADD><<<g, 256, 0, S_>>>(pa, pb, po, n, m); break;
    case B_SUB: k_binary_bc<B_SUB><<<g, 256, 0, S_>>>(pa, pb, po, n, m); break;
    case B_MUL: k_binary_bc<B_MUL><<<g, 256, 0, S_>>>(pa, pb, po, n, m); break;
    default: k_binary_bc<B_DIV><<<g, 256, 0, S_>>>(pa, pb, po, n, m); break;
    }
    NN_LAUNCHED();
}

#define NN__UCASES(X) X(U_ADDS) X(U_MULS) X(U_RSUBS) X(U_EXP) X(U_LOG) X(U_SQRT) X(U_RSQRT) X(U_ABS) X(U_POW) \
    X(U_CLAMP) X(U_RELU) X(U_GELU) X(U_GELU_TANH) X(U_SILU) X(U_SIGMOID) X(U_TANH)

void nn__cuda_unary_fwd(int op, const nn_tensor *x, nn_tensor *y, double p0, double p1) {
    int64_t n = x->numel;
    int vec;
    unsigned g;
    nn__cu_init();
    if (!n) return;
    if (x->dtype != NN_F32) {   /* f16/bf16 in and out, f32 arithmetic */
        int64_t n8 = n / 8;
        if (n8 && y->dtype == x->dtype && nn__al16(x->data) && nn__al16(y->data)) {   /* eight a step, then the tail */
            g = nn__grid(n8, 256);
#define NN__U(OPC) case OPC: if (x->dtype == NN_F16) k_unary16<OPC, NN_F16><<<g, 256, 0, S_>>>((const uint4 *)x->data, (uint4 *)y->data, n8, (float)p0, (float)p1); \
                             else k_unary16<OPC, NN_BF16><<<g, 256, 0, S_>>>((const uint4 *)x->data, (uint4 *)y->data, n8, (float)p0, (float)p1); break;
            switch (op) { NN__UCASES(NN__U) default: nn_error("nn__cuda_unary_fwd: unknown op %d", op); }
#undef NN__U
            NN_LAUNCHED();
            if (n == 8 * n8) return;
#define NN__U(OPC) case OPC: k_unary_mixed<OPC><<<1, 32, 0, S_>>>((const uint16_t *)x->data + 8 * n8, x->dtype, (uint16_t *)y->data + 8 * n8, n - 8 * n8, (float)p0, (float)p1, 0); break;
            switch (op) { NN__UCASES(NN__U) default: break; }
#undef NN__U
            NN_LAUNCHED();
            return;
        }
        vec = nn__al4(x->data, x->dtype) && nn__al4(y->data, y->dtype);
        g = nn__grid(vec ? n / 4 + 1 : n, 256);
#define NN__U(OPC) case OPC: k_unary_mixed<OPC><<<g, 256, 0, S_>>>(x->data, x->dtype, y->data, n, (float)p0, (float)p1, vec); break;
        switch (op) { NN__UCASES(NN__U) default: nn_error("nn__cuda_unary_fwd: unknown op %d", op); }
#undef NN__U
        NN_LAUNCHED();
        return;
    }
    vec = nn__al16(x->data) && nn__al16(y->data);
    g = vec ? nn__grid_un(n / 4) : nn__grid(n, 256);
#define NN__U(OPC) case OPC: k_unary<OPC><<<g, vec ? UN_THREADS : 256, 0, S_>>>((const float *)x->data, (float *)y->data, n, (float)p0, (float)p1, vec); break;
    switch (op) { NN__UCASES(NN__U) default: nn_error("nn__cuda_unary_fwd: unknown op %d", op); }
#undef NN__U
    NN_LAUNCHED();
}

void nn__cuda_unary_bwd(int op, const nn_tensor *gt, const nn_tensor *saved, nn_tensor *gx, double p0, double p1) {
    int64_t n = gt->numel;
    const float *s = saved ? (const float *)saved->data : NULL;
    int vec;
    unsigned g;
    nn__cu_init();
    if (!n) return;
    if ((saved && saved->dtype != NN_F32) || gt->dtype != NN_F32 || gx->dtype != NN_F32) {
        int64_t n8 = n / 8;
        if (n8 && gt->dtype != NN_F32 && gx->dtype == gt->dtype && (!saved || saved->dtype == gt->dtype) &&
            nn__al16(gt->data) && nn__al16(gx->data) && (!saved || nn__al16(saved->data))) {   /* eight a step, then the tail */
            const uint4 *s8 = saved ? (const uint4 *)saved->data : NULL;
            g = nn__grid(n8, 256);
#define NN__U(OPC) case OPC: if (gt->dtype == NN_F16) k_unary_grad16<OPC, NN_F16><<<g, 256, 0, S_>>>((const uint4 *)gt->data, s8, (uint4 *)gx->data, n8, (float)p0, (float)p1); \
                             else k_unary_grad16<OPC, NN_BF16><<<g, 256, 0, S_>>>((const uint4 *)gt->data, s8, (uint4 *)gx->data, n8, (float)p0, (float)p1); break;
            switch (op) { NN__UCASES(NN__U) default: nn_error("nn__cuda_unary_bwd: unknown op %d", op); }
#undef NN__U
            NN_LAUNCHED();
            if (n == 8 * n8) return;
#define NN__U(OPC) case OPC: k_unary_grad_mixed<OPC><<<1, 32, 0, S_>>>((const uint16_t *)gt->data + 8 * n8, gt->dtype, saved ? (const uint16_t *)saved->data + 8 * n8 : NULL, gt->dtype, (uint16_t *)gx->data + 8 * n8, gx->dtype, n - 8 * n8, (float)p0, (float)p1, 0); break;
            switch (op) { NN__UCASES(NN__U) default: break; }
#undef NN__U
            NN_LAUNCHED();
            return;
        }
        vec = nn__al4(gt->data, gt->dtype) && nn__al4(gx->data, gx->dtype) && (!saved || nn__al4(saved->data, saved->dtype));
        g = nn__grid(vec ? n / 4 + 1 : n, 256);
#define NN__U(OPC) case OPC: k_unary_grad_mixed<OPC><<<g, 256, 0, S_>>>(gt->data, gt->dtype, saved ? saved->data : NULL, saved ? saved->dtype : NN_F32, gx->data, gx->dtype, n, (float)p0, (float)p1, vec); break;
        switch (op) { NN__UCASES(NN__U) default: nn_error("nn__cuda_unary_bwd: unknown op %d", op); }
#undef NN__U
        NN_LAUNCHED();
        return;
    }
    vec = nn__al16(gt->data) && nn__al16(gx->data) && (!s || nn__al16(s));
    g = vec ? nn__grid_un(n / 4) : nn__grid(n, 256);
#define NN__U(OPC) case OPC: k_unary_grad<OPC><<<g, vec ? UN_THREADS : 256, 0, S_>>>((const float *)gt->data, s, (float *)gx->data, n, (float)p0, (float)p1, vec); break;
    switch (op) { NN__UCASES(NN__U) default: nn_error("nn__cuda_unary_bwd: unknown op %d", op); }
#undef NN__U
    NN_LAUNCHED();
}

void nn__cuda_add_into(nn_tensor *dst, const nn_tensor *src) {
    int64_t n = dst->numel;
    int vec;
    nn__cu_init();
    if (!n) return;
    if (src->device != NN_CUDA || src->numel != n)
        nn_error("nn__cuda_add_into: need cuda tensors of %lld elements", (long long)n);
    if (src->dtype != NN_F32 || dst->dtype != NN_F32) {   /* f16/bf16 gradients: dst += src in f32, rounded once */
        nn__bc m;
        m.nd = 1; m.shape[0] = n; m.sa[0] = m.sb[0] = 1;
        vec = n % 4 == 0 && nn__al4(dst->data, dst->dtype) && nn__al4(src->data, src->dtype);
        k_binary_mixed<B_ADD><<<nn__grid(vec ? n / 4 : n, 256), 256, 0, S_>>>(dst->data, dst->dtype, src->data, src->dtype,
                                                                             dst->data, dst->dtype, n, m, 1, vec);
        NN_LAUNCHED();
        return;
    }
    vec = nn__al16(dst->data) && nn__al16(src->data);
    k_add_into<<<vec ? nn__grid_un(n / 4) : nn__grid(n, 256), vec ? UN_THREADS : 256, 0, S_>>>((float *)dst->data, (const float *)src->data, n, vec);
    NN_LAUNCHED();
}

} /* extern "C" */

/* ------------------------------------------------------------------------------------------- reductions */
/* Every reduction is over the middle of [outer, len, inner]. Deterministic: fixed trees, no atomics. A long
   reduction with little parallelism elsewhere is split into S chunks written as partials [outer, S, inner],
   then reduced again. */

enum { R_SUM, R_SQDEV, R_MAX };

__device__ __forceinline__ float d_warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float d_warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
/* sum over the block (blockDim.x a multiple of 32, <= 1024); every thread gets the result */
__device__ float d_block_sum(float v, float *sh) {
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = d_warp_sum(v);
    if (lane == 0) sh[w] = v;
    __syncthreads();
    if (w == 0) {
        v = lane < nw ? sh[lane] : 0.0f;
        v = d_warp_sum(v);
        if (lane == 0) sh[32] = v;
    }
    __syncthreads();
    v = sh[32];
    __syncthreads();
    return v;
}
__device__ float d_block_max(float v, float *sh) {
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = d_warp_max(v);
    if (lane == 0) sh[w] = v;
    __syncthreads();
    if (w == 0) {
        v = lane < nw ? sh[lane] : -INFINITY;
        v = d_warp_max(v);
        if (lane == 0) sh[32] = v;
    }
    __syncthreads();
    v = sh[32];
    __syncthreads();
    return v;
}

/* max with the index of its first occurrence; NaN wins (the first NaN), as the CPU loop */
__device__ __forceinline__ void d_argmax_combine(float &m, int64_t &a, float m2, int64_t a2) {
    if (a2 < 0) return;
    if (a < 0) { m = m2; a = a2; return; }
    bool n1 = m != m, n2 = m2 != m2;
    if (n1 || n2) { if (n2 && (!n1 || a2 < a)) { m = m2; a = a2; } return; }
    if (m2 > m || (m2 == m && a2 < a)) { m = m2; a = a2; }
}
__device__ void d_block_argmax(float &m, int64_t &a, float *shm, int64_t *sha) {
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    for (int o = 16; o > 0; o >>= 1) {
        float m2 = __shfl_xor_sync(0xffffffffu, m, o);
        int64_t a2 = __shfl_xor_sync(0xffffffffu, a, o);
        d_argmax_combine(m, a, m2, a2);
    }
    if (lane == 0) { shm[w] = m; sha[w] = a; }
    __syncthreads();
    if (w == 0) {
        m = lane < nw ? shm[lane] : 0.0f;
        a = lane < nw ? sha[lane] : -1;
        for (int o = 16; o > 0; o >>= 1) {
            float m2 = __shfl_xor_sync(0xffffffffu, m, o);
            int64_t a2 = __shfl_xor_sync(0xffffffffu, a, o);
            d_argmax_combine(m, a, m2, a2);
        }
        if (lane == 0) { shm[32] = m; sha[32] = a; }
    }
    __syncthreads();
    m = shm[32]; a = sha[32];
    __syncthreads();
}

/* element i of x read as f32 (DT: the input's dtype; the reductions accumulate in f32) */
template <int DT> __device__ __forceinline__ float d_ld(const void *x, int64_t i) {
    return DT == NN_F32 ? ((const float *)x)[i] : d_from16<DT>(((const uint16_t *)x)[i]);
}

/* inner == 1: a block per row (grid-stride), blockIdx.y = chunk */
template <int OP, int DT> __global__ void k_red_row(const void *__restrict__ x, int64_t outer, int64_t len, float *__restrict__ y,
                                            int64_t *__restrict__ arg, const float *__restrict__ mean, float scale,
                                            int64_t chunk, int S) {
    __shared__ float sh[33];
    __shared__ int64_t sha[33];
    int64_t z = blockIdx.y, lo = z * chunk, hi = lo + chunk < len ? lo + chunk : len;
    for (int64_t o = blockIdx.x; o < outer; o += gridDim.x) {
        int64_t p = o * len;
        if (OP == R_MAX) {
            float m = 0; int64_t a = -1;
            for (int64_t i = lo + threadIdx.x; i < hi; i += blockDim.x) d_argmax_combine(m, a, d_ld<DT>(x, p + i), i);
            d_block_argmax(m, a, sh, sha);
            if (threadIdx.x == 0) { y[o] = m; arg[o] = a; }
        } else {
            float acc = 0, mu = OP == R_SQDEV ? mean[o] : 0.0f;
            for (int64_t i = lo + threadIdx.x; i < hi; i += blockDim.x) {
                float v = d_ld<DT>(x, p + i);
                if (OP == R_SQDEV) { v -= mu; v *= v; }
                acc += v;
            }
            acc = d_block_sum(acc, sh);
            if (threadIdx.x == 0) y[o * S + z] = S == 1 ? acc * scale : acc;
        }
    }
}

/* inner == 1, sums of rows up to 8192 long with len % 4 == 0 and aligned rows: a warp per row, four elements a
   load (d_load_row4), four loads in flight a lane, a shuffle tree; no shared memory, no barrier. Why: k_red_row's
   block of 128 per row (scalar loads, two barriers) reached 0.97 of PyTorch's sum over [16384, 768]
   (bench/RESULTS_CUDA.md). Deterministic as the rest: a fixed order per lane, then a fixed tree. */
template <int OP, int DT> __global__ void k_red_row_warp(const void *__restrict__ x, int64_t outer, int64_t len4,
                                                         float *__restrict__ y, const float *__restrict__ mean, float scale) {
    const int64_t o = (int64_t)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    if (o >= outer) return;
    const float mu = OP == R_SQDEV ? mean[o] : 0.0f;
    float acc = 0.0f;
    for (int64_t i = lane; i < len4; i += 128) {
        float4 r[4];
#pragma unroll
        for (int k = 0; k < 4; k++) r[k] = i + 32 * k < len4 ? d_load_row4<DT>(x, o * len4 + i + 32 * k) : make_float4(mu, mu, mu, mu);
#pragma unroll
        for (int k = 0; k < 4; k++) {
            float4 v = r[k];
            if (OP == R_SQDEV) { v.x -= mu; v.y -= mu; v.z -= mu; v.w -= mu; v.x *= v.x; v.y *= v.y; v.z *= v.z; v.w *= v.w; }
            acc += (v.x + v.y) + (v.z + v.w);
        }
    }
    acc = d_warp_sum(acc);
    if (lane == 0) y[o] = acc * scale;
}

/* inner > 1: block (32, 8): x over inner, y over len; blockIdx.y over outer, blockIdx.z = chunk */
template <int OP, int DT> __global__ void k_red_col(const void *__restrict__ x, int64_t outer, int64_t len, int64_t inner,
                                            float *__restrict__ y, int64_t *__restrict__ arg, const float *__restrict__ mean,
                                            float scale, int64_t chunk, int S) {
    __shared__ float shv[8][33];
    __shared__ int64_t sha[8][33];
    int tx = threadIdx.x, ty = threadIdx.y;
    int64_t j = blockIdx.x * 32 + tx, z = blockIdx.z, lo = z * chunk, hi = lo + chunk < len ? lo + chunk : len;
    for (int64_t o = blockIdx.y; o < outer; o += gridDim.y) {
        float acc = 0, m = 0;
        int64_t a = -1;
        if (j < inner) {
            int64_t p = o * len * inner + j;
            float mu = OP == R_SQDEV ? mean[o * inner + j] : 0.0f;
            for (int64_t i = lo + ty; i < hi; i += 8) {
                float v = d_ld<DT>(x, p + i * inner);
                if (OP == R_MAX) d_argmax_combine(m, a, v, i);
                else { if (OP == R_SQDEV) { v -= mu; v *= v; } acc += v; }
            }
        }
        shv[ty][tx] = OP == R_MAX ? m : acc;
        sha[ty][tx] = a;
        __syncthreads();
        if (ty == 0 && j < inner) {
            for (int k = 1; k < 8; k++) {
                if (OP == R_MAX) d_argmax_combine(m, a, shv[k][tx], sha[k][tx]);
                else acc += shv[k][tx];
            }
            if (OP == R_MAX) { y[o * inner + j] = m; arg[o * inner + j] = a; }
            else y[(o * S + z) * inner + j] = S == 1 ? acc * scale : acc;
        }
        __syncthreads();
    }
}

/* y[outer, inner] = reduce over len of x[outer, len, inner] (times scale for sums); x is f32, or f16/bf16 for
   sums (a low-precision gradient reduced in f32 without a cast pass) */
static void nn__reduce3_dt(int op, const void *x, int xdt, int64_t outer, int64_t len, int64_t inner, float *y,
                           int64_t *arg, const float *mean, float scale) {
    int64_t blocks, S = 1, chunk = len;
    nn_tensor *part = NULL;
    float *dst = y;
    if (outer <= 0 || inner <= 0) return;
    if (len == 0) { if (op != R_MAX) nn__fill_f32_dev(y, outer * inner, 0.0f); return; }
    blocks = inner == 1 ? outer : ((inner + 31) / 32) * (outer < 65535 ? outer : 65535);
    if (op != R_MAX && blocks < 2 * (int64_t)nn__cu.sms && len >= 4096) {
        S = (4 * (int64_t)nn__cu.sms + blocks - 1) / blocks;
        if (S > len / 1024) S = len / 1024;
        if (S > 65535) S = 65535;
        if (S < 1) S = 1;
        chunk = (len + S - 1) / S;
        S = (len + chunk - 1) / chunk;
    }
    if (S > 1) { part = nn__tmp(NN_F32, outer * S * inner); dst = (float *)part->data; }
    if (xdt != NN_F32 && op != R_SUM) nn_error("nn cuda reduce: %s input for a sum only", xdt == NN_F16 ? "f16" : "bf16");
    if (inner == 1 && S == 1 && op != R_MAX && len % 4 == 0 && len <= 8192 && nn__al4(x, xdt) &&
        outer <= 8 * (int64_t)INT32_MAX) {
        unsigned gx = (unsigned)((outer + 7) / 8);   /* 8 rows (warps) a block */
        switch (op == R_SUM ? 10 * xdt : op) {
        case 10 * NN_F32: k_red_row_warp<R_SUM, NN_F32><<<gx, 256, 0, S_>>>(x, outer, len / 4, y, mean, scale); break;
        case 10 * NN_F16: k_red_row_warp<R_SUM, NN_F16><<<gx, 256, 0, S_>>>(x, outer, len / 4, y, mean, scale); break;
        case 10 * NN_BF16: k_red_row_warp<R_SUM, NN_BF16><<<gx, 256, 0, S_>>>(x, outer, len / 4, y, mean, scale); break;
        default: k_red_row_warp<R_SQDEV, NN_F32><<<gx, 256, 0, S_>>>(x, outer, len / 4, y, mean, scale); break;
        }
    } else if (inner == 1) {
        int bs = len <= 256 ? 32 : len <= 4096 ? 128 : 256;
        int64_t gx = outer < (int64_t)nn__cu.sms * 64 ? outer : (int64_t)nn__cu.sms * 64;
        dim3 grid((unsigned)gx, (unsigned)S);
        switch (op == R_SUM ? 10 * xdt : op) {
        case 10 * NN_F32: k_red_row<R_SUM, NN_F32><<<grid, bs, 0, S_>>>(x, outer, len, dst, arg, mean, scale, chunk, (int)S); break;
        case 10 * NN_F16: k_red_row<R_SUM, NN_F16><<<grid, bs, 0, S_>>>(x, outer, len, dst, arg, mean, scale, chunk, (int)S); break;
        case 10 * NN_BF16: k_red_row<R_SUM, NN_BF16><<<grid, bs, 0, S_>>>(x, outer, len, dst, arg, mean, scale, chunk, (int)S); break;
        case R_SQDEV: k_red_row<R_SQDEV, NN_F32><<<grid, bs, 0, S_>>>(x, outer, len, dst, arg, mean, scale, chunk, (int)S); break;
        default: k_red_row<R_MAX, NN_F32><<<grid, bs, 0, S_>>>(x, outer, len, dst, arg, mean, scale, chunk, (int)S); break;
        }
    } else {
        dim3 grid((unsigned)((inner + 31) / 32), (unsigned)(outer < 65535 ? outer : 65535), (unsigned)S), block(32, 8);
        switch (op == R_SUM ? 10 * xdt : op) {
        case 10 * NN_F32: k_red_col<R_SUM, NN_F32><<<grid, block, 0, S_>>>(x, outer, len, inner, dst, arg, mean, scale, chunk, (int)S); break;
        case 10 * NN_F16: k_red_col<R_SUM, NN_F16><<<grid, block, 0, S_>>>(x, outer, len, inner, dst, arg, mean, scale, chunk, (int)S); break;
        case 10 * NN_BF16: k_red_col<R_SUM, NN_BF16><<<grid, block, 0, S_>>>(x, outer, len, inner, dst, arg, mean, scale, chunk, (int)S); break;
        case R_SQDEV: k_red_col<R_SQDEV, NN_F32><<<grid, block, 0, S_>>>(x, outer, len, inner, dst, arg, mean, scale, chunk, (int)S); break;
        default: k_red_col<R_MAX, NN_F32><<<grid, block, 0, S_>>>(x, outer, len, inner, dst, arg, mean, scale, chunk, (int)S); break;
        }
    }
    NN_LAUNCHED();
    if (part) {
        nn__reduce3_dt(R_SUM, dst, NN_F32, outer, S, inner, y, NULL, NULL, scale);
        nn_tensor_free(part);
    }
}

static void nn__reduce3(int op, const float *x, int64_t outer, int64_t len, int64_t inner, float *y, int64_t *arg,
                        const float *mean, float scale) {
    nn__reduce3_dt(op, x, NN_F32, outer, len, inner, y, arg, mean, scale);
}

/* gradient of a reduction: gx[o,i,j] from g[o,j] */
__global__ void k_reduce_bwd(int kind, const float *__restrict__ g, float *__restrict__ gx, int64_t outer, int64_t len,
                             int64_t inner, const int64_t *__restrict__ arg, const float *__restrict__ x,
                             const float *__restrict__ mean, float denom) {
    int64_t n = outer * len * inner;
    for (int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; t < n; t += (int64_t)gridDim.x * blockDim.x) {
        int64_t j = t % inner, oi = t / inner, i = oi % len, o = oi / len, k = o * inner + j;
        float gv = g[k], r;
        if (kind == 0) r = gv;
        else if (kind == 1) r = gv / (float)len;
        else if (kind == 2) r = arg[k] == i ? gv : 0.0f;
        else r = gv * 2.0f * (x[t] - mean[k]) / denom;
        gx[t] = r;
    }
}

extern "C" {

/* kind: nn.h's NN__R_SUM, MEAN, MAX, VAR (0..3) */
void nn__cuda_reduce_fwd(int kind, const nn_tensor *x, int64_t outer, int64_t len, int64_t inner, int unbiased,
                         nn_tensor *y, nn_tensor *arg, nn_tensor *mean) {
    const float *px = (const float *)x->data;
    nn__cu_init();
    if (outer * inner == 0) return;
    switch (kind) {
    case 0: nn__reduce3(R_SUM, px, outer, len, inner, (float *)y->data, NULL, NULL, 1.0f); break;
    case 1: nn__reduce3(R_SUM, px, outer, len, inner, (float *)y->data, NULL, NULL, (float)(1.0 / (double)len)); break;
    case 2: nn__reduce3(R_MAX, px, outer, len, inner, (float *)y->data, (int64_t *)arg->data, NULL, 1.0f); break;
    default:
        nn__reduce3(R_SUM, px, outer, len, inner, (float *)mean->data, NULL, NULL, (float)(1.0 / (double)len));
        nn__reduce3(R_SQDEV, px, outer, len, inner, (float *)y->data, NULL, (const float *)mean->data,
                    (float)(1.0 / (double)(len - unbiased)));
        break;
    }
}

void nn__cuda_reduce_bwd(int kind, const nn_tensor *g, int64_t outer, int64_t len, int64_t inner, const nn_tensor *arg,
                         const nn_tensor *x, const nn_tensor *mean, double denom, nn_tensor *gx) {
    int64_t n = outer * len * inner;
    nn__cu_init();
    if (!n) return;
    k_reduce_bwd<<<nn__grid(n, 256), 256, 0, S_>>>(kind, (const float *)g->data, (float *)gx->data, outer, len, inner,
                                                  arg ? (const int64_t *)arg->data : NULL, x ? (const float *)x->data : NULL,
                                                  mean ? (const float *)mean->data : NULL, (float)denom);
    NN_LAUNCHED();
}

/* sum g down to out's shape (numpy broadcasting, right-aligned): merge g's dims into alternating kept and
   reduced groups, then reduce the reduced groups from the innermost out */
void nn__cuda_sum_to(const nn_tensor *g, nn_tensor *out) {
    int64_t sz[2 * NN_MAX_DIMS];
    int red[2 * NN_MAX_DIMS], k = 0, nd = g->ndim;
    nn__cu_init();
    if (!out->numel) return;
    if (!g->numel) { nn__fill_f32_dev((float *)out->data, out->numel, 0.0f); return; }
    for (int d = 0; d < nd; d++) {
        int io = out->ndim - nd + d;
        int64_t os = io >= 0 ? out->shape[io] : 1;
        int r = os == 1 && g->shape[d] != 1;
        if (g->shape[d] == 1) continue;
        if (k > 0 && red[k - 1] == r) sz[k - 1] *= g->shape[d];
        else { sz[k] = g->shape[d]; red[k] = r; k++; }
    }
    int nred = 0;
    for (int i = 0; i < k; i++) nred += red[i];
    if (nred == 0) { nn__cuda_cast(g, out); return; }   /* only size-1 dims differ: a copy (converting to f32) */
    const void *src = g->data;
    int sdt = g->dtype;   /* f32, f16 or bf16: the first pass reads it, later ones their f32 partial sums */
    nn_tensor *prev = NULL;
    for (int p = k - 1; p >= 0; p--) {
        if (!red[p]) continue;
        int64_t outer = 1, inner = 1;
        for (int i = 0; i < p; i++) outer *= sz[i];
        for (int i = p + 1; i < k; i++) inner *= sz[i];
        nred--;
        nn_tensor *dstt = NULL;
        float *dst;
        if (nred == 0) dst = (float *)out->data;
        else { dstt = nn__tmp(NN_F32, outer * inner); dst = (float *)dstt->data; }
        nn__reduce3_dt(R_SUM, src, sdt, outer, sz[p], inner, dst, NULL, NULL, 1.0f);
        if (prev) nn_tensor_free(prev);
        prev = dstt;
        src = dst;
        sdt = NN_F32;
        /* remove group p */
        for (int i = p; i < k - 1; i++) { sz[i] = sz[i + 1]; red[i] = red[i + 1]; }
        k--;
    }
}

} /* extern "C" */

/* -------------------------------------------------------------------------------------------- addcmul */
/* out = x + h * w (nn.h's nn_addcmul): f32 arithmetic with the product rounded before the sum (__fmul_rn and
   __fadd_rn keep the compiler from fusing them), as the CPU and the unfused nn_mul, nn_add pair compute it */

__device__ __forceinline__ float d_addcmul(float x, float h, float w) { return __fadd_rn(x, __fmul_rn(h, w)); }

/* x and h of the output's shape; w too (WROW 0) or one row of the last dim's C values (WROW 1, LayerScale's
   lambda). vec: groups of four (n % 4 == 0, C % 4 == 0 for WROW, pointers nn__al4), else one by one */
template <int WROW> __global__ void k_addcmul(const void *__restrict__ x, int xdt, const void *__restrict__ h, int hdt,
                                              const void *__restrict__ w, int wdt, void *__restrict__ o, int odt, int64_t n,
                                              int64_t C, int vec) {
    int64_t t0 = blockIdx.x * (int64_t)blockDim.x + threadIdx.x, st = (int64_t)gridDim.x * blockDim.x;
    if (vec) {
        /* w's column advances by a fixed step: one division up front instead of one per group */
        int64_t col = WROW ? (4 * t0) % C : 0, step = WROW ? (4 * st) % C : 0;
        for (int64_t i = 4 * t0; i < n; i += 4 * st) {
            float a[4], b[4], c[4];
            d_load4f(x, xdt, i, a);
            d_load4f(h, hdt, i, b);
            d_load4f(w, wdt, WROW ? col : i, c);
#pragma unroll
            for (int k = 0; k < 4; k++) a[k] = d_addcmul(a[k], b[k], c[k]);
            d_store4f(o, odt, i, a);
            if (WROW) { col += step; if (col >= C) col -= C; }
        }
        return;
    }
    for (int64_t i = t0; i < n; i += st)
        d_storef(o, odt, i, d_addcmul(d_loadf(x, xdt, i), d_loadf(h, hdt, i), d_loadf(w, wdt, WROW ? i % C : i)));
}

/* any broadcast of the three: element strides per output dim (0 where broadcast) */
typedef struct { int nd; int64_t shape[NN_MAX_DIMS], sx[NN_MAX_DIMS], sh[NN_MAX_DIMS], sw[NN_MAX_DIMS]; } nn__bc3;
__global__ void k_addcmul_bc(const void *__restrict__ x, int xdt, const void *__restrict__ h, int hdt,
                             const void *__restrict__ w, int wdt, void *__restrict__ o, int odt, int64_t n, nn__bc3 m) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = i, ox = 0, oh = 0, ow = 0;
        for (int d = m.nd - 1; d >= 0; d--) {
            int64_t q = r / m.shape[d], c = r - q * m.shape[d];
            ox += c * m.sx[d]; oh += c * m.sh[d]; ow += c * m.sw[d]; r = q;
        }
        d_storef(o, odt, i, d_addcmul(d_loadf(x, xdt, ox), d_loadf(h, hdt, oh), d_loadf(w, wdt, ow)));
    }
}

/* V consecutive elements from i of a DT array: one vector access (V 4, i % 4 == 0) or one scalar */
template <int V, int DT> __device__ __forceinline__ void d_ldv(const void *p, int64_t i, float *r) {
    if (V == 4) { float4 v = d_load_row4<DT>(p, i >> 2); r[0] = v.x; r[1] = v.y; r[2] = v.z; r[3] = v.w; }
    else r[0] = DT == NN_F32 ? ((const float *)p)[i] : d_from16<DT>(((const uint16_t *)p)[i]);
}
template <int V, int DT> __device__ __forceinline__ void d_stv(void *p, int64_t i, const float *r) {
    if (V == 4) d_store_row4<DT>(p, i >> 2, make_float4(r[0], r[1], r[2], r[3]));
    else if (DT == NN_F32) ((float *)p)[i] = r[0];
    else ((uint16_t *)p)[i] = d_to16<DT>(r[0]);
}

/* backward for w one row of C values, h of g's shape [rows, C]: one read of g and h gives dh = g * w (in h's dtype HDT)
   and dw's column sums. Block (64, 4): x over groups of V columns, y over the rows of the block's chunk (blockIdx.y),
   interleaved; each thread sums its columns in registers, the four rows of threads are added in order in shared
   memory and written to part[blockIdx.y][C], whose chunks are summed afterwards in a fixed order (deterministic).
   The dtypes are template arguments: no dtype branches between the loads. */
template <int V, int GDT, int HDT> __global__ void k_addcmul_bwd_row(const void *__restrict__ g, const void *__restrict__ h,
                                                                     const void *__restrict__ w, int wdt, void *__restrict__ dh,
                                                                     float *__restrict__ part, int64_t rows, int64_t C,
                                                                     int64_t chunk) {
    __shared__ float sh[4][64 * V];
    int tx = threadIdx.x, ty = threadIdx.y;
    int64_t j = ((int64_t)blockIdx.x * 64 + tx) * V, r0 = blockIdx.y * chunk, r1 = r0 + chunk < rows ? r0 + chunk : rows;
    float wv[V], acc[V];
#pragma unroll
    for (int k = 0; k < V; k++) { wv[k] = 0; acc[k] = 0; }
    if (j < C) {
        if (dh) {
            if (V == 4) d_load4f(w, wdt, j, wv); else wv[0] = d_loadf(w, wdt, j);
        }
        /* four of the thread's rows at a time, all their loads issued before any use: 4 x (g, h) in flight */
        for (int64_t r = r0 + ty; r < r1; r += 16) {
            float gv[4][V], hv[4][V];
#pragma unroll
            for (int u = 0; u < 4; u++) {
                int64_t i = (r + 4 * u) * C + j;
                if (r + 4 * u < r1) {
                    d_ldv<V, GDT>(g, i, gv[u]);
                    if (part) d_ldv<V, HDT>(h, i, hv[u]);
                }
            }
#pragma unroll
            for (int u = 0; u < 4; u++) {
                int64_t i = (r + 4 * u) * C + j;
                if (r + 4 * u >= r1) break;
                if (dh) {
                    float v[V];
#pragma unroll
                    for (int k = 0; k < V; k++) v[k] = gv[u][k] * wv[k];
                    d_stv<V, HDT>(dh, i, v);
                }
                if (part) {
#pragma unroll
                    for (int k = 0; k < V; k++) acc[k] += gv[u][k] * hv[u][k];
                }
            }
        }
    }
    if (!part) return;   /* the same for every thread of the block */
#pragma unroll
    for (int k = 0; k < V; k++) sh[ty][tx * V + k] = acc[k];
    __syncthreads();
    if (ty == 0 && j < C) {
#pragma unroll
        for (int k = 0; k < V; k++)
            part[blockIdx.y * C + j + k] = ((sh[0][tx * V + k] + sh[1][tx * V + k]) + sh[2][tx * V + k]) + sh[3][tx * V + k];
    }
}

extern "C" {

void nn__cuda_addcmul_fwd(const nn_tensor *x, const nn_tensor *h, const nn_tensor *w, nn_tensor *o) {
    int64_t n = o->numel, C = o->ndim ? o->shape[o->ndim - 1] : 1;
    nn__cu_init();
    if (!n) return;
    int wfull = w->numel == n, wrow = !wfull && w->ndim >= 1 && w->numel == C && w->shape[w->ndim - 1] == C;
    if (x->numel == n && h->numel == n && (wfull || wrow)) {
        int vec = n % 4 == 0 && (wfull || C % 4 == 0) && nn__al4(x->data, x->dtype) && nn__al4(h->data, h->dtype) &&
                  nn__al4(w->data, w->dtype) && nn__al4(o->data, o->dtype);
        unsigned g = nn__grid(vec ? n / 4 : n, 256);
        if (wrow) k_addcmul<1><<<g, 256, 0, S_>>>(x->data, x->dtype, h->data, h->dtype, w->data, w->dtype, o->data, o->dtype, n, C, vec);
        else k_addcmul<0><<<g, 256, 0, S_>>>(x->data, x->dtype, h->data, h->dtype, w->data, w->dtype, o->data, o->dtype, n, C, vec);
        NN_LAUNCHED();
        return;
    }
    nn__bc3 m;
    m.nd = o->ndim;
    memcpy(m.shape, o->shape, sizeof m.shape);
    nn__bstrides(x, o->ndim, o->shape, m.sx);
    nn__bstrides(h, o->ndim, o->shape, m.sh);
    nn__bstrides(w, o->ndim, o->shape, m.sw);
    k_addcmul_bc<<<nn__grid(n, 256), 256, 0, S_>>>(x->data, x->dtype, h->data, h->dtype, w->data, w->dtype, o->data,
                                                   o->dtype, n, m);
    NN_LAUNCHED();
}

void nn__cuda_addcmul_bwd(const nn_tensor *g, const nn_tensor *h, const nn_tensor *w, nn_tensor *dh, nn_tensor *dw) {
    int64_t C = g->shape[g->ndim - 1], rows = C ? g->numel / C : 0, S, chunk;
    nn_tensor *part = NULL;
    nn__cu_init();
    if (!C) return;
    if (!rows) { if (dw) nn__fill_f32_dev((float *)dw->data, C, 0.0f); return; }
    int vec = C % 4 == 0 && nn__al4(g->data, g->dtype) && (!dh || (nn__al4(w->data, w->dtype) && nn__al4(dh->data, dh->dtype))) &&
              (!dw || nn__al4(h->data, h->dtype));
    int V = vec ? 4 : 1;
    int64_t gx = (C + 64 * V - 1) / (64 * V);
    /* about 4 blocks of 256 threads per SM, each a chunk of rows: enough loads in flight with the unrolled row
       loop, and few partial sums for the second pass (S rows of C) */
    S = (4 * (int64_t)nn__cu.sms + gx - 1) / gx;
    if (S > rows) S = rows;
    if (S > 65535) S = 65535;
    chunk = (rows + S - 1) / S;
    S = (rows + chunk - 1) / chunk;
    float *pp = NULL;
    if (dw) {
        if (S > 1) { part = nn__tmp(NN_F32, S * C); pp = (float *)part->data; }
        else pp = (float *)dw->data;
    }
    dim3 grid((unsigned)gx, (unsigned)S), block(64, 4);
    const void *ph = dw ? h->data : NULL, *pw = dh ? w->data : NULL;
    void *pdh = dh ? dh->data : NULL;
    int wdt = dh ? w->dtype : NN_F32, hdt = dh ? dh->dtype : h->dtype;   /* dh has h's dtype */
    if (dh && dw && h->dtype != dh->dtype) nn_error("nn__cuda_addcmul_bwd: dh must have h's dtype");
#define NN__ACB(VV, G, H) k_addcmul_bwd_row<VV, G, H><<<grid, block, 0, S_>>>(g->data, ph, pw, wdt, pdh, pp, rows, C, chunk)
#define NN__ACB_H(VV, G) switch (hdt) { case NN_F32: NN__ACB(VV, G, NN_F32); break; case NN_F16: NN__ACB(VV, G, NN_F16); break; \
                                      default: NN__ACB(VV, G, NN_BF16); break; }
#define NN__ACB_G(VV) switch (g->dtype) { case NN_F32: NN__ACB_H(VV, NN_F32) break; case NN_F16: NN__ACB_H(VV, NN_F16) break; \
                                        default: NN__ACB_H(VV, NN_BF16) break; }
    if (V == 4) NN__ACB_G(4) else NN__ACB_G(1)
#undef NN__ACB_G
#undef NN__ACB_H
#undef NN__ACB
    NN_LAUNCHED();
    if (part) {
        nn__reduce3(R_SUM, pp, 1, S, C, (float *)dw->data, NULL, NULL, 1.0f);
        nn_tensor_free(part);
    }
}

} /* extern "C" */

/* -------------------------------------------------------------------------------------- softmax, norms */

/* rows of len elements (inner == 1): a block per row; the row sits in registers when len <= 8 * blockDim */
template <bool CACHED> __global__ void k_softmax_row(const float *__restrict__ x, float *__restrict__ y, int64_t rows,
                                                     int64_t len, int log_form) {
    __shared__ float sh[33];
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        const float *p = x + r * len;
        float *q = y + r * len;
        float v[8], m = -INFINITY, s = 0;
        if (CACHED) {
#pragma unroll
            for (int k = 0; k < 8; k++) {
                int64_t j = threadIdx.x + (int64_t)k * blockDim.x;
                v[k] = j < len ? p[j] : -INFINITY;
                m = fmaxf(m, v[k]);
            }
        } else {
            for (int64_t j = threadIdx.x; j < len; j += blockDim.x) m = fmaxf(m, p[j]);
        }
        m = d_block_max(m, sh);
        if (m == -INFINITY) m = 0;
        if (CACHED) {
#pragma unroll
            for (int k = 0; k < 8; k++) {
                int64_t j = threadIdx.x + (int64_t)k * blockDim.x;
                if (j < len) { v[k] = expf(v[k] - m); s += v[k]; }
            }
        } else {
            for (int64_t j = threadIdx.x; j < len; j += blockDim.x) s += expf(p[j] - m);
        }
        s = d_block_sum(s, sh);
        if (log_form) {
            float ls = m + logf(s);
            for (int64_t j = threadIdx.x; j < len; j += blockDim.x) q[j] = p[j] - ls;
        } else {
            float inv = 1.0f / s;
            if (CACHED) {
#pragma unroll
                for (int k = 0; k < 8; k++) {
                    int64_t j = threadIdx.x + (int64_t)k * blockDim.x;
                    if (j < len) q[j] = v[k] * inv;
                }
            } else {
                for (int64_t j = threadIdx.x; j < len; j += blockDim.x) q[j] = expf(p[j] - m) * inv;
            }
        }
    }
}

/* inner > 1: a thread per (o, j) */
__global__ void k_softmax_col(const float *__restrict__ x, float *__restrict__ y, int64_t outer, int64_t len,
                              int64_t inner, int log_form) {
    int64_t n = outer * inner;
    for (int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; t < n; t += (int64_t)gridDim.x * blockDim.x) {
        int64_t o = t / inner, j = t % inner;
        const float *p = x + o * len * inner + j;
        float *q = y + o * len * inner + j;
        float m = -INFINITY, s = 0;
        for (int64_t i = 0; i < len; i++) m = fmaxf(m, p[i * inner]);
        if (m == -INFINITY) m = 0;
        for (int64_t i = 0; i < len; i++) s += expf(p[i * inner] - m);
        if (log_form) { float ls = m + logf(s); for (int64_t i = 0; i < len; i++) q[i * inner] = p[i * inner] - ls; }
        else { float inv = 1.0f / s; for (int64_t i = 0; i < len; i++) q[i * inner] = expf(p[i * inner] - m) * inv; }
    }
}

__global__ void k_softmax_bwd_row(const float *__restrict__ g, const float *__restrict__ y, float *__restrict__ gx,
                                  int64_t rows, int64_t len, int log_form) {
    __shared__ float sh[33];
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        const float *pg = g + r * len, *py = y + r * len;
        float *px = gx + r * len, s = 0;
        for (int64_t j = threadIdx.x; j < len; j += blockDim.x) s += log_form ? pg[j] : pg[j] * py[j];
        s = d_block_sum(s, sh);
        for (int64_t j = threadIdx.x; j < len; j += blockDim.x)
            px[j] = log_form ? pg[j] - expf(py[j]) * s : py[j] * (pg[j] - s);
    }
}

__global__ void k_softmax_bwd_col(const float *__restrict__ g, const float *__restrict__ y, float *__restrict__ gx,
                                  int64_t outer, int64_t len, int64_t inner, int log_form) {
    int64_t n = outer * inner;
    for (int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; t < n; t += (int64_t)gridDim.x * blockDim.x) {
        int64_t o = t / inner, j = t % inner, base = o * len * inner + j;
        float s = 0;
        for (int64_t i = 0; i < len; i++) s += log_form ? g[base + i * inner] : g[base + i * inner] * y[base + i * inner];
        for (int64_t i = 0; i < len; i++) {
            int64_t k = base + i * inner;
            gx[k] = log_form ? g[k] - expf(y[k]) * s : y[k] * (g[k] - s);
        }
    }
}

static int nn__row_threads(int64_t len) {
    int64_t t = (len + 3) / 4;
    t = (t + 31) / 32 * 32;
    if (t < 32) t = 32;
    if (t > 512) t = 512;
    return (int)t;
}
static unsigned nn__row_blocks(int64_t rows) {
    int64_t cap = (int64_t)nn__cu.sms * 32;
    return (unsigned)(rows < cap ? (rows < 1 ? 1 : rows) : cap);
}

/* layer_norm forward: a block per row, one read of x (cached in registers when C <= 8 * blockDim) */
template <bool CACHED> __global__ void k_layer_norm_fwd(const float *__restrict__ x, const float *__restrict__ w,
                                                        const float *__restrict__ b, float *__restrict__ y,
                                                        float *__restrict__ mean, float *__restrict__ rstd,
                                                        int64_t rows, int64_t C, float eps) {
    __shared__ float sh[33];
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        const float *xr = x + r * C;
        float *yr = y + r * C;
        float v[8], s = 0, q = 0;
        if (CACHED) {
#pragma unroll
            for (int k = 0; k < 8; k++) {
                int64_t j = threadIdx.x + (int64_t)k * blockDim.x;
                v[k] = j < C ? xr[j] : 0.0f;
                s += v[k];
            }
        } else {
            for (int64_t j = threadIdx.x; j < C; j += blockDim.x) s += xr[j];
        }
        float m = d_block_sum(s, sh) / (float)C;
        if (CACHED) {
#pragma unroll
            for (int k = 0; k < 8; k++) {
                int64_t j = threadIdx.x + (int64_t)k * blockDim.x;
                if (j < C) { float d = v[k] - m; q += d * d; }
            }
        } else {
            for (int64_t j = threadIdx.x; j < C; j += blockDim.x) { float d = xr[j] - m; q += d * d; }
        }
        float rs = 1.0f / sqrtf(d_block_sum(q, sh) / (float)C + eps);
        if (CACHED) {
#pragma unroll
            for (int k = 0; k < 8; k++) {
                int64_t j = threadIdx.x + (int64_t)k * blockDim.x;
                if (j < C) yr[j] = (v[k] - m) * rs * (w ? w[j] : 1.0f) + (b ? b[j] : 0.0f);
            }
        } else {
            for (int64_t j = threadIdx.x; j < C; j += blockDim.x) yr[j] = (xr[j] - m) * rs * (w ? w[j] : 1.0f) + (b ? b[j] : 0.0f);
        }
        if (threadIdx.x == 0) { mean[r] = m; rstd[r] = rs; }
    }
}

/* layer_norm backward: a block per row (grid-stride); dx per row; dw/db partial sums per block in registers
   (or in part[block] when the row is too long), written to part [gridDim.x, 2C] and reduced afterwards */
template <bool CACHED> __global__ void k_layer_norm_bwd(const float *__restrict__ g, const float *__restrict__ x,
                                                        const float *__restrict__ w, const float *__restrict__ mean,
                                                        const float *__restrict__ rstd, float *__restrict__ gx,
                                                        float *__restrict__ part, int64_t rows, int64_t C) {
    __shared__ float sh[33];
    float aw[8], ab[8];
    float *pw = part ? part + (int64_t)blockIdx.x * 2 * C : NULL;
#pragma unroll
    for (int k = 0; k < 8; k++) { aw[k] = 0; ab[k] = 0; }
    if (!CACHED && pw) {   /* zeroed in the same column ownership as the accumulation below */
        for (int64_t j = threadIdx.x; j < C; j += blockDim.x) { pw[j] = 0; pw[C + j] = 0; }
    }
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        const float *xr = x + r * C, *gr = g + r * C;
        float m = mean[r], rs = rstd[r], s1 = 0, s2 = 0;
        float xh[8], dxh[8];
        if (CACHED) {
#pragma unroll
            for (int k = 0; k < 8; k++) {
                int64_t j = threadIdx.x + (int64_t)k * blockDim.x;
                if (j < C) {
                    float gv = gr[j];
                    xh[k] = (xr[j] - m) * rs;
                    dxh[k] = gv * (w ? w[j] : 1.0f);
                    s1 += dxh[k]; s2 += dxh[k] * xh[k];
                    aw[k] += gv * xh[k]; ab[k] += gv;
                } else { xh[k] = 0; dxh[k] = 0; }
            }
        } else {
            for (int64_t j = threadIdx.x; j < C; j += blockDim.x) {
                float gv = gr[j], h = (xr[j] - m) * rs, d = gv * (w ? w[j] : 1.0f);
                s1 += d; s2 += d * h;
                if (pw) { pw[j] += gv * h; pw[C + j] += gv; }
            }
        }
        s1 = d_block_sum(s1, sh) / (float)C;
        s2 = d_block_sum(s2, sh) / (float)C;
        if (gx) {
            float *o = gx + r * C;
            if (CACHED) {
#pragma unroll
                for (int k = 0; k < 8; k++) {
                    int64_t j = threadIdx.x + (int64_t)k * blockDim.x;
                    if (j < C) o[j] = rs * (dxh[k] - s1 - xh[k] * s2);
                }
            } else {
                for (int64_t j = threadIdx.x; j < C; j += blockDim.x) {
                    float h = (xr[j] - m) * rs, d = gr[j] * (w ? w[j] : 1.0f);
                    o[j] = rs * (d - s1 - h * s2);
                }
            }
        }
    }
    if (CACHED && pw) {
#pragma unroll
        for (int k = 0; k < 8; k++) {
            int64_t j = threadIdx.x + (int64_t)k * blockDim.x;
            if (j < C) { pw[j] = aw[k]; pw[C + j] = ab[k]; }
        }
    }
}


/* Rows of at most 1024 floats with C % 4 == 0 and 16-byte alignment: a warp per row, the row in registers as
   V float4 per lane, reductions by shuffles only (no block barriers). */
__device__ __forceinline__ float4 d_f4(const float *p, int j, bool ok) {
    return ok ? ((const float4 *)p)[j] : make_float4(0, 0, 0, 0);
}

/* y in DT (f32, f16, bf16): the f16/bf16 forms round the f32 values as k_cast_f32_to16 does (d_store_row4), so
   nn_layer_norm_to(.., dt) equals nn_cast(nn_layer_norm(..), dt) bit for bit */
/* The warp kernels' arithmetic is spelled out with round-to-nearest intrinsics, which nvcc never contracts into
   fused multiply-adds: left to itself it contracted differently in the f32 and the f16 instances, and
   nn_layer_norm_to's f16 gradient came out a rounding away from the unfused ops' (test_cuda, 2026-12-06). */
__device__ __forceinline__ float d_ln_affine(float v, float m, float rs, float w, float b) {
    return __fadd_rn(__fmul_rn(__fmul_rn(__fsub_rn(v, m), rs), w), b);
}
template <int V, int DT> __global__ void k_layer_norm_fwd_warp(const float *__restrict__ x, const float *__restrict__ w,
                                                               const float *__restrict__ b, void *__restrict__ y,
                                                               float *__restrict__ mean, float *__restrict__ rstd,
                                                               int64_t rows, int C, float eps) {
    int lane = threadIdx.x & 31, C4 = C >> 2;
    int64_t warp = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) >> 5, nw = ((int64_t)gridDim.x * blockDim.x) >> 5;
    for (int64_t r = warp; r < rows; r += nw) {
        const float *xr = x + r * C;
        float4 v[V];
        float s = 0, q = 0;
#pragma unroll
        for (int k = 0; k < V; k++) {
            int j = lane + 32 * k;
            v[k] = d_f4(xr, j, j < C4);
            s += (v[k].x + v[k].y) + (v[k].z + v[k].w);
        }
        float m = d_warp_sum(s) / (float)C;
#pragma unroll
        for (int k = 0; k < V; k++) {
            if (lane + 32 * k < C4) {
                float a = v[k].x - m, bb = v[k].y - m, c = v[k].z - m, d = v[k].w - m;
                q = __fadd_rn(q, __fadd_rn(__fadd_rn(__fmul_rn(a, a), __fmul_rn(bb, bb)),
                                           __fadd_rn(__fmul_rn(c, c), __fmul_rn(d, d))));
            }
        }
        float rs = 1.0f / sqrtf(d_warp_sum(q) / (float)C + eps);
#pragma unroll
        for (int k = 0; k < V; k++) {
            int j = lane + 32 * k;
            if (j < C4) {
                float4 wv = w ? ((const float4 *)w)[j] : make_float4(1, 1, 1, 1);
                float4 bv = b ? ((const float4 *)b)[j] : make_float4(0, 0, 0, 0), o;
                o.x = d_ln_affine(v[k].x, m, rs, wv.x, bv.x); o.y = d_ln_affine(v[k].y, m, rs, wv.y, bv.y);
                o.z = d_ln_affine(v[k].z, m, rs, wv.z, bv.z); o.w = d_ln_affine(v[k].w, m, rs, wv.w, bv.w);
                d_store_row4<DT>(y, r * C4 + j, o);
            }
        }
        if (lane == 0) { mean[r] = m; rstd[r] = rs; }
    }
}

/* dx per row; dw, db accumulated per warp in registers, combined per block in shared memory (2C floats) and
   written to part[blockIdx.x]. g in GDT: f32, or the f16/bf16 gradient of nn_layer_norm_to's output */
template <int V, int GDT> __global__ void k_layer_norm_bwd_warp(const void *__restrict__ g, const float *__restrict__ x,
                                                       const float *__restrict__ w, const float *__restrict__ mean,
                                                       const float *__restrict__ rstd, float *__restrict__ gx,
                                                       float *__restrict__ part, int64_t rows, int C) {
    extern __shared__ float shp[];
    int lane = threadIdx.x & 31, wib = threadIdx.x >> 5, C4 = C >> 2;
    int64_t warp = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) >> 5, nw = ((int64_t)gridDim.x * blockDim.x) >> 5;
    float4 aw[V], ab[V];
#pragma unroll
    for (int k = 0; k < V; k++) { aw[k] = make_float4(0, 0, 0, 0); ab[k] = make_float4(0, 0, 0, 0); }
    for (int64_t r = warp; r < rows; r += nw) {
        const float *xr = x + r * C;
        float m = mean[r], rs = rstd[r], s1 = 0, s2 = 0;
        float4 xh[V], dh[V];
#pragma unroll
        for (int k = 0; k < V; k++) {
            int j = lane + 32 * k;
            bool ok = j < C4;
            float4 xv = d_f4(xr, j, ok), gv = ok ? d_load_row4<GDT>(g, r * C4 + j) : make_float4(0, 0, 0, 0);
            float4 wv = ok && w ? ((const float4 *)w)[j] : make_float4(1, 1, 1, 1);
            xh[k].x = __fmul_rn(xv.x - m, rs); xh[k].y = __fmul_rn(xv.y - m, rs);
            xh[k].z = __fmul_rn(xv.z - m, rs); xh[k].w = __fmul_rn(xv.w - m, rs);
            if (!ok) xh[k] = make_float4(0, 0, 0, 0);
            dh[k].x = __fmul_rn(gv.x, wv.x); dh[k].y = __fmul_rn(gv.y, wv.y);
            dh[k].z = __fmul_rn(gv.z, wv.z); dh[k].w = __fmul_rn(gv.w, wv.w);
            s1 = __fadd_rn(s1, __fadd_rn(__fadd_rn(dh[k].x, dh[k].y), __fadd_rn(dh[k].z, dh[k].w)));
            s2 = __fadd_rn(s2, __fadd_rn(__fadd_rn(__fmul_rn(dh[k].x, xh[k].x), __fmul_rn(dh[k].y, xh[k].y)),
                                         __fadd_rn(__fmul_rn(dh[k].z, xh[k].z), __fmul_rn(dh[k].w, xh[k].w))));
            aw[k].x = __fadd_rn(aw[k].x, __fmul_rn(gv.x, xh[k].x)); aw[k].y = __fadd_rn(aw[k].y, __fmul_rn(gv.y, xh[k].y));
            aw[k].z = __fadd_rn(aw[k].z, __fmul_rn(gv.z, xh[k].z)); aw[k].w = __fadd_rn(aw[k].w, __fmul_rn(gv.w, xh[k].w));
            ab[k].x += gv.x; ab[k].y += gv.y; ab[k].z += gv.z; ab[k].w += gv.w;
        }
        s1 = d_warp_sum(s1) / (float)C;
        s2 = d_warp_sum(s2) / (float)C;
        if (gx) {
#pragma unroll
            for (int k = 0; k < V; k++) {
                int j = lane + 32 * k;
                if (j < C4) {
                    float4 o;
                    o.x = __fmul_rn(rs, __fsub_rn(dh[k].x - s1, __fmul_rn(xh[k].x, s2)));
                    o.y = __fmul_rn(rs, __fsub_rn(dh[k].y - s1, __fmul_rn(xh[k].y, s2)));
                    o.z = __fmul_rn(rs, __fsub_rn(dh[k].z - s1, __fmul_rn(xh[k].z, s2)));
                    o.w = __fmul_rn(rs, __fsub_rn(dh[k].w - s1, __fmul_rn(xh[k].w, s2)));
                    ((float4 *)(gx + r * C))[j] = o;
                }
            }
        }
    }
    if (!part) return;
    for (int t = 0; t < (int)(blockDim.x >> 5); t++) {   /* warps add into shared memory in turn (deterministic) */
        if (wib == t) {
#pragma unroll
            for (int k = 0; k < V; k++) {
                int j = lane + 32 * k;
                if (j < C4) {
                    float4 *pw = (float4 *)shp + j, *pb = (float4 *)(shp + C) + j;
                    if (t == 0) { *pw = aw[k]; *pb = ab[k]; }
                    else {
                        float4 a = *pw, c = *pb;
                        a.x += aw[k].x; a.y += aw[k].y; a.z += aw[k].z; a.w += aw[k].w;
                        c.x += ab[k].x; c.y += ab[k].y; c.z += ab[k].z; c.w += ab[k].w;
                        *pw = a; *pb = c;
                    }
                }
            }
        }
        __syncthreads();
    }
    for (int j = threadIdx.x; j < 2 * C; j += blockDim.x) part[(int64_t)blockIdx.x * 2 * C + j] = shp[j];
}

template <int V> __global__ void k_softmax_warp(const float *__restrict__ x, float *__restrict__ y, int64_t rows, int len,
                                                int log_form) {
    int lane = threadIdx.x & 31, L4 = len >> 2;
    int64_t warp = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) >> 5, nw = ((int64_t)gridDim.x * blockDim.x) >> 5;
    for (int64_t r = warp; r < rows; r += nw) {
        const float *p = x + r * len;
        float4 v[V];
        float m = -INFINITY, s = 0;
#pragma unroll
        for (int k = 0; k < V; k++) {
            int j = lane + 32 * k;
            v[k] = j < L4 ? ((const float4 *)p)[j] : make_float4(-INFINITY, -INFINITY, -INFINITY, -INFINITY);
            m = fmaxf(m, fmaxf(fmaxf(v[k].x, v[k].y), fmaxf(v[k].z, v[k].w)));
        }
        m = d_warp_max(m);
        if (m == -INFINITY) m = 0;
#pragma unroll
        for (int k = 0; k < V; k++) {
            if (lane + 32 * k < L4) {
                float4 e;
                e.x = expf(v[k].x - m); e.y = expf(v[k].y - m); e.z = expf(v[k].z - m); e.w = expf(v[k].w - m);
                s += (e.x + e.y) + (e.z + e.w);
                if (!log_form) v[k] = e;
            }
        }
        s = d_warp_sum(s);
        float ls = m + logf(s), inv = 1.0f / s;
#pragma unroll
        for (int k = 0; k < V; k++) {
            int j = lane + 32 * k;
            if (j < L4) {
                float4 o = v[k];
                if (log_form) { o.x -= ls; o.y -= ls; o.z -= ls; o.w -= ls; }
                else { o.x *= inv; o.y *= inv; o.z *= inv; o.w *= inv; }
                ((float4 *)(y + r * len))[j] = o;
            }
        }
    }
}

/* V (float4 per lane) for a row of n floats when the warp kernels apply, else 0 */
static int nn__warp_v(int64_t n, const void *a, const void *b, const void *c, const void *d) {
    if (n <= 0 || n > 1024 || (n & 3) || !nn__al16(a) || !nn__al16(b) || (c && !nn__al16(c)) || (d && !nn__al16(d))) return 0;
    int64_t v = (n / 4 + 31) / 32;
    return v <= 1 ? 1 : v <= 2 ? 2 : v <= 4 ? 4 : 8;
}
static unsigned nn__warp_blocks(int64_t rows, int cap_per_sm) {
    int64_t b = (rows + 7) / 8, cap = (int64_t)nn__cu.sms * cap_per_sm;
    return (unsigned)(b < cap ? (b < 1 ? 1 : b) : cap);
}

extern "C" {

void nn__cuda_softmax_fwd(const nn_tensor *x, int64_t outer, int64_t len, int64_t inner, int log_form, nn_tensor *y) {
    nn__cu_init();
    if (!x->numel) return;
    if (inner == 1 && nn__warp_v(len, x->data, y->data, NULL, NULL)) {
        unsigned nb = nn__warp_blocks(outer, 16);
        const float *px = (const float *)x->data;
        float *py = (float *)y->data;
        switch (nn__warp_v(len, x->data, y->data, NULL, NULL)) {
        case 1: k_softmax_warp<1><<<nb, 256, 0, S_>>>(px, py, outer, (int)len, log_form); break;
        case 2: k_softmax_warp<2><<<nb, 256, 0, S_>>>(px, py, outer, (int)len, log_form); break;
        case 4: k_softmax_warp<4><<<nb, 256, 0, S_>>>(px, py, outer, (int)len, log_form); break;
        default: k_softmax_warp<8><<<nb, 256, 0, S_>>>(px, py, outer, (int)len, log_form); break;
        }
    } else if (inner == 1) {
        int bs = nn__row_threads(len);
        if (len <= 8 * (int64_t)bs)
            k_softmax_row<true><<<nn__row_blocks(outer), bs, 0, S_>>>((const float *)x->data, (float *)y->data, outer, len, log_form);
        else
            k_softmax_row<false><<<nn__row_blocks(outer), bs, 0, S_>>>((const float *)x->data, (float *)y->data, outer, len, log_form);
    } else {
        k_softmax_col<<<nn__grid(outer * inner, 256), 256, 0, S_>>>((const float *)x->data, (float *)y->data, outer, len, inner, log_form);
    }
    NN_LAUNCHED();
}

void nn__cuda_softmax_bwd(const nn_tensor *g, const nn_tensor *y, int64_t outer, int64_t len, int64_t inner, int log_form,
                          nn_tensor *gx) {
    nn__cu_init();
    if (!g->numel) return;
    if (inner == 1)
        k_softmax_bwd_row<<<nn__row_blocks(outer), nn__row_threads(len), 0, S_>>>((const float *)g->data, (const float *)y->data,
                                                                                (float *)gx->data, outer, len, log_form);
    else
        k_softmax_bwd_col<<<nn__grid(outer * inner, 256), 256, 0, S_>>>((const float *)g->data, (const float *)y->data,
                                                                       (float *)gx->data, outer, len, inner, log_form);
    NN_LAUNCHED();
}

void nn__cuda_layer_norm_fwd(const nn_tensor *x, const nn_tensor *w, const nn_tensor *b, double eps, nn_tensor *y,
                             nn_tensor *mean, nn_tensor *rstd) {
    int64_t C = x->shape[x->ndim - 1], rows = C ? x->numel / C : 0;
    int bs;
    nn__cu_init();
    if (!rows) return;
    bs = nn__row_threads(C);
    const float *pw = w ? (const float *)w->data : NULL, *pb = b ? (const float *)b->data : NULL;
    int V = nn__al4(y->data, y->dtype) ? nn__warp_v(C, x->data, x->data, pw, pb) : 0;
    if (V) {
        unsigned nb = nn__warp_blocks(rows, 16);
        const float *px = (const float *)x->data;
        float *pm = (float *)mean->data, *pr = (float *)rstd->data;
#define NN__LNF(VV, DT) k_layer_norm_fwd_warp<VV, DT><<<nb, 256, 0, S_>>>(px, pw, pb, y->data, pm, pr, rows, (int)C, (float)eps)
#define NN__LNF_V(DT) switch (V) { case 1: NN__LNF(1, DT); break; case 2: NN__LNF(2, DT); break; \
                               case 4: NN__LNF(4, DT); break; default: NN__LNF(8, DT); break; }
        if (y->dtype == NN_BF16) NN__LNF_V(NN_BF16)
        else if (y->dtype == NN_F16) NN__LNF_V(NN_F16)
        else NN__LNF_V(NN_F32)
#undef NN__LNF_V
#undef NN__LNF
    } else if (y->dtype != NN_F32) {   /* the row kernels write f32: through an f32 output and a cast */
        nn_tensor *y32 = nn__new(NN_F32, NN_CUDA, y->ndim, y->shape);
        nn__cuda_layer_norm_fwd(x, w, b, eps, y32, mean, rstd);
        nn__cuda_cast(y32, y);
        nn_tensor_free(y32);
        return;
    } else if (C <= 8 * (int64_t)bs)
        k_layer_norm_fwd<true><<<nn__row_blocks(rows), bs, 0, S_>>>((const float *)x->data, pw, pb, (float *)y->data,
                                                                     (float *)mean->data, (float *)rstd->data, rows, C, (float)eps);
    else
        k_layer_norm_fwd<false><<<nn__row_blocks(rows), bs, 0, S_>>>((const float *)x->data, pw, pb, (float *)y->data,
                                                                      (float *)mean->data, (float *)rstd->data, rows, C, (float)eps);
    NN_LAUNCHED();
}

/* gx, gw, gb may each be NULL */
void nn__cuda_layer_norm_bwd(const nn_tensor *g, const nn_tensor *x, const nn_tensor *w, const nn_tensor *mean,
                             const nn_tensor *rstd, nn_tensor *gx, nn_tensor *gw, nn_tensor *gb) {
    int64_t C = x->shape[x->ndim - 1], rows = C ? x->numel / C : 0;
    int bs;
    unsigned nb;
    nn_tensor *part = NULL, *sums = NULL;
    nn__cu_init();
    if (!C) return;
    if (!rows) {
        if (gw) nn__fill_f32_dev((float *)gw->data, C, 0.0f);
        if (gb) nn__fill_f32_dev((float *)gb->data, C, 0.0f);
        return;
    }
    bs = nn__row_threads(C);
    nb = nn__row_blocks(rows);
    if (nb > (unsigned)nn__cu.sms * 4) nb = (unsigned)nn__cu.sms * 4;
    const float *pw = w ? (const float *)w->data : NULL;
    int V = nn__al4(g->data, g->dtype) ? nn__warp_v(C, x->data, x->data, pw, gx ? gx->data : NULL) : 0;
    if (!V && g->dtype != NN_F32) {   /* the row kernels read f32: through a cast of g */
        nn_tensor *g32 = nn__new(NN_F32, NN_CUDA, g->ndim, g->shape);
        nn__cuda_cast(g, g32);
        nn__cuda_layer_norm_bwd(g32, x, w, mean, rstd, gx, gw, gb);
        nn_tensor_free(g32);
        return;
    }
    if (V) nb = nn__warp_blocks(rows, 4);
    if (gw || gb) part = nn__tmp(NN_F32, (int64_t)nb * 2 * C);
    float *pp = part ? (float *)part->data : NULL, *pgx = gx ? (float *)gx->data : NULL;
    if (V) {
        const float *px = (const float *)x->data, *pm = (const float *)mean->data;
        const float *pr = (const float *)rstd->data;
        size_t sm = (size_t)2 * C * sizeof(float);
#define NN__LNB(VV, DT) k_layer_norm_bwd_warp<VV, DT><<<nb, 256, sm, S_>>>(g->data, px, pw, pm, pr, pgx, pp, rows, (int)C)
#define NN__LNB_V(DT) switch (V) { case 1: NN__LNB(1, DT); break; case 2: NN__LNB(2, DT); break; \
                               case 4: NN__LNB(4, DT); break; default: NN__LNB(8, DT); break; }
        if (g->dtype == NN_BF16) NN__LNB_V(NN_BF16)
        else if (g->dtype == NN_F16) NN__LNB_V(NN_F16)
        else NN__LNB_V(NN_F32)
#undef NN__LNB_V
#undef NN__LNB
    } else if (C <= 8 * (int64_t)bs)
        k_layer_norm_bwd<true><<<nb, bs, 0, S_>>>((const float *)g->data, (const float *)x->data, pw, (const float *)mean->data,
                                                  (const float *)rstd->data, pgx, pp, rows, C);
    else
        k_layer_norm_bwd<false><<<nb, bs, 0, S_>>>((const float *)g->data, (const float *)x->data, pw, (const float *)mean->data,
                                                   (const float *)rstd->data, pgx, pp, rows, C);
    NN_LAUNCHED();
    if (part) {
        sums = nn__tmp(NN_F32, 2 * C);
        nn__reduce3(R_SUM, pp, 1, nb, 2 * C, (float *)sums->data, NULL, NULL, 1.0f);
        if (gw) nn__cuda_memcpy(gw->data, sums->data, (size_t)C * 4, 2);
        if (gb) nn__cuda_memcpy(gb->data, (float *)sums->data + C, (size_t)C * 4, 2);
        nn_tensor_free(sums);
        nn_tensor_free(part);
    }
}

} /* extern "C" */

/* -------------------------------------------------------------------------------------------- group_norm */
/* x [N, C, S] with G groups: a block per (n, g) over its (C/G)*S contiguous elements. Two passes: the shifted
   sums, then y, whose re-read of x mostly hits L2 (only the groups of the blocks on the GPU are being read). vec
   (S % 4 == 0, x and y 16-byte aligned, a group under 2^31 elements): float4s, four in flight per thread per step
   (a float4 never spans two channels); else element by element, channel by channel. Measured on [8, 256, 64, 64],
   32 groups (cuda_bench gn, H100, 2026-12-07; bench/RESULTS_CUDA.md, stop 28):
   - one float4 in flight a thread: 1.86 TB/s; four: 2.23 TB/s, 27.5 us under ncu;
   - blocks of 512 threads instead of 1024, every group on the GPU at once: 1.96 TB/s, all blocks loading
     together and then storing together, where the 1.94 waves of 1024 overlap one wave's stores with the next's
     loads;
   - the group held in registers, x read once (8 bytes an element, against 12 here): 2.21 TB/s, 26.8 us under ncu;
     spread over a cluster of 8 blocks (sm_90): 1.83 TB/s, and 1.79 with persistent clusters. No faster, so not
     kept. */
__global__ void k_group_norm_fwd(const float *__restrict__ x, const float *__restrict__ w, const float *__restrict__ b,
                                 float *__restrict__ y, float *__restrict__ mean, float *__restrict__ rstd, int64_t N,
                                 int64_t C, int64_t S, int64_t G, float eps, int vec) {
    __shared__ float sh[33];
    const int64_t Cg = C / G, len = Cg * S;
    const int T = (int)blockDim.x, n4 = vec ? (int)(len / 4) : 0, S4 = (int)(S / 4);
    for (int64_t ng = blockIdx.x; ng < N * G; ng += gridDim.x) {
        const float *p = x + ng * len;
        float *q = y + ng * len;
        const int64_t c0 = (ng % G) * Cg;
        /* one pass over data shifted by the group's first element (as the CPU op: no cancellation when
           |mean| >> std): mean = K + s1/n, var = s2/n - (s1/n)^2 */
        const float K = p[0];
        float s1 = 0, s2 = 0;
        if (vec) {
            for (int i = threadIdx.x; i < n4; i += 4 * T) {
                float4 u[4];
#pragma unroll
                for (int k = 0; k < 4; k++) u[k] = i + k * T < n4 ? ((const float4 *)p)[i + k * T] : make_float4(K, K, K, K);
#pragma unroll
                for (int k = 0; k < 4; k++) {
                    const float d0 = u[k].x - K, d1 = u[k].y - K, d2 = u[k].z - K, d3 = u[k].w - K;
                    s1 += (d0 + d1) + (d2 + d3);
                    s2 += (d0 * d0 + d1 * d1) + (d2 * d2 + d3 * d3);
                }
            }
        } else {
            for (int64_t i = threadIdx.x; i < len; i += T) { float d = p[i] - K; s1 += d; s2 += d * d; }
        }
        s1 = d_block_sum(s1, sh) / (float)len;
        s2 = d_block_sum(s2, sh) / (float)len;
        const float var = s2 - s1 * s1, m = K + s1;
        const float rs = 1.0f / sqrtf((var > 0 ? var : 0.0f) + eps);
        if (vec) {   /* y = (x - m) (rs w[c]) + b[c] */
            for (int i = threadIdx.x; i < n4; i += 4 * T) {
                float4 u[4];
#pragma unroll
                for (int k = 0; k < 4; k++) u[k] = i + k * T < n4 ? ((const float4 *)p)[i + k * T] : make_float4(0, 0, 0, 0);
#pragma unroll
                for (int k = 0; k < 4; k++) {
                    if (i + k * T < n4) {
                        const int64_t c = c0 + (i + k * T) / S4;
                        const float a = rs * (w ? w[c] : 1.0f), o = b ? b[c] : 0.0f;
                        ((float4 *)q)[i + k * T] = make_float4((u[k].x - m) * a + o, (u[k].y - m) * a + o,
                                                               (u[k].z - m) * a + o, (u[k].w - m) * a + o);
                    }
                }
            }
        } else {
            for (int64_t c = 0; c < Cg; c++) {
                const float a = rs * (w ? w[c0 + c] : 1.0f), o = b ? b[c0 + c] : 0.0f;
                for (int64_t i = threadIdx.x; i < S; i += T) q[c * S + i] = (p[c * S + i] - m) * a + o;
            }
        }
        if (threadIdx.x == 0) { mean[ng] = m; rstd[ng] = rs; }
    }
}

/* per (n, g): dx = rs * (dxh - mean(dxh) - xh * mean(dxh * xh)), dxh = g * w[c]; per (n, c): sums of g * xh
   and g into part [N, 2, C] (reduced over n afterwards). The group's two means come from the channels' sums
   (sum dxh = sum_c w[c] sum g, sum dxh xh = sum_c w[c] sum g xh), so g and x are read twice: once for the
   channels' sums, once for dx. Each pass goes channel by channel, with no per-element division; vec (S % 4 == 0,
   g, x and gx 16-byte aligned): in float4s, two of g and two of x in flight per thread. */
__global__ void k_group_norm_bwd(const float *__restrict__ g, const float *__restrict__ x, const float *__restrict__ w,
                                 const float *__restrict__ mean, const float *__restrict__ rstd, float *__restrict__ gx,
                                 float *__restrict__ part, int64_t N, int64_t C, int64_t S, int64_t G, int vec) {
    __shared__ float sh[33];
    const int64_t Cg = C / G, len = Cg * S, S4 = vec ? S / 4 : 0, T = blockDim.x;
    for (int64_t ng = blockIdx.x; ng < N * G; ng += gridDim.x) {
        const int64_t n = ng / G, c0 = (ng % G) * Cg;
        const float m = mean[ng], rs = rstd[ng];
        float s1 = 0, s2 = 0;   /* every thread adds the same block sums in the same order: the same values */
        for (int64_t c = 0; c < Cg; c++) {
            const float *pg = g + ng * len + c * S, *px = x + ng * len + c * S;
            float a = 0, bb = 0;
            if (vec) {   /* past the channel's end g = 0: nothing added */
                for (int64_t i = threadIdx.x; i < S4; i += 2 * T) {
                    float4 u[2], v[2];
#pragma unroll
                    for (int k = 0; k < 2; k++) {
                        const bool in = i + k * T < S4;
                        u[k] = in ? ((const float4 *)pg)[i + k * T] : make_float4(0, 0, 0, 0);
                        v[k] = in ? ((const float4 *)px)[i + k * T] : make_float4(0, 0, 0, 0);
                    }
#pragma unroll
                    for (int k = 0; k < 2; k++) {
                        a += (u[k].x * ((v[k].x - m) * rs) + u[k].y * ((v[k].y - m) * rs)) +
                             (u[k].z * ((v[k].z - m) * rs) + u[k].w * ((v[k].w - m) * rs));
                        bb += (u[k].x + u[k].y) + (u[k].z + u[k].w);
                    }
                }
            } else {
                for (int64_t i = threadIdx.x; i < S; i += T) { a += pg[i] * ((px[i] - m) * rs); bb += pg[i]; }
            }
            a = d_block_sum(a, sh);
            bb = d_block_sum(bb, sh);
            if (part && threadIdx.x == 0) { part[n * 2 * C + c0 + c] = a; part[n * 2 * C + C + c0 + c] = bb; }
            const float wc = w ? w[c0 + c] : 1.0f;
            s1 += wc * bb; s2 += wc * a;
        }
        s1 /= (float)len; s2 /= (float)len;
        if (gx) {
            for (int64_t c = 0; c < Cg; c++) {
                const float *pg = g + ng * len + c * S, *px = x + ng * len + c * S;
                float *o = gx + ng * len + c * S;
                const float wc = w ? w[c0 + c] : 1.0f;
                if (vec) {
                    for (int64_t i = threadIdx.x; i < S4; i += 2 * T) {
                        float4 u[2], v[2];
#pragma unroll
                        for (int k = 0; k < 2; k++)
                            if (i + k * T < S4) { u[k] = ((const float4 *)pg)[i + k * T]; v[k] = ((const float4 *)px)[i + k * T]; }
#pragma unroll
                        for (int k = 0; k < 2; k++)
                            if (i + k * T < S4)
                                ((float4 *)o)[i + k * T] = make_float4(rs * (u[k].x * wc - s1 - (v[k].x - m) * rs * s2),
                                                                       rs * (u[k].y * wc - s1 - (v[k].y - m) * rs * s2),
                                                                       rs * (u[k].z * wc - s1 - (v[k].z - m) * rs * s2),
                                                                       rs * (u[k].w * wc - s1 - (v[k].w - m) * rs * s2));
                    }
                } else {
                    for (int64_t i = threadIdx.x; i < S; i += T) o[i] = rs * (pg[i] * wc - s1 - (px[i] - m) * rs * s2);
                }
            }
        }
    }
}

static int nn__gn_threads;   /* nn__cuda_group_norm_threads */

extern "C" {

/* for tests and benchmarks: group_norm's kernels on blocks of T threads (a multiple of 32, at most 1024), or 0 for
   the rule's blocks; returns the setting before */
int nn__cuda_group_norm_threads(int T) {
    const int was = nn__gn_threads;
    if (T < 0 || T > 1024 || T % 32) nn_error("nn__cuda_group_norm_threads: %d threads (0, or a multiple of 32 up to 1024)", T);
    nn__gn_threads = T;
    return was;
}

void nn__cuda_group_norm_fwd(const nn_tensor *x, int64_t G, const nn_tensor *w, const nn_tensor *b, double eps,
                             nn_tensor *y, nn_tensor *mean, nn_tensor *rstd) {
    int64_t N = x->shape[0], C = x->shape[1], S = (N * C != 0) ? x->numel / (N * C) : 0;
    nn__cu_init();
    if (!x->numel) return;
    const int64_t len = C / G * S;
    const int vec = S % 4 == 0 && nn__al16(x->data) && nn__al16(y->data) && len < INT32_MAX;
    k_group_norm_fwd<<<nn__row_blocks(N * G), nn__gn_threads ? nn__gn_threads : len >= 16384 ? 1024 : nn__row_threads(len),
                       0, S_>>>((const float *)x->data, w ? (const float *)w->data : NULL, b ? (const float *)b->data : NULL,
                                (float *)y->data, (float *)mean->data, (float *)rstd->data, N, C, S, G, (float)eps, vec);
    NN_LAUNCHED();
}

void nn__cuda_group_norm_bwd(const nn_tensor *g, const nn_tensor *x, int64_t G, const nn_tensor *w, const nn_tensor *mean,
                             const nn_tensor *rstd, nn_tensor *gx, nn_tensor *gw, nn_tensor *gb) {
    int64_t N = x->shape[0], C = x->shape[1], S = (N * C != 0) ? x->numel / (N * C) : 0;
    nn_tensor *part = NULL, *sums = NULL;
    nn__cu_init();
    if (!C) return;
    if (!x->numel) {
        if (gw) nn__fill_f32_dev((float *)gw->data, C, 0.0f);
        if (gb) nn__fill_f32_dev((float *)gb->data, C, 0.0f);
        return;
    }
    if (gw || gb) part = nn__tmp(NN_F32, N * 2 * C);
    const int vec = S % 4 == 0 && nn__al16(g->data) && nn__al16(x->data) && (!gx || nn__al16(gx->data));
    k_group_norm_bwd<<<nn__row_blocks(N * G), nn__gn_threads ? nn__gn_threads : nn__row_threads(S), 0, S_>>>(
        (const float *)g->data, (const float *)x->data, w ? (const float *)w->data : NULL, (const float *)mean->data,
        (const float *)rstd->data, gx ? (float *)gx->data : NULL, part ? (float *)part->data : NULL, N, C, S, G, vec);
    NN_LAUNCHED();
    if (part) {
        sums = nn__tmp(NN_F32, 2 * C);
        nn__reduce3(R_SUM, (const float *)part->data, 1, N, 2 * C, (float *)sums->data, NULL, NULL, 1.0f);
        if (gw) nn__cuda_memcpy(gw->data, sums->data, (size_t)C * 4, 2);
        if (gb) nn__cuda_memcpy(gb->data, (float *)sums->data + C, (size_t)C * 4, 2);
        nn_tensor_free(sums);
        nn_tensor_free(part);
    }
}

} /* extern "C" */

/* ------------------------------------------------------------------------------------------------ dropout */

__device__ __forceinline__ void d_philox(uint64_t seed, uint64_t ctr, uint32_t out[4]) {
    uint32_t c0 = (uint32_t)ctr, c1 = (uint32_t)(ctr >> 32), c2 = 0, c3 = 0;
    uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
#pragma unroll
    for (int r = 0; r < 10; r++) {
        uint32_t hi0 = __umulhi(0xD2511F53u, c0), lo0 = 0xD2511F53u * c0;
        uint32_t hi1 = __umulhi(0xCD9E8D57u, c2), lo1 = 0xCD9E8D57u * c2;
        uint32_t n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
        c1 = lo1; c3 = lo0; c0 = n0; c2 = n2;
        k0 += 0x9E3779B9u; k1 += 0xBB67AE85u;
    }
    out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}

/* one Philox block (4 values) per thread: element i uses stream index off + i */
__global__ void k_dropout(const float *__restrict__ x, float *__restrict__ y, int64_t n, float p, float scale,
                          uint64_t seed, uint64_t off) {
    uint64_t b0 = off >> 2, nb = ((off + (uint64_t)n + 3) >> 2) - b0;
    for (uint64_t t = blockIdx.x * (uint64_t)blockDim.x + threadIdx.x; t < nb; t += (uint64_t)gridDim.x * blockDim.x) {
        uint32_t r[4];
        d_philox(seed, b0 + t, r);
#pragma unroll
        for (int l = 0; l < 4; l++) {
            int64_t i = (int64_t)(((b0 + t) << 2) + l - off);
            if (i >= 0 && i < n) {
                float u = (float)(r[l] >> 8) * (1.0f / 16777216.0f);
                y[i] = u >= p ? x[i] * scale : 0.0f;
            }
        }
    }
}

extern "C" {

void nn__cuda_dropout(const nn_tensor *x, nn_tensor *y, double p, uint64_t seed, uint64_t off) {
    int64_t n = x->numel;
    nn__cu_init();
    if (!n) return;
    k_dropout<<<nn__grid(n / 4 + 1, 256), 256, 0, S_>>>((const float *)x->data, (float *)y->data, n, (float)p,
                                                      (float)(1.0 / (1.0 - p)), seed, off);
    NN_LAUNCHED();
}

} /* extern "C" */

/* ------------------------------------------------------------------------------------------ GEMM (cuBLAS) */

static cudaDataType nn__cu_type(nn_dtype dt) {
    switch (dt) {
    case NN_F32: return CUDA_R_32F;
    case NN_F16: return CUDA_R_16F;
    case NN_BF16: return CUDA_R_16BF;
    default: nn_error("nn cuda gemm: %s operands are not supported", nn_dtype_name(dt));
    }
    return CUDA_R_32F;
}

/* row-major C = alpha op(A) op(B) + beta C, strided batches, through cuBLAS's column-major view:
   C^T = op(B)^T op(A)^T. Pointers already offset. tf32: f32 operands may use TF32 (the caller's switch: matmul's
   nn__cu.tf32, conv2d's !nn__cu.conv_ieee). */
static void nn__gemm_raw(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const void *A, nn_dtype at,
                         int64_t lda, int64_t sa, const void *B, nn_dtype bt, int64_t ldb, int64_t sb, float beta, void *C,
                         nn_dtype ct, int64_t ldc, int64_t sc, int64_t batch, int tf32) {
    if (M <= 0 || N <= 0 || batch <= 0) return;
    if (M > INT32_MAX || N > INT32_MAX || K > INT32_MAX || lda > INT32_MAX || ldb > INT32_MAX || ldc > INT32_MAX || batch > INT32_MAX)
        nn_error("nn cuda gemm: sizes beyond cuBLAS's int range (M %lld N %lld K %lld batch %lld)", (long long)M,
                 (long long)N, (long long)K, (long long)batch);
    cublasComputeType_t ctype = (tf32 && at == NN_F32 && bt == NN_F32) ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    if (K == 0 && beta == 0.0f) {
        if (ct != NN_F32) nn_error("nn cuda gemm: empty inner dim with a non-f32 output");
        for (int64_t i = 0; i < batch; i++)
            NN_CU(cudaMemset2DAsync((float *)C + i * sc, (size_t)ldc * 4, 0, (size_t)N * 4, (size_t)M, S_));
        return;
    }
    NN_CUBLAS(cublasGemmStridedBatchedEx(nn__cu.blas, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N,
                                         (int)N, (int)M, (int)K, &alpha, B, nn__cu_type(bt), (int)ldb, (long long)sb, A,
                                         nn__cu_type(at), (int)lda, (long long)sa, &beta, C, nn__cu_type(ct), (int)ldc,
                                         (long long)sc, (int)batch, ctype, CUBLAS_GEMM_DEFAULT));
}

/* operands of mixed precision: the f32 one is converted to the other's low-precision type (as autocast) */
static const nn_tensor *nn__gemm_operand(const nn_tensor *t, nn_dtype want, nn_tensor **tmp) {
    *tmp = NULL;
    if (t->dtype == want) return t;
    *tmp = nn__new(want, NN_CUDA, t->ndim, t->shape);
    nn__cuda_cast(t, *tmp);
    return *tmp;
}
static nn_dtype nn__gemm_common(const nn_tensor *a, const nn_tensor *b) {
    if (a->dtype == b->dtype) return a->dtype;
    if (a->dtype == NN_F32) return b->dtype;
    if (b->dtype == NN_F32) return a->dtype;
    nn_error("nn cuda gemm: operands %s and %s do not mix", nn_dtype_name(a->dtype), nn_dtype_name(b->dtype));
    return NN_F32;
}

/* every row of y [rows, out] = the bias (y and b f32, f16 or bf16: autocast's linear) */
__global__ void k_bias_rows(void *__restrict__ y, int ydt, const void *__restrict__ b, int bdt, int64_t rows, int64_t out) {
    int64_t n = rows * out;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        d_storef(y, ydt, i, d_loadf(b, bdt, i % out));
}

extern "C" {

/* offsets and strides in elements of each tensor's dtype */
void nn__cuda_gemm(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const nn_tensor *A, int64_t a_off,
                   int64_t lda, int64_t stride_a, const nn_tensor *B, int64_t b_off, int64_t ldb, int64_t stride_b,
                   float beta, nn_tensor *C, int64_t c_off, int64_t ldc, int64_t stride_c, int64_t batch) {
    nn_tensor *ta_ = NULL, *tb_ = NULL;
    nn_dtype dt;
    nn__cu_init();
    dt = nn__gemm_common(A, B);
    const nn_tensor *a = nn__gemm_operand(A, dt, &ta_), *b = nn__gemm_operand(B, dt, &tb_);
    nn__gemm_raw(ta, tb, M, N, K, alpha, (const char *)a->data + a_off * (int64_t)nn_dtype_size(dt), dt, lda, stride_a,
                 (const char *)b->data + b_off * (int64_t)nn_dtype_size(dt), dt, ldb, stride_b, beta,
                 (char *)C->data + c_off * (int64_t)nn_dtype_size(C->dtype), C->dtype, ldc, stride_c, batch, nn__cu.tf32);
    if (ta_) nn_tensor_free(ta_);
    if (tb_) nn_tensor_free(tb_);
}

/* nn.h's nn__bgemm on the device: C[i] = op(A[abat[i]]) op(B[bbat[i]]) (+ beta C[i]), matrices packed
   (A: M*K, B: K*N, C: M*N elements each); one strided-batched call when the batch maps are affine */
void nn__cuda_bgemm(int ta, int tb, int64_t M, int64_t N, int64_t K, const nn_tensor *A, const int64_t *abat,
                    const nn_tensor *B, const int64_t *bbat, float beta, nn_tensor *C, int64_t nb) {
    int64_t lda = ta ? M : K, ldb = tb ? K : N, sa = nb > 1 ? abat[1] - abat[0] : 0, sb = nb > 1 ? bbat[1] - bbat[0] : 0, i;
    int affine = 1;
    nn_tensor *ta_ = NULL, *tb_ = NULL;
    nn_dtype dt;
    size_t es;
    nn__cu_init();
    for (i = 1; i < nb; i++)
        if (abat[i] != abat[0] + i * sa || bbat[i] != bbat[0] + i * sb) { affine = 0; break; }
    dt = nn__gemm_common(A, B);
    es = nn_dtype_size(dt);
    const nn_tensor *a = nn__gemm_operand(A, dt, &ta_), *b = nn__gemm_operand(B, dt, &tb_);
    const char *pa = (const char *)a->data, *pb = (const char *)b->data;
    char *pc = (char *)C->data;
    size_t ces = nn_dtype_size(C->dtype);   /* f32, or the operands' f16/bf16 */
    if (affine)
        nn__gemm_raw(ta, tb, M, N, K, 1.0f, pa + abat[0] * M * K * es, dt, lda, sa * M * K, pb + bbat[0] * K * N * es, dt,
                     ldb, sb * K * N, beta, pc, C->dtype, N, M * N, nb, nn__cu.tf32);
    else
        for (i = 0; i < nb; i++)
            nn__gemm_raw(ta, tb, M, N, K, 1.0f, pa + abat[i] * M * K * es, dt, lda, 0, pb + bbat[i] * K * N * es, dt, ldb, 0,
                         beta, pc + i * M * N * ces, C->dtype, N, 0, 1, nn__cu.tf32);
    if (ta_) nn_tensor_free(ta_);
    if (tb_) nn_tensor_free(tb_);
}

} /* extern "C" */

/* y [rows, out] = x w^T + b with the bias added in cuBLASLt's epilogue, as torch's addmm does: the GEMM writes y
   once (the fallback below first fills y with the bias and lets the GEMM read it back: two more passes). Plans
   (descriptors and the heuristic's first algorithm) are cached per shape and dtypes; 0 = not handled here (mixed
   dtypes, misaligned views, sizes beyond int, or no algorithm), the caller falls back. */
#define NN__LT_WS ((size_t)16 << 20)   /* 16 MiB: what cuBLAS suggests for Hopper's GEMM kernels */
#define NN__LT_PLANS 64
static struct nn__lt_plan {
    int64_t rows, in, out;
    int xdt, ydt, tf32, ok;
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t la, lb, lc;
    cublasLtMatmulAlgo_t algo;
} nn__lt_plans[NN__LT_PLANS];
static int nn__lt_nplans, nn__lt_next;

static struct nn__lt_plan *nn__lt_plan_get(int64_t rows, int64_t in, int64_t out, nn_dtype xdt, nn_dtype ydt) {
    struct nn__lt_plan *p;
    int i, tf32 = nn__cu.tf32 && xdt == NN_F32, nres = 0;
    cublasOperation_t tn = CUBLAS_OP_T, nn_ = CUBLAS_OP_N;
    cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
    cudaDataType_t bt = nn__cu_type(ydt);
    cublasLtMatmulPreference_t pref;
    cublasLtMatmulHeuristicResult_t res;
    size_t ws = NN__LT_WS;
    uint32_t al = 16;
    for (i = 0; i < nn__lt_nplans; i++) {
        p = &nn__lt_plans[i];
        if (p->rows == rows && p->in == in && p->out == out && p->xdt == (int)xdt && p->ydt == (int)ydt && p->tf32 == tf32)
            return p;
    }
    if (nn__lt_nplans < NN__LT_PLANS) p = &nn__lt_plans[nn__lt_nplans++];
    else {   /* full: reuse the slots in turn */
        p = &nn__lt_plans[nn__lt_next];
        nn__lt_next = (nn__lt_next + 1) % NN__LT_PLANS;
        if (p->ok) {
            cublasLtMatmulDescDestroy(p->desc);
            cublasLtMatrixLayoutDestroy(p->la); cublasLtMatrixLayoutDestroy(p->lb); cublasLtMatrixLayoutDestroy(p->lc);
        }
    }
    memset(p, 0, sizeof *p);
    p->rows = rows; p->in = in; p->out = out; p->xdt = (int)xdt; p->ydt = (int)ydt; p->tf32 = tf32;
    /* column-major view: y^T [out, rows] = w [out, in] (stored as [in, out], transposed) x^T [in, rows] */
    NN_CUBLAS(cublasLtMatmulDescCreate(&p->desc, tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F, CUDA_R_32F));
    NN_CUBLAS(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, &tn, sizeof tn));
    NN_CUBLAS(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, &nn_, sizeof nn_));
    NN_CUBLAS(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi));
    NN_CUBLAS(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt, sizeof bt));
    NN_CUBLAS(cublasLtMatrixLayoutCreate(&p->la, nn__cu_type(xdt), (uint64_t)in, (uint64_t)out, (int64_t)in));
    NN_CUBLAS(cublasLtMatrixLayoutCreate(&p->lb, nn__cu_type(xdt), (uint64_t)in, (uint64_t)rows, (int64_t)in));
    NN_CUBLAS(cublasLtMatrixLayoutCreate(&p->lc, nn__cu_type(ydt), (uint64_t)out, (uint64_t)rows, (int64_t)out));
    NN_CUBLAS(cublasLtMatmulPreferenceCreate(&pref));
    NN_CUBLAS(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws));
    /* the pointers are checked for 16-byte alignment at each call (views may start anywhere) */
    NN_CUBLAS(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al, sizeof al));
    NN_CUBLAS(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al, sizeof al));
    NN_CUBLAS(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al, sizeof al));
    NN_CUBLAS(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al, sizeof al));
    if (cublasLtMatmulAlgoGetHeuristic(nn__cu.lt, p->desc, p->la, p->lb, p->lc, p->lc, pref, 1, &res, &nres) ==
            CUBLAS_STATUS_SUCCESS && nres > 0) {
        p->algo = res.algo;
        p->ok = 1;
    }
    cublasLtMatmulPreferenceDestroy(pref);
    if (!p->ok) {   /* remembered as unsupported */
        cublasLtMatmulDescDestroy(p->desc);
        cublasLtMatrixLayoutDestroy(p->la); cublasLtMatrixLayoutDestroy(p->lb); cublasLtMatrixLayoutDestroy(p->lc);
    }
    return p;
}

static int nn__lt_linear(const nn_tensor *x, const nn_tensor *w, const nn_tensor *b, nn_tensor *y, int64_t rows,
                         int64_t in, int64_t out) {
    struct nn__lt_plan *p;
    float one = 1.0f, zero = 0.0f;
    const void *bias = b->data;
    if (x->dtype != w->dtype || b->dtype != y->dtype || (x->dtype != y->dtype && y->dtype != NN_F32)) return 0;
    if (rows > INT32_MAX || in > INT32_MAX || out > INT32_MAX || in == 0) return 0;
    if (((uintptr_t)x->data | (uintptr_t)w->data | (uintptr_t)y->data | (uintptr_t)b->data) & 15) return 0;
    p = nn__lt_plan_get(rows, in, out, x->dtype, y->dtype);
    if (!p->ok) return 0;
    if (!nn__cu.lt_ws) NN_CU(cudaMalloc(&nn__cu.lt_ws, NN__LT_WS));
    NN_CUBLAS(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias));
    NN_CUBLAS(cublasLtMatmul(nn__cu.lt, p->desc, &one, w->data, p->la, x->data, p->lb, &zero, y->data, p->lc, y->data,
                             p->lc, &p->algo, nn__cu.lt_ws, NN__LT_WS, S_));
    return 1;
}

extern "C" {

/* y [rows, out] = x [rows, in] w^T [in, out] + b */
void nn__cuda_linear_fwd(const nn_tensor *x, const nn_tensor *w, const nn_tensor *b, nn_tensor *y) {
    int64_t out = w->shape[0], in = w->shape[1], rows = out ? y->numel / out : 0;
    nn__cu_init();
    if (!y->numel) return;
    if (b && nn__lt_linear(x, w, b, y, rows, in, out)) return;
    if (b) {
        k_bias_rows<<<nn__grid(rows * out, 256), 256, 0, S_>>>(y->data, y->dtype, b->data, b->dtype, rows, out);
        NN_LAUNCHED();
    }
    nn__cuda_gemm(0, 1, rows, out, in, 1.0f, x, 0, in, 0, w, 0, in, 0, b ? 1.0f : 0.0f, y, 0, out, 0, 1);
}

/* gx = g w [rows, in]; gw = g^T x [out, in]; either may be NULL */
void nn__cuda_linear_bwd(const nn_tensor *g, const nn_tensor *x, const nn_tensor *w, nn_tensor *gx, nn_tensor *gw) {
    int64_t out = w->shape[0], in = w->shape[1], rows = out ? g->numel / out : 0;
    nn_tensor *g_ = NULL;
    nn__cu_init();
    /* low-precision operands (autocast): the f32 upstream gradient converted once for both products */
    if (g->dtype == NN_F32 && w->dtype != NN_F32 && ((gx && gx->numel) || (gw && gw->numel))) {
        g_ = nn__new(w->dtype, NN_CUDA, g->ndim, g->shape);
        nn__cuda_cast(g, g_);
        g = g_;
    }
    if (gx && gx->numel) nn__cuda_gemm(0, 0, rows, in, out, 1.0f, g, 0, out, 0, w, 0, in, 0, 0.0f, gx, 0, in, 0, 1);
    if (gw && gw->numel) nn__cuda_gemm(1, 0, out, in, rows, 1.0f, g, 0, out, 0, x, 0, in, 0, 0.0f, gw, 0, in, 0, 1);
    if (g_) nn_tensor_free(g_);
}

} /* extern "C" */

/* ------------------------------------------------------------------------------------ shape: copies */

/* 2-D block copy: height rows of width elements, pitches in elements; the widest word that divides
   everything moves it */
template <typename T> __global__ void k_copy2d(T *__restrict__ dst, int64_t dp, const T *__restrict__ src, int64_t sp,
                                               int64_t width, int64_t height) {
    int64_t n = width * height;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = i / width, c = i - r * width;
        dst[r * dp + c] = src[r * sp + c];
    }
}

extern "C" {

void nn__cuda_copy2d(void *dst, int64_t dpitch, const void *src, int64_t spitch, int64_t width, int64_t height, size_t es) {
    size_t w = (size_t)width * es, dp = (size_t)dpitch * es, sp = (size_t)spitch * es, v = 16;
    nn__cu_init();
    if (!width || !height) return;
    while (v > 1 && ((w | dp | sp | (size_t)(uintptr_t)dst | (size_t)(uintptr_t)src) & (v - 1))) v >>= 1;
    int64_t W = (int64_t)(w / v), D = (int64_t)(dp / v), Sp = (int64_t)(sp / v);
    unsigned g = nn__grid(W * height, 256);
    switch (v) {
    case 16: k_copy2d<uint4><<<g, 256, 0, S_>>>((uint4 *)dst, D, (const uint4 *)src, Sp, W, height); break;
    case 8: k_copy2d<uint2><<<g, 256, 0, S_>>>((uint2 *)dst, D, (const uint2 *)src, Sp, W, height); break;
    case 4: k_copy2d<uint32_t><<<g, 256, 0, S_>>>((uint32_t *)dst, D, (const uint32_t *)src, Sp, W, height); break;
    case 2: k_copy2d<uint16_t><<<g, 256, 0, S_>>>((uint16_t *)dst, D, (const uint16_t *)src, Sp, W, height); break;
    default: k_copy2d<uint8_t><<<g, 256, 0, S_>>>((uint8_t *)dst, D, (const uint8_t *)src, Sp, W, height); break;
    }
    NN_LAUNCHED();
}

void nn__cuda_permute(const nn_tensor *a, const int *perm, nn_tensor *o) {
    int64_t ist[NN_MAX_DIMS], st[NN_MAX_DIMS], s = 1;
    int nd = a->ndim;
    nn__cu_init();
    if (!o->numel) return;
    for (int d = nd - 1; d >= 0; d--) { ist[d] = s; s *= a->shape[d]; }
    for (int d = 0; d < nd; d++) st[d] = ist[perm[d]];
    nn__bc m = nn__bc_make(nd, o->shape, st, NULL);
    nn__gather(a->data, o->data, nn_dtype_size(a->dtype), o->numel, m);
}

void nn__cuda_expand(const nn_tensor *a, nn_tensor *o) {
    int64_t st[NN_MAX_DIMS];
    nn__cu_init();
    if (!o->numel) return;
    nn__bstrides(a, o->ndim, o->shape, st);
    nn__bc m = nn__bc_make(o->ndim, o->shape, st, NULL);
    nn__gather(a->data, o->data, nn_dtype_size(a->dtype), o->numel, m);
}

} /* extern "C" */

/* ------------------------------------------------------------------------------------ AdamW, clipping */
/* Multi-tensor: the tensor lists travel in the kernel's parameters (up to NN__MT tensors per launch, so no
   host->device copy and no synchronisation); block b finds its tensor from the prefix of chunk counts.
   Arithmetic as wip/train.h's nn_adamw_step (torch's single-tensor AdamW, f32, the same FMAs). */

#define NN__MT 48
#define NN__CHUNK ((int64_t)65536)

struct nn__mt {
    int n;                       /* tensors in this launch */
    int start[NN__MT + 1];       /* first chunk of each tensor; start[n] = chunks in this launch */
    float *p[NN__MT], *m[NN__MT], *v[NN__MT];
    const float *g[NN__MT];
    int64_t numel[NN__MT];
    float decay[NN__MT], neg_step[NN__MT], bc2f[NN__MT];
    float w1, b2f, w2, epsf;
    int maximize, base;          /* base: global index of this launch's first tensor */
};

__device__ __forceinline__ int d_mt_tensor(const nn__mt &a, int c) {
    int t = 0;
    while (t + 1 < a.n && a.start[t + 1] <= c) t++;
    return t;
}

__device__ __forceinline__ float d_lerpf(float self, float end, float w) {
    return fabsf(w) < 0.5f ? fmaf(w, end - self, self) : fmaf(w - 1.0f, end - self, end);
}

__device__ __forceinline__ void d_adamw1(const nn__mt &a, int t, float &p, float g, float &m, float &v) {
    float gi = a.maximize ? -g : g, pi = p, vi, denom;
    if (a.decay[t] != 1.0f) pi = pi * a.decay[t];
    float mi = d_lerpf(m, gi, a.w1);
    m = mi;
    vi = v * a.b2f;
    vi = fmaf(a.w2 * gi, gi, vi);
    v = vi;
    denom = __fdiv_rn(sqrtf(vi), a.bc2f[t]) + a.epsf;
    p = pi + __fdiv_rn(a.neg_step[t] * mi, denom);
}

__global__ void k_adamw(const __grid_constant__ nn__mt a) {
    for (int c = blockIdx.x; c < a.start[a.n]; c += gridDim.x) {
        int t = d_mt_tensor(a, c);
        int64_t lo = (int64_t)(c - a.start[t]) * NN__CHUNK, hi = lo + NN__CHUNK < a.numel[t] ? lo + NN__CHUNK : a.numel[t];
        float *P = a.p[t], *M = a.m[t], *V = a.v[t];
        const float *G = a.g[t];
        if (!(((uintptr_t)P | (uintptr_t)M | (uintptr_t)V | (uintptr_t)G) & 15)) {   /* lo is a multiple of 4 */
            int64_t n4 = (hi - lo) / 4;
            float4 *p4 = (float4 *)(P + lo), *m4 = (float4 *)(M + lo), *v4 = (float4 *)(V + lo);
            const float4 *g4 = (const float4 *)(G + lo);
            for (int64_t i = threadIdx.x; i < n4; i += blockDim.x) {
                float4 p = p4[i], g = g4[i], m = m4[i], v = v4[i];
                d_adamw1(a, t, p.x, g.x, m.x, v.x); d_adamw1(a, t, p.y, g.y, m.y, v.y);
                d_adamw1(a, t, p.z, g.z, m.z, v.z); d_adamw1(a, t, p.w, g.w, m.w, v.w);
                p4[i] = p; m4[i] = m; v4[i] = v;
            }
            lo += n4 * 4;
        }
        for (int64_t i = lo + threadIdx.x; i < hi; i += blockDim.x) d_adamw1(a, t, P[i], G[i], M[i], V[i]);
    }
}

/* per tensor: sum of squares in double, one block per tensor chunk, partials reduced in a fixed order */
__global__ void k_sumsq(const __grid_constant__ nn__mt a, double *__restrict__ part /* per chunk of this launch */) {
    __shared__ double sh[32];
    for (int c = blockIdx.x; c < a.start[a.n]; c += gridDim.x) {
        int t = d_mt_tensor(a, c);
        int64_t lo = (int64_t)(c - a.start[t]) * NN__CHUNK, hi = lo + NN__CHUNK < a.numel[t] ? lo + NN__CHUNK : a.numel[t];
        const float *G = a.g[t];
        double acc = 0;
        if (!((uintptr_t)G & 15)) {
            int64_t n4 = (hi - lo) / 4;
            const float4 *g4 = (const float4 *)(G + lo);
            for (int64_t i = threadIdx.x; i < n4; i += blockDim.x) {
                float4 v = g4[i];
                acc += (double)v.x * v.x + (double)v.y * v.y + (double)v.z * v.z + (double)v.w * v.w;
            }
            lo += n4 * 4;
        }
        for (int64_t i = lo + threadIdx.x; i < hi; i += blockDim.x) acc += (double)G[i] * G[i];
        for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
        if ((threadIdx.x & 31) == 0) sh[threadIdx.x >> 5] = acc;
        __syncthreads();
        if (threadIdx.x == 0) {
            double s = 0;
            for (int w = 0; w < (int)(blockDim.x >> 5); w++) s += sh[w];
            part[c] = s;
        }
        __syncthreads();
    }
}
/* per-tensor norms (f32, as torch's per-tensor vector_norm) of this launch into norms[base + t] */
__global__ void k_tensor_norms(const __grid_constant__ nn__mt a, const double *__restrict__ part, float *__restrict__ norms) {
    for (int t = threadIdx.x; t < a.n; t += blockDim.x) {
        double s = 0;
        for (int c = a.start[t]; c < a.start[t + 1]; c++) s += part[c];
        norms[a.base + t] = (float)sqrt(s);
    }
}
/* total and coefficient: res[0] total, res[1] coef */
__global__ void k_clip_coef(const float *__restrict__ norms, int n, float max_norm, float *__restrict__ res) {
    double total = 0;
    for (int t = 0; t < n; t++) total += (double)norms[t] * norms[t];
    float tot = (float)sqrt(total), coef = __fmul_rn(__fdiv_rn(1.0f, tot + 1e-6f), max_norm);
    if (coef > 1.0f) coef = 1.0f;
    res[0] = tot;
    res[1] = coef;
}
__global__ void k_scale_multi(const __grid_constant__ nn__mt a, const float *__restrict__ res) {
    float c = res[1];
    if (c == 1.0f) return;
    for (int b = blockIdx.x; b < a.start[a.n]; b += gridDim.x) {
        int t = d_mt_tensor(a, b);
        int64_t lo = (int64_t)(b - a.start[t]) * NN__CHUNK, hi = lo + NN__CHUNK < a.numel[t] ? lo + NN__CHUNK : a.numel[t];
        float *G = (float *)a.g[t];
        for (int64_t i = lo + threadIdx.x; i < hi; i += blockDim.x) G[i] *= c;
    }
}

/* GradScaler's unscale (torch's _amp_foreach_non_finite_check_and_unscale_): every gradient value times inv
   (left alone when inv is 1), and *found = 1 when any value is inf or NaN */
__device__ __forceinline__ float d_unscale1(float v, float inv, int &bad) {
    if (!isfinite(v)) bad = 1;
    return inv == 1.0f ? v : v * inv;
}
__global__ void k_unscale_multi(const __grid_constant__ nn__mt a, float inv, int *__restrict__ found) {
    int bad = 0;
    for (int c = blockIdx.x; c < a.start[a.n]; c += gridDim.x) {
        int t = d_mt_tensor(a, c);
        int64_t lo = (int64_t)(c - a.start[t]) * NN__CHUNK, hi = lo + NN__CHUNK < a.numel[t] ? lo + NN__CHUNK : a.numel[t];
        float *G = (float *)a.g[t];
        if (!((uintptr_t)G & 15)) {   /* lo is a multiple of 4 */
            int64_t n4 = (hi - lo) / 4;
            float4 *g4 = (float4 *)(G + lo);
            for (int64_t i = threadIdx.x; i < n4; i += blockDim.x) {
                float4 v = g4[i];
                v.x = d_unscale1(v.x, inv, bad); v.y = d_unscale1(v.y, inv, bad);
                v.z = d_unscale1(v.z, inv, bad); v.w = d_unscale1(v.w, inv, bad);
                g4[i] = v;
            }
            lo += n4 * 4;
        }
        for (int64_t i = lo + threadIdx.x; i < hi; i += blockDim.x) G[i] = d_unscale1(G[i], inv, bad);
    }
    if (__syncthreads_or(bad) && threadIdx.x == 0) *found = 1;
}

/* fills a with tensors [k0, k1) of the lists (k1 - k0 <= NN__MT) */
static void nn__mt_fill(nn__mt *a, int k0, int k1, const int64_t *numel) {
    int c = 0;
    a->n = k1 - k0;
    a->base = k0;
    for (int k = k0; k < k1; k++) {
        int64_t ch = (numel[k] + NN__CHUNK - 1) / NN__CHUNK;
        if (ch > (int64_t)1 << 30) nn_error("nn cuda multi-tensor: tensor %d is too large (%lld elements)", k, (long long)numel[k]);
        a->start[k - k0] = c;
        a->numel[k - k0] = numel[k];
        c += (int)ch;
    }
    a->start[k1 - k0] = c;
}
static unsigned nn__mt_blocks(const nn__mt &a) {
    int cap = nn__cu.sms * 16, n = a.start[a.n];
    return (unsigned)(n < 1 ? 1 : n < cap ? n : cap);
}

extern "C" {

/* AdamW over n f32 device tensors: p, g, m (exp_avg), v (exp_avg_sq), numel each; per tensor its step count
   (already incremented) and weight decay; the scalars formed as wip/train.h's nn_adamw_step does */
void nn__cuda_adamw_multi(int n, float *const *p, const float *const *g, float *const *m, float *const *v,
                          const int64_t *numel, const int64_t *steps, const double *wd, double lr, double beta1,
                          double beta2, double eps, int maximize) {
    nn__mt a;
    nn__cu_init();
    for (int k0 = 0; k0 < n; k0 += NN__MT) {
        int k1 = k0 + NN__MT < n ? k0 + NN__MT : n;
        memset(&a, 0, sizeof a);
        nn__mt_fill(&a, k0, k1, numel);
        for (int k = k0; k < k1; k++) {
            double bc1 = 1.0 - pow(beta1, (double)steps[k]), bc2 = 1.0 - pow(beta2, (double)steps[k]);
            a.p[k - k0] = p[k]; a.g[k - k0] = g[k]; a.m[k - k0] = m[k]; a.v[k - k0] = v[k];
            a.decay[k - k0] = wd[k] != 0 ? (float)(1.0 - lr * wd[k]) : 1.0f;
            a.bc2f[k - k0] = (float)pow(bc2, 0.5);
            a.neg_step[k - k0] = (float)(-(lr / bc1));
        }
        a.w1 = (float)(1.0 - beta1); a.b2f = (float)beta2; a.w2 = (float)(1.0 - beta2); a.epsf = (float)eps;
        a.maximize = maximize;
        if (a.start[a.n] == 0) continue;
        k_adamw<<<nn__mt_blocks(a), 256, 0, S_>>>(a);
        NN_LAUNCHED();
    }
}

/* torch.nn.utils.clip_grad_norm_ over n f32 device gradients (NULL entries skipped): norms, coefficient and
   scaling stay on the device; one host read at the end for the returned total (as wip/train.h's
   nn_clip_grad_norm; max_norm < 0: only the norm) */
float nn__cuda_clip_grad_norm(int n, float *const *g, const int64_t *numel, double max_norm) {
    float out[2] = {0, 1};
    int used = 0, maxch = 0, k;
    nn__cu_init();
    float **gs = (float **)malloc(sizeof(float *) * (size_t)(n > 0 ? n : 1));
    int64_t *ns = (int64_t *)malloc(sizeof(int64_t) * (size_t)(n > 0 ? n : 1));
    if (!gs || !ns) nn_error("nn__cuda_clip_grad_norm: out of host memory");
    for (k = 0; k < n; k++) if (g[k]) { gs[used] = g[k]; ns[used] = numel[k]; used++; }
    nn__mt *as = (nn__mt *)calloc((size_t)((used + NN__MT - 1) / NN__MT + 1), sizeof(nn__mt));
    if (!as) nn_error("nn__cuda_clip_grad_norm: out of host memory");
    int nl = 0;
    for (int k0 = 0; k0 < used; k0 += NN__MT, nl++) {
        int k1 = k0 + NN__MT < used ? k0 + NN__MT : used;
        nn__mt_fill(&as[nl], k0, k1, ns);
        for (k = k0; k < k1; k++) as[nl].g[k - k0] = gs[k];
        if (as[nl].start[as[nl].n] > maxch) maxch = as[nl].start[as[nl].n];
    }
    nn_tensor *tmp = nn__tmp(NN_F32, 2 * (int64_t)(maxch > 0 ? maxch : 1) + used + 2);   /* doubles, norms, result */
    double *part = (double *)tmp->data;
    float *norms = (float *)(part + (maxch > 0 ? maxch : 1)), *res = norms + used;
    for (int l = 0; l < nl; l++) {
        if (as[l].start[as[l].n] > 0) {
            k_sumsq<<<nn__mt_blocks(as[l]), 256, 0, S_>>>(as[l], part);
            NN_LAUNCHED();
        }
        k_tensor_norms<<<1, 64, 0, S_>>>(as[l], part, norms);   /* the next launch's sums wait in stream order */
        NN_LAUNCHED();
    }
    k_clip_coef<<<1, 1, 0, S_>>>(norms, used, (float)(max_norm < 0 ? 1e30 : max_norm), res);
    NN_LAUNCHED();
    if (max_norm >= 0)
        for (int l = 0; l < nl; l++)
            if (as[l].start[as[l].n] > 0) { k_scale_multi<<<nn__mt_blocks(as[l]), 256, 0, S_>>>(as[l], res); NN_LAUNCHED(); }
    nn__cuda_memcpy(out, res, sizeof out, 1);
    nn_tensor_free(tmp);
    free(as); free(gs); free(ns);
    return out[0];
}

/* GradScaler's unscale over n f32 device gradients (k_unscale_multi); one host read of the found-inf flag */
int nn__cuda_unscale_multi(int n, float *const *g, const int64_t *numel, float inv) {
    nn__mt a;
    int found = 0;
    nn__cu_init();
    nn_tensor *flag = nn__tmp(NN_I32, 1);
    NN_CU(cudaMemsetAsync(flag->data, 0, sizeof(int), S_));
    for (int k0 = 0; k0 < n; k0 += NN__MT) {
        int k1 = k0 + NN__MT < n ? k0 + NN__MT : n;
        memset(&a, 0, sizeof a);
        nn__mt_fill(&a, k0, k1, numel);
        for (int k = k0; k < k1; k++) a.g[k - k0] = g[k];
        if (a.start[a.n] == 0) continue;
        k_unscale_multi<<<nn__mt_blocks(a), 256, 0, S_>>>(a, inv, (int *)flag->data);
        NN_LAUNCHED();
    }
    nn__cuda_memcpy(&found, flag->data, sizeof found, 1);
    nn_tensor_free(flag);
    return found;
}

} /* extern "C" */

/* ------------------------------------------------------------------------------- conv2d, pools, upsample */
/* conv2d (NCHW, groups, 2-D stride/padding/dilation), two paths:

   - bf16/f16 weights (autocast), groups 1, Cin a multiple of 32: tensor-core implicit GEMM (conv_cu below, no
     column matrix in memory) for the forward and both backward products, each where its channel counts allow;
     f32 weights: the same kernels on TF32 by default (nn_cuda_set_conv_tf32, as cudnn.allow_tf32), else in
     3xTF32 (f32 accuracy) (Cin or Cout a multiple of 16, both multiples of 4 for the weight gradient);
   - everything else (groups, odd channel counts): im2col + cuBLAS, with the images of
     a chunk folded into the GEMM's N dimension (one large GEMM per group instead of a small one per image):
     columns cols [C*kh*kw][nb][Ho*Wo] (workspace capped at 256 MiB per chunk), Y' [O][nb][HoWo] = W [O, K]
     cols, then one pass moves Y' to NCHW and adds the bias. Backward: dY' = dY in [O][nb][HoWo] order;
     dW (+)= dY' cols^T; dcols = W^T dY'; dX = col2im(dcols) as a gather (each input pixel sums its kernel
     taps: deterministic, no atomics); db a reduction. The columns and dY' are in the weight's dtype (cuBLAS
     operands), the GEMM results in f32.
   Low precision follows torch's autocast: x, w, b and y in one dtype (nn.h casts them), f32 accumulation,
   y and the gradients rounded once to their tensors' dtypes. */

struct nn__cg { int64_t N, C, H, W, O, kh, kw, Ho, Wo, sh, sw, ph, pw, dh, dw, G; };

/* element access for the conv kernels: T is float (f32) or uint16_t (f16 / bf16 bits, dt says which), so the
   f32 path compiles to plain loads and stores */
template <typename T> __device__ __forceinline__ float d_ld(const T *p, int64_t i, int dt) {
    if (std::is_same<T, float>::value) return (float)p[i];
    return dt == NN_BF16 ? d_bf16_to_f32((uint16_t)p[i]) : d_half_to_f32((uint16_t)p[i]);
}
template <typename T> __device__ __forceinline__ void d_st(T *p, int64_t i, float v, int dt) {
    if (std::is_same<T, float>::value) p[i] = (T)v;
    else p[i] = (T)(dt == NN_BF16 ? d_f32_to_bf16(v) : d_f32_to_half(v));
}
/* v rounded to dt's precision (NN_F32: unchanged) */
__device__ __forceinline__ float d_round_to(float v, int dt) {
    return dt == NN_BF16 ? d_bf16_to_f32(d_f32_to_bf16(v)) : dt == NN_F16 ? d_half_to_f32(d_f32_to_half(v)) : v;
}

/* cols [C*kh*kw][nb][Ho*Wo] (element D, dtype cdt) from x (S, xdt). A block column (blockIdx.x) per channel and
   tap r = (c, i, j), whose indices it works out once; a thread per output pixel p (one division, by Wo), which then
   copies x[b, c, ih, iw] to cols[r][b][p] for every image b, four loads in flight. Planes under 2^31 pixels
   (nn__conv_im2col_t checks). The columns of [8, 512, 16, 16] 3 x 3 (37.7 MB) take 23.9 us (ncu, H100, 2026-12-07
   19:00), against 64 us with every index divided out per element in a grid-stride loop (14:54) and 76 us with a
   block per column row (16:40: 256 elements a block, too little work to hide the block's start and its one load). */
template <typename S, typename D>
__global__ void k_im2col(const S *__restrict__ x, int xdt, D *__restrict__ cols, int cdt, nn__cg g, int nb) {
    const int64_t r = blockIdx.x, c = r / (g.kh * g.kw), plane = g.H * g.W;
    const int i = (int)(r / g.kw % g.kh), j = (int)(r % g.kw);
    const int Wo = (int)g.Wo, HW = (int)(g.Ho * g.Wo), H = (int)g.H, W = (int)g.W, sh = (int)g.sh, sw = (int)g.sw;
    const int h0 = i * (int)g.dh - (int)g.ph, w0 = j * (int)g.dw - (int)g.pw;   /* the tap's offset into x's plane */
    for (int p = blockIdx.y * blockDim.x + threadIdx.x; p < HW; p += gridDim.y * blockDim.x) {
        const int oh = p / Wo, ow = p - oh * Wo, ih = oh * sh + h0, iw = ow * sw + w0;
        const bool in = (unsigned)ih < (unsigned)H && (unsigned)iw < (unsigned)W;
        const int64_t src = c * plane + (in ? (int64_t)ih * W + iw : 0), step = g.C * plane;   /* x[b, c, ih, iw] = src + b step */
        D *out = cols + r * nb * HW + p;
        for (int b0 = 0; b0 < nb; b0 += 4) {
            float v[4];
#pragma unroll
            for (int k = 0; k < 4; k++) v[k] = in && b0 + k < nb ? d_ld(x, src + (b0 + k) * step, xdt) : 0.0f;
#pragma unroll
            for (int k = 0; k < 4; k++) if (b0 + k < nb) d_st(out, (int64_t)(b0 + k) * HW, v[k], cdt);
        }
    }
}

/* dx[b, c, y, x] = sum over taps (i, j) of dcols[(c*kh+i)*kw+j][b][oh*Wo+ow] where the tap reads (y, x) (dcols f32;
   dx of element D, dtype xdt, the sum rounded through rdt first: an f32 input's gradient in a low-precision conv) */
template <typename D>
__global__ void k_col2im(const float *__restrict__ cols, D *__restrict__ dx, int xdt, int rdt, nn__cg g, int64_t nb) {
    int64_t HW = g.Ho * g.Wo, n = nb * g.C * g.H * g.W;
    for (int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; t < n; t += (int64_t)gridDim.x * blockDim.x) {
        int64_t xx = t % g.W, yy = (t / g.W) % g.H, c = (t / (g.W * g.H)) % g.C, b = t / (g.W * g.H * g.C);
        const float *cb = cols + c * g.kh * g.kw * nb * HW + b * HW;
        float acc = 0;
        for (int64_t i = 0; i < g.kh; i++) {
            int64_t oy = yy + g.ph - i * g.dh;
            if (oy < 0 || oy % g.sh) continue;
            oy /= g.sh;
            if (oy >= g.Ho) continue;
            for (int64_t j = 0; j < g.kw; j++) {
                int64_t ox = xx + g.pw - j * g.dw;
                if (ox < 0 || ox % g.sw) continue;
                ox /= g.sw;
                if (ox >= g.Wo) continue;
                acc += cb[(i * g.kw + j) * nb * HW + oy * g.Wo + ox];
            }
        }
        d_st(dx, t, d_round_to(acc, rdt), xdt);
    }
}

/* [A][B][HW] -> [B][A][HW] (+ bias[a] when given, element D like dst), converting S (sdt) -> D (ddt) */
template <typename S, typename D>
__global__ void k_swap01(const S *__restrict__ src, int sdt, D *__restrict__ dst, int ddt, int64_t A, int64_t B,
                         int64_t HW, const D *__restrict__ bias) {
    int64_t n = A * B * HW;
    for (int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; t < n; t += (int64_t)gridDim.x * blockDim.x) {
        int64_t p = t % HW, a = (t / HW) % A, b = t / (HW * A);
        d_st(dst, t, d_ld(src, (a * B + b) * HW + p, sdt) + (bias ? d_ld(bias, a, ddt) : 0.0f), ddt);
    }
}

/* the bias gradient in two deterministic steps: part[n][o] = sum of plane gy[n, o, :] (a block per plane), then
   db[o] = sum over n of part[n][o] (written in db's dtype) */
template <typename S>
__global__ void k_conv_bias_planes(const S *__restrict__ gy, int gdt, float *__restrict__ part, int64_t HW) {
    __shared__ float red[32];
    const S *pl = gy + (int64_t)blockIdx.x * HW;
    constexpr int V = 16 / sizeof(S);   /* elements in 16 bytes */
    float s = 0;
    if (HW % V == 0 && ((uintptr_t)pl & 15) == 0) {
        for (int64_t p = threadIdx.x * (int64_t)V; p < HW; p += (int64_t)blockDim.x * V) {
            uint4 u = *(const uint4 *)(pl + p);
            const S *e = (const S *)&u;
#pragma unroll
            for (int k = 0; k < V; k++) s += d_ld(e, k, gdt);
        }
    } else {
        for (int64_t p = threadIdx.x; p < HW; p += blockDim.x) s += d_ld(pl, p, gdt);
    }
    for (int k = 16; k; k >>= 1) s += __shfl_xor_sync(0xffffffffu, s, k);
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = s;
    __syncthreads();
    if (threadIdx.x < 32) {
        s = threadIdx.x < blockDim.x / 32 ? red[threadIdx.x] : 0.0f;
        for (int k = 16; k; k >>= 1) s += __shfl_xor_sync(0xffffffffu, s, k);
        if (threadIdx.x == 0) part[blockIdx.x] = s;
    }
}
__global__ void k_conv_bias_sum(const float *__restrict__ part, void *__restrict__ db, int bdt, int64_t N, int64_t O) {
    for (int64_t o = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; o < O; o += (int64_t)gridDim.x * blockDim.x) {
        float s = 0;
        for (int64_t n = 0; n < N; n++) s += part[n * O + o];
        d_storef(db, bdt, o, s);
    }
}

static nn__cg nn__conv_geom_of(const nn_tensor *x, const nn_tensor *w, const nn_tensor *y, const int *st, const int *pd,
                               const int *dl, int groups) {
    nn__cg g;
    g.N = x->shape[0]; g.C = x->shape[1]; g.H = x->shape[2]; g.W = x->shape[3];
    g.O = w->shape[0]; g.kh = w->shape[2]; g.kw = w->shape[3]; g.Ho = y->shape[2]; g.Wo = y->shape[3];
    g.sh = st[0]; g.sw = st[1]; g.ph = pd[0]; g.pw = pd[1]; g.dh = dl[0]; g.dw = dl[1]; g.G = groups;
    return g;
}
/* images per chunk: columns plus the reordered output of at most 256 MiB (4 bytes an element) */
static int64_t nn__conv_chunk(const nn__cg &g) {
    int64_t per = (g.C * g.kh * g.kw + g.O) * g.Ho * g.Wo * 4, nb = ((int64_t)256 << 20) / (per > 0 ? per : 1);
    return nb < 1 ? 1 : nb > g.N ? g.N : nb;
}

/* ------------------------------------------------------------ TF32 tensor-core helpers (conv_cu and sdpa_cu)
   3xTF32 ("f32 on tensor cores"): each f32 operand x = big + small, both TF32; a b ~ big_a big_b + big_a small_b
   + small_a big_b accumulated in f32 (mma3). With round to nearest, |x - big| <= 2^-11 |x| and the rounding of
   small (x - big is exact in f32) is <= 2^-11 |x - big| <= 2^-22 |x|; the dropped small_a small_b is <= 2^-22
   |a b|: each product to ~2^-21 relative, the level of f32's own rounding (2^-24 an operation, growing with the
   length of any f32 sum), where one TF32 product is off by up to ~2^-10. 3x the TF32 work. */
/* x = big + small, both rounded to TF32 (nearest, ties away, as cvt.rna.tf32.f32) by adding half a TF32 unit to
   the magnitude bits and clearing the 13 bits TF32 drops. A NaN is kept apart: the carry would turn a NaN with a
   full mantissa (CUDA's canonical 0x7fffffff) into -0, a zero in the products instead of a NaN. */
__device__ __forceinline__ uint32_t tf32_rna(float x) {
    const uint32_t u = __float_as_uint(x);
    return (u & 0x7fffffffu) > 0x7f800000u ? 0x7fc00000u : (u + 0x1000u) & 0xffffe000u;   /* NaN stays NaN */
}
__device__ __forceinline__ void split_tf32(float x, uint32_t &big, uint32_t &small) {
    big = tf32_rna(x);
    small = tf32_rna(x - __uint_as_float(big));
}
/* the same for operands whose NaNs are all 0x7fc00000 (conv_cu's layout passes store them so): no NaN test in
   the kernels' inner loop, where the two extra instructions an element cost 40 % of the 3xTF32 conv's speed
   (bench/RESULTS_CUDA.md, 19:54 call) */
__device__ __forceinline__ void split_tf32_canon(float x, uint32_t &big, uint32_t &small) {
    big = (__float_as_uint(x) + 0x1000u) & 0xffffe000u;
    small = (__float_as_uint(x - __uint_as_float(big)) + 0x1000u) & 0xffffe000u;
}
__device__ __forceinline__ void mma_tf32(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
    asm("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
/* c += a b in 3xTF32 (the small products first: they are the smaller terms of the sum) */
__device__ __forceinline__ void mma3(float c[4], const uint32_t ab[4], const uint32_t as[4], uint32_t bb0,
                                     uint32_t bb1, uint32_t bs0, uint32_t bs1) {
    mma_tf32(c, as, bb0, bb1);
    mma_tf32(c, ab, bs0, bs1);
    mma_tf32(c, ab, bb0, bb1);
}

/* cp.async, ldmatrix and mma.sync for the conv and attention kernels (PTX ISA, "cp.async", "ldmatrix"). A copy with ok
   false (src-size 0) reads nothing and zero-fills its 16 bytes, so callers keep a valid address for it. */
__device__ __forceinline__ void cp_async16(void *smem, const void *gmem, bool ok) {
    unsigned s = (unsigned)__cvta_generic_to_shared(smem);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(ok ? 16 : 0));
}
/* 16 bytes of which the first nbytes are read, the rest zero-filled */
__device__ __forceinline__ void cp_async16n(void *smem, const void *gmem, int nbytes) {
    unsigned s = (unsigned)__cvta_generic_to_shared(smem);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(nbytes));
}
__device__ __forceinline__ void cp_async4(void *smem, const void *gmem, bool ok) {
    unsigned s = (unsigned)__cvta_generic_to_shared(smem);
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(s), "l"(gmem), "r"(ok ? 4 : 0));
}
__device__ __forceinline__ void cp_commit() { asm volatile("cp.async.commit_group;\n" ::); }
/* wait until at most N committed groups are pending; wait_group counts committed groups only, so a copy issued
   since the last cp_commit is not waited for */
template <int N> __device__ __forceinline__ void cp_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }
/* c += a b on the tensor cores (m16n8k16, f16 or bf16 operands, f32 accumulators; mma.sync's fragment layout) */
template <int DT> __device__ __forceinline__ void mma16816(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
    if (DT == NN_BF16)
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                     "{%0,%1,%2,%3};\n"
                     : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    else
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                     "{%0,%1,%2,%3};\n"
                     : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
/* four 8x8 16-bit matrices (TRANS: transposed) */
template <bool TRANS> __device__ __forceinline__ void ldsm_x4(uint32_t r[4], const void *p) {
    unsigned s = (unsigned)__cvta_generic_to_shared(p);
    if (TRANS)
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                     : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(s));
    else
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                     : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(s));
}

/* conv_wg (below conv_cu) takes conv_cu's launches where its sm_90a wgmma kernels apply */
namespace conv_cu { struct Args; }
namespace conv_wg {
static bool run_out(int dt, int mode, const conv_cu::Args &c, void *out, int out_dt);
static bool wgrad(const nn__cg &g, const nn_tensor *dyn, const nn_tensor *xn, nn_tensor *gw);
}

/* ------------------------------------------------- conv2d: tensor-core implicit GEMM (bf16/f16, TF32, 3xTF32)
   Three GEMMs C[m][n] = sum_k A(m, k) B(n, k), f32 accumulators, on activations in NHWC copies (made by one
   transposing pass each: channels contiguous, so a K slice of 64 bytes (32 16-bit or 16 f32 elements) is
   contiguous in one pixel):
     FPROP  M = O,  N = images*Ho*Wo, K = (i, j, c):  A = w as [O][kh][kw][C], B(n, k) = x_nhwc at the tap's
            input pixel (zero in the padding); y written NCHW (+ bias) from the tile.
     DGRAD  M = C,  N = images*H*W,   K = (i, j, o):  A = w as [C][kh][kw][O], B(n, k) = dy_nhwc at the output
            pixel that tap (i, j) of pixel n came from (zero where none: outside, or off the stride grid).
     WGRAD  M = O,  N = (i, j, c),    K = images*Ho*Wo: A(m, k) = dy_nhwc[k][m], B(n, k) = x_nhwc at the tap's
            input pixel of output pixel k; K split over blockIdx.z into f32 partials, summed (and put back in
            [O][C][kh][kw] order) by a second kernel: deterministic.
   Element types (the kernel's DT): NN_BF16 / NN_F16 (16-bit operands, mma.sync m16n8k16), NN_F32 (f32 operands
   on TF32 tensor cores, m16n8k8: the layout passes round every operand once to TF32, round to nearest as cuDNN
   and cuBLAS do) and F32X3 (f32 operands unrounded, split into TF32 halves as read and multiplied with mma3:
   f32-level error, see the TF32 helpers above).
   Block tile 128 x 128 x (64 bytes of K: BK = 32 or 16 elements), 8 warps of 64 x 32, f32 accumulation,
   operands staged through a 4-deep cp.async pipeline (zero-fill for padding / edges) in the same bytes for
   every type. K-contiguous tiles (FPROP/DGRAD) are read with ldmatrix: for 32-bit data its 8x8 b16 matrices
   are 8 rows x 4 f32, and the x4 load gives exactly the m16n8k8 TF32 A/B fragments. WGRAD's tiles run along
   M/N: ldmatrix.trans for 16-bit, plain 32-bit loads for f32 (.trans moves 16-bit halves). Shared tiles are
   XOR-swizzled in 16-byte units so that ldmatrix's 8 rows, or the 32 lanes of a 32-bit load, hit distinct
   banks. Needs (checked by the host): FPROP C % BK, DGRAD O % BK (a K slice never straddles two taps), WGRAD
   C and O multiples of a 16-byte chunk (8 or 4 elements). */
namespace conv_cu {

constexpr int BM = 128, BN = 128, STAGES = 4, THREADS = 256;
constexpr int ROW_BYTES = 64;                                /* a row's K slice in a K-contiguous tile */
constexpr int TILE_BYTES = BM * ROW_BYTES;                   /* one operand tile of one stage */
constexpr int SMEM = STAGES * 2 * TILE_BYTES;                /* 64 KiB */
enum { FPROP = 0, DGRAD = 1, WGRAD = 2 };
constexpr int F32X3 = NN_DTYPE_COUNT;                        /* DT of the 3xTF32 kernels (not an nn_dtype) */
__host__ __device__ constexpr bool is_f32(int dt) { return dt == NN_F32 || dt == F32X3; }
__host__ __device__ constexpr int bk_of(int dt) { return is_f32(dt) ? 16 : 32; }   /* K elements per tile */

struct Args {
    const void *a, *b;       /* see above; 16-byte aligned, made by the host code below (16-bit or f32) */
    void *out;               /* FPROP y, DGRAD dx (NCHW) */
    float *part;             /* WGRAD, and FPROP/DGRAD split over K: f32 partials [split][M][N] instead */
    const void *bias;        /* FPROP, may be NULL */
    int bias_dt;
    int out_f32;             /* DGRAD: dx is f32 (an f32 input of a low-precision conv, rounded through dt; or
                                the f32 kernels' output) */
    int M, N, K, k_split;    /* GEMM sizes; K per blockIdx.z (a multiple of BK) */
    int plane, ow;           /* pixels per image and row width of the output plane (FPROP/DGRAD) */
    int SH, SW, CS;          /* the gathered operand's image: rows, columns, channels (NHWC) */
    int kw, sh, sw, ph, pw, dh, dw, Ho, Wo;
};

/* f32 -> TF32 bits, round to nearest (ties away), inf and NaN kept */
__device__ __forceinline__ uint32_t tf32_round(float x) {
    uint32_t r;
    asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(r) : "f"(x));
    return r;
}
/* element offsets in a stage's tile, CH elements a 16-byte chunk: K-contiguous [128 rows][4 chunks] (two rows
   share a 128-byte bank line), MN-contiguous 16-bit [32 k rows][16 chunks], MN-contiguous f32 [16 k rows][32
   chunks] (the chunk index XORed with 2 * (k % 4): the 4 k rows x 2 chunks of one 32-bit fragment load cover
   the 8 chunk slots of a bank line once) */
template <int CH> __device__ __forceinline__ int swz_kc(int row, int chunk) {
    return row * 4 * CH + (chunk ^ ((row >> 1) & 3)) * CH;
}
__device__ __forceinline__ int swz_mc(int krow, int chunk) { return krow * BM + ((chunk ^ (krow & 7)) << 3); }
__device__ __forceinline__ int swz_m32(int krow, int m) {
    return krow * BM + (((m >> 2) ^ ((krow & 3) << 1)) << 2) + (m & 3);
}

__device__ __forceinline__ uint16_t round_bits(float v, int dt) { return dt == NN_BF16 ? d_f32_to_bf16(v) : d_f32_to_half(v); }

template <int DT, int MODE> __global__ void __launch_bounds__(THREADS, 2) k_conv_igemm(const Args p) {
    constexpr bool F32 = is_f32(DT);
    using T = typename std::conditional<F32, float, uint16_t>::type;
    constexpr int CH = 16 / sizeof(T), BK = bk_of(DT), TILE = TILE_BYTES / sizeof(T);
    constexpr int MCH = BM / CH, KR = THREADS / MCH;   /* WGRAD: chunks in a k row, k rows a loader pass */
    extern __shared__ __align__(128) unsigned char smem_bytes[];
    T *smem = (T *)smem_bytes;
    const T *pa = (const T *)p.a, *pb = (const T *)p.b;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, wm = warp >> 2, wn = warp & 3;
    const int g = lane >> 2, t4 = lane & 3;   /* the fragments' row group and column pair */
    const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
    const int kbeg = blockIdx.z * p.k_split, kend = min(p.K, kbeg + p.k_split);
    const int ntiles = (kend - kbeg + BK - 1) / BK;

    /* Loader state, advanced tile by tile (tiles are loaded in K order), so the K loop does no integer
       division. FPROP/DGRAD: rows (tid>>2) and +64 of both tiles, 16-byte chunk tid&3 of the BK-wide K slice;
       the B rows' pixels are fixed; the slice's tap (ld_i, ld_j) and channel offset ld_c move on. WGRAD: k rows
       tid/MCH and +KR, chunk tid%MCH of the 128-wide M / N slice; the B column (tap, channel) is fixed; each
       row's pixel (img, oy, ox) moves on by BK. */
    int a_row[2];   /* element offsets of the A rows (fits() bounds the weight's size) */
    bool a_ok[2];
    int b_img[2];   /* pixel indices fit int: fits() bounds N*H*W and N*Ho*Wo */
    int b_y[2], b_x[2];
    bool b_ok[2];
    int ld_k = kbeg, ld_i = 0, ld_j = 0, ld_c = 0;
    int w_i = 0, w_j = 0, w_c = 0;
    bool w_nok = false;
    if (MODE != WGRAD) {
#pragma unroll
        for (int r = 0; r < 2; r++) {
            int row = (tid >> 2) + r * 64, m = m0 + row, n = n0 + row;
            a_ok[r] = m < p.M;
            a_row[r] = (a_ok[r] ? m : 0) * p.K + (tid & 3) * CH;
            b_ok[r] = n < p.N;
            int nn = b_ok[r] ? n : 0, img = nn / p.plane, q = nn - img * p.plane, y = q / p.ow, x = q - y * p.ow;
            b_img[r] = img * p.SH * p.SW;
            if (MODE == FPROP) { b_y[r] = y * p.sh - p.ph; b_x[r] = x * p.sw - p.pw; }
            else { b_y[r] = y + p.ph; b_x[r] = x + p.pw; }
        }
        int tap = kbeg / p.CS;
        ld_c = kbeg - tap * p.CS; ld_i = tap / p.kw; ld_j = tap - ld_i * p.kw;
    } else {
        int n = n0 + (tid % MCH) * CH, tap = n / p.CS;
        w_nok = n < p.N;
        w_c = n - tap * p.CS; w_i = tap / p.kw; w_j = tap - w_i * p.kw;
        const int plane = p.Ho * p.Wo;
#pragma unroll
        for (int r = 0; r < 2; r++) {   /* b_img: image, b_y / b_x: output pixel of row r's first k */
            int k = kbeg + tid / MCH + r * KR, img = k / plane, q = k - img * plane;
            b_img[r] = img; b_y[r] = q / p.Wo; b_x[r] = q - b_y[r] * p.Wo;
        }
    }

    auto load_tile = [&](int stage) {   /* the next K tile (starting at ld_k) into `stage` */
        T *sA = smem + stage * 2 * TILE, *sB = sA + TILE;
        if (MODE != WGRAD) {
            const int cc = ld_c + (tid & 3) * CH;
#pragma unroll
            for (int r = 0; r < 2; r++) {
                const int row = (tid >> 2) + r * 64;
                cp_async16(sA + swz_kc<CH>(row, tid & 3), pa + a_row[r] + ld_k, a_ok[r]);
                int sy, sx;
                bool ok = b_ok[r];
                if (MODE == FPROP) {
                    sy = b_y[r] + ld_i * p.dh; sx = b_x[r] + ld_j * p.dw;
                } else {
                    sy = b_y[r] - ld_i * p.dh; sx = b_x[r] - ld_j * p.dw;
                    if (p.sh != 1 || p.sw != 1) {   /* the output pixel this tap came from, if any */
                        ok = ok && sy >= 0 && sx >= 0 && sy % p.sh == 0 && sx % p.sw == 0;
                        sy /= p.sh; sx /= p.sw;
                    }
                }
                ok = ok && sy >= 0 && sy < p.SH && sx >= 0 && sx < p.SW;
                const T *src = ok ? pb + (int64_t)(b_img[r] + sy * p.SW + sx) * p.CS + cc : pb;
                cp_async16(sB + swz_kc<CH>(row, tid & 3), src, ok);
            }
            ld_k += BK;
            ld_c += BK;
            if (ld_c >= p.CS) { ld_c = 0; if (++ld_j == p.kw) { ld_j = 0; ++ld_i; } }
        } else {
#pragma unroll
            for (int r = 0; r < 2; r++) {
                const int krow = tid / MCH + r * KR, k = ld_k + krow, ch = tid % MCH;
                const int so = F32 ? swz_m32(krow, ch * CH) : swz_mc(krow, ch);
                const bool kok = k < kend;
                const int mm = m0 + ch * CH;
                const bool aok = kok && mm < p.M;
                cp_async16(sA + so, aok ? pa + (int64_t)k * p.M + mm : pa, aok);
                int sy = b_y[r] * p.sh - p.ph + w_i * p.dh, sx = b_x[r] * p.sw - p.pw + w_j * p.dw;
                bool ok = kok && w_nok && sy >= 0 && sy < p.SH && sx >= 0 && sx < p.SW;
                const T *src = ok ? pb + (int64_t)((b_img[r] * p.SH + sy) * p.SW + sx) * p.CS + w_c : pb;
                cp_async16(sB + so, src, ok);
                b_x[r] += BK;   /* the pixel BK further on */
                while (b_x[r] >= p.Wo) {
                    b_x[r] -= p.Wo;
                    if (++b_y[r] == p.Ho) { b_y[r] = 0; ++b_img[r]; }
                }
            }
            ld_k += BK;
        }
    };

    /* f32 WGRAD fragments: element (k, x) of a tile is at swz_m32(k, x); a thread reads k = t4 (+4, + 8 ks) and
       x = 8q + g (q = 0..3) of a 32-wide range: b column block ni = q of the warp's 32 columns; a row block mi's
       rows g (q = 2 (mi % 2)) and g + 8 (q + 1) of the warp's 32 * (mi / 2) + [0, 32). The swizzle only moves
       16-byte chunks within an aligned group of 8 (32 elements) and depends on k % 4 = t4 only, so 4 offsets
       per thread place every fragment element. */
    int xo[4];
#pragma unroll
    for (int q = 0; q < 4; q++) xo[q] = swz_m32(t4, 8 * q + g);

    float acc[4][4][4];
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < 4; j++)
#pragma unroll
            for (int k = 0; k < 4; k++) acc[i][j][k] = 0.0f;

#pragma unroll
    for (int s = 0; s < STAGES - 1; s++) {
        if (s < ntiles) load_tile(s);
        cp_commit();
    }
    for (int kt = 0; kt < ntiles; kt++) {
        cp_wait<STAGES - 2>();
        __syncthreads();   /* tile kt has landed for every thread; the stage read at kt-1 is free again */
        if (kt + STAGES - 1 < ntiles) load_tile((kt + STAGES - 1) % STAGES);
        cp_commit();
        const T *sA = smem + (kt % STAGES) * 2 * TILE, *sB = sA + TILE;
#pragma unroll
        for (int ks = 0; ks < 2; ks++) {   /* two mma K steps a tile: 16 (16-bit) or 8 (f32) elements each */
            uint32_t af[4][4], bf[4][2];
            if (MODE != WGRAD) {   /* ldmatrix x4: 16 x 16 16-bit, or 16 x 8 f32, in both cases chunks ks*2, +1 */
#pragma unroll
                for (int mi = 0; mi < 4; mi++)
                    ldsm_x4<false>(af[mi], sA + swz_kc<CH>(wm * 64 + mi * 16 + (lane & 15), ks * 2 + (lane >> 4)));
#pragma unroll
                for (int nj = 0; nj < 2; nj++) {
                    uint32_t r[4];
                    ldsm_x4<false>(r, sB + swz_kc<CH>(wn * 32 + nj * 16 + (lane & 7) + ((lane >> 4) << 3),
                                                      ks * 2 + ((lane >> 3) & 1)));
                    bf[2 * nj][0] = r[0]; bf[2 * nj][1] = r[1]; bf[2 * nj + 1][0] = r[2]; bf[2 * nj + 1][1] = r[3];
                }
            } else if (!F32) {
#pragma unroll
                for (int mi = 0; mi < 4; mi++)
                    ldsm_x4<true>(af[mi], sA + swz_mc(ks * 16 + (lane & 7) + ((lane >> 4) << 3),
                                                      (wm * 64 + mi * 16) / 8 + ((lane >> 3) & 1)));
#pragma unroll
                for (int nj = 0; nj < 2; nj++) {
                    uint32_t r[4];
                    ldsm_x4<true>(r, sB + swz_mc(ks * 16 + (lane & 7) + (((lane >> 3) & 1) << 3),
                                                 (wn * 32 + nj * 16) / 8 + (lane >> 4)));
                    bf[2 * nj][0] = r[0]; bf[2 * nj][1] = r[1]; bf[2 * nj + 1][0] = r[2]; bf[2 * nj + 1][1] = r[3];
                }
            } else {   /* f32 tiles along M/N: the m16n8k8 fragments element by element (b here: k t4, t4+4 x
                          column g; a below, a row block at a time), at the offsets xo (see above) */
                const uint32_t *b32 = (const uint32_t *)sB + ks * 8 * BM + wn * 32;
#pragma unroll
                for (int ni = 0; ni < 4; ni++) { bf[ni][0] = b32[xo[ni]]; bf[ni][1] = b32[xo[ni] + 4 * BM]; }
            }
            uint32_t bs[4][2];   /* 3xTF32: b's small halves (bf keeps the big ones) */
            if (DT == F32X3) {
#pragma unroll
                for (int ni = 0; ni < 4; ni++)
#pragma unroll
                    for (int e = 0; e < 2; e++) split_tf32_canon(__uint_as_float(bf[ni][e]), bf[ni][e], bs[ni][e]);
            }
#pragma unroll
            for (int mi = 0; mi < 4; mi++) {
                uint32_t a[4];
                if (F32 && MODE == WGRAD) {   /* rows g, g+8 x columns t4, t4+4 of row block mi */
                    const uint32_t *a32 = (const uint32_t *)sA + ks * 8 * BM + wm * 64 + (mi >> 1) * 32;
                    a[0] = a32[xo[2 * (mi & 1)]]; a[1] = a32[xo[2 * (mi & 1) + 1]];
                    a[2] = a32[xo[2 * (mi & 1)] + 4 * BM]; a[3] = a32[xo[2 * (mi & 1) + 1] + 4 * BM];
                } else {
#pragma unroll
                    for (int e = 0; e < 4; e++) a[e] = af[mi][e];
                }
                if (DT == F32X3) {
                    uint32_t as[4];
#pragma unroll
                    for (int e = 0; e < 4; e++) split_tf32_canon(__uint_as_float(a[e]), a[e], as[e]);
#pragma unroll
                    for (int ni = 0; ni < 4; ni++) mma3(acc[mi][ni], a, as, bf[ni][0], bf[ni][1], bs[ni][0], bs[ni][1]);
                } else {
#pragma unroll
                    for (int ni = 0; ni < 4; ni++) {
                        if (F32) mma_tf32(acc[mi][ni], a, bf[ni][0], bf[ni][1]);
                        else mma16816<DT>(acc[mi][ni], a, bf[ni][0], bf[ni][1]);
                    }
                }
            }
        }
    }
    cp_wait<0>();
    __syncthreads();

    if (MODE == WGRAD || p.part) {   /* f32 partials [split][M][N], float2 per fragment row where N is even */
        float *out = p.part + (int64_t)blockIdx.z * p.M * p.N;
        const bool pairs = (p.N & 1) == 0;   /* WGRAD always; FPROP/DGRAD's N (pixels) may be odd */
#pragma unroll
        for (int mi = 0; mi < 4; mi++)
#pragma unroll
            for (int ni = 0; ni < 4; ni++) {
                int n = n0 + wn * 32 + ni * 8 + 2 * t4;
#pragma unroll
                for (int h = 0; h < 2; h++) {
                    int m = m0 + wm * 64 + mi * 16 + g + h * 8;
                    if (m >= p.M || n >= p.N) continue;
                    float *o = out + (int64_t)m * p.N + n;
                    if (pairs) *(float2 *)o = make_float2(acc[mi][ni][2 * h], acc[mi][ni][2 * h + 1]);
                    else {
                        o[0] = acc[mi][ni][2 * h];
                        if (n + 1 < p.N) o[1] = acc[mi][ni][2 * h + 1];
                    }
                }
            }
        return;
    }
    /* FPROP / DGRAD: the tile goes through shared memory (half the rows at a time, f32) so that each thread
       writes 4 consecutive pixels of one channel plane */
    float *st = (float *)smem;
    constexpr int LD = BN + 4;
    const int cg = tid & 31;
    int img4[4], q4[4];
#pragma unroll
    for (int e = 0; e < 4; e++) {
        int n = n0 + cg * 4 + e;
        img4[e] = n < p.N ? n / p.plane : -1;
        q4[e] = n < p.N ? n - img4[e] * p.plane : 0;
    }
    const bool vec = img4[3] >= 0 && img4[0] == img4[3] && (q4[0] & 3) == 0 && (p.plane & 3) == 0;
    for (int half = 0; half < 2; half++) {
        if (wm == half) {
#pragma unroll
            for (int mi = 0; mi < 4; mi++)
#pragma unroll
                for (int ni = 0; ni < 4; ni++)
#pragma unroll
                    for (int h = 0; h < 2; h++)
                        *(float2 *)(st + (mi * 16 + g + h * 8) * LD + wn * 32 + ni * 8 + 2 * t4) =
                            make_float2(acc[mi][ni][2 * h], acc[mi][ni][2 * h + 1]);
        }
        __syncthreads();
#pragma unroll
        for (int it = 0; it < 8; it++) {
            const int rr = (tid >> 5) + it * 8, m = m0 + half * 64 + rr;
            if (m >= p.M) continue;
            float4 v = *(const float4 *)(st + rr * LD + cg * 4);
            float bv = p.bias ? d_loadf(p.bias, p.bias_dt, m) : 0.0f;
            float vals[4] = {v.x + bv, v.y + bv, v.z + bv, v.w + bv};
            if (F32 || p.out_f32) {   /* 16-bit DT: torch's value, the dt gradient converted to f32 */
                if (!F32) {
#pragma unroll
                    for (int e = 0; e < 4; e++) vals[e] = d_round_to(vals[e], DT);
                }
                if (vec) *(float4 *)((float *)p.out + ((int64_t)img4[0] * p.M + m) * p.plane + q4[0]) =
                             make_float4(vals[0], vals[1], vals[2], vals[3]);
                else
#pragma unroll
                    for (int e = 0; e < 4; e++)
                        if (img4[e] >= 0) ((float *)p.out)[((int64_t)img4[e] * p.M + m) * p.plane + q4[e]] = vals[e];
            } else if (vec) {
                uint16_t *o = (uint16_t *)p.out + ((int64_t)img4[0] * p.M + m) * p.plane + q4[0];
                uint2 u;
                u.x = (uint32_t)round_bits(vals[0], DT) | ((uint32_t)round_bits(vals[1], DT) << 16);
                u.y = (uint32_t)round_bits(vals[2], DT) | ((uint32_t)round_bits(vals[3], DT) << 16);
                *(uint2 *)o = u;
            } else {
#pragma unroll
                for (int e = 0; e < 4; e++)
                    if (img4[e] >= 0)
                        ((uint16_t *)p.out)[((int64_t)img4[e] * p.M + m) * p.plane + q4[e]] = round_bits(vals[e], DT);
            }
        }
        __syncthreads();
    }
}

/* x [N][C][HW] -> y [N][HW][C] in dt (16-bit). S = float: rounded from f32; S = uint16_t: x already in dt, bits
   copied. 64 channels x 32 pixels a block through shared memory: reads run along pixels, writes along channels
   two at a time (C even: the callers' channel counts are multiples of 8). Grid (HW/32, C/64, N), block (32, 8). */
template <typename S>
__global__ void k_to_nhwc(const S *__restrict__ x, uint16_t *__restrict__ y, int dt, int C, int HW) {
    __shared__ uint32_t tile[64][33];
    const int n = blockIdx.z, p0 = blockIdx.x * 32, c0 = blockIdx.y * 64, tx = threadIdx.x;
    for (int r = threadIdx.y; r < 64; r += 8) {
        int c = c0 + r, q = p0 + tx;
        if (c < C && q < HW) {
            S v = x[((int64_t)n * C + c) * HW + q];
            tile[r][tx] = std::is_same<S, float>::value ? (uint32_t)round_bits((float)v, dt) : (uint32_t)v;
        }
    }
    __syncthreads();
    for (int r = threadIdx.y; r < 32; r += 8) {
        int q = p0 + r, c = c0 + 2 * tx;
        if (q < HW && c < C) *(uint32_t *)(y + ((int64_t)n * HW + q) * C + c) = tile[2 * tx][r] | (tile[2 * tx + 1][r] << 16);
    }
}

/* a layout pass's copy of an operand: f32 rounded to TF32 when the kernels run TF32 (tf32 != 0); else (3xTF32)
   unchanged but for NaN, stored as 0x7fc00000: split_tf32_canon's integer rounding would carry CUDA's canonical NaN
   (0x7fffffff) into the sign bit (-0, and the NaN lost), while 0x7fc00000 stays a NaN */
__device__ __forceinline__ float layout_val(float v, int tf32) {
    return tf32 ? __uint_as_float(tf32_round(v)) : v == v ? v : __uint_as_float(0x7fc00000u);
}
__device__ __forceinline__ uint16_t layout_val(uint16_t v, int) { return v; }

/* x [N][C][HW] -> y [N][HW][C], f32 (rounded to TF32 when tf32): 32 channels x 32 pixels a block through shared
   memory, reads along pixels, writes along channels. Grid (HW/32, C/32, N), block (32, 8). */
__global__ void k_to_nhwc32(const float *__restrict__ x, float *__restrict__ y, int C, int HW, int tf32) {
    __shared__ float tile[32][33];
    const int n = blockIdx.z, p0 = blockIdx.x * 32, c0 = blockIdx.y * 32, tx = threadIdx.x;
    for (int r = threadIdx.y; r < 32; r += 8) {
        int c = c0 + r, q = p0 + tx;
        if (c < C && q < HW) tile[r][tx] = layout_val(x[((int64_t)n * C + c) * HW + q], tf32);
    }
    __syncthreads();
    for (int r = threadIdx.y; r < 32; r += 8) {
        int q = p0 + r, c = c0 + tx;
        if (q < HW && c < C) y[((int64_t)n * HW + q) * C + c] = tile[tx][r];
    }
}

/* dst[b][s][r] = src[b][r][s] (16-bit or f32, see layout_val), 64 x 64 tiles through shared memory; grid
   (S/64, R/64, B), block (32, 8). A thread issues its 16 loads before the barrier: with 32 x 32 tiles (4 loads a
   thread) the DGRAD weight layout of a 512 x 512 x 3 x 3 f32 weight took 6.81 us, with these 5.11 us, against 4.95
   for a device-to-device copy of its bytes (bench/session_1207e/layout_probe.cu, H100). DGRAD's weight layout
   [C][kk][O] is w as one [O][C*kk] matrix transposed (B = 1). */
template <typename T>
__global__ void k_transpose(const T *__restrict__ src, T *__restrict__ dst, int R, int S, int tf32) {
    __shared__ T tile[64][sizeof(T) == 2 ? 66 : 65];   /* rows one 32-bit word apart in banks */
    const int s0 = blockIdx.x * 64, r0 = blockIdx.y * 64, tx = threadIdx.x, ty = threadIdx.y;
    const T *sb = src + (int64_t)blockIdx.z * R * S;
    T *db = dst + (int64_t)blockIdx.z * R * S;
    T v[16];
#pragma unroll
    for (int k = 0; k < 16; k++) {   /* element (row ty + 8 (k / 2), column tx + 32 (k % 2)) of the tile */
        int r = r0 + ty + 8 * (k >> 1), s = s0 + tx + 32 * (k & 1);
        if (r < R && s < S) v[k] = sb[(int64_t)r * S + s];
    }
#pragma unroll
    for (int k = 0; k < 16; k++) {
        int r = r0 + ty + 8 * (k >> 1), s = s0 + tx + 32 * (k & 1);
        if (r < R && s < S) tile[ty + 8 * (k >> 1)][tx + 32 * (k & 1)] = layout_val(v[k], tf32);
    }
    __syncthreads();
#pragma unroll
    for (int k = 0; k < 16; k++) {
        int y = ty + 8 * (k >> 1), x = tx + 32 * (k & 1), s = s0 + y, r = r0 + x;
        if (s < S && r < R) db[(int64_t)s * R + r] = tile[x][y];
    }
}

/* dw[o][c][tap] (dtype dt) = sum over splits of part[s][o][tap][c] (dtype pdt: f32 partials, or conv_wg's finished
   16-bit tiles with splits 1). A block per (o, slice of WS_SLICE channels): the split sums go to shared memory as
   [c][tap] (reads coalesced along c), then out to dw's contiguous range for the slice. Dynamic shared memory
   WS_SLICE * kk floats. */
constexpr int WS_SLICE = 128;
__global__ void k_conv_wgrad_sum(const void *__restrict__ part, int pdt, int splits, void *__restrict__ dw, int dt, int O,
                                 int C, int kk) {
    extern __shared__ float sumt[];
    const int o = blockIdx.y, c0 = blockIdx.x * WS_SLICE, nc = min(WS_SLICE, C - c0);
    const int64_t MN = (int64_t)O * C * kk;
    for (int t = threadIdx.x; t < nc * kk; t += blockDim.x) {
        int tap = t / nc, cl = t - tap * nc;
        const int64_t pp = ((int64_t)o * kk + tap) * C + c0 + cl;
        float s = 0;
        for (int k = 0; k < splits; k++) s += d_loadf(part, pdt, pp + k * MN);
        sumt[cl * kk + tap] = s;
    }
    __syncthreads();
    const int64_t base = ((int64_t)o * C + c0) * kk;
    for (int t = threadIdx.x; t < nc * kk; t += blockDim.x) d_storef(dw, dt, base + t, sumt[t]);
}

/* FPROP's weight layout [O][kk][C] from w [O][C][kk] (16-bit or f32, see layout_val): a block per (o, slice of sl
   channels) reads its contiguous source range into shared memory and writes kk rows of the slice, in 16-byte chunks
   where vec says they line up (bit 0: the reads, bit 1: the writes). Dynamic shared memory sl * kk elements (at most
   32 KiB, fprop_slice). With 128-channel slices and 4-byte accesses, 512 x 512 x 3 x 3 in f32 took 8.53 us; with
   whole rows and 16-byte chunks 5.81 us, against 4.95 for a copy of its bytes (bench/session_1207e/layout_probe.cu). */
constexpr int FPROP_SLICE_BYTES = 32 << 10;
template <typename T>
__global__ void k_conv_weight_fprop(const T *__restrict__ w, T *__restrict__ d, int C, int kk, int sl, int vec, int tf32) {
    extern __shared__ __align__(16) unsigned char wsl_bytes[];
    T *wsl = (T *)wsl_bytes;
    constexpr int E = 16 / (int)sizeof(T);   /* elements in a 16-byte chunk */
    const int o = blockIdx.y, c0 = blockIdx.x * sl, nc = min(sl, C - c0), n = nc * kk;
    const T *src = w + ((int64_t)o * C + c0) * kk;
    T *dst = d + (int64_t)o * kk * C + c0;
    if (vec & 1) for (int t = threadIdx.x; t < n / E; t += blockDim.x) ((uint4 *)wsl)[t] = ((const uint4 *)src)[t];
    else for (int t = threadIdx.x; t < n; t += blockDim.x) wsl[t] = src[t];
    __syncthreads();
    if (vec & 2) {
        const int nch = nc / E;   /* chunks in a tap's row of the slice */
        for (int t = threadIdx.x; t < n / E; t += blockDim.x) {
            const int tap = t / nch, cl = (t - tap * nch) * E;
            union { uint4 v; T e[E]; } u;
#pragma unroll
            for (int e = 0; e < E; e++) u.e[e] = layout_val(wsl[(cl + e) * kk + tap], tf32);
            *(uint4 *)(dst + (int64_t)tap * C + cl) = u.v;
        }
    } else {
        for (int t = threadIdx.x; t < n; t += blockDim.x) {
            const int tap = t / nc, cl = t - tap * nc;
            dst[(int64_t)tap * C + cl] = layout_val(wsl[cl * kk + tap], tf32);
        }
    }
}

/* FPROP / DGRAD split over K: out[img][m][q] = sum over splits of part[s][m][img*plane + q] (+ bias[m]), in dt
   (or f32 holding dt's value when out_f32) */
__global__ void k_conv_splitk_out(const float *__restrict__ part, int splits, int M, int N, int plane,
                                  const void *__restrict__ bias, int bias_dt, void *__restrict__ out, int dt, int out_f32) {
    int64_t n_out = (int64_t)N * M, MN = n_out;
    for (int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; t < n_out; t += (int64_t)gridDim.x * blockDim.x) {
        int64_t q = t % plane, m = (t / plane) % M, img = t / ((int64_t)plane * M), n = img * plane + q;
        float s = 0;
        for (int k = 0; k < splits; k++) s += part[k * MN + m * N + n];
        if (bias) s += d_loadf(bias, bias_dt, m);
        if (out_f32) ((float *)out)[t] = d_round_to(s, dt);
        else d_storef(out, dt, t, s);
    }
}

template <int DT, int MODE> static void launch(const Args &a, dim3 grid) {
    static bool attr;
    if (!attr) {
        NN_CU(cudaFuncSetAttribute(k_conv_igemm<DT, MODE>, cudaFuncAttributeMaxDynamicSharedMemorySize, SMEM));
        attr = true;
    }
    k_conv_igemm<DT, MODE><<<grid, THREADS, SMEM, S_>>>(a);
    NN_LAUNCHED();
}
template <int DT> static void run_dt(int mode, const Args &a, dim3 grid) {
    if (mode == FPROP) launch<DT, FPROP>(a, grid);
    else if (mode == DGRAD) launch<DT, DGRAD>(a, grid);
    else launch<DT, WGRAD>(a, grid);
}
static void run(int kdt, int mode, const Args &a, dim3 grid) {
    switch (kdt) {
    case NN_BF16: run_dt<NN_BF16>(mode, a, grid); break;
    case NN_F16: run_dt<NN_F16>(mode, a, grid); break;
    case NN_F32: run_dt<NN_F32>(mode, a, grid); break;
    default: run_dt<F32X3>(mode, a, grid); break;
    }
}

/* the kernels' DT for weights of dtype wdt: 16-bit as is; f32 on TF32 unless nn_cuda_set_conv_tf32(0) (PyTorch's
   default: cudnn.allow_tf32), else in 3xTF32 (f32 accuracy; faster than cuDNN's f32 on an H100,
   bench/RESULTS_CUDA.md) */
static int kernel_dt(nn_dtype wdt) { return wdt != NN_F32 ? (int)wdt : nn__cu.conv_ieee ? F32X3 : NN_F32; }

/* x (NCHW, f32 or 16-bit) -> a new NHWC tensor [N, H, W, C] in the kernels' element type: kdt 16-bit (x f32 or
   already kdt), or f32 (x f32; rounded to TF32 for kdt NN_F32) */
static nn_tensor *to_nhwc(const nn_tensor *x, int kdt) {
    int64_t N = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3], HW = H * W, s[4] = {N, H, W, C};
    nn_dtype dt = is_f32(kdt) ? NN_F32 : (nn_dtype)kdt;
    nn_tensor *y = nn__new(dt, NN_CUDA, 4, s);
    if (x->dtype != NN_F32 && x->dtype != dt)
        nn_error("nn conv2d: an input of dtype %s with %s weights", nn_dtype_name(x->dtype), nn_dtype_name(dt));
    if (dt == NN_F32) {
        dim3 grid((unsigned)((HW + 31) / 32), (unsigned)((C + 31) / 32), (unsigned)N);
        k_to_nhwc32<<<grid, dim3(32, 8), 0, S_>>>((const float *)x->data, (float *)y->data, (int)C, (int)HW,
                                                  kdt == NN_F32);
    } else {
        dim3 grid((unsigned)((HW + 31) / 32), (unsigned)((C + 63) / 64), (unsigned)N);
        uint16_t *yd = (uint16_t *)y->data;
        if (x->dtype == NN_F32) k_to_nhwc<float><<<grid, dim3(32, 8), 0, S_>>>((const float *)x->data, yd, dt, (int)C, (int)HW);
        else k_to_nhwc<uint16_t><<<grid, dim3(32, 8), 0, S_>>>((const uint16_t *)x->data, yd, dt, (int)C, (int)HW);
    }
    NN_LAUNCHED();
    return y;
}

/* every size the kernels index with int fits */
static bool fits(const nn__cg &g) {
    int64_t lim = INT32_MAX / 2;
    return g.G == 1 && g.N * g.C * g.H * g.W < lim && g.N * g.O * g.Ho * g.Wo < lim && g.O * g.C * g.kh * g.kw < lim &&
           g.N <= 65535 && g.O <= 65535 && g.N > 0 && g.Ho * g.Wo > 0 && g.kh * g.kw <= 64;   /* kk: shared slices */
}

/* K splits for `tiles` output tiles of ktiles K tiles each, on a kernel of per_sm blocks an SM doing tile_flops a K
   tile at `rate` FLOP/s a block: the time of the waves times the work of one block, plus the f32 partials'
   traffic (written and read, 2.5 TB/s) when there are partials; the fewest splits (at most max_splits) within
   0.1% of the best (its modelled time in *best_t when not NULL). conv_wg's launches use it too. */
static int64_t split_k(int64_t tiles, int64_t ktiles, int64_t M, int64_t N, bool always_partials, int per_sm,
                       double tile_flops, double rate, int max_splits, double *best_t = nullptr) {
    const double bw = 2.5e12;
    int64_t slots = per_sm * (int64_t)nn__cu.sms, best = 1, maxs = ktiles / 8 < 1 ? 1 : ktiles / 8;
    double bt = 1e30;
    for (int64_t s = 1; s <= maxs && s <= max_splits; s++) {
        int64_t waves = (tiles * s + slots - 1) / slots, kt = (ktiles + s - 1) / s;
        double t = waves * tile_flops * kt / rate;
        if (s > 1 || always_partials) t += s * M * N * 8.0 / bw;
        if (t < bt * 0.999) { bt = t; best = s; }
    }
    if (best_t) *best_t = bt;
    return best;
}
/* conv_cu's: 2 blocks an SM; ~0.8 TFLOP/s a block for 16-bit operands (measured: 128x128 tiles, mma.sync), half
   that on TF32 (half the tensor-core rate), a third of TF32's for 3xTF32 (three products) */
static int64_t choose_splits(int64_t tiles, int64_t ktiles, int64_t M, int64_t N, bool always_partials, int kdt) {
    const double rate = kdt == NN_F32 ? 0.4e12 : kdt == F32X3 ? 0.4e12 / 3 : 0.8e12;
    return split_k(tiles, ktiles, M, N, always_partials, 2, 2.0 * BM * BN * bk_of(kdt), rate, 256);
}
/* which products the kernels of DT kdt take (kdt < 0: none) */
static bool fprop_ok(const nn__cg &g, int kdt) { return kdt >= 0 && fits(g) && g.C % bk_of(kdt) == 0; }
static bool dgrad_ok(const nn__cg &g, int kdt) { return kdt >= 0 && fits(g) && g.O % bk_of(kdt) == 0; }
static bool wgrad_ok(const nn__cg &g, int kdt) {
    int ch = is_f32(kdt) ? 4 : 8;   /* elements in a 16-byte chunk */
    return kdt >= 0 && fits(g) && g.O % ch == 0 && g.C % ch == 0;
}

static Args args_of(const nn__cg &g) {
    Args a;
    memset(&a, 0, sizeof a);
    a.kw = (int)g.kw; a.sh = (int)g.sh; a.sw = (int)g.sw; a.ph = (int)g.ph; a.pw = (int)g.pw; a.dh = (int)g.dh;
    a.dw = (int)g.dw; a.Ho = (int)g.Ho; a.Wo = (int)g.Wo;
    return a;
}

/* w's layout for FPROP (dgrad 0) or DGRAD (dgrad 1) into d, element type T (f32 rounded to TF32 when tf) */
template <typename T> static void weight_layout_t(const nn__cg &g, const nn_tensor *w, nn_tensor *d, int dgrad, int tf) {
    int64_t kk = g.kh * g.kw;
    const T *src = (const T *)w->data;
    T *dst = (T *)d->data;
    if (dgrad) {
        dim3 grid((unsigned)((g.C * kk + 63) / 64), (unsigned)((g.O + 63) / 64), 1);
        k_transpose<T><<<grid, dim3(32, 8), 0, S_>>>(src, dst, (int)g.O, (int)(g.C * kk), tf);
    } else {   /* the fewest slices within FPROP_SLICE_BYTES, even, in multiples of 8 channels (16-byte chunks) */
        const int64_t E = 16 / (int64_t)sizeof(T), most = FPROP_SLICE_BYTES / (kk * (int64_t)sizeof(T)) / 8 * 8;
        const int64_t slices = (g.C + most - 1) / most, sl = ((g.C + slices - 1) / slices + 7) / 8 * 8;
        const int vec = (nn__al16(src) && g.C * kk % E == 0) | (nn__al16(dst) && g.C % E == 0) << 1;
        dim3 grid((unsigned)((g.C + sl - 1) / sl), (unsigned)g.O);
        k_conv_weight_fprop<T><<<grid, 256, (size_t)sl * kk * sizeof(T), S_>>>(src, dst, (int)g.C, (int)kk, (int)sl, vec, tf);
    }
    NN_LAUNCHED();
}
/* w's layout for FPROP (dgrad 0) or DGRAD (dgrad 1), in w's dtype (f32 rounded to TF32 for kdt NN_F32) */
static nn_tensor *weight_layout(const nn__cg &g, const nn_tensor *w, int dgrad, int kdt) {
    nn_tensor *d = nn__tmp(w->dtype, g.O * g.C * g.kh * g.kw);
    if (w->dtype == NN_F32) weight_layout_t<float>(g, w, d, dgrad, kdt == NN_F32);
    else weight_layout_t<uint16_t>(g, w, d, dgrad, 0);
    return d;
}

/* FPROP / DGRAD launch: when the output tiles leave SMs idle, K is split over blockIdx.z into f32 partials that
   k_conv_splitk_out sums (deterministic) */
static void run_out(int kdt, int mode, Args a, void *out, int out_dt) {
    if (kdt != F32X3 && conv_wg::run_out(kdt, mode, a, out, out_dt)) return;   /* sm_90a: the wgmma kernel where it applies */
    const int bk = bk_of(kdt), odt = is_f32(kdt) ? NN_F32 : kdt;
    int64_t tiles = (int64_t)((a.M + BM - 1) / BM) * ((a.N + BN - 1) / BN), ktiles = a.K / bk;
    int64_t splits = choose_splits(tiles, ktiles, a.M, a.N, false, kdt);
    int64_t per = (ktiles + splits - 1) / splits * bk;
    splits = (a.K + per - 1) / per;
    a.k_split = (int)per;
    dim3 grid((unsigned)((a.N + BN - 1) / BN), (unsigned)((a.M + BM - 1) / BM), (unsigned)splits);
    if (splits == 1) { a.out = out; run(kdt, mode, a, grid); return; }
    nn_tensor *part = nn__tmp(NN_F32, splits * a.M * a.N);
    a.part = (float *)part->data;
    run(kdt, mode, a, grid);
    k_conv_splitk_out<<<nn__grid((int64_t)a.M * a.N, 256), 256, 0, S_>>>(a.part, (int)splits, a.M, a.N, a.plane, a.bias,
                                                                         a.bias_dt, out, odt, out_dt == NN_F32);
    NN_LAUNCHED();
    nn_tensor_free(part);
}

/* y = conv(x, w) + b; returns x's NHWC copy (in the kernels' element type) */
static nn_tensor *fprop(const nn__cg &g, const nn_tensor *x, const nn_tensor *w, const nn_tensor *b, nn_tensor *y,
                        int kdt) {
    int64_t kk = g.kh * g.kw;
    nn_tensor *xn = to_nhwc(x, kdt), *wt = weight_layout(g, w, 0, kdt);
    Args a = args_of(g);
    a.a = wt->data; a.b = xn->data;
    a.bias = b ? b->data : NULL; a.bias_dt = b ? b->dtype : NN_F32;
    a.out_f32 = y->dtype == NN_F32;
    a.M = (int)g.O; a.N = (int)(g.N * g.Ho * g.Wo); a.K = (int)(kk * g.C);
    a.plane = (int)(g.Ho * g.Wo); a.ow = (int)g.Wo; a.SH = (int)g.H; a.SW = (int)g.W; a.CS = (int)g.C;
    run_out(kdt, FPROP, a, y->data, y->dtype);
    nn_tensor_free(wt);
    return xn;
}

/* gx (f32 or the 16-bit dtype) from dyn, the upstream gradient in NHWC (to_nhwc(gy, kdt)) */
static void dgrad(const nn__cg &g, const nn_tensor *dyn, const nn_tensor *w, nn_tensor *gx, int kdt) {
    int64_t kk = g.kh * g.kw;
    nn_tensor *wd = weight_layout(g, w, 1, kdt);
    Args a = args_of(g);
    a.a = wd->data; a.b = dyn->data; a.out_f32 = gx->dtype == NN_F32;
    a.M = (int)g.C; a.N = (int)(g.N * g.H * g.W); a.K = (int)(kk * g.O);
    a.plane = (int)(g.H * g.W); a.ow = (int)g.W; a.SH = (int)g.Ho; a.SW = (int)g.Wo; a.CS = (int)g.O;
    run_out(kdt, DGRAD, a, gx->data, gx->dtype);
    nn_tensor_free(wd);
}

/* gw from dyn and xn (x in NHWC, both from to_nhwc(., kdt)) */
static void wgrad(const nn__cg &g, const nn_tensor *dyn, const nn_tensor *xn, nn_tensor *gw, int kdt) {
    if (!is_f32(kdt) && conv_wg::wgrad(g, dyn, xn, gw)) return;   /* sm_90a: the wgmma kernel where it applies */
    const int bk = bk_of(kdt);
    int64_t kk = g.kh * g.kw, P = g.N * g.Ho * g.Wo;
    Args a = args_of(g);
    a.a = dyn->data; a.b = xn->data;
    a.M = (int)g.O; a.N = (int)(kk * g.C); a.K = (int)P;
    a.SH = (int)g.H; a.SW = (int)g.W; a.CS = (int)g.C;
    /* K (the pixels) split over blockIdx.z: always into partials (summed and reordered below) */
    int64_t tiles = ((a.M + BM - 1) / BM) * ((a.N + BN - 1) / BN), ktiles = (P + bk - 1) / bk;
    int64_t splits = choose_splits(tiles, ktiles, a.M, a.N, true, kdt);
    int64_t per = (ktiles + splits - 1) / splits * bk;
    splits = (P + per - 1) / per;
    a.k_split = (int)per;
    nn_tensor *part = nn__tmp(NN_F32, splits * a.M * a.N);
    a.part = (float *)part->data;
    run(kdt, WGRAD, a, dim3((unsigned)((a.N + BN - 1) / BN), (unsigned)((a.M + BM - 1) / BM), (unsigned)splits));
    k_conv_wgrad_sum<<<dim3((unsigned)((g.C + WS_SLICE - 1) / WS_SLICE), (unsigned)g.O), 256, (size_t)WS_SLICE * kk * 4, S_>>>(
        part->data, NN_F32, (int)splits, gw->data, gw->dtype, (int)g.O, (int)g.C, (int)kk);
    NN_LAUNCHED();
    nn_tensor_free(part);
}

} /* namespace conv_cu */

/* ---------------------------------------------------------------- wgmma primitives (sm_90a: conv_wg, sdpa_cu)
   Hopper's warpgroup MMA reads its shared-memory operands through 64-bit descriptors (PTX ISA, "Matrix Descriptor
   Format" of the asynchronous warpgroup-level matrix shared-memory layout: start address >> 4 in bits 0-13,
   leading byte offset >> 4 in 16-29, stride byte offset >> 4 in 32-45, swizzle mode in 62-63) and runs
   asynchronously: fence before, commit a group after, wait for groups before reading the results. Only the
   sm_90a pass compiles these (__CUDA_ARCH_FEAT_SM90_ALL); the kernels that use them test the same macro. */
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
/* descriptor of a swizzled operand at s with rows of RB bytes: RB = 128 the 128-byte swizzle (1024-byte aligned
   atoms), RB = 64 the 64-byte swizzle (512-byte atoms; D = 32); 8-row groups 8 RB bytes apart (stride byte
   offset); the leading byte offset is unused by these shapes (one swizzle atom per operand row span), set to 1
   as the canonical value */
template <int RB = 128>
__device__ __forceinline__ uint64_t wg_desc(const void *s) {
    static_assert(RB == 128 || RB == 64, "wg_desc: 128- or 64-byte swizzle");
    uint32_t a = (uint32_t)__cvta_generic_to_shared(s);
    return (uint64_t)((a & 0x3FFFF) >> 4) | ((uint64_t)1 << 16) | ((uint64_t)(8 * RB >> 4) << 32) |
           ((uint64_t)(RB == 128 ? 1 : 2) << 62);
}
/* the same descriptor with a leading byte offset: an MN-major operand wider than one swizzle atom (64 two-byte or
   32 four-byte elements), whose atoms lie `bytes` apart (PTX ISA, matrix descriptor: LBO = the stride between
   swizzle atoms along M or N for MN-major layouts) */
__device__ __forceinline__ uint64_t wg_desc_lbo(uint64_t d, uint32_t bytes) {
    return (d & ~((uint64_t)0x3FFF << 16)) | ((uint64_t)(bytes >> 4) << 16);
}
__device__ __forceinline__ void wg_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wg_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
/* wait until at most N of this warpgroup's committed wgmma groups are still running */
template <int N> __device__ __forceinline__ void wg_wait() { asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory"); }
/* keep the compiler from moving reads/writes of wgmma registers across a fence or wait (the operand fence) */
template <int N> __device__ __forceinline__ void wg_pin(float (&d)[N]) {
#pragma unroll
    for (int i = 0; i < N; i++) asm volatile("" : "+f"(d[i])::"memory");
}
template <int N> __device__ __forceinline__ void wg_pin(uint32_t (&d)[N][4]) {
#pragma unroll
    for (int i = 0; i < N; i++)
#pragma unroll
        for (int e = 0; e < 4; e++) asm volatile("" : "+r"(d[i][e])::"memory");
}
/* shared memory written by the generic proxy (cp.async, stores) before the tensor cores read it */
__device__ __forceinline__ void fence_async_smem() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }
/* mbarriers (PTX ISA, "mbarrier"): a 64-bit word in shared memory whose phase completes when the count given at
   init has arrived; a waiter names the parity of the phase it waits for (the n-th use of a barrier: n & 1).
   The warp-specialised forward passes tiles from its loading warpgroup to its computing ones with them. */
__device__ __forceinline__ uint32_t smem_u32(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }
__device__ __forceinline__ void mbar_init(uint64_t *b, unsigned count) {
    asm volatile("mbarrier.init.shared.b64 [%0], %1;\n" ::"r"(smem_u32(b)), "r"(count) : "memory");
}
/* one arrival (release: this thread's earlier shared-memory reads and writes happen before the phase completes);
   none where on is false (a predicate, not a branch: the callers sit between wgmma waits) */
__device__ __forceinline__ void mbar_arrive(uint64_t *b, bool on = true) {
    asm volatile("{\n\t.reg .pred p;\n\t.reg .b64 st;\n\tsetp.ne.u32 p, %1, 0;\n\t"
                 "@p mbarrier.arrive.shared.b64 st, [%0];\n}\n" ::"r"(smem_u32(b)), "r"((unsigned)on) : "memory");
}
/* one arrival once every cp.async this thread issued before it has landed (counted in init's count: noinc) */
__device__ __forceinline__ void mbar_arrive_cp_async(uint64_t *b) {
    asm volatile("cp.async.mbarrier.arrive.noinc.shared.b64 [%0];\n" ::"r"(smem_u32(b)) : "memory");
}
__device__ __forceinline__ void mbar_wait(uint64_t *b, uint32_t parity) {
    asm volatile("{\n\t.reg .pred done;\nWAIT:\n\t"
                 "mbarrier.try_wait.parity.shared.b64 done, [%0], %1;\n\t"
                 "@!done bra WAIT;\n}\n" ::"r"(smem_u32(b)), "r"(parity) : "memory");
}
/* named barriers 1..15 (0 is __syncthreads): sync waits until nthreads have arrived or synced; arrive does not
   wait, and here arrives only where on holds (the same in the whole warp; a predicate, not a branch) */
__device__ __forceinline__ void bar_sync(int id, int nthreads) {
    asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(nthreads) : "memory");
}
__device__ __forceinline__ void bar_arrive_if(int id, int nthreads, bool on) {
    asm volatile("{\n\t.reg .pred p;\n\tsetp.ne.u32 p, %2, 0;\n\t@p bar.arrive %0, %1;\n}\n" ::"r"(id), "r"(nthreads),
                 "r"((unsigned)on) : "memory");
}
/* move registers between the warpgroups of a CTA (every thread of a warpgroup executes it with the same N) */
template <int N> __device__ __forceinline__ void regs_dec() { asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(N)); }
template <int N> __device__ __forceinline__ void regs_inc() { asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(N)); }
/* the dynamic shared memory rounded up to 1024 bytes (the 128-byte swizzle's atom) by adding an offset to the
   pointer itself: a pointer made from an integer (uintptr_t arithmetic) loses its address space, and every load
   through it compiles to a generic LD instead of LDS (seen in the SASS: 64 generic loads in the staged-bias
   forward's loop) */
__device__ __forceinline__ unsigned char *smem_align1024(unsigned char *p) {
    return p + ((1024u - ((uint32_t)__cvta_generic_to_shared(p) & 1023u)) & 1023u);
}
#endif

/* 1 when the device runs this library's sm_90a image, where the wgmma kernels have bodies (the probe kernel writes
   1 there, 0 in the sm_80 / sm_90 images); asked once. conv_wg and sdpa_cu fall back to their mma.sync kernels
   otherwise. */
__global__ void k_wgmma_probe(int *flag) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    *flag = 1;
#else
    *flag = 0;
#endif
}
static int nn__cu_wgmma(void) {
    static int state = -1;
    if (state >= 0) return state;
    state = 0;
    int dev = 0, major = 0, minor = 0;
    NN_CU(cudaGetDevice(&dev));
    NN_CU(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
    NN_CU(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev));
    if (major != 9 || minor != 0) return state;
    int *flag = nullptr, host = 0;
    NN_CU(cudaMalloc(&flag, sizeof(int)));
    k_wgmma_probe<<<1, 1, 0, S_>>>(flag); NN_LAUNCHED();
    NN_CU(cudaMemcpyAsync(&host, flag, sizeof(int), cudaMemcpyDeviceToHost, S_));
    NN_CU(cudaStreamSynchronize(S_));
    NN_CU(cudaFree(flag));
    state = host == 1;
    return state;
}

/* ------------------------------------------------------- conv2d: wgmma implicit GEMM (sm_90a, bf16/f16, TF32)
   conv_cu's FPROP, and its DGRAD at power-of-two strides, on Hopper's warpgroup MMA: the same GEMMs C[m][n] =
   sum_k A(m, k) B(n, k) on the same operands (A: the weights as [M][kh][kw][CS], made by conv_cu::weight_layout;
   B: the NHWC image gathered per tap with zero-fill), the same outputs (NCHW + bias, or f32 partials when K is
   split), from wgmma m64n256k16 instead of mma.sync; f32 with conv TF32 allowed (conv_cu's DT NN_F32, operands
   rounded to TF32 by its layout passes) from m64n256k8.tf32 on the same bytes: a K tile of 32 f32 instead of 64
   16-bit elements (bk_elems). Applies when the gathered image's channels CS are a multiple of that K tile: a
   K slice is then one tap's 128 contiguous bytes of one pixel, a full row of the 128-byte swizzle atom
   that the wgmma descriptors read (the layout of sdpa_cu's Q and K tiles: in row r the 16-byte chunk c sits at
   chunk c ^ (r & 7), 8-row groups 1024 bytes apart).
   Block tile BM 128 (M: output channels for FPROP, input channels for DGRAD) x BN 256 (pixels) x 128 bytes, two
   warpgroups of 64 x 256 (128 f32 accumulators a thread), one block per SM (4 stages of 48 KiB); or BN 128
   (k_conv_wgmma<DT, 128>: 64 accumulators, stages of 32 KiB) where run_out's model finds the 256-wide tiles too
   few for the SMs (twice the blocks instead of a K split, or fewer splits). All 256
   threads load: one barrier per K tile, tiles issued 2 ahead (the stage written at tile kt held tile kt - 2,
   whose wgmma every thread has waited for), so the tensor cores run tile kt while tiles kt+1, kt+2 arrive.
   The gather differs between the modes only in host-set constants: pixel (oy, ox) of the output plane at tap
   (i, j) has t = oy * rs_h + ro_h + i * td_h, u = ox * rs_w + ro_w + j * td_w and reads row t >> ls_h, column
   u >> ls_w of the image, or zero when t or u is off the image or not a multiple of 2^ls:
     FPROP  rs = (sh, sw), ro = (-ph, -pw), td = (dh, dw),   ls = (0, 0)
     DGRAD  rs = (1, 1),   ro = (ph, pw),   td = (-dh, -dw), ls = log2 of the stride (powers of two: the output
            pixel that tap (i, j) of input pixel (oy, ox) came from, if it is on the stride grid)
   WGRAD (k_conv_wgmma_wgrad, C and O multiples of 64) has its own kernel below: both operands MN-major.
   Only the sm_90a pass compiles the kernel bodies; the host asks the probe (nn__cu_wgmma) whether
   the device runs that image, and falls back to conv_cu otherwise. NN_CONV_WG=0 turns them off (A/B; see enabled). */
namespace conv_wg {

constexpr int BM = 128, BN = 256, BK = 64, STAGES = 4, THREADS = 256;
constexpr int A_BYTES = BM * BK * 2, B_BYTES = BN * BK * 2, STAGE_BYTES = A_BYTES + B_BYTES;   /* 16 + 32 KiB */
constexpr int SMEM = STAGES * STAGE_BYTES + 1024;   /* + 1024: the atoms' 1024-byte alignment */
/* k_conv_wgmma's K tile in elements of the operands' type: 128 bytes of a row, 64 16-bit or 32 f32 (TF32) */
__host__ __device__ constexpr int bk_elems(int dt) { return dt == NN_F32 ? BK / 2 : BK; }

struct Args {
    const void *a, *b;       /* A [M][K] (K = taps x CS), B the NHWC image [images][SH][SW][CS]; 16-byte aligned;
                                16-bit, or f32 rounded to TF32 (DT NN_F32) */
    void *out;               /* NCHW output [images][M][plane] */
    float *part;             /* K split: f32 partials [split][M][N] instead */
    const void *bias;        /* may be NULL */
    int bias_dt, out_f32;    /* out_f32: an f32 output holding the dt-rounded value */
    int M, N, K, k_split;    /* GEMM sizes; K per blockIdx.z (a multiple of bk_elems(DT)) */
    int plane, ow;           /* output pixels per image, output row width */
    int SH, SW, CS, kw;      /* the gathered image's rows, columns, channels; the filter's width */
    int rs_h, rs_w, ro_h, ro_w, td_h, td_w, ls_h, ls_w;   /* the gather's constants (see above) */
};

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define CONV_WG 1
#endif

#ifdef CONV_WG
#define CWG_D8(o) "+f"(d[o]), "+f"(d[o + 1]), "+f"(d[o + 2]), "+f"(d[o + 3]), "+f"(d[o + 4]), "+f"(d[o + 5]), \
    "+f"(d[o + 6]), "+f"(d[o + 7])
#define CWG_D128 CWG_D8(0), CWG_D8(8), CWG_D8(16), CWG_D8(24), CWG_D8(32), CWG_D8(40), CWG_D8(48), CWG_D8(56), \
    CWG_D8(64), CWG_D8(72), CWG_D8(80), CWG_D8(88), CWG_D8(96), CWG_D8(104), CWG_D8(112), CWG_D8(120)
#define CWG_SS256(SHAPE_TY, IMM)                                                                                   \
    "{\n.reg .pred p;\nsetp.ne.b32 p, %130, 0;\n"                                                                  \
    "wgmma.mma_async.sync.aligned." SHAPE_TY " {"                                                                  \
    "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, "   \
    "%23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, "   \
    "%44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, %64, "   \
    "%65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, %80, %81, %82, %83, %84, %85, "   \
    "%86, %87, %88, %89, %90, %91, %92, %93, %94, %95, %96, %97, %98, %99, %100, %101, %102, %103, %104, %105, "  \
    "%106, %107, %108, %109, %110, %111, %112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, " \
    "%124, %125, %126, %127}, %128, %129, p, " IMM ";\n}\n"
/* d[64 x 256] += A[64 x K] B[256 x K]^T, both K-major in shared memory (descriptors), K = 16 (f16 / bf16) or 8
   (TF32: f32 operands whose low 13 mantissa bits the tensor cores ignore; the layout passes rounded them). Either
   way one k step is 32 bytes of the operand rows. The TF32 form has no transpose immediates (K-major only).
   Fragment layout of d (warp w of the warpgroup, lane = 4 g + q): d[4 j + e] is row 16 w + g + 8 (e >> 1),
   column 8 j + 2 q + (e & 1). */
template <int DT> __device__ __forceinline__ void mma_64x256(float (&d)[128], uint64_t da, uint64_t db) {
    if (DT == NN_F16) asm volatile(CWG_SS256("m64n256k16.f32.f16.f16", "1, 1, 0, 0") : CWG_D128 : "l"(da), "l"(db), "r"(1));
    else if (DT == NN_BF16) asm volatile(CWG_SS256("m64n256k16.f32.bf16.bf16", "1, 1, 0, 0") : CWG_D128 : "l"(da), "l"(db), "r"(1));
    else asm volatile(CWG_SS256("m64n256k8.f32.tf32.tf32", "1, 1") : CWG_D128 : "l"(da), "l"(db), "r"(1));
}
#define CWG_D64 CWG_D8(0), CWG_D8(8), CWG_D8(16), CWG_D8(24), CWG_D8(32), CWG_D8(40), CWG_D8(48), CWG_D8(56)
#define CWG_SS128(SHAPE_TY, IMM)                                                                                   \
    "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"                                                                   \
    "wgmma.mma_async.sync.aligned." SHAPE_TY " {"                                                                  \
    "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, "   \
    "%23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, "   \
    "%44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, "       \
    "%64, %65, p, " IMM ";\n}\n"
/* the same for the 128-wide tile: d[64 x 128] += A[64 x K] B[128 x K]^T (d's layout as above, j < 16) */
template <int DT> __device__ __forceinline__ void mma_64x128(float (&d)[64], uint64_t da, uint64_t db) {
    if (DT == NN_F16) asm volatile(CWG_SS128("m64n128k16.f32.f16.f16", "1, 1, 0, 0") : CWG_D64 : "l"(da), "l"(db), "r"(1));
    else if (DT == NN_BF16) asm volatile(CWG_SS128("m64n128k16.f32.bf16.bf16", "1, 1, 0, 0") : CWG_D64 : "l"(da), "l"(db), "r"(1));
    else asm volatile(CWG_SS128("m64n128k8.f32.tf32.tf32", "1, 1") : CWG_D64 : "l"(da), "l"(db), "r"(1));
}
template <int DT> __device__ __forceinline__ void mma_64xn(float (&d)[128], uint64_t da, uint64_t db) { mma_64x256<DT>(d, da, db); }
template <int DT> __device__ __forceinline__ void mma_64xn(float (&d)[64], uint64_t da, uint64_t db) { mma_64x128<DT>(d, da, db); }
#endif /* CONV_WG */

/* DT NN_BF16 / NN_F16: 16-bit operands; NN_F32: f32 operands rounded to TF32 by the layout passes, on the TF32
   form (the same bytes a tile, KT = 32 elements, the f32 staging tile in the epilogue). NB: the block tile's
   width, BN (256) or 128 (run_out's pick where 256-wide tiles leave SMs idle: twice the blocks, no K split or
   fewer), with stages of 16 + NB / 8 KiB. */
template <int DT, int NB = BN> __global__ void __launch_bounds__(THREADS, 1) k_conv_wgmma(const Args p) {
#ifdef CONV_WG
    static_assert(NB == 256 || NB == 128, "k_conv_wgmma: 256- or 128-wide tiles");
    using T = typename std::conditional<DT == NN_F32, float, uint16_t>::type;
    constexpr int KT = bk_elems(DT), CH = 16 / (int)sizeof(T);   /* K tile, elements a 16-byte chunk */
    constexpr int SB = A_BYTES + NB * 128, NBR = NB / 32;       /* a stage's bytes; B rows / 32 */
    const T *pa = (const T *)p.a, *pb = (const T *)p.b;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    unsigned char *sm = smem_align1024(smem_raw);
    const int tid = threadIdx.x, wg = tid >> 7, warp = (tid >> 5) & 3, lane = tid & 31;
    const int m0 = blockIdx.x * BM, n0 = blockIdx.y * NB;
    const int kbeg = blockIdx.z * p.k_split, ntiles = (min(p.K, kbeg + p.k_split) - kbeg) / KT;

    /* Loader: this thread copies 16-byte chunk ch of rows r0 + 32 i of both tiles (A: i < 4, B: i < NB / 32). The
       swizzled position of (r0 + 32 i, ch) is soff + 4096 i (32 rows keep r & 7). A rows advance by KT per
       tile; B rows keep their pixel (image base, t and u at tap 0) and move with the tile's tap (ld_i, ld_j)
       and channel offset ld_c. */
    const int ch = tid & 7, r0 = tid >> 3;
    const uint32_t soff = r0 * 128 + ((ch ^ (r0 & 7)) << 4);
    const T *a_src = pa + (int64_t)(m0 + r0) * p.K + kbeg + ch * CH;
    const int64_t a_step = (int64_t)32 * p.K;
    unsigned a_ok = 0;
#pragma unroll
    for (int i = 0; i < 4; i++) a_ok |= (m0 + r0 + 32 * i < p.M ? 1u : 0u) << i;
    int b_img[NBR], b_y[NBR], b_x[NBR];   /* first pixel of the row's image; t and u at tap 0 */
#pragma unroll
    for (int i = 0; i < NBR; i++) {
        const int n = n0 + r0 + 32 * i;
        if (n < p.N) {
            const int img = n / p.plane, q = n - img * p.plane, oy = q / p.ow, ox = q - oy * p.ow;
            b_y[i] = oy * p.rs_h + p.ro_h; b_x[i] = ox * p.rs_w + p.ro_w;
            b_img[i] = img * p.SH * p.SW;
        } else {
            b_y[i] = -(1 << 29); b_x[i] = 0; b_img[i] = 0;   /* outside every tap */
        }
    }
    const unsigned tlim = (unsigned)p.SH << p.ls_h, ulim = (unsigned)p.SW << p.ls_w;
    const int mh = (1 << p.ls_h) - 1, mw = (1 << p.ls_w) - 1;
    int ld_i, ld_j, ld_c;
    {
        const int tap = kbeg / p.CS;
        ld_c = kbeg - tap * p.CS; ld_i = tap / p.kw; ld_j = tap - ld_i * p.kw;
    }
    auto load_tile = [&](int stage) {
        unsigned char *sA = sm + stage * SB + soff, *sB = sA + A_BYTES;
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const bool ok = (a_ok >> i) & 1;
            cp_async16(sA + 4096 * i, ok ? a_src + i * a_step : pa, ok);
        }
        a_src += KT;
        const int dy = ld_i * p.td_h, dx = ld_j * p.td_w;
        const T *bc = pb + ld_c + ch * CH;
#pragma unroll
        for (int i = 0; i < NBR; i++) {
            const int t = b_y[i] + dy, u = b_x[i] + dx;
            const bool ok = (unsigned)t < tlim && (unsigned)u < ulim && ((t & mh) | (u & mw)) == 0;
            const int pix = b_img[i] + (t >> p.ls_h) * p.SW + (u >> p.ls_w);
            cp_async16(sB + 4096 * i, ok ? bc + (int64_t)pix * p.CS : pb, ok);
        }
        ld_c += KT;
        if (ld_c == p.CS) { ld_c = 0; if (++ld_j == p.kw) { ld_j = 0; ++ld_i; } }
    };

    float acc[NB / 2];
#pragma unroll
    for (int i = 0; i < NB / 2; i++) acc[i] = 0.0f;
    wg_pin(acc);
    /* this warpgroup's 64 rows of A: 64 rows of 128 bytes further (a whole number of atoms) */
    const uint64_t da0 = wg_desc(sm + wg * 64 * 128), db0 = wg_desc(sm + A_BYTES);

#pragma unroll
    for (int s = 0; s < STAGES - 2; s++) {
        if (s < ntiles) load_tile(s);
        cp_commit();
    }
    for (int kt = 0; kt < ntiles; kt++) {
        cp_wait<STAGES - 3>();   /* this thread's copies of tile kt have landed */
        fence_async_smem();                      /* ... visible to the tensor cores (async proxy) */
        __syncthreads();                         /* everyone's; and every wgmma of tile kt - 2 is done */
        if (kt + STAGES - 2 < ntiles) load_tile((kt + STAGES - 2) % STAGES);
        cp_commit();
        const uint64_t so = (uint64_t)((kt % STAGES) * SB) >> 4;
        wg_fence();
#pragma unroll
        for (int kk = 0; kk < 4; kk++)   /* k step kk (16 or 8 elements): 32 bytes further along the 128-byte rows */
            mma_64xn<DT>(acc, da0 + so + 2 * kk, db0 + so + 2 * kk);
        wg_commit();
        wg_wait<1>();                            /* tile kt - 1's products done: its stage is free after the barrier */
    }
    wg_wait<0>();
    wg_pin(acc);
    cp_wait<0>();
    __syncthreads();   /* every warpgroup done with the stages: they become the staging tile */

    const int g = lane >> 2, q = lane & 3;
    const int rw = wg * 64 + warp * 16 + g;   /* this thread's tile rows: rw, rw + 8 */
    if (p.part) {   /* f32 partials [split][M][N] straight from the fragments */
        float *out = p.part + (int64_t)blockIdx.z * p.M * p.N;
#pragma unroll
        for (int h = 0; h < 2; h++) {
            const int m = m0 + rw + 8 * h;
            if (m >= p.M) continue;
            float *orow = out + (int64_t)m * p.N;
#pragma unroll
            for (int j = 0; j < NB / 8; j++) {
                const int n = n0 + 8 * j + 2 * q;
                const float v0 = acc[4 * j + 2 * h], v1 = acc[4 * j + 2 * h + 1];
                if (n + 1 < p.N && ((uintptr_t)(orow + n) & 7) == 0) *(float2 *)(orow + n) = make_float2(v0, v1);
                else {
                    if (n < p.N) orow[n] = v0;
                    if (n + 1 < p.N) orow[n + 1] = v1;
                }
            }
        }
        return;
    }
    if constexpr (DT == NN_F32) {
        /* (acc + bias) into a [BM][NB + 8] f32 staging tile (rows 8 banks apart: a half-warp's float2 stores, 4
           rows x 8 words, hit distinct banks), then written out 128 pixels of a row per warp instruction: lane l
           holds pixels 4 l .. 4 l + 3 (16 bytes) of each 128-pixel part hf */
        constexpr int LDF = NB + 8, NHF = NB / 128;
        static_assert(BM * LDF * 4 <= STAGES * SB, "conv_wg: f32 staging tile");
        float *st = (float *)sm;
#pragma unroll
        for (int h = 0; h < 2; h++) {
            const int r = rw + 8 * h;
            const float bv = p.bias && m0 + r < p.M ? d_loadf(p.bias, p.bias_dt, m0 + r) : 0.0f;
#pragma unroll
            for (int j = 0; j < NB / 8; j++)
                *(float2 *)(st + r * LDF + 8 * j + 2 * q) = make_float2(acc[4 * j + 2 * h] + bv, acc[4 * j + 2 * h + 1] + bv);
        }
        __syncthreads();
        int img4[NHF][4], q4[NHF][4];   /* image and in-plane index of this lane's pixels (-1: past N) */
        bool vec[NHF];                  /* 4 pixels of one image, 16-byte aligned in its plane (n a multiple of 4) */
#pragma unroll
        for (int hf = 0; hf < NHF; hf++) {
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int n = n0 + 128 * hf + 4 * lane + e;
                img4[hf][e] = n < p.N ? n / p.plane : -1;
                q4[hf][e] = n < p.N ? n - img4[hf][e] * p.plane : 0;
            }
            vec[hf] = img4[hf][3] >= 0 && img4[hf][0] == img4[hf][3] && (p.plane & 3) == 0;
        }
        float *o = (float *)p.out;
        const int w8 = tid >> 5;
        for (int rr = 0; rr < BM / 8; rr++) {
            const int r = w8 * (BM / 8) + rr, m = m0 + r;
            if (m >= p.M) break;
#pragma unroll
            for (int hf = 0; hf < NHF; hf++) {
                const float4 v = *(const float4 *)(st + r * LDF + 128 * hf + 4 * lane);
                if (vec[hf]) *(float4 *)(o + ((int64_t)img4[hf][0] * p.M + m) * p.plane + q4[hf][0]) = v;
                else {
                    const float e4[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
                    for (int e = 0; e < 4; e++)
                        if (img4[hf][e] >= 0) o[((int64_t)img4[hf][e] * p.M + m) * p.plane + q4[hf][e]] = e4[e];
                }
            }
        }
        return;
    }
    /* (acc + bias) rounded to dt into a [BM][NB + 8] staging tile, then written out NB pixels of a row (RPI rows of
       the tile) per warp instruction: lane l holds pixels 8 (l % LPR) .. + 7 (16 bytes) of row l / LPR */
    constexpr int LDS = NB + 8, LPR = NB / 8, RPI = 32 / LPR;
    static_assert(BM * LDS * 2 <= STAGES * SB, "conv_wg: staging tile");
    uint16_t *st = (uint16_t *)sm;
#pragma unroll
    for (int h = 0; h < 2; h++) {
        const int r = rw + 8 * h;
        const float bv = p.bias && m0 + r < p.M ? d_loadf(p.bias, p.bias_dt, m0 + r) : 0.0f;
#pragma unroll
        for (int j = 0; j < NB / 8; j++)
            *(uint32_t *)(st + r * LDS + 8 * j + 2 * q) = (uint32_t)d_to16<DT>(acc[4 * j + 2 * h] + bv) |
                                                           ((uint32_t)d_to16<DT>(acc[4 * j + 2 * h + 1] + bv) << 16);
    }
    __syncthreads();
    const int lp = lane % LPR, lr = lane / LPR;   /* this lane's 16-byte column and row within an instruction */
    int img8[8], q8[8];   /* image and in-plane index of this lane's 8 pixels (-1: past N) */
#pragma unroll
    for (int e = 0; e < 8; e++) {
        const int n = n0 + 8 * lp + e;
        img8[e] = n < p.N ? n / p.plane : -1;
        q8[e] = n < p.N ? n - img8[e] * p.plane : 0;
    }
    /* 8 pixels of one image, 16-byte aligned in its plane (n0 + 8 lp is a multiple of 8) */
    const bool vec = img8[7] >= 0 && img8[0] == img8[7] && (p.plane & 7) == 0;
    const int w8 = tid >> 5;
    for (int rr = 0; rr < BM / 8; rr += RPI) {
        const int r = w8 * (BM / 8) + rr + lr, m = m0 + r;
        if (m >= p.M) break;
        const uint4 v = *(const uint4 *)(st + r * LDS + 8 * lp);
        const uint16_t *e16 = (const uint16_t *)&v;
        if (p.out_f32) {
            float *o = (float *)p.out;
            if (vec) {
                float4 *o4 = (float4 *)(o + ((int64_t)img8[0] * p.M + m) * p.plane + q8[0]);
                o4[0] = make_float4(d_from16<DT>(e16[0]), d_from16<DT>(e16[1]), d_from16<DT>(e16[2]), d_from16<DT>(e16[3]));
                o4[1] = make_float4(d_from16<DT>(e16[4]), d_from16<DT>(e16[5]), d_from16<DT>(e16[6]), d_from16<DT>(e16[7]));
            } else {
#pragma unroll
                for (int e = 0; e < 8; e++)
                    if (img8[e] >= 0) o[((int64_t)img8[e] * p.M + m) * p.plane + q8[e]] = d_from16<DT>(e16[e]);
            }
        } else {
            uint16_t *o = (uint16_t *)p.out;
            if (vec) *(uint4 *)(o + ((int64_t)img8[0] * p.M + m) * p.plane + q8[0]) = v;
            else {
#pragma unroll
                for (int e = 0; e < 8; e++)
                    if (img8[e] >= 0) o[((int64_t)img8[e] * p.M + m) * p.plane + q8[e]] = e16[e];
            }
        }
    }
#endif /* CONV_WG */
}

/* WGRAD on wgmma: C[m][n] = sum over pixels k of dy(k, m) x(pixel of k at tap(n), channel(n)), M = O,
   N = (tap, c), K = images*Ho*Wo. Both operands are MN-major here: a K tile is 64 pixel rows of 128 contiguous
   bytes per 64-wide M or N block (dy_nhwc's 64 channels m; x_nhwc's 64 channels of one tap: C % 64 == 0 keeps a
   block on one tap), in the same 128-byte swizzle, read with the transpose flags.
   Block tile 128 (o) x 256 (tap, c) x 64 pixels; warpgroup w owns o rows 64 w.., as one m64n256k16 per k step
   (B's four 64-wide N blocks, 8 KiB apart, one swizzle atom column each, reached through the descriptor's leading
   byte offset; see wgrad_tile). Loader: thread t copies chunk t & 7 of pixel rows t >> 3 and (t >> 3) + 32 in
   every block; a row's pixel (image, oy, ox) moves on by 64 per tile, each block's tap is fixed. Pipeline as
   k_conv_wgmma.
   Two schedules (wgrad() picks one):
   - split-K: tile (blockIdx.x, blockIdx.y), K split over blockIdx.z into f32 partials [split][M][N], summed and
     put back in [O][C][kh][kw] order by conv_cu::k_conv_wgrad_sum.
   - stream-K (p.units > 0): the tiles' K tiles ("units", tile-major) are cut into gridDim.x equal contiguous
     ranges, one a block (gridDim.x <= the SMs: every block resident, all SMs busy to the end whatever the tile
     count). A tile whose units straddle blocks is finished by the block holding its last unit; the blocks before
     it leave their part in their own f32 slot of p.part (fragment order, coalesced) and raise their flag. Each
     block walks its range backwards, so the one partial it may leave (the head of its last tile) comes first and
     is ready long before the block that sums it gets there; that block adds the slots in a fixed order (nearest
     block first) and clears the flags: bit-identical results run to run, no atomics on data. A block only ever
     waits on lower-numbered blocks, which start no later. The finished tiles go rounded to DT as [M][N] =
     [O][kh kw][C] to p.out16, which conv_cu::k_conv_wgrad_sum puts in gw's order: writing them straight into gw (2-byte
     stores kk elements apart, ~0.6 sectors an element) was measured slower, 60 us at 1024 channels: one SM
     issues its tile's scattered stores alone: bench/session_1206c/wgrad_2137. */
struct WArgs {
    const uint16_t *a, *b;   /* dy_nhwc [P][M], x_nhwc [images][SH][SW][CS] */
    float *part;             /* split-K: [split][M][N]; stream-K: a BM x BN slot a block */
    int M, N, K, k_split;    /* K = P, per blockIdx.z a multiple of BK (split-K) */
    int SH, SW, CS, kw, sh, sw, ph, pw, dh, dw, Ho, Wo;
    int units, ktiles, mt;   /* stream-K: tiles x ktiles, K tiles a tile, M tiles (units 0: split-K) */
    int *flags;              /* stream-K: a flag a block, 1 while its slot waits to be summed; 0 between launches */
    uint16_t *out16;         /* stream-K: the finished tiles in DT, [M][N] */
};

#ifdef CONV_WG
/* d[64 x 256] += A[64 x 16] B[256 x 16]^T, both MN-major: A one 64-wide block, B four 64-wide blocks whose
   distance is the descriptor's leading byte offset (MN-major with the 128-byte swizzle: LBO = the stride between
   64-element MN blocks, SBO = the stride between 8-row K groups). Fragment layout of d as mma_64x256. */
template <int DT> __device__ __forceinline__ void mma_64x256t(float *d, uint64_t da, uint64_t db) {
    if (DT == NN_F16) asm volatile(CWG_SS256("m64n256k16.f32.f16.f16", "1, 1, 1, 1") : CWG_D128 : "l"(da), "l"(db), "r"(1));
    else asm volatile(CWG_SS256("m64n256k16.f32.bf16.bf16", "1, 1, 1, 1") : CWG_D128 : "l"(da), "l"(db), "r"(1));
}

/* acc = the tile at (m0, n0) summed over pixels [kbeg, kend): the whole pipeline, from empty stages to drained
   (every wgmma and copy done, every thread past the last read of the stages: they can be refilled at once).
   One m64n256k16 a k step reads A once from shared memory (10 KiB a k step a warpgroup; four m64n64k16, one a
   64-wide N block, read it four times: 16 KiB, shared-memory bound, and measured 1-2 % slower, 12-07 03:47). */
template <int DT>
__device__ __forceinline__ void wgrad_tile(const WArgs &p, unsigned char *sm, int m0, int n0, int kbeg, int kend,
                                           float (&acc)[4][32]) {
    const int tid = threadIdx.x, wg = tid >> 7;
    const int ntiles = (kend - kbeg + BK - 1) / BK;
    /* Loader (as k_conv_wgmma's): thread t copies 16-byte chunk ch = t & 7 of pixel rows r0 = t >> 3 and r0 + 32
       of every 64-wide block, A's two and B's four. A quarter warp then reads one 128-byte row whole (4 sectors)
       and writes its 8 chunks to 8 distinct bank groups. The first loader gave a thread a row, its 8 chunks in
       turn: each warp instruction asked for 32 rows, half a sector each, and 2 (A) or 4 (B) threads of a quarter
       warp wrote the same banks. Measured 12-07 09:50 (bench/session_1207c/callL.sh, `cuda_bench convpass`, forward
       + WGRAD less the forward): 0.211 -> 0.140 ms at 8x512x32x32 (183 -> 276 TFLOP/s), 1.2-1.5x on every row. */
    const int ch = tid & 7, r0 = tid >> 3;
    const uint32_t soff = r0 * 128 + ((ch ^ (r0 & 7)) << 4);   /* row r0 + 32 h: + 4096 h (r & 7 kept) */
    /* A: blocks m0 + 64 b, whole in or out (M % 64 == 0); B: block b is channels c0[b].. of tap (ti, tj), whole
       in or out (CS % 64 == 0), at image offset (offy[b], offx[b]) from the pixel's stride-grid position */
    unsigned a_ok = 0, b_ok = 0;
#pragma unroll
    for (int b = 0; b < 2; b++) a_ok |= (m0 + 64 * b < p.M ? 1u : 0u) << b;
    int offy[4], offx[4], c0[4];
#pragma unroll
    for (int b = 0; b < 4; b++) {
        const int nb = n0 + 64 * b;
        int ti = 0, tj = 0, c = 0;
        if (nb < p.N) {
            const int tap = nb / p.CS;
            c = nb - tap * p.CS; ti = tap / p.kw; tj = tap - ti * p.kw;
            b_ok |= 1u << b;
        }
        offy[b] = ti * p.dh - p.ph; offx[b] = tj * p.dw - p.pw; c0[b] = c + ch * 8;
    }
    /* this thread's pixel rows: k + 32 h at tile t, k = kbeg + r0 + 64 t */
    int k = kbeg + r0, img[2], oy[2], ox[2];
#pragma unroll
    for (int h = 0; h < 2; h++) {
        const int plane = p.Ho * p.Wo, kh = k + 32 * h, q = kh - (kh / plane) * plane;
        img[h] = kh / plane; oy[h] = q / p.Wo; ox[h] = q - oy[h] * p.Wo;
    }
    auto load_tile = [&](int stage) {
        unsigned char *s = sm + stage * STAGE_BYTES + soff;
#pragma unroll
        for (int h = 0; h < 2; h++) {
            const int kh = k + 32 * h;
            const bool kok = kh < kend;
            const uint16_t *asrc = p.a + (int64_t)kh * p.M + m0 + ch * 8;
#pragma unroll
            for (int b = 0; b < 2; b++) {
                const bool ok = kok && ((a_ok >> b) & 1);
                cp_async16(s + b * 8192 + h * 4096, ok ? asrc + 64 * b : p.a, ok);
            }
            const int sy0 = oy[h] * p.sh, sx0 = ox[h] * p.sw;
#pragma unroll
            for (int b = 0; b < 4; b++) {
                const int sy = sy0 + offy[b], sx = sx0 + offx[b];
                const bool ok = kok && ((b_ok >> b) & 1) && (unsigned)sy < (unsigned)p.SH && (unsigned)sx < (unsigned)p.SW;
                const uint16_t *bsrc = p.b + ((int64_t)(img[h] * p.SH + sy) * p.SW + sx) * p.CS + c0[b];
                cp_async16(s + A_BYTES + b * 8192 + h * 4096, ok ? bsrc : p.b, ok);
            }
            ox[h] += BK;   /* the pixel 64 further on */
            while (ox[h] >= p.Wo) {
                ox[h] -= p.Wo;
                if (++oy[h] == p.Ho) { oy[h] = 0; ++img[h]; }
            }
        }
        k += BK;
    };

#pragma unroll
    for (int b = 0; b < 4; b++)
#pragma unroll
        for (int i = 0; i < 32; i++) acc[b][i] = 0.0f;
#pragma unroll
    for (int b = 0; b < 4; b++) wg_pin(acc[b]);
    const uint64_t da0 = wg_desc(sm + wg * 8192), db0 = wg_desc(sm + A_BYTES);
    const uint64_t dbw = wg_desc_lbo(db0, 8192);   /* B's four 64-wide N blocks 8192 bytes apart */

#pragma unroll
    for (int s = 0; s < STAGES - 2; s++) {
        if (s < ntiles) load_tile(s);
        cp_commit();
    }
    for (int kt = 0; kt < ntiles; kt++) {
        cp_wait<STAGES - 3>();
        fence_async_smem();
        __syncthreads();
        if (kt + STAGES - 2 < ntiles) load_tile((kt + STAGES - 2) % STAGES);
        cp_commit();
        const uint64_t so = (uint64_t)((kt % STAGES) * STAGE_BYTES) >> 4;
        wg_fence();
#pragma unroll
        for (int kk = 0; kk < BK / 16; kk++) {   /* k step kk: 16 pixel rows (2048 bytes) further */
            mma_64x256t<DT>(&acc[0][0], da0 + so + kk * 128, dbw + so + kk * 128);
        }
        wg_commit();
        wg_wait<1>();
    }
    wg_wait<0>();
#pragma unroll
    for (int b = 0; b < 4; b++) wg_pin(acc[b]);
    cp_wait<0>();
    __syncthreads();   /* all reads of the stages done before the next tile's loads */
}

/* the f32 tile as rows m of out [M][N] (N even: 8-byte aligned pairs) */
__device__ __forceinline__ void wgrad_store_rows(const WArgs &p, float *out, int m0, int n0, const float (&acc)[4][32]) {
    const int tid = threadIdx.x, wg = tid >> 7, warp = (tid >> 5) & 3, lane = tid & 31, g = lane >> 2, q = lane & 3;
#pragma unroll
    for (int h = 0; h < 2; h++) {
        const int m = m0 + wg * 64 + warp * 16 + g + 8 * h;
        if (m >= p.M) continue;
        float *orow = out + (int64_t)m * p.N;
#pragma unroll
        for (int b = 0; b < 4; b++) {
            if (n0 + 64 * b >= p.N) continue;
#pragma unroll
            for (int j = 0; j < 8; j++)
                *(float2 *)(orow + n0 + 64 * b + 8 * j + 2 * q) = make_float2(acc[b][4 * j + 2 * h], acc[b][4 * j + 2 * h + 1]);
        }
    }
}

/* the finished tile rounded to DT into rows m of out16 [M][N] (N even: 4-byte aligned pairs) */
template <int DT> __device__ __forceinline__ void wgrad_store_rows16(const WArgs &p, int m0, int n0, const float (&acc)[4][32]) {
    const int tid = threadIdx.x, wg = tid >> 7, warp = (tid >> 5) & 3, lane = tid & 31, g = lane >> 2, q = lane & 3;
#pragma unroll
    for (int h = 0; h < 2; h++) {
        const int m = m0 + wg * 64 + warp * 16 + g + 8 * h;
        if (m >= p.M) continue;
        uint16_t *orow = p.out16 + (int64_t)m * p.N;
#pragma unroll
        for (int b = 0; b < 4; b++) {
            if (n0 + 64 * b >= p.N) continue;
#pragma unroll
            for (int j = 0; j < 8; j++)
                *(uint32_t *)(orow + n0 + 64 * b + 8 * j + 2 * q) =
                    (uint32_t)d_to16<DT>(acc[b][4 * j + 2 * h]) | ((uint32_t)d_to16<DT>(acc[b][4 * j + 2 * h + 1]) << 16);
        }
    }
}

__device__ __forceinline__ int flag_acquire(const int *f) {
    int v;
    asm volatile("ld.acquire.gpu.global.b32 %0, [%1];\n" : "=r"(v) : "l"(f) : "memory");
    return v;
}
__device__ __forceinline__ void flag_release(int *f, int v) {
    asm volatile("st.release.gpu.global.b32 [%0], %1;\n" ::"l"(f), "r"(v) : "memory");
}
#endif /* CONV_WG */

template <int DT> __global__ void __launch_bounds__(THREADS, 1) k_conv_wgmma_wgrad(const WArgs p) {
#ifdef CONV_WG
    extern __shared__ __align__(16) unsigned char smem_raw[];
    unsigned char *sm = smem_align1024(smem_raw);
    const int tid = threadIdx.x;
    float acc[4][32];
    if (p.units == 0) {   /* split-K */
        const int m0 = blockIdx.x * BM, n0 = blockIdx.y * BN, kbeg = blockIdx.z * p.k_split;
        wgrad_tile<DT>(p, sm, m0, n0, kbeg, min(p.K, kbeg + p.k_split), acc);
        wgrad_store_rows(p, p.part + (int64_t)blockIdx.z * p.M * p.N, m0, n0, acc);
        return;
    }
    /* stream-K: units [start(b), start(b + 1)) are block b's, walked backwards a tile at a time */
    const int G = gridDim.x, b = blockIdx.x;
    auto start = [&](int c) { return (int)((int64_t)c * p.units / G); };
    const int u0 = start(b);
    float4 *const slots = (float4 *)p.part;   /* slot c: 32 float4 a thread, [i][tid] (coalesced) */
    for (int u1 = start(b + 1); u1 > u0;) {
        const int t = (u1 - 1) / p.ktiles, ts = t * p.ktiles, ua = max(u0, ts);
        const int m0 = (t % p.mt) * BM, n0 = (t / p.mt) * BN;
        wgrad_tile<DT>(p, sm, m0, n0, (ua - ts) * BK, min(p.K, (u1 - ts) * BK), acc);
        if (u1 < ts + p.ktiles) {   /* not the tile's last unit (so the last units of this block's range): a part */
            float4 *slot = slots + (int64_t)b * (BM * BN / 4);
#pragma unroll
            for (int i = 0; i < 32; i++)
                slot[i * THREADS + tid] = make_float4(acc[i >> 3][(i & 7) * 4], acc[i >> 3][(i & 7) * 4 + 1],
                                                      acc[i >> 3][(i & 7) * 4 + 2], acc[i >> 3][(i & 7) * 4 + 3]);
            __threadfence();
            __syncthreads();
            if (tid == 0) flag_release(p.flags + b, 1);
        } else {
            if (ua > ts)   /* the tile began in blocks b - 1, b - 2, ... down to the one holding unit ts */
                for (int c = b - 1;; c--) {
                    if (tid == 0) {
                        while (flag_acquire(p.flags + c) == 0) __nanosleep(100);
                        p.flags[c] = 0;   /* consumed (read again only by the next launch) */
                    }
                    __syncthreads();
                    const float4 *slot = slots + (int64_t)c * (BM * BN / 4);
#pragma unroll
                    for (int i = 0; i < 32; i++) {
                        const float4 v = __ldcg(slot + i * THREADS + tid);
                        float *a = &acc[i >> 3][(i & 7) * 4];
                        a[0] += v.x; a[1] += v.y; a[2] += v.z; a[3] += v.w;
                    }
                    if (start(c) <= ts) break;
                }
            wgrad_store_rows16<DT>(p, m0, n0, acc);
        }
        u1 = ua;
    }
#endif /* CONV_WG */
}

/* NN_CONV_WG (A/B in one binary; read once): unset: all three wgmma kernels; 0: none; else the letters it holds
   (f FPROP, d DGRAD, w WGRAD) */
static bool enabled(int mode) {
    static int mask = -1;
    if (mask < 0) {
        const char *e = getenv("NN_CONV_WG");
        mask = 7;
        if (e && *e) mask = (strchr(e, 'f') ? 1 : 0) | (strchr(e, 'd') ? 2 : 0) | (strchr(e, 'w') ? 4 : 0);
    }
    return (mask >> mode) & 1;
}

/* conv_cu::split_k for these kernels: one block an SM, ~2.2 TFLOP/s a block (~290 TFLOP/s over 132 SMs) for 128 x
   256 tiles; k_conv_wgmma's 128 x 128 tiles (nb 128) at NARROW_RATE of that (a guess: half the B operand per A
   read, the same per-tile overheads). Measured 12-07 03:47 (bench/RESULTS_CUDA.md): the model's pick against 256
   everywhere, 128 wins the TF32 8x256x32x32 forward by 1.38x and is never picked where it loses) */
constexpr double NARROW_RATE = 0.85;
static int64_t choose_splits(int64_t tiles, int64_t ktiles, int64_t M, int64_t N, bool always_partials, int nb = BN,
                             double *best_t = nullptr) {
    return conv_cu::split_k(tiles, ktiles, M, N, always_partials, 1, 2.0 * BM * nb * BK, nb == BN ? 2.2e12 : 2.2e12 * NARROW_RATE,
                            64, best_t);
}

/* k_conv_wgmma's tile width: 0 the model's pick (run_out), else 256 or 128 (the tests, through
   nn__cuda_conv_wg_tile) */
static int tile_nb = 0;

/* log2 of s when s is a power of two, else -1 */
static int log2_exact(int s) {
    for (int l = 0; l < 30; l++)
        if (s == 1 << l) return l;
    return -1;
}

/* launches of k_conv_wgmma<NN_F32> by mode (FPROP, DGRAD), and of k_conv_wgmma by tile width (256, 128): the
   tests check that TF32 convs take it, and which tiles ran */
static int64_t tf32_runs[2], tile_runs[2];

/* conv_cu::run_out's problem on the wgmma kernel when it applies (sm_90a image, f16/bf16, or f32 on TF32 (conv_cu's
   DT NN_F32: operands rounded by its layout passes; 3xTF32 stays on conv_cu), FPROP, or DGRAD at power-of-two
   strides, CS a multiple of the K tile (64 16-bit or 32 f32 channels: 128 bytes), at least one full 128-row M
   tile, K of at least 8 tiles, the grid within limits); false: not taken, nothing launched. Short K (the dgrad
   of a 1x1 conv over 256 channels: 4 tiles) stays on conv_cu: with one block an SM nothing hides this kernel's
   prologue and epilogue, while conv_cu runs two blocks an SM. */
static bool run_out(int dt, int mode, const conv_cu::Args &c, void *out, int out_dt) {
    if (dt != NN_BF16 && dt != NN_F16 && !(dt == NN_F32 && out_dt == NN_F32)) return false;
    const int lh = log2_exact(c.sh), lw = log2_exact(c.sw), kt = bk_elems(dt);
    if (mode != conv_cu::FPROP && !(mode == conv_cu::DGRAD && lh >= 0 && lw >= 0)) return false;
    if (c.CS % kt || c.K % kt || c.K < 8 * kt || c.M < BM || c.N < 1) return false;
    if (((uintptr_t)c.a | (uintptr_t)c.b | (uintptr_t)out) & 15) return false;
    int64_t mt = (c.M + BM - 1) / BM, nt = (c.N + BN - 1) / BN;
    if (nt > 65535 || mt > 65535) return false;
    if (!enabled(mode) || !nn__cu_wgmma()) return false;
    Args a;
    memset(&a, 0, sizeof a);
    a.a = c.a; a.b = c.b; a.bias = c.bias; a.bias_dt = c.bias_dt; a.out_f32 = out_dt == NN_F32;
    a.M = c.M; a.N = c.N; a.K = c.K; a.plane = c.plane; a.ow = c.ow;
    a.SH = c.SH; a.SW = c.SW; a.CS = c.CS; a.kw = c.kw;
    if (mode == conv_cu::FPROP) {
        a.rs_h = c.sh; a.rs_w = c.sw; a.ro_h = -c.ph; a.ro_w = -c.pw; a.td_h = c.dh; a.td_w = c.dw;
    } else {
        a.rs_h = 1; a.rs_w = 1; a.ro_h = c.ph; a.ro_w = c.pw; a.td_h = -c.dh; a.td_w = -c.dw; a.ls_h = lh; a.ls_w = lw;
    }
    /* a TF32 K tile (32 f32) takes as long as a 16-bit one (64): half the products at half the rate, so the
       chooser's per-tile figures hold for both with ktiles counted in the kernel's tiles. The tile width: 128
       where its modelled time (twice the tiles, no split or fewer: less f32 partials' traffic) is the lower */
    const int64_t ktiles = a.K / kt, nt128 = (a.N + 127) / 128;
    double t256 = 0, t128 = 0;
    const int64_t s256 = choose_splits(mt * nt, ktiles, a.M, a.N, false, 256, &t256);
    const int64_t s128 = choose_splits(mt * nt128, ktiles, a.M, a.N, false, 128, &t128);
    const int nb = nt128 > 65535 ? 256 : tile_nb ? tile_nb : t128 < t256 ? 128 : 256;
    if (nb == 128) nt = nt128;
    int64_t splits = nb == 256 ? s256 : s128;
    int64_t per = (ktiles + splits - 1) / splits * kt;
    splits = (a.K + per - 1) / per;
    a.k_split = (int)per;
    nn_tensor *part = NULL;
    if (splits > 1) {
        part = nn__tmp(NN_F32, splits * a.M * a.N);
        a.part = (float *)part->data;
    } else {
        a.out = out;
    }
    static bool attr[6];
    const int di = (dt == NN_F32 ? 2 : dt == NN_BF16) + (nb == 128 ? 3 : 0);
    void (*const kerns[6])(const Args) = {k_conv_wgmma<NN_F16>, k_conv_wgmma<NN_BF16>, k_conv_wgmma<NN_F32>,
                                          k_conv_wgmma<NN_F16, 128>, k_conv_wgmma<NN_BF16, 128>, k_conv_wgmma<NN_F32, 128>};
    const int smem = STAGES * (A_BYTES + nb * 128) + 1024;
    if (!attr[di]) {
        NN_CU(cudaFuncSetAttribute(kerns[di], cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
        attr[di] = true;
    }
    kerns[di]<<<dim3((unsigned)mt, (unsigned)nt, (unsigned)splits), THREADS, smem, S_>>>(a);
    NN_LAUNCHED();
    if (dt == NN_F32) tf32_runs[mode == conv_cu::DGRAD]++;
    tile_runs[nb == 128]++;
    if (part) {
        conv_cu::k_conv_splitk_out<<<nn__grid((int64_t)a.M * a.N, 256), 256, 0, S_>>>(
            a.part, (int)splits, a.M, a.N, a.plane, a.bias, a.bias_dt, out, dt, out_dt == NN_F32);
        NN_LAUNCHED();
        nn_tensor_free(part);
    }
    return true;
}


/* WGRAD's schedule: 0 the cost model's pick (wgrad_stream_blocks), 1 split-K, 2 stream-K; wgrad_force_blocks > 0:
   stream-K on that many blocks. Only the tests change them (nn__cuda_conv_wgrad_schedule: tiles straddling many
   blocks at small sizes). */
static int wgrad_sched = 0, wgrad_force_blocks = 0;

/* blocks for the stream-K schedule of `tiles` tiles of ktiles K tiles, or 0 where split-K (`splits`, as
   choose_splits picked) is modelled faster. Split-K: its waves of blocks at the rate of choose_splits plus the
   f32 partials' traffic; stream-K (every SM busy, at least 8 units a block): the longest range at the same rate
   plus ~5 us for each slot that the tile straddling the most blocks sums (measured: 256 channels at 64x64, 8
   slots a tile, ran 26 us slower than split-K: bench/session_1206c/wgrad_2137). It must win by 5%: in practice where a
   tile spans at most 2-3 blocks (512 and 1024 channels of the bench's shapes), not at 128-256 channels or 1x1. */
static int64_t wgrad_stream_blocks(int64_t tiles, int64_t ktiles, int64_t M, int64_t N, int64_t splits) {
    const int64_t U = tiles * ktiles, sms = nn__cu.sms;
    if (wgrad_sched == 1 || U > INT32_MAX / 2) return 0;
    if (wgrad_sched == 2 && wgrad_force_blocks > 0) {
        const int64_t f = wgrad_force_blocks < sms ? wgrad_force_blocks : sms;
        return f < U ? f : U;
    }
    const int64_t G = U / 8 < 1 ? 1 : U / 8 < sms ? U / 8 : sms;
    if (wgrad_sched == 2) return G;
    const double unit = 2.0 * BM * BN * BK / 2.2e12, slot = 5e-6;
    const double t_split = (double)((tiles * splits + sms - 1) / sms) * ((ktiles + splits - 1) / splits) * unit +
                           splits * M * N * 8.0 / 2.5e12;
    const int64_t least = U / G, span = (ktiles + least - 1) / least;   /* the most slots one tile sums */
    const double t_stream = (double)((U + G - 1) / G) * unit + span * slot;
    return t_stream < 0.95 * t_split ? G : 0;
}

/* the stream-K flags, one int a block (at most the SMs), zero between launches: each launch clears what it
   raised. Made once. */
static int *stream_flags() {
    static int *flags;
    if (!flags) {
        NN_CU(cudaMalloc(&flags, sizeof(int) * (size_t)nn__cu.sms));
        NN_CU(cudaMemset(flags, 0, sizeof(int) * (size_t)nn__cu.sms));
    }
    return flags;
}

/* conv_cu::wgrad's problem (gw from dy and x, both NHWC in dt) on the wgmma kernel when it applies (sm_90a image,
   f16/bf16, C and O multiples of 64, O >= 128); false: not taken, nothing launched */
static bool wgrad(const nn__cg &g, const nn_tensor *dyn, const nn_tensor *xn, nn_tensor *gw) {
    const nn_dtype dt = dyn->dtype;
    if (dt != NN_BF16 && dt != NN_F16) return false;
    if (g.C % 64 || g.O % 64 || g.O < BM) return false;
    if (((uintptr_t)dyn->data | (uintptr_t)xn->data) & 15) return false;
    const int64_t kk = g.kh * g.kw, P = g.N * g.Ho * g.Wo, M = g.O, N = kk * g.C;
    const int64_t mt = (M + BM - 1) / BM, nt = (N + BN - 1) / BN, ktiles = (P + BK - 1) / BK;
    if (nt > 65535 || mt > 65535) return false;
    if (!enabled(conv_cu::WGRAD) || !nn__cu_wgmma()) return false;
    WArgs a;
    memset(&a, 0, sizeof a);
    a.a = (const uint16_t *)dyn->data; a.b = (const uint16_t *)xn->data;
    a.M = (int)M; a.N = (int)N; a.K = (int)P;
    a.SH = (int)g.H; a.SW = (int)g.W; a.CS = (int)g.C; a.kw = (int)g.kw;
    a.sh = (int)g.sh; a.sw = (int)g.sw; a.ph = (int)g.ph; a.pw = (int)g.pw; a.dh = (int)g.dh; a.dw = (int)g.dw;
    a.Ho = (int)g.Ho; a.Wo = (int)g.Wo;
    int64_t splits = choose_splits(mt * nt, ktiles, M, N, true);
    const int64_t blocks = wgrad_stream_blocks(mt * nt, ktiles, M, N, splits);
    static bool attr[2];
    const int di = dt == NN_BF16;
    auto kern = di ? k_conv_wgmma_wgrad<NN_BF16> : k_conv_wgmma_wgrad<NN_F16>;
    if (!attr[di]) {
        NN_CU(cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, SMEM));
        attr[di] = true;
    }
    if (blocks > 0) {   /* stream-K: the tiles as [O][kk][C] in dt, then [O][C][kk] into gw */
        nn_tensor *slots = nn__tmp(NN_F32, blocks * BM * BN), *t16 = nn__tmp(dt, M * N);
        a.part = (float *)slots->data; a.out16 = (uint16_t *)t16->data; a.flags = stream_flags();
        a.units = (int)(mt * nt * ktiles); a.ktiles = (int)ktiles; a.mt = (int)mt;
        kern<<<dim3((unsigned)blocks), THREADS, SMEM, S_>>>(a);
        NN_LAUNCHED();
        conv_cu::k_conv_wgrad_sum<<<dim3((unsigned)((g.C + conv_cu::WS_SLICE - 1) / conv_cu::WS_SLICE), (unsigned)g.O),
                                    256, (size_t)conv_cu::WS_SLICE * kk * 4, S_>>>(t16->data, dt, 1, gw->data, gw->dtype,
                                                                                   (int)g.O, (int)g.C, (int)kk);
        NN_LAUNCHED();
        nn_tensor_free(slots);
        nn_tensor_free(t16);
        return true;
    }
    const int64_t per = (ktiles + splits - 1) / splits * BK;
    splits = (P + per - 1) / per;
    if (splits > 65535) return false;
    a.k_split = (int)per;
    nn_tensor *part = nn__tmp(NN_F32, splits * M * N);
    a.part = (float *)part->data;
    kern<<<dim3((unsigned)mt, (unsigned)nt, (unsigned)splits), THREADS, SMEM, S_>>>(a);
    NN_LAUNCHED();
    conv_cu::k_conv_wgrad_sum<<<dim3((unsigned)((g.C + conv_cu::WS_SLICE - 1) / conv_cu::WS_SLICE), (unsigned)g.O), 256,
                                (size_t)conv_cu::WS_SLICE * kk * 4, S_>>>(part->data, NN_F32, (int)splits, gw->data,
                                                                           gw->dtype, (int)g.O, (int)g.C, (int)kk);
    NN_LAUNCHED();
    nn_tensor_free(part);
    return true;
}

} /* namespace conv_wg */

extern "C" {
/* tests: WGRAD's schedule on the wgmma kernel (0 the cost model's pick, 1 split-K, 2 stream-K) and, when blocks > 0,
   stream-K's block count */
void nn__cuda_conv_wgrad_schedule(int sched, int blocks) {
    conv_wg::wgrad_sched = sched;
    conv_wg::wgrad_force_blocks = blocks;
}
} /* extern "C" */

/* the fallback's launches, by element type: S for the source, D for the destination (f32 or 16-bit) */
template <typename S, typename D>
static void nn__conv_im2col_t(const void *x, nn_dtype xdt, void *cols, nn_dtype cdt, const nn__cg &g, int64_t nb) {
    const int64_t rows = g.C * g.kh * g.kw * nb, HW = g.Ho * g.Wo;
    if (HW > INT32_MAX || g.H * g.W > INT32_MAX || rows > INT32_MAX)
        nn_error("nn conv2d (cuda): im2col of %lld x %lld planes (output %lld x %lld) into %lld column rows: over 2^31",
                 (long long)g.H, (long long)g.W, (long long)g.Ho, (long long)g.Wo, (long long)rows);
    if (!rows || !HW) return;
    const int threads = HW >= 256 ? 256 : (int)(HW + 31) / 32 * 32;   /* a warp at least; small planes, fewer idle threads */
    const dim3 grid((unsigned)(g.C * g.kh * g.kw), (unsigned)((HW + threads - 1) / threads < 65535 ? (HW + threads - 1) / threads : 65535));
    k_im2col<S, D><<<grid, threads, 0, S_>>>((const S *)x, xdt, (D *)cols, cdt, g, (int)nb);
    NN_LAUNCHED();
}
static void nn__conv_im2col(const void *x, nn_dtype xdt, void *cols, nn_dtype cdt, const nn__cg &g, int64_t nb) {
    if (xdt == NN_F32 && cdt == NN_F32) nn__conv_im2col_t<float, float>(x, xdt, cols, cdt, g, nb);
    else if (xdt == NN_F32) nn__conv_im2col_t<float, uint16_t>(x, xdt, cols, cdt, g, nb);
    else nn__conv_im2col_t<uint16_t, uint16_t>(x, xdt, cols, cdt, g, nb);
}
static void nn__conv_swap01(const void *src, nn_dtype sdt, void *dst, nn_dtype ddt, int64_t A, int64_t B, int64_t HW,
                            const void *bias) {
    unsigned gr = nn__grid(A * B * HW, 256);
    if (sdt == NN_F32 && ddt == NN_F32)
        k_swap01<<<gr, 256, 0, S_>>>((const float *)src, sdt, (float *)dst, ddt, A, B, HW, (const float *)bias);
    else if (sdt == NN_F32)
        k_swap01<<<gr, 256, 0, S_>>>((const float *)src, sdt, (uint16_t *)dst, ddt, A, B, HW, (const uint16_t *)bias);
    else if (ddt == NN_F32)
        k_swap01<<<gr, 256, 0, S_>>>((const uint16_t *)src, sdt, (float *)dst, ddt, A, B, HW, (const float *)bias);
    else
        k_swap01<<<gr, 256, 0, S_>>>((const uint16_t *)src, sdt, (uint16_t *)dst, ddt, A, B, HW, (const uint16_t *)bias);
    NN_LAUNCHED();
}

extern "C" {

/* k_conv_wgmma<NN_F32> launches so far for mode 0 (FPROP) or 1 (DGRAD) (tests: TF32 convs take the wgmma kernel) */
long long nn__cuda_conv_wg_tf32_runs(int mode) { return (long long)conv_wg::tf32_runs[mode != 0]; }
/* k_conv_wgmma's tile width for the next launches: 0 the model's pick, 256 or 128, < 0 unchanged (tests); returns
   the launches so far of 128-wide tiles */
long long nn__cuda_conv_wg_tile(int nb) {
    if (nb >= 0) conv_wg::tile_nb = nb == 128 || nb == 256 ? nb : 0;
    return (long long)conv_wg::tile_runs[1];
}

/* The TF32 weight gradient's product (f32 weights, TF32 on): 0 the rule in nn__conv_tf32_wgrad_gemm, 1 conv_cu's
   mma.sync kernel, 2 im2col + cuBLAS's TF32 GEMM; < 0 unchanged (tests, cuda_bench tf32wg). Returns the weight
   gradients computed on cuBLAS so far. */
static int nn__tf32_wgrad_path = 0;
static long long nn__tf32_wgrad_gemm_runs = 0;
long long nn__cuda_conv_tf32_wgrad(int path) {
    if (path >= 0) nn__tf32_wgrad_path = path <= 2 ? path : 0;
    return nn__tf32_wgrad_gemm_runs;
}

/* y = conv2d(x, w, b). f32 weights: x f32, conv_cu where it applies (TF32 when allowed, through conv_wg's wgmma
   kernel where that applies; else 3xTF32), else im2col + cuBLAS (TF32 when allowed). f16/bf16 weights: y and b in
   the weight's dtype, x in it or f32 (converted where the kernels lay it out), conv_cu where it applies. *x_keep (when not NULL) receives x's NHWC copy in the
   weight's dtype when the backward can do with it instead of x (16-bit weights, both gradient products on
   tensor cores), else NULL. */
void nn__cuda_conv2d_fwd(const nn_tensor *x, const nn_tensor *w, const nn_tensor *b, const int stride[2],
                         const int padding[2], const int dilation[2], int groups, nn_tensor *y, nn_tensor **x_keep) {
    nn__cu_init();
    if (x_keep) *x_keep = NULL;
    if (!y->numel) return;
    nn__cg g = nn__conv_geom_of(x, w, y, stride, padding, dilation, groups);
    if (y->dtype != w->dtype || (b && b->dtype != w->dtype) || (x->dtype != w->dtype && x->dtype != NN_F32))
        nn_error("nn conv2d (cuda): dtypes x %s, w %s, b %s, y %s do not fit", nn_dtype_name(x->dtype), nn_dtype_name(w->dtype),
                 b ? nn_dtype_name(b->dtype) : "-", nn_dtype_name(y->dtype));
    const int kdt = conv_cu::kernel_dt(w->dtype);
    if (conv_cu::fprop_ok(g, kdt)) {
        nn_tensor *xn = conv_cu::fprop(g, x, w, b, y, kdt);
        /* f32: no x_keep (the backward may run another kernel type, TF32 or not, than this copy was made for) */
        if (x_keep && w->dtype != NN_F32 && conv_cu::wgrad_ok(g, kdt)) *x_keep = xn;
        else nn_tensor_free(xn);
        return;
    }
    int64_t HW = g.Ho * g.Wo, Cg = g.C / g.G, Og = g.O / g.G, K = Cg * g.kh * g.kw, R = g.C * g.kh * g.kw;
    int64_t nbmax = nn__conv_chunk(g), es = (int64_t)nn_dtype_size(w->dtype);
    nn_tensor *ws = nn__tmp(NN_F32, nbmax * (R + g.O) * HW);
    char *cols = (char *)ws->data;
    float *yt = (float *)ws->data + nbmax * R * HW;
    for (int64_t n0 = 0; n0 < g.N; n0 += nbmax) {
        int64_t nb = g.N - n0 < nbmax ? g.N - n0 : nbmax, L = nb * HW;
        if (K) nn__conv_im2col((const char *)x->data + n0 * g.C * g.H * g.W * (int64_t)nn_dtype_size(x->dtype), x->dtype, cols, w->dtype, g, nb);
        for (int64_t gi = 0; gi < g.G; gi++)
            nn__gemm_raw(0, 0, Og, L, K, 1.0f, (const char *)w->data + gi * Og * K * es, w->dtype, K, 0, cols + gi * K * L * es,
                         w->dtype, L, 0, 0.0f, yt + gi * Og * L, NN_F32, L, 0, 1, !nn__cu.conv_ieee);
        nn__conv_swap01(yt, NN_F32, (char *)y->data + n0 * g.O * HW * es, y->dtype, g.O, nb, HW, b ? b->data : NULL);
    }
    nn_tensor_free(ws);
}

/* Whether the TF32 weight gradient goes to im2col + cuBLAS (the fallback in nn__cuda_conv2d_bwd) instead of
   conv_cu's mma.sync kernel. The 16-bit weight gradient has a wgmma kernel (conv_wg); TF32 has none, since wgmma
   takes TF32 operands only K-major and both of WGRAD's are MN-major in NHWC. cuBLAS's TF32 GEMM on the columns
   (both operands K-major) runs on wgmma, at the price of the column matrix (kh kw times x) in memory.
   Rule: cuBLAS from 512 output channels. `cuda_bench tf32wg` (H100, 12-07 14:35, bench/RESULTS_CUDA.md) timed the
   fwd+bwd at [8, C, H, W] -> C channels, 3 x 3: 128 x 64 x 64 0.2596 ms on mma.sync, 0.4772 on cuBLAS; 256 x 32 x 32
   0.2373 / 0.3231; 512 x 16 x 16 0.2853 / 0.2735. */
static bool nn__conv_tf32_wgrad_gemm(const nn__cg &g, int kdt, const nn_tensor *x) {
    if (kdt != NN_F32 || !x) return false;
    const bool gemm = nn__tf32_wgrad_path == 2 || (nn__tf32_wgrad_path == 0 && g.O >= 512);
    if (gemm) nn__tf32_wgrad_gemm_runs++;
    return gemm;
}

/* gx, gw, gb (any may be NULL) of conv2d; gy of any float dtype. x: the NCHW input, or NULL when xk (the forward's
   x_keep, [N, H, W, C]) is given; x_shape: x's NCHW shape. Low precision: gx in x's dtype (an f32 x's gradient
   rounded through w's dtype first, as torch's gradient of the cast), gw in w's, gb in b's; the products read gy
   converted to w's dtype (as autocast's backward) */
void nn__cuda_conv2d_bwd(const nn_tensor *gy, const nn_tensor *x, const nn_tensor *xk, const int64_t x_shape[4],
                         const nn_tensor *w, const int stride[2], const int padding[2], const int dilation[2], int groups,
                         nn_tensor *gx, nn_tensor *gw, nn_tensor *gb) {
    nn__cu_init();
    nn__cg g;
    g.N = x_shape[0]; g.C = x_shape[1]; g.H = x_shape[2]; g.W = x_shape[3];
    g.O = w->shape[0]; g.kh = w->shape[2]; g.kw = w->shape[3]; g.Ho = gy->shape[2]; g.Wo = gy->shape[3];
    g.sh = stride[0]; g.sw = stride[1]; g.ph = padding[0]; g.pw = padding[1]; g.dh = dilation[0]; g.dw = dilation[1]; g.G = groups;
    int64_t HW = g.Ho * g.Wo, Cg = g.C / g.G, Og = g.O / g.G, K = Cg * g.kh * g.kw, R = g.C * g.kh * g.kw;
    int64_t nbmax = nn__conv_chunk(g);
    nn_dtype cdt = w->dtype;   /* the GEMM operands' dtype */
    int64_t es = (int64_t)nn_dtype_size(cdt), ges = (int64_t)nn_dtype_size(gy->dtype);
    if (gb) {
        if (!gy->numel) nn__cuda_fill(gb, 0.0);
        else if (gy->dtype == NN_F32 && gb->dtype == NN_F32) {
            nn_tensor *t = nn__tmp(NN_F32, g.N * g.O);
            nn__reduce3(R_SUM, (const float *)gy->data, g.N * g.O, HW, 1, (float *)t->data, NULL, NULL, 1.0f);
            nn__reduce3(R_SUM, (const float *)t->data, 1, g.N, g.O, (float *)gb->data, NULL, NULL, 1.0f);
            nn_tensor_free(t);
        } else {
            nn_tensor *t = nn__tmp(NN_F32, g.N * g.O);
            if (gy->dtype == NN_F32) k_conv_bias_planes<<<(unsigned)(g.N * g.O), 256, 0, S_>>>((const float *)gy->data, gy->dtype, (float *)t->data, HW);
            else k_conv_bias_planes<<<(unsigned)(g.N * g.O), 256, 0, S_>>>((const uint16_t *)gy->data, gy->dtype, (float *)t->data, HW);
            NN_LAUNCHED();
            k_conv_bias_sum<<<nn__grid(g.O, 256), 256, 0, S_>>>((const float *)t->data, gb->data, gb->dtype, g.N, g.O);
            NN_LAUNCHED();
            nn_tensor_free(t);
        }
    }
    if (!gx && !gw) return;
    if (gw && (!gy->numel || !HW)) nn__cuda_fill(gw, 0.0);
    if (gx && (!HW || !K || !gy->numel)) nn__cuda_fill(gx, 0.0);
    if (!gy->numel || !HW || !K) return;
    {   /* the tensor-core products where they apply; the rest below */
        const int kdt = cdt != NN_F32 || gy->dtype == NN_F32 ? conv_cu::kernel_dt(cdt) : -1;   /* f32 kernels: f32 gy */
        bool dg = gx && conv_cu::dgrad_ok(g, kdt), wg = gw && conv_cu::wgrad_ok(g, kdt) && !nn__conv_tf32_wgrad_gemm(g, kdt, x);
        if (dg || wg) {
            nn_tensor *dyn = conv_cu::to_nhwc(gy, kdt);
            if (dg) { conv_cu::dgrad(g, dyn, w, gx, kdt); gx = NULL; }
            if (wg) {
                nn_tensor *xn = xk ? NULL : conv_cu::to_nhwc(x, kdt);
                conv_cu::wgrad(g, dyn, xk ? xk : xn, gw, kdt);
                gw = NULL;
                if (xn) nn_tensor_free(xn);
            }
            nn_tensor_free(dyn);
            if (!gx && !gw) return;
        }
    }
    if (gw && !x) nn_error("nn conv2d backward (cuda): the weight gradient needs the NCHW input");
    /* gw accumulates over the chunks in f32 (a separate buffer when gw is low precision) */
    nn_tensor *gwf = gw && gw->dtype != NN_F32 ? nn__tmp(NN_F32, gw->numel) : NULL;
    float *gwp = gwf ? (float *)gwf->data : gw ? (float *)gw->data : NULL;
    nn_tensor *ws = nn__tmp(NN_F32, nbmax * (R + g.O) * HW);
    char *cols = (char *)ws->data;   /* the columns in cdt, then dcols in f32 */
    char *gt = (char *)((float *)ws->data + nbmax * R * HW);
    for (int64_t n0 = 0; n0 < g.N; n0 += nbmax) {
        int64_t nb = g.N - n0 < nbmax ? g.N - n0 : nbmax, L = nb * HW;
        nn__conv_swap01((const char *)gy->data + n0 * g.O * HW * ges, gy->dtype, gt, cdt, nb, g.O, HW, NULL);   /* -> [O][nb][HW] */
        if (gw) {
            nn__conv_im2col((const char *)x->data + n0 * g.C * g.H * g.W * (int64_t)nn_dtype_size(x->dtype), x->dtype, cols, cdt, g, nb);
            for (int64_t gi = 0; gi < g.G; gi++)   /* gw[g] (+)= dY'[g] [Og, L] cols[g]^T [L, K] */
                nn__gemm_raw(0, 1, Og, K, L, 1.0f, gt + gi * Og * L * es, cdt, L, 0, cols + gi * K * L * es, cdt, L, 0,
                             n0 == 0 ? 0.0f : 1.0f, gwp + gi * Og * K, NN_F32, K, 0, 1, !nn__cu.conv_ieee);
        }
        if (gx) {
            for (int64_t gi = 0; gi < g.G; gi++)   /* dcols[g] [K, L] = W[g]^T [K, Og] dY'[g] [Og, L] */
                nn__gemm_raw(1, 0, K, L, Og, 1.0f, (const char *)w->data + gi * Og * K * es, cdt, K, 0, gt + gi * Og * L * es,
                             cdt, L, 0, 0.0f, (float *)cols + gi * K * L, NN_F32, L, 0, 1, !nn__cu.conv_ieee);
            unsigned gr = nn__grid(nb * g.C * g.H * g.W, 256);
            int64_t off = n0 * g.C * g.H * g.W;
            if (gx->dtype == NN_F32) k_col2im<<<gr, 256, 0, S_>>>((const float *)cols, (float *)gx->data + off, gx->dtype, cdt, g, nb);
            else k_col2im<<<gr, 256, 0, S_>>>((const float *)cols, (uint16_t *)gx->data + off, gx->dtype, NN_F32, g, nb);
            NN_LAUNCHED();
        }
    }
    if (gwf) { nn__cuda_cast(gwf, gw); nn_tensor_free(gwf); }
    nn_tensor_free(ws);
}

} /* extern "C" */

/* upsample_nearest2d: source index as wip/ops_conv.h's nn__nearest_src (float scale, floor, clamped) */
__device__ __forceinline__ int64_t d_nearest_src(int64_t dst, int64_t in, int64_t out) {
    if (out == in) return dst;
    if (out == 2 * in) return dst >> 1;
    float scale = __fdiv_rn((float)in, (float)out);
    int64_t s = (int64_t)floorf(__fmul_rn((float)dst, scale));
    return s < in - 1 ? s : in - 1;
}
__global__ void k_upsample_fwd(const float *__restrict__ x, float *__restrict__ y, int64_t planes, int64_t H, int64_t W,
                               int64_t Ho, int64_t Wo) {
    int64_t n = planes * Ho * Wo;
    for (int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; t < n; t += (int64_t)gridDim.x * blockDim.x) {
        int64_t ow = t % Wo, oh = (t / Wo) % Ho, pl = t / (Wo * Ho);
        y[t] = x[(pl * H + d_nearest_src(oh, H, Ho)) * W + d_nearest_src(ow, W, Wo)];
    }
}
/* gather: the outputs reading input (h, w) form a contiguous range per axis (the source map is monotone) */
__global__ void k_upsample_bwd(const float *__restrict__ g, float *__restrict__ gx, int64_t planes, int64_t H, int64_t W,
                               int64_t Ho, int64_t Wo, const int64_t *__restrict__ rh, const int64_t *__restrict__ rw) {
    int64_t n = planes * H * W;
    for (int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; t < n; t += (int64_t)gridDim.x * blockDim.x) {
        int64_t iw = t % W, ih = (t / W) % H, pl = t / (W * H);
        float acc = 0;
        for (int64_t oh = rh[ih]; oh < rh[ih + 1]; oh++)
            for (int64_t ow = rw[iw]; ow < rw[iw + 1]; ow++) acc += g[(pl * Ho + oh) * Wo + ow];
        gx[t] = acc;
    }
}

__global__ void k_avg_pool_fwd(const float *__restrict__ x, float *__restrict__ y, int64_t planes, int64_t H, int64_t W,
                               int64_t Ho, int64_t Wo, int k, int s, int p) {
    int64_t n = planes * Ho * Wo;
    float inv = 1.0f / (float)(k * k);
    for (int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; t < n; t += (int64_t)gridDim.x * blockDim.x) {
        int64_t ow = t % Wo, oh = (t / Wo) % Ho, pl = t / (Wo * Ho);
        int64_t h0 = oh * s - p, h1 = h0 + k, w0 = ow * s - p, w1 = w0 + k;
        if (h0 < 0) h0 = 0;
        if (h1 > H) h1 = H;
        if (w0 < 0) w0 = 0;
        if (w1 > W) w1 = W;
        float acc = 0;
        for (int64_t ih = h0; ih < h1; ih++)
            for (int64_t iw = w0; iw < w1; iw++) acc += x[(pl * H + ih) * W + iw];
        y[t] = acc * inv;
    }
}
__global__ void k_avg_pool_bwd(const float *__restrict__ g, float *__restrict__ gx, int64_t planes, int64_t H, int64_t W,
                               int64_t Ho, int64_t Wo, int k, int s, int p) {
    int64_t n = planes * H * W;
    float inv = 1.0f / (float)(k * k);
    for (int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; t < n; t += (int64_t)gridDim.x * blockDim.x) {
        int64_t iw = t % W, ih = (t / W) % H, pl = t / (W * H);
        /* windows oh with oh*s - p <= ih < oh*s - p + k */
        int64_t oh0 = ih + p - k + 1, oh1 = (ih + p) / s, ow0 = iw + p - k + 1, ow1 = (iw + p) / s;
        oh0 = oh0 <= 0 ? 0 : (oh0 + s - 1) / s;
        ow0 = ow0 <= 0 ? 0 : (ow0 + s - 1) / s;
        if (oh1 > Ho - 1) oh1 = Ho - 1;
        if (ow1 > Wo - 1) ow1 = Wo - 1;
        float acc = 0;
        for (int64_t oh = oh0; oh <= oh1; oh++)
            for (int64_t ow = ow0; ow <= ow1; ow++) acc += g[(pl * Ho + oh) * Wo + ow] * inv;
        gx[t] = acc;
    }
}

__device__ __forceinline__ int64_t d_ad_start(int64_t i, int64_t in, int64_t out) { return (i * in) / out; }
__device__ __forceinline__ int64_t d_ad_end(int64_t i, int64_t in, int64_t out) { return ((i + 1) * in + out - 1) / out; }
/* Adaptive average pooling: the windows and the sums of nn.h's loops, in the same order. The window bounds take
   64-bit divisions, which were most of the time when each thread found them for one value (0.64 ms for the
   backward of seed 001's 73x73 -> 32x32 over 3072 planes): here a thread finds them once for its pixel and
   then runs down NN__AD_PLANES planes (grid.y), where the work is loads and adds. */
#define NN__AD_PLANES 16
#define NN__AD_WIN 4   /* windows per dim kept in registers for the backward (pooling down: at most 2) */
static dim3 nn__adaptive_grid(int64_t pixels, int64_t planes) {
    int64_t gy = (planes + NN__AD_PLANES - 1) / NN__AD_PLANES;
    return dim3((unsigned)((pixels + 255) / 256), (unsigned)(gy > 65535 ? 65535 : gy));
}
__global__ void k_adaptive_fwd(const float *__restrict__ x, float *__restrict__ y, int64_t planes, int64_t H, int64_t W,
                               int64_t Ho, int64_t Wo) {
    int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (t >= Ho * Wo) return;
    int64_t oh = t / Wo, ow = t - oh * Wo;
    int64_t h0 = d_ad_start(oh, H, Ho), h1 = d_ad_end(oh, H, Ho), w0 = d_ad_start(ow, W, Wo), w1 = d_ad_end(ow, W, Wo);
    float area = (float)((h1 - h0) * (w1 - w0));
    for (int64_t p0 = blockIdx.y * (int64_t)NN__AD_PLANES; p0 < planes; p0 += (int64_t)gridDim.y * NN__AD_PLANES)
        for (int64_t pl = p0; pl < p0 + NN__AD_PLANES && pl < planes; pl++) {
            const float *xp = x + pl * H * W;
            float acc = 0;
            for (int64_t ih = h0; ih < h1; ih++)
                for (int64_t iw = w0; iw < w1; iw++) acc += xp[ih * W + iw];
            y[pl * Ho * Wo + t] = acc / area;
        }
}
/* the output windows of one dim that contain input index i: o in [floor(i out / in), ceil((i + 1) out / in)),
   each checked against its bounds; up to NN__AD_WIN of them (o0[k], their sizes sz[k]), or -1 when more */
__device__ __forceinline__ int d_ad_windows(int64_t i, int64_t in, int64_t out, int64_t o0[NN__AD_WIN], int64_t sz[NN__AD_WIN]) {
    int64_t a = (i * out) / in, b = ((i + 1) * out + in - 1) / in;
    int n = 0;
    if (b > out) b = out;
    for (int64_t o = a; o < b; o++) {
        int64_t s = d_ad_start(o, in, out), e = d_ad_end(o, in, out);
        if (i < s || i >= e) continue;
        if (n == NN__AD_WIN) return -1;
        o0[n] = o; sz[n] = e - s; n++;
    }
    return n;
}
__global__ void k_adaptive_bwd(const float *__restrict__ g, float *__restrict__ gx, int64_t planes, int64_t H, int64_t W,
                               int64_t Ho, int64_t Wo) {
    int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (t >= H * W) return;
    int64_t ih = t / W, iw = t - ih * W, oh[NN__AD_WIN], sh[NN__AD_WIN], ow[NN__AD_WIN], sw[NN__AD_WIN];
    int nh = d_ad_windows(ih, H, Ho, oh, sh), nw = d_ad_windows(iw, W, Wo, ow, sw);
    for (int64_t p0 = blockIdx.y * (int64_t)NN__AD_PLANES; p0 < planes; p0 += (int64_t)gridDim.y * NN__AD_PLANES)
        for (int64_t pl = p0; pl < p0 + NN__AD_PLANES && pl < planes; pl++) {
            const float *gp = g + pl * Ho * Wo;
            float acc = 0;
            if (nh >= 0 && nw >= 0) {
                for (int a = 0; a < nh; a++)
                    for (int c = 0; c < nw; c++) acc += gp[oh[a] * Wo + ow[c]] / (float)(sh[a] * sw[c]);
            } else {   /* many windows per pixel (pooling up by more than NN__AD_WIN - 1): find them per plane */
                for (int64_t o = (ih * Ho) / H; o < Ho && d_ad_start(o, H, Ho) <= ih; o++) {
                    int64_t h0 = d_ad_start(o, H, Ho), h1 = d_ad_end(o, H, Ho);
                    if (ih >= h1) continue;
                    for (int64_t q = (iw * Wo) / W; q < Wo && d_ad_start(q, W, Wo) <= iw; q++) {
                        int64_t w0 = d_ad_start(q, W, Wo), w1 = d_ad_end(q, W, Wo);
                        if (iw >= w1) continue;
                        acc += gp[o * Wo + q] / (float)((h1 - h0) * (w1 - w0));
                    }
                }
            }
            gx[pl * H * W + t] = acc;
        }
}

/* host: first output index reading each input index (in + 1 entries), the nearest map being monotone */
static void nn__nearest_ranges(int64_t in, int64_t out, int64_t *r) {
    int64_t o = 0;
    for (int64_t i = 0; i <= in; i++) {
        while (o < out) {
            int64_t s;
            if (out == in) s = o;
            else if (out == 2 * in) s = o >> 1;
            else { float sc = (float)in / (float)out; s = (int64_t)floorf((float)o * sc); if (s > in - 1) s = in - 1; }
            if (s >= i) break;
            o++;
        }
        r[i] = o;
    }
}

extern "C" {

void nn__cuda_upsample_nearest2d_fwd(const nn_tensor *x, nn_tensor *y) {
    nn__cu_init();
    if (!y->numel) return;
    int64_t planes = x->shape[0] * x->shape[1];
    k_upsample_fwd<<<nn__grid(y->numel, 256), 256, 0, S_>>>((const float *)x->data, (float *)y->data, planes, x->shape[2],
                                                           x->shape[3], y->shape[2], y->shape[3]);
    NN_LAUNCHED();
}

void nn__cuda_upsample_nearest2d_bwd(const nn_tensor *g, nn_tensor *gx) {
    int64_t H = gx->shape[2], W = gx->shape[3], Ho = g->shape[2], Wo = g->shape[3], planes = gx->shape[0] * gx->shape[1];
    nn__cu_init();
    if (!gx->numel) return;
    int64_t *host = (int64_t *)malloc(sizeof(int64_t) * (size_t)(H + W + 2));
    if (!host) nn_error("nn_upsample_nearest2d: out of host memory");
    nn__nearest_ranges(H, Ho, host);
    nn__nearest_ranges(W, Wo, host + H + 1);
    nn_tensor *t = nn__tmp(NN_I64, H + W + 2);
    nn__cuda_memcpy(t->data, host, sizeof(int64_t) * (size_t)(H + W + 2), 0);
    free(host);
    k_upsample_bwd<<<nn__grid(gx->numel, 256), 256, 0, S_>>>((const float *)g->data, (float *)gx->data, planes, H, W, Ho, Wo,
                                                            (const int64_t *)t->data, (const int64_t *)t->data + H + 1);
    NN_LAUNCHED();
    nn_tensor_free(t);
}

void nn__cuda_avg_pool2d_fwd(const nn_tensor *x, int kernel, int stride, int padding, nn_tensor *y) {
    nn__cu_init();
    if (!y->numel) return;
    k_avg_pool_fwd<<<nn__grid(y->numel, 256), 256, 0, S_>>>((const float *)x->data, (float *)y->data,
                                                           x->shape[0] * x->shape[1], x->shape[2], x->shape[3],
                                                           y->shape[2], y->shape[3], kernel, stride, padding);
    NN_LAUNCHED();
}

void nn__cuda_avg_pool2d_bwd(const nn_tensor *g, int kernel, int stride, int padding, nn_tensor *gx) {
    nn__cu_init();
    if (!gx->numel) return;
    k_avg_pool_bwd<<<nn__grid(gx->numel, 256), 256, 0, S_>>>((const float *)g->data, (float *)gx->data,
                                                            gx->shape[0] * gx->shape[1], gx->shape[2], gx->shape[3],
                                                            g->shape[2], g->shape[3], kernel, stride, padding);
    NN_LAUNCHED();
}

void nn__cuda_adaptive_avg_pool2d_fwd(const nn_tensor *x, nn_tensor *y) {
    nn__cu_init();
    if (!y->numel) return;
    k_adaptive_fwd<<<nn__adaptive_grid(y->shape[2] * y->shape[3], x->shape[0] * x->shape[1]), 256, 0, S_>>>((const float *)x->data, (float *)y->data,
                                                           x->shape[0] * x->shape[1], x->shape[2], x->shape[3],
                                                           y->shape[2], y->shape[3]);
    NN_LAUNCHED();
}

void nn__cuda_adaptive_avg_pool2d_bwd(const nn_tensor *g, nn_tensor *gx) {
    nn__cu_init();
    if (!gx->numel) return;
    k_adaptive_bwd<<<nn__adaptive_grid(gx->shape[2] * gx->shape[3], gx->shape[0] * gx->shape[1]), 256, 0, S_>>>((const float *)g->data, (float *)gx->data,
                                                            gx->shape[0] * gx->shape[1], gx->shape[2], gx->shape[3],
                                                            g->shape[2], g->shape[3]);
    NN_LAUNCHED();
}

} /* extern "C" */

/* ---------------------------------------------------------------------------------------- index and loss */
/* The GPU twins of nn.h's [ops:index] and [ops:loss], named like the CPU kernels they mirror (same formulas).
   - Index tensors are i32 or i64 (d_idx reads either).
   - Range checks (nn__cuda_il_first_bad): a kernel finds the first bad position with an integer atomicMin, and
     the host reads that one value back: a small device->host copy, so one sync per indexing op. Deliberate: the
     error must name the op, the bad value and its position exactly as the CPU's does, before the op returns and
     before a garbage gather can run; a flag checked at a later sync would blame whatever op came next.
   - Accumulating scatters (embedding / index_select / gather backward, scatter_add forward) use no float
     atomics: the (destination, source) pairs are sorted by destination with CUB's stable radix sort, so each
     destination's sources keep the CPU's order, and one thread adds a destination's run in that order onto its
     old value. The result is bitwise the CPU's and does not change from run to run.
   - topk sorts (line, order key) pairs with the same stable sort: ties keep increasing index order (the CPU's
     documented order), NaN sits above every number, -0 equals +0.
   - Loss sums accumulate in double over a fixed tree (per-block partials, then one block). The 0-dim loss stays
     on the device; backward kernels read the upstream gradient from device memory. */

__device__ __forceinline__ int64_t d_idx(const void *p, int is64, int64_t i) {
    return is64 ? ((const int64_t *)p)[i] : (int64_t)((const int32_t *)p)[i];
}

__global__ void k_il_first_bad(const void *idx, int is64, int64_t n, int64_t size, int64_t ignore, int use_ignore,
                               unsigned long long *first) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t v = d_idx(idx, is64, i);
        if (use_ignore && v == ignore) continue;
        if (v < 0 || v >= size) atomicMin(first, (unsigned long long)i);
    }
}

/* number of bits that hold every value in [0, x] */
static int nn__cu_bits(uint64_t x) {
    int b = 1;
    while (b < 64 && (x >> b) != 0) b++;
    return b;
}

/* sort (key, val) pairs by key, stably (equal keys keep their order); replaces *keys and *vals */
static void nn__cu_sort_pairs(nn_tensor **keys, nn_tensor **vals, int64_t m, uint64_t max_key) {
    nn_tensor *ko, *vo, *tmp;
    size_t bytes = 0;
    int eb = nn__cu_bits(max_key);
    if (m > (int64_t)0x7fffffff) nn_error("nn cuda: sort of %lld entries exceeds the 2^31 limit of this path", (long long)m);
    ko = nn__tmp(NN_I64, m);
    vo = nn__tmp(NN_I64, m);
    NN_CU(cub::DeviceRadixSort::SortPairs(NULL, bytes, (const uint64_t *)(*keys)->data, (uint64_t *)ko->data,
                                          (const int64_t *)(*vals)->data, (int64_t *)vo->data, (int)m, 0, eb, S_));
    tmp = nn__tmp(NN_U8, (int64_t)bytes);
    NN_CU(cub::DeviceRadixSort::SortPairs(tmp->data, bytes, (const uint64_t *)(*keys)->data, (uint64_t *)ko->data,
                                          (const int64_t *)(*vals)->data, (int64_t *)vo->data, (int)m, 0, eb, S_));
    nn_tensor_free(tmp);
    nn_tensor_free(*keys);
    nn_tensor_free(*vals);
    *keys = ko;
    *vals = vo;
}

/* dst[key*W + w] += src[val*W + w] over a key-sorted run, one thread per (run start, w), in run order */
__global__ void k_il_seg_add(float *__restrict__ dst, const float *__restrict__ src, int64_t W,
                             const uint64_t *__restrict__ key, const int64_t *__restrict__ val, int64_t m) {
    int64_t total = m * W;
    for (int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; t < total; t += (int64_t)gridDim.x * blockDim.x) {
        int64_t p = t / W, w = t % W, q;
        uint64_t k = key[p];
        float acc;
        if (p > 0 && key[p - 1] == k) continue;
        acc = dst[(int64_t)k * W + w];
        for (q = p; q < m && key[q] == k; q++) acc += src[val[q] * W + w];
        dst[(int64_t)k * W + w] = acc;
    }
}

static void nn__cu_sorted_add(float *dst, const float *src, int64_t W, nn_tensor *keys, nn_tensor *vals, int64_t m,
                              uint64_t max_key) {
    nn__cu_sort_pairs(&keys, &vals, m, max_key);
    k_il_seg_add<<<nn__grid(m * W, 256), 256, 0, S_>>>(dst, src, W, (const uint64_t *)keys->data,
                                                      (const int64_t *)vals->data, m);
    NN_LAUNCHED();
    nn_tensor_free(keys);
    nn_tensor_free(vals);
}

__global__ void k_il_rows_copy(float *__restrict__ dst, const float *__restrict__ src, int64_t outer, int64_t sn,
                               int64_t inner, const void *idx, int is64, int64_t n) {
    int64_t total = outer * n * inner;
    for (int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; t < total; t += (int64_t)gridDim.x * blockDim.x) {
        int64_t k = t % inner, r = t / inner, o = r / n, j = r % n;
        dst[t] = src[(o * sn + d_idx(idx, is64, j)) * inner + k];
    }
}

__global__ void k_il_rows_keys(const void *idx, int is64, int64_t outer, int64_t n, int64_t dn, uint64_t *key,
                               int64_t *val) {
    int64_t m = outer * n;
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < m; e += (int64_t)gridDim.x * blockDim.x) {
        key[e] = (uint64_t)((e / n) * dn + d_idx(idx, is64, e % n));
        val[e] = e;
    }
}

/* gather / scatter geometry: coordinates of idx's element p; a-offset with dim replaced by the index, and the
   offset in a third tensor (strides sstr over idx's coordinates) */
struct nn__cu_geo {
    int ndim, dim;
    int64_t ishape[NN_MAX_DIMS], astr[NN_MAX_DIMS], sstr[NN_MAX_DIMS];
};

__device__ __forceinline__ void d_geo(const nn__cu_geo &G, int64_t iv, int64_t p, int64_t *ao, int64_t *so) {
    int64_t rem = p, a = 0, s = 0;
    for (int d = G.ndim - 1; d >= 0; d--) {
        int64_t c = rem % G.ishape[d];
        rem /= G.ishape[d];
        if (d != G.dim) a += c * G.astr[d];
        s += c * G.sstr[d];
    }
    *ao = a + (G.ndim ? iv * G.astr[G.dim] : 0);
    *so = s;
}

static nn__cu_geo nn__cu_geo_of(const nn_tensor *idx, int dim, const int64_t *astr, const int64_t *sstr) {
    nn__cu_geo G;
    memset(&G, 0, sizeof G);
    G.ndim = idx->ndim;
    G.dim = dim;
    for (int d = 0; d < idx->ndim; d++) { G.ishape[d] = idx->shape[d]; G.astr[d] = astr[d]; G.sstr[d] = sstr[d]; }
    return G;
}

__global__ void k_il_gather(const nn__cu_geo G, const void *idx, int is64, int64_t n, const float *__restrict__ big,
                            float *__restrict__ dst) {
    for (int64_t p = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; p < n; p += (int64_t)gridDim.x * blockDim.x) {
        int64_t ao, so;
        d_geo(G, d_idx(idx, is64, p), p, &ao, &so);
        dst[so] = big[ao];
    }
}

__global__ void k_il_scatter_keys(const nn__cu_geo G, const void *idx, int is64, int64_t n, uint64_t *key,
                                  int64_t *val) {
    for (int64_t p = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; p < n; p += (int64_t)gridDim.x * blockDim.x) {
        int64_t ao, so;
        d_geo(G, d_idx(idx, is64, p), p, &ao, &so);
        key[p] = (uint64_t)ao;
        val[p] = so;
    }
}

/* order key of a topk value: ascending uint order = the wanted output order; NaN above every number */
__device__ __forceinline__ uint32_t d_topk_key(float v, int largest) {
    uint32_t u = __float_as_uint(v);
    if (v != v) u = 0xffffffffu;
    else {
        if ((u & 0x7fffffffu) == 0) u = 0;   /* -0 == +0: ties, kept in index order */
        u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
    }
    return largest ? ~u : u;
}

__global__ void k_topk_keys(const float *__restrict__ a, int64_t outer, int64_t an, int64_t inner, int largest,
                            uint64_t *key, int64_t *val) {
    int64_t m = outer * inner * an;
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < m; e += (int64_t)gridDim.x * blockDim.x) {
        int64_t l = e / an, j = e % an, o = l / inner, c = l % inner;
        key[e] = ((uint64_t)l << 32) | d_topk_key(a[(o * an + j) * inner + c], largest);
        val[e] = j;
    }
}

__global__ void k_topk_out(const float *__restrict__ a, const int64_t *__restrict__ sval, int64_t outer, int64_t an,
                           int64_t inner, int64_t k, float *__restrict__ vd, int64_t *__restrict__ id) {
    int64_t total = outer * k * inner;
    for (int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; t < total; t += (int64_t)gridDim.x * blockDim.x) {
        int64_t c = t % inner, r = t / inner, j = r % k, o = r / k, l = o * inner + c, jj = sval[l * an + j];
        if (vd) vd[t] = a[(o * an + jj) * inner + c];
        id[t] = jj;
    }
}

__global__ void k_topk_bwd(const float *__restrict__ g, const int64_t *__restrict__ ind, int64_t n, int64_t k,
                           int64_t an, int64_t inner, float *__restrict__ ga) {
    for (int64_t r = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; r < n; r += (int64_t)gridDim.x * blockDim.x) {
        int64_t o = r / (k * inner), c = r % inner;
        ga[(o * an + ind[r]) * inner + c] = g[r];
    }
}

/* broadcast geometry for where / masked_fill / cross / bce's pos_weight */
struct nn__cu_bc {
    int ndim;
    int64_t shape[NN_MAX_DIMS], cs[NN_MAX_DIMS], xs[NN_MAX_DIMS], ys[NN_MAX_DIMS];
};

static nn__cu_bc nn__cu_bc_of(int ndim, const int64_t *shape, const int64_t *cs, const int64_t *xs, const int64_t *ys) {
    nn__cu_bc B;
    memset(&B, 0, sizeof B);
    B.ndim = ndim;
    for (int d = 0; d < ndim; d++) {
        B.shape[d] = shape[d];
        if (cs) B.cs[d] = cs[d];
        if (xs) B.xs[d] = xs[d];
        if (ys) B.ys[d] = ys[d];
    }
    return B;
}

__global__ void k_il_select(float *__restrict__ o, int64_t n, const nn__cu_bc B, const uint8_t *__restrict__ c,
                            const float *__restrict__ x, float xv, const float *__restrict__ y, float yv) {
    for (int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; t < n; t += (int64_t)gridDim.x * blockDim.x) {
        int64_t rem = t, co = 0, xo = 0, yo = 0;
        for (int d = B.ndim - 1; d >= 0; d--) {
            int64_t i = rem % B.shape[d];
            rem /= B.shape[d];
            co += i * B.cs[d]; xo += i * B.xs[d]; yo += i * B.ys[d];
        }
        o[t] = c[co] ? (x ? x[xo] : xv) : (y ? y[yo] : yv);
    }
}

__global__ void k_il_cross(float *__restrict__ o, const nn__cu_bc B, int dim, int64_t inner, int64_t nv,
                           const float *__restrict__ x, const float *__restrict__ y) {
    for (int64_t v = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; v < nv; v += (int64_t)gridDim.x * blockDim.x) {
        int64_t base = (v / inner) * 3 * inner + v % inner, rem = base, xo = 0, yo = 0;
        for (int d = B.ndim - 1; d >= 0; d--) {
            int64_t i = rem % B.shape[d];
            rem /= B.shape[d];
            xo += i * B.xs[d]; yo += i * B.ys[d];
        }
        int64_t xd = B.xs[dim], yd = B.ys[dim];
        float x0 = x[xo], x1 = x[xo + xd], x2 = x[xo + 2 * xd];
        float y0 = y[yo], y1 = y[yo + yd], y2 = y[yo + 2 * yd];
        o[base] = x1 * y2 - x2 * y1;
        o[base + inner] = x2 * y0 - x0 * y2;
        o[base + 2 * inner] = x0 * y1 - x1 * y0;
    }
}

/* L lanes per line (1 or 32): lanes of a warp stay on one line, so the shuffles see the same trip counts */
template <int L> __device__ __forceinline__ double d_lane_sum(double v) {
    for (int o = L / 2; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o, L);
    return v;
}
template <int L> __device__ __forceinline__ float d_lane_max(float v) {
    for (int o = L / 2; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o, L));
    return v;
}

template <int L> __global__ void k_norm_fwd(const float *__restrict__ a, int64_t outer, int64_t an, int64_t inner,
                                            float *__restrict__ o) {
    int64_t lines = outer * inner, t0 = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) / L;
    int64_t step = (int64_t)gridDim.x * blockDim.x / L;
    int lane = threadIdx.x % L;
    for (int64_t r = t0; r < lines; r += step) {
        int64_t ob = r / inner, c = r % inner;
        double s = 0;
        for (int64_t j = lane; j < an; j += L) {
            double x = a[(ob * an + j) * inner + c];
            s += x * x;
        }
        s = d_lane_sum<L>(s);
        if (lane == 0) o[r] = (float)sqrt(s);
    }
}

__global__ void k_norm_bwd(const float *__restrict__ a, const float *__restrict__ y, const float *__restrict__ g,
                           int64_t n, int64_t an, int64_t inner, float *__restrict__ o) {
    for (int64_t p = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; p < n; p += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = (p / (an * inner)) * inner + p % inner;
        float nv = y[r], s = nv > 0 ? g[r] / nv : 0.0f;
        o[p] = a[p] * s;
    }
}

/* grid for L lanes per line over `lines` lines */
static unsigned nn__cu_lane_grid(int64_t lines, int L) { return nn__grid(lines * L, 256); }

/* ---- deterministic double sums: fixed per-block partials, then one block */
__device__ double d_block_sum_d(double v, double *sh) {
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = d_lane_sum<32>(v);
    if (lane == 0) sh[w] = v;
    __syncthreads();
    if (w == 0) {
        v = lane < nw ? sh[lane] : 0.0;
        v = d_lane_sum<32>(v);
        if (lane == 0) sh[32] = v;
    }
    __syncthreads();
    v = sh[32];
    __syncthreads();
    return v;
}

template <class F> __global__ void k_sum_terms(const F f, int64_t n, double *part) {
    __shared__ double sh[33];
    double acc = 0;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        acc += f(i);
    acc = d_block_sum_d(acc, sh);
    if (threadIdx.x == 0) part[blockIdx.x] = acc;
}

__global__ void k_sum_parts(const double *part, int nb, double *dst) {
    __shared__ double sh[33];
    double acc = 0;
    for (int i = threadIdx.x; i < nb; i += blockDim.x) acc += part[i];
    acc = d_block_sum_d(acc, sh);
    if (threadIdx.x == 0) *dst = acc;
}

/* *dst (device) = sum over i < n of f(i), in double */
template <class F> static void nn__cu_sum_terms(const F &f, int64_t n, double *dst) {
    unsigned nb = nn__grid(n, 256);
    nn_tensor *part;
    if (nb > 1024) nb = 1024;
    part = nn__tmp(NN_I64, nb);   /* 8-byte slots holding doubles */
    k_sum_terms<F><<<nb, 256, 0, S_>>>(f, n, (double *)part->data);
    NN_LAUNCHED();
    k_sum_parts<<<1, 256, 0, S_>>>((const double *)part->data, (int)nb, dst);
    NN_LAUNCHED();
    nn_tensor_free(part);
}

/* out = s[0] / denom (denom 0: NaN, as the CPU's mean of nothing) */
__global__ void k_loss_div(const double *s, double denom, float *out) { *out = (float)(s[0] / denom); }

/* ---- mse / l1 / smooth_l1 (nn__il_reg_loss / nn__il_reg_dloss: nn.h's [shared]) */
struct nn__cu_reg_term {
    const float *p, *t;
    int kind;
    double beta;
    __device__ double operator()(int64_t i) const { return nn__il_reg_loss(kind, (double)p[i] - (double)t[i], beta); }
};

__global__ void k_reg_bwd(int kind, const float *__restrict__ p, const float *__restrict__ t, int64_t n, double beta,
                          const float *__restrict__ gout, float *__restrict__ gp, float *__restrict__ gt) {
    double scale = (double)gout[0] / (double)(n ? n : 1);
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        double v = scale * nn__il_reg_dloss(kind, (double)p[i] - (double)t[i], beta);
        if (gp) gp[i] = (float)v;
        if (gt) gt[i] = (float)-v;
    }
}

/* ---- bce_with_logits, sigmoid_focal_loss (nn__il_softplus_neg, nn__il_sigmoid, nn__il_focal_terms: nn.h's
   [shared]) */
__device__ __forceinline__ int64_t d_bc_off(const nn__cu_bc &B, int64_t lin) {
    int64_t off = 0;
    for (int d = B.ndim - 1; d >= 0; d--) { off += (lin % B.shape[d]) * B.xs[d]; lin /= B.shape[d]; }
    return off;
}
struct nn__cu_bce_term {
    const float *x, *y, *pw;
    int same;
    nn__cu_bc B;   /* xs: pos_weight's broadcast strides over x's shape */
    __device__ double operator()(int64_t i) const {
        double xv = x[i], yv = y[i], p = pw ? pw[same ? i : d_bc_off(B, i)] : 1.0;
        return (1.0 - yv) * xv + (1.0 + (p - 1.0) * yv) * nn__il_softplus_neg(xv);
    }
};

__global__ void k_bce_bwd(const nn__cu_bce_term T, int64_t n, const float *__restrict__ gout, float *__restrict__ gx,
                          float *__restrict__ gy, float *__restrict__ gp) {
    double scale = (double)gout[0] / (double)(n ? n : 1);
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        double xv = T.x[i], yv = T.y[i], p = T.pw ? T.pw[T.same ? i : d_bc_off(T.B, i)] : 1.0;
        double sp = nn__il_softplus_neg(xv), lw = 1.0 + (p - 1.0) * yv;
        if (gx) gx[i] = (float)(scale * ((1.0 - yv) - lw * nn__il_sigmoid(-xv)));
        if (gy) gy[i] = (float)(scale * (-xv + (p - 1.0) * sp));
        if (gp) gp[i] = (float)(scale * yv * sp);
    }
}

struct nn__cu_focal_term {
    const float *x, *y;
    double alpha, gamma;
    __device__ double operator()(int64_t i) const {
        double l;
        nn__il_focal_terms(x[i], y[i], alpha, gamma, &l, NULL, NULL);
        return l;
    }
};
__global__ void k_focal_none(const nn__cu_focal_term T, int64_t n, float *__restrict__ o) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        o[i] = (float)T(i);
}
/* red: nn.h's nn_reduction (NONE reads g per element) */
__global__ void k_focal_bwd(const nn__cu_focal_term T, int64_t n, int red, const float *__restrict__ g,
                            float *__restrict__ gx, float *__restrict__ gy) {
    double scale = red == NN_REDUCE_NONE ? 1.0 : (double)g[0];
    if (red == NN_REDUCE_MEAN) scale /= (double)(n ? n : 1);
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        double l, dx, dy, s = red == NN_REDUCE_NONE ? (double)g[i] : scale;
        nn__il_focal_terms(T.x[i], T.y[i], T.alpha, T.gamma, &l, &dx, &dy);
        if (gx) gx[i] = (float)(s * dx);
        if (gy) gy[i] = (float)(s * dy);
    }
}

/* ---- cross_entropy. stats (device, double): [0] sum w_t nll, [1] smoothing sum, [2] W = sum w_t, [3] sum_c w_c.
   Per position s (L lanes): lse, and its three terms into term[0..3) arrays, summed afterwards in a fixed tree. */
template <int L> __global__ void k_ce_fwd(const float *__restrict__ x, const void *tg, int is64, const float *__restrict__ w,
                                          int64_t npos, int64_t C, int64_t inner, int64_t ii, double eps,
                                          const double *__restrict__ stats, float *__restrict__ lse,
                                          double *__restrict__ term) {
    int64_t t0 = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) / L, step = (int64_t)gridDim.x * blockDim.x / L;
    int lane = threadIdx.x % L;
    double wsum = w ? stats[3] : (double)C;
    for (int64_t s = t0; s < npos; s += step) {
        int64_t b = s / inner, c0 = s % inner, t = d_idx(tg, is64, s), c;
        const float *row = x + b * C * inner + c0;
        float mx = -INFINITY;
        double se = 0, l, nll = 0, W = 0, sm = 0;
        for (c = lane; c < C; c += L) if (row[c * inner] > mx) mx = row[c * inner];
        mx = d_lane_max<L>(mx);
        if (mx == -INFINITY) mx = 0;   /* every logit -inf: lse = -inf rather than NaN (as the CPU) */
        for (c = lane; c < C; c += L) se += expf(row[c * inner] - mx);
        se = d_lane_sum<L>(se);
        l = (double)mx + log(se);
        if (t != ii) {
            double wt = w ? w[t] : 1.0;
            W = wt;
            nll = wt * (l - (double)row[t * inner]);
            if (eps > 0) {
                double sx = 0;
                for (c = lane; c < C; c += L) sx += w ? (double)w[c] * row[c * inner] : (double)row[c * inner];
                sx = d_lane_sum<L>(sx);
                sm = l * wsum - sx;
            }
        }
        if (lane == 0) {
            lse[s] = (float)l;
            term[s] = nll;
            term[npos + s] = sm;
            term[2 * npos + s] = W;
        }
    }
}

struct nn__cu_arr_term {
    const double *a;
    __device__ double operator()(int64_t i) const { return a[i]; }
};
struct nn__cu_f32_term {
    const float *a;
    __device__ double operator()(int64_t i) const { return (double)a[i]; }
};

__global__ void k_ce_finish(const double *stats, double eps, int64_t C, float *out) {
    double nll = stats[0], smooth = stats[1], W = stats[2];
    *out = (float)(eps > 0 ? ((1.0 - eps) * nll / W + eps / (double)C * smooth / W) : nll / W);
}

__global__ void k_ce_bwd(const float *__restrict__ x, const void *tg, int is64, const float *__restrict__ lse,
                         const float *__restrict__ w, int64_t n, int64_t C, int64_t inner, int64_t ii, double eps,
                         const double *__restrict__ stats, const float *__restrict__ gout, float *__restrict__ gx) {
    double coef = (double)gout[0] / stats[2], wsum = w ? stats[3] : (double)C;
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n; e += (int64_t)gridDim.x * blockDim.x) {
        int64_t b = e / (C * inner), c = (e / inner) % C, s = b * inner + e % inner, t = d_idx(tg, is64, s);
        float o;
        if (t == ii) { gx[e] = 0.0f; continue; }
        double wt = w ? w[t] : 1.0;
        float suma = (float)(coef * ((1.0 - eps) * wt + eps / (double)C * wsum));
        float ec = (float)(coef * eps / (double)C);
        float pc = expf(x[e] - lse[s]);
        o = pc * suma - ec * (w ? w[c] : 1.0f);
        if (c == t) o -= (float)(coef * (1.0 - eps) * wt);
        gx[e] = o;
    }
}

extern "C" {

int64_t nn__cuda_il_first_bad(const nn_tensor *idx, int64_t size, int64_t ignore, int use_ignore, int64_t *value) {
    unsigned long long h = ~0ull;
    nn_tensor *f;
    nn__cu_init();
    if (!idx->numel) return -1;
    f = nn__tmp(NN_I64, 1);
    NN_CU(cudaMemsetAsync(f->data, 0xff, 8, S_));
    k_il_first_bad<<<nn__grid(idx->numel, 256), 256, 0, S_>>>(idx->data, idx->dtype == NN_I64, idx->numel, size, ignore,
                                                             use_ignore, (unsigned long long *)f->data);
    NN_LAUNCHED();
    nn__cuda_memcpy(&h, f->data, 8, 1);   /* the one host read (waits for the stream) */
    nn_tensor_free(f);
    if (h == ~0ull) return -1;
    if (idx->dtype == NN_I64) nn__cuda_memcpy(value, (const int64_t *)idx->data + h, 8, 1);
    else { int32_t v32; nn__cuda_memcpy(&v32, (const int32_t *)idx->data + h, 4, 1); *value = v32; }
    return (int64_t)h;
}

void nn__cuda_il_rows_copy(float *dst, const float *src, int64_t outer, int64_t sn, int64_t inner, const nn_tensor *idx,
                           int64_t n) {
    int64_t total = outer * n * inner;
    nn__cu_init();
    if (!total) return;
    k_il_rows_copy<<<nn__grid(total, 256), 256, 0, S_>>>(dst, src, outer, sn, inner, idx->data, idx->dtype == NN_I64, n);
    NN_LAUNCHED();
}

void nn__cuda_il_rows_add(float *dst, int64_t dn, const float *src, int64_t outer, int64_t inner, const nn_tensor *idx,
                          int64_t n) {
    int64_t m = outer * n;
    nn_tensor *keys, *vals;
    nn__cu_init();
    if (!m || !inner) return;
    keys = nn__tmp(NN_I64, m);
    vals = nn__tmp(NN_I64, m);
    k_il_rows_keys<<<nn__grid(m, 256), 256, 0, S_>>>(idx->data, idx->dtype == NN_I64, outer, n, dn,
                                                    (uint64_t *)keys->data, (int64_t *)vals->data);
    NN_LAUNCHED();
    nn__cu_sorted_add(dst, src, inner, keys, vals, m, (uint64_t)(outer * dn));
}

/* dst[at sstr over idx's coordinates] = big[a-offset of idx's element] (gather forward: sstr = idx's strides;
   scatter_add's src gradient: sstr = src's strides) */
void nn__cuda_il_gather(const nn_tensor *idx, int dim, const int64_t *astr, const int64_t *sstr, const float *big,
                        float *dst) {
    nn__cu_init();
    if (!idx->numel) return;
    k_il_gather<<<nn__grid(idx->numel, 256), 256, 0, S_>>>(nn__cu_geo_of(idx, dim, astr, sstr), idx->data,
                                                          idx->dtype == NN_I64, idx->numel, big, dst);
    NN_LAUNCHED();
}

/* big[a-offset of idx's element p] += src[offset of p at sstr], in increasing p per destination */
void nn__cuda_il_scatter_add(const nn_tensor *idx, int dim, const int64_t *astr, const int64_t *sstr, float *big,
                             int64_t big_numel, const float *src) {
    nn_tensor *keys, *vals;
    int64_t m = idx->numel;
    nn__cu_init();
    if (!m) return;
    keys = nn__tmp(NN_I64, m);
    vals = nn__tmp(NN_I64, m);
    k_il_scatter_keys<<<nn__grid(m, 256), 256, 0, S_>>>(nn__cu_geo_of(idx, dim, astr, sstr), idx->data,
                                                       idx->dtype == NN_I64, m, (uint64_t *)keys->data,
                                                       (int64_t *)vals->data);
    NN_LAUNCHED();
    nn__cu_sorted_add(big, src, 1, keys, vals, m, (uint64_t)(big_numel > 0 ? big_numel : 1));
}

/* val may be NULL (indices only) */
void nn__cuda_topk_fwd(const nn_tensor *a, int64_t outer, int64_t an, int64_t inner, int64_t k, int largest,
                       nn_tensor *val, nn_tensor *ind) {
    int64_t lines = outer * inner, m = lines * an;
    nn_tensor *keys, *vals;
    nn__cu_init();
    if (!k || !lines) return;
    if (an > (int64_t)0xffffffff) nn_error("nn_topk: a line of %lld elements exceeds the CUDA path's 2^32", (long long)an);
    keys = nn__tmp(NN_I64, m);
    vals = nn__tmp(NN_I64, m);
    k_topk_keys<<<nn__grid(m, 256), 256, 0, S_>>>((const float *)a->data, outer, an, inner, largest,
                                                 (uint64_t *)keys->data, (int64_t *)vals->data);
    NN_LAUNCHED();
    nn__cu_sort_pairs(&keys, &vals, m, ((uint64_t)(lines - 1) << 32) | 0xffffffffu);
    k_topk_out<<<nn__grid(lines * k, 256), 256, 0, S_>>>((const float *)a->data, (const int64_t *)vals->data, outer, an,
                                                        inner, k, val ? (float *)val->data : NULL, (int64_t *)ind->data);
    NN_LAUNCHED();
    nn_tensor_free(keys);
    nn_tensor_free(vals);
}

/* ga: zero-filled, input-shaped */
void nn__cuda_topk_bwd(const nn_tensor *g, const nn_tensor *ind, int64_t an, int64_t inner, int64_t k, nn_tensor *ga) {
    nn__cu_init();
    if (!g->numel) return;
    k_topk_bwd<<<nn__grid(g->numel, 256), 256, 0, S_>>>((const float *)g->data, (const int64_t *)ind->data, g->numel, k,
                                                       an, inner, (float *)ga->data);
    NN_LAUNCHED();
}

/* o = c ? x : y over a broadcast shape (x / y NULL: the constants xv / yv), as nn__il_select_kernel */
void nn__cuda_il_select(float *o, int ndim, const int64_t *shape, const uint8_t *c, const int64_t *cs, const float *x,
                        const int64_t *xs, float xv, const float *y, const int64_t *ys, float yv) {
    int64_t n = 1;
    nn__cu_init();
    for (int d = 0; d < ndim; d++) n *= shape[d];
    if (!n) return;
    k_il_select<<<nn__grid(n, 256), 256, 0, S_>>>(o, n, nn__cu_bc_of(ndim, shape, cs, x ? xs : NULL, y ? ys : NULL), c,
                                                 x, xv, y, yv);
    NN_LAUNCHED();
}

void nn__cuda_il_cross(float *o, int ndim, const int64_t *shape, int dim, const float *x, const int64_t *xs,
                       const float *y, const int64_t *ys) {
    int64_t outer = 1, inner = 1, nv;
    nn__cu_init();
    for (int d = 0; d < dim; d++) outer *= shape[d];
    for (int d = dim + 1; d < ndim; d++) inner *= shape[d];
    nv = outer * inner;
    if (!nv) return;
    k_il_cross<<<nn__grid(nv, 256), 256, 0, S_>>>(o, nn__cu_bc_of(ndim, shape, NULL, xs, ys), dim, inner, nv, x, y);
    NN_LAUNCHED();
}

void nn__cuda_norm_fwd(const float *a, int64_t outer, int64_t an, int64_t inner, float *o) {
    int64_t lines = outer * inner;
    nn__cu_init();
    if (!lines) return;
    /* a warp per line when lines are contiguous and long, else a thread per line (coalesced across lines) */
    if (inner == 1 && an >= 64) k_norm_fwd<32><<<nn__cu_lane_grid(lines, 32), 256, 0, S_>>>(a, outer, an, inner, o);
    else k_norm_fwd<1><<<nn__cu_lane_grid(lines, 1), 256, 0, S_>>>(a, outer, an, inner, o);
    NN_LAUNCHED();
}

void nn__cuda_norm_bwd(const float *a, const float *y, const float *g, int64_t outer, int64_t an, int64_t inner, float *ga) {
    int64_t n = outer * an * inner;
    nn__cu_init();
    if (!n) return;
    k_norm_bwd<<<nn__grid(n, 256), 256, 0, S_>>>(a, y, g, n, an, inner, ga);
    NN_LAUNCHED();
}

/* out: a 0-dim device f32; the mean over n (n = 0: NaN) */
void nn__cuda_reg_loss_fwd(int kind, const float *p, const float *t, int64_t n, double beta, float *out) {
    nn__cu_reg_term f;
    nn_tensor *s;
    nn__cu_init();
    f.p = p; f.t = t; f.kind = kind; f.beta = beta;
    s = nn__tmp(NN_I64, 1);
    nn__cu_sum_terms(f, n, (double *)s->data);
    k_loss_div<<<1, 1, 0, S_>>>((const double *)s->data, (double)n, out);
    NN_LAUNCHED();
    nn_tensor_free(s);
}

void nn__cuda_reg_loss_bwd(int kind, const float *p, const float *t, int64_t n, double beta, const float *gout,
                           float *gp, float *gt) {
    nn__cu_init();
    if (!n) return;
    k_reg_bwd<<<nn__grid(n, 256), 256, 0, S_>>>(kind, p, t, n, beta, gout, gp, gt);
    NN_LAUNCHED();
}

/* pw may be NULL; ps: its broadcast strides over x's shape (same: pw has x's shape) */
static nn__cu_bce_term nn__cu_bce_of(const float *x, const float *y, const float *pw, int ndim, const int64_t *shape,
                                     const int64_t *ps, int same) {
    nn__cu_bce_term T;
    T.x = x; T.y = y; T.pw = pw; T.same = same;
    T.B = nn__cu_bc_of(ndim, shape, NULL, pw ? ps : NULL, NULL);
    return T;
}

void nn__cuda_bce_fwd(const float *x, const float *y, const float *pw, int ndim, const int64_t *shape, const int64_t *ps,
                      int same, int64_t n, float *out) {
    nn_tensor *s;
    nn__cu_init();
    s = nn__tmp(NN_I64, 1);
    nn__cu_sum_terms(nn__cu_bce_of(x, y, pw, ndim, shape, ps, same), n, (double *)s->data);
    k_loss_div<<<1, 1, 0, S_>>>((const double *)s->data, (double)n, out);
    NN_LAUNCHED();
    nn_tensor_free(s);
}

/* gx, gy, gp (x-shaped; gp is reduced to pos_weight's shape by the caller) may be NULL */
void nn__cuda_bce_bwd(const float *x, const float *y, const float *pw, int ndim, const int64_t *shape, const int64_t *ps,
                      int same, int64_t n, const float *gout, float *gx, float *gy, float *gp) {
    nn__cu_init();
    if (!n) return;
    k_bce_bwd<<<nn__grid(n, 256), 256, 0, S_>>>(nn__cu_bce_of(x, y, pw, ndim, shape, ps, same), n, gout, gx, gy, gp);
    NN_LAUNCHED();
}

/* red NONE: out is x-shaped; else 0-dim (sum, or mean with n = 0 giving NaN) */
void nn__cuda_focal_fwd(const float *x, const float *y, int64_t n, double alpha, double gamma, int red, float *out) {
    nn__cu_focal_term T;
    nn__cu_init();
    T.x = x; T.y = y; T.alpha = alpha; T.gamma = gamma;
    if (red == NN_REDUCE_NONE) {
        if (n) { k_focal_none<<<nn__grid(n, 256), 256, 0, S_>>>(T, n, out); NN_LAUNCHED(); }
        return;
    }
    {
        nn_tensor *s = nn__tmp(NN_I64, 1);
        nn__cu_sum_terms(T, n, (double *)s->data);
        k_loss_div<<<1, 1, 0, S_>>>((const double *)s->data, red == NN_REDUCE_MEAN ? (double)n : 1.0, out);
        NN_LAUNCHED();
        nn_tensor_free(s);
    }
}

void nn__cuda_focal_bwd(const float *x, const float *y, int64_t n, double alpha, double gamma, int red, const float *g,
                        float *gx, float *gy) {
    nn__cu_focal_term T;
    nn__cu_init();
    if (!n) return;
    T.x = x; T.y = y; T.alpha = alpha; T.gamma = gamma;
    k_focal_bwd<<<nn__grid(n, 256), 256, 0, S_>>>(T, n, red, g, gx, gy);
    NN_LAUNCHED();
}

/* logits [N, C, inner] -> out (0-dim), lse [npos], stats [4] doubles (see k_ce_fwd) */
void nn__cuda_cross_entropy_fwd(const float *x, const nn_tensor *target, const float *w, int64_t npos, int64_t C,
                                int64_t inner, int64_t ii, double eps, float *lse, double *stats, float *out) {
    nn_tensor *term;
    nn__cu_arr_term A;
    int is64 = target->dtype == NN_I64;
    nn__cu_init();
    if (w) { nn__cu_f32_term F; F.a = w; nn__cu_sum_terms(F, C, stats + 3); }
    term = nn__tmp(NN_I64, 3 * npos);   /* doubles */
    if (npos) {
        /* a warp per position when the classes are contiguous and many; else a thread per position */
        if (inner == 1 && C >= 64)
            k_ce_fwd<32><<<nn__cu_lane_grid(npos, 32), 256, 0, S_>>>(x, target->data, is64, w, npos, C, inner, ii, eps,
                                                                    stats, lse, (double *)term->data);
        else
            k_ce_fwd<1><<<nn__cu_lane_grid(npos, 1), 256, 0, S_>>>(x, target->data, is64, w, npos, C, inner, ii, eps,
                                                                  stats, lse, (double *)term->data);
        NN_LAUNCHED();
    }
    A.a = (const double *)term->data;
    nn__cu_sum_terms(A, npos, stats + 0);
    A.a = (const double *)term->data + npos;
    nn__cu_sum_terms(A, npos, stats + 1);
    A.a = (const double *)term->data + 2 * npos;
    nn__cu_sum_terms(A, npos, stats + 2);
    k_ce_finish<<<1, 1, 0, S_>>>(stats, eps, C, out);
    NN_LAUNCHED();
    nn_tensor_free(term);
}

void nn__cuda_cross_entropy_bwd(const float *x, const nn_tensor *target, const float *lse, const float *w, int64_t n,
                                int64_t C, int64_t inner, int64_t ii, double eps, const double *stats, const float *gout,
                                float *gx) {
    nn__cu_init();
    if (!n) return;
    k_ce_bwd<<<nn__grid(n, 256), 256, 0, S_>>>(x, target->data, target->dtype == NN_I64, lse, w, n, C, inner, ii, eps,
                                              stats, gout, gx);
    NN_LAUNCHED();
}

} /* extern "C" */

/* ------------------------------------------------------------------------------- sdpa (flash attention) */
/* nn_sdpa on the GPU: FlashAttention-2 style tiled forward and backward.

   Same semantics as nn_sdpa on the CPU ([ops:attention] in nn.h): q [B,H,Lq,D], k [B,H,Lk,D], v [B,H,Lk,Dv] -> o [B,H,Lq,Dv];
   scores s_ij = scale * q_i . k_j + bias[b,h,i,j]; masked out (-inf) where mask[b,h,i,j] == 0 (true = attend),
   where causal and j > i (top-left aligned); P = softmax over j; dropout keeps P_ij with factor 1/(1-p) iff
   nn_rng_uniform_at(seed, offset + ((b*H+h)*Lq+i)*Lk+j) >= p (Philox4x32-10 exactly as nn.h); a row with no
   attended key gives o = 0, lse = -inf and zero gradients.

   ENTRY POINTS (extern "C", declared in nn.h's [api:internal] with the argument struct nn__cuda_sdpa_args):
     void nn__cuda_sdpa_fwd(const nn__cuda_sdpa_args *a);   writes o and lse
     void nn__cuda_sdpa_bwd(const nn__cuda_sdpa_args *a);   reads q,k,v,o,lse,dout; writes dq, dk, dv (each
                                                            optional: NULL skips it) and dbias (optional)
   Both run on the backend's stream, take their workspaces (split-KV partials; delta and the split dQ
   accumulator) from nn.h's device pool, report bad arguments through nn_error (nothing is launched) and check
   every launch with NN_LAUNCHED.

   Layouts. q, k, v, o, dout, dq, dk, dv: element strides of batch, head and row (s*[0..2]); the last dimension
   is contiguous. So [B,H,L,D] (strides {H*L*D, L*D, D}) and a [B,L,H,D] projection ({L*H*D, D, H*D}) are both
   read in place. For dtype f16/bf16 the row strides and pointers must allow 16-byte loads (strides multiples of
   8 elements, pointers 16-byte aligned), D and Dv multiples of 8 and <= 128. f32 takes any D, Dv <= 256
   and any row stride. mask: u8 read at b*ms[0] + h*ms[1] + i*ms[2] + j*ms[3] (0 strides broadcast). bias: f32 or the
   q dtype (bias_dtype), same broadcast rule with bs[]. lse: f32 [B,H,Lq] contiguous. dbias: f32, addressed with
   the bias's strides bs[]; it receives the gradient summed over every broadcast dimension (this function zeroes
   it first where it must accumulate). A bias broadcast over keys (bs[3] == 0 with Lk > 1) has gradient 0.

   KERNELS (T = half or bfloat16, f32 accumulation, mma.sync.m16n8k16 + ldmatrix, cp.async double buffering):
     fwd   one CTA per (b, h, 16*MW*NW query rows); each warp owns 16*MW rows; K/V tiles of BN keys stream
           through shared memory; S, the online-softmax state (m, l) and O stay in registers; P is re-packed
           from the S accumulators into A fragments without touching shared memory.
     bwd   1. delta_i = dO_i . O_i (one warp per row; an f32 dO is rounded to T here, into a workspace).
           2. one kernel, FlashAttention-2's order: one CTA per (b, h, key tile[, query range]); K/V resident,
              Q/dO/lse/delta tiles streamed; S^T = K Q^T and dP^T = V dO^T, so P^T and dS^T are already the A
              fragments of dV += P^T dO and dK += dS^T Q; dS^T goes through shared memory once for
              dQ += dS K, added into an f32 accumulator with atomics (dQ's last bits then depend on the order
              of the adds, as in PyTorch's flash/cuDNN backward; dK and dV stay deterministic unless the
              queries are split). 5 matrix products and one exponential per score.
           With grad_f32 the gradients are written in f32 (the f32 dQ accumulator is dq itself); else converted.
           dbias is stored once per element when the bias is not broadcast, else atomically added (f32).
     sm_90a the plain f16/bf16 attention on Hopper's warpgroup MMA (wgmma), when the device runs the sm_90a image:
           the forward at D == Dv in {32, 64, 128} (wg_fwd_kernel; also with an additive bias, read into
           registers, or at D = 64 in the q dtype staged through shared memory; at D = 32 with the split-KV below)
           and the backward at D == Dv == 64 (wg_bwd_kernel; also with a bias in the q dtype, and its gradient)
           and at D == Dv == 128 (wg_bwd_d128_kernel; plain or causal),
           in their own block below ("wgmma kernels (sm_90a)"). At D = 64 / 128 (plain or the staged bias) the
           forward, and the backward, run warp-specialised (WS): a loading warpgroup hands tiles to the
           computing warpgroups through mbarriers (NN_SDPA_WS=0: the same kernels with copies in every warp).
     f32   the same loops on TF32 tensor cores in 3xTF32 (f32 accuracy; tc_* kernels, D and Dv <= 128; the backward
           in one kernel, dQ added with atomics); above 128 a plain SIMT path (thread per query or key row).
   Bias tiles (f32 or the q dtype, keys contiguous, 16-byte aligned rows) are staged through shared memory with
   cp.async, double-buffered with K/V, so no bias load sits behind a branch; other layouts read it at clamped
   indices. Split-KV: when the (b, h, query tile) blocks are fewer than 2 per SM (the 900-query AQR cases, 10
   queries over 2,048 keys) the forward splits the keys into ranges of >= 4 tiles (normalised partials + lse
   in the workspace, then a combine kernel); the backward splits the queries of each key tile when the key
   tiles are too few (40,000 queries over 1,024 keys), adding dK/dV into f32 accumulators.
   One launch covers all (b, h, tile) problems (1-D grid): many small problems fill the GPU. Order of the grid:
   causal: longest tiles first; bias shared by heads: heads fastest (the heads of one bias tile run together and
   read it once from DRAM); otherwise tiles of one head together (its K/V stay in L2). */
namespace sdpa_cu {

#define SDPA_LOG2E 1.4426950408889634f
#define SDPA_LN2 0.6931471805599453f

/* ------------------------------------------------------------------------------------------ parameters */
struct Params {
    const void *q, *k, *v, *o, *dout;
    void *out, *dq, *dk, *dv;
    int64_t sq[3], sk[3], sv[3], so[3], sdo[3], sdq[3], sdk[3], sdv[3];
    float *lse, *delta, *dbias;
    const uint8_t *mask;
    int64_t ms[4];
    const void *bias;
    int bias_f32;
    int64_t bs[4];
    int B, H, Lq, Lk, D, Dv;
    int causal, dropout, dbias_atomic;
    float scale, scale_log2, p, keep_scale;
    uint64_t seed, offset;
    int bias_stage;            /* bias tiles go through shared memory (16-byte aligned rows, keys contiguous) */
    int nsplit, split_len;     /* split-KV: key ranges of split_len (a multiple of the key tile) */
    float *part;               /* forward partials [nsplit][B*H*Lq][Dv] then lse [nsplit][B*H*Lq] */
    /* backward: nsplit/split_len split the queries of a key tile into ranges (too few key tiles for the GPU) */
    float *dq_acc;             /* f32 dQ accumulator (the f32 dq itself or a workspace), strides sqa */
    float *dk_acc, *dv_acc;    /* with split query ranges: f32 dK/dV accumulators, strides ska/sva */
    int64_t sqa[3], ska[3], sva[3];
    int grad_f32;              /* dq, dk, dv are f32 (else T) */
    int dout_f32;              /* dout is f32: delta_kernel rounds it to T into dout_lp (contiguous) */
    void *dout_lp;
    float *lsep, *dlp;         /* bwd_kernel with lse_async: lse (log2 units, +inf for empty rows) and delta, rows */
    int Lqp;                   /* padded to Lqp (a multiple of 64) with +inf / 0, written by delta_kernel */
    int ntiles;    /* tiles along the resident dimension */
    int order;     /* 0: (bh, tile) tile fastest; 1: (b, tile, h) heads fastest; 2: (tile desc, bh); 3: (tile asc, bh) */
};

/* block index -> (b, h, tile) */
__device__ __forceinline__ void tile_of(const Params &p, int *b, int *h, int *t, int *sp = nullptr) {
    int64_t L = blockIdx.x;
    if (sp) { *sp = (int)(L % p.nsplit); L /= p.nsplit; }
    if (p.order == 0) {
        *t = (int)(L % p.ntiles); int64_t bh = L / p.ntiles; *h = (int)(bh % p.H); *b = (int)(bh / p.H);
    } else if (p.order == 1) {
        *h = (int)(L % p.H); int64_t r = L / p.H; *t = (int)(r % p.ntiles); *b = (int)(r / p.ntiles);
    } else {
        int64_t bh = L % ((int64_t)p.B * p.H); *t = (int)(L / ((int64_t)p.B * p.H));
        if (p.order == 2) *t = p.ntiles - 1 - *t;
        *h = (int)(bh % p.H); *b = (int)(bh / p.H);
    }
}

/* ------------------------------------------------------------------------------------------ Philox */
__device__ __forceinline__ void philox(uint64_t seed, uint64_t ctr, uint32_t o[4]) { d_philox(seed, ctr, o); }
__device__ __forceinline__ uint32_t pick4(const uint32_t r[4], uint32_t l) {
    return l == 0 ? r[0] : l == 1 ? r[1] : l == 2 ? r[2] : r[3];
}
/* dropout factor of the element at stream position pos (offset already added) */
__device__ __forceinline__ float keep_factor(const Params &p, uint64_t pos) {
    uint32_t r[4];
    philox(p.seed, pos >> 2, r);
    float u = (float)(pick4(r, (uint32_t)(pos & 3)) >> 8) * (1.0f / 16777216.0f);
    return u >= p.p ? p.keep_scale : 0.0f;
}
/* factors of positions pos and pos+1 (one Philox block unless they straddle two) */
__device__ __forceinline__ void keep_factor2(const Params &p, uint64_t pos, float *z0, float *z1) {
    uint32_t r[4];
    philox(p.seed, pos >> 2, r);
    uint32_t l = (uint32_t)(pos & 3);
    float u0 = (float)(pick4(r, l) >> 8) * (1.0f / 16777216.0f);
    uint32_t w1;
    if (l == 3) { uint32_t r2[4]; philox(p.seed, (pos >> 2) + 1, r2); w1 = r2[0]; }
    else w1 = pick4(r, l + 1);
    float u1 = (float)(w1 >> 8) * (1.0f / 16777216.0f);
    *z0 = u0 >= p.p ? p.keep_scale : 0.0f;
    *z1 = u1 >= p.p ? p.keep_scale : 0.0f;
}

/* ------------------------------------------------------------------------------------------ element types */
template <typename T> struct TT;
template <> struct TT<__half> {
    static __device__ __forceinline__ float to_f(__half x) { return __half2float(x); }
    static __device__ __forceinline__ uint32_t pack(float a, float b) {
        __half2 h = __floats2half2_rn(a, b); return *reinterpret_cast<uint32_t *>(&h);
    }
    static __device__ __forceinline__ __half from_f(float x) { return __float2half_rn(x); }
    static __device__ __forceinline__ void mma(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
        mma16816<NN_F16>(c, a, b0, b1);
    }
};
template <> struct TT<__nv_bfloat16> {
    static __device__ __forceinline__ float to_f(__nv_bfloat16 x) { return __bfloat162float(x); }
    static __device__ __forceinline__ uint32_t pack(float a, float b) {
        __nv_bfloat162 h = __floats2bfloat162_rn(a, b); return *reinterpret_cast<uint32_t *>(&h);
    }
    static __device__ __forceinline__ __nv_bfloat16 from_f(float x) { return __float2bfloat16_rn(x); }
    static __device__ __forceinline__ void mma(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
        mma16816<NN_BF16>(c, a, b0, b1);
    }
};
template <> struct TT<float> {
    static __device__ __forceinline__ float to_f(float x) { return x; }
    static __device__ __forceinline__ float from_f(float x) { return x; }
};

/* additive bias at (b,h)-base + i*bs2 + j*bs3, in f32 */
template <typename T>
__device__ __forceinline__ float bias_at(const Params &p, const void *base, int64_t idx) {
    return p.bias_f32 ? ((const float *)base)[idx] : TT<T>::to_f(((const T *)base)[idx]);
}

/* ------------------------------------------------------------------------------------------ PTX helpers */
__device__ __forceinline__ float ex2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}

/* ROWS x HD tile (row stride HD+8 elements in shared memory) <- rows row0.. of g (row stride rs), zero rows
   >= L and columns >= dcols (16-byte chunks) */
template <typename T, int HD, int ROWS, int NT>
__device__ __forceinline__ void load_tile(T *s, const T *g, int64_t rs, int row0, int L, int dcols) {
    constexpr int CH = HD / 8;
#pragma unroll
    for (int idx = threadIdx.x; idx < ROWS * CH; idx += NT) {
        int r = idx / CH, c = idx % CH, gr = row0 + r;
        bool ok = gr < L && c * 8 < dcols;
        const T *src = ok ? g + (int64_t)gr * rs + c * 8 : g;
        cp_async16(s + r * (HD + 8) + c * 8, src, ok);
    }
}

/* bias tile [R queries from i0][C keys from j0] -> shared memory (row stride bstr bytes), zero outside; the bias
   of (b,h) starts at bbh (bytes); requires 16-byte aligned rows and contiguous keys (Params.bias_stage) */
template <int NTH>
__device__ __forceinline__ void load_bias(unsigned char *s, int bstr, const Params &p, const unsigned char *bbh,
                                          int i0, int R, int j0, int C) {
    int es = p.bias_f32 ? 4 : 2, chunks = C * es / 16, per = 16 / es;
    for (int idx = threadIdx.x; idx < R * chunks; idx += NTH) {
        int r = idx / chunks, c = idx - r * chunks, gi = i0 + r, gj = j0 + c * per;
        int nb = (gi < p.Lq && gj < p.Lk) ? min(16, (p.Lk - gj) * es) : 0;
        const unsigned char *src = nb ? bbh + ((int64_t)gi * p.bs[2] + (int64_t)gj * p.bs[3]) * es : bbh;
        cp_async16n(s + r * bstr + c * 16, src, nb);
    }
}

/* load_bias for the wgmma kernels' staged tiles (16-bit bias, [R queries][C keys], rows BSTR bytes apart in
   shared memory): the same copies, but each thread keeps its chunk (keys 8 c..) and its rows (rt + k RS) for
   every tile, so a copy costs an address add instead of a division and a 64-bit product (38 instructions a
   16-byte copy in the forward's SASS with load_bias) */
template <int R, int C, int BSTR, int NTH>
struct BiasStage {
    static constexpr int CH = C / 8, RS = NTH / CH;   /* chunks a row; rows a pass */
    static_assert(NTH % CH == 0 && R % RS == 0, "BiasStage: tile and thread count");
    const unsigned char *g;   /* the bias of (b, h) (bytes): the address of the copies that read nothing */
    int64_t rb, off;          /* bytes between rows; row rt, key 8 c from g */
    int c, rt;
    __device__ __forceinline__ BiasStage(const Params &p, const unsigned char *bbh) {
        c = threadIdx.x % CH; rt = threadIdx.x / CH; rb = p.bs[2] * 2;
        g = bbh; off = rt * rb + 16 * c;
    }
    /* the tile of queries i0.., keys j0.. into s; zero outside [Lq][Lk] */
    __device__ __forceinline__ void load(unsigned char *s, const Params &p, int i0, int j0) const {
        const int gj = j0 + 8 * c, cb = gj < p.Lk ? min(16, (p.Lk - gj) * 2) : 0;
        const unsigned char *src = g + (off + i0 * rb + 2 * j0);
        unsigned char *d = s + rt * BSTR + 16 * c;
#pragma unroll
        for (int k = 0; k < R / RS; k++) {
            const int nb = i0 + rt + k * RS < p.Lq ? cb : 0;
            cp_async16n(d + k * RS * BSTR, nb ? src + k * RS * rb : g, nb);
        }
    }
};

/* acc[m][n] += A[16m.., :K] B[8n.., :K]^T; A and B row-major in shared memory (stride SA, SB elements) */
template <typename T, int MW, int NT, int K, int SA, int SB>
__device__ __forceinline__ void mma_abT(float (&acc)[MW][NT][4], const T *A, const T *Bm, int lane) {
#pragma unroll
    for (int kk = 0; kk < K / 16; kk++) {
        uint32_t a[MW][4];
#pragma unroll
        for (int m = 0; m < MW; m++) ldsm_x4<false>(a[m], A + (m * 16 + (lane & 15)) * SA + kk * 16 + (lane >> 4) * 8);
#pragma unroll
        for (int n = 0; n < NT; n += 2) {
            uint32_t b[4];
            ldsm_x4<false>(b, Bm + (n * 8 + (lane & 7) + (lane >> 4) * 8) * SB + kk * 16 + ((lane >> 3) & 1) * 8);
#pragma unroll
            for (int m = 0; m < MW; m++) {
                TT<T>::mma(acc[m][n], a[m], b[0], b[1]);
                TT<T>::mma(acc[m][n + 1], a[m], b[2], b[3]);
            }
        }
    }
}

/* acc[m][n] += Pa[m] (16 x 16*KT, A fragments in registers) B[16*KT x 8*ND] (row-major shared, stride SB) */
template <typename T, int MW, int KT, int ND, int SB>
__device__ __forceinline__ void mma_pb(float (&acc)[MW][ND][4], const uint32_t (&pa)[MW][KT][4], const T *Bm,
                                       int lane) {
#pragma unroll
    for (int kt = 0; kt < KT; kt++) {
#pragma unroll
        for (int n = 0; n < ND; n += 2) {
            uint32_t b[4];
            ldsm_x4<true>(b, Bm + (kt * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * SB + n * 8 + (lane >> 4) * 8);
#pragma unroll
            for (int m = 0; m < MW; m++) {
                TT<T>::mma(acc[m][n], pa[m][kt], b[0], b[1]);
                TT<T>::mma(acc[m][n + 1], pa[m][kt], b[2], b[3]);
            }
        }
    }
}

/* S accumulators (row-major C fragments) -> A fragments of T */
template <typename T, int MW, int NT>
__device__ __forceinline__ void to_afrag(uint32_t (&pa)[MW][NT / 2][4], const float (&s)[MW][NT][4]) {
#pragma unroll
    for (int m = 0; m < MW; m++)
#pragma unroll
        for (int kt = 0; kt < NT / 2; kt++) {
            pa[m][kt][0] = TT<T>::pack(s[m][2 * kt][0], s[m][2 * kt][1]);
            pa[m][kt][1] = TT<T>::pack(s[m][2 * kt][2], s[m][2 * kt][3]);
            pa[m][kt][2] = TT<T>::pack(s[m][2 * kt + 1][0], s[m][2 * kt + 1][1]);
            pa[m][kt][3] = TT<T>::pack(s[m][2 * kt + 1][2], s[m][2 * kt + 1][3]);
        }
}

/* Apply bias, mask, causal and bounds to a score tile in log2 units. Element (m, n, e) of the C fragments is
   at resident row R0 + 16m + g + 8(e>>1) and streamed column C0 + 8n + 2q + (e&1). TRANS: rows are keys and
   columns queries (the dK/dV kernel). x = raw q.k; result scale_log2 * x + log2e * bias, or -inf.
   The bias comes from the staged shared tile bt ([query - ib][key - jb], row stride bstr bytes) or, when not
   staged, from global memory at clamped (always valid) indices, so that no load sits behind a branch and the
   loads of a tile issue together. */
template <typename T, typename BT, int MW, int NT, bool TRANS>
__device__ __forceinline__ void add_bias(const Params &p, float (&s)[MW][NT][4], int R0, int C0, int lane,
                                         const BT *bbh, const unsigned char *bt, int bstr, int ib, int jb) {
    int g = lane >> 2, q2 = (lane & 3) * 2;
    const float ls = SDPA_LOG2E;
    if (bt) {
#pragma unroll
        for (int m = 0; m < MW; m++)
#pragma unroll
            for (int n = 0; n < NT; n++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    int r = R0 + 16 * m + g + 8 * (e >> 1), c = C0 + 8 * n + q2 + (e & 1);
                    int i = TRANS ? c : r, j = TRANS ? r : c;
                    BT v = *(const BT *)(bt + (i - ib) * bstr + (j - jb) * (int)sizeof(BT));
                    s[m][n][e] = s[m][n][e] * p.scale_log2 + ls * TT<BT>::to_f(v);
                }
    } else {
#pragma unroll
        for (int m = 0; m < MW; m++)
#pragma unroll
            for (int n = 0; n < NT; n++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    int r = R0 + 16 * m + g + 8 * (e >> 1), c = C0 + 8 * n + q2 + (e & 1);
                    int i = min(TRANS ? c : r, p.Lq - 1), j = min(TRANS ? r : c, p.Lk - 1);
                    BT v = bbh[(int64_t)i * p.bs[2] + (int64_t)j * p.bs[3]];
                    s[m][n][e] = s[m][n][e] * p.scale_log2 + ls * TT<BT>::to_f(v);
                }
    }
}

/* FULL = false (no mask, bias or dropout; scale > 0): the scores stay raw (the callers fold scale_log2 into the
   exponent's FFMA) and only bounds and causal are applied */
template <typename T, int MW, int NT, bool TRANS, bool FULL>
__device__ __forceinline__ void apply_mods(const Params &p, float (&s)[MW][NT][4], int R0, int C0, int lane,
                                           const uint8_t *mbh, const void *bbh, const unsigned char *bt, int bstr,
                                           int ib, int jb, bool plain) {
    int g = lane >> 2, q2 = (lane & 3) * 2;
    if (!FULL) {
        if (plain) return;
#pragma unroll
        for (int m = 0; m < MW; m++)
#pragma unroll
            for (int n = 0; n < NT; n++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    int r = R0 + 16 * m + g + 8 * (e >> 1), c = C0 + 8 * n + q2 + (e & 1);
                    int i = TRANS ? c : r, j = TRANS ? r : c;
                    bool ok = i < p.Lq && j < p.Lk && !(p.causal && j > i);
                    s[m][n][e] = ok ? s[m][n][e] : -INFINITY;
                }
        return;
    }
    if (bbh) {
        if (p.bias_f32) add_bias<T, float, MW, NT, TRANS>(p, s, R0, C0, lane, (const float *)bbh, bt, bstr, ib, jb);
        else add_bias<T, T, MW, NT, TRANS>(p, s, R0, C0, lane, (const T *)bbh, bt, bstr, ib, jb);
    } else {
#pragma unroll
        for (int m = 0; m < MW; m++)
#pragma unroll
            for (int n = 0; n < NT; n++)
#pragma unroll
                for (int e = 0; e < 4; e++) s[m][n][e] *= p.scale_log2;
    }
    if (plain) return;
#pragma unroll
    for (int m = 0; m < MW; m++)
#pragma unroll
        for (int n = 0; n < NT; n++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                int r = R0 + 16 * m + g + 8 * (e >> 1), c = C0 + 8 * n + q2 + (e & 1);
                int i = TRANS ? c : r, j = TRANS ? r : c;
                bool ok = i < p.Lq && j < p.Lk && !(p.causal && j > i);
                if (mbh) {
                    uint8_t mv = mbh[(int64_t)min(i, p.Lq - 1) * p.ms[2] + (int64_t)min(j, p.Lk - 1) * p.ms[3]];
                    ok = ok && mv != 0;
                }
                s[m][n][e] = ok ? s[m][n][e] : -INFINITY;
            }
}

template <typename T> __device__ __forceinline__ void st2(T *dst, float a, float b);
template <> __device__ __forceinline__ void st2<__half>(__half *dst, float a, float b) {
    *reinterpret_cast<__half2 *>(dst) = __floats2half2_rn(a, b);
}
template <> __device__ __forceinline__ void st2<__nv_bfloat16>(__nv_bfloat16 *dst, float a, float b) {
    *reinterpret_cast<__nv_bfloat162 *>(dst) = __floats2bfloat162_rn(a, b);
}
template <> __device__ __forceinline__ void st2<float>(float *dst, float a, float b) {
    *reinterpret_cast<float2 *>(dst) = make_float2(a, b);
}

/* write a [16*MW rows] x [8*ND cols] f32 fragment block (times mul) to rows row0.., columns < dcols */
template <typename T, int MW, int ND>
__device__ __forceinline__ void store_frag(T *g, int64_t rs, const float (&acc)[MW][ND][4], int row0, int L,
                                           int dcols, float mul0, float mul1, int lane) {
    int gq = lane >> 2, q2 = (lane & 3) * 2;
#pragma unroll
    for (int m = 0; m < MW; m++)
#pragma unroll
        for (int hh = 0; hh < 2; hh++) {
            int r = row0 + 16 * m + gq + 8 * hh;
            float mul = hh ? mul1 : mul0;
            if (r >= L) continue;
#pragma unroll
            for (int n = 0; n < ND; n++) {
                int c = n * 8 + q2;
                if (c < dcols) st2<T>(g + (int64_t)r * rs + c, acc[m][n][2 * hh] * mul, acc[m][n][2 * hh + 1] * mul);
            }
        }
}

/* ------------------------------------------------------------------------------------------ forward */
/* bias of (b,h) as bytes (the staged loader) and typed pointer (apply_mods) */
template <typename T>
__device__ __forceinline__ const void *bias_bh(const Params &p, int b, int h) {
    if (!p.bias) return nullptr;
    return p.bias_f32 ? (const void *)((const float *)p.bias + b * p.bs[0] + h * p.bs[1])
                      : (const void *)((const T *)p.bias + b * p.bs[0] + h * p.bs[1]);
}
/* the wgmma backward kernels' per-(b, h) pointers: Q, K, V and dO, the forward's lse and delta (Lq floats), the f32
   dQ accumulator (NULL when dQ is written directly) */
template <typename T>
__device__ __forceinline__ void bwd_head(const Params &p, int b, int h, const T *&Q, const T *&K, const T *&V,
                                         const T *&G, const float *&lse, const float *&delta, float *&dqa) {
    const int64_t bh = (int64_t)b * p.H + h;
    Q = (const T *)p.q + b * p.sq[0] + h * p.sq[1];
    K = (const T *)p.k + b * p.sk[0] + h * p.sk[1];
    V = (const T *)p.v + b * p.sv[0] + h * p.sv[1];
    G = (const T *)p.dout + b * p.sdo[0] + h * p.sdo[1];
    lse = p.lse + bh * p.Lq;
    delta = p.delta + bh * p.Lq;
    dqa = p.dq_acc ? p.dq_acc + b * p.sqa[0] + h * p.sqa[1] : nullptr;
}

/* FULL: mask, bias and dropout compiled in (scores scaled to log2 units by apply_mods); otherwise the scores stay
   raw, the running max is in raw units and the scale rides in the exponent's FFMA (needs scale > 0) */
template <typename T, int HD, int MW, int NW, int BN, int MINB, bool FULL>
__global__ void __launch_bounds__(NW * 32, MINB) fwd_kernel(Params p) {
    constexpr int BM = 16 * MW * NW, ST = HD + 8, NT = BN / 8, ND = HD / 8, NTH = NW * 32;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    T *Qs = (T *)smem_raw, *Ks = Qs + BM * ST, *Vs = Ks + 2 * BN * ST;
    unsigned char *Bt = (unsigned char *)(Vs + 2 * BN * ST);   /* 2 staged bias tiles [BM][BN] */
    int b, h, t, sp;
    tile_of(p, &b, &h, &t, &sp);
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int i0 = t * BM, wrow = warp * 16 * MW;
    const T *Q = (const T *)p.q + b * p.sq[0] + h * p.sq[1];
    const T *K = (const T *)p.k + b * p.sk[0] + h * p.sk[1];
    const T *V = (const T *)p.v + b * p.sv[0] + h * p.sv[1];
    const uint8_t *mbh = FULL && p.mask ? p.mask + b * p.ms[0] + h * p.ms[1] : nullptr;
    const void *bbh = FULL ? bias_bh<T>(p, b, h) : nullptr;
    const int bstr = BN * (p.bias_f32 ? 4 : 2) + 16;
    const bool stage = FULL && p.bias_stage != 0;
    const float sl = FULL ? 1.f : p.scale_log2;   /* raw score units -> log2 units */
    int ks = sp * p.split_len, jend = min(p.Lk, ks + p.split_len);
    if (p.causal && i0 + BM < jend) jend = i0 + BM;
    int nkt = jend > ks ? (jend - ks + BN - 1) / BN : 0;
    load_tile<T, HD, BM, NTH>(Qs, Q, p.sq[2], i0, p.Lq, p.D);
    if (nkt > 0) {
        load_tile<T, HD, BN, NTH>(Ks, K, p.sk[2], ks, p.Lk, p.D);
        load_tile<T, HD, BN, NTH>(Vs, V, p.sv[2], ks, p.Lk, p.Dv);
        if (stage) load_bias<NTH>(Bt, bstr, p, (const unsigned char *)bbh, i0, BM, ks, BN);
    }
    cp_commit();
    float acc[MW][ND][4], mrow[MW][2], lrow[MW][2];
#pragma unroll
    for (int m = 0; m < MW; m++) {
        mrow[m][0] = mrow[m][1] = -INFINITY; lrow[m][0] = lrow[m][1] = 0.f;
#pragma unroll
        for (int n = 0; n < ND; n++) acc[m][n][0] = acc[m][n][1] = acc[m][n][2] = acc[m][n][3] = 0.f;
    }
    uint64_t bhpos = p.offset + (uint64_t)((int64_t)b * p.H + h) * (uint64_t)p.Lq * (uint64_t)p.Lk;
    for (int kt = 0; kt < nkt; kt++) {
        int buf = kt & 1, j0 = ks + kt * BN;
        cp_wait<0>();
        __syncthreads();
        if (kt + 1 < nkt) {
            load_tile<T, HD, BN, NTH>(Ks + (buf ^ 1) * BN * ST, K, p.sk[2], j0 + BN, p.Lk, p.D);
            load_tile<T, HD, BN, NTH>(Vs + (buf ^ 1) * BN * ST, V, p.sv[2], j0 + BN, p.Lk, p.Dv);
            if (stage) load_bias<NTH>(Bt + (buf ^ 1) * BM * bstr, bstr, p, (const unsigned char *)bbh, i0, BM, j0 + BN, BN);
        }
        cp_commit();
        float s[MW][NT][4];
#pragma unroll
        for (int m = 0; m < MW; m++)
#pragma unroll
            for (int n = 0; n < NT; n++) s[m][n][0] = s[m][n][1] = s[m][n][2] = s[m][n][3] = 0.f;
        mma_abT<T, MW, NT, HD, ST, ST>(s, Qs + wrow * ST, Ks + buf * BN * ST, lane);
        bool plain = !mbh && j0 + BN <= p.Lk && !(p.causal && j0 + BN - 1 > i0 + wrow);
        apply_mods<T, MW, NT, false, FULL>(p, s, i0 + wrow, j0, lane, mbh, bbh, stage ? Bt + buf * BM * bstr : nullptr,
                                           bstr, i0, j0, plain);
        float alpha[MW][2];
        bool grow = false;
#pragma unroll
        for (int m = 0; m < MW; m++)
#pragma unroll
            for (int hh = 0; hh < 2; hh++) {
                float mx = -INFINITY;
#pragma unroll
                for (int n = 0; n < NT; n++) mx = fmaxf(mx, fmaxf(s[m][n][2 * hh], s[m][n][2 * hh + 1]));
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
                float mnew = fmaxf(mrow[m][hh], mx);
                float muse = mnew == -INFINITY ? 0.f : mnew;
                float msl = muse * sl;
                alpha[m][hh] = ex2((mrow[m][hh] - muse) * sl);
                grow |= mnew != mrow[m][hh];
                float sum = 0.f;
#pragma unroll
                for (int n = 0; n < NT; n++) {
                    float e0 = ex2(fmaf(s[m][n][2 * hh], sl, -msl)), e1 = ex2(fmaf(s[m][n][2 * hh + 1], sl, -msl));
                    s[m][n][2 * hh] = e0; s[m][n][2 * hh + 1] = e1;
                    sum += e0 + e1;
                }
                lrow[m][hh] = lrow[m][hh] * alpha[m][hh] + sum;
                mrow[m][hh] = mnew;
            }
        /* rescale the accumulators only when some row of the warp found a larger max (after the first tiles,
           rarely): alpha is exactly 1 for the others */
        if (FULL || __any_sync(0xffffffffu, grow)) {   /* FULL: measured 2 % slower with the vote */
#pragma unroll
            for (int m = 0; m < MW; m++)
#pragma unroll
                for (int n = 0; n < ND; n++) {
                    acc[m][n][0] *= alpha[m][0]; acc[m][n][1] *= alpha[m][0];
                    acc[m][n][2] *= alpha[m][1]; acc[m][n][3] *= alpha[m][1];
                }
        }
        if (FULL && p.dropout) {
            int g = lane >> 2, q2 = (lane & 3) * 2;
#pragma unroll
            for (int m = 0; m < MW; m++)
#pragma unroll
                for (int n = 0; n < NT; n++)
#pragma unroll
                    for (int hh = 0; hh < 2; hh++) {
                        int i = i0 + wrow + 16 * m + g + 8 * hh, j = j0 + 8 * n + q2;
                        float z0, z1;
                        keep_factor2(p, bhpos + (uint64_t)i * p.Lk + j, &z0, &z1);
                        s[m][n][2 * hh] *= z0; s[m][n][2 * hh + 1] *= z1;
                    }
        }
        uint32_t pa[MW][NT / 2][4];
        to_afrag<T, MW, NT>(pa, s);
        mma_pb<T, MW, NT / 2, ND, ST>(acc, pa, Vs + buf * BN * ST, lane);
    }
    cp_wait<0>(); /* no copy may be in flight at exit (nkt == 0 leaves the Q copy pending) */
    /* finish: sum l over the quad, write O and LSE (or this split's normalised partial and its lse) */
    int64_t bh = (int64_t)b * p.H + h, bhlq = (int64_t)p.B * p.H * p.Lq;
    T *O = (T *)p.out + b * p.so[0] + h * p.so[1];
    float *lse = p.nsplit > 1 ? p.part + (int64_t)p.nsplit * bhlq * p.Dv + sp * bhlq + bh * p.Lq
                              : p.lse + bh * p.Lq;
    float *po = p.part + (sp * bhlq + bh * p.Lq) * p.Dv;
    int g = lane >> 2, q2 = (lane & 3) * 2;
#pragma unroll
    for (int m = 0; m < MW; m++) {
        float inv[2];
#pragma unroll
        for (int hh = 0; hh < 2; hh++) {
            float l = lrow[m][hh];
            l += __shfl_xor_sync(0xffffffffu, l, 1);
            l += __shfl_xor_sync(0xffffffffu, l, 2);
            inv[hh] = l > 0.f ? 1.f / l : 0.f;
            int r = i0 + wrow + 16 * m + g + 8 * hh;
            if ((lane & 3) == 0 && r < p.Lq) lse[r] = l > 0.f ? (mrow[m][hh] * sl + log2f(l)) * SDPA_LN2 : -INFINITY;
        }
        if (p.nsplit > 1) {
#pragma unroll
            for (int hh = 0; hh < 2; hh++) {
                int r = i0 + wrow + 16 * m + g + 8 * hh;
                if (r >= p.Lq) continue;
#pragma unroll
                for (int n = 0; n < ND; n++) {
                    int c = n * 8 + q2;
                    if (c < p.Dv)
                        *reinterpret_cast<float2 *>(po + (int64_t)r * p.Dv + c) =
                            make_float2(acc[m][n][2 * hh] * inv[hh], acc[m][n][2 * hh + 1] * inv[hh]);
                }
            }
        } else {
            float one[1][ND][4];
#pragma unroll
            for (int n = 0; n < ND; n++)
#pragma unroll
                for (int e = 0; e < 4; e++) one[0][n][e] = acc[m][n][e];
            store_frag<T, 1, ND>(O, p.so[2], one, i0 + wrow + 16 * m, p.Lq, p.Dv, inv[0], inv[1], lane);
        }
    }
}

/* split-KV: o = sum_s exp(lse_s - lse) o_s with lse = log sum_s exp(lse_s); one warp per row */
template <typename T>
__global__ void combine_kernel(Params p) {
    int64_t row = (int64_t)blockIdx.x * (blockDim.x / 32) + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    int64_t bhlq = (int64_t)p.B * p.H * p.Lq;
    if (row >= bhlq) return;
    const float *pl = p.part + (int64_t)p.nsplit * bhlq * p.Dv;
    float mx = -INFINITY;
    for (int x = 0; x < p.nsplit; x++) mx = fmaxf(mx, pl[x * bhlq + row]);
    float L = -INFINITY;
    if (mx != -INFINITY) {
        float sum = 0.f;
        for (int x = 0; x < p.nsplit; x++) sum += expf(pl[x * bhlq + row] - mx);
        L = mx + logf(sum);
    }
    int i = (int)(row % p.Lq);
    int64_t bh = row / p.Lq;
    int h = (int)(bh % p.H), b = (int)(bh / p.H);
    T *o = (T *)p.out + b * p.so[0] + h * p.so[1] + (int64_t)i * p.so[2];
    for (int d = lane; d < p.Dv; d += 32) {
        float acc = 0.f;
        if (L != -INFINITY)
            for (int x = 0; x < p.nsplit; x++) {
                float ls = pl[x * bhlq + row];
                if (ls != -INFINITY) acc += expf(ls - L) * p.part[(x * bhlq + row) * p.Dv + d];
            }
        o[d] = TT<T>::from_f(acc);
    }
    if (lane == 0) p.lse[row] = L;
}

/* f32 accumulator [B*H*L][Dd] (already scaled, contiguous) -> an output of type O through its strides */
template <typename O>
__global__ void acc_convert_kernel(const float *acc, O *out, int64_t s0, int64_t s1, int64_t s2, int H, int L, int Dd,
                                   int64_t n) {
    int64_t x = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (x >= n) return;
    int d = (int)(x % Dd);
    int64_t row = x / Dd;
    int i = (int)(row % L);
    int64_t bh = row / L;
    int h = (int)(bh % H), b = (int)(bh / H);
    out[b * s0 + h * s1 + (int64_t)i * s2 + d] = TT<O>::from_f(acc[x]);
}

/* the same, 8 elements a thread: two 16-byte loads, one 16-byte store (two for f32). Dd % 8 == 0 and the output
   16-byte aligned through its strides (acc_convert checks). Why: the per-element version moved dQ at ~1.2 TB/s
   (80 us for the ViT-B step's 98 MB, bench/vit_train_run6); with 4x the bytes in flight per thread it runs near
   the copy bandwidth. */
template <typename O>
__global__ void acc_convert8_kernel(const float *acc, O *out, int64_t s0, int64_t s1, int64_t s2, int H, int L,
                                    int Dd8, int64_t n8) {
    int64_t x = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (x >= n8) return;
    const float4 a = reinterpret_cast<const float4 *>(acc)[2 * x], c = reinterpret_cast<const float4 *>(acc)[2 * x + 1];
    int d = (int)(x % Dd8) * 8;
    int64_t row = x / Dd8;
    int i = (int)(row % L);
    int64_t bh = row / L;
    int h = (int)(bh % H), b = (int)(bh / H);
    O *dst = out + b * s0 + h * s1 + (int64_t)i * s2 + d;
    if constexpr (std::is_same<O, float>::value) {
        reinterpret_cast<float4 *>(dst)[0] = a;
        reinterpret_cast<float4 *>(dst)[1] = c;
    } else {
        *reinterpret_cast<uint4 *>(dst) = make_uint4(TT<O>::pack(a.x, a.y), TT<O>::pack(a.z, a.w), TT<O>::pack(c.x, c.y),
                                                     TT<O>::pack(c.z, c.w));
    }
}

/* ------------------------------------------------------------------------------------------ backward */
/* delta[bh, i] = sum_d dO[i,d] O[i,d]; one warp per row. With dout_f32 the upstream gradient arrives in f32: it
   is rounded to T here, written to the contiguous dout_lp (what the backward kernel then reads) and delta is
   taken from the rounded values, so that delta = rowsum(P * dP) holds for the dP the kernel computes. */
template <typename T>
__global__ void delta_kernel(Params p) {
    int64_t row = (int64_t)blockIdx.x * (blockDim.x / 32) + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    int64_t nrows = (int64_t)p.B * p.H * p.Lq;
    if (row >= nrows) return;
    int i = (int)(row % p.Lq);
    int64_t bh = row / p.Lq;
    int h = (int)(bh % p.H), b = (int)(bh / p.H);
    const T *o = (const T *)p.o + b * p.so[0] + h * p.so[1] + (int64_t)i * p.so[2];
    float s = 0.f;
    if (p.dout_f32) {
        const float *g = (const float *)p.dout + b * p.sdo[0] + h * p.sdo[1] + (int64_t)i * p.sdo[2];
        T *w = (T *)p.dout_lp + row * p.Dv;
        for (int d = lane; d < p.Dv; d += 32) {
            T gv = TT<T>::from_f(g[d]);
            w[d] = gv;
            s += TT<T>::to_f(o[d]) * TT<T>::to_f(gv);
        }
    } else {
        const T *g = (const T *)p.dout + b * p.sdo[0] + h * p.sdo[1] + (int64_t)i * p.sdo[2];
        for (int d = lane; d < p.Dv; d += 32) s += TT<T>::to_f(o[d]) * TT<T>::to_f(g[d]);
    }
#pragma unroll
    for (int w = 16; w > 0; w >>= 1) s += __shfl_xor_sync(0xffffffffu, s, w);
    if (lane == 0) p.delta[row] = s;
    if (p.lsep && lane == 0) {   /* the padded copies (whole 16-byte cp.async chunks, no bounds in bwd_kernel) */
        float *lp = p.lsep + bh * p.Lqp, *dp = p.dlp + bh * p.Lqp, l = p.lse[row];
        lp[i] = l == -INFINITY ? INFINITY : l * SDPA_LOG2E;   /* fully masked row: P = 0 */
        dp[i] = s;
        for (int x = i; x < p.Lqp - p.Lq; x += p.Lq) { lp[p.Lq + x] = INFINITY; dp[p.Lq + x] = 0.f; }
    }
}

/* delta_kernel with 16-byte accesses: G = Dv / 8 threads per row (8 elements each), 32 / G rows per warp.
   For Dv in {64, 128} with O, dO (and the f32 dO) 16-byte aligned through their strides (launch_delta checks).
   Why: one warp per row reads 4 bytes of O and dO per lane at D = 64, too few bytes in flight to reach the
   memory bandwidth (62 us for the ViT-B step's 66 MB, bench/vit_train_run6). Same sums as delta_kernel up to
   the order of the additions. */
template <typename T, int G>
__global__ void delta16_kernel(Params p) {
    constexpr int RPW = 32 / G;   /* rows per warp */
    const int lane = threadIdx.x & 31, c = lane % G;
    int64_t row = ((int64_t)blockIdx.x * (blockDim.x / 32) + (threadIdx.x >> 5)) * RPW + lane / G;
    int64_t nrows = (int64_t)p.B * p.H * p.Lq;
    const bool ok = row < nrows;
    if (!ok) row = nrows - 1;   /* every lane stays for the shuffles; its results are dropped */
    int i = (int)(row % p.Lq);
    int64_t bh = row / p.Lq;
    int h = (int)(bh % p.H), b = (int)(bh / p.H);
    const uint4 ov = *reinterpret_cast<const uint4 *>((const T *)p.o + b * p.so[0] + h * p.so[1] + (int64_t)i * p.so[2] + 8 * c);
    uint4 gv;
    if (p.dout_f32) {
        const float *g = (const float *)p.dout + b * p.sdo[0] + h * p.sdo[1] + (int64_t)i * p.sdo[2] + 8 * c;
        const float4 g0 = reinterpret_cast<const float4 *>(g)[0], g1 = reinterpret_cast<const float4 *>(g)[1];
        gv = make_uint4(TT<T>::pack(g0.x, g0.y), TT<T>::pack(g0.z, g0.w), TT<T>::pack(g1.x, g1.y), TT<T>::pack(g1.z, g1.w));
        if (ok) *reinterpret_cast<uint4 *>((T *)p.dout_lp + row * p.Dv + 8 * c) = gv;
    } else {
        gv = *reinterpret_cast<const uint4 *>((const T *)p.dout + b * p.sdo[0] + h * p.sdo[1] + (int64_t)i * p.sdo[2] + 8 * c);
    }
    const T *oe = reinterpret_cast<const T *>(&ov), *ge = reinterpret_cast<const T *>(&gv);
    float s = 0.f;
#pragma unroll
    for (int e = 0; e < 8; e++) s += TT<T>::to_f(oe[e]) * TT<T>::to_f(ge[e]);
#pragma unroll
    for (int w = G / 2; w > 0; w >>= 1) s += __shfl_xor_sync(0xffffffffu, s, w);
    if (!ok || c != 0) return;
    p.delta[row] = s;
    if (p.lsep) {   /* the padded copies, as delta_kernel */
        float *lp = p.lsep + bh * p.Lqp, *dp = p.dlp + bh * p.Lqp, l = p.lse[row];
        lp[i] = l == -INFINITY ? INFINITY : l * SDPA_LOG2E;
        dp[i] = s;
        for (int x = i; x < p.Lqp - p.Lq; x += p.Lq) { lp[p.Lq + x] = INFINITY; dp[p.Lq + x] = 0.f; }
    }
}

/* a[0] += x, a[1] += y in f32 (8-byte aligned); one vector reduction on sm_90 */
__device__ __forceinline__ void red2(float *a, float x, float y) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    atomicAdd(reinterpret_cast<float2 *>(a), make_float2(x, y));
#else
    atomicAdd(a, x);
    atomicAdd(a + 1, y);
#endif
}

/* dK/dV of a [16*MW rows] x [8*ND cols] fragment block: stored (type O) or, when the block saw one query range
   of several, added into the f32 accumulator (times mul) */
template <int MW, int ND>
__device__ __forceinline__ void red_frag(float *g, int64_t rs, const float (&acc)[MW][ND][4], int row0, int L,
                                         int dcols, float mul, int lane) {
    int gq = lane >> 2, q2 = (lane & 3) * 2;
#pragma unroll
    for (int m = 0; m < MW; m++)
#pragma unroll
        for (int hh = 0; hh < 2; hh++) {
            int r = row0 + 16 * m + gq + 8 * hh;
            if (r >= L) continue;
#pragma unroll
            for (int n = 0; n < ND; n++) {
                int c = n * 8 + q2;
                if (c < dcols) red2(g + (int64_t)r * rs + c, acc[m][n][2 * hh] * mul, acc[m][n][2 * hh + 1] * mul);
            }
        }
}

/* lse/delta tiles of the backward: plain loads after the barrier, or (lse_async) cp.async from padded copies
   that delta_kernel writes. Which is faster follows the kernel's register allocation, not a principle: measured
   on the H100 (bench/RESULTS_FLASH.md, flash3), cp.async won only for the full kernel at D = 32 (about 3 % on the
   AQR cases) and lost by 3-11 % on the plain D = 64 / 128 kernels and 4 % on the full D = 64 one. */
template <int HD, bool FULL> __host__ __device__ constexpr bool lse_async() { return FULL && HD == 32; }

/* The backward in one kernel (FlashAttention-2's loop order): one CTA per (b, h, key tile of BM keys, query
   range); warps own 16*MW key rows; K and V stay in shared memory while Q, dO, lse and delta tiles of BN queries
   stream through a double buffer. Per query tile:
     S^T = K Q^T and dP^T = V dO^T (the transposed problem: P^T and dS^T come out as the A fragments that
     dV += (PZ)^T dO and dK += dS^T Q need, with no shared-memory round trip);
     dS^T (T) goes to shared memory (two buffers), and after the next tile's barrier the warps split
     dQ_tile = dS K ([BN x D], a reduction over this CTA's keys) and add it into the f32 dQ accumulator with
     vector atomics: one barrier per tile, dQ a tile behind.
   5 matrix products per tile pair and one exponential per score (the previous separate dQ pass recomputed S and
   dP: 7 products and two exponentials). The price is nondeterminism in the last bits of dQ (the order of the
   atomic adds from different key tiles varies from run to run; PyTorch's flash and cuDNN backward do the same).
   dK and dV are deterministic unless the query range is split (nsplit > 1: too few key tiles to fill the GPU, e.g.
   40,000 queries over 1,024 keys); then each CTA adds its partial dK/dV into f32 accumulators the same way.
   dbias is written from the registers (f32, before rounding dS): each score belongs to exactly one CTA, so a
   plain store, or an atomic add where the bias is broadcast. */
template <typename T, int HD, int MW, int NW, int BN, int MINB, bool FULL>
__global__ void __launch_bounds__(NW * 32, MINB) bwd_kernel(Params p) {
    constexpr int BM = 16 * MW * NW, ST = HD + 8, NT = BN / 8, ND = HD / 8, NTH = NW * 32, SS = BN + 8;
    /* dQ jobs: one 16-query m-tile x NJ pairs of 8-column n-tiles; the A fragment (dS) serves 2*NJ MMAs */
    constexpr int MQ = BN / 16, NPAIR = HD / 16, NJ0 = MQ * NPAIR / NW;
    constexpr int NJ = (NJ0 >= 1 && NPAIR % (NJ0 >= 1 ? NJ0 : 1) == 0) ? NJ0 : 1, PPJ = NPAIR / NJ;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    T *Ks = (T *)smem_raw, *Vs = Ks + BM * ST, *Qs = Vs + BM * ST, *Gs = Qs + 2 * BN * ST, *Ss = Gs + 2 * BN * ST;
    /* KS independent partial sums in the dQ product: at least 8 accumulator chains per warp, so that the MMA
       latency of a long reduction over the CTA's keys is hidden (one CTA per SM; with two, the other CTA's warps
       hide it, and the registers are capped at 128) */
    constexpr int KS0 = (NJ >= 4 || MINB > 1) ? 1 : 4 / NJ, KS = (BM / 16) % KS0 == 0 ? KS0 : 1;
    constexpr bool ASYNC = lse_async<HD, FULL>();
    float *Ls = (float *)(Ss + 2 * BM * SS), *Dl = Ls + 2 * BN;
    unsigned char *Bt = (unsigned char *)(Dl + 2 * BN);   /* 2 staged bias tiles [BN queries][BM keys] */
    int b, h, t, sp;
    tile_of(p, &b, &h, &t, &sp);
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int j0 = t * BM, wrow = warp * 16 * MW;
    const T *Q = (const T *)p.q + b * p.sq[0] + h * p.sq[1];
    const T *K = (const T *)p.k + b * p.sk[0] + h * p.sk[1];
    const T *V = (const T *)p.v + b * p.sv[0] + h * p.sv[1];
    const T *G = (const T *)p.dout + b * p.sdo[0] + h * p.sdo[1];
    const float *lse = ASYNC ? p.lsep + ((int64_t)b * p.H + h) * p.Lqp : p.lse + ((int64_t)b * p.H + h) * p.Lq;
    const float *delta = ASYNC ? p.dlp + ((int64_t)b * p.H + h) * p.Lqp : p.delta + ((int64_t)b * p.H + h) * p.Lq;
    const uint8_t *mbh = FULL && p.mask ? p.mask + b * p.ms[0] + h * p.ms[1] : nullptr;
    const void *bbh = FULL ? bias_bh<T>(p, b, h) : nullptr;
    float *dbh = FULL && p.dbias ? p.dbias + b * p.bs[0] + h * p.bs[1] : nullptr;
    float *dqa = p.dq_acc ? p.dq_acc + b * p.sqa[0] + h * p.sqa[1] : nullptr;
    const int bstr = BM * (p.bias_f32 ? 4 : 2) + 16;
    const bool stage = FULL && p.bias_stage != 0;
    const float sl = FULL ? 1.f : p.scale_log2;   /* see fwd_kernel */
    /* this CTA's queries: range sp (split_len is a multiple of BN), from the first that sees key j0 if causal */
    int qa = sp * p.split_len, qb = min(p.Lq, qa + p.split_len);
    int istart = p.causal ? max(qa, (j0 / BN) * BN) : qa;
    int nqt = qb > istart ? (qb - istart + BN - 1) / BN : 0;
    load_tile<T, HD, BM, NTH>(Ks, K, p.sk[2], j0, p.Lk, p.D);
    load_tile<T, HD, BM, NTH>(Vs, V, p.sv[2], j0, p.Lk, p.Dv);
    auto load_q = [&](int it, int buf) {
        int i = istart + it * BN;
        load_tile<T, HD, BN, NTH>(Qs + buf * BN * ST, Q, p.sq[2], i, p.Lq, p.D);
        load_tile<T, HD, BN, NTH>(Gs + buf * BN * ST, G, p.sdo[2], i, p.Lq, p.Dv);
        if (stage) load_bias<NTH>(Bt + buf * BN * bstr, bstr, p, (const unsigned char *)bbh, i, BN, j0, BM);
        if (ASYNC) {   /* from the padded copies, already in log2 units */
            for (int x = threadIdx.x; x < BN / 2; x += NTH) {
                int xx = (x % (BN / 4)) * 4;
                cp_async16((x < BN / 4 ? Ls : Dl) + buf * BN + xx, (x < BN / 4 ? lse : delta) + i + xx, true);
            }
        } else {
            for (int x = threadIdx.x; x < BN; x += NTH) {
                int ii = i + x;
                float l = ii < p.Lq ? lse[ii] : INFINITY;
                Ls[buf * BN + x] = (l == -INFINITY ? INFINITY : l) * SDPA_LOG2E;   /* fully masked row: P = 0 */
                Dl[buf * BN + x] = ii < p.Lq ? delta[ii] : 0.f;
            }
        }
    };
    if (nqt > 0) load_q(0, 0);
    cp_commit();
    float dk[MW][ND][4], dv[MW][ND][4];
#pragma unroll
    for (int m = 0; m < MW; m++)
#pragma unroll
        for (int n = 0; n < ND; n++)
#pragma unroll
            for (int e = 0; e < 4; e++) dk[m][n][e] = dv[m][n][e] = 0.f;
    uint64_t bhpos = p.offset + (uint64_t)((int64_t)b * p.H + h) * (uint64_t)p.Lq * (uint64_t)p.Lk;
    int g = lane >> 2, q2 = (lane & 3) * 2;
    /* dQ_tile[BN x D] = dS K of query tile it, after a barrier behind its Ss writes: A = dS = Ss^T
       (ldmatrix.trans), B = K rows (ldmatrix.trans, as in mma_pb); added into the f32 accumulator */
    auto dq_tile = [&](int it) {
        const T *Sb = Ss + (it & 1) * BM * SS;
        int i0 = istart + it * BN;
        for (int job = warp; job < MQ * PPJ; job += NW) {
            int mq = job / PPJ, pr0 = (job % PPJ) * NJ;
            if (pr0 * 16 >= p.D) continue;
            float acc[KS][NJ][2][4];
#pragma unroll
            for (int ks = 0; ks < KS; ks++)
#pragma unroll
                for (int jj = 0; jj < NJ; jj++)
#pragma unroll
                    for (int e = 0; e < 4; e++) acc[ks][jj][0][e] = acc[ks][jj][1][e] = 0.f;
#pragma unroll
            for (int kk = 0; kk < BM / 16; kk++) {
                uint32_t a[4];
                ldsm_x4<true>(a, Sb + (kk * 16 + ((lane >> 4) & 1) * 8 + (lane & 7)) * SS + mq * 16 + ((lane >> 3) & 1) * 8);
#pragma unroll
                for (int jj = 0; jj < NJ; jj++) {
                    uint32_t bb[4];
                    ldsm_x4<true>(bb, Ks + (kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * ST + (pr0 + jj) * 16 + (lane >> 4) * 8);
                    TT<T>::mma(acc[kk % KS][jj][0], a, bb[0], bb[1]);
                    TT<T>::mma(acc[kk % KS][jj][1], a, bb[2], bb[3]);
                }
            }
#pragma unroll
            for (int ks = 1; ks < KS; ks++)
#pragma unroll
                for (int jj = 0; jj < NJ; jj++)
#pragma unroll
                    for (int e = 0; e < 4; e++) { acc[0][jj][0][e] += acc[ks][jj][0][e]; acc[0][jj][1][e] += acc[ks][jj][1][e]; }
#pragma unroll
            for (int hh = 0; hh < 2; hh++) {
                int r = i0 + mq * 16 + g + 8 * hh;
                if (r >= p.Lq) continue;
                float *row = dqa + (int64_t)r * p.sqa[2];
#pragma unroll
                for (int jj = 0; jj < NJ; jj++)
#pragma unroll
                    for (int nn = 0; nn < 2; nn++) {
                        int c = (pr0 + jj) * 16 + nn * 8 + q2;
                        if (c < p.D) red2(row + c, acc[0][jj][nn][2 * hh] * p.scale, acc[0][jj][nn][2 * hh + 1] * p.scale);
                    }
            }
        }
    };
    for (int it = 0; it < nqt; it++) {
        int buf = it & 1, i0 = istart + it * BN;
        cp_wait<0>();
        /* tile it landed; every warp is done with buffer buf^1, and Ss[(it-1) & 1] (dS of tile it-1) is
           complete; Ss[it & 1] was last read by the dQ of tile it-2, before this barrier */
        __syncthreads();
        if (it + 1 < nqt) load_q(it + 1, buf ^ 1);
        cp_commit();
        if (dqa && it > 0) dq_tile(it - 1);   /* one barrier per tile: dQ runs a tile behind */
        const T *Qb = Qs + buf * BN * ST, *Gb = Gs + buf * BN * ST;
        const float *Lb = Ls + buf * BN, *Db = Dl + buf * BN;
        float s[MW][NT][4], dp[MW][NT][4];
#pragma unroll
        for (int m = 0; m < MW; m++)
#pragma unroll
            for (int n = 0; n < NT; n++)
#pragma unroll
                for (int e = 0; e < 4; e++) s[m][n][e] = dp[m][n][e] = 0.f;
        mma_abT<T, MW, NT, HD, ST, ST>(s, Ks + wrow * ST, Qb, lane);      /* S^T = K Q^T */
        mma_abT<T, MW, NT, HD, ST, ST>(dp, Vs + wrow * ST, Gb, lane);     /* dP^T = V dO^T */
        /* queries >= Lq have lse = +inf (P = 0); keys >= Lk must be masked: their dS feeds dQ */
        bool plain = !mbh && j0 + wrow + 16 * MW <= p.Lk && !(p.causal && j0 + wrow + 16 * MW - 1 > i0);
        apply_mods<T, MW, NT, true, FULL>(p, s, j0 + wrow, i0, lane, mbh, bbh, stage ? Bt + buf * BN * bstr : nullptr,
                                          bstr, i0, j0, plain);
#pragma unroll
        for (int m = 0; m < MW; m++)
#pragma unroll
            for (int n = 0; n < NT; n++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    int c = 8 * n + q2 + (e & 1);
                    float pr = ex2(fmaf(s[m][n][e], sl, -Lb[c]));
                    float z = 1.f;
                    if (FULL && p.dropout) {
                        int i = i0 + c, j = j0 + wrow + 16 * m + g + 8 * (e >> 1);
                        z = keep_factor(p, bhpos + (uint64_t)i * p.Lk + j);
                    }
                    dp[m][n][e] = pr * (z * dp[m][n][e] - Db[c]); /* dS^T */
                    s[m][n][e] = pr * z;                          /* (P Z)^T */
                }
        if (dbh) {   /* for fixed e, the lanes of one store cover 8 consecutive keys of 4 queries: full sectors */
#pragma unroll
            for (int m = 0; m < MW; m++)
#pragma unroll
                for (int n = 0; n < NT; n++)
#pragma unroll
                    for (int e = 0; e < 4; e++) {
                        int i = i0 + 8 * n + q2 + (e & 1), j = j0 + wrow + 16 * m + g + 8 * (e >> 1);
                        if (i < p.Lq && j < p.Lk) {
                            float *at = dbh + (int64_t)i * p.bs[2] + (int64_t)j * p.bs[3];
                            if (p.dbias_atomic) atomicAdd(at, dp[m][n][e]);
                            else *at = dp[m][n][e];
                        }
                    }
        }
        uint32_t pa[MW][NT / 2][4];
        to_afrag<T, MW, NT>(pa, s);
        mma_pb<T, MW, NT / 2, ND, ST>(dv, pa, Gb, lane);   /* dV += (PZ)^T dO */
        to_afrag<T, MW, NT>(pa, dp);
        mma_pb<T, MW, NT / 2, ND, ST>(dk, pa, Qb, lane);   /* dK += dS^T Q */
        if (dqa) {   /* dS^T -> Ss[it & 1] [key][query] (the packed A fragments: (row g | g+8, columns 16kt + q2 | +8)) */
            T *Sb = Ss + (it & 1) * BM * SS;
#pragma unroll
            for (int m = 0; m < MW; m++)
#pragma unroll
                for (int kt = 0; kt < NT / 2; kt++) {
                    T *r0 = Sb + (wrow + 16 * m + g) * SS + 16 * kt + q2;
                    *reinterpret_cast<uint32_t *>(r0) = pa[m][kt][0];
                    *reinterpret_cast<uint32_t *>(r0 + 8 * SS) = pa[m][kt][1];
                    *reinterpret_cast<uint32_t *>(r0 + 8) = pa[m][kt][2];
                    *reinterpret_cast<uint32_t *>(r0 + 8 * SS + 8) = pa[m][kt][3];
                }
        }
    }
    if (dqa && nqt > 0) {   /* the last tile's dQ */
        __syncthreads();
        dq_tile(nqt - 1);
    }
    cp_wait<0>();
    if (p.nsplit > 1) {   /* one query range of several: add into the f32 accumulators (zeroed by the host) */
        if (p.dk_acc) red_frag<MW, ND>(p.dk_acc + b * p.ska[0] + h * p.ska[1], p.ska[2], dk, j0 + wrow, p.Lk,
                                              p.D, p.scale, lane);
        if (p.dv_acc) red_frag<MW, ND>(p.dv_acc + b * p.sva[0] + h * p.sva[1], p.sva[2], dv, j0 + wrow, p.Lk,
                                              p.Dv, 1.f, lane);
    } else if (p.grad_f32) {
        if (p.dk) store_frag<float, MW, ND>((float *)p.dk + b * p.sdk[0] + h * p.sdk[1], p.sdk[2], dk, j0 + wrow, p.Lk,
                                            p.D, p.scale, p.scale, lane);
        if (p.dv) store_frag<float, MW, ND>((float *)p.dv + b * p.sdv[0] + h * p.sdv[1], p.sdv[2], dv, j0 + wrow, p.Lk,
                                            p.Dv, 1.f, 1.f, lane);
    } else {
        if (p.dk) store_frag<T, MW, ND>((T *)p.dk + b * p.sdk[0] + h * p.sdk[1], p.sdk[2], dk, j0 + wrow, p.Lk, p.D,
                                        p.scale, p.scale, lane);
        if (p.dv) store_frag<T, MW, ND>((T *)p.dv + b * p.sdv[0] + h * p.sdv[1], p.sdv[2], dv, j0 + wrow, p.Lk, p.Dv,
                                        1.f, 1.f, lane);
    }
}

/* ------------------------------------------------------------------------------------------ wgmma kernels (sm_90a) */
/* Hopper's warpgroup MMA for the plain case (no mask, bias or dropout; causal allowed) and an additive bias
   (wg_fwd_kernel BIAS; in the backward wg_bwd_kernel BIAS, D = 64, not causal), f16/bf16, D == Dv in {64, 128}
   (the forward also at 32):
   the same outputs as fwd_kernel (o, and lse in natural-log units) from tensor-core instructions that read their
   B operand (and in S = Q K^T their A operand too) straight from shared memory, issued by a whole warpgroup
   (4 warps, 64 rows) and running asynchronously to the issuing threads.
   Shared-memory tiles use the 128-byte swizzle the wgmma descriptors describe: a tile of R rows x D columns is
   stored as D/64 column blocks of [R][64] elements (128 bytes a row); in row r the 16-byte chunk c sits at chunk
   c ^ (r & 7); each block starts 1024-byte aligned. One layout serves K-major operands (Q and K in S = Q K^T:
   rows are M or N, 64 contiguous k) and the N-major V of O += P V (rows are k, 64 contiguous n; transpose flag).
   D = 32 (forward only): rows of 64 bytes with the 64-byte swizzle instead (chunk c of row r at c ^ ((r >> 1) & 3),
   8-row groups 512 bytes apart), not 128-byte rows padded with 64 unused bytes: half the shared memory and no
   copy bandwidth spent on padding. PTX ISA, "Matrix Descriptor Format" of the asynchronous warpgroup-level
   matrix shared-memory layout: bits 62-63 swizzle mode (1: 128B, 2: 64B), bits 32-45 stride byte offset >> 4
   (K-major: between 8-row groups; N-major with one atom of n: between 8-k-row groups, the same 8 rows x 64
   bytes), bits 16-29 leading byte offset (unused when one swizzle atom spans the operand's k (K-major) or n
   (N-major) extent, as here: 16 k = 32 bytes, 32 n = 64 bytes); an operand's k step inside an atom advances the
   start address by 32 bytes, as in the 128-byte case. Swizzle<2,4,3> in CUTLASS's terms (address bits 4-5 ^= 7-8).
   Only the sm_90a pass compiles the bodies (__CUDA_ARCH_FEAT_SM90_ALL); the sm_80 / sm_90 passes get empty
   kernels, and nn__cu_wgmma() (a probe kernel, once) tells the host which image the device runs. */
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define SDPA_WG 1
#endif

#ifdef SDPA_WG
/* one wgmma form for T = __half or __nv_bfloat16: FORM(type) is the instruction text, OUTS (in parentheses) the
   accumulator operands, the rest the inputs */
#define WG_UNPAREN(...) __VA_ARGS__
#define WG_ASM(T, FORM, OUTS, ...)                                                                                 \
    do {                                                                                                           \
        if (std::is_same<T, __half>::value) asm volatile(FORM("f16") : WG_UNPAREN OUTS : __VA_ARGS__);             \
        else asm volatile(FORM("bf16") : WG_UNPAREN OUTS : __VA_ARGS__);                                           \
    } while (0)
#define WG_D32(d, o) "+f"(d[o + 0]), "+f"(d[o + 1]), "+f"(d[o + 2]), "+f"(d[o + 3]), "+f"(d[o + 4]), "+f"(d[o + 5]), \
    "+f"(d[o + 6]), "+f"(d[o + 7]), "+f"(d[o + 8]), "+f"(d[o + 9]), "+f"(d[o + 10]), "+f"(d[o + 11]), "+f"(d[o + 12]), \
    "+f"(d[o + 13]), "+f"(d[o + 14]), "+f"(d[o + 15]), "+f"(d[o + 16]), "+f"(d[o + 17]), "+f"(d[o + 18]), \
    "+f"(d[o + 19]), "+f"(d[o + 20]), "+f"(d[o + 21]), "+f"(d[o + 22]), "+f"(d[o + 23]), "+f"(d[o + 24]), \
    "+f"(d[o + 25]), "+f"(d[o + 26]), "+f"(d[o + 27]), "+f"(d[o + 28]), "+f"(d[o + 29]), "+f"(d[o + 30]), "+f"(d[o + 31])
#define WG_SS128(TY)                                                                                                   \
    "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"                                                                       \
    "wgmma.mma_async.sync.aligned.m64n128k16.f32." TY "." TY " {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, "  \
    "%12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, "  \
    "%34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, "  \
    "%56, %57, %58, %59, %60, %61, %62, %63}, %64, %65, p, 1, 1, 0, 0;\n}\n"
#define WG_RS64(TY)                                                                                                    \
    "{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"                                                                       \
    "wgmma.mma_async.sync.aligned.m64n64k16.f32." TY "." TY " {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, "   \
    "%12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, "          \
    "{%32, %33, %34, %35}, %36, p, 1, 1, 1;\n}\n"
#define WG_RS128(TY)                                                                                                   \
    "{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"                                                                       \
    "wgmma.mma_async.sync.aligned.m64n128k16.f32." TY "." TY " {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, "  \
    "%12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, "  \
    "%34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, "  \
    "%56, %57, %58, %59, %60, %61, %62, %63}, {%64, %65, %66, %67}, %68, p, 1, 1, 1;\n}\n"
#define WG_RS32(TY)                                                                                                    \
    "{\n.reg .pred p;\nsetp.ne.b32 p, %21, 0;\n"                                                                       \
    "wgmma.mma_async.sync.aligned.m64n32k16.f32." TY "." TY " {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, "   \
    "%12, %13, %14, %15}, {%16, %17, %18, %19}, %20, p, 1, 1, 1;\n}\n"

/* d[64 x 128] (+)= A[64 x 16] B[128 x 16]^T, both K-major in shared memory (descriptors); acc = 0 overwrites.
   Fragment layout of d (per warp w of the warpgroup, lane = 4 g + q): d[4 j + e] is row 16 w + g + 8 (e >> 1),
   column 8 j + 2 q + (e & 1) - the mma.sync C layout repeated over j. */
template <typename T>
__device__ __forceinline__ void wg_ss128(float (&d)[64], uint64_t da, uint64_t db, int acc) {
    WG_ASM(T, WG_SS128, (WG_D32(d, 0), WG_D32(d, 32)), "l"(da), "l"(db), "r"(acc));
}
/* d[64 x 64] (+)= A[64 x 16] (registers, the mma.sync A-fragment layout per warp) B[16 x 64], B N-major in
   shared memory (rows of k, 64 contiguous n: the transpose flag) */
template <typename T>
__device__ __forceinline__ void wg_rs64(float (&d)[32], const uint32_t (&a)[4], uint64_t db, int acc) {
    WG_ASM(T, WG_RS64, (WG_D32(d, 0)), "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(acc));
}
/* the backward's products (wg_bwd_kernel): d[64 x 64] (+)= A[64 x 16] B[64 x 16]^T, both K-major in shared
   memory (S^T = K Q^T, dP^T = V dO^T) */
#define WG_SS64(TY)                                                                                                    \
    "{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"                                                                       \
    "wgmma.mma_async.sync.aligned.m64n64k16.f32." TY "." TY " {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, "   \
    "%12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, "          \
    "%32, %33, p, 1, 1, 0, 0;\n}\n"
/* d[64 x 32] (+)= A[64 x 16] B[32 x 16]^T, A M-major (stored as rows of k, 64 contiguous m: the transpose flag),
   B K-major (dQ = dS K: A = dS^T as stored, B = K^T) */
#define WG_SS32T(TY)                                                                                                   \
    "{\n.reg .pred p;\nsetp.ne.b32 p, %18, 0;\n"                                                                       \
    "wgmma.mma_async.sync.aligned.m64n32k16.f32." TY "." TY " {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, "   \
    "%12, %13, %14, %15}, %16, %17, p, 1, 1, 1, 0;\n}\n"
#define WG_D16(d) "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), \
    "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15])
template <typename T>
__device__ __forceinline__ void wg_ss64(float (&d)[32], uint64_t da, uint64_t db, int acc) {
    WG_ASM(T, WG_SS64, (WG_D32(d, 0)), "l"(da), "l"(db), "r"(acc));
}
template <typename T>
__device__ __forceinline__ void wg_ss32t(float (&d)[16], uint64_t da, uint64_t db, int acc) {
    WG_ASM(T, WG_SS32T, (WG_D16(d)), "l"(da), "l"(db), "r"(acc));
}
/* d[64 x 32] (+)= A[64 x 16] (registers, as wg_rs64) B[16 x 32], B N-major in shared memory (rows of k, 32
   contiguous n, 64-byte swizzle): O += P V at D = 32 */
template <typename T>
__device__ __forceinline__ void wg_rs32(float (&d)[16], const uint32_t (&a)[4], uint64_t db, int acc) {
    WG_ASM(T, WG_RS32, (WG_D16(d)), "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(acc));
}
/* O += P V over all of O's columns, by D: 128 (WG_RS128: V's two 64-column swizzle atoms through the descriptor's
   leading byte offset), 64 (wg_rs64) or 32 (wg_rs32) */
template <typename T>
__device__ __forceinline__ void wg_rs_pv(float (&d)[64], const uint32_t (&a)[4], uint64_t db) {
    WG_ASM(T, WG_RS128, (WG_D32(d, 0), WG_D32(d, 32)), "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(1));
}
template <typename T>
__device__ __forceinline__ void wg_rs_pv(float (&d)[32], const uint32_t (&a)[4], uint64_t db) {
    wg_rs64<T>(d, a, db, 1);
}
template <typename T>
__device__ __forceinline__ void wg_rs_pv(float (&d)[16], const uint32_t (&a)[4], uint64_t db) {
    wg_rs32<T>(d, a, db, 1);
}
/* k step x of an A operand from registers (wg_rs64): the 8 f32 accumulators acc[8x .. 8x+7] of a 64-row result
   (its columns 16x .. 16x+15 in this thread's accumulator order) rounded to T and packed in pairs, the order of
   the mma.sync A fragment that wg_rs64 reads */
template <typename T>
__device__ __forceinline__ void wg_pack_a(uint32_t (&a)[4], const float *acc8) {
    a[0] = TT<T>::pack(acc8[0], acc8[1]);
    a[1] = TT<T>::pack(acc8[2], acc8[3]);
    a[2] = TT<T>::pack(acc8[4], acc8[5]);
    a[3] = TT<T>::pack(acc8[6], acc8[7]);
}
/* two adjacent bias values (wg_fwd_kernel BIAS) in f32: a packed pair of T (the lower key in the low half), or a
   float2 */
template <typename T>
__device__ __forceinline__ void wg_bias2(uint32_t v, float &a, float &b) {
    T x[2];
    memcpy(x, &v, sizeof v);
    a = TT<T>::to_f(x[0]); b = TT<T>::to_f(x[1]);
}
template <typename T>
__device__ __forceinline__ void wg_bias2(float2 v, float &a, float &b) { a = v.x; b = v.y; }
/* bf16 is the high half of an f32: a shift and a mask instead of two conversions */
template <>
__device__ __forceinline__ void wg_bias2<__nv_bfloat16>(uint32_t v, float &a, float &b) {
    a = __uint_as_float(v << 16); b = __uint_as_float(v & 0xffff0000u);
}
/* the wgmma backwards' epilogue: dK (times scale) and dV of key rows r0 and r0 + 8 (those below Lk) from this
   thread's N = D / 2 accumulators each, in m64nDk16's layout (d[4 j + e]: row r0 + 8 (e >> 1), column
   8 j + q2 + (e & 1)), stored in f32 (grad_f32) or T */
template <typename T, int N>
__device__ __forceinline__ void wg_store_dkdv(const Params &p, int b, int h, int r0, int q2, const float (&dk)[N],
                                              const float (&dv)[N]) {
#pragma unroll
    for (int hh = 0; hh < 2; hh++) {
        const int r = r0 + 8 * hh;
        if (r >= p.Lk) continue;
        auto store = [&](auto *dk0, auto *dv0) {   /* O = float (grad_f32) or T */
            using O = typename std::remove_pointer<decltype(dk0)>::type;
            O *rk = dk0 ? dk0 + b * p.sdk[0] + h * p.sdk[1] + (int64_t)r * p.sdk[2] : nullptr;
            O *rv = dv0 ? dv0 + b * p.sdv[0] + h * p.sdv[1] + (int64_t)r * p.sdv[2] : nullptr;
#pragma unroll
            for (int j = 0; j < N / 4; j++) {
                if (rk) st2<O>(rk + 8 * j + q2, dk[4 * j + 2 * hh] * p.scale, dk[4 * j + 2 * hh + 1] * p.scale);
                if (rv) st2<O>(rv + 8 * j + q2, dv[4 * j + 2 * hh], dv[4 * j + 2 * hh + 1]);
            }
        };
        if (p.grad_f32) store((float *)p.dk, (float *)p.dv);
        else store((T *)p.dk, (T *)p.dv);
    }
}
/* the wgmma backwards' dQ of a query tile (done) into the f32 accumulator dqa (row stride p.sqa[2]), times
   scale: rows r0 and r0 + 8 (those below Lq), this thread's N accumulators in m64n(2N)k16's layout (d[4 j + e]:
   row r0 + 8 (e >> 1), column c0 + 8 j + (e & 1)), as vector atomics */
template <int N>
__device__ __forceinline__ void wg_add_dq(const Params &p, float *dqa, int r0, int c0, const float (&dq)[N]) {
#pragma unroll
    for (int hh = 0; hh < 2; hh++) {
        const int r = r0 + 8 * hh;
        if (r >= p.Lq) continue;
        float *row = dqa + (int64_t)r * p.sqa[2] + c0;
#pragma unroll
        for (int j = 0; j < N / 4; j++) red2(row + 8 * j, dq[4 * j + 2 * hh] * p.scale, dq[4 * j + 2 * hh + 1] * p.scale);
    }
}
/* The split of a warp-specialised kernel (the attention forward and backward): warpgroup 0 loads, the others
   compute. All threads initialise the mbarriers and meet; then the loading warpgroup gives its registers away
   (regs_dec<REGS>), copies the resident tiles (`resident`, where n > 0; they complete *once) and tile i of n into
   stage i % NS (`tile(i, stage)`; it completes full[stage]) as soon as the ncompute computing threads have
   released the tile that stage held (empty[stage], phase i / NS - 1), and returns true once its copies have
   landed. Its arrivals ride on the copies (mbar_arrive_cp_async), so a phase completes when the data is there.
   FENCED (for tiles that the computing threads read with ordinary loads, not only through wgmma): each loading
   thread waits for its own copies (cp.async.wait_group) and then arrives, a release that orders them before
   the readers' acquiring wait. compute-sanitizer racecheck accepts this hand-over; with the arrivals riding on
   the copies it reported the staged-bias forward's shared loads of the bias (stop 23) - the same data, read
   correctly (the tests pass either way). The waits put one tile in flight at a time, so a FENCED loader may
   issue part of the next tile early (`ahead(i)`, that part of tile i, into stage i % NS), keeping two in flight.
   ahead's contract: the computing threads are done with the ahead part of tile j before they release tile
   j - 1. ahead(i + 1) is then issued in the trip of tile i where its stage is fresh (i + 1 < NS) or where the
   empty wait just seen (tile i - NS released, so ahead parts up to i - NS + 1 done) freed it; else (i = NS - 1)
   with its own tile, not ahead.
   The computing threads get false and take the registers (regs_inc). */
struct ws_no_ahead {
    __device__ void operator()(int) const {}
};
template <int NS, int REGS, bool FENCED = false, typename R, typename L, typename H = ws_no_ahead>
__device__ __forceinline__ bool ws_loader(int n, int ncompute, uint64_t *once, uint64_t *full, uint64_t *empty,
                                          R resident, L tile, H ahead = H()) {
    constexpr bool AHEAD = !std::is_same<H, ws_no_ahead>::value;
    static_assert(FENCED || !AHEAD, "ws_loader: an ahead part only with FENCED");
    if (threadIdx.x == 0) {
        mbar_init(once, 128);
        for (int st = 0; st < NS; st++) { mbar_init(full + st, 128); mbar_init(empty + st, ncompute); }
    }
    __syncthreads();
    if (threadIdx.x >= 128) return false;
    regs_dec<REGS>();
    if (n > 0) {
        resident();
        mbar_arrive_cp_async(once);   /* read through wgmma only */
    }
    int nahead = 0;   /* tiles whose ahead part is issued */
    for (int i = 0; i < n; i++) {
        const int st = i % NS;
        if (i >= NS) mbar_wait(empty + st, (i / NS - 1) & 1);
        if (AHEAD && nahead == i) { ahead(i); nahead++; }
        tile(i, st);
        if (FENCED) {
            cp_commit();
            /* tile i + 1's ahead stage is fresh (i + 1 < NS) or freed by the empty wait above (i >= NS) */
            if (AHEAD && i + 1 < n && (i + 1 < NS || i >= NS)) {
                ahead(i + 1); nahead++;
                cp_commit();
                cp_wait<1>();   /* all but tile i + 1's ahead part */
            } else {
                cp_wait<0>();
            }
            mbar_arrive(full + st);
        } else {
            mbar_arrive_cp_async(full + st);
        }
    }
    cp_commit();
    cp_wait<0>();
    return true;
}
#endif /* SDPA_WG */

/* ROWS x HD tile <- rows row0.. of g (row stride rs), in the swizzled layout above (D = 32: 64-byte rows and
   swizzle); rows >= L are zero */
/* (thread x copies chunk x % (HD/8) of rows x / (HD/8) + k * RSTEP: the same swizzle for every k) */
template <typename T, int HD, int ROWS, int NT>
__device__ __forceinline__ void load_tile_sw(T *s, const T *g, int64_t rs, int row0, int L) {
    constexpr int RB = HD == 32 ? 64 : 128, CPB = RB / 16, CH = HD / 8, RSTEP = NT / CH;
    static_assert(HD == 32 || HD % 64 == 0, "load_tile_sw: D 32 or a multiple of 64");
    static_assert(NT % CH == 0 && RSTEP % 8 == 0, "load_tile_sw: tile and thread count");
    const int c = threadIdx.x % CH, r = threadIdx.x / CH;
    const int sw = RB == 128 ? (r & 7) : ((r >> 1) & 3);   /* the chunk XOR of row r (period 8 rows) */
    unsigned char *d = (unsigned char *)s + (c / CPB) * (ROWS * RB) + r * RB + (((c % CPB) ^ sw) << 4);
    const T *src = g + (int64_t)(row0 + r) * rs + c * 8;
    const int64_t step = (int64_t)RSTEP * rs;
#pragma unroll
    for (int k = 0; k < (ROWS + RSTEP - 1) / RSTEP; k++) {
        if (ROWS % RSTEP && r + k * RSTEP >= ROWS) break;
        /* a row past the end keeps its own address and copies no bytes (src-size 0: PTX reads nothing and
           zero-fills): a select for a valid address made ptxas rebuild every row's 64-bit address under a
           predicate, ~150 instructions a K + V tile between the barrier and S */
        cp_async16(d + k * RSTEP * RB, src + k * step, row0 + r + k * RSTEP < L);
    }
}

/* The forward: one CTA of NWG warpgroups per (b, h, 64*NWG query rows); warpgroup w owns query rows 64 w..
   (Q stays in shared memory as the A operand); K/V tiles of 128 keys stream through three shared buffers
   (cp.async by all threads, one barrier per tile). Per tile and warpgroup: S = Q K^T (D/16 wgmma m64n128k16),
   the online softmax in registers exactly as fwd_kernel's plain path (raw-unit running max, scale folded into
   the exponent), P packed to A fragments in registers, O += P V (8 x D/64 wgmma m64n64k16). The products of
   tile j + 1 are issued together - S_{j+1} and O += P_j V_j - so that the exponentials of tile j + 1 run on
   the special-function units while the tensor cores do P_j V_j (FlashAttention-3's intra-warpgroup overlap);
   O is rescaled once that product is done. V_j is still read then: hence three buffers.
   BIAS (1: in T, 2: f32): an additive bias with contiguous keys, even Lk and even strides (wg_bias_ok), read
   straight from global memory into registers, two adjacent keys a load (the pair 2q, 2q + 1 of each accumulator
   column block), issued at the top of each tile's trip so that the barrier and S = Q K^T hide their latency. The
   scores of a biased tile become natural units at once (fmaf(s, scale, bias): one instruction a score, where
   log2 units, scale_log2 * s + log2e * bias as fwd_kernel's FULL path, took two), and the exponent's factor sl
   is log2e; lse comes out in the same natural-log units.
   BIAS 3 (in T, D = 64, 16-byte aligned rows: Params.bias_stage): the bias tile [BM][128 keys] goes through
   shared memory instead, by cp.async (three stages, rows padded by 16 bytes so that the 8 query rows a warp
   reads at once fall in different banks), a tile ahead of K and V, and from there into the registers the
   register path uses, before S is issued (load_bias). Why: the register path issues each tile's loads in the
   trip that uses them, and a full [B,H,Lq,Lk] bias (case 10 of bench/flash_bench: 1.07 GB, DRAM-bound) waited for
   DRAM latency every tile (0.68 of cuDNN); staged, the loads have a whole trip.
   HD = 32: 64-byte rows (see above), O += P V as 8 wgmma m64n32k16; with a split over keys (Params.nsplit > 1,
   run_wg_fwd: D = 32 problems whose query tiles leave SMs idle, the 900-query AQR cases) CTA split sp takes the
   keys [sp split_len, (sp + 1) split_len) (split_len a multiple of 128: the split's last tile is masked only by
   Lk) and writes its normalised o and its lse to the f32 partials that combine_kernel merges, as fwd_kernel.
   WS (warp-specialised; the default at D = 64 / 128, plain or BIAS 3: ws_on): one more warpgroup, warpgroup 0,
   does every copy, into NS stages that mbarriers hand over (full: landed; empty: both computing warpgroups are
   done with the tile), and gives its registers to the computing warpgroups (setmaxnreg); two computing
   warpgroups take turns issuing their products (FlashAttention-3's ping-pong, Shah et al. 2024, sec. 3.1), so
   one's softmax runs while the other's products hold the tensor cores. Measured 12-07 03:47: forward 1.04x
   (case 10) to 1.52x (case 3) over the copies-in-every-warp form, the turns worth 0.3-1 %. */
/* key-tile stages of wg_fwd_kernel: 3 (the shared memory of D = 128, or D = 64 with the staged bias, holds no
   more); the warp-specialised plain D <= 64 kernel 4, so that its loader runs two tiles ahead */
__host__ __device__ constexpr int wg_fwd_stages(int hd, int bias, bool ws) { return ws && hd <= 64 && bias != 3 ? 4 : 3; }
/* the shared memory of ws_loader's mbarriers over ns stages: once, full[ns], empty[ns] */
__host__ __device__ constexpr size_t ws_barrier_bytes(int ns) { return (2 * ns + 1) * sizeof(uint64_t); }
template <typename T, int HD, int NWG, int BIAS, bool WS>
__global__ void __launch_bounds__((NWG + WS) * 128, 1) wg_fwd_kernel(Params p) {
#ifdef SDPA_WG
    constexpr int BM = 64 * NWG, BN = 128, NS = wg_fwd_stages(HD, BIAS, WS);
    constexpr int NTH = WS ? 128 : NWG * 128;       /* threads that load */
    static_assert(!WS || NWG == 2 || (NWG == 3 && BIAS == 0), "wg_fwd_kernel: WS with 2 computing warpgroups, or 3 plain");
    constexpr int RB = HD == 32 ? 64 : 128;   /* bytes of a row of one shared column block */
    constexpr int OA = HD / 2;                /* O's accumulators a thread: one wgmma of O += P V covers all D */
    using BT = typename std::conditional<BIAS == 2, float, T>::type;      /* bias element */
    using BP = typename std::conditional<BIAS == 2, float2, uint32_t>::type;   /* two adjacent keys of it */
    constexpr bool BREG = BIAS == 1 || BIAS == 2;   /* the bias read from global memory into registers */
    constexpr int BSTR = BN * 2 + 16;               /* BIAS 3: bytes of a staged bias row (padded) */
    static_assert(BIAS != 3 || HD == 64, "wg_fwd_kernel: the staged bias at D = 64 only (shared memory)");
    extern __shared__ __align__(16) unsigned char smem_raw[];
    unsigned char *base = smem_align1024(smem_raw);
    T *Qs = (T *)base, *Ks = Qs + BM * HD, *Vs = Ks + NS * BN * HD;
    unsigned char *Bt = (unsigned char *)(Vs + NS * BN * HD);   /* BIAS 3: NS tiles [BM queries][BN keys] */
    /* WS: stage st's tile landed (full[st]) / read by both computing warpgroups (empty[st]); Q landed (qfull) */
    uint64_t *full = (uint64_t *)(Bt + (BIAS == 3 ? NS * BM * BSTR : 0)), *empty = full + NS, *qfull = empty + NS;
    int b, h, t, sp;
    tile_of(p, &b, &h, &t, &sp);
    /* wg: this thread's computing warpgroup (WS: warpgroup 0 loads, 1 and 2 compute) */
    const int wg = (threadIdx.x >> 7) - (WS ? 1 : 0), warp = (threadIdx.x >> 5) & 3, lane = threadIdx.x & 31;
    const int g = lane >> 2, q2 = (lane & 3) * 2;
    const int i0 = t * BM, r0 = i0 + wg * 64 + warp * 16 + g;   /* this thread's rows: r0, r0 + 8 */
    const T *Q = (const T *)p.q + b * p.sq[0] + h * p.sq[1];
    const T *K = (const T *)p.k + b * p.sk[0] + h * p.sk[1];
    const T *V = (const T *)p.v + b * p.sv[0] + h * p.sv[1];
    const float sl = BIAS ? SDPA_LOG2E : p.scale_log2;   /* score units -> log2 units (biased: natural units) */
    /* this split's first key (0 without a split; D 64 / 128 never split: run_wg_fwd, and no code for it) */
    const int ks = HD == 32 ? sp * p.split_len : 0;
    int jend = HD == 32 ? min(p.Lk, ks + p.split_len) : p.Lk;
    if (p.causal && i0 + BM < jend) jend = i0 + BM;
    const int nkt = jend > ks ? (jend - ks + BN - 1) / BN : 0;
    /* bias rows of r0 and r0 + 8, clamped to Lq - 1 (rows >= Lq are never stored) */
    const BT *brow0 = nullptr, *brow1 = nullptr;
    if constexpr (BREG) {
        const BT *bbh = (const BT *)p.bias + b * p.bs[0] + h * p.bs[1];
        brow0 = bbh + (int64_t)min(r0, p.Lq - 1) * p.bs[2];
        brow1 = bbh + (int64_t)min(r0 + 8, p.Lq - 1) * p.bs[2];
    }
    /* BIAS 3: the [BM][BN] bias tile of key tile kt -> stage kt % 3 by cp.async, with its K and V; zero
       outside [Lq][Lk] (16-byte aligned rows and contiguous keys: Params.bias_stage) */
    const BiasStage<BM, BN, BSTR, NTH> bstage(p, BIAS == 3 ? (const unsigned char *)p.bias + (b * p.bs[0] + h * p.bs[1]) * 2
                                                           : nullptr);
    auto stage_bias = [&](int kt) {
        if constexpr (BIAS == 3) bstage.load(Bt + (kt % NS) * BM * BSTR, p, i0, ks + kt * BN);
    };
    if constexpr (WS) {
        /* The loading warpgroup (ws_loader): Q, then each key tile (K, V and BIAS 3's bias tile) into stage
           kt % NS once both computing warpgroups have released the tile that stage held (tile kt - NS: released in
           their trip kt - NS + 2, when its P V is done). Registers (setmaxnreg): 128 x 72 + 256 x 216 = the launch's
           384 x 168 (the staged-bias loader spills 18 words a tile at 72, 28 at 64); with 3 computing
           warpgroups, plain, 128 x 32 + 384 x 160 = 512 x 128.
           The staged bias is read with ordinary loads (load_bias): ws_loader FENCED, the bias tile a tile ahead of
           K and V (the ahead part; load_bias reads tile kt's in trip kt, tile kt - 1 is released in trip kt + 1).
           Measured 12-07 10:07 (bench/session_1207c/callN.sh, case 10): forward 0.531 -> 0.471 ms against the
           arrivals on the copies; FENCED without the ahead part, 0.586. */
        auto load_q = [&] { load_tile_sw<T, HD, BM, NTH>(Qs, Q, p.sq[2], i0, p.Lq); };
        auto load_kv = [&](int kt, int st) {
            const int j = ks + kt * BN;
            load_tile_sw<T, HD, BN, NTH>(Ks + st * BN * HD, K, p.sk[2], j, p.Lk);
            load_tile_sw<T, HD, BN, NTH>(Vs + st * BN * HD, V, p.sv[2], j, p.Lk);
        };
        bool loader;
        if constexpr (BIAS == 3) loader = ws_loader<NS, 72, true>(nkt, NWG * 128, qfull, full, empty, load_q, load_kv, stage_bias);
        else loader = ws_loader<NS, NWG == 2 ? 72 : 32>(nkt, NWG * 128, qfull, full, empty, load_q, load_kv);
        if (loader) return;
        regs_inc<NWG == 2 ? 216 : 160>();
    } else {
        load_tile_sw<T, HD, BM, NTH>(Qs, Q, p.sq[2], i0, p.Lq);
        if (nkt > 0) {
            load_tile_sw<T, HD, BN, NTH>(Ks, K, p.sk[2], ks, p.Lk);
            load_tile_sw<T, HD, BN, NTH>(Vs, V, p.sv[2], ks, p.Lk);
            stage_bias(0);
            if (nkt > 1) stage_bias(1);   /* BIAS 3: one tile ahead of K and V (next_tile) */
        }
        cp_commit();
    }
    float o[OA], mrow[2] = {-INFINITY, -INFINITY}, lrow[2] = {0.f, 0.f};
#pragma unroll
    for (int e = 0; e < OA; e++) o[e] = 0.f;
    uint32_t pa[8][4];   /* P_j as A fragments: k step x covers keys 16 x.. (accumulator columns 2x, 2x+1) */
    const uint64_t dq0 = wg_desc<RB>((const unsigned char *)Qs + wg * 64 * RB);
    /* The wgmma discipline. ptxas serialises every wgmma of the kernel (C7514: a wait after each one, with
       injected arrives and waits, C7519 / C7517) when, on some path, an ordinary instruction may touch an
       accumulator or A-fragment register while a wgmma using it is in flight, or between the fence and that
       wgmma. It follows the control flow without relating one branch to another: a P V issued under one
       `if (kt > 0)` and waited for under a second counts as possibly in flight where O is rescaled. So no
       wgmma, fence or wait sits under a branch, and every path meets them in one order: tile 0 (S alone) is
       peeled off the loop, and the loop body is: wait 0 (P_{kt-2} V_{kt-2} done), O rescaled and P_{kt-1}
       packed, the barrier and the copies of tile kt + 1 (WS: the wait for tile kt and the turn), fence, S_kt and
       O += P_{kt-1} V_{kt-1}, wait 1 (S_kt done), the softmax of tile kt.
       The softmax ends the trip and the wait 0 opens the next because ptxas hoists a wait to the top of its
       basic block (it would run before the exponentials, not after, if both sat in one block). o and pa are
       pinned (wg_pin) before each fence, so that their writes stay above it, and after each wait that covers
       them, as s is after its wait, so that their reads stay below it; s and alpha are pinned after the
       softmax, so that it stays above the next wait. */
    /* without WS: wait for tile kt, then start loading tile kt + 1 (the buffer it goes to held tile kt - 2, whose
       products every thread has waited for before this barrier). BIAS 3 stages bias tile
       kt + 2: it waits here for bias kt + 1, which trip kt + 1 reads into registers before its own barrier
       (load_bias); the stage it goes to held bias kt - 1, read in trip kt - 1. (Issuing the copies after the
       trip's products instead, bfc2f09, ran bench/flash_bench's cases 10, 2, 1 1.08-1.11x faster, case 3 (3
       warpgroups) 0.93x and the D = 32 cases 8, 9 0.83-0.84x: 12-07 03:47. D = 64 / 128 take the WS form now.) */
    auto next_tile = [&](int kt) {
        cp_wait<0>();
        fence_async_smem();
        __syncthreads();
        if (kt + 1 < nkt) {
            const int sn = (kt + 1) % NS, j1 = ks + (kt + 1) * BN;
            load_tile_sw<T, HD, BN, NTH>(Ks + sn * BN * HD, K, p.sk[2], j1, p.Lk);
            load_tile_sw<T, HD, BN, NTH>(Vs + sn * BN * HD, V, p.sv[2], j1, p.Lk);
        }
        if (kt + 2 < nkt) stage_bias(kt + 2);
        cp_commit();
    };
    /* WS: tile kt landed in stage kt % NS (cp.async writes, read by wgmma: the proxy fence) */
    auto tile_landed = [&](int kt) {
        mbar_wait(full + kt % NS, (kt / NS) & 1);
        fence_async_smem();
    };
    /* WS: the two computing warpgroups take turns issuing their products (FlashAttention-3's ping-pong, Shah et
       al. 2024, sec. 3.1): warpgroup w waits at named barrier 1 + w for the other's turn_end, so one's softmax
       runs while the other's products occupy the tensor cores. Warpgroup 1 opens with an arrival at barrier 1
       and skips the last (each barrier then sees as many arrivals as syncs). */
    constexpr bool TURNS = WS && NWG == 2;   /* (three warpgroups do not take turns) */
    auto turn_begin = [&]() {
        if constexpr (TURNS) bar_sync(1 + wg, NWG * 128);
    };
    auto turn_end = [&](bool last) { bar_arrive_if(2 - wg, NWG * 128, TURNS && !(last && wg == 1)); };
    if constexpr (WS) bar_arrive_if(1, NWG * 128, TURNS && wg == 1 && nkt > 0);
    /* S = Q K_kt^T, K in buffer kt % 3 (after a wg_fence): one commit group */
    auto issue_s = [&](float (&s)[64], int kt) {
        const uint64_t dk0 = wg_desc<RB>(Ks + (kt % NS) * BN * HD);
#pragma unroll
        for (int kk = 0; kk < HD / 16; kk++) {   /* k step kk: column block kk / (RB/32), 32 bytes a step inside it */
            constexpr int SPB = RB / 32;
            wg_ss128<T>(s, dq0 + (((kk / SPB) * BM * RB + (kk % SPB) * 32) >> 4),
                        dk0 + (((kk / SPB) * BN * RB + (kk % SPB) * 32) >> 4), kk > 0);
        }
        wg_commit();
    };
    /* O += P V_kt, V in buffer kt % 3 (after a wg_fence): k step x = keys 16 x.. = 16 rows of RB bytes, V's
       column blocks BN * RB bytes apart (D = 128: the leading byte offset); one commit group */
    auto issue_pv = [&](int kt) {
        uint64_t dv0 = wg_desc<RB>(Vs + (kt % NS) * BN * HD);
        if (HD == 128) dv0 = wg_desc_lbo(dv0, BN * RB);
#pragma unroll
        for (int x = 0; x < 8; x++) wg_rs_pv<T>(o, pa[x], dv0 + ((x * 16 * RB) >> 4));
        wg_commit();
    };
    auto pin_o_pa = [&]() {
        wg_pin(o);
        wg_pin(pa);
    };
    /* BIAS: the bias of tile kt at this thread's accumulator elements: bv[hh][j] holds keys j0 + 8 j + q2 and
       + 1 of row r0 + 8 hh. Keys clamped to Lk - 2 (even: a pair never straddles Lk), masked in softmax. BIAS 3
       reads them from stage kt % 3 (landed at the barrier before, next_tile; WS: tile_landed), before S_kt is issued: the shared
       loads' latency then hides behind the barrier and S = Q K^T, where reading them after S (as first written)
       put it on the softmax's critical path (warps waited 53 % of cycles with nothing eligible: ncu, 21:49). */
    auto load_bias = [&](BP (&bv)[2][16], int kt) {
        if constexpr (BIAS == 3) {
            const unsigned char *st = Bt + (kt % NS) * BM * BSTR + (wg * 64 + warp * 16 + g) * BSTR + q2 * 2;
#pragma unroll
            for (int j = 0; j < 16; j++) {
                bv[0][j] = *reinterpret_cast<const uint32_t *>(st + 16 * j);
                bv[1][j] = *reinterpret_cast<const uint32_t *>(st + 8 * BSTR + 16 * j);
            }
        }
        if constexpr (BREG) {
            const int jt = ks + kt * BN;
            if (jt + BN <= p.Lk) {   /* a whole tile: one address a row, the keys at fixed offsets */
                const BT *a0 = brow0 + jt + q2, *a1 = brow1 + jt + q2;
#pragma unroll
                for (int j = 0; j < 16; j++) {
                    bv[0][j] = __ldg((const BP *)(a0 + 8 * j));
                    bv[1][j] = __ldg((const BP *)(a1 + 8 * j));
                }
            } else {
#pragma unroll
                for (int j = 0; j < 16; j++) {
                    const int c = min(jt + 8 * j + q2, p.Lk - 2);
                    bv[0][j] = __ldg((const BP *)(brow0 + c));
                    bv[1][j] = __ldg((const BP *)(brow1 + c));
                }
            }
        }
    };
    /* the online softmax of tile kt on S (done): S becomes the unnormalised P, alpha the rescale of O */
    auto softmax = [&](float (&s)[64], int kt, float (&alpha)[2], const BP (&bv)[2][16]) {
        const int j0 = ks + kt * BN;
        if constexpr (BIAS != 0) {   /* raw scores -> natural units with the bias: one FFMA a score */
#pragma unroll
            for (int j = 0; j < 16; j++)
#pragma unroll
                for (int hh = 0; hh < 2; hh++) {
                    float b0, b1;
                    wg_bias2<T>(bv[hh][j], b0, b1);
                    s[4 * j + 2 * hh] = fmaf(s[4 * j + 2 * hh], p.scale, b0);
                    s[4 * j + 2 * hh + 1] = fmaf(s[4 * j + 2 * hh + 1], p.scale, b1);
                }
        }
        /* keys >= Lk, and keys after the query when causal, get -inf */
        if (j0 + BN > p.Lk || (p.causal && j0 + BN - 1 > i0 + wg * 64)) {
#pragma unroll
            for (int j = 0; j < 16; j++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    int c = j0 + 8 * j + q2 + (e & 1), r = r0 + 8 * (e >> 1);
                    if (c >= p.Lk || (p.causal && c > r)) s[4 * j + e] = -INFINITY;
                }
        }
#pragma unroll
        for (int hh = 0; hh < 2; hh++) {
            float mx = -INFINITY;
#pragma unroll
            for (int j = 0; j < 16; j++) mx = fmaxf(mx, fmaxf(s[4 * j + 2 * hh], s[4 * j + 2 * hh + 1]));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
            float mnew = fmaxf(mrow[hh], mx);
            float muse = mnew == -INFINITY ? 0.f : mnew, msl = muse * sl;
            alpha[hh] = ex2((mrow[hh] - muse) * sl);
            float sum = 0.f;
#pragma unroll
            for (int j = 0; j < 16; j++) {
                float e0 = ex2(fmaf(s[4 * j + 2 * hh], sl, -msl)), e1 = ex2(fmaf(s[4 * j + 2 * hh + 1], sl, -msl));
                s[4 * j + 2 * hh] = e0; s[4 * j + 2 * hh + 1] = e1;
                sum += e0 + e1;
            }
            lrow[hh] = lrow[hh] * alpha[hh] + sum;
            mrow[hh] = mnew;
        }
    };
    /* O *= alpha and P packed to A fragments: no wgmma in flight (O is 0 after tile 0, alpha applied all the same) */
    auto rescale_pack = [&](const float (&s)[64], const float (&alpha)[2]) {
#pragma unroll
        for (int e = 0; e < OA; e++) o[e] *= alpha[(e >> 1) & 1];
#pragma unroll
        for (int x = 0; x < 8; x++) wg_pack_a<T>(pa[x], s + 8 * x);
    };
    if (nkt > 0) {
        float s[64], alpha[2];   /* S_kt, then P_kt (unnormalised) and the rescale of O, until packed */
        BP bv[2][16];            /* BIAS: the bias of tile kt (unused otherwise) */
        if (BIAS != 3) load_bias(bv, 0);
        if constexpr (WS) {
            mbar_wait(qfull, 0);
            tile_landed(0);
            turn_begin();
        } else next_tile(0);     /* tile 0: S_0 alone */
        if (BIAS == 3) load_bias(bv, 0);   /* (landed at that barrier) */
        wg_fence();
        issue_s(s, 0);
        if constexpr (WS) turn_end(false);
        wg_wait<0>();
        wg_pin(s);
        softmax(s, 0, alpha, bv);
        wg_pin(s); wg_pin(alpha);
        for (int kt = 1; kt < nkt; kt++) {
            wg_wait<0>();                /* O += P_{kt-2} V_{kt-2} done (at kt = 1 nothing is in flight) */
            pin_o_pa();
            if constexpr (WS) {
                mbar_arrive(empty + (kt + NS - 2) % NS, kt >= 2);   /* tile kt - 2's stage is free */
                tile_landed(kt);
            }
            load_bias(bv, kt);         /* no branch: the loads issue here, consumed after S_kt (BIAS 3: landed at
                                          the last barrier) */
            rescale_pack(s, alpha);    /* O *= alpha_{kt-1}, P_{kt-1} to A fragments */
            if constexpr (WS) turn_begin();
            else next_tile(kt);
            pin_o_pa();                /* the rescale and the packing stay above the fence */
            wg_fence();
            issue_s(s, kt);
            issue_pv(kt - 1);          /* O += P_{kt-1} V_{kt-1}, running during this tile's softmax */
            if constexpr (WS) turn_end(false);
            wg_wait<1>();                /* S_kt done; P V may still run */
            wg_pin(s);
            softmax(s, kt, alpha, bv);
            wg_pin(s); wg_pin(alpha);
        }
        wg_wait<0>();                    /* the last tile's O += P V */
        pin_o_pa();
        rescale_pack(s, alpha);
        if constexpr (WS) turn_begin();
        pin_o_pa();
        wg_fence();
        issue_pv(nkt - 1);
        if constexpr (WS) turn_end(true);
        wg_wait<0>();
        pin_o_pa();
    }
    cp_wait<0>();
    /* o and lse, or with a split this split's normalised partial o and its lse (fwd_kernel's layout: o
       [split][B H Lq][Dv], then lse [split][B H Lq]); an empty split (causal) writes lse -inf and o 0 */
    const int64_t bh = (int64_t)b * p.H + h, bhlq = (int64_t)p.B * p.H * p.Lq;
    T *O = (T *)p.out + b * p.so[0] + h * p.so[1];
    const bool split = HD == 32 && p.nsplit > 1;
    float *lse = split ? p.part + (int64_t)p.nsplit * bhlq * p.Dv + sp * bhlq + bh * p.Lq : p.lse + bh * p.Lq;
    float *po = p.part + (sp * bhlq + bh * p.Lq) * p.Dv;   /* read only when split */
#pragma unroll
    for (int hh = 0; hh < 2; hh++) {
        float l = lrow[hh];
        l += __shfl_xor_sync(0xffffffffu, l, 1);
        l += __shfl_xor_sync(0xffffffffu, l, 2);
        float inv = l > 0.f ? 1.f / l : 0.f;
        int r = r0 + 8 * hh;
        if (r >= p.Lq) continue;
        if (q2 == 0) lse[r] = l > 0.f ? (mrow[hh] * sl + log2f(l)) * SDPA_LN2 : -INFINITY;
        if (split) {
            float *prow = po + (int64_t)r * p.Dv;
#pragma unroll
            for (int j = 0; j < OA / 4; j++)   /* o[4 j + e]: column 8 j + q2 + (e & 1) */
                *reinterpret_cast<float2 *>(prow + 8 * j + q2) =
                    make_float2(o[4 * j + 2 * hh] * inv, o[4 * j + 2 * hh + 1] * inv);
        } else {
            T *orow = O + (int64_t)r * p.so[2];
#pragma unroll
            for (int j = 0; j < OA / 4; j++) st2<T>(orow + 8 * j + q2, o[4 * j + 2 * hh] * inv, o[4 * j + 2 * hh + 1] * inv);
        }
    }
#endif /* SDPA_WG */
}


/* The backward on wgmma (plain, D == Dv == 64, not causal): FlashAttention-2's loop order as in bwd_kernel (Dao
   2023, algorithm 2), with the products on Hopper's warpgroup MMA as in FlashAttention-3 (Shah et al. 2024, sec. 3;
   here without warp specialisation). Why: bwd_kernel's mma.sync loop was 34 % of a ViT-B training step at
   1024 px and 1.8x cuDNN's backward; wgmma reads its B operands (and S^T / dP^T / dQ their A operands too) from
   shared memory with no ldmatrix, and runs asynchronously to the exponentials.
   One CTA of NWG warpgroups per (b, h, 64*NWG keys); warpgroup w owns key rows 64 w.. (K and V stay in shared
   memory as the A operands of S^T and dP^T); query tiles of 64 (Q, dO, lse, delta) stream through three
   buffers (cp.async by all threads, one barrier per tile). Per tile and warpgroup:
     S^T = K Q^T, dP^T = V dO^T             (m64n64k16, A and B from shared memory)
     P^T = exp2(S^T scale log2e - lse log2e), dS^T = P^T (dP^T - delta)   (registers, as bwd_kernel's plain path)
     dV += P^T dO, dK += dS^T Q             (m64n64k16, A = P^T / dS^T packed in registers, B N-major: transposed)
     dS^T (T) -> shared memory (three buffers); after the next barrier each warpgroup takes 32 of dQ's 64 columns:
     dQ_tile = dS K over all 64*NWG keys    (m64n32k16, A = dS^T M-major: transposed, B = K^T, a copy of K
                                             transposed once per CTA so that it is K-major)
     and adds it (times scale) into the f32 dQ accumulator with vector atomics, as bwd_kernel.
   dK/dV end in registers (times scale for dK) and are stored once: no query split (wg_bwd_ok asks for enough key
   tiles to fill the GPU). Order (the loop below): S^T and dP^T of tile it + 1 are issued before dV/dK and dQ of
   tile it, so that the exponentials of tile it + 1 overlap three products instead of one (the first version
   issued S_it, dP_it, dQ_{it-1} after the barrier and dV/dK_it after the softmax; ptxas merged its two waits,
   so the exponentials waited for dP too). Shared layout and wgmma discipline as wg_fwd_kernel: no wgmma, fence
   or wait under a branch (the first tile is peeled before the loop, the last after it); accumulators and A
   fragments pinned around fences and waits, never while their wgmma is in flight.
   BIAS (1): an additive bias in T with 16-byte aligned rows (Params.bias_stage; wg_bwd_ok). Its [64 queries]
   [BM keys] tile comes with each query tile (cp.async into three more buffers, rows padded by 16 bytes so that
   the 4 query rows a warp reads at once fall in different banks) and enters P^T in the forward's log2 units:
   P^T = exp2(scale log2e S^T + log2e bias - log2e lse). dbias = dS (natural units, unscaled, as bwd_kernel)
   is stored from the f32 registers right after dS^T: for fixed element e the lanes of a warp cover 8
   consecutive keys of 4 queries (full 32-byte sectors); plain stores (each score belongs to one CTA and one
   query tile), atomic adds where the bias is broadcast (p.dbias_atomic).
   WS (the default; NN_SDPA_WS=0 for A/B): a third warpgroup does every copy (K, V, then the query tiles through mbarriers,
   as wg_fwd_kernel's WS form), the two computing warpgroups meet at a named barrier instead of __syncthreads
   and release a query tile's stage once its dV/dK is done; setmaxnreg 40 / 232. */
template <typename T, int NWG, int BIAS, bool WS>
__global__ void __launch_bounds__((NWG + WS) * 128, 1) wg_bwd_kernel(Params p) {
#ifdef SDPA_WG
    static_assert(BIAS == 0 || BIAS == 1, "wg_bwd_kernel: no bias, or a bias in T");
    constexpr int BM = 64 * NWG, BN = 64, NQ = 3;
    constexpr int NTH = WS ? 128 : NWG * 128;     /* threads that load */
    constexpr int TB = BM * 128, QB = BN * 128;   /* bytes of a [BM][64] and a [BN][64] tile */
    constexpr int BSTR = BM * 2 + 16;             /* bytes of a staged bias row (BM keys in T, padded) */
    extern __shared__ __align__(16) unsigned char smem_raw[];
    unsigned char *base = smem_align1024(smem_raw);
    unsigned char *Ks = base, *Vs = Ks + TB, *KTs = Vs + TB, *Qs = KTs + TB, *Gs = Qs + NQ * QB, *Ss = Gs + NQ * QB;
    float *Ls = (float *)(Ss + NQ * TB), *Dl = Ls + NQ * BN;
    unsigned char *Bt = (unsigned char *)(Dl + NQ * BN);   /* BIAS: three [BN queries][BM keys] tiles, rows BSTR */
    /* WS: K and V landed (kvfull); query tile it's Q, dO, lse, delta (and bias) landed in stage it % NQ (qfull),
       and read by both computing warpgroups (qempty) */
    uint64_t *kvfull = (uint64_t *)(Bt + (BIAS ? NQ * BN * BSTR : 0)), *qfull = kvfull + 1, *qempty = qfull + NQ;
    int b, h, t;
    tile_of(p, &b, &h, &t);
    /* wg: this thread's computing warpgroup, ct its index among the computing threads (WS: warpgroup 0 loads) */
    const int wg = (threadIdx.x >> 7) - (WS ? 1 : 0), warp = (threadIdx.x >> 5) & 3, lane = threadIdx.x & 31;
    const int ct = threadIdx.x - (WS ? 128 : 0);
    const int g = lane >> 2, q2 = (lane & 3) * 2;
    const int j0 = t * BM, kr = wg * 64 + warp * 16 + g;   /* this thread's key rows (in the tile): kr, kr + 8 */
    const T *Q, *K, *V, *G;
    const float *lse, *delta;
    float *dqa;
    bwd_head<T>(p, b, h, Q, K, V, G, lse, delta, dqa);
    const unsigned char *bbh = BIAS ? (const unsigned char *)bias_bh<T>(p, b, h) : nullptr;
    float *dbh = BIAS && p.dbias ? p.dbias + b * p.bs[0] + h * p.bs[1] : nullptr;
    const float sl = p.scale_log2;
    const int nqt = (p.Lq + BN - 1) / BN;   /* >= 1 (wg_bwd_ok) */
    /* keys >= Lk: zero rows of K and V, but P must be 0 there (exp(-lse) may overflow; their dS feeds dQ) */
    const bool kok0 = j0 + kr < p.Lk, kok1 = j0 + kr + 8 < p.Lk;
    const BiasStage<BN, BM, BSTR, NTH> bstage(p, bbh);
    auto load_q = [&](int it, int buf) {
        const int i = it * BN;
        load_tile_sw<T, 64, BN, NTH>((T *)(Qs + buf * QB), Q, p.sq[2], i, p.Lq);
        load_tile_sw<T, 64, BN, NTH>((T *)(Gs + buf * QB), G, p.sdo[2], i, p.Lq);
        /* lse and delta by cp.async too (plain loads stalled warps 0-1 before every tile's products); queries
           >= Lq get 0: their Q and dO rows are zero, so S = 0, P = 1, dP = 0 and dS = 0, and P multiplies zero
           rows of dO in dV. The lse is finite (no mask, Lk >= 1). */
        if (threadIdx.x < 2 * BN) {
            const int x = threadIdx.x % BN, ii = i + x;
            const bool ok = ii < p.Lq, isd = threadIdx.x >= BN;
            cp_async4((isd ? Dl : Ls) + buf * BN + x, (isd ? delta : lse) + (ok ? ii : 0), ok);
        }
        /* the bias tile, zero outside [Lq][Lk] (queries >= Lq: S = 0 + 0 as above) */
        if (BIAS) bstage.load(Bt + buf * BN * BSTR, p, i, j0);
    };
    if constexpr (WS) {
        /* The loading warpgroup (ws_loader): K and V, then each query tile into stage it % NQ once both computing
           warpgroups have released the tile it held (it - NQ: after its dV/dK, in their trip it - NQ) */
        if (ws_loader<NQ, 40>(
                nqt, NWG * 128, kvfull, qfull, qempty,
                [&] {
                    load_tile_sw<T, 64, BM, NTH>((T *)Ks, K, p.sk[2], j0, p.Lk);
                    load_tile_sw<T, 64, BM, NTH>((T *)Vs, V, p.sv[2], j0, p.Lk);
                },
                load_q))
            return;
        regs_inc<232>();
    } else {
        load_tile_sw<T, 64, BM, NTH>((T *)Ks, K, p.sk[2], j0, p.Lk);
        load_tile_sw<T, 64, BM, NTH>((T *)Vs, V, p.sv[2], j0, p.Lk);
        load_q(0, 0);
        cp_commit();
        if (nqt > 1) load_q(1, 1);
        cp_commit();
    }
    float dk[32], dv[32], s[32], dp[32], dq[16];
#pragma unroll
    for (int e = 0; e < 32; e++) dk[e] = dv[e] = s[e] = dp[e] = 0.f;
#pragma unroll
    for (int e = 0; e < 16; e++) dq[e] = 0.f;
    uint32_t pa[4][4] = {}, da[4][4] = {};   /* P^T and dS^T as A fragments: k step x covers queries 16 x.. */
    const uint64_t kd0 = wg_desc(Ks + wg * 64 * 128), vd0 = wg_desc(Vs + wg * 64 * 128);
    const uint64_t ktd0 = wg_desc(KTs + wg * 32 * 128);   /* this warpgroup's 32 columns of dQ: rows of K^T */
    /* pins (see wg_fwd_kernel): never on registers of a wgmma in flight (a pin defines them) */
    auto pin_all = [&]() {
        wg_pin(dk); wg_pin(dv); wg_pin(s); wg_pin(dp); wg_pin(dq); wg_pin(pa); wg_pin(da);
    };
    /* S^T = K Q^T and dP^T = V dO^T of the tile in buffer buf: two commit groups */
    auto issue_sdp = [&](int buf) {
        const uint64_t qd0 = wg_desc(Qs + buf * QB), gd0 = wg_desc(Gs + buf * QB);
#pragma unroll
        for (int kk = 0; kk < 4; kk++)   /* k step kk = 32 bytes of the rows */
            wg_ss64<T>(s, kd0 + ((kk * 32) >> 4), qd0 + ((kk * 32) >> 4), kk > 0);
        wg_commit();
#pragma unroll
        for (int kk = 0; kk < 4; kk++) wg_ss64<T>(dp, vd0 + ((kk * 32) >> 4), gd0 + ((kk * 32) >> 4), kk > 0);
        wg_commit();
    };
    /* dV += P^T dO and dK += dS^T Q of the tile in buffer buf (A = pa, da): one commit group */
    auto issue_dvdk = [&](int buf) {
        const uint64_t qd0 = wg_desc(Qs + buf * QB), gd0 = wg_desc(Gs + buf * QB);
#pragma unroll
        for (int x = 0; x < 4; x++) wg_rs64<T>(dv, pa[x], gd0 + ((x * 2048) >> 4), 1);
#pragma unroll
        for (int x = 0; x < 4; x++) wg_rs64<T>(dk, da[x], qd0 + ((x * 2048) >> 4), 1);
        wg_commit();
    };
    /* dQ (this warpgroup's 32 columns) of the tile whose dS^T is in buffer sb: one commit group */
    auto issue_dq = [&](int sb) {
        const uint64_t ds0 = wg_desc(Ss + sb * TB);
#pragma unroll
        for (int kk = 0; kk < BM / 16; kk++)   /* keys 16 kk..: 16 rows of dS^T; in K^T block kk / 4, 32 bytes a step */
            wg_ss32t<T>(dq, ds0 + ((kk * 2048) >> 4), ktd0 + (((kk >> 2) * 64 * 128 + (kk & 3) * 32) >> 4), kk > 0);
        wg_commit();
    };
    /* P^T of the tile in buffer buf from S^T (done), in place; element 4 j + e: key row kr + 8 (e >> 1), query
       8 j + q2 + (e & 1) */
    auto probs = [&](int buf) {
        const float *Lb = Ls + buf * BN;
        const unsigned char *Bb = Bt + buf * BN * BSTR + q2 * BSTR + kr * 2;   /* BIAS: (q2, kr) */
#pragma unroll
        for (int j = 0; j < 8; j++) {
            float2 l2 = *reinterpret_cast<const float2 *>(Lb + 8 * j + q2);
            if (BIAS) {   /* a row the bias masks completely (lse -inf): P = 0, as bwd_kernel */
                l2.x = l2.x == -INFINITY ? INFINITY : l2.x;
                l2.y = l2.y == -INFINITY ? INFINITY : l2.y;
            }
            l2.x *= -SDPA_LOG2E; l2.y *= -SDPA_LOG2E;
#pragma unroll
            for (int e = 0; e < 4; e++) {
                float x = (e & 1) ? l2.y : l2.x;
                if (BIAS) {
                    const T bv = *reinterpret_cast<const T *>(Bb + (8 * j + (e & 1)) * BSTR + 16 * (e >> 1));
                    x = fmaf(SDPA_LOG2E, TT<T>::to_f(bv), x);
                }
                float pr = ex2(fmaf(s[4 * j + e], sl, x));
                s[4 * j + e] = ((e >> 1) ? kok1 : kok0) ? pr : 0.f;
            }
        }
    };
    /* dS^T = P^T (dP^T - delta) of the tile in buffer buf, in dp (dP^T done) */
    auto dsoft = [&](int buf) {
        const float *Db = Dl + buf * BN;
#pragma unroll
        for (int j = 0; j < 8; j++) {
            const float2 d2 = *reinterpret_cast<const float2 *>(Db + 8 * j + q2);
#pragma unroll
            for (int e = 0; e < 4; e++) dp[4 * j + e] = s[4 * j + e] * (dp[4 * j + e] - ((e & 1) ? d2.y : d2.x));
        }
    };
    /* BIAS: dbias of query tile it = dS (in dp, f32) at (query it * BN + 8 j + q2 + (e & 1), key j0 + kr +
       8 (e >> 1)) */
    auto store_dbias = [&](int it) {
        if (!BIAS || !dbh) return;
        float *r0 = dbh + (int64_t)(it * BN + q2) * p.bs[2] + (int64_t)(j0 + kr) * p.bs[3];
#pragma unroll
        for (int j = 0; j < 8; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int i = it * BN + 8 * j + q2 + (e & 1);
                if (i >= p.Lq || !((e >> 1) ? kok1 : kok0)) continue;
                float *at = r0 + (int64_t)(8 * j + (e & 1)) * p.bs[2] + (int64_t)(8 * (e >> 1)) * p.bs[3];
                if (p.dbias_atomic) atomicAdd(at, dp[4 * j + e]);
                else *at = dp[4 * j + e];
            }
    };
    /* P^T and dS^T packed to A fragments (dV/dK of the tile before done), dS^T (T) -> buffer sb, [key][query]
       swizzled: (row kr | kr + 8, queries 16 x + q2 | + 8): chunks 2x, 2x+1 */
    auto pack_store = [&](int sb) {
#pragma unroll
        for (int x = 0; x < 4; x++) { wg_pack_a<T>(pa[x], s + 8 * x); wg_pack_a<T>(da[x], dp + 8 * x); }
        unsigned char *r0 = Ss + sb * TB + kr * 128 + (lane & 3) * 4;
#pragma unroll
        for (int x = 0; x < 4; x++) {
            *reinterpret_cast<uint32_t *>(r0 + (((2 * x) ^ g) << 4)) = da[x][0];
            *reinterpret_cast<uint32_t *>(r0 + 8 * 128 + (((2 * x) ^ g) << 4)) = da[x][1];
            *reinterpret_cast<uint32_t *>(r0 + (((2 * x + 1) ^ g) << 4)) = da[x][2];
            *reinterpret_cast<uint32_t *>(r0 + 8 * 128 + (((2 * x + 1) ^ g) << 4)) = da[x][3];
        }
    };
    /* dQ of query tile it (done): rows 16 warp + g (+ 8), columns 32 wg + 8 j + q2 */
    auto add_dq = [&](int it) { wg_add_dq(p, dqa, it * BN + warp * 16 + g, wg * 32 + q2, dq); };
    /* the computing warpgroups' barrier (every thread's, without WS): tile it + 1 landed (WS: its stage's
       mbarrier), and this thread's shared writes (dS^T, K^T) ordered before the tensor cores read them */
    auto landed_sync = [&](int it) {
        if constexpr (WS) {
            mbar_wait(qfull + it % NQ, (it / NQ) & 1);
            fence_async_smem();
            bar_sync(1, NWG * 128);
        } else {
            cp_wait<0>();
            fence_async_smem();
            __syncthreads();
        }
    };
    /* tile 0 (and K, V) landed: its S^T and dP^T, K^T, its P^T / dS^T */
    if constexpr (WS) mbar_wait(kvfull, 0);
    landed_sync(0);
    pin_all();
    wg_fence();
    issue_sdp(0);
    /* K^T [64 d rows][BM keys] as BM/64 swizzled column blocks of [64][64]: the K-major B of dQ = dS K. Thread x
       moves the 16-byte chunk (key r, d 8 c8..) of Ks to 8 elements of KTs. Made visible by the loop's (or the
       epilogue's) first fence and barrier. */
#pragma unroll
    for (int x = ct; x < BM * 8; x += NWG * 128) {
        const int r = x % BM, c8 = x / BM;
        const uint4 v = *reinterpret_cast<const uint4 *>(Ks + r * 128 + ((c8 ^ (r & 7)) << 4));
        const unsigned short e[8] = {(unsigned short)(v.x & 0xffff), (unsigned short)(v.x >> 16),
                                     (unsigned short)(v.y & 0xffff), (unsigned short)(v.y >> 16),
                                     (unsigned short)(v.z & 0xffff), (unsigned short)(v.z >> 16),
                                     (unsigned short)(v.w & 0xffff), (unsigned short)(v.w >> 16)};
        const int rc = r & 63;
        unsigned char *dst = KTs + (r >> 6) * (64 * 128) + (rc & 7) * 2;
#pragma unroll
        for (int i = 0; i < 8; i++) {
            const int d = 8 * c8 + i;
            *reinterpret_cast<unsigned short *>(dst + d * 128 + (((rc >> 3) ^ (d & 7)) << 4)) = e[i];
        }
    }
    wg_wait<1>();
    wg_pin(s);
    probs(0);
    wg_wait<0>();
    wg_pin(dp);
    dsoft(0);
    store_dbias(0);
    pack_store(0);
    wg_pin(s); wg_pin(dp); wg_pin(pa); wg_pin(da);
    /* Trip it (query tile it + 1 enters, tile it leaves; P^T and dS^T of tile it packed, dS^T in buffer it % 3;
       dQ of tile it - 1 in flight across the barrier, waited for after it). The tensor-core queue of a
       warpgroup: S_{it+1}, dP_{it+1}, dV/dK_it, dQ_it; the exponentials of tile it + 1 wait only for S_{it+1}
       and run during dP, dV and dK. ptxas hoists a wait to the top of its basic block (see wg_fwd_kernel): the
       dQ atomics (a branch) sit between the exponentials and the wait for dP, so that it stays below them. ptxas
       merges the wait for dV/dK with that for dP (no branch between them): dS^T is computed after dV/dK.
       Buffers: Q/dO tile it + 2 goes to the buffer of tile it - 1, whose S/dP (trip it - 2) and dV/dK products
       (trip it - 1) every thread waited for before this barrier; dS^T buffer (it + 1) % 3 held tile it - 2,
       whose dQ products both warpgroups waited for in trip it - 1. */
    for (int it = 0; it + 1 < nqt; it++) {
        const int buf = it % NQ, nb = (it + 1) % NQ;
        landed_sync(it + 1);             /* tile it + 1 landed; dS^T of tile it complete (both warpgroups) */
        wg_wait<0>();                      /* dQ_{it-1} done (it ran during the barrier) */
        pin_all();
        wg_fence();
        issue_sdp(nb);
        issue_dvdk(buf);
        if constexpr (!WS) {
            if (it + 2 < nqt) load_q(it + 2, (it + 2) % NQ);   /* behind the products (see wg_fwd_kernel) */
            cp_commit();
        }
        wg_wait<2>();                      /* S^T_{it+1} done */
        wg_pin(s);
        probs(nb);
        wg_pin(s);
        if (dqa && it > 0) add_dq(it - 1);
        wg_pin(dq);
        wg_fence();
        issue_dq(buf);                   /* dQ_it, running across the next barrier */
        wg_wait<2>();                      /* dP^T_{it+1} done */
        wg_pin(dp);
        dsoft(nb);
        store_dbias(it + 1);             /* (branches: the wait below stays here) */
        wg_wait<1>();                      /* dV/dK of tile it done: pa, da free */
        wg_pin(pa); wg_pin(da); wg_pin(dk); wg_pin(dv);
        if constexpr (WS) mbar_arrive(qempty + buf);   /* tile it's Q, dO, lse, delta, bias read */
        pack_store(nb);
        wg_pin(s); wg_pin(dp); wg_pin(pa); wg_pin(da);
    }
    /* the last tile: dV/dK after the barrier behind its dS^T, the dQ of the tile before, its own dQ */
    const int lb = (nqt - 1) % NQ;
    landed_sync(nqt - 1);
    wg_pin(s); wg_pin(dp); wg_pin(pa); wg_pin(da); wg_pin(dk); wg_pin(dv);
    wg_fence();
    issue_dvdk(lb);
    wg_wait<1>();                          /* dQ of tile nqt - 2 done (none when nqt == 1) */
    wg_pin(dq);
    if (dqa && nqt > 1) add_dq(nqt - 2);
    wg_pin(dq);
    wg_fence();
    issue_dq(lb);
    wg_wait<0>();
    pin_all();
    if (dqa) add_dq(nqt - 1);
    wg_store_dkdv<T>(p, b, h, j0 + kr, q2, dk, dv);
#endif /* SDPA_WG */
}
/* The backward on wgmma at D == Dv == 128 (plain or causal; Params as wg_bwd_kernel). D = 64's plan does not
   fit the registers here: ptxas gives every wgmma operand its own registers for the whole kernel, and dK, dV of a
   warpgroup's 64 keys (64 + 64 f32 a thread), S^T, dP^T (32 + 32), the A fragments of P^T / dS^T (16 + 16) and dQ
   (32) come to 256 before any address (the first version: wgmma serialised, spills). So P^T and dS^T reach dV
   and dK from shared memory (A K-major, as they are stored for dQ anyway), dQ takes S^T's registers (free from
   the packing of P^T to dQ's atomics), and the first k step of S^T, dP^T and dQ writes its accumulators without
   reading them (wg_ss64_first: "=f", so their old values are dead): 192 accumulators, 255 registers. Causal is
   a template argument: with the test compiled into the plain kernel too, ptxas spilled about 20 registers a
   trip (148 bytes); now 16 bytes, one 8-byte reload a trip (bf16, nvcc 13, -Xptxas -v and the SASS).
   One CTA of 2 warpgroups per (b, h, 128 keys); warpgroup w owns key rows 64 w.. (K, V resident); query tiles
   of 64 (Q, dO [64][128], lse, delta) through three buffers, loaded one tile ahead. Trip it (query tile it):
     barrier (tile it landed; dS^T of tile it - 1 complete);
     S^T = K Q^T, dP^T = V dO^T issued (m64n64k16, 8 k steps over two 64-column blocks), behind dV/dK of
     tile it - 1 (still running from the last trip), then Q/dO of tile it + 1 requested;
     wait S^T (and dV/dK of tile it - 1): P^T (the exponentials run during dP^T), lse/delta of tile it + 1
     requested; wait dP^T: dS^T;
     P^T -> shared memory (one buffer: a warpgroup reads only its own rows, after its own wait), dS^T -> shared
     memory (two buffers: both warpgroups read all of it for dQ), proxy fence and a warpgroup barrier;
     dQ of tile it - 1 = dS K issued (m64n64k16, A = dS^T M-major, B = K N-major as stored: this warpgroup's
     64 columns of dQ are K's column block w, so no transposed copy of K as at D = 64), then dV += P^T dO and
     dK += dS^T Q (m64n128k16, A from shared memory, B N-major) - they run across the next barrier
     and under the next S^T / dP^T;
     wait dQ of tile it - 1: its f32 atomics into the accumulator, as wg_bwd_kernel.
   The first trip (no dQ, no dV/dK before it) is peeled; after the last, one barrier and that tile's dQ.
   Causal (top-left): key tile t starts at query tile 128 t / 64 (earlier queries see none of its keys); P is 0
   where key > query. A key tile past every query (Lk > Lq) stores zero dK/dV.
   Buffers: Q/dO tile it + 1 goes to the buffer of tile it - 2, whose dV/dK every thread waited for (trip it - 1)
   before barrier it; dS^T buffer it % 2 held tile it - 2, whose dQ and dK were waited for in trip it - 1. */
#define WG_SS64TT(TY)                                                                                                  \
    "{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"                                                                       \
    "wgmma.mma_async.sync.aligned.m64n64k16.f32." TY "." TY " {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, "   \
    "%12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, "          \
    "%32, %33, p, 1, 1, 1, 1;\n}\n"
/* d[64 x 128] += A[64 x 16] B[16 x 128], A K-major, B N-major (rows of k, 128 contiguous n in two swizzle atoms:
   the transpose flag): dV += P^T dO and dK += dS^T Q with P^T and dS^T in shared memory */
#define WG_SS128NT(TY)                                                                                                 \
    "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"                                                                       \
    "wgmma.mma_async.sync.aligned.m64n128k16.f32." TY "." TY " {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, "  \
    "%12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, "  \
    "%34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, "  \
    "%56, %57, %58, %59, %60, %61, %62, %63}, %64, %65, p, 1, 1, 0, 1;\n}\n"
/* the same products with scale-d off and write-only accumulators ("=f"): the first k step of a product whose
   old values are dead, so that the compiler does not keep them live from the previous tile (with "+f" every
   accumulator would be live across the whole loop) */
#define WG_D32W(d, o) "=f"(d[o + 0]), "=f"(d[o + 1]), "=f"(d[o + 2]), "=f"(d[o + 3]), "=f"(d[o + 4]), "=f"(d[o + 5]), \
    "=f"(d[o + 6]), "=f"(d[o + 7]), "=f"(d[o + 8]), "=f"(d[o + 9]), "=f"(d[o + 10]), "=f"(d[o + 11]), "=f"(d[o + 12]), \
    "=f"(d[o + 13]), "=f"(d[o + 14]), "=f"(d[o + 15]), "=f"(d[o + 16]), "=f"(d[o + 17]), "=f"(d[o + 18]), \
    "=f"(d[o + 19]), "=f"(d[o + 20]), "=f"(d[o + 21]), "=f"(d[o + 22]), "=f"(d[o + 23]), "=f"(d[o + 24]), \
    "=f"(d[o + 25]), "=f"(d[o + 26]), "=f"(d[o + 27]), "=f"(d[o + 28]), "=f"(d[o + 29]), "=f"(d[o + 30]), "=f"(d[o + 31])
#ifdef SDPA_WG
template <typename T>
__device__ __forceinline__ void wg_ss64_first(float (&d)[32], uint64_t da, uint64_t db) {
    WG_ASM(T, WG_SS64, (WG_D32W(d, 0)), "l"(da), "l"(db), "r"(0));
}
template <typename T>
__device__ __forceinline__ void wg_ss64tt_first(float (&d)[32], uint64_t da, uint64_t db) {
    WG_ASM(T, WG_SS64TT, (WG_D32W(d, 0)), "l"(da), "l"(db), "r"(0));
}
/* (WG_SS128NT; B's two 64-column atoms through the descriptor's leading byte offset: A read once for all 128
   columns, where two m64n64k16 read it twice) */
template <typename T>
__device__ __forceinline__ void wg_ss128nt(float (&d)[64], uint64_t da, uint64_t db) {
    WG_ASM(T, WG_SS128NT, (WG_D32(d, 0), WG_D32(d, 32)), "l"(da), "l"(db), "r"(1));
}
/* the warpgroup's 128 threads meet (named barrier 1 + warpgroup): its own rows of P^T / dS^T stored */
__device__ __forceinline__ void wg_bar(int wg) { asm volatile("bar.sync %0, 128;\n" ::"r"(1 + wg) : "memory"); }
/* d[64 x 64] (+)= A[64 x 16] B[16 x 64], A M-major (rows of k, 64 contiguous m: the transpose flag), B N-major
   (rows of k, 64 contiguous n: the transpose flag): dQ = dS K from dS^T and K as stored */
template <typename T>
__device__ __forceinline__ void wg_ss64tt(float (&d)[32], uint64_t da, uint64_t db, int acc) {
    WG_ASM(T, WG_SS64TT, (WG_D32(d, 0)), "l"(da), "l"(db), "r"(acc));
}
#endif
/* CAUSAL: p.causal, as a template argument (at run time, the causal test of every P^T element and its registers
   sat in the plain kernel too). WS: a third warpgroup (warpgroup 0) does every copy through ws_loader, as
   wg_bwd_kernel's WS form: K and V once, query visit i into stage i % NQ once both computing warpgroups have
   released visit i - NQ (after its dV/dK, in their visit i - NQ + 1); the computing warpgroups meet at named
   barrier 3 instead of __syncthreads; setmaxnreg 24 / 240 (384 x 168 at launch). */
template <typename T, bool CAUSAL, bool WS>
__global__ void __launch_bounds__((2 + WS) * 128, 1) wg_bwd_d128_kernel(Params p) {
#ifdef SDPA_WG
    constexpr int BM = 128, BN = 64, NTH = WS ? 128 : 256, NQ = 3, NS = 2;
    constexpr int KB = BM * 256, QB = BN * 256, SB = BM * 128;   /* bytes: K [128][128], Q [64][128], dS^T [128][64] */
    extern __shared__ __align__(16) unsigned char smem_raw[];
    unsigned char *base = smem_align1024(smem_raw);
    unsigned char *Ks = base, *Vs = Ks + KB, *Qs = Vs + KB, *Gs = Qs + NQ * QB, *Ss = Gs + NQ * QB, *Ps = Ss + NS * SB;
    float *Ls = (float *)(Ps + SB), *Dl = Ls + NQ * BN;
    uint64_t *kvfull = (uint64_t *)(Dl + NQ * BN), *qfull = kvfull + 1, *qempty = qfull + NQ;   /* WS */
    int b, h, t;
    tile_of(p, &b, &h, &t);
    /* wg: this thread's computing warpgroup (WS: warpgroup 0 loads) */
    const int wg = (threadIdx.x >> 7) - (WS ? 1 : 0), warp = (threadIdx.x >> 5) & 3, lane = threadIdx.x & 31;
    const int g = lane >> 2, q2 = (lane & 3) * 2;
    const int j0 = t * BM, kr = wg * 64 + warp * 16 + g;   /* this thread's key rows (in the tile): kr, kr + 8 */
    const T *Q, *K, *V, *G;
    const float *lse, *delta;
    float *dqa;
    bwd_head<T>(p, b, h, Q, K, V, G, lse, delta, dqa);
    const float sl = p.scale_log2;
    const int nqt = (p.Lq + BN - 1) / BN, it0 = CAUSAL ? j0 / BN : 0;
    auto qb = [&](int it) { return (it - it0) % NQ; };   /* the Q/dO/lse/delta buffer (WS: stage) of tile it */
    /* keys >= Lk: zero rows of K and V, but P must be 0 there (exp(-lse) may overflow; their dS feeds dQ) */
    const bool kok0 = j0 + kr < p.Lk, kok1 = j0 + kr + 8 < p.Lk;
    auto load_qg = [&](int it) {
        load_tile_sw<T, 128, BN, NTH>((T *)(Qs + qb(it) * QB), Q, p.sq[2], it * BN, p.Lq);
        load_tile_sw<T, 128, BN, NTH>((T *)(Gs + qb(it) * QB), G, p.sdo[2], it * BN, p.Lq);
    };
    /* lse and delta of tile it; queries >= Lq get 0 (zero Q and dO rows: S = 0, P = 1 or 0, dP = 0, dS = 0) */
    auto load_ld = [&](int it) {
        if (threadIdx.x < 2 * BN) {
            const int x = threadIdx.x % BN, ii = it * BN + x;
            const bool ok = ii < p.Lq, isd = threadIdx.x >= BN;
            cp_async4((isd ? Dl : Ls) + qb(it) * BN + x, (isd ? delta : lse) + (ok ? ii : 0), ok);
        }
    };
    auto load_kv = [&]() {
        load_tile_sw<T, 128, BM, NTH>((T *)Ks, K, p.sk[2], j0, p.Lk);
        load_tile_sw<T, 128, BM, NTH>((T *)Vs, V, p.sv[2], j0, p.Lk);
    };
    if constexpr (WS) {
        if (ws_loader<NQ, 24>(
                nqt - it0, 256, kvfull, qfull, qempty, load_kv,
                [&](int i, int) { load_qg(it0 + i); load_ld(it0 + i); }))
            return;
        regs_inc<240>();
    } else {
        load_kv();
        if (it0 < nqt) { load_qg(it0); load_ld(it0); }
        cp_commit();
    }
    /* s, dp: written by their first k step; dQ in S^T's registers (see above) */
    float dk[64], dv[64], s[32], dp[32];   /* dK, dV: m64n128 accumulators (column 8 j + q2 + (e & 1) at 4 j + e) */
    float (&dq)[32] = s;
#pragma unroll
    for (int e = 0; e < 64; e++) dk[e] = dv[e] = 0.f;
    const uint64_t kd0 = wg_desc(Ks + wg * 64 * 128), vd0 = wg_desc(Vs + wg * 64 * 128);
    const uint64_t pd0 = wg_desc(Ps + wg * 64 * 128);   /* this warpgroup's rows of P^T: K-major A of dV */
    const uint64_t kn0 = wg_desc(Ks + wg * BM * 128);   /* K's column block wg: the N-major B of dQ */
    /* S^T = K Q^T and dP^T = V dO^T of tile it: two commit groups. k step kk: column block kk / 4, 32 bytes a
       step inside it */
    auto issue_sdp = [&](int it) {
        const uint64_t qd0 = wg_desc(Qs + qb(it) * QB), gd0 = wg_desc(Gs + qb(it) * QB);
        wg_ss64_first<T>(s, kd0, qd0);
#pragma unroll
        for (int kk = 1; kk < 8; kk++)
            wg_ss64<T>(s, kd0 + (((kk >> 2) * BM * 128 + (kk & 3) * 32) >> 4),
                       qd0 + (((kk >> 2) * BN * 128 + (kk & 3) * 32) >> 4), 1);
        wg_commit();
        wg_ss64_first<T>(dp, vd0, gd0);
#pragma unroll
        for (int kk = 1; kk < 8; kk++)
            wg_ss64<T>(dp, vd0 + (((kk >> 2) * BM * 128 + (kk & 3) * 32) >> 4),
                       gd0 + (((kk >> 2) * BN * 128 + (kk & 3) * 32) >> 4), 1);
        wg_commit();
    };
    /* dV += P^T dO and dK += dS^T Q of tile it (A: this warpgroup's rows of P^T and of dS^T in buffer it % NS,
       K-major, k step x = queries 16 x.. = 32 bytes; B N-major, both column blocks (8 KiB apart: the leading byte
       offset), k step x = query rows 16 x..): one m64n128k16 a k step, one commit group */
    auto issue_dvdk = [&](int it) {
        const uint64_t qd0 = wg_desc_lbo(wg_desc(Qs + qb(it) * QB), BN * 128);
        const uint64_t gd0 = wg_desc_lbo(wg_desc(Gs + qb(it) * QB), BN * 128);
        const uint64_t sd0 = wg_desc(Ss + (it % NS) * SB + wg * 64 * 128);
#pragma unroll
        for (int x = 0; x < 4; x++) wg_ss128nt<T>(dv, pd0 + ((x * 32) >> 4), gd0 + ((x * 16 * 128) >> 4));
#pragma unroll
        for (int x = 0; x < 4; x++) wg_ss128nt<T>(dk, sd0 + ((x * 32) >> 4), qd0 + ((x * 16 * 128) >> 4));
        wg_commit();
    };
    /* dQ (this warpgroup's 64 columns) of the tile whose dS^T is in buffer sb: k step kk = keys 16 kk.. = 16
       rows of dS^T and of K's column block wg; one commit group */
    auto issue_dq = [&](int sb) {
        const uint64_t ds0 = wg_desc(Ss + sb * SB);
        wg_ss64tt_first<T>(dq, ds0, kn0);
#pragma unroll
        for (int kk = 1; kk < BM / 16; kk++)
            wg_ss64tt<T>(dq, ds0 + ((kk * 16 * 128) >> 4), kn0 + ((kk * 16 * 128) >> 4), 1);
        wg_commit();
    };
    /* P^T of tile it from S^T (done), in place; element 4 j + e: key row kr + 8 (e >> 1), query 8 j + q2 +
       (e & 1) of the tile */
    auto probs = [&](int it) {
        const float *Lb = Ls + qb(it) * BN;
        const int i0 = it * BN + q2 - (j0 + kr);   /* query - key of element 0 (causal: P = 0 where < 0) */
#pragma unroll
        for (int j = 0; j < 8; j++) {
            float2 l2 = *reinterpret_cast<const float2 *>(Lb + 8 * j + q2);
            l2.x *= -SDPA_LOG2E; l2.y *= -SDPA_LOG2E;
#pragma unroll
            for (int e = 0; e < 4; e++) {
                float pr = ex2(fmaf(s[4 * j + e], sl, (e & 1) ? l2.y : l2.x));
                bool ok = (e >> 1) ? kok1 : kok0;
                if (CAUSAL) ok = ok && i0 + 8 * j + (e & 1) - 8 * (e >> 1) >= 0;
                s[4 * j + e] = ok ? pr : 0.f;
            }
        }
    };
    /* dS^T = P^T (dP^T - delta) of tile it, in dp (dP^T done) */
    auto dsoft = [&](int it) {
        const float *Db = Dl + qb(it) * BN;
#pragma unroll
        for (int j = 0; j < 8; j++) {
            const float2 d2 = *reinterpret_cast<const float2 *>(Db + 8 * j + q2);
#pragma unroll
            for (int e = 0; e < 4; e++) dp[4 * j + e] = s[4 * j + e] * (dp[4 * j + e] - ((e & 1) ? d2.y : d2.x));
        }
    };
    /* P^T -> Ps and dS^T -> dS^T buffer it % NS in T, [key][query] swizzled (wg_bwd_kernel's dS^T layout:
       (row kr | kr + 8, queries 16 x + q2 | + 8) in chunks 2x, 2x+1); made visible to this warpgroup's
       tensor cores by the proxy fence and its named barrier (wg_bar), to both warpgroups' dQ by the next
       __syncthreads */
    auto pack_store = [&](int it) {
        unsigned char *r0 = Ss + (it % NS) * SB + kr * 128 + (lane & 3) * 4, *rp = Ps + kr * 128 + (lane & 3) * 4;
#pragma unroll
        for (int x = 0; x < 4; x++) {
            uint32_t a[4];
            wg_pack_a<T>(a, dp + 8 * x);
            *reinterpret_cast<uint32_t *>(r0 + (((2 * x) ^ g) << 4)) = a[0];
            *reinterpret_cast<uint32_t *>(r0 + 8 * 128 + (((2 * x) ^ g) << 4)) = a[1];
            *reinterpret_cast<uint32_t *>(r0 + (((2 * x + 1) ^ g) << 4)) = a[2];
            *reinterpret_cast<uint32_t *>(r0 + 8 * 128 + (((2 * x + 1) ^ g) << 4)) = a[3];
            wg_pack_a<T>(a, s + 8 * x);
            *reinterpret_cast<uint32_t *>(rp + (((2 * x) ^ g) << 4)) = a[0];
            *reinterpret_cast<uint32_t *>(rp + 8 * 128 + (((2 * x) ^ g) << 4)) = a[1];
            *reinterpret_cast<uint32_t *>(rp + (((2 * x + 1) ^ g) << 4)) = a[2];
            *reinterpret_cast<uint32_t *>(rp + 8 * 128 + (((2 * x + 1) ^ g) << 4)) = a[3];
        }
        fence_async_smem();
        wg_bar(wg);
    };
    /* dQ of query tile it (done): rows 16 warp + g (+ 8), columns 64 wg + 8 j + q2 */
    auto add_dq = [&](int it) { wg_add_dq(p, dqa, it * BN + warp * 16 + g, wg * 64 + q2, dq); };
    auto pin_kv = [&]() { wg_pin(dk); wg_pin(dv); };
    /* the computing threads meet: visit it landed (it < 0: no new visit) and this thread's shared writes (P^T,
       dS^T) ordered before the tensor cores read them */
    auto landed_sync = [&](int it) {
        if constexpr (WS) {
            if (it >= 0) mbar_wait(qfull + qb(it), ((it - it0) / NQ) & 1);
            fence_async_smem();
            bar_sync(3, 256);
        } else {
            cp_wait<0>();
            fence_async_smem();
            __syncthreads();
        }
    };
    if (it0 < nqt) {
        /* trip it0: tile it0 (and K, V) landed; nothing in flight (WS: no K, V where no visit: ws_loader) */
        if constexpr (WS) mbar_wait(kvfull, 0);
        landed_sync(it0);
        if (!WS && it0 + 1 < nqt) load_qg(it0 + 1);
        pin_kv();
        wg_fence();
        issue_sdp(it0);
        wg_wait<1>();                      /* S^T done */
        wg_pin(s);
        probs(it0);
        wg_pin(s);
        if (!WS && it0 + 1 < nqt) load_ld(it0 + 1);
        if (!WS) cp_commit();
        wg_wait<0>();                      /* dP^T done */
        wg_pin(dp);
        dsoft(it0);
        pack_store(it0);
        wg_fence();
        issue_dvdk(it0);                 /* runs across the next barrier */
        for (int it = it0 + 1; it < nqt; it++) {
            landed_sync(it);             /* tile it landed; dS^T of tile it - 1 complete (both warpgroups) */
            wg_fence();                  /* (no pins: S^T, dP^T overwritten; dV/dK of tile it - 1 in flight) */
            issue_sdp(it);
            if (!WS && it + 1 < nqt) load_qg(it + 1);   /* behind the products (see wg_fwd_kernel) */
            wg_wait<1>();                  /* dV/dK of tile it - 1 and S^T of tile it done */
            wg_pin(s); pin_kv();
            if (WS) mbar_arrive(qempty + qb(it - 1));   /* visit it - 1's Q, dO, lse, delta read */
            probs(it);
            wg_pin(s);
            if (!WS && it + 1 < nqt) load_ld(it + 1);   /* (a branch: the wait below stays here) */
            if (!WS) cp_commit();
            wg_wait<0>();                  /* dP^T done */
            wg_pin(dp);
            dsoft(it);
            pack_store(it);              /* (P^T's buffer is free: dV of tile it - 1 done) */
            wg_fence();
            issue_dq((it - 1) % NS);     /* dQ of tile it - 1, in S^T's registers */
            issue_dvdk(it);
            wg_wait<1>();                  /* dQ of tile it - 1 done; dV/dK of tile it may run */
            wg_pin(dq);
            if (dqa) add_dq(it - 1);
        }
        /* the last tile's dQ, after the barrier behind its dS^T */
        landed_sync(-1);
        wg_fence();
        issue_dq((nqt - 1) % NS);
        wg_wait<0>();
        wg_pin(dq); pin_kv();
        if (dqa) add_dq(nqt - 1);
    }
    /* dK (times scale) and dV: rows j0 + kr (+ 8) (zero when no query tile) */
    wg_store_dkdv<T>(p, b, h, j0 + kr, q2, dk, dv);
#endif /* SDPA_WG */
}
/* ------------------------------------------------------------------------------------------ f32 path */
/* the SIMT kernels: f32 head dims above 128 (the tensor-core kernels below take the rest) */
#define F32_TQ 64   /* rows per block (one thread each) */
#define F32_TK 16   /* streamed rows per shared tile */
#define F32_MAXD 256

/* natural-unit score of (i, j) given the raw dot product, or -inf */
__device__ __forceinline__ float f32_score(const Params &p, const uint8_t *mbh, const float *bbh, int i, int j,
                                           float dot) {
    if (p.causal && j > i) return -INFINITY;
    if (mbh && !mbh[(int64_t)i * p.ms[2] + (int64_t)j * p.ms[3]]) return -INFINITY;
    float x = dot * p.scale;
    if (bbh) x += bbh[(int64_t)i * p.bs[2] + (int64_t)j * p.bs[3]];
    return x;
}

__global__ void __launch_bounds__(F32_TQ) f32_fwd_kernel(Params p) {
    __shared__ float Ks[F32_TK][F32_MAXD], Vs[F32_TK][F32_MAXD];
    int b, h, t;
    tile_of(p, &b, &h, &t);
    int i = t * F32_TQ + threadIdx.x;
    bool live = i < p.Lq;
    const float *Q = (const float *)p.q + b * p.sq[0] + h * p.sq[1] + (int64_t)(live ? i : 0) * p.sq[2];
    const float *K = (const float *)p.k + b * p.sk[0] + h * p.sk[1];
    const float *V = (const float *)p.v + b * p.sv[0] + h * p.sv[1];
    const uint8_t *mbh = p.mask ? p.mask + b * p.ms[0] + h * p.ms[1] : nullptr;
    const float *bbh = p.bias ? (const float *)p.bias + b * p.bs[0] + h * p.bs[1] : nullptr;
    uint64_t bhpos = p.offset + (uint64_t)((int64_t)b * p.H + h) * (uint64_t)p.Lq * (uint64_t)p.Lk;
    float q[F32_MAXD], acc[F32_MAXD], m = -INFINITY, l = 0.f;
    for (int d = 0; d < p.D; d++) q[d] = live ? Q[d] : 0.f;
    for (int d = 0; d < p.Dv; d++) acc[d] = 0.f;
    for (int j0 = 0; j0 < p.Lk; j0 += F32_TK) {
        int nk = min(F32_TK, p.Lk - j0);
        __syncthreads();
        for (int x = threadIdx.x; x < nk * p.D; x += F32_TQ) Ks[x / p.D][x % p.D] = K[(int64_t)(j0 + x / p.D) * p.sk[2] + x % p.D];
        for (int x = threadIdx.x; x < nk * p.Dv; x += F32_TQ) Vs[x / p.Dv][x % p.Dv] = V[(int64_t)(j0 + x / p.Dv) * p.sv[2] + x % p.Dv];
        __syncthreads();
        if (!live) continue;
        for (int jj = 0; jj < nk; jj++) {
            float dot = 0.f;
            for (int d = 0; d < p.D; d++) dot += q[d] * Ks[jj][d];
            float s = f32_score(p, mbh, bbh, i, j0 + jj, dot);
            if (s == -INFINITY) continue;
            float mn = fmaxf(m, s), alpha = expf(m - mn), e = expf(s - mn);
            l = l * alpha + e;
            float z = p.dropout ? keep_factor(p, bhpos + (uint64_t)i * p.Lk + j0 + jj) : 1.f;
            for (int d = 0; d < p.Dv; d++) acc[d] = acc[d] * alpha + e * z * Vs[jj][d];
            m = mn;
        }
    }
    if (!live) return;
    float *O = (float *)p.out + b * p.so[0] + h * p.so[1] + (int64_t)i * p.so[2];
    float inv = l > 0.f ? 1.f / l : 0.f;
    for (int d = 0; d < p.Dv; d++) O[d] = acc[d] * inv;
    p.lse[((int64_t)b * p.H + h) * p.Lq + i] = l > 0.f ? m + logf(l) : -INFINITY;
}

/* one thread per query row: dQ and dbias */
__global__ void __launch_bounds__(F32_TQ) f32_dq_kernel(Params p) {
    __shared__ float Ks[F32_TK][F32_MAXD], Vs[F32_TK][F32_MAXD];
    int b, h, t;
    tile_of(p, &b, &h, &t);
    int i = t * F32_TQ + threadIdx.x;
    bool live = i < p.Lq;
    int64_t bh = (int64_t)b * p.H + h;
    const float *Q = (const float *)p.q + b * p.sq[0] + h * p.sq[1] + (int64_t)(live ? i : 0) * p.sq[2];
    const float *G = (const float *)p.dout + b * p.sdo[0] + h * p.sdo[1] + (int64_t)(live ? i : 0) * p.sdo[2];
    const float *K = (const float *)p.k + b * p.sk[0] + h * p.sk[1];
    const float *V = (const float *)p.v + b * p.sv[0] + h * p.sv[1];
    const uint8_t *mbh = p.mask ? p.mask + b * p.ms[0] + h * p.ms[1] : nullptr;
    const float *bbh = p.bias ? (const float *)p.bias + b * p.bs[0] + h * p.bs[1] : nullptr;
    float *dbh = p.dbias ? p.dbias + b * p.bs[0] + h * p.bs[1] : nullptr;
    uint64_t bhpos = p.offset + (uint64_t)bh * (uint64_t)p.Lq * (uint64_t)p.Lk;
    float q[F32_MAXD], go[F32_MAXD], dq[F32_MAXD];
    for (int d = 0; d < p.D; d++) { q[d] = live ? Q[d] : 0.f; dq[d] = 0.f; }
    for (int d = 0; d < p.Dv; d++) go[d] = live ? G[d] : 0.f;
    float L = live ? p.lse[bh * p.Lq + i] : 0.f, Di = live ? p.delta[bh * p.Lq + i] : 0.f;
    for (int j0 = 0; j0 < p.Lk; j0 += F32_TK) {
        int nk = min(F32_TK, p.Lk - j0);
        __syncthreads();
        for (int x = threadIdx.x; x < nk * p.D; x += F32_TQ) Ks[x / p.D][x % p.D] = K[(int64_t)(j0 + x / p.D) * p.sk[2] + x % p.D];
        for (int x = threadIdx.x; x < nk * p.Dv; x += F32_TQ) Vs[x / p.Dv][x % p.Dv] = V[(int64_t)(j0 + x / p.Dv) * p.sv[2] + x % p.Dv];
        __syncthreads();
        if (!live) continue;
        for (int jj = 0; jj < nk; jj++) {
            int j = j0 + jj;
            float dot = 0.f, dpv = 0.f;
            for (int d = 0; d < p.D; d++) dot += q[d] * Ks[jj][d];
            float s = f32_score(p, mbh, bbh, i, j, dot);
            float pr = (s == -INFINITY || L == -INFINITY) ? 0.f : expf(s - L); /* fully masked row: dS = 0 */
            for (int d = 0; d < p.Dv; d++) dpv += go[d] * Vs[jj][d];
            float z = p.dropout ? keep_factor(p, bhpos + (uint64_t)i * p.Lk + j) : 1.f;
            float ds = pr * (z * dpv - Di);
            for (int d = 0; d < p.D; d++) dq[d] += ds * Ks[jj][d];
            if (dbh) {
                int64_t at = (int64_t)i * p.bs[2] + (int64_t)j * p.bs[3];
                if (p.dbias_atomic) atomicAdd(dbh + at, ds); else dbh[at] = ds;
            }
        }
    }
    if (!live || !p.dq) return;
    float *DQ = (float *)p.dq + b * p.sdq[0] + h * p.sdq[1] + (int64_t)i * p.sdq[2];
    for (int d = 0; d < p.D; d++) DQ[d] = dq[d] * p.scale;
}

/* one thread per key row: dK, dV */
__global__ void __launch_bounds__(F32_TQ) f32_dkdv_kernel(Params p) {
    __shared__ float Qs[F32_TK][F32_MAXD], Gs[F32_TK][F32_MAXD], Ls[F32_TK], Dl[F32_TK];
    int b, h, t;
    tile_of(p, &b, &h, &t);
    int j = t * F32_TQ + threadIdx.x;
    bool live = j < p.Lk;
    int64_t bh = (int64_t)b * p.H + h;
    const float *Q = (const float *)p.q + b * p.sq[0] + h * p.sq[1];
    const float *G = (const float *)p.dout + b * p.sdo[0] + h * p.sdo[1];
    const float *K = (const float *)p.k + b * p.sk[0] + h * p.sk[1] + (int64_t)(live ? j : 0) * p.sk[2];
    const float *V = (const float *)p.v + b * p.sv[0] + h * p.sv[1] + (int64_t)(live ? j : 0) * p.sv[2];
    const uint8_t *mbh = p.mask ? p.mask + b * p.ms[0] + h * p.ms[1] : nullptr;
    const float *bbh = p.bias ? (const float *)p.bias + b * p.bs[0] + h * p.bs[1] : nullptr;
    uint64_t bhpos = p.offset + (uint64_t)bh * (uint64_t)p.Lq * (uint64_t)p.Lk;
    float k[F32_MAXD], v[F32_MAXD], dk[F32_MAXD], dv[F32_MAXD];
    for (int d = 0; d < p.D; d++) { k[d] = live ? K[d] : 0.f; dk[d] = 0.f; }
    for (int d = 0; d < p.Dv; d++) { v[d] = live ? V[d] : 0.f; dv[d] = 0.f; }
    for (int i0 = 0; i0 < p.Lq; i0 += F32_TK) {
        int nq = min(F32_TK, p.Lq - i0);
        __syncthreads();
        for (int x = threadIdx.x; x < nq * p.D; x += F32_TQ) Qs[x / p.D][x % p.D] = Q[(int64_t)(i0 + x / p.D) * p.sq[2] + x % p.D];
        for (int x = threadIdx.x; x < nq * p.Dv; x += F32_TQ) Gs[x / p.Dv][x % p.Dv] = G[(int64_t)(i0 + x / p.Dv) * p.sdo[2] + x % p.Dv];
        for (int x = threadIdx.x; x < nq; x += F32_TQ) { Ls[x] = p.lse[bh * p.Lq + i0 + x]; Dl[x] = p.delta[bh * p.Lq + i0 + x]; }
        __syncthreads();
        if (!live) continue;
        for (int ii = 0; ii < nq; ii++) {
            int i = i0 + ii;
            if (Ls[ii] == -INFINITY) continue;
            float dot = 0.f, dpv = 0.f;
            for (int d = 0; d < p.D; d++) dot += Qs[ii][d] * k[d];
            float s = f32_score(p, mbh, bbh, i, j, dot);
            if (s == -INFINITY) continue;
            float pr = expf(s - Ls[ii]);
            for (int d = 0; d < p.Dv; d++) dpv += Gs[ii][d] * v[d];
            float z = p.dropout ? keep_factor(p, bhpos + (uint64_t)i * p.Lk + j) : 1.f;
            float ds = pr * (z * dpv - Dl[ii]);
            for (int d = 0; d < p.Dv; d++) dv[d] += pr * z * Gs[ii][d];
            for (int d = 0; d < p.D; d++) dk[d] += ds * Qs[ii][d];
        }
    }
    if (!live) return;
    if (p.dk) {
        float *DK = (float *)p.dk + b * p.sdk[0] + h * p.sdk[1] + (int64_t)j * p.sdk[2];
        for (int d = 0; d < p.D; d++) DK[d] = dk[d] * p.scale;
    }
    if (p.dv) {
        float *DV = (float *)p.dv + b * p.sdv[0] + h * p.sdv[1] + (int64_t)j * p.sdv[2];
        for (int d = 0; d < p.Dv; d++) DV[d] = dv[d];
    }
}

/* ------------------------------------------------------------------------------------------ f32 on tensor cores */
/* The f32 path's fast kernels: the flash loops of the bf16 path, with every product on TF32 tensor cores
   (mma m16n8k8) in "3xTF32": each f32 operand x = big + small, both TF32 (round to nearest), and
   a*b ~ big_a big_b + big_a small_b + small_a big_b accumulated in f32. The dropped small*small term and the
   rounding of small are each ~2^-22 |a b|: f32 accuracy (tests/test_cuda.c holds it to the f32 bound) for 3x the
   TF32 work. The split is a few integer operations (split_tf32); up to HD = 32 the tiles are split once as they
   are loaded and kept in shared memory as two planes, big and small (TcPlanes), so the products' inner loops only
   load fragments: at D = 16 the splits made every fragment load cost ten instructions and were most of the
   kernels' work. Above 32 the doubled tiles would cost occupancy, and the fragments are split as they are read.
   Rows of HD + 4 floats in shared memory (the fragment loads below hit 32 distinct banks); any D <= HD is
   zero-padded, any row stride or alignment is loaded (float4 where rows allow it). One CTA of 4 warps, 16 rows a
   warp. Forward: 64 queries per CTA, key tiles of BN (split-KV as the bf16 path when the grid is small). Backward:
   one kernel (tc_bwd_kernel), 64 keys per CTA over query tiles of BN, the queries split into ranges with f32
   atomics on dK/dV when few CTAs; dQ and dbias from the same scores. Dropout keeps are drawn one Philox block per
   4 scores (tc_keep_rows / tc_keep_cols). */
#define TC_BM 64    /* resident rows per CTA */
#define TC_NTH 128  /* threads per CTA */

/* tiles as two planes (big, then small at an offset of the tile's size) up to HD = 32, else plain f32 */
template <int HD> struct TcPlanes { enum { N = HD <= 32 ? 2 : 1 }; };
/* the TF32 halves of x[i]: read from the planes (P = the small plane's offset) or split here (P = 0) */
template <int P>
__device__ __forceinline__ void tc_frag(const float *x, int i, uint32_t &big, uint32_t &small) {
    if (P) { big = __float_as_uint(x[i]); small = __float_as_uint(x[P + i]); }
    else split_tf32(x[i], big, small);
}
/* c[n] += A[16 x K] B[8n.. x K]^T; A and B row-major in shared memory (row stride ST), split into planes when PA /
   PB (their small planes' offsets) are nonzero */
template <int NT, int K, int ST, int PA, int PB>
__device__ __forceinline__ void tc_abT(float (&c)[NT][4], const float *A, const float *Bm, int lane) {
    int g = lane >> 2, t = lane & 3;
#pragma unroll
    for (int ks = 0; ks < K / 8; ks++) {
        uint32_t ab[4], as[4];
        tc_frag<PA>(A, g * ST + ks * 8 + t, ab[0], as[0]);
        tc_frag<PA>(A, (g + 8) * ST + ks * 8 + t, ab[1], as[1]);
        tc_frag<PA>(A, g * ST + ks * 8 + t + 4, ab[2], as[2]);
        tc_frag<PA>(A, (g + 8) * ST + ks * 8 + t + 4, ab[3], as[3]);
#pragma unroll
        for (int n = 0; n < NT; n++) {
            uint32_t bb0, bs0, bb1, bs1;
            tc_frag<PB>(Bm, (n * 8 + g) * ST + ks * 8 + t, bb0, bs0);
            tc_frag<PB>(Bm, (n * 8 + g) * ST + ks * 8 + t + 4, bb1, bs1);
            mma3(c[n], ab, as, bb0, bb1, bs0, bs1);
        }
    }
}

/* c[n] += P[16 x 8KT] B[8KT x 8ND]: P in C-fragment layout (the thread holds columns 2t, 2t+1 of each 8), used
   directly as the A operand by renumbering the summed index (A slot t = column 2t, slot t+4 = column 2t+1) and
   reading B's rows in the same order; B row-major in shared memory (row stride ST; planes when PB) */
template <int KT, int ND, int ST, int PB>
__device__ __forceinline__ void tc_pb(float (&c)[ND][4], const float (&s)[KT][4], const float *Bm, int lane) {
    int g = lane >> 2, t = lane & 3;
#pragma unroll
    for (int kt = 0; kt < KT; kt++) {
        uint32_t ab[4], as[4];
        split_tf32(s[kt][0], ab[0], as[0]);
        split_tf32(s[kt][2], ab[1], as[1]);
        split_tf32(s[kt][1], ab[2], as[2]);
        split_tf32(s[kt][3], ab[3], as[3]);
        const float *r0 = Bm + (kt * 8 + 2 * t) * ST + g;
#pragma unroll
        for (int n = 0; n < ND; n++) {
            uint32_t bb0, bs0, bb1, bs1;
            tc_frag<PB>(r0, n * 8, bb0, bs0);
            tc_frag<PB>(r0, ST + n * 8, bb1, bs1);
            mma3(c[n], ab, as, bb0, bb1, bs0, bs1);
        }
    }
}

/* acc += P B through a fresh accumulator. The tensor cores add into their accumulator with truncation (round
   toward zero after aligning to the larger operand), a bias that grows with the number of adds: summed over 2,100
   keys in one accumulator dQ was off by 1.2e-5 relative (the f32 bound is 2e-5); a tile's partial sum added with
   an ordinary f32 add keeps the long reductions (dK/dV over thousands of queries) at the f32 level. */
template <int KT, int ND, int ST, int PB>
__device__ __forceinline__ void tc_pb_add(float (&acc)[ND][4], const float (&s)[KT][4], const float *Bm, int lane) {
    float c[ND][4];
#pragma unroll
    for (int n = 0; n < ND; n++) c[n][0] = c[n][1] = c[n][2] = c[n][3] = 0.f;
    tc_pb<KT, ND, ST, PB>(c, s, Bm, lane);
#pragma unroll
    for (int n = 0; n < ND; n++)
#pragma unroll
        for (int e = 0; e < 4; e++) acc[n][e] += c[n][e];
}

/* can a [B,H,L,cols] f32 operand be read in float4s (16-byte aligned rows of whole 4-float groups)? */
__device__ __forceinline__ bool tc_vec(const void *x, const int64_t s[3], int cols) {
    return ((uintptr_t)x & 15) == 0 && (s[0] & 3) == 0 && (s[1] & 3) == 0 && (s[2] & 3) == 0 && (cols & 3) == 0;
}

/* rows row0.. of g (row stride rs, cols valid columns) -> s[ROWS][HD + 4], zeros at rows >= L, columns >= cols;
   with two planes (TcPlanes) the big halves there and the small ones ROWS * (HD + 4) floats further */
template <int ROWS, int HD>
__device__ __forceinline__ void tc_put(float *s, int at, float x) {
    if (TcPlanes<HD>::N == 2) {
        uint32_t big, small;
        split_tf32(x, big, small);
        s[at] = __uint_as_float(big);
        s[ROWS * (HD + 4) + at] = __uint_as_float(small);
    } else s[at] = x;
}
template <int ROWS, int HD>
__device__ __forceinline__ void tc_load(float *s, const float *g, int64_t rs, int row0, int L, int cols, bool vec) {
    constexpr int ST = HD + 4;
    if (vec) {
        constexpr int CH = HD / 4;
#pragma unroll 4
        for (int idx = threadIdx.x; idx < ROWS * CH; idx += TC_NTH) {
            int r = idx / CH, c = (idx % CH) * 4, gr = row0 + r;
            float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
            if (gr < L && c < cols) v = *reinterpret_cast<const float4 *>(g + (int64_t)gr * rs + c);
            if (TcPlanes<HD>::N == 2) {
                uint32_t b0, s0, b1, s1, b2, s2, b3, s3;
                split_tf32(v.x, b0, s0); split_tf32(v.y, b1, s1); split_tf32(v.z, b2, s2); split_tf32(v.w, b3, s3);
                *reinterpret_cast<uint4 *>(s + r * ST + c) = make_uint4(b0, b1, b2, b3);
                *reinterpret_cast<uint4 *>(s + ROWS * ST + r * ST + c) = make_uint4(s0, s1, s2, s3);
            } else *reinterpret_cast<float4 *>(s + r * ST + c) = v;
        }
    } else {
        for (int idx = threadIdx.x; idx < ROWS * HD; idx += TC_NTH) {
            int r = idx / HD, c = idx % HD, gr = row0 + r;
            tc_put<ROWS, HD>(s, r * ST + c, (gr < L && c < cols) ? g[(int64_t)gr * rs + c] : 0.f);
        }
    }
}

/* scores in log2 units: scale_log2 * dot + log2e * bias, or -inf where masked, causal or out of bounds. Element
   (n, e) of the C fragments is at row R0 + g + 8(e>>1), column C0 + 8n + 2t + (e&1); TRANS: rows are keys. The
   bias is read at clamped (always valid) indices so that no load sits behind a branch. */
template <int NT, bool TRANS>
__device__ __forceinline__ void tc_mods(const Params &p, float (&s)[NT][4], int R0, int C0, int lane,
                                        const uint8_t *mbh, const float *bbh, bool plain) {
    int g = lane >> 2, q2 = (lane & 3) * 2;
#pragma unroll
    for (int n = 0; n < NT; n++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
            int r = R0 + g + 8 * (e >> 1), c = C0 + 8 * n + q2 + (e & 1);
            int i = TRANS ? c : r, j = TRANS ? r : c;
            int ic = min(i, p.Lq - 1), jc = min(j, p.Lk - 1);
            float x = s[n][e] * p.scale_log2;
            if (bbh) x += SDPA_LOG2E * bbh[(int64_t)ic * p.bs[2] + (int64_t)jc * p.bs[3]];
            if (!plain) {
                bool ok = i < p.Lq && j < p.Lk && !(p.causal && j > i);
                if (mbh) ok = ok && mbh[(int64_t)ic * p.ms[2] + (int64_t)jc * p.ms[3]] != 0;
                if (!ok) x = -INFINITY;
            }
            s[n][e] = x;
        }
}

/* Dropout with one Philox block per 4 scores. keep_factor draws a whole block (10 rounds, ~100 instructions) for
   each score; a block holds the 4 stream positions 4m..4m+3, which are 4 consecutive keys of one query when the
   offset and Lk are multiples of 4 (nn_rng_reserve hands out whole blocks; tc_drop_blocks). Then the 32 blocks of
   a warp's 16 x 8 fragment tile are drawn one per lane and the keep bits (u >= p, as keep_factor) are exchanged
   with shuffles. The values are those of keep_factor: same stream, same positions.
   Rows = queries (forward, dQ): lane (g, t) draws row g + 8(t&1), keys 4(t>>1)..+3 of the tile and swaps its 4 bits
   with lane t^1; element e of the lane's fragment is bit tc_keep_row_bit(e, t) of the result. */
__device__ __forceinline__ bool tc_drop_blocks(const Params &p) { return ((p.offset | (uint64_t)p.Lk) & 3) == 0; }
__device__ __forceinline__ uint32_t tc_keep_nibble(const Params &p, uint64_t pos) {
    uint32_t r[4], nib = 0;
    philox(p.seed, pos >> 2, r);
#pragma unroll
    for (int k = 0; k < 4; k++) nib |= ((float)(r[k] >> 8) * (1.0f / 16777216.0f) >= p.p ? 1u : 0u) << k;
    return nib;
}
/* keep bits of the 16 x 8 tile at rows (queries) R0.., columns (keys) C0.. (multiples of 4) */
__device__ __forceinline__ uint32_t tc_keep_rows(const Params &p, uint64_t bhpos, int R0, int C0, int lane) {
    int g = lane >> 2, t = lane & 3;
    uint32_t nib = tc_keep_nibble(p, bhpos + (uint64_t)(R0 + g + 8 * (t & 1)) * p.Lk + (uint64_t)(C0 + 4 * (t >> 1)));
    return nib | (__shfl_xor_sync(0xffffffffu, nib, 1) << 4);
}
__device__ __forceinline__ int tc_keep_row_bit(int e, int t) { return 4 * ((e >> 1) ^ (t & 1)) + 2 * (t & 1) + (e & 1); }
/* Transposed (dK/dV: rows = keys R0.., columns = queries C0..): lane (g, t), w = g&3, draws the block of its
   element w's query (column 2t + (w&1)) and keys 4(g>>2) + 8(w>>1)..+3, whose 4 bits belong to the lanes w' = 0..3
   of its group (lanes 4 apart): two shuffle stages give every lane the 4 nibbles, slot s from lane w^s; element
   e is bit 4(e^w) + w. */
__device__ __forceinline__ uint32_t tc_keep_cols(const Params &p, uint64_t bhpos, int R0, int C0, int lane) {
    int g = lane >> 2, t = lane & 3, w = g & 3;
    uint32_t x = tc_keep_nibble(p, bhpos + (uint64_t)(C0 + 2 * t + (w & 1)) * p.Lk +
                                       (uint64_t)(R0 + 4 * (g >> 2) + 8 * (w >> 1)));
    x |= __shfl_xor_sync(0xffffffffu, x, 4) << 4;
    return x | (__shfl_xor_sync(0xffffffffu, x, 8) << 8);
}
__device__ __forceinline__ int tc_keep_col_bit(int e, int w) { return 4 * (e ^ w) + w; }

/* rows row0 + g (+8) of an [16 x 8ND] fragment block, times mul[hh] -> g (row stride rs), columns < cols; with
   add, f32 atomic adds (query-split partial sums) */
template <int ND>
__device__ __forceinline__ void tc_store(float *o, int64_t rs, const float (&acc)[ND][4], int row0, int L, int cols,
                                         float mul0, float mul1, bool add, int lane) {
    int g = lane >> 2, q2 = (lane & 3) * 2;
#pragma unroll
    for (int hh = 0; hh < 2; hh++) {
        int r = row0 + g + 8 * hh;
        if (r >= L) continue;
        float mul = hh ? mul1 : mul0, *row = o + (int64_t)r * rs;
#pragma unroll
        for (int n = 0; n < ND; n++)
#pragma unroll
            for (int x = 0; x < 2; x++) {
                int c = n * 8 + q2 + x;
                if (c >= cols) continue;
                if (add) atomicAdd(row + c, acc[n][2 * hh + x] * mul);
                else row[c] = acc[n][2 * hh + x] * mul;
            }
    }
}

template <int HD, int BN>
__global__ void __launch_bounds__(TC_NTH) tc_fwd_kernel(Params p) {
    constexpr int BM = TC_BM, ST = HD + 4, NT = BN / 8, ND = HD / 8, PL = TcPlanes<HD>::N;
    constexpr int PM = PL == 2 ? BM * ST : 0, PN = PL == 2 ? BN * ST : 0;   /* small planes' offsets */
    extern __shared__ __align__(16) unsigned char smem_raw[];
    float *Qs = (float *)smem_raw, *Ks = Qs + PL * BM * ST, *Vs = Ks + PL * BN * ST;
    int b, h, t, sp;
    tile_of(p, &b, &h, &t, &sp);
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, q2 = (lane & 3) * 2;
    int i0 = t * BM, wrow = warp * 16;
    const float *Q = (const float *)p.q + b * p.sq[0] + h * p.sq[1];
    const float *K = (const float *)p.k + b * p.sk[0] + h * p.sk[1];
    const float *V = (const float *)p.v + b * p.sv[0] + h * p.sv[1];
    const uint8_t *mbh = p.mask ? p.mask + b * p.ms[0] + h * p.ms[1] : nullptr;
    const float *bbh = p.bias ? (const float *)p.bias + b * p.bs[0] + h * p.bs[1] : nullptr;
    bool vk = tc_vec(p.k, p.sk, p.D), vv = tc_vec(p.v, p.sv, p.Dv);
    int ks = sp * p.split_len, jend = min(p.Lk, ks + p.split_len);
    if (p.causal && i0 + BM < jend) jend = i0 + BM;
    tc_load<BM, HD>(Qs, Q, p.sq[2], i0, p.Lq, p.D, tc_vec(p.q, p.sq, p.D));
    float acc[ND][4], mrow[2] = {-INFINITY, -INFINITY}, lrow[2] = {0.f, 0.f};
#pragma unroll
    for (int n = 0; n < ND; n++) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.f;
    uint64_t bhpos = p.offset + (uint64_t)((int64_t)b * p.H + h) * (uint64_t)p.Lq * (uint64_t)p.Lk;
    bool blocks = tc_drop_blocks(p);
    for (int j0 = ks; j0 < jend; j0 += BN) {
        __syncthreads();   /* every warp is done with the previous K/V tile */
        tc_load<BN, HD>(Ks, K, p.sk[2], j0, p.Lk, p.D, vk);
        tc_load<BN, HD>(Vs, V, p.sv[2], j0, p.Lk, p.Dv, vv);
        __syncthreads();
        float s[NT][4];
#pragma unroll
        for (int n = 0; n < NT; n++) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.f;
        tc_abT<NT, HD, ST, PM, PN>(s, Qs + wrow * ST, Ks, lane);
        bool plain = !mbh && j0 + BN <= p.Lk && !(p.causal && j0 + BN - 1 > i0 + wrow);
        tc_mods<NT, false>(p, s, i0 + wrow, j0, lane, mbh, bbh, plain);
#pragma unroll
        for (int hh = 0; hh < 2; hh++) {
            float mx = -INFINITY;
#pragma unroll
            for (int n = 0; n < NT; n++) mx = fmaxf(mx, fmaxf(s[n][2 * hh], s[n][2 * hh + 1]));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
            float mnew = fmaxf(mrow[hh], mx);
            float muse = mnew == -INFINITY ? 0.f : mnew;
            float alpha = ex2(mrow[hh] - muse), sum = 0.f;
#pragma unroll
            for (int n = 0; n < NT; n++) {
                float e0 = ex2(s[n][2 * hh] - muse), e1 = ex2(s[n][2 * hh + 1] - muse);
                s[n][2 * hh] = e0; s[n][2 * hh + 1] = e1;
                sum += e0 + e1;
            }
            lrow[hh] = lrow[hh] * alpha + sum;
            mrow[hh] = mnew;
#pragma unroll
            for (int n = 0; n < ND; n++) { acc[n][2 * hh] *= alpha; acc[n][2 * hh + 1] *= alpha; }
        }
        if (p.dropout && blocks) {
#pragma unroll
            for (int n = 0; n < NT; n++) {
                uint32_t kb = tc_keep_rows(p, bhpos, i0 + wrow, j0 + 8 * n, lane);
#pragma unroll
                for (int e = 0; e < 4; e++) s[n][e] *= (kb >> tc_keep_row_bit(e, lane & 3)) & 1u ? p.keep_scale : 0.f;
            }
        } else if (p.dropout) {
#pragma unroll
            for (int n = 0; n < NT; n++)
#pragma unroll
                for (int hh = 0; hh < 2; hh++) {
                    int i = i0 + wrow + g + 8 * hh, j = j0 + 8 * n + q2;
                    float z0, z1;
                    keep_factor2(p, bhpos + (uint64_t)i * p.Lk + j, &z0, &z1);
                    s[n][2 * hh] *= z0; s[n][2 * hh + 1] *= z1;
                }
        }
        tc_pb_add<NT, ND, ST, PN>(acc, s, Vs, lane);   /* acc was rescaled above; this tile's P V added in f32 */
    }
    /* finish: l summed over the quad; O and LSE, or this split's normalised partial and its lse */
    int64_t bh = (int64_t)b * p.H + h, bhlq = (int64_t)p.B * p.H * p.Lq;
    float *lse = p.nsplit > 1 ? p.part + (int64_t)p.nsplit * bhlq * p.Dv + sp * bhlq + bh * p.Lq : p.lse + bh * p.Lq;
    float inv[2];
#pragma unroll
    for (int hh = 0; hh < 2; hh++) {
        float l = lrow[hh];
        l += __shfl_xor_sync(0xffffffffu, l, 1);
        l += __shfl_xor_sync(0xffffffffu, l, 2);
        inv[hh] = l > 0.f ? 1.f / l : 0.f;
        int r = i0 + wrow + g + 8 * hh;
        if ((lane & 3) == 0 && r < p.Lq) lse[r] = l > 0.f ? (mrow[hh] + log2f(l)) * SDPA_LN2 : -INFINITY;
    }
    if (p.nsplit > 1)
        tc_store<ND>(p.part + (sp * bhlq + bh * p.Lq) * p.Dv, p.Dv, acc, i0 + wrow, p.Lq, p.Dv, inv[0], inv[1], false,
                     lane);
    else
        tc_store<ND>((float *)p.out + b * p.so[0] + h * p.so[1], p.so[2], acc, i0 + wrow, p.Lq, p.Dv, inv[0], inv[1],
                     false, lane);
}

/* The backward in one kernel: one CTA per (b, h, 64 keys, query range); K/V resident, Q/dO tiles streamed.
   S^T = K Q^T and dP^T = V dO^T give P^T and dS^T as the A operands of dV += (P Z)^T dO and dK += dS^T Q; dS^T goes
   through shared memory (Ds, [query][key]) once for dQ += dS K: warp w takes 16 queries of the tile (all 64 keys;
   with 32-query tiles, half the head dims) and adds its partial into dQ with f32 atomics (zeroed by the host), so
   dQ's last bits depend on the order of the adds, as in the bf16 path and PyTorch's flash backward. Computing dQ
   in a second kernel instead would recompute S, dP and the dropout bits: 3 of its 5 products. dbias (the per-score
   dS) is written here too. 5 products per score pair. */
template <int HD, int BN>
__global__ void __launch_bounds__(TC_NTH, HD <= 32 ? 3 : 1) tc_bwd_kernel(Params p) {   /* 3 CTAs: <= 168 registers */
    constexpr int BM = TC_BM, ST = HD + 4, NT = BN / 8, ND = HD / 8, PL = TcPlanes<HD>::N;
    constexpr int PM = PL == 2 ? BM * ST : 0, PN = PL == 2 ? BN * ST : 0;   /* small planes' offsets */
    /* dQ: MQ 16-query tiles, each warp one of them and ND / NS of the head dims; Ds rows of BM + 8 floats (the
       float2 reads of a half-warp hit 32 distinct banks) */
    constexpr int MQ = BN / 16, NS = TC_NTH / 32 / MQ, NDQ = ND / NS, SQ = BM + 8;
    static_assert(MQ * NS == TC_NTH / 32 && NDQ * NS == ND, "tc_bwd_kernel: dQ warp split");
    extern __shared__ __align__(16) unsigned char smem_raw[];
    float *Ks = (float *)smem_raw, *Vs = Ks + PL * BM * ST, *Qs = Vs + PL * BM * ST, *Gs = Qs + PL * BN * ST;
    float *Ls = Gs + PL * BN * ST, *Dl = Ls + BN, *Ds = Dl + BN;
    int b, h, t, sp;
    tile_of(p, &b, &h, &t, &sp);
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, q2 = (lane & 3) * 2;
    int j0 = t * BM, wrow = warp * 16;
    int64_t bh = (int64_t)b * p.H + h;
    const float *Q = (const float *)p.q + b * p.sq[0] + h * p.sq[1];
    const float *K = (const float *)p.k + b * p.sk[0] + h * p.sk[1];
    const float *V = (const float *)p.v + b * p.sv[0] + h * p.sv[1];
    const float *G = (const float *)p.dout + b * p.sdo[0] + h * p.sdo[1];
    const float *lse = p.lse + bh * p.Lq, *delta = p.delta + bh * p.Lq;
    const uint8_t *mbh = p.mask ? p.mask + b * p.ms[0] + h * p.ms[1] : nullptr;
    const float *bbh = p.bias ? (const float *)p.bias + b * p.bs[0] + h * p.bs[1] : nullptr;
    float *dbh = p.dbias ? p.dbias + b * p.bs[0] + h * p.bs[1] : nullptr;
    float *dqb = p.dq ? (float *)p.dq + b * p.sdq[0] + h * p.sdq[1] : nullptr;
    bool vq = tc_vec(p.q, p.sq, p.D), vg = tc_vec(p.dout, p.sdo, p.Dv);
    tc_load<BM, HD>(Ks, K, p.sk[2], j0, p.Lk, p.D, tc_vec(p.k, p.sk, p.D));
    tc_load<BM, HD>(Vs, V, p.sv[2], j0, p.Lk, p.Dv, tc_vec(p.v, p.sv, p.Dv));
    int qa = sp * p.split_len, qb = min(p.Lq, qa + p.split_len);
    int istart = p.causal ? max(qa, (j0 / BN) * BN) : qa;
    int mq = warp % MQ, n0 = (warp / MQ) * NDQ;   /* this warp's dQ rows (16mq..) and head dims (8n0..) */
    float dk[ND][4], dv[ND][4];
#pragma unroll
    for (int n = 0; n < ND; n++)
#pragma unroll
        for (int e = 0; e < 4; e++) dk[n][e] = dv[n][e] = 0.f;
    uint64_t bhpos = p.offset + (uint64_t)bh * (uint64_t)p.Lq * (uint64_t)p.Lk;
    bool blocks = tc_drop_blocks(p);
    for (int i0 = istart; i0 < qb; i0 += BN) {
        __syncthreads();   /* every warp is done with the previous Q/dO tiles and Ds */
        tc_load<BN, HD>(Qs, Q, p.sq[2], i0, p.Lq, p.D, vq);
        tc_load<BN, HD>(Gs, G, p.sdo[2], i0, p.Lq, p.Dv, vg);
        for (int x = threadIdx.x; x < BN; x += TC_NTH) {
            int ii = i0 + x;
            float l = ii < p.Lq ? lse[ii] : INFINITY;
            Ls[x] = (l == -INFINITY ? INFINITY : l) * SDPA_LOG2E;   /* fully masked row (or none): P = 0 */
            Dl[x] = ii < p.Lq ? delta[ii] : 0.f;
        }
        __syncthreads();
        float s[NT][4], dp[NT][4];
#pragma unroll
        for (int n = 0; n < NT; n++)
#pragma unroll
            for (int e = 0; e < 4; e++) s[n][e] = dp[n][e] = 0.f;
        tc_abT<NT, HD, ST, PM, PN>(s, Ks + wrow * ST, Qs, lane);    /* S^T */
        tc_abT<NT, HD, ST, PM, PN>(dp, Vs + wrow * ST, Gs, lane);   /* dP^T */
        bool plain = !mbh && j0 + wrow + 16 <= p.Lk && !(p.causal && j0 + wrow + 15 > i0);
        tc_mods<NT, true>(p, s, j0 + wrow, i0, lane, mbh, bbh, plain);
#pragma unroll
        for (int n = 0; n < NT; n++) {
            uint32_t kb = p.dropout && blocks ? tc_keep_cols(p, bhpos, j0 + wrow, i0 + 8 * n, lane) : 0u;
#pragma unroll
            for (int e = 0; e < 4; e++) {
                int c = 8 * n + q2 + (e & 1), kk = wrow + g + 8 * (e >> 1);
                float pr = ex2(s[n][e] - Ls[c]), z = 1.f;
                if (p.dropout)
                    z = blocks ? ((kb >> tc_keep_col_bit(e, g & 3)) & 1u ? p.keep_scale : 0.f)
                               : keep_factor(p, bhpos + (uint64_t)(i0 + c) * p.Lk + (j0 + kk));
                float ds = pr * (z * dp[n][e] - Dl[c]);
                dp[n][e] = ds;        /* dS^T */
                s[n][e] = pr * z;     /* (P Z)^T */
                if (dqb) Ds[c * SQ + kk] = ds;
                if (dbh && i0 + c < p.Lq && j0 + kk < p.Lk) {
                    float *at = dbh + (int64_t)(i0 + c) * p.bs[2] + (int64_t)(j0 + kk) * p.bs[3];
                    if (p.dbias_atomic) atomicAdd(at, ds);
                    else *at = ds;
                }
            }
        }
        tc_pb_add<NT, ND, ST, PN>(dv, s, Gs, lane);
        tc_pb_add<NT, ND, ST, PN>(dk, dp, Qs, lane);
        if (dqb) {
            __syncthreads();   /* Ds complete */
            float a[BM / 8][4], dq[NDQ][4];
#pragma unroll
            for (int kt = 0; kt < BM / 8; kt++)
#pragma unroll
                for (int hh = 0; hh < 2; hh++) {
                    float2 v = *reinterpret_cast<const float2 *>(Ds + (16 * mq + g + 8 * hh) * SQ + kt * 8 + q2);
                    a[kt][2 * hh] = v.x; a[kt][2 * hh + 1] = v.y;
                }
#pragma unroll
            for (int n = 0; n < NDQ; n++) dq[n][0] = dq[n][1] = dq[n][2] = dq[n][3] = 0.f;
            tc_pb<BM / 8, NDQ, ST, PM>(dq, a, Ks + n0 * 8, lane);
            tc_store<NDQ>(dqb + n0 * 8, p.sdq[2], dq, i0 + 16 * mq, p.Lq, p.D - n0 * 8, p.scale, p.scale, true, lane);
        }
    }
    bool add = p.nsplit > 1;   /* one query range of several: add into dK/dV (zeroed by the host) */
    if (p.dk) tc_store<ND>((float *)p.dk + b * p.sdk[0] + h * p.sdk[1], p.sdk[2], dk, j0 + wrow, p.Lk, p.D, p.scale,
                           p.scale, add, lane);
    if (p.dv) tc_store<ND>((float *)p.dv + b * p.sdv[0] + h * p.sdv[1], p.sdv[2], dv, j0 + wrow, p.Lk, p.Dv, 1.f, 1.f,
                           add, lane);
}

/* zero a [B,H,L,Dd] f32 tensor through its strides (dQ and the query-split dK/dV sums) */
__global__ void tc_zero_kernel(float *x, int64_t s0, int64_t s1, int64_t s2, int H, int L, int Dd, int64_t n) {
    int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (e >= n) return;
    int d = (int)(e % Dd);
    int64_t row = e / Dd;
    int i = (int)(row % L);
    int64_t bh = row / L;
    x[(bh / H) * s0 + (bh % H) * s1 + (int64_t)i * s2 + d] = 0.f;
}

/* ------------------------------------------------------------------------------------------ launch */
/* argument errors go to nn_error (its handler may return: the caller then launches nothing) */
static int fail(const char *msg) { nn_error("%s", msg); return -1; }

/* Tile shapes. Forward: MW 16-row tiles per warp, NW warps (BM = 16 MW NW queries per CTA), BN keys per tile,
   MB CTAs per SM asked of the compiler (its register cap). Backward: MW 16-key tiles per warp, NW warps (BM keys
   per CTA, resident), BN queries per streamed tile, MB likewise. Chosen on the H100 from measured variants
   (bench/RESULTS_FLASH.md, flash3): the plain kernels (no mask/bias/dropout code) have the registers for wider
   tiles at D = 64 / 128; the full ones keep the tiles with which they do not spill much. */
template <int MW_, int NW_, int BN_, int MB_> struct Tile { enum { MW = MW_, NW = NW_, BN = BN_, MB = MB_, BM = 16 * MW_ * NW_ }; };
template <int HD, bool FULL> struct FwdTile;
template <bool F> struct FwdTile<16, F>  { typedef Tile<2, 4, 64, 1> t; };
template <bool F> struct FwdTile<32, F>  { typedef Tile<1, 8, 64, 2> t; };
template <> struct FwdTile<64, true>     { typedef Tile<2, 4, 64, 1> t; };
template <> struct FwdTile<64, false>    { typedef Tile<2, 4, 128, 1> t; };
template <bool F> struct FwdTile<96, F>  { typedef Tile<2, 4, 32, 1> t; };
template <> struct FwdTile<128, true>    { typedef Tile<2, 4, 32, 1> t; };
template <> struct FwdTile<128, false>   { typedef Tile<2, 4, 64, 1> t; };
template <int HD, bool FULL> struct BwdTile;
template <bool F> struct BwdTile<16, F>  { typedef Tile<1, 8, 64, 2> t; };
template <bool F> struct BwdTile<32, F>  { typedef Tile<1, 8, 32, 2> t; };
template <> struct BwdTile<64, true>     { typedef Tile<1, 8, 32, 2> t; };
template <> struct BwdTile<64, false>    { typedef Tile<2, 8, 32, 1> t; };
template <bool F> struct BwdTile<96, F>  { typedef Tile<1, 8, 32, 1> t; };
template <> struct BwdTile<128, true>    { typedef Tile<1, 8, 32, 1> t; };
template <> struct BwdTile<128, false>   { typedef Tile<1, 8, 64, 1> t; };
template <typename K>
static int set_smem(K kern, size_t bytes) {
    if (bytes > 48 * 1024) {
        NN_CU(cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
    }
    return 0;
}

/* grid of B*H*tiles*nsplit blocks and its order; corder: the order when causal (2: longest query tiles first
   for the forward; 3: lowest key tiles first for the backward, which see the most queries; 0: none) */
static int grid_of(Params &p, int rows_per_tile, int len, int corder, unsigned *grid) {
    p.ntiles = (len + rows_per_tile - 1) / rows_per_tile;
    int64_t n = (int64_t)p.B * p.H * p.ntiles * p.nsplit;
    if (n > 2147483647) return fail("nn__cuda_sdpa: too many tiles for one launch");
    bool heads_share_bias = p.bias && p.bs[1] == 0 && p.H > 1;
    p.order = (p.causal && corder) ? corder : heads_share_bias ? 1 : 0;
    *grid = (unsigned)n;
    return 0;
}

#define SDPA_NOSPLIT 0x3fffffff
static int sm_count(void) { return nn__cu.sms > 0 ? nn__cu.sms : 132; }
/* split-KV when the (b, h, query tile) blocks cannot fill the GPU (4 blocks per SM): key ranges of at least 4
   tiles, as many as bring the grid to that target (the 900-query AQR cases, 10 queries over 2,048 keys) */
static void plan_split(Params &p, int BM, int BN) {
    p.nsplit = 1; p.split_len = SDPA_NOSPLIT;
    int64_t blocks = (int64_t)p.B * p.H * ((p.Lq + BM - 1) / BM);
    int64_t ktiles = (p.Lk + BN - 1) / BN, target = 4LL * sm_count();
    if (blocks == 0 || blocks >= target / 2 || ktiles < 8) return;   /* >= 2 blocks per SM: no split */
    int64_t n = (target + blocks - 1) / blocks;
    if (n > ktiles / 4) n = ktiles / 4;
    if (n < 2) return;
    int64_t tps = (ktiles + n - 1) / n;
    int ns = (int)((ktiles + tps - 1) / tps);
    if (ns < 2) return;
    p.nsplit = ns; p.split_len = (int)(tps * BN);
}
/* backward: split the queries of each key tile into ranges when the key tiles alone leave SMs idle (40,000
   queries over 1,024 keys: 64 CTAs for 132 SMs). Model: waves x (query tiles per CTA + 2 tiles of fixed cost,
   the K/V load and the dK/dV adds); a split must gain 10 %. */
static void plan_qsplit(Params &p, int BM, int BN, int occ) {
    p.nsplit = 1; p.split_len = SDPA_NOSPLIT;
    int64_t blocks = (int64_t)p.B * p.H * ((p.Lk + BM - 1) / BM);
    int64_t qt = (p.Lq + BN - 1) / BN, slots = (int64_t)sm_count() * (occ > 0 ? occ : 1);
    if (blocks == 0 || qt < 8 || blocks >= 4 * slots) return;
    int64_t best = ((blocks + slots - 1) / slots) * (qt + 2), bn = 1, blen = qt;
    for (int64_t n = 2; n <= 64 && n <= qt / 4; n++) {
        int64_t len = (qt + n - 1) / n, ns = (qt + len - 1) / len;
        int64_t cost = ((blocks * ns + slots - 1) / slots) * (len + 2);
        if (cost * 10 < best * 9) { best = cost; bn = ns; blen = len; }
    }
    if (bn > 1) { p.nsplit = (int)bn; p.split_len = (int)(blen * BN); }
}
template <bool F> static void fwd_tiles(int hd, int *fbm, int *fbn) {
    if (hd <= 16) { *fbm = FwdTile<16, F>::t::BM; *fbn = FwdTile<16, F>::t::BN; }
    else if (hd <= 32) { *fbm = FwdTile<32, F>::t::BM; *fbn = FwdTile<32, F>::t::BN; }
    else if (hd <= 64) { *fbm = FwdTile<64, F>::t::BM; *fbn = FwdTile<64, F>::t::BN; }
    else if (hd <= 96) { *fbm = FwdTile<96, F>::t::BM; *fbn = FwdTile<96, F>::t::BN; }
    else { *fbm = FwdTile<128, F>::t::BM; *fbn = FwdTile<128, F>::t::BN; }
}
static int64_t align16(int64_t n) { return (n + 15) & ~(int64_t)15; }
/* strides that lay [B,H,L,D] out densely in some order of B, H, L (D innermost): [B,H,L,D] itself, or
   nn_sdpa_heads' [B,L,H*D]. Such an f32 output can be its own accumulator (zeroed as one block). */
static bool dense(const int64_t s[3], int B, int H, int L, int D) {
    int64_t st[3] = {s[0], s[1], s[2]}, n[3] = {B, H, L};
    for (int i = 0; i < 3; i++)       /* sort the (stride, size) pairs by stride */
        for (int j = i + 1; j < 3; j++)
            if (st[j] < st[i]) { int64_t t = st[i]; st[i] = st[j]; st[j] = t; t = n[i]; n[i] = n[j]; n[j] = t; }
    return st[0] == D && st[1] == st[0] * n[0] && st[2] == st[1] * n[1];
}

/* the kernels without mask, bias and dropout code (fewer registers, scale folded into the exponent) */
static bool plain_ok(const Params &p) { return !p.mask && !p.bias && !p.dropout && p.scale > 0.f; }

template <typename T, int HD, typename C, bool FULL>
static int run_fwd(Params p, cudaStream_t s) {
    constexpr int BM = C::BM;
    if (p.part) plan_split(p, BM, C::BN);
    int es = p.bias_f32 ? 4 : 2;
    size_t smem = (size_t)(BM + 4 * C::BN) * (HD + 8) * sizeof(T) +
                  (p.bias_stage ? (size_t)2 * BM * (C::BN * es + 16) : 0);
    auto kern = fwd_kernel<T, HD, C::MW, C::NW, C::BN, C::MB, FULL>;
    if (set_smem(kern, smem)) return -1;
    unsigned grid;
    if (grid_of(p, BM, p.Lq, 2, &grid)) return -1;
    if (grid) kern<<<grid, C::NW * 32, smem, s>>>(p); NN_LAUNCHED();
    int64_t rows = (int64_t)p.B * p.H * p.Lq;
    if (p.nsplit > 1 && rows > 0) combine_kernel<T><<<(unsigned)((rows + 7) / 8), 256, 0, s>>>(p); NN_LAUNCHED();
    return 0;
}

/* f32 accumulator -> out (type T, or f32 when grad_f32) through strides st */
template <typename T>
static void acc_convert(const Params &p, const float *acc, void *out, const int64_t st[3], int L, int Dd, cudaStream_t s) {
    int64_t n = (int64_t)p.B * p.H * L * Dd;
    if (n <= 0) return;
    const int64_t ev = p.grad_f32 ? 4 : 8;   /* elements of 16 bytes */
    if (Dd % 8 == 0 && ((uintptr_t)out & 15) == 0 && st[0] % ev == 0 && st[1] % ev == 0 && st[2] % ev == 0) {
        unsigned g = (unsigned)((n / 8 + 255) / 256);
        if (p.grad_f32) acc_convert8_kernel<float><<<g, 256, 0, s>>>(acc, (float *)out, st[0], st[1], st[2], p.H, L, Dd / 8, n / 8);
        else acc_convert8_kernel<T><<<g, 256, 0, s>>>(acc, (T *)out, st[0], st[1], st[2], p.H, L, Dd / 8, n / 8);
        NN_LAUNCHED();
        return;
    }
    unsigned g = (unsigned)((n + 255) / 256);
    if (p.grad_f32) acc_convert_kernel<float><<<g, 256, 0, s>>>(acc, (float *)out, st[0], st[1], st[2], p.H, L, Dd, n);
    else acc_convert_kernel<T><<<g, 256, 0, s>>>(acc, (T *)out, st[0], st[1], st[2], p.H, L, Dd, n);
    NN_LAUNCHED();
}

/* delta (and dO rounded to T when it comes in f32): delta16_kernel where Dv and the alignment allow, else
   delta_kernel (one warp per row) */
template <typename T>
static void launch_delta(const Params &p, cudaStream_t s) {
    int64_t rows = (int64_t)p.B * p.H * p.Lq;
    if (rows <= 0) return;
    const int64_t ge = p.dout_f32 ? 4 : 8;   /* dO elements of 16 bytes */
    bool v16 = (p.Dv == 64 || p.Dv == 128) && ((uintptr_t)p.o & 15) == 0 && ((uintptr_t)p.dout & 15) == 0 &&
               p.so[0] % 8 == 0 && p.so[1] % 8 == 0 && p.so[2] % 8 == 0 && p.sdo[0] % ge == 0 && p.sdo[1] % ge == 0 &&
               p.sdo[2] % ge == 0 && (!p.dout_f32 || ((uintptr_t)p.dout_lp & 15) == 0);
    if (v16 && p.Dv == 64) delta16_kernel<T, 8><<<(unsigned)((rows + 31) / 32), 256, 0, s>>>(p);
    else if (v16) delta16_kernel<T, 16><<<(unsigned)((rows + 15) / 16), 256, 0, s>>>(p);
    else delta_kernel<T><<<(unsigned)((rows + 7) / 8), 256, 0, s>>>(p);
    NN_LAUNCHED();
}

template <typename T, int HD, typename C, bool FULL>
static int run_bwd(Params p, cudaStream_t s) {
    constexpr int BM = C::BM, BN = C::BN, NTH = C::NW * 32;
    int es = p.bias_f32 ? 4 : 2;
    int64_t rows = (int64_t)p.B * p.H * p.Lq, krows = (int64_t)p.B * p.H * p.Lk;
    if (!p.dq && !p.dk && !p.dv && !p.dbias) return 0;
    size_t smem = (size_t)(2 * BM + 4 * BN) * (HD + 8) * sizeof(T) + (size_t)2 * BM * (BN + 8) * sizeof(T) +
                  4 * BN * sizeof(float) + (p.bias_stage ? (size_t)2 * BN * (BM * es + 16) : 0);
    auto kern = bwd_kernel<T, HD, C::MW, C::NW, BN, C::MB, FULL>;
    if (set_smem(kern, smem)) return -1;
    int occ = 1;
    NN_CU(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&occ, kern, NTH, smem));
    if (p.dk || p.dv) plan_qsplit(p, BM, BN, occ);
    unsigned grid;
    if (grid_of(p, BM, p.Lk, 3, &grid)) return -1;
    /* f32 accumulators: dQ always (atomics); dK/dV with split query ranges. An f32 contiguous output is its own
       accumulator; otherwise a workspace and a conversion afterwards. */
    bool kv = p.nsplit > 1;
    bool dq_dir = p.dq && p.grad_f32 && dense(p.sdq, p.B, p.H, p.Lq, p.D);
    bool dk_dir = kv && p.dk && p.grad_f32 && dense(p.sdk, p.B, p.H, p.Lk, p.D);
    bool dv_dir = kv && p.dv && p.grad_f32 && dense(p.sdv, p.B, p.H, p.Lk, p.Dv);
    constexpr bool ASYNC = lse_async<HD, FULL>();
    p.Lqp = (p.Lq + 63) / 64 * 64;
    int64_t prows = ASYNC ? (int64_t)p.B * p.H * p.Lqp : 0;
    int64_t wn = 2 * align16(prows) + (p.dq && !dq_dir ? align16(rows * p.D) : 0) +
                 (kv && p.dk && !dk_dir ? align16(krows * p.D) : 0) + (kv && p.dv && !dv_dir ? align16(krows * p.Dv) : 0);
    nn_tensor *ws = wn ? nn__tmp(NN_F32, wn) : NULL;
    float *w = ws ? (float *)ws->data : NULL;
    if (ASYNC) { p.lsep = w; w += align16(prows); p.dlp = w; w += align16(prows); }
    launch_delta<T>(p, s);
    if (p.dout_f32) {   /* from here on the kernels read the rounded copy */
        p.dout = p.dout_lp; p.dout_f32 = 0;
        p.sdo[2] = p.Dv; p.sdo[1] = (int64_t)p.Lq * p.Dv; p.sdo[0] = (int64_t)p.H * p.sdo[1];
    }
    auto take = [&](void *out, const int64_t so[3], bool direct, int64_t n, float **acc, int64_t sa[3], int L, int Dd) {
        if (direct) { *acc = (float *)out; sa[0] = so[0]; sa[1] = so[1]; sa[2] = so[2]; }
        else { *acc = w; w += align16(n); sa[2] = Dd; sa[1] = (int64_t)L * Dd; sa[0] = (int64_t)p.H * sa[1]; }
        if (n > 0) NN_CU(cudaMemsetAsync(*acc, 0, (size_t)n * sizeof(float), s));
    };
    p.dq_acc = p.dk_acc = p.dv_acc = nullptr;
    if (p.dq) take(p.dq, p.sdq, dq_dir, rows * p.D, &p.dq_acc, p.sqa, p.Lq, p.D);
    if (kv && p.dk) take(p.dk, p.sdk, dk_dir, krows * p.D, &p.dk_acc, p.ska, p.Lk, p.D);
    if (kv && p.dv) take(p.dv, p.sdv, dv_dir, krows * p.Dv, &p.dv_acc, p.sva, p.Lk, p.Dv);
    if (grid) kern<<<grid, NTH, smem, s>>>(p); NN_LAUNCHED();
    if (p.dq && !dq_dir) acc_convert<T>(p, p.dq_acc, p.dq, p.sdq, p.Lq, p.D, s);
    if (p.dk_acc && !dk_dir) acc_convert<T>(p, p.dk_acc, p.dk, p.sdk, p.Lk, p.D, s);
    if (p.dv_acc && !dv_dir) acc_convert<T>(p, p.dv_acc, p.dv, p.sdv, p.Lk, p.Dv, s);
    if (ws) nn_tensor_free(ws);
    return 0;
}

/* ---- wgmma kernels (sm_90a): launch */
/* Warpgroups per CTA of the forward: 2 (128 queries) at D = 128 (198 registers: 3 do not fit); at D = 64 2 or 3
   (192 queries, 158 registers), chosen by waves, one CTA per SM either way. Measured (bench/RESULTS_FLASH.md):
   3 warpgroups did the same work in ~0.905x the time (+2 % on case 1 of bench/flash_bench, 8 -> 6 waves of 1.5x
   the work; -7 % on case 3, 16 -> 11 waves; +32 % on case 4, 3 -> 3 waves), so 3 are taken when
   waves(3) * 1.5 * 0.905 < 0.97 * waves(2), e.g. the ViT-B step at batch 4 (B*H = 48, L = 5330: 16 -> 11 waves). */
static int wg_fwd_nwg(const Params &p) {
    if (p.D != 64) return 2;
    const int64_t bh = (int64_t)p.B * p.H, sms = sm_count();
    const int64_t w2 = (bh * ((p.Lq + 127) / 128) + sms - 1) / sms, w3 = (bh * ((p.Lq + 191) / 192) + sms - 1) / sms;
    return (double)w3 * 1.5 * 0.905 < 0.97 * (double)w2 ? 3 : 2;
}
/* a bias the wgmma forward reads (two keys a load, wg_fwd_kernel BIAS): keys contiguous, Lk and the other
   strides even, the pointer aligned to a pair; an f32 bias only at D = 64 (at D = 128 its 64 registers a thread
   do not fit beside S, O and P; at D = 32 not instantiated: no such problem measured) */
static bool wg_bias_ok(const Params &p) {
    const int64_t es = p.bias_f32 ? 4 : 2;
    if (p.bias_f32 && p.D != 64) return false;
    return p.bs[3] == 1 && p.Lk % 2 == 0 && p.bs[0] % 2 == 0 && p.bs[1] % 2 == 0 && p.bs[2] % 2 == 0 &&
           ((uintptr_t)p.bias % (uintptr_t)(2 * es)) == 0;
}
/* D = 32 (2 warpgroups: 128 queries a CTA, 128 keys a tile): the split over keys the wgmma forward takes when
   its query tiles leave SMs idle (plan_split, as fwd_kernel's); D 64 / 128 never split */
static void wg_plan_split(Params &p) {
    p.nsplit = 1; p.split_len = SDPA_NOSPLIT;
    if (p.D == 32) plan_split(p, 128, 128);
}
/* the wgmma forward takes f16/bf16 problems without mask or dropout (plain, or a bias as wg_bias_ok) with
   D == Dv in {32, 64, 128} that fill the GPU (at least one 128-query tile per SM), at D = 32 also with a split
   over keys (wg_plan_split: the 900-query AQR cases); the rest keeps fwd_kernel */
static bool wg_fwd_ok(const Params &p) {
    if (p.mask || p.dropout || (p.bias ? !wg_bias_ok(p) : !plain_ok(p))) return false;
    if (p.D != p.Dv || (p.D != 32 && p.D != 64 && p.D != 128)) return false;
    if ((int64_t)p.B * p.H * ((p.Lq + 127) / 128) < sm_count()) {
        Params q = p;
        wg_plan_split(q);
        if (q.nsplit < 2) return false;
    }
    return nn__cu_wgmma() != 0;
}
template <typename T, int HD, int NWG, int BIAS, bool WS = false>
static int run_wg_fwd(Params p, cudaStream_t s) {
    constexpr int BM = 64 * NWG, NS = wg_fwd_stages(HD, BIAS, WS);
    static_assert(HD != 32 || BM == 128, "run_wg_fwd: wg_plan_split plans D = 32 for 128-query tiles");
    size_t smem = (size_t)(BM + 2 * NS * 128) * HD * sizeof(T) + 1024;   /* + 1024: the 1024-byte alignment */
    if (BIAS == 3) smem += (size_t)NS * BM * (128 * 2 + 16);             /* the staged bias tiles (wg_fwd_kernel) */
    if (WS) smem += ws_barrier_bytes(NS);
    auto kern = wg_fwd_kernel<T, HD, NWG, BIAS, WS>;
    if (set_smem(kern, smem)) return -1;
    p.nsplit = 1; p.split_len = SDPA_NOSPLIT;
    if (p.part) wg_plan_split(p);   /* the workspace was sized by the same plan (ws_floats) */
    unsigned grid;
    if (grid_of(p, BM, p.Lq, 2, &grid)) return -1;
    if (grid) kern<<<grid, (NWG + WS) * 128, smem, s>>>(p); NN_LAUNCHED();
    int64_t rows = (int64_t)p.B * p.H * p.Lq;
    if (p.nsplit > 1 && rows > 0) { combine_kernel<T><<<(unsigned)((rows + 7) / 8), 256, 0, s>>>(p); NN_LAUNCHED(); }
    return 0;
}

/* 2 warpgroups (128 keys) per CTA; the backward's shared memory at D = 64: K, V, K^T [128][64], three Q/dO tiles
   [64][64] each, three dS^T tiles [128][64] (T), lse/delta of three tiles; with a bias three bias tiles [64][128]
   (T, rows padded by 16 bytes): 197.5 KiB. At D = 128 (wg_bwd_d128_kernel): K, V [128][128], three Q/dO tiles
   [64][128] each, two dS^T tiles and one P^T tile [128][64], lse/delta of three tiles: 210.5 KiB */
enum { WG_BWD_NWG = 2, WG_BWD_BM = 64 * WG_BWD_NWG };
static size_t wg_bwd_smem(int D, bool bias) {
    if (D == 128)
        return (size_t)(2 * WG_BWD_BM * 256 + 6 * 64 * 256 + 3 * WG_BWD_BM * 128) + 6 * 64 * sizeof(float) + 1024;
    return (size_t)(3 * WG_BWD_BM + 6 * 64 + 3 * WG_BWD_BM) * 128 + 6 * 64 * sizeof(float) + 1024 +
           (bias ? (size_t)3 * 64 * (WG_BWD_BM * 2 + 16) : 0);
}
/* an A/B switch that turns a kernel off: false when the variable is "0"; read once into *state (-1: not yet) */
static bool env_not_zero(const char *name, int *state) {
    if (*state < 0) {
        const char *e = getenv(name);
        *state = e && e[0] == '0' && e[1] == 0 ? 0 : 1;
    }
    return *state != 0;
}
/* the warp-specialised forms (WS: a loading warpgroup beside the computing ones) of the forward at D = 64 / 128
   (plain, or the staged bias) and of the backward at D = 64 / 128; NN_SDPA_WS=0 turns them off (A/B in one
   binary); read once. Measured (bench/RESULTS_FLASH.md): forward 1.04-1.52x (12-07 03:47), 1.23x (08:18, cases
   1 and 2); the backwards level within the spread at 08:18 (D = 64 1.02-1.09x at 03:47; D = 128 1.03x at 08:01) */
static bool ws_on(void) {
    static int state = -1;
    return env_not_zero("NN_SDPA_WS", &state);
}
/* NN_SDPA_WG_BWD=0 turns the wgmma backward off (A/B in one binary); read once */
static bool wg_bwd_enabled(void) {
    static int state = -1;
    return env_not_zero("NN_SDPA_WG_BWD", &state);
}
/* the wgmma backward takes f16/bf16 problems without mask or dropout and key tiles that fill the GPU (at least
   one 128-key tile per SM: no query split needed): at D == Dv == 64 (wg_bwd_kernel) non-causal, plain or with a
   bias in the q dtype whose rows the staged loader reads (Params.bias_stage: 16-byte aligned rows, contiguous
   keys; an f32 bias would need 96 KiB more shared memory); at D == Dv == 128 (wg_bwd_d128_kernel) plain,
   causal or not. The rest keeps bwd_kernel */
static bool wg_bwd_ok(const Params &p) {
    if (p.mask || p.dropout || p.Lq < 1 || p.Lk < 1 || p.D != p.Dv) return false;
    if (p.D == 64) {
        if (p.causal || (p.bias ? p.bias_f32 || !p.bias_stage : !plain_ok(p))) return false;
    } else if (p.D != 128 || !plain_ok(p)) return false;
    if ((int64_t)p.B * p.H * ((p.Lk + WG_BWD_BM - 1) / WG_BWD_BM) < sm_count()) return false;
    return wg_bwd_enabled() && nn__cu_wgmma() != 0;
}
/* as run_bwd without the query split: delta, the f32 dQ accumulator (or dq itself), the kernel, the conversion */
template <typename T, int BIAS, bool WS = false>
static int run_wg_bwd(Params p, cudaStream_t s) {
    if (!p.dq && !p.dk && !p.dv && !p.dbias) return 0;
    const bool d128 = p.D == 128;
    size_t smem = wg_bwd_smem(p.D, BIAS != 0) + (WS ? ws_barrier_bytes(3) : 0);   /* WS: kvfull, qfull[3], qempty[3] */
    auto kern = !d128 ? wg_bwd_kernel<T, WG_BWD_NWG, BIAS, WS>
                : p.causal ? wg_bwd_d128_kernel<T, true, WS> : wg_bwd_d128_kernel<T, false, WS>;
    if (set_smem(kern, smem)) return -1;
    p.nsplit = 1; p.split_len = SDPA_NOSPLIT;
    p.lsep = p.dlp = nullptr;
    unsigned grid;
    if (grid_of(p, WG_BWD_BM, p.Lk, 3, &grid)) return -1;   /* causal (D = 128): key tile 0, the longest, first */
    int64_t rows = (int64_t)p.B * p.H * p.Lq;
    bool dq_dir = p.dq && p.grad_f32 && dense(p.sdq, p.B, p.H, p.Lq, p.D);
    int64_t wn = p.dq && !dq_dir ? align16(rows * p.D) : 0;
    nn_tensor *ws = wn ? nn__tmp(NN_F32, wn) : NULL;
    launch_delta<T>(p, s);
    if (p.dout_f32) {   /* from here on the kernel reads the rounded copy */
        p.dout = p.dout_lp; p.dout_f32 = 0;
        p.sdo[2] = p.Dv; p.sdo[1] = (int64_t)p.Lq * p.Dv; p.sdo[0] = (int64_t)p.H * p.sdo[1];
    }
    p.dq_acc = p.dk_acc = p.dv_acc = nullptr;
    if (p.dq) {
        if (dq_dir) { p.dq_acc = (float *)p.dq; p.sqa[0] = p.sdq[0]; p.sqa[1] = p.sdq[1]; p.sqa[2] = p.sdq[2]; }
        else { p.dq_acc = (float *)ws->data; p.sqa[2] = p.D; p.sqa[1] = (int64_t)p.Lq * p.D; p.sqa[0] = (int64_t)p.H * p.sqa[1]; }
        if (rows > 0) NN_CU(cudaMemsetAsync(p.dq_acc, 0, (size_t)(rows * p.D) * sizeof(float), s));
    }
    if (grid) kern<<<grid, (WG_BWD_NWG + WS) * 128, smem, s>>>(p); NN_LAUNCHED();
    if (p.dq && !dq_dir) acc_convert<T>(p, p.dq_acc, p.dq, p.sdq, p.Lq, p.D, s);
    if (ws) nn_tensor_free(ws);
    return 0;
}
template <typename T, bool F>
static int dispatch_hd(Params &p, bool fwd, cudaStream_t s) {
    int hd = p.D > p.Dv ? p.D : p.Dv;
    if (hd <= 16) return fwd ? run_fwd<T, 16, typename FwdTile<16, F>::t, F>(p, s) : run_bwd<T, 16, typename BwdTile<16, F>::t, F>(p, s);
    if (hd <= 32) return fwd ? run_fwd<T, 32, typename FwdTile<32, F>::t, F>(p, s) : run_bwd<T, 32, typename BwdTile<32, F>::t, F>(p, s);
    if (hd <= 64) return fwd ? run_fwd<T, 64, typename FwdTile<64, F>::t, F>(p, s) : run_bwd<T, 64, typename BwdTile<64, F>::t, F>(p, s);
    if (hd <= 96) return fwd ? run_fwd<T, 96, typename FwdTile<96, F>::t, F>(p, s) : run_bwd<T, 96, typename BwdTile<96, F>::t, F>(p, s);
    return fwd ? run_fwd<T, 128, typename FwdTile<128, F>::t, F>(p, s) : run_bwd<T, 128, typename BwdTile<128, F>::t, F>(p, s);
}
/* f16/bf16: the wgmma kernels where they apply (forward: wg_fwd_ok, plain or biased - at D = 64 a q-dtype bias with
   16-byte aligned rows staged through shared memory (BIAS 3), other biases in registers; backward: wg_bwd_ok, D = 64
   plain or biased, D = 128 plain or causal, on sm_90a, NN_SDPA_WG_BWD=0 turns it off), else fwd_kernel /
   bwd_kernel, without the mask/bias/dropout code when plain_ok */
template <typename T>
static int dispatch(Params &p, bool fwd, cudaStream_t s) {
    if (fwd && wg_fwd_ok(p)) {
        /* WS: D = 64 / 128, plain, or at D = 64 a q-dtype bias the staged loader reads */
        if (ws_on() && p.D != 32 && (!p.bias || (p.D == 64 && p.bias_stage && !p.bias_f32))) {
            if (p.D == 128) return run_wg_fwd<T, 128, 2, 0, true>(p, s);
            if (p.bias) return run_wg_fwd<T, 64, 2, 3, true>(p, s);
            return wg_fwd_nwg(p) == 3 ? run_wg_fwd<T, 64, 3, 0, true>(p, s) : run_wg_fwd<T, 64, 2, 0, true>(p, s);
        }
        /* biased: 2 warpgroups (the bias registers do not fit 3 warpgroups' 168 a thread) */
        if (p.bias && p.bias_f32) return run_wg_fwd<T, 64, 2, 2>(p, s);
        if (p.bias) {
            if (p.D == 32) return run_wg_fwd<T, 32, 2, 1>(p, s);
            if (p.D == 128) return run_wg_fwd<T, 128, 2, 1>(p, s);
            return p.bias_stage ? run_wg_fwd<T, 64, 2, 3>(p, s) : run_wg_fwd<T, 64, 2, 1>(p, s);
        }
        if (p.D == 32) return run_wg_fwd<T, 32, 2, 0>(p, s);
        if (p.D == 128) return run_wg_fwd<T, 128, 2, 0>(p, s);
        return wg_fwd_nwg(p) == 3 ? run_wg_fwd<T, 64, 3, 0>(p, s) : run_wg_fwd<T, 64, 2, 0>(p, s);
    }
    if (!fwd && wg_bwd_ok(p)) {   /* sm_90a, D 64 / 128 */
        if (ws_on()) return p.bias ? run_wg_bwd<T, 1, true>(p, s) : run_wg_bwd<T, 0, true>(p, s);
        return p.bias ? run_wg_bwd<T, 1>(p, s) : run_wg_bwd<T, 0>(p, s);
    }
    return plain_ok(p) ? dispatch_hd<T, false>(p, fwd, s) : dispatch_hd<T, true>(p, fwd, s);
}

static int setup(const nn__cuda_sdpa_args *a, Params *p, bool bwd) {
    memset(p, 0, sizeof *p);
    if (!a) return fail("nn__cuda_sdpa: args is NULL");
    if (a->dtype < 0 || a->dtype > 2) return fail("nn__cuda_sdpa: dtype must be 0 (f32), 1 (f16) or 2 (bf16)");
    if (a->B < 0 || a->H < 0 || a->Lq < 0 || a->Lk < 0 || a->D < 1 || a->Dv < 1)
        return fail("nn__cuda_sdpa: negative size, or D or Dv < 1");
    if (!a->q || !a->k || !a->v || !a->o || !a->lse) return fail("nn__cuda_sdpa: q, k, v, o and lse are required");
    if (bwd && !a->dout) return fail("nn__cuda_sdpa_bwd: dout is required");
    if (!(a->dropout_p >= 0.f && a->dropout_p <= 1.f)) return fail("nn__cuda_sdpa: dropout_p must be in [0, 1]");
    if (a->dtype == 0) {
        if (a->D > F32_MAXD || a->Dv > F32_MAXD) return fail("nn__cuda_sdpa: f32 path takes D, Dv <= 256");
        if (a->bias && a->bias_dtype != 0) return fail("nn__cuda_sdpa: f32 path takes an f32 bias");
    } else {
        if (a->D % 8 || a->Dv % 8 || a->D > 128 || a->Dv > 128)
            return fail("nn__cuda_sdpa: f16/bf16 need D and Dv multiples of 8, at most 128");
        const int64_t *st[8] = {a->sq, a->sk, a->sv, a->so, a->sdo, a->sdq, a->sdk, a->sdv};
        const void *pt[8] = {a->q, a->k, a->v, a->o, a->dout, a->dq, a->dk, a->dv};
        for (int x = 0; x < (bwd ? 8 : 4); x++) {
            if (!pt[x]) continue;
            if (st[x][2] % 8 || ((uintptr_t)pt[x] & 15)) return fail("nn__cuda_sdpa: f16/bf16 rows must be 16-byte aligned (row strides multiples of 8 elements)");
        }
    }
    p->q = a->q; p->k = a->k; p->v = a->v; p->o = a->o; p->out = a->o; p->dout = a->dout;
    p->dq = a->dq; p->dk = a->dk; p->dv = a->dv;
    for (int x = 0; x < 3; x++) {
        p->sq[x] = a->sq[x]; p->sk[x] = a->sk[x]; p->sv[x] = a->sv[x]; p->so[x] = a->so[x];
        p->sdo[x] = a->sdo[x]; p->sdq[x] = a->sdq[x]; p->sdk[x] = a->sdk[x]; p->sdv[x] = a->sdv[x];
    }
    p->lse = a->lse;
    p->mask = a->mask; p->bias = a->bias; p->bias_f32 = a->bias_dtype == 0;
    for (int x = 0; x < 4; x++) { p->ms[x] = a->ms[x]; p->bs[x] = a->bs[x]; }
    p->B = a->B; p->H = a->H; p->Lq = a->Lq; p->Lk = a->Lk; p->D = a->D; p->Dv = a->Dv;
    p->causal = a->causal != 0;
    p->scale = a->scale; p->scale_log2 = a->scale * SDPA_LOG2E;
    p->p = a->dropout_p; p->dropout = a->dropout_p > 0.f;
    p->keep_scale = a->dropout_p < 1.f ? 1.f / (1.f - a->dropout_p) : 0.f;
    p->seed = a->seed; p->offset = a->offset;
    p->nsplit = 1; p->split_len = SDPA_NOSPLIT;
    p->grad_f32 = a->dtype != 0 && a->grad_f32;
    p->dout_f32 = bwd && a->dtype != 0 && a->dout_f32;
    if (a->dtype != 0 && a->bias) {
        int64_t es = p->bias_f32 ? 4 : 2;
        p->bias_stage = (p->bs[3] == 1 || p->Lk == 1) && ((uintptr_t)a->bias & 15) == 0 &&
                        (p->bs[0] * es) % 16 == 0 && (p->bs[1] * es) % 16 == 0 && (p->bs[2] * es) % 16 == 0;
    }
    return 0;
}

/* workspace (f32 elements): forward split-KV partials; backward delta (+ dO rounded to T when it comes in f32;
   the backward's own accumulators are taken in run_bwd) */
static int64_t ws_floats(const Params &p0, int dtype, bool bwd) {
    int64_t bhlq = (int64_t)p0.B * p0.H * p0.Lq;
    if (bwd) return align16(bhlq) + (p0.dout_f32 ? align16((bhlq * p0.Dv + 1) / 2) : 0);
    if (dtype == 0) return 0;
    if (wg_fwd_ok(p0)) {   /* run_wg_fwd's plan */
        Params p = p0;
        wg_plan_split(p);
        return p.nsplit > 1 ? (int64_t)p.nsplit * bhlq * (p.Dv + 1) : 0;
    }
    int fbm, fbn;
    if (plain_ok(p0)) fwd_tiles<false>(p0.D > p0.Dv ? p0.D : p0.Dv, &fbm, &fbn);
    else fwd_tiles<true>(p0.D > p0.Dv ? p0.D : p0.Dv, &fbm, &fbn);
    Params p = p0;
    plan_split(p, fbm, fbn);
    return p.nsplit > 1 ? (int64_t)p.nsplit * bhlq * (p.Dv + 1) : 0;
}

/* ------------------------------------------------------------------------------------------ f32 launch */
/* key tile of the forward and dQ kernels, query tile of the dK/dV kernel: 64 up to D = 32, then 32 (registers:
   the S and dP fragments plus the D-wide accumulators) */
template <int HD> struct TcCfg { enum { BN = HD <= 32 ? 64 : 32 }; };

/* the forward's split-KV plan for the f32 kernels (the same rule as the bf16 path's plan_split) */
static int64_t tc_ws_floats(const Params &p0) {
    Params p = p0;
    int hd = p.D > p.Dv ? p.D : p.Dv;
    if (hd > 128) return 0;
    plan_split(p, TC_BM, hd <= 32 ? 64 : 32);
    return p.nsplit > 1 ? (int64_t)p.nsplit * p.B * p.H * p.Lq * (p.Dv + 1) : 0;
}

template <int HD>
static int tc_fwd(Params p, cudaStream_t s) {
    constexpr int BN = TcCfg<HD>::BN;
    if (p.part) plan_split(p, TC_BM, BN);
    size_t smem = (size_t)TcPlanes<HD>::N * (TC_BM + 2 * BN) * (HD + 4) * sizeof(float);
    auto kern = tc_fwd_kernel<HD, BN>;
    if (set_smem(kern, smem)) return -1;
    unsigned grid;
    if (grid_of(p, TC_BM, p.Lq, 2, &grid)) return -1;
    if (grid) { kern<<<grid, TC_NTH, smem, s>>>(p); NN_LAUNCHED(); }
    int64_t rows = (int64_t)p.B * p.H * p.Lq;
    if (p.nsplit > 1 && rows > 0) { combine_kernel<float><<<(unsigned)((rows + 7) / 8), 256, 0, s>>>(p); NN_LAUNCHED(); }
    return 0;
}

/* dK/dV: split the queries of each key tile into ranges when the key tiles alone give under 6 CTAs per SM (40,000
   queries over 1,024 keys: 128 CTAs), each range at least 8 query tiles; the ranges add into dK/dV */
static void tc_plan_qsplit(Params &p, int BN) {
    p.nsplit = 1; p.split_len = SDPA_NOSPLIT;
    int64_t blocks = (int64_t)p.B * p.H * ((p.Lk + TC_BM - 1) / TC_BM);
    int64_t qt = (p.Lq + BN - 1) / BN, target = 6LL * sm_count();
    if (blocks == 0 || blocks >= target) return;
    int64_t n = (target + blocks - 1) / blocks;
    if (n > qt / 8) n = qt / 8;
    if (n < 2) return;
    int64_t len = (qt + n - 1) / n;
    p.nsplit = (int)((qt + len - 1) / len);
    p.split_len = (int)(len * BN);
}

/* f32 [B,H,L,Dd] through strides st <- 0 */
static void tc_zero(float *x, const int64_t st[3], int B, int H, int L, int Dd, cudaStream_t s) {
    int64_t n = (int64_t)B * H * L * Dd;
    if (n <= 0) return;
    tc_zero_kernel<<<(unsigned)((n + 255) / 256), 256, 0, s>>>(x, st[0], st[1], st[2], H, L, Dd, n);
    NN_LAUNCHED();
}

template <int HD>
static int tc_bwd(Params p, cudaStream_t s) {
    constexpr int BN = TcCfg<HD>::BN;
    unsigned grid;
    size_t smem = (size_t)TcPlanes<HD>::N * (2 * TC_BM + 2 * BN) * (HD + 4) * sizeof(float) +
                  (size_t)(2 * BN + BN * (TC_BM + 8)) * sizeof(float);
    auto kern = tc_bwd_kernel<HD, BN>;
    if (set_smem(kern, smem)) return -1;
    tc_plan_qsplit(p, BN);
    if (grid_of(p, TC_BM, p.Lk, 3, &grid)) return -1;
    if (p.dq) tc_zero((float *)p.dq, p.sdq, p.B, p.H, p.Lq, p.D, s);   /* dQ is added up over the key tiles */
    if (p.nsplit > 1) {                                                 /* dK/dV over the query ranges */
        if (p.dk) tc_zero((float *)p.dk, p.sdk, p.B, p.H, p.Lk, p.D, s);
        if (p.dv) tc_zero((float *)p.dv, p.sdv, p.B, p.H, p.Lk, p.Dv, s);
    }
    if (grid) { kern<<<grid, TC_NTH, smem, s>>>(p); NN_LAUNCHED(); }
    return 0;
}

/* the f32 path: tensor-core kernels up to head dim 128, the SIMT kernels above it (D, Dv <= F32_MAXD) */
static int f32_fwd(Params &p, cudaStream_t s) {
    int hd = p.D > p.Dv ? p.D : p.Dv;
    if (hd <= 16) return tc_fwd<16>(p, s);
    if (hd <= 32) return tc_fwd<32>(p, s);
    if (hd <= 64) return tc_fwd<64>(p, s);
    if (hd <= 128) return tc_fwd<128>(p, s);
    unsigned grid;
    if (grid_of(p, F32_TQ, p.Lq, 2, &grid)) return -1;
    if (grid) { f32_fwd_kernel<<<grid, F32_TQ, 0, s>>>(p); NN_LAUNCHED(); }
    return 0;
}

static int f32_bwd(Params &p, cudaStream_t s) {
    int hd = p.D > p.Dv ? p.D : p.Dv;
    int64_t rows = (int64_t)p.B * p.H * p.Lq;
    if (rows > 0) { delta_kernel<float><<<(unsigned)((rows + 7) / 8), 256, 0, s>>>(p); NN_LAUNCHED(); }
    if (hd <= 16) return tc_bwd<16>(p, s);
    if (hd <= 32) return tc_bwd<32>(p, s);
    if (hd <= 64) return tc_bwd<64>(p, s);
    if (hd <= 128) return tc_bwd<128>(p, s);
    unsigned grid;
    if ((p.dk || p.dv) && !grid_of(p, F32_TQ, p.Lk, 0, &grid) && grid) { f32_dkdv_kernel<<<grid, F32_TQ, 0, s>>>(p); NN_LAUNCHED(); }
    if ((p.dq || p.dbias) && !grid_of(p, F32_TQ, p.Lq, 2, &grid) && grid) { f32_dq_kernel<<<grid, F32_TQ, 0, s>>>(p); NN_LAUNCHED(); }
    return 0;
}

} /* namespace sdpa_cu */

extern "C" {

void nn__cuda_sdpa_fwd(const nn__cuda_sdpa_args *a) {
    sdpa_cu::Params p;
    nn_tensor *ws = NULL;
    nn__cu_init();
    if (sdpa_cu::setup(a, &p, false)) return;
    if ((int64_t)p.B * p.H * p.Lq == 0) return;
    if (a->dtype == 0) {   /* split-KV partials, only when the plan splits */
        int64_t nf = sdpa_cu::tc_ws_floats(p);
        if (nf > 0) { ws = nn__tmp(NN_F32, nf + 16); p.part = (float *)ws->data; }
        sdpa_cu::f32_fwd(p, S_);
        if (ws) nn_tensor_free(ws);
        return;
    }
    {   /* split-KV partials, only when the plan splits */
        int64_t nf = sdpa_cu::ws_floats(p, a->dtype, false);
        if (nf > 0) { ws = nn__tmp(NN_F32, nf + 16); p.part = (float *)ws->data; }
    }
    if (a->dtype == 1) sdpa_cu::dispatch<__half>(p, true, S_);
    else sdpa_cu::dispatch<__nv_bfloat16>(p, true, S_);
    if (ws) nn_tensor_free(ws);
}

/* 1 when the wgmma kernels (sdpa's f16/bf16 cases, conv_wg) run on this device (tests report it) */
int nn__cuda_wgmma(void) {
    nn__cu_init();
    return nn__cu_wgmma();
}

void nn__cuda_sdpa_bwd(const nn__cuda_sdpa_args *a) {
    sdpa_cu::Params p;
    nn_tensor *ws;
    nn__cu_init();
    if (sdpa_cu::setup(a, &p, true)) return;
    int64_t full[4] = {p.B, p.H, p.Lq, p.Lk};
    if (a->dbias && a->bias) {
        /* span of dbias through its strides; accumulate (atomics, zeroed first) where a dim is broadcast */
        int64_t span = 1;
        int shared = 0;
        for (int d = 0; d < 4; d++) {
            if (full[d] > 0) span += (full[d] - 1) * p.bs[d];
            if (d < 3 && p.bs[d] == 0 && full[d] > 1) shared = 1;
        }
        if (full[0] == 0 || full[1] == 0 || full[2] == 0 || full[3] == 0) span = 0;
        bool zero_grad = p.bs[3] == 0 && p.Lk > 1; /* bias constant along keys: softmax ignores it */
        if (span > 0 && (shared || zero_grad || p.causal)) /* causal: skipped tiles are never written */
            NN_CU(cudaMemsetAsync(a->dbias, 0, (size_t)span * sizeof(float), S_));
        p.dbias = zero_grad ? nullptr : a->dbias;
        p.dbias_atomic = shared;
    }
    if ((int64_t)p.B * p.H == 0) return;
    ws = nn__tmp(NN_F32, sdpa_cu::ws_floats(p, a->dtype, true) + 16);
    p.delta = (float *)ws->data;
    p.dout_lp = p.delta + sdpa_cu::align16((int64_t)p.B * p.H * p.Lq);
    if (a->dtype == 0) {
        sdpa_cu::f32_bwd(p, S_);
    } else if (a->dtype == 1) {
        sdpa_cu::dispatch<__half>(p, false, S_);
    } else {
        sdpa_cu::dispatch<__nv_bfloat16>(p, false, S_);
    }
    nn_tensor_free(ws);
}

} /* extern "C" */
