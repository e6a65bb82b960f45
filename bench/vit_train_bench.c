/* bench/vit_train_bench.c - one training step of a DINOv2-B/14 encoder (models/dinov2.h: 12 layers, 768 wide,
   12 heads, patch 14, LayerScale, MLP 3072) with one of two heads:
     --model encoder   CLS token -> Linear(768, 16) -> L1 loss against a fixed target;
     --model partloc   seed 001's Part Location network (models/part_location.h): the encoder on both images
                       of a pair, patch grids pooled to 32 x 32, 2 cross-attention layers, the MLP head to 4
                       outputs and the weighted L1 loss (w_trans 1, w_scale 0.5), as configs/part_location.yaml;
   AdamW (lr 1e-4, torch's defaults otherwise), global-norm clipping at 1.0, a gradient checkpoint per encoder
   layer and autocast (bf16 by default; f16 adds the loss scaler). Prints the time of
   every step, the median, and the peak bytes of the device pool during a step (nn_mem_stats(dev).peak after
   nn_mem_reset_peak) plus the process's peak RSS. bench/vit_train_torch.py is the PyTorch twin
   (transformers' Dinov2Model, SDPA attention, gradient checkpointing, torch.autocast).

   build:  cc -O2 -march=native -fopenmp -I. bench/vit_train_bench.c -o build/vit_train_bench -lm
           (with the CUDA backend: nvcc ... -DNN_CUDA bench/vit_train_bench.c nn_cuda.cu, then --device cuda)
   run:    build/vit_train_bench [--device cpu|cuda] [--model encoder|partloc] [--size 224] [--batch 1]
                                 [--steps 3] [--warmup 1] [--dtype bf16|f16|f32] [--no-ckpt] [--layers 12] [--seed 0]
                                 [--hidden 768 --heads 12] [--part-size SIZE] [--head-hidden 512] [--ds 32]
                                 [--profile] [--mem-trace]
           --profile prints where the timed steps' time went, op by op (nn_profile_begin); --mem-trace runs one
           more step that records who holds the memory at its peak (nn_mem_trace).
           --hidden/--heads change the encoder's width (MLP 4x); --part-size gives the part image its own size
           (the encoder interpolates its position grid, as Dinov2Model does); --head-hidden and --ds are
           part_location's mlp_hidden_dim and downsample_size. The demo's tiny config (configs/part_location_tiny.yaml):
             --model partloc --size 112 --part-size 56 --hidden 64 --heads 4 --layers 3 --head-hidden 256 --ds 8
             --batch 16 --dtype f32 --no-ckpt
   Inputs are random (pixels N(0,1), target U(-1,1)): the benchmark times a step, it does not train a task. */
#define _POSIX_C_SOURCE 200809L
#define NN_IMPLEMENTATION
#include "nn.h"
#include "models/part_location.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/resource.h>

#include "bench.h"

int main(int argc, char **argv) {
    const char *device = "cpu", *dtype = "bf16", *model = "encoder";
    int size = 224, batch = 1, steps = 3, warmup = 1, ckpt = 1, layers = 12, mem_trace = 0, i, step;
    int hidden = 0, heads = 0, part_size = 0, head_hidden = 512, ds = 32;   /* 0: ViT-B/14's, the whole's size */
    int profile = 0;
    nn_profile prof = {0, 0, {{0, 0, 0, 0, 0}}};
    unsigned long long seed = 0;
    nn_device dev;
    nn_dtype ac;
    dinov2_config c;
    dinov2 m;
    partloc_config pc;
    partloc pl;
    int is_pl;
    nn_params P = {0};
    nn_Linear head;
    nn_adamw_cfg cfg = nn_adamw_default();
    nn_adamw *opt;
    nn_grad_scaler scaler;
    nn_tensor *pixels, *pixels2 = NULL, *target;
    int64_t sp[4], sp2[4], st[2];
    double *times, t_total = 0;
    size_t peak = 0;
    struct rusage ru;

    for (i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--no-ckpt")) { ckpt = 0; continue; }
        if (!strcmp(a, "--mem-trace")) { mem_trace = 1; continue; }   /* one more step, untimed: who holds the peak */
        if (!strcmp(a, "--profile")) { profile = 1; continue; }       /* the timed steps' time per op (nn_profile) */
        if (!v) { fprintf(stderr, "%s needs a value\n", a); return 2; }
        if (!strcmp(a, "--device")) device = v;
        else if (!strcmp(a, "--size")) size = atoi(v);
        else if (!strcmp(a, "--batch")) batch = atoi(v);
        else if (!strcmp(a, "--steps")) steps = atoi(v);
        else if (!strcmp(a, "--warmup")) warmup = atoi(v);
        else if (!strcmp(a, "--dtype")) dtype = v;
        else if (!strcmp(a, "--model")) model = v;
        else if (!strcmp(a, "--layers")) layers = atoi(v);
        else if (!strcmp(a, "--seed")) seed = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--hidden")) hidden = atoi(v);
        else if (!strcmp(a, "--heads")) heads = atoi(v);
        else if (!strcmp(a, "--part-size")) part_size = atoi(v);
        else if (!strcmp(a, "--head-hidden")) head_hidden = atoi(v);
        else if (!strcmp(a, "--ds")) ds = atoi(v);
        else { fprintf(stderr, "unknown option %s\n", a); return 2; }
        i++;
    }
    dev = !strcmp(device, "cuda") ? NN_CUDA : NN_CPU;
    ac = !strcmp(dtype, "f16") ? NN_F16 : !strcmp(dtype, "f32") ? NN_F32 : NN_BF16;
    /* a size that is not a multiple of 14 (1024) is cut to whole patches by the stride-14 conv, as in torch */
    if (!part_size) part_size = size;
    if (size < 14 || part_size < 14 || batch < 1 || steps < 1 || warmup < 0 || layers < 1 || hidden < 0 || heads < 0 ||
        (hidden && (!heads || hidden % heads)) || head_hidden < 1 || ds < 1) {
        fprintf(stderr, "bad arguments (sizes >= 14; batch, steps, layers, head-hidden, ds >= 1; hidden a multiple "
                "of heads)\n");
        return 2;
    }

    is_pl = !strcmp(model, "partloc");
    if (!is_pl && strcmp(model, "encoder")) { fprintf(stderr, "--model must be encoder or partloc\n"); return 2; }
    nn_seed(seed);
    dinov2_config_named("vitb14", &c);
    c.layers = layers;
    if (hidden) { c.hidden = hidden; c.heads = heads; c.mlp_hidden = 4 * hidden; }
    c.image_size = size;          /* the position grid matches the input: no interpolation in the step */
    if (is_pl) {
        memset(&pc, 0, sizeof pc);   /* unnamed fields: their 0 defaults (xattn_qk_gain 0: independent q/k init) */
        pc.encoder = c;
        pc.cross_attention_layers = 2;
        pc.mlp_hidden_dim = head_hidden;
        pc.downsample_size = ds;
        partloc_init(&pl, &P, &pc);
        pl.encoder.checkpointing = ckpt;
    } else {
        dinov2_init(&m, &P, "", &c);
        m.checkpointing = ckpt;
        nn_Linear_init(&head, &P, "head", c.hidden, 16, 1);
    }
    nn_params_mark_no_decay(&P);
    nn_params_to(&P, dev);
    cfg.lr = 1e-4;
    opt = nn_adamw_new(&P, cfg);
    scaler = nn_grad_scaler_new(65536.0, 2.0, 0.5, 2000, ac == NN_F16);
    sp[0] = sp2[0] = batch; sp[1] = sp2[1] = 3; sp[2] = sp[3] = size; sp2[2] = sp2[3] = part_size;
    st[0] = batch; st[1] = is_pl ? 4 : 16;
    {
        nn_tensor *a = nn_randn(4, sp), *b = nn_uniform(2, st, -1, 1), *a2 = is_pl ? nn_randn(4, sp2) : NULL;
        pixels = nn_to(a, dev);
        target = nn_to(b, dev);
        if (a2) pixels2 = nn_to(a2, dev);
        nn_tensor_free(a); nn_tensor_free(b);
        if (a2) nn_tensor_free(a2);
    }
    printf("nn.h ViT/14 training step (%s): device %s, %dx%d (part %d), hidden %d, batch %d, %d layers, %s, "
           "checkpointing %s, %lld parameters, %d threads\n", model, device, size, size, part_size, c.hidden, batch,
           layers, nn_dtype_name(ac), ckpt ? "per layer" : "off",
           (long long)nn_params_count(&P), bench_threads());
    times = (double *)calloc((size_t)steps, sizeof(double));
    for (step = 0; step < warmup + steps + mem_trace; step++) {
        nn_tensor *loss, *cls, *pred;
        double t0, t1, l;
        size_t pk;
        int traced = step == warmup + steps;
        if (profile && step == warmup) nn_profile_begin(1);
        if (profile && traced) prof = nn_profile_end();
        nn_mem_reset_peak(dev);
        nn_mem_trace(dev, traced);
        t0 = now_s();
        nn_scope_begin();
        nn_autocast_begin(ac);
        if (is_pl) {
            pred = partloc_forward(&pl, pixels, pixels2);
            loss = partloc_loss(pred, target, 1.0, 0.5, NULL, NULL);
        } else {
            cls = nn_squeeze(nn_slice(dinov2_forward(&m, pixels), 1, 0, 1), 1);   /* [B, 768] */
            pred = nn_Linear_forward(&head, cls);
            loss = nn_l1_loss(pred, target);
        }
        nn_autocast_end();
        nn_params_zero_grad(&P);
        nn_backward(nn_scaler_scale(&scaler, loss));
        l = nn_item(loss);                       /* also waits for the device */
        nn_scope_end(NULL);
        nn_scaler_unscale(&scaler, &P);
        nn_clip_grad_norm(&P, 1.0, 0);
        nn_scaler_step(&scaler, opt, cfg.lr);
        nn_scaler_update(&scaler);
        {   /* wait for the optimiser's kernels (a device queues them) */
            int g = nn_set_grad_enabled(0);
            nn_scope_begin();
            nn_item(nn_sum_all(P.items[P.n - 1].t));
            nn_scope_end(NULL);
            nn_set_grad_enabled(g);
        }
        t1 = now_s();
        if (traced) {
            nn_mem_breakdown mb = nn_mem_peak_breakdown(dev);
            nn_mem_trace(dev, 0);
            printf("memory at the peak (%.1f MiB, in %s):\n", mb.peak / 1048576.0, mb.where);
            for (i = 0; i < mb.n; i++)
                printf("  %-56s %9.1f MiB  %lld blocks\n", mb.holder[i].what, mb.holder[i].bytes / 1048576.0,
                       (long long)mb.holder[i].blocks);
            break;
        }
        pk = nn_mem_stats(dev).peak;
        if (pk > peak) peak = pk;
        printf("step %d%s  %.3f s  loss %.5f  peak %.1f MiB\n", step, step < warmup ? " (warmup)" : "", t1 - t0, l,
               (double)pk / 1048576.0);
        if (step >= warmup) { times[step - warmup] = t1 - t0; t_total += t1 - t0; }
    }
    if (profile) {   /* the timed steps only (a --mem-trace step is not in it) */
        const nn_profile pr = mem_trace ? prof : nn_profile_end();
        printf("time per op over the %d timed steps (%.1f ms a step; nn_profile, GPU synchronised per op):\n", steps,
               1e3 * pr.total_s / steps);
        nn_profile_print(&pr, steps);
    }
    qsort(times, (size_t)steps, sizeof(double), cmp_double);
    getrusage(RUSAGE_SELF, &ru);
    printf("RESULT impl=nn.h model=%s device=%s size=%d batch=%d dtype=%s ckpt=%d step_median_s=%.4f step_mean_s=%.4f "
           "peak_pool_MiB=%.1f max_rss_MiB=%.1f skipped=%lld\n", model, device, size, batch, nn_dtype_name(ac), ckpt,
           times[steps / 2], t_total / steps, (double)peak / 1048576.0, (double)ru.ru_maxrss / 1024.0,
           (long long)scaler.skipped);
    free(times);
    nn_adamw_free(opt);
    nn_tensor_free(pixels);
    if (pixels2) nn_tensor_free(pixels2);
    nn_tensor_free(target);
    nn_params_free(&P);
    if (is_pl) partloc_free(&pl); else dinov2_free(&m);
    nn_shutdown();
    return 0;
}
