/* part_location.c - seed 001: where does a part go in the whole 3D model?  train | eval | infer

     part_location train --config configs/part_location.yaml [--set training.batch_size=4] [--resume] [--stop-after E]
     part_location eval  --checkpoint RUN/best_model.safetensors [--split test|val|train] [--data-dir D] [--report F]
     part_location infer --checkpoint C --whole W.png --part P.png
     part_location infer --checkpoint C --data-dir D [--out results.json]

   Config (requirement 7): every key has a default (`part_location help` lists them); the effective
   config is printed, logged to TensorBoard and stored in every checkpoint, so eval and infer rebuild the
   architecture from the checkpoint alone (req. 5.4).
   Data (req. 1): data_dir/{model}/{model}-whole.png + {model}-{part}.png + {model}-{part}.json; one
   sample per part; split train/val/test by model; resize to image_size, ImageNet normalisation; colour
   jitter (the same draw on whole and part, so colours still match) in training only.
   Model (req. 2, 3): models/part_location.h. Optimisation (req. 4): AdamW, linear warmup then cosine
   per optimiser step, gradient accumulation, global-norm clipping, a checkpoint per epoch, best_model on
   the validation loss, --resume from the latest checkpoint. */
#define KIT_IMPLEMENTATION
#include "kit.h"
#define NN_IMPLEMENTATION
#include "nn.h"
#include "models/part_location.h"
#include <dirent.h>
#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---------------------------------------------------------------------------------------------- config */

static kit_cfg *make_config(void) {
    static const double jitter[4] = {0.2, 0.2, 0.2, 0.02};
    kit_cfg *c = kit_cfg_new();
    kit_cfg_add_string(c, "data.data_dir", "data/images", NULL, "folder of {model}/ subfolders");
    kit_cfg_add_string(c, "data.output_dir", "runs/part_location", NULL, "checkpoints, TensorBoard logs, reports");
    kit_cfg_add_float(c, "data.train_ratio", 0.8, 0, 1, "share of models for training");
    kit_cfg_add_float(c, "data.val_ratio", 0.1, 0, 1, "share of models for validation");
    kit_cfg_add_float(c, "data.test_ratio", 0.1, 0, 1, "share of models for testing");
    kit_cfg_add_int(c, "data.split_seed", 42, 0, 1LL << 62, "seed of the model-level split");
    kit_cfg_add_int(c, "data.image_size", 1024, 14, 4096, "images are resized to image_size^2");
    kit_cfg_add_int(c, "data.part_image_size", 0, 0, 4096,
                    "part images are resized to this (0: image_size); the shared encoder reads them on their own "
                    "patch grid, the position embeddings interpolated as for any input size");
    kit_cfg_add_floats(c, "data.color_jitter", jitter, 4, 4, 0, 1, "brightness, contrast, saturation, hue (train only)");
    kit_cfg_add_int(c, "data.num_workers", 2, 0, 64, "image decoding threads");
    kit_cfg_add_string(c, "model.backbone_name", "vitb14", "vits14|vitb14|vitl14|custom", "DINOv2 size (custom: model.custom_*)");
    kit_cfg_add_string(c, "model.pretrained", "", NULL, "facebook/dinov2-* model.safetensors to start from (\"\": random init)");
    kit_cfg_add_int(c, "model.pretrained_image_size", 518, 14, 4096, "config.image_size of the encoder: its position grid is this / 14");
    kit_cfg_add_int(c, "model.custom_hidden_size", 96, 8, 4096, "backbone custom: hidden size");
    kit_cfg_add_int(c, "model.custom_layers", 4, 1, 64, "backbone custom: layers");
    kit_cfg_add_int(c, "model.custom_heads", 4, 1, 64, "backbone custom: heads");
    kit_cfg_add_int(c, "model.custom_patch_size", 14, 1, 64, "backbone custom: patch size (DINOv2: 14)");
    kit_cfg_add_float(c, "model.pos_embed_init_std", 0.02, 0, 10, "std of the position embeddings at random init (DINOv2: 0.02)");
    kit_cfg_add_string(c, "model.pos_embed_init", "trunc_normal", "trunc_normal|sincos",
                       "random init of the position embeddings: DINOv2's trunc_normal(std), or a 2-D sin-cos code (learnable from there)");
    kit_cfg_add_int(c, "model.cross_attention_layers", 2, 0, 32, "cross-attention layers (part queries, whole keys/values)");
    kit_cfg_add_int(c, "model.mlp_hidden_dim", 512, 1, 65536, "hidden width of the prediction head");
    kit_cfg_add_int(c, "model.downsample_size", 32, 1, 512, "patch grid pooled to downsample_size^2 tokens");
    kit_cfg_add_float(c, "model.xattn_qk_gain", 0, 0, 100,
                      "0: cross-attention q/k projections drawn independently; g > 0: k_proj starts equal to q_proj, "
                      "both scaled by g (attention starts as a similarity search)");
    kit_cfg_add_bool(c, "model.use_gradient_checkpointing", 1, "recompute encoder layers in backward");
    kit_cfg_add_int(c, "training.batch_size", 2, 1, 4096, "pairs per micro-batch");
    kit_cfg_add_int(c, "training.num_epochs", 50, 1, 100000, "epochs");
    kit_cfg_add_float(c, "training.learning_rate", 1e-4, 0, 1, "AdamW peak learning rate");
    kit_cfg_add_float(c, "training.min_lr", 1e-6, 0, 1, "cosine floor");
    kit_cfg_add_float(c, "training.warmup_epochs", 1, 0, 1000, "linear warmup (fractional epochs allowed)");
    kit_cfg_add_float(c, "training.weight_decay", 0.05, 0, 10, "AdamW decoupled weight decay (not on biases/norms)");
    kit_cfg_add_float(c, "training.grad_clip", 1.0, 0, 1e9, "max global gradient norm (0: off)");
    kit_cfg_add_int(c, "training.accumulation_steps", 1, 1, 4096, "micro-batches per optimiser step");
    kit_cfg_add_bool(c, "training.use_amp", 1, "mixed precision: autocast (on the CPU emulated by rounding; f16 scales the loss)");
    kit_cfg_add_string(c, "training.device", "auto", "auto|cpu|cuda", "where the model runs (auto: cuda when built with -DNN_CUDA and a GPU is present)");
    kit_cfg_add_bool(c, "training.tf32", 0, "GPU: f32 matrix products may use TF32 tensor cores (as torch.backends.cuda.matmul.allow_tf32)");
    kit_cfg_add_string(c, "training.amp_dtype", "bf16", "bf16|f16", "autocast dtype");
    kit_cfg_add_int(c, "training.seed", 42, 0, 1LL << 62, "init, shuffling and augmentation seed");
    kit_cfg_add_int(c, "training.keep_checkpoints", 2, 1, 1000, "epoch checkpoints kept on disk");
    kit_cfg_add_int(c, "training.max_steps_per_epoch", 0, 0, 1LL << 40, "cap on micro-batches per epoch (0: all; smoke tests)");
    kit_cfg_add_float(c, "training.time_budget_minutes", 0, 0, 1e6,
                      "0: off. Else the first epoch is timed and num_epochs lowered to what fits in this wall time "
                      "(the cosine is fitted to the new length; the checkpoints store it)");
    kit_cfg_add_int(c, "training.profile_steps", 0, 0, 1 << 20,
                    "0: off. Else micro-batches 3..2+N of the first epoch are timed op by op (nn_profile, the GPU "
                    "synchronised per op) and the table printed");
    kit_cfg_add_float(c, "loss.w_trans", 1.0, 0, 1e6, "weight of the translation L1");
    kit_cfg_add_float(c, "loss.w_scale", 0.5, 0, 1e6, "weight of the scale L1");
    return c;
}

#define CI(k) ((int)kit_cfg_int(cfg, k))   /* in functions with a `cfg` in reach */
#define CF(k) kit_cfg_float(cfg, k)
#define CS(k) kit_cfg_string(cfg, k)

static partloc_config model_config(const kit_cfg *cfg) {
    partloc_config m;
    const char *b = CS("model.backbone_name");
    memset(&m, 0, sizeof m);
    if (!strcmp(b, "custom")) {
        dinov2_config_named("vits14", &m.encoder);
        m.encoder.hidden = CI("model.custom_hidden_size");
        m.encoder.layers = CI("model.custom_layers");
        m.encoder.heads = CI("model.custom_heads");
        m.encoder.patch = CI("model.custom_patch_size");
        m.encoder.mlp_hidden = 4 * m.encoder.hidden;
    } else {
        dinov2_config_named(b, &m.encoder);
    }
    m.encoder.image_size = CI("model.pretrained_image_size");
    m.cross_attention_layers = CI("model.cross_attention_layers");
    m.mlp_hidden_dim = CI("model.mlp_hidden_dim");
    m.downsample_size = CI("model.downsample_size");
    m.xattn_qk_gain = CF("model.xattn_qk_gain");
    return m;
}

/* ------------------------------------------------------------------------------------------------ data */

/* the strings are the scan's (strdup): a split's samples point at the scanned set's, which frees them. (Fixed
   char arrays here made 5 KiB a sample: 200 MiB of the 6000-model demo's 260 MiB resident.) */
typedef struct { char *model, *part, *whole_png, *part_png; float target[4]; } sample;
typedef struct { sample *s; size_t n, cap; } samples;

static void free_scanned(samples *S) {
    size_t i;
    for (i = 0; i < S->n; i++) { free(S->s[i].model); free(S->s[i].part); free(S->s[i].whole_png); free(S->s[i].part_png); }
    free(S->s);
}
typedef struct { char **v; size_t n, cap; } strings;

static void push_str(strings *a, const char *s) {
    if (a->n == a->cap) { a->cap = a->cap ? 2 * a->cap : 64; a->v = (char **)realloc(a->v, a->cap * sizeof *a->v); }
    a->v[a->n++] = strdup(s);
}
static void free_strs(strings *a) { size_t i; for (i = 0; i < a->n; i++) free(a->v[i]); free(a->v); }
static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }
static int is_file(const char *p) { struct stat st; return stat(p, &st) == 0 && S_ISREG(st.st_mode); }
static int is_dir(const char *p) { struct stat st; return stat(p, &st) == 0 && S_ISDIR(st.st_mode); }

static void list_dir(const char *dir, int want_dirs, strings *out) {
    DIR *d = opendir(dir);
    struct dirent *e;
    char p[2048];
    if (!d) return;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        if (want_dirs ? is_dir(p) : is_file(p)) push_str(out, e->d_name);
    }
    closedir(d);
    qsort(out->v, out->n, sizeof *out->v, cmp_str);
}

/* the numbers of a JSON array `"key": [a, b, ...]` (the label files are small and flat) */
static int json_floats(const char *text, const char *key, float *out, int n) {
    char pat[64];
    const char *p;
    int i;
    snprintf(pat, sizeof pat, "\"%s\"", key);
    if (!(p = strstr(text, pat))) return 0;
    p += strlen(pat);
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == ':') p++;
    if (*p++ != '[') return 0;
    for (i = 0; i < n; i++) {
        char *end;
        double v = strtod(p, &end);
        if (end == p || !isfinite(v)) return 0;
        out[i] = (float)v;
        p = end;
        while (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t') p++;
        if (i + 1 < n && *p++ != ',') return 0;
    }
    return 1;
}

static int read_label(const char *path, float target[4], char *why, size_t wn) {
    FILE *f = fopen(path, "rb");
    char buf[8192];
    size_t n;
    float sc[1];
    if (!f) { snprintf(why, wn, "%s", strerror(errno)); return 0; }
    n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    if (!json_floats(buf, "translation", target, 3)) { snprintf(why, wn, "no \"translation\": [x, y, z]"); return 0; }
    if (!json_floats(buf, "scale", sc, 1)) { snprintf(why, wn, "no \"scale\": [s, ...]"); return 0; }
    target[3] = sc[0];   /* uniform scale: the first component (rotation is ignored in this phase) */
    return 1;
}

/* Scans data_dir (req. 1.1-1.3, 1.6, 1.7): one sample per part image with a label. */
static void scan_data(const char *data_dir, samples *S, strings *models_out) {
    strings models = {0};
    size_t i, j;
    list_dir(data_dir, 1, &models);
    if (!models.n) fprintf(stderr, "warning: no model folders in %s\n", data_dir);
    for (i = 0; i < models.n; i++) {
        const char *m = models.v[i];
        char dir[1200], whole[2048], prefix[300];
        strings files = {0};
        size_t before = S->n;
        snprintf(dir, sizeof dir, "%s/%s", data_dir, m);
        snprintf(whole, sizeof whole, "%s/%s-whole.png", dir, m);
        if (!is_file(whole)) {
            fprintf(stderr, "warning: %s: no %s-whole.png, skipping the model's parts\n", dir, m);
            continue;
        }
        snprintf(prefix, sizeof prefix, "%s-", m);
        list_dir(dir, 0, &files);
        for (j = 0; j < files.n; j++) {
            const char *f = files.v[j];
            size_t lf = strlen(f), lp = strlen(prefix);
            char part[256], json[2048], why[256];
            sample s;
            if (lf <= lp + 4 || strncmp(f, prefix, lp) || strcmp(f + lf - 4, ".png")) continue;
            if (lf - lp - 4 >= sizeof part) continue;
            memcpy(part, f + lp, lf - lp - 4);
            part[lf - lp - 4] = 0;
            if (!strcmp(part, "whole")) continue;
            snprintf(json, sizeof json, "%s/%s-%s.json", dir, m, part);
            if (!is_file(json)) { fprintf(stderr, "warning: %s/%s: no label %s-%s.json, skipped\n", dir, f, m, part); continue; }
            memset(&s, 0, sizeof s);
            if (!read_label(json, s.target, why, sizeof why)) { fprintf(stderr, "warning: %s: %s, skipped\n", json, why); continue; }
            s.model = strdup(m);
            s.part = strdup(part);
            s.whole_png = strdup(whole);
            s.part_png = (char *)malloc(strlen(dir) + lf + 2);
            if (!s.model || !s.part || !s.whole_png || !s.part_png) { fprintf(stderr, "out of memory scanning %s\n", dir); exit(1); }
            sprintf(s.part_png, "%s/%s", dir, f);
            if (S->n == S->cap) { S->cap = S->cap ? 2 * S->cap : 256; S->s = (sample *)realloc(S->s, S->cap * sizeof *S->s); }
            S->s[S->n++] = s;
        }
        if (S->n > before && models_out) push_str(models_out, m);
        free_strs(&files);
    }
    free_strs(&models);
}

/* Model-level split (req. 1.5): the model names are shuffled with split_seed and cut by the ratios. */
static void split_data(const kit_cfg *cfg, const samples *all, samples out[3]) {
    strings models = {0};
    size_t i, j, n, n_tr, n_va, *idx;
    double tr = CF("data.train_ratio"), va = CF("data.val_ratio"), te = CF("data.test_ratio"), sum = tr + va + te;
    int *which;
    for (i = 0; i < all->n; i++)
        if (!models.n || strcmp(models.v[models.n - 1], all->s[i].model)) push_str(&models, all->s[i].model);
    n = models.n;
    idx = (size_t *)malloc((n + 1) * sizeof *idx);
    which = (int *)malloc((n + 1) * sizeof *which);
    kit_shuffle_indices(idx, n, (uint64_t)kit_cfg_int(cfg, "data.split_seed"), 0);
    n_tr = (size_t)floor(n * tr / sum + 0.5);
    n_va = (size_t)floor(n * va / sum + 0.5);
    if (n >= 3 && va > 0 && n_va == 0) n_va = 1;
    if (n_tr + n_va > n) n_va = n - (n_tr < n ? n_tr : n);
    for (i = 0; i < n; i++) which[idx[i]] = i < n_tr ? 0 : i < n_tr + n_va ? 1 : 2;
    for (j = 0; j < 3; j++) memset(&out[j], 0, sizeof out[j]);
    for (i = 0, j = 0; i < all->n; i++) {
        samples *o;
        while (strcmp(models.v[j], all->s[i].model)) j++;
        o = &out[which[j]];
        if (o->n == o->cap) { o->cap = o->cap ? 2 * o->cap : 64; o->s = (sample *)realloc(o->s, o->cap * sizeof *o->s); }
        o->s[o->n++] = all->s[i];
    }
    free(idx);
    free(which);
    free_strs(&models);
}

/* the size part images are resized to */
static int part_size(const kit_cfg *cfg) { return CI("data.part_image_size") > 0 ? CI("data.part_image_size") : CI("data.image_size"); }

/* load -> resize (PIL bilinear, antialiased, as torchvision's Resize) -> [jitter] -> normalise, CHW */
static int load_image(const char *path, int size, const kit_jitter *jit, kit_rng *rng, float *chw, kit_err *err) {
    kit_image im, rs;
    if (kit_image_load(path, &im, err)) return 1;
    if (im.width != size || im.height != size) {
        if (kit_image_resize(&im, &rs, size, size, KIT_FILTER_BILINEAR)) { kit_image_free(&im); return kit_fail(err, KIT_ERR_NOMEM, "resize %s", path); }
        kit_image_free(&im);
        im = rs;
    }
    if (jit) kit_color_jitter(&im, jit, rng);
    kit_image_normalize_chw(&im, kit_imagenet_mean, kit_imagenet_std, chw);
    kit_image_free(&im);
    return 0;
}

typedef struct { const samples *S; int size, psize, augment; kit_jitter jit; } dataset_ctx;   /* psize: part images */

static int get_item(void *ctx, size_t i, void *const *fields, size_t *lengths, kit_rng *rng, kit_err *err) {
    const dataset_ctx *d = (const dataset_ctx *)ctx;
    const sample *s = &d->S->s[i];
    kit_rng r2 = *rng;   /* the same jitter draw for both images: a part keeps the colour it has in the whole */
    (void)lengths;
    if (load_image(s->whole_png, d->size, d->augment ? &d->jit : NULL, rng, (float *)fields[0], err)) return 1;
    if (load_image(s->part_png, d->psize, d->augment ? &d->jit : NULL, &r2, (float *)fields[1], err)) return 1;
    memcpy(fields[2], s->target, sizeof s->target);
    return 0;
}

static kit_loader *make_loader(dataset_ctx *d, const kit_cfg *cfg, int shuffle, int batch) {
    size_t px = (size_t)3 * CI("data.image_size") * CI("data.image_size");
    kit_dataset ds;
    kit_loader_opts o;
    kit_err err;
    kit_loader *L;
    memset(&ds, 0, sizeof ds);
    ds.len = d->S->n; ds.nfields = 3; ds.get_item = get_item; ds.ctx = d;
    ds.fields[0].name = "whole"; ds.fields[0].dtype = KIT_F32; ds.fields[0].inner = px; ds.fields[0].max_len = 1;
    ds.fields[1] = ds.fields[0]; ds.fields[1].name = "part"; ds.fields[1].inner = (size_t)3 * d->psize * d->psize;
    ds.fields[2].name = "target"; ds.fields[2].dtype = KIT_F32; ds.fields[2].inner = 4; ds.fields[2].max_len = 1;
    memset(&o, 0, sizeof o);
    o.batch_size = (size_t)batch; o.workers = CI("data.num_workers"); o.prefetch = 2; o.shuffle = shuffle;
    o.seed = (uint64_t)kit_cfg_int(cfg, "training.seed");
    if (!(L = kit_loader_new(&ds, &o, &err))) { fprintf(stderr, "loader: %s\n", err.msg); exit(1); }
    return L;
}

/* field f of a batch as a tensor: the targets on the CPU (the loss is computed there), the images on dev,
   copied once from the loader's buffer (at 1024 px a batch of 16 is 200 MB) */
static nn_tensor *batch_tensor(const kit_batch *b, int f, int size, nn_device dev) {
    int64_t s[4];
    s[0] = (int64_t)b->size;
    if (f == 2) { s[1] = 4; return nn_from_f32(2, s, (const float *)b->data[f]); }
    s[1] = 3; s[2] = size; s[3] = size;
    return nn_from_data_on(dev, NN_F32, 4, s, b->data[f]);
}

/* --------------------------------------------------------------------------------------------- model */

/* dev: where the parameters live and the model runs. Images are decoded on the CPU (loader threads) and
   copied to dev once per batch; predictions come back to the CPU for the loss, the metrics and the JSON
   (the head's [B, 4] output: a few bytes, and the loss value is read every step anyway). */
typedef struct { kit_cfg *cfg; partloc net; nn_params P; nn_device dev; } app;
#define CF_A(k) kit_cfg_float(a->cfg, k)

/* "auto" | "cpu" | "cuda" (config key training.device, or --device for eval and infer) -> a device */
static nn_device pick_device(const char *want) {
    if (!strcmp(want, "cpu")) return NN_CPU;
    if (!strcmp(want, "cuda")) {
#ifdef NN_CUDA
        if (!nn_cuda_available()) { fprintf(stderr, "device cuda: no GPU found (nn_cuda_available() is 0)\n"); exit(2); }
        return NN_CUDA;
#else
        fprintf(stderr, "device cuda: this build has no CUDA (make part-location-cuda builds %s)\n",
                "build/part_location/part_location_cuda");
        exit(2);
#endif
    }
    if (strcmp(want, "auto")) { fprintf(stderr, "device must be auto, cpu or cuda, got '%s'\n", want); exit(2); }
    return nn_cuda_available() ? NN_CUDA : NN_CPU;
}

/* the parameters (and gradients) move in place, so the modules' pointers stay valid; before the optimiser
   is made, so its moments are created on the same device */
static void params_to_device(app *a) {
    if (a->dev != NN_CPU) nn_params_to(&a->P, a->dev);
    if (a->dev == NN_CUDA) nn_cuda_set_tf32(kit_cfg_bool(a->cfg, "training.tf32"));
}

/* A 2-D sin-cos code on the G x G position grid [1, 1 + G*G, D] (the CLS row stays 0). A quarter of the
   channels each: sin(y w_k), cos(y w_k), sin(x w_k), cos(x w_k), x and y in patches, with q = D/4
   frequencies spread geometrically from pi/(2G) (a quarter period over the grid: a ramp) to pi/2 (a period
   of 4 patches), times sqrt(2) so a channel's mean square is about 1 (as DINOv2's patch content at init and
   pos_embed_init_std 1). The frequencies of Vaswani et al. (10000^(-k/q)) were measured first: for D = 64-96
   most of them are below 0.03 rad per patch, so those channels are constant over an 8 x 8 grid and the
   code is quiet (README). Channels left over when D is not a multiple of 4 stay 0. Unlike a random init,
   nearby patches start with similar codes and the code is a smooth function of position, which a head
   that regresses coordinates can read. */
static void init_pos_sincos(nn_tensor *pe, int G) {
    int64_t D = pe->shape[2], q = D / 4, y, x, k;
    const double pi = 3.14159265358979323846, amp = sqrt(2.0);
    float *h = (float *)calloc((size_t)pe->numel, sizeof(float));
    if (!h) { fprintf(stderr, "init_pos_sincos: out of memory\n"); exit(1); }
    for (y = 0; y < G; y++)
        for (x = 0; x < G; x++) {
            float *r = h + (1 + y * G + x) * D;
            for (k = 0; k < q; k++) {
                double w = pi / (2.0 * G) * pow((double)G, q > 1 ? (double)k / (double)(q - 1) : 0.0);
                r[k] = (float)(amp * sin(y * w)); r[q + k] = (float)(amp * cos(y * w));
                r[2 * q + k] = (float)(amp * sin(x * w)); r[3 * q + k] = (float)(amp * cos(x * w));
            }
        }
    memcpy(nn_f32_data(pe), h, (size_t)pe->numel * sizeof(float));
    free(h);
}

static void build_model(app *a, int for_training) {
    partloc_config mc = model_config(a->cfg);
    nn_seed((uint64_t)kit_cfg_int(a->cfg, "training.seed"));
    partloc_init(&a->net, &a->P, &mc);
    /* trained from scratch, a small encoder needs a position signal comparable with the patch content */
    if (!strcmp(kit_cfg_string(a->cfg, "model.pos_embed_init"), "sincos"))
        init_pos_sincos(a->net.encoder.position_embeddings, a->net.encoder.grid);
    else
        nn_init_trunc_normal_(a->net.encoder.position_embeddings, 0, CF_A("model.pos_embed_init_std"),
                              -2 * CF_A("model.pos_embed_init_std"), 2 * CF_A("model.pos_embed_init_std"));
    a->net.encoder.checkpointing = for_training && kit_cfg_bool(a->cfg, "model.use_gradient_checkpointing");
}

/* facebook/dinov2-* weights (Dinov2Model's names) into the "encoder." part of the registry */
static void load_pretrained(app *a, const char *path) {
    nn_params E = {0};
    nn_load_opts o = {1, 1, NULL, NULL};
    int k;
    for (k = 0; k < a->P.n; k++)
        if (!strncmp(a->P.items[k].name, "encoder.", 8)) nn_params_add(&E, a->P.items[k].name + 8, nn_retain(a->P.items[k].t));
    nn_params_load(path, &E, &o, NULL);
    nn_params_free(&E);   /* drops the extra references only */
    printf("encoder weights: %s\n", path);
}

/* a checkpoint's config (stored as metadata) -> a fresh schema with those values */
static kit_cfg *config_from_checkpoint(const char *path) {
    nn_safetensors *f = nn_safetensors_open(path);
    const char *text = nn_safetensors_meta(f, "config");
    kit_cfg *cfg = make_config();
    if (!text || kit_cfg_load_string(cfg, text, path)) {
        fprintf(stderr, "%s: no usable config in the checkpoint%s%s\n", path, text ? ": " : "", text ? kit_cfg_error(cfg) : "");
        exit(1);
    }
    nn_safetensors_close(f);
    return cfg;
}

static void load_weights(app *a, const char *path) {
    nn_load_opts o = {1, 0, "optim.", NULL};
    nn_params_load(path, &a->P, &o, NULL);
}

/* the autocast dtype of the config (NN_F32: off) */
static nn_dtype amp_dtype(const kit_cfg *cfg) {
    if (!kit_cfg_bool(cfg, "training.use_amp")) return NN_F32;
    return strcmp(kit_cfg_string(cfg, "training.amp_dtype"), "f16") == 0 ? NN_F16 : NN_BF16;
}

/* whole, part: image batches (on the CPU or already on the model's device) -> pred [B, 4], f32 on the CPU
   (differentiable: backward sends the gradient back through the copy to the device) */
static nn_tensor *predict(app *a, nn_tensor *whole, nn_tensor *part) {
    nn_tensor *y;
    if (a->dev == NN_CPU) return partloc_forward(&a->net, whole, part);
    nn_scope_begin();
    y = partloc_forward(&a->net, whole->device == a->dev ? whole : nn_to(whole, a->dev),
                        part->device == a->dev ? part : nn_to(part, a->dev));
    if (y->dtype != NN_F32) y = nn_cast(y, NN_F32);   /* an autocast output may be low precision */
    return nn_scope_end(nn_to(y, NN_CPU));
}

/* evaluation and inference: under the training's autocast on a GPU (as torch users run eval in autocast;
   f32 attention there is the slow checking kernel). The CPU keeps f32, where emulation would only cost time. */
static nn_tensor *predict_eval(app *a, nn_tensor *whole, nn_tensor *part) {
    nn_dtype amp = a->dev == NN_CPU ? NN_F32 : amp_dtype(a->cfg);
    nn_tensor *y;
    if (amp != NN_F32) nn_autocast_begin(amp);
    y = predict(a, whole, part);
    if (amp != NN_F32) nn_autocast_end();
    return y;
}

/* ---------------------------------------------------------------------------------------------- eval */

typedef struct { double loss, lt, ls, terr, sabs, srel; size_t n; } metrics;

/* runs a split; per-sample rows into *rows (n x 10: pred[4], target[4], terr, srel) when rows != NULL */
static metrics evaluate(app *a, const samples *S, double w_t, double w_s, float **rows) {
    dataset_ctx d;
    kit_loader *L;
    kit_batch b;
    kit_err err;
    metrics m;
    const kit_cfg *cfg = a->cfg;
    int size = CI("data.image_size"), prev_g, prev_t, rc;
    size_t done = 0;
    memset(&m, 0, sizeof m);
    if (rows) *rows = (float *)calloc(S->n * 10 + 1, sizeof(float));
    if (!S->n) return m;   /* before grad mode goes off: an empty val split must not leave it off for training */
    prev_g = nn_set_grad_enabled(0);
    prev_t = nn_set_training(0);
    d.S = S; d.size = size; d.psize = part_size(cfg); d.augment = 0;
    L = make_loader(&d, a->cfg, 0, CI("training.batch_size"));
    kit_loader_start_epoch(L, 0);
    while ((rc = kit_loader_next(L, &b, &err)) != 0) {
        nn_tensor *pred, *tgt;
        const float *p, *t;
        double lt, ls;
        size_t i;
        if (rc < 0) { fprintf(stderr, "warning: %s\n", err.msg); continue; }
        nn_scope_begin();
        tgt = batch_tensor(&b, 2, size, NN_CPU);
        pred = predict_eval(a, batch_tensor(&b, 0, size, a->dev), batch_tensor(&b, 1, d.psize, a->dev));
        partloc_loss(pred, tgt, w_t, w_s, &lt, &ls);
        p = nn_f32_data(pred); t = nn_f32_data(tgt);
        for (i = 0; i < b.size; i++) {
            const float *pi = p + 4 * i, *ti = t + 4 * i;
            double dx = pi[0] - ti[0], dy = pi[1] - ti[1], dz = pi[2] - ti[2];
            double terr = sqrt(dx * dx + dy * dy + dz * dz), sabs = fabs(pi[3] - ti[3]);
            double srel = sabs / (fabs(ti[3]) > 1e-8 ? fabs(ti[3]) : 1e-8);
            m.terr += terr; m.sabs += sabs; m.srel += srel;
            if (rows) {
                float *r = *rows + 10 * b.items[i];
                memcpy(r, pi, 4 * sizeof(float)); memcpy(r + 4, ti, 4 * sizeof(float));
                r[8] = (float)terr; r[9] = (float)srel;
            }
        }
        m.lt += lt * b.size; m.ls += ls * b.size; m.n += b.size;
        done += b.size;
        nn_scope_end(NULL);
    }
    kit_loader_free(L);
    if (m.n) { m.lt /= m.n; m.ls /= m.n; m.terr /= m.n; m.sabs /= m.n; m.srel /= m.n; }
    m.loss = w_t * m.lt + w_s * m.ls;
    nn_set_grad_enabled(prev_g);
    nn_set_training(prev_t);
    (void)done;
    return m;
}

/* ---------------------------------------------------------------------------------------------- train */

/* "a/b" into buf; a path that does not fit stops the program with its name (never a truncated path) */
static void path_join(char *buf, size_t n, const char *a, const char *b) {
    if (snprintf(buf, n, "%s/%s", a, b) >= (int)n) { fprintf(stderr, "path too long: %s/%s\n", a, b); exit(1); }
}

static void epoch_path(char *buf, size_t n, const char *ckdir, long long epoch) {
    char name[64];
    snprintf(name, sizeof name, "epoch_%04lld.safetensors", epoch);
    path_join(buf, n, ckdir, name);
}

static void mkdirs(const char *path) {
    char buf[2048];
    size_t i, n = strlen(path);
    snprintf(buf, sizeof buf, "%s", path);
    for (i = 1; i <= n && i < sizeof buf; i++)
        if (buf[i] == '/' || buf[i] == 0) { char c = buf[i]; buf[i] = 0; mkdir(buf, 0755); buf[i] = c; }
}

/* the per-epoch history (history.csv) survives a resume and feeds the loss plot */
typedef struct { float train[4096], val[4096]; int n; } history;

static void write_plot(const char *out_dir, const history *h) {
    char p[2048];
    kit_series s[2];
    kit_plot_opts o;
    kit_err err;
    static float epoch[4096];   /* x: epochs counted from 1, as history.csv and the progress bar count them */
    int i;
    if (h->n < 1) return;
    for (i = 0; i < h->n; i++) epoch[i] = (float)(i + 1);
    s[0].name = "train"; s[0].x = epoch; s[0].y = h->train; s[0].n = (size_t)h->n;
    s[1].name = "val"; s[1].x = epoch; s[1].y = h->val; s[1].n = (size_t)h->n;
    memset(&o, 0, sizeof o);
    o.title = "part location loss"; o.xlabel = "epoch"; o.ylabel = "weighted L1"; o.log_y = 1;
    path_join(p, sizeof p, out_dir, "loss.png");
    if (kit_plot_png(p, s, 2, &o, &err)) fprintf(stderr, "warning: %s\n", err.msg);
}

/* training.profile_steps: ends the profile begun two micro-batches into the first epoch and prints its table */
static void profile_report(int steps) {
    nn_profile pr = nn_profile_end();
    printf("profile: %.1f ms per micro-batch over %d (nn_profile, synchronised per op; \"(between steps)\" is the "
           "loader wait, the optimiser and the logging)\n", 1e3 * pr.total_s / (steps > 0 ? steps : 1), steps);
    nn_profile_print(&pr, steps);
}

static int cmd_train(kit_cfg *cfg, int resume, int stop_after) {
    app a;
    samples all = {0}, split[3];
    strings models = {0};
    dataset_ctx dtrain;
    kit_loader *L;
    kit_tb *tb;
    kit_err err;
    kit_progress prog;
    nn_adamw *opt;
    nn_adamw_cfg ac = nn_adamw_default();
    nn_sched sched;
    nn_ckpt_info info;
    history hist;
    const char *out = CS("data.output_dir");
    char ckdir[2048], p[2048], latest[2048], *dump;
    int size = CI("data.image_size"), epochs = CI("training.num_epochs"), accum = CI("training.accumulation_steps");
    int bs = CI("training.batch_size"), epoch, start_epoch = 0, k, prof_steps = CI("training.profile_steps"), profiling = 0;
    long long max_steps = kit_cfg_int(cfg, "training.max_steps_per_epoch"), micro_per_epoch, opt_per_epoch;
    double w_t = CF("loss.w_trans"), w_s = CF("loss.w_scale"), best = INFINITY, t_start = kit_now();
    int64_t global_step = 0;
    FILE *hf;

    memset(&a, 0, sizeof a);
    a.cfg = cfg;
    memset(&hist, 0, sizeof hist);
    /* data */
    scan_data(CS("data.data_dir"), &all, &models);
    split_data(cfg, &all, split);
    printf("data: %zu samples from %zu models in %s -> train %zu / val %zu / test %zu samples (split by model)\n",
           all.n, models.n, CS("data.data_dir"), split[0].n, split[1].n, split[2].n);
    if (!split[0].n) { fprintf(stderr, "no training samples\n"); return 1; }
    dtrain.S = &split[0]; dtrain.size = size; dtrain.psize = part_size(cfg); dtrain.augment = 1;
    {
        const double *j = kit_cfg_floats(cfg, "data.color_jitter", NULL);
        dtrain.jit.brightness = (float)j[0]; dtrain.jit.contrast = (float)j[1];
        dtrain.jit.saturation = (float)j[2]; dtrain.jit.hue = (float)j[3];
    }
    L = make_loader(&dtrain, cfg, 1, bs);
    micro_per_epoch = (long long)kit_loader_num_batches(L);
    if (max_steps > 0 && micro_per_epoch > max_steps) micro_per_epoch = max_steps;
    opt_per_epoch = (micro_per_epoch + accum - 1) / accum;

    /* model + optimiser */
    a.dev = pick_device(CS("training.device"));
    build_model(&a, 1);
    if (*CS("model.pretrained")) load_pretrained(&a, CS("model.pretrained"));
    params_to_device(&a);
    nn_params_mark_no_decay(&a.P);
    ac.lr = CF("training.learning_rate");
    ac.weight_decay = CF("training.weight_decay");
    opt = nn_adamw_new(&a.P, ac);
    sched = nn_sched_warmup_cosine(ac.lr, 1e-3, (int64_t)(CF("training.warmup_epochs") * opt_per_epoch + 0.5),
                                   (int64_t)epochs * opt_per_epoch - (int64_t)(CF("training.warmup_epochs") * opt_per_epoch + 0.5),
                                   CF("training.min_lr"));
    if (sched.T_max < 1) sched.T_max = 1;
    printf("model: DINOv2 %s (hidden %d, %d layers, %d heads) + %d cross-attention layers, %lld parameters; "
           "checkpointing %s; device %s\n", CS("model.backbone_name"), a.net.c.encoder.hidden, a.net.c.encoder.layers,
           a.net.c.encoder.heads, a.net.c.cross_attention_layers, (long long)nn_params_count(&a.P),
           a.net.encoder.checkpointing ? "on" : "off", nn_device_name(a.dev));
    if (kit_cfg_bool(cfg, "training.use_amp"))
        printf("use_amp: %s autocast on the matrix products, convolutions and attention (nn_autocast_begin)\n",
               CS("training.amp_dtype"));

    path_join(ckdir, sizeof ckdir, out, "checkpoints");
    mkdirs(ckdir);
    path_join(latest, sizeof latest, ckdir, "latest.safetensors");
    dump = kit_cfg_dump(cfg, 0);
    if (resume) {
        if (!is_file(latest)) { fprintf(stderr, "--resume: no %s\n", latest); return 1; }
        nn_ckpt_load(latest, &a.P, opt, &sched, &info);
        start_epoch = (int)info.epoch;
        if (CF("training.time_budget_minutes") > 0 && info.config) {   /* the length the budget fitted */
            kit_cfg *saved = make_config();
            if (!kit_cfg_load_string(saved, info.config, latest) && kit_cfg_int(saved, "training.num_epochs") < epochs) {
                char set[96];
                epochs = (int)kit_cfg_int(saved, "training.num_epochs");
                snprintf(set, sizeof set, "training.num_epochs=%d", epochs);
                kit_cfg_set(cfg, set);
                free(dump);
                dump = kit_cfg_dump(cfg, 0);
            }
            kit_cfg_free(saved);
        }
        best = info.best_metric;
        global_step = opt->step;
        nn_ckpt_info_free(&info);
        printf("resumed from %s: %d epochs done, best val loss %.5f\n", latest, start_epoch, best);
        path_join(p, sizeof p, out, "history.csv");
        if ((hf = fopen(p, "r"))) {
            int e;
            float tr, va;
            while (fscanf(hf, "%d,%f,%f\n", &e, &tr, &va) == 3)
                if (e >= 1 && e <= start_epoch && e <= 4096) { hist.train[e - 1] = tr; hist.val[e - 1] = va; if (e > hist.n) hist.n = e; }
            fclose(hf);
        }
    }
    path_join(p, sizeof p, out, "tb");
    if (!(tb = kit_tb_open(p, &err))) { fprintf(stderr, "%s\n", err.msg); return 1; }
    kit_tb_text(tb, "config", dump, start_epoch);
    printf("config:\n%s", dump);

    kit_progress_init(&prog, stdout);
    nn_dtype amp = amp_dtype(cfg);
    nn_grad_scaler scaler = nn_grad_scaler_new(65536.0, 2.0, 0.5, 2000, amp == NN_F16);   /* GradScaler's defaults */
    for (epoch = start_epoch; epoch < epochs && (stop_after <= 0 || epoch < start_epoch + stop_after); epoch++) {
        kit_batch b;
        long long micro = 0;
        double sum_lt = 0, sum_ls = 0, sum_l = 0, lr = nn_sched_lr(&sched), wait = 0, t_epoch = kit_now(), t_wait;
        size_t n_seen = 0;
        metrics vm;
        nn_ckpt_info ci;
        int rc;
        nn_set_training(1);
        nn_mem_reset_peak(a.dev);
        kit_loader_start_epoch(L, (uint64_t)epoch);
        kit_progress_begin(&prog, "train", epoch + 1, epochs, micro_per_epoch);
        nn_params_zero_grad(&a.P);
        while (micro < micro_per_epoch && (t_wait = kit_now(), rc = kit_loader_next(L, &b, &err)) != 0) {
            nn_tensor *loss;
            double lt, ls, lv;
            int last;
            wait += kit_now() - t_wait;   /* time the step waited for the loader threads */
            if (rc < 0) { fprintf(stderr, "warning: %s\n", err.msg); continue; }
            if (prof_steps > 0 && epoch == start_epoch && micro == 2) { nn_profile_begin(1); profiling = 1; }
            if (profiling && micro == 2 + prof_steps) { profile_report(prof_steps); profiling = 0; }
            nn_scope_begin();
            if (amp != NN_F32) nn_autocast_begin(amp);        /* req. 4: AMP, as torch.autocast */
            loss = partloc_loss(predict(&a, batch_tensor(&b, 0, size, a.dev), batch_tensor(&b, 1, dtrain.psize, a.dev)),
                                batch_tensor(&b, 2, size, NN_CPU),
                                w_t, w_s, &lt, &ls);
            if (amp != NN_F32) nn_autocast_end();
            lv = nn_item(loss);
            sum_l += lv * b.size; sum_lt += lt * b.size; sum_ls += ls * b.size; n_seen += b.size;
            /* gradients add up over the micro-batches; f16 scales the loss so small gradients survive */
            nn_backward(nn_scaler_scale(&scaler, nn_mul_scalar(loss, 1.0 / accum)));
            nn_scope_end(NULL);
            micro++;
            last = micro == micro_per_epoch;
            if (micro % accum == 0 || last) {
                float gn = 0;
                lr = nn_sched_lr(&sched);
                nn_scaler_unscale(&scaler, &a.P);             /* clipping sees the true gradients */
                if (CF("training.grad_clip") > 0) gn = nn_clip_grad_norm(&a.P, CF("training.grad_clip"), 0);
                else gn = nn_grad_norm(&a.P);
                nn_scaler_step(&scaler, opt, lr);             /* skipped when a gradient is inf/NaN */
                nn_scaler_update(&scaler);
                nn_sched_step(&sched);
                nn_params_zero_grad(&a.P);
                global_step++;
                kit_tb_scalar(tb, "train/step_loss", lv, global_step);
                kit_tb_scalar(tb, "train/grad_norm", gn, global_step);
                kit_tb_scalar(tb, "lr", lr, global_step);
            }
            kit_progress_note(&prog, "lr %.2e", lr);
            kit_progress_step(&prog, 1, sum_l / n_seen);
        }
        if (profiling) { profile_report((int)(micro - 2)); profiling = 0; }   /* an epoch shorter than the profile */
        nn_set_training(0);
        t_epoch = kit_now() - t_epoch;   /* the training part of the epoch, without the validation */
        vm = evaluate(&a, &split[1], w_t, w_s, NULL);
        kit_progress_end(&prog, "val_loss %.4f (trans %.4f, scale %.4f), val translation err %.4f, scale rel err %.1f%%; "
                         "loader wait %.0f%% of the training time", vm.loss, vm.lt, vm.ls, vm.terr, 100 * vm.srel,
                         100 * wait / t_epoch);
        if (n_seen) { sum_l /= n_seen; sum_lt /= n_seen; sum_ls /= n_seen; }
        kit_tb_scalar(tb, "train/loss", sum_l, epoch + 1);
        kit_tb_scalar(tb, "train/loss_trans", sum_lt, epoch + 1);
        kit_tb_scalar(tb, "train/loss_scale", sum_ls, epoch + 1);
        kit_tb_scalar(tb, "val/loss", vm.loss, epoch + 1);
        kit_tb_scalar(tb, "val/loss_trans", vm.lt, epoch + 1);
        kit_tb_scalar(tb, "val/loss_scale", vm.ls, epoch + 1);
        kit_tb_scalar(tb, "val/translation_error", vm.terr, epoch + 1);
        kit_tb_scalar(tb, "val/scale_rel_error", vm.srel, epoch + 1);
        kit_tb_scalar(tb, "epoch/lr", lr, epoch + 1);
        kit_tb_scalar(tb, "memory/peak_mib", (double)nn_mem_stats(a.dev).peak / 1048576.0, epoch + 1);
        kit_tb_flush(tb);
        if (epoch < 4096) { hist.train[epoch] = (float)sum_l; hist.val[epoch] = (float)(split[1].n ? vm.loss : sum_l); hist.n = epoch + 1; }
        path_join(p, sizeof p, out, "history.csv");
        if ((hf = fopen(p, epoch == 0 ? "w" : "a"))) { fprintf(hf, "%d,%.6f,%.6f\n", epoch + 1, sum_l, vm.loss); fclose(hf); }
        write_plot(out, &hist);

        /* checkpoints (req. 4.8-4.10): the epoch's, "latest" for --resume, best_model on the val loss */
        memset(&ci, 0, sizeof ci);
        ci.epoch = epoch + 1;
        if ((split[1].n ? vm.loss : sum_l) < best) {
            best = split[1].n ? vm.loss : sum_l;
            ci.best_metric = best;
            ci.config = dump;
            path_join(p, sizeof p, out, "best_model.safetensors");
            nn_ckpt_save(p, &a.P, NULL, NULL, &ci);
        }
        ci.best_metric = best;
        ci.config = dump;
        epoch_path(p, sizeof p, ckdir, epoch + 1);
        nn_ckpt_save(p, &a.P, opt, &sched, &ci);
        nn_ckpt_save(latest, &a.P, opt, &sched, &ci);
        if (epoch + 1 - CI("training.keep_checkpoints") >= 1) {
            epoch_path(p, sizeof p, ckdir, epoch + 1 - CI("training.keep_checkpoints"));
            remove(p);
        }
        /* a wall-time budget (a lent GPU for a few minutes): after the first epoch of a fresh run, keep the
           epochs that fit. Only the cosine's length changes; the warmup's lr does not depend on it, so when
           the warmup spans the first epoch the run is the one that num_epochs = N would have given. */
        if (epoch == 0 && !resume && CF("training.time_budget_minutes") > 0) {
            double took = kit_now() - t_start, budget = 60 * CF("training.time_budget_minutes");
            int fit = (int)floor(budget / took);
            char set[96];
            if (fit < 1) fit = 1;
            if (fit < epochs) {
                int64_t w = (int64_t)(CF("training.warmup_epochs") * opt_per_epoch + 0.5);
                epochs = fit;
                sched.T_max = (int64_t)epochs * opt_per_epoch - w;
                if (sched.T_max < 1) sched.T_max = 1;
                snprintf(set, sizeof set, "training.num_epochs=%d", epochs);
                kit_cfg_set(cfg, set);
                free(dump);
                dump = kit_cfg_dump(cfg, 0);
                ci.config = dump;
                ci.epoch = 1;
                nn_ckpt_save(latest, &a.P, opt, &sched, &ci);   /* --resume continues with the fitted length */
            }
            printf("time budget %.1f min: the first epoch took %.1f s -> %d epochs\n", budget / 60, took, epochs);
        }
    }
    {
        char dur[32];
        printf("training done: %d epochs (%lld optimiser steps) in %s, best val loss %.5f, peak %s memory %.1f MiB "
               "(live tensors, last epoch); logs in %s/tb, plot %s/loss.png\n",
               epoch - start_epoch, (long long)global_step, kit_format_duration(kit_now() - t_start, dur, sizeof dur), best,
               nn_device_name(a.dev), (double)nn_mem_stats(a.dev).peak / 1048576.0, out, out);
    }
    kit_tb_close(tb);
    kit_loader_free(L);
    nn_adamw_free(opt);
    free(dump);
    for (k = 0; k < 3; k++) free(split[k].s);
    free_scanned(&all);
    free_strs(&models);
    partloc_free(&a.net);
    nn_params_free(&a.P);
    return 0;
}

/* ------------------------------------------------------------------------------------- eval and infer */

static const char *arg_value(int argc, char **argv, const char *name, const char *def) {
    int i;
    for (i = 2; i + 1 < argc; i++) if (!strcmp(argv[i], name)) return argv[i + 1];
    return def;
}

static int cmd_eval(int argc, char **argv) {
    const char *ck = arg_value(argc, argv, "--checkpoint", NULL), *which = arg_value(argc, argv, "--split", "test");
    const char *data_dir, *report;
    char rp[2048];
    app a;
    samples all = {0}, split[3];
    int si = !strcmp(which, "train") ? 0 : !strcmp(which, "val") ? 1 : !strcmp(which, "test") ? 2 : -1, k;
    float *rows;
    metrics m;
    size_t i;
    FILE *f;
    if (!ck || si < 0) { fprintf(stderr, "usage: part_location eval --checkpoint C [--split train|val|test] [--data-dir D] [--report F] [--device auto|cpu|cuda]\n"); return 2; }
    memset(&a, 0, sizeof a);
    a.cfg = config_from_checkpoint(ck);
    data_dir = arg_value(argc, argv, "--data-dir", kit_cfg_string(a.cfg, "data.data_dir"));
    snprintf(rp, sizeof rp, "%s/eval_%s.json", kit_cfg_string(a.cfg, "data.output_dir"), which);
    report = arg_value(argc, argv, "--report", rp);
    a.dev = pick_device(arg_value(argc, argv, "--device", "auto"));
    build_model(&a, 0);
    load_weights(&a, ck);
    params_to_device(&a);
    scan_data(data_dir, &all, NULL);
    split_data(a.cfg, &all, split);
    m = evaluate(&a, &split[si], kit_cfg_float(a.cfg, "loss.w_trans"), kit_cfg_float(a.cfg, "loss.w_scale"), &rows);
    printf("eval %s (%zu samples, %s): mean translation error %.4f (L2, model units), scale abs error %.4f, "
           "scale rel error %.2f%%, loss %.5f\n", which, m.n, ck, m.terr, m.sabs, 100 * m.srel, m.loss);
    printf("success criteria: translation < 0.05: %s; scale rel < 15%%: %s\n", m.terr < 0.05 ? "met" : "not met",
           m.srel < 0.15 ? "met" : "not met");
    if (!(f = fopen(report, "w"))) { perror(report); return 1; }
    fprintf(f, "{\n  \"checkpoint\": \"%s\",\n  \"split\": \"%s\",\n  \"samples\": %zu,\n"
               "  \"mean_translation_error\": %.6f,\n  \"mean_scale_abs_error\": %.6f,\n  \"mean_scale_rel_error\": %.6f,\n"
               "  \"loss\": %.6f, \"loss_trans\": %.6f, \"loss_scale\": %.6f,\n  \"per_sample\": [\n",
            ck, which, m.n, m.terr, m.sabs, m.srel, m.loss, m.lt, m.ls);
    for (i = 0; i < split[si].n; i++) {
        const float *r = rows + 10 * i;
        fprintf(f, "    {\"model\": \"%s\", \"part\": \"%s\", \"translation\": [%.5f, %.5f, %.5f], \"scale\": [%.5f], "
                   "\"target_translation\": [%.5f, %.5f, %.5f], \"target_scale\": [%.5f], \"translation_error\": %.5f, "
                   "\"scale_abs_error\": %.5f, \"scale_rel_error\": %.5f}%s\n",
                split[si].s[i].model, split[si].s[i].part, r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8],
                fabs(r[3] - r[7]), r[9], i + 1 < split[si].n ? "," : "");
    }
    fprintf(f, "  ]\n}\n");
    fclose(f);
    printf("report: %s\n", report);
    free(rows);
    for (k = 0; k < 3; k++) free(split[k].s);
    free_scanned(&all);
    partloc_free(&a.net);
    nn_params_free(&a.P);
    kit_cfg_free(a.cfg);
    return 0;
}

static int cmd_infer(int argc, char **argv) {
    const char *ck = arg_value(argc, argv, "--checkpoint", NULL), *whole = arg_value(argc, argv, "--whole", NULL);
    const char *part = arg_value(argc, argv, "--part", NULL), *dd = arg_value(argc, argv, "--data-dir", NULL);
    const char *outp = arg_value(argc, argv, "--out", "results.json");
    app a;
    int size, psize;
    int64_t s4[4], p4[4];
    kit_err err;
    if (!ck || (!(whole && part) && !dd)) {
        fprintf(stderr, "usage: part_location infer --checkpoint C (--whole W.png --part P.png | --data-dir D [--out F]) [--device auto|cpu|cuda]\n");
        return 2;
    }
    memset(&a, 0, sizeof a);
    a.cfg = config_from_checkpoint(ck);
    a.dev = pick_device(arg_value(argc, argv, "--device", "auto"));
    build_model(&a, 0);
    load_weights(&a, ck);
    params_to_device(&a);
    nn_set_grad_enabled(0);
    nn_set_training(0);
    size = (int)kit_cfg_int(a.cfg, "data.image_size");   /* any input size is resized to the training size */
    psize = part_size(a.cfg);
    s4[0] = 1; s4[1] = 3; s4[2] = size; s4[3] = size;
    p4[0] = 1; p4[1] = 3; p4[2] = psize; p4[3] = psize;
    if (whole && part) {
        nn_tensor *w = nn_empty(NN_F32, 4, s4), *p = nn_empty(NN_F32, 4, p4), *y;
        const float *o;
        if (load_image(whole, size, NULL, NULL, nn_f32_data(w), &err) || load_image(part, psize, NULL, NULL, nn_f32_data(p), &err)) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
        y = predict_eval(&a, w, p);
        o = nn_f32_data(y);
        printf("{\"translation\": [%.6f, %.6f, %.6f], \"scale\": [%.6f]}\n", o[0], o[1], o[2], o[3]);
        nn_tensor_free(w); nn_tensor_free(p); nn_tensor_free(y);
    } else {
        samples all = {0};
        strings models = {0};
        size_t i;
        FILE *f = fopen(outp, "w");
        if (!f) { perror(outp); return 1; }
        scan_data(dd, &all, &models);
        fprintf(f, "[\n");
        for (i = 0; i < all.n; i++) {
            nn_tensor *y;
            const float *o;
            nn_scope_begin();
            {
                nn_tensor *w = nn_empty(NN_F32, 4, s4), *p = nn_empty(NN_F32, 4, p4);
                if (load_image(all.s[i].whole_png, size, NULL, NULL, nn_f32_data(w), &err) ||
                    load_image(all.s[i].part_png, psize, NULL, NULL, nn_f32_data(p), &err)) {
                    fprintf(stderr, "warning: %s\n", err.msg);
                    nn_scope_end(NULL);
                    continue;
                }
                y = predict_eval(&a, w, p);
            }
            o = nn_f32_data(y);
            fprintf(f, "  {\"model\": \"%s\", \"part\": \"%s\", \"translation\": [%.6f, %.6f, %.6f], \"scale\": [%.6f]}%s\n",
                    all.s[i].model, all.s[i].part, o[0], o[1], o[2], o[3], i + 1 < all.n ? "," : "");
            nn_scope_end(NULL);
        }
        fprintf(f, "]\n");
        fclose(f);
        printf("infer: %zu parts of %zu models -> %s\n", all.n, models.n, outp);
        free_scanned(&all);
        free_strs(&models);
    }
    partloc_free(&a.net);
    nn_params_free(&a.P);
    kit_cfg_free(a.cfg);
    return 0;
}

int main(int argc, char **argv) {
    int rc = 2, i, resume = 0, stop_after = 0;
    const char *cmd = argc > 1 ? argv[1] : "";
    if (!strcmp(cmd, "train")) {
        kit_cfg *cfg = make_config();
        if (kit_cfg_parse_args(cfg, &argc, argv) != 0) { fputs(kit_cfg_error(cfg), stderr); kit_cfg_free(cfg); return 2; }
        for (i = 2; i < argc; i++) {
            if (!strcmp(argv[i], "--resume")) resume = 1;
            else if (!strcmp(argv[i], "--stop-after") && i + 1 < argc) stop_after = atoi(argv[++i]);  /* simulates an interruption */
            else { fprintf(stderr, "train: unknown argument %s\n", argv[i]); kit_cfg_free(cfg); return 2; }
        }
        rc = cmd_train(cfg, resume, stop_after);
        kit_cfg_free(cfg);
    } else if (!strcmp(cmd, "eval")) {
        rc = cmd_eval(argc, argv);
    } else if (!strcmp(cmd, "infer")) {
        rc = cmd_infer(argc, argv);
    } else if (!strcmp(cmd, "help")) {
        kit_cfg *cfg = make_config();
        kit_cfg_print_help(cfg, stdout);
        kit_cfg_free(cfg);
        rc = 0;
    } else {
        fprintf(stderr, "usage: part_location train --config C [--set k=v] [--resume] | eval --checkpoint C [--split S] | "
                        "infer --checkpoint C (--whole W --part P | --data-dir D) | help\n");
    }
    nn_shutdown();
    return rc;
}
