/* models/dit.h - seed 002's DiT block in its adaLN-Zero mode: self-attention among the grasp tokens,
   cross-attention to the padded scene point-cloud tokens under the scene mask, optional cross-attention
   to text tokens, and a feed-forward network, each sub-layer pre-normalised and modulated by a condition
   vector (timestep + scene + text) and gated, with the modulation zero-initialised (DiT, Peebles & Xie
   2023, "adaLN-Zero").

   The seed names the pieces (DiTBlock with self_attention / scene_cross_attention / text_cross_attention
   built from EfficientAttention in dit_memory_optimization.py, scene_mask 1 = valid, 0 = padding, attention
   dropout on the probabilities). The layout below follows that project's DiTBlock with use_adaln_zero=True,
   so its state_dict names are, relative to the block prefix (e.g. "dit_blocks.0"):
       adaln_zero_stack.modulation.weight/bias    Linear(cond_dim, 4 * 3 * d_model), zeros
                                                  (adaln_zero_stack.layer_norms.0..3: LayerNorm without affine)
       self_attention.to_q/to_k/to_v.weight       Linear(d_model, heads * d_head, bias=False)
       self_attention.to_out.0.weight/bias        Linear(heads * d_head, d_model) (to_out.1 = Dropout)
       scene_cross_attention.(same), text_cross_attention.(same)
       feed_forward.net.0.weight/bias             Linear(d_model, 4 d_model), GELU, Dropout
       feed_forward.net.3.weight/bias             Linear(4 d_model, d_model), Dropout
   Modulation: params = modulation(cond).view(B, 4, 3, d_model); for sub-layer i, scale = params[:, i, 0],
   shift = params[:, i, 1], gate = params[:, i, 2] (this order: scale first) and
       x_mod_i = LayerNorm_i(x) * (1 + scale) + shift;   x = x + gate * sublayer_i(x_mod_i)
   with sub-layers 0 self-attention, 1 scene cross-attention (keys/values = scene tokens, mask), 2 text
   cross-attention, 3 feed-forward; 1 and 2 are skipped when their context is absent.

   The scene mask: keys whose mask is 0 get no attention (nn_key_padding_mask). Note: the seed's SDPA path
   converts the mask with `attn_mask = (mask == 0)` and hands it to F.scaled_dot_product_attention, whose
   boolean convention is True = take part, so that path attends to the padding only; the seed's stated
   intent (and its non-SDPA paths) mask the padding, which is what this block does. */
#ifndef NN_MODELS_DIT_H
#define NN_MODELS_DIT_H

#include "common.h"

/* EfficientAttention(d_model, num_heads, d_head, dropout, attention_dropout) */
typedef struct {
    int d_model, heads, d_head;
    double dropout, attn_dropout;
    nn_Linear to_q, to_k, to_v, to_out;   /* to_out = to_out.0 */
} dit_attention;

NN_MODEL_FN void dit_attention_init(dit_attention *a, nn_params *P, const char *prefix, int d_model, int heads, int d_head,
                                    double dropout, double attn_dropout) {
    char buf[256], sub[256];
    int inner = heads * d_head;
    if (heads <= 0 || d_head <= 0) nn_error("dit_attention_init(%s): bad heads %d / d_head %d", prefix, heads, d_head);
    a->d_model = d_model; a->heads = heads; a->d_head = d_head; a->dropout = dropout; a->attn_dropout = attn_dropout;
    nn_Linear_init(&a->to_q, P, nnm_name(buf, sizeof buf, prefix, "to_q"), d_model, inner, 0);
    nn_Linear_init(&a->to_k, P, nnm_name(buf, sizeof buf, prefix, "to_k"), d_model, inner, 0);
    nn_Linear_init(&a->to_v, P, nnm_name(buf, sizeof buf, prefix, "to_v"), d_model, inner, 0);
    nn_Linear_init(&a->to_out, P, nnm_name(buf, sizeof buf, nnm_name(sub, sizeof sub, prefix, "to_out"), "0"), inner, d_model, 1);
}

/* query [B, Lq, d_model], key/value [B, Lk, d_model] (value NULL: = key; key NULL: = query);
   valid [B, Lk] or [B, 1, Lk] (1 = valid key, 0 = padding) or NULL; bias: float added to the scores,
   broadcastable to [B, heads, Lq, Lk], or NULL. -> [B, Lq, d_model] */
NN_MODEL_FN nn_tensor *dit_attention_forward(const dit_attention *a, nn_tensor *query, nn_tensor *key, nn_tensor *value,
                                             nn_tensor *valid, nn_tensor *bias) {
    nn_tensor *q, *k, *v, *o;
    nn_sdpa_opts opts;
    if (!key) key = query;
    if (!value) value = key;
    nn_scope_begin();
    q = nn_Linear_forward(&a->to_q, query);   /* [B, L, inner]: nn_sdpa_heads splits the heads in place */
    k = nn_Linear_forward(&a->to_k, key);
    v = nn_Linear_forward(&a->to_v, value);
    memset(&opts, 0, sizeof opts);
    if (valid) {
        if (valid->ndim == 3 && valid->shape[1] == 1) {
            int64_t s[2];
            s[0] = valid->shape[0]; s[1] = valid->shape[2];
            valid = nn_reshape(valid, 2, s);
        }
        if (valid->ndim != 2 || valid->shape[0] != key->shape[0] || valid->shape[1] != key->shape[1])
            nn_error("dit_attention_forward: the mask must be [B, Lk] = [%lld, %lld]", (long long)key->shape[0],
                     (long long)key->shape[1]);
        opts.mask = nn_key_padding_mask(valid);
    }
    opts.bias = bias;
    opts.dropout_p = nn_training() ? a->attn_dropout : 0.0;
    o = nn_sdpa_heads(q, k, v, a->heads, &opts);
    return nn_scope_end(nnm_dropout(nn_Linear_forward(&a->to_out, o), a->dropout));
}

typedef struct {
    int d_model, cond_dim;
    double dropout;
    nn_Linear modulation;                 /* adaln_zero_stack.modulation */
    dit_attention self_attention, scene_cross_attention, text_cross_attention;
    nn_Linear ff0, ff3;                   /* feed_forward.net.0, feed_forward.net.3 */
} dit_block;

/* DiTBlock(d_model, num_heads, d_head, dropout, use_adaln_zero=True, cond_dim, attention_dropout,
   cross_attention_dropout) */
NN_MODEL_FN void dit_block_init(dit_block *m, nn_params *P, const char *prefix, int d_model, int heads, int d_head,
                                int cond_dim, double dropout, double attention_dropout, double cross_attention_dropout) {
    char buf[256];
    m->d_model = d_model; m->cond_dim = cond_dim; m->dropout = dropout;
    nn_Linear_init(&m->modulation, P, nnm_name(buf, sizeof buf, prefix, "adaln_zero_stack.modulation"), cond_dim,
                   4 * 3 * d_model, 1);
    nn_fill_(m->modulation.weight, 0.0);   /* adaLN-Zero: every block starts as the identity */
    nn_fill_(m->modulation.bias, 0.0);
    dit_attention_init(&m->self_attention, P, nnm_name(buf, sizeof buf, prefix, "self_attention"), d_model, heads, d_head,
                       dropout, attention_dropout);
    dit_attention_init(&m->scene_cross_attention, P, nnm_name(buf, sizeof buf, prefix, "scene_cross_attention"), d_model,
                       heads, d_head, dropout, cross_attention_dropout);
    dit_attention_init(&m->text_cross_attention, P, nnm_name(buf, sizeof buf, prefix, "text_cross_attention"), d_model,
                       heads, d_head, dropout, cross_attention_dropout);
    nn_Linear_init(&m->ff0, P, nnm_name(buf, sizeof buf, prefix, "feed_forward.net.0"), d_model, 4 * d_model, 1);
    nn_Linear_init(&m->ff3, P, nnm_name(buf, sizeof buf, prefix, "feed_forward.net.3"), 4 * d_model, d_model, 1);
}

/* _AdaLNZeroContext.apply(i, x): returns x_mod, sets *gate ([B, 1, d_model]); params [B, 12, d_model] */
NN_MODEL_FN nn_tensor *dit__apply(nn_tensor *params, int i, nn_tensor *x, nn_tensor **gate) {
    nn_tensor *scale = nn_slice(params, 1, 3 * i + 0, 3 * i + 1);
    nn_tensor *shift = nn_slice(params, 1, 3 * i + 1, 3 * i + 2);
    *gate = nn_slice(params, 1, 3 * i + 2, 3 * i + 3);
    return nn_add(nn_mul(nn_layer_norm(x, NULL, NULL, 1e-5), nn_add_scalar(scale, 1.0)), shift);
}

/* x [B, G, d_model] grasp tokens; cond [B, cond_dim]; scene [B, N, d_model] or NULL with scene_mask
   [B, N] (1 = valid) or NULL; text [B, T, d_model] or NULL with text_mask [B, T] or NULL. */
NN_MODEL_FN nn_tensor *dit_block_forward(const dit_block *m, nn_tensor *x, nn_tensor *cond, nn_tensor *scene,
                                         nn_tensor *scene_mask, nn_tensor *text, nn_tensor *text_mask) {
    nn_tensor *params, *xm, *gate, *h;
    int64_t s[3];
    char s1[64], s2[64];
    if (!x || !cond || x->ndim != 3 || x->shape[2] != m->d_model || cond->ndim != 2 || cond->shape[0] != x->shape[0] ||
        cond->shape[1] != m->cond_dim)
        nn_error("dit_block_forward: expected x [B, G, %d] and cond [B, %d], got %s and %s", m->d_model, m->cond_dim,
                 x ? nn_shape_str(x, s1, sizeof s1) : "(null)", cond ? nn_shape_str(cond, s2, sizeof s2) : "(null)");
    nn_scope_begin();
    s[0] = x->shape[0]; s[1] = 12; s[2] = m->d_model;
    params = nn_reshape(nn_Linear_forward(&m->modulation, cond), 3, s);
    xm = dit__apply(params, 0, x, &gate);
    x = nn_add(x, nn_mul(gate, dit_attention_forward(&m->self_attention, xm, NULL, NULL, NULL, NULL)));
    if (scene) {
        xm = dit__apply(params, 1, x, &gate);
        x = nn_add(x, nn_mul(gate, dit_attention_forward(&m->scene_cross_attention, xm, scene, scene, scene_mask, NULL)));
    }
    if (text) {
        xm = dit__apply(params, 2, x, &gate);
        x = nn_add(x, nn_mul(gate, dit_attention_forward(&m->text_cross_attention, xm, text, text, text_mask, NULL)));
    }
    xm = dit__apply(params, 3, x, &gate);
    h = nnm_dropout(nn_gelu(nn_Linear_forward(&m->ff0, xm)), m->dropout);
    h = nnm_dropout(nn_Linear_forward(&m->ff3, h), m->dropout);
    x = nn_add(x, nn_mul(gate, h));
    return nn_scope_end(x);
}

#endif
