/* bench/conv_bench.c - conv2d (forward, forward+backward), group_norm, nearest upsampling x2 and 2x2 average
   pooling on seed 003's UNet shapes
   (BraTS 128x128, 4 input channels, model_channels 64, channel_mult 1,2,4,8), beside bench/conv_torch.py.

   Build: cc -std=c99 -O3 -march=native -fopenmp -I. bench/conv_bench.c -o conv_bench -lm
   Run:   OMP_NUM_THREADS=2 ./conv_bench [batch] [reps]
   Output: one line per case:  case <name> <threads> <median ms> <best ms> <GFLOP/s at median> <peak MiB>
   fwd+bwd computes dX, dW and dB (the input requires grad, as for every layer but the first). Peak MiB is
   nn_mem_stats' peak during one forward+backward minus what was live before it (for the forward-only
   rows: during one forward). */
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#define NN_IMPLEMENTATION
#include "nn.h"

#include "bench.h"

typedef struct { const char *name; int64_t c, h, w, cout, k, stride, pad; } conv_case;

static int threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

static void report(const char *name, double *t, int reps, double flops, double peak_mib) {
    qsort(t, (size_t)reps, sizeof *t, cmp_double);
    printf("case %-34s %d %9.2f %9.2f %8.1f %8.1f\n", name, threads(), 1e3 * t[reps / 2], 1e3 * t[0],
           flops / t[reps / 2] / 1e9, peak_mib);
    fflush(stdout);
}

static double mib_since(size_t base) { return (double)(nn_mem_stats(NN_CPU).peak - base) / (1024.0 * 1024.0); }

static void bench_conv(const conv_case *cc, int64_t B, int reps) {
    int64_t xs[4], ws[4], bs[1];
    nn_tensor *x, *w, *b, *g;
    double *t = (double *)malloc(sizeof(double) * (size_t)reps), flops, peak;
    int64_t Ho = (cc->h + 2 * cc->pad - cc->k) / cc->stride + 1, Wo = (cc->w + 2 * cc->pad - cc->k) / cc->stride + 1;
    int r, pass;
    char name[96];
    size_t base;
    xs[0] = B; xs[1] = cc->c; xs[2] = cc->h; xs[3] = cc->w;
    ws[0] = cc->cout; ws[1] = cc->c; ws[2] = cc->k; ws[3] = cc->k;
    bs[0] = cc->cout;
    x = nn_randn(4, xs); w = nn_randn(4, ws); b = nn_randn(1, bs);
    flops = 2.0 * (double)B * (double)cc->cout * (double)Ho * (double)Wo * (double)(cc->c * cc->k * cc->k);
    for (pass = 0; pass < 2; pass++) {   /* 0: forward (no grad), 1: forward + backward */
        int64_t gs[4];
        gs[0] = B; gs[1] = cc->cout; gs[2] = Ho; gs[3] = Wo;
        g = nn_randn(4, gs);
        nn_requires_grad(x, pass); nn_requires_grad(w, pass); nn_requires_grad(b, pass);
        peak = 0;
        for (r = -1; r < reps; r++) {   /* r = -1: warm-up (pools, page faults) */
            double t0;
            int prev = nn_set_grad_enabled(pass);
            nn_mem_reset_peak(NN_CPU);
            base = nn_mem_stats(NN_CPU).current;
            t0 = now_s();
            nn_scope_begin();
            {
                nn_tensor *y = nn_conv2d(x, w, b, (int)cc->stride, (int)cc->pad, 1, 1);
                if (pass) nn_backward_with(1, &y, &g);
            }
            nn_scope_end(NULL);
            if (r >= 0) t[r] = now_s() - t0;
            if (r == 0) peak = mib_since(base);
            nn_set_grad_enabled(prev);
            if (pass) { nn_zero_grad(x); nn_zero_grad(w); nn_zero_grad(b); }
        }
        snprintf(name, sizeof name, "conv%s_[%lld,%lld,%lld,%lld]_k%lld_s%lld_%lld", pass ? "_fwdbwd" : "_fwd",
                 (long long)B, (long long)cc->c, (long long)cc->h, (long long)cc->w, (long long)cc->k,
                 (long long)cc->stride, (long long)cc->cout);
        report(name, t, reps, pass ? 3.0 * flops : flops, peak);
        nn_tensor_free(g);
    }
    nn_tensor_free(x); nn_tensor_free(w); nn_tensor_free(b);
    free(t);
}

static void bench_gn(int64_t B, int64_t C, int64_t H, int reps) {
    int64_t xs[4], cs[1];
    nn_tensor *x, *w, *b, *g;
    double *t = (double *)malloc(sizeof(double) * (size_t)reps), peak = 0;
    int r, pass;
    char name[96];
    xs[0] = B; xs[1] = C; xs[2] = H; xs[3] = H; cs[0] = C;
    x = nn_randn(4, xs); w = nn_ones(NN_F32, 1, cs); b = nn_zeros(NN_F32, 1, cs); g = nn_randn(4, xs);
    for (pass = 0; pass < 2; pass++) {
        nn_requires_grad(x, pass); nn_requires_grad(w, pass); nn_requires_grad(b, pass);
        for (r = -1; r < reps; r++) {
            double t0;
            size_t base;
            int prev = nn_set_grad_enabled(pass);
            nn_mem_reset_peak(NN_CPU);
            base = nn_mem_stats(NN_CPU).current;
            t0 = now_s();
            nn_scope_begin();
            {
                nn_tensor *y = nn_group_norm(x, 32, w, b, 1e-5);
                if (pass) nn_backward_with(1, &y, &g);
            }
            nn_scope_end(NULL);
            if (r >= 0) t[r] = now_s() - t0;
            if (r == 0) peak = mib_since(base);
            nn_set_grad_enabled(prev);
            if (pass) { nn_zero_grad(x); nn_zero_grad(w); nn_zero_grad(b); }
        }
        snprintf(name, sizeof name, "group_norm32%s_[%lld,%lld,%lld,%lld]", pass ? "_fwdbwd" : "_fwd",
                 (long long)B, (long long)C, (long long)H, (long long)H);
        report(name, t, reps, 0.0, peak);
    }
    nn_tensor_free(x); nn_tensor_free(w); nn_tensor_free(b); nn_tensor_free(g);
    free(t);
}

/* op 0: nearest upsampling x2 (the UNet's Upsample), 1: avg_pool2d(2, 2) (its Downsample without conv) */
static void bench_plane(int op, int64_t B, int64_t C, int64_t H, int reps) {
    int64_t xs[4], gs[4];
    nn_tensor *x, *g;
    double *t = (double *)malloc(sizeof(double) * (size_t)reps), peak = 0;
    int r, pass;
    char name[96];
    xs[0] = B; xs[1] = C; xs[2] = H; xs[3] = H;
    gs[0] = B; gs[1] = C; gs[2] = op == 0 ? 2 * H : H / 2; gs[3] = gs[2];
    x = nn_randn(4, xs); g = nn_randn(4, gs);
    for (pass = 0; pass < 2; pass++) {
        nn_requires_grad(x, pass);
        for (r = -1; r < reps; r++) {
            double t0;
            size_t base;
            int prev = nn_set_grad_enabled(pass);
            nn_mem_reset_peak(NN_CPU);
            base = nn_mem_stats(NN_CPU).current;
            t0 = now_s();
            nn_scope_begin();
            {
                nn_tensor *y = op == 0 ? nn_upsample_nearest2d(x, 2 * H, 2 * H) : nn_avg_pool2d(x, 2, 2, 0);
                if (pass) nn_backward_with(1, &y, &g);
            }
            nn_scope_end(NULL);
            if (r >= 0) t[r] = now_s() - t0;
            if (r == 0) peak = mib_since(base);
            nn_set_grad_enabled(prev);
            if (pass) nn_zero_grad(x);
        }
        snprintf(name, sizeof name, "%s%s_[%lld,%lld,%lld,%lld]", op == 0 ? "upsample2x" : "avg_pool2",
                 pass ? "_fwdbwd" : "_fwd", (long long)B, (long long)C, (long long)H, (long long)H);
        report(name, t, reps, 0.0, peak);
    }
    nn_tensor_free(x); nn_tensor_free(g);
    free(t);
}

int main(int argc, char **argv) {
    /* seed 003's UNet at 128x128: the input conv, one 3x3 conv per level, a stride-2 downsample conv and
       the 1x1 skip projection of a ResBlock whose channel count changes */
    static const conv_case cases[] = {
        {"in", 4, 128, 128, 64, 3, 1, 1},
        {"l0", 64, 128, 128, 64, 3, 1, 1},
        {"l1", 128, 64, 64, 128, 3, 1, 1},
        {"l2", 256, 32, 32, 256, 3, 1, 1},
        {"l3", 512, 16, 16, 512, 3, 1, 1},
        {"down", 64, 128, 128, 64, 3, 2, 1},
        {"skip1x1", 256, 32, 32, 128, 1, 1, 0},
    };
    int64_t B = argc > 1 ? atoll(argv[1]) : 8;
    int reps = argc > 2 ? atoi(argv[2]) : 5, i;
    const char *only = argc > 3 ? argv[3] : NULL;
    nn_seed(0);
    printf("# conv_bench batch %lld reps %d threads %d (columns: case threads median_ms best_ms GFLOP/s peak_MiB)\n",
           (long long)B, reps, threads());
    for (i = 0; i < (int)(sizeof cases / sizeof *cases); i++)
        if (!only || strstr(cases[i].name, only) || strcmp(only, "conv") == 0) bench_conv(&cases[i], B, reps);
    if (!only || strcmp(only, "gn") == 0) {
        bench_gn(B, 64, 128, reps);
        bench_gn(B, 256, 32, reps);
    }
    if (!only || strcmp(only, "plane") == 0) {
        bench_plane(0, B, 128, 64, reps);
        bench_plane(1, B, 64, 128, reps);
    }
    nn_shutdown();
    return 0;
}
