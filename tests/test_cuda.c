/* tests/test_cuda.c - every CUDA op, forward and backward, against the CPU path on random inputs.

   For each case the same op runs on the CPU (the reference) and on the GPU from the same inputs, with the same
   random upstream gradient; outputs and input gradients are compared by ||gpu - cpu|| / ||cpu||:
     f32 ops (TF32 off):                 < 1e-5
     bf16 / f16 GEMM operands:           < 1e-2 (against the CPU product of the rounded operands)
     casts, fills, dropout masks, copies: bit-exact
   Poison: NN_CUDA_POISON=1 makes every fresh device block 0xFF bytes (NaN as f32), and every case starts with
   nn_mem_trim(NN_CUDA), so an element a kernel never writes shows up as NaN and fails the check.
   Needs a GPU: make test-cuda (on the device machine). Prints "N passed, M failed". */
#define _POSIX_C_SOURCE 200809L
#define NN_IMPLEMENTATION
#include "nn.h"
#include "test.h"
#include <stdlib.h>
#include <string.h>
#include <setjmp.h>

#define TOL_F32 1e-5
#define TOL_LOW 1e-2

static double worst_f32, worst_low;
static int verbose;

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

static void test_reduce(void) {
    static const int64_t shapes[][3] = {{7, 33, 65}, {3, 70001, 1}, {70001, 3, 1}, {1, 1, 300007}, {2, 9000, 5}};
    static const int nds[] = {3, 2, 2, 3, 3};
    int s, op, d, grad[1] = {1};
    char what[96];
    args a;
    memset(&a, 0, sizeof a);
    for (s = 0; s < 5; s++) {
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
    nn_tensor_free(src);
}

/* group_norm: the CUDA kernels against the CPU op (nn.h's group_norm is in wip/ops_conv.h, CPU-only so far) */
void nn__cuda_group_norm_fwd(const nn_tensor *x, int64_t G, const nn_tensor *w, const nn_tensor *b, double eps,
                             nn_tensor *y, nn_tensor *mean, nn_tensor *rstd);
void nn__cuda_group_norm_bwd(const nn_tensor *g, const nn_tensor *x, int64_t G, const nn_tensor *w, const nn_tensor *mean,
                             const nn_tensor *rstd, nn_tensor *gx, nn_tensor *gw, nn_tensor *gb);
static void test_group_norm(void) {
    /* (groups of 2 elements give a gradient that is exactly 0 up to rounding: no relative error to measure) */
    static const int64_t shapes[][4] = {{2, 6, 5, 7}, {3, 32, 17, 9}, {1, 4, 1, 3}, {2, 64, 33, 33}};
    static const int groups[] = {3, 8, 2, 32};
    int s;
    for (s = 0; s < 4; s++) {
        int64_t C = shapes[s][1], NG = shapes[s][0] * groups[s];
        char what[64];
        nn_mem_trim(NN_CUDA);
        nn_scope_begin();
        {
            nn_tensor *x = rnd(4, shapes[s], -2, 3), *w = rnd(1, &C, 0.5, 1.5), *b = rnd(1, &C, -1, 1), *y, *g;
            nn_tensor *xg = nn_to(x, NN_CUDA), *wg = nn_to(w, NN_CUDA), *bg = nn_to(b, NN_CUDA);
            nn_tensor *yg = nn__new(NN_F32, NN_CUDA, 4, shapes[s]), *mg = nn__new(NN_F32, NN_CUDA, 1, &NG);
            nn_tensor *rg = nn__new(NN_F32, NN_CUDA, 1, &NG), *gxg, *gwg, *gbg;
            nn_requires_grad(x, 1); nn_requires_grad(w, 1); nn_requires_grad(b, 1);
            y = nn_group_norm(x, groups[s], w, b, 1e-5);
            nn__cuda_group_norm_fwd(xg, groups[s], wg, bg, 1e-5, yg, mg, rg);
            snprintf(what, sizeof what, "group_norm shape %d", s);
            check_rel(what, "fwd", yg, y, TOL_F32);
            g = rnd(4, shapes[s], -1, 1);
            nn_backward_with(1, &y, &g);
            gxg = nn__new(NN_F32, NN_CUDA, 4, shapes[s]); gwg = nn__new(NN_F32, NN_CUDA, 1, &C); gbg = nn__new(NN_F32, NN_CUDA, 1, &C);
            nn__cuda_group_norm_bwd(nn_to(g, NN_CUDA), xg, groups[s], wg, mg, rg, gxg, gwg, gbg);
            check_rel(what, "grad x", gxg, x->grad, TOL_F32);
            check_rel(what, "grad w", gwg, w->grad, TOL_F32);
            check_rel(what, "grad b", gbg, b->grad, TOL_F32);
            nn_zero_grad(x); nn_zero_grad(w); nn_zero_grad(b);
        }
        nn_scope_end(NULL);
    }
}

/* conv2d, pools, upsample: the CUDA entry points against the CPU ops (wip/ops_conv.h, CPU-only so far) */
void nn__cuda_conv2d_fwd(const nn_tensor *x, const nn_tensor *w, const nn_tensor *b, const int stride[2],
                         const int padding[2], const int dilation[2], int groups, nn_tensor *y);
void nn__cuda_conv2d_bwd(const nn_tensor *gy, const nn_tensor *x, const nn_tensor *w, const int stride[2],
                         const int padding[2], const int dilation[2], int groups, nn_tensor *gx, nn_tensor *gw,
                         nn_tensor *gb);
void nn__cuda_upsample_nearest2d_fwd(const nn_tensor *x, nn_tensor *y);
void nn__cuda_upsample_nearest2d_bwd(const nn_tensor *g, nn_tensor *gx);
void nn__cuda_avg_pool2d_fwd(const nn_tensor *x, int kernel, int stride, int padding, nn_tensor *y);
void nn__cuda_avg_pool2d_bwd(const nn_tensor *g, int kernel, int stride, int padding, nn_tensor *gx);
void nn__cuda_adaptive_avg_pool2d_fwd(const nn_tensor *x, nn_tensor *y);
void nn__cuda_adaptive_avg_pool2d_bwd(const nn_tensor *g, nn_tensor *gx);

static nn_tensor *dev_like(const nn_tensor *t) { return nn__new(NN_F32, NN_CUDA, t->ndim, t->shape); }

static void test_conv(void) {
    /* N C H W, O kh kw, stride, pad, dil, groups */
    static const int cs[][12] = {{2, 3, 11, 13, 5, 3, 3, 1, 1, 1, 1, 1}, {3, 8, 17, 9, 4, 3, 3, 2, 1, 1, 2, 1},
                                 {2, 6, 15, 15, 6, 5, 3, 1, 2, 2, 3, 1}, {4, 16, 7, 7, 8, 1, 1, 1, 0, 1, 1, 0},
                                 {1, 4, 9, 10, 4, 3, 3, 2, 0, 1, 4, 1}, {2, 5, 6, 7, 7, 2, 4, 3, 1, 1, 1, 1}};
    int k;
    for (k = 0; k < 6; k++) {
        const int *c = cs[k];
        int st[2], pd[2], dl[2];
        int64_t xs[4], wsz[4], bs = c[4];
        char what[64];
        st[0] = c[7]; st[1] = c[7] == 3 ? 2 : c[7]; pd[0] = c[8]; pd[1] = c[8]; dl[0] = c[9]; dl[1] = c[9];
        xs[0] = c[0]; xs[1] = c[1]; xs[2] = c[2]; xs[3] = c[3];
        wsz[0] = c[4]; wsz[1] = c[1] / c[10]; wsz[2] = c[5]; wsz[3] = c[6];
        snprintf(what, sizeof what, "conv2d case %d", k);
        nn_mem_trim(NN_CUDA);
        nn_scope_begin();
        {
            nn_tensor *x = rnd(4, xs, -1, 1), *w = rnd(4, wsz, -1, 1), *b = c[11] ? rnd(1, &bs, -1, 1) : NULL, *y, *g;
            nn_tensor *yg, *gxg, *gwg, *gbg = NULL;
            nn_requires_grad(x, 1); nn_requires_grad(w, 1); if (b) nn_requires_grad(b, 1);
            y = nn_conv2d_ex(x, w, b, st, pd, dl, c[10]);
            yg = dev_like(y);
            nn__cuda_conv2d_fwd(nn_to(x, NN_CUDA), nn_to(w, NN_CUDA), b ? nn_to(b, NN_CUDA) : NULL, st, pd, dl, c[10], yg);
            check_rel(what, "fwd", yg, y, TOL_F32);
            g = rnd(4, y->shape, -1, 1);
            nn_backward_with(1, &y, &g);
            gxg = dev_like(x); gwg = dev_like(w); if (b) gbg = dev_like(b);
            nn__cuda_conv2d_bwd(nn_to(g, NN_CUDA), nn_to(x, NN_CUDA), nn_to(w, NN_CUDA), st, pd, dl, c[10], gxg, gwg, gbg);
            check_rel(what, "grad x", gxg, x->grad, TOL_F32);
            check_rel(what, "grad w", gwg, w->grad, TOL_F32);
            if (b) check_rel(what, "grad b", gbg, b->grad, TOL_F32);
            nn_zero_grad(x); nn_zero_grad(w); if (b) nn_zero_grad(b);
        }
        nn_scope_end(NULL);
    }
    for (k = 0; k < 9; k++) {   /* 0-2 upsample, 3-5 avg_pool, 6-8 adaptive */
        static const int64_t xs[3][4] = {{2, 3, 5, 7}, {1, 2, 9, 11}, {3, 4, 16, 16}};
        static const int64_t os[3][2] = {{10, 14}, {17, 23}, {5, 3}};
        static const int pool[3][3] = {{2, 2, 0}, {3, 2, 1}, {4, 3, 2}};
        int i = k % 3;
        char what[64];
        nn_mem_trim(NN_CUDA);
        nn_scope_begin();
        {
            nn_tensor *x = rnd(4, xs[i], -1, 1), *y, *g, *yg, *gxg;
            nn_requires_grad(x, 1);
            if (k < 3) y = nn_upsample_nearest2d(x, os[i][0], os[i][1]);
            else if (k < 6) y = nn_avg_pool2d(x, pool[i][0], pool[i][1], pool[i][2]);
            else y = nn_adaptive_avg_pool2d(x, os[(i + 2) % 3][0] % 7 + 1, os[(i + 1) % 3][1] % 6 + 2);
            yg = dev_like(y);
            if (k < 3) nn__cuda_upsample_nearest2d_fwd(nn_to(x, NN_CUDA), yg);
            else if (k < 6) nn__cuda_avg_pool2d_fwd(nn_to(x, NN_CUDA), pool[i][0], pool[i][1], pool[i][2], yg);
            else nn__cuda_adaptive_avg_pool2d_fwd(nn_to(x, NN_CUDA), yg);
            snprintf(what, sizeof what, "%s case %d", k < 3 ? "upsample_nearest2d" : k < 6 ? "avg_pool2d" : "adaptive_avg_pool2d", i);
            check_rel(what, "fwd", yg, y, TOL_F32);
            g = rnd(4, y->shape, -1, 1);
            nn_backward_with(1, &y, &g);
            gxg = dev_like(x);
            if (k < 3) nn__cuda_upsample_nearest2d_bwd(nn_to(g, NN_CUDA), gxg);
            else if (k < 6) nn__cuda_avg_pool2d_bwd(nn_to(g, NN_CUDA), pool[i][0], pool[i][1], pool[i][2], gxg);
            else nn__cuda_adaptive_avg_pool2d_bwd(nn_to(g, NN_CUDA), gxg);
            check_rel(what, "grad x", gxg, x->grad, TOL_F32);
            nn_zero_grad(x);
        }
        nn_scope_end(NULL);
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
    verbose = argc > 1 && strcmp(argv[1], "-v") == 0;
    setenv("NN_CUDA_POISON", "1", 0);
    if (!nn_cuda_available()) { printf("no CUDA device\n0 passed, 1 failed\n"); return 1; }
    nn_cuda_set_tf32(0);
    nn_seed(7);
    test_elementwise();
    test_reduce();
    test_softmax();
    test_layer_norm();
    test_matmul();
    test_shape();
    test_dropout();
    test_casts();
    test_group_norm();
    test_conv();
    test_optim();
    test_memory();
    nn_cuda_synchronize();
    nn_shutdown();
    printf("worst relative error: f32 %.3g (bound %.0e), bf16/f16 %.3g (bound %.0e)\n", worst_f32, TOL_F32, worst_low, TOL_LOW);
    return test_summary();
}
