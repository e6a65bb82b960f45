/* bench/flash_bench.c - nn_sdpa on the GPU (nn_cuda.cu's flash attention) on issue 6's ten cases plus case 11 (the
   ViT-B step's attention at batch 4), bf16 (or f32 with the argument f32: the f32 path, its gradients f32 too;
   bench/flash_torch.py with DTYPE=f32 is PyTorch's side).

   Times the public op as a program calls it: forward with grad mode off, and forward + backward (nn_backward
   from an f32 upstream gradient; the op casts it to bf16, the q/k/v gradients come back as f32 leaf gradients).
   Host clock around `iters` calls ended by nn_cuda_synchronize, median of 5 (host overhead counts against us).
   Prints one line per case: "case <n> fwd_ms <t> fwdbwd_ms <t>", read by bench/flash_torch.py.
   Build: make build/flash_bench (needs nvcc); run on the device: bench/flash_bench.sh. */
#define _POSIX_C_SOURCE 200809L
#define NN_IMPLEMENTATION
#include "nn.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct { const char *name; int64_t B, H, Lq, Lk, D; int kind; } fcase;   /* kind: 0, 1 keypad, 2 bias[B,1], 3 bias full */
static const fcase cases[] = {
    {"1 DINOv2-B/14 1024px", 2, 12, 5329, 5329, 64, 0},      {"2 4x16 4096 d128", 4, 16, 4096, 4096, 128, 0},
    {"3 2x16 8192 d64", 2, 16, 8192, 8192, 64, 0},           {"4 part->whole 1024 d64", 4, 12, 1024, 1024, 64, 0},
    {"5 seed000 chunks d16", 40, 8, 1024, 1024, 16, 0},      {"6 seed000 global 40000x1024", 1, 8, 40000, 1024, 16, 0},
    {"7 seed002 keypad 10x2048", 4, 8, 10, 2048, 64, 1},     {"8 AQR 900x56400 bias[B,1]", 2, 8, 900, 56400, 32, 2},
    {"9 AQR 900x22384 bias[B,1]", 2, 8, 900, 22384, 32, 2},  {"10 4096 d64 bias full", 2, 16, 4096, 4096, 64, 3},
    {"11 ViT-B/14 1024px batch 4", 4, 12, 5330, 5330, 64, 0},
};

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static nn_dtype dtype = NN_BF16;   /* of q, k, v and the bias */

/* a tensor of dtype on the GPU with uniform values (made on the host, moved once) */
static nn_tensor *dev_bf16(int nd, const int64_t *s, double lo, double hi) {
    nn_tensor *h = nn_uniform(nd, s, lo, hi), *c = nn_cast(h, dtype), *d = nn_to(c, NN_CUDA);
    nn_tensor_free(c);
    nn_tensor_free(h);
    return d;
}

typedef struct { nn_tensor *q, *k, *v, *g; nn_sdpa_opts o; } run_ctx;

static void fwd(run_ctx *r) {
    int prev = nn_set_grad_enabled(0);
    nn_scope_begin();
    nn_sdpa(r->q, r->k, r->v, &r->o);
    nn_scope_end(NULL);
    nn_set_grad_enabled(prev);
}

static void fwdbwd(run_ctx *r) {
    nn_tensor *y;
    nn_scope_begin();
    y = nn_sdpa(r->q, r->k, r->v, &r->o);
    nn_backward_with(1, &y, &r->g);
    nn_scope_end(NULL);
    nn_zero_grad(r->q); nn_zero_grad(r->k); nn_zero_grad(r->v);
}

static int cmp_d(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return (x > y) - (x < y); }

static double time_ms(void (*fn)(run_ctx *), run_ctx *r) {
    double one, t[5];
    int it, rep, iters;
    fn(r);
    nn_cuda_synchronize();
    one = now(); fn(r); nn_cuda_synchronize(); one = now() - one;
    iters = (int)(0.1 / (one > 1e-5 ? one : 1e-5));
    if (iters < 2) iters = 2;
    if (iters > 50) iters = 50;
    for (rep = 0; rep < 5; rep++) {
        double t0 = now();
        for (it = 0; it < iters; it++) fn(r);
        nn_cuda_synchronize();
        t[rep] = (now() - t0) / iters * 1e3;
    }
    qsort(t, 5, sizeof t[0], cmp_d);
    return t[2];
}

int main(int argc, char **argv) {
    int only = 0, a;
    size_t c;
    for (a = 1; a < argc; a++) {
        if (strcmp(argv[a], "f32") == 0) dtype = NN_F32;
        else only = atoi(argv[a]);
    }
    if (!nn_cuda_available()) { fprintf(stderr, "flash_bench: no CUDA device\n"); return 1; }
    nn_seed(0);
    for (c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const fcase *f = &cases[c];
        int64_t qs[4] = {f->B, f->H, f->Lq, f->D}, ks[4] = {f->B, f->H, f->Lk, f->D}, gs[4] = {f->B, f->H, f->Lq, f->D};
        run_ctx r;
        nn_tensor *mask = NULL, *bias = NULL, *gh;
        double tf, tfb, flops = 4.0 * f->B * f->H * f->Lq * f->Lk * f->D;
        if (only && (int)c + 1 != only) continue;
        memset(&r, 0, sizeof r);
        r.q = dev_bf16(4, qs, -2, 2); r.k = dev_bf16(4, ks, -2, 2); r.v = dev_bf16(4, ks, -1, 1);
        nn_requires_grad(r.q, 1); nn_requires_grad(r.k, 1); nn_requires_grad(r.v, 1);
        gh = nn_uniform(4, gs, -1, 1);
        r.g = nn_to(gh, NN_CUDA);
        nn_tensor_free(gh);
        if (f->kind == 1) {   /* key padding: the last quarter of the keys */
            int64_t ms[4] = {f->B, 1, 1, f->Lk}, i;
            nn_tensor *mh = nn_zeros(NN_BOOL, 4, ms);
            uint8_t *m = (uint8_t *)mh->data;
            for (i = 0; i < mh->numel; i++) m[i] = (i % f->Lk) < f->Lk - f->Lk / 4;
            mask = nn_to(mh, NN_CUDA);
            nn_tensor_free(mh);
        } else if (f->kind >= 2) {   /* a bias in the q dtype, filled on the device (its values do not change the time) */
            int64_t bs[4] = {f->B, f->kind == 2 ? 1 : f->H, f->Lq, f->Lk};
            bias = nn__new(dtype, NN_CUDA, 4, bs);
            nn_fill_(bias, 0.25);
        }
        r.o.mask = mask; r.o.bias = bias;
        tf = time_ms(fwd, &r);
        tfb = time_ms(fwdbwd, &r);
        printf("case %d fwd_ms %.4f fwdbwd_ms %.4f   # %s: %.0f / %.0f TFLOP/s, peak %.0f MiB\n", (int)c + 1, tf, tfb,
               f->name, flops / tf / 1e9, 3.5 * flops / tfb / 1e9, nn_mem_stats(NN_CUDA).peak / 1048576.0);
        fflush(stdout);
        nn_tensor_free(r.q); nn_tensor_free(r.k); nn_tensor_free(r.v); nn_tensor_free(r.g);
        if (mask) nn_tensor_free(mask);
        if (bias) nn_tensor_free(bias);
        nn_mem_trim(NN_CUDA);
    }
    nn_shutdown();
    return 0;
}
