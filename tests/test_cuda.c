/* tests/test_cuda.c - every CUDA op, forward and backward, against the CPU path on random inputs.

   For each case the same op runs on the CPU (the reference) and on the GPU from the same inputs, with the same
   random upstream gradient; outputs and input gradients are compared by ||gpu - cpu|| / ||cpu||:
     f32 ops (TF32 off):                 < 1e-5
     f32 conv2d with TF32 on:            < 2e-3 (TOL_TF32)
     bf16 / f16 GEMM operands:           < 1e-2 (against the CPU product of the rounded operands)
     casts, fills, dropout masks, copies: bit-exact
   Poison: NN_CUDA_POISON=1 makes every fresh device block 0xFF bytes (NaN as f32), and every case starts with
   nn_mem_trim(NN_CUDA), so an element a kernel never writes shows up as NaN and fails the check.
   Needs a GPU: make test-cuda (on the device machine). Prints "N passed, M failed". Arguments: -v (every
   error), quick (a compute-sanitizer subset), il (only the [ops:index] / [ops:loss] cases), sdpa (only
   test_sdpa; with quick, its subset), conv (only test_conv: f32, TF32 and autocast), case=TEXT (with sdpa:
   only the attention cases whose name contains TEXT). */
#define _POSIX_C_SOURCE 200809L
#define NN_IMPLEMENTATION
#include "nn.h"
#include "test.h"
#include "expect_error.h"
#include "models/vit.h"
#include <stdlib.h>
#include <string.h>
#include <setjmp.h>

#define TOL_F32 1e-5
#define TOL_LOW 1e-2
/* f32 ops on TF32 tensor cores (nn_cuda_set_tf32(1), nn_cuda_set_conv_tf32(1)): TF32 keeps 10 of f32's 23
   mantissa bits, so each operand rounds to within 2^-11 (~5e-4) relative and a product to within ~2^-10
   (~1e-3); over a sum of such products the error relative to the result's norm stays at the per-product level
   (random inputs: 2.6e-4 with round to nearest, 6.9e-4 with truncation, bench/conv_tf32_emulate.py). 2e-3 is twice the worst product's error, the
   same margin as TOL_LOW over bf16's 2^-8. */
#define TOL_TF32 2e-3

static double worst_f32, worst_low;
static int verbose, quick;   /* quick: a small part (for compute-sanitizer): sdpa subset, group_norm, device AdamW */
static int only_il;          /* argument "il": only the [ops:index] / [ops:loss] tests (compute-sanitizer) */
static int only_sdpa;        /* argument "sdpa": only test_sdpa (with quick: its sanitizer subset) */
static int only_conv;        /* argument "conv": only test_conv (f32 and autocast cases; with quick: a subset) */
static int only_gn;          /* argument "gn": only test_group_norm */
static const char *sdpa_only; /* argument "case=TEXT": only the sdpa cases whose name contains TEXT (racecheck of one) */

/* host copy of t as f32 (casting on t's device first if needed) */
static float *host_f32(nn_tensor *t) {
    float *h = (float *)malloc(sizeof(float) * (size_t)(t->numel ? t->numel : 1));
    int prev = nn_set_grad_enabled(0);
    nn_scope_begin();
    nn_to_host(t->dtype == NN_F32 ? t : nn_cast(t, NN_F32), h);
    nn_scope_end(NULL);
    nn_set_grad_enabled(prev);
    return h;
}

static double rel_err(nn_tensor *gpu, nn_tensor *cpu) {
    float *a, *b;
    double num = 0, den = 0;
    int64_t i;
    if (!gpu || !cpu) return (gpu || cpu) ? INFINITY : 0;
    if (gpu->numel != cpu->numel) return INFINITY;
    a = host_f32(gpu); b = host_f32(cpu);
    for (i = 0; i < cpu->numel; i++) {
        double d = (double)a[i] - b[i];
        if (a[i] != a[i] && b[i] == b[i]) { num = INFINITY; break; }   /* NaN where the CPU has a number */
        if (a[i] != a[i] && b[i] != b[i]) continue;
        num += d * d; den += (double)b[i] * b[i];
    }
    free(a); free(b);
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static void check_rel(const char *what, const char *part, nn_tensor *gpu, nn_tensor *cpu, double tol) {
    double e = rel_err(gpu, cpu);
    if (tol == TOL_F32 && e > worst_f32) worst_f32 = e;
    if (tol == TOL_LOW && e > worst_low) worst_low = e;
    if (verbose) printf("  %-40s %-6s rel err %.3g\n", what, part, e);
    CHECK(e < tol, "%s %s: relative error %.3g (bound %.0e)", what, part, e, tol);
}

/* a CPU tensor of uniform values in [lo, hi) */
static nn_tensor *rnd(int nd, const int64_t *s, double lo, double hi) {
    int prev = nn_set_grad_enabled(0);
    nn_tensor *t = nn_uniform(nd, s, lo, hi);
    nn_set_grad_enabled(prev);
    return t;
}

typedef nn_tensor *(*op_fn)(void *ctx, nn_tensor **in);

/* run f on CPU and GPU copies of in[0..n) (those with grad[i] set require grad); compare out and grads */
static void compare(const char *what, op_fn f, void *ctx, int n, nn_tensor **in, const int *grad, double tol) {
    nn_tensor *xc[8], *xg[8], *yc, *yg, *g, *gg;
    int i;
    nn_mem_trim(NN_CUDA);
    nn_scope_begin();
    for (i = 0; i < n; i++) {
        xc[i] = in[i] ? nn_clone(in[i]) : NULL;
        xg[i] = in[i] ? nn_to(in[i], NN_CUDA) : NULL;
        if (in[i] && grad && grad[i]) { nn_requires_grad(xc[i], 1); nn_requires_grad(xg[i], 1); }
    }
    yc = f(ctx, xc);
    yg = f(ctx, xg);
    check_rel(what, "fwd", yg, yc, tol);
    if (grad && nn__tracks(yc)) {
        g = rnd(yc->ndim, yc->shape, -1, 1);
        gg = nn_to(g, NN_CUDA);
        {   /* one backward over both graphs: a backward consumes the whole tape */
            nn_tensor *outs[2], *gs[2];
            outs[0] = yc; outs[1] = yg; gs[0] = g; gs[1] = gg;
            nn_backward_with(2, outs, gs);
        }
        for (i = 0; i < n; i++) {
            char part[16];
            if (!in[i] || !grad[i]) continue;
            snprintf(part, sizeof part, "grad%d", i);
            check_rel(what, part, xg[i]->grad, xc[i]->grad, tol);
        }
    }
    for (i = 0; i < n; i++) { if (xc[i]) nn_zero_grad(xc[i]); if (xg[i]) nn_zero_grad(xg[i]); }
    nn_scope_end(NULL);
}

/* ------------------------------------------------------------------------------------------------ ops */

typedef struct { int op; double p0, p1; int dim, keep, unb; int64_t s[6]; int nd; int perm[6]; int i0, i1; } args;

static nn_tensor *f_binary(void *c, nn_tensor **in) {
    switch (((args *)c)->op) {
    case 0: return nn_add(in[0], in[1]);
    case 1: return nn_sub(in[0], in[1]);
    case 2: return nn_mul(in[0], in[1]);
    default: return nn_div(in[0], in[1]);
    }
}
static nn_tensor *f_unary(void *c, nn_tensor **in) {
    args *a = (args *)c;
    switch (a->op) {
    case 0: return nn_add_scalar(in[0], a->p0);
    case 1: return nn_mul_scalar(in[0], a->p0);
    case 2: return nn_rsub_scalar(in[0], a->p0);
    case 3: return nn_exp(in[0]);
    case 4: return nn_log(in[0]);
    case 5: return nn_sqrt(in[0]);
    case 6: return nn_rsqrt(in[0]);
    case 7: return nn_abs(in[0]);
    case 8: return nn_pow(in[0], a->p0);
    case 9: return nn_clamp(in[0], a->p0, a->p1);
    case 10: return nn_relu(in[0]);
    case 11: return nn_gelu(in[0]);
    case 12: return nn_gelu_tanh(in[0]);
    case 13: return nn_silu(in[0]);
    case 14: return nn_sigmoid(in[0]);
    case 15: return nn_tanh(in[0]);
    default: return nn_neg(in[0]);
    }
}
static nn_tensor *f_reduce(void *c, nn_tensor **in) {
    args *a = (args *)c;
    switch (a->op) {
    case 0: return nn_sum(in[0], a->dim, a->keep);
    case 1: return nn_mean(in[0], a->dim, a->keep);
    case 2: return nn_max(in[0], a->dim, a->keep);
    case 3: return nn_var(in[0], a->dim, a->unb, a->keep);
    case 4: return nn_sum_all(in[0]);
    default: return nn_mean_all(in[0]);
    }
}
static nn_tensor *f_softmax(void *c, nn_tensor **in) {
    args *a = (args *)c;
    return a->op ? nn_log_softmax(in[0], a->dim) : nn_softmax(in[0], a->dim);
}
static nn_tensor *f_layer_norm(void *c, nn_tensor **in) { (void)c; return nn_layer_norm(in[0], in[1], in[2], 1e-5); }
static nn_tensor *f_matmul(void *c, nn_tensor **in) {
    args *a = (args *)c;
    return a->op == 2 ? nn_matmul(in[0], in[1]) : nn_matmul_t(in[0], in[1], a->i0, a->i1);
}
static nn_tensor *f_linear(void *c, nn_tensor **in) { (void)c; return nn_linear(in[0], in[1], in[2]); }
static nn_tensor *f_permute(void *c, nn_tensor **in) { return nn_permute(in[0], ((args *)c)->perm); }
static nn_tensor *f_slice(void *c, nn_tensor **in) {
    args *a = (args *)c;
    return nn_mul_scalar(nn_slice(in[0], a->dim, a->i0, a->i1), 1.0);
}
static nn_tensor *f_concat(void *c, nn_tensor **in) { return nn_concat(3, in, ((args *)c)->dim); }
static nn_tensor *f_expand(void *c, nn_tensor **in) { args *a = (args *)c; return nn_expand(in[0], a->nd, a->s); }
static nn_tensor *f_chunk(void *c, nn_tensor **in) {
    nn_tensor *p[3];
    (void)c;
    nn_chunk(in[0], 3, 1, p);
    return nn_add(nn_mul(p[0], p[1]), nn_sum(p[2], 1, 1));
}
static nn_tensor *f_dropout(void *c, nn_tensor **in) {
    nn_seed(1234);
    nn_rng_reserve(((args *)c)->i0);   /* start mid-block: offsets that are multiples of 4 and not */
    return nn_dropout(in[0], ((args *)c)->p0, 1);
}
/* a small transformer-ish chain: linear -> gelu -> layer_norm -> softmax -> mean */
static nn_tensor *f_chain(void *c, nn_tensor **in) {
    (void)c;
    nn_tensor *h = nn_gelu(nn_linear(in[0], in[1], in[2]));
    h = nn_layer_norm(h, NULL, NULL, 1e-5);
    return nn_mean(nn_mul(nn_softmax(h, -1), h), -1, 0);
}
/* low-precision GEMM: f32 leaves cast to dt; the CPU reference multiplies the rounded values in f32 */
static nn_tensor *f_lowp(void *c, nn_tensor **in) {
    args *a = (args *)c;
    nn_tensor *x = nn_cast(in[0], (nn_dtype)a->i0), *w = nn_cast(in[1], (nn_dtype)a->i0);
    if (in[0]->device == NN_CPU) { x = nn_cast(x, NN_F32); w = nn_cast(w, NN_F32); }
    return a->op ? nn_linear(x, w, in[2]) : nn_matmul_t(x, w, 0, 1);
}

static void test_elementwise(void) {
    /* 5000003: more float4s than the grid has threads, so the kernels' two-per-iteration path runs */
    static const int64_t shapes[][4] = {{1}, {37}, {1023}, {3, 129}, {4, 5, 67}, {5000003}};
    static const int nds[] = {1, 1, 1, 2, 3, 1};
    int s, op, grad[2] = {1, 1};
    char what[96];
    args a;
    memset(&a, 0, sizeof a);
    for (s = 0; s < 6; s++)
        for (op = 0; op <= 16; op++) {
            nn_tensor *x;
            double lo = -3, hi = 3;
            if (s == 5 && op != 1 && op != 11 && op != 13 && op != 15) continue;
            if (op == 4 || op == 5 || op == 6 || op == 8) { lo = 0.2; hi = 3; }
            x = rnd(nds[s], shapes[s], lo, hi);
            a.op = op; a.p0 = op == 8 ? 1.7 : op == 9 ? -0.5 : 0.75; a.p1 = 1.25;
            snprintf(what, sizeof what, "unary %d %s", op, nn_shape_str(x, what + 80, 16));
            compare(what, f_unary, &a, 1, &x, grad, TOL_F32);
            nn_tensor_free(x);
        }
    {
        /* binary with broadcasting (backward reduces through sum_to) */
        static const int64_t A[][4] = {{37, 45}, {5, 1, 33}, {3, 4, 5}, {1}, {2, 3, 1, 7}, {70001}};
        static const int64_t B[][4] = {{37, 45}, {7, 1}, {5}, {9, 31}, {3, 5, 1}, {1}};
        static const int na[] = {2, 3, 3, 1, 4, 1}, nb[] = {2, 2, 1, 2, 3, 1};
        for (s = 0; s < 6; s++)
            for (op = 0; op < 4; op++) {
                nn_tensor *in[2];
                in[0] = rnd(na[s], A[s], -2, 2);
                in[1] = op == 3 ? rnd(nb[s], B[s], 0.5, 2) : rnd(nb[s], B[s], -2, 2);
                a.op = op;
                snprintf(what, sizeof what, "binary %d case %d", op, s);
                compare(what, f_binary, &a, 2, in, grad, TOL_F32);
                nn_tensor_free(in[0]); nn_tensor_free(in[1]);
            }
    }
}

/* ------------------------------------------------------------------------------------ autocast on the GPU */

typedef struct { int op, unary; nn_dtype da, db, want; } mixed_args;
/* elementwise ops on f16/bf16 tensors: the GPU kernels read/write them directly, the CPU through f32 */
static nn_tensor *f_mixed(void *c, nn_tensor **in) {
    mixed_args *m = (mixed_args *)c;
    nn_tensor *a = nn_cast(in[0], m->da), *y;
    if (m->unary) y = m->op ? nn_gelu(a) : nn_mul_scalar(a, -1.5);
    else {
        nn_tensor *b = nn_cast(in[1], m->db);
        y = m->op == 0 ? nn_add(a, b) : m->op == 1 ? nn_mul(a, b) : nn_div(a, b);
    }
    CHECK(y->dtype == m->want, "mixed op %d: result %s, want %s", m->op, nn_dtype_name(y->dtype), nn_dtype_name(m->want));
    return y;
}

/* a small transformer-ish block under autocast: the CPU emulates (f32 tensors holding dt values), the GPU
   runs real dt tensors; both must agree to dt's precision, forward and every gradient */
static nn_dtype ac_dt;
static nn_tensor *f_autocast_block(void *c, nn_tensor **in) {
    int64_t s4[4];
    nn_tensor *x = in[0], *h, *q, *y;
    (void)c;
    nn_autocast_begin(ac_dt);
    h = nn_linear(x, in[1], in[2]);                                      /* [2, 24, 32] */
    if (x->device == NN_CUDA) CHECK(h->dtype == ac_dt, "autocast linear on the GPU returns %s", nn_dtype_name(h->dtype));
    h = nn_gelu(h);
    h = nn_layer_norm(h, in[3], NULL, 1e-5);                              /* f32 */
    s4[0] = 2; s4[1] = 24; s4[2] = 4; s4[3] = 8;
    q = nn_permute(nn_reshape(h, 4, s4), (const int[]){0, 2, 1, 3});     /* [2, 4, 24, 8] */
    q = nn_sdpa(q, q, q, NULL);
    s4[0] = 2; s4[1] = 24; s4[2] = 32;
    q = nn_reshape(nn_permute(q, (const int[]){0, 2, 1, 3}), 3, s4);
    y = nn_add(h, nn_mul(in[3], nn_linear(q, in[4], NULL)));            /* LayerScale-style residual */
    y = nn_matmul_t(y, in[4], 0, 1);
    nn_autocast_end();
    return nn_cast(y, NN_F32);
}

static void test_autocast(void) {
    static const nn_dtype dts[2] = {NN_BF16, NN_F16};
    int grad[5] = {1, 1, 1, 1, 1}, d, op;
    char what[96];
    for (d = 0; d < 2; d++) {
        int64_t sa[3] = {5, 1, 33}, sb[2] = {7, 1}, sc[1] = {1001};
        mixed_args m;
        nn_tensor *in[2];
        memset(&m, 0, sizeof m);
        for (op = 0; op < 3; op++) {
            in[0] = rnd(3, sa, -2, 2);
            in[1] = op == 2 ? rnd(2, sb, 0.5, 2) : rnd(2, sb, -2, 2);
            m.op = op; m.da = dts[d]; m.db = dts[d]; m.want = dts[d];
            snprintf(what, sizeof what, "%s op %d %s", "mixed same", op, nn_dtype_name(dts[d]));
            compare(what, f_mixed, &m, 2, in, grad, TOL_LOW);
            m.db = NN_F32; m.want = NN_F32;            /* promoted to f32 */
            snprintf(what, sizeof what, "%s op %d %s", "mixed with f32", op, nn_dtype_name(dts[d]));
            compare(what, f_mixed, &m, 2, in, grad, TOL_LOW);
            nn_tensor_free(in[0]); nn_tensor_free(in[1]);
        }
        for (op = 0; op < 2; op++) {
            in[0] = rnd(1, sc, -3, 3);
            m.unary = 1; m.op = op; m.da = dts[d]; m.want = dts[d];
            snprintf(what, sizeof what, "mixed unary %d %s", op, nn_dtype_name(dts[d]));
            compare(what, f_mixed, &m, 1, in, grad, TOL_LOW);
            nn_tensor_free(in[0]);
        }
        {   /* the eight-wide f16/bf16 unary kernels against the mixed ones, which views 2 bytes in take: bit-equal
               values and gradients (4099 = 8 * 512 + 3: the tail too) */
            int64_t n = 4099, n1 = n + 1;
            nn_tensor *src = rnd(1, &n1, -4, 4), *gsrc = rnd(1, &n1, -1, 1), *xa, *xb, *ga, *gb, *ya, *yb;
            int bad = 0;
            nn_scope_begin();
            xa = nn_to(nn_cast(nn_slice(src, 0, 1, n1), dts[d]), NN_CUDA);
            xb = nn_slice(nn_to(nn_cast(src, dts[d]), NN_CUDA), 0, 1, n1);
            ga = nn_to(nn_cast(nn_slice(gsrc, 0, 1, n1), dts[d]), NN_CUDA);
            gb = nn_slice(nn_to(nn_cast(gsrc, dts[d]), NN_CUDA), 0, 1, n1);
            nn_requires_grad(xa, 1); nn_requires_grad(xb, 1);
            ya = nn_gelu(xa); yb = nn_gelu(xb);
            {   /* one backward for both: it runs the whole tape */
                nn_tensor *outs[2], *gs[2];
                outs[0] = ya; outs[1] = yb; gs[0] = ga; gs[1] = gb;
                nn_backward_with(2, outs, gs);
            }
            CHECK(xa->grad && xb->grad && xa->grad->dtype == dts[d], "unary16: gradients missing");
            bad += memcmp(nn_to(ya, NN_CPU)->data, nn_to(yb, NN_CPU)->data, (size_t)n * 2) != 0;
            bad += 2 * (memcmp(nn_to(xa->grad, NN_CPU)->data, nn_to(xb->grad, NN_CPU)->data, (size_t)n * 2) != 0);
            CHECK(bad == 0, "gelu %s: eight-wide and mixed kernels differ (1: values, 2: gradients): %d",
                  nn_dtype_name(dts[d]), bad);
            nn_zero_grad(xa); nn_zero_grad(xb);
            nn_scope_end(NULL);
            nn_tensor_free(src); nn_tensor_free(gsrc);
        }
        {
            int64_t sx[3] = {2, 24, 16}, sw1[2] = {32, 16}, sb1[1] = {32}, sg[1] = {32}, sw2[2] = {32, 32};
            nn_tensor *bl[5];
            bl[0] = rnd(3, sx, -1, 1); bl[1] = rnd(2, sw1, -0.3, 0.3); bl[2] = rnd(1, sb1, -0.1, 0.1);
            bl[3] = rnd(1, sg, 0.5, 1.5); bl[4] = rnd(2, sw2, -0.2, 0.2);
            ac_dt = dts[d];
            snprintf(what, sizeof what, "autocast block %s", nn_dtype_name(dts[d]));
            compare(what, f_autocast_block, NULL, 5, bl, grad, TOL_LOW);
            for (op = 0; op < 5; op++) nn_tensor_free(bl[op]);
        }
    }
}

static void test_reduce(void) {
    /* the last three: rows of 96 and 8192 (a multiple of 4, at most 8192: k_red_row_warp, a warp per row; 96 is
       not a multiple of the 128 values a lane's loop step covers) and 8196 (k_red_row) */
    static const int64_t shapes[][3] = {{7, 33, 65}, {3, 70001, 1}, {70001, 3, 1}, {1, 1, 300007}, {2, 9000, 5},
                                        {5, 33, 96}, {270, 8192, 1}, {3, 8196, 1}};
    static const int nds[] = {3, 2, 2, 3, 3, 3, 2, 2};
    int s, op, d, grad[1] = {1};
    char what[96];
    args a;
    memset(&a, 0, sizeof a);
    for (s = 0; s < 8; s++) {
        nn_tensor *x = rnd(nds[s], shapes[s], -2, 2);
        for (op = 0; op <= 5; op++)
            for (d = 0; d < nds[s]; d++) {
                if ((op == 4 || op == 5) && d > 0) continue;
                a.op = op; a.dim = d; a.keep = d & 1; a.unb = (d + s) & 1;
                snprintf(what, sizeof what, "reduce %d dim %d shape %d", op, d, s);
                compare(what, f_reduce, &a, 1, &x, grad, TOL_F32);
            }
        nn_tensor_free(x);
    }
    {   /* max: ties go to the first index on both devices */
        int64_t sh[2] = {33, 40};
        nn_tensor *x = rnd(2, sh, 0, 1);
        float *p = nn_f32_data(x);
        int i;
        for (i = 0; i < 33 * 40; i++) p[i] = (float)((i * 7) % 5);
        a.op = 2; a.dim = 1; a.keep = 0;
        compare("max with ties", f_reduce, &a, 1, &x, grad, TOL_F32);
        a.dim = 0;
        compare("max with ties dim 0", f_reduce, &a, 1, &x, grad, TOL_F32);
        nn_tensor_free(x);
    }
}

static void test_softmax(void) {
    static const int64_t shapes[][3] = {{6, 33, 129}, {4, 5000, 1}, {3, 1, 1}, {257, 1000, 1}, {2, 4097, 1}, {9, 4, 128}, {33, 8, 1}};
    static const int nds[] = {3, 2, 1, 2, 2, 3, 2};
    int s, op, d, grad[1] = {1};
    char what[96];
    args a;
    memset(&a, 0, sizeof a);
    for (s = 0; s < 7; s++) {
        nn_tensor *x = rnd(nds[s], shapes[s], -8, 8);
        for (op = 0; op < 2; op++)
            for (d = 0; d < nds[s]; d++) {
                a.op = op; a.dim = d;
                snprintf(what, sizeof what, "%s dim %d shape %d", op ? "log_softmax" : "softmax", d, s);
                compare(what, f_softmax, &a, 1, &x, grad, TOL_F32);
            }
        nn_tensor_free(x);
    }
}

static void test_layer_norm(void) {
    /* 768, 64, 260, 512: the warp-per-row kernels (C % 4 == 0, C <= 1024); the rest: block per row */
    static const int64_t shapes[][3] = {{13, 768}, {5, 7, 33}, {3, 5000}, {1, 1}, {1025, 97}, {2, 65, 64}, {7, 260}, {2100, 512}};
    static const int nds[] = {2, 3, 2, 2, 2, 3, 2, 2};
    int s, aff, grad[3] = {1, 1, 1};
    char what[96];
    for (s = 0; s < 8; s++)
        for (aff = 0; aff < 2; aff++) {
            int64_t C = shapes[s][nds[s] - 1];
            nn_tensor *in[3];
            in[0] = rnd(nds[s], shapes[s], -3, 5);
            in[1] = aff ? rnd(1, &C, 0.5, 1.5) : NULL;
            in[2] = aff ? rnd(1, &C, -1, 1) : NULL;
            snprintf(what, sizeof what, "layer_norm shape %d affine %d", s, aff);
            compare(what, f_layer_norm, NULL, 3, in, grad, TOL_F32);
            nn_tensor_free(in[0]); nn_tensor_free(in[1]); nn_tensor_free(in[2]);
        }
}

/* ---------------------------------------------------------------- the fused ops of the ViT block (models/vit.h) */

/* bytes of a and b (any device, same dtype) equal */
static int same_bits(nn_tensor *a, nn_tensor *b) {
    size_t es;
    char *x, *y;
    int r;
    if (!a || !b) return a == b;
    if (a->numel != b->numel || a->dtype != b->dtype) return 0;
    es = nn_dtype_size(a->dtype);
    x = (char *)malloc(es * (size_t)(a->numel + 1)); y = (char *)malloc(es * (size_t)(a->numel + 1));
    nn_to_host(a, x); nn_to_host(b, y);
    r = memcmp(x, y, es * (size_t)a->numel) == 0;
    free(x); free(y);
    return r;
}

/* nn_addcmul with h (and with all_low, x and w too) cast to dt first */
typedef struct { nn_dtype dt; int all_low, unfused; } addcmul_args;
static nn_tensor *f_addcmul(void *c, nn_tensor **in) {
    const addcmul_args *a = (const addcmul_args *)c;
    nn_tensor *x = a->all_low ? nn_cast(in[0], a->dt) : in[0], *h = nn_cast(in[1], a->dt);
    nn_tensor *w = a->all_low ? nn_cast(in[2], a->dt) : in[2];
    return a->unfused ? nn_add(x, nn_mul(h, w)) : nn_addcmul(x, h, w);
}
typedef struct { nn_dtype dt; int unfused; } ln_to_args;
static nn_tensor *f_layer_norm_to(void *c, nn_tensor **in) {
    const ln_to_args *a = (const ln_to_args *)c;
    if (a->unfused) return nn_cast(nn_layer_norm(in[0], in[1], in[2], 1e-5), a->dt);
    return nn_layer_norm_to(in[0], in[1], in[2], 1e-5, a->dt);
}

/* on the GPU, f fused (unfused 0) and unfused (1) from the same inputs and upstream gradient: the output and the
   gradients of the inputs in exact_mask bit for bit, the others to f32 precision (a sum in another order) */
static void compare_fused_gpu(const char *what, op_fn f, int *unfused, void *ctx, int n, nn_tensor **in, int exact_mask) {
    nn_tensor *x[2][4], *y[2], *g, *gg;
    int k, i;
    nn_mem_trim(NN_CUDA);
    nn_scope_begin();
    for (k = 0; k < 2; k++) {
        for (i = 0; i < n; i++) {
            x[k][i] = in[i] ? nn_to(in[i], NN_CUDA) : NULL;
            if (x[k][i]) nn_requires_grad(x[k][i], 1);
        }
        *unfused = k;
        y[k] = f(ctx, x[k]);
    }
    g = rnd(y[0]->ndim, y[0]->shape, -1, 1);
    gg = nn_to(g, NN_CUDA);
    {
        nn_tensor *gs[2];
        gs[0] = gg; gs[1] = gg;
        nn_backward_with(2, y, gs);
    }
    CHECK(y[0]->dtype == y[1]->dtype && same_bits(y[0], y[1]), "%s: fused forward on the GPU differs from the unfused ops", what);
    for (i = 0; i < n; i++) {
        char part[16];
        if (!in[i]) continue;
        if (exact_mask >> i & 1) CHECK(same_bits(x[0][i]->grad, x[1][i]->grad), "%s: gradient %d on the GPU differs from the unfused ops (rel %.3g)", what, i, rel_err(x[0][i]->grad, x[1][i]->grad));
        else { snprintf(part, sizeof part, "grad%d/unf", i); check_rel(what, part, x[0][i]->grad, x[1][i]->grad, TOL_F32); }
        nn_zero_grad(x[0][i]); nn_zero_grad(x[1][i]);
    }
    *unfused = 0;
    nn_scope_end(NULL);
}

static void test_addcmul(void) {
    /* w one row: vectorised (C % 4 == 0), odd C, many rows (the backward's partial sums over row chunks), one row;
       w full; every operand broadcast (the generic kernel) */
    static const int64_t X[][3] = {{13, 768}, {4, 5, 67}, {3, 700, 768}, {1, 256}, {37, 45}, {5, 1, 33}, {1}};
    static const int64_t H[][3] = {{13, 768}, {4, 5, 67}, {3, 700, 768}, {1, 256}, {37, 45}, {7, 1}, {1}};
    static const int64_t W[][3] = {{768}, {67}, {1, 1, 768}, {256}, {37, 45}, {33}, {1}};
    static const int nx[] = {2, 3, 3, 2, 2, 3, 1}, nh[] = {2, 3, 3, 2, 2, 2, 1}, nw[] = {1, 1, 3, 1, 2, 1, 1};
    static const nn_dtype dts[3] = {NN_F32, NN_BF16, NN_F16};
    int s, d, all, grad[3] = {1, 1, 1};
    char what[96];
    addcmul_args a;
    for (s = 0; s < 7; s++)
        for (d = 0; d < 3; d++)
            for (all = 0; all < (d ? 2 : 1); all++) {
                nn_tensor *in[3];
                int rowvec = nw[s] >= 1 && W[s][nw[s] - 1] == X[s][nx[s] - 1] && nh[s] == nx[s] && s != 4 && s != 5;
                in[0] = rnd(nx[s], X[s], -2, 2); in[1] = rnd(nh[s], H[s], -2, 2); in[2] = rnd(nw[s], W[s], -1.5, 1.5);
                a.dt = dts[d]; a.all_low = all; a.unfused = 0;
                snprintf(what, sizeof what, "addcmul case %d h %s%s", s, nn_dtype_name(dts[d]), all ? " (all)" : "");
                /* with an f32 output both devices compute the same f32 values: only the sums of dw differ */
                compare(what, f_addcmul, &a, 3, in, grad, all ? TOL_LOW : TOL_F32);
                if (!all) {   /* and the forward bit for bit with the CPU (product rounded, then the sum) */
                    nn_tensor *c[3], *yc, *yg;
                    int i;
                    nn_scope_begin();
                    for (i = 0; i < 3; i++) c[i] = in[i];
                    yc = f_addcmul(&a, c);
                    for (i = 0; i < 3; i++) c[i] = nn_to(in[i], NN_CUDA);
                    yg = f_addcmul(&a, c);
                    CHECK(same_bits(nn_to(yg, NN_CPU), yc), "%s: GPU forward differs from the CPU's bits", what);
                    nn_scope_end(NULL);
                }
                /* fused against nn_add(x, nn_mul(h, w)) on the GPU: dx bit for bit; dh, dw too where both sum the
                   same way (not dw of the fused row pass, nor case 5, where the unfused sums the product's shape
                   first) */
                if (!all) compare_fused_gpu(what, f_addcmul, &a.unfused, &a, 3, in, rowvec ? 3 : s == 5 ? 1 : 7);
                nn_tensor_free(in[0]); nn_tensor_free(in[1]); nn_tensor_free(in[2]);
            }
}

static void test_layer_norm_to(void) {
    /* the warp kernels (768, 64, 260, 512) write f16/bf16 and read their gradients directly; the others go through
       f32 and a cast */
    static const int64_t shapes[][3] = {{13, 768}, {5, 7, 33}, {3, 5000}, {1025, 97}, {2, 65, 64}, {7, 260}, {2100, 512}};
    static const int nds[] = {2, 3, 2, 2, 3, 2, 2};
    int s, aff, d, grad[3] = {1, 1, 1};
    char what[96];
    ln_to_args a;
    for (s = 0; s < 7; s++)
        for (aff = 0; aff < 2; aff++)
            for (d = 0; d < 2; d++) {
                int64_t C = shapes[s][nds[s] - 1];
                nn_tensor *in[3];
                in[0] = rnd(nds[s], shapes[s], -3, 5);
                in[1] = aff ? rnd(1, &C, 0.5, 1.5) : NULL;
                in[2] = aff ? rnd(1, &C, -1, 1) : NULL;
                a.dt = d ? NN_F16 : NN_BF16; a.unfused = 0;
                snprintf(what, sizeof what, "layer_norm_to %s shape %d affine %d", nn_dtype_name(a.dt), s, aff);
                compare(what, f_layer_norm_to, &a, 3, in, grad, TOL_LOW);
                compare_fused_gpu(what, f_layer_norm_to, &a.unfused, &a, 3, in, 7);
                nn_tensor_free(in[0]); nn_tensor_free(in[1]); nn_tensor_free(in[2]);
            }
}

/* models/vit.h's block under bf16 autocast against the same block written with the unfused ops (as it was before
   nn_addcmul and nn_layer_norm_to): the output and every gradient but the LayerScale lambdas' bit for bit (where
   the unfused block reproduces itself), the lambdas' to f32 precision (their sums run in another order) */
static nn_tensor *vit_block_unfused(const vit_block *m, nn_tensor *x) {
    nn_tensor *h;
    nn_scope_begin();
    nn_scope_begin();
    h = vit_attention_forward(m, nn_LayerNorm_forward(&m->norm1, x));
    x = nn_scope_end(nn_add(x, nnm_drop_path(nn_mul(h, m->lambda1), m->drop_path)));
    nn_scope_begin();
    h = nn_MLP_forward(&m->mlp, nn_LayerNorm_forward(&m->norm2, x));
    x = nn_scope_end(nn_add(x, nnm_drop_path(nn_mul(h, m->lambda2), m->drop_path)));
    return nn_scope_end(x);
}

static void test_vit_block_fused(void) {
    nn_params P = {NULL, 0, 0};
    vit_block m;
    int64_t sx[3] = {2, 37, 64};
    nn_tensor *x0 = rnd(3, sx, -2, 2), *g0 = rnd(3, sx, -1, 1), *y[3], *gx[3], **gp[3];
    int run, i, dp;
    vit_block_init(&m, &P, "", 64, 2, 256, 1.0, 0.0, 0.0);
    nn_scope_begin();
    for (i = 0; i < P.n; i++) {   /* weights of order 1/sqrt(fan-in), lambdas and norms away from 1 and 0 */
        nn_tensor *t = P.items[i].t, *r = rnd(t->ndim, t->shape, -1, 1);
        if (t->ndim == 2) r = nn_mul_scalar(r, 1.0 / sqrt((double)t->shape[1]));
        else r = nn_add_scalar(nn_mul_scalar(r, 0.3), strstr(P.items[i].name, "bias") ? 0.0 : 0.8);
        nn_copy_(t, r);
    }
    nn_scope_end(NULL);
    nn_params_to(&P, NN_CUDA);
    for (dp = 0; dp < 2; dp++) {   /* dp 1: drop_path acting in training (the unfused fallback) */
        m.drop_path = dp ? 0.4 : 0.0;
        nn_set_training(dp);
        for (run = 0; run < 3; run++) {   /* unfused, unfused again (is it reproducible?), fused */
            nn_tensor *x, *g;
            nn_scope_begin();   /* the block's own scopes must not be the outermost: closing that ends the tape */
            x = nn_to(x0, NN_CUDA); g = nn_to(g0, NN_CUDA);
            nn_requires_grad(x, 1);
            nn_params_zero_grad(&P);
            nn_seed(11);
            nn_autocast_begin(NN_BF16);
            y[run] = run < 2 ? vit_block_unfused(&m, x) : vit_block_forward(&m, x);
            nn_autocast_end();
            nn_backward_with(1, &y[run], &g);
            gx[run] = x->grad; x->grad = NULL;
            gp[run] = (nn_tensor **)malloc(sizeof(nn_tensor *) * (size_t)P.n);
            for (i = 0; i < P.n; i++) { gp[run][i] = P.items[i].t->grad; P.items[i].t->grad = NULL; }
            y[run] = nn_scope_end(y[run]);
        }
        CHECK(same_bits(y[2], y[0]), "vit block (drop_path %d): fused forward differs from the unfused block", dp);
        if (same_bits(gx[1], gx[0])) CHECK(same_bits(gx[2], gx[0]), "vit block (drop_path %d): x's gradient differs", dp);
        else check_rel("vit block x grad", "fused", gx[2], gx[0], TOL_F32);
        for (i = 0; i < P.n; i++) {
            const char *nm = P.items[i].name;
            if (!strstr(nm, "lambda") && same_bits(gp[1][i], gp[0][i]))
                CHECK(same_bits(gp[2][i], gp[0][i]), "vit block (drop_path %d): gradient of %s differs", dp, nm);
            else check_rel("vit block fused", nm, gp[2][i], gp[0][i], TOL_F32);
        }
        for (run = 0; run < 3; run++) {
            nn_tensor_free(y[run]); nn_tensor_free(gx[run]);
            for (i = 0; i < P.n; i++) if (gp[run][i]) nn_tensor_free(gp[run][i]);
            free(gp[run]);
        }
    }
    nn_set_training(0);
    nn_params_free(&P);
    nn_tensor_free(x0); nn_tensor_free(g0);
}

static void test_matmul(void) {
    static const int64_t A[][4] = {{37, 45}, {45, 37}, {3, 17, 33}, {2, 3, 17, 33}, {45}, {4, 45}, {1, 1}, {5, 7, 65}};
    static const int64_t B[][4] = {{45, 29}, {29, 45}, {33, 19}, {3, 33, 19}, {45, 29}, {45}, {1, 300}, {3, 1, 65, 9}};
    static const int na[] = {2, 2, 3, 4, 1, 2, 2, 3}, nb[] = {2, 2, 2, 3, 2, 1, 2, 4};
    int s, t, grad[3] = {1, 1, 1};
    char what[96];
    args a;
    memset(&a, 0, sizeof a);
    for (s = 0; s < 8; s++) {
        nn_tensor *in[2];
        in[0] = rnd(na[s], A[s], -1, 1); in[1] = rnd(nb[s], B[s], -1, 1);
        a.op = 2;
        if (s == 1) { a.op = 0; a.i0 = 1; a.i1 = 1; }   /* A^T B^T */
        if (s == 7) { a.op = 2; }
        snprintf(what, sizeof what, "matmul case %d", s);
        compare(what, f_matmul, &a, 2, in, grad, TOL_F32);
        nn_tensor_free(in[0]); nn_tensor_free(in[1]);
    }
    for (t = 0; t < 4; t++) {   /* every transpose combination */
        int64_t sa[3] = {3, 0, 0}, sb[3] = {3, 0, 0};
        nn_tensor *in[2];
        sa[1] = t & 1 ? 41 : 23; sa[2] = t & 1 ? 23 : 41;
        sb[1] = t & 2 ? 31 : 41; sb[2] = t & 2 ? 41 : 31;
        in[0] = rnd(3, sa, -1, 1); in[1] = rnd(3, sb, -1, 1);
        a.op = 0; a.i0 = t & 1; a.i1 = (t >> 1) & 1;
        snprintf(what, sizeof what, "matmul_t ta %d tb %d", a.i0, a.i1);
        compare(what, f_matmul, &a, 2, in, grad, TOL_F32);
        nn_tensor_free(in[0]); nn_tensor_free(in[1]);
    }
    for (s = 0; s < 2; s++) {
        int64_t xs[3] = {5, 7, 65}, ws[2] = {33, 65}, bs = 33;
        nn_tensor *in[3];
        in[0] = rnd(3, xs, -1, 1); in[1] = rnd(2, ws, -1, 1); in[2] = s ? rnd(1, &bs, -1, 1) : NULL;
        snprintf(what, sizeof what, "linear bias %d", s);
        compare(what, f_linear, NULL, 3, in, grad, TOL_F32);
        snprintf(what, sizeof what, "chain (linear gelu ln softmax) %d", s);
        compare(what, f_chain, NULL, 3, in, grad, TOL_F32);
        nn_tensor_free(in[0]); nn_tensor_free(in[1]); nn_tensor_free(in[2]);
    }
    {   /* low precision operands, f32 accumulation */
        int dt;
        for (dt = 0; dt < 2; dt++)
            for (s = 0; s < 2; s++) {
                int64_t xs[2] = {77, 129}, ws[2] = {65, 129}, bs = 65;
                nn_tensor *in[3];
                in[0] = rnd(2, xs, -1, 1); in[1] = rnd(2, ws, -1, 1); in[2] = s ? rnd(1, &bs, -1, 1) : NULL;
                a.op = s; a.i0 = dt ? NN_F16 : NN_BF16;
                snprintf(what, sizeof what, "%s %s", dt ? "f16" : "bf16", s ? "linear" : "matmul_t");
                compare(what, f_lowp, &a, 3, in, grad, TOL_LOW);
                nn_tensor_free(in[0]); nn_tensor_free(in[1]); nn_tensor_free(in[2]);
            }
    }
}

static void test_shape(void) {
    int grad[3] = {1, 1, 1};
    args a;
    memset(&a, 0, sizeof a);
    {
        int64_t s[4] = {3, 5, 7, 9};
        nn_tensor *x = rnd(4, s, -1, 1);
        int perms[3][4] = {{2, 0, 3, 1}, {0, 2, 1, 3}, {3, 2, 1, 0}};
        int k;
        for (k = 0; k < 3; k++) { memcpy(a.perm, perms[k], sizeof perms[k]); compare("permute", f_permute, &a, 1, &x, grad, TOL_F32); }
        a.dim = 0; a.i0 = 1; a.i1 = 3; compare("slice view", f_slice, &a, 1, &x, grad, TOL_F32);
        a.dim = 2; a.i0 = 2; a.i1 = 7; compare("slice copy", f_slice, &a, 1, &x, grad, TOL_F32);
        a.dim = 3; a.i0 = 1; a.i1 = 8; compare("slice last dim", f_slice, &a, 1, &x, grad, TOL_F32);
        nn_tensor_free(x);
    }
    {
        int64_t s0[3] = {4, 3, 5}, s1[3] = {4, 1, 5}, s2[3] = {4, 7, 5};
        nn_tensor *in[3];
        in[0] = rnd(3, s0, -1, 1); in[1] = rnd(3, s1, -1, 1); in[2] = rnd(3, s2, -1, 1);
        a.dim = 1; compare("concat dim 1", f_concat, &a, 3, in, grad, TOL_F32);
        nn_tensor_free(in[0]); nn_tensor_free(in[1]); nn_tensor_free(in[2]);
    }
    {
        int64_t s[3] = {3, 1, 5}, c[2] = {6, 9};
        nn_tensor *x = rnd(3, s, -1, 1);
        a.nd = 4; a.s[0] = 2; a.s[1] = 3; a.s[2] = 4; a.s[3] = 5;
        compare("expand", f_expand, &a, 1, &x, grad, TOL_F32);
        nn_tensor_free(x);
        x = rnd(2, c, -1, 1);
        compare("chunk", f_chunk, &a, 1, &x, grad, TOL_F32);
        nn_tensor_free(x);
    }
}

static void test_dropout(void) {
    int64_t s[2] = {37, 1001};
    nn_tensor *x = rnd(2, s, -1, 1);
    int grad[1] = {1}, k;
    args a;
    memset(&a, 0, sizeof a);
    for (k = 0; k < 3; k++) {
        char what[64];
        a.p0 = k == 2 ? 0.9 : 0.3; a.i0 = k == 1 ? 5 : 0;
        snprintf(what, sizeof what, "dropout p %.1f offset %d", a.p0, a.i0);
        compare(what, f_dropout, &a, 1, &x, grad, 1e-30);   /* identical masks: exact */
    }
    nn_tensor_free(x);
}

/* casts between every pair of dtypes, bit-exact against the CPU (special values included) */
static void test_casts(void) {
    static const float special[] = {0.0f, -0.0f, 1.0f, -1.5f, 65504.0f, 65520.0f, 1e-8f, 6.1e-5f, 3e-6f, 1e30f,
                                    -1e30f, 0.33333334f, 255.0f, 300.0f, 2.5f, 3.5f, -7.25f, 1.00390625f, 1.0009765625f};
    int64_t n = 4099, i;
    int sd, dd;
    nn_tensor *src = rnd(1, &n, -300, 300);
    float *p = nn_f32_data(src);
    for (i = 0; i < (int64_t)(sizeof special / sizeof special[0]); i++) p[i] = special[i];
    p[30] = INFINITY; p[31] = -INFINITY; p[32] = NAN;
    for (i = 40; i < 200; i++) p[i] = p[i] * 1e-6f;   /* f16 subnormals */
    {   /* nn_from_data_on: host data straight to the GPU, the bytes unchanged; on the CPU it is nn_from_data */
        nn_tensor *g = nn_from_data_on(NN_CUDA, NN_F32, 1, &n, p), *c = nn_from_data_on(NN_CPU, NN_F32, 1, &n, p);
        float *back = (float *)malloc((size_t)n * sizeof(float));
        nn_to_host(g, back);
        CHECK(g->device == NN_CUDA && c->device == NN_CPU, "nn_from_data_on: devices %d %d", (int)g->device, (int)c->device);
        CHECK(!memcmp(back, p, (size_t)n * sizeof(float)) && !memcmp(nn_f32_data(c), p, (size_t)n * sizeof(float)),
              "nn_from_data_on: bytes differ");
        free(back); nn_tensor_free(g); nn_tensor_free(c);
    }
    for (sd = 0; sd < NN_DTYPE_COUNT; sd++)
        for (dd = 0; dd < NN_DTYPE_COUNT; dd++) {
            nn_tensor *a, *ag, *bc, *bg;
            unsigned char *h1, *h2;
            size_t bytes;
            int same;
            nn_scope_begin();
            a = nn_cast(src, (nn_dtype)sd);
            if (sd != NN_F32 && !nn_dtype_is_float((nn_dtype)sd)) {   /* keep integer sources in range */
                int64_t k;
                for (k = 0; k < n; k++) {
                    double v = fmod((double)k * 37.0, 250.0) - (sd == NN_U8 || sd == NN_BOOL ? 0 : 125.0);
                    if (sd == NN_I32) ((int32_t *)a->data)[k] = (int32_t)v;
                    else if (sd == NN_I64) ((int64_t *)a->data)[k] = (int64_t)v * (k % 3 == 0 ? 123456789LL : 1);
                    else ((uint8_t *)a->data)[k] = (uint8_t)(sd == NN_BOOL ? (k % 3 == 0) : v);
                }
            }
            ag = nn_to(a, NN_CUDA);
            bc = nn_cast(a, (nn_dtype)dd);
            bg = nn_cast(ag, (nn_dtype)dd);
            bytes = (size_t)n * nn_dtype_size((nn_dtype)dd);
            h1 = (unsigned char *)malloc(bytes); h2 = (unsigned char *)malloc(bytes);
            nn_to_host(bc, h1); nn_to_host(bg, h2);
            same = 1;
            for (i = 0; i < n && same; i++) {
                size_t es = nn_dtype_size((nn_dtype)dd);
                if (memcmp(h1 + i * es, h2 + i * es, es)) {
                    /* float -> integer of out-of-range or NaN values is undefined in C: skip those */
                    double v = nn__load(a->data, a->dtype, i);
                    int undefined = !nn_dtype_is_float((nn_dtype)dd) && dd != NN_BOOL &&
                                    (v != v || v < (dd == NN_U8 ? 0 : -2147483648.0) || v > (dd == NN_U8 ? 255 : 2147483647.0));
                    if (!undefined) same = 0;
                }
            }
            CHECK(same, "cast %s -> %s differs from the CPU at element %lld", nn_dtype_name((nn_dtype)sd),
                  nn_dtype_name((nn_dtype)dd), (long long)(i - 1));
            free(h1); free(h2);
            {   /* fill */
                nn_tensor *fc = nn_zeros_like(bc), *fg = nn__new(bg->dtype, NN_CUDA, bg->ndim, bg->shape);
                double fv = dd == NN_U8 || dd == NN_BOOL ? 3.25 : -2.75;   /* negative -> u8 is undefined in C */
                nn_fill_(fc, fv); nn_fill_(fg, fv);
                h1 = (unsigned char *)malloc(bytes); h2 = (unsigned char *)malloc(bytes);
                nn_to_host(fc, h1); nn_to_host(fg, h2);
                CHECK(memcmp(h1, h2, bytes) == 0, "fill %s differs", nn_dtype_name((nn_dtype)dd));
                free(h1); free(h2);
            }
            nn_scope_end(NULL);
        }
    {   /* f32 <-> f16/bf16 from views that start 1 to 9 elements in (unaligned for the eight-wide kernels) */
        static const nn_dtype lo[2] = {NN_BF16, NN_F16};
        int off, d, bad = 0;
        for (d = 0; d < 2; d++)
            for (off = 1; off <= 9; off += 4) {
                nn_tensor *vc, *vg, *h;
                float *a, *b;
                nn_scope_begin();
                vc = nn_slice(nn_cast(src, lo[d]), 0, off, n);
                vg = nn_slice(nn_to(nn_cast(src, lo[d]), NN_CUDA), 0, off, n);
                a = nn_f32_data(nn_cast(vc, NN_F32));
                h = nn_to(nn_cast(vg, NN_F32), NN_CPU);
                b = nn_f32_data(h);
                for (i = 0; i < n - off; i++) bad += memcmp(&a[i], &b[i], 4) != 0 && a[i] == a[i];
                h = nn_to(nn_cast(nn_slice(nn_to(src, NN_CUDA), 0, off, n), lo[d]), NN_CPU);
                vc = nn_cast(nn_slice(src, 0, off, n), lo[d]);
                bad += memcmp(h->data, vc->data, (size_t)(n - off) * 2) != 0;
                nn_scope_end(NULL);
            }
        CHECK(bad == 0, "casts of offset views: %d differences from the CPU", bad);
    }
    nn_tensor_free(src);
}

/* [ops:conv] through nn.h's ops: group_norm, conv2d, upsample, avg and adaptive pools on both devices */
typedef struct { int groups, st[2], pd[2], dl[2], kind, a, b, c; } vargs;
/* a conv case's arguments and random inputs (x, w, and a bias when c[12]) from a row {N, C, H, W, O, kh, kw,
   stride h, stride w, pad, dil, groups, bias, ...} */
static void conv_case(const int *c, vargs *a, nn_tensor *in[3]) {
    int64_t xs[4], wsz[4], bs = c[4];
    memset(a, 0, sizeof *a);
    a->st[0] = c[7]; a->st[1] = c[8]; a->pd[0] = c[9]; a->pd[1] = c[9]; a->dl[0] = c[10]; a->dl[1] = c[10];
    a->groups = c[11];
    xs[0] = c[0]; xs[1] = c[1]; xs[2] = c[2]; xs[3] = c[3];
    wsz[0] = c[4]; wsz[1] = c[1] / c[11]; wsz[2] = c[5]; wsz[3] = c[6];
    in[0] = rnd(4, xs, -1, 1); in[1] = rnd(4, wsz, -1, 1); in[2] = c[12] ? rnd(1, &bs, -1, 1) : NULL;
}
static nn_tensor *f_group_norm(void *c, nn_tensor **in) { return nn_group_norm(in[0], ((vargs *)c)->groups, in[1], in[2], 1e-5); }
static nn_tensor *f_conv2d(void *c, nn_tensor **in) {
    vargs *a = (vargs *)c;
    return nn_conv2d_ex(in[0], in[1], in[2], a->st, a->pd, a->dl, a->groups);
}
/* conv2d under autocast (a.kind: the dtype): the CPU emulates, the GPU runs dt tensors (tensor cores where the
   channel counts allow, im2col + cuBLAS elsewhere) and must return dt */
static nn_tensor *f_conv2d_ac(void *c, nn_tensor **in) {
    vargs *a = (vargs *)c;
    nn_tensor *y;
    nn_autocast_begin((nn_dtype)a->kind);
    y = nn_conv2d_ex(in[0], in[1], in[2], a->st, a->pd, a->dl, a->groups);
    nn_autocast_end();
    if (in[0]->device == NN_CUDA)
        CHECK(y->dtype == (nn_dtype)a->kind, "autocast conv2d on the GPU returns %s", nn_dtype_name(y->dtype));
    return nn_cast(y, NN_F32);
}
static nn_tensor *f_pool(void *c, nn_tensor **in) {
    vargs *a = (vargs *)c;
    if (a->kind == 0) return nn_upsample_nearest2d(in[0], a->a, a->b);
    if (a->kind == 1) return nn_avg_pool2d(in[0], a->a, a->b, a->c);
    return nn_adaptive_avg_pool2d(in[0], a->a, a->b);
}

int nn__cuda_group_norm_threads(int T);
static void test_group_norm(void) {
    /* (groups of 2 elements give a gradient that is exactly 0 up to rounding: no relative error to measure).
       Shapes 4 on have planes of a multiple of 4 pixels: the kernels' float4 paths (shape 9's forward on blocks of
       1024 threads). Each shape runs on the rule's blocks and on blocks of 96 threads (nn__cuda_group_norm_threads),
       which cut a group's float4s into steps that end mid-channel and leave some of a step's four loads (the
       backward's two) past the channel's end */
    static const int64_t shapes[][4] = {{2, 6, 5, 7}, {3, 32, 17, 9}, {1, 4, 1, 3}, {2, 64, 33, 33}, {2, 32, 8, 12},
                                        {1, 256, 16, 16}, {2, 64, 32, 32}, {1, 6, 32, 64}, {2, 6, 64, 128}, {1, 4, 96, 96}};
    static const int groups[] = {3, 8, 2, 32, 8, 32, 4, 2, 2, 1};
    static const int grad[3] = {1, 1, 1};
    const int ns = (int)(sizeof groups / sizeof groups[0]);
    int s, t;
    for (s = 0; s < ns; s++)
        for (t = 0; t < 2; t++) {
            int64_t C = shapes[s][1];
            char what[80];
            vargs a;
            nn_tensor *in[3];
            memset(&a, 0, sizeof a);
            a.groups = groups[s];
            nn__cuda_group_norm_threads(t ? 96 : 0);
            in[0] = rnd(4, shapes[s], -2, 3); in[1] = rnd(1, &C, 0.5, 1.5); in[2] = rnd(1, &C, -1, 1);
            snprintf(what, sizeof what, "group_norm shape %d%s", s, t ? " (96 threads)" : "");
            compare(what, f_group_norm, &a, 3, in, grad, TOL_F32);
            nn_tensor_free(in[0]); nn_tensor_free(in[1]); nn_tensor_free(in[2]);
        }
    nn__cuda_group_norm_threads(0);
}

/* conv2d under autocast, bf16 and f16, against the CPU's emulation (TOL_LOW). The shapes reach every path of
   nn_cuda.cu: tensor-core forward (Cin % 32), dgrad (Cout % 32) and wgrad (Cin, Cout % 8) with strides 1 and 2
   (also per axis), dilation, 1x1 and 5x3 kernels, pixel counts off the 128-wide tiles, Cout over one 128-row
   tile, K split over blocks (wgrad always; forward and dgrad when their tiles are few: cases 1, 5, and 11 with
   an odd pixel count: the partials' rows are odd-sized); FPROP's weight layout in two channel slices (case 12:
   7x7 over 352 channels); and the im2col fallback (Cin 3, groups, Cout 4) in low precision. */
static void test_conv_autocast(void) {
    /* N C H W, O kh kw, stride h, stride w, pad, dil, groups, bias */
    static const int cs[][13] = {{2, 32, 9, 11, 64, 3, 3, 1, 1, 1, 1, 1, 1},   {1, 64, 24, 24, 256, 3, 3, 1, 1, 1, 1, 1, 1},
                                 {3, 64, 16, 16, 40, 3, 3, 2, 2, 1, 1, 1, 1},
                                 {2, 96, 13, 7, 32, 1, 1, 1, 1, 0, 1, 1, 0},   {2, 32, 20, 20, 32, 3, 3, 2, 2, 1, 1, 1, 1},
                                 {1, 160, 40, 40, 136, 3, 3, 1, 1, 1, 1, 1, 1}, {2, 32, 12, 12, 32, 3, 3, 1, 1, 2, 2, 1, 1},
                                 {2, 32, 11, 9, 48, 5, 3, 2, 1, 2, 1, 1, 1},   {2, 3, 11, 13, 8, 3, 3, 1, 1, 1, 1, 1, 1},
                                 {2, 64, 10, 10, 64, 3, 3, 1, 1, 1, 1, 2, 1},  {4, 128, 16, 16, 4, 3, 3, 1, 1, 1, 1, 1, 1},
                                 {1, 256, 7, 7, 256, 3, 3, 1, 1, 1, 1, 1, 1},  {1, 352, 9, 9, 32, 7, 7, 1, 1, 3, 1, 1, 1}};
    static const nn_dtype dts[2] = {NN_BF16, NN_F16};
    static const int grad[3] = {1, 1, 1};
    int k, d;
    for (d = 0; d < 2; d++)
        for (k = 0; k < 13; k++) {
            const int *c = cs[k];
            char what[64];
            vargs a;
            nn_tensor *in[3];
            if (quick && k > 5) continue;
            conv_case(c, &a, in);
            a.kind = (int)dts[d];
            snprintf(what, sizeof what, "conv2d autocast %s case %d", nn_dtype_name(dts[d]), k);
            compare(what, f_conv2d_ac, &a, 3, in, grad, TOL_LOW);
            nn_tensor_free(in[0]); nn_tensor_free(in[1]); if (in[2]) nn_tensor_free(in[2]);
        }
}

/* conv2d in f32 with TF32 on (TOL_TF32) and off (TOL_F32), on shapes that reach every path of nn_cuda.cu's f32
   conv: the implicit-GEMM kernels with f32 operands (forward Cin % 16, dgrad Cout % 16, wgrad Cin and Cout % 4)
   with strides 1 and 2 (also per axis), padding, dilation, 1x1 and 5x3 kernels, pixel counts off the 128-wide
   tiles, Cout over one 128-row tile, K split over blocks (cases 1, 10; 13 with an odd pixel count: 7x7, one
   image), FPROP's weight layout in two channel slices (case 14: 7x7 over 176 channels), and the im2col + cuBLAS
   fallback (Cin 3, Cin 20, Cout 18 / 40 / 4, groups) for each product. TF32 off runs the kernels in 3xTF32
   (im2col + cuBLAS f32 elsewhere) and must meet TOL_F32, which one TF32 product a term (2.6e-4 here, measured
   with TF32 on) fails by far. Case 0 again with a NaN input pixel: the same outputs and gradients are NaN as on
   the CPU. */
static void test_conv_f32_kernels(void) {
    /* N C H W, O kh kw, stride h, stride w, pad, dil, groups, bias */
    static const int cs[][13] = {{2, 16, 9, 11, 32, 3, 3, 1, 1, 1, 1, 1, 1},   {1, 64, 24, 24, 144, 3, 3, 1, 1, 1, 1, 1, 1},
                                 {3, 32, 16, 16, 40, 3, 3, 2, 2, 1, 1, 1, 1},  {2, 48, 13, 7, 16, 1, 1, 1, 1, 0, 1, 1, 0},
                                 {2, 16, 20, 20, 16, 3, 3, 2, 2, 1, 1, 1, 1},  {2, 16, 12, 12, 32, 3, 3, 1, 1, 2, 2, 1, 1},
                                 {2, 32, 11, 9, 48, 5, 3, 2, 1, 2, 1, 1, 1},   {2, 20, 11, 13, 12, 3, 3, 1, 1, 1, 1, 1, 1},
                                 {2, 16, 9, 9, 18, 3, 3, 1, 1, 1, 1, 1, 1},    {4, 128, 16, 16, 4, 3, 3, 1, 1, 1, 1, 1, 1},
                                 {1, 160, 40, 40, 136, 3, 3, 1, 1, 1, 1, 1, 1}, {2, 3, 11, 13, 8, 3, 3, 1, 1, 1, 1, 1, 1},
                                 {2, 32, 10, 10, 32, 3, 3, 1, 1, 1, 1, 2, 1},  {1, 256, 7, 7, 256, 3, 3, 1, 1, 1, 1, 1, 1},
                                 {1, 176, 9, 9, 32, 7, 7, 1, 1, 3, 1, 1, 1}};
    static const int grad[3] = {1, 1, 1};
    int k, tf;
    for (tf = 1; tf >= 0; tf--)
        for (k = 0; k < 15; k++) {
            const int *c = cs[k];
            char what[64];
            vargs a;
            nn_tensor *in[3];
            if (quick && k > 5) continue;
            conv_case(c, &a, in);
            snprintf(what, sizeof what, "conv2d %s case %d", tf ? "tf32" : "f32", k);
            nn_cuda_set_conv_tf32(tf);
            compare(what, f_conv2d, &a, 3, in, grad, tf ? TOL_TF32 : TOL_F32);
            if (k == 0) {   /* a NaN pixel must reach the same outputs as on the CPU (and no others) */
                nn_f32_data(in[0])[37] = NAN;
                snprintf(what, sizeof what, "conv2d %s case %d, a NaN input", tf ? "tf32" : "f32", k);
                compare(what, f_conv2d, &a, 3, in, grad, tf ? TOL_TF32 : TOL_F32);
            }
            nn_cuda_set_conv_tf32(0);
            nn_tensor_free(in[0]); nn_tensor_free(in[1]); if (in[2]) nn_tensor_free(in[2]);
        }
}

/* f32 conv2d with TF32 on where nn_cuda.cu's wgmma kernel (conv_wg's k_conv_wgmma on TF32, sm_90a) takes the
   forward (Cin % 32, Cout >= 128, Cin kh kw >= 256) and the dgrad (Cout % 32, Cin >= 128, Cout kh kw >= 256,
   power-of-two strides), TOL_TF32 against the CPU: column ef / ed says which of the two each case takes there,
   and on an sm_90a device (NN_CONV_WG unset, or holding f / d) the test checks that exactly those launched it
   (nn__cuda_conv_wg_tf32_runs). Odd planes (the scalar epilogue), M tails (160, 129 rows), channels multiples of
   32 but not 64, stride 2 (the dgrad's taps off the stride grid), stride per axis with a 5x3 kernel, padding with
   dilation 2, 1x1, K split over blocks (cases 6 and 8: odd M x N partials), and the fallbacks: Cin = Cout = 144
   (multiples of 16, not 32), stride 3 (dgrad), M under 128 rows. Case 0 again with a NaN input pixel, and with
   TF32 off (3xTF32 on conv_cu: no wgmma launch, TOL_F32). All of it twice: on the tiles the model picks (128 x 256,
   or 128 x 128 where that leaves fewer SMs idle), then on 128 x 128 tiles (nn__cuda_conv_wg_tile). */
long long nn__cuda_conv_wg_tf32_runs(int mode);
long long nn__cuda_conv_wg_tile(int nb);
long long nn__cuda_conv_tf32_wgrad(int path);
static void test_conv_tf32_wg(void) {
    /* N C H W, O kh kw, stride h, stride w, pad, dil, groups, bias, ef, ed */
    static const int cs[][15] = {
        {2, 128, 13, 11, 128, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1}, {2, 96, 15, 15, 160, 3, 3, 1, 1, 1, 1, 1, 1, 1, 0},
        {2, 160, 15, 15, 96, 3, 3, 1, 1, 1, 1, 1, 1, 0, 1},  {2, 128, 17, 17, 128, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1},
        {2, 256, 9, 9, 256, 1, 1, 1, 1, 0, 1, 1, 0, 1, 1},   {2, 128, 12, 12, 192, 3, 3, 1, 1, 2, 2, 1, 1, 1, 1},
        {1, 512, 8, 8, 128, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1},   {2, 128, 11, 9, 128, 5, 3, 1, 2, 2, 1, 1, 1, 1, 1},
        {1, 256, 7, 7, 129, 3, 3, 1, 1, 1, 1, 1, 1, 1, 0},   {2, 144, 9, 9, 144, 3, 3, 1, 1, 1, 1, 1, 1, 0, 0},
        {2, 128, 16, 16, 128, 3, 3, 3, 3, 1, 1, 1, 1, 1, 0}, {3, 32, 16, 16, 128, 3, 3, 1, 1, 1, 1, 1, 1, 1, 0}};
    static const int grad[3] = {1, 1, 1};
    const char *e = getenv("NN_CONV_WG");
    int nn__cuda_wgmma(void);
    const int wg = nn__cuda_wgmma(), on_f = wg && (!e || !*e || strchr(e, 'f')), on_d = wg && (!e || !*e || strchr(e, 'd'));
    int k, i, run, narrow;
    printf("conv2d: TF32 wgmma kernel (sm_90a) %s\n", on_f || on_d ? "in use" : wg ? "off (NN_CONV_WG)" : "not available on this device");
    for (narrow = 0; narrow < 2; narrow++)   /* the tiles the model picks, then 128-wide tiles */
    for (k = 0; k < 12; k++)
        for (run = 0; run < (k == 0 ? 3 : 1); run++) {   /* case 0: plain, a NaN pixel, TF32 off */
            const int *c = cs[k], tf = run < 2;
            long long f0 = nn__cuda_conv_wg_tf32_runs(0), d0 = nn__cuda_conv_wg_tf32_runs(1), n0 = nn__cuda_conv_wg_tile(narrow ? 128 : 0);
            char what[80];
            vargs a;
            nn_tensor *in[3];
            if (quick && (narrow || (k != 0 && k != 6))) continue;
            conv_case(c, &a, in);
            if (run == 1) nn_f32_data(in[0])[37] = NAN;
            snprintf(what, sizeof what, "conv2d %s wg case %d%s%s", tf ? "tf32" : "f32", k, run == 1 ? ", a NaN input" : "",
                     narrow ? ", 128-wide tiles" : "");
            nn_cuda_set_conv_tf32(tf);
            compare(what, f_conv2d, &a, 3, in, grad, tf ? TOL_TF32 : TOL_F32);
            nn_cuda_set_conv_tf32(0);
            {
                const long long df = nn__cuda_conv_wg_tf32_runs(0) - f0, dd = nn__cuda_conv_wg_tf32_runs(1) - d0;
                const int wf = tf && on_f && c[13], wd = tf && on_d && c[14];
                if (verbose) printf("  %s: wgmma forward %lld, dgrad %lld launches\n", what, df, dd);
                CHECK(wf ? df > 0 : df == 0, "%s: %lld TF32 wgmma forward launches, want %s", what, df, wf ? "some" : "none");
                CHECK(wd ? dd > 0 : dd == 0, "%s: %lld TF32 wgmma dgrad launches, want %s", what, dd, wd ? "some" : "none");
                if (narrow) CHECK((wf || wd) ? nn__cuda_conv_wg_tile(-1) > n0 : nn__cuda_conv_wg_tile(-1) == n0,
                                  "%s: %lld launches of 128-wide tiles", what, nn__cuda_conv_wg_tile(-1) - n0);
            }
            nn__cuda_conv_wg_tile(0);
            nn_tensor_free(in[0]); nn_tensor_free(in[1]); if (in[2]) nn_tensor_free(in[2]);
        }
    nn__cuda_conv_wg_tile(0);
    /* the TF32 weight gradient on each of its two products (nn__cuda_conv_tf32_wgrad: 1 conv_cu's mma.sync kernel,
       2 im2col + cuBLAS), whichever the rule would pick: the plain case, stride 2, 1x1, padding with dilation 2, the K
       split, 5x3 with a stride per axis, the 144-channel case */
    for (i = 0; i < 7; i++) {
        static const int wk[7] = {0, 3, 4, 5, 6, 7, 9};
        int path;
        k = wk[i];
        if (quick && k != 0) continue;
        for (path = 1; path <= 2; path++) {
            const int *c = cs[k];
            const long long g0 = nn__cuda_conv_tf32_wgrad(path);
            char what[80];
            vargs a;
            nn_tensor *in[3];
            conv_case(c, &a, in);
            snprintf(what, sizeof what, "conv2d tf32 wg case %d, weight gradient on %s", k, path == 1 ? "mma.sync" : "cuBLAS");
            nn_cuda_set_conv_tf32(1);
            compare(what, f_conv2d, &a, 3, in, grad, TOL_TF32);
            nn_cuda_set_conv_tf32(0);
            CHECK(path == 2 ? nn__cuda_conv_tf32_wgrad(-1) > g0 : nn__cuda_conv_tf32_wgrad(-1) == g0,
                  "%s: %lld weight gradients on cuBLAS", what, nn__cuda_conv_tf32_wgrad(-1) - g0);
            nn_tensor_free(in[0]); nn_tensor_free(in[1]); if (in[2]) nn_tensor_free(in[2]);
        }
    }
    nn__cuda_conv_tf32_wgrad(0);
}

/* f32 conv2d runs on TF32 unless told otherwise, as PyTorch's (torch.backends.cudnn.allow_tf32 is True by default;
   its matmul's switch is off, as nn_cuda_set_tf32's): with the switches untouched, a conv's error against the CPU
   is TF32's (above what 3xTF32 or cuBLAS's f32 give, 1e-6 here) and a matmul's is f32's. Runs first, before main
   turns conv TF32 off for the f32 comparisons. */
static void test_tf32_defaults(void) {
    int64_t xs[4] = {2, 32, 12, 12}, ws[4] = {32, 32, 3, 3}, as[2] = {64, 96}, bs[2] = {96, 48};
    nn_tensor *x = rnd(4, xs, -1, 1), *w = rnd(4, ws, -1, 1), *ma = rnd(2, as, -1, 1), *mb = rnd(2, bs, -1, 1);
    int prev = nn_set_grad_enabled(0);
    double ec, em;
    nn_scope_begin();
    ec = rel_err(nn_conv2d(nn_to(x, NN_CUDA), nn_to(w, NN_CUDA), NULL, 1, 1, 1, 1), nn_conv2d(x, w, NULL, 1, 1, 1, 1));
    em = rel_err(nn_matmul(nn_to(ma, NN_CUDA), nn_to(mb, NN_CUDA)), nn_matmul(ma, mb));
    nn_scope_end(NULL);
    nn_set_grad_enabled(prev);
    if (verbose) printf("  f32 defaults: conv2d rel err %.3g (TF32), matmul %.3g (f32)\n", ec, em);
    CHECK(ec > 2e-5 && ec < TOL_TF32, "f32 conv2d by default: relative error %.3g, want TF32's (2e-5 .. %.0e)", ec, TOL_TF32);
    CHECK(em < TOL_F32, "f32 matmul by default: relative error %.3g, want f32's (< %.0e)", em, TOL_F32);
    nn_tensor_free(x); nn_tensor_free(w); nn_tensor_free(ma); nn_tensor_free(mb);
}

/* conv2d under autocast where nn_cuda.cu's wgmma kernels (conv_wg, sm_90a) take the forward (Cin % 64, Cout >= 128:
   every case here), the dgrad (Cout % 64, Cin >= 128, power-of-two strides, K = Cout kh kw >= 512: all but cases
   4 and 7) and the wgrad (Cin, Cout % 64, Cout >= 128: all but case 7): pixel counts off the 256-wide tiles and
   across images, odd planes (the scalar epilogue), M tails (320 and 192 rows), stride 2 (the dgrad's taps off
   the stride grid), stride per axis with a 5x3 kernel, padding with dilation 2, 1x1, K split over blocks (case
   5: forward and dgrad; case 7: the forward's odd M x N partials), both dtypes, on the tiles the model picks and
   again on 128 x 128 tiles (nn__cuda_conv_wg_tile: two tile rows a warp store in the epilogue).
   On other devices (or NN_CONV_WG=0) the same cases run conv_cu. */
static void test_conv_autocast_wg(void) {
    /* N C H W, O kh kw, stride h, stride w, pad, dil, groups, bias */
    static const int cs[][13] = {{2, 128, 13, 11, 128, 3, 3, 1, 1, 1, 1, 1, 1}, {1, 192, 20, 20, 320, 3, 3, 1, 1, 1, 1, 1, 1},
                                 {2, 128, 17, 17, 128, 3, 3, 2, 2, 1, 1, 1, 1}, {2, 128, 12, 12, 192, 3, 3, 1, 1, 2, 2, 1, 1},
                                 {2, 512, 9, 9, 128, 1, 1, 1, 1, 0, 1, 1, 0},   {1, 512, 8, 8, 128, 3, 3, 1, 1, 1, 1, 1, 1},
                                 {2, 128, 11, 9, 128, 5, 3, 1, 2, 2, 1, 1, 1},  {1, 256, 7, 7, 129, 3, 3, 1, 1, 1, 1, 1, 1}};
    static const nn_dtype dts[2] = {NN_BF16, NN_F16};
    static const int grad[3] = {1, 1, 1};
    int k, d;
    {
        int nn__cuda_wgmma(void);
        const char *e = getenv("NN_CONV_WG");
        printf("conv2d: wgmma kernel (sm_90a) %s\n", e && strcmp(e, "0") == 0 ? "off (NN_CONV_WG=0)"
                                                     : nn__cuda_wgmma() ? "in use" : "not available on this device");
    }
    for (d = 0; d < 4; d++)   /* both dtypes on the tiles the model picks, then on 128-wide tiles (d >= 2) */
        for (k = 0; k < 8; k++) {
            const int *c = cs[k];
            char what[80];
            vargs a;
            nn_tensor *in[3];
            if (quick && k != 0 && k != 5) continue;
            conv_case(c, &a, in);
            a.kind = (int)dts[d & 1];
            snprintf(what, sizeof what, "conv2d autocast wg %s case %d%s", nn_dtype_name(dts[d & 1]), k, d >= 2 ? ", 128-wide tiles" : "");
            nn__cuda_conv_wg_tile(d >= 2 ? 128 : 0);
            compare(what, f_conv2d_ac, &a, 3, in, grad, TOL_LOW);
            nn__cuda_conv_wg_tile(0);
            nn_tensor_free(in[0]); nn_tensor_free(in[1]); if (in[2]) nn_tensor_free(in[2]);
        }
}

/* the wgmma wgrad's schedules (nn_cuda.cu conv_wg::wgrad) on the channel counts of bench/cuda_bench.c's bf16 rows
   at small images: split-K, and stream-K on the block count it would take and on forced odd counts (tiles straddling several blocks, ranges ending mid-tile); pixel
   counts off the 64-pixel K tiles, M and N tails (320 rows, 1728 columns), stride 2, 1x1. Stream-K sums the
   straddling tiles' parts inside the kernel in a fixed order: two runs must give the same bytes. */
static void test_conv_wgrad_sched(void) {
    void nn__cuda_conv_wgrad_schedule(int sched, int blocks);
    /* N C H W, O k, stride, pad */
    static const int cs[][8] = {{2, 256, 9, 7, 256, 3, 1, 1},    {2, 512, 11, 13, 512, 3, 1, 1},
                                {1, 1024, 10, 10, 1024, 3, 1, 1}, {2, 192, 15, 15, 320, 3, 2, 1},
                                {2, 512, 9, 9, 256, 1, 1, 0}};
    /* schedule (1 split-K, 2 stream-K), forced stream-K blocks (0: as the model would) */
    static const int sc[][2] = {{1, 0}, {2, 0}, {2, 7}, {2, 13}, {2, 11}};
    static const int grad[3] = {1, 1, 1};
    int k, s;
    for (k = 0; k < 5; k++) {
        const int *c = cs[k];
        int64_t xs[4] = {c[0], c[1], c[2], c[3]}, wsz[4] = {c[4], c[1], c[5], c[5]}, bs = c[4];
        nn_tensor *in[3];
        vargs a;
        if (quick && k != 1) continue;
        memset(&a, 0, sizeof a);
        a.st[0] = a.st[1] = c[6]; a.pd[0] = a.pd[1] = c[7]; a.dl[0] = a.dl[1] = 1; a.groups = 1;
        a.kind = k == 4 ? (int)NN_F16 : (int)NN_BF16;
        in[0] = rnd(4, xs, -1, 1); in[1] = rnd(4, wsz, -1, 1); in[2] = rnd(1, &bs, -1, 1);
        for (s = 0; s < 5; s++) {
            char what[80];
            snprintf(what, sizeof what, "conv2d wgrad schedule %d/%d case %d", sc[s][0], sc[s][1], k);
            nn__cuda_conv_wgrad_schedule(sc[s][0], sc[s][1]);
            compare(what, f_conv2d_ac, &a, 3, in, grad, TOL_LOW);
            if (sc[s][0] >= 2) {   /* the same bytes twice */
                nn_tensor *gw[2], *gc = NULL;
                int r;
                nn_scope_begin();
                for (r = 0; r < 2; r++) {
                    nn_tensor *x = nn_to(in[0], NN_CUDA), *w = nn_to(in[1], NN_CUDA), *y, *g, *xin[3];
                    nn_requires_grad(w, 1);
                    xin[0] = x; xin[1] = w; xin[2] = NULL;
                    y = f_conv2d_ac(&a, xin);
                    if (!gc) gc = rnd(y->ndim, y->shape, -1, 1);   /* one upstream gradient for both runs */
                    g = nn_to(gc, NN_CUDA);
                    nn_backward_with(1, &y, &g);
                    gw[r] = nn_clone(w->grad);
                    nn_zero_grad(w);
                }
                CHECK(same_bits(gw[0], gw[1]), "%s: two runs give different weight gradients", what);
                nn_scope_end(NULL);
            }
        }
        nn_tensor_free(in[0]); nn_tensor_free(in[1]); nn_tensor_free(in[2]);
    }
    nn__cuda_conv_wgrad_schedule(0, 0);
}

static void test_conv(void) {
    /* N C H W, O kh kw, stride, pad, dil, groups, bias */
    static const int cs[][12] = {{2, 3, 11, 13, 5, 3, 3, 1, 1, 1, 1, 1}, {3, 8, 17, 9, 4, 3, 3, 2, 1, 1, 2, 1},
                                 {2, 6, 15, 15, 6, 5, 3, 1, 2, 2, 3, 1}, {4, 16, 7, 7, 8, 1, 1, 1, 0, 1, 1, 0},
                                 {1, 4, 9, 10, 4, 3, 3, 2, 0, 1, 4, 1}, {2, 5, 6, 7, 7, 2, 4, 3, 1, 1, 1, 1}};
    static const int grad[3] = {1, 1, 1};
    int k;
    for (k = 0; k < 6; k++) {
        const int *c = cs[k];
        int64_t xs[4], wsz[4], bs = c[4];
        char what[64];
        vargs a;
        nn_tensor *in[3];
        memset(&a, 0, sizeof a);
        a.st[0] = c[7]; a.st[1] = c[7] == 3 ? 2 : c[7]; a.pd[0] = c[8]; a.pd[1] = c[8]; a.dl[0] = c[9]; a.dl[1] = c[9];
        a.groups = c[10];
        xs[0] = c[0]; xs[1] = c[1]; xs[2] = c[2]; xs[3] = c[3];
        wsz[0] = c[4]; wsz[1] = c[1] / c[10]; wsz[2] = c[5]; wsz[3] = c[6];
        in[0] = rnd(4, xs, -1, 1); in[1] = rnd(4, wsz, -1, 1); in[2] = c[11] ? rnd(1, &bs, -1, 1) : NULL;
        snprintf(what, sizeof what, "conv2d case %d", k);
        compare(what, f_conv2d, &a, 3, in, grad, TOL_F32);
        nn_tensor_free(in[0]); nn_tensor_free(in[1]); if (in[2]) nn_tensor_free(in[2]);
    }
    test_conv_autocast();
    test_conv_f32_kernels();
    test_conv_tf32_wg();
    test_conv_autocast_wg();
    test_conv_wgrad_sched();
    for (k = 0; k < 9; k++) {   /* 0-2 upsample, 3-5 avg_pool, 6-8 adaptive */
        static const int64_t xs[3][4] = {{2, 3, 5, 7}, {1, 2, 9, 11}, {3, 4, 16, 16}};
        static const int64_t os[3][2] = {{10, 14}, {17, 23}, {5, 3}};
        static const int pool[3][3] = {{2, 2, 0}, {3, 2, 1}, {4, 3, 2}};
        int i = k % 3;
        char what[64];
        vargs a;
        nn_tensor *x = rnd(4, xs[i], -1, 1);
        memset(&a, 0, sizeof a);
        a.kind = k / 3;
        if (k < 3) { a.a = (int)os[i][0]; a.b = (int)os[i][1]; }
        else if (k < 6) { a.a = pool[i][0]; a.b = pool[i][1]; a.c = pool[i][2]; }
        else { a.a = (int)(os[(i + 2) % 3][0] % 7 + 1); a.b = (int)(os[(i + 1) % 3][1] % 6 + 2); }
        snprintf(what, sizeof what, "%s case %d", k < 3 ? "upsample_nearest2d" : k < 6 ? "avg_pool2d" : "adaptive_avg_pool2d", i);
        compare(what, f_pool, &a, 1, &x, grad, TOL_F32);
        nn_tensor_free(x);
    }
    {   /* adaptive pooling as seed 001 pools its patch grid (73 -> 32, more planes than one grid row of the kernels
           takes), and pooling up by more than the backward keeps in registers (2 -> 11: 6 windows a pixel) */
        static const int64_t xs[2][4] = {{2, 19, 73, 73}, {3, 2, 2, 5}};
        static const int os[2][2] = {{32, 32}, {11, 13}};
        for (k = 0; k < 2; k++) {
            char what[64];
            vargs a;
            nn_tensor *x = rnd(4, xs[k], -1, 1);
            memset(&a, 0, sizeof a);
            a.kind = 2; a.a = os[k][0]; a.b = os[k][1];
            snprintf(what, sizeof what, "adaptive_avg_pool2d %dx%d", os[k][0], os[k][1]);
            compare(what, f_pool, &a, 1, &x, grad, TOL_F32);
            nn_tensor_free(x);
        }
    }
}

/* multi-tensor AdamW and clipping against a CPU loop with wip/train.h's arithmetic */
static float lerpf_(float s, float e, float w) { return fabsf(w) < 0.5f ? fmaf(w, e - s, s) : fmaf(w - 1.0f, e - s, e); }
static void test_optim(void) {
    enum { NT = 5 };
    int64_t sizes[NT] = {1, 33, 70001, 4096, 200003};
    float *p[NT], *g[NT], *m[NT], *v[NT], *pd[NT], *gd[NT], *md[NT], *vd[NT];
    int64_t steps[NT];
    double wd[NT], lr = 1e-3, b1 = 0.9, b2 = 0.999, eps = 1e-8, err = 0, den = 0;
    int k, step;
    int64_t i;
    nn_tensor *ts[NT * 4];
    nn_mem_trim(NN_CUDA);
    for (k = 0; k < NT; k++) {
        nn_tensor *t;
        for (i = 0; i < 4; i++) {
            t = rnd(1, &sizes[k], -1, 1);
            if (i >= 2) nn_fill_(t, 0);
            ts[k * 4 + i] = nn_to(t, NN_CUDA);
            if (i == 0) p[k] = nn_f32_data(t); else if (i == 1) g[k] = nn_f32_data(t); else if (i == 2) m[k] = nn_f32_data(t); else v[k] = nn_f32_data(t);
        }
        pd[k] = (float *)ts[k * 4]->data; gd[k] = (float *)ts[k * 4 + 1]->data;
        md[k] = (float *)ts[k * 4 + 2]->data; vd[k] = (float *)ts[k * 4 + 3]->data;
        wd[k] = k == 1 ? 0.0 : 0.01;
        steps[k] = 0;
    }
    for (step = 1; step <= 3; step++) {
        for (k = 0; k < NT; k++) {
            double bc1 = 1.0 - pow(b1, step), bc2 = 1.0 - pow(b2, step);
            float decay = (float)(1.0 - lr * wd[k]), w1 = (float)(1.0 - b1), b2f = (float)b2, w2 = (float)(1.0 - b2);
            float bc2f = (float)pow(bc2, 0.5), epsf = (float)eps, ns = (float)(-(lr / bc1));
            steps[k] = step;
            for (i = 0; i < sizes[k]; i++) {
                float gi = g[k][i], pi = p[k][i], vi;
                if (wd[k] != 0) pi = pi * decay;
                m[k][i] = lerpf_(m[k][i], gi, w1);
                vi = fmaf(w2 * gi, gi, v[k][i] * b2f);
                v[k][i] = vi;
                p[k][i] = pi + (ns * m[k][i]) / (sqrtf(vi) / bc2f + epsf);
            }
        }
        nn__cuda_adamw_multi(NT, pd, (const float *const *)gd, md, vd, sizes, steps, wd, lr, b1, b2, eps, 0);
    }
    for (k = 0; k < NT; k++) {
        float *h = (float *)malloc(sizeof(float) * (size_t)sizes[k]);
        nn_to_host(ts[k * 4], h);
        for (i = 0; i < sizes[k]; i++) { err += ((double)h[i] - p[k][i]) * ((double)h[i] - p[k][i]); den += (double)p[k][i] * p[k][i]; }
        free(h);
    }
    CHECK(sqrt(err / den) < 1e-6, "adamw multi-tensor: relative error %.3g", sqrt(err / den));
    if (verbose) printf("  adamw multi-tensor rel err %.3g\n", sqrt(err / den));
    {
        double tot = 0, got, coef;
        for (k = 0; k < NT; k++) { double s = 0; for (i = 0; i < sizes[k]; i++) s += (double)g[k][i] * g[k][i]; tot += (double)(float)sqrt(s) * (float)sqrt(s); }
        tot = sqrt(tot);
        got = nn__cuda_clip_grad_norm(NT, gd, sizes, 1.0);
        CHECK(fabs(got - tot) <= 1e-5 * tot, "clip grad norm: total %.9g vs %.9g", got, tot);
        coef = 1.0 / (tot + 1e-6);
        err = 0; den = 0;
        for (k = 0; k < NT; k++) {
            float *h = (float *)malloc(sizeof(float) * (size_t)sizes[k]);
            nn_to_host(ts[k * 4 + 1], h);
            for (i = 0; i < sizes[k]; i++) { double r = g[k][i] * coef; err += (h[i] - r) * (h[i] - r); den += r * r; }
            free(h);
        }
        CHECK(sqrt(err / den) < 1e-6, "clip grad norm: scaled grads relative error %.3g", sqrt(err / den));
    }
    for (k = 0; k < NT * 4; k++) nn_tensor_free(ts[k]);
}

/* nn_sdpa on the GPU (flash attention) against the CPU op: same inputs (rounded to bf16/f16 for the low-precision
   kernels), same generator state (so the same dropout mask), same upstream gradient. Bounds: f32 2e-5 (the
   CPU's tiles and the GPU's sum in different orders; f32 runs on tensor cores in 3xTF32, ~2^-21 per product, or
   above D = 128 in the SIMT kernels), f16 6e-3, bf16 3e-2 (O, dO
   and the probabilities are rounded to the dtype before the backward GEMMs, as every flash kernel does).
   A gradient that is exactly zero on the CPU (Lk = 1: P = 1, dS = 0; a bias constant along keys) is measured
   against the norm of dV instead of its own. */
#define TOL_SDPA_F32 2e-5
#define TOL_SDPA_F16 6e-3
#define TOL_SDPA_BF16 3e-2
static double worst_sdpa[3];
typedef struct {
    const char *name;
    int64_t B, H, Lq, Lk, D, Dv;
    int mask;        /* 0 none, 1 random [B,H,Lq,Lk] with fully masked rows, 2 key padding [B,1,1,Lk] */
    int bias;        /* 0 none, 1 [B,1,Lq,Lk], 2 [B,H,Lq,Lk], 3 [1,H,1,Lk], 4 [B,H,Lq,1], 5 [Lq,Lk] */
    int bias_grad, causal;
    double p, scale;
    int f32_only;    /* head dims only the f32 path takes (not multiples of 8, or above 128) */
    int bias_lp;     /* the bias in the q dtype (rounded to it on the CPU side too), else f32 */
} sdpa_case;

static double sq_norm(nn_tensor *t) {
    float *h;
    double s = 0;
    int64_t i;
    if (!t) return 0;
    h = host_f32(t);
    for (i = 0; i < t->numel; i++) s += (double)h[i] * h[i];
    free(h);
    return sqrt(s);
}

static void sdpa_part(const char *what, const char *part, nn_tensor *gpu, nn_tensor *cpu, double ref, double tol, int di) {
    double e = rel_err(gpu, cpu), nc = sq_norm(cpu);
    /* A gradient that is zero in exact arithmetic (Lk = 1: softmax over one key is constant) comes out of
       the CPU as exact zeros or as rounding residue (~1e-8 of ||dV||, depending on the summation order);
       relative to itself the residue is meaningless, so then the error is measured against ||dV||. */
    if (ref > 0 && nc < 1e-6 * ref) e = (nc == 0 ? e : e * nc) / ref;   /* rel_err: absolute if nc == 0 */
    if (e > worst_sdpa[di] || e != e) worst_sdpa[di] = e;
    if (verbose) printf("  %-48s %-6s rel err %.3g\n", what, part, e);
    CHECK(e < tol, "%s %s: relative error %.3g (bound %.0e)", what, part, e, tol);
}

static nn_tensor *rounded(nn_tensor *x, nn_dtype dt) {   /* x rounded to dt, back in f32 (CPU) */
    return dt == NN_F32 ? nn_clone(x) : nn_cast(nn_cast(x, dt), NN_F32);
}

/* sdpa_packed: the GPU side runs nn_sdpa_heads on [B,L,H*D] tensors (the kernels read and write that layout
   through strides); the CPU reference stays nn_sdpa on [B,H,L,D], its results packed for the comparison */
static int sdpa_packed;
static nn_tensor *pack_heads(nn_tensor *x) {   /* CPU [B,H,L,D] -> [B,L,H*D] */
    int perm[4] = {0, 2, 1, 3};
    int64_t s[3];
    s[0] = x->shape[0]; s[1] = x->shape[2]; s[2] = x->shape[1] * x->shape[3];
    return nn_reshape(nn_permute(nn_detach(x), perm), 3, s);
}
static nn_tensor *to_gpu_as(nn_tensor *x, nn_dtype dt) {   /* CPU f32 -> GPU dt, packed when sdpa_packed */
    if (sdpa_packed) x = pack_heads(x);
    return nn_to(dt == NN_F32 ? x : nn_cast(x, dt), NN_CUDA);
}

static void sdpa_run(const sdpa_case *c, nn_dtype dt) {
    static const char *dn[3] = {"f32", "f16", "bf16"};
    if (sdpa_only && !strstr(c->name, sdpa_only)) return;
    int di = dt == NN_F32 ? 0 : dt == NN_F16 ? 1 : 2;
    double tol = di == 0 ? TOL_SDPA_F32 : di == 1 ? TOL_SDPA_F16 : TOL_SDPA_BF16;
    int64_t qs[4] = {c->B, c->H, c->Lq, c->D}, ks[4] = {c->B, c->H, c->Lk, c->D}, vs[4] = {c->B, c->H, c->Lk, c->Dv};
    int64_t ms[4], bsz[4];
    int bnd = 4;
    char what[96];
    nn_tensor *q, *k, *v, *qc, *kc, *vc, *qg, *kg, *vg, *mc = NULL, *mg = NULL, *bc = NULL, *bg = NULL, *yc, *yg, *g, *gg;
    nn_sdpa_opts oc, og;
    nn_rng_state rs;
    snprintf(what, sizeof what, "sdpa%s %s %s", sdpa_packed ? "_heads" : "", c->name, dn[di]);
    nn_mem_trim(NN_CUDA);
    nn_scope_begin();
    q = rnd(4, qs, -1.5, 1.5); k = rnd(4, ks, -1.5, 1.5); v = rnd(4, vs, -1, 1);
    qc = rounded(q, dt); kc = rounded(k, dt); vc = rounded(v, dt);
    qg = to_gpu_as(qc, dt); kg = to_gpu_as(kc, dt); vg = to_gpu_as(vc, dt);
    if (c->mask) {
        int64_t i, n;
        uint8_t *m;
        ms[0] = c->B; ms[1] = c->mask == 1 ? c->H : 1; ms[2] = c->mask == 1 ? c->Lq : 1; ms[3] = c->Lk;
        n = ms[0] * ms[1] * ms[2] * ms[3];
        m = (uint8_t *)malloc((size_t)n + 1);
        for (i = 0; i < n; i++) {
            int64_t j = i % c->Lk, row = i / c->Lk;
            if (c->mask == 1) m[i] = (row % 7 == 3) ? 0 : (uint8_t)(nn_rng_uniform_at(99, (uint64_t)i) > 0.3f);
            else m[i] = j < c->Lk - c->Lk / 4 || j == 0;   /* the last quarter padded */
        }
        mc = nn_from_data(NN_BOOL, 4, ms, m);
        mg = nn_to(mc, NN_CUDA);
        free(m);
    }
    if (c->bias) {
        bsz[0] = c->bias == 3 ? 1 : c->B; bsz[1] = c->bias == 1 ? 1 : c->H; bsz[2] = c->bias == 3 ? 1 : c->Lq;
        bsz[3] = c->bias == 4 ? 1 : c->Lk;
        if (c->bias == 5) { bsz[0] = c->Lq; bsz[1] = c->Lk; bnd = 2; }
        bc = rnd(bnd, bsz, -2, 2);
        if (c->bias_lp && dt != NN_F32) {
            bc = rounded(bc, dt);
            bg = nn_to(nn_cast(bc, dt), NN_CUDA);
        } else {
            bg = nn_to(bc, NN_CUDA);
        }
        if (c->bias_grad) { nn_requires_grad(bc, 1); nn_requires_grad(bg, 1); }
    }
    nn_requires_grad(qc, 1); nn_requires_grad(kc, 1); nn_requires_grad(vc, 1);
    nn_requires_grad(qg, 1); nn_requires_grad(kg, 1); nn_requires_grad(vg, 1);
    memset(&oc, 0, sizeof oc);
    oc.mask = mc; oc.bias = bc; oc.causal = c->causal; oc.scale = c->scale; oc.dropout_p = c->p;
    og = oc; og.mask = mg; og.bias = bg;
    rs = nn_rng_get();
    yc = nn_sdpa(qc, kc, vc, &oc);
    nn_rng_set(rs);                        /* the same offset: the same dropout mask on both devices */
    yg = sdpa_packed ? nn_sdpa_heads(qg, kg, vg, (int)c->H, &og) : nn_sdpa(qg, kg, vg, &og);
    CHECK(nn_rng_get().offset == rs.offset + (c->p > 0 ? (uint64_t)(c->B * c->H * c->Lq * c->Lk) : 0),
          "%s: the GPU reserved the CPU's dropout stream", what);
    CHECK(yg->dtype == dt && yg->device == NN_CUDA, "%s: output is %s on %s", what, nn_dtype_name(yg->dtype),
          nn_device_name(yg->device));
    CHECK(yg->ndim == (sdpa_packed ? 3 : 4), "%s: output rank %d", what, yg->ndim);
    sdpa_part(what, "out", yg, sdpa_packed ? pack_heads(yc) : yc, 0, tol, di);
    g = rnd(4, yc->shape, -1, 1);
    gg = to_gpu_as(g, NN_F32);
    {
        nn_tensor *outs[2], *gs[2];
        double ref;
        outs[0] = yc; outs[1] = yg; gs[0] = g; gs[1] = gg;
        nn_backward_with(2, outs, gs);
        ref = sq_norm(vc->grad);
        sdpa_part(what, "dq", qg->grad, sdpa_packed ? pack_heads(qc->grad) : qc->grad, ref, tol, di);
        sdpa_part(what, "dk", kg->grad, sdpa_packed ? pack_heads(kc->grad) : kc->grad, ref, tol, di);
        sdpa_part(what, "dv", vg->grad, sdpa_packed ? pack_heads(vc->grad) : vc->grad, ref, tol, di);
        if (bc && c->bias_grad) {
            CHECK(bg->grad && bg->grad->ndim == bc->ndim && bg->grad->numel == bc->numel, "%s: dbias has the bias's shape", what);
            sdpa_part(what, "dbias", bg->grad, bc->grad, ref, tol, di);
        }
    }
    nn_scope_end(NULL);
}

int nn__cuda_wgmma(void);   /* nn_cuda.cu: 1 when the sm_90a kernels run */
static void test_sdpa(void) {
    static const sdpa_case cs[] = {
        {"plain odd lengths", 2, 3, 37, 53, 16, 16, 0, 0, 0, 0, 0, 0, 0, 0},
        {"causal Lq>Lk", 2, 2, 70, 45, 32, 32, 0, 0, 0, 1, 0, 0, 0, 0},
        {"causal Lq<Lk d64", 1, 3, 33, 80, 64, 64, 0, 0, 0, 1, 0, 0, 0, 0},
        {"mask+fully masked rows D!=Dv", 2, 2, 41, 67, 24, 40, 1, 0, 0, 0, 0, 0, 0, 0},
        {"keypad+bias[B,1] grad", 2, 3, 29, 77, 32, 32, 2, 1, 1, 0, 0, 0, 0, 0},
        {"full bias grad causal scale d128", 1, 2, 45, 45, 128, 128, 0, 2, 1, 1, 0, 0.3, 0, 0},
        {"bias[1,H,1,Lk] grad d96", 2, 2, 19, 131, 96, 96, 0, 3, 1, 0, 0, 0, 0, 0},
        {"bias[B,H,Lq,1] grad (zero)", 1, 2, 17, 23, 16, 16, 0, 4, 1, 0, 0, 0, 0, 0},
        {"bias[Lq,Lk] grad", 2, 2, 25, 31, 16, 16, 0, 5, 1, 0, 0, 0, 0, 0},
        {"dropout+mask+bias grad", 2, 2, 37, 61, 32, 32, 1, 1, 1, 0, 0.2, 0, 0, 0},
        {"dropout causal", 1, 3, 50, 50, 16, 16, 0, 0, 0, 1, 0.3, 0, 0, 0},
        {"Lk=1", 2, 2, 9, 1, 16, 16, 0, 0, 0, 0, 0, 0, 0, 0},
        {"Lk=1 causal", 1, 2, 9, 1, 32, 32, 0, 0, 0, 1, 0, 0, 0, 0},
        {"split-KV keypad+bias+dropout", 1, 2, 10, 2100, 64, 64, 2, 1, 1, 0, 0.1, 0, 0, 0},
        {"split-KV causal", 1, 1, 40, 3000, 32, 32, 0, 0, 0, 1, 0, 0, 0, 0},
        /* several key and query tiles per (b, h): dQ summed over key-tile CTAs, partial last tiles */
        {"multi-tile d64", 1, 2, 300, 260, 64, 64, 0, 0, 0, 0, 0, 0, 0, 0},
        {"multi-tile causal full bias grad d128", 1, 2, 150, 170, 128, 128, 0, 2, 1, 1, 0, 0, 0, 0},
        /* few key tiles, many queries: the backward splits the queries of a key tile (dK/dV summed) */
        {"query split Lq>>Lk", 1, 2, 3000, 100, 16, 16, 0, 0, 0, 0, 0, 0, 0, 0},
        {"query split mask+bias[B,1] grad+dropout", 2, 2, 1200, 70, 32, 32, 1, 1, 1, 0, 0.1, 0, 0, 0},
        /* f32 only: head dims padded inside the tensor-core tiles (odd: element loads; multiples of 4: float4
           loads), and above 128 the SIMT kernels */
        {"odd D=5 Dv=7 mask", 2, 2, 33, 45, 5, 7, 1, 0, 0, 0, 0, 0, 1, 0},
        {"D=20 Dv=12 causal full bias grad dropout", 1, 2, 70, 90, 20, 12, 0, 2, 1, 1, 0.1, 0, 1, 0},
        {"D=100 Dv=72 keypad+bias[B,1] grad multi-tile", 1, 2, 130, 150, 100, 72, 2, 1, 1, 0, 0, 0, 1, 0},
        {"D=200 (SIMT kernels)", 1, 2, 20, 30, 200, 200, 0, 0, 0, 1, 0, 0, 1, 0},
        /* the kernels without mask/bias/dropout code (scale folded into the exponent) at D = 128 and 96 */
        {"multi-tile causal d128", 1, 2, 150, 170, 128, 128, 0, 0, 0, 1, 0, 0, 0, 0},
        {"multi-tile d96 Lq>Lk", 2, 1, 200, 77, 96, 96, 0, 0, 0, 0, 0, 0, 0, 0},
        /* dropout with Lk a multiple of 4: the f32 kernels draw one Philox block per 4 scores (shuffled keep bits),
           forward, dQ and the query-split dK/dV; several tiles, partial last tiles, causal */
        {"dropout Lk%4=0 multi-tile d16", 2, 2, 130, 200, 16, 16, 0, 0, 0, 0, 0.1, 0, 0, 0},
        {"dropout Lk%4=0 query split d16", 1, 2, 3000, 100, 16, 16, 0, 0, 0, 0, 0.1, 0, 0, 0},
        {"dropout Lk%4=0 causal mask d32", 1, 2, 96, 96, 32, 32, 1, 0, 0, 1, 0.3, 0, 0, 0},
        /* the wgmma kernels (sm_90a; plain, D = 64 / 128, at least one 128-query tile per SM): odd lengths,
           Lq != Lk, several key tiles, causal, B*H above the SM count */
        {"wgmma d64 odd Lq<Lk", 2, 33, 257, 300, 64, 64, 0, 0, 0, 0, 0, 0, 0, 0},
        {"wgmma d64 B*H>SMs scale", 3, 50, 100, 77, 64, 64, 0, 0, 0, 0, 0, 0.2, 0, 0},
        {"wgmma d128 causal Lq>Lk", 2, 34, 200, 150, 128, 128, 0, 0, 0, 1, 0, 0, 0, 0},
        {"wgmma d128 several key tiles", 1, 66, 256, 520, 128, 128, 0, 0, 0, 0, 0, 0, 0, 0},
        /* the wgmma backward (plain d64, >= one 128-key tile per SM; cases 28 and 29 take it too): a single partial
           query tile (the loop runs once, dQ only after it) over two key tiles, the second partial */
        {"wgmma d64 bwd one query tile", 2, 70, 40, 200, 64, 64, 0, 0, 0, 0, 0, 0, 0, 0},
        /* the forward with 3 warpgroups (192 queries a CTA; wg_fwd_nwg picks it when it saves waves: 66 heads x
           2 tiles of 192 vs 3 of 128 here, as "wgmma d64 odd Lq<Lk"), causal, a partial last tile */
        {"wgmma d64 causal 3 warpgroups", 2, 33, 300, 300, 64, 64, 0, 0, 0, 1, 0, 0, 0, 0},
        /* the wgmma forward with a bias (wg_bias_ok: keys contiguous, Lk even; in the q dtype, or f32 at D = 64),
           the backward on bwd_kernel from its lse: full, [B,1,Lq,Lk] (heads share it), [Lq,Lk] f32 causal,
           [1,H,1,Lk] (broadcast over queries; its backward is wg_bwd_kernel's, below); partial query and key tiles.
           The last: odd Lk, so fwd_kernel. */
        {"wgmma bias full grad d64 scale", 2, 33, 257, 300, 64, 64, 0, 2, 1, 0, 0, 0.3, 0, 1},
        {"wgmma bias[B,1] grad d128 several key tiles", 2, 33, 200, 520, 128, 128, 0, 1, 1, 0, 0, 0, 0, 1},
        {"wgmma f32 bias[Lq,Lk] grad d64 causal", 2, 33, 300, 298, 64, 64, 0, 5, 1, 1, 0, 0, 0, 0},
        {"wgmma bias[1,H,1,Lk] grad d64", 2, 33, 150, 200, 64, 64, 0, 3, 1, 0, 0, 0, 0, 1},
        {"wgmma-sized bias odd Lk grad d128", 2, 33, 200, 151, 128, 128, 0, 2, 1, 0, 0, 0, 0, 1},
        /* the wgmma backward with a bias in the q dtype (wg_bwd_ok: D = 64, bias rows 16-byte aligned, so Lk a
           multiple of 8 for a contiguous bias; >= one 128-key tile per SM) and its gradient: full (plain stores;
           odd Lq: 5 query tiles, the last partial; the third key tile partial), [B,1,Lq,Lk] (atomic over heads),
           [1,H,1,Lk] (atomic over batch and queries; one partial query tile: the loop never runs). The last:
           odd Lk at D = 64, so the bias rows are unaligned and bwd_kernel takes it. */
        {"wgmma bwd full bias grad d64 odd Lq", 2, 33, 257, 328, 64, 64, 0, 2, 1, 0, 0, 0, 0, 1},
        {"wgmma bwd bias[B,1] grad d64 scale", 2, 33, 100, 200, 64, 64, 0, 1, 1, 0, 0, 0.3, 0, 1},
        {"wgmma bwd bias[1,H,1,Lk] grad d64 one query tile", 2, 33, 40, 264, 64, 64, 0, 3, 1, 0, 0, 0, 0, 1},
        {"wgmma-sized bias odd Lk grad d64", 2, 33, 129, 301, 64, 64, 0, 2, 1, 0, 0, 0, 0, 1},
        /* the wgmma forward at D = 32 (64-byte swizzled rows, O += P V on m64n32k16; the backward stays
           bwd_kernel): plain with odd Lq and Lk, causal Lq > Lk, a full bias (q dtype, scaled), [B,1,Lq,Lk] (heads
           share it); then with the split over keys (query tiles fewer than the SMs, as the 900-query AQR cases
           8/9 of bench/flash_bench): [B,1,Lq,Lk] bias 900 x 3000 (5 splits of 5 key tiles, the last partial),
           plain odd Lq and Lk (5 splits), causal Lq < Lk (4 splits, the last two empty: lse -inf partials).
           "split-KV causal" (case 14) takes the split path too. */
        {"wgmma d32 odd Lq odd Lk", 2, 33, 257, 301, 32, 32, 0, 0, 0, 0, 0, 0, 0, 0},
        {"wgmma d32 causal Lq>Lk", 2, 33, 300, 250, 32, 32, 0, 0, 0, 1, 0, 0, 0, 0},
        {"wgmma d32 full bias grad scale", 2, 33, 257, 300, 32, 32, 0, 2, 1, 0, 0, 0.3, 0, 1},
        {"wgmma d32 bias[B,1] grad several key tiles", 2, 33, 200, 520, 32, 32, 0, 1, 1, 0, 0, 0, 0, 1},
        {"wgmma d32 split-KV bias[B,1] grad 900x3000", 2, 8, 900, 3000, 32, 32, 0, 1, 1, 0, 0, 0, 0, 1},
        {"wgmma d32 split-KV odd Lq odd Lk", 2, 4, 901, 2501, 32, 32, 0, 0, 0, 0, 0, 0, 0, 0},
        {"wgmma d32 split-KV causal Lq<Lk", 1, 8, 900, 2000, 32, 32, 0, 0, 0, 1, 0, 0, 0, 0},
        /* the wgmma backward at D = 128 (wg_bwd_d128_kernel: plain or causal, >= one 128-key tile per SM; cases 30
           and 31 take it too): odd Lq and Lk (5 query tiles, the last one row; the third key tile partial), causal
           Lq < Lk (key tile 1 sees one query tile, key tile 2 none: zero dK/dV), a single partial query tile (the
           loop never runs), Lk = 1, causal Lq > Lk with B*H above the SM count and a scale; then the fallbacks to
           bwd_kernel: Dv != D, and too few key tiles for the GPU */
        {"wgmma bwd d128 odd Lq odd Lk", 2, 33, 257, 301, 128, 128, 0, 0, 0, 0, 0, 0, 0, 0},
        {"wgmma bwd d128 causal Lq<Lk", 2, 33, 150, 300, 128, 128, 0, 0, 0, 1, 0, 0, 0, 0},
        {"wgmma bwd d128 one query tile", 2, 70, 40, 200, 128, 128, 0, 0, 0, 0, 0, 0, 0, 0},
        {"wgmma bwd d128 Lk=1", 2, 70, 9, 1, 128, 128, 0, 0, 0, 0, 0, 0, 0, 0},
        {"wgmma bwd d128 B*H>SMs causal scale", 3, 50, 100, 77, 128, 128, 0, 0, 0, 1, 0, 0.2, 0, 0},
        {"wgmma-sized d128 Dv=64 (bwd_kernel)", 2, 33, 200, 300, 128, 64, 0, 0, 0, 0, 0, 0, 0, 0},
        {"d128 few key tiles (bwd_kernel)", 1, 4, 300, 300, 128, 128, 0, 0, 0, 1, 0, 0, 0, 0},
        /* the wgmma forward with its bias staged through shared memory (BIAS 3: q dtype, D = 64, 16-byte aligned
           rows; cases 37 and 39-41 take it too): full bias, causal Lq > Lk, odd Lq, a partial key tile, a scale
           (the backward: bwd_kernel, causal) */
        {"wgmma staged bias full grad d64 causal", 2, 33, 301, 264, 64, 64, 0, 2, 1, 1, 0, 0.3, 0, 1},
        /* the staged bias with a single key tile (no tile ahead); at D = 32 a full bias with 16-byte aligned rows,
           causal, odd Lq, a partial third key tile (the register path: D = 32 does not stage, see run_wg_fwd) */
        {"wgmma staged bias one key tile d64", 2, 33, 200, 104, 64, 64, 0, 2, 1, 0, 0, 0, 0, 1},
        {"wgmma d32 aligned full bias grad causal", 2, 33, 301, 264, 32, 32, 0, 2, 1, 1, 0, 0.3, 0, 1},
    };
    static const nn_dtype dts[3] = {NN_F32, NN_F16, NN_BF16};
    size_t i;
    int d;
    for (i = 0; i < sizeof cs / sizeof cs[0]; i++)
        for (d = 0; d < 3; d++) {
            if (cs[i].f32_only && d != 0) continue;
            if (quick && (d == 1 || !(i == 0 || i == 4 || i == 5 || i == 9 || i == 13 || i == 15 || i == 16 || i == 18 ||
                                     i == 19 || i == 20 || i == 23 || (i >= 25 && i <= 28) || i == 30 || i == 31 ||
                                     i == 34 || i == 39 || i == 43 || i == 48 || i == 50 || i == 51 || i >= 57))) continue;
            sdpa_run(&cs[i], dts[d]);
        }
    /* nn_sdpa_heads: the same kernels on [B,L,H*D] through strides (mask, bias gradient, dropout, causal,
       split-KV, several tiles, the query split, the wgmma forward at D = 32, the wgmma backward at D = 128) */
    sdpa_packed = 1;
    for (i = 0; i < sizeof cs / sizeof cs[0]; i++)
        for (d = 0; d < 3; d++) {
            if (!(i == 0 || i == 3 || i == 4 || i == 5 || i == 9 || i == 13 || i == 15 || i == 16 || i == 18 || i == 23 ||
                  i == 28 || i == 43 || i == 50) ||
                (quick && (d == 1 || i > 5)))
                continue;
            sdpa_run(&cs[i], dts[d]);
        }
    sdpa_packed = 0;
    {   /* nn_key_padding_mask on a device tensor */
        int64_t s2[2] = {2, 5};
        float vh[10] = {1, 1, 1, 0, 0, 1, 1, 1, 1, 0};
        uint8_t mh[10];
        int j, same = 1;
        nn_scope_begin();
        {
            nn_tensor *m = nn_key_padding_mask(nn_to(nn_from_f32(2, s2, vh), NN_CUDA));
            CHECK(m->device == NN_CUDA && m->ndim == 4 && m->shape[3] == 5, "key_padding_mask on cuda: shape/device");
            nn_to_host(m, mh);
            for (j = 0; j < 10; j++) same &= mh[j] == (vh[j] != 0);
            CHECK(same, "key_padding_mask on cuda: values");
        }
        nn_scope_end(NULL);
    }
    printf("sdpa: wgmma kernels (sm_90a) %s\n", nn__cuda_wgmma() ? "in use" : "not available on this device");
    printf("sdpa worst relative error: f32 %.3g (bound %.0e), f16 %.3g (bound %.0e), bf16 %.3g (bound %.0e)\n",
           worst_sdpa[0], TOL_SDPA_F32, worst_sdpa[1], TOL_SDPA_F16, worst_sdpa[2], TOL_SDPA_BF16);
}

/* nn_adamw / nn_clip_grad_norm / nn_ckpt on device parameters against the same on CPU parameters */
static void test_adamw_params(void) {
    enum { NT = 5 };
    static const int64_t sizes[NT][2] = {{1, 1}, {3, 11}, {70001, 1}, {64, 64}, {200003, 1}};
    nn_params Pc, Pg;
    nn_adamw *oc, *og;
    nn_adamw_cfg cfg = nn_adamw_default();
    int k, step, mism = 0;
    int64_t i, total = 0;
    double maxrel = 0;
    memset(&Pc, 0, sizeof Pc); memset(&Pg, 0, sizeof Pg);
    nn_mem_trim(NN_CUDA);
    for (k = 0; k < NT; k++) {
        char name[16];
        int nd = sizes[k][1] == 1 ? 1 : 2;
        nn_tensor *t = rnd(nd, sizes[k], -1, 1);
        snprintf(name, sizeof name, "p%d", k);
        nn_params_add(&Pg, name, nn_to(t, NN_CUDA));
        nn_params_add(&Pc, name, t);
        nn_requires_grad(Pc.items[k].t, 1); nn_requires_grad(Pg.items[k].t, 1);
    }
    nn_params_mark_no_decay(&Pc); nn_params_mark_no_decay(&Pg);
    cfg.weight_decay = 0.05;
    oc = nn_adamw_new(&Pc, cfg); og = nn_adamw_new(&Pg, cfg);
    CHECK(og->moments && og->moments[0]->device == NN_CUDA, "adamw: device moments on cuda");
    for (step = 0; step < 4; step++) {
        float nc, ng;
        nn_params_zero_grad(&Pc); nn_params_zero_grad(&Pg);
        nn_scope_begin();
        for (k = 0; k < NT; k++) {   /* gradient r: seeded straight into each leaf */
            nn_tensor *pc = Pc.items[k].t, *pg = Pg.items[k].t, *r = rnd(pc->ndim, pc->shape, -2, 2), *rg = nn_to(r, NN_CUDA);
            if (step == 2 && k == 1) continue;   /* a parameter without gradient is skipped */
            nn_backward_with(1, &pc, &r);
            nn_backward_with(1, &pg, &rg);
        }
        nn_scope_end(NULL);
        if (step == 3) {   /* clipping: the norm, and the scaled gradients */
            nc = nn_clip_grad_norm(&Pc, 1.0, 0);
            ng = nn_clip_grad_norm(&Pg, 1.0, 0);
            CHECK(fabs((double)nc - ng) <= 2e-7 * nc, "clip_grad_norm on cuda: total %.9g vs cpu %.9g", (double)ng, (double)nc);
            for (k = 0; k < NT; k++) {
                double e = rel_err(Pg.items[k].t->grad, Pc.items[k].t->grad);
                CHECK(e < 1e-6, "clip_grad_norm on cuda: grad %d rel err %.3g", k, e);
            }
            ng = nn_grad_norm(&Pg);
            CHECK(fabs((double)ng - 1.0) < 1e-5, "grad_norm on cuda after clipping: %.9g", (double)ng);
        }
        nn_adamw_step(oc, 1e-2);
        nn_adamw_step(og, 1e-2);
        if (step == 2) {
            /* bitwise before clipping: same f32 arithmetic, same order, no reductions */
            for (k = 0; k < NT; k++) {
                float *a = host_f32(Pg.items[k].t), *b = (float *)Pc.items[k].t->data;
                for (i = 0; i < Pc.items[k].t->numel; i++) { mism += memcmp(&a[i], &b[i], 4) != 0; total++; }
                free(a);
            }
        }
    }
    for (k = 0; k < NT; k++) {
        double e = rel_err(Pg.items[k].t, Pc.items[k].t);
        if (e > maxrel) maxrel = e;
    }
    CHECK(mism == 0, "adamw on cuda params: %d of %lld values differ from the CPU step (bitwise expected)", mism, (long long)total);
    CHECK(maxrel < 1e-6, "adamw on cuda params after a clipped step: rel err %.3g", maxrel);
    printf("adamw device params: %d/%lld bitwise mismatches after 3 steps; after a clipped 4th step rel err %.3g\n",
           mism, (long long)total, maxrel);
    {   /* checkpoint: device moments to the host and back */
        const char *path = "/tmp/nn_test_cuda_ckpt.safetensors";
        nn_adamw *o2;
        double e = 0;
        nn_ckpt_save(path, &Pg, og, NULL, NULL);
        o2 = nn_adamw_new(&Pg, cfg);
        nn_ckpt_load(path, &Pg, o2, NULL, NULL);
        for (k = 0; k < NT; k++) {
            double a = rel_err(o2->moments[2 * k], og->moments[2 * k]), b = rel_err(o2->moments[2 * k + 1], og->moments[2 * k + 1]);
            e = a > e ? a : e; e = b > e ? b : e;
            CHECK(o2->steps[k] == og->steps[k], "ckpt: steps of %d", k);
        }
        CHECK(e == 0, "ckpt: device moments round trip, rel err %.3g", e);
        remove(path);
        nn_adamw_free(o2);
    }
    {   /* GradScaler's unscale on device gradients: the same values as on the CPU (bitwise: one multiply each),
           found_inf for an inf or a NaN anywhere, the step skipped */
        nn_grad_scaler sc = nn_grad_scaler_new(1024.0, 2.0, 0.5, 2000, 1), sg = sc;
        int fc, fg, bad;
        for (bad = 0; bad < 3; bad++) {
            nn_params_zero_grad(&Pc); nn_params_zero_grad(&Pg);
            nn_scope_begin();
            for (k = 0; k < NT; k++) {
                nn_tensor *pc = Pc.items[k].t, *pg = Pg.items[k].t, *r = rnd(pc->ndim, pc->shape, -2, 2), *rg;
                if (bad && k == 4) ((float *)r->data)[bad == 1 ? 200001 : 5] = bad == 1 ? INFINITY : NAN;   /* tail, float4 part */
                rg = nn_to(r, NN_CUDA);
                nn_backward_with(1, &pc, &r);
                nn_backward_with(1, &pg, &rg);
            }
            nn_scope_end(NULL);
            fc = nn_scaler_unscale(&sc, &Pc);
            fg = nn_scaler_unscale(&sg, &Pg);
            CHECK(fc == (bad != 0) && fg == fc, "scaler unscale on cuda: found_inf %d (cpu %d), injected %d", fg, fc, bad);
            if (!bad)
                for (k = 0; k < NT; k++) {
                    float *a = host_f32(Pg.items[k].t->grad), *b = (float *)Pc.items[k].t->grad->data;
                    for (i = 0, mism = 0; i < Pc.items[k].t->numel; i++) mism += memcmp(&a[i], &b[i], 4) != 0;
                    CHECK(mism == 0, "scaler unscale on cuda: grad %d, %d values differ from the CPU's", k, mism);
                    free(a);
                }
            CHECK(nn_scaler_step(&sg, og, 1e-2) == !bad, "scaler step on cuda %s", bad ? "skipped" : "taken");
            nn_scaler_step(&sc, oc, 1e-2);
            nn_scaler_update(&sc); nn_scaler_update(&sg);
        }
        CHECK(sg.skipped == 2 && nn_scaler_get_scale(&sg) == 256.0, "scaler on cuda: 2 skipped, scale %g",
              nn_scaler_get_scale(&sg));
    }
    nn_adamw_free(oc); nn_adamw_free(og);
    nn_params_free(&Pc); nn_params_free(&Pg);
}

/* ------------------------------------------------------------------------------ [ops:index], [ops:loss] */

/* an index tensor (CPU) of n values in [lo, hi) from a fixed LCG, dtype i32 or i64 */
static nn_tensor *rnd_idx(int nd, const int64_t *s, int64_t lo, int64_t hi, nn_dtype dt, uint32_t seed) {
    int64_t n = 1, i;
    int d;
    nn_tensor *t;
    for (d = 0; d < nd; d++) n *= s[d];
    t = nn_zeros(dt, nd, s);
    for (i = 0; i < n; i++) {
        int64_t v;
        seed = seed * 1664525u + 1013904223u;
        v = hi > lo ? lo + (int64_t)((seed >> 8) % (uint32_t)(hi - lo)) : lo;
        if (dt == NN_I64) ((int64_t *)t->data)[i] = v;
        else ((int32_t *)t->data)[i] = (int32_t)v;
    }
    return t;
}

/* a CPU bool tensor, true with probability about 1/2 */
static nn_tensor *rnd_mask(int nd, const int64_t *s, uint32_t seed) {
    nn_tensor *t = nn_zeros(NN_BOOL, nd, s);
    int64_t i;
    for (i = 0; i < t->numel; i++) { seed = seed * 1664525u + 1013904223u; ((uint8_t *)t->data)[i] = (seed >> 20) & 1; }
    return t;
}

typedef struct { int op, dim, keep, red; int64_t k, ii; double p0, p1; } il_args;

static nn_tensor *f_il(void *c, nn_tensor **in) {
    il_args *a = (il_args *)c;
    switch (a->op) {
    case 0: return nn_embedding(in[0], in[1]);
    case 1: return nn_index_select(in[0], a->dim, in[1]);
    case 2: return nn_gather(in[0], a->dim, in[1]);
    case 3: return nn_scatter_add(in[0], a->dim, in[1], in[2]);
    case 4: { nn_tensor *v; nn_topk(in[0], a->k, a->dim, a->keep, &v, NULL); return v; }
    case 5: return nn_where(in[0], in[1], in[2]);
    case 6: return nn_masked_fill(in[0], in[1], a->p0);
    case 7: return nn_cross(in[0], in[1], a->dim);
    case 8: return nn_norm(in[0], a->dim, a->keep);
    case 9: return nn_mse_loss(in[0], in[1]);
    case 10: return nn_l1_loss(in[0], in[1]);
    case 11: return nn_smooth_l1_loss(in[0], in[1], a->p0);
    case 12: return nn_cross_entropy(in[0], in[1], in[2], a->ii, a->p0);
    case 13: return nn_bce_with_logits(in[0], in[1], in[2]);
    default: return nn_sigmoid_focal_loss(in[0], in[1], a->p0, a->p1, (nn_reduction)a->red);
    }
}

/* the loss output stays on the device, 0-dim */
static void check_on_gpu(const char *what, nn_tensor *(*f)(void *, nn_tensor **), void *ctx, int n, nn_tensor **in) {
    nn_tensor *xg[4], *y;
    int i;
    nn_scope_begin();
    for (i = 0; i < n; i++) xg[i] = in[i] ? nn_to(in[i], NN_CUDA) : NULL;
    y = f(ctx, xg);
    CHECK(y->device == NN_CUDA, "%s: output on %s", what, nn_device_name(y->device));
    nn_scope_end(NULL);
}

/* the message an op gives on CPU and on GPU inputs must be the same */
static char il_msg[1024];
static jmp_buf il_jmp;
static void il_handler(const char *msg, void *u) { (void)u; snprintf(il_msg, sizeof il_msg, "%s", msg); longjmp(il_jmp, 1); }
static void same_error(const char *what, op_fn f, void *ctx, int n, nn_tensor **in, const char *needle) {
    char cpu_msg[1024];
    nn_tensor *xg[4];
    int i;
    volatile int got = 0;
    nn_scope_begin();
    for (i = 0; i < n; i++) xg[i] = in[i] ? nn_to(in[i], NN_CUDA) : NULL;
    nn_set_error_handler(il_handler, NULL);
    il_msg[0] = 0;
    if (!setjmp(il_jmp)) f(ctx, in); else got = 1;
    snprintf(cpu_msg, sizeof cpu_msg, "%s", il_msg);
    CHECK(got && strstr(cpu_msg, needle), "%s: CPU error '%s' lacks '%s'", what, cpu_msg, needle);
    got = 0;
    il_msg[0] = 0;
    if (!setjmp(il_jmp)) f(ctx, xg); else got = 1;
    nn_set_error_handler(NULL, NULL);
    CHECK(got && strcmp(il_msg, cpu_msg) == 0, "%s: GPU error '%s' differs from the CPU's '%s'", what, il_msg, cpu_msg);
    if (verbose) printf("  %-40s error  '%s'\n", what, il_msg);
    nn_scope_end(NULL);
}

static void test_index_ops(void) {
    int grad_w[2] = {1, 0}, grad_a[3] = {1, 0, 1}, g2[2] = {1, 1}, g3[3] = {0, 1, 1};
    char what[128];
    il_args a;
    int s, dt;
    memset(&a, 0, sizeof a);
    {   /* embedding: dims 1 (odd), 5, 64, 257; repeated indices; i32 and i64; empty */
        static const int64_t dims[] = {1, 5, 64, 257}, is[][2] = {{7, 0}, {3, 11}, {0, 0}, {40000, 0}};
        static const int ind[] = {1, 2, 1, 1};
        for (s = 0; s < 4; s++)
            for (dt = 0; dt < 2; dt++) {
                int64_t ws[2] = {37, dims[(s + dt) % 4]};
                nn_tensor *in[2];
                in[0] = rnd(2, ws, -1, 1);
                in[1] = rnd_idx(ind[s], is[s], 0, 37, dt ? NN_I64 : NN_I32, 11u + (uint32_t)s);
                a.op = 0;
                snprintf(what, sizeof what, "embedding [37,%lld] idx case %d %s", (long long)ws[1], s, dt ? "i64" : "i32");
                compare(what, f_il, &a, 2, in, grad_w, TOL_F32);
                nn_tensor_free(in[0]); nn_tensor_free(in[1]);
            }
    }
    {   /* index_select over every dim of an odd shape; 0-D index */
        int64_t as[3] = {5, 9, 13}, ns = 17, z = 0;
        int d;
        for (d = 0; d < 3; d++) {
            nn_tensor *in[2];
            in[0] = rnd(3, as, -1, 1);
            in[1] = rnd_idx(1, &ns, 0, as[d], d == 1 ? NN_I32 : NN_I64, 5u + (uint32_t)d);
            a.op = 1; a.dim = d - (d == 2 ? 3 : 0);
            snprintf(what, sizeof what, "index_select dim %d", a.dim);
            compare(what, f_il, &a, 2, in, grad_w, TOL_F32);
            nn_tensor_free(in[1]);
            in[1] = rnd_idx(0, &z, 0, as[d], NN_I64, 3u);
            snprintf(what, sizeof what, "index_select 0-D index dim %d", a.dim);
            compare(what, f_il, &a, 2, in, grad_w, TOL_F32);
            nn_tensor_free(in[0]); nn_tensor_free(in[1]);
        }
    }
    {   /* gather / scatter_add: index smaller than the input in other dims, src larger than the index */
        int64_t as[3] = {6, 7, 5}, is3[3][3] = {{9, 7, 4}, {6, 11, 4}, {3, 5, 8}}, ss[3] = {10, 12, 9};
        int d;
        for (d = 0; d < 3; d++) {
            nn_tensor *in[3];
            in[0] = rnd(3, as, -1, 1);
            in[1] = rnd_idx(3, is3[d], 0, as[d], d == 2 ? NN_I32 : NN_I64, 17u + (uint32_t)d);
            in[2] = rnd(3, ss, -1, 1);
            a.op = 2; a.dim = d;
            snprintf(what, sizeof what, "gather dim %d", d);
            compare(what, f_il, &a, 2, in, grad_w, TOL_F32);
            a.op = 3;
            snprintf(what, sizeof what, "scatter_add dim %d", d);
            compare(what, f_il, &a, 3, in, grad_a, TOL_F32);
            nn_tensor_free(in[0]); nn_tensor_free(in[1]); nn_tensor_free(in[2]);
        }
        {   /* big scatter: 200003 sources into 1000 rows (long runs per destination) */
            int64_t bs[2] = {1000, 3}, bi[2] = {200003, 3};
            nn_tensor *in[3];
            in[0] = rnd(2, bs, -1, 1);
            in[1] = rnd_idx(2, bi, 0, 1000, NN_I64, 99u);
            in[2] = rnd(2, bi, -1, 1);
            a.op = 3; a.dim = 0;
            compare("scatter_add 200003 -> 1000 rows", f_il, &a, 3, in, grad_a, TOL_F32);
            a.op = 2;
            compare("gather 200003 from 1000 rows", f_il, &a, 2, in, grad_w, TOL_F32);
            nn_tensor_free(in[0]); nn_tensor_free(in[1]); nn_tensor_free(in[2]);
        }
        {   /* empty index */
            int64_t es[3] = {6, 0, 5};
            nn_tensor *in[3];
            in[0] = rnd(3, as, -1, 1);
            in[1] = rnd_idx(3, es, 0, 1, NN_I64, 1u);
            in[2] = rnd(3, ss, -1, 1);
            a.op = 2; a.dim = 1;
            compare("gather empty index", f_il, &a, 2, in, grad_w, TOL_F32);
            a.op = 3;
            compare("scatter_add empty index", f_il, &a, 3, in, grad_a, TOL_F32);
            nn_tensor_free(in[0]); nn_tensor_free(in[1]); nn_tensor_free(in[2]);
        }
    }
    {   /* topk: values (and their gradient) against the CPU, indices exactly, ties and NaN and -0/+0 */
        static const int64_t ts[][3] = {{1, 200003, 1}, {7, 50, 1}, {30, 4, 9}, {3, 1000, 1}, {2, 5, 3}};
        static const int tnd[] = {2, 2, 3, 2, 3}, tdim[] = {1, 1, 1, -1, 2};
        static const int64_t tk[] = {1024, 5, 4, 1000, 0};
        int lg;
        for (s = 0; s < 5; s++)
            for (lg = 0; lg < 2; lg++) {
                nn_tensor *x = rnd(tnd[s], ts[s], -1, 1);
                float *p = nn_f32_data(x);
                int64_t i;
                if (s == 1 || s == 3)   /* ties: few distinct values, both zeros, some NaN and inf */
                    for (i = 0; i < x->numel; i++) {
                        int r = (int)((i * 7919) % 13);
                        p[i] = r == 0 ? -0.0f : r == 1 ? 0.0f : r == 2 ? NAN : r == 3 ? INFINITY : r == 4 ? -INFINITY : (float)(r % 3);
                    }
                a.op = 4; a.k = tk[s]; a.dim = tdim[s]; a.keep = lg;
                snprintf(what, sizeof what, "topk case %d %s k %lld", s, lg ? "largest" : "smallest", (long long)tk[s]);
                if (s != 1 && s != 3) compare(what, f_il, &a, 1, &x, grad_w, TOL_F32);
                else {   /* rel_err takes NaN but not inf (inf - inf): compare() sees +-inf as +-7, ties kept;
                            the exact check below runs on the values with inf */
                    nn_tensor *x2 = nn_clone(x);
                    float *q = nn_f32_data(x2);
                    for (i = 0; i < x2->numel; i++) if (q[i] == INFINITY || q[i] == -INFINITY) q[i] = q[i] > 0 ? 7.0f : -7.0f;
                    compare(what, f_il, &a, 1, &x2, grad_w, TOL_F32);
                    nn_tensor_free(x2);
                }
                {   /* indices and value bits exactly */
                    nn_tensor *vc, *ic, *vg, *ig, *xg;
                    int64_t *hc, *hg;
                    float *fc, *fg;
                    int64_t bad = 0;
                    nn_scope_begin();
                    xg = nn_to(x, NN_CUDA);
                    nn_topk(x, a.k, a.dim, lg, &vc, &ic);
                    nn_topk(xg, a.k, a.dim, lg, &vg, &ig);
                    CHECK(ig->device == NN_CUDA && ig->dtype == NN_I64, "%s: indices on cuda, i64", what);
                    hc = (int64_t *)malloc(8 * (size_t)(ic->numel + 1)); hg = (int64_t *)malloc(8 * (size_t)(ic->numel + 1));
                    nn_to_host(ic, hc); nn_to_host(ig, hg);
                    fc = host_f32(vc); fg = host_f32(vg);
                    for (i = 0; i < ic->numel; i++) bad += hc[i] != hg[i] || memcmp(&fc[i], &fg[i], 4) != 0;
                    CHECK(bad == 0, "%s: %lld of %lld indices/values differ from the CPU's", what, (long long)bad, (long long)ic->numel);
                    if (verbose) printf("  %-40s idx    %lld mismatches\n", what, (long long)bad);
                    free(hc); free(hg); free(fc); free(fg);
                    nn_scope_end(NULL);
                }
                nn_tensor_free(x);
            }
    }
    {   /* where / masked_fill with broadcasting */
        int64_t cs[3] = {3, 1, 5}, as2[3] = {1, 4, 5}, bs = 5, ms[2] = {6, 1}, fs[3] = {4, 6, 7};
        nn_tensor *in[3];
        in[0] = rnd_mask(3, cs, 3u); in[1] = rnd(3, as2, -1, 1); in[2] = rnd(1, &bs, -1, 1);
        a.op = 5;
        compare("where broadcast", f_il, &a, 3, in, g3, TOL_F32);
        nn_tensor_free(in[0]); nn_tensor_free(in[1]); nn_tensor_free(in[2]);
        in[0] = rnd(3, fs, -1, 1); in[1] = rnd_mask(2, ms, 8u);
        a.op = 6; a.p0 = -1e9;
        compare("masked_fill broadcast mask", f_il, &a, 2, in, grad_w, TOL_F32);
        nn_tensor_free(in[1]);
        in[1] = rnd_mask(3, fs, 9u);
        compare("masked_fill full mask", f_il, &a, 2, in, grad_w, TOL_F32);
        nn_tensor_free(in[0]); nn_tensor_free(in[1]);
        {   /* big: 300007 elements */
            int64_t big = 300007;
            in[0] = rnd_mask(1, &big, 4u); in[1] = rnd(1, &big, -1, 1); in[2] = rnd(1, &big, -1, 1);
            a.op = 5;
            compare("where 300007", f_il, &a, 3, in, g3, TOL_F32);
            nn_tensor_free(in[0]); nn_tensor_free(in[1]); nn_tensor_free(in[2]);
        }
    }
    {   /* cross (broadcast, dim in the middle and last) and norm */
        int64_t xa[3] = {5, 3, 7}, xb[2] = {3, 1}, ya[2] = {1001, 3}, yb[1] = {3};
        nn_tensor *in[2];
        in[0] = rnd(3, xa, -1, 1); in[1] = rnd(2, xb, -1, 1);
        a.op = 7; a.dim = 1;
        compare("cross dim 1 broadcast", f_il, &a, 2, in, g2, TOL_F32);
        nn_tensor_free(in[0]); nn_tensor_free(in[1]);
        in[0] = rnd(2, ya, -1, 1); in[1] = rnd(1, yb, -1, 1);
        a.dim = -1;
        compare("cross last dim", f_il, &a, 2, in, g2, TOL_F32);
        nn_tensor_free(in[0]); nn_tensor_free(in[1]);
    }
    {
        static const int64_t ns[][3] = {{7, 33, 65}, {3, 70001, 1}, {4, 3, 1}};
        static const int nnd[] = {3, 2, 3};
        int d;
        for (s = 0; s < 3; s++)
            for (d = 0; d < nnd[s]; d++) {
                nn_tensor *x = rnd(nnd[s], ns[s], -2, 2);
                if (s == 2) memset(x->data, 0, 4 * 3);   /* a zero line: gradient 0 there */
                a.op = 8; a.dim = d; a.keep = d & 1;
                snprintf(what, sizeof what, "norm shape %d dim %d", s, d);
                compare(what, f_il, &a, 1, &x, grad_w, TOL_F32);
                nn_tensor_free(x);
            }
    }
    {   /* errors: out-of-range indices give the CPU's message on the GPU; mixed devices are refused */
        int64_t ws[2] = {10, 4}, is[1] = {6}, as[2] = {4, 5};
        nn_tensor *in[3];
        in[0] = rnd(2, ws, -1, 1);
        in[1] = rnd_idx(1, is, 0, 10, NN_I64, 2u);
        ((int64_t *)in[1]->data)[4] = 10;
        a.op = 0;
        same_error("embedding index 10 of 10", f_il, &a, 2, in, "index 10 out of range [0,10)");
        ((int64_t *)in[1]->data)[4] = 3;
        ((int64_t *)in[1]->data)[2] = -1;
        same_error("embedding index -1", f_il, &a, 2, in, "at flat position 2");
        nn_tensor_free(in[1]);
        in[1] = rnd_idx(1, is, 0, 10, NN_I32, 2u);
        ((int32_t *)in[1]->data)[5] = 12;
        a.op = 1; a.dim = 0;
        same_error("index_select i32 index 12", f_il, &a, 2, in, "index 12 out of range");
        nn_tensor_free(in[0]); nn_tensor_free(in[1]);
        in[0] = rnd(2, as, -1, 1);
        in[1] = rnd_idx(2, as, 0, 5, NN_I64, 7u);
        ((int64_t *)in[1]->data)[13] = 5;
        in[2] = rnd(2, as, -1, 1);
        a.op = 2; a.dim = 1;
        same_error("gather index 5", f_il, &a, 2, in, "at flat position 13");
        a.op = 3;
        same_error("scatter_add index 5", f_il, &a, 3, in, "at flat position 13");
        nn_scope_begin();
        {
            nn_tensor *mixed[3];
            mixed[0] = in[0]; mixed[1] = nn_to(in[1], NN_CUDA); mixed[2] = in[2];
            a.op = 2;
            EXPECT_ERROR(f_il(&a, mixed), "all tensors of this op must be on one device");
        }
        nn_scope_end(NULL);
        nn_tensor_free(in[0]); nn_tensor_free(in[1]); nn_tensor_free(in[2]);
    }
}

static void test_losses(void) {
    int g2[2] = {1, 1}, g1[3] = {1, 0, 0}, g3[3] = {1, 1, 1};
    char what[128];
    il_args a;
    int s, op;
    memset(&a, 0, sizeof a);
    {   /* mse, l1, smooth_l1 (beta 0.5 and 0 = l1); odd sizes, a large one, empty */
        static const int64_t rs[][2] = {{37, 45}, {300007, 1}, {1, 1}, {0, 3}};
        static const int rnd_[] = {2, 1, 2, 2};
        for (s = 0; s < 4; s++)
            for (op = 9; op <= 12; op++) {
                nn_tensor *in[2];
                in[0] = rnd(rnd_[s], rs[s], -2, 2); in[1] = rnd(rnd_[s], rs[s], -2, 2);
                a.op = op == 12 ? 11 : op; a.p0 = op == 12 ? 0.0 : 0.5;
                snprintf(what, sizeof what, "reg loss %d case %d", op, s);
                compare(what, f_il, &a, 2, in, g2, TOL_F32);
                if (s == 0 && op == 9) check_on_gpu("mse loss", f_il, &a, 2, in);
                nn_tensor_free(in[0]); nn_tensor_free(in[1]);
            }
    }
    {   /* cross_entropy: [N,C] small and large C (warp path), [N,C,d1,d2], [C]; weight; ignore_index; smoothing */
        static const int64_t ls[][4] = {{64, 10}, {5, 1000}, {3, 7, 5, 6}, {13}, {2, 3, 0}, {4, 129}};
        static const int lnd[] = {2, 2, 4, 1, 3, 2};
        int v;
        for (s = 0; s < 6; s++)
            for (v = 0; v < 4; v++) {   /* v bit 0: weight, bit 1: smoothing; ignore_index always present */
                nn_tensor *in[3];
                int64_t C = lnd[s] == 1 ? ls[s][0] : ls[s][1], ts[3];
                int tnd = lnd[s] == 1 ? 0 : lnd[s] - 1, d;
                ts[0] = ls[s][0];
                for (d = 2; d < lnd[s]; d++) ts[d - 1] = ls[s][d];
                in[0] = rnd(lnd[s], ls[s], -4, 4);
                in[1] = rnd_idx(tnd, ts, 0, C, (s + v) & 1 ? NN_I32 : NN_I64, 31u + (uint32_t)(s * 4 + v));
                if (in[1]->numel > 2) {   /* a few ignored positions */
                    if (in[1]->dtype == NN_I64) { ((int64_t *)in[1]->data)[1] = -100; }
                    else { ((int32_t *)in[1]->data)[1] = -100; }
                }
                in[2] = NULL;
                if (v & 1) { int64_t cc = C; in[2] = rnd(1, &cc, 0.2, 2); }
                a.op = 12; a.ii = -100; a.p0 = v & 2 ? 0.1 : 0.0;
                snprintf(what, sizeof what, "cross_entropy case %d w %d eps %.1f", s, v & 1, a.p0);
                compare(what, f_il, &a, 3, in, g1, TOL_F32);
                if (s == 0 && v == 3) check_on_gpu("cross_entropy", f_il, &a, 3, in);
                nn_tensor_free(in[0]); nn_tensor_free(in[1]); nn_tensor_free(in[2]);
            }
        {   /* every position ignored: NaN on both; target out of range: the CPU's message */
            int64_t xs[2] = {3, 4}, tsz = 3;
            nn_tensor *in[3];
            in[0] = rnd(2, xs, -1, 1); in[1] = rnd_idx(1, &tsz, -100, -99, NN_I64, 1u); in[2] = NULL;
            a.op = 12; a.ii = -100; a.p0 = 0;
            compare("cross_entropy all ignored", f_il, &a, 3, in, g1, TOL_F32);
            ((int64_t *)in[1]->data)[2] = 4;
            same_error("cross_entropy target 4 of 4", f_il, &a, 3, in, "target 4 out of range [0,4) at flat position 2");
            ((int64_t *)in[1]->data)[2] = -3;
            same_error("cross_entropy target -3", f_il, &a, 3, in, "target -3 out of range");
            nn_tensor_free(in[0]); nn_tensor_free(in[1]);
        }
    }
    {   /* bce_with_logits with and without pos_weight ([C] broadcast, and full shape) */
        static const int64_t bs[][2] = {{37, 11}, {300007, 1}, {0, 4}};
        for (s = 0; s < 3; s++) {
            int pwk;
            for (pwk = 0; pwk < 3; pwk++) {
                nn_tensor *in[3];
                int64_t c = bs[s][1];
                in[0] = rnd(2, bs[s], -6, 6); in[1] = rnd(2, bs[s], 0, 1);
                in[2] = pwk == 0 ? NULL : pwk == 1 ? rnd(1, &c, 0.5, 3) : rnd(2, bs[s], 0.5, 3);
                a.op = 13;
                snprintf(what, sizeof what, "bce_with_logits case %d pos_weight %d", s, pwk);
                compare(what, f_il, &a, 3, in, g3, TOL_F32);
                nn_tensor_free(in[0]); nn_tensor_free(in[1]); nn_tensor_free(in[2]);
            }
        }
    }
    {   /* sigmoid_focal_loss: reductions, alpha on / off, gamma 2 and 0 */
        static const int64_t fs[][2] = {{37, 11}, {300007, 1}, {0, 2}};
        int r, k;
        for (s = 0; s < 3; s++)
            for (r = 0; r < 3; r++)
                for (k = 0; k < 2; k++) {
                    nn_tensor *in[2];
                    in[0] = rnd(2, fs[s], -6, 6); in[1] = rnd(2, fs[s], 0, 1);
                    a.op = 14; a.red = r; a.p0 = k ? -1.0 : 0.25; a.p1 = k ? 0.0 : 2.0;
                    snprintf(what, sizeof what, "focal case %d red %d alpha %.2f gamma %.0f", s, r, a.p0, a.p1);
                    compare(what, f_il, &a, 2, in, g2, TOL_F32);
                    nn_tensor_free(in[0]); nn_tensor_free(in[1]);
                }
    }
}

/* nn_MultiheadAttention on the GPU with bool masks on either device and a float mask on the CPU */
static void test_mha_masks(void) {
    nn_params Pc, Pg;
    nn_MultiheadAttention mc, mg;
    int64_t qs[3] = {2, 5, 8}, ks[3] = {2, 7, 8}, kp[2] = {2, 7}, am[2] = {5, 7};
    int k;
    memset(&Pc, 0, sizeof Pc); memset(&Pg, 0, sizeof Pg);
    nn_seed(21); nn_MultiheadAttention_init(&mc, &Pc, "mha", 8, 2, 0.0, 8, 8);
    nn_seed(21); nn_MultiheadAttention_init(&mg, &Pg, "mha", 8, 2, 0.0, 8, 8);
    nn_params_to(&Pg, NN_CUDA);
    nn_scope_begin();
    {
        nn_tensor *q = rnd(3, qs, -1, 1), *kv = rnd(3, ks, -1, 1), *kpm = rnd_mask(2, kp, 5u), *bm = rnd_mask(2, am, 6u);
        nn_tensor *fm = rnd(2, am, -1, 1), *yc, *yg;
        for (k = 0; k < 5; k++) ((uint8_t *)bm->data)[k * 7] = 0;    /* every query attends key 0 */
        for (k = 0; k < 2; k++) ((uint8_t *)kpm->data)[k * 7] = 0;
        for (k = 0; k < 3; k++) {
            nn_tensor *m1 = k == 2 ? NULL : kpm, *m2 = k == 2 ? fm : bm;
            yc = nn_MultiheadAttention_forward(&mc, q, kv, kv, m1, m2);
            yg = nn_MultiheadAttention_forward(&mg, nn_to(q, NN_CUDA), nn_to(kv, NN_CUDA), nn_to(kv, NN_CUDA),
                                               m1 && k == 0 ? nn_to(m1, NN_CUDA) : m1, k == 0 ? nn_to(m2, NN_CUDA) : m2);
            check_rel(k == 0 ? "mha gpu masks" : k == 1 ? "mha cpu masks, gpu query" : "mha cpu float mask",
                      "fwd", yg, yc, TOL_F32);
        }
    }
    nn_scope_end(NULL);
    nn_params_free(&Pc); nn_params_free(&Pg);
    /* self-attention under autocast (one cast of the shared input on the GPU); head dim 16: the f16/bf16 kernels
       take multiples of 8 */
    memset(&Pc, 0, sizeof Pc); memset(&Pg, 0, sizeof Pg);
    nn_seed(22); nn_MultiheadAttention_init(&mc, &Pc, "mha", 32, 2, 0.0, 32, 32);
    nn_seed(22); nn_MultiheadAttention_init(&mg, &Pg, "mha", 32, 2, 0.0, 32, 32);
    nn_params_to(&Pg, NN_CUDA);
    nn_scope_begin();
    {
        int64_t xs[3] = {2, 7, 32};
        nn_tensor *x = rnd(3, xs, -1, 1), *yc, *yg;
        for (k = 0; k < 2; k++) {
            nn_dtype dt = k ? NN_F16 : NN_BF16;
            nn_tensor *xc = nn_clone(x), *xg = nn_to(x, NN_CUDA), *g = rnd(3, xs, -1, 1), *outs[2], *gs[2];
            nn_requires_grad(xc, 1); nn_requires_grad(xg, 1);
            nn_autocast_begin(dt);
            yc = nn_MultiheadAttention_forward(&mc, xc, xc, xc, NULL, NULL);
            yg = nn_MultiheadAttention_forward(&mg, xg, xg, xg, NULL, NULL);
            nn_autocast_end();
            CHECK(yg->dtype == dt, "mha self-attention under %s autocast returns %s", nn_dtype_name(dt), nn_dtype_name(yg->dtype));
            check_rel(k ? "mha self-attention f16 autocast" : "mha self-attention bf16 autocast", "fwd", nn_cast(yg, NN_F32),
                      yc, TOL_LOW);
            outs[0] = yc; outs[1] = yg; gs[0] = g; gs[1] = nn_to(g, NN_CUDA);
            nn_backward_with(2, outs, gs);
            check_rel(k ? "mha self-attention f16 autocast" : "mha self-attention bf16 autocast", "dx", xg->grad, xc->grad,
                      TOL_LOW);
        }
    }
    nn_scope_end(NULL);
    nn_params_free(&Pc); nn_params_free(&Pg);
}

/* pool statistics and the out-of-memory message */
static jmp_buf oom_jmp;
static void oom_handler(const char *msg, void *u) { (void)u; (void)msg; longjmp(oom_jmp, 1); }
static void test_memory(void) {
    nn_mem_info before, after;
    int64_t s = 1 << 20;
    nn_tensor *t;
    nn_mem_trim(NN_CUDA);
    before = nn_mem_stats(NN_CUDA);
    nn_scope_begin();
    t = nn_to(rnd(1, &s, 0, 1), NN_CUDA);
    t = nn_exp(t);
    after = nn_mem_stats(NN_CUDA);
    CHECK(after.current >= before.current + 2 * 4 * (size_t)s, "cuda pool: current %zu after two 4 MB tensors (was %zu)", after.current, before.current);
    nn_scope_end(NULL);
    after = nn_mem_stats(NN_CUDA);
    CHECK(after.current == before.current, "cuda pool: current %zu after the scope, %zu before", after.current, before.current);
    nn_mem_set_limit(NN_CUDA, (size_t)1 << 20);
    nn_set_error_handler(oom_handler, NULL);
    if (!setjmp(oom_jmp)) {
        int64_t big = 1 << 22;
        nn__new(NN_F32, NN_CUDA, 1, &big);
        CHECK(0, "cuda pool: no error past the limit");
    } else {
        CHECK(strstr(nn_last_error(), "out of memory on cuda") != NULL, "cuda pool: message was '%s'", nn_last_error());
    }
    nn_set_error_handler(NULL, NULL);
    nn_mem_set_limit(NN_CUDA, 0);
}

int main(int argc, char **argv) {
    int a;
    for (a = 1; a < argc; a++) {
        if (strcmp(argv[a], "-v") == 0) verbose = 1;
        if (strcmp(argv[a], "quick") == 0) quick = 1;
        if (strcmp(argv[a], "il") == 0) only_il = 1;
        if (strcmp(argv[a], "sdpa") == 0) only_sdpa = 1;
        if (strcmp(argv[a], "conv") == 0) only_conv = 1;
        if (strcmp(argv[a], "gn") == 0) only_gn = 1;
        if (strncmp(argv[a], "case=", 5) == 0) sdpa_only = argv[a] + 5;
    }
    setenv("NN_CUDA_POISON", "1", 0);
    if (!nn_cuda_available()) { printf("no CUDA device\n0 passed, 1 failed\n"); return 1; }
    nn_seed(7);
    test_tf32_defaults();
    nn_cuda_set_tf32(0);
    nn_cuda_set_conv_tf32(0);   /* f32 comparisons with the CPU at TOL_F32; the TF32 cases turn it on */
    nn_seed(7);
    if (only_sdpa) {
        test_sdpa();
    } else if (only_conv) {
        test_conv();
    } else if (only_gn) {
        test_group_norm();
    } else if (only_il) {
        test_index_ops();
        test_losses();
        test_mha_masks();
    } else if (quick) {
        test_group_norm();
        test_sdpa();
        test_adamw_params();
    } else {
        test_elementwise();
        test_autocast();
        test_reduce();
        test_softmax();
        test_layer_norm();
        test_addcmul();
        test_layer_norm_to();
        test_vit_block_fused();
        test_matmul();
        test_shape();
        test_dropout();
        test_casts();
        test_group_norm();
        test_conv();
        test_optim();
        test_sdpa();
        test_adamw_params();
        test_index_ops();
        test_losses();
        test_mha_masks();
        test_memory();
    }
    nn_cuda_synchronize();
    nn_shutdown();
    printf("worst relative error: f32 %.3g (bound %.0e), bf16/f16 %.3g (bound %.0e)\n", worst_f32, TOL_F32, worst_low, TOL_LOW);
    return test_summary();
}
