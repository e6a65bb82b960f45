/* tests/gemm_test.c - nn__sgemm against a double-precision reference.

   Tolerance. Each output is c = alpha * sum_p a_ip*b_pj + beta*c0, computed in float with FMAs in some
   order. The classic forward bound for a float dot product of length K is |err| <= gamma_K * sum_p |a_ip b_pj|
   with gamma_K = K*u/(1-K*u), u = 2^-24; scaling by alpha and adding beta*c0 adds at most ~3u relative to
   |alpha|*sum|a b| + |beta c0|. So each element is checked against
       |c - ref| <= (K + 4) * u * (|alpha| * sum_p |a_ip b_pj| + |beta c0|) * 1.01 + 1e-30
   which is a rigorous bound (it can never fail for a correct kernel, whatever the summation order or the
   blocking), yet any indexing, packing, edge or beta bug produces an error of the order of the terms
   themselves, i.e. ~1/(K*u) >= 1000x larger than the bound for the K used here. A second, statistical check
   keeps the bound honest: the worst error over a large case must also be below 4*sqrt(K)*u relative. */
#include <stdint.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <math.h>
#include "test.h"
#define NN_IMPLEMENTATION
#include "nn.h"   /* nn__sgemm lives in its [ops:gemm] section */

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rng_next(void) {   /* splitmix64 */
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static float rng_uniform(void) { return (float)((rng_next() >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f; }
static int64_t rng_int(int64_t lo, int64_t hi) { return lo + (int64_t)(rng_next() % (uint64_t)(hi - lo + 1)); }

/* Runs one case; returns 1 when every element is within the bound and C's padding is untouched. */
static int run_case(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, float beta,
                    int64_t pad_a, int64_t pad_b, int64_t pad_c, int nan_c, double *worst_rel) {
    /* op(A) is M x K: stored as M x K (ta == 0) or K x M (ta != 0), with lda = cols + pad. */
    int64_t a_rows = ta ? K : M, a_cols = ta ? M : K, lda = a_cols + pad_a;
    int64_t b_rows = tb ? N : K, b_cols = tb ? K : N, ldb = b_cols + pad_b;
    int64_t ldc = N + pad_c, i, j, p;
    size_t a_n = (size_t)(a_rows * lda) + 1, b_n = (size_t)(b_rows * ldb) + 1, c_n = (size_t)(M * ldc) + 1;
    float *A = (float *)malloc(a_n * sizeof(float)), *B = (float *)malloc(b_n * sizeof(float));
    float *C = (float *)malloc(c_n * sizeof(float)), *C0 = (float *)malloc(c_n * sizeof(float));
    float *A0 = (float *)malloc(a_n * sizeof(float)), *B0 = (float *)malloc(b_n * sizeof(float));
    const float sentinel = 12345.0f;
    int ok = 1;
    double worst = 0.0;
    for (i = 0; i < (int64_t)a_n; i++) A[i] = rng_uniform();
    for (i = 0; i < (int64_t)b_n; i++) B[i] = rng_uniform();
    for (i = 0; i < (int64_t)c_n; i++) C[i] = sentinel;
    for (i = 0; i < M; i++)
        for (j = 0; j < N; j++) C[i * ldc + j] = nan_c ? NAN : rng_uniform();
    memcpy(C0, C, c_n * sizeof(float));
    memcpy(A0, A, a_n * sizeof(float));
    memcpy(B0, B, b_n * sizeof(float));

    nn__sgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);

    for (i = 0; i < M && ok; i++) {
        for (j = 0; j < ldc; j++) {
            double got = C[i * ldc + j];
            if (j >= N) {   /* padding between rows must not be written */
                if (got != sentinel) { ok = 0; printf("  padding C[%lld,%lld] overwritten\n", (long long)i, (long long)j); break; }
                continue;
            }
            {
                double s = 0.0, sabs = 0.0, ref, bound, c0 = beta == 0.0f ? 0.0 : (double)C0[i * ldc + j], err;
                for (p = 0; p < K; p++) {
                    double a = ta ? A[p * lda + i] : A[i * lda + p];
                    double b = tb ? B[j * ldb + p] : B[p * ldb + j];
                    s += a * b; sabs += fabs(a * b);
                }
                ref = (double)alpha * s + (double)beta * c0;
                bound = (double)(K + 4) * ldexp(1.0, -24) * (fabs((double)alpha) * sabs + fabs((double)beta * c0)) * 1.01 + 1e-30;
                err = fabs(got - ref);
                if (!(err <= bound)) {
                    ok = 0;
                    printf("  C[%lld,%lld] = %.9g, want %.9g (bound %.3g)\n", (long long)i, (long long)j, got, ref, bound);
                    break;
                }
                if (sabs > 0 && err / (fabs(alpha) * sabs) > worst) worst = err / (fabs(alpha) * sabs);
            }
        }
    }
    if (C[c_n - 1] != sentinel) { ok = 0; printf("  wrote past the end of C\n"); }
    if (memcmp(A, A0, a_n * sizeof(float)) || memcmp(B, B0, b_n * sizeof(float))) { ok = 0; printf("  A or B modified\n"); }
    if (worst_rel) *worst_rel = worst;
    free(A); free(B); free(C); free(C0); free(A0); free(B0);
    return ok;
}

#define CASE(ta, tb, M, N, K, alpha, beta, pa, pb, pc, nanc) \
    CHECK(run_case((ta), (tb), (M), (N), (K), (alpha), (beta), (pa), (pb), (pc), (nanc), NULL), \
          "sgemm ta=%d tb=%d M=%lld N=%lld K=%lld alpha=%g beta=%g pads=%lld,%lld,%lld nanC=%d", (int)(ta), (int)(tb), \
          (long long)(M), (long long)(N), (long long)(K), (double)(alpha), (double)(beta), (long long)(pa), \
          (long long)(pb), (long long)(pc), (int)(nanc))

int main(void) {
    static const int64_t shapes[][3] = {
        {1, 1, 1}, {0, 5, 3}, {5, 0, 3}, {4, 5, 0}, {0, 0, 0}, {17, 33, 65}, {1000, 3, 7}, {3, 1000, 7},
        {7, 3, 1000}, {1, 64, 64}, {64, 1, 64}, {64, 64, 1}, {2, 2, 300}, {11, 31, 255}, {12, 32, 256},
        {13, 33, 257}, {385, 40, 20}, {383, 65, 513}, {2000, 17, 9}, {9, 4100, 5}, {33, 4130, 3},
        {129, 129, 129}, {5, 700, 700}, {700, 5, 700}, {257, 3, 600},
    };
    static const float alphas[] = {1.0f, -0.5f, 2.0f}, betas[] = {0.0f, 1.0f, 0.75f};
    int s, t, a, b;
    for (s = 0; s < (int)(sizeof shapes / sizeof shapes[0]); s++)
        for (t = 0; t < 4; t++)
            for (a = 0; a < 3; a++)
                for (b = 0; b < 3; b++) {
                    int64_t M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
                    if (M * N * K > 2000000 && (a + b) % 3 != 0) continue;   /* keep the run short */
                    CASE(t & 1, t >> 1, M, N, K, alphas[a], betas[b], a, b, (a + b) % 3 * 3, 0);
                }

    /* beta == 0: C is write-only, NaN garbage must not leak through; also alpha == 0 and K == 0 paths */
    for (t = 0; t < 4; t++) {
        CASE(t & 1, t >> 1, 17, 33, 65, 1.0f, 0.0f, 0, 0, 0, 1);
        CASE(t & 1, t >> 1, 300, 300, 300, -1.0f, 0.0f, 1, 2, 3, 1);
        CASE(t & 1, t >> 1, 9, 10, 0, 1.0f, 0.0f, 0, 0, 2, 1);
        CASE(t & 1, t >> 1, 9, 10, 0, 1.0f, 0.5f, 0, 0, 2, 0);
        CASE(t & 1, t >> 1, 9, 10, 11, 0.0f, 0.0f, 0, 0, 2, 1);
        CASE(t & 1, t >> 1, 9, 10, 11, 0.0f, -2.0f, 0, 0, 2, 0);
    }

    /* many random shapes, transposes, pads, alpha/beta */
    for (s = 0; s < 400; s++) {
        int64_t M = rng_int(0, 80), N = rng_int(0, 80), K = rng_int(0, 300);
        if (s % 10 == 0) { M = rng_int(100, 600); N = rng_int(1, 100); }
        {
        int ta = (int)(rng_next() & 1), tb = (int)(rng_next() & 1);
        float alpha = alphas[rng_next() % 3], beta = betas[rng_next() % 3];
        int64_t pa = rng_int(0, 5), pb = rng_int(0, 5), pc = rng_int(0, 5);
        int nanc = beta == 0.0f && rng_next() % 2 == 0;   /* NaN garbage is only legal when beta == 0 */
        CASE(ta, tb, M, N, K, alpha, beta, pa, pb, pc, nanc);
        }
    }

    /* the statistical check: a long dot product's error grows like sqrt(K)*u, far below the K*u bound */
    {
        double worst = 0.0;
        int64_t K = 4096;
        CHECK(run_case(0, 0, 40, 70, K, 1.0f, 0.0f, 0, 0, 0, 0, &worst), "sgemm K=4096");
        CHECK(worst <= 4.0 * sqrt((double)K) * ldexp(1.0, -24), "sgemm K=4096 worst relative error %.3g", worst);
    }

    /* pool exhausted: every call mallocs its own buffer */
    {
        int slots[NN_GEMM_POOL_SLOTS], i;
        void *raws[NN_GEMM_POOL_SLOTS];
        for (i = 0; i < NN_GEMM_POOL_SLOTS; i++) CHECK(nn__gemm_buf_get(16, &slots[i], &raws[i]) != NULL, "pool slot %d", i);
        CASE(0, 1, 50, 60, 70, 1.0f, 0.5f, 1, 1, 1, 0);
        for (i = 0; i < NN_GEMM_POOL_SLOTS; i++) nn__gemm_buf_put(slots[i], raws[i]);
    }

#ifdef _OPENMP
    /* concurrent calls from the threads of a parallel region (as attention does): each runs serially with
       its own buffer; results must match the single-call results bit for bit */
    {
        enum { NCALL = 16, MM = 70, NN = 90, KK = 300 };
        float *A = (float *)malloc(sizeof(float) * NCALL * MM * KK), *B = (float *)malloc(sizeof(float) * NCALL * KK * NN);
        float *C1 = (float *)malloc(sizeof(float) * NCALL * MM * NN), *C2 = (float *)malloc(sizeof(float) * NCALL * MM * NN);
        int i, same = 1;
        for (i = 0; i < NCALL * MM * KK; i++) A[i] = rng_uniform();
        for (i = 0; i < NCALL * KK * NN; i++) B[i] = rng_uniform();
        for (i = 0; i < NCALL; i++)
            nn__sgemm(0, 0, MM, NN, KK, 1.0f, A + i * MM * KK, KK, B + i * KK * NN, NN, 0.0f, C1 + i * MM * NN, NN);
        NN_OMP("omp parallel for num_threads(4) schedule(dynamic)")
        for (i = 0; i < NCALL; i++)
            nn__sgemm(0, 0, MM, NN, KK, 1.0f, A + i * MM * KK, KK, B + i * KK * NN, NN, 0.0f, C2 + i * MM * NN, NN);
        same = memcmp(C1, C2, sizeof(float) * NCALL * MM * NN) == 0;
        CHECK(same, "sgemm called concurrently from a parallel region differs from serial calls");
        free(A); free(B); free(C1); free(C2);
    }
    /* the parallel path with several thread counts, including more threads than rows */
    {
        int nt;
        for (nt = 1; nt <= 5; nt++) {
            omp_set_num_threads(nt);
            CASE(0, 0, 257, 190, 300, 1.0f, 0.5f, 0, 0, 0, 0);
            CASE(1, 1, 3, 1000, 300, 1.0f, 0.0f, 0, 0, 0, 1);
            CASE(0, 1, 1000, 2, 300, 1.0f, 0.0f, 0, 0, 0, 1);
            CASE(1, 0, 130, 70, 4000, -1.0f, 1.0f, 0, 0, 1, 0);   /* K split across threads */
            CASE(0, 1, 20, 30, 5000, 0.5f, 0.0f, 1, 1, 1, 1);
            CASE(1, 1, 7, 3, 3000, 1.0f, 0.75f, 2, 0, 3, 0);
            CASE(0, 0, 40, 33, 1100, 2.0f, 0.0f, 0, 0, 0, 1);     /* K blocks < threads for nt >= 3 */
        }
    }
#endif
    nn__sgemm_free_cache();
    return test_summary();
}
