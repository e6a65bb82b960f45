/* tests/test_amp.c - mixed precision and memory: autocast (nn.h), the loss scaler (nn.h [api:amp]), gradient
   checkpointing (nn.h's nn_checkpoint).

   (a) autocast numerics against torch.autocast('cpu') on a small ViT-like model (tests/make_fixtures_amp.py ->
       tests/fixtures/amp.txt): conv2d patch embedding, a pre-norm block with 2-head SDPA, LayerScale and a
       GELU MLP, a mean-pooled matmul head, L1 loss; outputs, loss and every gradient, for torch's f32 and
       autocast bf16 and f16. Error = max|mine - torch| / max|torch| per tensor. Tolerances (each a few times
       what this machine shows, see the printed table), per dtype:
           f32   2e-5  (kernels' summation order only)
           bf16  2e-2 forward, 4e-2 gradients  (bf16 keeps 8 bits: one ulp is 2^-8 = 3.9e-3 relative; a
                 GEMM result that lands near a rounding boundary may round the other way than torch's)
           f16   3e-3 forward, 6e-3 gradients  (11 bits: one ulp 2^-11 = 4.9e-4)
       and the emulation must be the reason: my bf16 run is at least 4x closer to torch's bf16 run than my
       f32 run is (likewise f16).
   (b) the loss scaler's scale / skip / backoff / growth sequence on injected inf and NaN equals
       torch.amp.GradScaler('cpu') driving AdamW (scale, found_inf and growth tracker exactly; parameters to
       1e-6 relative, AdamW's agreement with torch), plus its disabled mode, misuse errors, state text.
   (c) checkpointed and plain backward give bitwise identical gradients (f32) for a 3-block transformer with
       dropout (attention probabilities, residual branches, MLP), in f32 and under bf16 autocast.
   (d) memory: a 12-block stack, forward + backward, peak bytes above the parameters with and without a
       checkpoint per block; checkpointed must be below plain / 4 (numbers printed).
   (e) training converges: a small MLP regression in f32, bf16 autocast, and f16 autocast with the loss
       scaler (which must have skipped some steps on overflow and recovered).

   Usage: test_amp [fixtures-dir]   (default tests/fixtures)
   Built with -DNN_CUDA, AMP_DEVICE=cuda runs (c), (d) and (e) on the GPU (real f16/bf16 tensors there):
       AMP_DEVICE=cuda AMP_ONLY=cde build/test_amp_cuda   (make test-cuda runs it) */
#define NN_IMPLEMENTATION
#include "nn.h"
static nn_device tdev = NN_CPU;   /* where (c), (d), (e) run */
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#include "test.h"
#include "fixture.h"

static const char *fx_dir = "tests/fixtures";

/* ------------------------------------------------------------------------------------------------ helpers */

static jmp_buf err_jmp;
static int err_expected;
static void err_handler(const char *msg, void *user) {
    (void)user;
    if (err_expected) longjmp(err_jmp, 1);
    fprintf(stderr, "unexpected nn error: %s\n", msg);
    abort();
}
/* 1 when stmt reported an error through nn_error */
#define RAISES(stmt) (err_expected = 1, setjmp(err_jmp) ? (err_expected = 0, 1) : ((stmt), err_expected = 0, 0))

/* max |a - b| / max |b| */
static double rel_err(const nn_tensor *a, const nn_tensor *b) {
    int64_t i;
    double num = 0, den = 0;
    if (!a || !b || a->numel != b->numel) return 1e30;
    for (i = 0; i < a->numel; i++) {
        double x = ((const float *)a->data)[i], y = ((const float *)b->data)[i], d = fabs(x - y);
        if (!(d <= num)) num = d;
        if (fabs(y) > den) den = fabs(y);
    }
    return den > 0 ? num / den : num;
}

/* sqrt(mean (a - b)^2) / sqrt(mean b^2) */
static double rms_err(const nn_tensor *a, const nn_tensor *b) {
    int64_t i;
    double num = 0, den = 0;
    if (!a || !b || a->numel != b->numel) return 1e30;
    for (i = 0; i < a->numel; i++) {
        double x = ((const float *)a->data)[i], y = ((const float *)b->data)[i];
        num += (x - y) * (x - y);
        den += y * y;
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static int all_representable(nn_tensor *t, nn_dtype dt) {
    int64_t i;
    const float *p = nn_f32_data(t);
    for (i = 0; i < t->numel; i++) {
        float r = dt == NN_BF16 ? nn__bf16_to_f32(nn__f32_to_bf16(p[i])) : nn__half_to_f32(nn__f32_to_half(p[i]));
        if (memcmp(&r, &p[i], 4) != 0) return 0;
    }
    return 1;
}

static nn_tensor *leaf_copy(nn_tensor *src) {
    nn_tensor *t = nn_empty(NN_F32, src->ndim, src->shape);
    nn_copy_(t, src);
    nn_requires_grad(t, 1);
    return t;
}

/* ------------------------------------------------------------------------- autocast: the op and the cache */

static void test_autocast_basics(void) {
    int64_t s2[2] = {3, 5}, sw[2] = {4, 5}, i;
    nn_tensor *x, *w, *y, *r, *c;
    float vals[6] = {1.0f + 1.0f / 512, 3.14159265f, -70000.0f, 1e-9f, 65519.0f, 65520.0f};
    int64_t s6 = 6;

    /* the rounding op equals nn_cast there and back; f16 overflows to inf as a real cast */
    x = nn_from_f32(1, &s6, vals);
    nn_scope_begin();
    r = nn__autocast_round(x, NN_BF16);
    c = nn_cast(nn_cast(x, NN_BF16), NN_F32);
    CHECK(memcmp(r->data, c->data, 24) == 0, "bf16 rounding equals nn_cast round trip");
    r = nn__autocast_round(x, NN_F16);
    c = nn_cast(nn_cast(x, NN_F16), NN_F32);
    CHECK(memcmp(r->data, c->data, 24) == 0, "f16 rounding equals nn_cast round trip");
    CHECK(isinf(nn_f32_data(r)[2]) && nn_f32_data(r)[4] == 65504.0f && isinf(nn_f32_data(r)[5]),
          "f16: -70000 and 65520 overflow to inf, 65519 rounds to 65504");
    nn_scope_end(NULL);

    /* its gradient is rounded too */
    nn_requires_grad(x, 1);
    nn_scope_begin();
    {
        float gv[6] = {1.0f + 1.0f / 4096, 0.1f, 100000.0f, 1, 1, 1};
        nn_tensor *g = nn_from_f32(1, &s6, gv), *o = nn__autocast_round(x, NN_F16);
        nn_backward_with(1, &o, &g);
        CHECK(nn_f32_data(x->grad)[0] == 1.0f && nn_f32_data(x->grad)[1] == nn__half_to_f32(nn__f32_to_half(0.1f)) &&
              isinf(nn_f32_data(x->grad)[2]), "the gradient is rounded to f16 (1+2^-12 -> 1, 1e5 -> inf)");
    }
    nn_scope_end(NULL);
    nn_tensor_free(x);

    /* found by the ViT benchmark: trunc_normal_ (u = 0 once in 2^24 draws) needs erfinv(-1) = -inf to clamp */
    CHECK(isinf(nn__erfinv(-1.0)) && nn__erfinv(-1.0) < 0 && isinf(nn__erfinv(1.0)) && nn__erfinv(1.0) > 0,
          "erfinv(+-1) = +-inf, as torch");

    /* nesting, and the policy's on/off */
    CHECK(nn_autocast_dtype() == NN_F32, "off by default");
    nn_autocast_begin(NN_BF16);
    nn_autocast_begin(NN_F32);
    CHECK(nn_autocast_dtype() == NN_F32, "begin(F32) turns it off inside");
    nn_autocast_begin(NN_F16);
    CHECK(nn_autocast_dtype() == NN_F16, "nested f16");
    nn_autocast_end();
    nn_autocast_end();
    CHECK(nn_autocast_dtype() == NN_BF16, "back to bf16");
    nn_autocast_end();
    CHECK(nn_autocast_dtype() == NN_F32, "off again");
    CHECK(RAISES(nn_autocast_end()), "end without begin is an error");
    CHECK(RAISES(nn_autocast_begin(NN_I32)), "an integer dtype is an error");

    /* linear under bf16: output values are bf16 numbers; the weight is rounded once per region (cache) */
    nn_seed(3);
    x = nn_randn(2, s2);
    w = nn_randn(2, sw);
    nn_requires_grad(w, 1);
    nn_scope_begin();
    nn_autocast_begin(NN_BF16);
    y = nn_linear(x, w, NULL);
    CHECK(all_representable(y, NN_BF16), "nn_linear's output holds bf16 values");
    CHECK(nn__ac.n == 1 && nn__ac.cache[0].key == w, "the weight's cast is cached (x, not a parameter, is not)");
    r = nn_linear(x, w, NULL);
    CHECK(nn__ac.n == 1, "a second use of the weight reuses its cast (%d entries)", nn__ac.n);
    CHECK(memcmp(r->data, y->data, (size_t)y->numel * 4) == 0, "same result from the cached cast");
    {
        nn_tensor *s = nn_softmax(y, -1), *l = nn_layer_norm(y, NULL, NULL, 1e-5), *m = nn_sum_all(y);
        CHECK(!all_representable(s, NN_BF16) && !all_representable(l, NN_BF16), "softmax and layer_norm stay f32");
        CHECK(m->dtype == NN_F32, "reductions stay f32");
        /* gradient of two uses: the cached cast's node receives both and rounds their sum once */
        nn_backward(nn_add(nn_sum_all(y), nn_sum_all(r)));
    }
    CHECK(nn__ac.n == 0, "nn_backward clears the cache");
    {
        /* expected: dW = round_bf16( 2 * round_bf16(ones^T @ round_bf16(x)) ) */
        float *g = nn_f32_data(w->grad), *px = nn_f32_data(x);
        int ok = 1, j;
        for (j = 0; j < 5; j++) {
            float acc = 0, e;
            for (i = 0; i < 3; i++) acc += nn__bf16_to_f32(nn__f32_to_bf16(px[i * 5 + j]));
            e = nn__bf16_to_f32(nn__f32_to_bf16(acc));
            e = nn__bf16_to_f32(nn__f32_to_bf16(e + e));
            for (i = 0; i < 4; i++) if (g[i * 5 + j] != e) ok = 0;
        }
        CHECK(ok, "weight gradient of two cached uses: bf16 sums of bf16 inputs");
    }
    nn_autocast_end();
    nn_scope_end(NULL);
    nn_zero_grad(w);

    /* the outermost end clears the cache and releases the casts */
    {
        size_t before = nn_mem_stats(NN_CPU).current;
        nn_autocast_begin(NN_F16);
        nn_scope_begin();
        nn_linear(x, w, NULL);
        nn_scope_end(NULL);
        CHECK(nn__ac.n == 1, "cached while the region is open");
        nn_autocast_end();
        CHECK(nn__ac.n == 0 && nn_mem_stats(NN_CPU).current == before, "region end frees the cached cast");
    }
    /* outside any scope: nothing leaks (the op's own scope owns the rounded inputs) */
    {
        int g = nn_set_grad_enabled(0);   /* no tape: what is left can only be a lost tensor */
        nn_tensor *wt = nn_transpose(w, 0, 1);
        size_t before = nn_mem_stats(NN_CPU).current;
        nn_autocast_begin(NN_BF16);
        y = nn_matmul(x, wt);
        nn_autocast_end();
        CHECK(all_representable(y, NN_BF16), "nn_matmul's output holds bf16 values");
        nn_tensor_free(y);
        CHECK(nn_mem_stats(NN_CPU).current == before, "no tensor left behind at top level (%zu -> %zu)",
              before, nn_mem_stats(NN_CPU).current);
        nn_tensor_free(wt);
        nn_set_grad_enabled(g);
    }
    nn_tensor_free(x);
    nn_tensor_free(w);
}

/* ------------------------------------------------------------------------ (a) autocast vs torch fixtures */

enum { P_PE_W, P_PE_B, P_POS, P_LN1_W, P_LN1_B, P_Q_W, P_Q_B, P_K_W, P_K_B, P_V_W, P_V_B, P_O_W, P_O_B, P_LS1,
       P_LN2_W, P_LN2_B, P_FC1_W, P_FC1_B, P_FC2_W, P_FC2_B, P_LS2, P_HEAD_W, P_COUNT };
static const char *pnames[P_COUNT] = {"pe.w", "pe.b", "pos", "ln1.w", "ln1.b", "q.w", "q.b", "k.w", "k.b", "v.w", "v.b",
                                      "o.w", "o.b", "ls1", "ln2.w", "ln2.b", "fc1.w", "fc1.b", "fc2.w", "fc2.b",
                                      "ls2", "head.w"};

static nn_tensor *heads4(nn_tensor *t, int64_t B, int64_t L, int64_t H) {
    int64_t s[4];
    int perm[4] = {0, 2, 1, 3};
    s[0] = B; s[1] = L; s[2] = H; s[3] = t->shape[2] / H;
    return nn_permute(nn_reshape(t, 4, s), perm);
}

/* the model of tests/make_fixtures_amp.py; *xo gets the block output */
static nn_tensor *amp_model(nn_tensor **p, nn_tensor *img, nn_tensor *target, int attn, nn_tensor **xo, nn_tensor **outo) {
    int64_t B = img->shape[0], D = p[P_PE_W]->shape[0], L, s3[3];
    int perm[4] = {0, 2, 1, 3};
    nn_tensor *x, *h, *q, *k, *v, *a, *out;
    x = nn_conv2d(img, p[P_PE_W], p[P_PE_B], 2, 0, 1, 1);
    x = nn_add(nn_transpose(nn_flatten(x, 2, 3), 1, 2), p[P_POS]);
    L = x->shape[1];
    if (attn) {
        h = nn_layer_norm(x, p[P_LN1_W], p[P_LN1_B], 1e-6);
        q = heads4(nn_linear(h, p[P_Q_W], p[P_Q_B]), B, L, 2);
        k = heads4(nn_linear(h, p[P_K_W], p[P_K_B]), B, L, 2);
        v = heads4(nn_linear(h, p[P_V_W], p[P_V_B]), B, L, 2);
        s3[0] = B; s3[1] = L; s3[2] = D;
        a = nn_reshape(nn_permute(nn_sdpa(q, k, v, NULL), perm), 3, s3);
        x = nn_add(x, nn_mul(p[P_LS1], nn_linear(a, p[P_O_W], p[P_O_B])));
    }
    h = nn_layer_norm(x, p[P_LN2_W], p[P_LN2_B], 1e-6);
    h = nn_linear(nn_gelu(nn_linear(h, p[P_FC1_W], p[P_FC1_B])), p[P_FC2_W], p[P_FC2_B]);
    x = nn_add(x, nn_mul(p[P_LS2], h));
    out = nn_matmul(nn_mean(x, 1, 0), p[P_HEAD_W]);
    *xo = x;
    *outo = out;
    return nn_l1_loss(out, target);
}

typedef struct { double fwd, grad, fwd_rms, grad_rms; int64_t same, total; } errs;

static int64_t count_equal(const nn_tensor *a, const nn_tensor *b) {
    int64_t i, n = 0;
    for (i = 0; i < a->numel && a->numel == b->numel; i++) n += ((const float *)a->data)[i] == ((const float *)b->data)[i];
    return n;
}

/* run my model (attn: with the attention part) under dt (NN_F32: no autocast) and compare with torch's run
   `tag` ("bf16", "mlp.f16", ...) */
static errs amp_compare(const fx_file *f, nn_dtype dt, const char *tag, int attn, int verbose) {
    nn_tensor *p[P_COUNT], *img, *x, *out, *loss;
    char name[96];
    errs e = {0, 0, 0, 0, 0, 0};
    int i;
    for (i = 0; i < P_COUNT; i++) {
        snprintf(name, sizeof name, "p.%s", pnames[i]);
        p[i] = leaf_copy(fx_get(f, name));
    }
    img = leaf_copy(fx_get(f, "img"));
    nn_scope_begin();
    if (dt != NN_F32) nn_autocast_begin(dt);
    loss = amp_model(p, img, fx_get(f, "target"), attn, &x, &out);
    if (dt != NN_F32) nn_autocast_end();
    nn_backward(loss);   /* outside the region, as torch's */
#define CMP(mine, key, slot) do { \
        double r_, q_; snprintf(name, sizeof name, "%s.%s", tag, key); \
        r_ = rel_err((mine), fx_get(f, name)); q_ = rms_err((mine), fx_get(f, name)); \
        e.same += count_equal((mine), fx_get(f, name)); e.total += (mine)->numel; \
        if (r_ > e.slot) e.slot = r_; \
        if (q_ > e.slot##_rms) e.slot##_rms = q_; \
        if (verbose) printf("    %-5s %-9s max %.2e rms %.2e\n", tag, key, r_, q_); \
    } while (0)
    CMP(x, "x", fwd);
    CMP(out, "out", fwd);
    CMP(loss, "loss", fwd);
    CMP(img->grad, "g.img", grad);
    for (i = 0; i < P_COUNT; i++) {
        char key[32];
        /* the key bias's gradient is 0 in exact arithmetic (softmax ignores a constant added to a row of
           scores): both sides hold rounding noise, nothing to compare */
        if (i == P_K_B) continue;
        snprintf(key, sizeof key, "g.%s", pnames[i]);
        snprintf(name, sizeof name, "%s.%s", tag, key);
        if (!fx_has(f, name)) continue;   /* the attention's parameters in the MLP model */
        CMP(p[i]->grad, key, grad);
    }
#undef CMP
    nn_scope_end(NULL);
    for (i = 0; i < P_COUNT; i++) nn_tensor_free(p[i]);
    nn_tensor_free(img);
    return e;
}

static void test_autocast_fixture(void) {
    static const struct { const char *tag; nn_dtype dt; int attn; } runs[6] = {
        {"f32", NN_F32, 1}, {"bf16", NN_BF16, 1}, {"f16", NN_F16, 1},
        {"mlp.f32", NN_F32, 0}, {"mlp.bf16", NN_BF16, 0}, {"mlp.f16", NN_F16, 0}};
    char path[512];
    fx_file f;
    errs e[6], x[6];
    int i, verbose = getenv("AMP_VERBOSE") != NULL;
    snprintf(path, sizeof path, "%s/amp.txt", fx_dir);
    f = fx_load(path);
    printf("  vs torch: max err / max|torch|, rms err / rms torch (outputs | gradients), elements equal;\n"
           "  in brackets my f32 run against the same torch run\n");
    for (i = 0; i < 6; i++) {
        e[i] = amp_compare(&f, runs[i].dt, runs[i].tag, runs[i].attn, verbose);
        x[i] = amp_compare(&f, NN_F32, runs[i].tag, runs[i].attn, 0);
        printf("    %-9s max %.2e | %.2e  rms %.2e | %.2e  equal %5.1f%%   [rms %.2e | %.2e, equal %5.1f%%]\n",
               runs[i].tag, e[i].fwd, e[i].grad, e[i].fwd_rms, e[i].grad_rms, 100.0 * (double)e[i].same / (double)e[i].total,
               x[i].fwd_rms, x[i].grad_rms, 100.0 * (double)x[i].same / (double)x[i].total);
    }
    for (i = 0; i < 6; i++) {
        double tf = runs[i].dt == NN_F32 ? 2e-6 : runs[i].dt == NN_BF16 ? 2e-2 : 2e-3;
        double tg = runs[i].dt == NN_F32 ? 2e-6 : runs[i].dt == NN_BF16 ? 2e-2 : 3e-3;
        CHECK(e[i].fwd < tf && e[i].grad < tg, "%s vs torch: max error %.2e (tol %.0e) forward, %.2e (tol %.0e) gradients",
              runs[i].tag, e[i].fwd, tf, e[i].grad, tg);
        if (runs[i].dt != NN_F32 && !runs[i].attn) {
            /* the emulation, not luck: in the MLP model every rounding point of torch's is one emulated here,
               so the forward is torch's to the bit (rms 100x below an f32 run's) and the gradients much closer
               than an f32 run's (torch's CPU f16 GEMM/conv backward kernels sum in another order) */
            CHECK(e[i].fwd_rms * 100 < x[i].fwd_rms && e[i].grad_rms * 2 < x[i].grad_rms,
                  "%s: rms error %.2e | %.2e far below my f32 run's %.2e | %.2e", runs[i].tag, e[i].fwd_rms,
                  e[i].grad_rms, x[i].fwd_rms, x[i].grad_rms);
            CHECK(e[i].same * 10 > e[i].total * 8, "%s: %.1f%% of values equal torch's bitwise (want > 80%%)", runs[i].tag,
                  100.0 * (double)e[i].same / (double)e[i].total);
        }
    }
    fx_free(&f);
}

/* ------------------------------------------------------------------------------- (b) the loss scaler */

static void test_scaler_fixture(void) {
    char path[512], name[64];
    fx_file f;
    nn_params P = {0};
    nn_tensor *w, *c, *seq;
    nn_adamw_cfg cfg = nn_adamw_default();
    nn_adamw *opt;
    nn_grad_scaler s = nn_grad_scaler_new(65536.0, 2.0, 0.5, 3, 1);
    int t, n_steps, seq_ok = 1, w_ok = 1, skipped = 0;
    double worst = 0;
    snprintf(path, sizeof path, "%s/amp.txt", fx_dir);
    f = fx_load(path);
    c = fx_get(&f, "scaler.c");
    seq = fx_get(&f, "scaler.seq");
    n_steps = (int)c->shape[0];
    w = leaf_copy(fx_get(&f, "scaler.w0"));
    nn_params_add(&P, "w", w);
    P.items[0].no_decay = 0;   /* torch's single group decays it too */
    cfg.lr = 0.1;
    opt = nn_adamw_new(&P, cfg);
    for (t = 0; t < n_steps; t++) {
        const float *row = nn_f32_data(seq) + 4 * t;
        double used = nn_scaler_get_scale(&s);
        int found, stepped;
        float ea[4];
        nn_tensor *ct;
        memcpy(ea, opt->exp_avg[0], sizeof ea);
        nn_params_zero_grad(&P);
        nn_scope_begin();
        ct = nn_slice(c, 0, t, t + 1);
        nn_backward(nn_scaler_scale(&s, nn_sum_all(nn_mul(w, ct))));
        nn_scope_end(NULL);
        found = nn_scaler_unscale(&s, &P);
        stepped = nn_scaler_step(&s, opt, cfg.lr);
        nn_scaler_update(&s);
        if (used != row[0] || found != (row[1] != 0) || nn_scaler_get_scale(&s) != row[2] || s.growth_tracker != (int64_t)row[3]) {
            seq_ok = 0;
            printf("  step %d: scale %g found %d -> %g tracker %lld; torch %g %g -> %g %g\n", t, used, found,
                   nn_scaler_get_scale(&s), (long long)s.growth_tracker, row[0], row[1], row[2], row[3]);
        }
        if (!stepped) {
            skipped++;
            if (memcmp(ea, opt->exp_avg[0], sizeof ea) != 0) w_ok = 0;   /* moments untouched */
        }
        snprintf(name, sizeof name, "scaler.w.%d", t);
        {
            double e = fx_err(w, fx_get(&f, name), 1e-7, 1e-6);
            if (e > worst) worst = e;

        }
    }
    printf("  scaler: %d steps, %d skipped, final scale %g (torch: %g), parameter error ratio %.3g\n", n_steps, skipped,
           nn_scaler_get_scale(&s), nn_f32_data(seq)[4 * (n_steps - 1) + 2], worst);
    CHECK(seq_ok, "scale / found_inf / growth tracker sequence equals torch.amp.GradScaler's");
    CHECK(worst <= 1.0, "parameters after each (possibly skipped) step equal torch's (ratio %.3g)", worst);
    CHECK(w_ok && skipped == 4 && s.skipped == 4 && s.steps == n_steps - 4 && opt->steps[0] == n_steps - 4,
          "skipped steps leave weights, moments and AdamW's step count alone (%d skipped)", skipped);

    /* misuse, as torch's RuntimeErrors */
    nn_params_zero_grad(&P);
    CHECK(RAISES(nn_scaler_update(&s)), "update without step/unscale is an error");
    nn_scaler_unscale(&s, &P);
    CHECK(RAISES(nn_scaler_unscale(&s, &P)), "unscale twice is an error");
    nn_scaler_step(&s, opt, 0.1);
    CHECK(RAISES(nn_scaler_step(&s, opt, 0.1)), "step twice is an error");
    nn_scaler_update(&s);

    /* state text round trip; bad text changes nothing */
    {
        char buf[512];
        nn_grad_scaler r = nn_grad_scaler_default(), keep;
        s.skipped = 4;
        nn_scaler_state(&s, buf, sizeof buf);
        nn_scaler_load_state(&r, buf);
        CHECK(r.scale == s.scale && r.growth_tracker == s.growth_tracker && r.growth_interval == 3 &&
              r.growth_factor == 2.0 && r.backoff_factor == 0.5 && r.steps == s.steps && r.skipped == 4 && r.enabled,
              "state round trip: %s", buf);
        keep = r;
        CHECK(RAISES(nn_scaler_load_state(&r, "enabled=1 scale=2")), "missing keys are an error");
        CHECK(RAISES(nn_scaler_load_state(&r, "bogus=1")), "unknown keys are an error");
        CHECK(memcmp(&keep, &r, sizeof r) == 0, "a failed load changes nothing");
        {   /* the scaler's state travels in a training checkpoint (nn_ckpt_info.scaler) */
            const char *path = "build/test_amp_scaler_ckpt.safetensors";
            nn_params Q = {0};
            nn_ckpt_info in, out;
            int64_t two = 2;
            nn_grad_scaler back = nn_grad_scaler_default();
            nn_params_add(&Q, "w", nn_zeros(NN_F32, 1, &two));
            memset(&in, 0, sizeof in); memset(&out, 0, sizeof out);
            in.scaler = buf;
            nn_ckpt_save(path, &Q, NULL, NULL, &in);
            nn_ckpt_load(path, &Q, NULL, NULL, &out);
            CHECK(out.scaler && strcmp(out.scaler, buf) == 0, "checkpoint keeps the scaler state: %s", out.scaler ? out.scaler : "(none)");
            if (out.scaler) nn_scaler_load_state(&back, out.scaler);
            CHECK(back.scale == s.scale && back.growth_tracker == s.growth_tracker && back.skipped == 4,
                  "the scaler resumes from the checkpoint");
            nn_ckpt_info_free(&out);
            in.scaler = NULL;
            nn_ckpt_save(path, &Q, NULL, NULL, &in);
            nn_ckpt_load(path, &Q, NULL, NULL, &out);
            CHECK(out.scaler == NULL, "a checkpoint without a scaler loads none");
            nn_ckpt_info_free(&out);
            remove(path);
            nn_params_free(&Q);
        }
    }

    /* disabled: the loss passes through, every step steps */
    {
        nn_grad_scaler d = nn_grad_scaler_new(65536.0, 2.0, 0.5, 2000, 0);
        nn_tensor *l;
        int64_t st = opt->step;
        nn_scope_begin();
        l = nn_sum_all(w);
        CHECK(nn_scaler_scale(&d, l) == l && nn_scaler_get_scale(&d) == 1.0, "disabled: scale() is the identity");
        nn_scope_end(NULL);
        nn_params_zero_grad(&P);
        CHECK(nn_scaler_unscale(&d, &P) == 0 && nn_scaler_step(&d, opt, 0.1) == 1 && opt->step == st + 1,
              "disabled: step() steps");
        nn_scaler_update(&d);
    }
    nn_adamw_free(opt);
    nn_params_free(&P);
    fx_free(&f);
}

/* -------------------------------------------------------- (c) (d) a transformer stack with checkpointing */

/* t moved to the test device (t freed when it moves) */
static nn_tensor *on_dev(nn_tensor *t) {
    nn_tensor *d;
    if (tdev == NN_CPU) return t;
    d = nn_to(t, tdev);
    nn_tensor_free(t);
    return d;
}

typedef struct {
    nn_LayerNorm ln1, ln2;
    nn_MultiheadAttention attn;
    nn_MLP mlp;
    double drop;
} tblock;

static void tblock_init(tblock *b, nn_params *P, const char *prefix, int dim, int heads, double drop) {
    char buf[128];
    nn_LayerNorm_init(&b->ln1, P, nn_name_join(buf, sizeof buf, prefix, "ln1"), dim, 1e-5, 1);
    nn_MultiheadAttention_init(&b->attn, P, nn_name_join(buf, sizeof buf, prefix, "attn"), dim, heads, drop, 0, 0);
    nn_LayerNorm_init(&b->ln2, P, nn_name_join(buf, sizeof buf, prefix, "ln2"), dim, 1e-5, 1);
    nn_MLP_init(&b->mlp, P, nn_name_join(buf, sizeof buf, prefix, "mlp"), dim, 4 * dim, dim, NN_ACT_GELU, drop);
    b->drop = drop;
}

static nn_tensor *tblock_forward(const tblock *b, nn_tensor *x) {
    nn_tensor *h;
    nn_scope_begin();
    h = nn_LayerNorm_forward(&b->ln1, x);
    h = nn_MultiheadAttention_forward(&b->attn, h, h, h, NULL, NULL);
    x = nn_add(x, nn_dropout(h, b->drop, nn_training()));
    h = nn_MLP_forward(&b->mlp, nn_LayerNorm_forward(&b->ln2, x));
    x = nn_add(x, nn_dropout(h, b->drop, nn_training()));
    return nn_scope_end(x);
}

static void tblock_ckpt_fn(void *ctx, nn_tensor **in, nn_tensor **out) { out[0] = tblock_forward((const tblock *)ctx, in[0]); }

static nn_tensor *stack_forward(const tblock *b, int n, nn_tensor *x, int ckpt) {
    int i;
    for (i = 0; i < n; i++) {
        if (ckpt) { nn_tensor *o[1]; nn_checkpoint(tblock_ckpt_fn, (void *)&b[i], 1, &x, 1, o); x = o[0]; }
        else x = tblock_forward(&b[i], x);
    }
    return x;
}

/* one training step's gradients: loss = mean(y^2) of the stack; returns the loss */
static double stack_step(const tblock *b, int n, nn_params *P, nn_tensor *x, int ckpt, nn_dtype ac) {
    double l;
    nn_tensor *y, *loss;
    nn_params_zero_grad(P);
    nn_zero_grad(x);
    nn_seed(1234);
    nn_scope_begin();
    if (ac != NN_F32) nn_autocast_begin(ac);
    y = stack_forward(b, n, x, ckpt);
    loss = nn_mean_all(nn_mul(y, y));
    if (ac != NN_F32) nn_autocast_end();
    nn_backward(loss);
    l = nn_item(loss);
    nn_scope_end(NULL);
    return l;
}

static float **grads_copy(nn_params *P, nn_tensor *x) {
    float **g = (float **)calloc((size_t)P->n + 1, sizeof(float *));
    int k;
    for (k = 0; k <= P->n; k++) {
        nn_tensor *t = k < P->n ? P->items[k].t : x;
        g[k] = (float *)malloc((size_t)t->numel * 4);
        if (t->grad) nn_to_host(t->grad, g[k]);
        else memset(g[k], 0xff, (size_t)t->numel * 4);
    }
    return g;
}

static int grads_equal(float **g, nn_params *P, nn_tensor *x) {
    int k, ok = 1;
    for (k = 0; k <= P->n; k++) {
        nn_tensor *t = k < P->n ? P->items[k].t : x;
        float *h = (float *)malloc((size_t)t->numel * 4);
        if (t->grad) nn_to_host(t->grad, h);
        if (!t->grad || memcmp(g[k], h, (size_t)t->numel * 4) != 0) {
            if (ok) printf("  first bitwise difference: %s\n", k < P->n ? P->items[k].name : "input");
            ok = 0;
        }
        free(h);
    }
    for (k = 0; k <= P->n; k++) free(g[k]);
    free(g);
    return ok;
}

static void test_checkpoint_bitwise(void) {
    nn_params P = {0};
    tblock b[3];
    int64_t sx[3] = {2, 24, 32};
    nn_tensor *x;
    int i, prev = nn_set_training(1), a;
    nn_dtype acs[2] = {NN_F32, NN_BF16};
    char buf[32];
    nn_seed(5);
    for (i = 0; i < 3; i++) { snprintf(buf, sizeof buf, "b%d", i); tblock_init(&b[i], &P, buf, 32, 4, 0.1); }
    nn_params_to(&P, tdev);
    x = on_dev(nn_randn(3, sx));
    nn_requires_grad(x, 1);
    for (a = 0; a < 2; a++) {
        double l0 = stack_step(b, 3, &P, x, 0, acs[a]), l1;
        float **g = grads_copy(&P, x);
        l1 = stack_step(b, 3, &P, x, 1, acs[a]);
        CHECK(l0 == l1, "%s: checkpointed loss equals plain (%.9g vs %.9g)", nn_dtype_name(acs[a]), l0, l1);
        CHECK(grads_equal(g, &P, x), "%s: checkpointed gradients are bitwise equal to plain ones (3 blocks, dropout 0.1)",
              nn_dtype_name(acs[a]));
    }
    {   /* and dropout really acted: eval mode gives another loss */
        double lt = stack_step(b, 3, &P, x, 0, NN_F32), le;
        nn_set_training(0);
        le = stack_step(b, 3, &P, x, 0, NN_F32);
        nn_set_training(1);
        CHECK(lt != le, "dropout is active in the training runs");
    }
    nn_set_training(prev);
    nn_zero_grad(x);
    nn_tensor_free(x);
    nn_params_free(&P);
}

/* peak bytes above the current ones during one forward + backward */
static size_t stack_peak(const tblock *b, int n, nn_params *P, nn_tensor *x, int ckpt) {
    size_t base;
    nn_params_zero_grad(P);
    nn_zero_grad(x);
    base = nn_mem_stats(tdev).current;
    nn_mem_reset_peak(tdev);
    stack_step(b, n, P, x, ckpt, NN_F32);
    return nn_mem_stats(tdev).peak - base;
}

static void test_checkpoint_memory(void) {
    enum { NB = 12 };
    nn_params P = {0};
    tblock b[NB];
    int64_t sx[3] = {4, 256, 64};
    nn_tensor *x;
    size_t plain, ckpt, one, params = 0, in_bytes;
    int i, k, prev = nn_set_training(1);
    char buf[32];
    nn_seed(6);
    for (i = 0; i < NB; i++) { snprintf(buf, sizeof buf, "b%d", i); tblock_init(&b[i], &P, buf, 64, 4, 0.1); }
    for (k = 0; k < P.n; k++) params += (size_t)P.items[k].t->numel * 4;
    nn_params_to(&P, tdev);
    x = on_dev(nn_randn(3, sx));
    nn_requires_grad(x, 1);
    in_bytes = (size_t)x->numel * 4;
    plain = stack_peak(b, NB, &P, x, 0);
    ckpt = stack_peak(b, NB, &P, x, 1);
    one = stack_peak(b, 1, &P, x, 0);       /* one block, plain: its activations + its gradients */
    printf("  memory, 12 blocks (dim 64, 4 heads, tokens 4x256), peak above parameters during forward+backward:\n"
           "    plain %.2f MiB, checkpointed %.2f MiB (ratio %.1f); one plain block %.2f MiB; parameters %.2f MiB,\n"
           "    one block input %.2f MiB\n", plain / 1048576.0, ckpt / 1048576.0, (double)plain / (double)ckpt,
           one / 1048576.0, params / 1048576.0, in_bytes / 1048576.0);
    CHECK(ckpt * 4 < plain, "checkpointed peak %zu < plain peak %zu / 4", ckpt, plain);
    {   /* nn_mem_trace: who holds the checkpointed peak; the holders add up to it */
        nn_mem_breakdown mb;
        size_t sum = 0, by_ckpt = 0;
        nn_mem_trace(tdev, 1);
        stack_peak(b, NB, &P, x, 1);
        nn_mem_trace(tdev, 0);
        mb = nn_mem_peak_breakdown(tdev);
        printf("    checkpointed peak %.2f MiB reached in %s:\n", mb.peak / 1048576.0, mb.where);
        for (k = 0; k < mb.n; k++) {
            printf("      %-52s %9.3f MiB  %lld blocks\n", mb.holder[k].what, mb.holder[k].bytes / 1048576.0,
                   (long long)mb.holder[k].blocks);
            sum += mb.holder[k].bytes;
            if (strcmp(mb.holder[k].what, "saved by checkpoint") == 0) by_ckpt = mb.holder[k].bytes;
        }
        CHECK(sum == mb.peak && mb.peak == nn_mem_stats(tdev).peak, "the holders add up to the peak (%zu vs %zu)",
              sum, mb.peak);
        CHECK(strncmp(mb.where, "backward of ", 12) == 0, "the checkpointed peak is in backward (%s)", mb.where);
        CHECK(by_ckpt >= in_bytes && by_ckpt <= NB * in_bytes, "block inputs saved by the checkpoints: %zu bytes",
              by_ckpt);
    }
    /* about one block: the 12 kept block inputs, all parameter gradients, one block recomputed */
    CHECK(ckpt < params + NB * in_bytes + 2 * one, "checkpointed peak %zu within grads + inputs + 2 blocks (%zu)", ckpt,
          params + NB * in_bytes + 2 * one);
    nn_set_training(prev);
    nn_zero_grad(x);
    nn_tensor_free(x);
    nn_params_free(&P);
}

/* --------------------------------------------------------------------------------- (e) training converges */

typedef struct { double first, last; int64_t skipped; double final_scale; } train_result;

static train_result train_mlp(nn_dtype ac, int use_scaler) {
    nn_params P = {0};
    nn_Linear l1, l2, l3;
    int64_t sx[2] = {256, 2}, sy[2] = {256, 1};
    nn_tensor *x, *y;
    nn_adamw_cfg cfg = nn_adamw_default();
    nn_adamw *opt;
    nn_grad_scaler s = nn_grad_scaler_new(65536.0, 2.0, 0.5, 20, use_scaler);
    train_result r = {0, 0, 0, 0};
    int i, step;
    float *px, *py;
    nn_seed(42);
    nn_Linear_init(&l1, &P, "l1", 2, 64, 1);
    nn_Linear_init(&l2, &P, "l2", 64, 64, 1);
    nn_Linear_init(&l3, &P, "l3", 64, 1, 1);
    x = nn_uniform(2, sx, -2, 2);
    y = nn_empty(NN_F32, 2, sy);
    px = nn_f32_data(x); py = nn_f32_data(y);
    for (i = 0; i < 256; i++) py[i] = sinf(2 * px[2 * i]) * cosf(1.5f * px[2 * i + 1]);
    x = on_dev(x); y = on_dev(y);
    nn_params_to(&P, tdev);
    cfg.lr = 3e-3;
    opt = nn_adamw_new(&P, cfg);
    for (step = 0; step < 400; step++) {
        nn_tensor *loss;
        double l;
        FILE *curve;
        nn_scope_begin();
        if (ac != NN_F32) nn_autocast_begin(ac);
        loss = nn_mse_loss(nn_Linear_forward(&l3, nn_gelu(nn_Linear_forward(&l2, nn_gelu(nn_Linear_forward(&l1, x))))), y);
        if (ac != NN_F32) nn_autocast_end();
        nn_params_zero_grad(&P);
        nn_backward(nn_scaler_scale(&s, loss));
        l = nn_item(loss);
        nn_scope_end(NULL);
        nn_scaler_unscale(&s, &P);
        nn_clip_grad_norm(&P, 1.0, 0);
        nn_scaler_step(&s, opt, cfg.lr);
        nn_scaler_update(&s);
        if (step == 0) r.first = l;
        r.last = l;
        /* AMP_CURVES=file appends "mode,step,loss" for the record (bench/RESULTS_VIT_TRAIN.md plots it) */
        if (getenv("AMP_CURVES") && (curve = fopen(getenv("AMP_CURVES"), "a")) != NULL) {
            fprintf(curve, "%s%s,%d,%.9g\n", nn_dtype_name(ac), use_scaler ? "+scaler" : "",
                    step, l);
            fclose(curve);
        }
    }
    r.skipped = s.skipped;
    r.final_scale = nn_scaler_get_scale(&s);
    nn_adamw_free(opt);
    nn_tensor_free(x);
    nn_tensor_free(y);
    nn_params_free(&P);
    return r;
}

static void test_training(void) {
    train_result f = train_mlp(NN_F32, 0), b = train_mlp(NN_BF16, 0), h = train_mlp(NN_F16, 1);
    printf("  MLP regression, 400 AdamW steps, loss first -> last:\n    f32 %.4f -> %.5f\n    bf16 %.4f -> %.5f\n"
           "    f16+scaler %.4f -> %.5f (%lld steps skipped, final scale %g)\n", f.first, f.last, b.first, b.last,
           h.first, h.last, (long long)h.skipped, h.final_scale);
    CHECK(f.last < 0.1 * f.first, "f32 converges");
    CHECK(b.last < 0.1 * b.first && b.last < 2 * f.last + 1e-3, "bf16 converges like f32");
    CHECK(h.last < 0.1 * h.first && h.last < 2 * f.last + 1e-3, "f16 with the scaler converges like f32");
    CHECK(h.skipped > 0 && h.skipped < 40, "the scaler skipped a few overflowing steps (%lld) and recovered",
          (long long)h.skipped);
}

int main(int argc, char **argv) {
    if (argc > 1) fx_dir = argv[1];
    nn_set_error_handler(err_handler, NULL);
    if (getenv("AMP_DEVICE") && strcmp(getenv("AMP_DEVICE"), "cpu") != 0) {
#ifdef NN_CUDA
        if (strcmp(getenv("AMP_DEVICE"), "cuda") != 0 || !nn_cuda_available()) {
            printf("AMP_DEVICE=%s: no such device here\n0 passed, 1 failed\n", getenv("AMP_DEVICE"));
            return 1;
        }
        tdev = NN_CUDA;
        nn_cuda_set_tf32(0);
        nn_cuda_set_conv_tf32(0);   /* f32 products against the fixtures at f32 tolerances */
#else
        printf("AMP_DEVICE=%s needs a build with -DNN_CUDA\n0 passed, 1 failed\n", getenv("AMP_DEVICE"));
        return 1;
#endif
    }
    /* AMP_ONLY=0abcde picks sections (0: autocast basics) */
#define RUN(k, title, fn) if (!getenv("AMP_ONLY") || strchr(getenv("AMP_ONLY"), k)) { printf("%s\n", title); fn(); }
    RUN('0', "autocast basics", test_autocast_basics)
    RUN('a', "(a) autocast vs torch.autocast", test_autocast_fixture)
    RUN('b', "(b) loss scaler vs torch.amp.GradScaler", test_scaler_fixture)
    RUN('c', "(c) checkpointed vs plain gradients", test_checkpoint_bitwise)
    RUN('d', "(d) checkpoint memory", test_checkpoint_memory)
    RUN('e', "(e) training with autocast and the scaler", test_training)
#undef RUN
    nn_shutdown();
    return test_summary();
}
