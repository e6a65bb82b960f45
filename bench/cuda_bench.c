/* bench/cuda_bench.c - times nn.h's CUDA ops; bench/cuda_torch.py times the same ops in PyTorch and prints
   both side by side (bench/device.sh runs the pair on the device machine).

   Each line: "NN <case> <median ms> <bytes moved> <flops>" (bytes: each input read once, each output written
   once; flops for GEMMs). Timing: warm-up, then 7 repeats of `iters` calls bracketed by nn_cuda_synchronize,
   median per call. Every call runs in a no-grad scope, so its outputs go back to the pool (as in training). */
#define _POSIX_C_SOURCE 200809L
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
static int cmpd(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return x < y ? -1 : x > y; }

typedef void (*bench_fn)(void *ctx);

/* median of 7 batches of iters calls, timed on the host around a device synchronisation. A batch is lengthened
   to batch_ms, so that the one launch latency and the one synchronisation it pays (10-20 us together) are small
   against it. bench/cuda_torch.py batches PyTorch's calls the same way, row by row.
   - Memory-bound rows (copy, layer_norm, softmax, sums, GELU, group_norm): 20 ms, under 0.1 %. Their rival runs
     at copy speed, so the comparison needs that resolution: at 2 ms these costs were 0.3-0.5 % of a 0.18 ms GELU, the
     size of the gap being measured (stop 25).
   - GEMM, conv, AdamW rows: 2 ms (under 1 %). 20 ms of back-to-back tensor-core work lowers the clock: at 12:02
     on 12-07 the bf16 8192^3 GEMM took 1.62 ms on nn.h and 1.52 on PyTorch after 20 ms batches of the rows before
     it, against 1.46 / 1.47 at 2 ms, which measures the card's thermal history rather than the kernels. */
static double batch_ms = 2.0;
static double time_it(bench_fn f, void *ctx, int iters) {
    double t[7], cal;
    int r, i;
    for (i = 0; i < 3; i++) { nn_scope_begin(); f(ctx); nn_scope_end(NULL); }
    nn_cuda_synchronize();
    cal = now_ms();
    for (i = 0; i < iters; i++) { nn_scope_begin(); f(ctx); nn_scope_end(NULL); }
    nn_cuda_synchronize();
    cal = now_ms() - cal;
    if (cal < batch_ms) iters = cal > 0.02 ? (int)(iters * batch_ms / cal) + 1 : 20000;
    for (r = 0; r < 7; r++) {
        double t0 = now_ms();
        for (i = 0; i < iters; i++) { nn_scope_begin(); f(ctx); nn_scope_end(NULL); }
        nn_cuda_synchronize();
        t[r] = (now_ms() - t0) / iters;
    }
    qsort(t, 7, sizeof t[0], cmpd);
    return t[3];
}

static void report(const char *name, double ms, double bytes, double flops) {
    printf("NN %s %.5f %.0f %.0f\n", name, ms, bytes, flops);
    fflush(stdout);
}

static nn_tensor *dev_rand(int nd, const int64_t *s, nn_dtype dt) {
    nn_tensor *c = nn_uniform(nd, s, -1, 1), *g = nn_to(c, NN_CUDA), *r = dt == NN_F32 ? g : nn_cast(g, dt);
    nn_tensor_free(c);
    if (r != g) nn_tensor_free(g);
    return r;
}

typedef struct { nn_tensor *a, *b, *c, *d; int op; } ctx_t;

static void f_copy(void *p) { ctx_t *c = (ctx_t *)p; nn_copy_(c->b, c->a); }
static void f_mm(void *p) { ctx_t *c = (ctx_t *)p; nn_matmul(c->a, c->b); }
static void f_ln(void *p) { ctx_t *c = (ctx_t *)p; nn_layer_norm(c->a, c->b, c->c, 1e-5); }
static void f_ln_fb(void *p) {
    ctx_t *c = (ctx_t *)p;
    nn_tensor *y = nn_layer_norm(c->a, c->b, c->c, 1e-5);
    nn_backward_with(1, &y, &c->d);
}
static void f_softmax(void *p) { ctx_t *c = (ctx_t *)p; nn_softmax(c->a, -1); }
static void f_softmax_fb(void *p) {
    ctx_t *c = (ctx_t *)p;
    nn_tensor *y = nn_softmax(c->a, -1);
    nn_backward_with(1, &y, &c->d);
}
static void f_gelu(void *p) { ctx_t *c = (ctx_t *)p; nn_gelu(c->a); }
static void f_gelu_fb(void *p) {
    ctx_t *c = (ctx_t *)p;
    nn_tensor *y = nn_gelu(c->a);
    nn_backward_with(1, &y, &c->d);
}
static void f_sum(void *p) { ctx_t *c = (ctx_t *)p; nn_sum(c->a, -1, 0); }

void nn__cuda_group_norm_fwd(const nn_tensor *x, int64_t G, const nn_tensor *w, const nn_tensor *b, double eps,
                             nn_tensor *y, nn_tensor *mean, nn_tensor *rstd);
static void f_gn(void *p) {
    ctx_t *c = (ctx_t *)p;
    int64_t ng = c->a->shape[0] * 32;
    nn_tensor *y = nn__new(NN_F32, NN_CUDA, c->a->ndim, c->a->shape), *m = nn__new(NN_F32, NN_CUDA, 1, &ng);
    nn_tensor *r = nn__new(NN_F32, NN_CUDA, 1, &ng);
    nn__cuda_group_norm_fwd(c->a, 32, c->b, c->c, 1e-5, y, m, r);
}
static void f_gn_fb(void *p) {
    ctx_t *c = (ctx_t *)p;
    nn_tensor *y = nn_group_norm(c->a, 32, c->b, c->c, 1e-5);
    nn_backward_with(1, &y, &c->d);
}
int nn__cuda_group_norm_threads(int T);

static const int one2[2] = {1, 1};
static void f_conv(void *p) {   /* c->d: the output buffer */
    ctx_t *c = (ctx_t *)p;
    nn__cuda_conv2d_fwd(c->a, c->b, c->c, one2, one2, one2, 1, c->d, NULL);
}
static void f_conv_fb(void *p) {
    ctx_t *c = (ctx_t *)p;
    nn__cuda_conv2d_fwd(c->a, c->b, c->c, one2, one2, one2, 1, c->d, NULL);
    nn__cuda_conv2d_bwd(c->d, c->a, NULL, c->a->shape, c->b, one2, one2, one2, 1, nn__new(NN_F32, NN_CUDA, 4, c->a->shape),
                        nn__new(NN_F32, NN_CUDA, 4, c->b->shape), nn__new(NN_F32, NN_CUDA, 1, c->b->shape));
}

/* conv2d through nn.h's op under autocast bf16 (f32 x, w, b as in a training step: x and w cast per call);
   fwd+bwd drops the leaves' gradients first, as torch's x.grad = None */
typedef struct { nn_tensor *x, *w, *b, *g; int s, p; } convac_t;
static void f_conv_ac(void *p) {
    convac_t *c = (convac_t *)p;
    nn_autocast_begin(NN_BF16);
    nn_conv2d(c->x, c->w, c->b, c->s, c->p, 1, 1);
    nn_autocast_end();
}
static void f_conv_ac_fb(void *p) {
    convac_t *c = (convac_t *)p;
    nn_tensor *y;
    nn_zero_grad(c->x); nn_zero_grad(c->w); nn_zero_grad(c->b);
    nn_autocast_begin(NN_BF16);
    y = nn_conv2d(c->x, c->w, c->b, c->s, c->p, 1, 1);
    nn_autocast_end();
    nn_backward_with(1, &y, &c->g);
}

typedef struct { int n; float **p, **g, **m, **v; int64_t *numel, *steps; double *wd; nn_tensor **keep; } adam_t;
static void f_adamw(void *p) {
    adam_t *a = (adam_t *)p;
    int k;
    for (k = 0; k < a->n; k++) a->steps[k]++;
    nn__cuda_adamw_multi(a->n, a->p, (const float *const *)a->g, a->m, a->v, a->numel, a->steps, a->wd, 1e-4, 0.9,
                         0.999, 1e-8, 0);
}
static void f_clip(void *p) {
    adam_t *a = (adam_t *)p;
    nn__cuda_clip_grad_norm(a->n, a->g, a->numel, 1e9);
}

/* group_norm (UNet-like) [8, 256, 64, 64], 32 groups: forward (8 bytes an element: x in, y out), forward +
   backward (20: and g, x in, gx out), memory-bound rows (batches of 20 ms). First a copy of the same 32 MiB, the
   forward's ceiling through this harness: a call of 30 us pays the boundary between launches (the last blocks'
   tail, the next launch's first loads) that a 1 GiB copy spreads over 0.7 ms. both: each row also on blocks of
   512 and of 256 threads (nn__cuda_group_norm_threads; the rule takes 1024 for the forward, 512 backward) */
static void gn_rows(int both) {
    int64_t s[4] = {8, 256, 64, 64}, C = 256;
    const double n = 8.0 * 256 * 64 * 64;
    ctx_t c;
    int fb;
    const double was = batch_ms;
    batch_ms = 20.0;
    c.a = dev_rand(4, s, NN_F32); c.b = nn__new(NN_F32, NN_CUDA, 4, s);
    report("copy_32MiB", time_it(f_copy, &c, 20), 8.0 * n, 0);
    nn_tensor_free(c.b);
    c.b = dev_rand(1, &C, NN_F32); c.c = dev_rand(1, &C, NN_F32); c.d = dev_rand(4, s, NN_F32);
    for (fb = 0; fb <= 2 * both; fb++) {   /* the rule's blocks, 512 threads, 256 */
        static const char *tag[3] = {"", "_t512", "_t256"};
        static const int threads[3] = {0, 512, 256};
        char nm[80];
        nn__cuda_group_norm_threads(threads[fb]);
        snprintf(nm, sizeof nm, "group_norm_fwd_8x256x64x64%s", tag[fb]);
        report(nm, time_it(f_gn, &c, 20), 8.0 * n, 0);
        nn_set_grad_enabled(1); nn_requires_grad(c.a, 1); nn_requires_grad(c.b, 1); nn_requires_grad(c.c, 1);
        snprintf(nm, sizeof nm, "group_norm_fwdbwd_8x256x64x64%s", tag[fb]);
        report(nm, time_it(f_gn_fb, &c, 20), 20.0 * n, 0);
        nn_requires_grad(c.a, 0); nn_requires_grad(c.b, 0); nn_requires_grad(c.c, 0);
        nn_zero_grad(c.a); nn_zero_grad(c.b); nn_zero_grad(c.c);
        nn_set_grad_enabled(0);
    }
    nn__cuda_group_norm_threads(0);
    batch_ms = was;
    nn_tensor_free(c.a); nn_tensor_free(c.b); nn_tensor_free(c.c); nn_tensor_free(c.d);
}

int main(int argc, char **argv) {
    ctx_t c;
    char name[64];
    int only_quick = argc > 1 && strcmp(argv[1], "quick") == 0;
    int only_conv = argc > 1 && strcmp(argv[1], "conv") == 0;   /* the conv2d rows only */
    int only_ew = argc > 1 && strcmp(argv[1], "ew") == 0;       /* copy, the row ops and GELU only */
    /* "tf32wg": the TF32 conv fwd+bwd rows with the weight gradient on each of its products (1 conv_cu's mma.sync
       kernel, 2 im2col + cuBLAS: nn__cuda_conv_tf32_wgrad), and on the rule's pick */
    int tf32wg = argc > 1 && strcmp(argv[1], "tf32wg") == 0;
    /* "convpass": the bf16 conv2d rows only, each fwd+bwd also with only x's gradient (fwddx: forward + dgrad) and
       only w's (fwddw: forward + wgrad), to see where the backward's time goes */
    int conv_pass = argc > 1 && strcmp(argv[1], "convpass") == 0;
    /* "gn": the group_norm rows only, each also on blocks of 512 and 256 threads */
    int only_gn = argc > 1 && strcmp(argv[1], "gn") == 0;
    if (conv_pass) only_conv = 1;
    if (conv_pass && argc > 2 && strcmp(argv[2], "split") == 0) {   /* A/B: the wgmma wgrad on split-K throughout */
        void nn__cuda_conv_wgrad_schedule(int sched, int blocks);
        nn__cuda_conv_wgrad_schedule(1, 0);
    }
    if (!nn_cuda_available()) { fprintf(stderr, "no CUDA device\n"); return 1; }
    if (tf32wg) {
        static const int64_t cs[][4] = {{8, 128, 64, 64}, {8, 256, 32, 32}, {8, 512, 16, 16}};
        long long nn__cuda_conv_tf32_wgrad(int path);
        int k, path;
        nn_set_grad_enabled(0);
        nn_seed(1);
        nn_cuda_set_conv_tf32(1);
        for (k = 0; k < 3; k++)
            for (path = 1; path <= 3; path++) {
                int64_t xs[4] = {cs[k][0], cs[k][1], cs[k][2], cs[k][3]}, ws[4] = {cs[k][1], cs[k][1], 3, 3}, C = cs[k][1];
                double fl = 2.0 * xs[0] * C * C * 9 * xs[2] * xs[3];
                nn__cuda_conv_tf32_wgrad(path % 3);   /* 1, 2, then 0: the rule */
                c.a = dev_rand(4, xs, NN_F32); c.b = dev_rand(4, ws, NN_F32); c.c = dev_rand(1, &C, NN_F32);
                c.d = nn__new(NN_F32, NN_CUDA, 4, xs);
                snprintf(name, sizeof name, "conv2d_tf32_fwdbwd_%lldx%lldx%lldx%lld_k3_%s", (long long)xs[0], (long long)xs[1],
                         (long long)xs[2], (long long)xs[3], path == 1 ? "mmasync" : path == 2 ? "cublas" : "rule");
                report(name, time_it(f_conv_fb, &c, 5), 0, 3 * fl);
                nn_tensor_free(c.a); nn_tensor_free(c.b); nn_tensor_free(c.c); nn_tensor_free(c.d);
            }
        nn__cuda_conv_tf32_wgrad(0);
        return 0;
    }
    nn_set_grad_enabled(0);
    nn_seed(1);
    if (!only_conv) {   /* copy bandwidth: the memory-bound ceiling */
        batch_ms = 20.0;
        int64_t n = (int64_t)1 << 28;   /* 1 GiB */
        c.a = dev_rand(1, &n, NN_F32); c.b = nn__new(NN_F32, NN_CUDA, 1, &n);
        report("copy_1GiB", time_it(f_copy, &c, 20), 2.0 * 4 * n, 0);
        nn_tensor_free(c.a); nn_tensor_free(c.b);
    }
    if (only_gn) {
        gn_rows(1);
        return 0;
    }
    if (!only_conv && !only_ew) {   /* GEMM */
        batch_ms = 2.0;
        static const int64_t sz[][3] = {{4096, 4096, 4096}, {8192, 8192, 8192}, {16384, 768, 3072}, {16384, 3072, 768}};
        int k, dt;
        for (dt = 0; dt < 3; dt++)
            for (k = 0; k < 4; k++) {
                int64_t M = sz[k][0], N = sz[k][1], K = sz[k][2], sa[2], sb[2];
                nn_dtype t = dt == 2 ? NN_BF16 : NN_F32;
                if (only_quick && k) continue;
                if (dt < 2 && k == 1) continue;   /* f32 8192^3 is long */
                sa[0] = M; sa[1] = K; sb[0] = K; sb[1] = N;
                nn_cuda_set_tf32(dt == 1);
                c.a = dev_rand(2, sa, t); c.b = dev_rand(2, sb, t);
                snprintf(name, sizeof name, "gemm_%s_%lldx%lldx%lld", dt == 0 ? "f32" : dt == 1 ? "tf32" : "bf16",
                         (long long)M, (long long)N, (long long)K);
                report(name, time_it(f_mm, &c, k == 1 ? 5 : 10), (double)nn_dtype_size(t) * (M * K + K * N) + 4.0 * M * N,
                       2.0 * M * N * K);
                nn_tensor_free(c.a); nn_tensor_free(c.b);
            }
        nn_cuda_set_tf32(0);
    }
    if (!only_conv) {   /* layer_norm, softmax: [32768, 1024] and [16384, 768] rows */
        batch_ms = 20.0;
        static const int64_t rows[][2] = {{32768, 1024}, {16384, 768}};
        int k;
        for (k = 0; k < 2; k++) {
            int64_t s[2] = {rows[k][0], rows[k][1]}, C = rows[k][1];
            double n = (double)s[0] * s[1];
            c.a = dev_rand(2, s, NN_F32); c.b = dev_rand(1, &C, NN_F32); c.c = dev_rand(1, &C, NN_F32);
            c.d = dev_rand(2, s, NN_F32);
            snprintf(name, sizeof name, "layer_norm_fwd_%lldx%lld", (long long)s[0], (long long)C);
            report(name, time_it(f_ln, &c, 20), 8.0 * n, 0);
            nn_set_grad_enabled(1); nn_requires_grad(c.a, 1); nn_requires_grad(c.b, 1); nn_requires_grad(c.c, 1);
            snprintf(name, sizeof name, "layer_norm_fwdbwd_%lldx%lld", (long long)s[0], (long long)C);
            report(name, time_it(f_ln_fb, &c, 20), 8.0 * n + 12.0 * n, 0);
            nn_requires_grad(c.a, 0); nn_requires_grad(c.b, 0); nn_requires_grad(c.c, 0);
            nn_zero_grad(c.a); nn_zero_grad(c.b); nn_zero_grad(c.c);
            nn_set_grad_enabled(0);
            snprintf(name, sizeof name, "softmax_fwd_%lldx%lld", (long long)s[0], (long long)C);
            report(name, time_it(f_softmax, &c, 20), 8.0 * n, 0);
            nn_set_grad_enabled(1); nn_requires_grad(c.a, 1);
            snprintf(name, sizeof name, "softmax_fwdbwd_%lldx%lld", (long long)s[0], (long long)C);
            report(name, time_it(f_softmax_fb, &c, 20), 8.0 * n + 12.0 * n, 0);
            nn_requires_grad(c.a, 0); nn_zero_grad(c.a); nn_set_grad_enabled(0);
            snprintf(name, sizeof name, "sum_lastdim_%lldx%lld", (long long)s[0], (long long)C);
            report(name, time_it(f_sum, &c, 20), 4.0 * n, 0);
            nn_tensor_free(c.a); nn_tensor_free(c.b); nn_tensor_free(c.c); nn_tensor_free(c.d);
        }
    }
    if (!only_conv) {   /* GELU: 64M floats */
        int64_t n = (int64_t)1 << 26;
        c.a = dev_rand(1, &n, NN_F32); c.d = dev_rand(1, &n, NN_F32);
        report("gelu_fwd_64M", time_it(f_gelu, &c, 20), 8.0 * n, 0);
        nn_set_grad_enabled(1); nn_requires_grad(c.a, 1);
        report("gelu_fwdbwd_64M", time_it(f_gelu_fb, &c, 20), 8.0 * n + 12.0 * n, 0);
        nn_requires_grad(c.a, 0); nn_zero_grad(c.a); nn_set_grad_enabled(0);
        nn_tensor_free(c.a); nn_tensor_free(c.d);
    }
    batch_ms = 2.0;   /* conv, AdamW and clipping rows (gn_rows sets its own) */
    if (!only_ew && !conv_pass) {   /* conv2d 3x3, padding 1 (UNet-like shapes), f32 with TF32 off and on */
        static const int64_t cs[][4] = {{8, 128, 64, 64}, {8, 256, 32, 32}, {8, 512, 16, 16}};
        int k, tf;
        for (tf = 0; tf < 2; tf++)
            for (k = 0; k < 3; k++) {
                int64_t xs[4] = {cs[k][0], cs[k][1], cs[k][2], cs[k][3]}, ws[4] = {cs[k][1], cs[k][1], 3, 3}, C = cs[k][1];
                double fl = 2.0 * xs[0] * C * C * 9 * xs[2] * xs[3];
                nn_cuda_set_conv_tf32(tf);   /* each row says its precision (torch's bench sets cudnn.allow_tf32 to match) */
                c.a = dev_rand(4, xs, NN_F32); c.b = dev_rand(4, ws, NN_F32); c.c = dev_rand(1, &C, NN_F32);
                c.d = nn__new(NN_F32, NN_CUDA, 4, xs);
                snprintf(name, sizeof name, "conv2d_%s_fwd_%lldx%lldx%lldx%lld_k3", tf ? "tf32" : "f32", (long long)xs[0],
                         (long long)xs[1], (long long)xs[2], (long long)xs[3]);
                report(name, time_it(f_conv, &c, 10), 0, fl);
                snprintf(name, sizeof name, "conv2d_%s_fwdbwd_%lldx%lldx%lldx%lld_k3", tf ? "tf32" : "f32", (long long)xs[0],
                         (long long)xs[1], (long long)xs[2], (long long)xs[3]);
                report(name, time_it(f_conv_fb, &c, 5), 0, 3 * fl);
                nn_tensor_free(c.a); nn_tensor_free(c.b); nn_tensor_free(c.c); nn_tensor_free(c.d);
            }
        nn_cuda_set_conv_tf32(1);   /* back to the default */
    }
    if (!only_ew) {   /* conv2d under autocast bf16 on seed 003's UNet shapes (128x128 images, 128 channels x (1, 2, 4, 8)):
           the 3x3 convs of each level, the stride-2 downsample, a 1x1 skip projection of a decoder block */
        static const int cs[][7] = {{8, 128, 128, 128, 128, 3, 1}, {8, 256, 64, 64, 256, 3, 1}, {8, 512, 32, 32, 512, 3, 1},
                                    {8, 1024, 16, 16, 1024, 3, 1}, {8, 128, 128, 128, 128, 3, 2}, {8, 512, 64, 64, 256, 1, 1}};
        int k;
        for (k = 0; k < 6; k++) {
            const int *s = cs[k];
            int kk = s[5], st = s[6], pad = kk / 2;
            int64_t xs[4] = {s[0], s[1], s[2], s[3]}, ws[4] = {s[4], s[1], kk, kk}, O = s[4], gs[4];
            convac_t c2;
            double fl;
            gs[0] = s[0]; gs[1] = O; gs[2] = (s[2] + 2 * pad - kk) / st + 1; gs[3] = (s[3] + 2 * pad - kk) / st + 1;
            fl = 2.0 * s[0] * O * gs[2] * gs[3] * s[1] * kk * kk;
            c2.x = dev_rand(4, xs, NN_F32); c2.w = dev_rand(4, ws, NN_F32); c2.b = dev_rand(1, &O, NN_F32);
            c2.g = dev_rand(4, gs, NN_BF16); c2.s = st; c2.p = pad;
            snprintf(name, sizeof name, "conv2d_bf16_fwd_%dx%dx%dx%d_o%d_k%d_s%d", s[0], s[1], s[2], s[3], s[4], kk, st);
            report(name, time_it(f_conv_ac, &c2, 10), 0, fl);
            nn_set_grad_enabled(1);
            nn_requires_grad(c2.x, 1); nn_requires_grad(c2.w, 1); nn_requires_grad(c2.b, 1);
            snprintf(name, sizeof name, "conv2d_bf16_fwdbwd_%dx%dx%dx%d_o%d_k%d_s%d", s[0], s[1], s[2], s[3], s[4], kk, st);
            report(name, time_it(f_conv_ac_fb, &c2, 5), 0, 3 * fl);
            nn_zero_grad(c2.x); nn_zero_grad(c2.w); nn_zero_grad(c2.b);
            nn_requires_grad(c2.x, 0); nn_requires_grad(c2.w, 0); nn_requires_grad(c2.b, 0);
            if (conv_pass) {   /* one leaf's gradient: x (the dgrad) or w (the wgrad); the forward as above */
                int leaf;
                for (leaf = 0; leaf < 2; leaf++) {
                    nn_tensor *t = leaf ? c2.w : c2.x;
                    nn_requires_grad(t, 1);
                    snprintf(name, sizeof name, "conv2d_bf16_%s_%dx%dx%dx%d_o%d_k%d_s%d", leaf ? "fwddw" : "fwddx", s[0],
                             s[1], s[2], s[3], s[4], kk, st);
                    report(name, time_it(f_conv_ac_fb, &c2, 5), 0, 2 * fl);
                    nn_zero_grad(t);
                    nn_requires_grad(t, 0);
                }
            }
            nn_set_grad_enabled(0);
            nn_tensor_free(c2.x); nn_tensor_free(c2.w); nn_tensor_free(c2.b); nn_tensor_free(c2.g);
        }
    }
    if (!only_conv && !only_ew) gn_rows(0);
    if (!only_conv && !only_ew) {   /* AdamW and clipping over 100M parameters in 150 tensors (ViT-like mix of sizes) */
        adam_t a;
        int k, n = 150;
        int64_t total = 0;
        a.n = n;
        a.p = (float **)calloc(n, sizeof(float *)); a.g = (float **)calloc(n, sizeof(float *));
        a.m = (float **)calloc(n, sizeof(float *)); a.v = (float **)calloc(n, sizeof(float *));
        a.numel = (int64_t *)calloc(n, sizeof(int64_t)); a.steps = (int64_t *)calloc(n, sizeof(int64_t));
        a.wd = (double *)calloc(n, sizeof(double)); a.keep = (nn_tensor **)calloc(4 * n, sizeof(nn_tensor *));
        for (k = 0; k < n; k++) {
            int64_t sz = k % 3 == 2 ? 768 : k % 3 == 1 ? 768 * 768 * 3 / 2 : 768 * 768 * 2 + 768 * 768 / 3;
            int j;
            a.numel[k] = sz; total += sz;
            for (j = 0; j < 4; j++) a.keep[4 * k + j] = dev_rand(1, &sz, NN_F32);
            nn_fill_(a.keep[4 * k + 2], 0); nn_fill_(a.keep[4 * k + 3], 0);
            a.p[k] = (float *)a.keep[4 * k]->data; a.g[k] = (float *)a.keep[4 * k + 1]->data;
            a.m[k] = (float *)a.keep[4 * k + 2]->data; a.v[k] = (float *)a.keep[4 * k + 3]->data;
            a.wd[k] = k % 3 == 2 ? 0.0 : 0.05;
        }
        snprintf(name, sizeof name, "adamw_%.0fM_params", total / 1e6);
        report(name, time_it(f_adamw, &a, 10), 4.0 * total * 7, 0);   /* read p g m v, write p m v */
        snprintf(name, sizeof name, "grad_norm_%.0fM_params", total / 1e6);
        report(name, time_it(f_clip, &a, 10), 4.0 * total, 0);
        printf("NN_PARAMS %lld\n", (long long)total);
        for (k = 0; k < 4 * n; k++) nn_tensor_free(a.keep[k]);
    }
    {
        nn_mem_info mi = nn_mem_stats(NN_CUDA);
        printf("NN_MEM peak %.1f MiB, cached %.1f MiB, allocs %llu, cudaMalloc calls %llu\n", mi.peak / 1048576.0,
               mi.cached / 1048576.0, (unsigned long long)mi.allocs, (unsigned long long)mi.misses);
    }
    nn_shutdown();
    return 0;
}
