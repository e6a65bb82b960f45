/* tests/test_seed_blocks.c - one test per seed model: its characteristic block, built at tiny size from
   the headers in models/ on nn.h's public API, gradient-checked end to end (block inputs and a few parameters, by
   central differences: tests/gradcheck.h), plus structural checks (masks really mask, adaLN-Zero and zero
   convs start as the identity, checkpointed == plain) and, where tests/fixtures/seed_blocks.txt exists,
   the forward against PyTorch modules carrying the same state_dict names
   (tests/make_fixtures_seed_blocks.py).
     001 ViT (DINOv2) layer with LayerScale          models/vit.h
     000 hierarchical attention, gate + top-k        models/mesh_attn.h
     002 adaLN-Zero DiT block, masked cross-attn     models/dit.h
     003 UNet ResBlock with scale-shift GroupNorm    models/unet.h
     004 CMT decoder layer, DN mask + AQR bias       models/cmt.h
   Dropout is off (nn_set_training(0)); weights are randomised, zero-initialised ones included. */
#define NN_IMPLEMENTATION
#include "nn.h"
#include "gradcheck.h"
#include "fixture.h"
#include "models/vit.h"
#include "models/mesh_attn.h"
#include "models/dit.h"
#include "models/unet.h"
#include "models/cmt.h"

#include <string.h>

/* every parameter random and away from its init: norm scales and LayerScale in [0.5, 1.5], other 1-D
   tensors in [-0.3, 0.3], matrices and kernels U(+-1.5/sqrt(fan_in)) (zero inits included) */
static void randomize(nn_params *P) {
    int i;
    for (i = 0; i < P->n; i++) {
        nn_tensor *t = P->items[i].t;
        const char *nm = P->items[i].name;
        if (t->ndim == 1) {
            int scale_like = strstr(nm, "lambda1") || ((strstr(nm, "norm") || strstr(nm, "in_layers.0") || strstr(nm, "out_layers.0")) &&
                                                      strstr(nm, ".weight"));
            if (scale_like) nn_init_uniform_(t, 0.5, 1.5);
            else nn_init_uniform_(t, -0.3, 0.3);
        } else {
            double fan_in = (double)(t->numel / t->shape[0]), b = 1.5 / sqrt(fan_in);
            nn_init_uniform_(t, -b, b);
        }
    }
}

static nn_tensor *param(nn_params *P, const char *name) {
    nn_tensor *t = nn_params_find(P, name);
    CHECK(t != NULL, "parameter %s is registered", name);
    if (!t) { nn_params_free(P); nn_shutdown(); exit(1); }
    return t;
}

static double max_abs_diff(nn_tensor *a, nn_tensor *b) {
    double m = 0;
    int64_t i;
    if (a->numel != b->numel) return INFINITY;
    for (i = 0; i < a->numel; i++) {
        double d = fabs((double)((float *)a->data)[i] - (double)((float *)b->data)[i]);
        if (!(d <= m)) m = d;
    }
    return m;
}

static nn_tensor *leaf(int ndim, const int64_t *shape, double lo, double hi) { return gc_param(ndim, shape, lo, hi); }

/* fixture support: load PyTorch's state_dict into P; the fixture names it "<block>.sd.<state_dict key>".
   Every registered name must be there with the same size, and nothing may be left over. */
static fx_file fx;
static int have_fx;
static void load_params(nn_params *P, const char *block) {
    int i, n_fx = 0;
    char nm[200], pre[64];
    for (i = 0; i < P->n; i++) {
        nn_tensor *src;
        snprintf(nm, sizeof nm, "%s.sd.%s", block, P->items[i].name);
        src = fx_has(&fx, nm) ? fx_get(&fx, nm) : NULL;
        CHECK(src && src->numel == P->items[i].t->numel, "%s: PyTorch's state_dict has %s, same size", block, nm);
        if (src && src->numel == P->items[i].t->numel) nn_copy_(P->items[i].t, src);
    }
    snprintf(pre, sizeof pre, "%s.sd.", block);
    for (i = 0; i < fx.n; i++) if (strncmp(fx.e[i].name, pre, strlen(pre)) == 0) n_fx++;
    CHECK(n_fx == P->n, "%s: PyTorch's state_dict has %d tensors, the C block %d", block, n_fx, P->n);
}

/* ============================================================================ 001 ViT (DINOv2) layer */
typedef struct { vit_block *m; int ckpt; } vit_ctx;
static nn_tensor *vit_fn(void *c, nn_tensor **in) {
    vit_ctx *v = (vit_ctx *)c;
    return v->ckpt ? vit_block_forward_checkpointed(v->m, in[0]) : vit_block_forward(v->m, in[0]);
}

static void test_vit(void) {
    nn_params P = {NULL, 0, 0};
    vit_block m;
    vit_ctx c;
    int64_t sx[3] = {2, 7, 16};
    nn_tensor *x, *in[6];
    vit_block_init(&m, &P, "", 16, 2, 32, 1.0, 0.0, 0.0);
    CHECK(P.n == 18, "vit: 18 parameter tensors (got %d)", P.n);
    param(&P, "attention.attention.query.weight");
    param(&P, "attention.output.dense.bias");
    param(&P, "layer_scale2.lambda1");
    param(&P, "mlp.fc2.weight");
    randomize(&P);
    x = leaf(3, sx, -1, 1);
    c.m = &m; c.ckpt = 0;
    in[0] = x;
    in[1] = m.lambda1;
    in[2] = m.norm1.weight;
    in[3] = m.key.weight;
    in[4] = m.mlp.fc1.bias;
    in[5] = m.lambda2;
    gradcheck("vit block", vit_fn, &c, 6, in);
    {   /* gradient checkpointing: same output, same gradients */
        nn_tensor *y0, *y1, *g0, *g1;
        nn_scope_begin();
        y0 = vit_block_forward(&m, x);
        nn_backward(nn_sum_all(y0));
        g0 = nn_clone(x->grad);
        nn_zero_grad(x);
        y1 = vit_block_forward_checkpointed(&m, x);
        nn_backward(nn_sum_all(y1));
        g1 = x->grad;
        CHECK(max_abs_diff(y0, y1) == 0, "vit: checkpointed forward equals the plain one");
        CHECK(max_abs_diff(g0, g1) < 1e-5, "vit: checkpointed gradients equal the plain ones (%g)", max_abs_diff(g0, g1));
        nn_zero_grad(x);
        nn_scope_end(NULL);
    }
    c.ckpt = 1;
    gradcheck("vit block (checkpointed)", vit_fn, &c, 2, in);
    if (have_fx) {
        nn_tensor *xr, *y, *yr;
        load_params(&P, "vit");
        xr = fx_get(&fx, "vit.x"); yr = fx_get(&fx, "vit.y");
        nn_scope_begin();
        y = vit_block_forward(&m, xr);
        CHECK_FX(y, yr, 1e-5, 1e-4, "vit: forward matches PyTorch's Dinov2Layer");
        nn_scope_end(NULL);
    }
    nn_tensor_free(x);
    nn_params_zero_grad(&P);
    nn_params_free(&P);
}

/* ============================================================= 000 hierarchical attention layer */
static nn_tensor *mesh_fn(void *c, nn_tensor **in) { return mesh_attn_forward((const mesh_attn *)c, in[0], in[1]); }

/* confidences well apart (the top-k set must not change under the +-h probes) */
static nn_tensor *spaced_confidence(int64_t N) {
    int64_t s[2], i;
    nn_tensor *t;
    s[0] = N; s[1] = 1;
    t = nn_empty(NN_F32, 2, s);
    for (i = 0; i < N; i++) ((float *)t->data)[i] = (float)(0.05 + 0.9 * (double)((i * 5 + 3) % N) / (double)N);
    nn_requires_grad(t, 1);
    return t;
}

static void test_mesh_attn(void) {
    nn_params P = {NULL, 0, 0};
    mesh_attn m;
    int64_t sx[2] = {9, 16};
    nn_tensor *x, *conf, *in[7];
    mesh_attn_init(&m, &P, "", 16, 2, 4, 0.1);
    CHECK(P.n == 20, "mesh_attn: 20 parameter tensors (got %d)", P.n);
    param(&P, "confidence_gate.0.weight");
    param(&P, "local_attention.in_proj_weight");
    param(&P, "global_attention.out_proj.bias");
    param(&P, "ffn.3.weight");
    param(&P, "norm3.bias");
    randomize(&P);
    /* N = 9, chunk 4: local attention over chunks 4 + 4 + 1, global attention to the top 4 */
    x = leaf(2, sx, -1, 1);
    conf = spaced_confidence(9);
    in[0] = x; in[1] = conf;
    in[2] = m.confidence_gate.weight;
    in[3] = m.local_attention.in_proj_bias;
    in[4] = m.global_attention.out_proj.weight;
    in[5] = m.ffn3.bias;
    in[6] = m.norm2.weight;
    gradcheck("mesh_attn N=9 chunk=4", mesh_fn, &m, 7, in);
    nn_tensor_free(x); nn_tensor_free(conf);
    /* N <= chunk_size: plain local and global self-attention */
    sx[0] = 3;
    x = leaf(2, sx, -1, 1);
    conf = spaced_confidence(3);
    in[0] = x; in[1] = conf;
    gradcheck("mesh_attn N=3 chunk=4", mesh_fn, &m, 2, in);
    nn_tensor_free(x); nn_tensor_free(conf);
    /* N = 8: only full chunks */
    sx[0] = 8;
    x = leaf(2, sx, -1, 1);
    conf = spaced_confidence(8);
    in[0] = x; in[1] = conf;
    gradcheck("mesh_attn N=8 chunk=4", mesh_fn, &m, 2, in);
    nn_tensor_free(x); nn_tensor_free(conf);
    if (have_fx) {
        const char *cases[3] = {"mesh9", "mesh3", "mesh8"};
        int k;
        load_params(&P, "mesh");
        for (k = 0; k < 3; k++) {
            char a[64], b[64], cc[64];
            nn_tensor *y;
            snprintf(a, sizeof a, "%s.x", cases[k]); snprintf(b, sizeof b, "%s.conf", cases[k]); snprintf(cc, sizeof cc, "%s.y", cases[k]);
            nn_scope_begin();
            y = mesh_attn_forward(&m, fx_get(&fx, a), fx_get(&fx, b));
            CHECK_FX(y, fx_get(&fx, cc), 1e-5, 1e-4, "mesh_attn (N = 9, 3, 8): forward matches PyTorch's HierarchicalAttention");
            nn_scope_end(NULL);
        }
    }
    nn_params_zero_grad(&P);
    nn_params_free(&P);
}

/* ===================================================================== 002 adaLN-Zero DiT block */
typedef struct { dit_block *m; nn_tensor *scene_mask; int with_text; } dit_ctx;
static nn_tensor *dit_fn(void *c, nn_tensor **in) {
    dit_ctx *d = (dit_ctx *)c;
    return dit_block_forward(d->m, in[0], in[1], in[2], d->scene_mask, d->with_text ? in[3] : NULL, NULL);
}

static void test_dit(void) {
    nn_params P = {NULL, 0, 0};
    dit_block m;
    dit_ctx c;
    int64_t sx[3] = {2, 5, 16}, sc[2] = {2, 6}, ss[3] = {2, 7, 16}, st[3] = {2, 3, 16}, sm[2] = {2, 7}, i;
    nn_tensor *x, *cond, *scene, *text, *mask, *in[8];
    dit_block_init(&m, &P, "", 16, 2, 8, 6, 0.1, 0.1, 0.1);
    CHECK(P.n == 21, "dit: 21 parameter tensors (got %d)", P.n);
    param(&P, "adaln_zero_stack.modulation.weight");
    param(&P, "scene_cross_attention.to_k.weight");
    param(&P, "text_cross_attention.to_out.0.bias");
    param(&P, "feed_forward.net.3.weight");
    CHECK(nn_params_find(&P, "self_attention.to_q.bias") == NULL, "dit: to_q has no bias (EfficientAttention)");
    x = leaf(3, sx, -1, 1); cond = leaf(2, sc, -1, 1); scene = leaf(3, ss, -1, 1); text = leaf(3, st, -1, 1);
    /* batch 0: all 7 scene points valid; batch 1: 4 valid, 3 padding */
    mask = nn_ones(NN_F32, 2, sm);
    for (i = 4; i < 7; i++) ((float *)mask->data)[7 + i] = 0;
    c.m = &m; c.scene_mask = mask; c.with_text = 1;
    {   /* adaLN-Zero at init: every gate is 0, the block is the identity */
        nn_tensor *y;
        nn_scope_begin();
        y = dit_block_forward(&m, x, cond, scene, mask, text, NULL);
        CHECK(max_abs_diff(y, x) == 0, "dit: the zero-initialised block is the identity (%g)", max_abs_diff(y, x));
        nn_scope_end(NULL);
    }
    randomize(&P);
    in[0] = x; in[1] = cond; in[2] = scene; in[3] = text;
    in[4] = m.modulation.bias;
    in[5] = m.scene_cross_attention.to_k.weight;
    in[6] = m.self_attention.to_out.bias;
    in[7] = m.ff3.bias;
    gradcheck("dit block (scene mask, text)", dit_fn, &c, 8, in);
    {   /* the padded scene points get no gradient and do not change the output */
        nn_tensor *y0, *y1;
        float *sd = (float *)scene->data;
        int ok = 1;
        nn_scope_begin();
        y0 = dit_block_forward(&m, x, cond, scene, mask, text, NULL);
        nn_backward(nn_sum_all(y0));
        for (i = 4; i < 7; i++) { int64_t j; for (j = 0; j < 16; j++) ok &= ((float *)scene->grad->data)[(7 + i) * 16 + j] == 0; }
        CHECK(ok, "dit: padded scene points get zero gradient");
        for (i = 4; i < 7; i++) { int64_t j; for (j = 0; j < 16; j++) sd[(7 + i) * 16 + j] += 5.0f; }
        y1 = dit_block_forward(&m, x, cond, scene, mask, text, NULL);
        CHECK(max_abs_diff(y0, y1) == 0, "dit: padded scene points do not change the output");
        for (i = 4; i < 7; i++) { int64_t j; for (j = 0; j < 16; j++) sd[(7 + i) * 16 + j] -= 5.0f; }
        nn_params_zero_grad(&P);
        nn_zero_grad(x); nn_zero_grad(cond); nn_zero_grad(scene); nn_zero_grad(text);
        nn_scope_end(NULL);
    }
    c.with_text = 0;
    gradcheck("dit block (scene mask, no text)", dit_fn, &c, 3, in);
    if (have_fx) {
        nn_tensor *y;
        load_params(&P, "dit");
        nn_scope_begin();
        y = dit_block_forward(&m, fx_get(&fx, "dit.x"), fx_get(&fx, "dit.cond"), fx_get(&fx, "dit.scene"),
                              fx_get(&fx, "dit.scene_mask"), fx_get(&fx, "dit.text"), NULL);
        CHECK_FX(y, fx_get(&fx, "dit.y"), 1e-5, 1e-4, "dit: forward matches PyTorch's DiTBlock");
        nn_scope_end(NULL);
    }
    nn_tensor_free(x); nn_tensor_free(cond); nn_tensor_free(scene); nn_tensor_free(text); nn_tensor_free(mask);
    nn_params_zero_grad(&P);
    nn_params_free(&P);
}

/* ================================================================= 003 UNet ResBlock, scale-shift */
typedef struct { unet_resblock *m; int ckpt; } unet_ctx;
static nn_tensor *unet_fn(void *c, nn_tensor **in) {
    unet_ctx *u = (unet_ctx *)c;
    return u->ckpt ? unet_resblock_forward_checkpointed(u->m, in[0], in[1]) : unet_resblock_forward(u->m, in[0], in[1]);
}

static void test_unet(void) {
    nn_params P = {NULL, 0, 0}, P2 = {NULL, 0, 0}, P3 = {NULL, 0, 0};
    unet_resblock m, m2, m3;
    unet_ctx c;
    int64_t sx[4] = {2, 8, 5, 5}, se[2] = {2, 6}, sx6[4] = {2, 8, 6, 6};
    nn_tensor *x, *emb, *x6, *in[7];
    /* 8 -> 12 channels (1x1 skip), 4 groups, scale-shift norm */
    unet_resblock_init(&m, &P, "", 8, 6, 0.1, 12, 4, 0, 1, 0, 0);
    CHECK(P.n == 12, "unet: 12 parameter tensors (got %d)", P.n);
    param(&P, "in_layers.0.weight"); param(&P, "in_layers.2.weight"); param(&P, "emb_layers.1.weight");
    param(&P, "out_layers.0.bias"); param(&P, "out_layers.3.weight"); param(&P, "skip_connection.weight");
    CHECK(m.emb.weight->shape[0] == 24, "unet: emb_layers.1 gives 2*out_channels with scale-shift");
    x = leaf(4, sx, -1, 1); emb = leaf(2, se, -1, 1);
    /* same channels, plain emb add: at init (zero out conv) the block is the identity */
    unet_resblock_init(&m2, &P2, "", 8, 6, 0.1, 0, 4, 0, 0, 0, 0);
    {
        nn_tensor *y;
        nn_scope_begin();
        y = unet_resblock_forward(&m2, x, emb);
        CHECK(max_abs_diff(y, x) == 0, "unet: the zero-initialised out conv makes the block the identity");
        nn_scope_end(NULL);
    }
    randomize(&P); randomize(&P2);
    c.m = &m; c.ckpt = 0;
    in[0] = x; in[1] = emb;
    in[2] = m.emb.weight; in[3] = m.out_conv.bias; in[4] = m.in_norm.weight; in[5] = m.skip.weight; in[6] = m.out_norm.bias;
    gradcheck("unet resblock (scale-shift, 8->12)", unet_fn, &c, 7, in);
    c.ckpt = 1;
    gradcheck("unet resblock (checkpointed)", unet_fn, &c, 2, in);
    c.m = &m2; c.ckpt = 0;
    in[2] = m2.in_conv.bias;
    gradcheck("unet resblock (emb add, 8->8)", unet_fn, &c, 3, in);
    /* downsampling variant (resblock_updown), 6x6 -> 3x3, 3x3-conv skip (use_conv) to 4 channels */
    unet_resblock_init(&m3, &P3, "", 8, 6, 0.0, 4, 2, 1, 1, 0, 1);
    randomize(&P3);
    x6 = leaf(4, sx6, -1, 1);
    c.m = &m3;
    in[0] = x6; in[2] = m3.skip.weight;
    gradcheck("unet resblock (down, 8->4, conv skip)", unet_fn, &c, 3, in);
    if (have_fx) {
        nn_tensor *y;
        load_params(&P, "unet");
        nn_scope_begin();
        y = unet_resblock_forward(&m, fx_get(&fx, "unet.x"), fx_get(&fx, "unet.emb"));
        CHECK_FX(y, fx_get(&fx, "unet.y"), 1e-5, 1e-4, "unet: forward matches guided-diffusion's ResBlock");
        nn_scope_end(NULL);
    }
    nn_tensor_free(x); nn_tensor_free(emb); nn_tensor_free(x6);
    nn_params_zero_grad(&P); nn_params_zero_grad(&P2); nn_params_zero_grad(&P3);
    nn_params_free(&P); nn_params_free(&P2); nn_params_free(&P3);
}

/* ======================================================= 004 CMT decoder layer, DN mask + AQR bias */
typedef struct { cmt_decoder_layer *m; nn_tensor *dn_mask, *kpm; } cmt_ctx;
static nn_tensor *cmt_fn(void *c, nn_tensor **in) {
    cmt_ctx *d = (cmt_ctx *)c;
    return cmt_decoder_layer_forward(d->m, in[0], in[1], in[2], in[3], in[4], d->dn_mask, in[5], d->kpm);
}

static void test_cmt(void) {
    nn_params P = {NULL, 0, 0};
    cmt_decoder_layer m;
    cmt_ctx c;
    int64_t sq[3] = {2, 6, 16}, sk[3] = {2, 9, 16}, sb[3] = {2, 6, 9}, sd[2] = {6, 6}, sp[2] = {2, 9}, i, j;
    nn_tensor *q, *k, *v, *qp, *kp, *bias, *dn, *kpm, *in[9];
    cmt_decoder_layer_init(&m, &P, "", 16, 2, 32, 0.1, 0.1);
    CHECK(P.n == 18, "cmt: 18 parameter tensors (got %d)", P.n);
    param(&P, "attentions.0.attn.in_proj_weight"); param(&P, "attentions.1.attn.out_proj.weight");
    param(&P, "norms.2.bias"); param(&P, "ffns.0.layers.0.0.weight"); param(&P, "ffns.0.layers.1.bias");
    randomize(&P);
    q = leaf(3, sq, -1, 1); k = leaf(3, sk, -1, 1); v = leaf(3, sk, -1, 1);
    qp = leaf(3, sq, -0.5, 0.5); kp = leaf(3, sk, -0.5, 0.5); bias = leaf(3, sb, -1, 1);
    /* DN groups: queries 0-2 and 3-5 do not see each other (true = not allowed) */
    dn = nn_zeros(NN_BOOL, 2, sd);
    for (i = 0; i < 6; i++) for (j = 0; j < 6; j++) ((uint8_t *)dn->data)[i * 6 + j] = (i < 3) != (j < 3);
    /* batch 1: the last two keys are padding (true = ignore) */
    kpm = nn_zeros(NN_BOOL, 2, sp);
    ((uint8_t *)kpm->data)[9 + 7] = 1; ((uint8_t *)kpm->data)[9 + 8] = 1;
    c.m = &m; c.dn_mask = dn; c.kpm = kpm;
    in[0] = q; in[1] = k; in[2] = v; in[3] = qp; in[4] = kp; in[5] = bias;
    in[6] = m.cross_attn.in_proj_bias; in[7] = m.norms[1].weight; in[8] = m.fc1.bias;
    /* ReLU kinks: a smaller step keeps the probes from crossing them */
    gradcheck_tol("cmt decoder layer (DN mask, AQR bias, padding)", cmt_fn, &c, 9, in, 1e-3, 3e-3, 1e-2);
    {   /* the DN groups are independent; padded keys are ignored */
        nn_tensor *y0, *y1;
        float *qd = (float *)q->data, *kd = (float *)k->data, *vd = (float *)v->data;
        int64_t a, e;
        double d_other = 0, d_self = 0;
        nn_scope_begin();
        y0 = cmt_decoder_layer_forward(&m, q, k, v, qp, kp, dn, bias, kpm);
        for (a = 0; a < 2; a++) for (e = 0; e < 16; e++) qd[(a * 6 + 4) * 16 + e] += 1.0f;   /* query 4 of both batches */
        y1 = cmt_decoder_layer_forward(&m, q, k, v, qp, kp, dn, bias, kpm);
        for (a = 0; a < 2; a++) for (e = 0; e < 16; e++) qd[(a * 6 + 4) * 16 + e] -= 1.0f;
        for (a = 0; a < 2; a++) for (i = 0; i < 6; i++) for (e = 0; e < 16; e++) {
            double d = fabs(((float *)y0->data)[(a * 6 + i) * 16 + e] - ((float *)y1->data)[(a * 6 + i) * 16 + e]);
            if (i < 3) { if (d > d_other) d_other = d; } else if (d > d_self) d_self = d;
        }
        CHECK(d_other == 0 && d_self > 0, "cmt: a DN group does not see the other (%g, %g)", d_other, d_self);
        for (e = 0; e < 16; e++) { kd[(9 + 8) * 16 + e] += 3.0f; vd[(9 + 7) * 16 + e] -= 3.0f; }
        y1 = cmt_decoder_layer_forward(&m, q, k, v, qp, kp, dn, bias, kpm);
        for (e = 0; e < 16; e++) { kd[(9 + 8) * 16 + e] -= 3.0f; vd[(9 + 7) * 16 + e] += 3.0f; }
        CHECK(max_abs_diff(y0, y1) == 0, "cmt: padded keys do not change the output");
        nn_scope_end(NULL);
    }
    gradcheck_tol("cmt decoder layer (no masks, no pos)", cmt_fn, &c, 3, in, 1e-3, 3e-3, 1e-2);
    if (have_fx) {
        nn_tensor *y;
        load_params(&P, "cmt");
        nn_scope_begin();
        y = cmt_decoder_layer_forward(&m, fx_get(&fx, "cmt.q"), fx_get(&fx, "cmt.k"), fx_get(&fx, "cmt.v"),
                                      fx_get(&fx, "cmt.qp"), fx_get(&fx, "cmt.kp"), dn, fx_get(&fx, "cmt.bias"), kpm);
        CHECK_FX(y, fx_get(&fx, "cmt.y"), 1e-5, 1e-4, "cmt: forward matches the PyTorch/mmcv decoder layer");
        nn_scope_end(NULL);
    }
    nn_tensor_free(q); nn_tensor_free(k); nn_tensor_free(v); nn_tensor_free(qp); nn_tensor_free(kp);
    nn_tensor_free(bias); nn_tensor_free(dn); nn_tensor_free(kpm);
    nn_params_zero_grad(&P);
    nn_params_free(&P);
}

/* ================================================= training mode: dropout and drop-path paths run */
static int all_finite(nn_tensor *t) {
    int64_t i;
    if (!t) return 0;
    for (i = 0; i < t->numel; i++) if (!isfinite(((float *)t->data)[i])) return 0;
    return 1;
}

static void test_training_mode(void) {
    nn_params P = {NULL, 0, 0};
    vit_block v;
    mesh_attn ma;
    dit_block d;
    unet_resblock u;
    cmt_decoder_layer c;
    int64_t s3[3] = {2, 9, 16}, s2[2] = {9, 16}, sc[2] = {9, 1}, sco[2] = {2, 6}, s4[4] = {2, 8, 4, 4}, sm[2] = {2, 9};
    nn_tensor *x3, *x2, *conf, *cond, *x4, *valid, *y, *e;
    int prev = nn_set_training(1);
    vit_block_init(&v, &P, "vit", 16, 2, 32, 0.5, 0.2, 0.5);
    mesh_attn_init(&ma, &P, "mesh", 16, 2, 4, 0.2);
    mesh_attn_init_seed_weights(&ma);
    dit_block_init(&d, &P, "dit", 16, 2, 8, 6, 0.2, 0.2, 0.2);
    unet_resblock_init(&u, &P, "unet", 8, 6, 0.2, 8, 4, 0, 1, 1, 0);
    cmt_decoder_layer_init(&c, &P, "cmt", 16, 2, 32, 0.2, 0.2);
    randomize(&P);
    x3 = leaf(3, s3, -1, 1); x2 = leaf(2, s2, -1, 1); conf = leaf(2, sc, 0, 1); cond = leaf(2, sco, -1, 1);
    x4 = leaf(4, s4, -1, 1);
    valid = nn_ones(NN_F32, 2, sm);
    ((float *)valid->data)[17] = 0;
    nn_scope_begin();
    y = nn_sum_all(vit_block_forward(&v, x3));
    y = nn_add(y, nn_sum_all(mesh_attn_forward(&ma, x2, conf)));
    y = nn_add(y, nn_sum_all(dit_block_forward(&d, x3, cond, x3, valid, NULL, NULL)));
    e = nn_slice(cond, 1, 0, 6);
    {
        nn_tensor *yu = unet_resblock_forward(&u, x4, e);
        CHECK(yu->shape[2] == 8 && yu->shape[3] == 8, "unet: the up block doubles H and W");
        y = nn_add(y, nn_sum_all(yu));
    }
    y = nn_add(y, nn_sum_all(cmt_decoder_layer_forward(&c, x3, x3, x3, NULL, NULL, NULL, NULL, NULL)));
    nn_backward(y);
    CHECK(isfinite(nn_item(y)) && all_finite(x3->grad) && all_finite(x2->grad) && all_finite(conf->grad) &&
          all_finite(cond->grad) && all_finite(x4->grad), "training mode: all five blocks run forward and backward");
    nn_scope_end(NULL);
    nn_set_training(prev);
    nn_tensor_free(x3); nn_tensor_free(x2); nn_tensor_free(conf); nn_tensor_free(cond); nn_tensor_free(x4);
    nn_tensor_free(valid);
    nn_params_zero_grad(&P);
    nn_params_free(&P);
}

int main(void) {
    FILE *fp;
    nn_seed(2002);
    nn_set_training(0);
    fp = fopen("tests/fixtures/seed_blocks.txt", "r");
    if (fp) { fclose(fp); fx = fx_load("tests/fixtures/seed_blocks.txt"); have_fx = 1; }
    else printf("note: tests/fixtures/seed_blocks.txt not found; PyTorch comparisons skipped\n");
    test_vit();
    test_mesh_attn();
    test_dit();
    test_unet();
    test_cmt();
    test_training_mode();
    if (have_fx) fx_free(&fx);
    nn_shutdown();
    return test_summary();
}
