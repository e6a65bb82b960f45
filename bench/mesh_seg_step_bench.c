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
                                     [--check DIR] [--phases]
   --phases: also time forward, backward and clipping + AdamW of every step separately (a synchronisation
   between them; the step's own time is then not comparable).
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

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

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

int main(int argc, char **argv) {
    const char *device = "cpu", *mode = "f32", *check = NULL;
    int steps = 5, warmup = 2, i, step, ckpt, phases = 0;
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
        double t0, t1, tf = 0, tb = 0;
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
        if (phases) { nn_cuda_synchronize(); tf = now_s(); }
        nn_backward(loss);
        if (phases) { nn_cuda_synchronize(); tb = now_s(); }
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
        if (phases) printf("  (forward %.2f, backward %.2f, clip + AdamW %.2f)", 1e3 * (tf - t0), 1e3 * (tb - tf), 1e3 * (t1 - tb));
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
