/* models/part_location.h - seed 001's Part Location network: where does a part go in the whole model?

       whole, part  [B, 3, S, S]  --shared DINOv2 encoder (models/dinov2.h, checkpointed layers)-->
       tokens [B, 1 + g*g, D] each: CLS + a g x g patch grid (g = S / 14; 73 at 1024 px)
       patch grid -> AdaptiveAvgPool2d(downsample_size) -> [B, ds*ds, D]          (req. 2.4: 73^2 -> 32^2)
       cross-attention layers: part tokens are the queries, whole tokens keys/values (req. 2.5), nn_sdpa;
       the CLS token leads each sequence ([CLS_part, pooled part patches] attend to [CLS_whole, pooled
       whole patches]), so the part's summary itself looks up where it matches in the whole
       head: MLP over [fused CLS_part, CLS_whole, mean of the fused part patches] -> 4 = translation[3] + scale[1]

   One cross-attention layer (pre-norm, like the encoder's layers), names under "cross_attn.N":
       q = norm_q(p), kv = norm_kv(w)
       p = p + out_proj(sdpa(q_proj(q), k_proj(kv), v_proj(kv)))       heads = encoder heads
       p = p + mlp(norm_mlp(p))                                        fc1 -> GELU -> fc2, 4x hidden
   The head: "head.norm" LayerNorm(3D), "head.fc1" 3D -> mlp_hidden, GELU, "head.fc2" mlp_hidden -> 4.

   Loss (req. 3): L = w_trans * mean|t - t*| + w_scale * mean|s - s*| (L1, mean over batch and components). */
#ifndef NN_MODELS_PART_LOCATION_H
#define NN_MODELS_PART_LOCATION_H

#include "dinov2.h"

typedef struct {
    dinov2_config encoder;
    int cross_attention_layers;
    int mlp_hidden_dim;         /* the head's hidden width */
    int downsample_size;        /* patch grid pooled to ds x ds before cross-attention */
    double xattn_qk_gain;       /* 0: q_proj and k_proj drawn independently (nn_Linear's default init).
                                   g > 0: k_proj starts as a copy of q_proj, both times g (see partloc_init) */
} partloc_config;

typedef struct {
    nn_LayerNorm norm_q, norm_kv, norm_mlp;
    nn_Linear q_proj, k_proj, v_proj, out_proj;
    nn_MLP mlp;
} partloc_xattn;

typedef struct {
    partloc_config c;
    dinov2 encoder;
    partloc_xattn *xattn;
    nn_LayerNorm head_norm;
    nn_MLP head;
} partloc;

NN_MODEL_FN void partloc_init(partloc *m, nn_params *P, const partloc_config *c) {
    char buf[128], lp[64];
    int i, D = c->encoder.hidden;
    if (c->cross_attention_layers < 0 || c->mlp_hidden_dim <= 0 || c->downsample_size <= 0)
        nn_error("partloc_init: bad config (cross_attention_layers %d, mlp_hidden_dim %d, downsample_size %d)",
                 c->cross_attention_layers, c->mlp_hidden_dim, c->downsample_size);
    memset(m, 0, sizeof *m);
    m->c = *c;
    dinov2_init(&m->encoder, P, "encoder", &c->encoder);
    m->xattn = (partloc_xattn *)calloc((size_t)(c->cross_attention_layers + 1), sizeof *m->xattn);
    if (!m->xattn) nn_error("partloc_init: out of memory");
    for (i = 0; i < c->cross_attention_layers; i++) {
        partloc_xattn *x = &m->xattn[i];
        snprintf(lp, sizeof lp, "cross_attn.%d", i);
        nn_LayerNorm_init(&x->norm_q, P, nnm_name(buf, sizeof buf, lp, "norm_q"), D, 1e-6, 1);
        nn_LayerNorm_init(&x->norm_kv, P, nnm_name(buf, sizeof buf, lp, "norm_kv"), D, 1e-6, 1);
        nn_Linear_init(&x->q_proj, P, nnm_name(buf, sizeof buf, lp, "q_proj"), D, D, 1);
        nn_Linear_init(&x->k_proj, P, nnm_name(buf, sizeof buf, lp, "k_proj"), D, D, 1);
        nn_Linear_init(&x->v_proj, P, nnm_name(buf, sizeof buf, lp, "v_proj"), D, D, 1);
        nn_Linear_init(&x->out_proj, P, nnm_name(buf, sizeof buf, lp, "out_proj"), D, D, 1);
        nn_LayerNorm_init(&x->norm_mlp, P, nnm_name(buf, sizeof buf, lp, "norm_mlp"), D, 1e-6, 1);
        nn_MLP_init(&x->mlp, P, nnm_name(buf, sizeof buf, lp, "mlp"), D, 4 * D, D, NN_ACT_GELU, 0.0);
        /* A "matching" start: with k_proj = q_proj = g W the attention logit of part token p and whole token w
           is g^2 (W p).(W w) / sqrt(d): a similarity search, so a part token attends from step 0 to whole
           tokens that look like it (its colour). With independent q/k the logits start as noise around 0 and
           the correspondence is found only after a long plateau (measured in samples/part_location/README.md). */
        if (c->xattn_qk_gain > 0) {   /* at init the weights are f32 on the CPU */
            float *wq = nn_f32_data(x->q_proj.weight);
            int64_t j;
            for (j = 0; j < x->q_proj.weight->numel; j++) wq[j] *= (float)c->xattn_qk_gain;
            nn_copy_(x->k_proj.weight, x->q_proj.weight);
        }
    }
    nn_LayerNorm_init(&m->head_norm, P, "head.norm", 3 * D, 1e-6, 1);
    nn_MLP_init(&m->head, P, "head", 3 * D, c->mlp_hidden_dim, 4, NN_ACT_GELU, 0.0);
}

NN_MODEL_FN void partloc_free(partloc *m) {
    dinov2_free(&m->encoder);
    free(m->xattn);
    m->xattn = NULL;
}

NN_MODEL_FN nn_tensor *partloc__xattn_forward(const partloc *m, const partloc_xattn *x, nn_tensor *p, nn_tensor *w) {
    int H = m->c.encoder.heads;
    nn_tensor *q, *k, *v, *kv, *o;
    nn_sdpa_opts opts;
    nn_scope_begin();
    memset(&opts, 0, sizeof opts);
    kv = nn_LayerNorm_forward(&x->norm_kv, w);
    q = nn_Linear_forward(&x->q_proj, nn_LayerNorm_forward(&x->norm_q, p));
    k = nn_Linear_forward(&x->k_proj, kv);
    v = nn_Linear_forward(&x->v_proj, kv);
    o = nn_sdpa_heads(q, k, v, H, &opts);
    p = nn_add(p, nn_Linear_forward(&x->out_proj, o));
    p = nn_add(p, nn_MLP_forward(&x->mlp, nn_LayerNorm_forward(&x->norm_mlp, p)));
    return nn_scope_end(p);
}

/* pixels -> the encoder's CLS token followed by its patch grid adaptive-average-pooled to ds x ds (a grid at
   most ds wide as it is): [B, 1 + min(g, ds)^2, D]. The grid is permuted to [B, D, g, g] for the pool, a copy
   here (torch pools a strided view), so each full-size tensor is freed as soon as the next one exists: at most
   two of them live at once, and none outlives the call (the memory peak of the step is at the end of its
   forward). */
NN_MODEL_FN nn_tensor *partloc__tokens(const partloc *m, nn_tensor *pixels) {
    nn_tensor *t, *cls, *grid, *view, *x, *seq[2];
    int64_t B, D, n, g, s[4];
    int perm[4] = {0, 3, 1, 2}, ds = m->c.downsample_size;
    nn_scope_begin();
    t = dinov2_forward(&m->encoder, pixels);                                    /* [B, 1 + g*g, D] */
    B = t->shape[0]; D = t->shape[2]; n = t->shape[1] - 1; g = (int64_t)floor(sqrt((double)n) + 0.5);
    if (g * g != n) nn_error("partloc: %lld patch tokens are not a square grid", (long long)n);
    cls = nn_slice(t, 1, 0, 1);                                                 /* [B, 1, D] */
    grid = nn_slice(t, 1, 1, 1 + n);
    nn_tensor_free(t);
    s[0] = B; s[1] = g; s[2] = g; s[3] = D;
    view = nn_reshape(grid, 4, s);
    x = nn_permute(view, perm);                                                 /* [B, D, g, g] */
    nn_tensor_free(view);
    nn_tensor_free(grid);
    /* a grid at most ds wide is kept as it is (a part image read at a lower resolution than the whole) */
    if (g > ds) x = nn_adaptive_avg_pool2d(x, ds, ds);                          /* [B, D, ds, ds] */
    seq[0] = cls;
    seq[1] = nn_transpose(nn_flatten(x, 2, 3), 1, 2);                           /* [B, min(g, ds)^2, D] */
    return nn_scope_end(nn_concat(2, seq, 1));
}

/* whole, part [B, 3, S, S] (normalised) -> [B, 4] = translation[3], scale */
NN_MODEL_FN nn_tensor *partloc_forward(const partloc *m, nn_tensor *whole, nn_tensor *part) {
    nn_tensor *pw, *pp, *feat[3];
    int64_t B = whole->shape[0], s2[2];
    int i;
    nn_scope_begin();
    pw = partloc__tokens(m, whole);
    pp = partloc__tokens(m, part);
    for (i = 0; i < m->c.cross_attention_layers; i++) pp = partloc__xattn_forward(m, &m->xattn[i], pp, pw);
    s2[0] = B; s2[1] = m->c.encoder.hidden;
    feat[0] = nn_reshape(nn_slice(pp, 1, 0, 1), 2, s2);
    feat[1] = nn_reshape(nn_slice(pw, 1, 0, 1), 2, s2);     /* the whole image's CLS token */
    feat[2] = nn_mean(nn_slice(pp, 1, 1, pp->shape[1]), 1, 0);
    return nn_scope_end(nn_MLP_forward(&m->head, nn_LayerNorm_forward(&m->head_norm, nn_concat(3, feat, 1))));
}

/* pred, target [B, 4] -> the weighted L1 loss; the parts (means) go to *l_trans / *l_scale if not NULL */
NN_MODEL_FN nn_tensor *partloc_loss(nn_tensor *pred, nn_tensor *target, double w_trans, double w_scale,
                                    double *l_trans, double *l_scale) {
    nn_tensor *lt, *ls, *out;
    nn_scope_begin();
    lt = nn_l1_loss(nn_slice(pred, 1, 0, 3), nn_slice(target, 1, 0, 3));
    ls = nn_l1_loss(nn_slice(pred, 1, 3, 4), nn_slice(target, 1, 3, 4));
    if (l_trans) *l_trans = nn_item(lt);
    if (l_scale) *l_scale = nn_item(ls);
    out = nn_add(nn_mul_scalar(lt, w_trans), nn_mul_scalar(ls, w_scale));
    return nn_scope_end(out);
}

#endif
