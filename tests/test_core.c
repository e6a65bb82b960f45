/* Core tests: tensors, dtypes, random numbers, scopes and memory, autograd, and every core op against
   finite differences and PyTorch's golden values (tests/fixtures/core.txt, tests/make_fixtures_core.py). */
#define NN_IMPLEMENTATION
#include "nn.h"
#include <setjmp.h>
#include "test.h"
#include "expect_error.h"
#include "gradcheck.h"
#include "fixture.h"


static void test_dtypes(void) {
    /* round-to-nearest-even at the halfway points and the edges of both formats */
    CHECK(nn__f32_to_half(1.0f) == 0x3c00, "half(1)");
    CHECK(nn__f32_to_half(65504.0f) == 0x7bff, "half max");
    CHECK(nn__f32_to_half(65520.0f) == 0x7c00, "65520 rounds to inf");
    CHECK(nn__f32_to_half(1.0f + 1.0f / 2048) == 0x3c00, "1 + half ulp ties to even (down)");
    CHECK(nn__f32_to_half(1.0f + 3.0f / 2048) == 0x3c02, "1 + 1.5 ulp ties to even (up)");
    CHECK(nn__f32_to_half(5.9604644775390625e-8f) == 0x0001, "smallest subnormal");
    CHECK(nn__f32_to_half(2.98023223876953125e-8f) == 0x0000, "half of smallest subnormal ties to 0");
    CHECK(nn__half_to_f32(0x0001) == 5.9604644775390625e-8f, "subnormal back");
    CHECK(nn__half_to_f32(0xc000) == -2.0f, "-2");
    CHECK(nn__f32_to_bf16(1.0f) == 0x3f80, "bf16(1)");
    CHECK(nn__f32_to_bf16(nn__u2f(0x3f808000u)) == 0x3f80, "bf16 tie to even down");
    CHECK(nn__f32_to_bf16(nn__u2f(0x3f818000u)) == 0x3f82, "bf16 tie to even up");
    CHECK(nn__f32_to_bf16(nn__u2f(0x3f808001u)) == 0x3f81, "bf16 above tie");
    CHECK(nn__bf16_to_f32(nn__f32_to_bf16(NAN)) != nn__bf16_to_f32(nn__f32_to_bf16(NAN)), "bf16 NaN stays NaN");
    {   /* every half value survives half -> f32 -> half */
        int h, bad = 0;
        for (h = 0; h < 65536; h++) {
            uint16_t b = nn__f32_to_half(nn__half_to_f32((uint16_t)h));
            if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff)) continue;   /* NaNs: payloads may change */
            if (b != h) bad++;
        }
        CHECK(bad == 0, "half round trip: %d values changed", bad);
    }
    {
        int64_t s[1] = {3};
        float v[3] = {1.5f, -2.25f, 3.0f};
        nn_tensor *a = nn_from_f32(1, s, v), *b = nn_cast(a, NN_BF16), *c = nn_cast(b, NN_F32), *i = nn_cast(a, NN_I32);
        CHECK(((float *)c->data)[1] == -2.25f, "cast f32->bf16->f32");
        CHECK(((int32_t *)i->data)[1] == -2, "cast to i32 truncates");
        nn_tensor_free(a); nn_tensor_free(b); nn_tensor_free(c); nn_tensor_free(i);
    }
}

static void test_rng(void) {
    uint32_t r[4];
    /* Known-answer test of Random123's kat_vectors: philox4x32_10, counter 0, key 0 */
    nn_philox4x32(0, 0, r);
    CHECK(r[0] == 0x6627e8d5u && r[1] == 0xe169c58du && r[2] == 0xbc57ac4cu && r[3] == 0x9b00dbd8u,
          "philox KAT: %08x %08x %08x %08x", r[0], r[1], r[2], r[3]);
    {
        int64_t n = 200000, i, s[1];
        nn_tensor *u, *z;
        double m = 0, v = 0, mz = 0, vz = 0;
        s[0] = n;
        nn_seed(7);
        u = nn_rand(1, s);
        z = nn_randn(1, s);
        for (i = 0; i < n; i++) { double x = ((float *)u->data)[i]; m += x; v += x * x; }
        for (i = 0; i < n; i++) { double x = ((float *)z->data)[i]; mz += x; vz += x * x; }
        m /= n; v = v / n - m * m; mz /= n; vz = vz / n - mz * mz;
        CHECK(fabs(m - 0.5) < 0.005 && fabs(v - 1.0 / 12) < 0.002, "uniform moments %g %g", m, v);
        CHECK(fabs(mz) < 0.01 && fabs(vz - 1) < 0.02, "normal moments %g %g", mz, vz);
        nn_seed(7);
        {
            nn_tensor *u2 = nn_rand(1, s);
            CHECK(memcmp(u->data, u2->data, (size_t)n * 4) == 0, "same seed, same stream");
            nn_tensor_free(u2);
        }
        nn_tensor_free(u); nn_tensor_free(z);
        u = nn_trunc_normal(1, s, 0, 1.0, -2, 2);
        m = 0; v = 0;
        for (i = 0; i < n; i++) { double x = ((float *)u->data)[i]; m += x; v += x * x; CHECK(x >= -2 && x <= 2, "trunc normal in range"); if (!(x >= -2 && x <= 2)) break; }
        m /= n; v = v / n - m * m;
        /* variance of N(0,1) truncated to [-2,2]: 1 - 2*2*phi(2)/(Phi(2)-Phi(-2)) = 0.7737 */
        CHECK(fabs(m) < 0.01 && fabs(v - 0.7737) < 0.01, "trunc normal moments %g %g", m, v);
        test_passed -= (int)n - 1;   /* the range check above counts once */
        nn_tensor_free(u);
    }
}

/* ---- PyTorch fixtures: each case applies one op to in0.. and compares out and the input gradients */
static nn_tensor *apply_case(const char *name, nn_tensor **x) {
    int perm[3] = {2, 0, 1};
    if (!strcmp(name, "add")) return nn_add(x[0], x[1]);
    if (!strcmp(name, "sub")) return nn_sub(x[0], x[1]);
    if (!strcmp(name, "mul")) return nn_mul(x[0], x[1]);
    if (!strcmp(name, "div")) return nn_div(x[0], x[1]);
    if (!strcmp(name, "exp")) return nn_exp(x[0]);
    if (!strcmp(name, "log")) return nn_log(x[0]);
    if (!strcmp(name, "sqrt")) return nn_sqrt(x[0]);
    if (!strcmp(name, "rsqrt")) return nn_rsqrt(x[0]);
    if (!strcmp(name, "abs")) return nn_abs(x[0]);
    if (!strcmp(name, "pow")) return nn_pow(x[0], 2.5);
    if (!strcmp(name, "clamp")) return nn_clamp(x[0], -0.5, 0.3);
    if (!strcmp(name, "relu")) return nn_relu(x[0]);
    if (!strcmp(name, "gelu")) return nn_gelu(x[0]);
    if (!strcmp(name, "gelu_tanh")) return nn_gelu_tanh(x[0]);
    if (!strcmp(name, "silu")) return nn_silu(x[0]);
    if (!strcmp(name, "sigmoid")) return nn_sigmoid(x[0]);
    if (!strcmp(name, "tanh")) return nn_tanh(x[0]);
    if (!strcmp(name, "sum1")) return nn_sum(x[0], 1, 0);
    if (!strcmp(name, "mean2k")) return nn_mean(x[0], -1, 1);
    if (!strcmp(name, "max0")) return nn_max(x[0], 0, 0);
    if (!strcmp(name, "var1")) return nn_var(x[0], 1, 1, 0);
    if (!strcmp(name, "var1b")) return nn_var(x[0], 1, 0, 1);
    if (!strcmp(name, "softmax")) return nn_softmax(x[0], -1);
    if (!strcmp(name, "softmax1")) return nn_softmax(x[0], 1);
    if (!strcmp(name, "log_softmax")) return nn_log_softmax(x[0], -1);
    if (!strcmp(name, "layer_norm")) return nn_layer_norm(x[0], x[1], x[2], 1e-5);
    if (!strcmp(name, "layer_norm_noaffine")) return nn_layer_norm(x[0], NULL, NULL, 1e-6);
    if (!strncmp(name, "matmul", 6)) return nn_matmul(x[0], x[1]);
    if (!strcmp(name, "linear")) return nn_linear(x[0], x[1], x[2]);
    if (!strcmp(name, "permute")) return nn_permute(x[0], perm);
    if (!strcmp(name, "transpose")) return nn_transpose(x[0], 0, 1);
    if (!strcmp(name, "slice")) return nn_slice(x[0], 1, 1, 3);
    if (!strcmp(name, "concat")) return nn_concat(2, x, 1);
    if (!strcmp(name, "expand")) { int64_t s[3] = {3, 2, 4}; return nn_expand(x[0], 3, s); }
    if (!strncmp(name, "addcmul", 7)) return nn_addcmul(x[0], x[1], x[2]);
    return NULL;
}

static const char *fixture_cases[] = {"add", "sub", "mul", "div", "exp", "log", "sqrt", "rsqrt", "abs", "pow",
    "clamp", "relu", "gelu", "gelu_tanh", "silu", "sigmoid", "tanh", "sum1", "mean2k", "max0", "var1", "var1b",
    "softmax", "softmax1", "log_softmax", "layer_norm", "layer_norm_noaffine", "matmul2d", "matmul_batch",
    "matmul_vec", "matmul_nd2d", "linear", "permute", "transpose", "slice", "concat", "expand", "addcmul", "addcmul_bc",
    NULL};

static nn_tensor *case_fn(void *ctx, nn_tensor **in) { return apply_case((const char *)ctx, in); }

static void test_fixtures_and_gradcheck(void) {
    fx_file f = fx_load("tests/fixtures/core.txt");
    int c;
    for (c = 0; fixture_cases[c]; c++) {
        const char *name = fixture_cases[c];
        char key[128];
        nn_tensor *x[4], *y, *r;
        int n = 0, i;
        while (n < 4) {
            snprintf(key, sizeof key, "%s.in%d", name, n);
            if (!fx_has(&f, key)) break;
            x[n] = nn_clone(fx_get(&f, key));
            nn_requires_grad(x[n], 1);
            n++;
        }
        nn_scope_begin();
        y = apply_case(name, x);
        snprintf(key, sizeof key, "%s.out", name);
        CHECK_FX(y, fx_get(&f, key), 1e-5, 1e-4, key);
        snprintf(key, sizeof key, "%s.r", name);
        r = fx_get(&f, key);
        nn_backward_with(1, &y, &r);
        nn_scope_end(NULL);
        for (i = 0; i < n; i++) {
            snprintf(key, sizeof key, "%s.gin%d", name, i);
            CHECK(x[i]->grad != NULL, "%s: no gradient", key);
            if (x[i]->grad) CHECK_FX(x[i]->grad, fx_get(&f, key), 1e-5, 1e-4, key);
        }
        /* and the same op against finite differences */
        if (strcmp(name, "max0") && strcmp(name, "clamp") && strcmp(name, "abs") && strcmp(name, "relu"))
            gradcheck(name, case_fn, (void *)name, n, x);
        for (i = 0; i < n; i++) nn_tensor_free(x[i]);
    }
    fx_free(&f);
}

/* ops with kinks (max, clamp, abs, relu) are gradchecked away from them */
static nn_tensor *kink_fn(void *ctx, nn_tensor **in) {
    int k = *(int *)ctx;
    if (k == 0) return nn_max(in[0], 1, 0);
    if (k == 1) return nn_clamp(in[0], -0.45, 0.55);
    if (k == 2) return nn_abs(in[0]);
    return nn_relu(in[0]);
}
static void test_kinks(void) {
    int64_t s[2] = {3, 5};
    int k;
    for (k = 0; k < 4; k++) {
        nn_tensor *x = gc_param(2, s, -1, 1);
        float *p = (float *)x->data;
        int64_t i;
        for (i = 0; i < x->numel; i++) {   /* keep every element 0.05 away from kinks at 0, -0.45, 0.55 */
            p[i] = -0.95f + 0.1f * (float)((i * 7) % 19);
            if (fabsf(p[i] - 0.55f) < 0.03f || fabsf(p[i] + 0.45f) < 0.03f || fabsf(p[i]) < 0.03f) p[i] += 0.05f;
        }
        gradcheck(k == 0 ? "max" : k == 1 ? "clamp" : k == 2 ? "abs" : "relu", kink_fn, &k, 1, &x);
        nn_tensor_free(x);
    }
}

/* broadcasting from a non-contiguous origin: inputs that were permuted and sliced first */
static nn_tensor *bcast_fn(void *ctx, nn_tensor **in) {
    int perm[3] = {1, 0, 2};
    nn_tensor *a = nn_slice(nn_permute(in[0], perm), 2, 1, 4);   /* [3,2,3] */
    (void)ctx;
    return nn_div(nn_mul(nn_sub(a, in[1]), nn_add(a, in[2])), nn_add_scalar(nn_exp(in[1]), 1.0));
}
static void test_broadcast_grad(void) {
    int64_t s0[3] = {2, 3, 5}, s1[2] = {1, 3}, s2[3] = {3, 1, 1};
    nn_tensor *x[3];
    x[0] = gc_param(3, s0, -1, 1); x[1] = gc_param(2, s1, -1, 1); x[2] = gc_param(3, s2, -1, 1);
    gradcheck("broadcast chain", bcast_fn, NULL, 3, x);
    nn_tensor_free(x[0]); nn_tensor_free(x[1]); nn_tensor_free(x[2]);
}

static nn_tensor *matmul_t_fn(void *ctx, nn_tensor **in) { int *t = (int *)ctx; return nn_matmul_t(in[0], in[1], t[0], t[1]); }
static void test_matmul_transposes(void) {
    int ta, tb;
    for (ta = 0; ta < 2; ta++) for (tb = 0; tb < 2; tb++) {
        int t[2];
        int64_t sa[3], sb[3];
        nn_tensor *x[2];
        char what[64];
        t[0] = ta; t[1] = tb;
        sa[0] = 2; sa[1] = ta ? 4 : 3; sa[2] = ta ? 3 : 4;
        sb[0] = 1; sb[1] = tb ? 5 : 4; sb[2] = tb ? 4 : 5;
        x[0] = gc_param(3, sa, -1, 1); x[1] = gc_param(3, sb, -1, 1);
        snprintf(what, sizeof what, "matmul_t ta=%d tb=%d", ta, tb);
        gradcheck(what, matmul_t_fn, t, 2, x);
        nn_tensor_free(x[0]); nn_tensor_free(x[1]);
    }
}

static nn_tensor *dropout_fn(void *ctx, nn_tensor **in) {
    nn_rng_state s;
    (void)ctx;
    s.seed = 99; s.offset = 0;
    nn_rng_set(s);   /* the same mask on every call, so finite differences see one function */
    return nn_dropout(in[0], 0.3, 1);
}
static void test_dropout(void) {
    int64_t s[1] = {100000}, i, kept = 0;
    nn_tensor *x = nn_ones(NN_F32, 1, s), *y;
    nn_seed(3);
    y = nn_dropout(x, 0.25, 1);
    for (i = 0; i < s[0]; i++) {
        float v = ((float *)y->data)[i];
        if (v != 0) { kept++; if (fabsf(v - 1.0f / 0.75f) > 1e-6f) break; }
    }
    CHECK(i == s[0], "kept values scaled by 1/(1-p)");
    {   /* the mask is the documented stream: element i kept iff uniform(seed, offset + i) >= p */
        int64_t bad = 0;
        for (i = 0; i < s[0]; i++) bad += (((float *)y->data)[i] != 0) != (nn_rng_uniform_at(3, (uint64_t)i) >= 0.25f);
        CHECK(bad == 0, "dropout mask differs from nn_rng_uniform_at in %lld places", (long long)bad);
    }
    /* keep rate 0.75 with binomial sd sqrt(n p (1-p)) = 137: 5 sd */
    CHECK(fabs((double)kept - 75000) < 5 * 137, "keep rate %lld / 100000", (long long)kept);
    nn_tensor_free(y);
    y = nn_dropout(x, 0.25, 0);
    CHECK(memcmp(y->data, x->data, 4 * (size_t)s[0]) == 0, "eval mode is identity");
    nn_tensor_free(y); nn_tensor_free(x);
    {
        int64_t s2[2] = {4, 6};
        nn_tensor *p = gc_param(2, s2, -1, 1);
        gradcheck("dropout", dropout_fn, NULL, 1, &p);
        nn_tensor_free(p);
    }
}

/* gradient checkpointing: gradients equal the plain ones exactly, dropout included */
typedef struct { nn_Linear l1, l2; } ck_block;
static void ck_body(void *ctx, nn_tensor **in, nn_tensor **out) {
    ck_block *b = (ck_block *)ctx;
    out[0] = nn_Linear_forward(&b->l2, nn_dropout(nn_gelu(nn_Linear_forward(&b->l1, in[0])), 0.2, nn_training()));
}
static void test_checkpoint(void) {
    nn_params P = {0};
    ck_block b;
    int64_t s[2] = {5, 8};
    nn_tensor *x, *g1[5], *g2[5];
    int pass, i;
    nn_seed(1);
    nn_Linear_init(&b.l1, &P, "l1", 8, 16, 1);
    nn_Linear_init(&b.l2, &P, "l2", 16, 8, 1);
    x = nn_randn(2, s);
    nn_requires_grad(x, 1);
    for (pass = 0; pass < 2; pass++) {
        nn_tensor *y, *loss;
        nn_rng_state st = {5, 0};
        nn_rng_set(st);
        nn_scope_begin();
        if (pass == 0) ck_body(&b, &x, &y);
        else nn_checkpoint(ck_body, &b, 1, &x, 1, &y);
        loss = nn_sum_all(nn_mul(y, y));
        nn_backward(loss);
        nn_scope_end(NULL);
        for (i = 0; i < 4; i++) { (pass ? g2 : g1)[i] = P.items[i].t->grad; P.items[i].t->grad = NULL; }
        (pass ? g2 : g1)[4] = x->grad; x->grad = NULL;
    }
    for (i = 0; i < 5; i++) {
        CHECK(g1[i] && g2[i] && memcmp(g1[i]->data, g2[i]->data, 4 * (size_t)g1[i]->numel) == 0,
              "checkpointed gradient %d equals the plain one bit for bit", i);
        nn_tensor_free(g1[i]); nn_tensor_free(g2[i]);
    }
    nn_tensor_free(x);
    nn_params_free(&P);
}

/* a tiny MLP learns XOR-like data; memory does not grow over 100 steps */
static void test_train_mlp(void) {
    nn_params P = {0};
    nn_MLP m;
    int64_t sx[2] = {64, 2}, sy[2] = {64, 1}, i;
    nn_tensor *x = nn_empty(NN_F32, 2, sx), *y = nn_empty(NN_F32, 2, sy);
    double loss_v = 1e9;
    size_t cur_after_10 = 0, peak_after_10 = 0;
    int step;
    nn_seed(42);
    nn_MLP_init(&m, &P, "mlp", 2, 32, 1, NN_ACT_GELU, 0.0);
    for (i = 0; i < 64; i++) {
        float a = (float)(i % 8) / 7.0f * 2 - 1, b = (float)(i / 8) / 7.0f * 2 - 1;
        ((float *)x->data)[2 * i] = a; ((float *)x->data)[2 * i + 1] = b;
        ((float *)y->data)[i] = a * b;   /* a saddle: needs the hidden layer */
    }
    for (step = 0; step < 600; step++) {
        nn_tensor *loss;
        int k;
        nn_scope_begin();
        loss = nn_mse_loss(nn_MLP_forward(&m, x), y);
        nn_params_zero_grad(&P);
        nn_backward(loss);
        loss_v = nn_item(loss);
        for (k = 0; k < P.n; k++) {   /* plain SGD with momentum-free steps */
            float *w = (float *)P.items[k].t->data, *gw = (float *)P.items[k].t->grad->data;
            int64_t j;
            for (j = 0; j < P.items[k].t->numel; j++) w[j] -= 0.1f * gw[j];
        }
        nn_scope_end(NULL);
        if (step == 10) { cur_after_10 = nn_mem_stats(NN_CPU).current; peak_after_10 = nn_mem_stats(NN_CPU).peak; }
        if (step == 110) {
            CHECK(nn_mem_stats(NN_CPU).current == cur_after_10, "memory in use grew over 100 steps: %zu -> %zu",
                  cur_after_10, nn_mem_stats(NN_CPU).current);
            CHECK(nn_mem_stats(NN_CPU).peak == peak_after_10, "peak grew over 100 steps: %zu -> %zu", peak_after_10,
                  nn_mem_stats(NN_CPU).peak);
        }
    }
    CHECK(loss_v < 2e-3, "MLP loss after 600 steps: %g", loss_v);
    nn_params_zero_grad(&P);
    nn_params_free(&P);
    nn_tensor_free(x); nn_tensor_free(y);
}

static void test_scopes(void) {
    size_t base = nn_mem_stats(NN_CPU).current;
    int64_t s[2] = {100, 100};
    nn_tensor *keep;
    nn_scope_begin();
    {
        nn_tensor *a = nn_ones(NN_F32, 2, s), *b = nn_add(a, a);
        nn_scope_begin();
        keep = nn_scope_end(nn_mul(b, b));
        CHECK(nn_scope_depth() == 1, "depth");
        nn_tensor_free(a);   /* freeing early is allowed */
    }
    keep = nn_scope_end(keep);
    CHECK(((float *)keep->data)[0] == 4.0f, "kept value");
    CHECK(nn_mem_stats(NN_CPU).current == base + 40960, "only the kept tensor remains (%zu over base)", nn_mem_stats(NN_CPU).current - base);
    nn_tensor_free(keep);
    CHECK(nn_mem_stats(NN_CPU).current == base, "all released");
}

/* the gradient handed to nn_backward_with stays the caller's */
static void test_backward_keeps_seed(void) {
    int64_t s[1] = {4};
    nn_tensor *a = nn_ones(NN_F32, 1, s), *y, *g;
    nn_requires_grad(a, 1);
    nn_scope_begin();
    y = nn_mul_scalar(a, 2);
    g = nn_full(NN_F32, 1, s, 3.0);
    nn_backward_with(1, &y, &g);
    CHECK(g->refs == 1 && g->data && ((float *)g->data)[0] == 3.0f, "seed gradient intact after backward");
    CHECK(a->grad && ((float *)a->grad->data)[3] == 6.0f, "gradient through mul_scalar");
    nn_scope_end(NULL);
    nn_tensor_free(a);
}

/* initialisation follows torch's defaults: bounds and variances of the distributions */
static void moments(const nn_tensor *t, double *lo, double *hi, double *mean, double *var) {
    int64_t i;
    double m = 0, v = 0;
    *lo = 1e30; *hi = -1e30;
    for (i = 0; i < t->numel; i++) {
        double x = ((const float *)t->data)[i];
        m += x; v += x * x;
        if (x < *lo) *lo = x;
        if (x > *hi) *hi = x;
    }
    m /= (double)t->numel;
    *mean = m; *var = v / (double)t->numel - m * m;
}
static void test_init(void) {
    nn_params P = {0};
    nn_Linear l;
    nn_Conv2d c;
    nn_Embedding e;
    nn_LayerNorm ln;
    nn_MultiheadAttention mha;
    double lo, hi, m, v, b;
    nn_seed(5);
    nn_Linear_init(&l, &P, "lin", 400, 300, 1);
    b = 1 / sqrt(400.0);   /* kaiming_uniform(a=sqrt(5)): bound = sqrt(6 / ((1 + 5) * fan_in)) = 1/sqrt(fan_in) */
    moments(l.weight, &lo, &hi, &m, &v);
    CHECK(lo >= -b && hi <= b && fabs(v - b * b / 3) < 0.03 * b * b / 3, "Linear weight U(-1/sqrt(in), 1/sqrt(in)): var %g", v);
    moments(l.bias, &lo, &hi, &m, &v);
    CHECK(lo >= -b && hi <= b, "Linear bias bound");
    nn_Conv2d_init(&c, &P, "conv", 16, 32, 3, 1, 1, 1, 2, 1);
    b = 1 / sqrt(8.0 * 9.0);
    moments(c.weight, &lo, &hi, &m, &v);
    CHECK(lo >= -b && hi <= b && fabs(v - b * b / 3) < 0.1 * b * b / 3, "Conv2d weight bound uses fan_in = in/groups*k*k: var %g", v);
    nn_Embedding_init(&e, &P, "emb", 500, 64);
    moments(e.weight, &lo, &hi, &m, &v);
    CHECK(fabs(m) < 0.02 && fabs(v - 1) < 0.03, "Embedding N(0,1): %g %g", m, v);
    nn_LayerNorm_init(&ln, &P, "ln", 8, 1e-5, 1);
    moments(ln.weight, &lo, &hi, &m, &v);
    CHECK(lo == 1 && hi == 1, "LayerNorm weight ones");
    moments(ln.bias, &lo, &hi, &m, &v);
    CHECK(lo == 0 && hi == 0, "LayerNorm bias zeros");
    nn_MultiheadAttention_init(&mha, &P, "mha", 64, 4, 0.0, 0, 0);
    b = sqrt(6.0 / (64 + 192));   /* xavier_uniform on [3E, E] */
    moments(mha.in_proj_weight, &lo, &hi, &m, &v);
    CHECK(lo >= -b && hi <= b && fabs(v - b * b / 3) < 0.05 * b * b / 3, "MHA in_proj xavier: var %g", v);
    moments(mha.in_proj_bias, &lo, &hi, &m, &v);
    CHECK(lo == 0 && hi == 0, "MHA in_proj_bias zeros");
    moments(mha.out_proj.bias, &lo, &hi, &m, &v);
    CHECK(lo == 0 && hi == 0, "MHA out_proj.bias zeros");
    CHECK(nn_params_find(&P, "mha.out_proj.weight") && nn_params_find(&P, "mha.in_proj_weight"), "MHA names as torch");
    nn_params_free(&P);
}

/* f16/bf16 tensors on the CPU: elementwise results in torch's promoted dtype, concat promotes, and gradients
   come back in each tensor's own dtype (bf16 leaf -> bf16 gradient, as torch) */
static void test_low_precision(void) {
    int64_t s23[2] = {2, 3}, s22[2] = {2, 2};
    float va[6] = {1.5f, -2.25f, 3.0f, 0.5f, 8.0f, -1.0f}, vb[4] = {0.1f, 0.2f, 0.3f, 0.4f}, h[10];
    nn_tensor *a32 = nn_from_f32(2, s23, va), *a = nn_cast(a32, NN_BF16), *b = nn_from_f32(2, s22, vb), *y, *z, *c[2];
    int i;
    nn_tensor_free(a32);
    nn_scope_begin();
    nn_requires_grad(a, 1); nn_requires_grad(b, 1);
    y = nn_gelu(a);
    CHECK(y->dtype == NN_BF16, "gelu of bf16 is bf16, got %s", nn_dtype_name(y->dtype));
    CHECK(nn_add(a, a)->dtype == NN_BF16 && nn_mul(a, nn_ones(NN_F32, 2, s23))->dtype == NN_F32,
          "bf16 op bf16 -> bf16, bf16 op f32 -> f32");
    c[0] = a; c[1] = b;
    z = nn_concat(2, c, 1);
    CHECK(z->dtype == NN_F32 && z->shape[1] == 5, "concat of bf16 and f32 is f32 [2,5]");
    nn_to_host(z, h);
    CHECK(h[0] == 1.5f && h[3] == 0.1f && h[5] == 0.5f && h[9] == 0.4f, "concat values");
    nn_backward(nn_sum_all(nn_mul(z, z)));
    CHECK(a->grad && a->grad->dtype == NN_BF16 && b->grad && b->grad->dtype == NN_F32, "gradients in the tensors' dtypes");
    if (a->grad) {
        nn_to_host(nn_cast(a->grad, NN_F32), h);
        for (i = 0; i < 6; i++) CHECK(h[i] == 2 * va[i], "d sum(z^2)/da = 2a (%g vs %g)", h[i], 2 * va[i]);
    }
    nn_scope_end(NULL);
    nn_zero_grad(a); nn_zero_grad(b);
    nn_tensor_free(a); nn_tensor_free(b);
}

/* the fused ops of the ViT block: nn_addcmul against nn_add(x, nn_mul(h, w)) and nn_layer_norm_to against
   nn_cast(nn_layer_norm(..)), bit for bit, forward and every gradient (models/vit.h swapped them in on the
   promise that nothing changes); nn_layer_norm_to's f16/bf16 output and backward against PyTorch */
static int same_bits(nn_tensor *a, nn_tensor *b) {
    int r;
    float *x, *y;
    if (!a || !b) return a == b;
    if (a->numel != b->numel || a->dtype != b->dtype) return 0;
    x = (float *)malloc(nn_dtype_size(a->dtype) * (size_t)(a->numel + 1));
    y = (float *)malloc(nn_dtype_size(a->dtype) * (size_t)(a->numel + 1));
    nn_to_host(a, x); nn_to_host(b, y);
    r = memcmp(x, y, nn_dtype_size(a->dtype) * (size_t)a->numel) == 0;
    free(x); free(y);
    return r;
}

typedef struct { int fused; nn_dtype dt; } fused_ctx;
static nn_tensor *addcmul_fn(void *ctx, nn_tensor **in) {
    const fused_ctx *c = (const fused_ctx *)ctx;
    return c->fused ? nn_addcmul(in[0], in[1], in[2]) : nn_add(in[0], nn_mul(in[1], in[2]));
}
static nn_tensor *ln_to_fn(void *ctx, nn_tensor **in) {
    const fused_ctx *c = (const fused_ctx *)ctx;
    return c->fused ? nn_layer_norm_to(in[0], in[1], in[2], 1e-5, c->dt) : nn_cast(nn_layer_norm(in[0], in[1], in[2], 1e-5), c->dt);
}

/* f on in[0..n) twice, fused and not, with one upstream gradient: outputs and gradients bit for bit */
static void check_fused_bits(const char *what, gc_fn f, nn_dtype dt, int n, nn_tensor **in) {
    nn_tensor *y[2], *g[2][4], *r;
    fused_ctx c;
    int k, i;
    nn_rng_state rs = nn_rng_get();
    for (k = 0; k < 2; k++) {
        for (i = 0; i < n; i++) nn_zero_grad(in[i]);
        nn_scope_begin();
        c.fused = k; c.dt = dt;
        y[k] = f(&c, in);
        nn_rng_set(rs);   /* the same upstream gradient for both */
        r = nn_uniform(y[k]->ndim, y[k]->shape, -1, 1);
        nn_backward_with(1, &y[k], &r);
        y[k] = nn_scope_end(y[k]);
        for (i = 0; i < n; i++) { g[k][i] = in[i]->grad; in[i]->grad = NULL; }
    }
    CHECK(y[1]->dtype == y[0]->dtype, "%s: fused output %s, unfused %s", what, nn_dtype_name(y[1]->dtype), nn_dtype_name(y[0]->dtype));
    CHECK(same_bits(y[1], y[0]), "%s: forward differs from the unfused ops", what);
    for (i = 0; i < n; i++) {
        CHECK(g[1][i] && same_bits(g[1][i], g[0][i]), "%s: gradient %d differs from the unfused ops", what, i);
        if (g[0][i]) nn_tensor_free(g[0][i]);
        if (g[1][i]) nn_tensor_free(g[1][i]);
    }
    nn_tensor_free(y[0]); nn_tensor_free(y[1]);
}

static void test_fused_block_ops(void) {
    static const nn_dtype dts[3] = {NN_F32, NN_BF16, NN_F16};
    char what[96];
    int k, d;
    {   /* addcmul: w one row (the fused backward; C = 300 spans two column bands), [1, 1, C], and broadcast shapes
           on the generic path; C == 1 (a full sum) too */
        static const int64_t sx[][3] = {{3, 7, 300}, {3, 7, 300}, {4, 1, 5}, {6, 1, 1}};
        static const int64_t sh[][3] = {{3, 7, 300}, {3, 7, 300}, {1, 3, 5}, {6, 2, 1}};
        static const int64_t sw[][3] = {{300, 0, 0}, {1, 1, 300}, {4, 1, 1}, {1, 0, 0}};
        static const int nw[] = {1, 3, 3, 1};
        for (k = 0; k < 4; k++) {
            nn_tensor *in[3];
            fused_ctx c;
            in[0] = gc_param(3, sx[k], -1, 1); in[1] = gc_param(3, sh[k], -1, 1); in[2] = gc_param(nw[k], sw[k], -1, 1);
            snprintf(what, sizeof what, "addcmul case %d", k);
            check_fused_bits(what, addcmul_fn, NN_F32, 3, in);
            c.fused = 1; c.dt = NN_F32;
            gradcheck(what, addcmul_fn, &c, 3, in);
            for (d = 0; d < 3; d++) nn_tensor_free(in[d]);
        }
    }
    {   /* torch's type promotion of the three; f16/bf16 inputs computed in f32 and rounded once */
        int64_t s[2] = {2, 8}, s1 = 8;
        nn_tensor *x = nn_uniform(2, s, -1, 1), *h = nn_uniform(2, s, -1, 1), *w = nn_uniform(1, &s1, -1, 1), *y, *ref;
        nn_scope_begin();
        CHECK(nn_addcmul(x, nn_cast(h, NN_BF16), w)->dtype == NN_F32, "addcmul f32 + bf16 * f32 is f32");
        CHECK(nn_addcmul(nn_cast(x, NN_F16), nn_cast(h, NN_BF16), nn_cast(w, NN_BF16))->dtype == NN_F32, "f16 with bf16 is f32");
        y = nn_addcmul(nn_cast(x, NN_BF16), nn_cast(h, NN_BF16), nn_cast(w, NN_BF16));
        ref = nn_cast(nn_addcmul(nn_cast(nn_cast(x, NN_BF16), NN_F32), nn_cast(nn_cast(h, NN_BF16), NN_F32),
                                 nn_cast(nn_cast(w, NN_BF16), NN_F32)), NN_BF16);
        CHECK(y->dtype == NN_BF16 && same_bits(y, ref), "addcmul of bf16 tensors: bf16, rounded once");
        nn_scope_end(NULL);
        nn_tensor_free(x); nn_tensor_free(h); nn_tensor_free(w);
    }
    for (d = 0; d < 3; d++) {   /* layer_norm_to: bit for bit cast(layer_norm), the gradient arriving in dt */
        int64_t s[3] = {3, 5, 40}, C = 40;
        nn_tensor *in[3];
        in[0] = gc_param(3, s, -2, 3); in[1] = gc_param(1, &C, 0.5, 1.5); in[2] = gc_param(1, &C, -1, 1);
        snprintf(what, sizeof what, "layer_norm_to %s", nn_dtype_name(dts[d]));
        check_fused_bits(what, ln_to_fn, dts[d], 3, in);
        if (dts[d] == NN_F32) {   /* f16/bf16 outputs are steps of the rounding: finite differences mean nothing */
            fused_ctx c;
            c.fused = 1; c.dt = NN_F32;
            gradcheck(what, ln_to_fn, &c, 3, in);
        }
        for (k = 0; k < 3; k++) nn_tensor_free(in[k]);
    }
    {   /* against PyTorch: layer_norm(x).to(dt) and its backward */
        fx_file f = fx_load("tests/fixtures/core.txt");
        for (d = 1; d < 3; d++) {
            const char *name = dts[d] == NN_BF16 ? "layer_norm_bf16" : "layer_norm_f16";
            char key[64];
            nn_tensor *x[3], *y, *r;
            int i;
            for (i = 0; i < 3; i++) {
                snprintf(key, sizeof key, "%s.in%d", name, i);
                x[i] = nn_clone(fx_get(&f, key));
                nn_requires_grad(x[i], 1);
            }
            nn_scope_begin();
            y = nn_layer_norm_to(x[0], x[1], x[2], 1e-5, dts[d]);
            snprintf(key, sizeof key, "%s.out", name);
            {   /* the f32 layer norms may differ in the last f32 bit, which moves a value at a rounding tie by
                   one dt step at most */
                nn_tensor *y32 = nn_cast(y, NN_F32), *ref = fx_get(&f, key);
                int64_t j, same = 0;
                double worst = 0, ulp = dts[d] == NN_BF16 ? 1.0 / 128 : 1.0 / 1024;
                for (j = 0; j < ref->numel; j++) {
                    double a = ((float *)y32->data)[j], b = ((float *)ref->data)[j];
                    same += a == b;
                    if (fabs(a - b) / (fabs(b) > 1 ? fabs(b) : 1) > worst) worst = fabs(a - b) / (fabs(b) > 1 ? fabs(b) : 1);
                }
                CHECK(y->dtype == dts[d] && worst <= ulp && same >= ref->numel - 2,
                      "%s: %lld of %lld equal to torch's, worst %.3g", key, (long long)same, (long long)ref->numel, worst);
            }
            snprintf(key, sizeof key, "%s.r", name);
            r = fx_get(&f, key);
            nn_backward_with(1, &y, &r);
            nn_scope_end(NULL);
            for (i = 0; i < 3; i++) {
                snprintf(key, sizeof key, "%s.gin%d", name, i);
                CHECK(x[i]->grad != NULL, "%s: no gradient", key);
                if (x[i]->grad) CHECK_FX(x[i]->grad, fx_get(&f, key), 1e-5, 1e-4, key);
                nn_tensor_free(x[i]);
            }
        }
        fx_free(&f);
    }
    CHECK(nn_autocast_shared_dtype(NN_CPU) == NN_F32, "nn_autocast_shared_dtype outside autocast");
    nn_autocast_begin(NN_BF16);
    CHECK(nn_autocast_shared_dtype(NN_CPU) == NN_F32 && nn_autocast_shared_dtype(NN_CUDA) == NN_BF16,
          "nn_autocast_shared_dtype under bf16 autocast: f32 on the CPU (it rounds in f32), bf16 on a device");
    nn_autocast_end();
}

static void test_errors(void) {
    int64_t s1[2] = {4, 16}, s2[2] = {8, 3}, s3[1] = {5};
    nn_tensor *a = nn_zeros(NN_F32, 2, s1), *b = nn_zeros(NN_F32, 2, s2), *c = nn_zeros(NN_F32, 1, s3);
    nn_tensor *i32 = nn_zeros(NN_I32, 1, s3);
    EXPECT_ERROR(nn_matmul(a, b), "nn_matmul: inner dims differ: [4,16] @ [8,3]");
    EXPECT_ERROR(nn_add(a, c), "nn_add: shapes [4,16] and [5] do not broadcast");
    EXPECT_ERROR(nn_exp(i32), "nn_exp: input must be f32");
    EXPECT_ERROR(nn_reshape(a, 2, s2), "nn_reshape: [4,16] has 64 elements");
    EXPECT_ERROR(nn_softmax(a, 2), "nn_softmax: dim 2 out of range for [4,16]");
    EXPECT_ERROR(nn_slice(a, 0, 3, 2), "nn_slice: range [3, 2) out of bounds");
    EXPECT_ERROR(nn_layer_norm(a, c, NULL, 1e-5), "nn_layer_norm: weight [5] does not match");
    EXPECT_ERROR(nn_linear(a, b, NULL), "nn_linear: input [4,16] does not end in in_features 3");
    EXPECT_ERROR(nn_backward(a), "nn_backward: the loss must have one element");
    EXPECT_ERROR(nn_addcmul(a, c, a), "nn_addcmul: shapes [4,16], [5] and [4,16] do not broadcast (dim 1)");
    EXPECT_ERROR(nn_addcmul(a, a, i32), "nn_addcmul: w must be f32, f16 or bf16");
    EXPECT_ERROR(nn_layer_norm_to(a, NULL, NULL, 1e-5, NN_I32), "nn_layer_norm_to: dtype must be f32, f16 or bf16, got i32");
    EXPECT_ERROR(nn_layer_norm_to(a, c, NULL, 1e-5, NN_BF16), "nn_layer_norm_to: weight [5] does not match the last dim of [4,16]");
    nn_tensor_free(a); nn_tensor_free(b); nn_tensor_free(c); nn_tensor_free(i32);
}

/* The vectorisable erf and exp of the elementwise ops and attention against libm, every 1009th float of the
   range (about 2.2 million erf and 1.1 million exp values); the bounds are the ones their comments state. */
static float ulp_of(float v) { v = fabsf(v); return nextafterf(v, INFINITY) - v; }

static void test_erf_exp(void) {
    double worst_erf = 0, worst_exp = 0;
    float x, at_erf = 0, at_exp = 0;
    uint32_t step = 1009, u;
    for (x = -6.0f; x <= 6.0f; ) {
        float got = nn__erff(x), want = erff(x);
        double e = fabs((double)got - want) / ulp_of(want);
        if (e > worst_erf) { worst_erf = e; at_erf = x; }
        memcpy(&u, &x, 4);   /* step in the bit pattern: dense near 0 as the floats are */
        if (x < 0) { u = u > 0x80000000u + step ? u - step : 0u; } else u += step;
        memcpy(&x, &u, 4);
    }
    CHECK(worst_erf <= 2.0, "nn__erff within 2 ulps of erff on [-6, 6]: worst %.2f at %.9g", worst_erf, at_erf);
    CHECK(isnan(nn__erff(NAN)) && nn__erff(INFINITY) == 1.0f && nn__erff(-INFINITY) == -1.0f, "erf at nan, +-inf");
    CHECK(nn__erff(0.0f) == 0.0f && signbit(nn__erff(-0.0f)) && nn__erff(-7.0f) == -1.0f, "erf at +-0 and -7");
    for (x = -87.0f; x < 0.0f; ) {
        float got = nn__exp_nonpos(x), want = expf(x);
        double e = fabs((double)got - want) / ulp_of(want);
        if (e > worst_exp) { worst_exp = e; at_exp = x; }
        memcpy(&u, &x, 4);
        u = u > 0x80000000u + step ? u - step : 0u;
        memcpy(&x, &u, 4);
    }
    CHECK(worst_exp <= 3.0, "nn__exp_nonpos within 3 ulps of expf on [-87, 0): worst %.2f at %.9g", worst_exp, at_exp);
    CHECK(nn__exp_nonpos(-INFINITY) == 0.0f && nn__exp_nonpos(-88.0f) == 0.0f && nn__exp_nonpos(0.0f) == 1.0f,
          "exp at -inf, below -87, 0");
}

/* nn_profile: every op of two MLP steps lands in its row (forward calls, backward calls), what follows the
   first backward goes to "(between steps)", the rows are sorted and add up to no more than the total, and a
   checkpointed block's inner backward is not counted twice. */
static const nn_profile_op *prof_row(const nn_profile *p, const char *op) {
    int i;
    for (i = 0; i < p->n; i++) if (!strcmp(p->op[i].op, op)) return &p->op[i];
    return NULL;
}

static void ckpt_gelu(void *ctx, nn_tensor **in, nn_tensor **out) { (void)ctx; out[0] = nn_gelu(in[0]); }

static void test_profile(void) {
    nn_params P = {0};
    nn_MLP m;
    int64_t sx[2] = {64, 2}, sy[2] = {64, 1};
    nn_tensor *x = nn_randn(2, sx), *y = nn_randn(2, sy);
    nn_profile pr;
    const nn_profile_op *lin, *gelu, *between, *ck;
    double sum = 0;
    int step, i, sorted = 1, nonneg = 1;
    nn_MLP_init(&m, &P, "mlp", 2, 32, 1, NN_ACT_GELU, 0.0);
    EXPECT_ERROR(nn_profile_end(), "nn_profile_end: no nn_profile_begin");
    nn_profile_begin(0);
    for (step = 0; step < 2; step++) {
        nn_tensor *h, *g, *loss;
        nn_scope_begin();
        h = nn_MLP_forward(&m, x);
        nn_checkpoint(ckpt_gelu, NULL, 1, &h, 1, &g);
        loss = nn_mse_loss(g, y);
        nn_params_zero_grad(&P);
        nn_backward(loss);
        nn_scope_end(NULL);
    }
    pr = nn_profile_end();
    lin = prof_row(&pr, "nn_linear");
    gelu = prof_row(&pr, "nn_gelu");
    between = prof_row(&pr, "(between steps)");
    ck = prof_row(&pr, "checkpoint");
    CHECK(lin && lin->calls == 4 && lin->bwd_calls == 4, "nn_linear: 2 a step forward and backward (%lld, %lld)",
          lin ? (long long)lin->calls : -1LL, lin ? (long long)lin->bwd_calls : -1LL);
    /* the MLP's GELU twice, the checkpoint's forward twice; its recomputation and inner backward run in
       the checkpoint node's backward, which counts once a step */
    CHECK(gelu && gelu->calls == 4 && gelu->bwd_calls == 2, "nn_gelu: calls %lld, backward %lld",
          gelu ? (long long)gelu->calls : -1LL, gelu ? (long long)gelu->bwd_calls : -1LL);
    CHECK(ck && ck->bwd_calls == 2, "the checkpoint's backward counted once a step: %lld", ck ? (long long)ck->bwd_calls : -1LL);
    CHECK(between && between->calls == 2, "the time before each step's first op: %lld rows", between ? (long long)between->calls : -1LL);
    for (i = 0; i < pr.n; i++) {
        double t = pr.op[i].fwd_s + pr.op[i].bwd_s;
        sum += t;
        if (pr.op[i].fwd_s < 0 || pr.op[i].bwd_s < 0) nonneg = 0;
        if (i && t > pr.op[i - 1].fwd_s + pr.op[i - 1].bwd_s) sorted = 0;
    }
    CHECK(nonneg && sorted, "times >= 0 and sorted by forward + backward");
    CHECK(pr.total_s > 0 && sum <= pr.total_s * (1 + 1e-9) + 1e-9, "rows add up to %g s of %g s", sum, pr.total_s);
    nn_params_free(&P);
    nn_tensor_free(x); nn_tensor_free(y);
}

int main(void) {
    test_dtypes();
    test_erf_exp();
    test_rng();
    test_scopes();
    test_fixtures_and_gradcheck();
    test_kinks();
    test_broadcast_grad();
    test_matmul_transposes();
    test_dropout();
    test_checkpoint();
    test_train_mlp();
    test_profile();
    test_backward_keeps_seed();
    test_init();
    test_low_precision();
    test_fused_block_ops();
    test_errors();
    nn_shutdown();
    return test_summary();
}
