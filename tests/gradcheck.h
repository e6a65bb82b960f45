/* tests/gradcheck.h - finite-difference gradient checks for nn.h ops.

   The check: pick a fixed random projection r (same shape as the output), take L(x) = sum(r * f(x))
   accumulated in double, and compare dL/dx_i from nn_backward with the central difference
   (L(x + h e_i) - L(x - h e_i)) / 2h evaluated in double from the f32 forward. The ops compute in f32,
   so the difference carries roughly 1e-7 * |L| / h of rounding noise; with h = 1e-2 (inputs of order 1)
   the truncation error h^2 * f''' / 6 and the noise are both below 1e-3 relative, hence the default
   tolerance: |analytic - numeric| <= 2e-3 + 1e-2 * |numeric| per element (GC_ATOL/GC_RTOL to override).
   Every element of every input that requires grad is checked (tests keep shapes small). */
#ifndef NN_GRADCHECK_H
#define NN_GRADCHECK_H
#include "test.h"

#ifndef GC_ATOL
#define GC_ATOL 2e-3
#endif
#ifndef GC_RTOL
#define GC_RTOL 1e-2
#endif

/* f builds one output from in[0..n); ctx carries anything else */
typedef nn_tensor *(*gc_fn)(void *ctx, nn_tensor **in);

static double gc__loss(gc_fn f, void *ctx, nn_tensor **in, const double *r, int64_t *n_out) {
    double L = 0;
    int64_t i;
    nn_tensor *y;
    int prev = nn_set_grad_enabled(0);
    nn_scope_begin();
    y = f(ctx, in);
    *n_out = y->numel;
    {
        nn_tensor *y32 = y->dtype == NN_F32 ? y : nn_cast(y, NN_F32);
        const float *p = (const float *)y32->data;
        if (r) for (i = 0; i < y->numel; i++) L += r[i] * (double)p[i];
    }
    nn_scope_end(NULL);
    nn_set_grad_enabled(prev);
    return L;
}

/* returns the number of failing elements (and records one CHECK per input) */
static int gradcheck_tol(const char *what, gc_fn f, void *ctx, int n, nn_tensor **in, double h, double atol,
                         double rtol) {
    int64_t n_out = 0, i;
    int k, bad_total = 0;
    double *r;
    nn_tensor *y;
    /* the output size first, then a projection with entries in [-1, 1] */
    gc__loss(f, ctx, in, NULL, &n_out);
    (void)0;
    r = (double *)malloc(sizeof(double) * (size_t)(n_out ? n_out : 1));
    for (i = 0; i < n_out; i++) r[i] = 2.0 * nn_rng_uniform_at(12345, (uint64_t)i) - 1.0;
    for (k = 0; k < n; k++) if (in[k]->requires_grad) nn_zero_grad(in[k]);
    nn_scope_begin();
    y = f(ctx, in);
    {
        nn_tensor *rt = nn_empty(NN_F32, y->ndim, y->shape);
        float *p = (float *)rt->data;
        for (i = 0; i < n_out; i++) p[i] = (float)r[i];
        nn_backward_with(1, &y, &rt);
    }
    nn_scope_end(NULL);
    for (k = 0; k < n; k++) {
        nn_tensor *x = in[k];
        float *xd;
        int bad = 0;
        double worst = 0, worst_a = 0, worst_n = 0;
        int64_t worst_i = -1;
        if (!x->requires_grad) continue;
        xd = (float *)x->data;
        for (i = 0; i < x->numel; i++) {
            float save = xd[i];
            double lp, lm, num, ana;
            xd[i] = save + (float)h; lp = gc__loss(f, ctx, in, r, &n_out);
            xd[i] = save - (float)h; lm = gc__loss(f, ctx, in, r, &n_out);
            xd[i] = save;
            num = (lp - lm) / (2.0 * h);
            ana = x->grad ? (double)((float *)x->grad->data)[i] : 0.0;
            if (!(fabs(ana - num) <= atol + rtol * fabs(num))) {
                bad++;
                if (!(fabs(ana - num) <= worst)) { worst = fabs(ana - num); worst_a = ana; worst_n = num; worst_i = i; }
            }
        }
        CHECK(bad == 0, "gradcheck %s: input %d: %d of %lld elements off; worst at %lld: analytic %.6g numeric %.6g",
              what, k, bad, (long long)x->numel, (long long)worst_i, worst_a, worst_n);
        bad_total += bad;
        nn_zero_grad(x);
    }
    free(r);
    return bad_total;
}

static int gradcheck(const char *what, gc_fn f, void *ctx, int n, nn_tensor **in) {
    return gradcheck_tol(what, f, ctx, n, in, 1e-2, GC_ATOL, GC_RTOL);
}

/* a leaf f32 tensor with entries U[lo,hi) from the library's generator, requiring grad */
static nn_tensor *gc_param(int ndim, const int64_t *shape, double lo, double hi) {
    nn_tensor *t = nn_uniform(ndim, shape, lo, hi);
    nn_requires_grad(t, 1);
    return t;
}
#endif
