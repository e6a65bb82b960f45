/* wip/flash_attn.cu - FlashAttention-2 style SDPA on the GPU (forward and backward), to be pasted into nn_cuda.cu.

   Same semantics as nn_sdpa on the CPU (wip/sdpa.h): q [B,H,Lq,D], k [B,H,Lk,D], v [B,H,Lk,Dv] -> o [B,H,Lq,Dv];
   scores s_ij = scale * q_i . k_j + bias[b,h,i,j]; masked out (-inf) where mask[b,h,i,j] == 0 (true = attend),
   where causal and j > i (top-left aligned); P = softmax over j; dropout keeps P_ij with factor 1/(1-p) iff
   nn_rng_uniform_at(seed, offset + ((b*H+h)*Lq+i)*Lk+j) >= p (Philox4x32-10 exactly as nn.h); a row with no
   attended key gives o = 0, lse = -inf and zero gradients.

   ENTRY POINTS (extern "C"; the seam nn.h calls, one per direction):

     typedef struct nn_cuda_sdpa_args { ... } nn_cuda_sdpa_args;      (below, every field documented)
     int    nn__cuda_sdpa_fwd(const nn_cuda_sdpa_args *a, cudaStream_t s);   writes o and lse
     int    nn__cuda_sdpa_bwd(const nn_cuda_sdpa_args *a, cudaStream_t s);   reads q,k,v,o,lse,dout; writes
                                                                             dq, dk, dv (each optional: NULL
                                                                             skips nothing but the store) and
                                                                             dbias (optional)
     size_t nn__cuda_sdpa_ws_bytes(const nn_cuda_sdpa_args *a, int bwd);  scratch the caller lends (a->ws) to
                                                                             a forward (split-KV partials; NULL
                                                                             runs unsplit) or a backward (delta,
                                                                             split dQ accumulator; required)
     const char *nn__cuda_sdpa_last_error(void);                           message of the last nonzero return
   Both return 0, or -1 on bad arguments (nothing launched; the message says which) and leave errors of the
   launches to the caller's usual cudaGetLastError check. Everything runs asynchronously on stream s.

   Layouts. q, k, v, o, dout, dq, dk, dv: element strides of batch, head and row (s*[0..2]); the last dimension
   is contiguous. So [B,H,L,D] (strides {H*L*D, L*D, D}) and a [B,L,H,D] projection ({L*H*D, D, H*D}) are both
   read in place. For dtype f16/bf16 the row strides and pointers must allow 16-byte loads (strides multiples of
   8 elements, pointers 16-byte aligned), D and Dv multiples of 8 and <= 128. f32 (the checking path) takes any
   D, Dv <= 256. mask: u8 read at b*ms[0] + h*ms[1] + i*ms[2] + j*ms[3] (0 strides broadcast). bias: f32 or the
   q dtype (bias_dtype), same broadcast rule with bs[]. lse: f32 [B,H,Lq] contiguous. dbias: f32, addressed with
   the bias's strides bs[]; it receives the gradient summed over every broadcast dimension (this function zeroes
   it first where it must accumulate). A bias broadcast over keys (bs[3] == 0 with Lk > 1) has gradient 0.

   KERNELS (T = half or bfloat16, f32 accumulation, mma.sync.m16n8k16 + ldmatrix, cp.async double buffering):
     fwd   one CTA per (b, h, 16*MW*NW query rows); each warp owns 16*MW rows; K/V tiles of BN keys stream
           through shared memory; S, the online-softmax state (m, l) and O stay in registers; P is re-packed
           from the S accumulators into A fragments without touching shared memory.
     bwd   1. delta_i = dO_i . O_i (one warp per row).
           2. dK/dV: one CTA per (b, h, key tile), warps own key rows; streams Q, dO, lse, delta tiles and works
              on the transposed problem S^T = K Q^T, P^T, dP^T = V dO^T, so P^T and dS^T are already A fragments
              for dV += P^T dO and dK += dS^T Q: no shared-memory round trip for P or dS.
           3. dQ (and dbias): one CTA per (b, h, query tile): the forward's loop with S, dP = dO V^T recomputed,
              dS = P (Z dP - delta), dQ += dS K.
           dQ choice: a separate pass instead of FA2's f32 atomics into a dQ accumulator. It costs 2 recomputed
           GEMMs (7 instead of 5 per tile pair) but needs no [B,H,Lq,D] f32 accumulator, no atomics (Lk/BN
           read-modify-writes of all of dQ through L2: 1.6 GB for the 900 x 56,400 AQR case), no conversion
           kernel, and gives bitwise reproducible gradients; every intermediate stays in registers.
           dbias is stored once per element when the bias is not broadcast, else atomically added (f32).
     f32   a plain SIMT path (thread per query or key row, tiles in shared memory, accurate expf), same
           semantics, for checking.
   Bias tiles (f32 or the q dtype, keys contiguous, 16-byte aligned rows) are staged through shared memory with
   cp.async, double-buffered with K/V, so no bias load sits behind a branch; other layouts read it at clamped
   indices. Split-KV: when the (b, h, query tile) blocks are fewer than 2 per SM (the 900-query AQR cases, 10
   queries over 2,048 keys) the forward splits the keys into ranges of >= 4 tiles (normalised partials + lse
   in the workspace, then a combine kernel) and the dQ pass splits likewise into an f32 accumulator (atomics,
   then a conversion); dK/dV never split. NNFA_ALT=1 selects alternative bf16 tiles for D <= 64 (see Cfg).
   One launch covers all (b, h, tile) problems (1-D grid): many small problems fill the GPU. Order of the grid:
   causal: longest tiles first; bias shared by heads: heads fastest (the heads of one bias tile run together and
   read it once from DRAM); otherwise tiles of one head together (its K/V stay in L2). */
#include <cuda_runtime.h>
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#include <stdint.h>
#include <stddef.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <type_traits>

#ifdef __cplusplus
extern "C" {
#endif
typedef struct nn_cuda_sdpa_args {
    int dtype;                       /* 0 f32, 1 f16, 2 bf16: q, k, v, o, dout, dq, dk, dv */
    int B, H, Lq, Lk, D, Dv;
    const void *q, *k, *v;           /* inputs */
    int64_t sq[3], sk[3], sv[3];     /* element strides: batch, head, row */
    void *o;                         /* forward: written; backward: read */
    int64_t so[3];
    float *lse;                      /* [B,H,Lq] f32: forward writes, backward reads */
    const uint8_t *mask;             /* optional, nonzero = attend */
    int64_t ms[4];
    const void *bias;                /* optional additive scores */
    int bias_dtype;                  /* 0 f32, else the same dtype as q */
    int64_t bs[4];
    int causal;
    float scale;                     /* the caller resolves 0 to 1/sqrt(D) */
    float dropout_p;                 /* 0 = off */
    uint64_t seed, offset;           /* Philox key and the offset reserved for this call's B*H*Lq*Lk draws */
    /* backward */
    const void *dout;                /* dL/do, layout so-like strides sdo */
    int64_t sdo[3];
    void *dq, *dk, *dv;              /* optional outputs (q dtype) */
    int64_t sdq[3], sdk[3], sdv[3];
    float *dbias;                    /* optional, f32, strides bs */
    float *ws;                       /* scratch of nn__cuda_sdpa_ws_bytes(a, bwd) bytes (16-byte aligned) */
} nn_cuda_sdpa_args;
int nn__cuda_sdpa_fwd(const nn_cuda_sdpa_args *a, cudaStream_t s);
int nn__cuda_sdpa_bwd(const nn_cuda_sdpa_args *a, cudaStream_t s);
size_t nn__cuda_sdpa_ws_bytes(const nn_cuda_sdpa_args *a, int bwd);
const char *nn__cuda_sdpa_last_error(void);
#ifdef __cplusplus
}
#endif

namespace nnfa {

#define NNFA_LOG2E 1.4426950408889634f
#define NNFA_LN2 0.6931471805599453f

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
    float *dq_acc;             /* backward with split keys: f32 dQ accumulator [B*H*Lq][D] */
    int ntiles;    /* tiles along the resident dimension */
    int order;     /* 0: (bh, tile) tile fastest; 1: (b, tile, h) heads fastest; 2: (tile desc, bh) */
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
        int64_t bh = L % ((int64_t)p.B * p.H); *t = p.ntiles - 1 - (int)(L / ((int64_t)p.B * p.H));
        *h = (int)(bh % p.H); *b = (int)(bh / p.H);
    }
}

/* ------------------------------------------------------------------------------------------ Philox */
__device__ __forceinline__ void philox(uint64_t seed, uint64_t ctr, uint32_t o[4]) {
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
    o[0] = c0; o[1] = c1; o[2] = c2; o[3] = c3;
}
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
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                     "{%0,%1,%2,%3};\n"
                     : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    }
};
template <> struct TT<__nv_bfloat16> {
    static __device__ __forceinline__ float to_f(__nv_bfloat16 x) { return __bfloat162float(x); }
    static __device__ __forceinline__ uint32_t pack(float a, float b) {
        __nv_bfloat162 h = __floats2bfloat162_rn(a, b); return *reinterpret_cast<uint32_t *>(&h);
    }
    static __device__ __forceinline__ __nv_bfloat16 from_f(float x) { return __float2bfloat16_rn(x); }
    static __device__ __forceinline__ void mma(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                     "{%0,%1,%2,%3};\n"
                     : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
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
__device__ __forceinline__ void cp_async16(void *smem, const void *gmem, bool ok) {
    unsigned s = (unsigned)__cvta_generic_to_shared(smem);
    int n = ok ? 16 : 0;
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(n));
}
__device__ __forceinline__ void cp_async16n(void *smem, const void *gmem, int nbytes) {
    unsigned s = (unsigned)__cvta_generic_to_shared(smem);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(nbytes));
}
__device__ __forceinline__ void cp_commit() { asm volatile("cp.async.commit_group;\n" ::); }
__device__ __forceinline__ void cp_wait_all() { asm volatile("cp.async.wait_group 0;\n" ::); }
__device__ __forceinline__ void ldsm4(uint32_t r[4], const void *p) {
    unsigned s = (unsigned)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(s));
}
__device__ __forceinline__ void ldsm4t(uint32_t r[4], const void *p) {
    unsigned s = (unsigned)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(s));
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

/* acc[m][n] += A[16m.., :K] B[8n.., :K]^T; A and B row-major in shared memory (stride SA, SB elements) */
template <typename T, int MW, int NT, int K, int SA, int SB>
__device__ __forceinline__ void mma_abT(float (&acc)[MW][NT][4], const T *A, const T *Bm, int lane) {
#pragma unroll
    for (int kk = 0; kk < K / 16; kk++) {
        uint32_t a[MW][4];
#pragma unroll
        for (int m = 0; m < MW; m++) ldsm4(a[m], A + (m * 16 + (lane & 15)) * SA + kk * 16 + (lane >> 4) * 8);
#pragma unroll
        for (int n = 0; n < NT; n += 2) {
            uint32_t b[4];
            ldsm4(b, Bm + (n * 8 + (lane & 7) + (lane >> 4) * 8) * SB + kk * 16 + ((lane >> 3) & 1) * 8);
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
            ldsm4t(b, Bm + (kt * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * SB + n * 8 + (lane >> 4) * 8);
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
    const float ls = NNFA_LOG2E;
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

template <typename T, int MW, int NT, bool TRANS>
__device__ __forceinline__ void apply_mods(const Params &p, float (&s)[MW][NT][4], int R0, int C0, int lane,
                                           const uint8_t *mbh, const void *bbh, const unsigned char *bt, int bstr,
                                           int ib, int jb, bool plain) {
    int g = lane >> 2, q2 = (lane & 3) * 2;
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

template <typename T, int HD, int MW, int NW, int BN>
__global__ void __launch_bounds__(NW * 32) fwd_kernel(Params p) {
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
    const uint8_t *mbh = p.mask ? p.mask + b * p.ms[0] + h * p.ms[1] : nullptr;
    const void *bbh = bias_bh<T>(p, b, h);
    const int bstr = BN * (p.bias_f32 ? 4 : 2) + 16;
    const bool stage = p.bias_stage != 0;
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
        cp_wait_all();
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
        apply_mods<T, MW, NT, false>(p, s, i0 + wrow, j0, lane, mbh, bbh, stage ? Bt + buf * BM * bstr : nullptr,
                                     bstr, i0, j0, plain);
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
                float alpha = ex2(mrow[m][hh] - muse);
                float sum = 0.f;
#pragma unroll
                for (int n = 0; n < NT; n++) {
                    float e0 = ex2(s[m][n][2 * hh] - muse), e1 = ex2(s[m][n][2 * hh + 1] - muse);
                    s[m][n][2 * hh] = e0; s[m][n][2 * hh + 1] = e1;
                    sum += e0 + e1;
                }
                lrow[m][hh] = lrow[m][hh] * alpha + sum;
                mrow[m][hh] = mnew;
#pragma unroll
                for (int n = 0; n < ND; n++) { acc[m][n][2 * hh] *= alpha; acc[m][n][2 * hh + 1] *= alpha; }
            }
        if (p.dropout) {
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
    cp_wait_all(); /* no copy may be in flight at exit (nkt == 0 leaves the Q copy pending) */
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
            if ((lane & 3) == 0 && r < p.Lq) lse[r] = l > 0.f ? (mrow[m][hh] + log2f(l)) * NNFA_LN2 : -INFINITY;
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

/* split dQ accumulator (f32, already scaled) -> dq of type T through its strides */
template <typename T>
__global__ void dq_convert_kernel(Params p) {
    int64_t x = (int64_t)blockIdx.x * blockDim.x + threadIdx.x, n = (int64_t)p.B * p.H * p.Lq * p.D;
    if (x >= n) return;
    int d = (int)(x % p.D);
    int64_t row = x / p.D;
    int i = (int)(row % p.Lq);
    int64_t bh = row / p.Lq;
    int h = (int)(bh % p.H), b = (int)(bh / p.H);
    ((T *)p.dq)[b * p.sdq[0] + h * p.sdq[1] + (int64_t)i * p.sdq[2] + d] = TT<T>::from_f(p.dq_acc[x]);
}

/* ------------------------------------------------------------------------------------------ backward */
/* delta[bh, i] = sum_d dO[i,d] O[i,d]; one warp per row */
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
    const T *g = (const T *)p.dout + b * p.sdo[0] + h * p.sdo[1] + (int64_t)i * p.sdo[2];
    float s = 0.f;
    for (int d = lane; d < p.Dv; d += 32) s += TT<T>::to_f(o[d]) * TT<T>::to_f(g[d]);
#pragma unroll
    for (int w = 16; w > 0; w >>= 1) s += __shfl_xor_sync(0xffffffffu, s, w);
    if (lane == 0) p.delta[row] = s;
}

/* dK, dV: resident key tile (BM keys, warps own 16*MW keys), streamed query tiles of BN */
template <typename T, int HD, int MW, int NW, int BN>
__global__ void __launch_bounds__(NW * 32) bwd_dkdv_kernel(Params p) {
    constexpr int BM = 16 * MW * NW, ST = HD + 8, NT = BN / 8, ND = HD / 8, NTH = NW * 32;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    T *Ks = (T *)smem_raw, *Vs = Ks + BM * ST, *Qs = Vs + BM * ST, *Gs = Qs + 2 * BN * ST;
    float *Ls = (float *)(Gs + 2 * BN * ST), *Dl = Ls + 2 * BN;
    unsigned char *Bt = (unsigned char *)(Dl + 2 * BN);   /* 2 staged bias tiles [BN queries][BM keys] */
    int b, h, t;
    tile_of(p, &b, &h, &t);
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int j0 = t * BM, wrow = warp * 16 * MW;
    const T *Q = (const T *)p.q + b * p.sq[0] + h * p.sq[1];
    const T *K = (const T *)p.k + b * p.sk[0] + h * p.sk[1];
    const T *V = (const T *)p.v + b * p.sv[0] + h * p.sv[1];
    const T *G = (const T *)p.dout + b * p.sdo[0] + h * p.sdo[1];
    const float *lse = p.lse + ((int64_t)b * p.H + h) * p.Lq, *delta = p.delta + ((int64_t)b * p.H + h) * p.Lq;
    const uint8_t *mbh = p.mask ? p.mask + b * p.ms[0] + h * p.ms[1] : nullptr;
    const void *bbh = bias_bh<T>(p, b, h);
    const int bstr = BM * (p.bias_f32 ? 4 : 2) + 16;
    const bool stage = p.bias_stage != 0;
    int istart = p.causal ? (j0 / BN) * BN : 0;
    int nqt = p.Lq > istart ? (p.Lq - istart + BN - 1) / BN : 0;
    load_tile<T, HD, BM, NTH>(Ks, K, p.sk[2], j0, p.Lk, p.D);
    load_tile<T, HD, BM, NTH>(Vs, V, p.sv[2], j0, p.Lk, p.Dv);
    auto load_q = [&](int it, int buf) {
        int i = istart + it * BN;
        load_tile<T, HD, BN, NTH>(Qs + buf * BN * ST, Q, p.sq[2], i, p.Lq, p.D);
        load_tile<T, HD, BN, NTH>(Gs + buf * BN * ST, G, p.sdo[2], i, p.Lq, p.Dv);
        if (stage) load_bias<NTH>(Bt + buf * BN * bstr, bstr, p, (const unsigned char *)bbh, i, BN, j0, BM);
        for (int x = threadIdx.x; x < BN; x += NTH) {
            int ii = i + x;
            float l = ii < p.Lq ? lse[ii] : INFINITY;
            Ls[buf * BN + x] = (l == -INFINITY ? INFINITY : l) * NNFA_LOG2E;
            Dl[buf * BN + x] = ii < p.Lq ? delta[ii] : 0.f;
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
    for (int it = 0; it < nqt; it++) {
        int buf = it & 1, i0 = istart + it * BN;
        cp_wait_all();
        __syncthreads();
        if (it + 1 < nqt) load_q(it + 1, buf ^ 1);
        cp_commit();
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
        /* keys >= Lk only feed dK/dV rows that are never stored; queries >= Lq have lse = +inf, so P = 0 */
        bool plain = !mbh && !(p.causal && j0 + wrow + 16 * MW - 1 > i0);
        apply_mods<T, MW, NT, true>(p, s, j0 + wrow, i0, lane, mbh, bbh, stage ? Bt + buf * BN * bstr : nullptr,
                                    bstr, i0, j0, plain);
#pragma unroll
        for (int m = 0; m < MW; m++)
#pragma unroll
            for (int n = 0; n < NT; n++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    int c = 8 * n + q2 + (e & 1);
                    float pr = ex2(s[m][n][e] - Lb[c]);
                    float z = 1.f;
                    if (p.dropout) {
                        int i = i0 + c, j = j0 + wrow + 16 * m + g + 8 * (e >> 1);
                        z = keep_factor(p, bhpos + (uint64_t)i * p.Lk + j);
                    }
                    dp[m][n][e] = pr * (z * dp[m][n][e] - Db[c]); /* dS^T */
                    s[m][n][e] = pr * z;                          /* (P Z)^T */
                }
        uint32_t pa[MW][NT / 2][4];
        to_afrag<T, MW, NT>(pa, s);
        mma_pb<T, MW, NT / 2, ND, ST>(dv, pa, Gb, lane);   /* dV += (PZ)^T dO */
        to_afrag<T, MW, NT>(pa, dp);
        mma_pb<T, MW, NT / 2, ND, ST>(dk, pa, Qb, lane);   /* dK += dS^T Q */
    }
    cp_wait_all();
    if (p.dk) store_frag<T, MW, ND>((T *)p.dk + b * p.sdk[0] + h * p.sdk[1], p.sdk[2], dk, j0 + wrow, p.Lk, p.D,
                                    p.scale, p.scale, lane);
    if (p.dv) store_frag<T, MW, ND>((T *)p.dv + b * p.sdv[0] + h * p.sdv[1], p.sdv[2], dv, j0 + wrow, p.Lk, p.Dv,
                                    1.f, 1.f, lane);
}

/* dQ (and dbias): resident query tile, streamed key tiles */
template <typename T, int HD, int MW, int NW, int BN>
__global__ void __launch_bounds__(NW * 32) bwd_dq_kernel(Params p) {
    constexpr int BM = 16 * MW * NW, ST = HD + 8, NT = BN / 8, ND = HD / 8, NTH = NW * 32;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    T *Qs = (T *)smem_raw, *Gs = Qs + BM * ST, *Ks = Gs + BM * ST, *Vs = Ks + 2 * BN * ST;
    unsigned char *Bt = (unsigned char *)(Vs + 2 * BN * ST);   /* 2 staged bias tiles [BM][BN] */
    int b, h, t, sp;
    tile_of(p, &b, &h, &t, &sp);
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int i0 = t * BM, wrow = warp * 16 * MW;
    const T *Q = (const T *)p.q + b * p.sq[0] + h * p.sq[1];
    const T *K = (const T *)p.k + b * p.sk[0] + h * p.sk[1];
    const T *V = (const T *)p.v + b * p.sv[0] + h * p.sv[1];
    const T *G = (const T *)p.dout + b * p.sdo[0] + h * p.sdo[1];
    const uint8_t *mbh = p.mask ? p.mask + b * p.ms[0] + h * p.ms[1] : nullptr;
    const void *bbh = bias_bh<T>(p, b, h);
    const int bstr = BN * (p.bias_f32 ? 4 : 2) + 16;
    const bool stage = p.bias_stage != 0;
    float *dbh = p.dbias ? p.dbias + b * p.bs[0] + h * p.bs[1] : nullptr;
    int ks = sp * p.split_len, jend = min(p.Lk, ks + p.split_len);
    if (p.causal && i0 + BM < jend) jend = i0 + BM;
    int nkt = jend > ks ? (jend - ks + BN - 1) / BN : 0;
    load_tile<T, HD, BM, NTH>(Qs, Q, p.sq[2], i0, p.Lq, p.D);
    load_tile<T, HD, BM, NTH>(Gs, G, p.sdo[2], i0, p.Lq, p.Dv);
    if (nkt > 0) {
        load_tile<T, HD, BN, NTH>(Ks, K, p.sk[2], ks, p.Lk, p.D);
        load_tile<T, HD, BN, NTH>(Vs, V, p.sv[2], ks, p.Lk, p.Dv);
        if (stage) load_bias<NTH>(Bt, bstr, p, (const unsigned char *)bbh, i0, BM, ks, BN);
    }
    cp_commit();
    int g = lane >> 2, q2 = (lane & 3) * 2;
    float L2[MW][2], Dr[MW][2];
    const float *lse = p.lse + ((int64_t)b * p.H + h) * p.Lq, *delta = p.delta + ((int64_t)b * p.H + h) * p.Lq;
#pragma unroll
    for (int m = 0; m < MW; m++)
#pragma unroll
        for (int hh = 0; hh < 2; hh++) {
            int r = i0 + wrow + 16 * m + g + 8 * hh;
            float l = r < p.Lq ? lse[r] : INFINITY;
            L2[m][hh] = (l == -INFINITY ? INFINITY : l) * NNFA_LOG2E;
            Dr[m][hh] = r < p.Lq ? delta[r] : 0.f;
        }
    float dq[MW][ND][4];
#pragma unroll
    for (int m = 0; m < MW; m++)
#pragma unroll
        for (int n = 0; n < ND; n++)
#pragma unroll
            for (int e = 0; e < 4; e++) dq[m][n][e] = 0.f;
    uint64_t bhpos = p.offset + (uint64_t)((int64_t)b * p.H + h) * (uint64_t)p.Lq * (uint64_t)p.Lk;
    for (int kt = 0; kt < nkt; kt++) {
        int buf = kt & 1, j0 = ks + kt * BN;
        cp_wait_all();
        __syncthreads();
        if (kt + 1 < nkt) {
            load_tile<T, HD, BN, NTH>(Ks + (buf ^ 1) * BN * ST, K, p.sk[2], j0 + BN, p.Lk, p.D);
            load_tile<T, HD, BN, NTH>(Vs + (buf ^ 1) * BN * ST, V, p.sv[2], j0 + BN, p.Lk, p.Dv);
            if (stage) load_bias<NTH>(Bt + (buf ^ 1) * BM * bstr, bstr, p, (const unsigned char *)bbh, i0, BM, j0 + BN, BN);
        }
        cp_commit();
        const T *Kb = Ks + buf * BN * ST, *Vb = Vs + buf * BN * ST;
        float s[MW][NT][4], dp[MW][NT][4];
#pragma unroll
        for (int m = 0; m < MW; m++)
#pragma unroll
            for (int n = 0; n < NT; n++)
#pragma unroll
                for (int e = 0; e < 4; e++) s[m][n][e] = dp[m][n][e] = 0.f;
        mma_abT<T, MW, NT, HD, ST, ST>(s, Qs + wrow * ST, Kb, lane);
        mma_abT<T, MW, NT, HD, ST, ST>(dp, Gs + wrow * ST, Vb, lane);
        bool plain = !mbh && j0 + BN <= p.Lk && !(p.causal && j0 + BN - 1 > i0 + wrow);
        apply_mods<T, MW, NT, false>(p, s, i0 + wrow, j0, lane, mbh, bbh, stage ? Bt + buf * BM * bstr : nullptr,
                                     bstr, i0, j0, plain);
#pragma unroll
        for (int m = 0; m < MW; m++)
#pragma unroll
            for (int n = 0; n < NT; n++)
#pragma unroll
                for (int hh = 0; hh < 2; hh++) {
                    int i = i0 + wrow + 16 * m + g + 8 * hh, j = j0 + 8 * n + q2;
                    float z0 = 1.f, z1 = 1.f;
                    if (p.dropout) keep_factor2(p, bhpos + (uint64_t)i * p.Lk + j, &z0, &z1);
                    float p0 = ex2(s[m][n][2 * hh] - L2[m][hh]), p1 = ex2(s[m][n][2 * hh + 1] - L2[m][hh]);
                    float d0 = p0 * (z0 * dp[m][n][2 * hh] - Dr[m][hh]);
                    float d1 = p1 * (z1 * dp[m][n][2 * hh + 1] - Dr[m][hh]);
                    dp[m][n][2 * hh] = d0; dp[m][n][2 * hh + 1] = d1;
                    if (dbh && i < p.Lq) {
                        int64_t at = (int64_t)i * p.bs[2] + (int64_t)j * p.bs[3];
                        if (p.dbias_atomic) {
                            if (j < p.Lk) atomicAdd(dbh + at, d0);
                            if (j + 1 < p.Lk) atomicAdd(dbh + at + p.bs[3], d1);
                        } else {
                            if (j < p.Lk) dbh[at] = d0;
                            if (j + 1 < p.Lk) dbh[at + p.bs[3]] = d1;
                        }
                    }
                }
        uint32_t pa[MW][NT / 2][4];
        to_afrag<T, MW, NT>(pa, dp);
        mma_pb<T, MW, NT / 2, ND, ST>(dq, pa, Kb, lane);   /* dQ += dS K */
    }
    cp_wait_all();
    if (p.dq && p.nsplit > 1) {   /* this block saw one key range: add its part into the f32 accumulator */
        float *acc = p.dq_acc + ((int64_t)b * p.H + h) * p.Lq * p.D;
#pragma unroll
        for (int m = 0; m < MW; m++)
#pragma unroll
            for (int hh = 0; hh < 2; hh++) {
                int r = i0 + wrow + 16 * m + g + 8 * hh;
                if (r >= p.Lq) continue;
#pragma unroll
                for (int n = 0; n < ND; n++) {
                    int c = n * 8 + q2;
                    if (c < p.D) {
                        atomicAdd(acc + (int64_t)r * p.D + c, dq[m][n][2 * hh] * p.scale);
                        atomicAdd(acc + (int64_t)r * p.D + c + 1, dq[m][n][2 * hh + 1] * p.scale);
                    }
                }
            }
    } else if (p.dq) {
        store_frag<T, MW, ND>((T *)p.dq + b * p.sdq[0] + h * p.sdq[1], p.sdq[2], dq, i0 + wrow, p.Lq, p.D, p.scale,
                              p.scale, lane);
    }
}

/* ------------------------------------------------------------------------------------------ f32 path */
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

/* ------------------------------------------------------------------------------------------ launch */
static char g_err[512];
static int fail(const char *msg) { snprintf(g_err, sizeof g_err, "%s", msg); return -1; }

template <typename T, int HD> struct Cfg;
/* forward: MW row tiles per warp, NW warps, BN keys per tile; bwd: (dkdv) and (dq) configs */
template <typename T> struct Cfg<T, 16>  { enum { FMW = 2, FNW = 4, FBN = 64, KMW = 1, KNW = 8, KBN = 64, QMW = 2, QNW = 4, QBN = 32 }; };
template <typename T> struct Cfg<T, 32>  { enum { FMW = 2, FNW = 4, FBN = 64, KMW = 1, KNW = 8, KBN = 64, QMW = 2, QNW = 4, QBN = 32 }; };
template <typename T> struct Cfg<T, 64>  { enum { FMW = 2, FNW = 4, FBN = 64, KMW = 1, KNW = 8, KBN = 64, QMW = 2, QNW = 4, QBN = 32 }; };
template <typename T> struct Cfg<T, 96>  { enum { FMW = 2, FNW = 4, FBN = 32, KMW = 1, KNW = 8, KBN = 32, QMW = 1, QNW = 8, QBN = 64 }; };
template <typename T> struct Cfg<T, 128> { enum { FMW = 2, FNW = 4, FBN = 32, KMW = 1, KNW = 8, KBN = 32, QMW = 1, QNW = 8, QBN = 64 }; };
/* alternative tiles for bf16, D <= 64, chosen with NNFA_ALT=1 in the environment (benchmarked side by side):
   forward with 32-key tiles (no spills), dK/dV with 32 keys per warp (half the shared-memory fragment traffic
   per MMA), dQ with 16 rows per warp and 64-key tiles */
template <int HD> struct CfgAlt { enum { FMW = 2, FNW = 4, FBN = 32, KMW = 2, KNW = 4, KBN = 16, QMW = 1, QNW = 8, QBN = 64 }; };
static int g_alt = -1;
static bool use_alt(int dtype, int hd) {
    if (g_alt < 0) { const char *e = getenv("NNFA_ALT"); g_alt = e && *e == '1'; }
    return g_alt && dtype == 2 && hd <= 64;
}

template <typename K>
static int set_smem(K kern, size_t bytes) {
    if (bytes > 48 * 1024) {
        if (cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes) != cudaSuccess)
            return fail("nn__cuda_sdpa: cudaFuncSetAttribute(max dynamic shared memory) failed");
    }
    return 0;
}

static int grid_of(Params &p, int rows_per_tile, int len, bool causal_heavy_first, unsigned *grid) {
    p.ntiles = (len + rows_per_tile - 1) / rows_per_tile;
    int64_t n = (int64_t)p.B * p.H * p.ntiles * p.nsplit;
    if (n > 2147483647) return fail("nn__cuda_sdpa: too many tiles for one launch");
    bool heads_share_bias = p.bias && p.bs[1] == 0 && p.H > 1;
    p.order = (p.causal && causal_heavy_first) ? 2 : heads_share_bias ? 1 : 0;
    *grid = (unsigned)n;
    return 0;
}

#define NNFA_NOSPLIT 0x3fffffff
static int g_sms = 0;
static int sm_count(void) {
    if (!g_sms) {
        int d = 0;
        if (cudaGetDevice(&d) != cudaSuccess || cudaDeviceGetAttribute(&g_sms, cudaDevAttrMultiProcessorCount, d) != cudaSuccess || g_sms <= 0) {
            cudaGetLastError();
            g_sms = 132;
        }
    }
    return g_sms;
}
/* split-KV when the (b, h, query tile) blocks cannot fill the GPU (4 blocks per SM): key ranges of at least 4
   tiles, as many as bring the grid to that target (the 900-query AQR cases, 10 queries over 2,048 keys) */
static void plan_split(Params &p, int BM, int BN) {
    p.nsplit = 1; p.split_len = NNFA_NOSPLIT;
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
template <typename C> static void tiles_of(int *fbm, int *fbn, int *qbm, int *qbn) {
    *fbm = 16 * C::FMW * C::FNW; *fbn = C::FBN; *qbm = 16 * C::QMW * C::QNW; *qbn = C::QBN;
}
static void tiles_rt(int dtype, int hd, int *fbm, int *fbn, int *qbm, int *qbn) {
    if (use_alt(dtype, hd)) tiles_of<CfgAlt<64> >(fbm, fbn, qbm, qbn);
    else if (hd <= 16) tiles_of<Cfg<__half, 16> >(fbm, fbn, qbm, qbn);
    else if (hd <= 32) tiles_of<Cfg<__half, 32> >(fbm, fbn, qbm, qbn);
    else if (hd <= 64) tiles_of<Cfg<__half, 64> >(fbm, fbn, qbm, qbn);
    else if (hd <= 96) tiles_of<Cfg<__half, 96> >(fbm, fbn, qbm, qbn);
    else tiles_of<Cfg<__half, 128> >(fbm, fbn, qbm, qbn);
}
static int64_t align16(int64_t n) { return (n + 15) & ~(int64_t)15; }

template <typename T, int HD, typename C = Cfg<T, HD> >
static int run_fwd(Params p, cudaStream_t s) {
    constexpr int BM = 16 * C::FMW * C::FNW;
    if (p.part) plan_split(p, BM, C::FBN);
    int es = p.bias_f32 ? 4 : 2;
    size_t smem = (size_t)(BM + 4 * C::FBN) * (HD + 8) * sizeof(T) +
                  (p.bias_stage ? (size_t)2 * BM * (C::FBN * es + 16) : 0);
    auto kern = fwd_kernel<T, HD, C::FMW, C::FNW, C::FBN>;
    if (set_smem(kern, smem)) return -1;
    unsigned grid;
    if (grid_of(p, BM, p.Lq, true, &grid)) return -1;
    if (grid) kern<<<grid, C::FNW * 32, smem, s>>>(p);
    int64_t rows = (int64_t)p.B * p.H * p.Lq;
    if (p.nsplit > 1 && rows > 0) combine_kernel<T><<<(unsigned)((rows + 7) / 8), 256, 0, s>>>(p);
    return 0;
}

template <typename T, int HD, typename C = Cfg<T, HD> >
static int run_bwd(Params p, cudaStream_t s) {
    unsigned grid;
    int es = p.bias_f32 ? 4 : 2;
    int64_t rows = (int64_t)p.B * p.H * p.Lq;
    if (rows > 0) delta_kernel<T><<<(unsigned)((rows + 7) / 8), 256, 0, s>>>(p);
    if (p.dk || p.dv) {
        Params pk = p;
        pk.nsplit = 1; pk.split_len = NNFA_NOSPLIT;
        constexpr int BM = 16 * C::KMW * C::KNW;
        size_t smem = (size_t)(2 * BM + 4 * C::KBN) * (HD + 8) * sizeof(T) + 4 * C::KBN * sizeof(float) +
                      (p.bias_stage ? (size_t)2 * C::KBN * (BM * es + 16) : 0);
        auto kern = bwd_dkdv_kernel<T, HD, C::KMW, C::KNW, C::KBN>;
        if (set_smem(kern, smem)) return -1;
        if (grid_of(pk, BM, p.Lk, false, &grid)) return -1;
        if (grid) kern<<<grid, C::KNW * 32, smem, s>>>(pk);
    }
    if (p.dq || p.dbias) {
        Params pq = p;
        constexpr int BM = 16 * C::QMW * C::QNW;
        plan_split(pq, BM, C::QBN);
        size_t smem = (size_t)(2 * BM + 4 * C::QBN) * (HD + 8) * sizeof(T) +
                      (p.bias_stage ? (size_t)2 * BM * (C::QBN * es + 16) : 0);
        auto kern = bwd_dq_kernel<T, HD, C::QMW, C::QNW, C::QBN>;
        if (set_smem(kern, smem)) return -1;
        if (grid_of(pq, BM, p.Lq, true, &grid)) return -1;
        bool acc = pq.nsplit > 1 && pq.dq;
        if (acc && cudaMemsetAsync(pq.dq_acc, 0, (size_t)rows * p.D * sizeof(float), s) != cudaSuccess)
            return fail("nn__cuda_sdpa_bwd: cudaMemsetAsync(dq accumulator) failed");
        if (grid) kern<<<grid, C::QNW * 32, smem, s>>>(pq);
        if (acc && rows > 0) dq_convert_kernel<T><<<(unsigned)((rows * p.D + 255) / 256), 256, 0, s>>>(pq);
    }
    return 0;
}

template <typename T>
static int dispatch(Params &p, bool fwd, cudaStream_t s) {
    int hd = p.D > p.Dv ? p.D : p.Dv;
    if constexpr (std::is_same<T, __nv_bfloat16>::value) {
        if (use_alt(2, hd)) {
            if (hd <= 16) return fwd ? run_fwd<T, 16, CfgAlt<16> >(p, s) : run_bwd<T, 16, CfgAlt<16> >(p, s);
            if (hd <= 32) return fwd ? run_fwd<T, 32, CfgAlt<32> >(p, s) : run_bwd<T, 32, CfgAlt<32> >(p, s);
            return fwd ? run_fwd<T, 64, CfgAlt<64> >(p, s) : run_bwd<T, 64, CfgAlt<64> >(p, s);
        }
    }
    if (hd <= 16) return fwd ? run_fwd<T, 16>(p, s) : run_bwd<T, 16>(p, s);
    if (hd <= 32) return fwd ? run_fwd<T, 32>(p, s) : run_bwd<T, 32>(p, s);
    if (hd <= 64) return fwd ? run_fwd<T, 64>(p, s) : run_bwd<T, 64>(p, s);
    if (hd <= 96) return fwd ? run_fwd<T, 96>(p, s) : run_bwd<T, 96>(p, s);
    return fwd ? run_fwd<T, 128>(p, s) : run_bwd<T, 128>(p, s);
}

static int setup(const nn_cuda_sdpa_args *a, Params *p, bool bwd) {
    memset(p, 0, sizeof *p);
    if (!a) return fail("nn__cuda_sdpa: args is NULL");
    if (a->dtype < 0 || a->dtype > 2) return fail("nn__cuda_sdpa: dtype must be 0 (f32), 1 (f16) or 2 (bf16)");
    if (a->B < 0 || a->H < 0 || a->Lq < 0 || a->Lk < 0 || a->D < 1 || a->Dv < 1)
        return fail("nn__cuda_sdpa: negative size, or D or Dv < 1");
    if (!a->q || !a->k || !a->v || !a->o || !a->lse) return fail("nn__cuda_sdpa: q, k, v, o and lse are required");
    if (bwd && (!a->dout || !a->ws)) return fail("nn__cuda_sdpa_bwd: dout and ws are required");
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
    p->scale = a->scale; p->scale_log2 = a->scale * NNFA_LOG2E;
    p->p = a->dropout_p; p->dropout = a->dropout_p > 0.f;
    p->keep_scale = a->dropout_p < 1.f ? 1.f / (1.f - a->dropout_p) : 0.f;
    p->seed = a->seed; p->offset = a->offset;
    p->nsplit = 1; p->split_len = NNFA_NOSPLIT;
    if (a->dtype != 0 && a->bias) {
        int64_t es = p->bias_f32 ? 4 : 2;
        p->bias_stage = (p->bs[3] == 1 || p->Lk == 1) && ((uintptr_t)a->bias & 15) == 0 &&
                        (p->bs[0] * es) % 16 == 0 && (p->bs[1] * es) % 16 == 0 && (p->bs[2] * es) % 16 == 0;
    }
    return 0;
}

/* workspace (f32 elements): forward split-KV partials; backward delta + split dQ accumulator */
static int64_t ws_floats(const Params &p0, int dtype, bool bwd) {
    int64_t bhlq = (int64_t)p0.B * p0.H * p0.Lq;
    if (dtype == 0) return bwd ? align16(bhlq) : 0;
    int fbm, fbn, qbm, qbn;
    tiles_rt(dtype, p0.D > p0.Dv ? p0.D : p0.Dv, &fbm, &fbn, &qbm, &qbn);
    Params p = p0;
    if (!bwd) {
        plan_split(p, fbm, fbn);
        return p.nsplit > 1 ? (int64_t)p.nsplit * bhlq * (p.Dv + 1) : 0;
    }
    plan_split(p, qbm, qbn);
    return align16(bhlq) + (p.nsplit > 1 ? bhlq * p.D : 0);
}

} /* namespace nnfa */

extern "C" {

const char *nn__cuda_sdpa_last_error(void) { return nnfa::g_err; }

size_t nn__cuda_sdpa_ws_bytes(const nn_cuda_sdpa_args *a, int bwd) {
    nnfa::Params p;
    if (nnfa::setup(a, &p, false)) return 0;
    return (size_t)nnfa::ws_floats(p, a->dtype, bwd != 0) * sizeof(float) + 64;
}

int nn__cuda_sdpa_fwd(const nn_cuda_sdpa_args *a, cudaStream_t s) {
    nnfa::Params p;
    if (nnfa::setup(a, &p, false)) return -1;
    if ((int64_t)p.B * p.H * p.Lq == 0) return 0;
    p.part = a->ws;   /* NULL: no split-KV */
    if (a->dtype == 0) {
        unsigned grid;
        if (nnfa::grid_of(p, F32_TQ, p.Lq, true, &grid)) return -1;
        if (grid) nnfa::f32_fwd_kernel<<<grid, F32_TQ, 0, s>>>(p);
        return 0;
    }
    return a->dtype == 1 ? nnfa::dispatch<__half>(p, true, s) : nnfa::dispatch<__nv_bfloat16>(p, true, s);
}

int nn__cuda_sdpa_bwd(const nn_cuda_sdpa_args *a, cudaStream_t s) {
    nnfa::Params p;
    if (nnfa::setup(a, &p, true)) return -1;
    p.delta = a->ws;
    p.dq_acc = a->ws + nnfa::align16((int64_t)p.B * p.H * p.Lq);
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
            if (cudaMemsetAsync(a->dbias, 0, (size_t)span * sizeof(float), s) != cudaSuccess)
                return nnfa::fail("nn__cuda_sdpa_bwd: cudaMemsetAsync(dbias) failed");
        p.dbias = zero_grad ? nullptr : a->dbias;
        p.dbias_atomic = shared;
    }
    if ((int64_t)p.B * p.H == 0) return 0;
    if (a->dtype == 0) {
        unsigned grid;
        int64_t rows = (int64_t)p.B * p.H * p.Lq;
        if (rows > 0) nnfa::delta_kernel<float><<<(unsigned)((rows + 7) / 8), 256, 0, s>>>(p);
        if (p.dk || p.dv) {
            if (nnfa::grid_of(p, F32_TQ, p.Lk, false, &grid)) return -1;
            if (grid) nnfa::f32_dkdv_kernel<<<grid, F32_TQ, 0, s>>>(p);
        }
        if (p.dq || p.dbias) {
            if (nnfa::grid_of(p, F32_TQ, p.Lq, true, &grid)) return -1;
            if (grid) nnfa::f32_dq_kernel<<<grid, F32_TQ, 0, s>>>(p);
        }
        return 0;
    }
    return a->dtype == 1 ? nnfa::dispatch<__half>(p, false, s) : nnfa::dispatch<__nv_bfloat16>(p, false, s);
}

} /* extern "C" */
