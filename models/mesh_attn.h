/* models/mesh_attn.h - seed 000's HierarchicalAttention layer (section 2.2.3 of the seed): per-face
   features of a 40,000+-face mesh, a confidence gate, chunked local attention, global attention of
   every face to the top-k-confidence faces, and a 2x FFN.

   state_dict names, relative to the layer's prefix (e.g. "layers.0"), as the seed's nn.Module:
       local_attention.in_proj_weight/in_proj_bias/out_proj.weight/out_proj.bias   nn.MultiheadAttention(E, H, dropout=0.1)
       global_attention.(same)
       confidence_gate.0.weight/bias     nn.Sequential(nn.Linear(1, E), nn.Sigmoid())
       norm1/norm2/norm3.weight/bias     nn.LayerNorm(E) (eps 1e-5)
       ffn.0.weight/bias, ffn.3.weight/bias   nn.Sequential(Linear(E, 2E), GELU, Dropout(0.1), Linear(2E, E))
   forward(x [N, E], confidence [N, 1]) — the seed's layer works on one mesh, unbatched:
       x = norm1(x + x * sigmoid(confidence_gate(confidence)))
       N > chunk_size: local = cat(local_attention(c, c, c) for c in split(x, chunk_size))   (last chunk may be short)
       else:           local = local_attention(x, x, x)
       x = norm2(x + local)
       N > chunk_size: reps = x[topk(confidence.squeeze(), min(chunk_size, N)).indices]; glob = global_attention(x, reps, reps)
       else:           glob = global_attention(x, x, x)
       x = norm3(x + glob)
       x = x + ffn(x)
   The top-k selection itself carries no gradient (as in PyTorch); x reaches the representatives through
   index_select. Full chunks run as one batched attention call, the short last chunk as another. */
#ifndef NN_MODELS_MESH_ATTN_H
#define NN_MODELS_MESH_ATTN_H

#include "common.h"

typedef struct {
    int embed_dim, num_heads, chunk_size;
    double dropout;
    nn_MultiheadAttention local_attention, global_attention;
    nn_Linear confidence_gate;          /* confidence_gate.0 */
    nn_LayerNorm norm1, norm2, norm3;
    nn_Linear ffn0, ffn3;               /* ffn.0, ffn.3 */
} mesh_attn;

/* the seed's HierarchicalAttention(embed_dim=128, num_heads=8, chunk_size=1024) with dropout 0.1
   (pass `dropout` to change the attention and FFN dropout together) */
NN_MODEL_FN void mesh_attn_init(mesh_attn *m, nn_params *P, const char *prefix, int embed_dim, int num_heads,
                                int chunk_size, double dropout) {
    char buf[256];
    if (chunk_size <= 0) nn_error("mesh_attn_init(%s): chunk_size must be positive, got %d", prefix, chunk_size);
    m->embed_dim = embed_dim; m->num_heads = num_heads; m->chunk_size = chunk_size; m->dropout = dropout;
    nn_MultiheadAttention_init(&m->local_attention, P, nnm_name(buf, sizeof buf, prefix, "local_attention"), embed_dim,
                               num_heads, dropout, 0, 0);
    nn_MultiheadAttention_init(&m->global_attention, P, nnm_name(buf, sizeof buf, prefix, "global_attention"), embed_dim,
                               num_heads, dropout, 0, 0);
    nn_Linear_init(&m->confidence_gate, P, nnm_name(buf, sizeof buf, prefix, "confidence_gate.0"), 1, embed_dim, 1);
    nn_LayerNorm_init(&m->norm1, P, nnm_name(buf, sizeof buf, prefix, "norm1"), embed_dim, 1e-5, 1);
    nn_LayerNorm_init(&m->norm2, P, nnm_name(buf, sizeof buf, prefix, "norm2"), embed_dim, 1e-5, 1);
    nn_LayerNorm_init(&m->norm3, P, nnm_name(buf, sizeof buf, prefix, "norm3"), embed_dim, 1e-5, 1);
    nn_Linear_init(&m->ffn0, P, nnm_name(buf, sizeof buf, prefix, "ffn.0"), embed_dim, 2 * embed_dim, 1);
    nn_Linear_init(&m->ffn3, P, nnm_name(buf, sizeof buf, prefix, "ffn.3"), 2 * embed_dim, embed_dim, 1);
}

/* MemoryEfficientSOTAModel._init_weights applied to this layer: every nn.Linear weight (the gate, both
   out_proj and the FFN; not in_proj_weight, a bare Parameter) ~ trunc_normal_(std=0.02) on [-2, 2],
   Linear biases 0, LayerNorms 1/0 (already so). */
NN_MODEL_FN void mesh_attn_init_seed_weights(mesh_attn *m) {
    nn_Linear *lin[5];
    int i;
    lin[0] = &m->confidence_gate; lin[1] = &m->local_attention.out_proj; lin[2] = &m->global_attention.out_proj;
    lin[3] = &m->ffn0; lin[4] = &m->ffn3;
    for (i = 0; i < 5; i++) {
        nn_init_trunc_normal_(lin[i]->weight, 0.0, 0.02, -2.0, 2.0);
        if (lin[i]->bias) nn_fill_(lin[i]->bias, 0.0);
    }
}

/* unbatched nn.MultiheadAttention (batch_first, 2-D inputs): q [Lq, E], kv [Lk, E] -> [Lq, E] */
NN_MODEL_FN nn_tensor *mesh__attend(const nn_MultiheadAttention *a, nn_tensor *q, nn_tensor *kv) {
    int64_t sq[3], sk[3];
    nn_tensor *o;
    nn_scope_begin();
    sq[0] = 1; sq[1] = q->shape[0]; sq[2] = q->shape[1];
    sk[0] = 1; sk[1] = kv->shape[0]; sk[2] = kv->shape[1];
    q = nn_reshape(q, 3, sq);
    kv = nn_reshape(kv, 3, sk);
    o = nn_MultiheadAttention_forward(a, q, kv, kv, NULL, NULL);
    return nn_scope_end(nn_reshape(o, 2, sq + 1));
}

/* torch.split(x, chunk_size) -> local_attention per chunk -> cat; x [N, E] with N > chunk_size */
NN_MODEL_FN nn_tensor *mesh__chunked_local(const mesh_attn *m, nn_tensor *x) {
    int64_t N = x->shape[0], E = x->shape[1], cs = m->chunk_size, nfull = N / cs, rem = N % cs, s[3];
    nn_tensor *parts[2], *o;
    int np = 0;
    nn_scope_begin();
    if (nfull > 0) {   /* the full chunks are independent sequences: one batched call */
        nn_tensor *xf = nn_slice(x, 0, 0, nfull * cs);
        s[0] = nfull; s[1] = cs; s[2] = E;
        xf = nn_reshape(xf, 3, s);
        o = nn_MultiheadAttention_forward(&m->local_attention, xf, xf, xf, NULL, NULL);
        s[0] = nfull * cs; s[1] = E;
        parts[np++] = nn_reshape(o, 2, s);
    }
    if (rem > 0) {     /* the short last chunk */
        nn_tensor *xl = nn_slice(x, 0, nfull * cs, N);
        parts[np++] = mesh__attend(&m->local_attention, xl, xl);
    }
    return nn_scope_end(np == 1 ? parts[0] : nn_concat(np, parts, 0));
}

/* x [N, E], confidence [N, 1] -> [N, E] */
NN_MODEL_FN nn_tensor *mesh_attn_forward(const mesh_attn *m, nn_tensor *x, nn_tensor *confidence) {
    int64_t N;
    nn_tensor *gate, *local, *glob, *h;
    char s1[64], s2[64];
    if (!x || !confidence || x->ndim != 2 || x->shape[1] != m->embed_dim || confidence->ndim != 2 ||
        confidence->shape[0] != x->shape[0] || confidence->shape[1] != 1)
        nn_error("mesh_attn_forward: expected x [N, %d] and confidence [N, 1], got %s and %s", m->embed_dim,
                 x ? nn_shape_str(x, s1, sizeof s1) : "(null)", confidence ? nn_shape_str(confidence, s2, sizeof s2) : "(null)");
    N = x->shape[0];
    nn_scope_begin();
    /* 1. confidence gate */
    gate = nn_sigmoid(nn_Linear_forward(&m->confidence_gate, confidence));
    x = nn_LayerNorm_forward(&m->norm1, nn_add(x, nn_mul(x, gate)));
    /* 2. chunked local attention */
    local = N > m->chunk_size ? mesh__chunked_local(m, x) : mesh__attend(&m->local_attention, x, x);
    x = nn_LayerNorm_forward(&m->norm2, nn_add(x, local));
    /* 3. global context from the top-k-confidence faces */
    if (N > m->chunk_size) {
        nn_tensor *idx = NULL, *reps;
        int64_t k = m->chunk_size < N ? m->chunk_size : N;
        nn_topk(nn_reshape(confidence, 1, &N), k, 0, 1, NULL, &idx);
        reps = nn_index_select(x, 0, idx);
        glob = mesh__attend(&m->global_attention, x, reps);
    } else glob = mesh__attend(&m->global_attention, x, x);
    x = nn_LayerNorm_forward(&m->norm3, nn_add(x, glob));
    /* 4. FFN: Linear -> GELU -> Dropout -> Linear, residual, no norm after */
    h = nnm_dropout(nn_gelu(nn_Linear_forward(&m->ffn0, x)), m->dropout);
    x = nn_add(x, nn_Linear_forward(&m->ffn3, h));
    return nn_scope_end(x);
}

#endif
