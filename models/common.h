/* models/common.h - small helpers shared by the model headers in models/ (vit.h, mesh_attn.h, dit.h,
   unet.h, cmt.h). These headers sit on nn.h's public API only: include "nn.h" (without
   NN_IMPLEMENTATION) and a model header in any file; the one file that defines NN_IMPLEMENTATION
   provides the library.

   Conventions of every model header
   - One struct per block; `<block>_init(struct *, nn_params *P, const char *prefix, config...)` registers
     the block's parameters under PyTorch's state_dict names ("<prefix>.<name>"), so checkpoints written
     by the seed's PyTorch model load by name; `<block>_forward(...)` runs in its own scope and returns
     the output (transients are freed, what backward needs stays on the tape).
   - Dropout follows nn_training(): off in eval (nn_set_training(0)), on in training.
   - Functions are `static` (marked unused so that a file using one header only builds warning-free). */
#ifndef NN_MODELS_COMMON_H
#define NN_MODELS_COMMON_H

#include <stdio.h>
#include <string.h>
#include "nn.h"

#if defined(__GNUC__) || defined(__clang__)
#define NN_MODEL_FN static __attribute__((unused))
#else
#define NN_MODEL_FN static
#endif

/* registry name "<prefix>.<a>" (prefix may be empty) into buf */
NN_MODEL_FN const char *nnm_name(char *buf, size_t n, const char *prefix, const char *a) {
    return nn_name_join(buf, n, prefix, a);
}

/* [B, L, H*D] -> [B, H, L, D] (a copy: nn_permute copies) */
NN_MODEL_FN nn_tensor *nnm_split_heads(nn_tensor *x, int heads) {
    int64_t s[4];
    int perm[4] = {0, 2, 1, 3};
    if (x->ndim != 3 || heads <= 0 || x->shape[2] % heads)
        nn_error("nnm_split_heads: expected [B, L, H*D] with H = %d dividing the last dim", heads);
    s[0] = x->shape[0]; s[1] = x->shape[1]; s[2] = heads; s[3] = x->shape[2] / heads;
    return nn_permute(nn_reshape(x, 4, s), perm);
}

/* [B, H, L, D] -> [B, L, H*D] */
NN_MODEL_FN nn_tensor *nnm_merge_heads(nn_tensor *x) {
    int64_t s[3];
    int perm[4] = {0, 2, 1, 3};
    if (x->ndim != 4) nn_error("nnm_merge_heads: expected [B, H, L, D]");
    s[0] = x->shape[0]; s[1] = x->shape[2]; s[2] = x->shape[1] * x->shape[3];
    return nn_reshape(nn_permute(x, perm), 3, s);
}

/* nn.Dropout(p) under the module-level train/eval switch */
NN_MODEL_FN nn_tensor *nnm_dropout(nn_tensor *x, double p) {
    return p > 0 && nn_training() ? nn_dropout(x, p, 1) : x;
}

/* timm / HF DropPath (stochastic depth): in training, each sample's branch is dropped with probability p
   and the kept ones are scaled by 1/(1-p); x [B, ...]. The per-sample mask is a constant of the step. */
NN_MODEL_FN nn_tensor *nnm_drop_path(nn_tensor *x, double p) {
    int64_t s[NN_MAX_DIMS], b;
    int d;
    nn_tensor *u, *m;
    float *md;
    if (!(p > 0) || !nn_training()) return x;
    s[0] = x->shape[0];
    for (d = 1; d < x->ndim; d++) s[d] = 1;
    u = nn_rand(x->ndim, s);
    m = nn_zeros(NN_F32, x->ndim, s);
    md = nn_f32_data(m);
    for (b = 0; b < s[0]; b++) md[b] = nn_f32_data(u)[b] < 1.0 - p ? (float)(1.0 / (1.0 - p)) : 0.0f;
    return nn_mul(x, x->device == NN_CPU ? m : nn_to(m, x->device));   /* the mask is drawn on the host */
}

#endif
