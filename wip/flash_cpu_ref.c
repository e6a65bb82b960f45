/* wip/flash_cpu_ref.c - the CPU op nn_sdpa (wip/sdpa.h) behind one plain function, so that wip/flash_test.cu
   can check the GPU kernels against it (dropout masks included: same seed and offset, same mask).
   Build: gcc -std=c99 -O2 -fopenmp -I. -c wip/flash_cpu_ref.c -o build/flash_cpu_ref.o */
#define NN_NO_COMPOSED_SDPA
#define NN_IMPLEMENTATION
#include "nn.h"
#include "wip/sdpa.h"

static void copy_out(float *dst, const nn_tensor *t) {
    if (dst && t) memcpy(dst, t->data, sizeof(float) * (size_t)t->numel);
}

/* q [B,H,Lq,D], k [B,H,Lk,D], v [B,H,Lk,Dv] contiguous f32; mask (u8) and bias (f32) of shapes mshape/bshape
   (4-D, broadcastable) or NULL. Seeds the generator with seed, reserves `pre` values first (so the op's
   offset is not 0), runs nn_sdpa forward and backward with gradient gout, and returns the offset the op's
   dropout draw used. Outputs may be NULL. */
uint64_t flash_cpu_sdpa(int B, int H, int Lq, int Lk, int D, int Dv, const float *q, const float *k,
                        const float *v, const uint8_t *mask, const int64_t *mshape, const float *bias,
                        const int64_t *bshape, int causal, double scale, double p, uint64_t seed, uint64_t pre,
                        const float *gout, float *out, float *dq, float *dk, float *dv, float *dbias) {
    int64_t sq[4], sk[4], sv[4], so[4];
    nn_tensor *tq, *tk, *tv, *tm = NULL, *tb = NULL, *o, *g;
    nn_sdpa_opts opts;
    uint64_t off;
    sq[0] = B; sq[1] = H; sq[2] = Lq; sq[3] = D;
    sk[0] = B; sk[1] = H; sk[2] = Lk; sk[3] = D;
    sv[0] = B; sv[1] = H; sv[2] = Lk; sv[3] = Dv;
    so[0] = B; so[1] = H; so[2] = Lq; so[3] = Dv;
    nn_seed(seed);
    if (pre) nn_rng_reserve(pre);
    off = nn_rng_get().offset;
    tq = nn_from_f32(4, sq, q); nn_requires_grad(tq, 1);
    tk = nn_from_f32(4, sk, k); nn_requires_grad(tk, 1);
    tv = nn_from_f32(4, sv, v); nn_requires_grad(tv, 1);
    if (mask) tm = nn_from_data(NN_BOOL, 4, mshape, mask);
    if (bias) { tb = nn_from_f32(4, bshape, bias); nn_requires_grad(tb, 1); }
    memset(&opts, 0, sizeof opts);
    opts.mask = tm; opts.bias = tb; opts.causal = causal; opts.scale = scale; opts.dropout_p = p;
    o = nn_sdpa(tq, tk, tv, &opts);
    copy_out(out, o);
    g = nn_from_f32(4, so, gout);
    nn_backward_with(1, &o, &g);
    copy_out(dq, tq->grad); copy_out(dk, tk->grad); copy_out(dv, tv->grad);
    if (tb) copy_out(dbias, tb->grad);
    nn_tensor_free(g); nn_tensor_free(o);
    nn_tensor_free(tq); nn_tensor_free(tk); nn_tensor_free(tv);
    if (tm) nn_tensor_free(tm);
    if (tb) nn_tensor_free(tb);
    return off;
}

/* nn.h's own uniform draw, for the driver's bitwise check of the device Philox */
float flash_cpu_uniform_at(uint64_t seed, uint64_t index) { return nn_rng_uniform_at(seed, index); }
