/* bench/bench.h - the timing helpers the benchmark programs share: a monotonic clock and a comparison for
   qsort (medians). Include after <time.h>/<stdlib.h> with _POSIX_C_SOURCE >= 199309L defined. */
#ifndef NN_BENCH_H
#define NN_BENCH_H
#include <stdlib.h>
#include <time.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

#endif
