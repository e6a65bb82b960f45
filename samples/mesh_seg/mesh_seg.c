/* mesh_seg.c - movable-part segmentation of meshes (seed 000): the seed's MemoryEfficientSOTAModel
   (models/mesh_seg.h) trained per mesh on 458 features per face, against the user's confidence highlight.

       mesh_seg train [--config configs/mesh_seg.yaml] [--set key=value ...] [--resume]
       mesh_seg eval  [--config ...] [--ckpt PATH]             held-out meshes: model vs thresholded confidence
       mesh_seg step  [--config ...] --faces N [--reps R]      timed training steps on N synthetic faces
       mesh_seg infer [--config ...] [--ckpt PATH] MESH_DIR... [--out DIR] [--logits]
                                                     writes DIR/<mesh>.pred.npy, DIR/<mesh>.ply (and .logits.npy)
   training.max_time_s / max_steps end training early; the epoch under way then counts as done (its
   checkpoint is written, --resume starts at the next one).
   training.device: auto (the GPU when the program was built with -DNN_CUDA, `make mesh-seg-cuda`, and one is
   present), cpu or cuda. On the GPU the parameters, the optimiser state and each mesh live there; metrics,
   predictions and checkpoints are read back to the host.

   Method.
   Data   one mesh per step: features [N, 458] = PartField 448 | confidence 1 | 3 vertices 9, labels [N]
          (1 = movable), read from <dir>/<mesh>/{features,labels}.npy by the kit's loader threads.
   Model  CompactGroupedEmbedding + CompactFourPointGeometricEncoding -> 4 HierarchicalAttention layers
          (gradient-checkpointed) -> classifier, logits [N, 2].
   Loss   cross-entropy over the faces, the movable class weighted by training.movable_weight.
   Loop   AdamW (biases and norms without weight decay), linear warm-up then cosine decay per step,
          global gradient clipping; TensorBoard scalars, a checkpoint after every epoch (last) and at the
          best held-out movable IoU (best), --resume continues from last.
   Eval   per-face accuracy, movable IoU and F1 pooled over all held-out faces (and IoU averaged per mesh),
          for the model (argmax) and for the baseline "confidence > eval.conf_threshold". */
#define _POSIX_C_SOURCE 200809L
#define NN_IMPLEMENTATION
#include "nn.h"
#define KIT_IMPLEMENTATION
#include "kit.h"
#include "models/mesh_seg.h"
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ===================================================================================== configuration */
static kit_cfg *make_config(void) {
    kit_cfg *c = kit_cfg_new();
    kit_cfg_add_string(c, "data.train_dir", "data/mesh_seg/train", NULL, "folder of mesh folders for training");
    kit_cfg_add_string(c, "data.val_dir", "data/mesh_seg/val", NULL, "held-out mesh folders");
    kit_cfg_add_int(c, "data.workers", 2, 0, 64, "loader threads reading .npy files");
    kit_cfg_add_int(c, "model.embed_dim", 128, 128, 128, "the seed fixes 96 + 16 + 16 = 128");
    kit_cfg_add_int(c, "model.num_layers", 4, 1, MESH_SEG_MAX_LAYERS, "HierarchicalAttention layers");
    kit_cfg_add_int(c, "model.num_heads", 8, 1, 128, "attention heads (must divide 128)");
    kit_cfg_add_int(c, "model.chunk_size", 1024, 1, 1 << 20, "faces per local-attention chunk and global representatives");
    kit_cfg_add_float(c, "model.dropout", 0.1, 0, 0.99, "classifier dropout");
    kit_cfg_add_float(c, "model.layer_dropout", 0.1, 0, 0.99, "attention and FFN dropout in each layer (0.1 in the seed)");
    kit_cfg_add_float(c, "model.embed_dropout", 0.1, 0, 0.99, "dropout in the PartField projection (0.1 in the seed)");
    kit_cfg_add_bool(c, "model.gradient_checkpointing", 1, "recompute each layer in backward");
    kit_cfg_add_int(c, "training.epochs", 30, 1, 100000, "passes over the training meshes");
    kit_cfg_add_float(c, "training.learning_rate", 1e-4, 0, 1, "AdamW peak learning rate");
    kit_cfg_add_float(c, "training.weight_decay", 0.01, 0, 1, "AdamW decoupled weight decay (not on biases/norms)");
    kit_cfg_add_int(c, "training.warmup_steps", 100, 0, 100000000, "linear warm-up steps from 1% of the peak");
    kit_cfg_add_float(c, "training.min_lr", 1e-6, 0, 1, "cosine floor");
    kit_cfg_add_float(c, "training.grad_clip", 1.0, 0, 1e9, "global gradient-norm clip (0 = off)");
    kit_cfg_add_string(c, "training.device", "auto", "auto|cpu|cuda", "where to train and run: auto = cuda when built with it and a GPU is present");
    kit_cfg_add_string(c, "training.amp", "off", "off|bf16|f16", "autocast: linear/attention in low precision, f32 master weights (f16 with loss scaling)");
    kit_cfg_add_float(c, "training.movable_weight", 1.0, 0, 100, "cross-entropy weight of the movable class");
    kit_cfg_add_int(c, "training.seed", 0, 0, 1LL << 62, "initialisation, dropout and shuffling");
    kit_cfg_add_float(c, "training.max_time_s", 0, 0, 1e9, "stop training after this long (0 = no limit)");
    kit_cfg_add_int(c, "training.max_steps", 0, 0, 1LL << 40, "stop training after this many steps (0 = no limit)");
    kit_cfg_add_float(c, "eval.conf_threshold", 0.5, 0, 1, "the baseline: a face is movable when its confidence exceeds this");
    kit_cfg_add_string(c, "output.dir", "runs/mesh_seg", NULL, "checkpoints, TensorBoard events, loss plot");
    return c;
}

static mesh_seg_cfg model_config(const kit_cfg *c) {
    mesh_seg_cfg m = mesh_seg_default();
    m.embed_dim = (int)kit_cfg_int(c, "model.embed_dim");
    m.num_layers = (int)kit_cfg_int(c, "model.num_layers");
    m.num_heads = (int)kit_cfg_int(c, "model.num_heads");
    m.chunk_size = (int)kit_cfg_int(c, "model.chunk_size");
    m.dropout = kit_cfg_float(c, "model.dropout");
    m.layer_dropout = kit_cfg_float(c, "model.layer_dropout");
    m.embed_dropout = kit_cfg_float(c, "model.embed_dropout");
    return m;
}

/* ============================================================================================== data */
/* A thread-safe reader of the two .npy files (the loader calls it from its workers; nn.h's own
   nn_npy_load is single-threaded like the rest of its API). C-order <f4 [N, 458] and |u1 [N] only. */
static int npy_open(const char *path, const char *descr, int ndim, int64_t *shape, FILE **fp, kit_err *err) {
    unsigned char pre[10];
    char hdr[4096], *p;
    uint32_t hl;
    int d;
    FILE *f = fopen(path, "rb");
    if (!f) return kit_fail(err, KIT_ERR_IO, "%s: %s", path, strerror(errno));
    if (fread(pre, 1, 10, f) != 10 || memcmp(pre, "\x93NUMPY", 6)) { fclose(f); return kit_fail(err, KIT_ERR_FORMAT, "%s: not a .npy file", path); }
    if (pre[6] == 1) hl = pre[8] | (uint32_t)pre[9] << 8;
    else {
        unsigned char b[2];
        if (fread(b, 1, 2, f) != 2) { fclose(f); return kit_fail(err, KIT_ERR_TRUNCATED, "%s: truncated header", path); }
        hl = pre[8] | (uint32_t)pre[9] << 8 | (uint32_t)b[0] << 16 | (uint32_t)b[1] << 24;
    }
    if (hl >= sizeof hdr || fread(hdr, 1, hl, f) != hl) { fclose(f); return kit_fail(err, KIT_ERR_FORMAT, "%s: bad header", path); }
    hdr[hl] = 0;
    if (!strstr(hdr, descr) || !strstr(hdr, "'fortran_order': False") || !(p = strstr(hdr, "'shape': ("))) {
        fclose(f);
        return kit_fail(err, KIT_ERR_FORMAT, "%s: expected C-order %s, header %s", path, descr, hdr);
    }
    p += 10;
    for (d = 0; d < ndim; d++) {
        char *e;
        shape[d] = strtoll(p, &e, 10);
        if (e == p || shape[d] < 0) { fclose(f); return kit_fail(err, KIT_ERR_FORMAT, "%s: bad shape in %s", path, hdr); }
        p = e + strspn(e, ", ");
    }
    if (*p != ')') { fclose(f); return kit_fail(err, KIT_ERR_FORMAT, "%s: expected %d dims, header %s", path, ndim, hdr); }
    *fp = f;
    return 0;
}

typedef struct { char **dirs; int n; int64_t max_faces; } mesh_list;

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* every subfolder of root holding a features.npy, sorted; the largest face count sizes the loader's buffers */
static int list_meshes(const char *root, mesh_list *L, kit_err *err) {
    DIR *d = opendir(root);
    struct dirent *e;
    memset(L, 0, sizeof *L);
    if (!d) return kit_fail(err, KIT_ERR_IO, "%s: %s", root, strerror(errno));
    while ((e = readdir(d)) != NULL) {
        char path[2048];
        int64_t shape[2];
        FILE *f;
        if (e->d_name[0] == '.') continue;
        snprintf(path, sizeof path, "%s/%s/features.npy", root, e->d_name);
        if (npy_open(path, "'<f4'", 2, shape, &f, NULL) != 0) continue;
        fclose(f);
        if (shape[1] != MESH_SEG_IN) { closedir(d); return kit_fail(err, KIT_ERR_FORMAT, "%s: %lld features per face, expected %d", path, (long long)shape[1], MESH_SEG_IN); }
        L->dirs = realloc(L->dirs, (size_t)(L->n + 1) * sizeof *L->dirs);
        snprintf(path, sizeof path, "%s/%s", root, e->d_name);
        L->dirs[L->n++] = strdup(path);
        if (shape[0] > L->max_faces) L->max_faces = shape[0];
    }
    closedir(d);
    if (L->n == 0) return kit_fail(err, KIT_ERR_IO, "%s: no mesh folders with features.npy", root);
    qsort(L->dirs, (size_t)L->n, sizeof *L->dirs, cmp_str);
    return 0;
}

static void free_meshes(mesh_list *L) {
    int i;
    for (i = 0; i < L->n; i++) free(L->dirs[i]);
    free(L->dirs);
}

/* loader callback: item i -> fields[0] features [N, 458] f32, fields[1] labels [N] u8 */
static int get_mesh(void *ctx, size_t i, void *const *fields, size_t *lengths, kit_rng *rng, kit_err *err) {
    const mesh_list *L = (const mesh_list *)ctx;
    char path[2048];
    int64_t fs[2] = {0, 0}, ls[1] = {0};   /* npy_open fills them; zeroed for the optimiser's -Wmaybe-uninitialized */
    FILE *f;
    size_t n;
    (void)rng;
    snprintf(path, sizeof path, "%s/features.npy", L->dirs[i]);
    if (npy_open(path, "'<f4'", 2, fs, &f, err)) return -1;
    if (fs[1] != MESH_SEG_IN || fs[0] > L->max_faces) { fclose(f); return kit_fail(err, KIT_ERR_FORMAT, "%s: shape changed", path); }
    n = fread(fields[0], sizeof(float) * MESH_SEG_IN, (size_t)fs[0], f);
    fclose(f);
    if (n != (size_t)fs[0]) return kit_fail(err, KIT_ERR_TRUNCATED, "%s: truncated", path);
    snprintf(path, sizeof path, "%s/labels.npy", L->dirs[i]);
    if (npy_open(path, "'|u1'", 1, ls, &f, err)) return -1;
    if (ls[0] != fs[0]) { fclose(f); return kit_fail(err, KIT_ERR_FORMAT, "%s: %lld labels for %lld faces", path, (long long)ls[0], (long long)fs[0]); }
    n = fread(fields[1], 1, (size_t)ls[0], f);
    fclose(f);
    if (n != (size_t)ls[0]) return kit_fail(err, KIT_ERR_TRUNCATED, "%s: truncated", path);
    lengths[0] = lengths[1] = (size_t)fs[0];
    return 0;
}

static kit_loader *make_loader(mesh_list *L, int workers, int shuffle, uint64_t seed) {
    kit_dataset ds;
    kit_loader_opts o;
    kit_err err;
    kit_loader *ld;
    memset(&ds, 0, sizeof ds);
    memset(&o, 0, sizeof o);
    ds.len = (size_t)L->n; ds.nfields = 2; ds.get_item = get_mesh; ds.ctx = L;
    ds.fields[0].name = "features"; ds.fields[0].dtype = KIT_F32; ds.fields[0].inner = MESH_SEG_IN;
    ds.fields[0].max_len = (size_t)L->max_faces; ds.fields[0].variable = 1;
    ds.fields[1].name = "labels"; ds.fields[1].dtype = KIT_U8; ds.fields[1].inner = 1;
    ds.fields[1].max_len = (size_t)L->max_faces; ds.fields[1].variable = 1;
    o.batch_size = 1; o.workers = workers; o.prefetch = 1; o.shuffle = shuffle; o.seed = seed;
    if (!(ld = kit_loader_new(&ds, &o, &err))) { fprintf(stderr, "mesh_seg: %s\n", err.msg); exit(1); }
    return ld;
}

/* a batch of one mesh as host tensors (copies; the loader reuses its buffers) */
static void batch_tensors(const kit_batch *b, nn_tensor **features, nn_tensor **labels) {
    int64_t fs[2], i;
    int32_t *t;
    const uint8_t *l = (const uint8_t *)b->data[1];
    fs[0] = (int64_t)b->lengths[0][0]; fs[1] = MESH_SEG_IN;
    *features = nn_from_data(NN_F32, 2, fs, b->data[0]);
    *labels = nn_empty(NN_I32, 1, fs);
    t = (int32_t *)(*labels)->data;
    for (i = 0; i < fs[0]; i++) t[i] = l[i] ? 1 : 0;
}

/* t on dev (t itself when it is there already; else a copy in the current scope) */
static nn_tensor *on(nn_tensor *t, nn_device dev) { return t->device == dev ? t : nn_to(t, dev); }

/* =========================================================================================== metrics */
typedef struct { double tp, fp, fn, tn, iou_sum; int meshes; } confusion;

static void confusion_add(confusion *c, const int32_t *label, const uint8_t *pred, int64_t n) {
    double tp = 0, fp = 0, fn = 0, tn = 0;
    int64_t i;
    for (i = 0; i < n; i++) {
        if (label[i]) { if (pred[i]) tp++; else fn++; }
        else { if (pred[i]) fp++; else tn++; }
    }
    c->tp += tp; c->fp += fp; c->fn += fn; c->tn += tn;
    c->iou_sum += tp + fp + fn > 0 ? tp / (tp + fp + fn) : 1.0;   /* nothing movable, nothing predicted: perfect */
    c->meshes++;
}
static double c_acc(const confusion *c) { return (c->tp + c->tn) / fmax(1, c->tp + c->tn + c->fp + c->fn); }
static double c_iou(const confusion *c) { return c->tp / fmax(1, c->tp + c->fp + c->fn); }
static double c_f1(const confusion *c) { return 2 * c->tp / fmax(1, 2 * c->tp + c->fp + c->fn); }
static double c_miou(const confusion *c) { return c->iou_sum / fmax(1, c->meshes); }

/* argmax of [N, 2] logits */
static void predict(nn_tensor *logits, uint8_t *pred) {
    const float *z = nn_f32_data(logits);
    int64_t i;
    for (i = 0; i < logits->shape[0]; i++) pred[i] = z[2 * i + 1] > z[2 * i];
}

typedef struct { double loss; confusion model, base; } eval_result;

/* every held-out mesh through the model in eval mode */
static eval_result evaluate(const mesh_seg *m, kit_loader *ld, nn_tensor *class_w, double thr, nn_device dev) {
    eval_result r;
    kit_batch b;
    kit_err err;
    int rc, prev_train = nn_set_training(0), prev_grad = nn_set_grad_enabled(0);
    memset(&r, 0, sizeof r);
    kit_loader_start_epoch(ld, 0);
    while ((rc = kit_loader_next(ld, &b, &err)) == 1) {
        nn_tensor *x, *y, *logits;
        int64_t n, i;
        uint8_t *pred, *base;
        const float *f;
        nn_scope_begin();
        batch_tensors(&b, &x, &y);
        n = x->shape[0];
        logits = mesh_seg_forward(m, on(x, dev));
        r.loss += nn_item(nn_cross_entropy(logits, on(y, dev), class_w, -100, 0.0));
        pred = malloc((size_t)n);
        base = malloc((size_t)n);
        predict(on(logits, NN_CPU), pred);
        f = nn_f32_data(x);
        for (i = 0; i < n; i++) base[i] = f[i * MESH_SEG_IN + MESH_SEG_PF] > thr;
        confusion_add(&r.model, (const int32_t *)y->data, pred, n);
        confusion_add(&r.base, (const int32_t *)y->data, base, n);
        free(pred); free(base);
        nn_scope_end(NULL);
    }
    if (rc < 0) { fprintf(stderr, "mesh_seg: %s\n", err.msg); exit(1); }
    r.loss /= fmax(1, r.model.meshes);
    nn_set_training(prev_train);
    nn_set_grad_enabled(prev_grad);
    return r;
}

static void print_eval(const eval_result *r, const char *where) {
    printf("%s: %d meshes, %.0f faces\n", where, r->model.meshes, r->model.tp + r->model.fp + r->model.fn + r->model.tn);
    printf("  %-22s  accuracy %.4f  movable IoU %.4f  F1 %.4f  mean per-mesh IoU %.4f\n", "model", c_acc(&r->model),
           c_iou(&r->model), c_f1(&r->model), c_miou(&r->model));
    printf("  %-22s  accuracy %.4f  movable IoU %.4f  F1 %.4f  mean per-mesh IoU %.4f\n", "confidence > threshold",
           c_acc(&r->base), c_iou(&r->base), c_f1(&r->base), c_miou(&r->base));
}

/* ======================================================================================= the program */
typedef struct {
    kit_cfg *cfg;
    nn_params P;
    mesh_seg model;
    nn_tensor *class_w;       /* on dev */
    nn_device dev;
    char out[1024];
} app;

/* training.device -> a device this program can use, or a clear error */
static nn_device pick_device(const char *s) {
    if (!strcmp(s, "cpu")) return NN_CPU;
    if (!strcmp(s, "cuda") && !nn_cuda_available()) {
#ifdef NN_CUDA
        fprintf(stderr, "mesh_seg: training.device=cuda, but no CUDA device is present\n");
#else
        fprintf(stderr, "mesh_seg: training.device=cuda, but this program was built without CUDA (make mesh-seg-cuda)\n");
#endif
        exit(2);
    }
    return nn_cuda_available() ? NN_CUDA : NN_CPU;   /* cuda, or auto */
}

static void app_init(app *a, int *argc, char **argv) {
    memset(a, 0, sizeof *a);
    a->cfg = make_config();
    if (kit_cfg_parse_args(a->cfg, argc, argv) != 0) { fprintf(stderr, "%s", kit_cfg_error(a->cfg)); exit(2); }
    snprintf(a->out, sizeof a->out, "%s", kit_cfg_string(a->cfg, "output.dir"));
    nn_seed((uint64_t)kit_cfg_int(a->cfg, "training.seed"));
    mesh_seg_init(&a->model, &a->P, "", model_config(a->cfg));
    a->model.checkpointing = kit_cfg_bool(a->cfg, "model.gradient_checkpointing");
    {
        float w[2];
        int64_t two = 2;
        w[0] = 1.0f; w[1] = (float)kit_cfg_float(a->cfg, "training.movable_weight");
        a->class_w = nn_from_f32(1, &two, w);
    }
    a->dev = pick_device(kit_cfg_string(a->cfg, "training.device"));
    if (a->dev != NN_CPU) {   /* the model moves in place (its modules keep their tensors); optimisers come after */
        nn_tensor *w = nn_to(a->class_w, a->dev);
        nn_tensor_free(a->class_w);
        a->class_w = w;
        nn_params_to(&a->P, a->dev);
    }
}

static void app_free(app *a) {
    nn_tensor_free(a->class_w);
    nn_params_free(&a->P);
    kit_cfg_free(a->cfg);
    nn_shutdown();
}

static void mkdirs(const char *path) {
    char buf[1024], *p;
    snprintf(buf, sizeof buf, "%s", path);
    for (p = buf + 1; *p; p++)
        if (*p == '/') { *p = 0; mkdir(buf, 0755); *p = '/'; }
    mkdir(buf, 0755);
}

static int cmd_train(app *a, int resume) {
    kit_cfg *c = a->cfg;
    mesh_list train, val;
    kit_loader *ld_train, *ld_val;
    kit_err err;
    kit_tb *tb;
    kit_progress prog;
    nn_adamw_cfg ocfg = nn_adamw_default();
    nn_adamw *opt;
    nn_sched sched;
    nn_ckpt_info info;
    char path[1200], *cfg_text = kit_cfg_dump(c, 0);
    int epochs = (int)kit_cfg_int(c, "training.epochs"), epoch, start_epoch = 0, stop = 0;
    int64_t steps_per_epoch, total, warmup = kit_cfg_int(c, "training.warmup_steps");
    int64_t max_steps = kit_cfg_int(c, "training.max_steps");
    double best = -1, clip = kit_cfg_float(c, "training.grad_clip"), max_time = kit_cfg_float(c, "training.max_time_s");
    double t_start = kit_now(), thr = kit_cfg_float(c, "eval.conf_threshold");
    const char *amp_s = kit_cfg_string(c, "training.amp");
    nn_dtype amp = !strcmp(amp_s, "bf16") ? NN_BF16 : !strcmp(amp_s, "f16") ? NN_F16 : NN_F32;
    nn_grad_scaler scaler = nn_grad_scaler_new(65536.0, 2.0, 0.5, 2000, amp == NN_F16);   /* GradScaler's defaults */
    float *hist_train = calloc((size_t)epochs, sizeof(float)), *hist_val = calloc((size_t)epochs, sizeof(float));
    float *hist_x = calloc((size_t)epochs, sizeof(float));
    int n_hist = 0;
    FILE *csv;

    /* data */
    if (list_meshes(kit_cfg_string(c, "data.train_dir"), &train, &err) ||
        list_meshes(kit_cfg_string(c, "data.val_dir"), &val, &err)) { fprintf(stderr, "mesh_seg: %s\n", err.msg); return 1; }
    ld_train = make_loader(&train, (int)kit_cfg_int(c, "data.workers"), 1, (uint64_t)kit_cfg_int(c, "training.seed"));
    ld_val = make_loader(&val, (int)kit_cfg_int(c, "data.workers"), 0, 0);
    steps_per_epoch = train.n;
    total = steps_per_epoch * epochs;
    printf("mesh_seg train: %d training meshes (up to %lld faces), %d held out; %lld parameters on %s\n", train.n,
           (long long)train.max_faces, val.n, (long long)nn_params_count(&a->P), nn_device_name(a->dev));
    kit_cfg_print(c, stdout);

    /* optimiser and schedule */
    ocfg.lr = kit_cfg_float(c, "training.learning_rate");
    ocfg.weight_decay = kit_cfg_float(c, "training.weight_decay");
    nn_params_mark_no_decay(&a->P);
    opt = nn_adamw_new(&a->P, ocfg);
    if (warmup > total) warmup = total;
    sched = nn_sched_warmup_cosine(ocfg.lr, 0.01, warmup, total - warmup, kit_cfg_float(c, "training.min_lr"));

    mkdirs(a->out);
    if (resume) {
        snprintf(path, sizeof path, "%s/last.safetensors", a->out);
        memset(&info, 0, sizeof info);
        nn_ckpt_load(path, &a->P, opt, &sched, &info);
        start_epoch = (int)info.epoch + 1;
        best = info.best_metric;
        nn_ckpt_info_free(&info);
        printf("resumed from %s: epoch %d done, step %lld, best IoU %.4f\n", path, start_epoch, (long long)opt->step, best);
    }
    if (!(tb = kit_tb_open(a->out, &err))) { fprintf(stderr, "mesh_seg: %s\n", err.msg); return 1; }
    snprintf(path, sizeof path, "%s/train_log.csv", a->out);   /* every step, for scripts (appended on resume) */
    if (!(csv = fopen(path, resume ? "a" : "w"))) { fprintf(stderr, "mesh_seg: %s: %s\n", path, strerror(errno)); return 1; }
    if (!resume) fprintf(csv, "step,epoch,faces,loss,lr,grad_norm\n");
    kit_tb_text(tb, "config", cfg_text, opt->step);
    kit_progress_init(&prog, stdout);

    for (epoch = start_epoch; epoch < epochs && !stop; epoch++) {
        kit_batch b;
        int rc;
        eval_result ev;
        nn_ckpt_info ci;
        nn_set_training(1);
        kit_loader_start_epoch(ld_train, (uint64_t)epoch);
        kit_progress_begin(&prog, "train", epoch + 1, epochs, steps_per_epoch);
        while ((rc = kit_loader_next(ld_train, &b, &err)) == 1) {
            nn_tensor *x, *y, *loss;
            double lr = nn_sched_lr(&sched), lv;
            float gnorm;
            nn_scope_begin();
            batch_tensors(&b, &x, &y);
            x = on(x, a->dev);
            y = on(y, a->dev);
            if (amp != NN_F32) nn_autocast_begin(amp);      /* mixed precision, as the seed's torch.autocast */
            loss = nn_cross_entropy(mesh_seg_forward(&a->model, x), y, a->class_w, -100, 0.0);
            if (amp != NN_F32) nn_autocast_end();
            nn_params_zero_grad(&a->P);
            nn_backward(nn_scaler_scale(&scaler, loss));      /* f16: scaled so small gradients survive */
            nn_scaler_unscale(&scaler, &a->P);                /* clipping sees the true gradients */
            gnorm = clip > 0 ? nn_clip_grad_norm(&a->P, clip, 0) : nn_grad_norm(&a->P);
            nn_scaler_step(&scaler, opt, lr);                 /* skipped when a gradient is inf/NaN */
            nn_scaler_update(&scaler);
            nn_sched_step(&sched);
            lv = nn_item(loss);
            nn_scope_end(NULL);
            kit_tb_scalar(tb, "train/loss", lv, opt->step);
            kit_tb_scalar(tb, "train/lr", lr, opt->step);
            kit_tb_scalar(tb, "train/grad_norm", gnorm, opt->step);
            fprintf(csv, "%lld,%d,%lld,%.9g,%.6g,%.6g\n", (long long)opt->step, epoch + 1, (long long)b.lengths[0][0], lv, lr, gnorm);
            kit_progress_note(&prog, "lr %.2e  %lld faces", lr, (long long)b.lengths[0][0]);
            kit_progress_step(&prog, 1, lv);
            if ((max_time > 0 && kit_now() - t_start > max_time) || (max_steps > 0 && opt->step >= max_steps)) { stop = 1; break; }
        }
        if (rc < 0) { fprintf(stderr, "mesh_seg: %s\n", err.msg); return 1; }
        ev = evaluate(&a->model, ld_val, a->class_w, thr, a->dev);
        kit_progress_end(&prog, "val_loss %.4f  val IoU %.4f (confidence %.4f)  peak %.0f MB", ev.loss, c_iou(&ev.model),
                         c_iou(&ev.base), nn_mem_stats(a->dev).peak / 1e6);
        kit_tb_scalar(tb, "val/loss", ev.loss, opt->step);
        kit_tb_scalar(tb, "val/accuracy", c_acc(&ev.model), opt->step);
        kit_tb_scalar(tb, "val/movable_iou", c_iou(&ev.model), opt->step);
        kit_tb_scalar(tb, "val/movable_f1", c_f1(&ev.model), opt->step);
        kit_tb_scalar(tb, "baseline/movable_iou", c_iou(&ev.base), opt->step);
        kit_tb_scalar(tb, "baseline/movable_f1", c_f1(&ev.base), opt->step);
        kit_tb_scalar(tb, "memory/peak_mb", nn_mem_stats(a->dev).peak / 1e6, opt->step);
        kit_tb_flush(tb);
        fflush(csv);
        if (max_time > 0 && kit_now() - t_start > max_time) stop = 1;
        hist_x[n_hist] = (float)(epoch + 1);
        hist_train[n_hist] = (float)kit_progress_mean_loss(&prog);
        hist_val[n_hist++] = (float)ev.loss;

        /* checkpoints: last every epoch, best by held-out movable IoU */
        memset(&ci, 0, sizeof ci);
        ci.epoch = epoch;
        ci.config = cfg_text;
        if (c_iou(&ev.model) > best) {
            best = c_iou(&ev.model);
            ci.best_metric = best;
            snprintf(path, sizeof path, "%s/best.safetensors", a->out);
            nn_ckpt_save(path, &a->P, opt, &sched, &ci);
        }
        ci.best_metric = best;
        snprintf(path, sizeof path, "%s/last.safetensors", a->out);
        nn_ckpt_save(path, &a->P, opt, &sched, &ci);
    }
    {   /* the loss curves of this run */
        kit_series s[2];
        kit_plot_opts po;
        memset(&po, 0, sizeof po);
        s[0].name = "train"; s[0].x = hist_x; s[0].y = hist_train; s[0].n = (size_t)n_hist;
        s[1].name = "val"; s[1].x = hist_x; s[1].y = hist_val; s[1].n = (size_t)n_hist;
        po.title = "mesh_seg loss"; po.xlabel = "epoch"; po.ylabel = "cross-entropy";
        snprintf(path, sizeof path, "%s/loss.png", a->out);
        if (n_hist > 0 && kit_plot_png(path, s, 2, &po, &err)) fprintf(stderr, "mesh_seg: %s\n", err.msg);
    }
    printf("done: %lld steps in %.1f s, best held-out movable IoU %.4f; checkpoints in %s\n", (long long)opt->step,
           kit_now() - t_start, best, a->out);
    kit_tb_close(tb);
    fclose(csv);
    kit_loader_free(ld_train);
    kit_loader_free(ld_val);
    free_meshes(&train);
    free_meshes(&val);
    nn_adamw_free(opt);
    free(cfg_text); free(hist_train); free(hist_val); free(hist_x);
    return 0;
}

static void load_weights(app *a, const char *ckpt) {
    nn_load_opts lo;
    memset(&lo, 0, sizeof lo);
    lo.strict = 1;
    lo.skip_prefix = "optim.";
    nn_params_load(ckpt, &a->P, &lo, NULL);
}

static int cmd_eval(app *a, const char *ckpt) {
    mesh_list val;
    kit_err err;
    kit_loader *ld;
    eval_result r;
    if (list_meshes(kit_cfg_string(a->cfg, "data.val_dir"), &val, &err)) { fprintf(stderr, "mesh_seg: %s\n", err.msg); return 1; }
    load_weights(a, ckpt);
    ld = make_loader(&val, (int)kit_cfg_int(a->cfg, "data.workers"), 0, 0);
    r = evaluate(&a->model, ld, a->class_w, kit_cfg_float(a->cfg, "eval.conf_threshold"), a->dev);
    printf("checkpoint %s, held-out meshes in %s (confidence threshold %.2f)\n", ckpt, kit_cfg_string(a->cfg, "data.val_dir"),
           kit_cfg_float(a->cfg, "eval.conf_threshold"));
    print_eval(&r, "eval");
    kit_loader_free(ld);
    free_meshes(&val);
    return 0;
}

/* ASCII PLY, one vertex triple per face (faces do not share vertices in features.npy), coloured per face
   and per vertex: movable orange, fixed grey */
static void write_ply(const char *path, const float *feat, const uint8_t *pred, int64_t n) {
    FILE *f = fopen(path, "w");
    int64_t i;
    int k;
    if (!f) { fprintf(stderr, "mesh_seg: %s: %s\n", path, strerror(errno)); exit(1); }
    fprintf(f, "ply\nformat ascii 1.0\ncomment mesh_seg prediction: orange = movable, grey = fixed\n"
               "element vertex %lld\nproperty float x\nproperty float y\nproperty float z\n"
               "property uchar red\nproperty uchar green\nproperty uchar blue\n"
               "element face %lld\nproperty list uchar int vertex_indices\n"
               "property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n",
            (long long)(3 * n), (long long)n);
    for (i = 0; i < n; i++) {
        const float *v = feat + i * MESH_SEG_IN + MESH_SEG_PF + 1;
        for (k = 0; k < 3; k++)
            fprintf(f, "%.6g %.6g %.6g %s\n", v[3 * k], v[3 * k + 1], v[3 * k + 2], pred[i] ? "240 120 20" : "170 170 170");
    }
    for (i = 0; i < n; i++)
        fprintf(f, "3 %lld %lld %lld %s\n", (long long)(3 * i), (long long)(3 * i + 1), (long long)(3 * i + 2),
                pred[i] ? "240 120 20" : "170 170 170");
    if (fclose(f)) { fprintf(stderr, "mesh_seg: %s: write failed\n", path); exit(1); }
}

static int cmd_infer(app *a, const char *ckpt, int n_in, char **inputs, const char *out, int save_logits) {
    int j;
    load_weights(a, ckpt);
    nn_set_training(0);
    nn_set_grad_enabled(0);
    mkdirs(out);
    for (j = 0; j < n_in; j++) {
        char path[2048], name[512];
        const char *base;
        nn_tensor *x, *logits, *pt;
        int64_t n;
        uint8_t *pred;
        double t0 = kit_now();
        size_t len;
        snprintf(name, sizeof name, "%s", inputs[j]);   /* the folder's own name, trailing slashes aside */
        len = strlen(name);
        while (len > 1 && name[len - 1] == '/') name[--len] = 0;
        base = strrchr(name, '/');
        if (base) memmove(name, base + 1, strlen(base + 1) + 1);
        nn_scope_begin();
        snprintf(path, sizeof path, "%s/features.npy", inputs[j]);
        x = nn_npy_load(path);
        if (x->dtype != NN_F32 || x->ndim != 2 || x->shape[1] != MESH_SEG_IN) nn_error("mesh_seg infer: %s: expected f32 [N, %d]", path, MESH_SEG_IN);
        n = x->shape[0];
        logits = on(mesh_seg_forward(&a->model, on(x, a->dev)), NN_CPU);
        pt = nn_empty(NN_U8, 1, &n);
        pred = (uint8_t *)pt->data;
        predict(logits, pred);
        snprintf(path, sizeof path, "%s/%s.pred.npy", out, name);
        nn_npy_save(path, pt);
        if (save_logits) { snprintf(path, sizeof path, "%s/%s.logits.npy", out, name); nn_npy_save(path, logits); }
        snprintf(path, sizeof path, "%s/%s.ply", out, name);
        write_ply(path, nn_f32_data(x), pred, n);
        {
            int64_t i, mov = 0;
            FILE *lf;
            for (i = 0; i < n; i++) mov += pred[i];
            printf("%s: %lld faces, %lld predicted movable (%.1f%%), %.2f s -> %s/%s.{pred.npy,ply}", inputs[j], (long long)n,
                   (long long)mov, 100.0 * mov / n, kit_now() - t0, out, name);
            snprintf(path, sizeof path, "%s/labels.npy", inputs[j]);
            if ((lf = fopen(path, "rb")) != NULL) {   /* ground truth next to it: say how it did */
                nn_tensor *lab;
                confusion cm;
                int32_t *l32 = malloc((size_t)n * sizeof *l32);
                fclose(lf);
                lab = nn_npy_load(path);
                memset(&cm, 0, sizeof cm);
                for (i = 0; i < n && i < lab->numel; i++) l32[i] = ((const uint8_t *)lab->data)[i] != 0;
                if (lab->numel == n) { confusion_add(&cm, l32, pred, n); printf("  (IoU %.4f vs labels.npy)", c_iou(&cm)); }
                free(l32);
            }
            printf("\n");
        }
        nn_scope_end(NULL);
    }
    return 0;
}

/* training steps (forward, loss, backward, clipping, AdamW; training.amp as in train) on a synthetic mesh of n
   faces, each timed, with the device's peak memory: the scale check (40,000 and 200,000 faces) without
   a data set. bench/mesh_seg_step_bench.c is the side-by-side benchmark with PyTorch. */
static int cmd_step(app *a, int64_t n, int reps) {
    int64_t s[2], i;
    nn_tensor *xh, *yh, *x, *y;
    nn_adamw *opt;
    float *f;
    int32_t *t;
    int r;
    kit_rng g;
    const char *amp_s = kit_cfg_string(a->cfg, "training.amp");
    nn_dtype amp = !strcmp(amp_s, "bf16") ? NN_BF16 : !strcmp(amp_s, "f16") ? NN_F16 : NN_F32;
    s[0] = n; s[1] = MESH_SEG_IN;
    xh = nn_empty(NN_F32, 2, s);
    yh = nn_empty(NN_I32, 1, s);
    f = nn_f32_data(xh);
    t = (int32_t *)yh->data;
    kit_rng_seed(&g, 1);
    for (i = 0; i < n * MESH_SEG_IN; i++) f[i] = (float)kit_rng_range(&g, -1, 1);
    for (i = 0; i < n; i++) { f[i * MESH_SEG_IN + MESH_SEG_PF] = (float)kit_rng_uniform(&g); t[i] = (int32_t)(kit_rng_next(&g) & 1); }
    x = a->dev == NN_CPU ? xh : nn_to(xh, a->dev);
    y = a->dev == NN_CPU ? yh : nn_to(yh, a->dev);
    opt = nn_adamw_new(&a->P, nn_adamw_default());
    nn_set_training(1);
    for (r = 0; r < reps; r++) {
        double t0, t1;
        float gn;
        nn_cuda_synchronize();
        nn_mem_reset_peak(a->dev);
        t0 = kit_now();
        nn_scope_begin();
        nn_params_zero_grad(&a->P);
        if (amp != NN_F32) nn_autocast_begin(amp);
        {
            nn_tensor *loss = nn_cross_entropy(mesh_seg_forward(&a->model, x), y, a->class_w, -100, 0.0);
            if (amp != NN_F32) nn_autocast_end();
            nn_backward(loss);
        }
        gn = nn_clip_grad_norm(&a->P, 1.0, 0);
        nn_adamw_step(opt, 1e-4);
        nn_scope_end(NULL);
        nn_cuda_synchronize();
        t1 = kit_now();
        printf("step on %lld faces (%s, amp %s): %.4f s, peak memory %.1f MiB, grad norm %.4g (layers %d, heads %d, "
               "chunk %d, checkpointing %s)\n", (long long)n, nn_device_name(a->dev), amp_s, t1 - t0,
               nn_mem_stats(a->dev).peak / 1048576.0, gn, a->model.cfg.num_layers, a->model.cfg.num_heads,
               a->model.cfg.chunk_size, a->model.checkpointing ? "on" : "off");
    }
    nn_adamw_free(opt);
    if (x != xh) nn_tensor_free(x);
    if (y != yh) nn_tensor_free(y);
    nn_tensor_free(xh);
    nn_tensor_free(yh);
    return 0;
}

int main(int argc, char **argv) {
    app a;
    const char *cmd = argc > 1 ? argv[1] : "", *ckpt = NULL, *out = NULL;
    char ckbuf[1200];
    char **rest = malloc((size_t)(argc + 1) * sizeof *rest);
    int n_rest = 0, resume = 0, save_logits = 0, reps = 2, i, rc;
    long long faces = 40000;
    if (strcmp(cmd, "train") && strcmp(cmd, "eval") && strcmp(cmd, "infer") && strcmp(cmd, "step")) {
        kit_cfg *c = make_config();
        fprintf(stderr, "usage: mesh_seg train|eval|infer [--config FILE] [--set key=value]... [--resume] [--ckpt PATH]\n"
                        "                [MESH_DIR... --out DIR] [--logits]   (infer; --logits also writes the [N, 2] logits)\n"
                        "       mesh_seg step --faces N [--reps R] [--config FILE]   (time one training step)\n"
                        "configuration keys:\n");
        kit_cfg_print_help(c, stderr);
        kit_cfg_free(c);
        free(rest);
        return 2;
    }
    /* our own flags out of argv; the kit takes --config / --set */
    for (i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--resume")) resume = 1;
        else if (!strcmp(argv[i], "--ckpt") && i + 1 < argc) ckpt = argv[++i];
        else if (!strcmp(argv[i], "--out") && i + 1 < argc) out = argv[++i];
        else if (!strcmp(argv[i], "--logits")) save_logits = 1;
        else if (!strcmp(argv[i], "--faces") && i + 1 < argc) faces = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else rest[n_rest++] = argv[i];
    }
    {
        int kargc = n_rest + 1;
        char **kargv = malloc((size_t)(kargc + 1) * sizeof *kargv);
        kargv[0] = argv[0];
        for (i = 0; i < n_rest; i++) kargv[i + 1] = rest[i];
        kargv[kargc] = NULL;
        app_init(&a, &kargc, kargv);
        n_rest = kargc - 1;
        for (i = 0; i < n_rest; i++) rest[i] = kargv[i + 1];
        free(kargv);
    }
    if (!ckpt) { snprintf(ckbuf, sizeof ckbuf, "%s/best.safetensors", a.out); ckpt = ckbuf; }
    if (!strcmp(cmd, "train")) rc = n_rest ? (fprintf(stderr, "mesh_seg train: unexpected argument %s\n", rest[0]), 2) : cmd_train(&a, resume);
    else if (!strcmp(cmd, "step")) rc = faces < 1 ? 2 : cmd_step(&a, (int64_t)faces, reps);
    else if (!strcmp(cmd, "eval")) rc = n_rest ? (fprintf(stderr, "mesh_seg eval: unexpected argument %s\n", rest[0]), 2) : cmd_eval(&a, ckpt);
    else if (n_rest == 0) { fprintf(stderr, "mesh_seg infer: give one or more mesh folders\n"); rc = 2; }
    else rc = cmd_infer(&a, ckpt, n_rest, rest, out ? out : "pred", save_logits);
    app_free(&a);
    free(rest);
    return rc;
}
