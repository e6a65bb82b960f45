/* bench/sdpa_bench.c - nn_sdpa timings and peak memory on the CPU (twin: bench/sdpa_torch.py; both are run by
   bench/sdpa_bench.sh, which prints the comparison table).

   usage: sdpa_bench <case> [reps]     cases: mha1024 cross900 long40k seed000
   prints one line: case fwd_ms fwdbwd_ms fwd_pool_MiB fwdbwd_pool_MiB fwd_rss_MiB fwdbwd_rss_MiB
     *_ms        median wall time over reps (after one warm-up run, except for long40k)
     *_pool_MiB  nn_mem_stats(NN_CPU).peak minus the bytes live before the call (inputs excluded)
     *_rss_MiB   peak resident set (VmHWM, reset through /proc/self/clear_refs) minus the resident set
                 before the call: the number comparable with PyTorch's
   Env: SDPA_LONG_HEADS (default 1) heads for long40k; SDPA_LONG_N (default 40000) its length. */
#define NN_IMPLEMENTATION
#include "nn.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

static double cpu_ms(void) { /* all threads' CPU time: steadier than wall time on a shared machine */
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}
static double cpu_total[2];

/* kB value of a /proc/self/status field */
static double status_kb(const char *key) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    double v = 0;
    size_t n = strlen(key);
    if (!f) return 0;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, key, n) == 0) { v = atof(line + n + 1); break; }
    fclose(f);
    return v;
}

static void reset_hwm(void) {
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (f) { fputs("5", f); fclose(f); }
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct { nn_tensor *q, *k, *v, *bias, *gout; } inputs;

static double run_once(inputs *in, int backward, double *pool_mib, double *rss_mib) {
    nn_sdpa_opts o;
    size_t base = nn_mem_stats(NN_CPU).current;
    double rss0, t0, t1;
    nn_tensor *out;
    memset(&o, 0, sizeof o);
    o.bias = in->bias;
    nn_mem_reset_peak(NN_CPU);
    reset_hwm();
    rss0 = status_kb("VmRSS:");
    t0 = now_ms();
    cpu_total[backward] -= cpu_ms();
    nn_scope_begin();
    if (!backward) {
        int prev = nn_set_grad_enabled(0);
        out = nn_sdpa(in->q, in->k, in->v, &o);
        nn_set_grad_enabled(prev);
    } else {
        out = nn_sdpa(in->q, in->k, in->v, &o);
        nn_backward_with(1, &out, &in->gout);
    }
    nn_scope_end(NULL);
    t1 = now_ms();
    cpu_total[backward] += cpu_ms();
    *pool_mib = (double)(nn_mem_stats(NN_CPU).peak - base) / 1048576.0;
    *rss_mib = (status_kb("VmHWM:") - rss0) / 1024.0;
    nn_zero_grad(in->q); nn_zero_grad(in->k); nn_zero_grad(in->v);
    if (in->bias) nn_zero_grad(in->bias);
    return t1 - t0;
}

int main(int argc, char **argv) {
    const char *cs = argc > 1 ? argv[1] : "mha1024";
    int reps = argc > 2 ? atoi(argv[2]) : 5, r, warm = 1, bw;
    int64_t B = 1, H = 4, Lq = 1024, Lk = 1024, D = 64, Dv = 64;
    int64_t qs[4], ks[4], vs[4], os[4];
    inputs in;
    double res[2][3];
    memset(&in, 0, sizeof in);
    nn_seed(0);
    if (getenv("SDPA_TQ")) nn__sdpa_tile_q = atoll(getenv("SDPA_TQ")); /* tile-size experiments */
    if (getenv("SDPA_TK")) nn__sdpa_tile_k = atoll(getenv("SDPA_TK"));
    if (!strcmp(cs, "mha1024")) { /* defaults: DINOv2-like 4 heads x 1024 x 64 */ }
    else if (!strcmp(cs, "cross900")) { H = 8; Lq = 900; Lk = 22384; D = Dv = 32; }
    else if (!strcmp(cs, "long40k")) {
        H = getenv("SDPA_LONG_HEADS") ? atoi(getenv("SDPA_LONG_HEADS")) : 1;
        Lq = Lk = getenv("SDPA_LONG_N") ? atoll(getenv("SDPA_LONG_N")) : 40000;
        D = Dv = 16; warm = 0;
    } else if (!strcmp(cs, "seed000")) { B = 40; H = 8; Lq = Lk = 1024; D = Dv = 16; }
    else { fprintf(stderr, "unknown case %s\n", cs); return 2; }
    qs[0] = ks[0] = vs[0] = os[0] = B; qs[1] = ks[1] = vs[1] = os[1] = H;
    qs[2] = os[2] = Lq; ks[2] = vs[2] = Lk; qs[3] = ks[3] = D; vs[3] = os[3] = Dv;
    in.q = nn_randn(4, qs); in.k = nn_randn(4, ks); in.v = nn_randn(4, vs); in.gout = nn_randn(4, os);
    nn_requires_grad(in.q, 1); nn_requires_grad(in.k, 1); nn_requires_grad(in.v, 1);
    if (!strcmp(cs, "cross900")) {
        int64_t bs[4] = {1, 1, Lq, Lk};
        in.bias = nn_randn(4, bs);
        nn_requires_grad(in.bias, 1);
    }
    for (bw = 0; bw < 2; bw++) {
        double *t = (double *)malloc(sizeof(double) * (size_t)(reps > 0 ? reps : 1)), pool = 0, rss = 0, p, s;
        if (warm) run_once(&in, bw, &p, &s);
        for (r = 0; r < reps; r++) {
            t[r] = run_once(&in, bw, &p, &s);
            if (p > pool) pool = p;
            if (s > rss) rss = s;
        }
        qsort(t, (size_t)reps, sizeof(double), cmp_d);
        res[bw][0] = t[reps / 2]; res[bw][1] = pool; res[bw][2] = rss;
        free(t);
    }
    fprintf(stderr, "cpu ms per call: fwd %.1f fwd+bwd %.1f\n", cpu_total[0] / (reps + warm), cpu_total[1] / (reps + warm));
    printf("%s %.1f %.1f %.1f %.1f %.1f %.1f\n", cs, res[0][0], res[1][0], res[0][1], res[1][1], res[0][2], res[1][2]);
    nn_shutdown();
    return 0;
}
