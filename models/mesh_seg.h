/* models/mesh_seg.h - seed 000's MemoryEfficientSOTAModel: per-face movable/fixed segmentation of a mesh
   from 458 features per face (PartField 448, confidence 1, three vertices 9).

       features [N, 458] -> CompactGroupedEmbedding (458 -> 128)
                         +  CompactFourPointGeometricEncoding (the 9 coordinates -> 128)
                         -> 4 x HierarchicalAttention (models/mesh_attn.h), gated by the confidence
                         -> classifier LayerNorm -> Linear(128, 64) -> GELU -> Dropout -> Linear(64, 2)

   state_dict names, as the seed's nn.Modules (nn.Sequential indices count GELU / Dropout too):
       embedding.partfield_proj.0 (Linear 448->192) .3 (Linear 192->96) .4 (LayerNorm 96)
       embedding.confidence_proj.0 (Linear 1->16) .2 (LayerNorm 16)
       embedding.coord_proj.0 (Linear 9->16) .2 (LayerNorm 16)
       embedding.fusion.0 (Linear 128->128) .1 (LayerNorm 128)      then GELU (norm before activation here)
       pos_encoding.point_encoder.0 (Linear 3->32) .2 (LayerNorm 32)
       pos_encoding.geometric_fusion.0 (Linear 128->128) .2 (LayerNorm 128)
       pos_encoding.shape_encoder.0 (Linear 4->16) .2 (LayerNorm 16)
       pos_encoding.final_fusion.0 (Linear 144->128) .2 (LayerNorm 128)
       layers.<i>.*   (see models/mesh_attn.h)
       classifier.0 (LayerNorm 128) .1 (Linear 128->64) .4 (Linear 64->2)
   Registration order equals PyTorch's state_dict order, so the registry lists like model.state_dict().

   Dropout, as the seed: 0.1 after the PartField projection's GELU, in both attentions (on the attention
   probabilities) and the FFN of every layer (HierarchicalAttention's constructor fixes 0.1), and the
   model's `dropout` argument in the classifier. Initialisation, as _init_weights: every nn.Linear weight
   (out_proj included, the bare in_proj_weight not: it keeps MultiheadAttention's xavier_uniform)
   ~ trunc_normal_(std 0.02, a=-2, b=2), Linear biases 0, LayerNorm weight 1 and bias 0.
   Gradient checkpointing (seed section 4, forward_with_checkpointing): each layer runs under
   nn_checkpoint when m->checkpointing is set; its activations are recomputed in backward. */
#ifndef NN_MODELS_MESH_SEG_H
#define NN_MODELS_MESH_SEG_H

#include "common.h"
#include "mesh_attn.h"

#define MESH_SEG_IN 458       /* partfield 448 + confidence 1 + vertices 9 */
#define MESH_SEG_PF 448
#define MESH_SEG_MAX_LAYERS 16

typedef struct {
    int embed_dim, num_layers, num_heads, chunk_size;
    double dropout;           /* the classifier's (the seed's `dropout` argument) */
    double layer_dropout;     /* attention + FFN dropout inside each layer: 0.1 in the seed */
    double embed_dropout;     /* after partfield_proj's GELU: 0.1 in the seed */
} mesh_seg_cfg;

/* MemoryEfficientSOTAModel()'s defaults: embed 128, 4 layers, 8 heads, chunks of 1024, dropout 0.1 */
NN_MODEL_FN mesh_seg_cfg mesh_seg_default(void) {
    mesh_seg_cfg c;
    c.embed_dim = 128; c.num_layers = 4; c.num_heads = 8; c.chunk_size = 1024;
    c.dropout = 0.1; c.layer_dropout = 0.1; c.embed_dropout = 0.1;
    return c;
}

typedef struct {
    mesh_seg_cfg cfg;
    /* embedding (CompactGroupedEmbedding) */
    nn_Linear pf0, pf3;       nn_LayerNorm pf4;
    nn_Linear conf0;          nn_LayerNorm conf2;
    nn_Linear coord0;         nn_LayerNorm coord2;
    nn_Linear fusion0;        nn_LayerNorm fusion1;
    /* pos_encoding (CompactFourPointGeometricEncoding) */
    nn_Linear point0;         nn_LayerNorm point2;
    nn_Linear geo0;           nn_LayerNorm geo2;
    nn_Linear shape0;         nn_LayerNorm shape2;
    nn_Linear final0;         nn_LayerNorm final2;
    mesh_attn layers[MESH_SEG_MAX_LAYERS];
    nn_LayerNorm cls0;        nn_Linear cls1, cls4;
    int checkpointing;        /* run each layer under nn_checkpoint (training) */
} mesh_seg;

NN_MODEL_FN void mesh_seg__lin(nn_Linear *l, nn_params *P, const char *prefix, const char *name, int in, int out) {
    char buf[256];
    nn_Linear_init(l, P, nnm_name(buf, sizeof buf, prefix, name), in, out, 1);
    nn_init_trunc_normal_(l->weight, 0.0, 0.02, -2.0, 2.0);   /* _init_weights: trunc_normal_(std=0.02) */
    nn_fill_(l->bias, 0.0);
}

NN_MODEL_FN void mesh_seg__ln(nn_LayerNorm *n, nn_params *P, const char *prefix, const char *name, int dim) {
    char buf[256];
    nn_LayerNorm_init(n, P, nnm_name(buf, sizeof buf, prefix, name), dim, 1e-5, 1);   /* ones / zeros */
}

/* registers every parameter under "<prefix>.<state_dict name>" (prefix "" for the bare names) */
NN_MODEL_FN void mesh_seg_init(mesh_seg *m, nn_params *P, const char *prefix, mesh_seg_cfg c) {
    char lp[96];   /* short enough that mesh_attn_init's "<lp>.<name>" always fits its 256 bytes */
    int E = c.embed_dim, i;
    if (E != 128)   /* the seed asserts 96 + 16 + 16 == embed_dim and 4 x 32 == embed_dim */
        nn_error("mesh_seg_init: embed_dim must be 128 (96 + 16 + 16 and 4 x 32 in the seed), got %d", E);
    if (c.num_layers < 0 || c.num_layers > MESH_SEG_MAX_LAYERS)
        nn_error("mesh_seg_init: num_layers %d outside 0..%d", c.num_layers, MESH_SEG_MAX_LAYERS);
    memset(m, 0, sizeof *m);
    m->cfg = c;
    mesh_seg__lin(&m->pf0, P, prefix, "embedding.partfield_proj.0", MESH_SEG_PF, 192);
    mesh_seg__lin(&m->pf3, P, prefix, "embedding.partfield_proj.3", 192, 96);
    mesh_seg__ln(&m->pf4, P, prefix, "embedding.partfield_proj.4", 96);
    mesh_seg__lin(&m->conf0, P, prefix, "embedding.confidence_proj.0", 1, 16);
    mesh_seg__ln(&m->conf2, P, prefix, "embedding.confidence_proj.2", 16);
    mesh_seg__lin(&m->coord0, P, prefix, "embedding.coord_proj.0", 9, 16);
    mesh_seg__ln(&m->coord2, P, prefix, "embedding.coord_proj.2", 16);
    mesh_seg__lin(&m->fusion0, P, prefix, "embedding.fusion.0", E, E);
    mesh_seg__ln(&m->fusion1, P, prefix, "embedding.fusion.1", E);
    mesh_seg__lin(&m->point0, P, prefix, "pos_encoding.point_encoder.0", 3, 32);
    mesh_seg__ln(&m->point2, P, prefix, "pos_encoding.point_encoder.2", 32);
    mesh_seg__lin(&m->geo0, P, prefix, "pos_encoding.geometric_fusion.0", E, E);
    mesh_seg__ln(&m->geo2, P, prefix, "pos_encoding.geometric_fusion.2", E);
    mesh_seg__lin(&m->shape0, P, prefix, "pos_encoding.shape_encoder.0", 4, 16);
    mesh_seg__ln(&m->shape2, P, prefix, "pos_encoding.shape_encoder.2", 16);
    mesh_seg__lin(&m->final0, P, prefix, "pos_encoding.final_fusion.0", E + 16, E);
    mesh_seg__ln(&m->final2, P, prefix, "pos_encoding.final_fusion.2", E);
    for (i = 0; i < c.num_layers; i++) {
        if (prefix && *prefix) snprintf(lp, sizeof lp, "%.60s.layers.%d", prefix, i);
        else snprintf(lp, sizeof lp, "layers.%d", i);
        mesh_attn_init(&m->layers[i], P, lp, E, c.num_heads, c.chunk_size, c.layer_dropout);
        mesh_attn_init_seed_weights(&m->layers[i]);
    }
    mesh_seg__ln(&m->cls0, P, prefix, "classifier.0", E);
    mesh_seg__lin(&m->cls1, P, prefix, "classifier.1", E, 64);
    mesh_seg__lin(&m->cls4, P, prefix, "classifier.4", 64, 2);
}

/* Linear -> GELU -> LayerNorm, the seed's small projection pattern (intermediates released as they are used
   up, as in models/mesh_attn.h: what backward needs the tape keeps) */
NN_MODEL_FN nn_tensor *mesh_seg__lin_gelu_ln(const nn_Linear *l, const nn_LayerNorm *n, nn_tensor *x) {
    nn_tensor *a = nn_Linear_forward(l, x), *b = nn_gelu(a), *y;
    nn_tensor_free(a);
    y = nn_LayerNorm_forward(n, b);
    nn_tensor_free(b);
    return y;
}

/* CompactGroupedEmbedding: partfield [N,448], confidence [N,1], coordinates [N,9] -> [N,128] */
NN_MODEL_FN nn_tensor *mesh_seg_embedding(const mesh_seg *m, nn_tensor *pf, nn_tensor *conf, nn_tensor *coord) {
    nn_tensor *parts[3], *h;
    nn_tensor *a, *b;
    nn_scope_begin();
    a = nn_Linear_forward(&m->pf0, pf);
    b = nn_gelu(a);
    mesh__drop(a, NULL);
    h = nnm_dropout(b, m->cfg.embed_dropout);
    mesh__drop(b, h);
    a = nn_Linear_forward(&m->pf3, h);
    mesh__drop(h, NULL);
    parts[0] = nn_LayerNorm_forward(&m->pf4, a);
    mesh__drop(a, NULL);
    parts[1] = mesh_seg__lin_gelu_ln(&m->conf0, &m->conf2, conf);
    parts[2] = mesh_seg__lin_gelu_ln(&m->coord0, &m->coord2, coord);
    h = nn_concat(3, parts, -1);
    mesh__drop(parts[0], NULL); mesh__drop(parts[1], NULL); mesh__drop(parts[2], NULL);
    a = nn_Linear_forward(&m->fusion0, h);
    mesh__drop(h, NULL);
    b = nn_LayerNorm_forward(&m->fusion1, a);
    mesh__drop(a, NULL);
    h = nn_gelu(b);
    mesh__drop(b, NULL);
    return nn_scope_end(h);
}

/* CompactFourPointGeometricEncoding: coordinates [N,9] -> [N,128]. The seed encodes the three vertices
   and the centroid one at a time with the shared point_encoder and concatenates; encoding the [N*4, 3]
   stack at once and reshaping to [N, 128] is the same arithmetic. */
NN_MODEL_FN nn_tensor *mesh_seg_pos_encoding(const mesh_seg *m, nn_tensor *coord) {
    int64_t N = coord->shape[0], s3[3], s2[2];
    nn_tensor *verts, *four[2], *pts, *geo, *v[3], *e1, *e2, *cr, *nrm, *area, *normal, *sh[2], *cat[2];
    nn_scope_begin();
    s3[0] = N; s3[1] = 3; s3[2] = 3;
    verts = nn_reshape(coord, 3, s3);                                  /* (N, 3, 3) */
    four[0] = verts;
    four[1] = nn_mean(verts, 1, 1);                                    /* centroid (N, 1, 3) */
    pts = nn_concat(2, four, 1);                                       /* (N, 4, 3) */
    s2[0] = N * 4; s2[1] = 3;
    pts = mesh_seg__lin_gelu_ln(&m->point0, &m->point2, nn_reshape(pts, 2, s2));   /* (N*4, 32) */
    s2[0] = N; s2[1] = 4 * 32;
    {
        nn_tensor *r = nn_reshape(pts, 2, s2);
        nn_tensor_free(pts);
        geo = mesh_seg__lin_gelu_ln(&m->geo0, &m->geo2, r);                           /* (N, 128) */
        nn_tensor_free(r);
    }
    /* area and unit normal from the cross product of the edges v2-v1, v3-v1 */
    v[0] = nn_slice(coord, 1, 0, 3); v[1] = nn_slice(coord, 1, 3, 6); v[2] = nn_slice(coord, 1, 6, 9);
    e1 = nn_sub(v[1], v[0]);
    e2 = nn_sub(v[2], v[0]);
    cr = nn_cross(e1, e2, -1);
    nrm = nn_norm(cr, -1, 1);
    area = nn_mul_scalar(nrm, 0.5);
    normal = nn_div(cr, nn_add_scalar(nrm, 1e-8));
    sh[0] = area; sh[1] = normal;
    cat[0] = geo;
    cat[1] = mesh_seg__lin_gelu_ln(&m->shape0, &m->shape2, nn_concat(2, sh, -1));  /* (N, 16) */
    return nn_scope_end(mesh_seg__lin_gelu_ln(&m->final0, &m->final2, nn_concat(2, cat, -1)));
}

/* the checkpointed body of one layer: in = {x, confidence[, reps]} (the plan's top-k indices ride as an input so
   that they live until backward recomputes the layer), out = {x'} */
NN_MODEL_FN void mesh_seg__layer_fn(void *ctx, nn_tensor **in, nn_tensor **out) {
    const mesh_attn *l = (const mesh_attn *)ctx;
    int64_t N = in[0]->shape[0];
    mesh_attn_plan p;
    p.reps = N > l->chunk_size ? in[2] : NULL;
    out[0] = mesh_attn_forward_plan(l, in[0], in[1], &p);
}

/* features [N, 458] -> logits [N, 2] */
NN_MODEL_FN nn_tensor *mesh_seg_forward(const mesh_seg *m, nn_tensor *features) {
    nn_tensor *pf, *conf, *coord, *x;
    mesh_attn_plan plan;
    int i;
    char s[64];
    if (!features || features->ndim != 2 || features->shape[1] != MESH_SEG_IN || features->shape[0] < 1)
        nn_error("mesh_seg_forward: expected features [N, %d] with N >= 1, got %s", MESH_SEG_IN,
                 features ? nn_shape_str(features, s, sizeof s) : "(null)");
    nn_scope_begin();
    pf = nn_slice(features, 1, 0, MESH_SEG_PF);   /* a copy (columns): released once embedded */
    conf = nn_slice(features, 1, MESH_SEG_PF, MESH_SEG_PF + 1);
    coord = nn_slice(features, 1, MESH_SEG_PF + 1, MESH_SEG_IN);
    {
        nn_tensor *e = mesh_seg_embedding(m, pf, conf, coord), *p;
        nn_tensor_free(pf);
        p = mesh_seg_pos_encoding(m, coord);
        x = nn_add(e, p);
        nn_tensor_free(e);
        nn_tensor_free(p);
    }
    /* every layer has the model's chunk size and the same confidence: one plan (the top-k) for all */
    plan = mesh_attn_plan_make(m->cfg.chunk_size, conf);
    for (i = 0; i < m->cfg.num_layers; i++) {
        if (m->checkpointing && nn_grad_enabled()) {
            nn_tensor *in[3], *out[1];
            int n_in = 2;
            in[0] = x; in[1] = conf;
            if (plan.reps) in[n_in++] = plan.reps;
            nn_checkpoint(mesh_seg__layer_fn, (void *)&m->layers[i], n_in, in, 1, out);
            nn_tensor_free(x);   /* the checkpoint keeps its input */
            x = out[0];
        } else {
            nn_tensor *y = mesh_attn_forward_plan(&m->layers[i], x, conf, &plan);
            nn_tensor_free(x);
            x = y;
        }
    }
    x = nn_gelu(nn_Linear_forward(&m->cls1, nn_LayerNorm_forward(&m->cls0, x)));
    x = nn_Linear_forward(&m->cls4, nnm_dropout(x, m->cfg.dropout));
    return nn_scope_end(x);
}

#endif
