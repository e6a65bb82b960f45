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

   How it runs. PyTorch loops over the chunks, one small attention each. Here the whole chunks are one sequence
   each of a batch [N / chunk, chunk, E] (a view of x), so their local attention is one nn_sdpa call; the short
   last chunk, if any, is a second call of its own. No padding and no key mask: a masked call would read the
   mask for every score (at 40,000 faces that made the local attention 1.5x the cost of the unmasked global one)
   and run the kernels' general path. The global attention is one call of every face against the
   representatives. The top-k indices depend only on N, the chunk size and the confidence, which every layer
   shares: mesh_attn_plan_make computes them once per forward (the top-k selection carries no gradient, as in
   PyTorch; x reaches the representatives through index_select). */
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

/* what the layers of one forward share (tensors of the caller's scope, on the confidence's device) */
typedef struct {
    nn_tensor *reps;   /* i64 [chunk_size]: the top-k-confidence faces; NULL when N <= chunk_size */
} mesh_attn_plan;

/* the seed's HierarchicalAttention(embed_dim=128, num_heads=8, chunk_size=1024) with dropout 0.1
   (pass `dropout` to change the attention and FFN dropout together) */
NN_MODEL_FN void mesh_attn_init(mesh_attn *m, nn_params *P, const char *prefix, int embed_dim, int num_heads,
                                int chunk_size, double dropout) {
    char buf[256];
    if (chunk_size <= 0) nn_error("mesh_attn_init(%s): chunk_size must be positive, got %d", prefix, chunk_size);
    if (num_heads <= 0 || embed_dim % num_heads)
        nn_error("mesh_attn_init(%s): num_heads %d must divide embed_dim %d", prefix, num_heads, embed_dim);
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

/* Intermediates are released as soon as they are used up (nn_tensor_free drops the scope's ownership; what the
   tape saved for backward stays alive through its own reference). A scope would otherwise hold every
   intermediate of the layer until the layer returns: at 200,000 faces that is gigabytes, in no-grad and
   checkpointed forwards too. `keep` guards the ops that may return their input (dropout off). */
NN_MODEL_FN void mesh__drop(nn_tensor *t, const nn_tensor *keep) {
    if (t && t != keep) nn_tensor_free(t);
}

/* the top-k representatives for N faces (confidence [N, 1]) */
NN_MODEL_FN mesh_attn_plan mesh_attn_plan_make(int chunk_size, nn_tensor *confidence) {
    mesh_attn_plan p;
    int64_t N = confidence->shape[0];
    p.reps = NULL;
    if (N <= chunk_size) return p;
    nn_topk(nn_reshape(nn_detach(confidence), 1, &N), chunk_size, 0, 1, NULL, &p.reps);   /* k = min(chunk_size, N) */
    return p;
}

/* nn.MultiheadAttention(batch_first) on q_in [B, Lq, E] against kv_in [B, Lk, E] -> [B, Lq, E]: the
   module's own parameters and arithmetic (q/k/v projections from in_proj, nn_sdpa with dropout on the
   probabilities in training, out_proj) */
NN_MODEL_FN nn_tensor *mesh__mha(const nn_MultiheadAttention *a, nn_tensor *q_in, nn_tensor *kv_in) {
    int64_t E = a->embed_dim;
    nn_tensor *w, *b, *q, *k, *v, *o;
    nn_sdpa_opts opts;
    nn_tensor *in = q_in;
    nn_scope_begin();
    w = a->in_proj_weight; b = a->in_proj_bias;
    if (q_in == kv_in) q_in = kv_in = nn_autocast_shared(q_in);   /* self-attention: one cast for q, k, v */
    q = nn_linear(q_in, nn_slice(w, 0, 0, E), nn_slice(b, 0, 0, E));   /* [B, L, E]: heads split in place */
    k = nn_linear(kv_in, nn_slice(w, 0, E, 2 * E), nn_slice(b, 0, E, 2 * E));
    v = nn_linear(kv_in, nn_slice(w, 0, 2 * E, 3 * E), nn_slice(b, 0, 2 * E, 3 * E));
    memset(&opts, 0, sizeof opts);
    opts.dropout_p = nn_training() ? a->dropout : 0.0;
    o = nn_sdpa_heads(q, k, v, a->num_heads, &opts);                   /* [B, Lq, E] */
    nn_tensor_free(q); nn_tensor_free(k); nn_tensor_free(v);
    if (q_in != in) nn_tensor_free(q_in);
    return nn_scope_end(nn_Linear_forward(&a->out_proj, o));
}

/* unbatched attention: q [Lq, E], kv [Lk, E] -> [Lq, E] */
NN_MODEL_FN nn_tensor *mesh__attend(const nn_MultiheadAttention *a, nn_tensor *q, nn_tensor *kv) {
    int64_t sq[3], sk[3];
    nn_tensor *o, *q3;
    nn_scope_begin();
    sq[0] = 1; sq[1] = q->shape[0]; sq[2] = q->shape[1];
    sk[0] = 1; sk[1] = kv->shape[0]; sk[2] = kv->shape[1];
    q3 = nn_reshape(q, 3, sq);
    o = mesh__mha(a, q3, kv == q ? q3 : nn_reshape(kv, 3, sk));
    return nn_scope_end(nn_reshape(o, 2, sq + 1));
}

/* torch.split(x, chunk_size) -> local_attention per chunk -> cat: the whole chunks as one batch
   [N / chunk_size, chunk_size, E], the short last chunk as a batch of one; x [N, E] with N > chunk_size */
NN_MODEL_FN nn_tensor *mesh__chunked_local(const mesh_attn *m, nn_tensor *x) {
    int64_t N = x->shape[0], E = x->shape[1], cs = m->chunk_size, nfull = N / cs, s[3], ranges[2][2];
    nn_tensor *part[2];
    int n = 0, r;
    nn_scope_begin();
    ranges[0][0] = 0; ranges[0][1] = nfull * cs;        /* the whole chunks */
    ranges[1][0] = nfull * cs; ranges[1][1] = N;        /* the short last chunk (may be empty) */
    for (r = 0; r < 2; r++) {
        int64_t a = ranges[r][0], b = ranges[r][1];
        nn_tensor *xs, *x3, *o;
        if (b == a) continue;
        xs = b - a == N ? x : nn_slice(x, 0, a, b);      /* rows of x: a view */
        s[0] = r ? 1 : nfull; s[1] = r ? b - a : cs; s[2] = E;
        x3 = nn_reshape(xs, 3, s);
        o = mesh__mha(&m->local_attention, x3, x3);
        nn_tensor_free(x3);
        if (xs != x) nn_tensor_free(xs);
        s[0] = b - a; s[1] = E;
        part[n++] = nn_reshape(o, 2, s);
        nn_tensor_free(o);
    }
    if (n == 1) return nn_scope_end(part[0]);
    return nn_scope_end(nn_concat(2, part, 0));
}

/* x [N, E], confidence [N, 1], plan from mesh_attn_plan_make(m->chunk_size, confidence) -> [N, E] */
NN_MODEL_FN nn_tensor *mesh_attn_forward_plan(const mesh_attn *m, nn_tensor *x, nn_tensor *confidence,
                                              const mesh_attn_plan *plan) {
    int64_t N;
    nn_tensor *gate, *local, *glob, *h, *t;
    char s1[64], s2[64];
    if (!x || !confidence || x->ndim != 2 || x->shape[1] != m->embed_dim || confidence->ndim != 2 ||
        confidence->shape[0] != x->shape[0] || confidence->shape[1] != 1)
        nn_error("mesh_attn_forward: expected x [N, %d] and confidence [N, 1], got %s and %s", m->embed_dim,
                 x ? nn_shape_str(x, s1, sizeof s1) : "(null)", confidence ? nn_shape_str(confidence, s2, sizeof s2) : "(null)");
    N = x->shape[0];
    if ((N > m->chunk_size) != (plan->reps != NULL) || (plan->reps && plan->reps->shape[0] != m->chunk_size))
        nn_error("mesh_attn_forward: the plan was made for another N or chunk size (N %lld, chunk %d)", (long long)N,
                 m->chunk_size);
    nn_scope_begin();
    /* 1. confidence gate */
    gate = nn_sigmoid(h = nn_Linear_forward(&m->confidence_gate, confidence));
    mesh__drop(h, NULL);
    h = nn_mul(x, gate);
    mesh__drop(gate, NULL);
    t = nn_add(x, h);
    mesh__drop(h, NULL);
    x = nn_LayerNorm_forward(&m->norm1, t);
    mesh__drop(t, NULL);
    /* 2. chunked local attention */
    local = N > m->chunk_size ? mesh__chunked_local(m, x) : mesh__attend(&m->local_attention, x, x);
    t = nn_add(x, local);
    mesh__drop(local, NULL);
    mesh__drop(x, NULL);
    x = nn_LayerNorm_forward(&m->norm2, t);
    mesh__drop(t, NULL);
    /* 3. global context from the top-k-confidence faces */
    if (N > m->chunk_size) {
        nn_tensor *reps = nn_index_select(x, 0, plan->reps);
        glob = mesh__attend(&m->global_attention, x, reps);
        mesh__drop(reps, NULL);
    } else glob = mesh__attend(&m->global_attention, x, x);
    t = nn_add(x, glob);
    mesh__drop(glob, NULL);
    mesh__drop(x, NULL);
    x = nn_LayerNorm_forward(&m->norm3, t);
    mesh__drop(t, NULL);
    /* 4. FFN: Linear -> GELU -> Dropout -> Linear, residual, no norm after */
    h = nn_Linear_forward(&m->ffn0, x);
    t = nn_gelu(h);
    mesh__drop(h, NULL);
    h = nnm_dropout(t, m->dropout);
    mesh__drop(t, h);
    t = nn_Linear_forward(&m->ffn3, h);
    mesh__drop(h, NULL);
    h = nn_add(x, t);
    mesh__drop(t, NULL);
    mesh__drop(x, NULL);
    return nn_scope_end(h);
}

/* x [N, E], confidence [N, 1] -> [N, E] (one layer alone: makes its own plan) */
NN_MODEL_FN nn_tensor *mesh_attn_forward(const mesh_attn *m, nn_tensor *x, nn_tensor *confidence) {
    mesh_attn_plan p;
    nn_tensor *y;
    if (!confidence || confidence->ndim != 2 || confidence->shape[1] != 1)
        nn_error("mesh_attn_forward: confidence must be [N, 1]");
    nn_scope_begin();
    p = mesh_attn_plan_make(m->chunk_size, confidence);
    y = mesh_attn_forward_plan(m, x, confidence, &p);
    return nn_scope_end(y);
}

#endif
