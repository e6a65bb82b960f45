/* models/cmt.h - the CMT / PETR transformer decoder layer of seed 004 (PETRTransformerDecoderLayer,
   an mmcv BaseTransformerLayer with operation_order ('self_attn', 'norm', 'cross_attn', 'norm', 'ffn',
   'norm'): post-norm), with the seed's AQR attention bias: a float [B, num_queries, num_keys] added to the
   cross-attention scores of every layer (expanded over the heads, passed as nn.MultiheadAttention's float
   attn_mask), beside the bool denoising (DN) mask of the self-attention (True = not allowed).

   state_dict names relative to the layer prefix (e.g. "pts_bbox_head.transformer.decoder.layers.0"), as
   mmcv / PETR:
       attentions.0.attn.in_proj_weight/in_proj_bias/out_proj.weight/out_proj.bias   self-attention
       attentions.1.attn.(same)                                                        cross-attention
       norms.0/1/2.weight/bias                    LayerNorm(embed_dims) (eps 1e-5)
       ffns.0.layers.0.0.weight/bias              Linear(embed_dims, feedforward_channels), ReLU, Dropout(ffn_drop)
       ffns.0.layers.1.weight/bias                Linear(feedforward_channels, embed_dims), Dropout(ffn_drop)
   forward (mmcv MultiheadAttention puts the residual inside; positions go to queries and keys, not values):
       q = norms.0(q + drop(self_attn(q + query_pos, q + query_pos, q, attn_mask = DN mask)))
       q = norms.1(q + drop(cross_attn(q + query_pos, key + key_pos, value, attn_mask = AQR bias, key_padding_mask)))
       q = norms.2(q + ffn(q))
   with CMT's config: embed_dims 256, 8 heads, feedforward_channels 1024, dropout 0.1 (attention
   probabilities and the residual branch) and ffn_dropout 0.1. Tensors are batch-first here: [B, L, E]
   (mmcv is sequence-first; the weights do not care). */
#ifndef NN_MODELS_CMT_H
#define NN_MODELS_CMT_H

#include "common.h"

typedef struct {
    int embed_dims, num_heads, ffn_channels;
    double dropout, ffn_dropout;
    nn_MultiheadAttention self_attn, cross_attn;   /* attentions.0.attn, attentions.1.attn */
    nn_LayerNorm norms[3];
    nn_Linear fc1, fc2;                            /* ffns.0.layers.0.0, ffns.0.layers.1 */
} cmt_decoder_layer;

NN_MODEL_FN void cmt_decoder_layer_init(cmt_decoder_layer *m, nn_params *P, const char *prefix, int embed_dims,
                                        int num_heads, int ffn_channels, double dropout, double ffn_dropout) {
    char buf[256];
    int i;
    m->embed_dims = embed_dims; m->num_heads = num_heads; m->ffn_channels = ffn_channels;
    m->dropout = dropout; m->ffn_dropout = ffn_dropout;
    nn_MultiheadAttention_init(&m->self_attn, P, nnm_name(buf, sizeof buf, prefix, "attentions.0.attn"), embed_dims,
                               num_heads, dropout, 0, 0);
    nn_MultiheadAttention_init(&m->cross_attn, P, nnm_name(buf, sizeof buf, prefix, "attentions.1.attn"), embed_dims,
                               num_heads, dropout, 0, 0);
    for (i = 0; i < 3; i++) {
        char nm[24];
        snprintf(nm, sizeof nm, "norms.%d", i);
        nn_LayerNorm_init(&m->norms[i], P, nnm_name(buf, sizeof buf, prefix, nm), embed_dims, 1e-5, 1);
    }
    nn_Linear_init(&m->fc1, P, nnm_name(buf, sizeof buf, prefix, "ffns.0.layers.0.0"), embed_dims, ffn_channels, 1);
    nn_Linear_init(&m->fc2, P, nnm_name(buf, sizeof buf, prefix, "ffns.0.layers.1"), ffn_channels, embed_dims, 1);
}

/* query [B, Nq, E]; key, value [B, Nk, E]; query_pos [B, Nq, E] / key_pos [B, Nk, E] or NULL;
   self_attn_mask: bool/u8 [Nq, Nq] (or broadcastable to [B, H, Nq, Nq]), true = not allowed, or NULL;
   attention_bias: f32 [B, Nq, Nk] added to the cross-attention scores of every head, or NULL;
   key_padding_mask: bool/u8 [B, Nk], true = ignore that key, or NULL.  -> [B, Nq, E] */
NN_MODEL_FN nn_tensor *cmt_decoder_layer_forward(const cmt_decoder_layer *m, nn_tensor *query, nn_tensor *key,
                                                 nn_tensor *value, nn_tensor *query_pos, nn_tensor *key_pos,
                                                 nn_tensor *self_attn_mask, nn_tensor *attention_bias,
                                                 nn_tensor *key_padding_mask) {
    nn_tensor *q, *k, *a, *bias = NULL, *h;
    char s1[64], s2[64];
    if (!query || !key || query->ndim != 3 || key->ndim != 3 || query->shape[2] != m->embed_dims ||
        key->shape[2] != m->embed_dims || key->shape[0] != query->shape[0])
        nn_error("cmt_decoder_layer_forward: expected query [B, Nq, %d] and key [B, Nk, %d], got %s and %s", m->embed_dims,
                 m->embed_dims, query ? nn_shape_str(query, s1, sizeof s1) : "(null)", key ? nn_shape_str(key, s2, sizeof s2) : "(null)");
    if (!value) value = key;
    nn_scope_begin();
    /* self-attention among the queries (DN groups kept apart by the bool mask) */
    q = query_pos ? nn_add(query, query_pos) : query;
    a = nn_MultiheadAttention_forward(&m->self_attn, q, q, query, NULL, self_attn_mask);
    query = nn_LayerNorm_forward(&m->norms[0], nn_add(query, nnm_dropout(a, m->dropout)));
    /* cross-attention to the BEV + camera tokens, AQR bias added to the scores */
    q = query_pos ? nn_add(query, query_pos) : query;
    k = key_pos ? nn_add(key, key_pos) : key;
    if (attention_bias) {
        int64_t s[4];
        if (attention_bias->ndim != 3 || attention_bias->shape[0] != query->shape[0] ||
            attention_bias->shape[1] != query->shape[1] || attention_bias->shape[2] != key->shape[1])
            nn_error("cmt_decoder_layer_forward: attention_bias must be [B, Nq, Nk] = [%lld, %lld, %lld], got %s",
                     (long long)query->shape[0], (long long)query->shape[1], (long long)key->shape[1],
                     nn_shape_str(attention_bias, s1, sizeof s1));
        s[0] = attention_bias->shape[0]; s[1] = 1; s[2] = attention_bias->shape[1]; s[3] = attention_bias->shape[2];
        bias = nn_reshape(attention_bias, 4, s);   /* the same bias for every head */
    }
    a = nn_MultiheadAttention_forward(&m->cross_attn, q, k, value, key_padding_mask, bias);
    query = nn_LayerNorm_forward(&m->norms[1], nn_add(query, nnm_dropout(a, m->dropout)));
    /* FFN: Linear -> ReLU -> Dropout -> Linear -> Dropout, identity added */
    h = nnm_dropout(nn_relu(nn_Linear_forward(&m->fc1, query)), m->ffn_dropout);
    h = nnm_dropout(nn_Linear_forward(&m->fc2, h), m->ffn_dropout);
    query = nn_LayerNorm_forward(&m->norms[2], nn_add(query, h));
    return nn_scope_end(query);
}

#endif
