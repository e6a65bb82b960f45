/* models/unet.h - the guided-diffusion ResBlock (Dhariwal & Nichol 2021, openai/guided-diffusion
   unet.py), the residual block of seed 003's HAE V2 UNet ("ResBlock: timestep embedding, optional
   scale-shift normalisation, dropout"), in NCHW.

   state_dict names relative to the block prefix (e.g. "input_blocks.1.0"), as guided-diffusion:
       in_layers.0.weight/bias      GroupNorm32(groups, channels)  (normalization(): 32 groups, eps 1e-5, f32)
       in_layers.2.weight/bias      conv 3x3, padding 1, channels -> out_channels   (in_layers.1 = SiLU)
       emb_layers.1.weight/bias     Linear(emb_channels, 2*out_channels if use_scale_shift_norm else out_channels)
                                    (emb_layers.0 = SiLU)
       out_layers.0.weight/bias     GroupNorm32(groups, out_channels)
       out_layers.3.weight/bias     conv 3x3 out -> out, zero_module: zero-initialised   (out_layers.1 SiLU, .2 Dropout)
       skip_connection.weight/bias  only when out_channels != channels: conv 1x1 (3x3 with use_conv)
   forward(x [B, C, H, W], emb [B, emb_channels]):
       h = in_layers(x) = conv(silu(norm(x)))       (up/down: norm, silu, resample h and x, then conv)
       e = emb_layers(emb) = linear(silu(emb))[:, :, None, None]
       use_scale_shift_norm: scale, shift = chunk(e, 2, dim=1); h = out_norm(h) * (1 + scale) + shift
                             h = out_conv(dropout(silu(h)))
       else:                 h = out_layers(h + e)
       return skip_connection(x) + h
   Resampling (up/down without conv, as ResBlock's Upsample/Downsample(use_conv=False)): nearest x2
   upsampling, 2x2 average pooling. Seed 003 runs the blocks under gradient checkpointing (use_checkpoint):
   unet_resblock_forward_checkpointed. */
#ifndef NN_MODELS_UNET_H
#define NN_MODELS_UNET_H

#include "common.h"

typedef struct {
    int channels, out_channels, emb_channels, use_scale_shift_norm, up, down, has_skip;
    double dropout;
    nn_GroupNorm in_norm, out_norm;      /* in_layers.0, out_layers.0 */
    nn_Conv2d in_conv, out_conv, skip;   /* in_layers.2, out_layers.3, skip_connection */
    nn_Linear emb;                       /* emb_layers.1 */
} unet_resblock;

/* ResBlock(channels, emb_channels, dropout, out_channels (0: = channels), use_conv, use_scale_shift_norm,
   up, down) with GroupNorm `groups` (guided-diffusion: 32; fewer for tiny channel counts) */
NN_MODEL_FN void unet_resblock_init(unet_resblock *m, nn_params *P, const char *prefix, int channels, int emb_channels,
                                    double dropout, int out_channels, int groups, int use_conv, int use_scale_shift_norm,
                                    int up, int down) {
    char buf[256];
    if (out_channels <= 0) out_channels = channels;
    if (up && down) nn_error("unet_resblock_init(%s): up and down together", prefix);
    m->channels = channels; m->out_channels = out_channels; m->emb_channels = emb_channels;
    m->use_scale_shift_norm = use_scale_shift_norm; m->up = up; m->down = down; m->dropout = dropout;
    nn_GroupNorm_init(&m->in_norm, P, nnm_name(buf, sizeof buf, prefix, "in_layers.0"), groups, channels, 1e-5);
    nn_Conv2d_init(&m->in_conv, P, nnm_name(buf, sizeof buf, prefix, "in_layers.2"), channels, out_channels, 3, 1, 1, 1, 1, 1);
    nn_Linear_init(&m->emb, P, nnm_name(buf, sizeof buf, prefix, "emb_layers.1"), emb_channels,
                   use_scale_shift_norm ? 2 * out_channels : out_channels, 1);
    nn_GroupNorm_init(&m->out_norm, P, nnm_name(buf, sizeof buf, prefix, "out_layers.0"), groups, out_channels, 1e-5);
    nn_Conv2d_init(&m->out_conv, P, nnm_name(buf, sizeof buf, prefix, "out_layers.3"), out_channels, out_channels, 3, 1, 1,
                   1, 1, 1);
    nn_fill_(m->out_conv.weight, 0.0);   /* zero_module */
    nn_fill_(m->out_conv.bias, 0.0);
    m->has_skip = out_channels != channels;
    if (m->has_skip)
        nn_Conv2d_init(&m->skip, P, nnm_name(buf, sizeof buf, prefix, "skip_connection"), channels, out_channels,
                       use_conv ? 3 : 1, 1, use_conv ? 1 : 0, 1, 1, 1);
}

NN_MODEL_FN nn_tensor *unet__resample(const unet_resblock *m, nn_tensor *x) {
    if (m->up) return nn_upsample_nearest2d(x, 2 * x->shape[2], 2 * x->shape[3]);
    if (m->down) return nn_avg_pool2d(x, 2, 2, 0);
    return x;
}

/* x [B, channels, H, W], emb [B, emb_channels] -> [B, out_channels, H', W'] */
NN_MODEL_FN nn_tensor *unet_resblock_forward(const unet_resblock *m, nn_tensor *x, nn_tensor *emb) {
    nn_tensor *h, *e;
    int64_t s[4];
    char s1[64], s2[64];
    if (!x || !emb || x->ndim != 4 || x->shape[1] != m->channels || emb->ndim != 2 || emb->shape[0] != x->shape[0] ||
        emb->shape[1] != m->emb_channels)
        nn_error("unet_resblock_forward: expected x [B, %d, H, W] and emb [B, %d], got %s and %s", m->channels,
                 m->emb_channels, x ? nn_shape_str(x, s1, sizeof s1) : "(null)", emb ? nn_shape_str(emb, s2, sizeof s2) : "(null)");
    nn_scope_begin();
    h = nn_silu(nn_GroupNorm_forward(&m->in_norm, x));
    if (m->up || m->down) { h = unet__resample(m, h); x = unet__resample(m, x); }
    h = nn_Conv2d_forward(&m->in_conv, h);
    e = nn_Linear_forward(&m->emb, nn_silu(emb));
    s[0] = e->shape[0]; s[1] = e->shape[1]; s[2] = 1; s[3] = 1;
    e = nn_reshape(e, 4, s);                           /* emb_out[..., None, None] */
    if (m->use_scale_shift_norm) {
        nn_tensor *scale = nn_slice(e, 1, 0, m->out_channels);
        nn_tensor *shift = nn_slice(e, 1, m->out_channels, 2 * m->out_channels);
        h = nn_add(nn_mul(nn_GroupNorm_forward(&m->out_norm, h), nn_add_scalar(scale, 1.0)), shift);
    } else h = nn_GroupNorm_forward(&m->out_norm, nn_add(h, e));
    h = nn_Conv2d_forward(&m->out_conv, nnm_dropout(nn_silu(h), m->dropout));
    if (m->has_skip) x = nn_Conv2d_forward(&m->skip, x);
    return nn_scope_end(nn_add(x, h));
}

NN_MODEL_FN void unet__ckpt_fn(void *ctx, nn_tensor **in, nn_tensor **out) {
    out[0] = unet_resblock_forward((const unet_resblock *)ctx, in[0], in[1]);
}
/* guided-diffusion's checkpoint(self._forward, (x, emb), self.parameters(), self.use_checkpoint) */
NN_MODEL_FN nn_tensor *unet_resblock_forward_checkpointed(const unet_resblock *m, nn_tensor *x, nn_tensor *emb) {
    nn_tensor *in[2], *out[1];
    in[0] = x; in[1] = emb;
    nn_checkpoint(unet__ckpt_fn, (void *)m, 2, in, 1, out);
    return out[0];
}

#endif
