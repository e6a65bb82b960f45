/* bench/bench.h - the timing helpers the benchmark programs share: a monotonic clock, a comparison for
   qsort (medians) and the thread count. Include after <time.h>/<stdlib.h> with _POSIX_C_SOURCE >= 199309L defined. */
#ifndef NN_BENCH_H
#define NN_BENCH_H
#include <stdlib.h>
#include <time.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* the OpenMP threads the kernels will use (1 without -fopenmp) */
#ifdef _OPENMP
#include <omp.h>
static inline int bench_threads(void) { return omp_get_max_threads(); }
#else
static inline int bench_threads(void) { return 1; }
#endif

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

#endif
