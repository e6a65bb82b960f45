/* bench/mesh_seg_step_bench.c - one training step of seed 000's MemoryEfficientSOTAModel (models/mesh_seg.h
   with the seed's configuration: embed 128, 4 HierarchicalAttention layers, 8 heads, chunks of 1024, dropout
   0.1) on one synthetic mesh of N faces: forward, cross-entropy over the faces, backward, global-norm clipping
   at 1.0, AdamW (lr 1e-4, torch's defaults otherwise, weight decay 0.01 on every parameter as
   torch.optim.AdamW(model.parameters())). Modes: f32; bf16 (autocast); bf16ckpt (autocast + a gradient
   checkpoint per layer, the seed's forward_with_checkpointing). Prints every step's time, the median, and the
   peak bytes of the device pool during the timed steps (nn_mem_stats(dev).peak after nn_mem_reset_peak).
   bench/mesh_seg_step_torch.py is the PyTorch twin (the seed's own model code); bench/mesh_seg_step.sh runs both.

   build:  cc -O2 -march=native -fopenmp -I. -Imodels bench/mesh_seg_step_bench.c -o build/mesh_seg_step_bench -lm
           (GPU: add -DNN_CUDA and build/nn_cuda.o with the CUDA libraries, as the Makefile's CUDA_LDLIBS)
   run:    build/mesh_seg_step_bench [--device cpu|cuda] [--faces 40000] [--mode f32|bf16|bf16ckpt]
                                     [--steps 5] [--warmup 2] [--layers 4] [--heads 8] [--chunk 1024] [--seed 0]
                                     [--check DIR] [--phases] [--ops]
   --phases: also time forward, backward and clipping + AdamW of every step separately (a synchronisation
   between them, and the pool peak is reset per phase: neither the step time nor RESULT's peak is then comparable).
   --ops: instead of the step, time the step's main pieces alone at its shapes (forward, forward + backward;
   median of 5 after a warm-up): the local and global attention (f32, and bf16 operands through nn_cast; the local
   one padded and masked as models/mesh_attn.h once ran it, and unmasked over the whole chunks as it runs now;
   without and with the layers' attention dropout 0.1), the
   top-k, index_select, cross-entropy, a [N,128]x[128,128] linear, LayerNorm, GELU, the head permutes.
   --check DIR: the correctness half. Writes DIR/init.safetensors (the initial weights, state_dict names),
   DIR/features.npy and DIR/labels.npy, and runs the step with dropout off (nn_set_training(0), gradients on)
   printing "CHECK loss L", "CHECK grad_norm G" (all parameters, before clipping) and "CHECK grad NAME g" (the
   gradient norms of parameters in every part of the model); mesh_seg_step_torch.py --check DIR does the same in
   PyTorch from those files, and mesh_seg_step.sh compares the numbers.
   Inputs: PartField and vertices U(-1, 1), confidence U(0, 1), labels 0/1 at random: the benchmark times a
   step, it does not train a task. */
#define _POSIX_C_SOURCE 200809L
#define NN_IMPLEMENTATION
#include "nn.h"
#include "models/mesh_seg.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <math.h>

#include "bench.h"

/* splitmix64: the synthetic mesh, independent of nn.h's generator (which seeds the weights) */
static uint64_t mix(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
static float unif(uint64_t *s) { return (float)((mix(s) >> 40) * (1.0 / 16777216.0)); }

/* parameters whose gradient norms --check prints: every part of the model, both attentions of the first and
   last layer included */
static const char *const check_names[] = {
    "embedding.partfield_proj.0.weight", "embedding.confidence_proj.0.weight", "embedding.coord_proj.0.weight",
    "embedding.fusion.0.weight", "pos_encoding.point_encoder.0.weight", "pos_encoding.shape_encoder.0.weight",
    "pos_encoding.final_fusion.0.weight", "layers.0.confidence_gate.0.weight", "layers.0.local_attention.in_proj_weight",
    "layers.0.global_attention.in_proj_weight", "layers.0.norm2.weight", "layers.0.ffn.0.weight",
    "layers.3.local_attention.in_proj_weight", "layers.3.global_attention.out_proj.weight", "layers.3.ffn.3.bias",
    "classifier.1.weight", "classifier.4.bias", NULL};

/* ------------------------------------------------------------------------------------------------ --ops */
typedef nn_tensor *(*op_fn)(void *ctx);
typedef struct { nn_tensor *a, *b, *c, *d; int i0; double p; } op_ctx;

static double op_time(op_fn f, void *ctx, int backward) {
    double t[5];
    int r;
    for (r = -1; r < 5; r++) {
        double t0;
        nn_cuda_synchronize();
        t0 = now_s();
        nn_scope_begin();
        {
            nn_tensor *y = f(ctx);
            if (backward) nn_backward(nn_sum_all(y));
        }
        nn_scope_end(NULL);
        nn_cuda_synchronize();
        if (r >= 0) t[r] = now_s() - t0;
    }
    qsort(t, 5, sizeof(double), cmp_double);
    return t[2] * 1e3;
}

static nn_tensor *op_sdpa(void *vc) {
    op_ctx *c = (op_ctx *)vc;
    nn_sdpa_opts o;
    nn_tensor *q = c->a, *k = c->b, *v = c->c;
    memset(&o, 0, sizeof o);
    o.mask = c->d;
    o.dropout_p = c->p;
    if (c->i0) { q = nn_cast(q, NN_BF16); k = nn_cast(k, NN_BF16); v = nn_cast(v, NN_BF16); }
    return nn_cast(nn_sdpa(q, k, v, &o), NN_F32);
}
static nn_tensor *op_topk(void *vc) {
    op_ctx *c = (op_ctx *)vc;
    nn_tensor *idx = NULL;
    nn_topk(c->a, c->i0, 0, 1, NULL, &idx);
    return idx;
}
static nn_tensor *op_index_select(void *vc) { op_ctx *c = (op_ctx *)vc; return nn_index_select(c->a, 0, c->b); }
static nn_tensor *op_ce(void *vc) { op_ctx *c = (op_ctx *)vc; return nn_cross_entropy(c->a, c->b, NULL, -100, 0.0); }
static nn_tensor *op_linear(void *vc) { op_ctx *c = (op_ctx *)vc; return nn_linear(c->a, c->b, c->c); }
static nn_tensor *op_ln(void *vc) { op_ctx *c = (op_ctx *)vc; return nn_layer_norm(c->a, c->c, c->d, 1e-5); }
static nn_tensor *op_gelu(void *vc) { op_ctx *c = (op_ctx *)vc; return nn_gelu(c->a); }
static nn_tensor *op_split(void *vc) { op_ctx *c = (op_ctx *)vc; return nnm_split_heads(c->a, c->i0); }

static nn_tensor *leaf(nn_device dev, int nd, const int64_t *shape, double lo, double hi) {
    nn_tensor *h = nn_uniform(nd, shape, lo, hi), *t = dev == NN_CPU ? h : nn_to(h, dev);
    if (t != h) nn_tensor_free(h);
    nn_requires_grad(t, 1);
    return t;
}

static void run_ops(nn_device dev, int64_t N, const mesh_seg_cfg *cfg) {
    int64_t cs = cfg->chunk_size, nch = (N + cs - 1) / cs, H = cfg->num_heads, E = cfg->embed_dim, D = E / H;
    int64_t s4[4], s2[2], s1[1];
    op_ctx c;
    int bf;
    nn_tensor *mh, *mask;
    printf("ops at N = %lld faces (times in ms: forward, forward + backward)\n", (long long)N);
    /* local attention: [chunks, H, chunk, D] with the key mask of the padded last chunk */
    s4[0] = nch; s4[1] = 1; s4[2] = 1; s4[3] = cs;
    mh = nn_empty(NN_BOOL, 4, s4);
    { int64_t j; for (j = 0; j < nch * cs; j++) ((uint8_t *)mh->data)[j] = j < N; }
    mask = dev == NN_CPU ? mh : nn_to(mh, dev);
    for (bf = 0; bf < (dev == NN_CPU ? 1 : 2); bf++) {   /* the CPU computes in f32 only */
        const char *dt = bf ? "bf16" : "f32 ";
        int drop;
        memset(&c, 0, sizeof c);
        s4[0] = nch; s4[1] = H; s4[2] = cs; s4[3] = D;
        c.a = leaf(dev, 4, s4, -1, 1); c.b = leaf(dev, 4, s4, -1, 1); c.c = leaf(dev, 4, s4, -1, 1); c.d = mask; c.i0 = bf;
        printf("  sdpa local  %s [%lld,%lld,%lld,%lld] padded, masked: %8.2f %8.2f\n", dt, (long long)nch, (long long)H,
               (long long)cs, (long long)D, op_time(op_sdpa, &c, 0), op_time(op_sdpa, &c, 1));
        nn_tensor_free(c.a); nn_tensor_free(c.b); nn_tensor_free(c.c);
        /* what models/mesh_attn.h runs: the whole chunks unmasked (the short last chunk is a call of its own) */
        s4[0] = N / cs;
        c.a = leaf(dev, 4, s4, -1, 1); c.b = leaf(dev, 4, s4, -1, 1); c.c = leaf(dev, 4, s4, -1, 1); c.d = NULL;
        for (drop = 0; drop < 2; drop++) {
            c.p = drop ? 0.1 : 0.0;
            printf("  sdpa local  %s [%lld,%lld,%lld,%lld]%s: %8.2f %8.2f\n", dt, (long long)(N / cs), (long long)H,
                   (long long)cs, (long long)D, drop ? " dropout 0.1" : "", op_time(op_sdpa, &c, 0), op_time(op_sdpa, &c, 1));
        }
        nn_tensor_free(c.a); nn_tensor_free(c.b); nn_tensor_free(c.c);
        s4[0] = 1; s4[1] = H; s4[2] = N; s4[3] = D;
        c.a = leaf(dev, 4, s4, -1, 1);
        s4[2] = cs;
        c.b = leaf(dev, 4, s4, -1, 1); c.c = leaf(dev, 4, s4, -1, 1);
        for (drop = 0; drop < 2; drop++) {
            c.p = drop ? 0.1 : 0.0;
            printf("  sdpa global %s [1,%lld,%lld,%lld] x %lld keys%s: %8.2f %8.2f\n", dt, (long long)H, (long long)N,
                   (long long)D, (long long)cs, drop ? " dropout 0.1" : "", op_time(op_sdpa, &c, 0), op_time(op_sdpa, &c, 1));
        }
        nn_tensor_free(c.a); nn_tensor_free(c.b); nn_tensor_free(c.c);
    }
    if (mask != mh) nn_tensor_free(mask);
    nn_tensor_free(mh);
    memset(&c, 0, sizeof c);
    s1[0] = N;
    c.a = leaf(dev, 1, s1, 0, 1); c.i0 = (int)cs;
    printf("  topk %lld of %lld: %8.2f\n", (long long)cs, (long long)N, op_time(op_topk, &c, 0));
    {
        nn_tensor *idx = NULL;
        nn_topk(c.a, cs, 0, 1, NULL, &idx);
        nn_tensor_free(c.a);
        s2[0] = N; s2[1] = E;
        c.a = leaf(dev, 2, s2, -1, 1); c.b = idx;
        printf("  index_select [%lld,%lld] -> %lld rows: %8.2f %8.2f\n", (long long)N, (long long)E, (long long)cs,
               op_time(op_index_select, &c, 0), op_time(op_index_select, &c, 1));
        nn_tensor_free(idx);
    }
    c.b = NULL;
    { /* linear, LayerNorm, GELU on [N, E]; the head split */
        int64_t sw[2], sb[1];
        sw[0] = E; sw[1] = E; sb[0] = E;
        c.b = leaf(dev, 2, sw, -0.1, 0.1); c.c = leaf(dev, 1, sb, -0.1, 0.1); c.d = leaf(dev, 1, sb, -0.1, 0.1);
        printf("  linear [%lld,%lld]x[%lld,%lld]: %8.2f %8.2f\n", (long long)N, (long long)E, (long long)E, (long long)E,
               op_time(op_linear, &c, 0), op_time(op_linear, &c, 1));
        printf("  layer_norm [%lld,%lld]: %8.2f %8.2f\n", (long long)N, (long long)E, op_time(op_ln, &c, 0), op_time(op_ln, &c, 1));
        printf("  gelu [%lld,%lld]: %8.2f %8.2f\n", (long long)N, (long long)E, op_time(op_gelu, &c, 0), op_time(op_gelu, &c, 1));
        nn_tensor_free(c.a); nn_tensor_free(c.b); nn_tensor_free(c.c); nn_tensor_free(c.d);
        s4[0] = nch; s4[1] = cs; s4[2] = E;
        c.a = leaf(dev, 3, s4, -1, 1); c.i0 = (int)H;
        printf("  split heads [%lld,%lld,%lld]: %8.2f %8.2f\n", (long long)nch, (long long)cs, (long long)E,
               op_time(op_split, &c, 0), op_time(op_split, &c, 1));
        nn_tensor_free(c.a);
    }
    {   /* the loss */
        nn_tensor *th, *t;
        int64_t j;
        s2[0] = N; s2[1] = 2;
        c.a = leaf(dev, 2, s2, -1, 1);
        th = nn_empty(NN_I32, 1, s2);
        for (j = 0; j < N; j++) ((int32_t *)th->data)[j] = (int32_t)(j & 1);
        t = dev == NN_CPU ? th : nn_to(th, dev);
        c.b = t;
        printf("  cross_entropy [%lld,2]: %8.2f %8.2f\n", (long long)N, op_time(op_ce, &c, 0), op_time(op_ce, &c, 1));
        nn_tensor_free(c.a);
        if (t != th) nn_tensor_free(t);
        nn_tensor_free(th);
    }
}

int main(int argc, char **argv) {
    const char *device = "cpu", *mode = "f32", *check = NULL;
    int steps = 5, warmup = 2, i, step, ckpt, phases = 0, ops = 0;
    long long faces = 40000, seed = 0;
    nn_device dev;
    nn_dtype ac;
    mesh_seg_cfg cfg = mesh_seg_default();
    mesh_seg m;
    nn_params P = {0};
    nn_adamw *opt;
    nn_tensor *xh, *yh, *x, *y;
    int64_t s[2], j;
    uint64_t rs;
    float *f;
    int32_t *lab;
    double *times, t_total = 0;
    size_t peak = 0;

    for (i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--phases")) { phases = 1; continue; }
        if (!strcmp(a, "--ops")) { ops = 1; continue; }
        if (!v) { fprintf(stderr, "mesh_seg_step_bench: %s needs a value\n", a); return 2; }
        if (!strcmp(a, "--device")) device = v;
        else if (!strcmp(a, "--faces")) faces = atoll(v);
        else if (!strcmp(a, "--mode")) mode = v;
        else if (!strcmp(a, "--steps")) steps = atoi(v);
        else if (!strcmp(a, "--warmup")) warmup = atoi(v);
        else if (!strcmp(a, "--layers")) cfg.num_layers = atoi(v);
        else if (!strcmp(a, "--heads")) cfg.num_heads = atoi(v);
        else if (!strcmp(a, "--chunk")) cfg.chunk_size = atoi(v);
        else if (!strcmp(a, "--seed")) seed = atoll(v);
        else if (!strcmp(a, "--check")) check = v;
        else { fprintf(stderr, "mesh_seg_step_bench: unknown option %s\n", a); return 2; }
        i++;
    }
    if (strcmp(device, "cpu") && strcmp(device, "cuda")) { fprintf(stderr, "mesh_seg_step_bench: --device cpu|cuda\n"); return 2; }
    if (strcmp(mode, "f32") && strcmp(mode, "bf16") && strcmp(mode, "bf16ckpt")) {
        fprintf(stderr, "mesh_seg_step_bench: --mode f32|bf16|bf16ckpt, got %s\n", mode);
        return 2;
    }
    if (faces < 1 || steps < 1 || warmup < 0) { fprintf(stderr, "mesh_seg_step_bench: bad --faces/--steps/--warmup\n"); return 2; }
    dev = !strcmp(device, "cuda") ? NN_CUDA : NN_CPU;
    if (dev == NN_CUDA && !nn_cuda_available()) {
        fprintf(stderr, "mesh_seg_step_bench: --device cuda, but %s\n",
#ifdef NN_CUDA
                "no CUDA device is present"
#else
                "this build has no CUDA (-DNN_CUDA + nn_cuda.o)"
#endif
        );
        return 2;
    }
    if (ops) { run_ops(dev, faces, &cfg); nn_shutdown(); return 0; }
    ac = strcmp(mode, "f32") ? NN_BF16 : NN_F32;
    ckpt = !strcmp(mode, "bf16ckpt");

    nn_seed((uint64_t)seed);
    mesh_seg_init(&m, &P, "", cfg);
    m.checkpointing = ckpt;

    /* the mesh */
    s[0] = faces; s[1] = MESH_SEG_IN;
    xh = nn_empty(NN_F32, 2, s);
    yh = nn_empty(NN_I32, 1, s);
    f = nn_f32_data(xh);
    lab = (int32_t *)yh->data;
    rs = 0x5eed0000ULL + (uint64_t)seed;
    for (j = 0; j < faces * MESH_SEG_IN; j++) f[j] = 2.0f * unif(&rs) - 1.0f;
    for (j = 0; j < faces; j++) { f[j * MESH_SEG_IN + MESH_SEG_PF] = unif(&rs); lab[j] = (int32_t)(mix(&rs) & 1); }
    if (check) {
        char path[1024];
        nn_tensor *lu8 = nn_empty(NN_U8, 1, s);
        for (j = 0; j < faces; j++) ((uint8_t *)lu8->data)[j] = (uint8_t)lab[j];
        char hv[16], cv[16];
        const char *meta[4];
        snprintf(hv, sizeof hv, "%d", cfg.num_heads);
        snprintf(cv, sizeof cv, "%d", cfg.chunk_size);
        meta[0] = "num_heads"; meta[1] = hv; meta[2] = "chunk_size"; meta[3] = cv;
        snprintf(path, sizeof path, "%s/init.safetensors", check);
        nn_params_save(path, &P, 2, meta);
        snprintf(path, sizeof path, "%s/features.npy", check); nn_npy_save(path, xh);
        snprintf(path, sizeof path, "%s/labels.npy", check); nn_npy_save(path, lu8);
        nn_tensor_free(lu8);
    }
    nn_params_to(&P, dev);                                /* in place; the optimiser comes after */
    x = dev == NN_CPU ? xh : nn_to(xh, dev);
    y = dev == NN_CPU ? yh : nn_to(yh, dev);
    opt = nn_adamw_new(&P, nn_adamw_default());           /* lr 1e-3 unused: the step passes 1e-4; wd 0.01 */

    if (check) { warmup = 0; steps = 1; }
    nn_set_training(check ? 0 : 1);
    times = (double *)calloc((size_t)steps, sizeof(double));
    printf("mesh_seg step: %lld faces, %s, mode %s, layers %d, heads %d, chunk %d, %lld parameters\n", faces,
           nn_device_name(dev), mode, cfg.num_layers, cfg.num_heads, cfg.chunk_size, (long long)nn_params_count(&P));
    for (step = 0; step < warmup + steps; step++) {
        double t0, t1, tf = 0, tb = 0, te = 0;
        size_t mf = 0, ms = 0, mb = 0;
        float gn;
        nn_tensor *loss;
        if (step == warmup) nn_mem_reset_peak(dev);
        nn_cuda_synchronize();
        t0 = now_s();
        nn_scope_begin();
        nn_params_zero_grad(&P);
        if (ac != NN_F32) nn_autocast_begin(ac);
        loss = nn_cross_entropy(mesh_seg_forward(&m, x), y, NULL, -100, 0.0);
        if (ac != NN_F32) nn_autocast_end();
        if (phases) {
            te = now_s();   /* the host has queued the forward */
            nn_cuda_synchronize();
            tf = now_s();
            mf = nn_mem_stats(dev).peak; ms = nn_mem_stats(dev).current;
            nn_mem_reset_peak(dev);
        }
        nn_backward(loss);
        if (phases) { nn_cuda_synchronize(); tb = now_s(); mb = nn_mem_stats(dev).peak; }
        if (check) {
            int k;
            printf("CHECK loss %.8g\n", nn_item(loss));
            for (k = 0; check_names[k]; k++) {
                nn_tensor *p = nn_params_find(&P, check_names[k]);
                if (!p || !p->grad) continue;   /* a name of a layer this --layers does not have */
                printf("CHECK grad %s %.8g\n", check_names[k], sqrt(nn_item(nn_sum_all(nn_mul(p->grad, p->grad)))));
            }
        }
        gn = nn_clip_grad_norm(&P, 1.0, 0);
        if (check) printf("CHECK grad_norm %.8g\n", gn);
        nn_adamw_step(opt, 1e-4);
        nn_scope_end(NULL);
        nn_cuda_synchronize();
        t1 = now_s();
        if (step >= warmup) { times[step - warmup] = t1 - t0; t_total += t1 - t0; }
        printf("  step %d%s: %.2f ms", step, step < warmup ? " (warm-up)" : "", 1e3 * (t1 - t0));
        if (phases) {
            printf("  (forward %.2f, queued in %.2f; backward %.2f, clip + AdamW %.2f; peak MiB forward %.0f, backward %.0f; "
                   "live after forward %.0f)", 1e3 * (tf - t0), 1e3 * (te - t0), 1e3 * (tb - tf), 1e3 * (t1 - tb), mf / 1048576.0,
                   mb / 1048576.0, ms / 1048576.0);
            if (step >= warmup) nn_mem_reset_peak(dev);   /* the peak of the next step alone */
        }
        printf("\n");
        fflush(stdout);
    }
    peak = nn_mem_stats(dev).peak;
    qsort(times, (size_t)steps, sizeof(double), cmp_double);
    printf("RESULT impl=nn.h device=%s faces=%lld mode=%s median_ms=%.2f mean_ms=%.2f peak_mib=%.1f\n", device, faces,
           mode, 1e3 * times[steps / 2], 1e3 * t_total / steps, peak / 1048576.0);
    free(times);
    nn_adamw_free(opt);
    if (x != xh) nn_tensor_free(x);
    if (y != yh) nn_tensor_free(y);
    nn_tensor_free(xh);
    nn_tensor_free(yh);
    nn_params_free(&P);
    nn_shutdown();
    return 0;
}
