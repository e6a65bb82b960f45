/* models/dinov2.h - the DINOv2 ViT encoder (Oquab et al., "DINOv2: Learning Robust Visual Features without
   Supervision", 2023) as Hugging Face transformers' Dinov2Model, so facebook/dinov2-{small,base,large}
   safetensors load by name and give the same last_hidden_state.

   Dinov2Model.forward (transformers/models/dinov2/modeling_dinov2.py):
       x   = projection(pixels)                 Conv2d(3, hidden, 14, stride 14) -> [B, hidden, h, w]
       x   = x.flatten(2).transpose(1, 2)       [B, h*w, hidden], h = H // 14, w = W // 14
       x   = cat(cls_token, x) + interpolate_pos_encoding(x, H, W)
       x   = encoder.layer[0..L)(x)             Dinov2Layer: pre-norm, LayerScale (models/vit.h)
       out = layernorm(x)                       last_hidden_state [B, 1 + h*w, hidden]
   Names (relative to the prefix, "" for a plain Dinov2Model file):
       embeddings.cls_token [1,1,D]   embeddings.mask_token [1,D] (iBOT masking; loaded, unused here)
       embeddings.position_embeddings [1, 1 + G*G, D]      G = image_size / patch_size (37 for the hub's 518)
       embeddings.patch_embeddings.projection.weight [D,3,14,14] / .bias
       encoder.layer.N.*  (models/vit.h)     layernorm.weight / .bias (eps = layer_norm_eps = 1e-6)

   Position embeddings at another resolution (Dinov2Embeddings.interpolate_pos_encoding): the G x G grid
   is resized to (H // 14, W // 14) with F.interpolate(mode="bicubic", align_corners=False) in f32,
   except when the token count already matches and H == W (then used as is). Two rules exist:
     DINOV2_INTERP_SIZE   size=(H // 14, W // 14): transformers since the rewrite of late 2024 (4.4x, 5.x)
                          and facebookresearch/dinov2 with interpolate_offset = 0.
     DINOV2_INTERP_SCALE  scale_factor=((H//14 + 0.1) / G, (W//14 + 0.1) / G): older transformers and the
                          original dinov2 hub models (interpolate_offset = 0.1, "historical kludge",
                          facebookresearch/dino#8). torch then takes the output size as
                          floor(G * factor) and maps coordinates with 1/factor instead of in/out.
   torch's bicubic (aten/src/ATen/native/UpSample.h): Keys' cubic convolution with A = -0.75; for output
   index i, src = scale * (i + 0.5) - 0.5 (not clamped for cubic), x0 = min(floor(src), in - 1),
   t = clamp(src - x0, 0, 1), taps at x0-1 .. x0+2 clamped to the border, all in f32. The resize is linear,
   so here it is two small matrices (rows: output pixel, columns: input pixel, border taps folded in):
   pos' = A_h . pos . A_w^T, two matmuls, differentiable for fine-tuning. */
#ifndef NN_MODELS_DINOV2_H
#define NN_MODELS_DINOV2_H

#include <stdlib.h>
#include <math.h>
#include "vit.h"

typedef enum { DINOV2_INTERP_SIZE = 0, DINOV2_INTERP_SCALE = 1 } dinov2_interp;

typedef struct {
    int hidden, layers, heads, mlp_hidden;   /* hidden_size, num_hidden_layers, num_attention_heads,
                                                int(hidden_size * mlp_ratio) */
    int patch;                 /* patch_size (14) */
    int image_size;            /* config.image_size: the position grid is image_size / patch square */
    double layerscale;         /* layerscale_value (init only) */
    double eps;                /* layer_norm_eps */
    dinov2_interp interp;
} dinov2_config;

/* "vits14" / "vitb14" / "vitl14" (also "dinov2-small/base/large", "small", "base", "large"): the hub
   configs (image_size 518, patch 14, mlp_ratio 4, layerscale 1.0, eps 1e-6). Returns 0 if unknown. */
NN_MODEL_FN int dinov2_config_named(const char *name, dinov2_config *c) {
    const char *n = name ? name : "";
    if (strncmp(n, "facebook/", 9) == 0) n += 9;
    if (strncmp(n, "dinov2-", 7) == 0) n += 7;
    memset(c, 0, sizeof *c);
    c->patch = 14; c->image_size = 518; c->layerscale = 1.0; c->eps = 1e-6; c->interp = DINOV2_INTERP_SIZE;
    if (!strcmp(n, "vits14") || !strcmp(n, "small")) { c->hidden = 384; c->layers = 12; c->heads = 6; }
    else if (!strcmp(n, "vitb14") || !strcmp(n, "base")) { c->hidden = 768; c->layers = 12; c->heads = 12; }
    else if (!strcmp(n, "vitl14") || !strcmp(n, "large")) { c->hidden = 1024; c->layers = 24; c->heads = 16; }
    else return 0;
    c->mlp_hidden = 4 * c->hidden;
    return 1;
}

typedef struct {
    dinov2_config c;
    int grid;                       /* G */
    int checkpointing;              /* run every layer under nn_checkpoint (seed 001, req. 2.2) */
    nn_Conv2d projection;
    nn_tensor *cls_token, *mask_token, *position_embeddings;
    vit_block *layer;               /* c.layers of them */
    nn_LayerNorm layernorm;
} dinov2;

/* Registers the parameters under "<prefix>.<HF name>" and initialises them as Dinov2PreTrainedModel
   ._init_weights does (trunc_normal std 0.02 for projections and embeddings, mask token 0, LayerNorm 1/0,
   LayerScale layerscale_value). Call outside any scope. */
NN_MODEL_FN void dinov2_init(dinov2 *m, nn_params *P, const char *prefix, const dinov2_config *c) {
    char buf[256], lp[64], lq[128];
    int64_t s[3];
    int i, k;
    if (c->hidden <= 0 || c->layers <= 0 || c->heads <= 0 || c->patch <= 0 || c->image_size < c->patch)
        nn_error("dinov2_init(%s): bad config (hidden %d, layers %d, heads %d, patch %d, image_size %d)", prefix,
                 c->hidden, c->layers, c->heads, c->patch, c->image_size);
    memset(m, 0, sizeof *m);
    m->c = *c;
    m->grid = c->image_size / c->patch;
    s[0] = 1; s[1] = 1; s[2] = c->hidden;
    m->cls_token = nn_params_add(P, nnm_name(buf, sizeof buf, prefix, "embeddings.cls_token"), nn_zeros(NN_F32, 3, s));
    m->mask_token = nn_params_add(P, nnm_name(buf, sizeof buf, prefix, "embeddings.mask_token"), nn_zeros(NN_F32, 2, s + 1));
    s[1] = 1 + (int64_t)m->grid * m->grid;
    m->position_embeddings = nn_params_add(P, nnm_name(buf, sizeof buf, prefix, "embeddings.position_embeddings"),
                                           nn_zeros(NN_F32, 3, s));
    nn_init_trunc_normal_(m->cls_token, 0, 0.02, -2, 2);
    nn_init_trunc_normal_(m->position_embeddings, 0, 0.02, -2, 2);
    nn_requires_grad(m->cls_token, 1);
    nn_requires_grad(m->position_embeddings, 1);
    /* the mask token only serves iBOT pre-training: it is kept for the key names, without a gradient */
    nn_Conv2d_init(&m->projection, P, nnm_name(buf, sizeof buf, prefix, "embeddings.patch_embeddings.projection"),
                   3, c->hidden, c->patch, c->patch, 0, 1, 1, 1);
    nn_init_trunc_normal_(m->projection.weight, 0, 0.02, -2, 2);
    nn_fill_(m->projection.bias, 0);
    m->layer = (vit_block *)calloc((size_t)c->layers, sizeof *m->layer);
    if (!m->layer) nn_error("dinov2_init(%s): out of memory", prefix);
    for (i = 0; i < c->layers; i++) {
        vit_block *b = &m->layer[i];
        snprintf(lp, sizeof lp, "encoder.layer.%d", i);
        /* a short buffer for the layer's prefix keeps the names vit.h forms within its own 256 bytes */
        vit_block_init(b, P, nnm_name(lq, sizeof lq, prefix, lp), c->hidden, c->heads, c->mlp_hidden, c->layerscale,
                       0.0, 0.0);
        {
            nn_Linear *lin[6];
            lin[0] = &b->query; lin[1] = &b->key; lin[2] = &b->value; lin[3] = &b->dense;
            lin[4] = &b->mlp.fc1; lin[5] = &b->mlp.fc2;
            for (k = 0; k < 6; k++) { nn_init_trunc_normal_(lin[k]->weight, 0, 0.02, -2, 2); nn_fill_(lin[k]->bias, 0); }
        }
    }
    nn_LayerNorm_init(&m->layernorm, P, nnm_name(buf, sizeof buf, prefix, "layernorm"), c->hidden, c->eps, 1);
}

NN_MODEL_FN void dinov2_free(dinov2 *m) { free(m->layer); m->layer = NULL; }

/* torch's cubic convolution weights for fraction t (upsample_bicubic2d, A = -0.75) */
NN_MODEL_FN void dinov2__cubic_coeffs(float t, float w[4]) {
    const float A = -0.75f;
    float x;
    x = t + 1; w[0] = ((A * x - 5 * A) * x + 8 * A) * x - 4 * A;
    x = t;     w[1] = ((A + 2) * x - (A + 3)) * x * x + 1;
    x = 1 - t; w[2] = ((A + 2) * x - (A + 3)) * x * x + 1;
    x = 2 - t; w[3] = ((A * x - 5 * A) * x + 8 * A) * x - 4 * A;
}

/* The resize matrix of one axis: M[out][in] (row-major, zeroed here) such that y = M x is torch's
   1-D bicubic resize with coordinate scale `scale` (in/out for size=, 1/factor for scale_factor=). */
NN_MODEL_FN void dinov2_bicubic_matrix(float *M, int n_out, int n_in, float scale) {
    int i, j;
    memset(M, 0, sizeof(float) * (size_t)n_out * (size_t)n_in);
    for (i = 0; i < n_out; i++) {
        float src = scale * ((float)i + 0.5f) - 0.5f, t, w[4];
        int64_t x0 = (int64_t)floorf(src);
        if (x0 > n_in - 1) x0 = n_in - 1;
        t = src - (float)x0;
        t = t < 0 ? 0 : t > 1 ? 1 : t;
        dinov2__cubic_coeffs(t, w);
        for (j = 0; j < 4; j++) {
            int64_t x = x0 - 1 + j;
            x = x < 0 ? 0 : x > n_in - 1 ? n_in - 1 : x;
            M[(size_t)i * (size_t)n_in + (size_t)x] += w[j];
        }
    }
}

/* Output size and coordinate scale of one axis under the configured rule (see the header comment). */
NN_MODEL_FN void dinov2__interp_axis(const dinov2 *m, int n_new, int *n_out, float *scale) {
    int G = m->grid;
    if (m->c.interp == DINOV2_INTERP_SCALE) {
        double factor = ((double)n_new + 0.1) / sqrt((double)G * G);   /* float(h / math.sqrt(num_positions)) */
        *n_out = (int)floor((double)G * factor);                       /* upsample::compute_output_size */
        *scale = (float)(1.0 / factor);                                /* area_pixel_compute_scale */
    } else {
        *n_out = n_new;
        *scale = (float)G / (float)n_new;
    }
}

/* Dinov2Embeddings.interpolate_pos_encoding for an H x W input: [1, 1 + h*w, hidden] */
NN_MODEL_FN nn_tensor *dinov2_pos_embed(const dinov2 *m, int64_t H, int64_t W) {
    int G = m->grid, nh, nw;
    int64_t h = H / m->c.patch, w = W / m->c.patch, D = m->c.hidden, s[3];
    float sh, sw;
    nn_tensor *cls, *grid, *Ah, *Aw, *out, *parts[2];
    if (h * w == (int64_t)G * G && H == W) return m->position_embeddings;
    dinov2__interp_axis(m, (int)h, &nh, &sh);
    dinov2__interp_axis(m, (int)w, &nw, &sw);
    if ((int64_t)nh != h || (int64_t)nw != w)
        nn_error("dinov2_pos_embed: the scale_factor rule gives a %dx%d grid for %lldx%lld patches", nh, nw,
                 (long long)h, (long long)w);
    nn_scope_begin();
    /* in f32 whatever autocast is in force, as Dinov2Embeddings (it interpolates patch_pos_embed.float());
       a bf16 matmul here would also make a bf16 grid that cannot be concatenated with the f32 CLS row */
    nn_autocast_begin(NN_F32);
    s[0] = nh; s[1] = G;
    Ah = nn_empty(NN_F32, 2, s);
    dinov2_bicubic_matrix(nn_f32_data(Ah), nh, G, sh);
    s[0] = nw;
    Aw = nn_empty(NN_F32, 2, s);
    dinov2_bicubic_matrix(nn_f32_data(Aw), nw, G, sw);
    if (m->position_embeddings->device != NN_CPU) {   /* built on the host, used where the weights are */
        Ah = nn_to(Ah, m->position_embeddings->device);
        Aw = nn_to(Aw, m->position_embeddings->device);
    }
    cls = nn_slice(m->position_embeddings, 1, 0, 1);                       /* [1, 1, D] */
    s[0] = G; s[1] = (int64_t)G * D;
    grid = nn_reshape(nn_slice(m->position_embeddings, 1, 1, 1 + (int64_t)G * G), 2, s);  /* [G, G*D] rows y */
    grid = nn_matmul(Ah, grid);                                            /* [nh, G*D] */
    s[0] = nh; s[1] = G; s[2] = D;
    grid = nn_matmul(Aw, nn_reshape(grid, 3, s));                          /* [nh, nw, D] */
    s[0] = 1; s[1] = (int64_t)nh * nw; s[2] = D;
    parts[0] = cls;
    parts[1] = nn_reshape(grid, 3, s);
    out = nn_concat(2, parts, 1);
    nn_autocast_end();
    return nn_scope_end(out);
}

NN_MODEL_FN void dinov2__layer_fn(void *ctx, nn_tensor **in, nn_tensor **out) {
    out[0] = vit_block_forward((const vit_block *)ctx, in[0]);
}

/* pixels [B, 3, H, W] (ImageNet-normalised) -> last_hidden_state [B, 1 + (H/14)*(W/14), hidden]:
   token 0 is CLS, then the patches row by row. */
NN_MODEL_FN nn_tensor *dinov2_forward(const dinov2 *m, nn_tensor *pixels) {
    nn_tensor *x, *parts[2];
    int64_t s[3];
    int i;
    char sb[64];
    if (!pixels || pixels->ndim != 4 || pixels->shape[1] != 3 || pixels->shape[2] < m->c.patch ||
        pixels->shape[3] < m->c.patch)
        nn_error("dinov2_forward: pixels must be [B, 3, H, W] with H, W >= %d, got %s", m->c.patch,
                 pixels ? nn_shape_str(pixels, sb, sizeof sb) : "(null)");
    nn_scope_begin();
    nn_scope_begin();   /* the embedding's transients (conv output, token copies) die here, not after the layers */
    x = nn_Conv2d_forward(&m->projection, pixels);                      /* [B, D, h, w] */
    x = nn_transpose(nn_flatten(x, 2, 3), 1, 2);                        /* [B, h*w, D] */
    s[0] = pixels->shape[0]; s[1] = 1; s[2] = m->c.hidden;
    parts[0] = nn_expand(m->cls_token, 3, s);
    parts[1] = x;                                                       /* nn_concat promotes, as torch.cat */
    x = nn_concat(2, parts, 1);
    x = nn_scope_end(nn_add(x, dinov2_pos_embed(m, pixels->shape[2], pixels->shape[3])));
    for (i = 0; i < m->c.layers; i++) {
        if (m->checkpointing && nn_grad_enabled()) {
            nn_tensor *out[1];
            nn_checkpoint(dinov2__layer_fn, (void *)&m->layer[i], 1, &x, 1, out);
            x = out[0];
        } else {
            x = vit_block_forward(&m->layer[i], x);
        }
    }
    return nn_scope_end(nn_LayerNorm_forward(&m->layernorm, x));
}

#endif
