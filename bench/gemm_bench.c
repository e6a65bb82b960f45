/* bench/gemm_bench.c - GFLOP/s of nn__sgemm on the shapes nn.h's matmul / linear / attention use, plus a
   measurement of the machine's single-precision peak.

   Build: cc -std=c99 -O3 -march=native -fopenmp bench/gemm_bench.c -o gemm_bench -lm
   Run:   OMP_NUM_THREADS=2 ./gemm_bench [--peak | CASE_NAME]   (bench/run_gemm_bench.sh runs it with PyTorch beside it)
   Output: "peak ..." lines, then one line per case:  case <name> <M> <N> <K> <ta> <tb> <threads> <median GFLOP/s> <best GFLOP/s>

   Peak = cores x GHz x FMA pipes x lanes x 2 flops. The clock is *measured* (on all threads at once, the
   slowest one counts, since boost clocks fall as more cores are busy), not read: /proc/cpuinfo under
   a hypervisor reports the TSC's nominal rate, not the boost clock the cores run at. Two loops measure it:
     - a chain of dependent integer adds (1 cycle each on every x86 core; x86-64 GCC/clang only, inline asm),
     - a chain of dependent fmaf()s, whose latency in cycles is then reported (4 on Zen 4/5 and Skylake).
   The FMA pipes x lanes factor is checked too: the micro-kernel on L1-resident panels gives FMAs per cycle
   per core (it should be close to 2 pipes x lanes). The computed peak uses the nominal 2 FMA pipes x lanes of the widest vector
   the build targets (16 for AVX-512, 8 for AVX2) and the measured clock; the measured throughput is printed
   beside it as a check. */
#define _POSIX_C_SOURCE 199309L
#include <stdint.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <math.h>
#include <time.h>
#define NN_IMPLEMENTATION
#include "nn.h"   /* nn__sgemm lives in its [ops:gemm] section */

#include "bench.h"

/* GHz from a chain of dependent register adds: 1 add per cycle. Returns 0 where inline asm is unavailable. */
static double clock_ghz_add_chain(void) {
#if defined(__GNUC__) && defined(__x86_64__)
    double best = 0.0;
    int rep;
    for (rep = 0; rep < 5; rep++) {
        uint64_t iters = 20000000, x = 0, one = 1, n = iters;
        double t0 = now_s(), t;
        __asm__ volatile(
            "1:\n\t"
            "add %2, %0\n\tadd %2, %0\n\tadd %2, %0\n\tadd %2, %0\n\tadd %2, %0\n\t"
            "add %2, %0\n\tadd %2, %0\n\tadd %2, %0\n\tadd %2, %0\n\tadd %2, %0\n\t"
            "add %2, %0\n\tadd %2, %0\n\tadd %2, %0\n\tadd %2, %0\n\tadd %2, %0\n\t"
            "add %2, %0\n\tadd %2, %0\n\tadd %2, %0\n\tadd %2, %0\n\tadd %2, %0\n\t"
            "dec %1\n\tjnz 1b\n\t"
            : "+r"(x), "+r"(n) : "r"(one) : "cc");
        t = now_s() - t0;
        if (20.0 * (double)iters / t / 1e9 > best) best = 20.0 * (double)iters / t / 1e9;
    }
    return best;
#else
    return 0.0;
#endif
}

/* Seconds per dependent fmaf (the FMA latency in seconds). */
static double fma_latency_s(void) {
    volatile float seed = 1.0f;
    float x = seed, y = 0.9999999f, z = 1e-7f;
    double best = 1e9;
    int rep;
    long i, n = 20000000;
    for (rep = 0; rep < 5; rep++) {
        double t0 = now_s(), t;
        for (i = 0; i < n; i++) x = NN__GEMM_FMA(x, y, z);
        t = (now_s() - t0) / (double)n;
        if (t < best) best = t;
    }
    seed = x;   /* keep the chain alive */
    return best;
}

/* FMAs per second per thread of the micro-kernel itself on L1-resident packed panels (kc = 128:
   12x128 + 32x128 floats = 22 KiB for AVX-512), C tile in L1 too: the ceiling the cache blocking can at
   best approach. (A plain C loop of independent fmaf chains is not reliably kept in registers by the
   compilers, so the kernel doubles as the FMA throughput probe.) */
static double fma_throughput_per_s(void) {
    enum { KC = 128 };
    float *pa = (float *)malloc(sizeof(float) * NN_GEMM_MR * KC), *pb = (float *)malloc(sizeof(float) * NN_GEMM_NR * KC);
    float c[NN_GEMM_MR * NN_GEMM_NR];
    double best = 0.0;
    int rep, i;
    long r, n = 100000;
    for (i = 0; i < NN_GEMM_MR * KC; i++) pa[i] = 1e-3f * (float)(i % 100);
    for (i = 0; i < NN_GEMM_NR * KC; i++) pb[i] = 1e-3f * (float)(i % 77);
    memset(c, 0, sizeof c);
    for (rep = 0; rep < 3; rep++) {
        double t0 = now_s(), t;
        for (r = 0; r < n; r++) nn__gemm_micro(KC, pa, 0, pb, c, NN_GEMM_NR, NN_GEMM_MR, NN_GEMM_NR, 1.0f, 0.5f);
        t = now_s() - t0;
        if ((double)n * NN_GEMM_MR * NN_GEMM_NR * KC / t > best) best = (double)n * NN_GEMM_MR * NN_GEMM_NR * KC / t;
    }
    free(pa); free(pb);
    return best;
}

typedef struct { const char *name; int64_t M, N, K; int ta, tb; } bench_case;

int main(int argc, char **argv) {
    static const bench_case cases[] = {
        {"square_512", 512, 512, 512, 0, 0},
        {"square_1024", 1024, 1024, 1024, 0, 0},
        {"square_1024_AtB", 1024, 1024, 1024, 1, 0},
        {"square_1024_ABt", 1024, 1024, 1024, 0, 1},
        {"square_2048", 2048, 2048, 2048, 0, 0},
        {"linear_fwd_8192x768x768", 8192, 768, 768, 0, 1},       /* y = x W^T */
        {"linear_bwd_data_8192x768x768", 8192, 768, 768, 0, 0},  /* dx = dy W */
        {"linear_bwd_weight_768x768x8192", 768, 768, 8192, 1, 0},/* dW = dy^T x */
        {"linear_fwd_40960x128x128", 40960, 128, 128, 0, 1},
        {"linear_bwd_weight_128x128x40960", 128, 128, 40960, 1, 0},
    };
    int threads = 1, c, only_peak = argc > 1 && strcmp(argv[1], "--peak") == 0;
    const char *filter = argc > 1 && !only_peak ? argv[1] : NULL;   /* run only the case of that name */
#ifdef _OPENMP
    threads = omp_get_max_threads();
#endif
    if (!filter) {
        double ghz_add = 1e9, lat = fma_latency_s(), thr = 0.0;
        int lanes = NN_GEMM_NR >= 32 ? 16 : NN_GEMM_NR >= 16 ? 8 : 4;
        /* boost clocks drop as more cores get busy: measure the clock on all threads at once, keep the slowest */
        NN_OMP("omp parallel reduction(min:ghz_add)")
        { ghz_add = clock_ghz_add_chain(); }
        NN_OMP("omp parallel reduction(+:thr)")
        { thr += fma_throughput_per_s(); }
        printf("peak clock_ghz_add_chain %.3f\n", ghz_add);
        printf("peak fma_latency_ns %.4f cycles_at_that_clock %.2f\n", lat * 1e9, ghz_add > 0 ? lat * ghz_add * 1e9 : 0.0);
        printf("peak computed_gflops %.1f = %d cores x %.3f GHz x 2 FMA pipes x %d lanes x 2\n",
               threads * ghz_add * 2 * lanes * 2, threads, ghz_add, lanes);
        printf("peak measured_microkernel_gflops %.1f (%dx%d kernel on L1-resident panels, all threads; %.1f FMA lanes/cycle/core)\n",
               2.0 * thr / 1e9, NN_GEMM_MR, NN_GEMM_NR, ghz_add > 0 ? thr / threads / (ghz_add * 1e9) : 0.0);
    }
    if (only_peak) return 0;
    for (c = 0; c < (int)(sizeof cases / sizeof cases[0]); c++) {
        const bench_case *bc = &cases[c];
        if (filter && strcmp(bc->name, filter) != 0) continue;
        int64_t M = bc->M, N = bc->N, K = bc->K, i;
        float *A = (float *)malloc(sizeof(float) * (size_t)(M * K));
        float *B = (float *)malloc(sizeof(float) * (size_t)(K * N));
        float *C = (float *)malloc(sizeof(float) * (size_t)(M * N));
        double flops = 2.0 * (double)M * (double)N * (double)K, times[200], total = 0.0;
        int reps = 0;
        for (i = 0; i < M * K; i++) A[i] = (float)((i * 7919) % 1000) * 1e-3f - 0.5f;
        for (i = 0; i < K * N; i++) B[i] = (float)((i * 104729) % 1000) * 1e-3f - 0.5f;
        memset(C, 0, sizeof(float) * (size_t)(M * N));
        /* warm-up: grows the packing pool, faults in C's pages, spins up the OpenMP team */
        nn__sgemm(bc->ta, bc->tb, M, N, K, 1.0f, A, bc->ta ? M : K, B, bc->tb ? K : N, 0.0f, C, N);
        while (reps < 200 && (reps < 5 || total < 1.0)) {
            double t0 = now_s();
            nn__sgemm(bc->ta, bc->tb, M, N, K, 1.0f, A, bc->ta ? M : K, B, bc->tb ? K : N, 0.0f, C, N);
            times[reps] = now_s() - t0;
            total += times[reps++];
        }
        qsort(times, (size_t)reps, sizeof(double), cmp_double);
        printf("case %s %lld %lld %lld %d %d %d %.1f %.1f\n", bc->name, (long long)M, (long long)N, (long long)K,
               bc->ta, bc->tb, threads, flops / times[reps / 2] / 1e9, flops / times[0] / 1e9);
        fflush(stdout);
        free(A); free(B); free(C);
    }
    nn__sgemm_free_cache();
    return 0;
}
