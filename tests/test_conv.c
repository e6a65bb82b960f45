/* tests/test_conv.c - conv2d, nearest upsample, avg / adaptive-avg pooling and group_norm:
   finite-difference gradient checks, PyTorch fixtures (tests/make_fixtures_conv.py -> tests/fixtures/conv.txt)
   for forward and backward, error messages, and scope hygiene (no workspace left behind).

   Run from the repository root:  ./test_conv [fixture file] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <setjmp.h>
/* a small columns workspace, so that conv2d runs its row-band loop here (several bands, a short last one)
   as well as its single-band path (small images, pointwise convs); -DNN_CONV_COLS_BYTES=... overrides */
#ifndef NN_CONV_COLS_BYTES
#define NN_CONV_COLS_BYTES 2048
#endif
#define NN_IMPLEMENTATION
#include "nn.h"
#include "test.h"
#include "gradcheck.h"
#include "fixture.h"

/* ------------------------------------------------------------------------------------ gradient checks */

typedef struct { int stride[2], padding[2], dilation[2], groups, bias; } conv_ctx;

static nn_tensor *conv_fn(void *ctx, nn_tensor **in) {
    conv_ctx *c = (conv_ctx *)ctx;
    return nn_conv2d_ex(in[0], in[1], c->bias ? in[2] : NULL, c->stride, c->padding, c->dilation, c->groups);
}

static nn_tensor *conv_sym_fn(void *ctx, nn_tensor **in) {   /* the symmetric entry point */
    conv_ctx *c = (conv_ctx *)ctx;
    return nn_conv2d(in[0], in[1], c->bias ? in[2] : NULL, c->stride[0], c->padding[0], c->dilation[0], c->groups);
}

static void gc_conv(const char *what, int sym, int n, int c, int h, int w, int cout, int kh, int kw, int sh, int sw,
                    int ph, int pw, int dh, int dw, int groups, int bias) {
    conv_ctx ctx;
    int64_t xs[4], ws[4], bs[1];
    nn_tensor *in[3];
    xs[0] = n; xs[1] = c; xs[2] = h; xs[3] = w;
    ws[0] = cout; ws[1] = c / groups; ws[2] = kh; ws[3] = kw;
    bs[0] = cout;
    ctx.stride[0] = sh; ctx.stride[1] = sw; ctx.padding[0] = ph; ctx.padding[1] = pw;
    ctx.dilation[0] = dh; ctx.dilation[1] = dw; ctx.groups = groups; ctx.bias = bias;
    in[0] = gc_param(4, xs, -1, 1);
    in[1] = gc_param(4, ws, -0.5, 0.5);
    in[2] = bias ? gc_param(1, bs, -1, 1) : NULL;
    gradcheck(what, sym ? conv_sym_fn : conv_fn, &ctx, bias ? 3 : 2, in);
    nn_tensor_free(in[0]); nn_tensor_free(in[1]);
    if (in[2]) nn_tensor_free(in[2]);
}

typedef struct { int64_t a, b, c; } int3_ctx;

static nn_tensor *up_fn(void *ctx, nn_tensor **in) { int3_ctx *c = (int3_ctx *)ctx; return nn_upsample_nearest2d(in[0], c->a, c->b); }
static nn_tensor *avg_fn(void *ctx, nn_tensor **in) { int3_ctx *c = (int3_ctx *)ctx; return nn_avg_pool2d(in[0], (int)c->a, (int)c->b, (int)c->c); }
static nn_tensor *ada_fn(void *ctx, nn_tensor **in) { int3_ctx *c = (int3_ctx *)ctx; return nn_adaptive_avg_pool2d(in[0], c->a, c->b); }

static void gc_plane(const char *what, gc_fn f, int n, int c, int h, int w, int64_t a, int64_t b, int64_t cc) {
    int3_ctx ctx;
    int64_t xs[4];
    nn_tensor *x;
    xs[0] = n; xs[1] = c; xs[2] = h; xs[3] = w;
    ctx.a = a; ctx.b = b; ctx.c = cc;
    x = gc_param(4, xs, -1, 1);
    gradcheck(what, f, &ctx, 1, &x);
    nn_tensor_free(x);
}

typedef struct { int groups, has_w, has_b; double eps; } gn_ctx;

static nn_tensor *gn_fn(void *ctx, nn_tensor **in) {
    gn_ctx *c = (gn_ctx *)ctx;
    int k = 1;
    nn_tensor *w = c->has_w ? in[k++] : NULL;
    nn_tensor *b = c->has_b ? in[k++] : NULL;
    return nn_group_norm(in[0], c->groups, w, b, c->eps);
}

static void gc_gn(const char *what, int ndim, const int64_t *shape, int groups, int has_w, int has_b) {
    gn_ctx ctx;
    nn_tensor *in[3];
    int k = 1, i;
    int64_t cs[1];
    cs[0] = shape[1];
    ctx.groups = groups; ctx.has_w = has_w; ctx.has_b = has_b; ctx.eps = 1e-5;
    in[0] = gc_param(ndim, shape, -1, 1);
    if (has_w) in[k++] = gc_param(1, cs, 0.5, 1.5);
    if (has_b) in[k++] = gc_param(1, cs, -1, 1);
    gradcheck(what, gn_fn, &ctx, k, in);
    for (i = 0; i < k; i++) nn_tensor_free(in[i]);
}

static void test_gradchecks(void) {
    int64_t s1[4] = {2, 6, 3, 4}, s2[3] = {2, 4, 5}, s3[4] = {2, 4, 3, 3}, s4[2] = {3, 8}, s5[4] = {1, 4, 3, 5};
    /*      what                     sym n  c  h  w cout kh kw sh sw ph pw dh dw g  bias */
    gc_conv("conv 3x3 pad 1 bias",     1, 2, 3, 5, 5, 4,  3, 3, 1, 1, 1, 1, 1, 1, 1, 1);
    gc_conv("conv stride 2",           1, 1, 2, 7, 6, 3,  3, 3, 2, 2, 1, 1, 1, 1, 1, 0);
    gc_conv("conv dilation 2",         1, 1, 2, 7, 7, 2,  3, 3, 1, 1, 2, 2, 2, 2, 1, 1);
    gc_conv("conv groups 2",           1, 1, 4, 5, 6, 6,  3, 3, 1, 1, 1, 1, 1, 1, 2, 1);
    gc_conv("conv depthwise stride 2", 1, 2, 3, 6, 5, 3,  3, 3, 2, 2, 1, 1, 1, 1, 3, 0);
    gc_conv("conv depthwise x2 mult",  0, 1, 2, 5, 5, 4,  3, 3, 1, 1, 1, 1, 1, 1, 2, 1);
    gc_conv("conv_ex non-square",      0, 1, 2, 7, 5, 3,  3, 2, 2, 1, 1, 0, 1, 2, 1, 1);
    gc_conv("conv_ex 1x3 pad (0,1)",   0, 2, 3, 4, 6, 2,  1, 3, 1, 2, 0, 1, 1, 1, 1, 1);
    gc_conv("conv 1x1",                1, 2, 3, 4, 5, 4,  1, 1, 1, 1, 0, 0, 1, 1, 1, 1);
    gc_conv("conv 1x1 stride 2",       1, 1, 3, 5, 5, 2,  1, 1, 2, 2, 0, 0, 1, 1, 1, 0);
    gc_conv("conv 1x1 groups 3",       1, 1, 6, 3, 3, 3,  1, 1, 1, 1, 0, 0, 1, 1, 3, 1);
    gc_conv("conv 5x5 pad 2 dil 2 g2", 0, 1, 2, 9, 8, 2,  5, 3, 1, 2, 2, 3, 2, 1, 2, 1);

    gc_plane("upsample x2", up_fn, 1, 2, 3, 4, 6, 8, 0);
    gc_plane("upsample 3x4 -> 5x7", up_fn, 1, 2, 3, 4, 5, 7, 0);
    gc_plane("upsample 5x7 -> 2x3", up_fn, 2, 1, 5, 7, 2, 3, 0);
    gc_plane("avg_pool k3 s2 p1", avg_fn, 1, 2, 7, 6, 3, 2, 1);
    gc_plane("avg_pool k2 default stride", avg_fn, 2, 1, 5, 5, 2, 0, 0);
    gc_plane("avg_pool k3 s1 p1", avg_fn, 1, 1, 4, 5, 3, 1, 1);
    gc_plane("adaptive 7x7 -> 3x3", ada_fn, 1, 2, 7, 7, 3, 3, 0);
    gc_plane("adaptive 5x7 -> 3x4", ada_fn, 1, 1, 5, 7, 3, 4, 0);
    gc_plane("adaptive 3x4 -> 5x6 (up)", ada_fn, 1, 1, 3, 4, 5, 6, 0);

    gc_gn("group_norm 4d affine", 4, s1, 3, 1, 1);
    gc_gn("group_norm 3d plain", 3, s2, 2, 0, 0);
    gc_gn("group_norm weight only", 4, s3, 4, 1, 0);
    gc_gn("group_norm 2d affine", 2, s4, 2, 1, 1);
    gc_gn("group_norm bias only, 1 group", 4, s5, 1, 0, 1);
}

/* ------------------------------------------------------------------------------------ PyTorch fixtures */

#define FX_ATOL 1e-5
#define FX_RTOL 1e-4

static nn_tensor *fx_leaf(const fx_file *f, const char *name, const char *key) {
    char buf[128];
    nn_tensor *t;
    snprintf(buf, sizeof buf, "%s.%s", name, key);
    CHECK(fx_has(f, buf), "fixture has %s", buf);
    t = nn_clone(fx_get(f, buf));
    nn_requires_grad(t, 1);
    return t;
}

static void fx_check(const fx_file *f, const char *name, const char *key, nn_tensor *t) {
    char buf[128];
    snprintf(buf, sizeof buf, "%s.%s", name, key);
    if (!t) { CHECK(0, "%s: no gradient", buf); return; }
    CHECK_FX(t, fx_get(f, buf), FX_ATOL, FX_RTOL, buf);
}

static const int64_t *fx_args(const fx_file *f, const char *name) {
    char buf[128];
    snprintf(buf, sizeof buf, "%s.args", name);
    return (const int64_t *)fx_get(f, buf)->data;
}

/* y is checked, then backward with <name>.r, then the gradients of the n inputs with keys */
static void fx_forward_backward(const fx_file *f, const char *name, nn_tensor *y, int n, nn_tensor **in,
                                const char **keys) {
    char buf[128];
    nn_tensor *r;
    int i;
    fx_check(f, name, "y", y);
    snprintf(buf, sizeof buf, "%s.r", name);
    r = fx_get(f, buf);
    nn_backward_with(1, &y, &r);
    for (i = 0; i < n; i++) {
        char dk[16];
        snprintf(dk, sizeof dk, "d%s", keys[i]);
        fx_check(f, name, dk, in[i]->grad);
    }
}

static void test_fixtures(const char *path) {
    fx_file f = fx_load(path);
    static const char *conv_names[] = {"conv1", "conv2", "conv3", "conv4", "conv5", "conv6", "conv7", "conv8", "conv9"};
    static const char *keys[] = {"x", "w", "b"};
    static const char *xkey[] = {"x"};
    int i;
    for (i = 0; i < (int)(sizeof conv_names / sizeof *conv_names); i++) {
        const char *nm = conv_names[i];
        const int64_t *a = fx_args(&f, nm);
        int st[2], pd[2], dl[2], has_b = (int)a[7];
        nn_tensor *in[3], *y;
        st[0] = (int)a[0]; st[1] = (int)a[1]; pd[0] = (int)a[2]; pd[1] = (int)a[3]; dl[0] = (int)a[4]; dl[1] = (int)a[5];
        in[0] = fx_leaf(&f, nm, "x"); in[1] = fx_leaf(&f, nm, "w"); in[2] = has_b ? fx_leaf(&f, nm, "b") : NULL;
        nn_scope_begin();
        y = nn_conv2d_ex(in[0], in[1], in[2], st, pd, dl, (int)a[6]);
        fx_forward_backward(&f, nm, y, has_b ? 3 : 2, in, keys);
        nn_scope_end(NULL);
        nn_tensor_free(in[0]); nn_tensor_free(in[1]);
        if (in[2]) nn_tensor_free(in[2]);
    }
    {   /* the first layer of a network: the input needs no gradient, only w (and then only b) */
        const int64_t *a = fx_args(&f, "conv2");
        int st[2], pd[2], dl[2], only_b;
        st[0] = (int)a[0]; st[1] = (int)a[1]; pd[0] = (int)a[2]; pd[1] = (int)a[3]; dl[0] = (int)a[4]; dl[1] = (int)a[5];
        for (only_b = 0; only_b < 2; only_b++) {
            nn_tensor *x = nn_clone(fx_get(&f, "conv2.x")), *w = fx_leaf(&f, "conv2", "w"), *b = fx_leaf(&f, "conv2", "b");
            nn_tensor *y;
            if (only_b) nn_requires_grad(w, 0);
            nn_scope_begin();
            y = nn_conv2d_ex(x, w, b, st, pd, dl, (int)a[6]);
            {
                nn_tensor *r = fx_get(&f, "conv2.r");
                nn_backward_with(1, &y, &r);
            }
            if (!only_b) fx_check(&f, "conv2", "dw", w->grad);
            else CHECK(w->grad == NULL, "conv2: w without requires_grad got a gradient");
            fx_check(&f, "conv2", "db", b->grad);
            CHECK(x->grad == NULL, "conv2: x without requires_grad got a gradient");
            nn_scope_end(NULL);
            nn_tensor_free(x); nn_tensor_free(w); nn_tensor_free(b);
        }
    }
    for (i = 1; i <= 5; i++) {
        char nm[16];
        const int64_t *a;
        nn_tensor *x, *y;
        snprintf(nm, sizeof nm, "up%d", i);
        a = fx_args(&f, nm);
        x = fx_leaf(&f, nm, "x");
        nn_scope_begin();
        y = nn_upsample_nearest2d(x, a[0], a[1]);
        fx_forward_backward(&f, nm, y, 1, &x, xkey);
        nn_scope_end(NULL);
        nn_tensor_free(x);
    }
    for (i = 1; i <= 4; i++) {
        char nm[16];
        const int64_t *a;
        nn_tensor *x, *y;
        snprintf(nm, sizeof nm, "avg%d", i);
        a = fx_args(&f, nm);
        x = fx_leaf(&f, nm, "x");
        nn_scope_begin();
        y = nn_avg_pool2d(x, (int)a[0], (int)a[1], (int)a[2]);
        fx_forward_backward(&f, nm, y, 1, &x, xkey);
        nn_scope_end(NULL);
        nn_tensor_free(x);
    }
    for (i = 1; i <= 4; i++) {
        char nm[16];
        const int64_t *a;
        nn_tensor *x, *y;
        snprintf(nm, sizeof nm, "ada%d", i);
        a = fx_args(&f, nm);
        x = fx_leaf(&f, nm, "x");
        nn_scope_begin();
        y = nn_adaptive_avg_pool2d(x, a[0], a[1]);
        if (i == 2) fx_check(&f, nm, "y", y);   /* seed 001's 73x73 -> 32x32: forward only */
        else fx_forward_backward(&f, nm, y, 1, &x, xkey);
        nn_scope_end(NULL);
        nn_tensor_free(x);
    }
    for (i = 1; i <= 6; i++) {
        char nm[16];
        const int64_t *a;
        nn_tensor *in[3], *y, *w, *b;
        const char *gk[3];
        int k = 1, j;
        snprintf(nm, sizeof nm, "gn%d", i);
        a = fx_args(&f, nm);
        in[0] = fx_leaf(&f, nm, "x"); gk[0] = "x";
        w = a[1] ? (gk[k] = "w", in[k++] = fx_leaf(&f, nm, "w")) : NULL;
        b = a[2] ? (gk[k] = "b", in[k++] = fx_leaf(&f, nm, "b")) : NULL;
        nn_scope_begin();
        y = nn_group_norm(in[0], (int)a[0], w, b, i == 5 ? 1e-6 : 1e-5);
        fx_forward_backward(&f, nm, y, k, in, gk);
        nn_scope_end(NULL);
        for (j = 0; j < k; j++) nn_tensor_free(in[j]);
    }
    fx_free(&f);
}

/* ----------------------------------------------------------------------------------------- error messages */

static jmp_buf err_jmp;
static char err_msg[1024];
static void err_handler(const char *msg, void *user) {
    (void)user;
    snprintf(err_msg, sizeof err_msg, "%s", msg);
    longjmp(err_jmp, 1);
}

/* expr must raise nn_error with a message containing s1, s2 and s3 */
#define EXPECT_ERROR(expr, s1, s2, s3) do { \
    err_msg[0] = 0; \
    if (setjmp(err_jmp) == 0) { (void)(expr); CHECK(0, "no error from %s", #expr); } \
    else CHECK(strstr(err_msg, s1) && strstr(err_msg, s2) && strstr(err_msg, s3), \
               "error of %s: \"%s\" lacks \"%s\" / \"%s\" / \"%s\"", #expr, err_msg, s1, s2, s3); \
} while (0)

static nn_tensor *T4(int64_t a, int64_t b, int64_t c, int64_t d) { int64_t s[4]; s[0] = a; s[1] = b; s[2] = c; s[3] = d; return nn_zeros(NN_F32, 4, s); }
static nn_tensor *T1(int64_t a) { return nn_zeros(NN_F32, 1, &a); }

static void test_errors(void) {
    int st0[2] = {0, 1}, one[2] = {1, 1}, zero[2] = {0, 0};
    int64_t s3[3] = {3, 5, 5}, s2[2] = {2, 6};
    nn_tensor *x = T4(1, 3, 5, 5), *w = T4(4, 2, 3, 3), *w3 = T4(4, 3, 3, 3), *x4 = T4(1, 4, 5, 5);
    nn_tensor *w5 = T4(3, 2, 3, 3), *big = T4(1, 3, 7, 7), *tiny = T4(1, 3, 2, 2), *b5 = T1(5);
    nn_tensor *x3 = nn_zeros(NN_F32, 3, s3), *xi = nn_zeros(NN_I32, 4, x->shape), *g6 = T4(2, 6, 3, 1);
    nn_tensor *x2d = nn_zeros(NN_F32, 2, s2);
    nn_set_error_handler(err_handler, NULL);
    EXPECT_ERROR(nn_conv2d(x, w, NULL, 1, 1, 1, 1), "nn_conv2d", "[1,3,5,5]", "[4,2,3,3]");
    EXPECT_ERROR(nn_conv2d(x4, w5, NULL, 1, 1, 1, 2), "nn_conv2d", "groups 2", "[3,2,3,3]");
    EXPECT_ERROR(nn_conv2d(x, w3, NULL, 1, 1, 1, 2), "nn_conv2d", "groups 2", "[1,3,5,5]");
    EXPECT_ERROR(nn_conv2d(tiny, w3, NULL, 1, 0, 1, 1), "nn_conv2d", "[1,3,2,2]", "[4,3,3,3]");
    EXPECT_ERROR(nn_conv2d(x, w3, NULL, 1, 0, 3, 1), "nn_conv2d", "dilated 7x7", "[1,3,5,5]");
    EXPECT_ERROR(nn_conv2d(x, w3, b5, 1, 1, 1, 1), "nn_conv2d", "bias", "[5]");
    EXPECT_ERROR(nn_conv2d(x3, w3, NULL, 1, 1, 1, 1), "nn_conv2d", "input", "[3,5,5]");
    EXPECT_ERROR(nn_conv2d(x, x3, NULL, 1, 1, 1, 1), "nn_conv2d", "weight", "[3,5,5]");
    EXPECT_ERROR(nn_conv2d(xi, w3, NULL, 1, 1, 1, 1), "nn_conv2d", "", "");
    EXPECT_ERROR(nn_conv2d(x, w3, NULL, 1, 1, 1, 0), "nn_conv2d", "groups", "0");
    EXPECT_ERROR(nn_conv2d(x, w3, NULL, 1, -1, 1, 1), "nn_conv2d", "padding", "[1,3,5,5]");
    EXPECT_ERROR(nn_conv2d_ex(x, w3, NULL, st0, one, one, 1), "nn_conv2d_ex", "stride (0,1)", "[4,3,3,3]");
    EXPECT_ERROR(nn_conv2d_ex(tiny, w3, NULL, one, zero, one, 1), "nn_conv2d_ex", "[1,3,2,2]", "[4,3,3,3]");
    EXPECT_ERROR(nn_upsample_nearest2d(x, 0, 4), "nn_upsample_nearest2d", "[1,3,5,5]", "0x4");
    EXPECT_ERROR(nn_upsample_nearest2d(x3, 4, 4), "nn_upsample_nearest2d", "input", "[3,5,5]");
    EXPECT_ERROR(nn_avg_pool2d(x, 7, 1, 0), "nn_avg_pool2d", "kernel 7", "[1,3,5,5]");
    EXPECT_ERROR(nn_avg_pool2d(big, 3, 1, 2), "nn_avg_pool2d", "padding 2", "[1,3,7,7]");
    EXPECT_ERROR(nn_avg_pool2d(x, 0, 1, 0), "nn_avg_pool2d", "kernel 0", "[1,3,5,5]");
    EXPECT_ERROR(nn_adaptive_avg_pool2d(x3, 2, 2), "nn_adaptive_avg_pool2d", "input", "[3,5,5]");
    EXPECT_ERROR(nn_adaptive_avg_pool2d(x, 2, -1), "nn_adaptive_avg_pool2d", "[1,3,5,5]", "2x-1");
    EXPECT_ERROR(nn_group_norm(g6, 4, NULL, NULL, 1e-5), "nn_group_norm", "[2,6,3,1]", "4 groups");
    EXPECT_ERROR(nn_group_norm(g6, 3, b5, NULL, 1e-5), "nn_group_norm", "weight", "[5]");
    EXPECT_ERROR(nn_group_norm(g6, 3, NULL, b5, 1e-5), "nn_group_norm", "bias", "[5]");
    EXPECT_ERROR(nn_group_norm(b5, 1, NULL, NULL, 1e-5), "nn_group_norm", "input", "[5]");
    EXPECT_ERROR(nn_group_norm(x2d, 0, NULL, NULL, 1e-5), "nn_group_norm", "[2,6]", "0 groups");
    nn_set_error_handler(NULL, NULL);
    nn_tensor_free(x); nn_tensor_free(w); nn_tensor_free(w3); nn_tensor_free(x4); nn_tensor_free(w5);
    nn_tensor_free(big); nn_tensor_free(tiny); nn_tensor_free(b5); nn_tensor_free(x3); nn_tensor_free(xi);
    nn_tensor_free(g6); nn_tensor_free(x2d);
}

/* ------------------------------------------------------------------------- memory: nothing left behind */

static void test_memory(void) {
    int64_t xs[4] = {3, 8, 9, 9}, ws[4] = {8, 4, 3, 3}, bs[1] = {8};
    nn_tensor *x = nn_randn(4, xs), *w = nn_randn(4, ws), *b = nn_randn(1, bs), *gw = nn_ones(NN_F32, 1, bs);
    size_t before = 0;
    int step;
    nn_requires_grad(x, 1); nn_requires_grad(w, 1); nn_requires_grad(b, 1); nn_requires_grad(gw, 1);
    for (step = 0; step < 3; step++) {
        nn_tensor *y;
        if (step == 1) before = nn_mem_stats(NN_CPU).current;
        nn_scope_begin();
        y = nn_conv2d(x, w, b, 2, 1, 1, 2);
        y = nn_group_norm(y, 4, gw, b, 1e-5);
        y = nn_upsample_nearest2d(y, 9, 9);
        y = nn_avg_pool2d(y, 3, 1, 1);
        y = nn_adaptive_avg_pool2d(y, 4, 4);
        nn_backward(nn_sum_all(y));
        nn_scope_end(NULL);
    }
    CHECK(nn_mem_stats(NN_CPU).current == before, "vision ops leave %zu bytes behind per step",
          nn_mem_stats(NN_CPU).current - before);
    CHECK(x->grad && w->grad && b->grad && gw->grad, "chain: every leaf got a gradient");
    nn_tensor_free(x); nn_tensor_free(w); nn_tensor_free(b); nn_tensor_free(gw);
}

/* no-grad mode: outputs do not require grad and the tape stays empty */
static void test_no_grad(void) {
    int64_t xs[4] = {1, 2, 5, 5}, ws[4] = {2, 2, 3, 3};
    nn_tensor *x = nn_randn(4, xs), *w = nn_randn(4, ws), *y;
    int prev;
    nn_requires_grad(w, 1);
    prev = nn_set_grad_enabled(0);
    y = nn_conv2d(x, w, NULL, 1, 1, 1, 1);
    CHECK(!y->requires_grad, "no-grad conv output does not require grad");
    nn_set_grad_enabled(prev);
    nn_tensor_free(y); nn_tensor_free(x); nn_tensor_free(w);
}

int main(int argc, char **argv) {
    const char *path = argc > 1 ? argv[1] : "tests/fixtures/conv.txt";
    nn_seed(1);
    test_gradchecks();
    test_fixtures(path);
    test_errors();
    test_memory();
    test_no_grad();
    nn_shutdown();
    return test_summary();
}
