/* models/vit.h - the DINOv2 ViT encoder layer with LayerScale (seed 001: Part Location encodes the whole
   and the part image with a shared DINOv2 ViT-B/14 encoder, gradient-checkpointed, at 1024x1024).

   Seed 001 loads facebook/dinov2-* weights, so this block follows HuggingFace transformers'
   Dinov2Layer (modeling_dinov2.py) and its state_dict names, relative to the layer's prefix
   (e.g. "encoder.layer.0"):
       norm1.weight/bias                               LayerNorm(hidden, eps=layer_norm_eps=1e-6)
       attention.attention.query/key/value.weight/bias Linear(hidden, hidden) each (qkv_bias=True)
       attention.output.dense.weight/bias              Linear(hidden, hidden)
       layer_scale1.lambda1                            [hidden], layerscale_value (1.0 in the config)
       norm2.weight/bias
       mlp.fc1.weight/bias, mlp.fc2.weight/bias        Dinov2MLP: fc1 -> GELU (exact, hidden_act="gelu") -> fc2
       layer_scale2.lambda1
   forward (Dinov2Layer.forward, pre-norm):
       x = x + drop_path(layer_scale1 * attention(norm1(x)))
       x = x + drop_path(layer_scale2 * mlp(norm2(x)))
   Attention is multi-head SDPA (scale 1/sqrt(head_dim), attention_probs_dropout_prob on the
   probabilities, 0.0 in DINOv2's config); drop_path_rate is 0.0 in the released configs and only acts
   in training. The SwiGLU FFN of dinov2-giant (use_swiglu_ffn) is not provided. */
#ifndef NN_MODELS_VIT_H
#define NN_MODELS_VIT_H

#include "common.h"

typedef struct {
    int hidden, heads;
    double attn_dropout;    /* attention_probs_dropout_prob */
    double drop_path;       /* drop_path_rate for this layer */
    nn_LayerNorm norm1, norm2;
    nn_Linear query, key, value, dense;
    nn_tensor *lambda1, *lambda2;   /* layer_scale1.lambda1, layer_scale2.lambda1 */
    nn_MLP mlp;
} vit_block;

/* hidden: hidden_size; heads: num_attention_heads; mlp_hidden: int(hidden * mlp_ratio);
   layerscale: layerscale_value (1.0 in DINOv2's config; the trained weights overwrite it). */
NN_MODEL_FN void vit_block_init(vit_block *m, nn_params *P, const char *prefix, int hidden, int heads, int mlp_hidden,
                                double layerscale, double attn_dropout, double drop_path) {
    char buf[256];
    int64_t s = hidden;
    if (heads <= 0 || hidden % heads) nn_error("vit_block_init(%s): hidden %d not divisible by %d heads", prefix, hidden, heads);
    m->hidden = hidden; m->heads = heads; m->attn_dropout = attn_dropout; m->drop_path = drop_path;
    nn_LayerNorm_init(&m->norm1, P, nnm_name(buf, sizeof buf, prefix, "norm1"), hidden, 1e-6, 1);
    nn_Linear_init(&m->query, P, nnm_name(buf, sizeof buf, prefix, "attention.attention.query"), hidden, hidden, 1);
    nn_Linear_init(&m->key, P, nnm_name(buf, sizeof buf, prefix, "attention.attention.key"), hidden, hidden, 1);
    nn_Linear_init(&m->value, P, nnm_name(buf, sizeof buf, prefix, "attention.attention.value"), hidden, hidden, 1);
    nn_Linear_init(&m->dense, P, nnm_name(buf, sizeof buf, prefix, "attention.output.dense"), hidden, hidden, 1);
    /* like every init, call it outside any scope: parameters belong to the registry */
    m->lambda1 = nn_full(NN_F32, 1, &s, layerscale);
    m->lambda2 = nn_full(NN_F32, 1, &s, layerscale);
    nn_requires_grad(m->lambda1, 1);
    nn_requires_grad(m->lambda2, 1);
    nn_params_add(P, nnm_name(buf, sizeof buf, prefix, "layer_scale1.lambda1"), m->lambda1);
    nn_LayerNorm_init(&m->norm2, P, nnm_name(buf, sizeof buf, prefix, "norm2"), hidden, 1e-6, 1);
    nn_MLP_init(&m->mlp, P, nnm_name(buf, sizeof buf, prefix, "mlp"), hidden, mlp_hidden, hidden, NN_ACT_GELU, 0.0);
    nn_params_add(P, nnm_name(buf, sizeof buf, prefix, "layer_scale2.lambda1"), m->lambda2);
}

/* Dinov2Attention: x [B, L, hidden] -> [B, L, hidden] */
NN_MODEL_FN nn_tensor *vit_attention_forward(const vit_block *m, nn_tensor *x) {
    nn_tensor *q, *k, *v, *o;
    nn_sdpa_opts opts;
    nn_scope_begin();
    x = nn_autocast_shared(x);             /* one bf16/f16 copy for the three projections */
    q = nn_Linear_forward(&m->query, x);   /* [B, L, hidden]: nn_sdpa_heads splits the heads in place */
    k = nn_Linear_forward(&m->key, x);
    v = nn_Linear_forward(&m->value, x);
    memset(&opts, 0, sizeof opts);
    opts.dropout_p = nn_training() ? m->attn_dropout : 0.0;
    o = nn_sdpa_heads(q, k, v, m->heads, &opts);
    /* Dinov2SelfOutput: dense, then hidden_dropout_prob (0.0 in the config) */
    return nn_scope_end(nn_Linear_forward(&m->dense, o));
}

/* a norm whose output only feeds linear layers (q, k, v; fc1): under autocast on a device it writes autocast's
   dtype itself, the values those layers would cast it to, without the f32 output and the cast's pass over it
   (elsewhere an f32 layer norm, as before) */
NN_MODEL_FN nn_tensor *vit__norm_for_linear(const nn_LayerNorm *n, nn_tensor *x) {
    return nn_layer_norm_to(x, n->weight, n->bias, n->eps, nn_autocast_shared_dtype(x->device));
}

/* x + drop_path(h * lambda): one pass (nn_addcmul) unless drop_path acts (training with p > 0), whose per-sample
   mask scales the product on its own */
NN_MODEL_FN nn_tensor *vit__residual(const vit_block *m, nn_tensor *x, nn_tensor *h, nn_tensor *lambda) {
    if (m->drop_path > 0 && nn_training()) return nn_add(x, nnm_drop_path(nn_mul(h, lambda), m->drop_path));
    return nn_addcmul(x, h, lambda);
}

/* Dinov2Layer.forward: x [B, L, hidden] (CLS + register + patch tokens) -> [B, L, hidden] */
NN_MODEL_FN nn_tensor *vit_block_forward(const vit_block *m, nn_tensor *x) {
    nn_tensor *h;
    char sb[64];
    if (!x || x->ndim != 3 || x->shape[2] != m->hidden)
        nn_error("vit_block_forward: x must be [B, L, %d], got %s", m->hidden, x ? nn_shape_str(x, sb, sizeof sb) : "(null)");
    /* each residual branch in a scope of its own: its transients (the normed input, the branch output) die
       before the next branch runs, as torch frees them; under checkpointing the forward keeps nothing else, so
       this is the step's peak */
    nn_scope_begin();
    nn_scope_begin();
    h = vit_attention_forward(m, vit__norm_for_linear(&m->norm1, x));
    x = nn_scope_end(vit__residual(m, x, h, m->lambda1));
    nn_scope_begin();
    h = nn_MLP_forward(&m->mlp, vit__norm_for_linear(&m->norm2, x));
    x = nn_scope_end(vit__residual(m, x, h, m->lambda2));
    return nn_scope_end(x);
}

/* the same layer under gradient checkpointing (seed 001 turns it on for every encoder layer): the
   forward keeps no activations, backward recomputes the layer */
NN_MODEL_FN void vit__ckpt_fn(void *ctx, nn_tensor **in, nn_tensor **out) {
    out[0] = vit_block_forward((const vit_block *)ctx, in[0]);
}
NN_MODEL_FN nn_tensor *vit_block_forward_checkpointed(const vit_block *m, nn_tensor *x) {
    nn_tensor *out[1];
    nn_checkpoint(vit__ckpt_fn, (void *)m, 1, &x, 1, out);
    return out[0];
}

#endif
