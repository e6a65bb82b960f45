/* ---------------------------------------------------------------------------------------------------------
   nn__sgemm: CPU single-precision GEMM (fragment for nn.h's implementation section).

     C[M,N] = alpha * op(A)[M,K] @ op(B)[K,N] + beta * C          (row-major, leading dimensions lda/ldb/ldc)

   Algorithm (the Goto/BLIS layering):
     for jc in N step NC:                 B panel  KC x NC  packed once per (jc,pc), lives in L2/L3
       for pc in K step KC:
         pack op(B)[pc:pc+kc, jc:jc+nc] into NR-wide column strips (zero padded)
         for ic in M step MC:             A block  MC x KC  packed, lives in L2
           pack op(A)[ic:ic+mc, pc:pc+kc] into MR-tall row strips (zero padded)
           for jr in nc step NR:          B strip  KC x NR  lives in L1 while ...
             for ir in mc step MR:        ... every A strip of the block streams past it
               micro-kernel: MR x NR accumulators in registers, kc rank-1 updates
   Packing makes the micro-kernel see unit-stride, aligned, zero-padded operands whatever ta/tb/lda/ldb are,
   so one kernel serves all four transpose combinations and every edge size.

   The micro-kernel is a fixed MR x NR accumulator block, no intrinsics: on x86 AVX/AVX-512 written with GNU
   vector types (see the note above nn__gemm_micro for why), elsewhere a plain float acc[MR][NR] loop updated
   with fmaf(), which GCC/clang keep in registers. Checked in the assembly with GCC 12 and clang 14 for
   -march=znver3+avx512 (native here), sapphirerapids, x86-64-v4, haswell: 24 zmm (12 ymm on AVX2)
   accumulators, 2 B loads + MR broadcasts per k step, no spills in the k loop. fmaf() is used only where the
   target has a fast hardware FMA (FP_FAST_FMAF); -std=c99 turns GCC's -ffp-contract off, so a*b+c would
   otherwise never become an FMA.

   Threads: outside a parallel region the M x N output is split into one rectangle per OpenMP thread and
   each thread runs the serial algorithm on its rectangle with its own packing buffers (no barriers, no
   shared packed panels: B is re-packed once per thread, which costs K*N copies against 2*M*N*K/threads
   flops). Inside a parallel region (omp_in_parallel()) it runs serially on the calling thread, so attention
   or conv code may call it from many threads at once.

   Packing buffers come from a small pool of cached heap buffers (NN_GEMM_POOL_SLOTS slots, grown on demand,
   never shrunk; nn__sgemm_free_cache() releases them). A slot is claimed and returned under an OpenMP
   critical section, so concurrent calls from OpenMP threads never share a buffer. Without OpenMP the pool
   is not locked: do not call nn__sgemm from several non-OpenMP threads at once (e.g. raw pthreads) in a
   build without -fopenmp. If the pool is exhausted a call mallocs/frees its own buffer; if malloc fails it
   falls back to an unpacked (slow, correct) loop.
   --------------------------------------------------------------------------------------------------------- */
#include <stdint.h>
#include <stdlib.h>
#include <stddef.h>
#include <string.h>
#include <math.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#ifndef NN_OMP
#ifdef _OPENMP
#define NN_OMP(x) _Pragma(x)
#else
#define NN_OMP(x)
#endif
#endif

#ifndef NN_MALLOC
#define NN_MALLOC(sz) malloc(sz)
#endif
#ifndef NN_FREE
#define NN_FREE(p) free(p)
#endif

#ifndef NN_RESTRICT
#if defined(__cplusplus)
#define NN_RESTRICT __restrict
#elif defined(__STDC_VERSION__) && __STDC_VERSION__ >= 199901L
#define NN_RESTRICT restrict
#else
#define NN_RESTRICT
#endif
#endif

/* Fused multiply-add only where it is a single fast instruction; a libm fmaf() on a CPU without FMA is a
   slow exact emulation. */
#ifdef FP_FAST_FMAF
#define NN__GEMM_FMA(a, b, c) fmaf((a), (b), (c))
#else
#define NN__GEMM_FMA(a, b, c) ((a) * (b) + (c))
#endif

/* Register block MR x NR: MR*NR/lanes accumulator registers + NR/lanes registers of B + 1 broadcast of A
   must fit the vector register file, and the FMA count per k step (MR*NR/lanes) must cover FMA latency x
   FMA pipes (4 x 2 = 8 on Zen 4/5 and Skylake-X), while loads per k step (NR/lanes + MR) stay below 2 per
   FMA pair.
     AVX-512 (32 zmm, 16 lanes): 12 x 32 -> 24 accumulators + 2 B + 1 A = 27 registers, 24 FMAs per 14 loads.
     AVX/AVX2 (16 ymm, 8 lanes):  6 x 16 -> 12 accumulators + 2 B + 1 A = 15 registers.
     NEON/SVE-128 (32 q regs, 4): 8 x 12 -> 24 accumulators + 3 B + 1 A.
     otherwise (16 xmm, SSE2):    4 x 8  ->  8 accumulators + 2 B + 1 A. */
#ifndef NN_GEMM_MR
#if defined(__AVX512F__)
#define NN_GEMM_MR 12
#define NN_GEMM_NR 32
#elif defined(__AVX__)
#define NN_GEMM_MR 6
#define NN_GEMM_NR 16
#elif defined(__aarch64__) || defined(__ARM_NEON)
#define NN_GEMM_MR 8
#define NN_GEMM_NR 12
#else
#define NN_GEMM_MR 4
#define NN_GEMM_NR 8
#endif
#endif

/* Cache blocking (floats).
   KC: the B strip KC x NR must stay in L1 while all A strips of a block stream past it: 256 x 32 x 4 B =
       32 KiB of Zen 5's 48 KiB L1d (Skylake-X 32 KiB: still mostly resident; A strips stream from L2 anyway).
       256 also makes each micro-kernel call long enough (256 k steps) to hide its C load/store.
   MC: the packed A block MC x KC must stay in L2: 384 x 256 x 4 B = 384 KiB, well inside a 1-2 MiB L2
       alongside the B strips passing through.
   NC: the packed B panel KC x NC is reused by every A block; 4096 x 256 x 4 B = 4 MiB per thread, which
       sits in L3 (32 MiB shared on this machine). Smaller N use a smaller buffer.
   MC must be a multiple of MR and NC of NR. */
#ifndef NN_GEMM_KC
#define NN_GEMM_KC 256
#endif
#ifndef NN_GEMM_MC
#define NN_GEMM_MC (32 * NN_GEMM_MR)
#endif
#ifndef NN_GEMM_NC
#define NN_GEMM_NC (128 * NN_GEMM_NR)
#endif
#ifndef NN_GEMM_POOL_SLOTS
#define NN_GEMM_POOL_SLOTS 64
#endif
/* Below this many multiply-adds (M*N*K) a call stays on one thread: an OpenMP fork/join costs a few
   microseconds, about what 2^18 FMAs take on one core. */
#ifndef NN_GEMM_PARALLEL_MIN
#define NN_GEMM_PARALLEL_MIN ((int64_t)1 << 18)
#endif

/* ---- packing buffer pool -------------------------------------------------------------------------------- */
typedef struct { void *raw; float *buf; size_t cap; int busy; } nn__gemm_slot;
static nn__gemm_slot nn__gemm_pool[NN_GEMM_POOL_SLOTS];

/* Returns a 64-byte aligned buffer of at least nfloats floats, or NULL. *slot is the pool slot, -1 when the
   buffer was malloc'd for this call only (pool full), and *raw the pointer to free in that case. */
static float *nn__gemm_buf_get(size_t nfloats, int *slot, void **raw) {
    int s, got = -1;
    NN_OMP("omp critical(nn__gemm_pool)")
    {
        for (s = 0; s < NN_GEMM_POOL_SLOTS; s++)
            if (!nn__gemm_pool[s].busy) { nn__gemm_pool[s].busy = 1; got = s; break; }
    }
    *slot = got;
    if (got >= 0 && nn__gemm_pool[got].cap >= nfloats) { *raw = NULL; return nn__gemm_pool[got].buf; }
    {
        void *p = NN_MALLOC(nfloats * sizeof(float) + 64);
        float *aligned = p ? (float *)(((uintptr_t)p + 63) & ~(uintptr_t)63) : NULL;
        if (got >= 0) {
            if (p) {   /* grow the slot: the old buffer was too small */
                NN_FREE(nn__gemm_pool[got].raw);
                nn__gemm_pool[got].raw = p; nn__gemm_pool[got].buf = aligned; nn__gemm_pool[got].cap = nfloats;
                *raw = NULL;
                return aligned;
            }
            NN_OMP("omp critical(nn__gemm_pool)")
            { nn__gemm_pool[got].busy = 0; }
            *slot = -1;
        }
        *raw = p;
        return aligned;
    }
}

static void nn__gemm_buf_put(int slot, void *raw) {
    if (slot >= 0) {
        NN_OMP("omp critical(nn__gemm_pool)")
        { nn__gemm_pool[slot].busy = 0; }
    } else if (raw) {
        NN_FREE(raw);
    }
}

/* Releases the cached packing buffers (for leak checkers and shutdown); must not race with nn__sgemm. */
static void nn__sgemm_free_cache(void) {
    int s;
    for (s = 0; s < NN_GEMM_POOL_SLOTS; s++) {
        if (nn__gemm_pool[s].raw) NN_FREE(nn__gemm_pool[s].raw);
        nn__gemm_pool[s].raw = NULL; nn__gemm_pool[s].buf = NULL; nn__gemm_pool[s].cap = 0;
        nn__gemm_pool[s].busy = 0;
    }
}

/* ---- packing -------------------------------------------------------------------------------------------- */
/* op(A)[0:mc, 0:kc] -> MR-row strips; strip s holds dst[s*MR*kc + p*MR + i] = op(A)(s*MR + i, p),
   rows past mc are zero. A points at op(A)(0,0). */
static void nn__gemm_pack_a(int ta, int64_t mc, int64_t kc, const float *A, int64_t lda, float *NN_RESTRICT dst) {
    int64_t i0, i, p;
    for (i0 = 0; i0 < mc; i0 += NN_GEMM_MR) {
        int64_t mr = mc - i0 < NN_GEMM_MR ? mc - i0 : NN_GEMM_MR;
        if (ta) {   /* op(A)(i,p) = A[p*lda + i]: rows of the strip are contiguous in memory */
            const float *src = A + i0;
            if (mr == NN_GEMM_MR) {
                for (p = 0; p < kc; p++) {
                    for (i = 0; i < NN_GEMM_MR; i++) dst[p * NN_GEMM_MR + i] = src[p * lda + i];
                }
            } else {
                for (p = 0; p < kc; p++) {
                    for (i = 0; i < mr; i++) dst[p * NN_GEMM_MR + i] = src[p * lda + i];
                    for (; i < NN_GEMM_MR; i++) dst[p * NN_GEMM_MR + i] = 0.0f;
                }
            }
        } else {    /* op(A)(i,p) = A[i*lda + p]: read each row contiguously, scatter with stride MR */
            const float *src = A + i0 * lda;
            if (mr == NN_GEMM_MR) {   /* sequential writes, MR read streams: ~1.6x faster than row by row */
                for (p = 0; p < kc; p++)
                    for (i = 0; i < NN_GEMM_MR; i++) dst[p * NN_GEMM_MR + i] = src[i * lda + p];
                dst += NN_GEMM_MR * kc;
                continue;
            }
            for (i = 0; i < mr; i++) {
                const float *row = src + i * lda;
                for (p = 0; p < kc; p++) dst[p * NN_GEMM_MR + i] = row[p];
            }
            for (; i < NN_GEMM_MR; i++)
                for (p = 0; p < kc; p++) dst[p * NN_GEMM_MR + i] = 0.0f;
        }
        dst += NN_GEMM_MR * kc;
    }
}

/* op(B)[0:kc, 0:nc] -> NR-column strips; strip s holds dst[s*NR*kc + p*NR + j] = op(B)(p, s*NR + j),
   columns past nc are zero. B points at op(B)(0,0). */
static void nn__gemm_pack_b(int tb, int64_t kc, int64_t nc, const float *B, int64_t ldb, float *NN_RESTRICT dst) {
    int64_t j0, j, p;
    for (j0 = 0; j0 < nc; j0 += NN_GEMM_NR) {
        int64_t nr = nc - j0 < NN_GEMM_NR ? nc - j0 : NN_GEMM_NR;
        if (!tb) {  /* op(B)(p,j) = B[p*ldb + j]: each k row of the strip is a contiguous copy */
            const float *src = B + j0;
            if (nr == NN_GEMM_NR) {
                for (p = 0; p < kc; p++) {
                    for (j = 0; j < NN_GEMM_NR; j++) dst[p * NN_GEMM_NR + j] = src[p * ldb + j];
                }
            } else {
                for (p = 0; p < kc; p++) {
                    for (j = 0; j < nr; j++) dst[p * NN_GEMM_NR + j] = src[p * ldb + j];
                    for (; j < NN_GEMM_NR; j++) dst[p * NN_GEMM_NR + j] = 0.0f;
                }
            }
        } else {    /* op(B)(p,j) = B[j*ldb + p]: read each column of op(B) contiguously */
            const float *src = B + j0 * ldb;
            for (j = 0; j < nr; j++) {
                const float *col = src + j * ldb;
                for (p = 0; p < kc; p++) dst[p * NN_GEMM_NR + j] = col[p];
            }
            for (; j < NN_GEMM_NR; j++)
                for (p = 0; p < kc; p++) dst[p * NN_GEMM_NR + j] = 0.0f;
        }
        dst += NN_GEMM_NR * kc;
    }
}

/* ---- micro-kernel --------------------------------------------------------------------------------------- */
/* On x86 with AVX/AVX-512 the kernel is written with GNU vector types (vector_size, no intrinsics), because
   the plain loop is at the mercy of the compiler's tuning: with -march=native on Intel AVX-512 parts
   (Skylake-X .. Sapphire Rapids) GCC and clang prefer 256-bit vectors, so the 12 x 32 block needs 48 ymm
   accumulators and spills (measured 26 instead of ~150 GFLOP/s on one Sapphire Rapids core), and GCC 12
   at -march=haswell vectorises the 6 x 16 block with 128-bit xmm and spills too. Explicit VL-wide vector
   types are kept whole; min_vector_width stops clang splitting 512-bit ones under the 256-bit preference,
   and optimize("fp-contract=fast") lets GCC fuse acc + b*a into an FMA under -std=c99 (clang fuses within
   an expression by default). Other targets (and NN_GEMM_PLAIN_KERNEL) use the plain loop. */
#if defined(__GNUC__) && NN_GEMM_NR == 32 && defined(__AVX512F__) && !defined(NN_GEMM_PLAIN_KERNEL)
#define NN__GEMM_VL 16
#elif defined(__GNUC__) && NN_GEMM_NR == 16 && defined(__AVX__) && !defined(__AVX512F__) && !defined(NN_GEMM_PLAIN_KERNEL)
#define NN__GEMM_VL 8
#endif
#ifdef NN__GEMM_VL
typedef float nn__gemm_vec __attribute__((vector_size(NN__GEMM_VL * 4)));
#if defined(__clang__)
#define NN__GEMM_KERNEL_ATTR __attribute__((min_vector_width(NN__GEMM_VL * 32)))
#else
#define NN__GEMM_KERNEL_ATTR __attribute__((optimize("fp-contract=fast")))
#endif
#else
#define NN__GEMM_KERNEL_ATTR
#endif

/* C[0:mr, 0:nr] = alpha * (pa strip @ pb strip) + beta * C; beta == 0 never reads C. */
NN__GEMM_KERNEL_ATTR
static void nn__gemm_micro(int64_t kc, const float *NN_RESTRICT pa, const float *NN_RESTRICT pb,
                           float *NN_RESTRICT C, int64_t ldc, int64_t mr, int64_t nr, float alpha, float beta) {
    float acc[NN_GEMM_MR][NN_GEMM_NR];
    int i, j;
    int64_t p;
#ifdef NN__GEMM_VL
    nn__gemm_vec vacc[NN_GEMM_MR][2];
    memset(vacc, 0, sizeof vacc);
#else
    for (i = 0; i < NN_GEMM_MR; i++)
        for (j = 0; j < NN_GEMM_NR; j++) acc[i][j] = 0.0f;
#endif
#if defined(__GNUC__) && !defined(NN_GEMM_NO_PREFETCH)
    /* C is touched only after kc rank-1 updates, too late for out-of-order execution to overlap its cache
       misses with the arithmetic; ask for the tile now (first and last byte of each row). */
    for (i = 0; i < mr; i++) {
        __builtin_prefetch(C + i * ldc, 1, 3);
        __builtin_prefetch(C + i * ldc + nr - 1, 1, 3);
    }
#endif
#ifdef NN__GEMM_VL
    for (p = 0; p < kc; p++) {
        const float *a = pa + p * NN_GEMM_MR;
        nn__gemm_vec b0, b1;
        memcpy(&b0, pb + p * NN_GEMM_NR, sizeof b0);
        memcpy(&b1, pb + p * NN_GEMM_NR + NN__GEMM_VL, sizeof b1);
        for (i = 0; i < NN_GEMM_MR; i++) {
            const float ai = a[i];
            vacc[i][0] = vacc[i][0] + b0 * ai;
            vacc[i][1] = vacc[i][1] + b1 * ai;
        }
    }
    memcpy(acc, vacc, sizeof acc);
#else
    for (p = 0; p < kc; p++) {
        const float *a = pa + p * NN_GEMM_MR, *b = pb + p * NN_GEMM_NR;
        for (i = 0; i < NN_GEMM_MR; i++) {
            const float ai = a[i];
            for (j = 0; j < NN_GEMM_NR; j++) acc[i][j] = NN__GEMM_FMA(ai, b[j], acc[i][j]);
        }
    }
#endif
    if (mr == NN_GEMM_MR && nr == NN_GEMM_NR) {   /* full tile: fixed trip counts vectorise */
        if (beta == 0.0f) {
            for (i = 0; i < NN_GEMM_MR; i++)
                for (j = 0; j < NN_GEMM_NR; j++) C[i * ldc + j] = alpha * acc[i][j];
        } else if (beta == 1.0f) {
            for (i = 0; i < NN_GEMM_MR; i++)
                for (j = 0; j < NN_GEMM_NR; j++) C[i * ldc + j] += alpha * acc[i][j];
        } else {
            for (i = 0; i < NN_GEMM_MR; i++)
                for (j = 0; j < NN_GEMM_NR; j++) C[i * ldc + j] = alpha * acc[i][j] + beta * C[i * ldc + j];
        }
    } else {
        for (i = 0; i < mr; i++)
            for (j = 0; j < nr; j++)
                C[i * ldc + j] = beta == 0.0f ? alpha * acc[i][j] : alpha * acc[i][j] + beta * C[i * ldc + j];
    }
}

/* ---- serial drivers ------------------------------------------------------------------------------------- */
/* Pointers already offset to op(A)(0,0), op(B)(0,0), C(0,0); M, N, K > 0. Used when no buffer is available. */
static void nn__sgemm_unpacked(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha,
                               const float *A, int64_t lda, const float *B, int64_t ldb,
                               float beta, float *C, int64_t ldc) {
    int64_t i, j, p;
    for (i = 0; i < M; i++)
        for (j = 0; j < N; j++) {
            float s = 0.0f;
            for (p = 0; p < K; p++)
                s += (ta ? A[p * lda + i] : A[i * lda + p]) * (tb ? B[j * ldb + p] : B[p * ldb + j]);
            C[i * ldc + j] = beta == 0.0f ? alpha * s : alpha * s + beta * C[i * ldc + j];
        }
}

static void nn__sgemm_serial(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha,
                             const float *A, int64_t lda, const float *B, int64_t ldb,
                             float beta, float *C, int64_t ldc) {
    int64_t kc_max = K < NN_GEMM_KC ? K : NN_GEMM_KC;
    int64_t mc_max = M < NN_GEMM_MC ? (M + NN_GEMM_MR - 1) / NN_GEMM_MR * NN_GEMM_MR : NN_GEMM_MC;
    int64_t nc_max = N < NN_GEMM_NC ? (N + NN_GEMM_NR - 1) / NN_GEMM_NR * NN_GEMM_NR : NN_GEMM_NC;
    size_t a_len = (size_t)(mc_max * kc_max), b_len = (size_t)(nc_max * kc_max);
    int slot;
    void *raw;
    float *buf = nn__gemm_buf_get(a_len + b_len, &slot, &raw), *pack_a, *pack_b;
    int64_t jc, pc, ic, jr, ir;
    if (!buf) { nn__sgemm_unpacked(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc); return; }
    pack_b = buf;
    pack_a = buf + b_len;   /* b_len is a multiple of NR floats: 64-byte aligned when NR is a multiple of 16 */
    for (jc = 0; jc < N; jc += NN_GEMM_NC) {
        int64_t nc = N - jc < NN_GEMM_NC ? N - jc : NN_GEMM_NC;
        for (pc = 0; pc < K; pc += NN_GEMM_KC) {
            int64_t kc = K - pc < NN_GEMM_KC ? K - pc : NN_GEMM_KC;
            float beta_pc = pc == 0 ? beta : 1.0f;   /* later k blocks accumulate onto the first */
            nn__gemm_pack_b(tb, kc, nc, tb ? B + jc * ldb + pc : B + pc * ldb + jc, ldb, pack_b);
            for (ic = 0; ic < M; ic += NN_GEMM_MC) {
                int64_t mc = M - ic < NN_GEMM_MC ? M - ic : NN_GEMM_MC;
                nn__gemm_pack_a(ta, mc, kc, ta ? A + pc * lda + ic : A + ic * lda + pc, lda, pack_a);
                for (jr = 0; jr < nc; jr += NN_GEMM_NR) {
                    int64_t nr = nc - jr < NN_GEMM_NR ? nc - jr : NN_GEMM_NR;
                    const float *pb = pack_b + jr * kc;
                    for (ir = 0; ir < mc; ir += NN_GEMM_MR) {
                        int64_t mr = mc - ir < NN_GEMM_MR ? mc - ir : NN_GEMM_MR;
                        nn__gemm_micro(kc, pack_a + ir * kc, pb, C + (ic + ir) * ldc + jc + jr, ldc,
                                       mr, nr, alpha, beta_pc);
                    }
                }
            }
        }
    }
    nn__gemm_buf_put(slot, raw);
}

/* ---- entry point ---------------------------------------------------------------------------------------- */
static void nn__sgemm(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha,
                      const float *A, int64_t lda, const float *B, int64_t ldb,
                      float beta, float *C, int64_t ldc) {
    int nthreads = 1;
    if (M <= 0 || N <= 0) return;
    if (K <= 0 || alpha == 0.0f) {   /* C = beta * C; beta == 0 writes zeros over whatever C held */
        int64_t i, j;
        for (i = 0; i < M; i++)
            for (j = 0; j < N; j++) C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
        return;
    }
#ifdef _OPENMP
    if (!omp_in_parallel() && M * N * K >= NN_GEMM_PARALLEL_MIN) nthreads = omp_get_max_threads();
#endif
    if (nthreads <= 1) {
        nn__sgemm_serial(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
#ifdef _OPENMP
    if (K >= 8 * (M + N) && K >= 2 * (int64_t)NN_GEMM_KC * nthreads) {
        /* Deep, narrow products (weight gradients dW = dY^T X over many rows, 128 x 128 x 40960): cutting
           M x N would make every thread stream all of one operand from memory; cutting K streams each operand
           once. Thread 0 computes alpha*A0*B0 + beta*C into C, thread t > 0 computes alpha*At*Bt into its own
           M x N partial (one pool buffer for all of them), then the partials are added to C, rows split
           across the threads. */
        size_t part = (size_t)M * (size_t)N;
        int slot;
        void *raw;
        float *partials = nn__gemm_buf_get(part * (size_t)(nthreads - 1), &slot, &raw);
        if (partials) {
            NN_OMP("omp parallel num_threads(nthreads)")
            {
                int tid = omp_get_thread_num(), team = omp_get_num_threads(), u;
                int64_t kstep = ((K + team - 1) / team + NN_GEMM_KC - 1) / NN_GEMM_KC * NN_GEMM_KC;
                int64_t k0 = tid * kstep, kk = K - k0 < kstep ? K - k0 : kstep, i, j, r0, r1;
                float *dst = tid == 0 ? C : partials + (size_t)(tid - 1) * part;
                int64_t ldd = tid == 0 ? ldc : N;
                if (kk > 0)
                    nn__sgemm_serial(ta, tb, M, N, kk, alpha, ta ? A + k0 * lda : A + k0, lda,
                                     tb ? B + k0 : B + k0 * ldb, ldb, tid == 0 ? beta : 0.0f, dst, ldd);
                else   /* more threads than K blocks: nothing to add */
                    for (i = 0; i < M * N; i++) dst[i] = 0.0f;
                NN_OMP("omp barrier")
                r0 = M * tid / team;
                r1 = M * (tid + 1) / team;
                for (u = 1; u < team; u++) {
                    const float *src = partials + (size_t)(u - 1) * part;
                    for (i = r0; i < r1; i++)
                        for (j = 0; j < N; j++) C[i * ldc + j] += src[i * N + j];
                }
            }
            nn__gemm_buf_put(slot, raw);
            return;
        }
        nn__gemm_buf_put(slot, raw);
    }
#endif
    {
        /* Split C into tm x tn rectangles, tm * tn == nthreads, choosing the grid that minimises the
           rectangle's half-perimeter (rows + cols) = the operand data each thread must pack. Edges are cut at
           multiples of MR / NR so that only the last rectangle has partial register tiles. */
        int tm = 1, tn = nthreads, t, team = nthreads;
        int64_t best = -1;
        for (t = 1; t <= nthreads; t++) {
            if (nthreads % t == 0) {
                int64_t rows = (M + t - 1) / t, cols = (N + nthreads / t - 1) / (nthreads / t);
                if (rows < NN_GEMM_MR && t > 1) continue;
                if (cols < NN_GEMM_NR && nthreads / t > 1) continue;
                if (best < 0 || rows + cols < best) { best = rows + cols; tm = t; tn = nthreads / t; }
            }
        }
        if (best < 0) {   /* too small to cut nthreads ways: cut along the longer side only */
            if (M / NN_GEMM_MR >= N / NN_GEMM_NR) { tm = (int)((M + NN_GEMM_MR - 1) / NN_GEMM_MR); tn = 1; }
            else { tn = (int)((N + NN_GEMM_NR - 1) / NN_GEMM_NR); tm = 1; }
            if (tm > nthreads) tm = nthreads;
            if (tn > nthreads) tn = nthreads;
            team = tm * tn;
        }
        NN_OMP("omp parallel for num_threads(team) schedule(static)")
        for (t = 0; t < team; t++) {
            int64_t bi = t / tn, bj = t % tn;
            int64_t mstep = ((M + tm - 1) / tm + NN_GEMM_MR - 1) / NN_GEMM_MR * NN_GEMM_MR;
            int64_t nstep = ((N + tn - 1) / tn + NN_GEMM_NR - 1) / NN_GEMM_NR * NN_GEMM_NR;
            int64_t i0 = bi * mstep, j0 = bj * nstep;
            int64_t rows = M - i0 < mstep ? M - i0 : mstep, cols = N - j0 < nstep ? N - j0 : nstep;
            if (rows > 0 && cols > 0)
                nn__sgemm_serial(ta, tb, rows, cols, K, alpha, ta ? A + i0 : A + i0 * lda, lda,
                                 tb ? B + j0 * ldb : B + j0, ldb, beta, C + i0 * ldc + j0, ldc);
        }
    }
}
